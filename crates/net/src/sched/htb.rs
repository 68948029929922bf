//! net/sched/sch_htb.c: htb — a tree of classes, each a token bucket for
//! its `rate` and one for its `ceil`; leaves hold a qdisc (pfifo by
//! default). A class that has used its rate may borrow from its ancestors
//! up to its ceil; leaves of one priority share by deficit round robin
//! (`quantum`). Classification: skb->priority naming a class, the filters
//! at the qdisc (then at inner classes), the default class, else the
//! direct queue. The feed/row/wait-queue machinery is in `htb_tree`.

use std::collections::{BTreeMap, VecDeque};

use super::dump::{handle_str, rate_str, size_str};
use super::htb_tree::{Cmode, Feed, FeedRef, Levels, TC_HTB_MAXDEPTH, TC_HTB_NUMPRIO};
use super::rate::{psched_ticks2ns, xmitsize, PschedRate, NSEC_PER_SEC};
use super::{
    default_leaf, tc_h_maj, tc_h_make, ClassOps, ClassOptions, ClassShow, Classified, Dump,
    EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats, Refused, Sch, TC_H_ROOT,
};
use crate::core::{errno, DatapathError, Pkt, EINVAL, ENOENT};

/// The kernel's EBUSY.
const EBUSY: i32 = 16;

/// cl->mbuffer: tokens never go below a minute's worth of debt.
const HTB_MBUFFER: i64 = 60 * NSEC_PER_SEC as i64;

/// struct tc_htb_glob (+ TCA_HTB_DIRECT_QLEN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtbOptions {
    pub r2q: u32,
    /// The default class's minor (`default 30` is 0x30).
    pub defcls: u32,
    /// None: the device's tx_queue_len (at least 2).
    pub direct_qlen: Option<u32>,
}

impl Default for HtbOptions {
    /// q_htb.c's defaults: r2q 10, no default class.
    fn default() -> Self {
        HtbOptions {
            r2q: 10,
            defcls: 0,
            direct_qlen: None,
        }
    }
}

/// struct tc_htb_opt as tc fills it: rates in bytes/s, buffers in psched
/// ticks (tc_calc_xmittime of burst/cburst), quantum 0 for r2q's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtbClassOptions {
    pub rate: u64,
    pub ceil: u64,
    pub buffer: u32,
    pub cbuffer: u32,
    pub quantum: u32,
    pub prio: u32,
}

/// struct htb_class.
pub(crate) struct Class {
    pub classid: u32,
    pub parent: Option<u32>,
    pub level: usize,
    pub children: u32,
    pub rate: PschedRate,
    pub ceil: PschedRate,
    pub buffer: i64,
    pub cbuffer: i64,
    pub mbuffer: i64,
    pub tokens: i64,
    pub ctokens: i64,
    pub t_c: i64,
    pub quantum: i32,
    pub prio: usize,
    pub cmode: Cmode,
    pub prio_activity: u32,
    /// A leaf's qdisc (None for inner classes).
    pub leaf: Option<Sch>,
    pub deficit: [i32; TC_HTB_MAXDEPTH],
    /// An inner class's feeds, one per priority.
    pub feeds: [Feed; TC_HTB_NUMPRIO],
    /// The key in its level's wait queue, when there.
    pub pq: Option<(i64, u64)>,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub lends: u64,
    pub borrows: u64,
}

/// struct htb_sched.
pub(crate) struct Htb {
    pub(super) handle: u32,
    defcls: u32,
    rate2quantum: u32,
    direct_qlen: u32,
    pub(super) classes: BTreeMap<u32, Class>,
    direct: VecDeque<Pkt>,
    direct_pkts: u64,
    pub(super) lv: Levels,
    pub(super) now: i64,
    pub(super) stats: QdiscStats,
    watchdog: Option<u64>,
    dev: QdiscDev,
}

/// Where htb_classify sends a packet.
enum Target {
    Direct,
    Class(u32),
    Refuse(Classified),
}

