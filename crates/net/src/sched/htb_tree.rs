//! sch_htb.c's bookkeeping: the rows (per level and priority, the classes
//! that may send now) and the inner classes' feeds (their children that
//! borrow from them), each an id-ordered tree with a round-robin pointer;
//! the per-level wait queues of classes that will change mode later; and
//! the token arithmetic (htb_class_mode, htb_charge_class) in ns.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::htb::Htb;

/// include/uapi/linux/pkt_sched.h.
pub const TC_HTB_MAXDEPTH: usize = 8;
pub const TC_HTB_NUMPRIO: usize = 8;

/// enum htb_cmode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmode {
    CantSend,
    MayBorrow,
    CanSend,
}

/// An rb tree of classes by classid, with its DRR pointer (`ptr`) and the
/// id it pointed to when that class left (`last_ptr_id`).
#[derive(Clone, Debug, Default)]
pub struct Feed {
    pub set: BTreeSet<u32>,
    pub ptr: Option<u32>,
    pub last_ptr_id: u32,
}

impl Feed {
    /// htb_next_rb_node.
    pub fn next(&mut self) {
        self.ptr = self.ptr.and_then(|p| {
            self.set
                .range((Bound::Excluded(p), Bound::Unbounded))
                .next()
                .copied()
        });
    }
}

/// A row (hlevel[level].hprio[prio]) or an inner class's feed (clprio[prio]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedRef {
    Row(usize),
    Inner(u32),
}

/// struct htb_level for every level, and row_mask.
#[derive(Clone, Debug, Default)]
pub struct Levels {
    pub rows: [[Feed; TC_HTB_NUMPRIO]; TC_HTB_MAXDEPTH],
    pub row_mask: [u32; TC_HTB_MAXDEPTH],
    /// (pq_key, insertion order, classid): equal keys in arrival order.
    pub wait_pq: [BTreeSet<(i64, u64, u32)>; TC_HTB_MAXDEPTH],
    pub near_ev_cache: [i64; TC_HTB_MAXDEPTH],
    pub seq: u64,
}

impl Htb {
    pub(super) fn feed_mut(&mut self, r: FeedRef, prio: usize) -> Option<&mut Feed> {
        match r {
            FeedRef::Row(level) => self.lv.rows.get_mut(level)?.get_mut(prio),
            FeedRef::Inner(id) => self.cls_mut(id)?.feeds.get_mut(prio),
        }
    }

    /// htb_lookup_leaf: the leaf the DRR pointers lead to from a row,
    /// down through the inner classes' feeds.
    pub(super) fn lookup_leaf(&mut self, level: usize, prio: usize) -> Option<u32> {
        let mut stk = vec![FeedRef::Row(level)];
        for _ in 0..65535 {
            let top = *stk.last()?;
            let f = self.feed_mut(top, prio)?;
            if f.ptr.is_none() && f.last_ptr_id != 0 {
                // htb_id_find_next_upper: the pointed class or the next.
                f.ptr = f.set.range(f.last_ptr_id..).next().copied();
            }
            f.last_ptr_id = 0;
            match f.ptr {
                None => {
                    // At the right end: rewind, and move the one above on.
                    f.ptr = Some(*f.set.iter().next()?);
                    if stk.len() > 1 {
                        stk.pop();
                        let up = self.feed_mut(*stk.last()?, prio)?;
                        up.ptr?;
                        up.next();
                    }
                }
                Some(id) => {
                    if self.cls(id)?.level == 0 {
                        return Some(id);
                    }
                    if stk.len() > TC_HTB_MAXDEPTH {
                        return None;
                    }
                    stk.push(FeedRef::Inner(id));
                }
            }
        }
        None
    }

    /// htb_activate: a leaf that got a packet joins the feeds at its prio.
    pub(super) fn activate(&mut self, id: u32) {
        let Some(c) = self.cls_mut(id) else { return };
        if c.prio_activity == 0 {
            c.prio_activity = 1 << c.prio;
            self.activate_prios(id);
        }
    }

    /// htb_deactivate.
    pub(super) fn deactivate(&mut self, id: u32) {
        self.deactivate_prios(id);
        if let Some(c) = self.cls_mut(id) {
            c.prio_activity = 0;
        }
    }

