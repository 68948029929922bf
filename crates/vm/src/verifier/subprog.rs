//! Frames (kernel/bpf/verifier.c: check_func_call, prepare_func_exit,
//! push_callback_call, check_return_code) and the 64-bit immediate and legacy
//! packet loads (check_ld_imm, check_ld_abs).

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::call::{ArgMeta, BPF_FUNC_LOOP};
use super::do_check::{target, Next, RegArg};
use super::env::{Env, VResult};
use super::state::{FuncState, MapRef, Reg, RegType, SlotType, VerifierState, MAX_CALL_FRAMES};
use super::E2BIG;

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: check_func_call (static subprograms, verified in
    /// their caller's context).
    pub fn check_func_call(&mut self, insn: Insn) -> VResult<Next> {
        let idx = self.insn_idx;
        let depth = self.cur.frames.len();
        if depth >= MAX_CALL_FRAMES {
            return Err(self.error(
                E2BIG,
                format!("the call stack of {} frames is too deep", depth + 1),
            ));
        }
        let start = target(idx, insn.imm as i64);
        let mut callee = FuncState::new(idx, depth as u32, start);
        let caller = self.cur.cur_mut();
        for r in 1..=5 {
            callee.regs[r] = caller.regs[r];
        }
        for r in 0..=5 {
            caller.regs[r] = Reg::not_init();
        }
        self.cur.frames.push(callee);
        self.new_frame_written(depth);
        Ok(Next::Goto(start))
    }

    /// BPF_EXIT (do_check's process_bpf_exit_full).
    pub fn check_exit(&mut self) -> VResult<Next> {
        let main = self.cur.curframe() == 0;
        self.check_resource_leak(false, main, "BPF_EXIT instruction in main prog")?;
        if !main {
            return self.prepare_func_exit();
        }
        self.check_return_code()?;
        Ok(Next::Done)
    }

    /// kernel/bpf/verifier.c: check_return_code (XDP and TC take any scalar;
    /// privileged programs may even return a pointer).
    fn check_return_code(&mut self) -> VResult<()> {
        self.check_reg_arg(0, RegArg::SrcOp)?;
        let r0 = self.reg(0);
        if r0.ty.is_pointer() && !self.opts.privileged {
            return self.eacces("R0 leaks addr as return value");
        }
        Ok(())
    }

    /// kernel/bpf/verifier.c: prepare_func_exit
    fn prepare_func_exit(&mut self) -> VResult<Next> {
        let callee = self.cur.cur().clone();
        let r0 = callee.regs[0];
        if callee.in_callback_fn {
            if !r0.is_init() {
                return self.eacces("R0 !read_ok");
            }
            if !r0.is_scalar() {
                return self.eacces("R0 not a scalar value");
            }
            // The range check relies on r0's value.
            self.mark_chain_precision(0);
            let (lo, hi) = callee.callback_ret_range;
            if !(lo <= r0.s.smin_value && r0.s.smax_value <= hi) {
                let mut line = "At callback return the register R0 has".to_string();
                let mut unknown = true;
                if r0.s.smin_value > i64::MIN {
                    line.push_str(&format!(" smin={}", r0.s.smin_value));
                    unknown = false;
                }
                if r0.s.smax_value < i64::MAX {
                    line.push_str(&format!(" smax={}", r0.s.smax_value));
                    unknown = false;
                }
                if unknown {
                    line.push_str(" unknown scalar value");
                }
                line.push_str(&format!(" should have been in [{lo}, {hi}]"));
                return self.einval(line);
            }
        } else {
            // A static subprogram's r0 goes back as it is, even unset (clang drops
            // the return of a function whose callers ignore it).
            if r0.ty == RegType::Stack {
                return self.einval("cannot return stack pointer to the caller");
            }
        }
        self.cur.frames.pop();
        if !callee.in_callback_fn {
            self.set_reg(0, r0);
        }
        Ok(Next::Goto(callee.callsite + 1))
    }

    /// kernel/bpf/verifier.c: push_callback_call, simplified: the callback's body
    /// is verified once from the call, then the caller goes on after the call
    /// (the continuation without a callback run is already pending). The kernel
    /// iterates callback runs to a fixed point; see docs/differences.md.
    pub fn push_callback_call(
        &mut self,
        pre_call: VerifierState,
        func_id: i32,
        meta: &ArgMeta,
    ) -> VResult<usize> {
        let idx = self.insn_idx;
        let Some(sub) = meta.subprog else {
            return self.einval("kernel subsystem misconfigured verifier");
        };
        let depth = self.cur.frames.len();
        if depth >= MAX_CALL_FRAMES {
            return Err(self.error(
                E2BIG,
                format!("the call stack of {} frames is too deep", depth + 1),
            ));
        }
        let caller = pre_call.cur();
        let mut callee = FuncState::new(idx, depth as u32, sub as usize);
        callee.in_callback_fn = true;
        callee.callback_ret_range = (0, 1);
        if func_id == BPF_FUNC_LOOP {
            // set_loop_callback_state
            callee.regs[1] = Reg::unknown();
            callee.regs[2] = caller.regs[3];
        } else {
            // set_map_elem_callback_state
            let map = caller.regs[1];
            callee.regs[1] = map;
            let mut key = Reg::ptr(RegType::MapKey);
            key.map = map.map;
            callee.regs[2] = key;
            let mut value = Reg::ptr(RegType::MapValue);
            value.map = map.map;
            callee.regs[3] = value;
            callee.regs[4] = caller.regs[3];
        }
        // The callback may run any number of times and write whatever it reaches
        // through its context, a stack pointer: then every stack byte of the
        // frames below becomes unknown data, for the callback's entry and for the
        // code after the call (a sound cover of all runs; a pointer spilled there
        // is lost). Without a stack context the callback cannot reach them.
        if caller.regs[3].ty == RegType::Stack {
            havoc_stacks(&mut self.cur);
        }
        // The state after the call (r0 set, r1-r5 cleared) continues without a
        // callback run; the explored path below runs the callback once first.
        let after = self.cur.clone();
        self.push_stack(after, idx + 1)?;
        self.cur.frames.push(callee);
        self.new_frame_written(depth);
        Ok(sub as usize)
    }

    /// BPF_LD | BPF_IMM | BPF_DW (kernel/bpf/verifier.c: check_ld_imm).
    pub fn check_ld_imm(&mut self, insn: Insn) -> VResult<()> {
        self.check_reg_arg(insn.dst, RegArg::DstOp)?;
        let next = self
            .insns
            .get(self.insn_idx + 1)
            .copied()
            .unwrap_or_default();
        let d = insn.dst as usize;
        let reg = match insn.src {
            0 => Reg::known((insn.imm as u32 as u64) | ((next.imm as u32 as u64) << 32)),
            BPF_PSEUDO_FUNC => {
                let mut r = Reg::ptr(RegType::Func);
                r.subprog = target(self.insn_idx, insn.imm as i64) as u32;
                r
            }
            BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_IDX => {
                let m = self.map_ref(insn.imm)?;
                let mut r = Reg::ptr(RegType::ConstPtrToMap);
                r.map = Some(m);
                r
            }
            BPF_PSEUDO_MAP_VALUE | BPF_PSEUDO_MAP_IDX_VALUE => {
                let m = self.map_ref(insn.imm)?;
                let mut r = Reg::ptr(RegType::MapValue);
                r.map = Some(m);
                r.off = next.imm;
                r
            }
            _ => {
                return Err(self.error(
                    super::ENOTSUPP,
                    format!("not supported: ld_imm64 with src_reg {}", insn.src),
                ));
            }
        };
        self.set_reg(d, reg);
        Ok(())
    }

    fn map_ref(&mut self, imm: i32) -> VResult<MapRef> {
        let n = self.opts.maps.len();
        match u32::try_from(imm) {
            Ok(i) if (i as usize) < n => Ok(MapRef {
                index: i,
                inner: false,
            }),
            _ => self.einval(format!(
                "fd_idx {imm} out of range: the object has {n} maps"
            )),
        }
    }

    /// kernel/bpf/verifier.c: check_ld_abs
    pub fn check_ld_abs(&mut self, insn: Insn) -> VResult<()> {
        if !super::ctx::may_access_skb(self.opts.prog_type) {
            return self.einval("BPF_LD_[ABS|IND] instructions not allowed for this program type");
        }
        if insn.dst != 0
            || insn.off != 0
            || insn.size() == BPF_DW
            || (insn.mode() == BPF_ABS && insn.src != 0)
        {
            return self.einval("BPF_LD_[ABS|IND] uses reserved fields");
        }
        self.check_reg_arg(6, RegArg::SrcOp)?;
        self.check_resource_leak(false, true, "BPF_LD_[ABS|IND]")?;
        let r6 = self.reg(6);
        if r6.ty != RegType::Ctx {
            return self.einval("at the time of BPF_LD_ABS|IND R6 != pointer to skb");
        }
        if insn.mode() == BPF_IND {
            self.check_reg_arg(insn.src, RegArg::SrcOp)?;
        }
        self.check_ptr_off_reg(6, &r6)?;
        for r in 0..=5 {
            self.set_reg(r, Reg::not_init());
        }
        self.set_reg(0, Reg::unknown());
        Ok(())
    }
}

/// Every stack byte of every frame becomes STACK_MISC (unknown data).
fn havoc_stacks(st: &mut VerifierState) {
    for f in &mut st.frames {
        for slot in &mut f.stack {
            slot.slot_type = [SlotType::Misc; super::state::BPF_REG_SIZE];
            slot.spilled = Reg::not_init();
        }
    }
}
