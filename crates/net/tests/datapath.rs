//! The datapath with real eBPF programs (tests/bpf/datapath.c): for every
//! verdict of every hook, where the packet goes and what it looks like; packet
//! conservation under random topologies and traffic; malformed frames.
//! Needs clang-19; skips with a message without it.

mod common;

use std::sync::{Arc, OnceLock};

use skiff_maps::MapValue;
use skiff_net::datapath::*;
use skiff_vm::{Collection, LoadOptions, Program};
use skiff_wire::{
    ethernet, ipv4, tcp, udp, EthernetRepr, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket, ETH_P_IP,
    IPPROTO_TCP, IPPROTO_UDP,
};
use std::net::Ipv4Addr;

const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MAC3: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

fn object() -> Option<&'static [u8]> {
    static OBJ: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    OBJ.get_or_init(|| common::bpf_object("datapath"))
        .as_deref()
}

/// A fresh load of the test object (its own maps), or None (skip) without clang.
fn load() -> Option<Collection> {
    let Some(obj) = object() else {
        eprintln!("skipping: clang-19 not available or failed for tests/bpf/datapath.c");
        return None;
    };
    let o = skiff_object::Object::parse(obj).expect("parse");
    Some(
        Collection::load(
            &o,
            &LoadOptions {
                possible_cpus: 2,
                // datapath.c holds programs the verifier refuses (xdp_oob, for
                // the run-time exception paths): loaded as with --no-verify
                verify: false,
                ..skiff_net::load_options()
            },
        )
        .expect("load"),
    )
}

fn prog(c: &Collection, name: &str) -> Arc<Program> {
    c.program(name).expect(name).clone()
}

fn set(c: &Collection, map: &str, key: u32, value: &[u8]) {
    c.map(map)
        .unwrap()
        .sys_update(&key.to_le_bytes(), value, 0)
        .expect("map update");
}

fn cfg(c: &Collection, v: u32) {
    set(c, "cfg", 0, &v.to_le_bytes());
}

fn res(c: &Collection, k: u32) -> u64 {
    match c.map("res").unwrap().sys_lookup(&k.to_le_bytes()) {
        Ok(MapValue::Single(v)) => u64::from_le_bytes(v[..8].try_into().unwrap()),
        _ => panic!("res[{k}]"),
    }
}

/// Ethernet + IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:2000 with 18 bytes of payload.
/// Ethernet + an option-less IPv4 header (10.0.0.1 -> 10.0.0.2, DF, TTL 64,
/// checksum set) for `payload_len` more bytes.
fn eth_ipv4(dst: [u8; 6], src: [u8; 6], protocol: u8, ident: u16, payload_len: usize) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: ETH_P_IP,
    };
    let mut f = eth.to_frame(ipv4::HEADER_LEN + payload_len);
    f.resize(ethernet::HEADER_LEN + ipv4::HEADER_LEN, 0);
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol,
        tos: 0,
        ttl: 64,
        ident,
        dont_frag: true,
        payload_len,
    };
    ip.emit(&mut Ipv4Packet::new_unchecked(
        &mut f[ethernet::HEADER_LEN..],
    ));
    f
}

fn udp(dst: [u8; 6], src: [u8; 6], sport: u16) -> Vec<u8> {
    let payload = b"skiff-datapath-123";
    let len = udp::HEADER_LEN + payload.len();
    let mut f = eth_ipv4(dst, src, IPPROTO_UDP, 1, len);
    let at = f.len();
    f.resize(at + udp::HEADER_LEN, 0);
    let mut u = UdpPacket::new_unchecked(&mut f[at..]);
    u.set_src_port(sport);
    u.set_dst_port(2000);
    u.set_length(len as u16);
    f.extend_from_slice(payload);
    f
}

struct Net {
    dp: Datapath,
    host: NsId,
    nic1: DevId,
    nic2: DevId,
}

fn net() -> Net {
    let mut dp = Datapath::new(DatapathOptions {
        possible_cpus: 2,
        ..Default::default()
    })
    .unwrap();
    dp.set_record_drops(true);
    let host = dp.add_netns("host").unwrap();
    let nic1 = dp
        .add_device(host, DeviceSpec::nic("eth0", MAC1, 2))
        .unwrap();
    let nic2 = dp
        .add_device(host, DeviceSpec::nic("eth1", MAC2, 1))
        .unwrap();
    addr(&mut dp, nic1);
    Net {
        dp,
        host,
        nic1,
        nic2,
    }
}

/// 10.0.0.2/24 on `dev`: the stack delivers the test frames there.
fn addr(dp: &mut Datapath, dev: DevId) {
    let ns = dp.dev_netns(dev).unwrap();
    let i = dp.ifindex(dev).unwrap();
    dp.stack_mut(ns)
        .unwrap()
        .add_address(i, "10.0.0.2".parse().unwrap(), 24)
        .unwrap();
}

fn ifx(n: &Net, d: DevId) -> u32 {
    n.dp.ifindex(d).unwrap()
}

fn assert_balanced(dp: &Datapath) {
    let c = dp.conservation();
    assert_eq!(c.in_flight, 0, "{c:?}");
    assert!(c.balanced(), "{c:?}");
}

fn one_tx(n: &mut Net) -> Transmitted {
    let t = n.dp.take_transmitted();
    assert_eq!(t.len(), 1, "transmitted: {t:?}");
    t.into_iter().next().unwrap()
}

fn drops(dp: &Datapath) -> Vec<(String, &'static str, String)> {
    dp.drops()
        .map(|d| (d.iface.clone(), d.reason, d.hook.to_string()))
        .collect()
}

// ---- XDP -------------------------------------------------------------------

#[test]
fn xdp_pass_goes_to_the_stack() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_pass"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 5).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].id, d[0].dev, d[0].by, &d[0].frame),
        (id, n.nic1, "stack", &f)
    );
    assert_eq!(
        n.dp.hook_count(n.nic1, Hook::Xdp, 2),
        PktBytes {
            packets: 1,
            bytes: f.len() as u64
        }
    );
    assert_eq!(n.dp.stats(n.nic1).unwrap().rx_packets, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_drop_and_aborted() {
    let Some(c) = load() else { return };
    for (p, reason, code) in [
        ("xdp_drop", "SKIFF_XDP_DROP", 1),
        ("xdp_aborted", "SKIFF_XDP_ABORTED", 0),
    ] {
        let mut n = net();
        n.dp.attach_xdp(n.nic1, prog(&c, p), XdpMode::Native)
            .unwrap();
        n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
        n.dp.run();
        assert!(n.dp.take_delivered().is_empty() && n.dp.take_transmitted().is_empty());
        assert_eq!(
            drops(&n.dp),
            vec![("eth0".to_string(), reason, "xdp".to_string())]
        );
        assert_eq!(n.dp.hook_count(n.nic1, Hook::Xdp, code).packets, 1);
        // XDP_DROP'd frames still count as received (KERNEL-NOTES).
        assert_eq!(n.dp.stats(n.nic1).unwrap().rx_packets, 1);
        assert_balanced(&n.dp);
    }
}

#[test]
fn xdp_exception_is_aborted_with_where() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_oob"), XdpMode::Native)
        .unwrap();
    n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
    let d: Vec<_> = n.dp.drops().cloned().collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].reason, "SKIFF_XDP_ABORTED");
    assert_eq!(d[0].prog.as_deref(), Some("xdp_oob"));
    assert!(d[0].insn.is_some() && d[0].error.is_some());
}

