//! State pruning (kernel/bpf/verifier.c: is_state_visited, states_equal,
//! func_states_equal, regsafe, stacksafe, refsafe, update_branch_counts): at prune
//! points the current state is compared with the states already explored there; a
//! state contained in a finished one is safe, an identical one still being
//! explored is an infinite loop.

use super::env::{Env, VResult};
use super::state::{
    FuncState, Reg, RegType, SlotType, StackSlot, VerifierState, BPF_REG_SIZE, MAX_BPF_REG,
};
use super::EINVAL;

/// One explored state (`struct bpf_verifier_state_list`).
pub struct Stored {
    pub st: VerifierState,
    pub miss_cnt: u32,
    pub hit_cnt: u32,
}

/// The explored states: an arena (parents refer by index), each state's count of
/// paths still being explored below it (`branches`, kept apart so the scans of
/// long lists in loops stay in cache), and per instruction the states taken
/// there with their `VerifierState::regs_hash`.
#[derive(Default)]
pub struct Explored {
    pub arena: Vec<Stored>,
    pub branches: Vec<u32>,
    pub per_insn: Vec<Vec<(usize, u64)>>,
}

impl Explored {
    pub fn new(n: usize) -> Explored {
        Explored {
            arena: Vec::new(),
            branches: Vec::new(),
            per_insn: vec![Vec::new(); n],
        }
    }

    pub fn add_branch(&mut self, p: usize) {
        if let Some(b) = self.branches.get_mut(p) {
            *b += 1;
        }
    }
}

/// `struct bpf_idmap`: ids of the old state mapped to ids of the current one.
#[derive(Default)]
struct IdMap {
    map: Vec<(u32, u32)>,
}

impl IdMap {
    /// kernel/bpf/verifier.c: check_ids
    fn check(&mut self, old: u32, cur: u32) -> bool {
        if (old == 0) != (cur == 0) {
            return false;
        }
        if old == 0 {
            return true;
        }
        for &(o, c) in &self.map {
            if o == old {
                return c == cur;
            }
            if c == cur {
                return false;
            }
        }
        self.map.push((old, cur));
        true
    }
}

/// `range_within` and `tnum_in` together: every value of `cur` is one of `old`.
fn scalar_within(old: &Reg, cur: &Reg) -> bool {
    super::scalar_ops::within(&old.s, &cur.s)
}

/// kernel/bpf/verifier.c: regs_exact
fn regs_exact(old: &Reg, cur: &Reg, idmap: &mut IdMap) -> bool {
    let strip = |r: &Reg| Reg {
        id: 0,
        ref_obj_id: 0,
        ..*r
    };
    strip(old) == strip(cur)
        && idmap.check(old.id, cur.id)
        && idmap.check(old.ref_obj_id, cur.ref_obj_id)
}

/// kernel/bpf/verifier.c: regsafe
fn regsafe(old: &Reg, cur: &Reg, idmap: &mut IdMap, exact: bool) -> bool {
    if exact {
        return regs_exact(old, cur, idmap);
    }
    if old.ty == RegType::NotInit {
        return true;
    }
    if cur.ty == RegType::NotInit {
        return false;
    }
    if old.ty != cur.ty
        || old.maybe_null != cur.maybe_null
        || old.rdonly != cur.rdonly
        || old.ringbuf != cur.ringbuf
    {
        return false;
    }
    match old.ty {
        // Every scalar counts as precise (skiff tracks no precision): the old
        // range must contain the new one. An old scalar with no links did not
        // rely on links, so only its own links must hold in the current state.
        RegType::Scalar => scalar_within(old, cur) && (old.id == 0 || idmap.check(old.id, cur.id)),
        RegType::MapKey | RegType::MapValue | RegType::Mem => {
            old.off == cur.off
                && old.map == cur.map
                && old.range == cur.range
                && scalar_within(old, cur)
                && idmap.check(old.id, cur.id)
                && idmap.check(old.ref_obj_id, cur.ref_obj_id)
        }
        RegType::Packet | RegType::PacketMeta => {
            old.range <= cur.range
                && old.off == cur.off
                && idmap.check(old.id, cur.id)
                && scalar_within(old, cur)
        }
        _ => regs_exact(old, cur, idmap),
    }
}

