//! Scalar value tracking: the numeric part of the kernel's `struct bpf_reg_state`
//! (var_off and the signed/unsigned 64/32-bit bounds) and what the verifier does
//! with it (kernel/bpf/verifier.c): bounds synchronisation, ALU transfer
//! functions, branch prediction and refinement, pruning comparison, and the log
//! form (kernel/bpf/log.c). Pointers keep their variable offset in a `Scalar` too,
//! so nothing here knows about register types.
//!
//! The model is the running kernel (6.18.44, the 6.18 release plus what its
//! stable series took from later releases), checked against its own verifier
//! log (`kernel_oracle`). Where it differs from the 6.18 release's source the
//! comment says so: byte swaps tracked, tnum_step in __update_reg64_bounds,
//! `<< 32` of a negative s32, sign extension from the s32 range,
//! maybe_fork_scalars, the s32/u32 sign-crossing deduction, and registers
//! compared with themselves.

use skiff_isa::opcode as op;

use super::tnum::{shl64, shr64, Tnum};

mod branch;

pub use branch::{
    is_branch_taken, is_branch_taken_same_reg, refine, refine_cond_op, reg_set_min_max,
    reg_set_min_max_same_reg, JmpOp,
};
pub use log::{fmt_snum, fmt_unum};

/// The scalar part of `struct bpf_reg_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scalar {
    pub var_off: Tnum,
    pub smin_value: i64,
    pub smax_value: i64,
    pub umin_value: u64,
    pub umax_value: u64,
    pub s32_min_value: i32,
    pub s32_max_value: i32,
    pub u32_min_value: u32,
    pub u32_max_value: u32,
}

/// The ALU operations (`BPF_OP` of BPF_ALU/BPF_ALU64), by the kernel's names.
/// Signed division and modulo (cpu v4: `off` 1) share `Div`/`Mod`; sign-extending
/// moves (`off` 8/16/32) go through [`Scalar::coerce_to_size_sx`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// BPF_ADD
    Add,
    /// BPF_SUB
    Sub,
    /// BPF_MUL
    Mul,
    /// BPF_DIV (and SDIV)
    Div,
    /// BPF_OR
    Or,
    /// BPF_AND
    And,
    /// BPF_LSH
    Lsh,
    /// BPF_RSH
    Rsh,
    /// BPF_NEG
    Neg,
    /// BPF_MOD (and SMOD)
    Mod,
    /// BPF_XOR
    Xor,
    /// BPF_MOV
    Mov,
    /// BPF_ARSH
    Arsh,
    /// BPF_END: `to_be` is the BPF_TO_BE source bit (`be16/32/64` in BPF_ALU);
    /// clear, it is `le16/32/64` in BPF_ALU and `bswap16/32/64` in BPF_ALU64.
    /// The width (16, 32, 64) is the instruction's imm, passed as the source.
    End { to_be: bool },
}

impl AluOp {
    /// From an ALU opcode (its `BPF_OP` bits, and for BPF_END the source bit);
    /// None for 0xe0 and 0xf0.
    pub fn from_code(code: u8) -> Option<AluOp> {
        Some(match op::bpf_op(code) {
            op::BPF_ADD => AluOp::Add,
            op::BPF_SUB => AluOp::Sub,
            op::BPF_MUL => AluOp::Mul,
            op::BPF_DIV => AluOp::Div,
            op::BPF_OR => AluOp::Or,
            op::BPF_AND => AluOp::And,
            op::BPF_LSH => AluOp::Lsh,
            op::BPF_RSH => AluOp::Rsh,
            op::BPF_NEG => AluOp::Neg,
            op::BPF_MOD => AluOp::Mod,
            op::BPF_XOR => AluOp::Xor,
            op::BPF_MOV => AluOp::Mov,
            op::BPF_ARSH => AluOp::Arsh,
            op::BPF_END => AluOp::End {
                to_be: code & op::BPF_X != 0,
            },
            _ => return None,
        })
    }

