//! Classification and action tests against the kernel's source arithmetic
//! (net/sched/cls_*.c, act_*.c): a test environment with a settable clock.

use super::*;
use crate::buff::SkBuff;
use crate::sched::act_api::*;
use crate::sched::cls_u32::{U32Key, U32Sel, U32Spec, TC_U32_TERMINAL};

/// A TcfEnv with a clock the test sets and a record of mirred clones.
#[derive(Default)]
pub(crate) struct TestEnv {
    pub now: u64,
    pub rand: Vec<u32>,
    pub clones: Vec<(MirredTarget, Vec<u8>)>,
    pub down: Vec<DevId>,
    /// What a BPF program does (else it aborts: TC_ACT_SHOT).
    pub bpf: Option<fn(&mut SkBuff) -> i64>,
}

impl TcfEnv for TestEnv {
    fn run_bpf(&mut self, _prog: &Arc<Program>, skb: &mut SkBuff) -> i64 {
        self.bpf.map(|f| f(skb)).unwrap_or(TC_ACT_SHOT)
    }
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn prandom_u32(&mut self) -> u32 {
        self.rand.pop().unwrap_or(0)
    }
    fn dev_up(&self, dev: DevId) -> bool {
        !self.down.contains(&dev)
    }
    fn mirred_clone(&mut self, skb: &SkBuff, to: MirredTarget) -> bool {
        self.clones.push((to, skb.data().to_vec()));
        true
    }
}

/// An Ethernet + IPv4 + UDP frame from 10.0.0.1:1000 to 10.0.0.2:80, at ingress.
pub(crate) fn udp_skb(payload: usize) -> SkBuff {
    let mut f = vec![0u8; 14 + 20 + 8 + payload];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[1] = 0x10;
    let tot = (20 + 8 + payload) as u16;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    let mut skb = SkBuff::new(&f, 64, 2, 1500);
    skb.protocol = 0x0800;
    skb.tc_at_ingress = true;
    skb
}

pub(crate) fn u32_spec(keys: &[(u32, u32, i32)], classid: u32) -> U32Spec {
    U32Spec {
        sel: U32Sel {
            flags: TC_U32_TERMINAL,
            keys: keys
                .iter()
                .map(|&(val, mask, off)| U32Key {
                    val,
                    mask,
                    off,
                    offmask: 0,
                })
                .collect(),
            ..Default::default()
        },
        classid: Some(classid),
        ..Default::default()
    }
}

fn key(prio: u16) -> FilterKey {
    FilterKey {
        chain: 0,
        prio,
        protocol: ETH_P_ALL,
        handle: 0,
    }
}

#[test]
fn u32_first_matching_prio_gives_its_classid() {
    let mut b = TcfBlock::default();
    // match ip src 10.0.0.9/32 flowid 1:9 (no match), then ip dport 80 flowid 1:5
    b.add_filter(
        key(1),
        FilterSpec::U32(u32_spec(&[(0x0a00_0009, !0, 12)], 0x10009)),
        false,
    )
    .unwrap();
    b.add_filter(
        key(2),
        FilterSpec::U32(u32_spec(&[(80, 0xffff, 20)], 0x10005)),
        false,
    )
    .unwrap();
    let mut skb = udp_skb(10);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10005));
}

#[test]
fn u32_node_handles_and_auto_prio_follow_the_kernel() {
    let mut b = TcfBlock::default();
    let (p1, h1) = b
        .add_filter(key(0), FilterSpec::U32(u32_spec(&[], 1)), false)
        .unwrap();
    let (p2, h2) = b
        .add_filter(key(p1), FilterSpec::U32(u32_spec(&[], 2)), false)
        .unwrap();
    assert_eq!((p1, h1, p2, h2), (0xc000, 0x8000_0800, 0xc000, 0x8000_0801));
    let (p3, _) = b
        .add_filter(key(0), FilterSpec::U32(u32_spec(&[], 3)), false)
        .unwrap();
    assert_eq!(p3, 0xbfff);
}

#[test]
fn protocol_must_fit() {
    let mut b = TcfBlock::default();
    let mut k = key(1);
    k.protocol = 0x86dd;
    b.add_filter(k, FilterSpec::U32(u32_spec(&[], 0x10001)), false)
        .unwrap();
    let mut skb = udp_skb(0);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!(r.action, TC_ACT_UNSPEC);
}

