//! The ALU transfer functions: kernel/bpf/verifier.c adjust_scalar_min_max_vals
//! and its scalar{,32}_min_max_* helpers, as the running 6.18 kernel has them.

use super::{AluOp, Scalar};
use crate::verifier::tnum::{sar32, sar64, shl64, shr64};

/// `is_safe_to_compute_dst_reg_range`: whether the kernel computes bounds for
/// `op` with this source at all. Shifts need a constant amount below the width
/// (the 64-bit umax is compared, also for 32-bit shifts); division and modulo
/// are never tracked.
fn is_safe_to_compute(op: AluOp, src: &Scalar, alu32: bool) -> bool {
    let bitness: u64 = if alu32 { 32 } else { 64 };
    let src_is_const = if alu32 {
        src.var_off.subreg_is_const()
            && src.s32_min_value == src.s32_max_value
            && src.u32_min_value == src.u32_max_value
    } else {
        src.var_off.is_const()
            && src.smin_value == src.smax_value
            && src.umin_value == src.umax_value
    };
    match op {
        AluOp::Add | AluOp::Sub | AluOp::Neg | AluOp::And | AluOp::Xor | AluOp::Or => true,
        AluOp::Mul | AluOp::End { .. } => true,
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => src_is_const && src.umax_value < bitness,
        AluOp::Div | AluOp::Mod | AluOp::Mov => false,
    }
}

/// The s32 bounds of a u32 range that does not cross the sign boundary, else
/// unbounded (the tail of scalar32_min_max_{and,or,xor}).
fn s32_from_u32(dst: &mut Scalar) {
    if (dst.u32_min_value as i32) <= (dst.u32_max_value as i32) {
        dst.s32_min_value = dst.u32_min_value as i32;
        dst.s32_max_value = dst.u32_max_value as i32;
    } else {
        dst.s32_min_value = i32::MIN;
        dst.s32_max_value = i32::MAX;
    }
}

/// The 64-bit counterpart of [`s32_from_u32`].
fn s64_from_u64(dst: &mut Scalar) {
    if (dst.umin_value as i64) <= (dst.umax_value as i64) {
        dst.smin_value = dst.umin_value as i64;
        dst.smax_value = dst.umax_value as i64;
    } else {
        dst.smin_value = i64::MIN;
        dst.smax_value = i64::MAX;
    }
}

impl Scalar {
    /// `maybe_fork_scalars`, as the running kernel calls it before BPF_AND and
    /// BPF_OR with a constant source: a destination in [-1, 0] (64-bit, else
    /// its low 32 bits) is split. Returns `(go_on, pushed)`: the walk goes on
    /// with the destination `go_on` (-1) and pushes a state that re-runs the
    /// same instruction with the destination `pushed` (0), as push_stack(env,
    /// env->insn_idx, ...) does. (The `(s32)x >> 31 & K` idiom LLVM emits;
    /// observed through `kernel_oracle`.)
    pub fn maybe_fork(op: AluOp, dst: &Scalar, src: &Scalar) -> Option<(Scalar, Scalar)> {
        if !matches!(op, AluOp::And | AluOp::Or) || !src.var_off.is_const() {
            return None;
        }
        let alu32 = if dst.smin_value == -1 && dst.smax_value == 0 {
            false
        } else if dst.s32_min_value == -1 && dst.s32_max_value == 0 {
            true
        } else {
            return None;
        };
        let (mut go_on, mut pushed) = (*dst, *dst);
        if alu32 {
            pushed.mark_known32(0);
            go_on.mark_known32(u32::MAX);
        } else {
            pushed.mark_known(0);
            go_on.mark_known(u64::MAX);
        }
        Some((go_on, pushed))
    }