impl Htb {
    pub fn create(opts: &QdiscOptions, dev: &QdiscDev) -> Result<Box<dyn Qdisc>, DatapathError> {
        let QdiscOptions::Htb(o) = opts else {
            return Err(errno(EINVAL, "htb: wrong options"));
        };
        let mut h = Htb {
            handle: 0,
            defcls: 0,
            rate2quantum: 10,
            direct_qlen: 2,
            classes: BTreeMap::new(),
            direct: VecDeque::new(),
            direct_pkts: 0,
            lv: Levels::default(),
            now: 0,
            stats: QdiscStats::default(),
            watchdog: None,
            dev: *dev,
        };
        h.tune(o);
        Ok(Box::new(h))
    }

    /// htb_init / htb_change: r2q (at least 1), default class, direct_qlen
    /// (the device's tx_queue_len, at least 2).
    fn tune(&mut self, o: &HtbOptions) {
        self.rate2quantum = o.r2q.max(1);
        self.defcls = o.defcls;
        self.direct_qlen = o.direct_qlen.unwrap_or(self.dev.txqueuelen.max(2));
    }

    pub(super) fn cls(&self, id: u32) -> Option<&Class> {
        self.classes.get(&id)
    }

    pub(super) fn cls_mut(&mut self, id: u32) -> Option<&mut Class> {
        self.classes.get_mut(&id)
    }

    /// htb_classify.
    fn classify(&mut self, pkt: &mut Pkt, cx: &mut EnqueueCtx) -> Target {
        let prio = pkt.skb.priority;
        if prio == self.handle {
            return Target::Direct;
        }
        let mut at = self.handle;
        if let Some(cl) = self.cls(prio) {
            if cl.level == 0 {
                return Target::Class(prio);
            }
            at = prio;
        }
        for _ in 0..=TC_HTB_MAXDEPTH {
            match (cx.classify)(at, pkt) {
                r @ (Classified::Shot | Classified::Stolen) => return Target::Refuse(r),
                Classified::NoMatch => break,
                Classified::Class(id) => {
                    if id == self.handle {
                        return Target::Direct;
                    }
                    match self.cls(id) {
                        None => break,
                        Some(cl) if cl.level == 0 => return Target::Class(id),
                        Some(_) => at = id,
                    }
                }
            }
        }
        let def = tc_h_make(tc_h_maj(self.handle), self.defcls);
        match self.cls(def) {
            Some(cl) if cl.level == 0 => Target::Class(def),
            _ => Target::Direct,
        }
    }

    /// htb_dequeue_tree: the next packet of `prio` at `level` (DRR).
    fn dequeue_tree(&mut self, prio: usize, level: usize, now: u64) -> Option<Pkt> {
        let mut cl = self.lookup_leaf(level, prio);
        let mut start = cl;
        let mut got = None;
        for _ in 0..=self.classes.len() {
            let id = cl?;
            let empty = self
                .cls(id)
                .and_then(|c| c.leaf.as_ref())
                .is_none_or(|l| l.qlen() == 0);
            if empty {
                self.deactivate(id);
                if self.lv.row_mask[level] & (1 << prio) == 0 {
                    return None;
                }
                let next = self.lookup_leaf(level, prio);
                if cl == start {
                    start = next;
                }
                cl = next;
                continue;
            }
            let p = self
                .cls_mut(id)
                .and_then(|c| c.leaf.as_mut())
                .and_then(|l| l.dequeue_at(now));
            if let Some(p) = p {
                got = Some((id, p));
                break;
            }
            // A leaf qdisc that is not work-conserving (a shaper) held it.
            self.next_ptr(id, level, prio);
            cl = self.lookup_leaf(level, prio);
            if cl == start {
                break;
            }
        }
        let (id, p) = got?;
        let len = p.skb.len();
        let mut leaf_empty = false;
        if let Some(c) = self.cls_mut(id) {
            c.bytes += len as u64;
            c.packets += 1;
            c.deficit[level] = c.deficit[level].saturating_sub(len as i32);
            leaf_empty = c.leaf.as_ref().is_none_or(|l| l.qlen() == 0);
        }
        if self.cls(id).is_some_and(|c| c.deficit[level] < 0) {
            if let Some(c) = self.cls_mut(id) {
                c.deficit[level] = c.deficit[level].saturating_add(c.quantum);
            }
            self.next_ptr(id, level, prio);
        }
        if leaf_empty {
            self.deactivate(id);
        }
        self.charge_class(id, level, len as u32);
        Some(p)
    }