fn gact(control: i64) -> Arc<TcAction> {
    Arc::new(TcAction::new(
        1,
        control,
        Box::new(super::super::act_gact::Gact::default()),
    ))
}

fn exts(a: &[Arc<TcAction>]) -> TcfExts {
    TcfExts {
        actions: a.to_vec(),
    }
}

fn matchall(classid: u32, a: &[Arc<TcAction>]) -> FilterSpec {
    FilterSpec::Matchall(super::super::cls_matchall::MatchallSpec {
        classid,
        exts: exts(a),
    })
}

#[test]
fn reclassify_loops_sixteen_times_then_shoots() {
    let mut b = TcfBlock::default();
    let a = gact(TC_ACT_RECLASSIFY);
    b.add_filter(key(1), matchall(0, std::slice::from_ref(&a)), false)
        .unwrap();
    let mut skb = udp_skb(10);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.reclassify_loop), (TC_ACT_SHOT, true));
    // The first pass and 16 restarts (__tcf_classify's limit++ >= 16).
    assert_eq!(a.common.stats.snapshot().packets, 17);
    // At ingress the action counts the packet from the network header: 20+8+10.
    assert_eq!(a.common.stats.snapshot().bytes, 17 * 38);
}

#[test]
fn goto_chain_continues_in_that_chain_and_empty_chain_is_unspec() {
    let mut b = TcfBlock::default();
    let g = gact(TC_ACT_GOTO_CHAIN | 5);
    b.add_filter(key(1), matchall(0, &[g]), false).unwrap();
    let mut k = key(1);
    k.chain = 5;
    b.add_filter(k, matchall(0x10007, &[gact(TC_ACT_OK)]), false)
        .unwrap();
    let mut skb = udp_skb(10);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10007));
    let mut b2 = TcfBlock::default();
    b2.add_filter(key(1), matchall(0, &[gact(TC_ACT_GOTO_CHAIN | 9)]), false)
        .unwrap();
    let r = tcf_classify(&b2, &mut skb, &mut TestEnv::default());
    assert_eq!(r.action, TC_ACT_UNSPEC);
}

#[test]
fn action_exec_pipes_jumps_and_continues() {
    let mut env = TestEnv::default();
    let mut skb = udp_skb(0);
    let mut res = TcfResult::default();
    let (p, d, o) = (gact(TC_ACT_PIPE), gact(TC_ACT_SHOT), gact(TC_ACT_OK));
    // pipe, drop, ok: the drop ends it.
    let v = tcf_action_exec(
        &[p.clone(), d.clone(), o.clone()],
        &mut skb,
        &mut res,
        &mut env,
    );
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(d.common.stats.snapshot().drops, 1);
    assert_eq!(o.common.stats.snapshot().packets, 0);
    // A jump restarts the list and skips N actions from its start (the
    // jump itself included): jump 2, drop, ok -> ok; jump 1 -> the drop.
    let v = tcf_action_exec(
        &[gact(TC_ACT_JUMP | 2), d.clone(), o.clone()],
        &mut skb,
        &mut res,
        &mut env,
    );
    assert_eq!(v, TC_ACT_OK);
    assert_eq!(o.common.stats.snapshot().packets, 1);
    let v = tcf_action_exec(
        &[gact(TC_ACT_JUMP | 1), d.clone(), o.clone()],
        &mut skb,
        &mut res,
        &mut env,
    );
    assert_eq!(v, TC_ACT_SHOT);
    assert_eq!(d.common.stats.snapshot().drops, 2);
    // A jump past the end is a faulty opcode: TC_ACT_OK at once.
    let v = tcf_action_exec(
        &[gact(TC_ACT_JUMP | 3), d.clone()],
        &mut skb,
        &mut res,
        &mut env,
    );
    assert_eq!(v, TC_ACT_OK);
    // All pipe: the verdict is PIPE (a filter then returns it, >= 0).
    let v = tcf_action_exec(&[p.clone(), p], &mut skb, &mut res, &mut env);
    assert_eq!(v, TC_ACT_PIPE);
    // continue: the filter did not match.
    let mut b = TcfBlock::default();
    b.add_filter(key(1), matchall(0x10001, &[gact(TC_ACT_UNSPEC)]), false)
        .unwrap();
    b.add_filter(key(2), matchall(0x10002, &[]), false).unwrap();
    let r = tcf_classify(&b, &mut skb, &mut env);
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10002));
}