    /// `adjust_scalar_min_max_vals` for scalar `dst` and `src` (for BPF_K the
    /// caller passes `Scalar::constant(imm as i64 as u64)`, as the kernel's
    /// `__mark_reg_known(&off_reg, insn->imm)`), and the register moves
    /// (check_alu_op's BPF_MOV for scalars, without sign extension). `Neg` ignores
    /// `src`; `End` takes the width (the imm: 16, 32 or 64) as a constant `src`
    /// and `alu32` false for the BPF_ALU64 bswap. Where the kernel gives up
    /// (division, modulo, shifts by a non-constant or by the width or more) the
    /// result is unknown in all 64 bits, also for a 32-bit operation.
    pub fn alu(op: AluOp, dst: &Scalar, src: &Scalar, alu32: bool) -> Scalar {
        let mut d = *dst;
        if op == AluOp::Mov {
            // check_alu_op: copy_register_state, then for 32-bit zext_32_to_64 and
            // reg_bounds_sync.
            d = *src;
            if alu32 {
                d.zext_32_to_64();
                d.sync();
            }
            return d;
        }
        if !is_safe_to_compute(op, src, alu32) {
            return Scalar::unknown();
        }
        match op {
            AluOp::Add => {
                d.min_max_add32(src);
                d.min_max_add(src);
                d.var_off = d.var_off.add(src.var_off);
            }
            AluOp::Sub => {
                d.min_max_sub32(src);
                d.min_max_sub(src);
                d.var_off = d.var_off.sub(src.var_off);
            }
            AluOp::Neg => {
                let old = *dst;
                d = Scalar::constant(0);
                d.min_max_sub32(&old);
                d.min_max_sub(&old);
                d.var_off = old.var_off.neg();
            }
            AluOp::Mul => {
                d.var_off = d.var_off.mul(src.var_off);
                d.min_max_mul32(src);
                d.min_max_mul(src);
            }
            AluOp::And => {
                d.var_off = d.var_off.and(src.var_off);
                d.min_max_and32(src);
                d.min_max_and(src);
            }
            AluOp::Or => {
                d.var_off = d.var_off.or(src.var_off);
                d.min_max_or32(src);
                d.min_max_or(src);
            }
            AluOp::Xor => {
                d.var_off = d.var_off.xor(src.var_off);
                d.min_max_xor32(src);
                d.min_max_xor(src);
            }
            AluOp::Lsh if alu32 => d.min_max_lsh32(src),
            AluOp::Lsh => d.min_max_lsh(src),
            AluOp::Rsh if alu32 => d.min_max_rsh32(src),
            AluOp::Rsh => d.min_max_rsh(src),
            AluOp::Arsh if alu32 => d.min_max_arsh32(src),
            AluOp::Arsh => d.min_max_arsh(src),
            AluOp::End { to_be } => d.byte_swap(to_be, !alu32, src.var_off.value),
            AluOp::Div | AluOp::Mod | AluOp::Mov => {}
        }
        // ALU32 ops are zero extended into the 64-bit register; BPF_END truncates
        // itself (le64 is a BPF_ALU instruction that keeps all 64 bits).
        if alu32 && !matches!(op, AluOp::End { .. }) {
            d.zext_32_to_64();
        }
        d.sync();
        d
    }

    /// `scalar_byte_swap`: a byte swap permutes the bits, so the tnum follows
    /// and the bounds are re-derived from it; `le`/`be` of 16 or 32 bits
    /// truncate. On a little-endian host `le` swaps nothing, `be` and the
    /// BPF_ALU64 `bswap` swap.
    fn byte_swap(&mut self, to_be: bool, alu64: bool, bits: u64) {
        if alu64 || to_be {
            self.var_off = match bits {
                16 => self.var_off.bswap16(),
                32 => self.var_off.bswap32(),
                _ => self.var_off.bswap64(),
            };
            self.mark_unbounded();
        }
        if bits == 16 || bits == 32 {
            self.coerce_to_size((bits / 8) as u8);
        }
    }

    /// `scalar32_min_max_add`: the signed bounds are lost on any overflow; the
    /// unsigned ones stay (wrapped) when both ends overflow alike.
    fn min_max_add32(&mut self, src: &Scalar) {
        let smin = self.s32_min_value.checked_add(src.s32_min_value);
        let smax = self.s32_max_value.checked_add(src.s32_max_value);
        match (smin, smax) {
            (Some(lo), Some(hi)) => (self.s32_min_value, self.s32_max_value) = (lo, hi),
            _ => (self.s32_min_value, self.s32_max_value) = (i32::MIN, i32::MAX),
        }
        let (umin, min_overflow) = self.u32_min_value.overflowing_add(src.u32_min_value);
        let (umax, max_overflow) = self.u32_max_value.overflowing_add(src.u32_max_value);
        (self.u32_min_value, self.u32_max_value) = if !min_overflow && max_overflow {
            (0, u32::MAX)
        } else {
            (umin, umax)
        };
    }

