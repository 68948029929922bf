//! Actions against the kernel's source arithmetic (net/sched/act_*.c):
//! exact verdicts, counters and bytes.

use super::*;
use crate::core::DevId;
use crate::sched::cls_api::tests::{udp_skb, TestEnv};
use crate::sched::cls_api::{MirredTarget, TcfResult};

fn run(a: &TcAction, skb: &mut SkBuff, env: &mut TestEnv) -> (i64, TcfResult) {
    let mut res = TcfResult::default();
    let v = a.ops.act(&a.common, skb, &mut res, env);
    (v, res)
}

#[test]
fn police_token_bucket_on_the_virtual_clock() {
    use crate::sched::act_police::{Police, PoliceParams};
    // rate 1mbit (125000 B/s: 8000 ns a byte) burst 10k: tc_calc_xmittime
    // = 10240 B / 125000 B/s = 81.92 ms = 1280000 ticks of 64 ns.
    let p = Police::new(PoliceParams {
        rate: 125_000,
        burst_ticks: 1_280_000,
        cell_log: 3,
        conform: TC_ACT_OK,
        ..Default::default()
    });
    let a = TcAction::new(1, TC_ACT_SHOT, Box::new(p));
    let mut env = TestEnv::default();
    // 986 payload bytes: 20 + 8 + 972 = 1000 bytes from the network header at ingress.
    let mut verdicts = Vec::new();
    for t in [0u64; 11] {
        env.now = t;
        let mut skb = udp_skb(972);
        verdicts.push(run(&a, &mut skb, &mut env).0);
    }
    // 10 x 8 ms fit in 81.92 ms; the 11th would leave -6.08 ms.
    assert_eq!(verdicts[..10], [TC_ACT_OK; 10]);
    assert_eq!(verdicts[10], TC_ACT_SHOT);
    // 5 ms later: 1.92 + 5 = 6.92 ms < 8 ms: exceed; at 7 ms: 8.92 ms: conform.
    env.now = 5_000_000;
    assert_eq!(run(&a, &mut udp_skb(972), &mut env).0, TC_ACT_SHOT);
    env.now = 7_000_000;
    assert_eq!(run(&a, &mut udp_skb(972), &mut env).0, TC_ACT_OK);
    let s = a.common.stats.snapshot();
    assert_eq!(
        (s.packets, s.bytes, s.overlimits, s.drops),
        (13, 13_000, 2, 2)
    );
    // mtu: 255 << cell_log 3 = 2040 bytes; 2041 always exceeds.
    env.now = 10_000_000_000;
    assert_eq!(run(&a, &mut udp_skb(2041 - 28), &mut env).0, TC_ACT_SHOT);
    assert_eq!(run(&a, &mut udp_skb(2040 - 28), &mut env).0, TC_ACT_OK);
}

#[test]
fn police_peakrate_limits_back_to_back_packets() {
    use crate::sched::act_police::{Police, PoliceParams};
    // rate 1mbit burst 10k peakrate 2mbit mtu 2000: the peak bucket holds
    // psched_l2t_ns(peak, 2000) = 2000 * 4000 ns = 8 ms.
    let p = Police::new(PoliceParams {
        rate: 125_000,
        peakrate: 250_000,
        burst_ticks: 1_280_000,
        mtu: 2000,
        conform: TC_ACT_PIPE,
        ..Default::default()
    });
    let a = TcAction::new(1, TC_ACT_RECLASSIFY, Box::new(p));
    let mut env = TestEnv::default();
    // 1000-byte packets cost 4 ms of peak: two at t=0 pass, the third not.
    let v: Vec<i64> = (0..3)
        .map(|_| run(&a, &mut udp_skb(972), &mut env).0)
        .collect();
    assert_eq!(v, [TC_ACT_PIPE, TC_ACT_PIPE, TC_ACT_RECLASSIFY]);
    // 4 ms later the peak bucket has 4 ms again.
    env.now = 4_000_000;
    assert_eq!(run(&a, &mut udp_skb(972), &mut env).0, TC_ACT_PIPE);
    assert_eq!(a.common.stats.snapshot().overlimits, 1);
}

