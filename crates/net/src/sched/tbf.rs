//! net/sched/sch_tbf.c: tbf — a token bucket of `burst` bytes filled at
//! `rate` (and an optional second one, `peakrate` with `mtu`), in front of
//! a bfifo of `limit` bytes. A packet leaves when both buckets hold its
//! length; otherwise the watchdog is set for when they will.

use super::dump::{handle_str, rate_str, size_str, time_us_str};
use super::fifo::Fifo;
use super::rate::{psched_ns2ticks, tick2time, xmitsize, PschedRate};
use super::{
    tc_h_make, ClassOps, ClassOptions, ClassShow, Dump, EnqueueCtx, Qdisc, QdiscDev, QdiscOptions,
    QdiscStats, Refused, Sch,
};
use crate::core::{errno, DatapathError, Pkt, EINVAL, EOPNOTSUPP};

/// The attributes q_tbf.c sends: TCA_TBF_PARMS (rate, limit), TCA_TBF_BURST,
/// and with a peak rate TCA_TBF_PBURST (its `mtu`/`minburst`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TbfOptions {
    /// bytes/s
    pub rate: u64,
    /// bytes
    pub burst: u32,
    /// bytes (tc computes it from `latency` when that is given)
    pub limit: u32,
    /// bytes/s, 0 for none
    pub peakrate: u64,
    /// bytes of the peak bucket (TCA_TBF_PBURST)
    pub mtu: u32,
}

pub(crate) struct Tbf {
    handle: u32,
    limit: u32,
    max_size: u32,
    rate: PschedRate,
    peak: Option<PschedRate>,
    /// ns
    buffer: i64,
    mtu: i64,
    tokens: i64,
    ptokens: i64,
    t_c: i64,
    child: Sch,
    stats: QdiscStats,
    watchdog: Option<u64>,
}

impl Tbf {
    pub fn create(opts: &QdiscOptions, dev: &QdiscDev) -> Result<Box<dyn Qdisc>, DatapathError> {
        let QdiscOptions::Tbf(o) = opts else {
            return Err(errno(EINVAL, "tbf: wrong options"));
        };
        let mut t = Tbf {
            handle: 0,
            limit: 0,
            max_size: 0,
            rate: PschedRate::default(),
            peak: None,
            buffer: 0,
            mtu: 0,
            tokens: 0,
            ptokens: 0,
            t_c: 0,
            child: Sch::new(0, 0, Box::new(Fifo::new(true, o.limit as u64))),
            stats: QdiscStats::default(),
            watchdog: None,
        };
        t.tune(o, dev)?;
        Ok(Box::new(t))
    }

    /// tbf_change with TCA_TBF_BURST (and TCA_TBF_PBURST): the buckets in
    /// ns of their rates; max_size the largest packet both can ever pass.
    fn tune(&mut self, o: &TbfOptions, _dev: &QdiscDev) -> Result<(), DatapathError> {
        if o.rate == 0 {
            return Err(errno(EINVAL, "tbf: rate 0"));
        }
        let rate = PschedRate::new(o.rate);
        let mut max_size = o.burst;
        let buffer = rate.l2t_ns(o.burst).min(u32::MAX as u64) as i64;
        let (peak, mtu) = if o.peakrate > 0 {
            if o.peakrate <= o.rate {
                return Err(errno(
                    EINVAL,
                    format!(
                        "tbf: peakrate {} must be greater than rate {}",
                        rate_str(o.peakrate),
                        rate_str(o.rate)
                    ),
                ));
            }
            let p = PschedRate::new(o.peakrate);
            max_size = max_size.min(o.mtu);
            (Some(p), p.l2t_ns(o.mtu).min(u32::MAX as u64) as i64)
        } else {
            (None, 0)
        };
        if max_size == 0 {
            return Err(errno(EINVAL, "tbf: burst (or mtu) 0: no packet could pass"));
        }
        self.child.q = Box::new(Fifo::new(true, o.limit as u64));
        self.limit = o.limit;
        self.max_size = max_size;
        self.rate = rate;
        self.peak = peak;
        self.buffer = buffer;
        self.mtu = mtu;
        self.tokens = buffer;
        self.ptokens = mtu;
        Ok(())
    }
}

