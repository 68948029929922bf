//! Packet scheduling (net/sched): the `Qdisc` trait — the kernel's
//! `Qdisc_ops` (enqueue, dequeue, peek, reset, dump, the class ops of a
//! classful qdisc) — one file per qdisc, and the registry `tc qdisc add ...
//! KIND` looks kinds up in (what `tc qdisc|class` change, net/sched/sch_api.c,
//! is core/rtnl_tc.rs); `dump` prints what `tc -s qdisc|class show` prints.
//!
//! A new qdisc is one file here, one line in `QDISCS` and its variant of
//! `QdiscOptions` (the netlink attributes tc sends for it).

pub mod act_api;
pub mod act_bpf;
pub mod act_csum;
pub mod act_gact;
pub mod act_mirred;
pub mod act_nat;
pub mod act_pedit;
pub mod act_police;
pub mod act_sample;
pub mod act_skbedit;
pub mod act_vlan;
pub mod cls_api;
pub mod cls_basic;
pub mod cls_bpf;
pub mod cls_flower;
pub mod cls_fw;
pub mod cls_matchall;
pub mod cls_u32;
mod codel;
pub mod dump;
pub mod fifo;
pub mod fq_codel;
pub mod htb;
#[cfg(test)]
mod htb_tests;
mod htb_tree;
pub mod ingress;
pub mod mq;
pub mod netem;
pub mod pfifo_fast;
pub mod prio;
pub mod rate;
pub mod tbf;

use std::ops::{Deref, DerefMut};

use serde::Serialize;

use crate::core::{errno, DatapathError, Pkt, EINVAL, EOPNOTSUPP};
use crate::drivers::NetDevice;
pub use dump::{ClassShow, Dump, QdiscShow, TcShow};

/// include/uapi/linux/pkt_sched.h: handles are major:minor, 16 bits each.
pub const TC_H_MAJ_MASK: u32 = 0xFFFF_0000;
pub const TC_H_MIN_MASK: u32 = 0x0000_FFFF;
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
pub const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
pub const TC_H_UNSPEC: u32 = 0;

pub const fn tc_h_maj(h: u32) -> u32 {
    h & TC_H_MAJ_MASK
}

pub const fn tc_h_min(h: u32) -> u32 {
    h & TC_H_MIN_MASK
}

pub const fn tc_h_make(maj: u32, min: u32) -> u32 {
    (maj & TC_H_MAJ_MASK) | (min & TC_H_MIN_MASK)
}

/// `tc -s qdisc` statistics (struct gnet_stats_basic + gnet_stats_queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QdiscStats {
    /// Sent bytes and packets (counted at dequeue, qdisc_bstats_update).
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    /// Bytes and packets queued now.
    pub backlog: u64,
    pub qlen: u64,
}

impl QdiscStats {
    /// qdisc_bstats_update + qdisc_qstats_backlog_dec + qlen--.
    pub(crate) fn sent(&mut self, len: usize) {
        self.bytes += len as u64;
        self.packets += 1;
        self.backlog = self.backlog.saturating_sub(len as u64);
        self.qlen = self.qlen.saturating_sub(1);
    }

    /// A classful parent's enqueue into its child (prio_enqueue, tbf_enqueue:
    /// qdisc_enqueue, then qlen/backlog up on success, qdisc_qstats_drop when
    /// the child dropped it).
    pub(crate) fn enqueue_child(
        &mut self,
        child: &mut dyn Qdisc,
        pkt: Pkt,
        cx: &mut EnqueueCtx,
    ) -> Result<(), Refused> {
        let len = pkt.skb.len();
        let r = child.enqueue_at(pkt, cx);
        match &r {
            Ok(()) => self.queued(len),
            Err(e) if e.is_drop() => self.drops += 1,
            Err(_) => {}
        }
        r
    }

    pub(crate) fn queued(&mut self, len: usize) {
        self.backlog += len as u64;
        self.qlen += 1;
    }