#[test]
fn u32_offset_eat_nexthdr_and_hash_buckets() {
    use crate::sched::cls_u32::{TC_U32_EAT, TC_U32_VAROFFSET};
    let mut b = TcfBlock::default();
    // handle 1: u32 divisor 1
    let table = U32Spec {
        divisor: Some(1),
        ..Default::default()
    };
    let k1 = FilterKey {
        handle: 0x0010_0000,
        ..key(1)
    };
    assert_eq!(
        b.add_filter(k1, FilterSpec::U32(table), false).unwrap().1,
        0x0010_0000
    );
    // ht 1: match u16 80 0xffff at 2 (after eat: from the UDP header) flowid 1:80
    let mut inner = u32_spec(&[(80, 0xffff, 0)], 0x10080);
    inner.ht = Some(0x0010_0000);
    b.add_filter(key(1), FilterSpec::U32(inner), false).unwrap();
    // match ip protocol 17 0xff link 1: offset at 0 mask 0x0f00 shift 6 eat
    let mut root = u32_spec(&[(0x0011_0000, 0x00ff_0000, 8)], 0);
    root.classid = None;
    root.sel.flags = TC_U32_VAROFFSET | TC_U32_EAT;
    root.sel.offmask = 0x0f00;
    root.sel.offshift = 6;
    root.link = Some(0x0010_0000);
    b.add_filter(key(1), FilterSpec::U32(root), false).unwrap();
    let mut skb = udp_skb(4);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10080));

    // ht 2: divisor 256 hashed on the destination's last byte (2).
    let mut b = TcfBlock::default();
    let k2 = FilterKey {
        handle: 0x0020_0000,
        ..key(1)
    };
    b.add_filter(
        k2,
        FilterSpec::U32(U32Spec {
            divisor: Some(256),
            ..Default::default()
        }),
        false,
    )
    .unwrap();
    for (bucket, classid) in [(3u32, 0x10003u32), (2, 0x10002)] {
        let mut s = u32_spec(&[], classid);
        s.ht = Some(0x0020_0000 | (bucket << 12));
        let (_, h) = b.add_filter(key(1), FilterSpec::U32(s), false).unwrap();
        assert_eq!(h, 0x0020_0800 | (bucket << 12));
    }
    let mut root = u32_spec(&[], 0);
    root.classid = None;
    root.sel.flags = 0;
    root.sel.hmask = 0x0000_00ff;
    root.sel.hoff = 16;
    root.link = Some(0x0020_0000);
    b.add_filter(key(1), FilterSpec::U32(root), false).unwrap();
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10002));
}

#[test]
fn u32_key_at_nexthdr_uses_the_parents_offset() {
    use crate::sched::cls_u32::TC_U32_VAROFFSET;
    let mut b = TcfBlock::default();
    let k1 = FilterKey {
        handle: 0x0010_0000,
        ..key(1)
    };
    b.add_filter(
        k1,
        FilterSpec::U32(U32Spec {
            divisor: Some(1),
            ..Default::default()
        }),
        false,
    )
    .unwrap();
    // ht 1: match u16 81 0xffff at nexthdr+2 (no match), then 80.
    for (port, classid) in [(81u32, 0x10081u32), (80, 0x10080)] {
        let mut s = u32_spec(&[(port, 0xffff, 0)], classid);
        s.sel.keys[0].offmask = -1;
        s.ht = Some(0x0010_0000);
        b.add_filter(key(1), FilterSpec::U32(s), false).unwrap();
    }
    let mut root = u32_spec(&[], 0);
    root.classid = None;
    root.sel.flags = TC_U32_VAROFFSET;
    root.sel.offmask = 0x0f00;
    root.sel.offshift = 6;
    root.link = Some(0x0010_0000);
    b.add_filter(key(1), FilterSpec::U32(root), false).unwrap();
    let mut skb = udp_skb(4);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10080));
    // The same at egress (network header 14 bytes into the data).
    skb.tc_at_ingress = false;
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!(r.classid, 0x10080);
}

#[test]
fn u32_without_classid_or_actions_is_not_terminal() {
    let mut b = TcfBlock::default();
    let mut s = u32_spec(&[(0, 0, 0)], 0);
    s.classid = None;
    s.sel.flags = 0;
    b.add_filter(key(1), FilterSpec::U32(s), false).unwrap();
    let mut skb = udp_skb(0);
    assert_eq!(
        tcf_classify(&b, &mut skb, &mut TestEnv::default()).action,
        TC_ACT_UNSPEC
    );
}

