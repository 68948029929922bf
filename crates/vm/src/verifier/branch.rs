//! Conditional jumps (kernel/bpf/verifier.c: check_cond_jmp_op): decide a branch
//! when the values allow (is_branch_taken), otherwise explore both with each side's
//! registers refined (reg_set_min_max), packet ranges learnt from comparisons with
//! data_end (try_match_pkt_pointers, find_good_pkt_pointers) and maybe-null
//! pointers resolved (mark_ptr_or_null_regs).

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::do_check::{target, Next, RegArg};
use super::env::{Env, VResult};
use super::scalar_ops;
use super::state::{Reg, RegType, VerifierState};

/// `MAX_PACKET_OFF`.
const MAX_PACKET_OFF: u64 = 0xffff;
/// Packet ranges below zero: the pointer is at data_end (`AT_PKT_END`) or beyond it.
const AT_PKT_END: i32 = -1;
const BEYOND_PKT_END: i32 = -2;

/// `flip_opcode`: the comparison with its operands swapped.
fn flip_opcode(op: u8) -> u8 {
    match op {
        BPF_JGT => BPF_JLT,
        BPF_JLT => BPF_JGT,
        BPF_JGE => BPF_JLE,
        BPF_JLE => BPF_JGE,
        BPF_JSGT => BPF_JSLT,
        BPF_JSLT => BPF_JSGT,
        BPF_JSGE => BPF_JSLE,
        BPF_JSLE => BPF_JSGE,
        o => o,
    }
}

/// `reg_not_null`.
fn reg_not_null(r: &Reg) -> bool {
    !r.maybe_null
        && matches!(
            r.ty,
            RegType::Socket
                | RegType::TcpSock
                | RegType::MapValue
                | RegType::MapKey
                | RegType::SockCommon
                | RegType::Mem
                | RegType::ConstPtrToMap
        )
}

fn is_pkt_any(r: &Reg) -> bool {
    matches!(
        r.ty,
        RegType::Packet | RegType::PacketMeta | RegType::PacketEnd
    )
}

/// `is_pkt_ptr_branch_taken`.
fn pkt_ptr_branch_taken(dst: &Reg, src: &Reg, op: u8) -> Option<bool> {
    let (pkt, op) = if src.ty == RegType::PacketEnd {
        (dst, op)
    } else if dst.ty == RegType::PacketEnd {
        (src, flip_opcode(op))
    } else {
        return None;
    };
    if pkt.range >= 0 {
        return None;
    }
    match op {
        BPF_JLE | BPF_JGT if pkt.range == BEYOND_PKT_END => Some(op == BPF_JGT),
        BPF_JLT | BPF_JGE if pkt.range == BEYOND_PKT_END || pkt.range == AT_PKT_END => {
            Some(op == BPF_JGE)
        }
        _ => None,
    }
}