#[test]
fn gact_random_determ_and_netrand() {
    use crate::sched::act_gact::{Gact, GactProb, GactRandom};
    // gact pass random determ drop 3: every 3rd packet drops.
    let g = Gact {
        random: Some(GactRandom::new(GactProb::Determ, 3, TC_ACT_SHOT)),
    };
    let a = TcAction::new(1, TC_ACT_OK, Box::new(g));
    let mut env = TestEnv::default();
    let v: Vec<i64> = (0..6)
        .map(|_| run(&a, &mut udp_skb(0), &mut env).0)
        .collect();
    assert_eq!(v, [0, 0, 2, 0, 0, 2]);
    assert_eq!(a.common.stats.snapshot().drops, 2);
    // netrand 10: get_random_u32_below(r, 10) == 0 only for r < 429496730.
    let g = Gact {
        random: Some(GactRandom::new(GactProb::Netrand, 10, TC_ACT_SHOT)),
    };
    let a = TcAction::new(2, TC_ACT_OK, Box::new(g));
    env.rand = vec![429_496_730, 429_496_729];
    assert_eq!(run(&a, &mut udp_skb(0), &mut env).0, TC_ACT_SHOT);
    assert_eq!(run(&a, &mut udp_skb(0), &mut env).0, TC_ACT_OK);
}

#[test]
fn mirred_redirect_consumes_at_ingress_and_mirror_clones() {
    use crate::sched::act_mirred::{Mirred, MirredAction};
    let m = |e: MirredAction, dev| Mirred {
        eaction: e,
        dev: DevId(dev),
        dev_name: "lo".into(),
    };
    let mut env = TestEnv::default();
    let r = TcAction::new(1, TC_ACT_STOLEN, Box::new(m(MirredAction::EgressRedir, 3)));
    let mut skb = udp_skb(0);
    let (v, res) = run(&r, &mut skb, &mut env);
    let to = MirredTarget {
        dev: DevId(3),
        ingress: false,
    };
    assert_eq!((v, res.redirect), (TC_ACT_CONSUMED, Some(to)));
    assert!(env.clones.is_empty());
    // At egress the kernel clones and the original is stolen.
    skb.tc_at_ingress = false;
    let (v, res) = run(&r, &mut skb, &mut env);
    assert_eq!(
        (v, res.redirect, env.clones.len()),
        (TC_ACT_STOLEN, None, 1)
    );
    // A mirror clones and pipes on.
    let mi = TcAction::new(2, TC_ACT_PIPE, Box::new(m(MirredAction::IngressMirror, 4)));
    let (v, _) = run(&mi, &mut udp_skb(0), &mut env);
    assert_eq!((v, env.clones.len()), (TC_ACT_PIPE, 2));
    assert!(env.clones[1].0.ingress);
    // A target that is down: the redirect shoots, one overlimit.
    env.down.push(DevId(3));
    let (v, _) = run(&r, &mut udp_skb(0), &mut env);
    assert_eq!(v, TC_ACT_SHOT);
    let s = r.common.stats.snapshot();
    assert_eq!((s.packets, s.overlimits, s.drops), (3, 1, 0));
}

