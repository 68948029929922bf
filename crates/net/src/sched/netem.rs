//! net/sched/sch_netem.c: netem — delay (with jitter from a distribution
//! table or uniform), loss, duplication, corruption, reordering (every
//! `gap`-th packet or with a probability) and a rate, each with its
//! correlation (get_crandom). Its random numbers are the kernel's
//! prandom_u32_state seeded from `seed` (TCA_NETEM_PRNG_SEED), so a run is
//! reproducible; packets wait in a time-ordered queue (tfifo) for their
//! time_to_send.

use std::collections::{BTreeMap, VecDeque};

use super::dump::{rate_str, time_ns_str};
use super::rate::NSEC_PER_SEC;
use super::{Dump, EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats, Refused};
use crate::core::skb::copy_skb_meta;
use crate::core::{errno, DatapathError, Pkt, EINVAL};

/// include/uapi/linux/pkt_sched.h: NETEM_DIST_SCALE.
pub const NETEM_DIST_SCALE: i64 = 8192;
/// The seed when none is given (the kernel takes get_random_u64()).
pub const NETEM_DEFAULT_SEED: u64 = 0x5eed_0000_0000_0001;

/// The attributes q_netem.c sends. Probabilities and correlations are
/// fractions of u32::MAX, as tc scales percentages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetemOptions {
    pub latency_ns: u64,
    pub jitter_ns: u64,
    pub delay_corr: u32,
    /// The delay distribution's table (normal.dist ...), with its name.
    pub dist: Option<(String, Vec<i16>)>,
    /// Packets (default 1000).
    pub limit: u32,
    pub loss: u32,
    pub loss_corr: u32,
    pub gap: u32,
    pub duplicate: u32,
    pub dup_corr: u32,
    pub reorder: u32,
    pub reorder_corr: u32,
    pub corrupt: u32,
    pub corrupt_corr: u32,
    /// bytes/s, 0 for none
    pub rate: u64,
    pub packet_overhead: i32,
    pub cell_size: u32,
    pub cell_overhead: i32,
    pub seed: Option<u64>,
}

/// lib/random32.c: struct rnd_state and prandom_u32_state (taus113).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RndState {
    s: [u32; 4],
}

impl RndState {
    /// include/linux/prandom.h: prandom_seed_state.
    pub fn seeded(seed: u64) -> RndState {
        let i = ((seed >> 32) ^ (seed << 10) ^ seed) as u32;
        let f = |m: u32| if i < m { i + m } else { i };
        RndState {
            s: [f(2), f(8), f(16), f(128)],
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        fn taus(s: u32, a: u32, b: u32, c: u32, d: u32) -> u32 {
            ((s & c) << d) ^ (((s << a) ^ s) >> b)
        }
        self.s[0] = taus(self.s[0], 6, 13, 4294967294, 18);
        self.s[1] = taus(self.s[1], 2, 27, 4294967288, 2);
        self.s[2] = taus(self.s[2], 13, 21, 4294967280, 7);
        self.s[3] = taus(self.s[3], 3, 12, 4294967168, 13);
        self.s[0] ^ self.s[1] ^ self.s[2] ^ self.s[3]
    }
}

/// struct crndstate: a correlated random source (rho 0: uncorrelated).
#[derive(Clone, Copy, Debug, Default)]
struct Crnd {
    last: u32,
    rho: u32,
}

/// sch_netem.c: get_crandom. (The kernel starts `last` from
/// get_random_u32(); skiff from 0, so runs repeat.)
fn get_crandom(st: &mut Crnd, p: &mut RndState) -> u32 {
    let value = p.next_u32() as u64;
    if st.rho == 0 {
        return value as u32;
    }
    let rho = st.rho as u64 + 1;
    let answer = ((value * ((1u64 << 32) - rho) + st.last as u64 * rho) >> 32) as u32;
    st.last = answer;
    answer
}

pub(crate) struct Netem {
    o: NetemOptions,
    jitter: i64,
    prng: RndState,
    delay_cor: Crnd,
    loss_cor: Crnd,
    dup_cor: Crnd,
    reorder_cor: Crnd,
    corrupt_cor: Crnd,
    counter: u32,
    /// sch->q: reordered packets, sent first.
    head: VecDeque<Pkt>,
    /// The tfifo: (time_to_send, arrival order).
    tfifo: BTreeMap<(u64, u64), Pkt>,
    seq: u64,
    stats: QdiscStats,
    watchdog: Option<u64>,
}

impl Netem {
    pub fn create(opts: &QdiscOptions, _dev: &QdiscDev) -> Result<Box<dyn Qdisc>, DatapathError> {
        let QdiscOptions::Netem(o) = opts else {
            return Err(errno(EINVAL, "netem: wrong options"));
        };
        let mut n = Netem {
            o: NetemOptions::default(),
            jitter: 0,
            prng: RndState::default(),
            delay_cor: Crnd::default(),
            loss_cor: Crnd::default(),
            dup_cor: Crnd::default(),
            reorder_cor: Crnd::default(),
            corrupt_cor: Crnd::default(),
            counter: 0,
            head: VecDeque::new(),
            tfifo: BTreeMap::new(),
            seq: 0,
            stats: QdiscStats::default(),
            watchdog: None,
        };
        n.tune(o)?;
        Ok(Box::new(n))
    }