    /// `scalar_min_max_add`.
    fn min_max_add(&mut self, src: &Scalar) {
        let smin = self.smin_value.checked_add(src.smin_value);
        let smax = self.smax_value.checked_add(src.smax_value);
        match (smin, smax) {
            (Some(lo), Some(hi)) => (self.smin_value, self.smax_value) = (lo, hi),
            _ => (self.smin_value, self.smax_value) = (i64::MIN, i64::MAX),
        }
        let (umin, min_overflow) = self.umin_value.overflowing_add(src.umin_value);
        let (umax, max_overflow) = self.umax_value.overflowing_add(src.umax_value);
        (self.umin_value, self.umax_value) = if !min_overflow && max_overflow {
            (0, u64::MAX)
        } else {
            (umin, umax)
        };
    }

    /// `scalar32_min_max_sub`: the unsigned bounds stay (wrapped) when every
    /// difference underflows or none does.
    fn min_max_sub32(&mut self, src: &Scalar) {
        let smin = self.s32_min_value.checked_sub(src.s32_max_value);
        let smax = self.s32_max_value.checked_sub(src.s32_min_value);
        match (smin, smax) {
            (Some(lo), Some(hi)) => (self.s32_min_value, self.s32_max_value) = (lo, hi),
            _ => (self.s32_min_value, self.s32_max_value) = (i32::MIN, i32::MAX),
        }
        let (umin, min_underflow) = self.u32_min_value.overflowing_sub(src.u32_max_value);
        let (umax, max_underflow) = self.u32_max_value.overflowing_sub(src.u32_min_value);
        (self.u32_min_value, self.u32_max_value) = if min_underflow && !max_underflow {
            (0, u32::MAX)
        } else {
            (umin, umax)
        };
    }

    /// `scalar_min_max_sub`.
    fn min_max_sub(&mut self, src: &Scalar) {
        let smin = self.smin_value.checked_sub(src.smax_value);
        let smax = self.smax_value.checked_sub(src.smin_value);
        match (smin, smax) {
            (Some(lo), Some(hi)) => (self.smin_value, self.smax_value) = (lo, hi),
            _ => (self.smin_value, self.smax_value) = (i64::MIN, i64::MAX),
        }
        let (umin, min_underflow) = self.umin_value.overflowing_sub(src.umax_value);
        let (umax, max_underflow) = self.umax_value.overflowing_sub(src.umin_value);
        (self.umin_value, self.umax_value) = if min_underflow && !max_underflow {
            (0, u64::MAX)
        } else {
            (umin, umax)
        };
    }

    /// `scalar32_min_max_mul`: unsigned from the products of the ends; signed from
    /// the four corner products; unbounded on any overflow.
    fn min_max_mul32(&mut self, src: &Scalar) {
        match (
            self.u32_max_value.checked_mul(src.u32_max_value),
            self.u32_min_value.checked_mul(src.u32_min_value),
        ) {
            (Some(hi), Some(lo)) => (self.u32_min_value, self.u32_max_value) = (lo, hi),
            _ => (self.u32_min_value, self.u32_max_value) = (0, u32::MAX),
        }
        let corners = [
            self.s32_min_value.checked_mul(src.s32_min_value),
            self.s32_min_value.checked_mul(src.s32_max_value),
            self.s32_max_value.checked_mul(src.s32_min_value),
            self.s32_max_value.checked_mul(src.s32_max_value),
        ];
        match corners {
            [Some(a), Some(b), Some(c), Some(d)] => {
                self.s32_min_value = a.min(b).min(c).min(d);
                self.s32_max_value = a.max(b).max(c).max(d);
            }
            _ => (self.s32_min_value, self.s32_max_value) = (i32::MIN, i32::MAX),
        }
    }

    /// `scalar_min_max_mul`.
    fn min_max_mul(&mut self, src: &Scalar) {
        match (
            self.umax_value.checked_mul(src.umax_value),
            self.umin_value.checked_mul(src.umin_value),
        ) {
            (Some(hi), Some(lo)) => (self.umin_value, self.umax_value) = (lo, hi),
            _ => (self.umin_value, self.umax_value) = (0, u64::MAX),
        }
        let corners = [
            self.smin_value.checked_mul(src.smin_value),
            self.smin_value.checked_mul(src.smax_value),
            self.smax_value.checked_mul(src.smin_value),
            self.smax_value.checked_mul(src.smax_value),
        ];
        match corners {
            [Some(a), Some(b), Some(c), Some(d)] => {
                self.smin_value = a.min(b).min(c).min(d);
                self.smax_value = a.max(b).max(c).max(d);
            }
            _ => (self.smin_value, self.smax_value) = (i64::MIN, i64::MAX),
        }
    }