    /// htb_activate_prios: up through the ancestors it borrows from, then
    /// into the row of the first one that can send.
    fn activate_prios(&mut self, id: u32) {
        let mut cl = id;
        let Some(mut mask) = self.cls(cl).map(|c| c.prio_activity) else {
            return;
        };
        for _ in 0..=TC_HTB_MAXDEPTH {
            let Some(c) = self.cls(cl) else { return };
            let (Some(p), Cmode::MayBorrow) = (c.parent, c.cmode) else {
                break;
            };
            if mask == 0 {
                break;
            }
            let Some(pc) = self.cls_mut(p) else { return };
            let mut m = mask;
            while m != 0 {
                let prio = m.trailing_zeros() as usize;
                m &= !(1 << prio);
                let Some(f) = pc.feeds.get_mut(prio) else {
                    continue;
                };
                if !f.set.is_empty() {
                    // The parent already feeds this prio.
                    mask &= !(1 << prio);
                }
                f.set.insert(cl);
            }
            pc.prio_activity |= mask;
            cl = p;
        }
        if mask != 0 && self.cls(cl).is_some_and(|c| c.cmode == Cmode::CanSend) {
            self.add_class_to_row(cl, mask);
        }
    }

    /// htb_deactivate_prios.
    fn deactivate_prios(&mut self, id: u32) {
        let mut cl = id;
        let Some(mut mask) = self.cls(cl).map(|c| c.prio_activity) else {
            return;
        };
        for _ in 0..=TC_HTB_MAXDEPTH {
            let Some(c) = self.cls(cl) else { return };
            let (Some(p), Cmode::MayBorrow) = (c.parent, c.cmode) else {
                break;
            };
            if mask == 0 {
                break;
            }
            let Some(pc) = self.cls_mut(p) else { return };
            let mut m = mask;
            mask = 0;
            while m != 0 {
                let prio = m.trailing_zeros() as usize;
                m &= !(1 << prio);
                let Some(f) = pc.feeds.get_mut(prio) else {
                    continue;
                };
                if f.ptr == Some(cl) {
                    // Forget the pointer, remember the classid.
                    f.last_ptr_id = cl;
                    f.ptr = None;
                }
                f.set.remove(&cl);
                if f.set.is_empty() {
                    mask |= 1 << prio;
                }
            }
            pc.prio_activity &= !mask;
            cl = p;
        }
        if mask != 0 && self.cls(cl).is_some_and(|c| c.cmode == Cmode::CanSend) {
            self.remove_class_from_row(cl, mask);
        }
    }

    /// htb_add_class_to_row.
    fn add_class_to_row(&mut self, id: u32, mask: u32) {
        let Some(level) = self.cls(id).map(|c| c.level) else {
            return;
        };
        let Some(rows) = self.lv.rows.get_mut(level) else {
            return;
        };
        self.lv.row_mask[level] |= mask;
        for (prio, f) in rows.iter_mut().enumerate() {
            if mask & (1 << prio) != 0 {
                f.set.insert(id);
            }
        }
    }

    /// htb_remove_class_from_row.
    fn remove_class_from_row(&mut self, id: u32, mask: u32) {
        let Some(level) = self.cls(id).map(|c| c.level) else {
            return;
        };
        let Some(rows) = self.lv.rows.get_mut(level) else {
            return;
        };
        let mut emptied = 0;
        for (prio, f) in rows.iter_mut().enumerate() {
            if mask & (1 << prio) == 0 {
                continue;
            }
            if f.ptr == Some(id) {
                f.next();
            }
            f.set.remove(&id);
            if f.set.is_empty() {
                emptied |= 1 << prio;
            }
        }
        self.lv.row_mask[level] &= !emptied;
    }

    /// htb_class_mode: the mode at t_c + diff; when not CAN_SEND, `diff`
    /// becomes how long until it changes.
    fn class_mode(&self, id: u32, diff: &mut i64) -> Cmode {
        let Some(c) = self.cls(id) else {
            return Cmode::CanSend;
        };
        let toks = c.ctokens.saturating_add(*diff);
        if toks < 0 {
            *diff = -toks;
            return Cmode::CantSend;
        }
        let toks = c.tokens.saturating_add(*diff);
        if toks >= 0 {
            return Cmode::CanSend;
        }
        *diff = -toks;
        Cmode::MayBorrow
    }

    /// htb_change_class_mode.
    fn change_class_mode(&mut self, id: u32, diff: &mut i64) {
        let new = self.class_mode(id, diff);
        let Some(c) = self.cls_mut(id) else { return };
        if new == c.cmode {
            return;
        }
        if new == Cmode::CantSend {
            c.overlimits += 1;
            self.stats.overlimits += 1;
        }
        let Some(c) = self.cls_mut(id) else { return };
        if c.prio_activity != 0 {
            if c.cmode != Cmode::CantSend {
                self.deactivate_prios(id);
            }
            if let Some(c) = self.cls_mut(id) {
                c.cmode = new;
            }
            if new != Cmode::CantSend {
                self.activate_prios(id);
            }
        } else {
            c.cmode = new;
        }
    }