    /// The DRR pointer a leaf moves on: its parent's feed when borrowing
    /// (level > 0), else its row.
    fn next_ptr(&mut self, id: u32, level: usize, prio: usize) {
        let r = match self.cls(id).and_then(|c| c.parent) {
            Some(p) if level > 0 => FeedRef::Inner(p),
            _ => FeedRef::Row(level),
        };
        if let Some(f) = self.feed_mut(r, prio) {
            f.next();
        }
    }

    /// htb_dequeue's search over the levels; sets the watchdog when
    /// nothing may be sent now.
    fn dequeue_classes(&mut self, now: u64) -> Option<Pkt> {
        self.now = now.min(i64::MAX as u64) as i64;
        let mut next_event = self.now.saturating_add(5 * NSEC_PER_SEC as i64);
        for level in 0..TC_HTB_MAXDEPTH {
            let mut event = self.lv.near_ev_cache[level];
            if self.now >= event {
                event = self.do_events(level);
                if event == 0 {
                    event = self.now.saturating_add(NSEC_PER_SEC as i64);
                }
                self.lv.near_ev_cache[level] = event;
            }
            next_event = next_event.min(event);
            for prio in 0..TC_HTB_NUMPRIO {
                if self.lv.row_mask[level] & (1 << prio) == 0 {
                    continue;
                }
                if let Some(p) = self.dequeue_tree(prio, level, now) {
                    return Some(p);
                }
            }
        }
        // qdisc_watchdog_schedule_ns (or schedule_work: run again now).
        self.watchdog = Some(next_event.max(self.now) as u64);
        None
    }

    /// htb_change_class for a new class.
    fn new_class(
        &mut self,
        classid: u32,
        parent: Option<u32>,
        o: &HtbClassOptions,
        now: i64,
    ) -> Result<Vec<Pkt>, DatapathError> {
        if classid == 0 || tc_h_maj(classid ^ self.handle) != 0 || self.cls(classid).is_some() {
            return Err(errno(
                EINVAL,
                format!(
                    "htb: bad classid {} for qdisc {}",
                    handle_str(classid),
                    handle_str(self.handle)
                ),
            ));
        }
        let mut purged = Vec::new();
        if let Some(p) = parent {
            let pc = self
                .cls(p)
                .ok_or_else(|| errno(ENOENT, format!("htb: no parent class {}", handle_str(p))))?;
            if let Some(gp) = pc.parent.and_then(|g| self.cls(g)) {
                if gp.level < 2 {
                    return Err(errno(EINVAL, "htb: tree is too deep"));
                }
            }
            if pc.level == 0 {
                purged = self.leaf_to_inner(p);
            }
            if let Some(pc) = self.cls_mut(p) {
                pc.children += 1;
            }
        }
        let leaf = default_leaf(&self.dev, 0, classid);
        let cl = Class {
            classid,
            parent,
            level: 0,
            children: 0,
            rate: PschedRate::default(),
            ceil: PschedRate::default(),
            buffer: 0,
            cbuffer: 0,
            mbuffer: HTB_MBUFFER,
            tokens: psched_ticks2ns(o.buffer as u64) as i64,
            ctokens: psched_ticks2ns(o.cbuffer as u64) as i64,
            t_c: now,
            quantum: 0,
            prio: 0,
            cmode: Cmode::CanSend,
            prio_activity: 0,
            leaf: Some(leaf),
            deficit: [0; TC_HTB_MAXDEPTH],
            feeds: Default::default(),
            pq: None,
            bytes: 0,
            packets: 0,
            drops: 0,
            overlimits: 0,
            lends: 0,
            borrows: 0,
        };
        self.classes.insert(classid, cl);
        Ok(purged)
    }