#[test]
fn pedit_set_and_add_as_the_kernel_computes() {
    use crate::sched::act_pedit::*;
    // ex munge ip ttl add 1: u8 at 8 -> word 8, val htonl(1 << 24),
    // keep-mask htonl(0x00ffffff) (pack_key8).
    let ttl = PeditKey::from_host(1 << 24, 0x00ff_ffff, 8, PeditHeader::Ip4, PeditCmd::Add);
    // munge ip src set 192.168.1.1 (pack_key32: mask 0).
    let src = PeditKey::from_host(0xc0a8_0101, 0, 12, PeditHeader::Network, PeditCmd::Set);
    // ex munge udp dport set 53: u16 at 2 -> word 0, keep the source port.
    let dport = PeditKey::from_host(53, 0xffff_0000, 0, PeditHeader::Udp, PeditCmd::Set);
    let p = Pedit {
        keys: vec![ttl, src, dport],
        extended: true,
    };
    let a = TcAction::new(1, TC_ACT_PIPE, Box::new(p));
    let mut skb = udp_skb(0);
    let (v, _) = run(&a, &mut skb, &mut TestEnv::default());
    assert_eq!(v, TC_ACT_PIPE);
    let d = skb.data();
    assert_eq!(d[14 + 8], 65);
    assert_eq!(d[14 + 9], 17);
    assert_eq!(&d[26..30], &[192, 168, 1, 1]);
    assert_eq!(&d[34..38], &[0x03, 0xe8, 0, 53]);
    // TTL 255 + 1 wraps to 0 without touching the protocol byte.
    let mut skb = udp_skb(0);
    skb.data_mut()[14 + 8] = 255;
    run(&a, &mut skb, &mut TestEnv::default());
    assert_eq!((skb.data()[22], skb.data()[23]), (0, 17));
    // A key past the packet: an overlimit, the verdict unchanged.
    let far = PeditKey::from_host(0, 0, 4000, PeditHeader::Network, PeditCmd::Set);
    let b = TcAction::new(
        2,
        TC_ACT_OK,
        Box::new(Pedit {
            keys: vec![far],
            extended: false,
        }),
    );
    assert_eq!(
        run(&b, &mut udp_skb(0), &mut TestEnv::default()).0,
        TC_ACT_OK
    );
    assert_eq!(b.common.stats.snapshot().overlimits, 1);
}

/// A UDP packet with correct IPv4 (0x66b5) and UDP (0xe78f) checksums.
fn checksummed() -> SkBuff {
    use crate::sched::act_csum::*;
    let mut skb = udp_skb(10);
    skb.data_mut()[40..42].copy_from_slice(&[0x12, 0x34]);
    let c = TcAction::new(
        1,
        TC_ACT_OK,
        Box::new(Csum {
            update_flags: CSUM_IPV4HDR | CSUM_UDP,
        }),
    );
    assert_eq!(run(&c, &mut skb, &mut TestEnv::default()).0, TC_ACT_OK);
    skb
}

#[test]
fn csum_recomputes_ip_and_udp() {
    let skb = checksummed();
    assert_eq!(&skb.data()[24..26], &[0x66, 0xb5]);
    assert_eq!(&skb.data()[40..42], &[0xe7, 0x8f]);
    // A zero UDP checksum (none used) stays zero.
    use crate::sched::act_csum::*;
    let mut z = udp_skb(10);
    let c = TcAction::new(
        1,
        TC_ACT_OK,
        Box::new(Csum {
            update_flags: CSUM_UDP,
        }),
    );
    run(&c, &mut z, &mut TestEnv::default());
    assert_eq!(&z.data()[40..42], &[0, 0]);
}

#[test]
fn nat_rewrites_destination_and_fixes_checksums_incrementally() {
    use crate::sched::act_nat::Nat;
    let mut skb = checksummed();
    let n = Nat {
        old_addr: "10.0.0.2".parse().unwrap(),
        new_addr: "192.168.0.2".parse().unwrap(),
        mask: u32::MAX,
        egress: false,
    };
    let a = TcAction::new(1, TC_ACT_OK, Box::new(n));
    run(&a, &mut skb, &mut TestEnv::default());
    let d = skb.data();
    assert_eq!(&d[30..34], &[192, 168, 0, 2]);
    // The full recomputation of the new header and datagram gives the same.
    assert_eq!(&d[24..26], &[0xb0, 0x0c]);
    assert_eq!(&d[40..42], &[0x30, 0xe7]);
    // Another address: untouched.
    let mut other = checksummed();
    other.data_mut()[33] = 9;
    let before = other.data().to_vec();
    run(&a, &mut other, &mut TestEnv::default());
    assert_eq!(other.data(), &before[..]);
}