    /// The `BPF_OP` bits.
    pub fn code(self) -> u8 {
        match self {
            AluOp::Add => op::BPF_ADD,
            AluOp::Sub => op::BPF_SUB,
            AluOp::Mul => op::BPF_MUL,
            AluOp::Div => op::BPF_DIV,
            AluOp::Or => op::BPF_OR,
            AluOp::And => op::BPF_AND,
            AluOp::Lsh => op::BPF_LSH,
            AluOp::Rsh => op::BPF_RSH,
            AluOp::Neg => op::BPF_NEG,
            AluOp::Mod => op::BPF_MOD,
            AluOp::Xor => op::BPF_XOR,
            AluOp::Mov => op::BPF_MOV,
            AluOp::Arsh => op::BPF_ARSH,
            AluOp::End { .. } => op::BPF_END,
        }
    }
}

/// `__reg32_bound_s64`: an s32 bound that is also a valid s64 bound of the
/// zero-extended value.
fn reg32_bound_s64(a: i32) -> bool {
    a >= 0
}

impl Default for Scalar {
    fn default() -> Scalar {
        Scalar::unknown()
    }
}

impl Scalar {
    /// `__mark_reg_unknown`'s numeric part: any value.
    pub const fn unknown() -> Scalar {
        Scalar {
            var_off: Tnum::UNKNOWN,
            smin_value: i64::MIN,
            smax_value: i64::MAX,
            umin_value: 0,
            umax_value: u64::MAX,
            s32_min_value: i32::MIN,
            s32_max_value: i32::MAX,
            u32_min_value: 0,
            u32_max_value: u32::MAX,
        }
    }

    /// `___mark_reg_known`: exactly `imm`.
    pub const fn constant(imm: u64) -> Scalar {
        Scalar {
            var_off: Tnum::const_(imm),
            smin_value: imm as i64,
            smax_value: imm as i64,
            umin_value: imm,
            umax_value: imm,
            s32_min_value: imm as u32 as i32,
            s32_max_value: imm as u32 as i32,
            u32_min_value: imm as u32,
            u32_max_value: imm as u32,
        }
    }

    /// A value known to lie in `[min, max]` (unsigned), e.g. a loaded byte.
    pub fn urange(min: u64, max: u64) -> Scalar {
        let mut s = Scalar::unknown();
        s.umin_value = min;
        s.umax_value = max;
        s.var_off = Tnum::range(min, max);
        s.sync();
        s
    }

    /// The value, when the tnum knows every bit (`tnum_is_const`).
    pub fn const_value(&self) -> Option<u64> {
        self.var_off.is_const().then_some(self.var_off.value)
    }

    /// `tnum_is_const(reg->var_off)`.
    pub fn is_const(&self) -> bool {
        self.var_off.is_const()
    }

    /// `is_reg_const(reg, subreg32)`.
    pub fn is_reg_const(&self, subreg32: bool) -> bool {
        if subreg32 {
            self.var_off.subreg_is_const()
        } else {
            self.var_off.is_const()
        }
    }

    /// `reg_const_value(reg, subreg32)`: the (low 32 bits of the) known value.
    pub fn reg_const_value(&self, subreg32: bool) -> u64 {
        if subreg32 {
            u64::from(self.var_off.value as u32)
        } else {
            self.var_off.value
        }
    }

    /// Whether the concrete `x` is one of the values this scalar stands for.
    pub fn contains(&self, x: u64) -> bool {
        self.var_off.contains(x)
            && (self.umin_value..=self.umax_value).contains(&x)
            && (self.smin_value..=self.smax_value).contains(&(x as i64))
            && (self.u32_min_value..=self.u32_max_value).contains(&(x as u32))
            && (self.s32_min_value..=self.s32_max_value).contains(&(x as u32 as i32))
    }

    /// `__mark_reg_unknown`'s numeric part, in place.
    pub fn mark_unknown(&mut self) {
        *self = Scalar::unknown();
    }

    /// `__mark_reg_known`, in place.
    pub fn mark_known(&mut self, imm: u64) {
        *self = Scalar::constant(imm);
    }

    /// `__mark_reg32_known`: the low 32 bits become `imm`, the 64-bit bounds stay.
    pub fn mark_known32(&mut self, imm: u32) {
        self.var_off = self.var_off.const_subreg(imm);
        self.s32_min_value = imm as i32;
        self.s32_max_value = imm as i32;
        self.u32_min_value = imm;
        self.u32_max_value = imm;
    }