impl Qdisc for Tbf {
    fn kind(&self) -> &'static str {
        "tbf"
    }

    /// tbf_enqueue: longer than max_size is dropped (no GSO here).
    fn enqueue_at(&mut self, pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let len = pkt.skb.len();
        if len > self.max_size as usize {
            self.stats.drops += 1;
            return Err(Refused::Drop(pkt));
        }
        self.stats.enqueue_child(&mut *self.child, pkt, cx)
    }

    /// tbf_dequeue.
    fn dequeue_at(&mut self, now: u64) -> Option<Pkt> {
        let len = self.child.peek()?.skb.len() as u32;
        let now = now.min(i64::MAX as u64) as i64;
        let mut toks = now.saturating_sub(self.t_c).min(self.buffer);
        let mut ptoks = 0i64;
        if let Some(peak) = &self.peak {
            ptoks = toks.saturating_add(self.ptokens).min(self.mtu);
            ptoks -= peak.l2t_ns(len) as i64;
        }
        toks = toks.saturating_add(self.tokens).min(self.buffer);
        toks -= self.rate.l2t_ns(len) as i64;
        if (toks | ptoks) >= 0 {
            let p = self.child.dequeue_at(now as u64)?;
            self.t_c = now;
            self.tokens = toks;
            self.ptokens = ptoks;
            self.watchdog = None;
            self.stats.sent(p.skb.len());
            return Some(p);
        }
        // qdisc_watchdog_schedule_ns(now + max(-toks, -ptoks)).
        let wait = (-toks).max(-ptoks).max(0) as u64;
        self.watchdog = Some(now as u64 + wait);
        self.stats.overlimits += 1;
        None
    }

    fn peek(&self) -> Option<&Pkt> {
        self.child.peek()
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        self.child.reset(drop);
        self.stats.backlog = 0;
        self.stats.qlen = 0;
        self.t_c = 0;
        self.tokens = self.buffer;
        self.ptokens = self.mtu;
        self.watchdog = None;
    }

    fn qlen(&self) -> usize {
        self.child.qlen()
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }

    fn tree_reduce_backlog(&mut self, n: usize, bytes: u64) {
        self.stats.qlen = self.stats.qlen.saturating_sub(n as u64);
        self.stats.backlog = self.stats.backlog.saturating_sub(bytes);
    }

    fn work_conserving(&self) -> bool {
        false
    }

    fn watchdog(&self) -> Option<u64> {
        self.watchdog
    }

    /// tbf_dump as q_tbf.c prints it: rate, burst, [peakrate, minburst], lat.
    fn dump(&self) -> Dump {
        let mut d = Dump::default();
        let r = self.rate.rate_bytes_ps;
        d.opt("rate", r, format!("rate {}", rate_str(r)));
        let buffer_ticks = psched_ns2ticks(self.buffer as u64);
        let burst = xmitsize(r, buffer_ticks);
        d.opt("burst", burst, format!("burst {}", size_str(burst)));
        let mut latency = 1e6 * (self.limit as f64 / r as f64) - tick2time(buffer_ticks);
        if let Some(p) = &self.peak {
            let pr = p.rate_bytes_ps;
            d.options_text.push(format!("peakrate {}", rate_str(pr)));
            let mtu_ticks = psched_ns2ticks(self.mtu as u64);
            let mtu = xmitsize(pr, mtu_ticks);
            d.opt("minburst", mtu, format!("minburst {}", size_str(mtu)));
            let lat2 = 1e6 * (self.limit as f64 / pr as f64) - tick2time(mtu_ticks);
            latency = latency.max(lat2);
        }
        if latency >= 0.0 {
            let us = latency as u64;
            d.opt("lat", us, format!("lat {}", time_us_str(us)));
        } else {
            let l = self.limit as u64;
            d.opt("limit", l, format!("limit {}", size_str(l)));
        }
        d
    }

    fn change(&mut self, opts: &QdiscOptions, dev: &QdiscDev) -> Result<(), DatapathError> {
        match opts {
            QdiscOptions::Tbf(o) => self.tune(o, dev),
            _ => Err(errno(EINVAL, "tbf: wrong options")),
        }
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
        self.child.parent = tc_h_make(handle, 1);
    }

    fn classes(&mut self) -> Option<&mut dyn ClassOps> {
        Some(self)
    }

    fn children(&self) -> Vec<&Sch> {
        vec![&self.child]
    }

    fn children_mut(&mut self) -> Vec<&mut Sch> {
        vec![&mut self.child]
    }

    /// tbf_dump_class: its one class, X:1.
    fn class_dumps(&self) -> Vec<ClassShow> {
        let classid = tc_h_make(self.handle, 1);
        let mut c = ClassShow::new(
            "tbf",
            classid,
            self.handle,
            self.child.stats(),
            Dump::default(),
        );
        c.leaf = (self.child.handle != 0).then(|| handle_str(self.child.handle));
        vec![c]
    }
}

