//! net/sched/sch_mq.c: mq, the root of a multiqueue device — one child
//! qdisc (the default, pfifo_fast) per transmit queue; netdev_pick_tx picks
//! the queue: the recorded rx queue of a forwarded packet, else the flow
//! hash (skb_tx_hash). The queues drain in the order packets came (one
//! worker runs net_tx_action here), so a run stays reproducible.

use std::collections::VecDeque;

use super::pfifo_fast::PfifoFast;
use super::{Qdisc, QdiscDev, QdiscStats};
use crate::core::Pkt;

pub(crate) struct Mq {
    children: Vec<Box<dyn Qdisc>>,
    /// Which child holds each queued packet, oldest first.
    order: VecDeque<usize>,
}

impl Mq {
    pub fn create(dev: &QdiscDev) -> Box<dyn Qdisc> {
        Box::new(Mq {
            children: (0..dev.tx_queues.max(1))
                .map(|_| PfifoFast::create(dev))
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

    fn enqueue(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        let q = self.pick_tx(&pkt);
        self.children[q].enqueue(pkt)?;
        self.order.push_back(q);
        Ok(())
    }

    fn dequeue(&mut self) -> Option<Pkt> {
        while let Some(q) = self.order.pop_front() {
            if let Some(p) = self.children[q].dequeue() {
                return Some(p);
            }
        }
        None
    }

    fn peek(&self) -> Option<&Pkt> {
        self.order.front().and_then(|&q| self.children[q].peek())
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
}
