//! net/sched/sch_generic.c: pfifo_fast, the default qdisc — three bands
//! picked by skb->priority (prio2band), each holding at most tx_queue_len
//! packets, band 0 dequeued first.

use std::collections::VecDeque;

use super::{Dump, EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats, Refused};
use crate::core::{DatapathError, Pkt};

const PFIFO_FAST_BANDS: usize = 3;
/// sch_generic.c: prio2band (TC_PRIO_* to band).
pub(crate) const PRIO2BAND: [usize; 16] = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
/// include/uapi/linux/pkt_sched.h: TC_PRIO_MAX.
pub(crate) const TC_PRIO_MAX: u32 = 15;

pub(crate) struct PfifoFast {
    limit: usize,
    bands: [VecDeque<Pkt>; PFIFO_FAST_BANDS],
    stats: QdiscStats,
}

impl PfifoFast {
    pub fn from_options(
        _opts: &QdiscOptions,
        dev: &QdiscDev,
    ) -> Result<Box<dyn Qdisc>, DatapathError> {
        Ok(PfifoFast::create(dev))
    }

    pub fn create(dev: &QdiscDev) -> Box<dyn Qdisc> {
        Box::new(PfifoFast {
            limit: dev.txqueuelen as usize,
            bands: Default::default(),
            stats: QdiscStats::default(),
        })
    }
}

impl Qdisc for PfifoFast {
    fn kind(&self) -> &'static str {
        "pfifo_fast"
    }

    /// pfifo_fast_enqueue: a full band (its skb_array) drops.
    fn enqueue_at(&mut self, pkt: Pkt, _cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let band = PRIO2BAND[(pkt.skb.priority & TC_PRIO_MAX) as usize];
        if self.bands[band].len() >= self.limit {
            self.stats.drops += 1;
            return Err(Refused::Drop(pkt));
        }
        self.stats.queued(pkt.skb.len());
        self.bands[band].push_back(pkt);
        Ok(())
    }

    fn dequeue_at(&mut self, _now: u64) -> Option<Pkt> {
        let p = self.bands.iter_mut().find_map(|b| b.pop_front())?;
        self.stats.sent(p.skb.len());
        Some(p)
    }

    fn peek(&self) -> Option<&Pkt> {
        self.bands.iter().find_map(|b| b.front())
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for b in &mut self.bands {
            for p in b.drain(..) {
                drop(p);
            }
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn qlen(&self) -> usize {
        self.bands.iter().map(|b| b.len()).sum()
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }

    /// pfifo_fast_dump: `bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1`.
    fn dump(&self) -> Dump {
        priomap_dump(PFIFO_FAST_BANDS, &PRIO2BAND)
    }
}

/// The bands and priomap as tc prints them (pfifo_fast and prio).
pub(crate) fn priomap_dump(bands: usize, map: &[usize; 16]) -> Dump {
    let mut d = Dump::default();
    let text: Vec<String> = map.iter().map(|b| b.to_string()).collect();
    d.opt("bands", bands, format!("bands {bands}"));
    d.opt(
        "priomap",
        map.to_vec(),
        format!("priomap {}", text.join(" ")),
    );
    d.opt("multiqueue", false, "");
    d
}
