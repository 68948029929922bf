//! Precision tracking (kernel/bpf/verifier.c: push_jmp_history, mark_chain_precision,
//! __mark_chain_precision, backtrack_insn, propagate_precision,
//! mark_all_scalars_precise). Scalars start imprecise: a stored state's scalar
//! matters for pruning only once some later instruction relied on its value (a
//! decided branch, pointer arithmetic, a helper's size argument, a callback's
//! return value). Then the instructions of the path are walked backwards through
//! the jump history, from the current state through its checkpoints, and every
//! register and spilled stack slot the value came from is marked precise in the
//! checkpoints it passes. `regsafe` compares imprecise scalars as equal.

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::env::Env;
use super::state::{FuncState, VerifierState, BPF_REG_FP, MAX_CALL_FRAMES};

/// r1-r5 (`BPF_REGMASK_ARGS`).
const REGMASK_ARGS: u16 = 0b11_1110;

/// One jump-history record (`struct bpf_jmp_history_entry`): the path reached
/// `idx` from `prev_idx` (a jump, a call, a return), and what `idx` did that
/// backtracking needs to know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistEntry {
    pub idx: usize,
    pub prev_idx: usize,
    /// INSN_F_STACK_ACCESS: the stack slot (frame, spi) a scalar was spilled to
    /// or filled from.
    pub stack: Option<(u8, u8)>,
    /// A conditional jump's scalars sharing an id (`linked_regs`): precision of
    /// one is precision of all.
    pub linked: Vec<Linked>,
}

/// A register or spilled stack slot of a frame (`struct linked_reg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linked {
    pub frame: u8,
    /// A register number, or a stack slot index when `is_reg` is false.
    pub num: u8,
    pub is_reg: bool,
}

/// Registers and stack slots per frame: the precise ones of a stored state, or
/// the ones being backtracked (`struct backtrack_state`'s masks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Masks {
    pub regs: [u16; MAX_CALL_FRAMES],
    pub stack: [u64; MAX_CALL_FRAMES],
}

impl Masks {
    /// Every register and slot of every frame (mark_all_scalars_precise).
    pub const ALL: Masks = Masks {
        regs: [u16::MAX; MAX_CALL_FRAMES],
        stack: [u64::MAX; MAX_CALL_FRAMES],
    };

    pub fn reg(&self, fr: usize, r: usize) -> bool {
        self.regs
            .get(fr)
            .is_some_and(|m| r < 16 && m & (1 << r) != 0)
    }

    pub fn slot(&self, fr: usize, spi: usize) -> bool {
        self.stack
            .get(fr)
            .is_some_and(|m| spi < 64 && m & (1 << spi) != 0)
    }

    fn set_reg(&mut self, fr: usize, r: usize) {
        if let (Some(m), true) = (self.regs.get_mut(fr), r < 16) {
            *m |= 1 << r;
        }
    }

    fn clear_reg(&mut self, fr: usize, r: usize) {
        if let (Some(m), true) = (self.regs.get_mut(fr), r < 16) {
            *m &= !(1 << r);
        }
    }

    fn set_slot(&mut self, fr: usize, spi: usize) {
        if let (Some(m), true) = (self.stack.get_mut(fr), spi < 64) {
            *m |= 1 << spi;
        }
    }

    fn clear_slot(&mut self, fr: usize, spi: usize) {
        if let (Some(m), true) = (self.stack.get_mut(fr), spi < 64) {
            *m &= !(1 << spi);
        }
    }

    fn is_empty(&self) -> bool {
        self.regs.iter().all(|m| *m == 0) && self.stack.iter().all(|m| *m == 0)
    }
}

/// `struct backtrack_state`: the masks, and the frame being walked.
struct Bt {
    frame: usize,
    m: Masks,
}

/// Backtracking cannot follow this path (`-ENOTSUPP`, and the kernel's
/// "verifier bug" cases): every scalar of the path is marked precise instead.
struct Unsupported;

