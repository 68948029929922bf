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

#[test]
fn add_overflow_of_both_ends_keeps_the_wrapped_range() {
    // umin and umax both overflow: the wrapped range [0, 1] holds.
    let a = Scalar::urange(u64::MAX - 1, u64::MAX);
    assert_eq!(
        Scalar::alu(AluOp::Add, &a, &k(2), false),
        Scalar::urange(0, 1)
    );
    // The same in 32 bits, zero-extended.
    let w = Scalar::urange(0xffff_fff0, 0xffff_ffff);
    assert_eq!(
        Scalar::alu(AluOp::Add, &w, &k(0x20), true),
        Scalar::urange(0x10, 0x1f)
    );
}

#[test]
fn mul_of_ranges() {
    // tnum_mul((2; 1), (4; 1)) = (8; 7); bounds [2*4, 3*5].
    let r = Scalar::alu(
        AluOp::Mul,
        &Scalar::urange(2, 3),
        &Scalar::urange(4, 5),
        false,
    );
    assert_eq!(r, Scalar::urange(8, 15));
}

#[test]
fn neg_of_a_range() {
    let r = Scalar::alu(AluOp::Neg, &Scalar::urange(1, 5), &Scalar::unknown(), false);
    assert_eq!((r.smin_value, r.smax_value), (-5, -1));
    assert_eq!((r.umin_value, r.umax_value), (-5i64 as u64, u64::MAX));
    assert_eq!((r.s32_min_value, r.s32_max_value), (-5, -1));
    assert_eq!(
        (r.u32_min_value, r.u32_max_value),
        (0xffff_fffb, 0xffff_ffff)
    );
    assert_eq!(r.var_off, Tnum::new(0xffff_ffff_ffff_fff8, 7));
    assert_eq!(
        r.log_fmt(),
        "scalar(smin=smin32=-5,smax=smax32=-1,umin=0xfffffffffffffffb,umin32=0xfffffffb,\
         var_off=(0xfffffffffffffff8; 0x7))"
    );
}

