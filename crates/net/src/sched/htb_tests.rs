//! htb against sch_htb.c's arithmetic: departure times, lends/borrows,
//! overlimits and tokens worked out by hand from htb_charge_class and
//! htb_class_mode; DRR by quantum; htb_classify's choices.

use super::htb::{HtbClassOptions, HtbOptions};
use super::*;
use crate::buff::SkBuff;

const MS: u64 = 1_000_000;
const T0: u64 = 100 * 1_000_000_000;

fn pkt(id: u64, len: usize, priority: u32) -> Pkt {
    let mut skb = SkBuff::new(&vec![0u8; len], 64, 2, 1500);
    skb.priority = priority;
    Pkt {
        id,
        ts: 0,
        skb: Box::new(skb),
    }
}

fn dev() -> QdiscDev {
    QdiscDev {
        txqueuelen: 1000,
        mtu: 1500,
        tx_queues: 1,
    }
}

/// `class ... htb rate R ceil C` with tc's default bursts (1600 bytes).
fn copt(rate: u64, ceil: u64, quantum: u32, prio: u32) -> ClassOptions {
    copt_burst(rate, ceil, quantum, prio, 1600)
}

fn copt_burst(rate: u64, ceil: u64, quantum: u32, prio: u32, burst: u64) -> ClassOptions {
    ClassOptions::Htb(HtbClassOptions {
        rate,
        ceil,
        buffer: rate::xmittime(rate, burst),
        cbuffer: rate::xmittime(ceil, burst),
        quantum,
        prio,
    })
}

fn htb(defcls: u32) -> Sch {
    let o = QdiscOptions::Htb(HtbOptions {
        r2q: 10,
        defcls,
        direct_qlen: None,
    });
    Sch::root(0x1_0000, htb::Htb::create(&o, &dev()).unwrap())
}

fn class(q: &mut Sch, id: u32, parent: u32, o: &ClassOptions) {
    let ops = q.classes().unwrap();
    assert!(ops.change(id, parent, o, &dev(), 0).unwrap().is_empty());
}

/// Runs the qdisc as the engine does: dequeue while it gives, then jump to
/// its watchdog. Returns (id, time) of each packet.
fn drain(q: &mut Sch, from: u64, max: usize) -> Vec<(u64, u64)> {
    let mut now = from;
    let mut out = Vec::new();
    for _ in 0..max * 4 {
        while let Some(p) = q.dequeue_at(now) {
            out.push((p.id, now - from));
        }
        match q.watchdog() {
            Some(w) if out.len() < max => now = w,
            _ => break,
        }
    }
    out
}

/// 1:1 rate=ceil 1mbit over 1:10 rate 500kbit ceil 1mbit, ten 1000-byte
/// packets at once: two leave on the leaf's own buckets (25.6 ms of rate,
/// 12.8 ms of ceil; 16 ms and 8 ms each), then one every 8 ms (the ceil),
/// alternately borrowed from 1:1 and sent on the leaf's own rate.
#[test]
fn a_leaf_borrows_up_to_its_ceil() {
    let mut q = htb(0x10);
    class(&mut q, 0x1_0001, 0x1_0000, &copt(125_000, 125_000, 0, 0));
    class(&mut q, 0x1_0010, 0x1_0001, &copt(62_500, 125_000, 0, 0));
    let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
    for id in 1..=10 {
        let mut cx = EnqueueCtx::new(&mut none);
        assert!(q.enqueue_at(pkt(id, 1000, 0), &mut cx).is_ok());
    }
    let times: Vec<u64> = drain(&mut q, T0, 10).iter().map(|p| p.1).collect();
    let mut want = vec![0, 0];
    want.extend((0..8).map(|i| 3_200_000 + i * 8 * MS));
    assert_eq!(times, want);
    let s = q.stats();
    // CANT_SEND transitions: the leaf after each of packets 2..10; 1:1
    // only after packets 2, 3, 5, 7, 9 (the others are charged to it at
    // level 0 while it still waits for its own event).
    assert_eq!(
        (s.packets, s.bytes, s.qlen, s.backlog, s.overlimits),
        (10, 10_000, 0, 0, 14)
    );
    let c = q.class_dumps();
    let x = |i: usize, k: &str| c[i].xstats.get(k).and_then(|v| v.as_i64()).unwrap();
    assert_eq!(c[0].handle, "1:1");
    assert_eq!((c[0].packets, c[0].bytes, c[0].overlimits), (10, 10_000, 5));
    assert_eq!((x(0, "lended"), x(0, "borrowed")), (4, 0));
    // 1:1 is charged 8 ms a packet and refilled 8 ms between: after the
    // third packet it sits at -8 ms on both buckets.
    assert_eq!((x(0, "tokens"), x(0, "ctokens")), (-125_000, -125_000));
    assert_eq!(c[1].handle, "1:10");
    assert_eq!((c[1].packets, c[1].overlimits), (10, 9));
    assert_eq!((x(1, "lended"), x(1, "borrowed")), (6, 4));
    // The last packet went on the leaf's own rate: -11.2 ms, -8 ms.
    assert_eq!((x(1, "tokens"), x(1, "ctokens")), (-175_000, -125_000));
}

