//! sk_buff building and the sk_buff operations the stages share: build_skb
//! around an XDP frame, eth_type_trans, clones, scrubbing, VLAN
//! (un)tagging (net/core/skbuff.c, net/ethernet/eth.c).

use super::cpu::Cpu;
use skiff_wire::{EthernetFrame, VlanTag};

use super::*;
use crate::buff::{ETH_HLEN, PACKET_BROADCAST, PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST};
use crate::drivers::{rss, Napi};

/// net/ethernet/eth.c: eth_type_trans — pkt_type from the destination MAC
/// against the device's address, protocol from the EtherType (802.3/802.2 below 0x600).
pub(crate) fn eth_type_trans(frame: &[u8], dev_mac: &[u8; 6]) -> (u16, u8) {
    let Some(dst) = frame.get(..6) else {
        return (0, PACKET_HOST);
    };
    let pkt_type = if dst[0] & 1 != 0 {
        if dst == [0xff; 6] {
            PACKET_BROADCAST
        } else {
            PACKET_MULTICAST
        }
    } else if dst != dev_mac {
        PACKET_OTHERHOST
    } else {
        PACKET_HOST
    };
    let proto = EthernetFrame::new_checked(frame)
        .map(|e| e.ethertype())
        .unwrap_or(0);
    let protocol = if proto >= 0x0600 {
        proto
    } else if frame.get(14..16) == Some(&[0xff, 0xff]) {
        0x0001
    } else {
        0x0004
    };
    (protocol, pkt_type)
}

/// net/core/filter.c: __bpf_redirect_common's check that a link-layer header is carried.
pub(crate) fn has_mac_header(skb: &SkBuff) -> bool {
    !(skb.mac_header >= skb.network_header || skb.is_empty())
}

/// The skb's bytes as a Vec without copying (the buffer moves out).
pub(crate) fn take_frame(skb: &mut SkBuff) -> Vec<u8> {
    let (d, t) = (skb.data, skb.tail);
    let mut v = std::mem::take(&mut skb.buf);
    v.truncate(t);
    v.drain(..d);
    v
}

/// The sk_buff fields that survive a rebuilt buffer.
pub(crate) fn copy_skb_meta(from: &SkBuff, to: &mut SkBuff) {
    to.protocol = from.protocol;
    to.pkt_type = from.pkt_type;
    to.mark = from.mark;
    to.priority = from.priority;
    to.queue_mapping = from.queue_mapping;
    to.vlan_proto = from.vlan_proto;
    to.vlan_tci = from.vlan_tci;
    to.vlan_present = from.vlan_present;
    to.hash = from.hash;
    to.l4_hash = from.l4_hash;
    to.sw_hash = from.sw_hash;
    to.tc_index = from.tc_index;
    to.tstamp = from.tstamp;
    to.ingress_ifindex = from.ingress_ifindex;
}

/// net/core/skbuff.c: skb_scrub_packet.
pub(crate) fn skb_scrub_packet(skb: &mut SkBuff, xnet: bool) {
    skb.pkt_type = PACKET_HOST;
    // skb_dst_drop: a bpf_skb_set_tunnel_key metadata_dst goes with the dst.
    skb.tunnel = None;
    skb.ingress_ifindex = 0;
    if xnet {
        skb.mark = 0;
        skb.tstamp = 0;
    }
}

/// net/core/skbuff.c: skb_vlan_untag — the outer tag moves to skb->vlan_*.
pub(crate) fn skb_vlan_untag(skb: &mut SkBuff) {
    if skb.vlan_present || skb.len() < ETH_HLEN + 4 {
        return;
    }
    let Some(tag) = skb
        .data()
        .get(ETH_HLEN..)
        .and_then(|t| VlanTag::new_checked(t).ok())
    else {
        return;
    };
    let (tci, inner) = (tag.tci(), tag.inner_ethertype());
    let d = skb.data;
    skb.vlan_proto = skb.protocol;
    skb.vlan_tci = tci;
    skb.vlan_present = true;
    skb.buf.copy_within(d..d + 12, d + 4);
    skb.data += 4;
    skb.mac_header = skb.data;
    skb.network_header = skb.data + ETH_HLEN;
    skb.protocol = inner;
}

/// __vlan_hwaccel_push_inside: the offloaded tag goes back into the frame.
pub(crate) fn skb_vlan_push_inline(skb: &mut SkBuff) {
    if !skb.vlan_present || skb.len() < 12 {
        return;
    }
    if skb.data < 4 {
        skb.expand_head(64, 0);
    }
    let d = skb.data;
    skb.buf.copy_within(d..d + 12, d - 4);
    skb.data -= 4;
    let d = skb.data;
    let proto = skb.vlan_proto.to_be_bytes();
    let tci = skb.vlan_tci.to_be_bytes();
    skb.buf[d + 12..d + 14].copy_from_slice(&proto);
    skb.buf[d + 14..d + 16].copy_from_slice(&tci);
    skb.mac_header = skb.data;
    skb.vlan_present = false;
    skb.vlan_tci = 0;
    skb.vlan_proto = 0;
}

impl Cpu<'_> {
    /// build_skb around the XDP frame's buffer: data at the Ethernet header,
    /// XDP metadata kept (skb_metadata_set), protocol and pkt_type from
    /// eth_type_trans, a NIC's RSS hash from the rx descriptor (computed on
    /// the wire frame) and rx queue (skb_record_rx_queue).
    pub(crate) fn skb_from_xdp(&mut self, mut xdp: Box<XdpBuff>, dev: DevId) -> Box<SkBuff> {
        let d = self.dev(dev);
        let metalen = xdp.metalen();
        let rxq = xdp.rx_queue_index;
        let (data, end) = (xdp.data, xdp.data_end);
        let rx_hash = xdp.rx_hash;
        let page = std::mem::take(&mut xdp.buf);
        self.cache_xdp(xdp);
        let skb = SkBuff::from_buf(page.into_vec(), data, end, d.ifindex, d.mtu);
        let mut skb = self.alloc_skb(skb);
        skb.meta_len = metalen;
        let (p, t) = eth_type_trans(skb.data(), &d.mac);
        skb.protocol = p;
        skb.pkt_type = t;
        if let Napi::Queues(_) = d.ops.features().napi {
            if let Some((h, l4)) = rx_hash.or_else(|| rss::rss_hash(skb.data())) {
                skb.hash = h;
                skb.l4_hash = l4;
            }
            skb.queue_mapping = (rxq + 1) as u16;
        }
        skb
    }

    /// skb_clone + a copy of the data (a new packet with the same metadata).
    pub(crate) fn clone_pkt(&mut self, pkt: &Pkt) -> Pkt {
        let id = self.originate();
        self.copy_pkt(id, pkt, pkt.skb.data())
    }

    /// A new skb carrying `frame` with `pkt`'s metadata.
    pub(crate) fn copy_pkt(&mut self, id: PacketId, pkt: &Pkt, frame: &[u8]) -> Pkt {
        let mut skb = SkBuff::new(
            frame,
            crate::buff::NET_SKB_PAD,
            pkt.skb.ifindex,
            pkt.skb.mtu,
        );
        copy_skb_meta(&pkt.skb, &mut skb);
        let skb = self.alloc_skb(skb);
        Pkt {
            id,
            ts: pkt.ts,
            skb,
        }
    }
}