impl Bt {
    fn is_reg_set(&self, r: u8) -> bool {
        self.m.reg(self.frame, r as usize)
    }
    fn set_reg(&mut self, r: u8) {
        self.m.set_reg(self.frame, r as usize);
    }
    fn clear_reg(&mut self, r: u8) {
        self.m.clear_reg(self.frame, r as usize);
    }
    fn reg_mask(&self) -> u16 {
        self.m.regs.get(self.frame).copied().unwrap_or(0)
    }
    fn stack_mask(&self) -> u64 {
        self.m.stack.get(self.frame).copied().unwrap_or(0)
    }

    /// bt_sync_linked_regs: one linked register set means all are.
    fn sync_linked(&mut self, hist: Option<&HistEntry>) {
        let Some(h) = hist else {
            return;
        };
        let set = |bt: &Bt, l: &Linked| {
            if l.is_reg {
                bt.m.reg(l.frame as usize, l.num as usize)
            } else {
                bt.m.slot(l.frame as usize, l.num as usize)
            }
        };
        if !h.linked.iter().any(|l| set(self, l)) {
            return;
        }
        for l in &h.linked {
            if l.is_reg {
                self.m.set_reg(l.frame as usize, l.num as usize);
            } else {
                self.m.set_slot(l.frame as usize, l.num as usize);
            }
        }
    }
}

/// A bpf-to-bpf call.
fn is_pseudo_call(insn: Option<&Insn>) -> bool {
    insn.is_some_and(|i| i.code == CALL && i.src == BPF_PSEUDO_CALL)
}

/// kernel/bpf/verifier.c: backtrack_insn. `subseq` is the instruction the path
/// went to after `idx`.
fn backtrack_insn(
    insns: &[Insn],
    idx: usize,
    subseq: Option<usize>,
    hist: Option<&HistEntry>,
    bt: &mut Bt,
) -> Result<(), Unsupported> {
    let Some(insn) = insns.get(idx).copied() else {
        return Err(Unsupported);
    };
    if insn.code == 0 {
        // The second half of ld_imm64.
        return Ok(());
    }
    bt.sync_linked(hist);
    match insn.class() {
        BPF_ALU | BPF_ALU64 => backtrack_alu(insn, bt),
        BPF_LDX => backtrack_ldx(insn, hist, bt),
        BPF_STX if insn.mode() == BPF_ATOMIC && insn.imm == BPF_LOAD_ACQ => {
            backtrack_ldx(insn, hist, bt)
        }
        BPF_STX | BPF_ST => backtrack_store(insn, hist, bt)?,
        BPF_JMP | BPF_JMP32 => backtrack_jmp(insns, idx, insn, subseq, bt)?,
        _ if insn.mode() == BPF_IND || insn.mode() == BPF_ABS => {
            // r0 comes from the packet: not followed.
            if bt.is_reg_set(0) {
                return Err(Unsupported);
            }
        }
        // ld_imm64: a constant.
        _ => bt.clear_reg(insn.dst),
    }
    bt.sync_linked(hist);
    Ok(())
}

fn backtrack_alu(insn: Insn, bt: &mut Bt) {
    if !bt.is_reg_set(insn.dst) {
        return;
    }
    match insn.op() {
        // dst still needs precision before the instruction.
        BPF_END | BPF_NEG => {}
        BPF_MOV => {
            bt.clear_reg(insn.dst);
            if insn.source() == BPF_X && insn.src as usize != BPF_REG_FP {
                bt.set_reg(insn.src);
            }
        }
        _ => {
            if insn.source() == BPF_X && insn.src as usize != BPF_REG_FP {
                bt.set_reg(insn.src);
            }
        }
    }
}