    /// `scalar32_min_max_and`: the minimum from var_off (bitwise), the maximum the
    /// smaller of the operands' maxima. Runs after var_off holds the result.
    fn min_max_and32(&mut self, src: &Scalar) {
        let var32 = self.var_off.subreg();
        if src.var_off.subreg_is_const() && var32.is_const() {
            self.mark_known32(var32.value as u32);
            return;
        }
        self.u32_min_value = var32.value as u32;
        self.u32_max_value = self.u32_max_value.min(src.u32_max_value);
        s32_from_u32(self);
    }

    /// `scalar_min_max_and`.
    fn min_max_and(&mut self, src: &Scalar) {
        if src.var_off.is_const() && self.var_off.is_const() {
            let v = self.var_off.value;
            self.mark_known(v);
            return;
        }
        self.umin_value = self.var_off.value;
        self.umax_value = self.umax_value.min(src.umax_value);
        s64_from_u64(self);
        // We may learn something more from the var_off.
        self.update_bounds();
    }

    /// `scalar32_min_max_or`: the maximum from var_off, the minimum the larger of
    /// the operands' minima.
    fn min_max_or32(&mut self, src: &Scalar) {
        let var32 = self.var_off.subreg();
        if src.var_off.subreg_is_const() && var32.is_const() {
            self.mark_known32(var32.value as u32);
            return;
        }
        self.u32_min_value = self.u32_min_value.max(src.u32_min_value);
        self.u32_max_value = (var32.value | var32.mask) as u32;
        s32_from_u32(self);
    }

    /// `scalar_min_max_or`.
    fn min_max_or(&mut self, src: &Scalar) {
        if src.var_off.is_const() && self.var_off.is_const() {
            let v = self.var_off.value;
            self.mark_known(v);
            return;
        }
        self.umin_value = self.umin_value.max(src.umin_value);
        self.umax_value = self.var_off.value | self.var_off.mask;
        s64_from_u64(self);
        self.update_bounds();
    }

    /// `scalar32_min_max_xor`: both ends from var_off.
    fn min_max_xor32(&mut self, src: &Scalar) {
        let var32 = self.var_off.subreg();
        if src.var_off.subreg_is_const() && var32.is_const() {
            self.mark_known32(var32.value as u32);
            return;
        }
        self.u32_min_value = var32.value as u32;
        self.u32_max_value = (var32.value | var32.mask) as u32;
        s32_from_u32(self);
    }

    /// `scalar_min_max_xor`.
    fn min_max_xor(&mut self, src: &Scalar) {
        if src.var_off.is_const() && self.var_off.is_const() {
            let v = self.var_off.value;
            self.mark_known(v);
            return;
        }
        self.umin_value = self.var_off.value;
        self.umax_value = self.var_off.value | self.var_off.mask;
        s64_from_u64(self);
        self.update_bounds();
    }

    /// `__scalar32_min_max_lsh`: the sign is lost; the unsigned bounds survive
    /// when no set bit can be shifted out.
    fn lsh32_bounds(&mut self, umin_val: u64, umax_val: u64) {
        self.s32_min_value = i32::MIN;
        self.s32_max_value = i32::MAX;
        if umax_val > 31 || u64::from(self.u32_max_value) > shl64(1, 31 - umax_val) {
            self.u32_min_value = 0;
            self.u32_max_value = u32::MAX;
        } else {
            self.u32_min_value = shl64(u64::from(self.u32_min_value), umin_val) as u32;
            self.u32_max_value = shl64(u64::from(self.u32_max_value), umax_val) as u32;
        }
    }

    /// `scalar32_min_max_lsh`.
    fn min_max_lsh32(&mut self, src: &Scalar) {
        let umin_val = u64::from(src.u32_min_value);
        let umax_val = u64::from(src.u32_max_value);
        // A u32 ALU operation zero-extends the upper bits.
        let subreg = self.var_off.subreg();
        self.lsh32_bounds(umin_val, umax_val);
        self.var_off = subreg.lshift(umin_val as u8).subreg();
        self.mark64_unbounded();
        self.update_bounds32();
    }