#[test]
fn xdp_tx_goes_back_out_with_swapped_macs() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_tx"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let t = one_tx(&mut n);
    let mut want = f.clone();
    want[..6].copy_from_slice(&MAC3);
    want[6..12].copy_from_slice(&MAC1);
    assert_eq!((t.dev, t.id, t.frame), (n.nic1, id, want));
    assert_eq!(n.dp.stats(n.nic1).unwrap().tx_packets, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_redirect_ifindex_and_devmap() {
    let Some(c) = load() else { return };
    let mut n = net();
    cfg(&c, ifx(&n, n.nic2));
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_redirect_ifindex"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let t = one_tx(&mut n);
    assert_eq!((t.dev, t.id, &t.frame), (n.nic2, id, &f));
    assert_eq!(n.dp.hook_count(n.nic1, Hook::Xdp, 4).packets, 1);

    // DEVMAP slot 0 -> eth1 with an entry program that marks byte 59.
    let c2 = load().unwrap();
    let mut n = net();
    let dm = prog(&c2, "xdp_devmap_prog");
    n.dp.register_programs(std::slice::from_ref(&dm));
    let mut v = ifx(&n, n.nic2).to_le_bytes().to_vec();
    v.extend_from_slice(&dm.id.to_le_bytes());
    set(&c2, "devmap", 0, &v);
    n.dp.attach_xdp(n.nic1, prog(&c2, "xdp_redirect_devmap"), XdpMode::Native)
        .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let t = one_tx(&mut n);
    let mut want = f.clone();
    want[59] = 0xee;
    assert_eq!((t.dev, t.frame), (n.nic2, want));
    assert_eq!(
        res(&c2, 1),
        ifx(&n, n.nic2) as u64,
        "egress_ifindex seen by the devmap program"
    );
    assert_eq!(n.dp.hook_count(n.nic2, Hook::XdpDevmap, 2).packets, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_devmap_hash_broadcast_excludes_ingress() {
    let Some(c) = load() else { return };
    let mut n = net();
    let nic3 =
        n.dp.add_device(n.host, DeviceSpec::nic("eth2", MAC3, 1))
            .unwrap();
    for (k, d) in [(10u32, n.nic1), (20, n.nic2), (30, nic3)] {
        set(&c, "devhash", k, &ifx(&n, d).to_le_bytes());
    }
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_broadcast"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let mut t = n.dp.take_transmitted();
    t.sort_by_key(|x| x.ifindex);
    assert_eq!(t.len(), 2);
    assert_eq!((t[0].dev, &t[0].frame), (n.nic2, &f));
    assert_eq!((t[1].dev, &t[1].frame), (nic3, &f));
    let c = n.dp.conservation();
    assert_eq!((c.input, c.originated, c.transmitted), (1, 1, 2));
    assert_balanced(&n.dp);
}

#[test]
fn xdp_cpumap_reaches_the_stack_on_that_cpu() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.set_trace(true);
    set(&c, "cpus", 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_cpumap"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].id, &d[0].frame), (1, id, &f));
    let tr = n.dp.take_trace();
    let stack = tr.iter().find(|e| e.func == "stack").expect("stack event");
    assert_eq!(stack.cpu, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_xskmap_fills_the_user_queue() {
    let Some(c) = load() else { return };
    let mut n = net();
    for q in 0..2u32 {
        set(&c, "xsks", q, &(100 + q).to_le_bytes());
    }
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_xsk"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let queues = n.dp.xsk_queues();
    assert_eq!(queues.len(), 1);
    let (dev, q) = queues[0];
    let x = n.dp.take_xsk(dev, q);
    assert_eq!(
        (dev, x.len(), x[0].id, x[0].slot, &x[0].frame),
        (n.nic1, 1, id, q, &f)
    );
    assert_eq!(n.dp.conservation().transmitted, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_redirect_into_veth_needs_xdp_on_the_peer() {
    let Some(c) = load() else { return };
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let veth =
        n.dp.add_device(n.host, DeviceSpec::veth("veth0", Some(pod), "eth0"))
            .unwrap();
    let peer = n.dp.peer(veth).unwrap();
    cfg(&c, ifx(&n, veth));
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_redirect_ifindex"), XdpMode::Native)
        .unwrap();
    let f = udp(MAC1, MAC3, 1000);
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    assert_eq!(
        drops(&n.dp),
        vec![("veth0".into(), "SKIFF_XDP_REDIRECT_ERROR", "xmit".into())]
    );
    // With XDP on the peer the frame arrives there (veth_xdp_rcv) and passes on.
    n.dp.attach_xdp(peer, prog(&c, "xdp_pass"), XdpMode::Native)
        .unwrap();
    addr(&mut n.dp, peer);
    let f = udp(n.dp.mac(peer).unwrap(), MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id), (1, peer, id));
    assert_eq!(n.dp.hook_count(peer, Hook::Xdp, 2).packets, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_metadata_reaches_tc() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_meta"), XdpMode::Native)
        .unwrap();
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        TcAttach::ClsBpf {
            prio: 1,
            handle: 1,
            classid: 0,
        },
        prog(&c, "tc_read_meta"),
    )
    .unwrap();
    n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
    assert_eq!(res(&c, 0), 0xdeadbeef);
}

#[test]
fn xdp_generic_on_netkit_and_native_refused() {
    let Some(c) = load() else { return };
    let mut n = net();
    let nk =
        n.dp.add_device(n.host, DeviceSpec::netkit("nk0", None, "nk1"))
            .unwrap();
    match n.dp.attach_xdp(nk, prog(&c, "xdp_drop"), XdpMode::Native) {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, EOPNOTSUPP),
        r => panic!("{r:?}"),
    }
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_pass"), XdpMode::Native)
        .unwrap();
    match n
        .dp
        .attach_xdp(n.nic1, prog(&c, "xdp_drop"), XdpMode::Generic)
    {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, EEXIST),
        r => panic!("{r:?}"),
    }
    // Generic XDP on eth1 drops with the skb reason XDP.
    n.dp.attach_xdp(n.nic2, prog(&c, "xdp_drop"), XdpMode::Generic)
        .unwrap();
    n.dp.inject(n.nic2, &udp(MAC2, MAC3, 1000), 0).unwrap();
    n.dp.run();
    assert_eq!(
        drops(&n.dp),
        vec![("eth1".into(), "XDP", "xdp-generic".into())]
    );
}

// ---- TC --------------------------------------------------------------------

fn cls(prio: u16) -> TcAttach {
    TcAttach::ClsBpf {
        prio,
        handle: 1,
        classid: 0,
    }
}

#[test]
fn tc_ingress_ok_shot_stolen() {
    let Some(c) = load() else { return };
    let f = udp(MAC1, MAC3, 1000);
    let mut n = net();
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(1), prog(&c, "tc_ok"))
        .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].by), (1, "stack"));
    assert_eq!(n.dp.hook_count(n.nic1, Hook::TcIngress, 0).packets, 1);

    let mut n = net();
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(1), prog(&c, "tc_shot"))
        .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    assert_eq!(
        drops(&n.dp),
        vec![("eth0".into(), "TC_INGRESS", "tc-ingress".into())]
    );
    assert_eq!(
        n.dp.drops().next().unwrap().prog.as_deref(),
        Some("tc_shot")
    );

    let mut n = net();
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(1), prog(&c, "tc_stolen"))
        .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].by), (1, "tc-ingress"));
    assert_eq!(n.dp.counters().consumed, 1);
    assert_balanced(&n.dp);
}