/// Two leaves of one prio share by quantum (DRR): with quantum 2000 and
/// 1000-byte packets each turn takes two, the first turn one (deficits
/// start at 0). Bursts of 100 kB keep every class sending.
#[test]
fn leaves_of_a_prio_take_turns_by_quantum() {
    let mut q = htb(0);
    let fast = 12_500_000;
    class(
        &mut q,
        0x1_0001,
        0x1_0000,
        &copt_burst(fast, fast, 0, 0, 100_000),
    );
    class(
        &mut q,
        0x1_0010,
        0x1_0001,
        &copt_burst(fast, fast, 2000, 0, 100_000),
    );
    class(
        &mut q,
        0x1_0020,
        0x1_0001,
        &copt_burst(fast, fast, 2000, 0, 100_000),
    );
    let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
    for (id, cl) in [
        (1, 0x1_0010),
        (2, 0x1_0010),
        (3, 0x1_0010),
        (4, 0x1_0020),
        (5, 0x1_0020),
        (6, 0x1_0020),
    ] {
        let mut cx = EnqueueCtx::new(&mut none);
        assert!(q.enqueue_at(pkt(id, 1000, cl), &mut cx).is_ok());
    }
    let order: Vec<u64> = drain(&mut q, T0, 6).iter().map(|p| p.0).collect();
    assert_eq!(order, vec![1, 4, 2, 3, 5, 6]);
}

/// htb_classify: skb->priority naming a leaf; equal to the handle: the
/// direct queue; the filters' classid; an inner class's filters; an
/// unknown class: the default; no default: direct; SHOT: a drop.
#[test]
fn classify_as_htb_classify() {
    let mut q = htb(0x20);
    let r = copt(125_000, 125_000, 0, 0);
    class(&mut q, 0x1_0001, 0x1_0000, &r);
    class(&mut q, 0x1_0010, 0x1_0001, &r);
    class(&mut q, 0x1_0020, 0x1_0001, &r);
    // Filters: at 1: the packet's mark picks; at the inner class 1:1, 1:20.
    let mut filters = |at: u32, p: &mut Pkt| match (at, p.skb.mark) {
        (0x1_0000, 0) => Classified::NoMatch,
        (0x1_0000, 1) => Classified::Shot,
        (0x1_0000, 2) => Classified::Class(0x1_0000),
        (0x1_0000, 3) => Classified::Class(0x1_0001),
        (0x1_0000, 4) => Classified::Class(0x1_0099),
        (0x1_0000, m) => Classified::Class(m),
        (0x1_0001, _) => Classified::Class(0x1_0020),
        _ => Classified::NoMatch,
    };
    let mut send = |q: &mut Sch, id: u64, prio: u32, mark: u32| {
        let mut p = pkt(id, 100, prio);
        p.skb.mark = mark;
        let mut cx = EnqueueCtx::new(&mut filters);
        q.enqueue_at(p, &mut cx).map_err(|r| r.is_drop())
    };
    assert_eq!(send(&mut q, 1, 0x1_0010, 0), Ok(())); // priority: 1:10
    assert_eq!(send(&mut q, 2, 0x1_0000, 0), Ok(())); // priority = handle: direct
    assert_eq!(send(&mut q, 3, 0, 0), Ok(())); // no match: default 1:20
    assert_eq!(send(&mut q, 4, 0, 1), Err(true)); // SHOT
    assert_eq!(send(&mut q, 5, 0, 2), Ok(())); // classid = handle: direct
    assert_eq!(send(&mut q, 6, 0, 3), Ok(())); // inner 1:1, its filter: 1:20
    assert_eq!(send(&mut q, 7, 0, 4), Ok(())); // unknown class: default 1:20
    assert_eq!(send(&mut q, 8, 0, 0x1_0010), Ok(()));
    let s = q.stats();
    assert_eq!((s.qlen, s.drops), (7, 1));
    assert_eq!(q.dump().options.get("direct_packets_stat"), Some(&2.into()));
    let c = q.class_dumps();
    assert_eq!((c[1].handle.as_str(), c[1].qlen), ("1:10", 2));
    assert_eq!((c[2].handle.as_str(), c[2].qlen), ("1:20", 3));
    // The direct queue goes first.
    let order: Vec<u64> = drain(&mut q, T0, 7).iter().map(|p| p.0).collect();
    assert_eq!(&order[..2], &[2, 5]);
    // Without a default class an unclassified packet goes direct.
    let mut q = htb(0);
    class(&mut q, 0x1_0010, 0x1_0000, &r);
    let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
    let mut cx = EnqueueCtx::new(&mut none);
    assert!(q.enqueue_at(pkt(1, 100, 0), &mut cx).is_ok());
    assert_eq!(q.dump().options.get("direct_packets_stat"), Some(&1.into()));
}

/// A class that gets a child turns inner: its queue is purged; deleting
/// the child makes it a leaf again; a class with children is EBUSY.
#[test]
fn classes_come_and_go() {
    let mut q = htb(0);
    let r = copt(125_000, 125_000, 0, 0);
    class(&mut q, 0x1_0001, 0x1_0000, &r);
    let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
    let mut cx = EnqueueCtx::new(&mut none);
    assert!(q.enqueue_at(pkt(1, 100, 0x1_0001), &mut cx).is_ok());
    let purged = q
        .classes()
        .unwrap()
        .change(0x1_0010, 0x1_0001, &r, &dev(), 0)
        .unwrap();
    assert_eq!(purged.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1]);
    assert_eq!(q.stats().qlen, 0);
    match q.classes().unwrap().delete(0x1_0001) {
        Err(DatapathError::Errno { errno, .. }) => assert_eq!(errno, 16),
        r => panic!("{:?}", r.map(|v| v.len())),
    }
    assert!(q.classes().unwrap().delete(0x1_0010).unwrap().is_empty());
    let c = q.class_dumps();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].options.get("prio"), Some(&0.into()));
}