/// kernel/bpf/verifier.c: is_branch_taken
fn is_branch_taken(dst: &Reg, src: &Reg, op: u8, jmp32: bool) -> Option<bool> {
    if is_pkt_any(dst) && is_pkt_any(src) && !jmp32 {
        return pkt_ptr_branch_taken(dst, src, op);
    }
    if dst.ty.is_pointer() || src.ty.is_pointer() {
        let (ptr, k, op) = if src.is_scalar() {
            (dst, src, op)
        } else {
            (src, dst, flip_opcode(op))
        };
        let kv = if jmp32 {
            scalar_ops::const_value32(k.s)
        } else {
            k.const_value()
        };
        if !k.is_scalar() || kv != Some(0) || !reg_not_null(ptr) {
            return None;
        }
        return match op {
            BPF_JEQ => Some(false),
            BPF_JNE => Some(true),
            _ => None,
        };
    }
    scalar_ops::branch_taken(dst.s, src.s, op, jmp32)
}

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: check_cond_jmp_op
    pub fn check_cond_jmp_op(&mut self, insn: Insn) -> VResult<Next> {
        let idx = self.insn_idx;
        let op = insn.op();
        let jmp32 = insn.class() == BPF_JMP32;
        self.check_reg_arg(insn.dst, RegArg::SrcOp)?;
        let d = insn.dst as usize;
        let dst = self.reg(d);
        let x = insn.source() == BPF_X;
        let src = if x {
            self.check_reg_arg(insn.src, RegArg::SrcOp)?;
            self.reg(insn.src as usize)
        } else if jmp32 {
            Reg::known(insn.imm as u32 as u64)
        } else {
            Reg::known(insn.imm as i64 as u64)
        };
        let tgt = target(idx, insn.off as i64);
        // The scalars sharing an id with the compared ones are refined with
        // them: their precision goes together (collect_linked_regs).
        let ids: Vec<u32> = [(dst, true), (src, x)]
            .iter()
            .filter(|(r, used)| *used && r.is_scalar() && r.id != 0)
            .map(|(r, _)| r.id)
            .collect();
        if !ids.is_empty() {
            let linked = self.collect_linked_regs(&ids);
            if linked.len() > 1 {
                self.push_jmp_history(None, linked);
            }
        }
        let same_reg = x && insn.src == insn.dst && dst.is_scalar();
        let taken = if same_reg {
            scalar_ops::branch_taken_same_reg(dst.s, op, jmp32)
        } else {
            is_branch_taken(&dst, &src, op, jmp32)
        };
        if taken.is_some() {
            // The outcome rests on the scalars' values.
            if dst.is_scalar() {
                self.mark_chain_precision(insn.dst);
            }
            if x && src.is_scalar() {
                self.mark_chain_precision(insn.src);
            }
        }
        match taken {
            Some(true) => return Ok(Next::Goto(tgt)),
            Some(false) => return Ok(Next::Step(1)),
            None => {}
        }
        let mut other = self.cur.clone();
        if dst.is_scalar() && src.is_scalar() && !same_reg {
            let (fd, fs) = scalar_ops::refine(dst.s, src.s, op, jmp32, false);
            let (td, ts) = scalar_ops::refine(dst.s, src.s, op, jmp32, true);
            set_scalar(&mut self.cur, d, fd);
            set_scalar(&mut other, d, td);
            if x {
                let s = insn.src as usize;
                set_scalar(&mut self.cur, s, fs);
                set_scalar(&mut other, s, ts);
            }
        }
        let null_check =
            !jmp32 && !x && insn.imm == 0 && (op == BPF_JEQ || op == BPF_JNE) && dst.maybe_null;
        if null_check {
            mark_ptr_or_null_regs(&mut self.cur, d, op == BPF_JNE);
            mark_ptr_or_null_regs(&mut other, d, op == BPF_JEQ);
        } else if !(x && self.try_match_pkt_pointers(insn, &dst, &src, &mut other))
            && dst.ty.is_pointer()
            && !self.opts.privileged
        {
            return self.eacces(format!("R{} pointer comparison prohibited", insn.dst));
        }
        self.push_stack(other, tgt)?;
        Ok(Next::Step(1))
    }

    /// kernel/bpf/verifier.c: try_match_pkt_pointers. `self.cur` is the
    /// fall-through branch, `other` the jump target.
    fn try_match_pkt_pointers(
        &mut self,
        insn: Insn,
        dst: &Reg,
        src: &Reg,
        other: &mut VerifierState,
    ) -> bool {
        if insn.class() == BPF_JMP32 {
            return false;
        }
        let (d, s) = (insn.dst as usize, insn.src as usize);
        let dst_data = (dst.ty == RegType::Packet && src.ty == RegType::PacketEnd)
            || (dst.ty == RegType::PacketMeta && is_init_pkt(src));
        let src_data = (dst.ty == RegType::PacketEnd && src.ty == RegType::Packet)
            || (is_init_pkt(dst) && src.ty == RegType::PacketMeta);
        let this = &mut self.cur;
        match (insn.op(), dst_data, src_data) {
            (BPF_JGT, true, _) => {
                find_good_pkt_pointers(this, dst, false);
                mark_pkt_end(other, d, true);
            }
            (BPF_JGT, false, true) => {
                find_good_pkt_pointers(other, src, true);
                mark_pkt_end(this, s, false);
            }
            (BPF_JLT, true, _) => {
                find_good_pkt_pointers(other, dst, true);
                mark_pkt_end(this, d, false);
            }
            (BPF_JLT, false, true) => {
                find_good_pkt_pointers(this, src, false);
                mark_pkt_end(other, s, true);
            }
            (BPF_JGE, true, _) => {
                find_good_pkt_pointers(this, dst, true);
                mark_pkt_end(other, d, false);
            }
            (BPF_JGE, false, true) => {
                find_good_pkt_pointers(other, src, false);
                mark_pkt_end(this, s, true);
            }
            (BPF_JLE, true, _) => {
                find_good_pkt_pointers(other, dst, false);
                mark_pkt_end(this, d, true);
            }
            (BPF_JLE, false, true) => {
                find_good_pkt_pointers(this, src, true);
                mark_pkt_end(other, s, false);
            }
            _ => return false,
        }
        true
    }
}