/// `scalar_reg_for_stack`: a 64-bit spilled scalar, or all-misc bytes as an
/// unknown scalar.
fn scalar_for_stack(slot: &StackSlot, privileged: bool) -> Option<Reg> {
    if slot.slot_type.iter().all(|t| *t == SlotType::Spill) && slot.spilled.is_scalar() {
        return Some(slot.spilled);
    }
    let all_misc = slot
        .slot_type
        .iter()
        .all(|t| *t == SlotType::Misc || (*t == SlotType::Invalid && privileged));
    all_misc.then(Reg::unknown)
}

/// kernel/bpf/verifier.c: stacksafe
fn stacksafe(
    old: &FuncState,
    cur: &FuncState,
    idmap: &mut IdMap,
    exact: bool,
    privileged: bool,
) -> bool {
    let invalid = StackSlot::invalid();
    for (spi, os) in old.stack.iter().enumerate() {
        let cs = cur.stack.get(spi);
        if exact {
            let c = cs.unwrap_or(&invalid);
            if os.slot_type != c.slot_type {
                return false;
            }
            if os.is_spilled_reg() && !regs_exact(&os.spilled, &c.spilled, idmap) {
                return false;
            }
            continue;
        }
        let relevant =
            |t: SlotType| !(t == SlotType::Invalid || (privileged && t == SlotType::Misc));
        if !os.slot_type.iter().any(|t| relevant(*t)) {
            continue;
        }
        let Some(cs) = cs else {
            return false;
        };
        if let (Some(o), Some(c)) = (
            scalar_for_stack(os, privileged),
            scalar_for_stack(cs, privileged),
        ) {
            if !regsafe(&o, &c, idmap, false) {
                return false;
            }
            continue;
        }
        for i in 0..BPF_REG_SIZE {
            let (ot, ct) = (os.slot_type[i], cs.slot_type[i]);
            if !relevant(ot) || (ot == SlotType::Misc && ct == SlotType::Zero) {
                continue;
            }
            if ot != ct {
                return false;
            }
        }
        if os.is_spilled_reg() && !regsafe(&os.spilled, &cs.spilled, idmap, false) {
            return false;
        }
    }
    true
}