    /// A queued packet left without being sent (dropped from the queue).
    pub(crate) fn unqueued(&mut self, len: usize) {
        self.backlog = self.backlog.saturating_sub(len as u64);
        self.qlen = self.qlen.saturating_sub(1);
    }

    pub(crate) fn add(&mut self, o: &QdiscStats) {
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.drops += o.drops;
        self.overlimits += o.overlimits;
        self.requeues += o.requeues;
        self.backlog += o.backlog;
        self.qlen += o.qlen;
    }
}

/// What tcf_classify gave for a packet at a filter attachment point
/// (a qdisc's handle, or an inner class's classid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classified {
    /// No filters there, or none matched (tcf_classify < 0).
    NoMatch,
    /// res.classid (TC_ACT_OK / UNSPEC with a class).
    Class(u32),
    /// TC_ACT_SHOT: the qdisc drops it (counted as its drop).
    Shot,
    /// TC_ACT_STOLEN / QUEUED / TRAP: consumed, not a qdisc drop.
    Stolen,
}

/// What enqueue needs besides the packet: the classifier, and where the
/// packets it gives up go.
pub(crate) struct EnqueueCtx<'a> {
    /// The engine's clock (the packet's time).
    pub now: u64,
    /// tcf_classify over the filters attached at `parent` (a qdisc handle or
    /// a classid); the packet may be changed by actions.
    pub classify: &'a mut dyn FnMut(u32, &mut Pkt) -> Classified,
    /// Packets a qdisc gives up besides the one being enqueued (fq_codel's
    /// drop_batch, netem's duplicates...): the caller ends them QDISC_DROP.
    pub dropped: Vec<Pkt>,
    /// A consumed packet (Classified::Stolen): ended by the caller as such.
    pub stolen: Vec<Pkt>,
    /// netem's copies (id 0 until the caller gives them one): enqueued
    /// again at the root with `no_duplicate` set.
    pub duplicates: Vec<Pkt>,
    pub no_duplicate: bool,
}

impl<'a> EnqueueCtx<'a> {
    pub fn new(classify: &'a mut dyn FnMut(u32, &mut Pkt) -> Classified) -> Self {
        EnqueueCtx {
            now: 0,
            classify,
            dropped: Vec::new(),
            stolen: Vec::new(),
            duplicates: Vec::new(),
            no_duplicate: false,
        }
    }
}

/// Why enqueue refused a packet (NET_XMIT_DROP vs __NET_XMIT_STOLEN).
pub(crate) enum Refused {
    /// qdisc_drop: counted as the qdisc's drop.
    Drop(Pkt),
    /// Consumed by an action; not a drop of this qdisc.
    Stolen(Pkt),
}

impl Refused {
    #[cfg(test)]
    pub fn pkt(self) -> Pkt {
        match self {
            Refused::Drop(p) | Refused::Stolen(p) => p,
        }
    }

    /// net_xmit_drop_count: does the parent count it as its drop too.
    pub fn is_drop(&self) -> bool {
        matches!(self, Refused::Drop(_))
    }
}