#[test]
fn fw_matches_the_masked_mark() {
    use crate::sched::cls_fw::FwSpec;
    let mut b = TcfBlock::default();
    let k = FilterKey {
        handle: 5,
        ..key(1)
    };
    let spec = FwSpec {
        mask: 0xff,
        classid: 0x10005,
        exts: TcfExts::default(),
    };
    b.add_filter(k, FilterSpec::Fw(spec.clone()), false)
        .unwrap();
    let mut skb = udp_skb(0);
    skb.mark = 0x105;
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10005));
    skb.mark = 0x106;
    assert_eq!(
        tcf_classify(&b, &mut skb, &mut TestEnv::default()).action,
        TC_ACT_UNSPEC
    );
    // Another mask at the same priority is refused.
    let k6 = FilterKey { handle: 6, ..k };
    let other = FwSpec { mask: 0xf, ..spec };
    assert!(matches!(
        b.add_filter(k6, FilterSpec::Fw(other), false),
        Err(ClsError::Invalid(_))
    ));
}

#[test]
fn basic_ematch_cmp_and_or_not() {
    use crate::sched::cls_basic::*;
    let cmp = |off, align, val, op| EmCmp {
        align,
        off,
        layer: Layer::Network,
        mask: 0,
        trans: false,
        op,
        val,
    };
    let proto_udp = cmp(9, 1, 17, CmpOp::Eq);
    let ttl_gt_100 = cmp(8, 1, 100, CmpOp::Gt);
    let skb = udp_skb(0);
    let m = |c, invert, rel| Ematch {
        cmp: c,
        invert,
        rel,
    };
    assert!(tcf_em_tree_match(
        &skb,
        &[m(proto_udp, false, Relation::End)]
    ));
    // udp and ttl > 100: ttl is 64.
    assert!(!tcf_em_tree_match(
        &skb,
        &[
            m(proto_udp, false, Relation::And),
            m(ttl_gt_100, false, Relation::End)
        ]
    ));
    // udp and not ttl > 100
    assert!(tcf_em_tree_match(
        &skb,
        &[
            m(proto_udp, false, Relation::And),
            m(ttl_gt_100, true, Relation::End)
        ]
    ));
    // ttl > 100 or u16 at 2 (total length 28) lt 29
    assert!(tcf_em_tree_match(
        &skb,
        &[
            m(ttl_gt_100, false, Relation::Or),
            m(cmp(2, 2, 29, CmpOp::Lt), false, Relation::End)
        ]
    ));
    // Link layer: the EtherType at 12 of the MAC header.
    let mut c = cmp(12, 2, 0x0800, CmpOp::Eq);
    c.layer = Layer::Link;
    assert!(em_cmp_match(&skb, &c));
    // trans: the u16 read the other way round.
    c.trans = true;
    c.val = 0x0008;
    assert!(em_cmp_match(&skb, &c));
}

#[test]
fn flower_masks_in_first_use_order() {
    use crate::sched::cls_flower::*;
    let mut b = TcfBlock::default();
    let mut k = key(1);
    k.protocol = 0x0800;
    let spec = |port: u16, classid| {
        let mut key = FlowerKey::default();
        let mut mask = FlowerKey::default();
        key.n_proto = 0x0800;
        mask.n_proto = 0xffff;
        key.ip_proto = 17;
        mask.ip_proto = 0xff;
        key.dst_port = port;
        mask.dst_port = 0xffff;
        FilterSpec::Flower(FlowerSpec {
            key,
            mask,
            classid,
            exts: TcfExts::default(),
        })
    };
    b.add_filter(k, spec(81, 0x10081), false).unwrap();
    b.add_filter(k, spec(80, 0x10080), false).unwrap();
    assert!(matches!(
        b.add_filter(k, spec(80, 0x10099), false),
        Err(ClsError::Exists { .. })
    ));
    let mut skb = udp_skb(0);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10080));
    let d = fl_dissect(&skb);
    assert_eq!(
        (d.ipv4_src, d.ipv4_dst, d.src_port, d.ip_tos, d.ip_ttl),
        (0x0a00_0001, 0x0a00_0002, 1000, 0x10, 64)
    );
}