    /// `__mark_reg_unbounded`: every bound open, var_off kept.
    pub fn mark_unbounded(&mut self) {
        self.mark64_unbounded();
        self.mark32_unbounded();
    }

    /// `__mark_reg64_unbounded`.
    pub fn mark64_unbounded(&mut self) {
        self.smin_value = i64::MIN;
        self.smax_value = i64::MAX;
        self.umin_value = 0;
        self.umax_value = u64::MAX;
    }

    /// `__mark_reg32_unbounded`.
    pub fn mark32_unbounded(&mut self) {
        self.s32_min_value = i32::MIN;
        self.s32_max_value = i32::MAX;
        self.u32_min_value = 0;
        self.u32_max_value = u32::MAX;
    }

    /// `__update_reg32_bounds`: what var_off's low 32 bits say about the 32-bit
    /// bounds.
    pub fn update_bounds32(&mut self) {
        let v = self.var_off.subreg();
        let (value, mask) = (v.value as u32, v.mask as u32);
        // min signed is max(sign bit) | min(other bits)
        self.s32_min_value = self
            .s32_min_value
            .max((value | (mask & i32::MIN as u32)) as i32);
        // max signed is min(sign bit) | max(other bits)
        self.s32_max_value = self
            .s32_max_value
            .min((value | (mask & i32::MAX as u32)) as i32);
        self.u32_min_value = self.u32_min_value.max(value);
        self.u32_max_value = self.u32_max_value.min(value | mask);
    }

    /// `__update_reg64_bounds`.
    pub fn update_bounds64(&mut self) {
        let Tnum { value, mask } = self.var_off;
        self.smin_value = self
            .smin_value
            .max((value | (mask & i64::MIN as u64)) as i64);
        self.smax_value = self
            .smax_value
            .min((value | (mask & i64::MAX as u64)) as i64);
        self.umin_value = self.umin_value.max(value);
        self.umax_value = self.umax_value.min(value | mask);
        self.single_u64_tnum_overlap();
    }

    /// The u64 range and the tnum overlapping in a single value make the
    /// register that constant (the running kernel's __update_reg64_bounds,
    /// with tnum_step; observed through `kernel_oracle`: `w8 == 0xc8d4a1fc`
    /// with r8 in [0x1e5381, 0x1001e5380] is that constant).
    fn single_u64_tnum_overlap(&mut self) {
        let t = self.var_off;
        let next = t.step(self.umin_value);
        let umin_in_tnum = t.contains(self.umin_value);
        let tmax = t.value | t.mask;
        if umin_in_tnum && next > self.umax_value {
            // u64:  ---[xxxxxx]-----   tnum: --xx----------x-
            *self = Scalar::constant(self.umin_value);
        } else if !umin_in_tnum && next == tmax {
            // The overlap is the tnum's largest member.
            *self = Scalar::constant(tmax);
        } else if !umin_in_tnum && next <= self.umax_value && t.step(next) > self.umax_value {
            // The overlap is one member strictly inside the range.
            *self = Scalar::constant(next);
        }
    }

    /// `__update_reg_bounds`.
    pub fn update_bounds(&mut self) {
        self.update_bounds32();
        self.update_bounds64();
    }