/// struct Qdisc_ops (and Qdisc_class_ops for classful ones).
pub(crate) trait Qdisc: Send {
    /// The kind as tc names it ("pfifo_fast").
    fn kind(&self) -> &'static str;
    /// ->enqueue. A refused packet comes back; the qdisc has counted it.
    fn enqueue_at(&mut self, pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused>;
    /// ->dequeue at time `now` (the engine's clock, ns).
    fn dequeue_at(&mut self, now: u64) -> Option<Pkt>;
    /// The next packet dequeue would give (classful parents and shapers look).
    fn peek(&self) -> Option<&Pkt>;
    /// qdisc_reset: everything queued goes to `drop`.
    fn reset(&mut self, drop: &mut dyn FnMut(Pkt));
    fn qlen(&self) -> usize;
    fn stats(&self) -> QdiscStats;
    /// A work-conserving qdisc sends whenever it holds packets; a shaper
    /// (tbf, htb, netem, fq) may hold them until a time comes.
    fn work_conserving(&self) -> bool {
        true
    }
    /// Whether dequeue may drop packets (CoDel): they wait in the qdisc for
    /// `take_dropped`.
    fn drops_on_dequeue(&self) -> bool {
        false
    }
    /// The packets dequeue dropped since the last call.
    fn take_dropped(&mut self, _out: &mut Vec<Pkt>) {}
    /// qdisc_tree_reduce_backlog: `n` packets of `bytes` below this qdisc
    /// are gone (dropped by a child's dequeue).
    fn tree_reduce_backlog(&mut self, _n: usize, _bytes: u64) {}
    /// qdisc_watchdog_schedule_ns: the time a shaper asked to run again at.
    fn watchdog(&self) -> Option<u64> {
        None
    }
    /// ->dump and ->dump_stats: tc's options and the kind's xstats.
    fn dump(&self) -> Dump {
        Dump::default()
    }
    /// ->change (`tc qdisc change`).
    fn change(&mut self, _opts: &QdiscOptions, _dev: &QdiscDev) -> Result<(), DatapathError> {
        Err(errno(
            EOPNOTSUPP,
            format!("qdisc {} cannot be changed", self.kind()),
        ))
    }
    /// The handle it was given (classful qdiscs make classids from it).
    fn set_handle(&mut self, _handle: u32) {}
    /// The class ops: None for a classless qdisc.
    fn classes(&mut self) -> Option<&mut dyn ClassOps> {
        None
    }
    /// Child qdiscs (leaves of classes), for dumps and handle lookups.
    fn children(&self) -> Vec<&Sch> {
        Vec::new()
    }
    fn children_mut(&mut self) -> Vec<&mut Sch> {
        Vec::new()
    }
    /// ->dump_class of every class: (classid, parent, leaf handle, options, stats).
    fn class_dumps(&self) -> Vec<ClassShow> {
        Vec::new()
    }

    #[cfg(test)]
    fn enqueue(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
        self.enqueue_at(pkt, &mut EnqueueCtx::new(&mut none))
            .map_err(Refused::pkt)
    }

    #[cfg(test)]
    fn dequeue(&mut self) -> Option<Pkt> {
        self.dequeue_at(0)
    }
}

/// struct Qdisc_class_ops: `tc class add|change|del`, `tc qdisc add parent
/// X:Y` (graft).
pub(crate) trait ClassOps {
    /// ->change: create or change class `classid` under `parent` (a classid,
    /// or the qdisc's handle for a root class). What a parent leaf held when
    /// it became an inner class comes back to be dropped.
    fn change(
        &mut self,
        classid: u32,
        parent: u32,
        opts: &ClassOptions,
        dev: &QdiscDev,
        now: u64,
    ) -> Result<Vec<Pkt>, DatapathError>;
    /// ->delete: what its leaf held comes back to be dropped.
    fn delete(&mut self, classid: u32) -> Result<Vec<Pkt>, DatapathError>;
    /// ->graft: `new` becomes the leaf of `classid`; the old leaf comes back.
    fn graft(&mut self, classid: u32, new: Sch) -> Result<Sch, DatapathError>;
}

/// A qdisc with its handle and parent (struct Qdisc's handle/parent).
pub(crate) struct Sch {
    pub handle: u32,
    pub parent: u32,
    pub q: Box<dyn Qdisc>,
    /// The latest time it was run at: its clock never goes back.
    pub clock: u64,
    /// Work-conserving here and below (`refresh` after a change).
    pub conserving: bool,
    /// Some qdisc here or below drops at dequeue (`refresh` after a change).
    pub drops_below: bool,
}

impl Deref for Sch {
    type Target = dyn Qdisc;
    fn deref(&self) -> &Self::Target {
        self.q.as_ref()
    }
}

impl DerefMut for Sch {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.q.as_mut()
    }
}

impl Sch {
    pub fn new(handle: u32, parent: u32, q: Box<dyn Qdisc>) -> Sch {
        let mut s = Sch {
            handle,
            parent,
            q,
            clock: 0,
            conserving: true,
            drops_below: false,
        };
        s.refresh();
        s
    }

