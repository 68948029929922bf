//! The control-flow pass before the walk (kernel/bpf/verifier.c: check_cfg,
//! visit_insn, compute_live_registers): every instruction reachable, back-edges
//! found (root may loop: bounded loops are proved by the walk), prune points
//! marked, and the registers live before each instruction computed.

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::call::{BPF_FUNC_FOR_EACH_MAP_ELEM, BPF_FUNC_LOOP};
use super::do_check::target;
use super::env::{Env, Subprog, VResult};
use super::state::MAX_BPF_STACK;
use super::{E2BIG, EACCES};

/// Successors of instruction `t` within the CFG, and whether the second is a
/// branch target (prune point) rather than the fall-through.
fn successors(insns: &[Insn], t: usize) -> Vec<(usize, bool)> {
    let Some(insn) = insns.get(t) else {
        return Vec::new();
    };
    let class = insn.class();
    if class == BPF_LD && insn.is_ld_imm64() {
        let mut v = vec![(t + 2, false)];
        if insn.src == BPF_PSEUDO_FUNC {
            v.push((target(t, insn.imm as i64), true));
        }
        return v;
    }
    if class != BPF_JMP && class != BPF_JMP32 {
        return vec![(t + 1, false)];
    }
    match insn.op() {
        BPF_EXIT => Vec::new(),
        BPF_CALL => {
            let mut v = vec![(t + 1, false)];
            if insn.src == BPF_PSEUDO_CALL {
                v.push((target(t, insn.imm as i64), true));
            }
            v
        }
        BPF_JA => {
            let rel = if class == BPF_JMP32 {
                insn.imm as i64
            } else {
                insn.off as i64
            };
            vec![(target(t, rel), true)]
        }
        _ => vec![(t + 1, false), (target(t, insn.off as i64), true)],
    }
}

