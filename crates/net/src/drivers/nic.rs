//! A physical NIC: `rx_queues` hardware rx rings (RSS spreads flows over
//! them), as many tx queues, native XDP, and a transmit side that puts
//! frames on the wire (the datapath's sink). It does no TSO: a GSO skb is
//! segmented before it leaves (validate_xmit_skb -> skb_gso_segment).

use super::{DeviceKind, DeviceSpec, Features, Napi, NetDevice, Rings};
use crate::core::cpu::Cpu;
use crate::core::{errno, gro, DatapathError, DevId, Hook, Pkt, XPkt, EINVAL};

/// Descriptors per rx ring (ethtool -G rx; a large ring, as servers set it).
pub const NIC_RX_RING: usize = 4096;

pub(crate) struct Nic {
    rx: Rings,
}

impl Nic {
    pub fn new(rx_queues: usize) -> Nic {
        Nic {
            rx: Rings::new(rx_queues, NIC_RX_RING),
        }
    }
}

/// ->newlink: 1..=1024 rx queues.
pub(crate) fn newlink(
    spec: &DeviceSpec,
    _first: DevId,
    _cpus: usize,
) -> Result<Vec<Box<dyn NetDevice>>, DatapathError> {
    let DeviceKind::Nic { rx_queues } = spec.kind else {
        return Err(errno(EINVAL, format!("device {}: not a NIC", spec.name)));
    };
    if rx_queues == 0 || rx_queues > 1024 {
        return Err(errno(
            EINVAL,
            format!("device {}: {rx_queues} rx queues (1..1024)", spec.name),
        ));
    }
    Ok(vec![Box::new(Nic::new(rx_queues as usize))])
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

    fn rings(&self) -> Option<&Rings> {
        Some(&self.rx)
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
