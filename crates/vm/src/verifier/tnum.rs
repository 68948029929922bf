//! Tracked numbers (kernel/bpf/tnum.c, include/linux/tnum.h): what is known about
//! each bit of a value. A bit is known 0, known 1, or unknown (`mask` bit set);
//! every operation keeps every concrete result of concrete operands inside the
//! abstract result.

use std::fmt;

/// `struct tnum`: `value` holds the known bits (0 where unknown), `mask` the
/// unknown ones. Invariant: `value & mask == 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tnum {
    pub value: u64,
    pub mask: u64,
}

/// `a << n` as the kernel's u64 shift, 0 once the shift is the width or more (the
/// callers never shift that far; this keeps an out-of-range shift from panicking).
pub(crate) fn shl64(a: u64, n: u64) -> u64 {
    u32::try_from(n)
        .ok()
        .and_then(|n| a.checked_shl(n))
        .unwrap_or(0)
}

/// `a >> n` (logical), 0 once the shift is the width or more.
pub(crate) fn shr64(a: u64, n: u64) -> u64 {
    u32::try_from(n)
        .ok()
        .and_then(|n| a.checked_shr(n))
        .unwrap_or(0)
}

/// `a s>> n`, the sign filling in once the shift is the width or more.
pub(crate) fn sar64(a: i64, n: u64) -> i64 {
    a >> n.min(63)
}

/// `(s32)a s>> n`, the sign filling in once the shift is the width or more.
pub(crate) fn sar32(a: i32, n: u64) -> i32 {
    a >> n.min(31)
}

// The kernel's names (tnum_add, tnum_sub, ...), not the operator traits: a tnum
// operation is an over-approximation, not arithmetic.
#[allow(clippy::should_implement_trait)]
impl Tnum {
    /// `tnum_unknown`: nothing known.
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    /// `TNUM(v, m)`.
    pub const fn new(value: u64, mask: u64) -> Tnum {
        Tnum { value, mask }
    }

    /// `tnum_const`: every bit known.
    pub const fn const_(value: u64) -> Tnum {
        Tnum { value, mask: 0 }
    }