fn bpf_filter(da: bool, classid: u32) -> FilterSpec {
    let insns = skiff_isa::asm::assemble("mov r0, 0\nexit").unwrap_or_else(|e| panic!("{e}"));
    let prog = skiff_vm::Program::load("p", skiff_vm::ProgType::SchedCls, insns, &[]);
    let prog = Arc::new(prog.unwrap_or_else(|e| panic!("{e}")));
    FilterSpec::Bpf(super::super::cls_bpf::BpfSpec {
        prog,
        direct_action: da,
        classid,
        name: "p".into(),
        exts: TcfExts::default(),
    })
}

#[test]
fn cls_bpf_classid_keeps_the_filters_major() {
    // da: the program sets tc_classid 0x20 (16 bits) and returns OK; the
    // result is TC_H_MAJ(filter classid 1:5) | 0x20.
    let mut b = TcfBlock::default();
    b.add_filter(key(1), bpf_filter(true, 0x10005), false)
        .unwrap();
    let mut env = TestEnv {
        bpf: Some(|skb| {
            assert_eq!(skb.tc_classid, 5);
            skb.tc_classid = 0x20;
            TC_ACT_OK
        }),
        ..Default::default()
    };
    let r = tcf_classify(&b, &mut udp_skb(0), &mut env);
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10020));
    // PIPE is not a direct action: UNSPEC.
    env.bpf = Some(|_| TC_ACT_PIPE);
    assert_eq!(
        tcf_classify(&b, &mut udp_skb(0), &mut env).action,
        TC_ACT_UNSPEC
    );
    // classic: -1 is the filter's classid, another value is the classid.
    let mut c = TcfBlock::default();
    c.add_filter(key(1), bpf_filter(false, 0x10005), false)
        .unwrap();
    env.bpf = Some(|_| -1);
    let r = tcf_classify(&c, &mut udp_skb(0), &mut env);
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10005));
    env.bpf = Some(|_| 0x30007);
    assert_eq!(tcf_classify(&c, &mut udp_skb(0), &mut env).classid, 0x30007);
    env.bpf = Some(|_| 0);
    assert_eq!(
        tcf_classify(&c, &mut udp_skb(0), &mut env).action,
        TC_ACT_UNSPEC
    );
}

#[test]
fn direct_bpf_fast_path_gives_the_general_walks_result() {
    let mut b = TcfBlock::default();
    b.add_filter(key(1), bpf_filter(true, 0x10005), false)
        .unwrap();
    // One direct-action cls_bpf: the fast path is taken.
    let f = b.direct_bpf().map(|f| (f.classid, f.protocol));
    assert_eq!(f, Some((0x10005, ETH_P_ALL)));
    let verdicts: [fn(&mut SkBuff) -> i64; 5] = [
        |skb| {
            skb.tc_classid = 0x20;
            TC_ACT_OK
        },
        |_| TC_ACT_SHOT,
        |_| TC_ACT_PIPE,
        |_| TC_ACT_REDIRECT,
        |_| TC_ACT_RECLASSIFY,
    ];
    for (i, v) in verdicts.into_iter().enumerate() {
        let mut env = TestEnv {
            bpf: Some(v),
            ..Default::default()
        };
        let general = tcf_classify(&b, &mut udp_skb(0), &mut env);
        let mut runs = 0;
        let f = b.direct_bpf().unwrap();
        let direct = tcf_classify_direct(f, &mut udp_skb(0), |_, skb| {
            runs += 1;
            v(skb)
        });
        assert_eq!(direct, general, "verdict {i}");
        // RECLASSIFY: the first run and 16 more, then SHOT.
        let want_runs = if i == 4 { 17 } else { 1 };
        assert_eq!(runs, want_runs, "verdict {i}");
    }
    let shot = tcf_classify_direct(b.direct_bpf().unwrap(), &mut udp_skb(0), |_, _| {
        TC_ACT_RECLASSIFY
    });
    assert_eq!((shot.action, shot.reclassify_loop), (TC_ACT_SHOT, true));
    // A second filter, a classic-mode filter or another chain: the walk.
    b.add_filter(key(2), bpf_filter(true, 0), false).unwrap();
    assert!(b.direct_bpf().is_none());
    b.del_filter(0, 2, 0).unwrap();
    assert!(b.direct_bpf().is_some());
    let mut c = TcfBlock::default();
    c.add_filter(key(1), bpf_filter(false, 0), false).unwrap();
    assert!(c.direct_bpf().is_none());
    let mut d = TcfBlock::default();
    let k = FilterKey { chain: 1, ..key(1) };
    d.add_filter(k, bpf_filter(true, 0), false).unwrap();
    assert!(d.direct_bpf().is_none());
}