    /// A leaf gets its first child: its queue is purged, it leaves the
    /// feeds and the wait queue, its level is one below its parent's.
    fn leaf_to_inner(&mut self, id: u32) -> Vec<Pkt> {
        let mut purged = Vec::new();
        if self.cls(id).is_some_and(|c| c.prio_activity != 0) {
            self.deactivate(id);
        }
        if self.cls(id).is_some_and(|c| c.cmode != Cmode::CanSend) {
            self.wait_remove(id);
            if let Some(c) = self.cls_mut(id) {
                c.cmode = Cmode::CanSend;
            }
        }
        let above = self
            .cls(id)
            .and_then(|c| c.parent)
            .and_then(|p| self.cls(p))
            .map(|p| p.level)
            .unwrap_or(TC_HTB_MAXDEPTH);
        if let Some(c) = self.cls_mut(id) {
            if let Some(mut l) = c.leaf.take() {
                l.reset(&mut |p| purged.push(p));
            }
            c.level = above.saturating_sub(1);
            c.feeds = Default::default();
        }
        self.forget(purged.iter().map(|p| p.skb.len()));
        purged
    }

    /// Queued packets gone from below: the qdisc's qlen and backlog
    /// (qdisc_tree_reduce_backlog).
    fn forget(&mut self, lens: impl Iterator<Item = usize>) {
        for l in lens {
            self.stats.unqueued(l);
        }
    }

    /// htb_change_class's common part: rates, buffers, a leaf's quantum
    /// (rate / r2q within 1000..200000 unless given) and prio.
    fn set_params(&mut self, id: u32, o: &HtbClassOptions) {
        let r2q = self.rate2quantum as u64;
        let Some(c) = self.cls_mut(id) else { return };
        c.rate = PschedRate::new(o.rate);
        c.ceil = PschedRate::new(o.ceil);
        if c.level == 0 {
            let q = (c.rate.rate_bytes_ps / r2q).min(i32::MAX as u64) as i32;
            c.quantum = if o.quantum != 0 {
                o.quantum.min(i32::MAX as u32) as i32
            } else {
                q.clamp(1000, 200_000)
            };
            c.prio = (o.prio as usize).min(TC_HTB_NUMPRIO - 1);
        }
        c.buffer = psched_ticks2ns(o.buffer as u64) as i64;
        c.cbuffer = psched_ticks2ns(o.cbuffer as u64) as i64;
    }

    fn dump_class(&self, c: &Class) -> ClassShow {
        let mut d = Dump::default();
        if c.level == 0 {
            d.opt("prio", c.prio, format!("prio {}", c.prio));
        }
        let (r, ce) = (c.rate.rate_bytes_ps, c.ceil.rate_bytes_ps);
        d.opt("rate", r, format!("rate {}", rate_str(r)));
        d.opt("ceil", ce, format!("ceil {}", rate_str(ce)));
        let burst = xmitsize(r, (c.buffer >> 6) as u64);
        let cburst = xmitsize(ce, (c.cbuffer >> 6) as u64);
        d.opt("burst", burst, format!("burst {}", size_str(burst)));
        d.opt("cburst", cburst, format!("cburst {}", size_str(cburst)));
        let tokens = (c.tokens >> 6).clamp(i32::MIN as i64, i32::MAX as i64);
        let ctokens = (c.ctokens >> 6).clamp(i32::MIN as i64, i32::MAX as i64);
        d.xstat("lended", c.lends, "");
        d.xstat("borrowed", c.borrows, "");
        d.xstat("giants", 0, "");
        d.xstat("tokens", tokens, "");
        d.xstat("ctokens", ctokens, "");
        d.xstats_text.push(format!(
            "lended: {} borrowed: {} giants: 0",
            c.lends, c.borrows
        ));
        d.xstats_text
            .push(format!("tokens: {tokens} ctokens: {ctokens}"));
        let mut s = QdiscStats {
            bytes: c.bytes,
            packets: c.packets,
            drops: c.drops,
            overlimits: c.overlimits,
            ..Default::default()
        };
        if let Some(l) = &c.leaf {
            let ls = l.stats();
            s.backlog = ls.backlog;
            s.qlen = l.qlen() as u64;
        }
        let parent = c.parent.unwrap_or(TC_H_ROOT);
        let mut show = ClassShow::new("htb", c.classid, parent, s, d);
        show.leaf = c
            .leaf
            .as_ref()
            .filter(|l| l.handle != 0)
            .map(|l| handle_str(l.handle));
        show
    }
}

