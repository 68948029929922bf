//! The datapath with real eBPF programs (tests/bpf/datapath.c), the XDP hook:
//! for every verdict, where the packet goes and what it looks like.
//! Needs clang-19; skips with a message without it.

mod common;

use skiff_net::datapath::*;

use common::datapath::*;

// ---- XDP -------------------------------------------------------------------

#[test]
fn xdp_pass_goes_to_the_stack() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.xdp(n.nic1, &c, "xdp_pass");
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
        n.send(n.nic1, &udp(MAC1, MAC3, 1000));
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
    n.xdp(n.nic1, &c, "xdp_oob");
    n.send(n.nic1, &udp(MAC1, MAC3, 1000));
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
    n.xdp(n.nic1, &c, "xdp_tx");
    let f = udp(MAC1, MAC3, 1000);
    let id = n.send(n.nic1, &f);
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
    n.xdp(n.nic1, &c, "xdp_redirect_ifindex");
    let f = udp(MAC1, MAC3, 1000);
    let id = n.send(n.nic1, &f);
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
    n.xdp(n.nic1, &c2, "xdp_redirect_devmap");
    n.send(n.nic1, &f);
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
    n.xdp(n.nic1, &c, "xdp_broadcast");
    let f = udp(MAC1, MAC3, 1000);
    n.send(n.nic1, &f);
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
    n.xdp(n.nic1, &c, "xdp_cpumap");
    let f = udp(MAC1, MAC3, 1000);
    let id = n.send(n.nic1, &f);
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
    n.xdp(n.nic1, &c, "xdp_xsk");
    let f = udp(MAC1, MAC3, 1000);
    let id = n.send(n.nic1, &f);
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
    let (_, peer) = n.xdp_redirect_to_veth(&c);
    let f = udp(MAC1, MAC3, 1000);
    n.send(n.nic1, &f);
    assert_eq!(
        drops(&n.dp),
        vec![("veth0".into(), "SKIFF_XDP_REDIRECT_ERROR", "xmit".into())]
    );
    // With XDP on the peer the frame arrives there (veth_xdp_rcv) and passes on.
    n.xdp(peer, &c, "xdp_pass");
    addr(&mut n.dp, peer);
    let f = udp(n.dp.mac(peer).unwrap(), MAC3, 1000);
    let id = n.send(n.nic1, &f);
    let d = n.dp.take_delivered();
    assert_eq!((d.len(), d[0].dev, d[0].id), (1, peer, id));
    assert_eq!(n.dp.hook_count(peer, Hook::Xdp, 2).packets, 1);
    assert_balanced(&n.dp);
}

#[test]
fn xdp_metadata_reaches_tc() {
    let Some(c) = load() else { return };
    let mut n = net();
    n.xdp(n.nic1, &c, "xdp_meta");
    n.tc(n.nic1, TcDirection::Ingress, &c, "tc_read_meta");
    n.send(n.nic1, &udp(MAC1, MAC3, 1000));
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
    n.xdp(n.nic1, &c, "xdp_pass");
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
    n.send(n.nic2, &udp(MAC2, MAC3, 1000));
    assert_eq!(
        drops(&n.dp),
        vec![("eth1".into(), "XDP", "xdp-generic".into())]
    );
}
