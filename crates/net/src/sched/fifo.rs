//! net/sched/sch_fifo.c: pfifo (a packet limit) and bfifo (a byte limit),
//! by default tx_queue_len packets, or tx_queue_len * the device's MTU bytes.

use std::collections::VecDeque;

use super::{Qdisc, QdiscDev, QdiscStats};
use crate::core::Pkt;

pub(crate) struct Fifo {
    bytes_limit: bool,
    limit: u64,
    q: VecDeque<Pkt>,
    stats: QdiscStats,
}

impl Fifo {
    pub fn create_pfifo(dev: &QdiscDev) -> Box<dyn Qdisc> {
        Box::new(Fifo::new(false, dev.txqueuelen as u64))
    }

    /// psched_mtu: the MTU plus the link-layer header.
    pub fn create_bfifo(dev: &QdiscDev) -> Box<dyn Qdisc> {
        let limit = dev.txqueuelen as u64 * (dev.mtu as u64 + crate::buff::ETH_HLEN as u64);
        Box::new(Fifo::new(true, limit))
    }

    pub fn new(bytes_limit: bool, limit: u64) -> Fifo {
        Fifo {
            bytes_limit,
            limit,
            q: VecDeque::new(),
            stats: QdiscStats::default(),
        }
    }
}

impl Qdisc for Fifo {
    fn kind(&self) -> &'static str {
        if self.bytes_limit {
            "bfifo"
        } else {
            "pfifo"
        }
    }

    /// pfifo_enqueue / bfifo_enqueue.
    fn enqueue(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        let len = pkt.skb.len();
        let fits = if self.bytes_limit {
            self.stats.backlog + len as u64 <= self.limit
        } else {
            (self.q.len() as u64) < self.limit
        };
        if !fits {
            self.stats.drops += 1;
            return Err(pkt);
        }
        self.stats.queued(len);
        self.q.push_back(pkt);
        Ok(())
    }

    fn dequeue(&mut self) -> Option<Pkt> {
        let p = self.q.pop_front()?;
        self.stats.sent(p.skb.len());
        Some(p)
    }

    fn peek(&self) -> Option<&Pkt> {
        self.q.front()
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for p in self.q.drain(..) {
            drop(p);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn qlen(&self) -> usize {
        self.q.len()
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }
}