impl Qdisc for Htb {
    fn kind(&self) -> &'static str {
        "htb"
    }

    /// htb_enqueue.
    fn enqueue_at(&mut self, mut pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let len = pkt.skb.len();
        match self.classify(&mut pkt, cx) {
            Target::Direct => {
                if self.direct.len() >= self.direct_qlen as usize {
                    self.stats.drops += 1;
                    return Err(Refused::Drop(pkt));
                }
                self.direct.push_back(pkt);
                self.direct_pkts += 1;
            }
            Target::Refuse(Classified::Stolen) => return Err(Refused::Stolen(pkt)),
            Target::Refuse(_) => {
                self.stats.drops += 1;
                return Err(Refused::Drop(pkt));
            }
            Target::Class(id) => {
                let Some(leaf) = self.cls_mut(id).and_then(|c| c.leaf.as_mut()) else {
                    self.stats.drops += 1;
                    return Err(Refused::Drop(pkt));
                };
                if let Err(r) = leaf.enqueue_at(pkt, cx) {
                    if r.is_drop() {
                        self.stats.drops += 1;
                        if let Some(c) = self.cls_mut(id) {
                            c.drops += 1;
                        }
                    }
                    return Err(r);
                }
                self.activate(id);
            }
        }
        self.stats.queued(len);
        Ok(())
    }

    /// htb_dequeue: the direct queue first, then the classes.
    fn dequeue_at(&mut self, now: u64) -> Option<Pkt> {
        let p = match self.direct.pop_front() {
            Some(p) => p,
            None => {
                if self.stats.qlen == 0 {
                    return None;
                }
                self.watchdog = None;
                self.dequeue_classes(now)?
            }
        };
        self.stats.sent(p.skb.len());
        Some(p)
    }

    fn peek(&self) -> Option<&Pkt> {
        self.direct.front().or_else(|| {
            self.classes
                .values()
                .filter_map(|c| c.leaf.as_ref())
                .find_map(|l| l.peek())
        })
    }

    /// htb_reset: queues emptied, every class back to a full bucket.
    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for p in self.direct.drain(..) {
            drop(p);
        }
        for c in self.classes.values_mut() {
            if let Some(l) = c.leaf.as_mut() {
                l.reset(drop);
            }
            c.prio_activity = 0;
            c.cmode = Cmode::CanSend;
            c.pq = None;
            c.feeds = Default::default();
        }
        self.lv = Levels::default();
        self.stats.backlog = 0;
        self.stats.qlen = 0;
        self.watchdog = None;
    }

    fn qlen(&self) -> usize {
        self.stats.qlen as usize
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }

    fn tree_reduce_backlog(&mut self, n: usize, bytes: u64) {
        self.stats.qlen = self.stats.qlen.saturating_sub(n as u64);
        self.stats.backlog = self.stats.backlog.saturating_sub(bytes);
    }

    fn work_conserving(&self) -> bool {
        false
    }

    fn watchdog(&self) -> Option<u64> {
        self.watchdog.filter(|_| self.stats.qlen > 0)
    }

    /// htb_dump as q_htb.c prints it.
    fn dump(&self) -> Dump {
        let mut d = Dump::default();
        d.opt(
            "r2q",
            self.rate2quantum,
            format!("r2q {}", self.rate2quantum),
        );
        let def = format!("{:#x}", self.defcls);
        d.opt("default", def.clone(), format!("default {def}"));
        d.opt(
            "direct_packets_stat",
            self.direct_pkts,
            format!("direct_packets_stat {}", self.direct_pkts),
        );
        d.opt(
            "direct_qlen",
            self.direct_qlen,
            format!("direct_qlen {}", self.direct_qlen),
        );
        d
    }

    fn change(&mut self, opts: &QdiscOptions, _dev: &QdiscDev) -> Result<(), DatapathError> {
        match opts {
            QdiscOptions::Htb(o) => {
                self.tune(o);
                Ok(())
            }
            _ => Err(errno(EINVAL, "htb: wrong options")),
        }
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
    }

    fn classes(&mut self) -> Option<&mut dyn ClassOps> {
        Some(self)
    }

    fn children(&self) -> Vec<&Sch> {
        self.classes
            .values()
            .filter_map(|c| c.leaf.as_ref())
            .collect()
    }

    fn children_mut(&mut self) -> Vec<&mut Sch> {
        self.classes
            .values_mut()
            .filter_map(|c| c.leaf.as_mut())
            .collect()
    }

    fn class_dumps(&self) -> Vec<ClassShow> {
        self.classes.values().map(|c| self.dump_class(c)).collect()
    }
}

