//! The datapath with real eBPF programs (tests/bpf/datapath.c): traces,
//! counters, packet conservation under random topologies and traffic with
//! malformed frames, GRO and the loop guard, bpf_fib_lookup. The hooks' verdicts
//! are in datapath_xdp.rs, datapath_tc.rs, datapath_netkit.rs; multi-worker
//! mode in datapath_workers.rs.
//! Needs clang-19; skips with a message without it.

mod common;

use skiff_net::datapath::*;
use skiff_wire::{ethernet, tcp, TcpPacket, IPPROTO_TCP};

use common::datapath::*;

// ---- trace ----------------------------------------------------------------

#[test]
fn trace_follows_one_id_through_a_redirect() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.set_trace(true);
    cfg(&c, ifx(&n, n.nic2));
    n.xdp(n.nic1, &c, "xdp_pass");
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
    n.dp.capture(n.nic1, Hook::TcIngress);
    let id = n.send(n.nic1, &udp(MAC1, MAC3, 1000));
    let tr = n.dp.take_trace();
    let path: Vec<_> = tr
        .iter()
        .map(|e| (e.skb, e.iface.as_str(), e.func, e.verdict.as_str()))
        .collect();
    assert_eq!(
        path,
        vec![
            (id, "eth0", "xdp", "XDP_PASS"),
            (id, "eth0", "tc-ingress", "TC_ACT_REDIRECT"),
            (id, "eth1", "xmit", "OK"),
        ]
    );
    assert_eq!(tr[1].tuple, "10.0.0.1:1000->10.0.0.2:2000(udp)");
    assert_eq!(tr[1].proto, 0x0800);
    assert!(tr[1].to_json().contains("\"skb\":"));
    let cap = n.dp.take_captures();
    assert_eq!(cap.len(), 2);
    assert_eq!(
        (cap[0].point, cap[1].point),
        (CapturePoint::Entry, CapturePoint::Exit)
    );
    assert_eq!(cap[1].verdict.as_deref(), Some("TC_ACT_REDIRECT"));
}

#[test]
fn counters_serialise() {
    let n = net();
    let j = serde_json::to_string(&n.dp.counters()).unwrap();
    assert!(j.contains("\"conservation\":{\"in\":0"), "{j}");
}

#[test]
fn multi_worker_is_not_supported() {
    match Datapath::new(DatapathOptions {
        workers: 2,
        ..Default::default()
    }) {
        Err(DatapathError::NotSupported(m)) => assert!(m.contains("multi-worker")),
        r => panic!("{:?}", r.err()),
    }
}

// ---- conservation and malformed input ---------------------------------------

mod prop {
    use super::*;
    use proptest::prelude::*;

    const XDP_PROGS: &[&str] = &[
        "xdp_pass",
        "xdp_drop",
        "xdp_aborted",
        "xdp_tx",
        "xdp_redirect_ifindex",
        "xdp_redirect_devmap",
        "xdp_broadcast",
        "xdp_cpumap",
        "xdp_xsk",
        "xdp_meta",
        "xdp_oob",
    ];
    const TC_PROGS: &[&str] = &[
        "tc_ok",
        "tc_shot",
        "tc_unspec",
        "tc_pipe",
        "tc_stolen",
        "tc_redirect_egress",
        "tc_redirect_ingress",
        "tc_redirect_peer",
        "tc_redirect_neigh",
        "tc_clone",
        "tc_read_meta",
        "tc_record",
    ];
    const NK_PROGS: &[&str] = &["nk_next", "nk_pass", "nk_drop", "nk_redirect"];

    fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0u16..2000).prop_map(|p| udp(MAC1, MAC3, p)),
            (0u16..2000).prop_map(|p| udp([0xff; 6], MAC3, p)),
            proptest::collection::vec(any::<u8>(), 0..80),
            (0u16..2000, 0usize..60).prop_map(|(p, cut)| {
                let mut f = udp(MAC1, MAC3, p);
                f.truncate(cut);
                f
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
        #[test]
        fn conservation_under_random_topologies(
            xdp in proptest::collection::vec((0usize..5, 0usize..XDP_PROGS.len(), any::<bool>()), 0..4),
            tc in proptest::collection::vec((0usize..5, any::<bool>(), 0usize..TC_PROGS.len()), 0..5),
            nkp in proptest::collection::vec((any::<bool>(), 0usize..NK_PROGS.len()), 0..3),
            target in 0usize..6,
            traffic in proptest::collection::vec((0usize..5, frame_strategy()), 1..40),
            policy_drop in any::<bool>(),
        ) {
            let Some(c) = load() else { return Ok(()) };
            let mut dp = Datapath::new(DatapathOptions { possible_cpus: 2, ..Default::default() }).unwrap();
            let host = dp.add_netns("host").unwrap();
            let pod = dp.add_netns("pod").unwrap();
            let nic1 = dp.add_device(host, DeviceSpec::nic("eth0", MAC1, 2)).unwrap();
            let nic2 = dp.add_device(host, DeviceSpec { txqueuelen: 3, ..DeviceSpec::nic("eth1", MAC2, 1) }).unwrap();
            let veth = dp.add_device(host, DeviceSpec::veth("veth0", Some(pod), "eth0")).unwrap();
            let mut spec = DeviceSpec::netkit("nk0", Some(pod), "nk1");
            if let DeviceKind::Netkit { peer_policy, .. } = &mut spec.kind {
                *peer_policy = if policy_drop { NetkitPolicy::Drop } else { NetkitPolicy::Pass };
            }
            let nk = dp.add_device(host, spec).unwrap();
            let devs = [nic1, nic2, veth, dp.peer(veth).unwrap(), dp.peer(nk).unwrap(), nk];
            point_redirects(&c, &dp, devs[target], [nic1, nic2, veth]);
            set(&c, "cpus", 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
            attach_random(&mut dp, &c, &devs, (xdp, XDP_PROGS), (tc, TC_PROGS));
            for (side, p) in nkp {
                let side = if side { NetkitSide::Primary } else { NetkitSide::Peer };
                let _ = dp.attach_netkit(nk, side, MprogOrder::Append, prog(&c, NK_PROGS[p]));
            }
            dp.set_trace(true);
            for (i, (d, f)) in traffic.iter().enumerate() {
                dp.inject(devs[*d], f, i as u64 * 1000).unwrap();
                if i % 7 == 0 {
                    dp.run();
                }
            }
            dp.finish();
            prop_conserved(&dp, traffic.len())?;
            let cons = dp.conservation();
            let tx = dp.take_transmitted().len() as u64;
            let xsk: u64 = dp.xsk_queues().len() as u64;
            prop_assert!(tx <= cons.transmitted && (tx > 0 || xsk > 0 || cons.transmitted == 0));
        }
    }
}

// ---- GRO and the loop guard ---------------------------------------------------

/// Ethernet + IPv4 + TCP (ACK) 10.0.0.1:1000 -> 10.0.0.2:80, `len` payload bytes.
fn tcp(seq: u32, ip_id: u16, len: usize) -> Vec<u8> {
    let mut f = eth_ipv4(MAC1, MAC3, IPPROTO_TCP, ip_id, tcp::HEADER_LEN + len);
    let at = f.len();
    f.resize(at + tcp::HEADER_LEN, 0);
    let mut t = TcpPacket::new_unchecked(&mut f[at..]);
    t.set_src_port(1000);
    t.set_dst_port(80);
    t.set_seq_number(seq);
    t.set_ack_number(7);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(tcp::TCPHDR_ACK);
    t.set_window_len(0x2000);
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(7)));
    skiff_net::datapath::gro::ipv4_fix_csum(&mut f[ethernet::HEADER_LEN..at]);
    skiff_net::datapath::gro::tcp4_fix_csum(&mut f);
    f
}

#[test]
fn gro_merges_in_order_segments_and_gso_cuts_them_again() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.set_trace(true);
    cfg(&c, ifx(&n, n.nic2));
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
    let segs: Vec<Vec<u8>> = (0..3)
        .map(|i| tcp(1000 + i * 100, 5 + i as u16, 100))
        .collect();
    let ids: Vec<u64> = segs
        .iter()
        .map(|s| n.dp.inject(n.nic1, s, 0).unwrap())
        .collect();
    n.dp.run();
    // One skb through tc ingress: 14 + 20 + 20 + 300 bytes.
    assert_eq!(
        n.dp.hook_count(n.nic1, Hook::TcIngress, 7),
        PktBytes {
            packets: 1,
            bytes: 354
        }
    );
    let t = n.dp.take_transmitted();
    assert_eq!(t.len(), 3);
    for (i, x) in t.iter().enumerate() {
        assert_eq!(x.frame, segs[i], "segment {i}");
    }
    assert_eq!(t[0].id, ids[0]);
    let k = n.dp.conservation();
    assert_eq!(
        (k.input, k.originated, k.transmitted, k.delivered),
        (3, 2, 3, 2)
    );
    assert_balanced(&n.dp);
    // Out of order: not merged.
    let mut n = net();
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
    n.dp.inject(n.nic1, &tcp(1000, 1, 100), 0).unwrap();
    n.dp.inject(n.nic1, &tcp(1300, 2, 100), 0).unwrap();
    n.dp.run();
    assert_eq!(n.dp.hook_count(n.nic1, Hook::TcIngress, 7).packets, 2);
}

#[test]
fn xdp_tx_ping_pong_between_veth_peers_is_stopped() {
    let Some(c) = load() else { return };
    let mut n = net();
    let (veth, peer) = n.xdp_redirect_to_veth(&c);
    n.xdp(veth, &c, "xdp_tx");
    n.xdp(peer, &c, "xdp_tx");
    n.send(n.nic1, &udp(MAC1, MAC3, 1000));
    assert_eq!(n.dp.counters().drops.get("SKIFF_LOOP"), Some(&1));
    assert_balanced(&n.dp);
}

#[test]
fn fib_lookup_answers_from_the_namespace_stack() {
    let Some(c) = load() else { return };
    let mut n = net();
    let nic2 = ifx(&n, n.nic2);
    {
        let mut s = n.dp.stack_mut(n.host).unwrap();
        s.set_forwarding(true, true);
        s.add_address(nic2, "10.1.0.1".parse().unwrap(), 24)
            .unwrap();
    }
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_fib");
    n.send(n.nic1, &udp(MAC1, MAC3, 1000));
    // No neighbour yet: BPF_FIB_LKUP_RET_NO_NEIGH with the egress device.
    assert_eq!((res(&c, 0), res(&c, 1)), (7, nic2 as u64));
    n.dp.stack_mut(n.host)
        .unwrap()
        .add_neighbour(nic2, "10.1.0.9".parse().unwrap(), [2, 0, 0, 0, 0, 0x42])
        .unwrap();
    n.send(n.nic1, &udp(MAC1, MAC3, 1000));
    assert_eq!((res(&c, 0), res(&c, 1), res(&c, 2)), (0, nic2 as u64, 0x42));
}