    /// A device's root qdisc.
    pub fn root(handle: u32, mut q: Box<dyn Qdisc>) -> Sch {
        q.set_handle(handle);
        Sch::new(handle, TC_H_ROOT, q)
    }

    /// The engine's clock for this qdisc, kept monotonic.
    pub fn tick(&mut self, now: u64) -> u64 {
        self.clock = self.clock.max(now);
        self.clock
    }

    /// The qdisc with `handle` here or below.
    pub fn find_mut(&mut self, handle: u32) -> Option<&mut Sch> {
        if self.handle == handle {
            return Some(self);
        }
        self.q
            .children_mut()
            .into_iter()
            .find_map(|c| c.find_mut(handle))
    }

    /// This qdisc and every one below, depth first.
    pub fn walk<'a>(&'a self, out: &mut Vec<&'a Sch>) {
        out.push(self);
        for c in self.q.children() {
            c.walk(out);
        }
    }

    /// Recomputes `conserving` here and below (after a graft or change).
    pub fn refresh(&mut self) -> bool {
        let mut all = self.q.work_conserving();
        let mut drops = self.q.drops_on_dequeue();
        for c in self.q.children_mut() {
            all &= c.refresh();
            drops |= c.drops_below;
        }
        self.conserving = all;
        self.drops_below = drops;
        all
    }

    /// What dequeues dropped here and below; each parent's counters lose
    /// what its children dropped (qdisc_tree_reduce_backlog).
    pub fn take_dropped(&mut self, out: &mut Vec<Pkt>) {
        if !self.drops_below {
            return;
        }
        self.q.take_dropped(out);
        let mut below = Vec::new();
        for c in self.q.children_mut() {
            c.take_dropped(&mut below);
        }
        if !below.is_empty() {
            let bytes = below.iter().map(|p| p.skb.len() as u64).sum();
            self.q.tree_reduce_backlog(below.len(), bytes);
            out.append(&mut below);
        }
    }

    /// The earliest watchdog here or below.
    pub fn next_watchdog(&self) -> Option<u64> {
        let own = self.q.watchdog();
        self.q
            .children()
            .into_iter()
            .filter_map(|c| c.next_watchdog())
            .chain(own)
            .min()
    }
}

/// What a qdisc is created for: its device's tx_queue_len, MTU and transmit queues.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QdiscDev {
    pub txqueuelen: u32,
    pub mtu: u32,
    pub tx_queues: usize,
}

/// A qdisc's parameters, as tc's netlink attributes carry them (each
/// kind's own struct in its file); None fields take the kernel's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QdiscOptions {
    Pfifo {
        limit: Option<u32>,
    },
    Bfifo {
        limit: Option<u32>,
    },
    PfifoFast,
    Mq,
    Noqueue,
    Prio(prio::PrioOptions),
    Tbf(tbf::TbfOptions),
    Htb(htb::HtbOptions),
    Netem(netem::NetemOptions),
    FqCodel(fq_codel::FqCodelOptions),
    /// `ingress` and `clsact`: filter attachment points, no queue.
    Ingress,
    Clsact,
}