#[test]
fn tc_unspec_and_pipe_fall_through_to_the_next_filter() {
    let Some(c) = load() else { return };
    let f = udp(MAC1, MAC3, 1000);
    // tcx returns TCX_NEXT: cls_bpf runs; prio 1 PIPE (UNSPEC in da mode), prio 2 records.
    let mut n = net();
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        TcAttach::Tcx(MprogOrder::Append),
        prog(&c, "tc_unspec"),
    )
    .unwrap();
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(2), prog(&c, "tc_record"))
        .unwrap();
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(1), prog(&c, "tc_pipe"))
        .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    assert_eq!(
        res(&c, 4),
        0x77,
        "mark set by the tcx program, seen by cls_bpf"
    );
    assert_eq!(res(&c, 5), ifx(&n, n.nic1) as u64);
    assert_eq!(n.dp.take_delivered().len(), 1);
    // A duplicate prio/handle is refused.
    match n
        .dp
        .attach_tc(n.nic1, TcDirection::Ingress, cls(2), prog(&c, "tc_ok"))
    {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, EEXIST),
        r => panic!("{r:?}"),
    }
}

#[test]
fn tc_redirect_egress_and_egress_shot_and_qdisc_drop() {
    let Some(c) = load() else { return };
    let f = udp(MAC1, MAC3, 1000);
    let mut n = net();
    cfg(&c, ifx(&n, n.nic2));
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let t = one_tx(&mut n);
    assert_eq!((t.dev, t.id, &t.frame), (n.nic2, id, &f));
    assert_eq!(n.dp.hook_count(n.nic1, Hook::TcIngress, 7).packets, 1);

    n.dp.attach_tc(n.nic2, TcDirection::Egress, cls(1), prog(&c, "tc_shot"))
        .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    assert_eq!(
        drops(&n.dp),
        vec![("eth1".into(), "TC_EGRESS", "tc-egress".into())]
    );

    // txqueuelen 2: five packets in one poll, two leave, three are QDISC_DROP.
    let mut n = net();
    let nic3 =
        n.dp.add_device(
            n.host,
            DeviceSpec {
                txqueuelen: 2,
                ..DeviceSpec::nic("eth2", MAC3, 1)
            },
        )
        .unwrap();
    cfg(&c, ifx(&n, nic3));
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    let mut nic1_single = n.dp;
    // One rx queue's worth: same flow, same queue, one poll.
    for _ in 0..5 {
        nic1_single.inject(n.nic1, &f, 0).unwrap();
    }
    nic1_single.run();
    assert_eq!(nic1_single.take_transmitted().len(), 2);
    assert_eq!(nic1_single.counters().drops.get("QDISC_DROP"), Some(&3));
    assert_balanced(&nic1_single);
}

#[test]
fn qdiscs_are_the_kernel_s_defaults_and_count() {
    let Some(c) = load() else { return };
    let f = udp(MAC1, MAC3, 1000);
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let veth =
        n.dp.add_device(n.host, DeviceSpec::veth("veth0", Some(pod), "eth0"))
            .unwrap();
    let lo = n.dp.loopback(n.host).unwrap();
    let kind = |dp: &Datapath, d: DevId| dp.qdisc_stats(d).unwrap().0;
    // attach_default_qdiscs: mq on a multiqueue NIC, pfifo_fast on one queue,
    // noqueue on IFF_NO_QUEUE devices.
    assert_eq!(kind(&n.dp, n.nic1), "mq");
    assert_eq!(kind(&n.dp, n.nic2), "pfifo_fast");
    assert_eq!(kind(&n.dp, veth), "noqueue");
    assert_eq!(kind(&n.dp, lo), "noqueue");
    match n.dp.set_qdisc(n.nic2, "mq") {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, EOPNOTSUPP),
        r => panic!("mq on a single-queue NIC: {r:?}"),
    }
    match n.dp.set_qdisc(n.nic2, "sfq") {
        Err(DatapathError::Errno { errno, msg }) => {
            assert_eq!(errno, EINVAL);
            assert!(msg.contains("unknown qdisc \"sfq\""), "{msg}");
        }
        r => panic!("{r:?}"),
    }
    // pfifo with the device's tx_queue_len (1000): everything redirected to
    // eth1 passes it, and `tc -s qdisc` counts it.
    n.dp.set_qdisc(n.nic2, "pfifo").unwrap();
    cfg(&c, ifx(&n, n.nic2));
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    for _ in 0..3 {
        n.dp.inject(n.nic1, &f, 0).unwrap();
    }
    n.dp.run();
    assert_eq!(n.dp.take_transmitted().len(), 3);
    let (k, s) = n.dp.qdisc_stats(n.nic2).unwrap();
    assert_eq!(k, "pfifo");
    assert_eq!(
        (s.packets, s.bytes, s.drops, s.qlen, s.backlog),
        (3, 3 * f.len() as u64, 0, 0, 0)
    );
    assert_balanced(&n.dp);
}

