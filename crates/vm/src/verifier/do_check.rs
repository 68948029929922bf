//! The main loop (kernel/bpf/verifier.c: do_check, do_check_common): walks one path
//! at a time from the current state, dispatching each instruction to its check,
//! checkpointing and pruning at prune points, and popping the next pending path
//! when one ends.

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::env::{Env, Pending, VResult};
use super::state::{FuncState, Reg, RegType, VerifierState, MAX_BPF_REG};
use super::E2BIG;

/// `BPF_COMPLEXITY_LIMIT_INSNS`.
pub const BPF_COMPLEXITY_LIMIT_INSNS: u64 = 1_000_000;
/// `BPF_COMPLEXITY_LIMIT_JMP_SEQ`.
pub const BPF_COMPLEXITY_LIMIT_JMP_SEQ: usize = 8192;

/// Where a checked instruction sends the path.
pub enum Next {
    /// The next instruction (`n` slots on: 2 after ld_imm64).
    Step(usize),
    /// A jump or call target.
    Goto(usize),
    /// The path ended (exit from the main program).
    Done,
}

/// `enum bpf_reg_arg_type` of check_reg_arg.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RegArg {
    SrcOp,
    DstOp,
    /// A destination whose old value is not read and whose new value is not
    /// yet known (the kernel's DST_OP_NO_MARK).
    DstOpNoMark,
}

impl<'a> Env<'a> {
    /// The initial state of the main program: R1 = ctx, R10 = fp.
    pub fn init_state(&mut self) {
        let mut f = FuncState::new(0, 0, 0);
        f.regs[1] = Reg::ptr(RegType::Ctx);
        self.cur = VerifierState::new(vec![f]);
    }

