//! Conditional jumps on scalars: kernel/bpf/verifier.c is_scalar_branch_taken,
//! regs_refine_cond_op and reg_set_min_max, as the running 6.18 kernel has them.

use skiff_isa::opcode as op;

use super::Scalar;
use crate::verifier::tnum::Tnum;

/// The conditional jumps (`BPF_OP` of BPF_JMP/BPF_JMP32), by the kernel's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JmpOp {
    /// BPF_JEQ
    Jeq,
    /// BPF_JGT
    Jgt,
    /// BPF_JGE
    Jge,
    /// BPF_JSET
    Jset,
    /// BPF_JNE
    Jne,
    /// BPF_JSGT
    Jsgt,
    /// BPF_JSGE
    Jsge,
    /// BPF_JLT
    Jlt,
    /// BPF_JLE
    Jle,
    /// BPF_JSLT
    Jslt,
    /// BPF_JSLE
    Jsle,
    /// `BPF_JSET | BPF_X` in the kernel's rev_opcode: the negation of JSET (no
    /// instruction has it; it is the fall-through of a JSET).
    JsetNot,
}

impl JmpOp {
    /// From an opcode's `BPF_OP` bits; None for JA, CALL, EXIT, JCOND and 0xf0.
    pub fn from_code(code: u8) -> Option<JmpOp> {
        Some(match op::bpf_op(code) {
            op::BPF_JEQ => JmpOp::Jeq,
            op::BPF_JGT => JmpOp::Jgt,
            op::BPF_JGE => JmpOp::Jge,
            op::BPF_JSET => JmpOp::Jset,
            op::BPF_JNE => JmpOp::Jne,
            op::BPF_JSGT => JmpOp::Jsgt,
            op::BPF_JSGE => JmpOp::Jsge,
            op::BPF_JLT => JmpOp::Jlt,
            op::BPF_JLE => JmpOp::Jle,
            op::BPF_JSLT => JmpOp::Jslt,
            op::BPF_JSLE => JmpOp::Jsle,
            _ => return None,
        })
    }

    /// `rev_opcode`: the condition of the fall-through.
    pub fn rev(self) -> JmpOp {
        match self {
            JmpOp::Jeq => JmpOp::Jne,
            JmpOp::Jne => JmpOp::Jeq,
            JmpOp::Jset => JmpOp::JsetNot,
            JmpOp::JsetNot => JmpOp::Jset,
            JmpOp::Jge => JmpOp::Jlt,
            JmpOp::Jgt => JmpOp::Jle,
            JmpOp::Jle => JmpOp::Jgt,
            JmpOp::Jlt => JmpOp::Jge,
            JmpOp::Jsge => JmpOp::Jslt,
            JmpOp::Jsgt => JmpOp::Jsle,
            JmpOp::Jsle => JmpOp::Jsgt,
            JmpOp::Jslt => JmpOp::Jsge,
        }
    }

    /// `flip_opcode`: the same condition with the operands swapped.
    pub fn flip(self) -> JmpOp {
        match self {
            JmpOp::Jgt => JmpOp::Jlt,
            JmpOp::Jlt => JmpOp::Jgt,
            JmpOp::Jge => JmpOp::Jle,
            JmpOp::Jle => JmpOp::Jge,
            JmpOp::Jsgt => JmpOp::Jslt,
            JmpOp::Jslt => JmpOp::Jsgt,
            JmpOp::Jsge => JmpOp::Jsle,
            JmpOp::Jsle => JmpOp::Jsge,
            other => other,
        }
    }

    /// The condition on concrete operands (the low 32 bits of each for JMP32).
    pub fn eval(self, a: u64, b: u64, is_jmp32: bool) -> bool {
        let (a, b) = if is_jmp32 {
            (u64::from(a as u32), u64::from(b as u32))
        } else {
            (a, b)
        };
        let (sa, sb) = if is_jmp32 {
            (i64::from(a as u32 as i32), i64::from(b as u32 as i32))
        } else {
            (a as i64, b as i64)
        };
        match self {
            JmpOp::Jeq => a == b,
            JmpOp::Jne => a != b,
            JmpOp::Jset => a & b != 0,
            JmpOp::JsetNot => a & b == 0,
            JmpOp::Jgt => a > b,
            JmpOp::Jge => a >= b,
            JmpOp::Jlt => a < b,
            JmpOp::Jle => a <= b,
            JmpOp::Jsgt => sa > sb,
            JmpOp::Jsge => sa >= sb,
            JmpOp::Jslt => sa < sb,
            JmpOp::Jsle => sa <= sb,
        }
    }
}