    /// `__reg32_deduce_bounds`: 32-bit bounds from the 64-bit ones and from each
    /// other.
    fn deduce_bounds32(&mut self) {
        // If the upper 32 bits of the u64 range do not change, the low 32 bits
        // form a range too.
        if self.umin_value >> 32 == self.umax_value >> 32 {
            self.u32_min_value = self.u32_min_value.max(self.umin_value as u32);
            self.u32_max_value = self.u32_max_value.min(self.umax_value as u32);
            if (self.umin_value as i32) <= (self.umax_value as i32) {
                self.s32_min_value = self.s32_min_value.max(self.umin_value as i32);
                self.s32_max_value = self.s32_max_value.min(self.umax_value as i32);
            }
        }
        if self.smin_value >> 32 == self.smax_value >> 32 {
            if (self.smin_value as u32) <= (self.smax_value as u32) {
                self.u32_min_value = self.u32_min_value.max(self.smin_value as u32);
                self.u32_max_value = self.u32_max_value.min(self.smax_value as u32);
            }
            if (self.smin_value as i32) <= (self.smax_value as i32) {
                self.s32_min_value = self.s32_min_value.max(self.smin_value as i32);
                self.s32_max_value = self.s32_max_value.min(self.smax_value as i32);
            }
        }
        // Upper halves two consecutive numbers while the low halves go from
        // negative to positive: still a valid s32 range.
        if ((self.umin_value >> 32) as u32).wrapping_add(1) == (self.umax_value >> 32) as u32
            && (self.umin_value as i32) < 0
            && (self.umax_value as i32) >= 0
        {
            self.s32_min_value = self.s32_min_value.max(self.umin_value as i32);
            self.s32_max_value = self.s32_max_value.min(self.umax_value as i32);
        }
        if ((self.smin_value >> 32) as u32).wrapping_add(1) == (self.smax_value >> 32) as u32
            && (self.smin_value as i32) < 0
            && (self.smax_value as i32) >= 0
        {
            self.s32_min_value = self.s32_min_value.max(self.smin_value as i32);
            self.s32_max_value = self.s32_max_value.min(self.smax_value as i32);
        }
        // A u32 range that does not cross the s32 sign boundary is an s32 range.
        if (self.u32_min_value as i32) <= (self.u32_max_value as i32) {
            self.s32_min_value = self.s32_min_value.max(self.u32_min_value as i32);
            self.s32_max_value = self.s32_max_value.min(self.u32_max_value as i32);
        }
        // And the other way round.
        if (self.s32_min_value as u32) <= (self.s32_max_value as u32) {
            self.u32_min_value = self.u32_min_value.max(self.s32_min_value as u32);
            self.u32_max_value = self.u32_max_value.min(self.s32_max_value as u32);
        } else if self.u32_max_value < self.s32_min_value as u32 {
            // The s32 range wraps and the u32 range meets only its non-negative
            // part ("Fix u32/s32 bounds when ranges cross min/max boundary", in
            // the 6.18 stable series the running kernel has).
            self.s32_min_value = self.u32_min_value as i32;
            self.u32_max_value = self.u32_max_value.min(self.s32_max_value as u32);
        } else if (self.s32_max_value as u32) < self.u32_min_value {
            // ... or only its negative part.
            self.s32_max_value = self.u32_max_value as i32;
            self.u32_min_value = self.u32_min_value.max(self.s32_min_value as u32);
        }
    }

    /// `__reg64_deduce_bounds`: u64 and s64 bounds from each other.
    fn deduce_bounds64(&mut self) {
        // A u64 range that does not cross the sign boundary is an s64 range.
        if (self.umin_value as i64) <= (self.umax_value as i64) {
            self.smin_value = self.smin_value.max(self.umin_value as i64);
            self.smax_value = self.smax_value.min(self.umax_value as i64);
        }
        if (self.smin_value as u64) <= (self.smax_value as u64) {
            // The s64 range does not cross the sign boundary: it is a u64 range.
            self.umin_value = self.umin_value.max(self.smin_value as u64);
            self.umax_value = self.umax_value.min(self.smax_value as u64);
        } else if self.umax_value < self.smin_value as u64 {
            // The s64 range wraps; the u64 range meets only its non-negative part
            // (6.17: "Improve bounds when s64 crosses sign boundary").
            self.smin_value = self.umin_value as i64;
            self.umax_value = self.umax_value.min(self.smax_value as u64);
        } else if (self.smax_value as u64) < self.umin_value {
            // ... or only its negative part.
            self.smax_value = self.umax_value as i64;
            self.umin_value = self.umin_value.max(self.smin_value as u64);
        }
    }

