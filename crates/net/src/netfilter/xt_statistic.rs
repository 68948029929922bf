//! net/netfilter/xt_statistic.c: `-m statistic --mode random --probability
//! P` (a draw from the namespace's seeded generator, so a replay makes the
//! same choices) and `--mode nth --every N [--packet P]`.

/// The mode and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatisticMode {
    /// probability as the kernel stores it: P * 2^31 rounded (0x80000000 * P).
    Random { probability: u32 },
    /// As the kernel stores them: every = N - 1 (`--every N`), packet, and
    /// the running count (info->master->count), which starts at every - packet.
    Nth { every: u32, packet: u32, count: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtStatistic {
    pub mode: StatisticMode,
    pub invert: bool,
}

/// iptables' libxt_statistic: lround(0x80000000 * probability).
pub fn probability_from_f64(p: f64) -> u32 {
    (0x8000_0000u64 as f64 * p)
        .round()
        .clamp(0.0, u32::MAX as f64) as u32
}

impl XtStatistic {
    /// `--mode nth --every n --packet p` as libxt_statistic stores it.
    pub fn nth(n: u32, p: u32, invert: bool) -> XtStatistic {
        let every = n.saturating_sub(1);
        XtStatistic {
            mode: StatisticMode::Nth {
                every,
                packet: p,
                count: every.saturating_sub(p),
            },
            invert,
        }
    }

    /// statistic_mt: random: (get_random_u32() & 0x7FFFFFFF) < probability;
    /// nth: the count goes round 0..=every, matching when it wraps to 0
    /// (the kernel's atomic_cmpxchg loop, one thread here).
    pub fn matches(&mut self, rand: impl FnOnce() -> u32) -> bool {
        let m = match &mut self.mode {
            StatisticMode::Random { probability } => (rand() & 0x7FFF_FFFF) < *probability,
            StatisticMode::Nth { every, count, .. } => {
                let nval = if *count == *every {
                    0
                } else {
                    count.wrapping_add(1)
                };
                *count = nval;
                nval == 0
            }
        };
        m ^ self.invert
    }
}