    /// `__scalar64_min_max_lsh`: `<< 32` keeps the signed bounds (the `<<32
    /// s>>32` sign-extension idiom; an s32 range shifted by 32 keeps its sign).
    /// The running kernel has the later form without the non-negative
    /// condition (observed: s32 [-65535, 0] << 32 gives
    /// `smin=0xffff000100000000,smax=0`).
    fn lsh64_bounds(&mut self, umin_val: u64, umax_val: u64) {
        if umin_val == 32 && umax_val == 32 {
            self.smax_value = ((i64::from(self.s32_max_value) as u64) << 32) as i64;
            self.smin_value = ((i64::from(self.s32_min_value) as u64) << 32) as i64;
        } else {
            self.smax_value = i64::MAX;
            self.smin_value = i64::MIN;
        }
        if umax_val > 63 || self.umax_value > shl64(1, 63 - umax_val) {
            self.umin_value = 0;
            self.umax_value = u64::MAX;
        } else {
            self.umin_value = shl64(self.umin_value, umin_val);
            self.umax_value = shl64(self.umax_value, umax_val);
        }
    }

    /// `scalar_min_max_lsh`.
    fn min_max_lsh(&mut self, src: &Scalar) {
        let (umin_val, umax_val) = (src.umin_value, src.umax_value);
        // The 64-bit part uses the unshifted 32-bit bounds, so it goes first.
        self.lsh64_bounds(umin_val, umax_val);
        self.lsh32_bounds(umin_val, umax_val);
        self.var_off = self.var_off.lshift(umin_val.min(64) as u8);
        self.update_bounds();
    }

    /// `scalar32_min_max_rsh`: the signed bounds are rebuilt from the unsigned
    /// ones and var_off.
    fn min_max_rsh32(&mut self, src: &Scalar) {
        let subreg = self.var_off.subreg();
        let umin_val = u64::from(src.u32_min_value);
        let umax_val = u64::from(src.u32_max_value);
        self.s32_min_value = i32::MIN;
        self.s32_max_value = i32::MAX;
        self.var_off = subreg.rshift(umin_val.min(64) as u8);
        self.u32_min_value = shr64(u64::from(self.u32_min_value), umax_val) as u32;
        self.u32_max_value = shr64(u64::from(self.u32_max_value), umin_val) as u32;
        self.mark64_unbounded();
        self.update_bounds32();
    }

    /// `scalar_min_max_rsh`.
    fn min_max_rsh(&mut self, src: &Scalar) {
        let (umin_val, umax_val) = (src.umin_value, src.umax_value);
        self.smin_value = i64::MIN;
        self.smax_value = i64::MAX;
        self.var_off = self.var_off.rshift(umin_val.min(64) as u8);
        self.umin_value = shr64(self.umin_value, umax_val);
        self.umax_value = shr64(self.umax_value, umin_val);
        // Bits shifted in from above make the 32-bit bounds hard: take them from
        // var_off.
        self.mark32_unbounded();
        self.update_bounds();
    }

    /// `scalar32_min_max_arsh` (the amount is a constant here).
    fn min_max_arsh32(&mut self, src: &Scalar) {
        let umin_val = u64::from(src.u32_min_value);
        self.s32_min_value = sar32(self.s32_min_value, umin_val);
        self.s32_max_value = sar32(self.s32_max_value, umin_val);
        self.var_off = self.var_off.subreg().arshift(umin_val.min(63) as u8, 32);
        // The unsigned bounds come back from var_off.
        self.u32_min_value = 0;
        self.u32_max_value = u32::MAX;
        self.mark64_unbounded();
        self.update_bounds32();
    }

    /// `scalar_min_max_arsh`.
    fn min_max_arsh(&mut self, src: &Scalar) {
        let umin_val = src.umin_value;
        self.smin_value = sar64(self.smin_value, umin_val);
        self.smax_value = sar64(self.smax_value, umin_val);
        self.var_off = self.var_off.arshift(umin_val.min(63) as u8, 64);
        self.umin_value = 0;
        self.umax_value = u64::MAX;
        self.mark32_unbounded();
        self.update_bounds();
    }
}