/// One operand's bounds as a comparison of the given width sees them.
struct View {
    t: Tnum,
    umin: u64,
    umax: u64,
    smin: i64,
    smax: i64,
}

impl View {
    fn of(r: &Scalar, is_jmp32: bool) -> View {
        if is_jmp32 {
            View {
                t: r.var_off.subreg(),
                umin: u64::from(r.u32_min_value),
                umax: u64::from(r.u32_max_value),
                smin: i64::from(r.s32_min_value),
                smax: i64::from(r.s32_max_value),
            }
        } else {
            View {
                t: r.var_off,
                umin: r.umin_value,
                umax: r.umax_value,
                smin: r.smin_value,
                smax: r.smax_value,
            }
        }
    }
}

/// Whether the two ranges cannot meet (the JEQ/JNE test of is_scalar_branch_taken).
fn disjoint(a: &Scalar, b: &Scalar, v1: &View, v2: &View, is_jmp32: bool) -> bool {
    if v1.umin > v2.umax || v1.umax < v2.umin || v1.smin > v2.smax || v1.smax < v2.smin {
        return true;
    }
    // If the 64-bit ranges are inconclusive, the 32-bit subranges may still
    // exclude equality.
    !is_jmp32
        && (a.u32_min_value > b.u32_max_value
            || a.u32_max_value < b.u32_min_value
            || a.s32_min_value > b.s32_max_value
            || a.s32_max_value < b.s32_min_value)
}

/// `is_scalar_branch_taken`: Some(true) when the jump is always taken,
/// Some(false) when never, None when it depends on the value.
pub fn is_branch_taken(op: JmpOp, a: &Scalar, b: &Scalar, is_jmp32: bool) -> Option<bool> {
    let v1 = View::of(a, is_jmp32);
    let v2 = View::of(b, is_jmp32);
    match op {
        JmpOp::Jeq | JmpOp::Jne => {
            let eq = op == JmpOp::Jeq;
            if v1.t.is_const() && v2.t.is_const() {
                return Some((v1.t.value == v2.t.value) == eq);
            }
            // 6.18: known bits that disagree rule equality out.
            if !Tnum::overlap(v1.t, v2.t) {
                return Some(!eq);
            }
            if disjoint(a, b, &v1, &v2, is_jmp32) {
                return Some(!eq);
            }
            None
        }
        JmpOp::Jset | JmpOp::JsetNot => {
            let (t1, t2) = if b.is_reg_const(is_jmp32) {
                (v1.t, v2.t)
            } else if a.is_reg_const(is_jmp32) {
                (v2.t, v1.t)
            } else {
                return None;
            };
            let set = op == JmpOp::Jset;
            if (!t1.mask & t1.value) & t2.value != 0 {
                return Some(set);
            }
            if (t1.mask | t1.value) & t2.value == 0 {
                return Some(!set);
            }
            None
        }
        JmpOp::Jgt => decide(v1.umin > v2.umax, v1.umax <= v2.umin),
        JmpOp::Jsgt => decide(v1.smin > v2.smax, v1.smax <= v2.smin),
        JmpOp::Jlt => decide(v1.umax < v2.umin, v1.umin >= v2.umax),
        JmpOp::Jslt => decide(v1.smax < v2.smin, v1.smin >= v2.smax),
        JmpOp::Jge => decide(v1.umin >= v2.umax, v1.umax < v2.umin),
        JmpOp::Jsge => decide(v1.smin >= v2.smax, v1.smax < v2.smin),
        JmpOp::Jle => decide(v1.umax <= v2.umin, v1.umin > v2.umax),
        JmpOp::Jsle => decide(v1.smax <= v2.smin, v1.smin > v2.smax),
    }
}

fn decide(always: bool, never: bool) -> Option<bool> {
    if always {
        Some(true)
    } else if never {
        Some(false)
    } else {
        None
    }
}