/// kernel/bpf/verifier.c: refsafe
fn refsafe(old: &VerifierState, cur: &VerifierState, idmap: &mut IdMap) -> bool {
    old.refs.len() == cur.refs.len()
        && old
            .refs
            .iter()
            .zip(&cur.refs)
            .all(|(o, c)| o.kind == c.kind && idmap.check(o.id, c.id) && o.lock_map == c.lock_map)
}

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: states_equal
    fn states_equal(&self, old: &VerifierState, cur: &VerifierState, exact: bool) -> bool {
        if old.frames.len() != cur.frames.len() {
            return false;
        }
        let mut idmap = IdMap::default();
        if !refsafe(old, cur, &mut idmap) {
            return false;
        }
        let last = old.frames.len() - 1;
        for (i, (of, cf)) in old.frames.iter().zip(&cur.frames).enumerate() {
            if of.callsite != cf.callsite || of.in_callback_fn != cf.in_callback_fn {
                return false;
            }
            // frame_insn_idx: the current insn, or the call the next frame came from.
            let at = if i == last {
                self.insn_idx
            } else {
                old.frames[i + 1].callsite
            };
            let live = self.iaux.get(at).map_or(0x7ff, |a| a.live_regs);
            for r in 0..MAX_BPF_REG {
                if live & (1 << r) != 0 && !regsafe(&of.regs[r], &cf.regs[r], &mut idmap, exact) {
                    return false;
                }
            }
            if !stacksafe(of, cf, &mut idmap, exact, self.opts.privileged) {
                return false;
            }
        }
        true
    }

    /// kernel/bpf/verifier.c: is_state_visited. True: the current path is safe
    /// (pruned).
    pub fn is_state_visited(&mut self, idx: usize) -> VResult<bool> {
        let force = false;
        let mut add = force
            || (self.jmps_processed - self.prev_jmps_processed >= 2
                && self.insn_processed - self.prev_insn_processed >= 8);
        let len = self.explored.per_insn.get(idx).map_or(0, |l| l.len());
        let mut cur_hash = None;
        let mut evict = Vec::new();
        for k in 0..len {
            let Some(&(sid, old_hash)) = self.explored.per_insn.get(idx).and_then(|l| l.get(k))
            else {
                continue;
            };
            if self.explored.branches.get(sid).is_some_and(|b| *b > 0) {
                // states_maybe_looping, then an exact comparison.
                let h = *cur_hash.get_or_insert_with(|| self.cur.regs_hash());
                let looping = old_hash == h
                    && self.explored.arena.get(sid).is_some_and(|stored| {
                        stored.st.frames.len() == self.cur.frames.len()
                            && stored.st.cur().regs == self.cur.cur().regs
                            && self.states_equal(&stored.st, &self.cur, true)
                    });
                if let Some(stored) = self.explored.arena.get(sid).filter(|_| looping) {
                    let old = super::log::state_str(stored.st.cur());
                    let cur = super::log::state_str(self.cur.cur());
                    let f = self.error(EINVAL, format!("infinite loop detected at insn {idx}"));
                    self.error_more(format!("cur state: {cur}"));
                    self.error_more(format!("old state: {old}"));
                    return Err(f);
                }
                if !force
                    && self.jmps_processed - self.prev_jmps_processed < 20
                    && self.insn_processed - self.prev_insn_processed < 100
                {
                    add = false;
                }
                continue;
            }
            let Some(stored) = self.explored.arena.get(sid) else {
                continue;
            };
            if self.states_equal(&stored.st, &self.cur, false) {
                if let Some(s) = self.explored.arena.get_mut(sid) {
                    s.hit_cnt += 1;
                }
                return Ok(true);
            }
            if let Some(s) = self.explored.arena.get_mut(sid) {
                s.miss_cnt += 1;
                if s.miss_cnt > s.hit_cnt * 3 + 3 {
                    evict.push(sid);
                }
            }
        }
        if !evict.is_empty() {
            if let Some(l) = self.explored.per_insn.get_mut(idx) {
                l.retain(|(s, _)| !evict.contains(s));
            }
            for sid in evict {
                if let Some(s) = self.explored.arena.get_mut(sid) {
                    // Nothing below it is live: its content is no longer needed.
                    s.st.frames.clear();
                    s.st.refs.clear();
                }
            }
        }
        if !add {
            return Ok(false);
        }
        self.prev_insn_processed = self.insn_processed;
        self.prev_jmps_processed = self.jmps_processed;
        let mut st = self.cur.clone();
        st.insn_idx = idx;
        let sid = self.explored.arena.len();
        let hash = cur_hash.unwrap_or_else(|| self.cur.regs_hash());
        self.explored.arena.push(Stored {
            st,
            miss_cnt: 0,
            hit_cnt: 0,
        });
        self.explored.branches.push(1);
        if let Some(l) = self.explored.per_insn.get_mut(idx) {
            l.push((sid, hash));
        }
        self.cur.parent = Some(sid);
        Ok(false)
    }

    /// kernel/bpf/verifier.c: update_branch_counts
    pub fn update_branch_counts(&mut self, mut p: Option<usize>) {
        while let Some(i) = p {
            let Some(b) = self.explored.branches.get_mut(i) else {
                return;
            };
            *b = b.saturating_sub(1);
            if *b > 0 {
                return;
            }
            p = self.explored.arena.get(i).and_then(|s| s.st.parent);
        }
    }
}
