//! drivers/net/veth.c: a veth end. What it transmits its peer receives
//! (__dev_forward_skb: scrubbed, eth_type_trans'd) — through the peer's NAPI
//! ring when the peer runs XDP (veth_xdp_rx, one ring per sending CPU),
//! else through netif_rx. XDP frames (ndo_xdp_xmit) need an XDP program on
//! the peer (veth_xdp_xmit: -ENXIO otherwise).

use super::{DeviceSpec, Features, Napi, NetDevice, Rings};
use crate::buff::ETH_HLEN;
use crate::core::cpu::{at, Cpu};
use crate::core::skb::{eth_type_trans, skb_scrub_packet};
use crate::core::{DatapathError, DevId, Hook, Pkt, RxItem, XPkt};
use crate::drop::DropReason;

/// drivers/net/veth.c: VETH_RING_SIZE.
pub const VETH_RING_SIZE: usize = 256;

pub(crate) struct Veth {
    peer: DevId,
    /// veth_rq's xdp_ring, one per CPU (veth_select_rxq by the sending CPU).
    rings: Rings,
}

impl Veth {
    pub fn new(peer: DevId, cpus: usize) -> Veth {
        Veth {
            peer,
            rings: Rings::new(cpus, VETH_RING_SIZE),
        }
    }

    /// veth_xdp_rx: into the peer's ring of the running CPU. A full ring is
    /// this end's tx_dropped (priv->dropped); for an XDP frame also the
    /// peer's rx_dropped (peer_tq_xdp_xmit_err counts in both).
    fn to_peer_ring(&self, cpu: &mut Cpu<'_>, dev: DevId, item: RxItem) {
        let c = cpu.st.cpu;
        if let Err(item) = cpu.dev(self.peer).ops.rx_enqueue(c, item) {
            cpu.stats(dev).tx_dropped += 1;
            if matches!(item, RxItem::Xdp(_)) {
                cpu.stats(self.peer).rx_dropped += 1;
            }
            cpu.drop_item(item, DropReason::FullRing, at(self.peer, Hook::Rx));
        }
    }
}

/// veth_newlink: both ends, each the other's peer.
pub(crate) fn newlink(
    _spec: &DeviceSpec,
    first: DevId,
    cpus: usize,
) -> Result<Vec<Box<dyn NetDevice>>, DatapathError> {
    let second = DevId(first.0 + 1);
    Ok(vec![
        Box::new(Veth::new(second, cpus)),
        Box::new(Veth::new(first, cpus)),
    ])
}

impl NetDevice for Veth {
    fn kind(&self) -> &'static str {
        "veth"
    }

    fn features(&self) -> Features {
        Features {
            native_xdp: true,
            no_queue: true,
            arp: true,
            loopback: false,
            napi: Napi::PerCpu,
            tx_queues: 1,
        }
    }

    fn peer(&self) -> Option<DevId> {
        Some(self.peer)
    }

    fn rings(&self) -> Option<&Rings> {
        Some(&self.rings)
    }

    /// veth_xmit.
    fn start_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, mut pkt: Pkt) {
        let p = cpu.dev(self.peer);
        let len = pkt.skb.len();
        if !p.up || len > p.mtu as usize + ETH_HLEN + 4 {
            cpu.stats(dev).tx_dropped += 1;
            return cpu.drop_skb(pkt, DropReason::NotSpecified, at(dev, Hook::Xmit));
        }
        let target = cpu.sh.trace_on.then(|| cpu.target_name(self.peer));
        cpu.hook_done(
            dev,
            Hook::Xmit,
            None,
            0,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            target,
        );
        let xnet = cpu.dev(dev).ns != p.ns;
        skb_scrub_packet(&mut pkt.skb, xnet);
        let (proto, t) = eth_type_trans(pkt.skb.data(), &p.mac);
        pkt.skb.protocol = proto;
        pkt.skb.pkt_type = t;
        pkt.skb.ifindex = p.ifindex;
        // This end's tx is what the peer counted received (veth_get_stats64):
        // at its poll when it runs XDP, else here, once netif_rx took it.
        if p.xdp_native.is_some() {
            self.to_peer_ring(cpu, dev, RxItem::Skb(pkt));
        } else if cpu.netif_rx(self.peer, pkt) {
            cpu.count_tx(dev, len);
            cpu.count_rx(self.peer, len);
        } else {
            cpu.stats(dev).tx_dropped += 1;
        }
    }

    /// veth_xdp_xmit: only into a peer that runs XDP.
    fn xdp_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, mut pkt: XPkt) {
        let p = cpu.dev(self.peer);
        let len = pkt.xdp.data_end - pkt.xdp.data;
        if !(p.up && p.xdp_native.is_some() && len <= p.mtu as usize + ETH_HLEN) {
            // peer_tq_xdp_xmit_err: the peer's rx_dropped as well.
            cpu.stats(self.peer).rx_dropped += 1;
            return cpu.xdp_xmit_refused(dev, pkt);
        }
        let target = cpu.sh.trace_on.then(|| cpu.target_name(self.peer));
        cpu.hook_done(
            dev,
            Hook::Xmit,
            None,
            0,
            pkt.id,
            pkt.ts,
            pkt.xdp.data(),
            target,
        );
        // Counted (here as tx, there as rx) when the peer's poll takes it.
        pkt.xdp.rx_queue_index = 0;
        self.to_peer_ring(cpu, dev, RxItem::Xdp(pkt));
    }
}