    /// netem_change.
    fn tune(&mut self, o: &NetemOptions) -> Result<(), DatapathError> {
        if o.dist.as_ref().is_some_and(|d| d.1.is_empty()) {
            return Err(errno(EINVAL, "netem: empty distribution table"));
        }
        let mut o = o.clone();
        // A gap means "every gap-th packet": reorder with certainty
        // unless a probability is given.
        if o.gap != 0 && o.reorder == 0 {
            o.reorder = u32::MAX;
        }
        self.delay_cor = Crnd {
            last: 0,
            rho: o.delay_corr,
        };
        self.loss_cor = Crnd {
            last: 0,
            rho: o.loss_corr,
        };
        self.dup_cor = Crnd {
            last: 0,
            rho: o.dup_corr,
        };
        self.reorder_cor = Crnd {
            last: 0,
            rho: o.reorder_corr,
        };
        self.corrupt_cor = Crnd {
            last: 0,
            rho: o.corrupt_corr,
        };
        self.prng = RndState::seeded(o.seed.unwrap_or(NETEM_DEFAULT_SEED));
        self.jitter = o.jitter_ns.min(i32::MAX as u64) as i64;
        self.counter = 0;
        self.o = o;
        Ok(())
    }

    /// sch_netem.c: tabledist — mu +- sigma, uniform or from the table.
    fn tabledist(&mut self) -> i64 {
        let (mu, sigma) = (self.o.latency_ns.min(i64::MAX as u64) as i64, self.jitter);
        if sigma == 0 {
            return mu;
        }
        let rnd = get_crandom(&mut self.delay_cor, &mut self.prng);
        let Some((_, table)) = &self.o.dist else {
            let two = (2 * sigma as u64) as u32;
            return (rnd % two.max(1)) as i64 + mu - sigma;
        };
        let t = table.get(rnd as usize % table.len()).copied().unwrap_or(0) as i64;
        let mut x = (sigma % NETEM_DIST_SCALE) * t;
        if x >= 0 {
            x += NETEM_DIST_SCALE / 2;
        } else {
            x -= NETEM_DIST_SCALE / 2;
        }
        x / NETEM_DIST_SCALE + (sigma / NETEM_DIST_SCALE) * t + mu
    }

    /// sch_netem.c: packet_time_ns.
    fn packet_time_ns(&self, len: usize) -> u64 {
        let mut len = (len as i64 + self.o.packet_overhead as i64).max(0) as u64;
        if self.o.cell_size > 0 {
            let cs = self.o.cell_size as u64;
            let cells = len.div_ceil(cs);
            len = cells * (cs as i64 + self.o.cell_overhead as i64).max(0) as u64;
        }
        len.saturating_mul(NSEC_PER_SEC) / self.o.rate.max(1)
    }

    /// The time the last queued packet leaves (the rate's reference).
    fn last_time(&self) -> Option<u64> {
        self.tfifo.keys().next_back().map(|k| k.0)
    }

