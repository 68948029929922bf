//! The skiff side of the kernel differential test (tests/datapath_kernel.rs)
//! alone, without root: what that test relies on, and what its scenarios
//! found skiff doing differently, kept as tests of their own. Needs clang-19
//! for the first; skips with a message without it.

mod common;

use skiff_net::datapath::*;
use skiff_vm::Collection;

use common::datapath_kernel::*;

/// The captures of frames leaving a device (the Xmit hook's exit), taken.
fn transmitted(s: &mut Skiff) -> Vec<CaptureRecord> {
    s.dp.take_captures()
        .into_iter()
        .filter(|c| c.point == CapturePoint::Exit && c.hook == Hook::Xmit)
        .collect()
}

/// Without root: what the kernel test relies on in skiff alone — a frame
/// injected on a veth end that runs native XDP passes that program (as a frame
/// from the peer's xmit does in veth_poll), and one without XDP does not.
#[test]
fn inject_on_a_veth_runs_its_native_xdp() {
    let dir = TempDir(std::env::temp_dir().join(format!("skiff-dpk-u-{}", std::process::id())));
    if std::fs::create_dir_all(&dir.0).is_err() {
        eprintln!("skipping: cannot create {}", dir.0.display());
        return;
    }
    let Some(objs) = compile(&dir.0, IFX_R1) else {
        eprintln!("skipping: clang-19 not available or failed for tests/bpf/datapath_kernel.c");
        return;
    };
    let o = skiff_object::Object::parse(&objs["XDP_BLOCKLIST"]).expect("parse object");
    let c = Collection::load(&o, &skiff_net::load_options()).expect("load object");
    let mut s = build_skiff();
    s.dp.attach_xdp(s.r0, c.programs[0].clone(), XdpMode::Native)
        .unwrap();
    let pass = udp(A0_IP, NEXT_IP, 1, 7002, 64, b"x");
    let drop = udp([10, 1, 0, 20], NEXT_IP, 1, 7002, 64, b"x");
    s.dp.inject(s.r0, &pass, 1).unwrap();
    s.dp.inject(s.r0, &drop, 2).unwrap();
    s.dp.run();
    assert_eq!(s.dp.hook_count(s.r0, Hook::Xdp, 2).packets, 1);
    assert_eq!(s.dp.hook_count(s.r0, Hook::Xdp, 1).packets, 1);
    assert_eq!(s.dp.stats(s.r0).unwrap().rx_packets, 2);
    let out = transmitted(&mut s);
    assert_eq!(out.len(), 1, "only the passed frame is forwarded");
    assert_eq!((out[0].ifindex, out[0].bytes[22]), (IFX_R1, 63));
    let c = s.dp.conservation();
    // One XDP_DROP at r0; the forwarded one ends in B (not its MAC: OTHERHOST).
    assert_eq!((c.input, c.dropped, c.in_flight), (2, 2, 0));
    let reasons: Vec<_> = s.dp.drops().map(|d| (d.iface.as_str(), d.reason)).collect();
    assert_eq!(reasons, [("r0", "SKIFF_XDP_DROP"), ("b0", "OTHERHOST")]);
}

/// Without root: `set_mtu` reaches the namespace's stack (the kernel test's
/// "fragment" scenario found skiff forwarding past a lowered MTU): a DF frame
/// larger than r1's new MTU gets ICMP fragmentation needed with that MTU, a
/// non-DF one leaves in fragments that fit.
#[test]
fn set_mtu_reaches_the_stack() {
    let mut s = build_skiff();
    s.dp.set_mtu(s.r1, 1000).unwrap();
    let df = udp(A0_IP, NEXT_IP, 1, 7002, 64, &long_marker("mtu", 0, 1200));
    let no_df = edit_ip(df.clone(), |h| h.set_frag_off(h.frag_off() & 0x00ff));
    s.dp.inject(s.r0, &df, 1).unwrap();
    s.dp.inject(s.r0, &no_df, 2).unwrap();
    s.dp.run();
    let out: Vec<_> = transmitted(&mut s)
        .into_iter()
        .map(|c| (c.ifindex, c.bytes))
        .collect();
    assert_eq!(out.len(), 3, "one ICMP error and two fragments");
    let (ifx, icmp) = &out[0];
    assert_eq!(*ifx, s.dp.ifindex(s.r0).unwrap());
    // ICMP type 3 code 4, next-hop MTU 1000.
    assert_eq!(
        (icmp[34], icmp[35], &icmp[40..42]),
        (3, 4, &[0x03, 0xe8][..])
    );
    for (ifx, f) in &out[1..] {
        assert_eq!(*ifx, IFX_R1);
        assert!(f.len() <= 1014, "fragment of {} bytes", f.len());
    }
    assert_eq!(out[1].1.len() + out[2].1.len() - 2 * 34, 1200 + 8);
}

/// Without root: forwarding back out of the device a packet came in on from
/// an on-link source sends an ICMP host redirect first (quoting the header
/// with the TTL already decreased), once within ip_rt_redirect_load << 1, and
/// none with send_redirects off (the kernel test's "stack-edges" scenario
/// found skiff sending none).
#[test]
fn forwarding_back_out_sends_one_redirect() {
    let mut s = build_skiff();
    let ir0 = s.dp.ifindex(s.r0).unwrap();
    let f = udp(A0_IP, SIDE_IP, 1, 7002, 64, b"redirect");
    for ts in [1_000_000, 2_000_000, 50_000_000] {
        s.dp.inject(s.r0, &f, ts).unwrap();
        s.dp.run();
    }
    let out: Vec<_> = transmitted(&mut s)
        .into_iter()
        .map(|c| (c.ifindex, c.bytes))
        .collect();
    // redirect, frame; frame (within 40 ms); redirect, frame (after 40 ms).
    let kinds: Vec<_> = out.iter().map(|(i, b)| (*i, b[23], b[34])).collect();
    assert_eq!(
        kinds,
        [
            (ir0, 1, 5),
            (ir0, 17, 0),
            (ir0, 17, 0),
            (ir0, 1, 5),
            (ir0, 17, 0)
        ]
    );
    let r = &out[0].1;
    // Code 1 (host), gateway 10.1.0.3, quoted header with TTL 63.
    assert_eq!((r[35], &r[38..42], r[42 + 8]), (1, &SIDE_IP[..], 63));
    assert_eq!(&out[1].1[..6], &MAC_SIDE);

    let mut s = build_skiff();
    let r = s.dp.dev_netns(s.r0).unwrap();
    s.dp.stack_mut(r).unwrap().set_send_redirects(false);
    s.dp.inject(s.r0, &f, 1).unwrap();
    s.dp.run();
    let n = transmitted(&mut s).len();
    assert_eq!(n, 1);
}
