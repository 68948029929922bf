//! State pruning (kernel/bpf/verifier.c: is_state_visited, states_equal,
//! func_states_equal, regsafe, stacksafe, refsafe, update_branch_counts): at prune
//! points the current state is compared with the states already explored there; a
//! state contained in a finished one is safe, an identical one still being
//! explored is an infinite loop.

use std::collections::HashMap;

use super::env::{Env, VResult};
use super::liveness::SlotMasks;
use super::precision::Masks;
use super::state::{
    FuncState, Reg, RegType, SlotType, StackSlot, VerifierState, BPF_REG_SIZE, MAX_BPF_REG,
    MAX_CALL_FRAMES,
};
use super::EINVAL;

/// One explored state (`struct bpf_verifier_state_list`).
pub struct Stored {
    pub st: VerifierState,
    /// Its precise scalars (the kernel's `reg->precise`), marked by
    /// backtracking from the paths below it.
    pub prec: Masks,
    /// Its stack slots some path below it read (REG_LIVE_READ).
    pub read: SlotMasks,
    pub miss_cnt: u32,
    pub hit_cnt: u32,
}

/// The explored states. The kernel keeps one list per instruction and tells its
/// states apart by `branches` as it walks it; skiff keeps them apart: states with
/// paths still being explored below them (`live`, keyed by their registers'
/// fingerprint: only an identical state can be an infinite loop) and finished
/// ones (`finished`: the candidates for pruning). A loop's thousands of live
/// states then cost nothing to walk past.
#[derive(Default)]
pub struct Explored {
    pub arena: Vec<Stored>,
    /// Per state: paths still being explored below it.
    pub branches: Vec<u32>,
    /// Per state: its instruction and `VerifierState::regs_hash`.
    key: Vec<(usize, u64)>,
    /// Per instruction: how many live states it has.
    live_count: Vec<u32>,
    live: HashMap<(usize, u64), Vec<usize>>,
    finished: Vec<Vec<usize>>,
    /// States dropped as useless (the kernel frees them).
    pub evicted: usize,
    /// The most states kept at once (`peak_states`).
    pub peak: usize,
}

impl Explored {
    pub fn new(n: usize) -> Explored {
        Explored {
            live_count: vec![0; n],
            finished: vec![Vec::new(); n],
            ..Explored::default()
        }
    }

    pub fn add_branch(&mut self, p: usize) {
        if let Some(b) = self.branches.get_mut(p) {
            *b += 1;
        }
    }

    /// The most states one instruction holds (the summary line's figure).
    pub fn max_per_insn(&self) -> usize {
        let live = self.live_count.iter().map(|c| *c as usize);
        self.finished
            .iter()
            .map(|l| l.len())
            .zip(live)
            .map(|(f, l)| f + l)
            .max()
            .unwrap_or(0)
    }

    fn push(&mut self, st: VerifierState, idx: usize, hash: u64) -> usize {
        let sid = self.arena.len();
        self.arena.push(Stored {
            st,
            prec: Masks::default(),
            read: [0; MAX_CALL_FRAMES],
            miss_cnt: 0,
            hit_cnt: 0,
        });
        self.branches.push(1);
        self.key.push((idx, hash));
        if let Some(c) = self.live_count.get_mut(idx) {
            *c += 1;
        }
        self.live.entry((idx, hash)).or_default().push(sid);
        self.peak = self.peak.max(self.arena.len() - self.evicted);
        sid
    }

    /// A state's last path ended: it moves from the live states to the finished.
    fn finish(&mut self, sid: usize) {
        let Some(&(idx, hash)) = self.key.get(sid) else {
            return;
        };
        if let Some(c) = self.live_count.get_mut(idx) {
            *c = c.saturating_sub(1);
        }
        if let Some(v) = self.live.get_mut(&(idx, hash)) {
            v.retain(|s| *s != sid);
            if v.is_empty() {
                self.live.remove(&(idx, hash));
            }
        }
        if let Some(l) = self.finished.get_mut(idx) {
            l.push(sid);
        }
    }
}