impl QdiscOptions {
    /// The kind as tc names it.
    pub fn kind(&self) -> &'static str {
        match self {
            QdiscOptions::Pfifo { .. } => "pfifo",
            QdiscOptions::Bfifo { .. } => "bfifo",
            QdiscOptions::PfifoFast => "pfifo_fast",
            QdiscOptions::Mq => "mq",
            QdiscOptions::Noqueue => "noqueue",
            QdiscOptions::Prio(_) => "prio",
            QdiscOptions::Tbf(_) => "tbf",
            QdiscOptions::Htb(_) => "htb",
            QdiscOptions::Netem(_) => "netem",
            QdiscOptions::FqCodel(_) => "fq_codel",
            QdiscOptions::Ingress => "ingress",
            QdiscOptions::Clsact => "clsact",
        }
    }

    /// The options of `kind` given none (`tc qdisc add ... KIND`), for the
    /// kinds that need none; Err for those that do (tbf needs a rate).
    pub fn defaults(kind: &str) -> Result<QdiscOptions, DatapathError> {
        Ok(match kind {
            "pfifo" => QdiscOptions::Pfifo { limit: None },
            "bfifo" => QdiscOptions::Bfifo { limit: None },
            "pfifo_fast" => QdiscOptions::PfifoFast,
            "mq" => QdiscOptions::Mq,
            "noqueue" => QdiscOptions::Noqueue,
            "prio" => QdiscOptions::Prio(prio::PrioOptions::default()),
            "htb" => QdiscOptions::Htb(htb::HtbOptions::default()),
            "fq_codel" => QdiscOptions::FqCodel(fq_codel::FqCodelOptions::default()),
            "netem" => QdiscOptions::Netem(netem::NetemOptions {
                limit: 1000,
                ..Default::default()
            }),
            "ingress" => QdiscOptions::Ingress,
            "clsact" => QdiscOptions::Clsact,
            "tbf" => {
                return Err(errno(
                    EINVAL,
                    "tbf: \"rate\" and \"burst\" are required (tbf_change)",
                ))
            }
            _ => return Err(unknown_kind(kind)),
        })
    }
}

/// A class's parameters (`tc class add ... KIND ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassOptions {
    Htb(htb::HtbClassOptions),
}

type Ctor = fn(&QdiscOptions, &QdiscDev) -> Result<Box<dyn Qdisc>, DatapathError>;

/// The qdiscs `tc qdisc add` knows, by kind ("noqueue" is none at all;
/// ingress and clsact are not on the egress path).
const QDISCS: &[(&str, Ctor)] = &[
    ("pfifo_fast", pfifo_fast::PfifoFast::from_options),
    ("pfifo", fifo::Fifo::from_options),
    ("bfifo", fifo::Fifo::from_options),
    ("mq", mq::Mq::from_options),
    ("prio", prio::Prio::create),
    ("tbf", tbf::Tbf::create),
    ("htb", htb::Htb::create),
    ("netem", netem::Netem::create),
    ("fq_codel", fq_codel::FqCodel::create),
];