/// `regs_refine_cond_op`: narrows `r1` and `r2` by "r1 op r2 holds". The
/// caller syncs both afterwards.
pub fn refine_cond_op(op: JmpOp, r1: &mut Scalar, r2: &mut Scalar, is_jmp32: bool) {
    // GE/GT/SGE/SGT reuse LE/LT/SLE/SLT with the operands swapped.
    let (op, r1, r2) = match op {
        JmpOp::Jge | JmpOp::Jgt | JmpOp::Jsge | JmpOp::Jsgt => (op.flip(), r2, r1),
        _ => (op, r1, r2),
    };
    match op {
        JmpOp::Jeq => refine_eq(r1, r2, is_jmp32),
        JmpOp::Jne => {
            let (r1, r2) = const_second(r1, r2, is_jmp32);
            if let Some(val) = r2.map(|r| r.reg_const_value(is_jmp32)) {
                refine_ne(r1, val, is_jmp32);
            }
        }
        JmpOp::Jset => {
            let (r1, r2) = const_second(r1, r2, is_jmp32);
            let Some(val) = r2.map(|r| r.reg_const_value(is_jmp32)) else {
                return;
            };
            // Only a single bit says which bit is set.
            if !val.is_power_of_two() {
                return;
            }
            if is_jmp32 {
                let t = r1.var_off.subreg().or(Tnum::const_(val));
                r1.var_off = r1.var_off.with_subreg(t);
            } else {
                r1.var_off = r1.var_off.or(Tnum::const_(val));
            }
        }
        JmpOp::JsetNot => {
            let (r1, r2) = const_second(r1, r2, is_jmp32);
            let Some(val) = r2.map(|r| r.reg_const_value(is_jmp32)) else {
                return;
            };
            // Forget the ranges before narrowing the tnum, so that a dead branch
            // does not violate the invariants.
            r1.mark_unbounded();
            if is_jmp32 {
                let t = r1.var_off.subreg().and(Tnum::const_(!val));
                r1.var_off = r1.var_off.with_subreg(t);
            } else {
                r1.var_off = r1.var_off.and(Tnum::const_(!val));
            }
        }
        JmpOp::Jle | JmpOp::Jlt | JmpOp::Jsle | JmpOp::Jslt => refine_lt(op, r1, r2, is_jmp32),
        JmpOp::Jge | JmpOp::Jgt | JmpOp::Jsge | JmpOp::Jsgt => {}
    }
}

/// The JNE/JSET swap: the constant operand second, None when neither is constant.
fn const_second<'a>(
    r1: &'a mut Scalar,
    r2: &'a mut Scalar,
    is_jmp32: bool,
) -> (&'a mut Scalar, Option<&'a Scalar>) {
    if r2.is_reg_const(is_jmp32) {
        (r1, Some(r2))
    } else if r1.is_reg_const(is_jmp32) {
        (r2, Some(r1))
    } else {
        (r1, None)
    }
}

/// regs_refine_cond_op, BPF_JEQ: both take the intersection.
fn refine_eq(r1: &mut Scalar, r2: &mut Scalar, is_jmp32: bool) {
    if is_jmp32 {
        r1.u32_min_value = r1.u32_min_value.max(r2.u32_min_value);
        r1.u32_max_value = r1.u32_max_value.min(r2.u32_max_value);
        r1.s32_min_value = r1.s32_min_value.max(r2.s32_min_value);
        r1.s32_max_value = r1.s32_max_value.min(r2.s32_max_value);
        r2.u32_min_value = r1.u32_min_value;
        r2.u32_max_value = r1.u32_max_value;
        r2.s32_min_value = r1.s32_min_value;
        r2.s32_max_value = r1.s32_max_value;
        let t = r1.var_off.subreg().intersect(r2.var_off.subreg());
        r1.var_off = r1.var_off.with_subreg(t);
        r2.var_off = r2.var_off.with_subreg(t);
    } else {
        r1.umin_value = r1.umin_value.max(r2.umin_value);
        r1.umax_value = r1.umax_value.min(r2.umax_value);
        r1.smin_value = r1.smin_value.max(r2.smin_value);
        r1.smax_value = r1.smax_value.min(r2.smax_value);
        r2.umin_value = r1.umin_value;
        r2.umax_value = r1.umax_value;
        r2.smin_value = r1.smin_value;
        r2.smax_value = r1.smax_value;
        r1.var_off = r1.var_off.intersect(r2.var_off);
        r2.var_off = r1.var_off;
    }
}