impl ClassOps for Tbf {
    fn change(
        &mut self,
        classid: u32,
        _parent: u32,
        _opts: &ClassOptions,
        _dev: &QdiscDev,
        _now: u64,
    ) -> Result<Vec<Pkt>, DatapathError> {
        Err(errno(
            EOPNOTSUPP,
            format!(
                "tbf: its one class is {}:1; {} cannot be added",
                self.handle >> 16,
                handle_str(classid)
            ),
        ))
    }

    fn delete(&mut self, classid: u32) -> Result<Vec<Pkt>, DatapathError> {
        Err(errno(
            EOPNOTSUPP,
            format!("tbf: class {} cannot be deleted", handle_str(classid)),
        ))
    }

    /// tbf_graft: the new child replaces the bfifo.
    fn graft(&mut self, _classid: u32, new: Sch) -> Result<Sch, DatapathError> {
        let old = std::mem::replace(&mut self.child, new);
        self.stats.qlen = self.stats.qlen.saturating_sub(old.qlen() as u64);
        self.stats.backlog = self.stats.backlog.saturating_sub(old.stats().backlog);
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buff::SkBuff;

    fn pkt(id: u64, len: usize) -> Pkt {
        Pkt {
            id,
            ts: 0,
            skb: Box::new(SkBuff::new(&vec![0u8; len], 64, 2, 1500)),
        }
    }

    fn dev() -> QdiscDev {
        QdiscDev {
            txqueuelen: 1000,
            mtu: 1500,
            tx_queues: 1,
        }
    }

    /// `tbf rate 1mbit burst 32kbit latency 400ms` (the seed's line): a
    /// 4096-byte bucket at 8 us a byte; limit 54096 bytes.
    fn seed_tbf() -> Box<dyn Qdisc> {
        let o = TbfOptions {
            rate: 125_000,
            burst: 4096,
            limit: 54_096,
            peakrate: 0,
            mtu: 0,
        };
        Tbf::create(&QdiscOptions::Tbf(o), &dev()).unwrap()
    }

    #[test]
    fn bucket_then_rate() {
        let mut q = seed_tbf();
        for id in 0..5 {
            assert!(q.enqueue(pkt(id, 1000)).is_ok());
        }
        let t0 = 1_000_000_000u64;
        // A full bucket (32.768 ms of tokens) passes 4 packets of 8 ms each.
        let sent: Vec<u64> = std::iter::from_fn(|| q.dequeue_at(t0).map(|p| p.id)).collect();
        assert_eq!(sent, vec![0, 1, 2, 3]);
        // 768 us of tokens left; the fifth needs 8 ms: 7.232 ms later.
        assert_eq!(q.watchdog(), Some(t0 + 7_232_000));
        assert!(q.dequeue_at(t0 + 7_231_999).is_none());
        assert_eq!(q.dequeue_at(t0 + 7_232_000).map(|p| p.id), Some(4));
        let s = q.stats();
        assert_eq!((s.packets, s.bytes, s.overlimits, s.qlen), (5, 5000, 2, 0));
    }

    #[test]
    fn too_long_and_over_limit_drop() {
        let mut q = seed_tbf();
        assert!(q.enqueue(pkt(0, 4097)).is_err());
        for id in 0..54 {
            assert!(q.enqueue(pkt(id, 1000)).is_ok());
        }
        assert!(q.enqueue(pkt(99, 1000)).is_err());
        let s = q.stats();
        assert_eq!((s.drops, s.qlen, s.backlog), (2, 54, 54_000));
    }

    #[test]
    fn dumps_as_tc_prints() {
        let d = seed_tbf().dump();
        assert_eq!(d.options_text.join(" "), "rate 1Mbit burst 4Kb lat 400ms");
        assert_eq!(
            serde_json::Value::Object(d.options).to_string(),
            r#"{"burst":4096,"lat":400000,"rate":125000}"#
        );
    }
}