    /// `__reg_deduce_mixed_bounds`: 64-bit bounds tightened with the 32-bit ones.
    fn deduce_mixed_bounds(&mut self) {
        const HI: u64 = !0xffff_ffffu64;
        let lo_min = u64::from(self.u32_min_value);
        let lo_max = u64::from(self.u32_max_value);
        let new_umin = (self.umin_value & HI) | lo_min;
        let new_umax = (self.umax_value & HI) | lo_max;
        self.umin_value = self.umin_value.max(new_umin);
        self.umax_value = self.umax_value.min(new_umax);
        let new_smin = ((self.smin_value as u64 & HI) | lo_min) as i64;
        let new_smax = ((self.smax_value as u64 & HI) | lo_max) as i64;
        self.smin_value = self.smin_value.max(new_smin);
        self.smax_value = self.smax_value.min(new_smax);
        // After a sign-extending load: a 64-bit range within [S32_MIN, S32_MAX]
        // whose low half is non-negative cannot have all-ones upper bits.
        if self.s32_min_value >= 0
            && self.smin_value >= i64::from(i32::MIN)
            && self.smax_value <= i64::from(i32::MAX)
        {
            self.smin_value = i64::from(self.s32_min_value);
            self.smax_value = i64::from(self.s32_max_value);
            self.umin_value = self.s32_min_value as u64;
            self.umax_value = self.s32_max_value as u64;
            self.var_off = self
                .var_off
                .intersect(Tnum::range(self.smin_value as u64, self.smax_value as u64));
        }
    }

    /// `__reg_deduce_bounds`.
    pub fn deduce_bounds(&mut self) {
        self.deduce_bounds32();
        self.deduce_bounds64();
        self.deduce_mixed_bounds();
    }

    /// `__reg_bound_offset`: var_off from the unsigned bounds.
    pub fn bound_offset(&mut self) {
        let var64 = self
            .var_off
            .intersect(Tnum::range(self.umin_value, self.umax_value));
        let var32 = var64.subreg().intersect(Tnum::range(
            u64::from(self.u32_min_value),
            u64::from(self.u32_max_value),
        ));
        self.var_off = var64.clear_subreg().or(var32);
    }

    /// `reg_bounds_sync`: every part of the state tightened by the others.
    pub fn sync(&mut self) {
        // We might have learned new bounds from the var_off.
        self.update_bounds();
        // We might have learned something about the sign bit.
        // Three rounds, as 6.17 on does (the 64-bit sign-crossing deduction can
        // enable another 32-bit one).
        self.deduce_bounds();
        self.deduce_bounds();
        self.deduce_bounds();
        // We might have learned some bits from the bounds.
        self.bound_offset();
        // Intersecting with the old var_off might have improved our bounds.
        self.update_bounds();
    }

    /// `__reg_assign_32_into_64`: the 64-bit bounds of the zero-extended subregister.
    fn assign_32_into_64(&mut self) {
        self.umin_value = u64::from(self.u32_min_value);
        self.umax_value = u64::from(self.u32_max_value);
        if reg32_bound_s64(self.s32_min_value) && reg32_bound_s64(self.s32_max_value) {
            self.smin_value = i64::from(self.s32_min_value);
            self.smax_value = i64::from(self.s32_max_value);
        } else {
            self.smin_value = 0;
            self.smax_value = i64::from(u32::MAX);
        }
    }

    /// `zext_32_to_64`: what a 32-bit ALU result is as a 64-bit register.
    pub fn zext_32_to_64(&mut self) {
        self.var_off = self.var_off.subreg();
        self.assign_32_into_64();
    }

    /// `coerce_reg_to_size`: the low `size` bytes, zero-extended (a narrow load).
    /// Size 8 or more changes nothing.
    pub fn coerce_to_size(&mut self, size: u8) {
        if size >= 8 {
            return;
        }
        self.var_off = self.var_off.cast(size);
        let mask = shl64(1, u64::from(size) * 8).wrapping_sub(1);
        if self.umin_value & !mask == self.umax_value & !mask {
            self.umin_value &= mask;
            self.umax_value &= mask;
        } else {
            self.umin_value = 0;
            self.umax_value = mask;
        }
        self.smin_value = self.umin_value as i64;
        self.smax_value = self.umax_value as i64;
        // Narrower than 32 bits: the 32-bit bounds come back from the 64-bit ones.
        if size < 4 {
            self.mark32_unbounded();
        }
        self.sync();
    }

    /// `set_sext64_default_val`.
    fn set_sext64_default(&mut self, size: u8) {
        let (min, max) = sext_limits(size);
        self.smin_value = i64::from(min);
        self.s32_min_value = min;
        self.smax_value = i64::from(max);
        self.s32_max_value = max;
        self.umin_value = 0;
        self.u32_min_value = 0;
        self.umax_value = u64::MAX;
        self.u32_max_value = u32::MAX;
        self.var_off = Tnum::UNKNOWN;
    }