    /// htb_add_to_wait_tree.
    fn add_to_wait_tree(&mut self, id: u32, delay: i64) {
        let now = self.now;
        let Some(c) = self.cls_mut(id) else { return };
        let level = c.level;
        let mut key = now.saturating_add(delay);
        if key == now {
            key += 1;
        }
        self.lv.seq += 1;
        let seq = self.lv.seq;
        if let Some(c) = self.cls_mut(id) {
            c.pq = Some((key, seq));
        }
        if let Some(ev) = self.lv.near_ev_cache.get_mut(level) {
            *ev = (*ev).min(key);
        }
        if let Some(q) = self.lv.wait_pq.get_mut(level) {
            q.insert((key, seq, id));
        }
    }

    pub(super) fn wait_remove(&mut self, id: u32) {
        let Some(c) = self.cls_mut(id) else { return };
        let level = c.level;
        if let Some((key, seq)) = c.pq.take() {
            if let Some(q) = self.lv.wait_pq.get_mut(level) {
                q.remove(&(key, seq, id));
            }
        }
    }

    /// htb_do_events: the classes whose time came change mode; returns the
    /// next event's time (0 for none).
    pub(super) fn do_events(&mut self, level: usize) -> i64 {
        for _ in 0..=self.classes.len() {
            let Some(&(key, seq, id)) = self.lv.wait_pq.get(level).and_then(|q| q.first()) else {
                return 0;
            };
            if key > self.now {
                return key;
            }
            if let Some(q) = self.lv.wait_pq.get_mut(level) {
                q.remove(&(key, seq, id));
            }
            if let Some(c) = self.cls_mut(id) {
                c.pq = None;
            }
            let Some(c) = self.cls(id) else { continue };
            let mut diff = self.now.saturating_sub(c.t_c).min(c.mbuffer);
            self.change_class_mode(id, &mut diff);
            if self.cls(id).is_some_and(|c| c.cmode != Cmode::CanSend) {
                self.add_to_wait_tree(id, diff);
            }
        }
        self.now
    }

    /// htb_charge_class: a packet of `bytes` sent from leaf `id` at
    /// `level` is charged to it and its ancestors (rate buckets from
    /// `level` up, ceil buckets all the way).
    pub(super) fn charge_class(&mut self, id: u32, level: usize, bytes: u32) {
        let now = self.now;
        let mut next = Some(id);
        for _ in 0..=TC_HTB_MAXDEPTH {
            let Some(cid) = next else { return };
            let Some(c) = self.cls_mut(cid) else { return };
            let diff = now.saturating_sub(c.t_c).min(c.mbuffer);
            if c.level >= level {
                if c.level == level {
                    c.lends += 1;
                }
                // htb_accnt_tokens
                let toks = c.tokens.saturating_add(diff).min(c.buffer);
                c.tokens = accnt(toks, c.rate.l2t_ns(bytes), c.mbuffer);
            } else {
                c.borrows += 1;
                c.tokens = c.tokens.saturating_add(diff);
            }
            // htb_accnt_ctokens
            let toks = c.ctokens.saturating_add(diff).min(c.cbuffer);
            c.ctokens = accnt(toks, c.ceil.l2t_ns(bytes), c.mbuffer);
            c.t_c = now;
            let old = c.cmode;
            let inner = c.level > 0;
            if inner {
                c.bytes += bytes as u64;
                c.packets += 1;
            }
            next = c.parent;
            let mut d = 0;
            self.change_class_mode(cid, &mut d);
            let Some(new) = self.cls(cid).map(|c| c.cmode) else {
                return;
            };
            if old != new {
                if old != Cmode::CanSend {
                    self.wait_remove(cid);
                }
                if new != Cmode::CanSend {
                    self.add_to_wait_tree(cid, d);
                }
            }
        }
    }
}

/// The charge of one packet: tokens less its time, never below 1 - mbuffer.
fn accnt(toks: i64, cost: u64, mbuffer: i64) -> i64 {
    let t = toks.saturating_sub(cost.min(i64::MAX as u64) as i64);
    if t <= -mbuffer {
        1 - mbuffer
    } else {
        t
    }
}
