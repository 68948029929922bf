//! Exact values worked by hand from the kernel's arithmetic, and soundness
//! properties.

use super::*;

fn k(v: i64) -> Scalar {
    Scalar::constant(v as u64)
}

#[test]
fn constants_and_unknown() {
    let c = Scalar::constant(5);
    assert_eq!(c.const_value(), Some(5));
    assert!(c.is_const());
    assert_eq!(Scalar::unknown().const_value(), None);
    let m = Scalar::constant(u64::MAX);
    assert_eq!(
        (m.smin_value, m.s32_min_value, m.u32_max_value),
        (-1, -1, u32::MAX)
    );
    let mut u = c;
    u.mark_unknown();
    assert_eq!(u, Scalar::unknown());
}

#[test]
fn add_sub_and_or_exact() {
    let byte = Scalar::urange(0, 255);
    let r = Scalar::alu(AluOp::Add, &byte, &k(10), false);
    assert_eq!(
        (r.umin_value, r.umax_value, r.smin_value, r.smax_value),
        (10, 265, 10, 265)
    );
    assert_eq!(r.var_off, Tnum::new(0, 0x1ff));
    let r = Scalar::alu(AluOp::Sub, &byte, &k(1), false);
    // 0 - 1 underflows for the minimum only: unsigned unbounded; signed -1..254.
    assert_eq!((r.smin_value, r.smax_value), (-1, 254));
    assert_eq!((r.umin_value, r.umax_value), (0, u64::MAX));
    let r = Scalar::alu(AluOp::And, &Scalar::unknown(), &k(0xf0), false);
    assert_eq!((r.umin_value, r.umax_value), (0, 0xf0));
    assert_eq!(r.var_off, Tnum::new(0, 0xf0));
    let r = Scalar::alu(AluOp::Or, &byte, &k(0x100), false);
    assert_eq!((r.umin_value, r.umax_value), (0x100, 0x1ff));
    assert_eq!(Scalar::alu(AluOp::Add, &k(3), &k(4), true), k(7));
    assert_eq!(
        Scalar::alu(AluOp::Sub, &k(3), &k(4), true),
        Scalar::constant(0xffff_ffff)
    );
}
