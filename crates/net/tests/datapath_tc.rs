//! The datapath with real eBPF programs (tests/bpf/datapath.c), the TC hooks:
//! for every verdict, where the packet goes and what it looks like; the qdiscs
//! a device starts with.
//! Needs clang-19; skips with a message without it.

mod common;

use skiff_net::datapath::*;

use common::datapath::*;

// ---- TC --------------------------------------------------------------------

#[test]
fn tc_ingress_ok_shot_stolen() {
    let Some(c) = load() else { return };
    let f = udp(MAC1, MAC3, 1000);
    let mut n = net();
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_ok");
    n.send(n.nic1, &f);
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].by), (1, "stack"));
    assert_eq!(n.dp.hook_count(n.nic1, Hook::TcIngress, 0).packets, 1);

    let mut n = net();
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_shot");
    n.send(n.nic1, &f);
    assert_eq!(
        drops(&n.dp),
        vec![("eth0".into(), "TC_INGRESS", "tc-ingress".into())]
    );
    assert_eq!(
        n.dp.drops().next().unwrap().prog.as_deref(),
        Some("tc_shot")
    );

    let mut n = net();
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_stolen");
    n.send(n.nic1, &f);
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
    n.tcx(n.nic1, TcDirection::Ingress, &c, "tc_unspec");
    n.dp.attach_tc(n.nic1, TcDirection::Ingress, cls(2), prog(&c, "tc_record"))
        .unwrap();
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_pipe");
    n.send(n.nic1, &f);
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
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
    let id = n.send(n.nic1, &f);
    let t = one_tx(&mut n);
    assert_eq!((t.dev, t.id, &t.frame), (n.nic2, id, &f));
    assert_eq!(n.dp.hook_count(n.nic1, Hook::TcIngress, 7).packets, 1);

    n.tc(n.nic2, TcDirection::Egress, &c, "tc_shot");
    n.send(n.nic1, &f);
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
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
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
    let veth = n.pod_veth();
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
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
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
    let veth = n.pod_veth();
    let _peer = n.dp.peer(veth).unwrap();
    cfg(&c, ifx(&n, veth));
    addr(&mut n.dp, veth);
    let f = udp(n.dp.mac(veth).unwrap(), MAC3, 1000);
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_ingress");
    let id = n.send(n.nic1, &f);
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id, &d[0].frame), (1, veth, id, &f));

    // bpf_redirect_peer(veth0): straight into the pod's end, its tc ingress runs,
    // the host end never sees it.
    let c = load().unwrap();
    let mut n = net();
    let veth = n.pod_veth();
    let peer = n.dp.peer(veth).unwrap();
    cfg(&c, ifx(&n, veth));
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_peer");
    n.tc(peer, TcDirection::Ingress, &c, "tc_record");
    addr(&mut n.dp, peer);
    let f = udp(MAC1, MAC3, 1000);
    let id = n.send(n.nic1, &f);
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
    let veth = n.pod_veth();
    cfg(&c, ifx(&n, veth));
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_egress");
    cfg(&c, ifx(&n, n.nic2));
    n.tc(n.nic2, TcDirection::Egress, &c, "tc_redirect_peer");
    n.send(n.nic1, &f);
    assert_eq!(
        drops(&n.dp),
        vec![("eth1".into(), "NOT_SPECIFIED", "tc-egress".into())]
    );

    // bpf_clone_redirect to eth1, then TC_ACT_OK: a clone out of eth1 (new id),
    // the original to the stack.
    let c = load().unwrap();
    let mut n = net();
    cfg(&c, ifx(&n, n.nic2));
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_clone");
    let id = n.send(n.nic1, &f);
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
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_redirect_neigh");
    let id = n.send(n.nic1, &f);
    n.dp.finish();
    let t = n.dp.take_transmitted();
    assert_eq!((t.len(), t[0].dev, t[0].id), (1, n.nic2, id));
    let mut want = f.clone();
    want[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    want[6..12].copy_from_slice(&MAC2);
    assert_eq!(t[0].frame, want);
    assert_balanced(&n.dp);
}
