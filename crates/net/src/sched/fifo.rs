//! net/sched/sch_fifo.c: pfifo (a packet limit) and bfifo (a byte limit),
//! by default tx_queue_len packets, or tx_queue_len * the device's MTU bytes.

use std::collections::VecDeque;

use super::dump::size_str;
use super::{Dump, EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats, Refused};
use crate::core::{DatapathError, Pkt};

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

    /// fifo_init: `limit` packets or bytes, else the defaults above.
    pub fn from_options(
        opts: &QdiscOptions,
        dev: &QdiscDev,
    ) -> Result<Box<dyn Qdisc>, DatapathError> {
        Ok(match opts {
            QdiscOptions::Bfifo { limit: Some(l) } => Box::new(Fifo::new(true, *l as u64)),
            QdiscOptions::Pfifo { limit: Some(l) } => Box::new(Fifo::new(false, *l as u64)),
            QdiscOptions::Bfifo { limit: None } => Fifo::create_bfifo(dev),
            _ => Fifo::create_pfifo(dev),
        })
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
    fn enqueue_at(&mut self, pkt: Pkt, _cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let len = pkt.skb.len();
        let fits = if self.bytes_limit {
            self.stats.backlog + len as u64 <= self.limit
        } else {
            (self.q.len() as u64) < self.limit
        };
        if !fits {
            self.stats.drops += 1;
            return Err(Refused::Drop(pkt));
        }
        self.stats.queued(len);
        self.q.push_back(pkt);
        Ok(())
    }

    fn dequeue_at(&mut self, _now: u64) -> Option<Pkt> {
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

    /// fifo_dump: `limit 1000p` / `limit 1514000b`.
    fn dump(&self) -> Dump {
        let mut d = Dump::default();
        let text = if self.bytes_limit {
            format!("limit {}", size_str(self.limit))
        } else {
            format!("limit {}p", self.limit)
        };
        d.opt("limit", self.limit, text);
        d
    }
}