/// `reg_is_init_pkt_pointer(reg, PTR_TO_PACKET)`.
fn is_init_pkt(r: &Reg) -> bool {
    r.ty == RegType::Packet && r.off == 0 && r.const_value() == Some(0)
}

/// A refined scalar, and every register linked to it by id (sync_linked_regs).
fn set_scalar(st: &mut VerifierState, regno: usize, s: super::scalar::Scalar) {
    let Some(r) = st.cur().regs.get(regno).copied() else {
        return;
    };
    if !r.is_scalar() {
        return;
    }
    let id = r.id;
    if let Some(slot) = st.cur_mut().regs.get_mut(regno) {
        slot.s = s;
    }
    if id == 0 {
        return;
    }
    st.for_each_reg(|reg| {
        if reg.is_scalar() && reg.id == id {
            reg.s = s;
        }
    });
}

/// kernel/bpf/verifier.c: find_good_pkt_pointers
fn find_good_pkt_pointers(st: &mut VerifierState, dst: &Reg, range_right_open: bool) {
    if dst.off < 0 || (dst.off == 0 && range_right_open) {
        return;
    }
    let umax = dst.s.umax_value;
    if umax > MAX_PACKET_OFF || umax.saturating_add(dst.off as u64) > MAX_PACKET_OFF {
        return;
    }
    let new_range = dst.off + i32::from(range_right_open);
    let (ty, id) = (dst.ty, dst.id);
    st.for_each_reg(|r| {
        if r.ty == ty && r.id == id {
            r.range = r.range.max(new_range);
        }
    });
}

/// kernel/bpf/verifier.c: mark_pkt_end
fn mark_pkt_end(st: &mut VerifierState, regno: usize, range_open: bool) {
    if let Some(r) = st.cur_mut().regs.get_mut(regno) {
        if r.ty == RegType::Packet {
            r.range = if range_open {
                BEYOND_PKT_END
            } else {
                AT_PKT_END
            };
        }
    }
}

/// kernel/bpf/verifier.c: mark_ptr_or_null_regs
pub fn mark_ptr_or_null_regs(st: &mut VerifierState, regno: usize, is_null: bool) {
    let Some(r) = st.cur().regs.get(regno).copied() else {
        return;
    };
    let (id, ref_obj_id) = (r.id, r.ref_obj_id);
    if id == 0 {
        return;
    }
    if ref_obj_id != 0 && ref_obj_id == id && is_null {
        st.refs.retain(|rs| rs.id != id);
    }
    st.for_each_reg(|reg| {
        if reg.maybe_null && reg.id == id {
            mark_ptr_or_null_reg(reg, is_null);
        }
    });
}

/// kernel/bpf/verifier.c: mark_ptr_or_null_reg, mark_ptr_not_null_reg
fn mark_ptr_or_null_reg(reg: &mut Reg, is_null: bool) {
    if is_null {
        *reg = Reg::known(0);
        return;
    }
    // A map-in-map lookup already carries CONST_PTR_TO_MAP of the inner map
    // (set at the call), so clearing the flag is all mark_ptr_not_null_reg does.
    reg.maybe_null = false;
    // Map values keep their id: bpf_spin_lock pairs lock and unlock by it.
    if reg.ty != RegType::MapValue {
        reg.id = 0;
    }
}