fn unknown_kind(kind: &str) -> DatapathError {
    errno(
        EINVAL,
        format!(
            "unknown qdisc {kind:?} (known: noqueue, ingress, clsact, {})",
            QDISCS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn qdisc_dev(ops: &dyn NetDevice, txqueuelen: u32, mtu: u32) -> QdiscDev {
    QdiscDev {
        txqueuelen,
        mtu,
        tx_queues: ops.features().tx_queues.max(1),
    }
}

/// qdisc_create: a qdisc from its options for a device; Ok(None) for "noqueue".
pub(crate) fn create_with(
    opts: &QdiscOptions,
    dev: &QdiscDev,
) -> Result<Option<Box<dyn Qdisc>>, DatapathError> {
    let kind = opts.kind();
    if kind == "noqueue" {
        return Ok(None);
    }
    // sch_mq.c: mq_init — only on a multiqueue device.
    if kind == "mq" && dev.tx_queues < 2 {
        return Err(errno(
            EOPNOTSUPP,
            "mq needs a multiqueue device (netif_is_multiqueue)",
        ));
    }
    match QDISCS.iter().find(|(k, _)| *k == kind) {
        Some((_, ctor)) => ctor(opts, dev).map(Some),
        None => Err(unknown_kind(kind)),
    }
}

/// A qdisc of kind `kind` with its defaults for a device; Ok(None) for "noqueue".
pub(crate) fn create(
    kind: &str,
    ops: &dyn NetDevice,
    txqueuelen: u32,
    mtu: u32,
) -> Result<Option<Box<dyn Qdisc>>, DatapathError> {
    if kind == "ingress" || kind == "clsact" {
        return Err(errno(
            EINVAL,
            format!("{kind} is not an egress root qdisc (tc qdisc add dev X {kind})"),
        ));
    }
    let opts = QdiscOptions::defaults(kind)?;
    create_with(&opts, &qdisc_dev(ops, txqueuelen, mtu))
}

/// qdisc_create_dflt(pfifo): a class's default leaf, tx_queue_len packets.
pub(crate) fn default_leaf(dev: &QdiscDev, handle: u32, parent: u32) -> Sch {
    Sch::new(
        handle,
        parent,
        Box::new(fifo::Fifo::new(false, dev.txqueuelen.max(1) as u64)),
    )
}

/// attach_default_qdiscs: noqueue on IFF_NO_QUEUE devices (veth, netkit, lo),
/// mq with a default qdisc per tx queue on multiqueue devices, else the
/// default qdisc (net.core.default_qdisc = pfifo_fast).
pub(crate) fn default_qdisc(
    ops: &dyn NetDevice,
    txqueuelen: u32,
    mtu: u32,
) -> Option<Box<dyn Qdisc>> {
    let f = ops.features();
    let dev = qdisc_dev(ops, txqueuelen, mtu);
    if f.no_queue {
        None
    } else if dev.tx_queues > 1 {
        Some(mq::Mq::create(&dev))
    } else {
        Some(pfifo_fast::PfifoFast::create(&dev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buff::SkBuff;

    fn pkt(id: u64, len: usize, priority: u32) -> Pkt {
        let mut skb = SkBuff::new(&vec![0u8; len], 64, 2, 1500);
        skb.priority = priority;
        Pkt {
            id,
            ts: 0,
            skb: Box::new(skb),
        }
    }

    fn dev(txqueuelen: u32, tx_queues: usize) -> QdiscDev {
        QdiscDev {
            txqueuelen,
            mtu: 1500,
            tx_queues,
        }
    }

    #[test]
    fn pfifo_drops_past_its_limit_and_counts() {
        let mut q = fifo::Fifo::create_pfifo(&dev(2, 1));
        assert!(q.enqueue(pkt(1, 100, 0)).is_ok());
        assert!(q.enqueue(pkt(2, 60, 0)).is_ok());
        assert_eq!(q.enqueue(pkt(3, 60, 0)).map_err(|p| p.id), Err(3));
        let s = q.stats();
        assert_eq!((s.qlen, s.backlog, s.drops, s.packets), (2, 160, 1, 0));
        assert_eq!(q.dequeue().map(|p| p.id), Some(1));
        let s = q.stats();
        assert_eq!((s.qlen, s.backlog, s.packets, s.bytes), (1, 60, 1, 100));
    }

    #[test]
    fn bfifo_limits_bytes() {
        // tx_queue_len 1 x (MTU 1500 + 14) bytes.
        let mut q = fifo::Fifo::create_bfifo(&dev(1, 1));
        assert!(q.enqueue(pkt(1, 1000, 0)).is_ok());
        assert!(q.enqueue(pkt(2, 514, 0)).is_ok());
        assert!(q.enqueue(pkt(3, 1, 0)).is_err());
        assert_eq!(q.kind(), "bfifo");
    }

    #[test]
    fn pfifo_fast_dequeues_band_0_first() {
        let mut q = pfifo_fast::PfifoFast::create(&dev(10, 1));
        // priority 0 -> band 1, 6 (TC_PRIO_INTERACTIVE) -> band 0, 1 -> band 2
        for (id, prio) in [(1, 0), (2, 1), (3, 6)] {
            assert!(q.enqueue(pkt(id, 64, prio)).is_ok());
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue().map(|p| p.id)).collect();
        assert_eq!(order, vec![3, 1, 2]);
    }

    #[test]
    fn mq_keeps_arrival_order_over_its_queues() {
        let mut q = mq::Mq::create(&dev(10, 4));
        for id in 1..=6u64 {
            let mut p = pkt(id, 64, 0);
            p.skb.queue_mapping = id as u16; // recorded rx queue id - 1
            assert!(q.enqueue(p).is_ok());
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue().map(|p| p.id)).collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(q.stats().packets, 6);
    }
}