    /// `coerce_reg_to_size_sx`: the low `size` (1, 2 or 4) bytes sign-extended to
    /// 64 bits (movsx, ldsx). Other sizes change nothing.
    ///
    /// The running 6.18 kernel first asks whether the s32 range already lies
    /// within the narrow signed type: then sign extension changes no value and
    /// the s64 range is the s32 one (the 32-bit bounds kept, the unsigned
    /// 64-bit range and the tnum re-derived). Observed through `kernel_oracle`
    /// (`w8 s<= 5; r7 = (s32)r8` gives `smin=0xffffffff80000000,smax=smax32=5`;
    /// `r7 <<= 44; r8 = (s8)r7` gives `0`; `w9` in [-100, 50], `r7 = (s8)r9`
    /// gives `smin=smin32=-100,smax=smax32=50`); the 6.18 release's code, which
    /// follows otherwise, works from the 64-bit range alone.
    pub fn coerce_to_size_sx(&mut self, size: u8) {
        if !matches!(size, 1 | 2 | 4) {
            return;
        }
        let (lo, hi) = sext_limits(size);
        if self.s32_min_value >= lo && self.s32_max_value <= hi {
            self.smin_value = i64::from(self.s32_min_value);
            self.smax_value = i64::from(self.s32_max_value);
            self.umin_value = 0;
            self.umax_value = u64::MAX;
            self.var_off = Tnum::UNKNOWN;
            self.sync();
            return;
        }
        if let Some(v) = self.const_value() {
            *self = Scalar::constant(sext(v, size) as u64);
            return;
        }
        let num_bits = u64::from(size) * 8;
        let top_smax = shl64(shr64(self.smax_value as u64, num_bits), num_bits);
        let top_smin = shl64(shr64(self.smin_value as u64, num_bits), num_bits);
        if top_smax == top_smin {
            let a = sext(self.smax_value as u64, size);
            let b = sext(self.smin_value as u64, size);
            let (s64_min, s64_max) = (a.min(b), a.max(b));
            // Both of s64_max/s64_min positive or negative.
            if (s64_max >= 0) == (s64_min >= 0) {
                self.smin_value = s64_min;
                self.smax_value = s64_max;
                self.s32_min_value = s64_min as i32;
                self.s32_max_value = s64_max as i32;
                self.umin_value = s64_min as u64;
                self.umax_value = s64_max as u64;
                self.u32_min_value = s64_min as u32;
                self.u32_max_value = s64_max as u32;
                self.var_off = Tnum::range(s64_min as u64, s64_max as u64);
                return;
            }
        }
        self.set_sext64_default(size);
    }

    /// `set_sext32_default_val`.
    fn set_sext32_default(&mut self, size: u8) {
        let (min, max) = sext_limits(size);
        self.s32_min_value = min;
        self.s32_max_value = max;
        self.u32_min_value = 0;
        self.u32_max_value = u32::MAX;
        self.var_off = Tnum::UNKNOWN.subreg();
    }

    /// `coerce_subreg_to_size_sx`: the low `size` (1 or 2) bytes sign-extended to
    /// 32 bits (32-bit movsx); only the 32-bit half is meaningful afterwards (the
    /// caller zero-extends, as check_alu_op does). Other sizes change nothing.
    pub fn coerce_subreg_to_size_sx(&mut self, size: u8) {
        if !matches!(size, 1 | 2) {
            return;
        }
        if let Some(v) = self.const_value() {
            let x = sext(v, size) as i32;
            self.var_off = Tnum::const_(i64::from(x) as u64);
            self.s32_min_value = x;
            self.s32_max_value = x;
            self.u32_min_value = x as u32;
            self.u32_max_value = x as u32;
            return;
        }
        let num_bits = u32::from(size) * 8;
        let top_smax = ((self.s32_max_value as u32) >> num_bits) << num_bits;
        let top_smin = ((self.s32_min_value as u32) >> num_bits) << num_bits;
        if top_smax == top_smin {
            let a = sext(self.s32_max_value as u32 as u64, size) as i32;
            let b = sext(self.s32_min_value as u32 as u64, size) as i32;
            let (s32_min, s32_max) = (a.min(b), a.max(b));
            if (s32_min >= 0) == (s32_max >= 0) {
                self.s32_min_value = s32_min;
                self.s32_max_value = s32_max;
                self.u32_min_value = s32_min as u32;
                self.u32_max_value = s32_max as u32;
                self.var_off = Tnum::range(s32_min as i64 as u64, s32_max as i64 as u64).subreg();
                return;
            }
        }
        self.set_sext32_default(size);
    }

