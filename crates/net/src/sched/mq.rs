//! net/sched/sch_mq.c: mq, the root of a multiqueue device — one child
//! qdisc (the default, pfifo_fast) per transmit queue; netdev_pick_tx picks
//! the queue: the recorded rx queue of a forwarded packet, else the flow
//! hash (skb_tx_hash). The queues drain in the order packets came (one
//! worker runs net_tx_action here), so a run stays reproducible.

use std::collections::VecDeque;

use super::pfifo_fast::PfifoFast;
use super::{EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats, Refused, Sch};
use crate::core::{DatapathError, Pkt};

pub(crate) struct Mq {
    /// One per tx queue, handle 0, parent :1, :2, ... as tc shows them.
    children: Vec<Sch>,
    /// Which child holds each queued packet, oldest first.
    order: VecDeque<usize>,
}

impl Mq {
    pub fn from_options(
        _opts: &QdiscOptions,
        dev: &QdiscDev,
    ) -> Result<Box<dyn Qdisc>, DatapathError> {
        Ok(Mq::create(dev))
    }

    pub fn create(dev: &QdiscDev) -> Box<dyn Qdisc> {
        Box::new(Mq {
            children: (0..dev.tx_queues.max(1))
                .map(|i| Sch::new(0, (i as u32 + 1) & 0xffff, PfifoFast::create(dev)))
                .collect(),
            order: VecDeque::new(),
        })
    }

    /// net/core/dev.c: netdev_pick_tx / skb_tx_hash.
    fn pick_tx(&self, pkt: &Pkt) -> usize {
        let n = self.children.len();
        match pkt.skb.queue_mapping {
            0 => (((pkt.skb.hash as u64) * n as u64) >> 32) as usize,
            rx => (rx as usize - 1) % n,
        }
    }
}

impl Qdisc for Mq {
    fn kind(&self) -> &'static str {
        "mq"
    }

    fn enqueue_at(&mut self, pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let q = self.pick_tx(&pkt);
        let Some(child) = self.children.get_mut(q) else {
            return Err(Refused::Drop(pkt));
        };
        child.enqueue_at(pkt, cx)?;
        self.order.push_back(q);
        Ok(())
    }

    fn dequeue_at(&mut self, now: u64) -> Option<Pkt> {
        while let Some(q) = self.order.pop_front() {
            if let Some(p) = self.children.get_mut(q).and_then(|c| c.dequeue_at(now)) {
                return Some(p);
            }
        }
        None
    }

    fn peek(&self) -> Option<&Pkt> {
        self.order
            .front()
            .and_then(|&q| self.children.get(q))
            .and_then(|c| c.peek())
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for c in &mut self.children {
            c.reset(drop);
        }
        self.order.clear();
    }

    fn qlen(&self) -> usize {
        self.children.iter().map(|c| c.qlen()).sum()
    }

    /// mq_dump: the sum of its children's.
    fn stats(&self) -> QdiscStats {
        let mut s = QdiscStats::default();
        for c in &self.children {
            s.add(&c.stats());
        }
        s
    }

    fn children(&self) -> Vec<&Sch> {
        self.children.iter().collect()
    }

    fn children_mut(&mut self) -> Vec<&mut Sch> {
        self.children.iter_mut().collect()
    }
}