    /// A copy of the packet (skb_clone); its id is given by the caller.
    fn duplicate(pkt: &Pkt) -> Pkt {
        let mut skb = crate::buff::SkBuff::new(
            pkt.skb.data(),
            crate::buff::NET_SKB_PAD,
            pkt.skb.ifindex,
            pkt.skb.mtu,
        );
        copy_skb_meta(&pkt.skb, &mut skb);
        Pkt {
            id: 0,
            ts: pkt.ts,
            skb: Box::new(skb),
        }
    }
}

impl Qdisc for Netem {
    fn kind(&self) -> &'static str {
        "netem"
    }

    /// netem_enqueue.
    fn enqueue_at(&mut self, mut pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let now = cx.now;
        let mut count = 1;
        if self.o.duplicate != 0
            && !cx.no_duplicate
            && self.o.duplicate >= get_crandom(&mut self.dup_cor, &mut self.prng)
        {
            count += 1;
        }
        // loss_event (the random loss model).
        if self.o.loss != 0 && self.o.loss >= get_crandom(&mut self.loss_cor, &mut self.prng) {
            count -= 1;
        }
        if count == 0 {
            // Dropped here, yet NET_XMIT_SUCCESS | __NET_XMIT_BYPASS to the caller.
            self.stats.drops += 1;
            cx.dropped.push(pkt);
            return Ok(());
        }
        let dup = (count > 1).then(|| Netem::duplicate(&pkt));
        if self.o.corrupt != 0
            && self.o.corrupt >= get_crandom(&mut self.corrupt_cor, &mut self.prng)
        {
            let len = pkt.skb.len().max(1) as u32;
            let at = (self.prng.next_u32() % len) as usize;
            let bit = self.prng.next_u32() % 8;
            if let Some(b) = pkt.skb.data_mut().get_mut(at) {
                *b ^= 1 << bit;
            }
        }
        if self.tfifo.len() >= self.o.limit as usize {
            self.stats.drops += 1;
            if let Some(d) = dup {
                cx.dropped.push(d);
            }
            return Err(Refused::Drop(pkt));
        }
        if let Some(d) = dup {
            // Re-enqueued at the root by the caller, not duplicated again.
            cx.duplicates.push(d);
        }
        let len = pkt.skb.len();
        self.stats.queued(len);
        let reorder_now = self.o.gap != 0
            && self.counter >= self.o.gap.saturating_sub(1)
            && self.o.reorder >= get_crandom(&mut self.reorder_cor, &mut self.prng);
        if reorder_now {
            // One out of N goes to the front of the queue, now.
            self.counter = 0;
            self.head.push_front(pkt);
            self.stats.requeues += 1;
            return Ok(());
        }
        let mut delay = self.tabledist();
        let mut t = now;
        if self.o.rate > 0 {
            if let Some(last) = self.last_time() {
                // The last queued packet is the reference point.
                delay = (delay - (last as i64 - now as i64)).max(0);
                t = last;
            }
            delay += self.packet_time_ns(len) as i64;
        }
        let time_to_send = (t as i64).saturating_add(delay).max(0) as u64;
        self.counter = self.counter.saturating_add(1);
        self.seq += 1;
        self.tfifo.insert((time_to_send, self.seq), pkt);
        Ok(())
    }

    /// netem_dequeue: the reordered packets, then the tfifo's head when
    /// its time has come (else the watchdog is set for it).
    fn dequeue_at(&mut self, now: u64) -> Option<Pkt> {
        let p = match self.head.pop_front() {
            Some(p) => p,
            None => {
                let (&(t, seq), _) = self.tfifo.iter().next()?;
                if t > now {
                    self.watchdog = Some(t);
                    return None;
                }
                self.tfifo.remove(&(t, seq))?
            }
        };
        self.watchdog = None;
        self.stats.sent(p.skb.len());
        Some(p)
    }

