//! The datapath with real eBPF programs (tests/bpf/datapath.c), netkit: the
//! default policies, the programs' verdicts on either side, scrubbing.
//! Needs clang-19; skips with a message without it.

mod common;

use skiff_net::datapath::*;
use skiff_vm::Collection;

use common::datapath::*;

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
    n.tc(n.nic1, TcDirection::Ingress, c, "tc_redirect_egress");
    (n, nk, peer)
}

#[test]
fn netkit_default_policies() {
    let Some(c) = load() else { return };
    let f = udp([0; 6], MAC3, 1000);
    let (mut n, nk, peer) = netkit_net(&c, NetkitPolicy::Pass);
    let id = n.send(n.nic1, &f);
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id, &d[0].frame), (1, peer, id, &f));
    assert_eq!(n.dp.stats(nk).unwrap().tx_packets, 1);
    assert_eq!(n.dp.stats(peer).unwrap().rx_packets, 1);

    let c = load().unwrap();
    let (mut n, nk, _) = netkit_net(&c, NetkitPolicy::Drop);
    n.send(n.nic1, &f);
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
        n.send(n.nic1, &f);
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
    let id = n.send(n.nic1, &f);
    let t = one_tx(&mut n);
    assert_eq!((t.dev, t.id, &t.frame), (podnic, id, &f));
    assert_eq!(n.dp.hook_count(nk, Hook::Netkit, 7).packets, 1);
    // An ifindex no device of the pod namespace has: dropped after the
    // verdict. (ifindexes are per namespace: host's eth1 is 3, as the pod's
    // eth9 is, so it can no longer stand for "a name the pod lacks".)
    set(&c, "cfg", 1, &99u32.to_le_bytes());
    let id = n.send(n.nic1, &f);
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
    n.tc(pv, TcDirection::Ingress, &c, "tc_redirect_egress");
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
    let id = n.send(pv, &f);
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
    n.tcx(n.nic1, TcDirection::Ingress, &c, "tc_unspec");
    n.tc(peer, TcDirection::Ingress, &c, "tc_record");
    n.send(n.nic1, &udp(MAC1, MAC3, 1000));
    assert_eq!(res(&c, 4), 0, "mark scrubbed (NETKIT_SCRUB_DEFAULT)");
    assert_eq!(res(&c, 5), ifx(&n, peer) as u64);
    let _ = nk;
}