/// `struct bpf_idmap`: ids of the old state mapped to ids of the current one.
struct IdMap {
    map: Vec<(u32, u32)>,
    /// `tmp_id_gen`: ids for unlinked scalars, above every real id.
    tmp_id_gen: u32,
}

impl IdMap {
    /// kernel/bpf/verifier.c: check_scalar_ids: an unlinked current scalar gets
    /// a fresh id, so it may stand for an old linked one as long as no other
    /// current register is mapped to that old link.
    fn check_scalar(&mut self, old: u32, cur: u32) -> bool {
        if old == 0 {
            // The old state relied on no link for this register.
            return true;
        }
        let cur = if cur == 0 {
            self.tmp_id_gen = self.tmp_id_gen.wrapping_add(1);
            self.tmp_id_gen
        } else {
            cur
        };
        self.check(old, cur)
    }

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

/// kernel/bpf/verifier.c: regsafe. `precise`: the old register is a scalar
/// whose value some path below it relied on.
fn regsafe(old: &Reg, cur: &Reg, idmap: &mut IdMap, exact: bool, precise: bool) -> bool {
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
        // An imprecise old scalar stands for any scalar; a precise one's range
        // must contain the new one. An old scalar with no links did not rely on
        // links, so only its own links must hold in the current state.
        RegType::Scalar => {
            regs_exact(old, cur, idmap)
                || !precise
                || (scalar_within(old, cur) && idmap.check_scalar(old.id, cur.id))
        }
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
    precise: u64,
    read: u64,
) -> bool {
    let invalid = StackSlot::invalid();
    for (spi, os) in old.stack.iter().enumerate() {
        let cs = cur.stack.get(spi);
        let slot_precise = spi < 64 && precise & (1 << spi) != 0;
        if !exact && spi < 64 && read & (1 << spi) == 0 {
            // No path below the old state read this slot.
            continue;
        }
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
            // An all-misc old slot is an imprecise unknown scalar.
            let p = slot_precise && os.is_spilled_reg();
            if !regsafe(&o, &c, idmap, false, p) {
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
        if os.is_spilled_reg() && !regsafe(&os.spilled, &cs.spilled, idmap, false, slot_precise) {
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
    fn states_equal(
        &self,
        old: &VerifierState,
        (prec, read): (&Masks, &SlotMasks),
        cur: &VerifierState,
        exact: bool,
    ) -> bool {
        if old.frames.len() != cur.frames.len() {
            return false;
        }
        let mut idmap = IdMap {
            map: Vec::new(),
            tmp_id_gen: self.id_gen.saturating_add(1) | 0x8000_0000,
        };
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
                let precise = prec.reg(i, r);
                if live & (1 << r) != 0
                    && !regsafe(&of.regs[r], &cf.regs[r], &mut idmap, exact, precise)
                {
                    return false;
                }
            }
            let stack_prec = prec.stack.get(i).copied().unwrap_or(0);
            let stack_read = read.get(i).copied().unwrap_or(0);
            let privileged = self.opts.privileged;
            if !stacksafe(
                of, cf, &mut idmap, exact, privileged, stack_prec, stack_read,
            ) {
                return false;
            }
        }
        true
    }

    /// kernel/bpf/verifier.c: is_state_visited. True: the current path is safe
    /// (pruned). `jmp_point`: the path came to `idx` by a jump (its history
    /// record is pushed here, after a new checkpoint).
    pub fn is_state_visited(&mut self, idx: usize, jmp_point: bool) -> VResult<bool> {
        let mut add = self.jmps_processed - self.prev_jmps_processed >= 2
            && self.insn_processed - self.prev_insn_processed >= 8;
        let hash = self.cur.regs_hash();
        if self.explored.live_count.get(idx).is_some_and(|c| *c > 0) {
            self.check_infinite_loop(idx, hash)?;
            // A loop: new states only now and then (each iteration differs).
            if self.jmps_processed - self.prev_jmps_processed < 20
                && self.insn_processed - self.prev_insn_processed < 100
            {
                add = false;
            }
        }
        if let Some(old) = self.prune_against_finished(idx) {
            if jmp_point {
                self.push_jmp_history(None, Vec::new());
            }
            self.propagate_precision(old);
            self.propagate_stack_liveness(old);
            return Ok(true);
        }
        if add {
            self.prev_insn_processed = self.insn_processed;
            self.prev_jmps_processed = self.jmps_processed;
            let mut st = self.cur.clone();
            st.insn_idx = idx;
            st.last_insn_idx = self.prev_insn_idx;
            let sid = self.explored.push(st, idx, hash);
            self.cur.parent = Some(sid);
            self.cur.first_insn_idx = idx;
            self.cur.jmp_history.clear();
            self.cur.stack_written = [0; MAX_CALL_FRAMES];
        }
        if jmp_point {
            self.push_jmp_history(None, Vec::new());
        }
        Ok(false)
    }

    /// states_maybe_looping and an exact states_equal against the states at `idx`
    /// still being explored: the current path came back to one of them unchanged.
    fn check_infinite_loop(&mut self, idx: usize, hash: u64) -> VResult<()> {
        let Some(cands) = self.explored.live.get(&(idx, hash)) else {
            return Ok(());
        };
        let found = cands.iter().find_map(|&sid| {
            let stored = self.explored.arena.get(sid)?;
            let looping = stored.st.frames.len() == self.cur.frames.len()
                && stored.st.cur().regs == self.cur.cur().regs
                && self.states_equal(&stored.st, (&stored.prec, &stored.read), &self.cur, true);
            looping.then(|| super::log::state_str(stored.st.cur()))
        });
        let Some(old) = found else {
            return Ok(());
        };
        let cur = super::log::state_str(self.cur.cur());
        let f = self.error(EINVAL, format!("infinite loop detected at insn {idx}"));
        self.error_more(format!("cur state: {cur}"));
        self.error_more(format!("old state: {old}"));
        Err(f)
    }

    /// The pruning part of is_state_visited: the current state is within a
    /// finished one. States that keep missing are dropped, as the kernel does.
    fn prune_against_finished(&mut self, idx: usize) -> Option<usize> {
        let len = self.explored.finished.get(idx).map_or(0, |l| l.len());
        let mut evict = Vec::new();
        let mut hit = None;
        for k in 0..len {
            let Some(&sid) = self.explored.finished.get(idx).and_then(|l| l.get(k)) else {
                continue;
            };
            let Some(stored) = self.explored.arena.get(sid) else {
                continue;
            };
            if self.states_equal(&stored.st, (&stored.prec, &stored.read), &self.cur, false) {
                if let Some(s) = self.explored.arena.get_mut(sid) {
                    s.hit_cnt += 1;
                }
                hit = Some(sid);
                break;
            }
            if let Some(s) = self.explored.arena.get_mut(sid) {
                s.miss_cnt += 1;
                if s.miss_cnt > s.hit_cnt * 3 + 3 {
                    evict.push(sid);
                }
            }
        }
        if !evict.is_empty() {
            if let Some(l) = self.explored.finished.get_mut(idx) {
                l.retain(|s| !evict.contains(s));
            }
            self.explored.evicted += evict.len();
            for sid in evict {
                if let Some(s) = self.explored.arena.get_mut(sid) {
                    // Nothing below it is live: its content is no longer needed.
                    s.st.frames.clear();
                    s.st.refs.clear();
                }
            }
        }
        hit
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
            self.explored.finish(i);
            p = self.explored.arena.get(i).and_then(|s| s.st.parent);
        }
    }
}