#[test]
fn tc_redirect_ingress_peer_and_clone() {
    let Some(c) = load() else { return };
    // bpf_redirect(veth0, BPF_F_INGRESS): received on veth0 in the host.
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let veth =
        n.dp.add_device(n.host, DeviceSpec::veth("veth0", Some(pod), "eth0"))
            .unwrap();
    let _peer = n.dp.peer(veth).unwrap();
    cfg(&c, ifx(&n, veth));
    addr(&mut n.dp, veth);
    let f = udp(n.dp.mac(veth).unwrap(), MAC3, 1000);
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_ingress"),
    )
    .unwrap();
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id, &d[0].frame), (1, veth, id, &f));

    // bpf_redirect_peer(veth0): straight into the pod's end, its tc ingress runs,
    // the host end never sees it.
    let c = load().unwrap();
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let veth =
        n.dp.add_device(n.host, DeviceSpec::veth("veth0", Some(pod), "eth0"))
            .unwrap();
    let peer = n.dp.peer(veth).unwrap();
    cfg(&c, ifx(&n, veth));
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_peer"),
    )
    .unwrap();
    n.dp.attach_tc(peer, TcDirection::Ingress, cls(1), prog(&c, "tc_record"))
        .unwrap();
    addr(&mut n.dp, peer);
    let f = udp(MAC1, MAC3, 1000);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id), (1, peer, id));
    assert_eq!(res(&c, 5), ifx(&n, peer) as u64);
    assert_eq!(res(&c, 6), 0, "pkt_type stays PACKET_HOST");
    let s = n.dp.stats(veth).unwrap();
    assert_eq!((s.rx_packets, s.tx_packets), (0, 0));
    assert_eq!(n.dp.stats(peer).unwrap().rx_packets, 1);
    let _ = peer;

    // bpf_redirect_peer from egress is dropped after the program returned.
    let c = load().unwrap();
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let veth =
        n.dp.add_device(n.host, DeviceSpec::veth("veth0", Some(pod), "eth0"))
            .unwrap();
    cfg(&c, ifx(&n, veth));
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    cfg(&c, ifx(&n, n.nic2));
    n.dp.attach_tc(
        n.nic2,
        TcDirection::Egress,
        cls(1),
        prog(&c, "tc_redirect_peer"),
    )
    .unwrap();
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    assert_eq!(
        drops(&n.dp),
        vec![("eth1".into(), "NOT_SPECIFIED", "tc-egress".into())]
    );

    // bpf_clone_redirect to eth1, then TC_ACT_OK: a clone out of eth1 (new id),
    // the original to the stack.
    let c = load().unwrap();
    let mut n = net();
    cfg(&c, ifx(&n, n.nic2));
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(1), prog(&c, "tc_clone"))
        .unwrap();
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let t = one_tx(&mut n);
    assert_eq!((t.dev, &t.frame), (n.nic2, &f));
    assert_ne!(t.id, id);
    assert_eq!(res(&c, 3), 0);
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].id), (1, id));
    assert_eq!(n.dp.conservation().originated, 1);
    assert_balanced(&n.dp);
}

#[test]
fn tc_redirect_neigh_uses_the_neighbour_table() {
    let Some(c) = load() else { return };
    let f = udp(MAC1, MAC3, 1000);
    let mut n = net();
    cfg(&c, ifx(&n, n.nic2));
    let nic2_ifx = ifx(&n, n.nic2);
    {
        let mut s = n.dp.stack_mut(n.host).unwrap();
        s.add_address(nic2_ifx, "10.0.0.254".parse().unwrap(), 24)
            .unwrap();
        s.add_neighbour(
            nic2_ifx,
            "10.0.0.2".parse().unwrap(),
            [0x02, 0, 0, 0, 0, 0x99],
        )
        .unwrap();
    }
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_neigh"),
    )
    .unwrap();
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    n.dp.finish();
    let t = n.dp.take_transmitted();
    assert_eq!((t.len(), t[0].dev, t[0].id), (1, n.nic2, id));
    let mut want = f.clone();
    want[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    want[6..12].copy_from_slice(&MAC2);
    assert_eq!(t[0].frame, want);
    assert_balanced(&n.dp);
}

// ---- netkit ----------------------------------------------------------------

/// eth0 -> tc redirect -> nk0 (primary, host) -> nk1 (peer, pod).
fn netkit_net(c: &Collection, policy: NetkitPolicy) -> (Net, DevId, DevId) {
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let mut spec = DeviceSpec::netkit("nk0", Some(pod), "nk1");
    if let DeviceKind::Netkit { policy: p, .. } = &mut spec.kind {
        *p = policy;
    }
    let nk = n.dp.add_device(n.host, spec).unwrap();
    let peer = n.dp.peer(nk).unwrap();
    addr(&mut n.dp, peer);
    cfg(c, ifx(&n, nk));
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(c, "tc_redirect_egress"),
    )
    .unwrap();
    (n, nk, peer)
}

#[test]
fn netkit_default_policies() {
    let Some(c) = load() else { return };
    let f = udp([0; 6], MAC3, 1000);
    let (mut n, nk, peer) = netkit_net(&c, NetkitPolicy::Pass);
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id, &d[0].frame), (1, peer, id, &f));
    assert_eq!(n.dp.stats(nk).unwrap().tx_packets, 1);
    assert_eq!(n.dp.stats(peer).unwrap().rx_packets, 1);

    let c = load().unwrap();
    let (mut n, nk, _) = netkit_net(&c, NetkitPolicy::Drop);
    n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    assert_eq!(
        drops(&n.dp),
        vec![("nk0".into(), "NOT_SPECIFIED", "netkit".into())]
    );
    assert_eq!(n.dp.stats(nk).unwrap().tx_dropped, 1);
    assert_balanced(&n.dp);
}

#[test]
fn netkit_program_verdicts() {
    let Some(_) = load() else { return };
    let f = udp([0; 6], MAC3, 1000);
    // NEXT from the last program counts as PASS, even with policy drop.
    for (progs, delivered) in [
        (vec!["nk_next"], true),
        (vec!["nk_pass"], true),
        (vec!["nk_drop"], false),
        (vec!["nk_next", "nk_drop"], false),
        (vec!["nk_pass", "nk_drop"], true),
    ] {
        let c = load().unwrap();
        let (mut n, nk, peer) = netkit_net(&c, NetkitPolicy::Drop);
        for p in &progs {
            n.dp.attach_netkit(nk, NetkitSide::Primary, MprogOrder::Append, prog(&c, p))
                .unwrap();
        }
        n.dp.inject(n.nic1, &f, 0).unwrap();
        n.dp.run();
        let d = n.dp.take_delivered();
        assert_eq!(d.len(), delivered as usize, "{progs:?}");
        if delivered {
            assert_eq!(d[0].dev, peer);
        } else {
            assert_eq!(
                drops(&n.dp),
                vec![("nk0".into(), "NOT_SPECIFIED", "netkit".into())],
                "{progs:?}"
            );
        }
        assert_balanced(&n.dp);
    }
    // NETKIT_REDIRECT: straight out of a NIC, no pod stack. The ifindex
    // resolves in the peer's namespace (skb->dev is the peer).
    let c = load().unwrap();
    let (mut n, nk, peer) = netkit_net(&c, NetkitPolicy::Pass);
    let pod = n.dp.dev_netns(peer).unwrap();
    let podnic =
        n.dp.add_device(pod, DeviceSpec::nic("eth9", MAC3, 1))
            .unwrap();
    set(&c, "cfg", 1, &ifx(&n, podnic).to_le_bytes());
    n.dp.attach_netkit(
        nk,
        NetkitSide::Primary,
        MprogOrder::Append,
        prog(&c, "nk_redirect"),
    )
    .unwrap();
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let t = one_tx(&mut n);
    assert_eq!((t.dev, t.id, &t.frame), (podnic, id, &f));
    assert_eq!(n.dp.hook_count(nk, Hook::Netkit, 7).packets, 1);
    // An ifindex no device of the pod namespace has: dropped after the
    // verdict. (ifindexes are per namespace: host's eth1 is 3, as the pod's
    // eth9 is, so it can no longer stand for "a name the pod lacks".)
    set(&c, "cfg", 1, &99u32.to_le_bytes());
    let id = n.dp.inject(n.nic1, &f, 0).unwrap();
    n.dp.run();
    let last = n.dp.drops().last().unwrap().clone();
    assert_eq!((last.id, last.reason), (id, "NOT_SPECIFIED"));
    assert_balanced(&n.dp);
}