    fn peek(&self) -> Option<&Pkt> {
        self.head.front().or_else(|| self.tfifo.values().next())
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for p in self.head.drain(..) {
            drop(p);
        }
        for (_, p) in std::mem::take(&mut self.tfifo) {
            drop(p);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
        self.watchdog = None;
    }

    fn qlen(&self) -> usize {
        self.head.len() + self.tfifo.len()
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }

    fn work_conserving(&self) -> bool {
        false
    }

    fn watchdog(&self) -> Option<u64> {
        self.watchdog.filter(|_| !self.tfifo.is_empty())
    }

    /// netem_dump as q_netem.c prints it (the main fields).
    fn dump(&self) -> Dump {
        let mut d = Dump::default();
        let o = &self.o;
        d.opt("limit", o.limit, format!("limit {}", o.limit));
        if o.latency_ns > 0 || o.jitter_ns > 0 {
            let mut t = format!("delay {}", time_ns_str(o.latency_ns));
            if o.jitter_ns > 0 {
                t.push_str(&format!("  {}", time_ns_str(o.jitter_ns)));
                if o.delay_corr > 0 {
                    t.push_str(&format!(" {}", pct(o.delay_corr)));
                }
            }
            let v = serde_json::json!({
                "delay": o.latency_ns as f64 / 1e9,
                "jitter": o.jitter_ns as f64 / 1e9,
                "correlation": pct_f(o.delay_corr),
            });
            d.opt("delay", v, t);
        }
        for (key, p, c) in [
            ("loss-random", o.loss, o.loss_corr),
            ("duplicate", o.duplicate, o.dup_corr),
            ("reorder", o.reorder, o.reorder_corr),
            ("corrupt", o.corrupt, o.corrupt_corr),
        ] {
            if p == 0 || (key == "reorder" && o.gap == 0) {
                continue;
            }
            let name = key.trim_end_matches("-random");
            let mut t = format!("{name} {}", pct(p));
            if c > 0 {
                t.push_str(&format!(" {}", pct(c)));
            }
            d.opt(
                key,
                serde_json::json!({"probability": pct_f(p), "correlation": pct_f(c)}),
                t,
            );
        }
        if o.rate > 0 {
            d.opt(
                "rate",
                serde_json::json!({"rate": o.rate}),
                format!("rate {}", rate_str(o.rate)),
            );
        }
        if o.gap > 0 {
            d.opt("gap", o.gap, format!("gap {}", o.gap));
        }
        if let Some(s) = o.seed {
            d.opt("seed", s, format!("seed {s}"));
        }
        d
    }

    fn change(&mut self, opts: &QdiscOptions, _dev: &QdiscDev) -> Result<(), DatapathError> {
        match opts {
            QdiscOptions::Netem(o) => self.tune(o),
            _ => Err(errno(EINVAL, "netem: wrong options")),
        }
    }
}

/// A u32 probability as tc prints it ("10%").
fn pct(p: u32) -> String {
    let v = pct_f(p) * 100.0;
    let s = format!("{v:.2}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

fn pct_f(p: u32) -> f64 {
    p as f64 / u32::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buff::SkBuff;
    use crate::sched::Classified;

    const MS: u64 = 1_000_000;
    const T: u64 = 1_000_000_000_000;

    fn pkt(id: u64, len: usize) -> Pkt {
        Pkt {
            id,
            ts: 0,
            skb: Box::new(SkBuff::new(&vec![0u8; len], 64, 2, 1500)),
        }
    }

    fn netem(o: NetemOptions) -> Box<dyn Qdisc> {
        let dev = QdiscDev {
            txqueuelen: 1000,
            mtu: 1500,
            tx_queues: 1,
        };
        Netem::create(
            &QdiscOptions::Netem(NetemOptions { limit: 1000, ..o }),
            &dev,
        )
        .unwrap()
    }

    /// Enqueue (id, time) pairs; returns what went to cx.dropped.
    fn feed(q: &mut Box<dyn Qdisc>, pkts: &[(u64, u64)]) -> Vec<u64> {
        let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
        let mut dropped = Vec::new();
        for &(id, t) in pkts {
            let mut cx = EnqueueCtx::new(&mut none);
            cx.now = t;
            assert!(q.enqueue_at(pkt(id, 1000), &mut cx).is_ok());
            dropped.extend(cx.dropped.iter().map(|p| p.id));
        }
        dropped
    }

    /// Dequeue as the engine does (jumping to the watchdog): (id, time).
    fn drain(q: &mut Box<dyn Qdisc>, from: u64) -> Vec<(u64, u64)> {
        let mut now = from;
        let mut out = Vec::new();
        for _ in 0..10_000 {
            while let Some(p) = q.dequeue_at(now) {
                out.push((p.id, now - T));
            }
            match q.watchdog() {
                Some(w) => now = w,
                None => break,
            }
        }
        out
    }

    /// lib/tests/random32_kunit.c: test1's first vector (LCG seeding of
    /// seed 1, ten warm-up rounds, then 3484351685).
    #[test]
    fn prandom_u32_state_is_taus113() {
        let mut r = RndState {
            s: [69069, 475559465, 2801775573, 1790562961],
        };
        for _ in 0..10 {
            r.next_u32();
        }
        assert_eq!(r.next_u32(), 3484351685);
    }

    /// `netem delay 200ms` (the seed's line): each packet 200 ms later, in order.
    #[test]
    fn fixed_delay() {
        let mut q = netem(NetemOptions {
            latency_ns: 200 * MS,
            ..Default::default()
        });
        feed(&mut q, &[(1, T), (2, T + MS), (3, T + 2 * MS)]);
        assert!(q.dequeue_at(T + 199 * MS).is_none());
        assert_eq!(q.watchdog(), Some(T + 200 * MS));
        assert_eq!(
            drain(&mut q, T),
            vec![(1, 200 * MS), (2, 201 * MS), (3, 202 * MS)]
        );
    }

    /// `netem delay 100ms 10ms seed 1`: tabledist's uniform case,
    /// (rnd % 20 ms) + 100 ms - 10 ms with prandom_u32_state seeded by
    /// prandom_seed_state(1): 106959246, 108909696, 108495022 ns.
    #[test]
    fn uniform_jitter_from_the_seed() {
        let mut q = netem(NetemOptions {
            latency_ns: 100 * MS,
            jitter_ns: 10 * MS,
            seed: Some(1),
            ..Default::default()
        });
        feed(&mut q, &[(1, T), (2, T), (3, T)]);
        assert_eq!(
            drain(&mut q, T),
            vec![(1, 106_959_246), (3, 108_495_022), (2, 108_909_696)]
        );
    }

    /// `netem loss 10% seed 7`: loss = rint(0.1 * u32::MAX) = 429496730
    /// against each prandom_u32_state: 97 of 1000 lost, the first
    /// packets 1, 3, 11, 15, 39 (0-based), counted as drops.
    #[test]
    fn random_loss_from_the_seed() {
        let mut q = netem(NetemOptions {
            loss: 429_496_730,
            seed: Some(7),
            ..Default::default()
        });
        let pkts: Vec<(u64, u64)> = (0..1000).map(|i| (i + 1, T + i)).collect();
        let lost = feed(&mut q, &pkts);
        assert_eq!(lost.len(), 97);
        assert_eq!(&lost[..5], &[2, 4, 12, 16, 40]);
        let s = q.stats();
        assert_eq!((s.drops, s.qlen), (97, 903));
    }

    /// `netem rate 1mbit`: 1000 bytes take 8 ms; each packet waits for the
    /// last queued one (packet_time_ns from its time_to_send).
    #[test]
    fn rate_serializes() {
        let mut q = netem(NetemOptions {
            rate: 125_000,
            ..Default::default()
        });
        feed(&mut q, &[(1, T), (2, T), (3, T + 20 * MS)]);
        assert_eq!(
            drain(&mut q, T),
            vec![(1, 8 * MS), (2, 16 * MS), (3, 28 * MS)]
        );
    }

    /// `netem delay 10ms reorder 100% gap 5`: every fifth packet goes at
    /// once to the front (a requeue), the others 10 ms later.
    #[test]
    fn gap_reorders_every_fifth() {
        let mut q = netem(NetemOptions {
            latency_ns: 10 * MS,
            reorder: u32::MAX,
            gap: 5,
            ..Default::default()
        });
        let pkts: Vec<(u64, u64)> = (1..=6).map(|i| (i, T + i * MS)).collect();
        feed(&mut q, &pkts);
        let out = drain(&mut q, T + 6 * MS);
        assert_eq!(
            out,
            vec![
                (5, 6 * MS),
                (1, 11 * MS),
                (2, 12 * MS),
                (3, 13 * MS),
                (4, 14 * MS),
                (6, 16 * MS)
            ]
        );
        assert_eq!(q.stats().requeues, 1);
    }
}
