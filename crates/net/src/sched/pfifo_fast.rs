//! net/sched/sch_generic.c: pfifo_fast, the default qdisc — three bands
//! picked by skb->priority (prio2band), each holding at most tx_queue_len
//! packets, band 0 dequeued first.

use std::collections::VecDeque;

use super::{Qdisc, QdiscDev, QdiscStats};
use crate::core::Pkt;

const PFIFO_FAST_BANDS: usize = 3;
/// sch_generic.c: prio2band (TC_PRIO_* to band).
const PRIO2BAND: [usize; 16] = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
/// include/uapi/linux/pkt_sched.h: TC_PRIO_MAX.
const TC_PRIO_MAX: u32 = 15;

pub(crate) struct PfifoFast {
    limit: usize,
    bands: [VecDeque<Pkt>; PFIFO_FAST_BANDS],
    stats: QdiscStats,
}

impl PfifoFast {
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
    fn enqueue(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        let band = PRIO2BAND[(pkt.skb.priority & TC_PRIO_MAX) as usize];
        if self.bands[band].len() >= self.limit {
            self.stats.drops += 1;
            return Err(pkt);
        }
        self.stats.queued(pkt.skb.len());
        self.bands[band].push_back(pkt);
        Ok(())
    }

    fn dequeue(&mut self) -> Option<Pkt> {
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
}