    /// `reg_bounds_sanity_check`: the bounds agree with each other and with a
    /// constant var_off. The error is the kernel's message (`verifier_bug`:
    /// `verifier bug: REG INVARIANTS VIOLATION (ctx): ...`); the kernel then marks
    /// the register unbounded unless it runs its own tests.
    pub fn sanity_check(&self, ctx: &str) -> Result<(), String> {
        let msg = if self.umin_value > self.umax_value
            || self.smin_value > self.smax_value
            || self.u32_min_value > self.u32_max_value
            || self.s32_min_value > self.s32_max_value
        {
            Some("range bounds violation")
        } else if self.var_off.is_const()
            && (self.umin_value != self.var_off.value
                || self.umax_value != self.var_off.value
                || self.smin_value != self.var_off.value as i64
                || self.smax_value != self.var_off.value as i64)
        {
            Some("const tnum out of sync with range bounds")
        } else if self.var_off.subreg_is_const() && {
            let v = self.var_off.value as u32;
            self.u32_min_value != v
                || self.u32_max_value != v
                || self.s32_min_value != v as i32
                || self.s32_max_value != v as i32
        } {
            Some("const subreg tnum out of sync with range bounds")
        } else {
            None
        };
        match msg {
            None => Ok(()),
            Some(msg) => Err(format!(
                "verifier bug: REG INVARIANTS VIOLATION ({ctx}): {msg} u64=[{:#x}, {:#x}] \
                 s64=[{:#x}, {:#x}] u32=[{:#x}, {:#x}] s32=[{:#x}, {:#x}] var_off=({:#x}, {:#x})",
                self.umin_value,
                self.umax_value,
                self.smin_value,
                self.smax_value,
                self.u32_min_value,
                self.u32_max_value,
                self.s32_min_value,
                self.s32_max_value,
                self.var_off.value,
                self.var_off.mask
            )),
        }
    }

    /// `range_within(old, cur)`: every bound of `cur` inside `old`'s.
    pub fn range_within(old: &Scalar, cur: &Scalar) -> bool {
        old.umin_value <= cur.umin_value
            && old.umax_value >= cur.umax_value
            && old.smin_value <= cur.smin_value
            && old.smax_value >= cur.smax_value
            && old.u32_min_value <= cur.u32_min_value
            && old.u32_max_value >= cur.u32_max_value
            && old.s32_min_value <= cur.s32_min_value
            && old.s32_max_value >= cur.s32_max_value
    }

    /// regsafe's numeric test for a precise scalar (and for pointer offsets):
    /// `range_within(old, cur) && tnum_in(old->var_off, cur->var_off)`.
    pub fn within(old: &Scalar, cur: &Scalar) -> bool {
        Scalar::range_within(old, cur) && Tnum::in_(old.var_off, cur.var_off)
    }

    /// `get_reg_width`: the bits the largest value needs (64 - clz(umax)).
    pub fn width(&self) -> u32 {
        64 - self.umax_value.leading_zeros()
    }
}

/// `(sN)v` for N = 8 * size (1, 2, 4; 8 keeps v).
fn sext(v: u64, size: u8) -> i64 {
    match size {
        1 => i64::from(v as u8 as i8),
        2 => i64::from(v as u16 as i16),
        4 => i64::from(v as u32 as i32),
        _ => v as i64,
    }
}

/// S8/S16/S32 MIN and MAX for a sign-extension size.
fn sext_limits(size: u8) -> (i32, i32) {
    match size {
        1 => (i32::from(i8::MIN), i32::from(i8::MAX)),
        2 => (i32::from(i16::MIN), i32::from(i16::MAX)),
        _ => (i32::MIN, i32::MAX),
    }
}

mod alu;
mod log;

#[cfg(test)]
mod kernel_oracle;
#[cfg(test)]
mod tests;