#[test]
fn netkit_peer_side_redirect_to_a_host_nic() {
    let Some(c) = load() else { return };
    // The pod transmits (inject on the peer = its receive; use lo of the pod? no:)
    // a frame injected on nk1 enters the pod's stack; instead the peer-side chain
    // runs when the pod's nk1 transmits: tc egress redirect from a pod veth.
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let nk =
        n.dp.add_device(n.host, DeviceSpec::netkit("nk0", Some(pod), "nk1"))
            .unwrap();
    let peer = n.dp.peer(nk).unwrap();
    let pv =
        n.dp.add_device(pod, DeviceSpec::nic("podnic", MAC3, 1))
            .unwrap();
    // pod NIC ingress redirects (egress) to nk1: nk1 transmits, its chain (the
    // PEER side, attached through the primary) redirects to eth1 in the host.
    cfg(&c, ifx(&n, peer));
    n.dp.attach_tc(
        pv,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    n.dp.attach_netkit(
        nk,
        NetkitSide::Peer,
        MprogOrder::Append,
        prog(&c, "nk_pass"),
    )
    .unwrap();
    match n.dp.attach_netkit(
        peer,
        NetkitSide::Peer,
        MprogOrder::Append,
        prog(&c, "nk_drop"),
    ) {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, EACCES),
        r => panic!("{r:?}"),
    }
    match n.dp.attach_netkit(
        n.nic1,
        NetkitSide::Primary,
        MprogOrder::Append,
        prog(&c, "nk_drop"),
    ) {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, ENXIO),
        r => panic!("{r:?}"),
    }
    addr(&mut n.dp, nk);
    let f = udp([0; 6], MAC1, 1000);
    let id = n.dp.inject(pv, &f, 0).unwrap();
    n.dp.run();
    let d = n.dp.take_delivered();
    assert_eq!(
        (d.len(), d[0].dev, d[0].id),
        (1, nk, id),
        "PASS from the peer lands on the primary"
    );
    assert_eq!(n.dp.hook_count(peer, Hook::Netkit, 0).packets, 1);
    assert_balanced(&n.dp);
}

#[test]
fn netkit_scrub_clears_mark_across_namespaces() {
    let Some(c) = load() else { return };
    let (mut n, nk, peer) = netkit_net(&c, NetkitPolicy::Pass);
    // tcx on eth0 sets mark 0x77 and returns NEXT; cls redirects to nk0.
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        TcAttach::Tcx(MprogOrder::Append),
        prog(&c, "tc_unspec"),
    )
    .unwrap();
    n.dp.attach_tc(peer, TcDirection::Ingress, cls(1), prog(&c, "tc_record"))
        .unwrap();
    n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
    assert_eq!(res(&c, 4), 0, "mark scrubbed (NETKIT_SCRUB_DEFAULT)");
    assert_eq!(res(&c, 5), ifx(&n, peer) as u64);
    let _ = nk;
}

// ---- trace ----------------------------------------------------------------

#[test]
fn trace_follows_one_id_through_a_redirect() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.dp.set_trace(true);
    cfg(&c, ifx(&n, n.nic2));
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_pass"), XdpMode::Native)
        .unwrap();
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    n.dp.capture(n.nic1, Hook::TcIngress);
    let id = n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
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
            let ifx = |d: DevId| dp.ifindex(d).unwrap();
            cfg(&c, ifx(devs[target]));
            set(&c, "devmap", 0, &[&ifx(nic2).to_le_bytes()[..], &[0, 0, 0, 0]].concat());
            set(&c, "devhash", 1, &ifx(nic1).to_le_bytes());
            set(&c, "devhash", 2, &ifx(veth).to_le_bytes());
            set(&c, "cpus", 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
            set(&c, "xsks", 0, &7u32.to_le_bytes());
            for (d, p, generic) in xdp {
                let mode = if generic { XdpMode::Generic } else { XdpMode::Native };
                let _ = dp.attach_xdp(devs[d], prog(&c, XDP_PROGS[p]), mode);
            }
            for (i, (d, ingress, p)) in tc.into_iter().enumerate() {
                let dir = if ingress { TcDirection::Ingress } else { TcDirection::Egress };
                let _ = dp.attach_tc(devs[d], dir, TcAttach::ClsBpf { prio: i as u16 + 1, handle: 1, classid: 0 }, prog(&c, TC_PROGS[p]));
            }
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
            let cons = dp.conservation();
            prop_assert_eq!(cons.in_flight, 0);
            prop_assert!(cons.balanced(), "{:?}", cons);
            prop_assert_eq!(cons.input, traffic.len() as u64);
            // Every drop is counted by reason, and the counters add up.
            let by_reason: u64 = dp.counters().drops.values().sum();
            prop_assert_eq!(by_reason, cons.dropped);
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
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
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
    n.dp.attach_tc(
        n.nic1,
        TcDirection::Ingress,
        cls(1),
        prog(&c, "tc_redirect_egress"),
    )
    .unwrap();
    n.dp.inject(n.nic1, &tcp(1000, 1, 100), 0).unwrap();
    n.dp.inject(n.nic1, &tcp(1300, 2, 100), 0).unwrap();
    n.dp.run();
    assert_eq!(n.dp.hook_count(n.nic1, Hook::TcIngress, 7).packets, 2);
}

#[test]
fn xdp_tx_ping_pong_between_veth_peers_is_stopped() {
    let Some(c) = load() else { return };
    let mut n = net();
    let pod = n.dp.add_netns("pod").unwrap();
    let veth =
        n.dp.add_device(n.host, DeviceSpec::veth("veth0", Some(pod), "eth0"))
            .unwrap();
    let peer = n.dp.peer(veth).unwrap();
    cfg(&c, ifx(&n, veth));
    n.dp.attach_xdp(n.nic1, prog(&c, "xdp_redirect_ifindex"), XdpMode::Native)
        .unwrap();
    n.dp.attach_xdp(veth, prog(&c, "xdp_tx"), XdpMode::Native)
        .unwrap();
    n.dp.attach_xdp(peer, prog(&c, "xdp_tx"), XdpMode::Native)
        .unwrap();
    n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
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
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(1), prog(&c, "tc_fib"))
        .unwrap();
    n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
    // No neighbour yet: BPF_FIB_LKUP_RET_NO_NEIGH with the egress device.
    assert_eq!((res(&c, 0), res(&c, 1)), (7, nic2 as u64));
    n.dp.stack_mut(n.host)
        .unwrap()
        .add_neighbour(nic2, "10.1.0.9".parse().unwrap(), [2, 0, 0, 0, 0, 0x42])
        .unwrap();
    n.dp.inject(n.nic1, &udp(MAC1, MAC3, 1000), 0).unwrap();
    n.dp.run();
    assert_eq!((res(&c, 0), res(&c, 1), res(&c, 2)), (0, nic2 as u64, 0x42));
}