    /// `tnum_range`: the smallest tnum holding every value of `[min, max]`: the bits
    /// above the highest bit where min and max differ are known.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        // fls64: 1-based index of the highest set bit, 0 for 0.
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum::new(min & !delta, delta)
    }

    /// `tnum_lshift`.
    pub fn lshift(self, shift: u8) -> Tnum {
        Tnum::new(
            shl64(self.value, u64::from(shift)),
            shl64(self.mask, u64::from(shift)),
        )
    }

    /// `tnum_rshift`.
    pub fn rshift(self, shift: u8) -> Tnum {
        Tnum::new(
            shr64(self.value, u64::from(shift)),
            shr64(self.mask, u64::from(shift)),
        )
    }

    /// `tnum_arshift(a, min_shift, insn_bitness)`: an arithmetic shift of the
    /// 64-bit value, or of its low 32 bits as an s32 (the result zero-extended)
    /// when `insn_bitness` is 32. An unknown sign bit stays unknown in every bit
    /// it fills.
    pub fn arshift(self, min_shift: u8, insn_bitness: u8) -> Tnum {
        let n = u64::from(min_shift);
        if insn_bitness == 32 {
            Tnum::new(
                u64::from(sar32(self.value as u32 as i32, n) as u32),
                u64::from(sar32(self.mask as u32 as i32, n) as u32),
            )
        } else {
            Tnum::new(
                sar64(self.value as i64, n) as u64,
                sar64(self.mask as i64, n) as u64,
            )
        }
    }

    /// `tnum_add`: the carries of the unknown bits are unknown.
    pub fn add(self, b: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(b.mask);
        let sv = self.value.wrapping_add(b.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | b.mask;
        Tnum::new(sv & !mu, mu)
    }

    /// `tnum_sub`: the borrows of the unknown bits are unknown.
    pub fn sub(self, b: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(b.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(b.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | b.mask;
        Tnum::new(dv & !mu, mu)
    }

    /// `tnum_neg`: `0 - a`.
    pub fn neg(self) -> Tnum {
        Tnum::const_(0).sub(self)
    }

    /// `tnum_and`.
    pub fn and(self, b: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = b.value | b.mask;
        let v = self.value & b.value;
        Tnum::new(v, alpha & beta & !v)
    }

    /// `tnum_or`.
    pub fn or(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask | b.mask;
        Tnum::new(v, mu & !v)
    }

    /// `tnum_xor`.
    pub fn xor(self, b: Tnum) -> Tnum {
        let v = self.value ^ b.value;
        let mu = self.mask | b.mask;
        Tnum::new(v & !mu, mu)
    }

    /// `tnum_union`: every value of either operand.
    pub fn union(self, b: Tnum) -> Tnum {
        let v = self.value & b.value;
        let mu = (self.value ^ b.value) | self.mask | b.mask;
        Tnum::new(v & !mu, mu)
    }

    /// `tnum_mul` (6.18): long multiplication over the bits of `a`: a known 1 adds
    /// `b`, an unknown bit takes the union of adding and not adding it.
    pub fn mul(self, b: Tnum) -> Tnum {
        let mut a = self;
        let mut b = b;
        let mut acc = Tnum::const_(0);
        while a.value != 0 || a.mask != 0 {
            if a.value & 1 != 0 {
                acc = acc.add(b);
            } else if a.mask & 1 != 0 {
                acc = acc.union(acc.add(b));
            }
            a = a.rshift(1);
            b = b.lshift(1);
        }
        acc
    }

    /// `tnum_overlap` (6.18): whether the two can hold a common value, i.e. their
    /// bits known in both agree.
    pub fn overlap(a: Tnum, b: Tnum) -> bool {
        let mu = !a.mask & !b.mask;
        a.value & mu == b.value & mu
    }

    /// `tnum_intersect`: the bits known in either. Where the two disagree on a known
    /// bit the result says 1 (the operands had no common value).
    pub fn intersect(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask & b.mask;
        Tnum::new(v & !mu, mu)
    }

    /// `tnum_cast`: the low `size` bytes (size 8 or more keeps everything).
    pub fn cast(self, size: u8) -> Tnum {
        let m = shl64(1, u64::from(size) * 8).wrapping_sub(1);
        Tnum::new(self.value & m, self.mask & m)
    }

    /// `tnum_is_aligned`: every value is a multiple of `size` (a power of two).
    pub fn is_aligned(self, size: u64) -> bool {
        if size == 0 {
            return true;
        }
        (self.value | self.mask) & size.wrapping_sub(1) == 0
    }

    /// `tnum_in(a, b)`: every value of `b` is a value of `a`.
    pub fn in_(a: Tnum, b: Tnum) -> bool {
        if b.mask & !a.mask != 0 {
            return false;
        }
        a.value == b.value & !a.mask
    }

    /// Whether the concrete `x` is one of this tnum's values.
    pub fn contains(self, x: u64) -> bool {
        x & !self.mask == self.value
    }

    /// `tnum_is_const`.
    pub fn is_const(self) -> bool {
        self.mask == 0
    }

    /// `tnum_equals_const`.
    pub fn equals_const(self, b: u64) -> bool {
        self.is_const() && self.value == b
    }

    /// `tnum_is_unknown`.
    pub fn is_unknown(self) -> bool {
        self.mask == u64::MAX
    }

    /// `tnum_subreg`: the low 32 bits.
    pub fn subreg(self) -> Tnum {
        self.cast(4)
    }

    /// `tnum_clear_subreg`: the high 32 bits, the low ones known 0.
    pub fn clear_subreg(self) -> Tnum {
        self.rshift(32).lshift(32)
    }

    /// `tnum_with_subreg`: the high 32 bits of `self`, the low of `subreg`.
    pub fn with_subreg(self, subreg: Tnum) -> Tnum {
        self.clear_subreg().or(subreg.subreg())
    }

    /// `tnum_const_subreg`: the low 32 bits set to `value`.
    pub fn const_subreg(self, value: u32) -> Tnum {
        self.with_subreg(Tnum::const_(u64::from(value)))
    }

    /// `tnum_subreg_is_const`.
    pub fn subreg_is_const(self) -> bool {
        self.subreg().is_const()
    }

    /// `tnum_subreg_equals_const`.
    pub fn subreg_equals_const(self, b: u32) -> bool {
        self.subreg().equals_const(u64::from(b))
    }

    /// `tnum_bswap16`: the low two bytes swapped, the rest cleared.
    pub fn bswap16(self) -> Tnum {
        Tnum::new(
            u64::from((self.value as u16).swap_bytes()),
            u64::from((self.mask as u16).swap_bytes()),
        )
    }

    /// `tnum_bswap32`: the low four bytes swapped, the rest cleared.
    pub fn bswap32(self) -> Tnum {
        Tnum::new(
            u64::from((self.value as u32).swap_bytes()),
            u64::from((self.mask as u32).swap_bytes()),
        )
    }

    /// `tnum_bswap64`.
    pub fn bswap64(self) -> Tnum {
        Tnum::new(self.value.swap_bytes(), self.mask.swap_bytes())
    }

    /// `tnum_step(t, z)`: the smallest member of `t` greater than `z`; `t.value`
    /// (the smallest member) when `z` is below it, the largest member when `z`
    /// is at or above that. Every member is `value | s` for a submask `s` of
    /// `mask` (= `value + s`), so this increments `z - value` within the mask:
    /// the non-mask positions are filled with ones so the carry ripples
    /// through them.
    pub fn step(self, z: u64) -> u64 {
        let tmax = self.value | self.mask;
        if z >= tmax {
            return tmax;
        }
        if z < self.value {
            return self.value;
        }
        let d = z - self.value;
        // Below the highest non-mask one in d every position fills, so that one
        // cannot trap the carry.
        let fls = 64 - (d & !self.mask).leading_zeros();
        let carry_mask = shl64(1, u64::from(fls)).wrapping_sub(1);
        let filled = d | carry_mask | !self.mask;
        let inc = filled.wrapping_add(1) & self.mask;
        self.value | inc
    }

    /// `tnum_sbin`: 64 characters, `0`/`1`/`x` per bit, most significant first.
    pub fn sbin(self) -> String {
        (0..64)
            .rev()
            .map(|bit| {
                if (self.mask >> bit) & 1 != 0 {
                    'x'
                } else if (self.value >> bit) & 1 != 0 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect()
    }
}

/// `tnum_strn`: `(0x0; 0xff)`, as the verifier log prints `var_off=`. The
/// kernel's `%#llx` writes `0x0` for zero.
impl fmt::Display for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#x}; {:#x})", self.value, self.mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_keeps_the_common_high_bits() {
        assert_eq!(Tnum::range(0, 255), Tnum::new(0, 0xff));
        assert_eq!(Tnum::range(4, 7), Tnum::new(4, 3));
        assert_eq!(Tnum::range(16, 16), Tnum::const_(16));
        // chi = 0x10 ^ 0x13 = 3: two low bits unknown.
        assert_eq!(Tnum::range(0x10, 0x13), Tnum::new(0x10, 3));
        // chi = 8 ^ 9... 0x8 ^ 0x10 = 0x18: fls = 5, delta = 0x1f.
        assert_eq!(Tnum::range(8, 16), Tnum::new(0, 0x1f));
        assert_eq!(Tnum::range(0, u64::MAX), Tnum::UNKNOWN);
        assert_eq!(
            Tnum::range(1 << 63, u64::MAX),
            Tnum::new(1 << 63, (1 << 63) - 1)
        );
    }

    #[test]
    fn arithmetic_exact_values() {
        // (0; 3) + 1: sv = 1, sm = 3, sigma = 4, chi = 5, mu = 7 -> (0; 7).
        assert_eq!(Tnum::new(0, 3).add(Tnum::const_(1)), Tnum::new(0, 7));
        assert_eq!(Tnum::const_(5).add(Tnum::const_(7)), Tnum::const_(12));
        // (4; 3) - 1: dv = 3, alpha = 6, beta = 3, chi = 5, mu = 7 -> (0; 7).
        assert_eq!(Tnum::new(4, 3).sub(Tnum::const_(1)), Tnum::new(0, 7));
        assert_eq!(Tnum::const_(1).neg(), Tnum::const_(u64::MAX));
        assert_eq!(
            Tnum::new(0, 0xff).and(Tnum::const_(0x0f)),
            Tnum::new(0, 0x0f)
        );
        assert_eq!(
            Tnum::new(0, 0xff).or(Tnum::const_(0x100)),
            Tnum::new(0x100, 0xff)
        );
        assert_eq!(
            Tnum::new(0x10, 0x0f).xor(Tnum::const_(0x11)),
            Tnum::new(0, 0x0f)
        );
        assert_eq!(Tnum::const_(6).mul(Tnum::const_(7)), Tnum::const_(42));
        // (0; 1) * 3 = {0, 3}: acc = union(0, 3) = (0; 3).
        assert_eq!(Tnum::new(0, 1).mul(Tnum::const_(3)), Tnum::new(0, 3));
        assert_eq!(Tnum::new(0, 0xf).lshift(4), Tnum::new(0, 0xf0));
        assert_eq!(Tnum::new(0x80, 0x7f).rshift(4), Tnum::new(8, 7));
        assert_eq!(
            Tnum::new(0x8000_0000, 0x0f).arshift(4, 32),
            Tnum::new(0xf800_0000, 0)
        );
        assert_eq!(Tnum::new(0, 1 << 63).arshift(62, 64), Tnum::new(0, !1));
    }

    #[test]
    fn subreg_helpers() {
        let t = Tnum::new(0x10_0000_0010, 0xf_0000_000f);
        assert_eq!(t.subreg(), Tnum::new(0x10, 0xf));
        assert_eq!(t.clear_subreg(), Tnum::new(0x10_0000_0000, 0xf_0000_0000));
        assert_eq!(
            t.with_subreg(Tnum::const_(0xffff_ffff_0000_0005)),
            Tnum::new(0x10_0000_0005, 0xf_0000_0000)
        );
        assert_eq!(t.const_subreg(7), Tnum::new(0x10_0000_0007, 0xf_0000_0000));
        assert!(t.const_subreg(7).subreg_is_const());
        assert!(t.const_subreg(7).subreg_equals_const(7));
        assert_eq!(Tnum::UNKNOWN.cast(1), Tnum::new(0, 0xff));
        assert_eq!(Tnum::UNKNOWN.cast(8), Tnum::UNKNOWN);
    }

    #[test]
    fn predicates_and_formatting() {
        assert!(Tnum::in_(Tnum::new(0, 0xff), Tnum::new(0x10, 0x0f)));
        assert!(!Tnum::in_(Tnum::new(0, 0x0f), Tnum::new(0, 0xff)));
        assert!(!Tnum::in_(Tnum::new(0, 0xff), Tnum::const_(0x100)));
        assert!(Tnum::new(0x10, 0xf0).is_aligned(16));
        assert!(!Tnum::new(0x10, 0xf1).is_aligned(2));
        assert!(Tnum::UNKNOWN.is_aligned(0));
        assert!(Tnum::const_(3).equals_const(3));
        assert!(Tnum::UNKNOWN.is_unknown());
        assert_eq!(Tnum::new(0, 0xff).to_string(), "(0x0; 0xff)");
        assert_eq!(Tnum::new(5, 2).sbin(), format!("{}1x1", "0".repeat(61)));
        assert_eq!(Tnum::new(2, 0).intersect(Tnum::new(0, 3)), Tnum::const_(2));
        assert!(Tnum::overlap(Tnum::new(0x10, 0x0f), Tnum::const_(0x1f)));
        // t = x11100x0, z = 241 (11110001): the next member is 242 (11110010).
        let t = Tnum::new(0b0111_0000, 0b1000_0010);
        assert_eq!(t.step(241), 242);
        assert_eq!(t.step(0), 0b0111_0000);
        assert_eq!(t.step(255), 0b1111_0010);
        assert!(!Tnum::overlap(Tnum::new(0x10, 0x0f), Tnum::const_(0x2f)));
    }

    /// A tnum and one of its values.
    pub(crate) fn tnum_and_member() -> impl Strategy<Value = (Tnum, u64)> {
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(v, m, pick)| {
            let mask = m & (pick.rotate_left(17) | m.rotate_right(5));
            let value = v & !mask;
            (Tnum::new(value, mask), value | (pick & mask))
        })
    }

    proptest! {
        #[test]
        fn ops_are_sound((a, x) in tnum_and_member(), (b, y) in tnum_and_member(), s in 0u8..64) {
            prop_assert!(a.add(b).contains(x.wrapping_add(y)));
            prop_assert!(a.sub(b).contains(x.wrapping_sub(y)));
            prop_assert!(a.neg().contains(x.wrapping_neg()));
            prop_assert!(a.and(b).contains(x & y));
            prop_assert!(a.or(b).contains(x | y));
            prop_assert!(a.xor(b).contains(x ^ y));
            prop_assert!(a.mul(b).contains(x.wrapping_mul(y)));
            prop_assert!(a.union(b).contains(x) && a.union(b).contains(y));
            prop_assert!(a.lshift(s).contains(x << s));
            prop_assert!(a.rshift(s).contains(x >> s));
            prop_assert!(a.arshift(s, 64).contains(((x as i64) >> s) as u64));
            let s32 = s % 32;
            prop_assert!(a.arshift(s32, 32).contains(u64::from(((x as u32 as i32) >> s32) as u32)));
            prop_assert!(a.subreg().contains(x & 0xffff_ffff));
            prop_assert!(a.bswap16().contains(u64::from((x as u16).swap_bytes())));
            prop_assert!(a.bswap32().contains(u64::from((x as u32).swap_bytes())));
            prop_assert!(a.bswap64().contains(x.swap_bytes()));
            // tnum_step: a member, above z, and no member in between.
            let next = a.step(y);
            prop_assert!(a.contains(next));
            if y < (a.value | a.mask) {
                prop_assert!(next > y);
                if x > y {
                    prop_assert!(next <= x, "step({y:#x}) = {next:#x} skips member {x:#x} of {a:?}");
                }
            }
            prop_assert!(a.with_subreg(b).contains((x & !0xffff_ffff) | (y & 0xffff_ffff)));
            prop_assert!(Tnum::in_(a, Tnum::const_(x)));
            if a.contains(y) {
                prop_assert!(Tnum::overlap(a, b));
            }
            prop_assert!(Tnum::range(x.min(y), x.max(y)).contains(x));
            prop_assert!(Tnum::range(x.min(y), x.max(y)).contains(y));
            if b.contains(x) {
                prop_assert!(a.intersect(b).contains(x));
            }
            prop_assert_eq!(a.value & a.mask, 0);
            prop_assert_eq!(a.mul(b).value & a.mul(b).mask, 0);
        }
    }
}