fn is_callback_call(insn: &Insn) -> bool {
    insn.code == CALL
        && insn.src == 0
        && matches!(insn.imm, BPF_FUNC_LOOP | BPF_FUNC_FOR_EACH_MAP_ELEM)
}

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: check_cfg (iterative DFS), plus the subprogram list.
    pub fn check_cfg(&mut self) -> VResult<()> {
        let n = self.insns.len();
        // 0: unseen, 1: on the DFS stack, 2: done.
        let mut state = vec![0u8; n];
        let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
        state[0] = 1;
        let mut starts = vec![0usize];
        while let Some(&(t, k)) = stack.last() {
            let succ = successors(self.insns, t);
            let Some(&(w, branch)) = succ.get(k) else {
                state[t] = 2;
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let insn = self.insns[t];
            let is_call_edge = branch && (insn.code == CALL || insn.is_ld_imm64());
            if is_call_edge {
                starts.push(w);
            }
            if branch {
                self.mark_prune_point(w);
            }
            if w >= n {
                return self.einval(format!("jump out of range from insn {t} to {w}"));
            }
            match state[w] {
                0 => {
                    state[w] = 1;
                    stack.push((w, 0));
                }
                1 if !is_call_edge => {
                    if !self.opts.privileged {
                        return self.einval(format!("back-edge from insn {t} to {w}"));
                    }
                    if let Some(a) = self.aux.get_mut(t) {
                        a.bounded_loop = true;
                    }
                    if let Some(a) = self.iaux.get_mut(w) {
                        a.loop_head = true;
                    }
                }
                _ => {}
            }
        }
        self.mark_call_prune_points();
        let mut i = 0;
        while i < n {
            if state[i] != 2 {
                return self.einval(format!("unreachable insn {i}"));
            }
            i += if self.insns[i].is_ld_imm64() { 2 } else { 1 };
        }
        starts.sort_unstable();
        starts.dedup();
        self.subprogs = starts
            .into_iter()
            .map(|start| Subprog {
                start,
                stack_depth: 0,
            })
            .collect();
        Ok(())
    }

    /// visit_insn's marks: conditional jumps, after every call, callback calls.
    fn mark_call_prune_points(&mut self) {
        for t in 0..self.insns.len() {
            let insn = self.insns[t];
            let class = insn.class();
            if class != BPF_JMP && class != BPF_JMP32 {
                if insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC {
                    self.mark_prune_point(t);
                    self.mark_prune_point(t + 2);
                }
                continue;
            }
            match insn.op() {
                BPF_CALL => {
                    self.mark_prune_point(t + 1);
                    if insn.src == BPF_PSEUDO_CALL || is_callback_call(&insn) {
                        self.mark_prune_point(t);
                    }
                }
                BPF_JA | BPF_EXIT => {}
                _ => self.mark_prune_point(t),
            }
        }
    }

    fn mark_prune_point(&mut self, t: usize) {
        if let Some(a) = self.iaux.get_mut(t) {
            a.prune_point = true;
        }
    }

    /// kernel/bpf/verifier.c: compute_live_registers: backward data flow of the
    /// registers each instruction reads before writing (r10 excluded).
    pub fn compute_live_registers(&mut self) {
        let n = self.insns.len();
        let uses_defs: Vec<(u16, u16)> = (0..n).map(|t| self.use_def(t)).collect();
        let succ: Vec<Vec<usize>> = (0..n)
            .map(|t| {
                let insn = self.insns[t];
                successors(self.insns, t)
                    .into_iter()
                    .filter(|&(_, branch)| !(branch && (insn.code == CALL || insn.is_ld_imm64())))
                    .map(|(w, _)| w)
                    .collect()
            })
            .collect();
        let mut live_in = vec![0u16; n];
        let mut changed = true;
        while changed {
            changed = false;
            for t in (0..n).rev() {
                let out = succ[t]
                    .iter()
                    .fold(0u16, |acc, &w| acc | live_in.get(w).copied().unwrap_or(0));
                let (u, d) = uses_defs[t];
                let new = u | (out & !d);
                if new != live_in[t] {
                    live_in[t] = new;
                    changed = true;
                }
            }
        }
        for (a, l) in self.iaux.iter_mut().zip(live_in) {
            a.live_regs = l;
        }
    }

    /// Registers read and written by instruction `t` (bit i = ri).
    fn use_def(&self, t: usize) -> (u16, u16) {
        let Some(insn) = self.insns.get(t) else {
            return (0, 0);
        };
        let (d, s) = (1u16 << (insn.dst & 15), 1u16 << (insn.src & 15));
        let args = |k: usize| -> u16 { ((1u16 << (k + 1)) - 1) & !1 };
        let caller_saved: u16 = 0b11_1111;
        let (u, df) = match insn.class() {
            BPF_ALU | BPF_ALU64 => match (insn.op(), insn.source()) {
                (BPF_MOV, BPF_X) => (s, d),
                (BPF_MOV, _) => (0, d),
                (BPF_NEG | BPF_END, _) => (d, d),
                (_, BPF_X) => (d | s, d),
                _ => (d, d),
            },
            BPF_LDX => (s, d),
            BPF_ST => (d, 0),
            BPF_STX if insn.mode() == BPF_ATOMIC => {
                let mut u = d | s;
                let mut df = 0;
                if insn.imm == BPF_CMPXCHG {
                    u |= 1;
                    df |= 1;
                } else if insn.imm == BPF_LOAD_ACQ {
                    u = s;
                    df = d;
                } else if insn.imm & BPF_FETCH != 0 {
                    df |= s;
                }
                (u, df)
            }
            BPF_STX => (d | s, 0),
            BPF_LD if insn.is_ld_imm64() => (0, d),
            BPF_LD => {
                let u = if insn.mode() == BPF_IND {
                    (1 << 6) | s
                } else {
                    1 << 6
                };
                (u, caller_saved)
            }
            _ => match insn.op() {
                BPF_EXIT => (1, 0),
                BPF_CALL if insn.src == 0 => {
                    let nargs = self
                        .opts
                        .helpers
                        .get(insn.imm as u32)
                        .map(|h| {
                            h.proto
                                .args
                                .iter()
                                .rposition(|a| *a != crate::proto::ArgType::DontCare)
                                .map_or(0, |p| p + 1)
                        })
                        .unwrap_or(5);
                    (args(nargs), caller_saved)
                }
                BPF_CALL => (args(5), caller_saved),
                BPF_JA | BPF_JCOND => (0, 0),
                _ if insn.source() == BPF_X => (d | s, 0),
                _ => (d, 0),
            },
        };
        (u & !(1 << 10), df)
    }
}

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: check_max_stack_depth: the frames of the deepest
    /// chain of calls (and callbacks) together within MAX_BPF_STACK.
    pub fn check_max_stack_depth(&mut self) -> VResult<()> {
        let depth = |sp: &Subprog| (sp.stack_depth.max(1) + 31) / 32 * 32;
        let index_of = |start: usize, sps: &[Subprog]| sps.iter().position(|s| s.start == start);
        let subs = self.subprogs.clone();
        // (subprogram, chain depth so far, frames so far); the walk is bounded by
        // the frame limit.
        let mut work = vec![(0usize, 0i32, 1usize)];
        while let Some((i, above, frames)) = work.pop() {
            let Some(sp) = subs.get(i) else {
                continue;
            };
            let total = above + depth(sp);
            if total > MAX_BPF_STACK {
                return Err(self.error(
                    EACCES,
                    format!("combined stack size of {frames} calls is {total}. Too large"),
                ));
            }
            let end = subs.get(i + 1).map_or(self.insns.len(), |s| s.start);
            for t in sp.start..end {
                let insn = self.insns[t];
                let calls = (insn.code == CALL && insn.src == BPF_PSEUDO_CALL)
                    || (insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC);
                if calls {
                    // check_max_stack_depth_subprog follows every call, so a
                    // recursion (even one bounded at run time) runs out of frames.
                    if frames >= super::state::MAX_CALL_FRAMES {
                        return Err(self.error(
                            E2BIG,
                            format!("the call stack of {frames} frames is too deep !"),
                        ));
                    }
                    if let Some(j) = index_of(target(t, insn.imm as i64), &subs) {
                        work.push((j, total, frames + 1));
                    }
                }
            }
        }
        Ok(())
    }
}