/// A load: a fill from the stack passes the need on to the slot.
fn backtrack_ldx(insn: Insn, hist: Option<&HistEntry>, bt: &mut Bt) {
    if !bt.is_reg_set(insn.dst) {
        return;
    }
    bt.clear_reg(insn.dst);
    if let Some((fr, spi)) = hist.and_then(|h| h.stack) {
        bt.m.set_slot(fr as usize, spi as usize);
    }
}

/// A store: a spill into a tracked slot passes the need on to the register.
fn backtrack_store(insn: Insn, hist: Option<&HistEntry>, bt: &mut Bt) -> Result<(), Unsupported> {
    if bt.is_reg_set(insn.dst) {
        // A scalar used as a memory address: pointer subtraction.
        return Err(Unsupported);
    }
    let Some((fr, spi)) = hist.and_then(|h| h.stack) else {
        return Ok(());
    };
    if !bt.m.slot(fr as usize, spi as usize) {
        return Ok(());
    }
    bt.m.clear_slot(fr as usize, spi as usize);
    if insn.class() == BPF_STX {
        bt.set_reg(insn.src);
    }
    Ok(())
}

fn backtrack_jmp(
    insns: &[Insn],
    idx: usize,
    insn: Insn,
    subseq: Option<usize>,
    bt: &mut Bt,
) -> Result<(), Unsupported> {
    let next_is_after = subseq == Some(idx + 1);
    match insn.op() {
        BPF_CALL if insn.src == BPF_PSEUDO_CALL => {
            // Walking back out of a static subprogram into its caller: only its
            // arguments r1-r5 can still be wanted.
            if bt.reg_mask() & !REGMASK_ARGS != 0 || bt.stack_mask() != 0 || bt.frame == 0 {
                return Err(Unsupported);
            }
            for r in 1..=5u8 {
                if bt.is_reg_set(r) {
                    bt.clear_reg(r);
                    bt.m.set_reg(bt.frame - 1, r as usize);
                }
            }
            bt.frame -= 1;
        }
        BPF_CALL if !next_is_after => {
            // The entry of a callback (bpf_loop, for_each_map_elem): its
            // arguments come from the helper, not from the caller's registers.
            return Err(Unsupported);
        }
        BPF_CALL => {
            bt.clear_reg(0);
            if bt.reg_mask() & REGMASK_ARGS != 0 {
                return Err(Unsupported);
            }
        }
        BPF_EXIT => {
            // Walking back from the caller into the subprogram's exit.
            let from_call = subseq
                .and_then(|s| s.checked_sub(1))
                .is_some_and(|c| is_pseudo_call(insns.get(c)));
            if !from_call || bt.reg_mask() & REGMASK_ARGS != 0 {
                return Err(Unsupported);
            }
            let r0 = bt.is_reg_set(0);
            bt.clear_reg(0);
            if bt.frame + 1 >= MAX_CALL_FRAMES {
                return Err(Unsupported);
            }
            bt.frame += 1;
            if r0 {
                bt.set_reg(0);
            }
        }
        BPF_JA | BPF_JCOND => {}
        // dst <cond> src: both needed their values before the jump.
        _ if insn.source() == BPF_X && (bt.is_reg_set(insn.dst) || bt.is_reg_set(insn.src)) => {
            bt.set_reg(insn.src);
            bt.set_reg(insn.dst);
        }
        _ => {}
    }
    Ok(())
}

/// Where the walk of one state's segment stands.
struct Walk {
    subseq: Option<usize>,
    skip_first: bool,
}

