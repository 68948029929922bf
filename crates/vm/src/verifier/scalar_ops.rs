//! The few scalar operations the walk needs, by opcode, over `scalar` (the kernel's
//! adjust_scalar_min_max_vals, coerce_reg_to_size, is_branch_taken, reg_set_min_max).

use super::scalar::{self, AluOp, JmpOp, Scalar};

/// adjust_scalar_min_max_vals for the ALU opcode `code` (BPF_END: `src` is the
/// width, the instruction's imm).
pub fn alu(code: u8, dst: Scalar, src: Scalar, alu32: bool) -> Scalar {
    match AluOp::from_code(code) {
        Some(o) => Scalar::alu(o, &dst, &src, alu32),
        None => Scalar::unknown(),
    }
}

/// maybe_fork_scalars for the ALU opcode `code`: (go on with, pushed).
pub fn maybe_fork(code: u8, dst: &Scalar, src: &Scalar) -> Option<(Scalar, Scalar)> {
    Scalar::maybe_fork(AluOp::from_code(code)?, dst, src)
}

/// A 32-bit move: the low half, zero-extended.
pub fn zext32(s: Scalar) -> Scalar {
    let mut d = s;
    d.zext_32_to_64();
    d.sync();
    d
}

/// `coerce_reg_to_size_sx`.
pub fn sext(s: Scalar, size: u8) -> Scalar {
    let mut d = s;
    d.coerce_to_size_sx(size);
    d
}

/// `coerce_reg_to_size`.
pub fn coerce(s: Scalar, size: u8) -> Scalar {
    let mut d = s;
    d.coerce_to_size(size);
    d
}

/// The variable offset of `ptr += off` (scalar_min_max_add, tnum_add).
pub fn ptr_add(ptr: Scalar, off: Scalar) -> Scalar {
    Scalar::alu(AluOp::Add, &ptr, &off, false)
}

/// The variable offset of `ptr -= off`.
pub fn ptr_sub(ptr: Scalar, off: Scalar) -> Scalar {
    Scalar::alu(AluOp::Sub, &ptr, &off, false)
}

/// The low 32 bits when they are a constant.
pub fn const_value32(s: Scalar) -> Option<u64> {
    s.is_reg_const(true).then(|| s.reg_const_value(true))
}

/// is_scalar_branch_taken for BPF_OP `op`.
pub fn branch_taken(dst: Scalar, src: Scalar, op: u8, jmp32: bool) -> Option<bool> {
    let o = JmpOp::from_code(op)?;
    scalar::is_branch_taken(o, &dst, &src, jmp32)
}

/// `dst op src` compared with itself.
pub fn branch_taken_same_reg(s: Scalar, op: u8, jmp32: bool) -> Option<bool> {
    let o = JmpOp::from_code(op)?;
    scalar::is_branch_taken_same_reg(o, &s, jmp32)
}

/// reg_set_min_max for one side: (dst, src) refined by `dst op src` being `taken`.
pub fn refine(dst: Scalar, src: Scalar, op: u8, jmp32: bool, taken: bool) -> (Scalar, Scalar) {
    let (mut a, mut b) = (dst, src);
    if let Some(o) = JmpOp::from_code(op) {
        scalar::refine(o, &mut a, &mut b, jmp32, taken);
    }
    (a, b)
}

/// regsafe's `range_within && tnum_in`.
pub fn within(old: &Scalar, cur: &Scalar) -> bool {
    Scalar::within(old, cur)
}