// ---- multi-worker mode (tests/bpf/workers.c) ----------------------------------

mod workers {
    use super::*;
    use proptest::prelude::*;
    use skiff_maps::Map;
    use skiff_net::datapath::nic::rss;

    fn workers_object() -> Option<&'static [u8]> {
        static OBJ: OnceLock<Option<Vec<u8>>> = OnceLock::new();
        OBJ.get_or_init(|| common::bpf_object("workers")).as_deref()
    }

    fn load_obj(obj: Option<&[u8]>, cpus: usize) -> Option<Collection> {
        let Some(obj) = obj else {
            eprintln!("skipping: clang-19 not available or failed for tests/bpf/*.c");
            return None;
        };
        let o = skiff_object::Object::parse(obj).expect("parse");
        let opts = LoadOptions {
            possible_cpus: cpus,
            // as `load`: unverified, like the objects' faulty programs need
            verify: false,
            ..skiff_net::load_options()
        };
        Some(Collection::load(&o, &opts).expect("load"))
    }

    fn load_w(cpus: usize) -> Option<Collection> {
        load_obj(workers_object(), cpus)
    }

    fn wset(c: &Collection, map: &str, key: u32, value: &[u8]) {
        c.map(map)
            .unwrap()
            .sys_update(&key.to_le_bytes(), value, 0)
            .expect("map update");
    }

    /// The per-CPU values of `pcpu[slot]`, through the syscall lookup.
    fn percpu(c: &Collection, slot: u32) -> Vec<u64> {
        match c.map("pcpu").unwrap().sys_lookup(&slot.to_le_bytes()) {
            Ok(MapValue::PerCpu(v)) => v
                .iter()
                .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
                .collect(),
            r => panic!("pcpu[{slot}]: {r:?}"),
        }
    }

    /// The CPU + 1 stage `stage` saw the packet from UDP port `sport` on (0: none).
    fn seen(c: &Collection, sport: u16, stage: u32) -> u32 {
        let k = sport as u32 * 4 + stage;
        match c.map("seen").unwrap().sys_lookup(&k.to_le_bytes()) {
            Ok(MapValue::Single(v)) => u32::from_le_bytes(v[..4].try_into().unwrap()),
            _ => 0,
        }
    }

    fn queue_of(f: &[u8], n: u32) -> u32 {
        rss::queue_for(rss::rss_hash(f).expect("rss hash").0, n)
    }

    /// A host with eth0 (2 rx queues, 10.0.0.2/24), `workers` workers on `cpus` CPUs.
    fn wnet(workers: usize, cpus: usize) -> (Datapath, NsId, DevId) {
        let mut dp = Datapath::new(DatapathOptions {
            workers,
            possible_cpus: cpus,
            ..Default::default()
        })
        .unwrap();
        let host = dp.add_netns("host").unwrap();
        let nic = dp
            .add_device(host, DeviceSpec::nic("eth0", MAC1, 2))
            .unwrap();
        addr(&mut dp, nic);
        (dp, host, nic)
    }

    const PORTS: std::ops::Range<u16> = 1000..1032;

    /// (UDP source port, frame, rx queue of 2).
    type Flow = (u16, Vec<u8>, u32);

    /// The frames, their rx queue (of 2) and how many land on each queue.
    fn traffic() -> (Vec<Flow>, [u64; 2]) {
        let mut per_q = [0u64; 2];
        let v: Vec<_> = PORTS
            .map(|p| {
                let f = udp(MAC1, MAC3, p);
                let q = queue_of(&f, 2);
                per_q[q as usize] += 1;
                (p, f, q)
            })
            .collect();
        (v, per_q)
    }

    #[test]
    fn rss_queues_have_their_own_worker_and_per_cpu_values() {
        let Some(c) = load_w(2) else { return };
        let (mut dp, _, nic) = wnet(2, 2);
        dp.attach_xdp(nic, prog(&c, "w_xdp_count"), XdpMode::Native)
            .unwrap();
        dp.set_trace(true);
        let (frames, per_q) = traffic();
        assert!(
            per_q[0] > 0 && per_q[1] > 0,
            "RSS spreads the flows: {per_q:?}"
        );
        let mut ids = std::collections::HashMap::new();
        for (i, (p, f, q)) in frames.iter().enumerate() {
            let id = dp.inject(nic, f, i as u64 * 1000).unwrap();
            ids.insert(id, (*p, *q));
        }
        dp.run();
        let len = frames[0].1.len() as u64;
        assert_eq!(percpu(&c, 0), vec![per_q[0], per_q[1]]);
        assert_eq!(percpu(&c, 1), vec![per_q[0] * len, per_q[1] * len]);
        // The same through Map::dump.
        let dump = Map::dump(c.map("pcpu").unwrap());
        let (_, v0) = dump
            .iter()
            .find(|(k, _)| k[..] == 0u32.to_le_bytes())
            .unwrap();
        assert_eq!(
            v0,
            &MapValue::PerCpu(vec![
                per_q[0].to_le_bytes().to_vec(),
                per_q[1].to_le_bytes().to_vec()
            ])
        );
        for (p, _, q) in &frames {
            assert_eq!(seen(&c, *p, 0), q + 1, "port {p}");
        }
        // The trace shows the worker of every hook each packet passed.
        let tr = dp.take_trace();
        let xdp: Vec<_> = tr.iter().filter(|e| e.func == "xdp").collect();
        assert_eq!(xdp.len(), frames.len());
        for e in &tr {
            let (p, q) = ids[&e.skb];
            assert_eq!(e.cpu, q, "port {p}: {}", e.to_text());
        }
        assert_eq!(dp.take_delivered().len(), frames.len());
        // Each worker took its queue's packets.
        assert_eq!(dp.cpu_polled(), &[per_q[0], per_q[1]]);
        assert_eq!(dp.counters().cpu_polled, vec![per_q[0], per_q[1]]);
        assert_balanced(&dp);
    }

    /// One run of `rounds` x the 32 flows through eth0 (w_xdp_count, then the
    /// stack) with two workers, on OS threads or in turn: its counters.
    fn two_worker_run(
        threads: bool,
        rounds: u64,
    ) -> Option<(Vec<u64>, Vec<u64>, String, Vec<u64>)> {
        let c = load_w(2)?;
        let mut dp = Datapath::new(DatapathOptions {
            workers: 2,
            possible_cpus: 2,
            threads,
            ..Default::default()
        })
        .unwrap();
        let host = dp.add_netns("host").unwrap();
        let nic = dp
            .add_device(host, DeviceSpec::nic("eth0", MAC1, 2))
            .unwrap();
        addr(&mut dp, nic);
        dp.attach_xdp(nic, prog(&c, "w_xdp_count"), XdpMode::Native)
            .unwrap();
        let (frames, _) = traffic();
        let mut ts = 0;
        for _ in 0..rounds {
            for (_, f, _) in &frames {
                ts += 1000;
                dp.inject(nic, f, ts).unwrap();
            }
            dp.run();
        }
        dp.finish();
        assert_balanced(&dp);
        let report = serde_json::to_string(&(dp.counters().devices, dp.counters().drops)).unwrap();
        Some((percpu(&c, 0), percpu(&c, 1), report, dp.cpu_polled()))
    }

    #[test]
    fn threads_give_the_deterministic_run_s_counters() {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if cpus < 2 {
            eprintln!("skipping: --threads with 2 workers needs 2 CPUs, this machine has {cpus}");
            return;
        }
        let Some(det) = two_worker_run(false, 40) else {
            return;
        };
        let Some(thr) = two_worker_run(true, 40) else {
            return;
        };
        let (_, per_q) = traffic();
        assert_eq!(det.0, vec![per_q[0] * 40, per_q[1] * 40]);
        assert_eq!(thr, det);
    }

    #[test]
    fn threads_are_bounded_by_the_machine_s_cpus() {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let r = Datapath::new(DatapathOptions {
            workers: cpus + 1,
            possible_cpus: cpus + 1,
            threads: true,
            ..Default::default()
        });
        match r {
            Err(DatapathError::Errno { errno, msg }) => {
                assert_eq!(errno, EINVAL);
                assert!(msg.contains("at most one worker thread per CPU"), "{msg}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("{} workers on {cpus} CPUs accepted", cpus + 1),
        }
        let r = Datapath::new(DatapathOptions {
            workers: 1,
            possible_cpus: NR_CPUS + 1,
            ..Default::default()
        });
        assert!(matches!(r, Err(DatapathError::Errno { errno: EINVAL, .. })));
    }

    #[test]
    fn one_worker_serves_every_queue_on_cpu_0() {
        let Some(c) = load_w(2) else { return };
        let (mut dp, _, nic) = wnet(1, 2);
        dp.attach_xdp(nic, prog(&c, "w_xdp_count"), XdpMode::Native)
            .unwrap();
        let (frames, _) = traffic();
        for (i, (_, f, _)) in frames.iter().enumerate() {
            dp.inject(nic, f, i as u64 * 1000).unwrap();
        }
        dp.run();
        assert_eq!(percpu(&c, 0), vec![frames.len() as u64, 0]);
        for (p, _, _) in &frames {
            assert_eq!(seen(&c, *p, 0), 1);
        }
        assert_balanced(&dp);
    }

    #[test]
    fn a_packet_keeps_its_cpu_through_tc_redirect_and_veth() {
        let Some(c) = load_w(2) else { return };
        let (mut dp, _, nic) = wnet(2, 2);
        let pod = dp.add_netns("pod").unwrap();
        let veth = dp
            .add_device(
                dp.dev_netns(nic).unwrap(),
                DeviceSpec::veth("veth0", Some(pod), "eth0"),
            )
            .unwrap();
        let peer = dp.peer(veth).unwrap();
        wset(&c, "wcfg", 1, &dp.ifindex(veth).unwrap().to_le_bytes());
        dp.attach_xdp(nic, prog(&c, "w_xdp_count"), XdpMode::Native)
            .unwrap();
        let cls = TcAttach::ClsBpf {
            prio: 1,
            handle: 1,
            classid: 0,
        };
        dp.attach_tc(nic, TcDirection::Ingress, cls, prog(&c, "w_tc_redirect"))
            .unwrap();
        // The peer runs native XDP: veth_xmit puts the skb in its ring (NAPI).
        dp.attach_xdp(peer, prog(&c, "w_xdp_peer"), XdpMode::Native)
            .unwrap();
        dp.attach_tc(peer, TcDirection::Ingress, cls, prog(&c, "w_tc_peer"))
            .unwrap();
        let (frames, per_q) = traffic();
        for (i, (_, f, _)) in frames.iter().enumerate() {
            dp.inject(nic, f, i as u64 * 1000).unwrap();
        }
        dp.run();
        for (p, _, q) in &frames {
            for stage in 0..4 {
                assert_eq!(seen(&c, *p, stage), q + 1, "port {p} stage {stage}");
            }
        }
        assert_eq!(percpu(&c, 2), vec![per_q[0], per_q[1]]);
        assert_eq!(percpu(&c, 3), vec![2 * per_q[0], 2 * per_q[1]]);
        // NIC queue, then the peer's ring on the same CPU.
        assert_eq!(dp.cpu_polled(), &[2 * per_q[0], 2 * per_q[1]]);
        assert_eq!(
            dp.counters().drops.get("TC_INGRESS"),
            Some(&(frames.len() as u64))
        );
        assert_balanced(&dp);
    }

    #[test]
    fn cpumap_redirect_lands_on_the_target_cpus_worker() {
        let Some(c) = load_w(2) else { return };
        let (mut dp, _, nic) = wnet(2, 2);
        dp.set_trace(true);
        wset(&c, "wcpus", 1, &[64, 0, 0, 0, 0, 0, 0, 0]);
        wset(&c, "wcfg", 0, &1u32.to_le_bytes());
        dp.attach_xdp(nic, prog(&c, "w_xdp_cpumap"), XdpMode::Native)
            .unwrap();
        let cls = TcAttach::ClsBpf {
            prio: 1,
            handle: 1,
            classid: 0,
        };
        dp.attach_tc(nic, TcDirection::Ingress, cls, prog(&c, "w_tc_count"))
            .unwrap();
        let (frames, per_q) = traffic();
        for (i, (_, f, _)) in frames.iter().enumerate() {
            dp.inject(nic, f, i as u64 * 1000).unwrap();
        }
        dp.run();
        for (p, _, q) in &frames {
            assert_eq!(
                seen(&c, *p, 0),
                q + 1,
                "port {p}: XDP on its queue's worker"
            );
            assert_eq!(seen(&c, *p, 1), 2, "port {p}: TC on CPU 1 after CPUMAP");
        }
        assert_eq!(percpu(&c, 0), vec![per_q[0], per_q[1]]);
        assert_eq!(percpu(&c, 2), vec![0, frames.len() as u64]);
        let tr = dp.take_trace();
        let stack: Vec<u32> = tr
            .iter()
            .filter(|e| e.func == "stack")
            .map(|e| e.cpu)
            .collect();
        assert_eq!(stack, vec![1; frames.len()]);
        assert_eq!(dp.take_delivered().len(), frames.len());
        // CPU 1 took its NIC queue's packets and every packet from the CPUMAP queue.
        assert_eq!(dp.cpu_polled(), &[per_q[0], per_q[1] + frames.len() as u64]);
        assert_balanced(&dp);
    }

    #[test]
    fn multi_worker_runs_are_reproducible() {
        let run = || {
            let c = load_w(2)?;
            let (mut dp, _, nic) = wnet(2, 2);
            dp.set_trace(true);
            wset(&c, "wcpus", 0, &[64, 0, 0, 0, 0, 0, 0, 0]);
            dp.attach_xdp(nic, prog(&c, "w_xdp_cpumap"), XdpMode::Native)
                .unwrap();
            let (frames, _) = traffic();
            for (i, (_, f, _)) in frames.iter().enumerate() {
                dp.inject(nic, f, i as u64 * 1000).unwrap();
            }
            dp.run();
            Some(
                dp.take_trace()
                    .iter()
                    .map(|e| e.to_json())
                    .collect::<Vec<_>>(),
            )
        };
        let Some(a) = run() else { return };
        let b = run().unwrap();
        assert!(a.len() > PORTS.len(), "{}", a.len());
        assert_eq!(a, b);
    }

    #[test]
    fn workers_must_fit_the_possible_cpus() {
        let w = |workers, possible_cpus| {
            Datapath::new(DatapathOptions {
                workers,
                possible_cpus,
                ..Default::default()
            })
            .err()
        };
        assert!(
            matches!(w(3, 2), Some(DatapathError::NotSupported(m)) if m.contains("3 workers on 2 possible CPUs"))
        );
        assert!(matches!(
            w(0, 2),
            Some(DatapathError::Errno { errno: EINVAL, .. })
        ));
        assert!(w(4, 4).is_none());
    }

    const XDP_PROGS: &[&str] = &[
        "xdp_pass",
        "xdp_drop",
        "xdp_tx",
        "xdp_redirect_ifindex",
        "xdp_redirect_devmap",
        "xdp_broadcast",
        "xdp_cpumap",
        "xdp_xsk",
    ];
    const TC_PROGS: &[&str] = &[
        "tc_ok",
        "tc_shot",
        "tc_stolen",
        "tc_redirect_egress",
        "tc_redirect_ingress",
        "tc_redirect_peer",
        "tc_redirect_neigh",
        "tc_clone",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
        #[test]
        fn conservation_with_1_to_4_workers(
            workers in 1usize..=4,
            xdp in proptest::collection::vec((0usize..4, 0usize..XDP_PROGS.len(), any::<bool>()), 0..4),
            tc in proptest::collection::vec((0usize..4, any::<bool>(), 0usize..TC_PROGS.len()), 0..4),
            target in 0usize..4,
            with_cpumap in any::<bool>(),
            traffic in proptest::collection::vec((0usize..4, 0u16..2000, any::<bool>()), 1..48),
        ) {
            let Some(c) = load_obj(object(), 4) else { return Ok(()) };
            let mut dp = Datapath::new(DatapathOptions { workers, possible_cpus: 4, ..Default::default() }).unwrap();
            let host = dp.add_netns("host").unwrap();
            let pod = dp.add_netns("pod").unwrap();
            let nic1 = dp.add_device(host, DeviceSpec::nic("eth0", MAC1, 4)).unwrap();
            let nic2 = dp.add_device(host, DeviceSpec::nic("eth1", MAC2, 2)).unwrap();
            let veth = dp.add_device(host, DeviceSpec::veth("veth0", Some(pod), "eth0")).unwrap();
            addr(&mut dp, nic1);
            let devs = [nic1, nic2, veth, dp.peer(veth).unwrap()];
            let ifx = |d: DevId| dp.ifindex(d).unwrap();
            cfg(&c, ifx(devs[target]));
            set(&c, "devmap", 0, &[&ifx(nic2).to_le_bytes()[..], &[0, 0, 0, 0]].concat());
            set(&c, "devhash", 1, &ifx(nic1).to_le_bytes());
            set(&c, "devhash", 2, &ifx(veth).to_le_bytes());
            // xdp_cpumap redirects to CPU 1 (key 1), when the entry exists.
            if with_cpumap {
                set(&c, "cpus", 1, &[64, 0, 0, 0, 0, 0, 0, 0]);
            }
            set(&c, "xsks", 0, &7u32.to_le_bytes());
            for (d, p, generic) in xdp {
                let mode = if generic { XdpMode::Generic } else { XdpMode::Native };
                let _ = dp.attach_xdp(devs[d], prog(&c, XDP_PROGS[p]), mode);
            }
            for (i, (d, ingress, p)) in tc.into_iter().enumerate() {
                let dir = if ingress { TcDirection::Ingress } else { TcDirection::Egress };
                let _ = dp.attach_tc(devs[d], dir, TcAttach::ClsBpf { prio: i as u16 + 1, handle: 1, classid: 0 }, prog(&c, TC_PROGS[p]));
            }
            dp.set_trace(true);
            let mut first_cpu = std::collections::HashMap::new();
            for (i, (d, port, bcast)) in traffic.iter().enumerate() {
                let dst = if *bcast { [0xff; 6] } else { MAC1 };
                let f = udp(dst, MAC3, *port);
                let id = dp.inject(devs[*d], &f, i as u64 * 1000).unwrap();
                // From the wire: the rx queue's worker; injected elsewhere: CPU 0.
                let cpu = match *d {
                    0 => queue_of(&f, 4) as usize % workers,
                    1 => queue_of(&f, 2) as usize % workers,
                    _ => 0,
                };
                first_cpu.insert(id, cpu as u32);
                if i % 5 == 0 {
                    dp.run();
                }
            }
            dp.finish();
            let cons = dp.conservation();
            prop_assert_eq!(cons.in_flight, 0);
            prop_assert!(cons.balanced(), "{:?}", cons);
            prop_assert_eq!(cons.input, traffic.len() as u64);
            let by_reason: u64 = dp.counters().drops.values().sum();
            prop_assert_eq!(by_reason, cons.dropped);
            // Every hook ran on a CPU that exists; each packet's first hook on
            // the CPU it came in on.
            for e in dp.take_trace() {
                prop_assert!((e.cpu as usize) < 4, "{}", e.to_text());
                if let Some(cpu) = first_cpu.remove(&e.skb) {
                    prop_assert_eq!(e.cpu, cpu, "{}", e.to_text());
                }
            }
            prop_assert_eq!(dp.cpu_polled().len(), 4);
            // Only CPUs with a worker poll NIC queues; CPU 1 also runs CPUMAP.
            for cpu in workers.max(2)..4 {
                prop_assert_eq!(dp.cpu_polled()[cpu], 0);
            }
        }
    }
}
