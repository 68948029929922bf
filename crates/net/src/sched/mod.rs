//! Packet scheduling (net/sched): the `Qdisc` trait — the kernel's
//! `Qdisc_ops` (enqueue, dequeue, peek, reset, dump stats) — one file per
//! qdisc, and the registry `tc qdisc add ... KIND` looks kinds up in.
//!
//! A new qdisc is one file here and one line in `QDISCS`.

pub mod act_api;
pub mod act_bpf;
pub mod act_csum;
pub mod act_gact;
pub mod act_mirred;
pub mod act_nat;
pub mod act_pedit;
pub mod act_sample;
pub mod act_skbedit;
pub mod act_vlan;
pub mod cls_api;
pub mod cls_basic;
pub mod cls_bpf;
pub mod cls_flower;
pub mod cls_fw;
pub mod cls_matchall;
pub mod cls_u32;
pub mod fifo;
pub mod mq;
pub mod pfifo_fast;

use serde::Serialize;

use crate::core::{errno, DatapathError, Pkt, EINVAL, EOPNOTSUPP};
use crate::drivers::NetDevice;

/// `tc -s qdisc` statistics (struct gnet_stats_basic + gnet_stats_queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QdiscStats {
    /// Sent bytes and packets (counted at dequeue, qdisc_bstats_update).
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    /// Bytes and packets queued now.
    pub backlog: u64,
    pub qlen: u64,
}

impl QdiscStats {
    pub(crate) fn sent(&mut self, len: usize) {
        self.bytes += len as u64;
        self.packets += 1;
        self.backlog -= len as u64;
        self.qlen -= 1;
    }

    pub(crate) fn queued(&mut self, len: usize) {
        self.backlog += len as u64;
        self.qlen += 1;
    }

    pub(crate) fn add(&mut self, o: &QdiscStats) {
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.drops += o.drops;
        self.overlimits += o.overlimits;
        self.requeues += o.requeues;
        self.backlog += o.backlog;
        self.qlen += o.qlen;
    }
}

/// struct Qdisc_ops. `enqueue` gives the packet back when the qdisc drops it
/// (qdisc_drop: the caller ends it with QDISC_DROP); the qdisc counts it.
pub(crate) trait Qdisc: Send {
    /// The kind as tc names it ("pfifo_fast").
    fn kind(&self) -> &'static str;
    fn enqueue(&mut self, pkt: Pkt) -> Result<(), Pkt>;
    fn dequeue(&mut self) -> Option<Pkt>;
    /// The next packet dequeue would give (classful parents and shapers look).
    #[allow(dead_code)]
    fn peek(&self) -> Option<&Pkt>;
    /// qdisc_reset: everything queued goes to `drop`.
    fn reset(&mut self, drop: &mut dyn FnMut(Pkt));
    fn qlen(&self) -> usize;
    fn stats(&self) -> QdiscStats;
}

/// What a qdisc is created for: its device's tx_queue_len, MTU and transmit queues.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QdiscDev {
    pub txqueuelen: u32,
    pub mtu: u32,
    pub tx_queues: usize,
}

type Ctor = fn(&QdiscDev) -> Box<dyn Qdisc>;

/// The qdiscs `tc qdisc add` knows, by kind ("noqueue" is none at all).
const QDISCS: &[(&str, Ctor)] = &[
    ("pfifo_fast", pfifo_fast::PfifoFast::create),
    ("pfifo", fifo::Fifo::create_pfifo),
    ("bfifo", fifo::Fifo::create_bfifo),
    ("mq", mq::Mq::create),
];

fn qdisc_dev(ops: &dyn NetDevice, txqueuelen: u32, mtu: u32) -> QdiscDev {
    QdiscDev {
        txqueuelen,
        mtu,
        tx_queues: ops.features().tx_queues.max(1),
    }
}

