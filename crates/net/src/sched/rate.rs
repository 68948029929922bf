//! Rates and times as net/sched computes them: struct psched_ratecfg
//! (psched_ratecfg_precompute, psched_l2t_ns) and psched ticks (64 ns).

pub const NSEC_PER_SEC: u64 = 1_000_000_000;
/// include/net/pkt_sched.h: PSCHED_SHIFT — a psched tick is 64 ns.
pub const PSCHED_SHIFT: u32 = 6;

pub const fn psched_ticks2ns(ticks: u64) -> u64 {
    ticks << PSCHED_SHIFT
}

pub const fn psched_ns2ticks(ns: u64) -> u64 {
    ns >> PSCHED_SHIFT
}

/// struct psched_ratecfg: a rate in bytes/s with the mult/shift pair that
/// turns a length into nanoseconds without a division.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PschedRate {
    pub rate_bytes_ps: u64,
    pub mult: u32,
    pub shift: u8,
    pub overhead: u16,
    pub mpu: u16,
}

impl PschedRate {
    /// net/sched/sch_generic.c: psched_ratecfg_precompute.
    pub fn new(rate_bytes_ps: u64) -> PschedRate {
        let mut r = PschedRate {
            rate_bytes_ps,
            mult: 1,
            ..Default::default()
        };
        let mut factor: u64 = NSEC_PER_SEC;
        // A rate of 0 keeps mult 1, shift 0 (checked_div gives None).
        while let Some(mult) = factor.checked_div(rate_bytes_ps) {
            r.mult = mult.min(u32::MAX as u64) as u32;
            if mult & (1 << 31) != 0 || mult > u32::MAX as u64 || factor & (1 << 63) != 0 {
                break;
            }
            factor <<= 1;
            r.shift += 1;
        }
        r
    }

    /// include/net/sch_generic.h: psched_l2t_ns — time to send `len` bytes.
    pub fn l2t_ns(&self, len: u32) -> u64 {
        let mut len = len as u64 + self.overhead as u64;
        if len < self.mpu as u64 {
            len = self.mpu as u64;
        }
        (len * self.mult as u64) >> self.shift
    }

    /// net/sched/sch_generic.c: psched_ns_t2l — bytes sendable in `ns`.
    pub fn ns_t2l(&self, ns: u64) -> u64 {
        if self.rate_bytes_ps == 0 {
            return 0;
        }
        let len = (ns as u128 * self.rate_bytes_ps as u128 / NSEC_PER_SEC as u128) as u64;
        len.saturating_sub(self.overhead as u64)
    }
}

/// tc/tc_core.c with the kernel's ns clock (/proc/net/psched gives t2us
/// 1000, us2t 64, clock_res 1000000): a psched tick is 1000/64 us to tc.
const TICK_IN_USEC: f64 = 1000.0 / 64.0;

/// tc_core.c: tc_core_tick2time — psched ticks to microseconds.
pub fn tick2time(ticks: u64) -> f64 {
    ticks as f64 / TICK_IN_USEC
}

/// tc_core.c: tc_calc_xmitsize — bytes sendable at `rate` (bytes/s) in `ticks`.
pub fn xmitsize(rate: u64, ticks: u64) -> u64 {
    (rate as f64 * tick2time(ticks) / 1e6) as u64
}

/// tc_core.c: tc_calc_xmittime — psched ticks to send `size` bytes at
/// `rate` bytes/s (what tc puts in tc_htb_opt.buffer).
pub fn xmittime(rate: u64, size: u64) -> u32 {
    if rate == 0 {
        return 0;
    }
    let t = 1e6 * (size as f64 / rate as f64) * TICK_IN_USEC;
    t.min(u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratecfg_as_the_kernel_precomputes() {
        // 1mbit = 125000 B/s: 8000 ns a byte; mult/shift keep it exact.
        let r = PschedRate::new(125_000);
        assert_eq!(r.l2t_ns(1500), 12_000_000);
        assert_eq!(r.l2t_ns(1), 8_000);
        // 500kbit, htb's default burst of 1600 bytes: 25.6 ms = 400000 ticks.
        let r = PschedRate::new(62_500);
        assert_eq!(psched_ns2ticks(r.l2t_ns(1600)), 400_000);
        assert_eq!(r.ns_t2l(25_600_000), 1600);
    }
}