#[test]
fn vlan_push_pop_modify_keep_the_offloaded_tag_first() {
    use crate::sched::act_vlan::{Vlan, VlanOp};
    let act = |op| TcAction::new(1, TC_ACT_PIPE, Box::new(Vlan { op }));
    let mut env = TestEnv::default();
    let mut skb = udp_skb(0);
    let len = skb.len();
    run(
        &act(VlanOp::Push {
            proto: 0x8100,
            vid: 10,
            prio: 0,
        }),
        &mut skb,
        &mut env,
    );
    assert_eq!((skb.vlan_present, skb.vlan_tci, skb.len()), (true, 10, len));
    // A second push puts tag 10 into the frame.
    run(
        &act(VlanOp::Push {
            proto: 0x8100,
            vid: 20,
            prio: 5,
        }),
        &mut skb,
        &mut env,
    );
    assert_eq!(
        (skb.vlan_tci, skb.len(), skb.protocol),
        ((5 << 13) | 20, len + 4, 0x8100)
    );
    assert_eq!(&skb.data()[12..16], &[0x81, 0x00, 0, 10]);
    // modify id 30: the offloaded tag's id, its priority kept.
    run(
        &act(VlanOp::Modify {
            proto: 0x8100,
            vid: 30,
            prio: None,
        }),
        &mut skb,
        &mut env,
    );
    assert_eq!(skb.vlan_tci, (5 << 13) | 30);
    // pop: the offloaded one goes, the in-frame one becomes offloaded.
    run(&act(VlanOp::Pop), &mut skb, &mut env);
    assert_eq!(
        (skb.vlan_present, skb.vlan_tci, skb.len(), skb.protocol),
        (true, 10, len, 0x0800)
    );
    run(&act(VlanOp::Pop), &mut skb, &mut env);
    assert!(!skb.vlan_present);
}

#[test]
fn skbedit_priority_mark_and_dsfield() {
    use crate::sched::act_skbedit::Skbedit;
    let e = Skbedit {
        priority: Some(0x10010),
        mark: Some((5, 0xf)),
        ..Default::default()
    };
    let a = TcAction::new(1, TC_ACT_PIPE, Box::new(e));
    let mut skb = udp_skb(0);
    skb.mark = 0xf0;
    assert_eq!(run(&a, &mut skb, &mut TestEnv::default()).0, TC_ACT_PIPE);
    assert_eq!((skb.priority, skb.mark), (0x10010, 0xf5));
    // inheritdsfield: TOS 0x10 >> 2 = 4.
    let d = Skbedit {
        inherit_dsfield: true,
        ..Default::default()
    };
    let a = TcAction::new(2, TC_ACT_PIPE, Box::new(d));
    run(&a, &mut skb, &mut TestEnv::default());
    assert_eq!(skb.priority, 4);
}

#[test]
fn act_bpf_return_codes() {
    use crate::sched::act_bpf::act_bpf_verdict;
    assert_eq!(act_bpf_verdict(TC_ACT_UNSPEC, TC_ACT_PIPE), TC_ACT_PIPE);
    assert_eq!(act_bpf_verdict(TC_ACT_SHOT, TC_ACT_PIPE), TC_ACT_SHOT);
    assert_eq!(
        act_bpf_verdict(TC_ACT_REDIRECT, TC_ACT_PIPE),
        TC_ACT_REDIRECT
    );
    assert_eq!(act_bpf_verdict(TC_ACT_STOLEN, TC_ACT_PIPE), TC_ACT_UNSPEC);
    assert_eq!(act_bpf_verdict(42, TC_ACT_OK), TC_ACT_UNSPEC);
}

#[test]
fn sample_one_in_rate() {
    use crate::sched::act_sample::Sample;
    let s = Sample {
        rate: 4,
        group: 1,
        trunc: 0,
        sampled: Default::default(),
    };
    let a = TcAction::new(1, TC_ACT_PIPE, Box::new(s));
    // get_random_u32_below(r, 4) == 0 for r < 0x40000000.
    let mut env = TestEnv {
        rand: vec![0x4000_0000, 0x3fff_ffff, 0, 0xffff_ffff],
        ..Default::default()
    };
    for _ in 0..4 {
        assert_eq!(run(&a, &mut udp_skb(0), &mut env).0, TC_ACT_PIPE);
    }
    let d = TcAction::dump(&Arc::new(a), 1);
    assert_eq!(d["sampled"], 2);
}