#[test]
fn shifts() {
    let byte = Scalar::urange(0, 255);
    let mut by8 = Scalar::urange(0, 0xff00);
    by8.var_off = Tnum::new(0, 0xff00);
    assert_eq!(Scalar::alu(AluOp::Lsh, &byte, &k(8), false), by8);
    // The `<<32 s>>32` sign-extension idiom on a non-negative s32 keeps bounds.
    let hi = Scalar::alu(AluOp::Lsh, &Scalar::urange(1, 5), &k(32), false);
    assert_eq!((hi.umin_value, hi.umax_value), (1 << 32, 5 << 32));
    assert_eq!((hi.smin_value, hi.smax_value), (1 << 32, 5 << 32));
    assert_eq!(
        (
            hi.u32_min_value,
            hi.u32_max_value,
            hi.s32_min_value,
            hi.s32_max_value
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(hi.var_off, Tnum::new(0, 7 << 32));
    assert_eq!(
        Scalar::alu(AluOp::Arsh, &hi, &k(32), false),
        Scalar::urange(1, 5)
    );
    assert_eq!(
        Scalar::alu(AluOp::Rsh, &Scalar::unknown(), &k(60), false),
        Scalar::urange(0, 15)
    );
    // The kernel gives up on non-constant amounts and amounts >= the width.
    assert_eq!(
        Scalar::alu(AluOp::Lsh, &byte, &k(64), false),
        Scalar::unknown()
    );
    assert_eq!(
        Scalar::alu(AluOp::Lsh, &byte, &k(32), true),
        Scalar::unknown()
    );
    assert_eq!(
        Scalar::alu(AluOp::Rsh, &byte, &byte, false),
        Scalar::unknown()
    );
    // 32-bit: w = 0x80000000 s>> 4 = 0xf8000000, zero-extended.
    assert_eq!(
        Scalar::alu(AluOp::Arsh, &k(0x8000_0000), &k(4), true),
        Scalar::constant(0xf800_0000)
    );
}

#[test]
fn untracked_ops_are_unknown_in_64_bits() {
    let byte = Scalar::urange(0, 255);
    for op in [AluOp::Div, AluOp::Mod] {
        assert_eq!(Scalar::alu(op, &byte, &k(3), false), Scalar::unknown());
        // adjust_scalar_min_max_vals returns before zext_32_to_64.
        assert_eq!(Scalar::alu(op, &byte, &k(3), true), Scalar::unknown());
    }
    // Byte swaps permute the tnum (as the running 6.18 kernel logs be32 of a byte).
    let be32 = Scalar::alu(AluOp::End { to_be: true }, &byte, &k(32), true);
    assert_eq!(
        be32.log_fmt(),
        "scalar(smin=0,smax=umax=umax32=0xff000000,smax32=0x7f000000,var_off=(0x0; 0xff000000))"
    );
    let le64 = Scalar::alu(
        AluOp::End { to_be: false },
        &Scalar::unknown(),
        &k(64),
        true,
    );
    assert_eq!(le64, Scalar::unknown());
    // mov copies; a 32-bit mov zero-extends.
    assert_eq!(Scalar::alu(AluOp::Mov, &byte, &k(-1), false), k(-1));
    assert_eq!(
        Scalar::alu(AluOp::Mov, &byte, &k(-1), true),
        Scalar::constant(0xffff_ffff)
    );
}

#[test]
fn narrowing_and_sign_extension() {
    let mut u = Scalar::unknown();
    u.coerce_to_size(1);
    assert_eq!(u, Scalar::urange(0, 255));
    let mut c = Scalar::constant(0x1_2345_6789);
    c.coerce_to_size(4);
    assert_eq!(c, Scalar::constant(0x2345_6789));
    let mut s = Scalar::unknown();
    s.coerce_to_size_sx(1);
    assert_eq!(
        (s.smin_value, s.smax_value, s.s32_min_value, s.s32_max_value),
        (-128, 127, -128, 127)
    );
    assert_eq!(
        (s.umin_value, s.umax_value, s.var_off),
        (0, u64::MAX, Tnum::UNKNOWN)
    );
    let mut f = Scalar::constant(0xff);
    f.coerce_to_size_sx(1);
    assert_eq!(f, k(-1));
    // [0x10, 0x7f] sign-extends to itself.
    let mut p = Scalar::urange(0x10, 0x7f);
    p.coerce_to_size_sx(1);
    assert_eq!(
        (p.smin_value, p.smax_value, p.var_off),
        (0x10, 0x7f, Tnum::new(0, 0x7f))
    );
    let mut w = Scalar::constant(0x80);
    w.coerce_subreg_to_size_sx(1);
    w.zext_32_to_64();
    w.sync();
    assert_eq!(w, Scalar::constant(0xffff_ff80));
}

#[test]
fn branch_prediction() {
    let byte = Scalar::urange(0, 255);
    assert_eq!(
        is_branch_taken(JmpOp::Jgt, &byte, &k(255), false),
        Some(false)
    );
    assert_eq!(is_branch_taken(JmpOp::Jge, &byte, &k(0), false), Some(true));
    assert_eq!(is_branch_taken(JmpOp::Jgt, &byte, &k(254), false), None);
    assert_eq!(
        is_branch_taken(JmpOp::Jeq, &Scalar::urange(0, 10), &k(20), false),
        Some(false)
    );
    assert_eq!(
        is_branch_taken(JmpOp::Jne, &Scalar::urange(0, 10), &k(20), false),
        Some(true)
    );
    assert_eq!(
        is_branch_taken(JmpOp::Jslt, &k(-1), &k(0), false),
        Some(true)
    );
    assert_eq!(
        is_branch_taken(JmpOp::Jlt, &k(-1), &k(0), false),
        Some(false)
    );
    let bits = Scalar::urange(0x10, 0x1f);
    assert_eq!(
        is_branch_taken(JmpOp::Jset, &bits, &k(0x10), false),
        Some(true)
    );
    assert_eq!(
        is_branch_taken(JmpOp::Jset, &bits, &k(0x100), false),
        Some(false)
    );
    assert_eq!(is_branch_taken(JmpOp::Jset, &bits, &k(1), false), None);
    // In range, but the tnum's known low bits (0) rule 5 out (tnum_overlap).
    let high_nibble = Scalar::alu(AluOp::And, &Scalar::unknown(), &k(0xf0), false);
    assert_eq!(
        is_branch_taken(JmpOp::Jeq, &high_nibble, &k(5), false),
        Some(false)
    );
    assert_eq!(
        is_branch_taken(JmpOp::Jne, &high_nibble, &k(5), false),
        Some(true)
    );
    assert_eq!(
        is_branch_taken(JmpOp::Jeq, &high_nibble, &k(0x50), false),
        None
    );
    let wide = Scalar::constant(0x1_0000_0005);
    assert_eq!(is_branch_taken(JmpOp::Jeq, &wide, &k(5), true), Some(true));
    assert_eq!(
        is_branch_taken(JmpOp::Jeq, &wide, &k(5), false),
        Some(false)
    );
}

#[test]
fn branch_refinement() {
    let (mut a, mut b) = (Scalar::unknown(), k(10));
    refine(JmpOp::Jgt, &mut a, &mut b, false, true);
    assert_eq!(a.log_fmt(), "scalar(umin=11)");
    assert_eq!(b, k(10));
    let (mut a, mut b) = (Scalar::unknown(), k(10));
    refine(JmpOp::Jgt, &mut a, &mut b, false, false);
    assert_eq!(a, Scalar::urange(0, 10));
    assert_eq!(
        a.log_fmt(),
        "scalar(smin=smin32=0,smax=umax=smax32=umax32=10,var_off=(0x0; 0xf))"
    );
    // if w1 s< 0: the low half is negative.
    let (mut a, mut b) = (Scalar::unknown(), k(0));
    refine(JmpOp::Jslt, &mut a, &mut b, true, true);
    assert_eq!((a.s32_min_value, a.s32_max_value), (i32::MIN, -1));
    assert_eq!((a.u32_min_value, a.u32_max_value), (0x8000_0000, u32::MAX));
    // JEQ against a constant makes it constant.
    let (mut a, mut b) = (Scalar::urange(0, 255), k(7));
    refine(JmpOp::Jeq, &mut a, &mut b, false, true);
    assert_eq!(a, k(7));
    // JNE against the edge of the range moves it.
    let (mut a, mut b) = (Scalar::urange(0, 255), k(0));
    refine(JmpOp::Jne, &mut a, &mut b, false, true);
    assert_eq!(a, Scalar::urange(1, 255));
    // JSET with one bit sets it; its fall-through clears the tested bits.
    let (mut a, mut b) = (Scalar::urange(0, 255), k(0x80));
    refine(JmpOp::Jset, &mut a, &mut b, false, true);
    assert_eq!(a, Scalar::urange(0x80, 0xff));
    let (mut a, mut b) = (Scalar::urange(0, 255), k(0xf0));
    refine(JmpOp::Jset, &mut a, &mut b, false, false);
    assert_eq!(a, Scalar::urange(0, 0xf));
}

#[test]
fn sign_crossing_deduction() {
    // s64 [-16, 0x100] crossing the sign boundary, u64 [0x80, MAX - 1]: the
    // u64 range meets both ends, nothing learned ...
    let mut s = Scalar::unknown();
    (s.smin_value, s.smax_value, s.umin_value, s.umax_value) = (-16, 0x100, 0x80, u64::MAX - 1);
    s.sync();
    assert_eq!(
        (s.smin_value, s.smax_value, s.umin_value, s.umax_value),
        (-16, 0x100, 0x80, u64::MAX - 1)
    );
    // ... u64 [0x80, 0x1000] meets only the non-negative end: [0x80, 0x100].
    s.umax_value = 0x1000;
    s.sync();
    assert_eq!(
        (s.smin_value, s.smax_value, s.umin_value, s.umax_value),
        (0x80, 0x100, 0x80, 0x100)
    );
}

#[test]
fn log_forms() {
    assert_eq!(k(0).log_fmt(), "0");
    assert_eq!(k(-1).to_string(), "-1");
    assert_eq!(k(32767).log_fmt(), "32767");
    assert_eq!(k(0x10000).log_fmt(), "0x10000");
    assert_eq!(k(-32769).log_fmt(), "0xffffffffffff7fff");
    assert_eq!(Scalar::unknown().log_fmt(), "scalar()");
    assert_eq!(
        Scalar::urange(0, 255).log_fmt(),
        "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
    );
    assert_eq!(
        Scalar::urange(0, 0xffff_ffff).log_fmt(),
        "scalar(smin=0,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff))"
    );
    // A pointer's offset: `imm=` for a constant, nothing for zero.
    let (mut out, mut sep) = (String::new(), "");
    k(8).fmt_body(&mut out, &mut sep);
    assert_eq!((out.as_str(), sep), ("imm=8", ","));
}

#[test]
fn sanity_check_reports_the_kernel_message() {
    let mut s = Scalar::urange(0, 10);
    s.umin_value = 11;
    assert_eq!(
        s.sanity_check("alu"),
        Err(
            "verifier bug: REG INVARIANTS VIOLATION (alu): range bounds violation \
             u64=[0xb, 0xa] s64=[0x0, 0xa] u32=[0x0, 0xa] s32=[0x0, 0xa] var_off=(0x0, 0xf)"
                .to_string()
        )
    );
    let mut c = k(5);
    c.umax_value = 6;
    assert!(c
        .sanity_check("x")
        .unwrap_err()
        .contains("const tnum out of sync with range bounds"));
    assert_eq!(Scalar::urange(3, 9).sanity_check("x"), Ok(()));
}

#[test]
fn pruning_comparison() {
    let wide = Scalar::urange(0, 255);
    let narrow = Scalar::urange(16, 31);
    assert!(Scalar::within(&wide, &narrow));
    assert!(!Scalar::within(&narrow, &wide));
    assert!(Scalar::range_within(&Scalar::unknown(), &wide));
    // In range but not in the tnum: 0x100 is outside (0x0; 0xff).
    let mut odd = Scalar::urange(0, 0x1ff);
    odd.var_off = Tnum::new(0, 0x1ff);
    assert!(!Scalar::within(&wide, &odd));
}

/// A state reg_bounds_sync leaves that a second reg_bounds_sync still tightens:
/// the last __update_reg_bounds lowers umax from var_off, after which the
/// u32 -> u64 step of __reg_deduce_mixed_bounds applies again. The kernel runs
/// it once per operation, as the interpreter must.
#[test]
fn sync_is_not_idempotent_in_the_kernel() {
    let once = Scalar {
        var_off: Tnum::new(0, 841_874_130_600_053),
        smin_value: 0,
        smax_value: 656_310_680_944_640,
        umin_value: 0,
        umax_value: 656_310_680_944_640,
        s32_min_value: 0,
        s32_max_value: 411_041_909,
        u32_min_value: 0,
        u32_max_value: 411_041_909,
    };
    let mut twice = once;
    twice.sync();
    assert_eq!(
        (twice.umax_value, twice.smax_value),
        (656_310_068_576_373, 656_310_068_576_373)
    );
    let mut thrice = twice;
    thrice.sync();
    assert_eq!(thrice, twice);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A concrete value, biased to the edges the bounds logic cares about.
    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            0u64..300,
            (0u64..300).prop_map(|v| v.wrapping_neg()),
            (0u64..64, 0u64..4).prop_map(|(s, d)| (1u64 << s).wrapping_add(d).wrapping_sub(2)),
            (any::<u32>(), 0u64..4).prop_map(|(lo, hi)| (hi << 32) | u64::from(lo)),
            (0u64..300, any::<bool>()).prop_map(|(v, n)| if n {
                (0xffff_ffffu64 << 32) | v.wrapping_neg() & 0xffff_ffff
            } else {
                0x8000_0000u64.wrapping_add(v).wrapping_sub(150)
            }),
        ]
    }

    /// A distance, mostly small.
    fn delta() -> impl Strategy<Value = u64> {
        (any::<u64>(), 0u32..64).prop_map(|(d, s)| d >> s)
    }

    /// A scalar built around the member `x`: a tnum holding it and bounds of
    /// each kind around it, synced (as every state the verifier keeps is).
    pub(crate) fn scalar_with_member() -> impl Strategy<Value = (Scalar, u64)> {
        (
            value(),
            prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), delta()],
            [
                delta(),
                delta(),
                delta(),
                delta(),
                delta(),
                delta(),
                delta(),
                delta(),
            ],
            any::<u8>(),
        )
            .prop_map(|(x, mask, d, which)| {
                let mut s = Scalar::unknown();
                s.var_off = Tnum::new(x & !mask, mask);
                if which & 1 != 0 {
                    s.umin_value = x.saturating_sub(d[0]);
                    s.umax_value = x.saturating_add(d[1]);
                }
                if which & 2 != 0 {
                    s.smin_value = (x as i64).saturating_sub(d[2] as i64 & i64::MAX);
                    s.smax_value = (x as i64).saturating_add(d[3] as i64 & i64::MAX);
                }
                if which & 4 != 0 {
                    s.u32_min_value = (x as u32).saturating_sub(d[4] as u32);
                    s.u32_max_value = (x as u32).saturating_add(d[5] as u32);
                }
                if which & 8 != 0 {
                    s.s32_min_value = (x as i32).saturating_sub(d[6] as i32 & i32::MAX);
                    s.s32_max_value = (x as i32).saturating_add(d[7] as i32 & i32::MAX);
                }
                if which & 0x30 == 0x30 {
                    s = Scalar::constant(x);
                }
                s.sync();
                (s, x)
            })
    }

    const ALU_OPS: [AluOp; 13] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Neg,
        AluOp::Mod,
        AluOp::Xor,
        AluOp::Mov,
        AluOp::Arsh,
    ];

    const JMP_OPS: [JmpOp; 12] = [
        JmpOp::Jeq,
        JmpOp::Jgt,
        JmpOp::Jge,
        JmpOp::Jset,
        JmpOp::Jne,
        JmpOp::Jsgt,
        JmpOp::Jsge,
        JmpOp::Jlt,
        JmpOp::Jle,
        JmpOp::Jslt,
        JmpOp::Jsle,
        JmpOp::JsetNot,
    ];

    /// What the instruction computes on concrete values (the interpreter's
    /// semantics; byte swaps are in `byte_swap_is_sound`).
    fn concrete(op: AluOp, x: u64, y: u64, alu32: bool) -> Option<u64> {
        if alu32 {
            let (a, b) = (x as u32, y as u32);
            let r = match op {
                AluOp::Add => a.wrapping_add(b),
                AluOp::Sub => a.wrapping_sub(b),
                AluOp::Mul => a.wrapping_mul(b),
                AluOp::Div => a.checked_div(b).unwrap_or(0),
                AluOp::Mod => a.checked_rem(b).unwrap_or(a),
                AluOp::Or => a | b,
                AluOp::And => a & b,
                AluOp::Xor => a ^ b,
                AluOp::Lsh => a << (b & 31),
                AluOp::Rsh => a >> (b & 31),
                AluOp::Arsh => ((a as i32) >> (b & 31)) as u32,
                AluOp::Neg => a.wrapping_neg(),
                AluOp::Mov => b,
                AluOp::End { .. } => return None,
            };
            return Some(u64::from(r));
        }
        Some(match op {
            AluOp::Add => x.wrapping_add(y),
            AluOp::Sub => x.wrapping_sub(y),
            AluOp::Mul => x.wrapping_mul(y),
            AluOp::Div => x.checked_div(y).unwrap_or(0),
            AluOp::Mod => x.checked_rem(y).unwrap_or(x),
            AluOp::Or => x | y,
            AluOp::And => x & y,
            AluOp::Xor => x ^ y,
            AluOp::Lsh => x << (y & 63),
            AluOp::Rsh => x >> (y & 63),
            AluOp::Arsh => ((x as i64) >> (y & 63)) as u64,
            AluOp::Neg => x.wrapping_neg(),
            AluOp::Mov => y,
            AluOp::End { .. } => return None,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn generated_scalars_hold_their_member((s, x) in scalar_with_member()) {
            prop_assert!(s.contains(x), "{s:?} lost {x:#x}");
            prop_assert_eq!(s.sanity_check("test"), Ok(()));
        }

        #[test]
        fn sync_is_sound_and_never_widens((s, x) in scalar_with_member(), extra in any::<u64>()) {
            // A state fresh from an operation: var_off narrowed, bounds not yet synced.
            let mut raw = s;
            raw.var_off = raw.var_off.and(Tnum::new(x | extra, !(x | extra) & extra.rotate_left(7)).or(Tnum::const_(x)));
            prop_assume!(raw.contains(x));
            let mut once = raw;
            once.sync();
            prop_assert!(once.contains(x), "{raw:?} -> {once:?} lost {x:#x}");
            prop_assert!(Tnum::in_(raw.var_off, once.var_off), "{raw:?} widened to {once:?}");
            let mut b32 = once;
            (b32.umin_value, b32.umax_value, b32.smin_value, b32.smax_value) =
                (raw.umin_value, raw.umax_value, raw.smin_value, raw.smax_value);
            prop_assert!(Scalar::range_within(&raw, &b32), "{raw:?} widened to {once:?}");
            // The 64-bit bounds never widen, except where the kernel's
            // sign-extension rule (__reg_deduce_mixed_bounds) replaces them with
            // the non-negative s32 range.
            let sext_rule = once.smin_value >= 0 && once.smax_value <= i64::from(i32::MAX);
            prop_assert!(sext_rule || Scalar::range_within(&raw, &once), "{raw:?} widened to {once:?}");
            // The kernel's reg_bounds_sync is not idempotent (a second round can
            // still tighten, see `sync_is_not_idempotent_in_the_kernel`), but a
            // second sync keeps every value and only narrows.
            let mut twice = once;
            twice.sync();
            prop_assert!(twice.contains(x));
            prop_assert!(Scalar::within(&once, &twice), "{once:?} widened to {twice:?}");
        }

        #[test]
        fn alu_is_sound((a, x) in scalar_with_member(), (b, y) in scalar_with_member(), alu32 in any::<bool>()) {
            for op in ALU_OPS {
                let Some(r) = concrete(op, x, y, alu32) else { continue };
                let res = Scalar::alu(op, &a, &b, alu32);
                prop_assert!(res.contains(r), "{op:?} alu32={alu32} {a:?} ({x:#x}) {b:?} ({y:#x}) = {r:#x} not in {res:?}");
                prop_assert_eq!(res.sanity_check("alu"), Ok(()));
            }
        }

        #[test]
        fn alu_with_constant_source_is_sound((a, x) in scalar_with_member(), y in value(), alu32 in any::<bool>()) {
            let b = Scalar::constant(y);
            for op in ALU_OPS {
                let Some(r) = concrete(op, x, y, alu32) else { continue };
                let res = Scalar::alu(op, &a, &b, alu32);
                prop_assert!(res.contains(r), "{op:?} alu32={alu32} {a:?} ({x:#x}) {y:#x} = {r:#x} not in {res:?}");
            }
        }

        #[test]
        fn byte_swap_is_sound((a, x) in scalar_with_member(), bits in prop_oneof![Just(16u64), Just(32), Just(64)]) {
            // le (BPF_ALU, to_le): truncation on a little-endian host.
            let le = match bits { 16 => x & 0xffff, 32 => x & 0xffff_ffff, _ => x };
            let swapped = match bits {
                16 => u64::from((x as u16).swap_bytes()),
                32 => u64::from((x as u32).swap_bytes()),
                _ => x.swap_bytes(),
            };
            let width = Scalar::constant(bits);
            for (to_be, alu32, want) in [(false, true, le), (true, true, swapped), (false, false, swapped)] {
                let res = Scalar::alu(AluOp::End { to_be }, &a, &width, alu32);
                prop_assert!(res.contains(want), "end to_be={to_be} alu32={alu32} {bits}: {a:?} ({x:#x}) -> {res:?} lost {want:#x}");
                prop_assert_eq!(res.sanity_check("alu"), Ok(()));
            }
        }

        #[test]
        fn branches_are_sound((a, x) in scalar_with_member(), (b, y) in scalar_with_member(), jmp32 in any::<bool>(), same in any::<bool>()) {
            let (b, y) = if same { (Scalar::constant(y), y) } else { (b, y) };
            for op in JMP_OPS {
                let holds = op.eval(x, y, jmp32);
                let pred = is_branch_taken(op, &a, &b, jmp32);
                prop_assert!(pred.is_none() || pred == Some(holds), "{op:?} jmp32={jmp32} {a:?} ({x:#x}) {b:?} ({y:#x}) holds={holds} predicted {pred:?}");
                let (mut a2, mut b2) = (a, b);
                refine(op, &mut a2, &mut b2, jmp32, holds);
                prop_assert!(a2.contains(x), "{op:?} jmp32={jmp32} taken={holds}: {a:?} -> {a2:?} lost {x:#x} (other {b:?} {y:#x})");
                prop_assert!(b2.contains(y), "{op:?} jmp32={jmp32} taken={holds}: {b:?} -> {b2:?} lost {y:#x} (other {a:?} {x:#x})");
                // Where the kernel refines at all (the branch undecided), nothing
                // widens but the JSET fall-through, which forgets the ranges
                // before narrowing the tnum (and the sign-extension rule, as in
                // sync).
                let refined_op = if holds { op } else { op.rev() };
                if pred.is_none() && refined_op != JmpOp::JsetNot {
                    for (old, new) in [(&a, &a2), (&b, &b2)] {
                        let sext_rule = new.smin_value >= 0 && new.smax_value <= i64::from(i32::MAX);
                        prop_assert!(Tnum::in_(old.var_off, new.var_off));
                        prop_assert!(sext_rule || Scalar::range_within(old, new), "{op:?} taken={holds} {old:?} widened to {new:?}");
                    }
                }
                prop_assert_eq!(a2.sanity_check("true_reg1"), Ok(()));
                prop_assert_eq!(b2.sanity_check("true_reg2"), Ok(()));
                // A register compared with itself.
                let holds_same = op.eval(x, x, jmp32);
                let same_pred = is_branch_taken_same_reg(op, &a, jmp32);
                prop_assert!(same_pred.is_none() || same_pred == Some(holds_same));
                let (mut t, mut f) = (a, a);
                if same_pred.is_none() {
                    reg_set_min_max_same_reg(op, &mut t, &mut f, jmp32);
                    let kept = if holds_same { t } else { f };
                    prop_assert!(kept.contains(x), "{op:?} same reg taken={holds_same}: {a:?} -> {kept:?} lost {x:#x}");
                }
            }
        }

        #[test]
        fn coercions_are_sound((a, x) in scalar_with_member(), size in prop_oneof![Just(1u8), Just(2), Just(4), Just(8)]) {
            let mut z = a;
            z.coerce_to_size(size);
            let m = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
            prop_assert!(z.contains(x & m), "zext {size}: {a:?} -> {z:?} lost {:#x}", x & m);
            let mut s = a;
            s.coerce_to_size_sx(size);
            let sx = match size { 1 => x as u8 as i8 as u64, 2 => x as u16 as i16 as u64, 4 => x as u32 as i32 as u64, _ => x };
            prop_assert!(s.contains(sx), "sext {size}: {a:?} -> {s:?} lost {sx:#x}");
            if size <= 2 {
                let mut w = a;
                w.coerce_subreg_to_size_sx(size);
                w.zext_32_to_64();
                w.sync();
                let wx = u64::from(if size == 1 { x as u8 as i8 as i32 as u32 } else { x as u16 as i16 as i32 as u32 });
                prop_assert!(w.contains(wx), "w sext {size}: {a:?} -> {w:?} lost {wx:#x}");
            }
        }

        #[test]
        fn within_means_every_value_inside((old, x) in scalar_with_member(), (cur, y) in scalar_with_member()) {
            prop_assert!(Scalar::within(&old, &old));
            prop_assert!(Scalar::within(&Scalar::unknown(), &old));
            if Scalar::within(&old, &cur) {
                prop_assert!(old.contains(y));
            }
            let _ = x;
        }
    }
}