    /// kernel/bpf/verifier.c: do_check
    pub fn do_check(&mut self) -> VResult<()> {
        loop {
            let idx = self.insn_idx;
            let Some(insn) = self.insns.get(idx).copied() else {
                let n = self.insns.len();
                return Err(self.error(
                    super::EFAULT,
                    format!("invalid insn idx {idx} insn_cnt {n}"),
                ));
            };
            self.insn_processed += 1;
            if self.insn_processed > BPF_COMPLEXITY_LIMIT_INSNS {
                let n = self.insn_processed;
                return Err(self.error(
                    E2BIG,
                    format!("BPF program is too large. Processed {n} insn"),
                ));
            }
            // The path came here by a jump, a call or a return: the jump
            // history records where from (is_jmp_point).
            self.hist_pushed_here = false;
            let jmp_point = self.prev_insn_idx + 1 != idx && self.insn_processed > 1;
            let prune = self.iaux.get(idx).is_some_and(|a| a.prune_point);
            if prune && self.is_state_visited(idx, jmp_point)? {
                self.log.safe(idx);
                if !self.path_done() {
                    return Ok(());
                }
                continue;
            }
            if jmp_point && !prune {
                self.push_jmp_history(None, Vec::new());
            }
            self.log.insn(idx, self.opts.lines);
            if let Some(a) = self.aux.get_mut(idx) {
                a.seen = true;
            }
            match self.do_insn(insn)? {
                Next::Step(n) => {
                    self.prev_insn_idx = idx;
                    self.insn_idx = idx + n;
                }
                Next::Goto(t) => {
                    self.prev_insn_idx = idx;
                    self.insn_idx = t;
                }
                Next::Done => {
                    if !self.path_done() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A path ended: account it in its checkpoints and take the next pending one
    /// (`update_branch_counts` + `pop_stack`). False when none is left.
    fn path_done(&mut self) -> bool {
        let parent = self.cur.parent;
        self.update_branch_counts(parent);
        let Some(p) = self.pending.pop() else {
            return false;
        };
        self.cur = p.st;
        self.insn_idx = p.insn_idx;
        self.prev_insn_idx = p.prev_insn_idx;
        self.log.path_switch(p.prev_insn_idx, p.insn_idx);
        true
    }

    /// kernel/bpf/verifier.c: push_stack: a copy of the current state to explore
    /// from `insn_idx` later.
    pub fn push_stack(&mut self, st: VerifierState, insn_idx: usize) -> VResult<()> {
        if let Some(p) = st.parent {
            self.explored.add_branch(p);
        }
        self.pending.push(Pending {
            st,
            insn_idx,
            prev_insn_idx: self.insn_idx,
        });
        if self.pending.len() > BPF_COMPLEXITY_LIMIT_JMP_SEQ {
            let n = self.pending.len();
            return Err(self.error(E2BIG, format!("The sequence of {n} jumps is too complex.")));
        }
        Ok(())
    }

    fn do_insn(&mut self, insn: Insn) -> VResult<Next> {
        match insn.class() {
            BPF_ALU | BPF_ALU64 => {
                self.check_alu_op(insn)?;
                Ok(Next::Step(1))
            }
            BPF_LDX => {
                self.check_ldx(insn)?;
                Ok(Next::Step(1))
            }
            BPF_STX if insn.mode() == BPF_ATOMIC => {
                self.check_atomic(insn)?;
                Ok(Next::Step(1))
            }
            BPF_STX => {
                self.check_stx(insn)?;
                Ok(Next::Step(1))
            }
            BPF_ST => {
                self.check_st(insn)?;
                Ok(Next::Step(1))
            }
            BPF_JMP | BPF_JMP32 => self.check_jmp_class(insn),
            BPF_LD if insn.mode() == BPF_IMM => {
                self.check_ld_imm(insn)?;
                Ok(Next::Step(2))
            }
            BPF_LD => {
                self.check_ld_abs(insn)?;
                Ok(Next::Step(1))
            }
            _ => {
                let code = insn.code;
                self.einval(format!("unknown insn class {code}"))
            }
        }
    }

    fn check_jmp_class(&mut self, insn: Insn) -> VResult<Next> {
        let idx = self.insn_idx;
        // do_check counts every jump-class instruction (calls and exits too)
        // for the checkpoint heuristics.
        self.jmps_processed += 1;
        match insn.op() {
            BPF_CALL => self.check_call(insn),
            BPF_EXIT => self.check_exit(),
            BPF_JA => {
                let rel = if insn.class() == BPF_JMP32 {
                    insn.imm as i64
                } else {
                    insn.off as i64
                };
                Ok(Next::Goto(target(idx, rel)))
            }
            BPF_JCOND => self.check_may_goto(insn),
            _ => self.check_cond_jmp_op(insn),
        }
    }

    /// `may_goto`: both ways are possible (the kernel bounds it at run time).
    fn check_may_goto(&mut self, insn: Insn) -> VResult<Next> {
        let idx = self.insn_idx;
        let st = self.cur.clone();
        self.push_stack(st, target(idx, insn.off as i64))?;
        Ok(Next::Step(1))
    }

    /// kernel/bpf/verifier.c: check_reg_arg
    pub fn check_reg_arg(&mut self, regno: u8, t: RegArg) -> VResult<()> {
        let r = regno as usize;
        if r >= MAX_BPF_REG {
            return self.einval(format!("R{regno} is invalid"));
        }
        match t {
            RegArg::SrcOp => {
                if !self.reg(r).is_init() {
                    return self.eacces(format!("R{regno} !read_ok"));
                }
            }
            RegArg::DstOp | RegArg::DstOpNoMark => {
                if r == super::state::BPF_REG_FP {
                    return self.eacces("frame pointer is read only");
                }
                if t == RegArg::DstOp {
                    self.set_reg(r, Reg::unknown());
                }
            }
        }
        Ok(())
    }
}

/// The instruction a relative jump at `idx` lands on (validated before).
pub fn target(idx: usize, rel: i64) -> usize {
    (idx as i64 + 1 + rel).max(0) as usize
}