/// regs_refine_cond_op, BPF_JNE against the constant `val`: a bound equal to it
/// moves by one.
fn refine_ne(r1: &mut Scalar, val: u64, is_jmp32: bool) {
    if is_jmp32 {
        let v = val as u32;
        if r1.u32_min_value == v {
            r1.u32_min_value = r1.u32_min_value.wrapping_add(1);
        }
        if r1.u32_max_value == v {
            r1.u32_max_value = r1.u32_max_value.wrapping_sub(1);
        }
        if r1.s32_min_value == v as i32 {
            r1.s32_min_value = r1.s32_min_value.wrapping_add(1);
        }
        if r1.s32_max_value == v as i32 {
            r1.s32_max_value = r1.s32_max_value.wrapping_sub(1);
        }
    } else {
        if r1.umin_value == val {
            r1.umin_value = r1.umin_value.wrapping_add(1);
        }
        if r1.umax_value == val {
            r1.umax_value = r1.umax_value.wrapping_sub(1);
        }
        if r1.smin_value == val as i64 {
            r1.smin_value = r1.smin_value.wrapping_add(1);
        }
        if r1.smax_value == val as i64 {
            r1.smax_value = r1.smax_value.wrapping_sub(1);
        }
    }
}

/// regs_refine_cond_op, BPF_JLE/JLT/JSLE/JSLT: r1's maximum and r2's minimum.
/// The kernel's `- 1`/`+ 1` wrap as its C arithmetic does (only on a branch that
/// is_branch_taken has already decided).
fn refine_lt(op: JmpOp, r1: &mut Scalar, r2: &mut Scalar, is_jmp32: bool) {
    let strict = matches!(op, JmpOp::Jlt | JmpOp::Jslt);
    let d32: u32 = u32::from(strict);
    let d64: u64 = u64::from(strict);
    match (op, is_jmp32) {
        (JmpOp::Jle | JmpOp::Jlt, true) => {
            r1.u32_max_value = r1.u32_max_value.min(r2.u32_max_value.wrapping_sub(d32));
            r2.u32_min_value = r2.u32_min_value.max(r1.u32_min_value.wrapping_add(d32));
        }
        (JmpOp::Jle | JmpOp::Jlt, false) => {
            r1.umax_value = r1.umax_value.min(r2.umax_value.wrapping_sub(d64));
            r2.umin_value = r2.umin_value.max(r1.umin_value.wrapping_add(d64));
        }
        (_, true) => {
            let d = d32 as i32;
            r1.s32_max_value = r1.s32_max_value.min(r2.s32_max_value.wrapping_sub(d));
            r2.s32_min_value = r2.s32_min_value.max(r1.s32_min_value.wrapping_add(d));
        }
        (_, false) => {
            let d = d64 as i64;
            r1.smax_value = r1.smax_value.min(r2.smax_value.wrapping_sub(d));
            r2.smin_value = r2.smin_value.max(r1.smin_value.wrapping_add(d));
        }
    }
}

/// `reg_set_min_max` for two scalars, one branch: narrows `a` and `b` by the
/// outcome `taken` of "a op b" (the fall-through refines by `rev_opcode(op)`),
/// then syncs both. `same_reg` (the kernel's `false_reg1 == false_reg2`, a
/// comparison of a register with itself) learns nothing.
pub fn refine(op: JmpOp, a: &mut Scalar, b: &mut Scalar, is_jmp32: bool, taken: bool) {
    let op = if taken { op } else { op.rev() };
    refine_cond_op(op, a, b, is_jmp32);
    a.sync();
    b.sync();
}