/// A qdisc of kind `kind` for a device; Ok(None) for "noqueue".
pub(crate) fn create(
    kind: &str,
    ops: &dyn NetDevice,
    txqueuelen: u32,
    mtu: u32,
) -> Result<Option<Box<dyn Qdisc>>, DatapathError> {
    if kind == "noqueue" {
        return Ok(None);
    }
    let dev = qdisc_dev(ops, txqueuelen, mtu);
    // sch_mq.c: mq_init — only on a multiqueue device.
    if kind == "mq" && dev.tx_queues < 2 {
        return Err(errno(
            EOPNOTSUPP,
            "mq needs a multiqueue device (netif_is_multiqueue)",
        ));
    }
    match QDISCS.iter().find(|(k, _)| *k == kind) {
        Some((_, ctor)) => Ok(Some(ctor(&dev))),
        None => Err(errno(
            EINVAL,
            format!(
                "unknown qdisc {kind:?} (known: noqueue, {})",
                QDISCS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// attach_default_qdiscs: noqueue on IFF_NO_QUEUE devices (veth, netkit, lo),
/// mq with a default qdisc per tx queue on multiqueue devices, else the
/// default qdisc (net.core.default_qdisc = pfifo_fast).
pub(crate) fn default_qdisc(
    ops: &dyn NetDevice,
    txqueuelen: u32,
    mtu: u32,
) -> Option<Box<dyn Qdisc>> {
    let f = ops.features();
    let dev = qdisc_dev(ops, txqueuelen, mtu);
    if f.no_queue {
        None
    } else if dev.tx_queues > 1 {
        Some(mq::Mq::create(&dev))
    } else {
        Some(pfifo_fast::PfifoFast::create(&dev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buff::SkBuff;

    fn pkt(id: u64, len: usize, priority: u32) -> Pkt {
        let mut skb = SkBuff::new(&vec![0u8; len], 64, 2, 1500);
        skb.priority = priority;
        Pkt {
            id,
            ts: 0,
            skb: Box::new(skb),
        }
    }

    fn dev(txqueuelen: u32, tx_queues: usize) -> QdiscDev {
        QdiscDev {
            txqueuelen,
            mtu: 1500,
            tx_queues,
        }
    }

    #[test]
    fn pfifo_drops_past_its_limit_and_counts() {
        let mut q = fifo::Fifo::create_pfifo(&dev(2, 1));
        assert!(q.enqueue(pkt(1, 100, 0)).is_ok());
        assert!(q.enqueue(pkt(2, 60, 0)).is_ok());
        assert_eq!(q.enqueue(pkt(3, 60, 0)).map_err(|p| p.id), Err(3));
        let s = q.stats();
        assert_eq!((s.qlen, s.backlog, s.drops, s.packets), (2, 160, 1, 0));
        assert_eq!(q.dequeue().map(|p| p.id), Some(1));
        let s = q.stats();
        assert_eq!((s.qlen, s.backlog, s.packets, s.bytes), (1, 60, 1, 100));
    }

    #[test]
    fn bfifo_limits_bytes() {
        // tx_queue_len 1 x (MTU 1500 + 14) bytes.
        let mut q = fifo::Fifo::create_bfifo(&dev(1, 1));
        assert!(q.enqueue(pkt(1, 1000, 0)).is_ok());
        assert!(q.enqueue(pkt(2, 514, 0)).is_ok());
        assert!(q.enqueue(pkt(3, 1, 0)).is_err());
        assert_eq!(q.kind(), "bfifo");
    }

    #[test]
    fn pfifo_fast_dequeues_band_0_first() {
        let mut q = pfifo_fast::PfifoFast::create(&dev(10, 1));
        // priority 0 -> band 1, 6 (TC_PRIO_INTERACTIVE) -> band 0, 1 -> band 2
        for (id, prio) in [(1, 0), (2, 1), (3, 6)] {
            assert!(q.enqueue(pkt(id, 64, prio)).is_ok());
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue().map(|p| p.id)).collect();
        assert_eq!(order, vec![3, 1, 2]);
    }

    #[test]
    fn mq_keeps_arrival_order_over_its_queues() {
        let mut q = mq::Mq::create(&dev(10, 4));
        for id in 1..=6u64 {
            let mut p = pkt(id, 64, 0);
            p.skb.queue_mapping = id as u16; // recorded rx queue id - 1
            assert!(q.enqueue(p).is_ok());
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue().map(|p| p.id)).collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(q.stats().packets, 6);
    }
}
