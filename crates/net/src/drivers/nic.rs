//! A physical NIC: `rx_queues` hardware rx rings (RSS spreads flows over
//! them), as many tx queues, native XDP, and a transmit side that puts
//! frames on the wire (the datapath's sink). It does no TSO: a GSO skb is
//! segmented before it leaves (validate_xmit_skb -> skb_gso_segment).

use std::collections::VecDeque;

use super::{Features, Napi, NetDevice, Ring};
use crate::core::cpu::Cpu;
use crate::core::{gro, DevId, Hook, Pkt, RxItem, XPkt};

/// Descriptors per rx ring (ethtool -G rx; a large ring, as servers set it).
pub const NIC_RX_RING: usize = 4096;

pub(crate) struct Nic {
    rx: Vec<Ring>,
}

impl Nic {
    pub fn new(rx_queues: usize) -> Nic {
        Nic {
            rx: (0..rx_queues).map(|_| Ring::new(NIC_RX_RING)).collect(),
        }
    }
}

impl NetDevice for Nic {
    fn kind(&self) -> &'static str {
        "nic"
    }

    fn features(&self) -> Features {
        Features {
            native_xdp: true,
            no_queue: false,
            arp: true,
            loopback: false,
            napi: Napi::Queues(self.rx.len()),
            tx_queues: self.rx.len(),
        }
    }

    fn rx_enqueue(&self, q: usize, item: RxItem) -> Result<(), RxItem> {
        match self.rx.get(q) {
            Some(r) => r.push(item),
            None => Err(item),
        }
    }

    fn rx_poll(&self, q: usize, budget: usize, out: &mut VecDeque<RxItem>) {
        if let Some(r) = self.rx.get(q) {
            r.poll(budget, out);
        }
    }

    fn rx_pending(&self) -> usize {
        self.rx.iter().map(|r| r.len()).sum()
    }

    fn rx_drain(&self, out: &mut Vec<RxItem>) {
        for r in &self.rx {
            r.drain(out);
        }
    }

    fn start_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, pkt: Pkt) {
        cpu.hook_done(
            dev,
            Hook::Xmit,
            None,
            0,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            None,
        );
        let segs = if pkt.skb.gso_segs > 1 {
            gro::gso_segment(&pkt.skb)
        } else {
            None
        };
        let Some(segs) = segs else {
            cpu.count_tx(dev, pkt.skb.len());
            return cpu.transmit_skb(dev, pkt);
        };
        let (id, ts) = (pkt.id, pkt.ts);
        cpu.free_skb(pkt.skb);
        for (i, s) in segs.into_iter().enumerate() {
            let sid = if i == 0 { id } else { cpu.originate() };
            cpu.count_tx(dev, s.len());
            let end = s.len();
            cpu.transmit(dev, sid, ts, s, 0, end);
        }
    }

    /// The frame's buffer leaves as it is (no copy).
    fn xdp_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, pkt: XPkt) {
        cpu.hook_done(
            dev,
            Hook::Xmit,
            None,
            0,
            pkt.id,
            pkt.ts,
            pkt.xdp.data(),
            None,
        );
        cpu.count_tx(dev, pkt.xdp.data_end - pkt.xdp.data);
        cpu.transmit_xdp(dev, pkt);
    }
}
