//! drivers/net/loopback.c: `lo`, one per namespace — what it sends comes
//! straight back in through netif_rx; no XDP, no qdisc.

use super::{Features, Napi, NetDevice};
use crate::core::cpu::Cpu;
use crate::core::skb::eth_type_trans;
use crate::core::{DevId, Hook, Pkt, XPkt};

pub(crate) struct Loopback;

impl NetDevice for Loopback {
    fn kind(&self) -> &'static str {
        "loopback"
    }

    fn features(&self) -> Features {
        Features {
            native_xdp: false,
            no_queue: true,
            arp: false,
            loopback: true,
            napi: Napi::None,
            tx_queues: 1,
        }
    }

    /// loopback_xmit: back in through netif_rx on lo.
    fn start_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, mut pkt: Pkt) {
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
        let len = pkt.skb.len();
        cpu.count_tx(dev, len);
        cpu.count_rx(dev, len);
        let (p, t) = eth_type_trans(pkt.skb.data(), &cpu.dev(dev).mac);
        pkt.skb.protocol = p;
        pkt.skb.pkt_type = t;
        cpu.netif_rx(dev, pkt);
    }

    fn xdp_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, pkt: XPkt) {
        cpu.xdp_xmit_refused(dev, pkt);
    }
}