impl ClassOps for Htb {
    /// htb_change_class: `parent` is a class, or the qdisc's handle (or
    /// root) for a root class; rate and ceil must not be 0.
    fn change(
        &mut self,
        classid: u32,
        parent: u32,
        opts: &ClassOptions,
        _dev: &QdiscDev,
        now: u64,
    ) -> Result<Vec<Pkt>, DatapathError> {
        let ClassOptions::Htb(o) = opts;
        if o.rate == 0 || o.ceil == 0 {
            return Err(errno(EINVAL, "htb: rate and ceil must be given and not 0"));
        }
        let mut purged = Vec::new();
        if self.cls(classid).is_none() {
            let parent = (parent != TC_H_ROOT && parent != self.handle).then_some(parent);
            let now = now.min(i64::MAX as u64) as i64;
            purged = self.new_class(classid, parent, o, now)?;
        }
        self.set_params(classid, o);
        Ok(purged)
    }

    /// htb_delete: not while it has children; a parent left without
    /// children becomes a leaf again (htb_parent_to_leaf).
    fn delete(&mut self, classid: u32) -> Result<Vec<Pkt>, DatapathError> {
        let c = self
            .cls(classid)
            .ok_or_else(|| errno(ENOENT, format!("htb: no class {}", handle_str(classid))))?;
        if c.children > 0 {
            return Err(errno(
                EBUSY,
                format!("htb: class {} has children", handle_str(classid)),
            ));
        }
        let parent = c.parent;
        if c.prio_activity != 0 {
            self.deactivate(classid);
        }
        if self.cls(classid).is_some_and(|c| c.cmode != Cmode::CanSend) {
            self.wait_remove(classid);
        }
        let mut purged = Vec::new();
        if let Some(mut c) = self.classes.remove(&classid) {
            if let Some(l) = c.leaf.as_mut() {
                l.reset(&mut |p| purged.push(p));
            }
        }
        self.forget(purged.iter().map(|p| p.skb.len()));
        if let Some(p) = parent {
            self.child_gone(p);
        }
        Ok(purged)
    }

    /// htb_graft: only a leaf takes a qdisc.
    fn graft(&mut self, classid: u32, new: Sch) -> Result<Sch, DatapathError> {
        let c = self
            .cls(classid)
            .ok_or_else(|| errno(ENOENT, format!("htb: no class {}", handle_str(classid))))?;
        if c.level > 0 {
            return Err(errno(
                EINVAL,
                format!("htb: class {} is not a leaf", handle_str(classid)),
            ));
        }
        if c.prio_activity != 0 {
            self.deactivate(classid);
        }
        let old = self
            .cls_mut(classid)
            .and_then(|c| c.leaf.replace(new))
            .ok_or_else(|| errno(ENOENT, "htb: leaf"))?;
        let ol = old.stats();
        self.stats.qlen = self.stats.qlen.saturating_sub(old.qlen() as u64);
        self.stats.backlog = self.stats.backlog.saturating_sub(ol.backlog);
        Ok(old)
    }
}

impl Htb {
    /// A class lost a child; the last one gone, it is a leaf again with a
    /// default pfifo and full buckets.
    fn child_gone(&mut self, p: u32) {
        let dev = self.dev;
        let now = self.now;
        let Some(pc) = self.cls_mut(p) else { return };
        pc.children = pc.children.saturating_sub(1);
        if pc.children > 0 {
            return;
        }
        pc.level = 0;
        pc.feeds = Default::default();
        pc.prio_activity = 0;
        pc.leaf = Some(default_leaf(&dev, 0, p));
        pc.tokens = pc.buffer;
        pc.ctokens = pc.cbuffer;
        pc.t_c = now;
        pc.cmode = Cmode::CanSend;
    }
}