/// Walks one segment backwards, from `last` to `first` (the state's jump
/// history tells where a jump came from). True: nothing is left to backtrack.
fn walk_segment(
    insns: &[Insn],
    hist: &[HistEntry],
    first: usize,
    last: usize,
    w: &mut Walk,
    bt: &mut Bt,
) -> Result<bool, Unsupported> {
    let mut cnt = hist.len();
    let mut i = last;
    // Bounded: every step goes one instruction back or consumes a record.
    for _ in 0..insns.len() + hist.len() + 1 {
        if w.skip_first {
            w.skip_first = false;
        } else {
            let h = cnt
                .checked_sub(1)
                .and_then(|k| hist.get(k))
                .filter(|h| h.idx == i);
            backtrack_insn(insns, i, w.subseq, h, bt)?;
        }
        if bt.m.is_empty() {
            return Ok(true);
        }
        w.subseq = Some(i);
        // get_prev_insn_idx
        let last_rec = cnt.checked_sub(1).and_then(|k| hist.get(k));
        if i == first && (cnt == 0 || (cnt == 1 && hist.first().is_some_and(|h| h.idx == i))) {
            return Ok(false);
        }
        match last_rec {
            Some(h) if h.idx == i => {
                i = h.prev_idx;
                cnt -= 1;
            }
            _ => i = i.checked_sub(1).ok_or(Unsupported)?,
        }
    }
    Err(Unsupported)
}

