//! ALU instructions (kernel/bpf/verifier.c: check_alu_op, adjust_reg_min_max_vals,
//! adjust_ptr_min_max_vals): scalar arithmetic goes to `scalar`, pointer arithmetic
//! follows the kernel's rules per pointer type. Privileged rules (allow_ptr_leaks,
//! bypass_spec): pointer leaks and subtractions are allowed, no speculation sanitising.

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::do_check::RegArg;
use super::env::{Env, VResult};
use super::scalar::Scalar;
use super::state::{Reg, RegType};

/// `BPF_MAX_VAR_OFF`.
const BPF_MAX_VAR_OFF: i64 = 1 << 29;

/// `bpf_alu_string[opcode >> 4]`.
pub fn alu_string(op: u8) -> &'static str {
    match op {
        BPF_ADD => "+=",
        BPF_SUB => "-=",
        BPF_MUL => "*=",
        BPF_DIV => "/=",
        BPF_OR => "|=",
        BPF_AND => "&=",
        BPF_LSH => "<<=",
        BPF_RSH => ">>=",
        BPF_NEG => "neg",
        BPF_MOD => "%=",
        BPF_XOR => "^=",
        BPF_MOV => "=",
        BPF_ARSH => "s>>=",
        BPF_END => "endian",
        _ => "?",
    }
}

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: check_alu_op
    pub fn check_alu_op(&mut self, insn: Insn) -> VResult<()> {
        let op = insn.op();
        let alu64 = insn.class() == BPF_ALU64;
        match op {
            BPF_END | BPF_NEG => self.check_neg_end(insn, alu64),
            BPF_MOV => self.check_mov(insn, alu64),
            _ => self.check_binary(insn, alu64),
        }
    }

    fn check_neg_end(&mut self, insn: Insn, alu64: bool) -> VResult<()> {
        self.check_reg_arg(insn.dst, RegArg::SrcOp)?;
        let d = insn.dst as usize;
        let dst = self.reg(d);
        if insn.op() == BPF_NEG && dst.is_scalar() {
            let s = super::scalar_ops::alu(insn.code, dst.s, dst.s, !alu64);
            self.set_reg(d, Reg::scalar(s));
            return Ok(());
        }
        if insn.op() == BPF_END && dst.is_scalar() {
            let width = Scalar::constant(insn.imm as u32 as u64);
            let s = super::scalar_ops::alu(insn.code, dst.s, width, !alu64);
            self.set_reg(d, Reg::scalar(s));
            return Ok(());
        }
        self.check_reg_arg(insn.dst, RegArg::DstOp)
    }

    fn check_mov(&mut self, insn: Insn, alu64: bool) -> VResult<()> {
        let d = insn.dst as usize;
        if insn.source() == BPF_K {
            self.check_reg_arg(insn.dst, RegArg::DstOpNoMark)?;
            let v = if alu64 {
                insn.imm as i64 as u64
            } else {
                insn.imm as u32 as u64
            };
            self.set_reg(d, Reg::known(v));
            return Ok(());
        }
        self.check_reg_arg(insn.src, RegArg::SrcOp)?;
        self.check_reg_arg(insn.dst, RegArg::DstOpNoMark)?;
        let s = insn.src as usize;
        let mut src = self.reg(s);
        let off = insn.off;
        if alu64 && off == 0 {
            // copy_register_state; scalars get an id linking the copies, so a
            // later comparison of one bounds the other (sync_linked_regs).
            if src.is_scalar() && src.id == 0 && src.const_value().is_none() {
                src.id = self.new_id();
                self.set_reg(s, src);
            }
            self.set_reg(d, src);
            return Ok(());
        }
        if !alu64 && off == 0 && src.is_scalar() && src.s.umax_value <= u32::MAX as u64 {
            // A 32-bit copy of a value that fits in 32 bits is the same value:
            // linked as a 64-bit copy is (check_alu_op's is_src_reg_u32).
            if src.id == 0 && src.const_value().is_none() {
                src.id = self.new_id();
                self.set_reg(s, src);
            }
            self.set_reg(d, src);
            return Ok(());
        }
        if !src.is_scalar() {
            if off != 0 && alu64 {
                return self.eacces(format!("R{} sign-extension part of pointer", insn.src));
            }
            // Privileged: a partial copy of a pointer is an unknown scalar.
            self.set_reg(d, Reg::unknown());
            return Ok(());
        }
        let v = match (alu64, off) {
            (_, 0) => super::scalar_ops::zext32(src.s),
            (true, bits) => super::scalar_ops::sext(src.s, (bits / 8) as u8),
            (false, bits) => super::scalar_ops::zext32(super::scalar_ops::sext(
                super::scalar_ops::zext32(src.s),
                (bits / 8) as u8,
            )),
        };
        self.set_reg(d, Reg::scalar(v));
        Ok(())
    }

    fn check_binary(&mut self, insn: Insn, alu64: bool) -> VResult<()> {
        let op = insn.op();
        if insn.source() == BPF_X {
            self.check_reg_arg(insn.src, RegArg::SrcOp)?;
        }
        self.check_reg_arg(insn.dst, RegArg::SrcOp)?;
        if insn.source() == BPF_K {
            if (op == BPF_DIV || op == BPF_MOD) && insn.imm == 0 {
                return self.einval("div by zero");
            }
            let size: i64 = if alu64 { 64 } else { 32 };
            if matches!(op, BPF_LSH | BPF_RSH | BPF_ARSH)
                && (insn.imm < 0 || insn.imm as i64 >= size)
            {
                return self.einval(format!("invalid shift {}", insn.imm));
            }
        }
        self.check_reg_arg(insn.dst, RegArg::DstOpNoMark)?;
        self.adjust_reg_min_max_vals(insn, alu64)
    }

    /// kernel/bpf/verifier.c: adjust_reg_min_max_vals
    fn adjust_reg_min_max_vals(&mut self, insn: Insn, alu64: bool) -> VResult<()> {
        let op = insn.op();
        let d = insn.dst as usize;
        let dst = self.reg(d);
        let src = if insn.source() == BPF_X {
            self.reg(insn.src as usize)
        } else {
            Reg::known(insn.imm as i64 as u64)
        };
        if !src.is_scalar() {
            if !dst.is_scalar() {
                if op == BPF_SUB {
                    self.set_reg(d, Reg::unknown());
                    return Ok(());
                }
                return self.eacces(format!(
                    "R{} pointer {} pointer prohibited",
                    insn.dst,
                    alu_string(op)
                ));
            }
            // scalar += pointer: the pointer's new offset depends on the scalar.
            self.mark_chain_precision(insn.dst);
            return self.adjust_ptr_min_max_vals(insn, src, dst, alu64, true);
        }
        if !dst.is_scalar() {
            if insn.source() == BPF_X {
                // pointer += scalar
                self.mark_chain_precision(insn.src);
            }
            return self.adjust_ptr_min_max_vals(insn, dst, src, alu64, false);
        }
        let mut dst_s = dst.s;
        if let Some((go_on, pushed)) = super::scalar_ops::maybe_fork(insn.code, &dst.s, &src.s) {
            // maybe_fork_scalars: a [-1, 0] operand of AND/OR splits the path; the
            // pushed one re-runs this instruction with 0.
            let mut other = self.cur.clone();
            if let Some(r) = other.cur_mut().regs.get_mut(d) {
                *r = Reg::scalar(pushed);
            }
            self.push_stack(other, self.insn_idx)?;
            dst_s = go_on;
        }
        let s = super::scalar_ops::alu(insn.code, dst_s, src.s, !alu64);
        self.set_reg(d, Reg::scalar(s));
        Ok(())
    }

    /// kernel/bpf/verifier.c: adjust_ptr_min_max_vals (privileged).
    fn adjust_ptr_min_max_vals(
        &mut self,
        insn: Insn,
        ptr: Reg,
        off_reg: Reg,
        alu64: bool,
        off_is_dst: bool,
    ) -> VResult<()> {
        let op = insn.op();
        let d = insn.dst as usize;
        let o = &off_reg.s;
        let known = o.const_value().is_some();
        if (known && (o.smin_value != o.smax_value || o.umin_value != o.umax_value))
            || o.smin_value > o.smax_value
            || o.umin_value > o.umax_value
        {
            self.set_reg(d, Reg::unknown());
            return Ok(());
        }
        if !alu64 {
            if op == BPF_SUB {
                self.set_reg(d, Reg::unknown());
                return Ok(());
            }
            return self.eacces(format!(
                "R{} 32-bit pointer arithmetic prohibited",
                insn.dst
            ));
        }
        if ptr.maybe_null {
            return self.eacces(format!(
                "R{} pointer arithmetic on {} prohibited, null-check it first",
                insn.dst,
                ptr.type_str()
            ));
        }
        let allowed = match ptr.ty {
            RegType::Ctx
            | RegType::MapValue
            | RegType::MapKey
            | RegType::Stack
            | RegType::PacketMeta
            | RegType::Packet
            | RegType::BtfId
            | RegType::Mem
            | RegType::Func => true,
            RegType::ConstPtrToMap => known && o.smin_value == 0 && op == BPF_ADD,
            _ => false,
        };
        if !allowed {
            return self.eacces(format!(
                "R{} pointer arithmetic on {} prohibited",
                insn.dst,
                ptr.type_str()
            ));
        }
        let tname = ptr.type_str();
        self.check_reg_sane_offset(&off_reg, &tname)?;
        self.check_reg_sane_offset(&ptr, &tname)?;
        let mut dst = ptr;
        let smin_val = o.smin_value;
        match op {
            BPF_ADD => {
                let sum = (ptr.off as i64).checked_add(smin_val);
                if let Some(sum) = sum.filter(|v| known && *v == *v as i32 as i64) {
                    dst.off = sum as i32;
                    clear_pkt_end_mark(&mut dst, smin_val);
                } else {
                    dst.s = super::scalar_ops::ptr_add(ptr.s, off_reg.s);
                    if ptr.ty.is_pkt_pointer() {
                        dst.id = self.new_id();
                        dst.range = 0;
                    }
                }
            }
            BPF_SUB => {
                if off_is_dst {
                    return self.eacces(format!(
                        "R{} tried to subtract pointer from scalar",
                        insn.dst
                    ));
                }
                if ptr.ty == RegType::Stack {
                    return self.eacces(format!(
                        "R{} subtraction from stack pointer prohibited",
                        insn.dst
                    ));
                }
                let diff = (ptr.off as i64).checked_sub(smin_val);
                if let Some(diff) = diff.filter(|v| known && *v == *v as i32 as i64) {
                    dst.off = diff as i32;
                    clear_pkt_end_mark(&mut dst, smin_val);
                } else {
                    dst.s = super::scalar_ops::ptr_sub(ptr.s, off_reg.s);
                    if ptr.ty.is_pkt_pointer() {
                        dst.id = self.new_id();
                        if smin_val < 0 {
                            dst.range = 0;
                        }
                    }
                }
            }
            BPF_AND | BPF_OR | BPF_XOR => {
                return self.eacces(format!(
                    "R{} bitwise operator {} on pointer prohibited",
                    insn.dst,
                    alu_string(op)
                ));
            }
            _ => {
                return self.eacces(format!(
                    "R{} pointer arithmetic with {} operator prohibited",
                    insn.dst,
                    alu_string(op)
                ));
            }
        }
        self.check_reg_sane_offset(&dst, &tname)?;
        self.set_reg(d, dst);
        Ok(())
    }

    /// kernel/bpf/verifier.c: check_reg_sane_offset
    fn check_reg_sane_offset(&mut self, reg: &Reg, tname: &str) -> VResult<()> {
        let val = reg.s.var_off.value as i64;
        let smin = reg.s.smin_value;
        if reg.const_value().is_some() && (val >= BPF_MAX_VAR_OFF || val <= -BPF_MAX_VAR_OFF) {
            return self.einval(format!(
                "math between {tname} pointer and {val} is not allowed"
            ));
        }
        let off = reg.off as i64;
        if off >= BPF_MAX_VAR_OFF || off <= -BPF_MAX_VAR_OFF {
            return self.einval(format!("{tname} pointer offset {off} is not allowed"));
        }
        if smin == i64::MIN {
            return self.einval(format!(
                "math between {tname} pointer and register with unbounded min value is not allowed"
            ));
        }
        if smin >= BPF_MAX_VAR_OFF || smin <= -BPF_MAX_VAR_OFF {
            return self.einval(format!(
                "value {smin} makes {tname} pointer be out of bounds"
            ));
        }
        Ok(())
    }
}

/// A packet pointer known to be at or beyond data_end (mark_pkt_end's negative
/// range) moved by a constant is no longer known to be there: its range is
/// cleared (the kernel selftests verifier_direct_packet_access
/// pkt_range_clear_after_add/_sub refuse the access that follows).
fn clear_pkt_end_mark(dst: &mut Reg, moved_by: i64) {
    if dst.ty.is_pkt_pointer() && dst.range < 0 && moved_by != 0 {
        dst.range = 0;
    }
}