/// `reg_set_min_max` for two scalars, both branches: `true_*` are the
/// registers on the jump, `false_*` on the fall-through (copies of the same
/// registers before the jump). Each pair is refined and synced, then checked
/// (reg_bounds_sanity_check, in the kernel's order true_reg1, true_reg2,
/// false_reg1, false_reg2); a register whose bounds contradict each other (a
/// branch that cannot be taken, which is_branch_taken did not see) is marked
/// unbounded, its tnum kept, as the kernel does outside its own test mode.
/// Returns the log lines the kernel prints for those (`verifier bug: REG
/// INVARIANTS VIOLATION (false_reg1): ...`). The caller skips this for a
/// register compared with itself, as the kernel does.
pub fn reg_set_min_max(
    op: JmpOp,
    true_a: &mut Scalar,
    true_b: &mut Scalar,
    false_a: &mut Scalar,
    false_b: &mut Scalar,
    is_jmp32: bool,
) -> Vec<String> {
    refine(op, false_a, false_b, is_jmp32, false);
    refine(op, true_a, true_b, is_jmp32, true);
    let mut log = Vec::new();
    for (reg, ctx) in [
        (true_a, "true_reg1"),
        (true_b, "true_reg2"),
        (false_a, "false_reg1"),
        (false_b, "false_reg2"),
    ] {
        if let Err(msg) = reg.sanity_check(ctx) {
            log.push(msg);
            reg.mark_unbounded();
        }
    }
    log
}

/// is_scalar_branch_taken for a register compared with itself (`if r1 > r1`).
/// The running kernel has no special case for it (a later kernel decides
/// these outright): both operands are the same bounds, so e.g. `r1 == r1` on a
/// non-constant is not decided and both paths are walked, refined by
/// [`reg_set_min_max_same_reg`].
pub fn is_branch_taken_same_reg(op: JmpOp, a: &Scalar, is_jmp32: bool) -> Option<bool> {
    is_branch_taken(op, a, a, is_jmp32)
}

/// reg_set_min_max for a register compared with itself (`if r1 > r1`): the
/// running kernel neither decides these nor skips them, so regs_refine_cond_op
/// runs with both operands the same `struct bpf_reg_state` (each bound written
/// through one alias is read through the other) and reg_bounds_sync runs on it
/// twice. Observed through the running kernel: `if r9 >= r9` leaves r9 in
/// [1, 254] on the fall-through when it was [0, 255].
pub fn reg_set_min_max_same_reg(
    op: JmpOp,
    true_a: &mut Scalar,
    false_a: &mut Scalar,
    is_jmp32: bool,
) -> Vec<String> {
    refine_aliased(op.rev(), false_a, is_jmp32);
    refine_aliased(op, true_a, is_jmp32);
    // The kernel checks each register twice, once through each alias.
    let mut log = Vec::new();
    for (reg, ctxs) in [
        (true_a, ["true_reg1", "true_reg2"]),
        (false_a, ["false_reg1", "false_reg2"]),
    ] {
        for ctx in ctxs {
            if let Err(msg) = reg.sanity_check(ctx) {
                log.push(msg);
                reg.mark_unbounded();
            }
        }
    }
    log
}

/// The field as the copy that wrote it has it.
fn pick<T: PartialEq>(x: T, y: T, before: T) -> T {
    if x != before {
        x
    } else {
        y
    }
}

/// regs_refine_cond_op with reg1 and reg2 the same register, then its two
/// syncs. Each case writes a bound of one operand from bounds of the other that
/// it has not written yet, so refining two copies and taking each field from
/// the copy that changed it is the aliased result.
fn refine_aliased(op: JmpOp, a: &mut Scalar, is_jmp32: bool) {
    let before = *a;
    let (mut x, mut y) = (before, before);
    refine_cond_op(op, &mut x, &mut y, is_jmp32);
    a.var_off = pick(x.var_off, y.var_off, before.var_off);
    a.smin_value = pick(x.smin_value, y.smin_value, before.smin_value);
    a.smax_value = pick(x.smax_value, y.smax_value, before.smax_value);
    a.umin_value = pick(x.umin_value, y.umin_value, before.umin_value);
    a.umax_value = pick(x.umax_value, y.umax_value, before.umax_value);
    a.s32_min_value = pick(x.s32_min_value, y.s32_min_value, before.s32_min_value);
    a.s32_max_value = pick(x.s32_max_value, y.s32_max_value, before.s32_max_value);
    a.u32_min_value = pick(x.u32_min_value, y.u32_min_value, before.u32_min_value);
    a.u32_max_value = pick(x.u32_max_value, y.u32_max_value, before.u32_max_value);
    a.sync();
    a.sync();
}