/// Marks what `bt` wants in a checkpoint's frames (the part of
/// __mark_chain_precision between two states); what was precise already, or is
/// no scalar, needs nothing further.
fn mark_in_state(st: &VerifierState, prec: &mut Masks, bt: &mut Bt) -> Result<(), Unsupported> {
    for fr in 0..=bt.frame {
        let f: &FuncState = st.frames.get(fr).ok_or(Unsupported)?;
        for r in 0..16 {
            if !bt.m.reg(fr, r) {
                continue;
            }
            let scalar = f.regs.get(r).is_some_and(|reg| reg.is_scalar());
            if !scalar || prec.reg(fr, r) {
                bt.m.clear_reg(fr, r);
            } else {
                prec.set_reg(fr, r);
            }
        }
        for spi in 0..64 {
            if !bt.m.slot(fr, spi) {
                continue;
            }
            let slot = f.stack.get(spi).ok_or(Unsupported)?;
            if !(slot.is_spilled_reg() && slot.spilled.is_scalar()) || prec.slot(fr, spi) {
                bt.m.clear_slot(fr, spi);
            } else {
                prec.set_slot(fr, spi);
            }
        }
    }
    Ok(())
}

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: push_jmp_history: a record for the current
    /// instruction (merged with the one its arrival by a jump made).
    pub fn push_jmp_history(&mut self, stack: Option<(u8, u8)>, linked: Vec<Linked>) {
        let idx = self.insn_idx;
        if self.hist_pushed_here {
            if let Some(h) = self.cur.jmp_history.last_mut().filter(|h| h.idx == idx) {
                h.stack = stack.or(h.stack);
                h.linked.extend(linked);
                return;
            }
        }
        self.cur.jmp_history.push(HistEntry {
            idx,
            prev_idx: self.prev_insn_idx,
            stack,
            linked,
        });
        self.hist_pushed_here = true;
    }

    /// The stack slot of a fixed-offset spill or fill, for the jump history.
    pub fn note_stack_access(&mut self, frameno: u8, off: i64) {
        if off >= 0 {
            return;
        }
        let spi = (-off - 1) / 8;
        if let Ok(spi) = u8::try_from(spi) {
            self.push_jmp_history(Some((frameno, spi)), Vec::new());
        }
    }

    /// kernel/bpf/verifier.c: mark_chain_precision: the value of scalar `regno`
    /// of the current frame matters.
    pub fn mark_chain_precision(&mut self, regno: u8) {
        if !self.opts.privileged || !self.reg(regno as usize).is_scalar() {
            return;
        }
        let mut bt = Bt {
            frame: self.cur.curframe(),
            m: Masks::default(),
        };
        bt.set_reg(regno);
        self.mark_chain(bt);
    }

    /// kernel/bpf/verifier.c: propagate_precision: the current path was pruned
    /// against `old`, so what was precise there is precise along this path.
    pub fn propagate_precision(&mut self, old: usize) {
        let Some(stored) = self.explored.arena.get(old) else {
            return;
        };
        let mut bt = Bt {
            frame: self.cur.curframe(),
            m: Masks::default(),
        };
        for (fr, f) in stored.st.frames.iter().enumerate() {
            for (r, reg) in f.regs.iter().enumerate().take(BPF_REG_FP) {
                if reg.is_scalar() && stored.prec.reg(fr, r) {
                    bt.m.set_reg(fr, r);
                }
            }
            for (spi, s) in f.stack.iter().enumerate() {
                if s.is_spilled_reg() && s.spilled.is_scalar() && stored.prec.slot(fr, spi) {
                    bt.m.set_slot(fr, spi);
                }
            }
        }
        if !bt.m.is_empty() {
            self.mark_chain(bt);
        }
    }

    /// kernel/bpf/verifier.c: __mark_chain_precision, from the current state up
    /// its checkpoints.
    fn mark_chain(&mut self, mut bt: Bt) {
        let insns = self.insns;
        let mut w = Walk {
            subseq: None,
            skip_first: true,
        };
        let (first, last) = (self.cur.first_insn_idx, self.insn_idx);
        match walk_segment(insns, &self.cur.jmp_history, first, last, &mut w, &mut bt) {
            Ok(true) => return,
            Ok(false) => {}
            Err(Unsupported) => return self.mark_all_scalars_precise(),
        }
        let mut parent = self.cur.parent;
        let mut first = first;
        while let Some(p) = parent {
            let Some(stored) = self.explored.arena.get_mut(p) else {
                break;
            };
            if mark_in_state(&stored.st, &mut stored.prec, &mut bt).is_err() {
                return self.mark_all_scalars_precise();
            }
            if bt.m.is_empty() {
                return;
            }
            w.subseq = Some(first);
            let (sfirst, slast) = (stored.st.first_insn_idx, stored.st.last_insn_idx);
            match walk_segment(
                insns,
                &stored.st.jmp_history,
                sfirst,
                slast,
                &mut w,
                &mut bt,
            ) {
                Ok(true) => return,
                Ok(false) => {}
                Err(Unsupported) => return self.mark_all_scalars_precise(),
            }
            first = sfirst;
            parent = stored.st.parent;
        }
        if !bt.m.is_empty() {
            self.mark_all_scalars_precise();
        }
    }

    /// kernel/bpf/verifier.c: mark_all_scalars_precise: every checkpoint of the
    /// current path. A checkpoint marked so has its parents marked too.
    fn mark_all_scalars_precise(&mut self) {
        let mut parent = self.cur.parent;
        while let Some(p) = parent {
            let Some(stored) = self.explored.arena.get_mut(p) else {
                return;
            };
            if stored.prec == Masks::ALL {
                return;
            }
            stored.prec = Masks::ALL;
            parent = stored.st.parent;
        }
    }

    /// kernel/bpf/verifier.c: collect_linked_regs: the scalars of every frame that
    /// share `id` with a register a conditional jump refines.
    pub fn collect_linked_regs(&self, ids: &[u32]) -> Vec<Linked> {
        let mut out = Vec::new();
        for (fr, f) in self.cur.frames.iter().enumerate() {
            for (r, reg) in f.regs.iter().enumerate() {
                if reg.is_scalar() && reg.id != 0 && ids.contains(&reg.id) {
                    out.push(Linked {
                        frame: fr as u8,
                        num: r as u8,
                        is_reg: true,
                    });
                }
            }
            for (spi, s) in f.stack.iter().enumerate() {
                let sp = &s.spilled;
                if s.is_spilled_reg() && sp.is_scalar() && sp.id != 0 && ids.contains(&sp.id) {
                    out.push(Linked {
                        frame: fr as u8,
                        num: spi.min(63) as u8,
                        is_reg: false,
                    });
                }
            }
        }
        out
    }
}
