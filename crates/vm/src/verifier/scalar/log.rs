//! The verifier log's form of a scalar (kernel/bpf/log.c: print_scalar_ranges,
//! print_reg_state, verbose_snum/verbose_unum).

use std::fmt::{self, Write};

use super::Scalar;

/// `verbose_unum`: decimal up to U16_MAX, else `%#llx`.
pub fn fmt_unum(out: &mut String, num: u64) {
    // Writing to a String cannot fail.
    let _ = if num <= u64::from(u16::MAX) {
        write!(out, "{num}")
    } else {
        write!(out, "{num:#x}")
    };
}

/// `is_snum_decimal`: within [S16_MIN, S16_MAX].
fn is_snum_decimal(num: i64) -> bool {
    (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&num)
}

/// `verbose_snum`: decimal within [S16_MIN, S16_MAX], else `%#llx` of the bits.
pub fn fmt_snum(out: &mut String, num: i64) {
    let _ = if is_snum_decimal(num) {
        write!(out, "{num}")
    } else {
        write!(out, "{:#x}", num as u64)
    };
}

impl Scalar {
    /// `print_scalar_ranges`: the bounds that are not the widest, equal ones
    /// of the same sign merged (`smin=umin=0`), each after `*sep` (then ",").
    pub fn fmt_ranges(&self, out: &mut String, sep: &mut &'static str) {
        let s32 = |v: i32| {
            if is_snum_decimal(i64::from(v)) {
                i64::from(v) as u64
            } else {
                u64::from(v as u32)
            }
        };
        let mut minmaxs: [(&str, u64, bool); 8] = [
            ("smin", self.smin_value as u64, self.smin_value == i64::MIN),
            ("smax", self.smax_value as u64, self.smax_value == i64::MAX),
            ("umin", self.umin_value, self.umin_value == 0),
            ("umax", self.umax_value, self.umax_value == u64::MAX),
            (
                "smin32",
                s32(self.s32_min_value),
                self.s32_min_value == i32::MIN,
            ),
            (
                "smax32",
                s32(self.s32_max_value),
                self.s32_max_value == i32::MAX,
            ),
            (
                "umin32",
                u64::from(self.u32_min_value),
                self.u32_min_value == 0,
            ),
            (
                "umax32",
                u64::from(self.u32_max_value),
                self.u32_max_value == u32::MAX,
            ),
        ];
        let is_neg = |name: &str, val: u64| name.starts_with('s') && (val as i64) < 0;
        for i in 0..minmaxs.len() {
            let (name, val, omit) = minmaxs[i];
            if omit {
                continue;
            }
            let neg1 = is_neg(name, val);
            out.push_str(sep);
            out.push_str(name);
            out.push('=');
            *sep = ",";
            for m2 in minmaxs.iter_mut().skip(i + 2).step_by(2) {
                if m2.2 || m2.1 != val || is_neg(m2.0, m2.1) != neg1 {
                    continue;
                }
                m2.2 = true;
                out.push_str(m2.0);
                out.push('=');
            }
            if name.starts_with('s') {
                fmt_snum(out, val as i64);
            } else {
                fmt_unum(out, val);
            }
        }
    }

    /// print_reg_state's form of a scalar register without id or precision
    /// mark: the value for a constant (`0`, `-1`, `0x10000`), else
    /// `scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))`.
    pub fn log_fmt(&self) -> String {
        let mut out = String::new();
        if let Some(v) = self.const_value() {
            fmt_snum(&mut out, v as i64);
            return out;
        }
        out.push_str("scalar(");
        let mut sep = "";
        self.fmt_body(&mut out, &mut sep);
        out.push(')');
        out
    }

    /// The part of print_reg_state inside the parentheses that a scalar (or a
    /// pointer's variable offset) contributes: `imm=` for a non-zero constant, else
    /// the ranges and `var_off=` unless it is unknown.
    pub fn fmt_body(&self, out: &mut String, sep: &mut &'static str) {
        if let Some(v) = self.const_value() {
            if v != 0 {
                out.push_str(sep);
                out.push_str("imm=");
                *sep = ",";
                fmt_snum(out, v as i64);
            }
            return;
        }
        self.fmt_ranges(out, sep);
        if !self.var_off.is_unknown() {
            let _ = write!(out, "{sep}var_off={}", self.var_off);
            *sep = ",";
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.log_fmt())
    }
}
