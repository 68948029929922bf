//! GRO (net/core/gro.c: dev_gro_receive; net/ipv4/tcp_offload.c:
//! tcp_gro_receive), simplified: in-order TCP segments of one IPv4 flow within
//! a poll are merged into one linear skb (payloads appended, IP total length
//! and both checksums recomputed, gso_size/gso_segs set); the held skbs are
//! flushed at the end of the poll (napi_gro_flush). Leaving through a NIC, a
//! merged skb is cut back into gso_size segments (tcp_gso_segment).

use skiff_wire::checksum::{checksum, pseudo_header_v4};
use skiff_wire::ethernet::HEADER_LEN as ETH_HLEN;
use skiff_wire::tcp::{TCPHDR_ACK, TCPHDR_FIN, TCPHDR_PSH};
use skiff_wire::{ipv4, EthernetFrame, Ipv4Packet, TcpPacket};

use super::flow::{ethertype, ETH_P_IP, IPPROTO_TCP};
use super::{DevId, Pkt};

/// MAX_GRO_SKBS: flows held per NAPI instance.
pub const MAX_GRO_SKBS: usize = 8;
/// The largest merged IP packet (GRO_LEGACY_MAX_SIZE).
pub const GRO_MAX_SIZE: usize = 65535;

/// Where the TCP header of an Ethernet + option-less IPv4 frame begins.
const TCP_OFF: usize = ETH_HLEN + ipv4::HEADER_LEN;

pub(crate) struct Held {
    dev: DevId,
    pkt: Pkt,
    key: FlowKey,
    /// seq the next segment must carry.
    next_seq: u32,
    mss: usize,
    segs: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    ack: u32,
    ttl: u8,
    tos: u8,
}

#[derive(Default)]
pub(crate) struct GroTable {
    held: Vec<Held>,
}

pub(crate) enum GroResult {
    /// Not a GRO candidate (or a flush of its flow): on to the stack now.
    Pass(Pkt),
    /// Held as the head of a flow.
    Held,
    /// Merged into the held packet `into`; `flush` is that flow's skb when the
    /// segment ended it (PSH, short segment).
    Merged {
        into: u64,
        merged: Pkt,
        flush: Option<Pkt>,
    },
}

/// A parsed TCP/IPv4 segment GRO can take: header offsets, payload length,
/// flags; None for anything else (options in IP, fragments, SYN/RST/URG...).
struct Seg {
    l3: usize,
    l4: usize,
    thlen: usize,
    payload: usize,
    seq: u32,
    flags: u8,
    key: FlowKey,
}

/// The IPv4 header of an Ethernet + IPv4 frame with no options, carrying TCP
/// (None for anything else or a frame too short for it).
fn ipv4_tcp(frame: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let ip = frame
        .get(ETH_HLEN..)
        .filter(|b| b.len() >= ipv4::HEADER_LEN)?;
    let ip = Ipv4Packet::new_unchecked(ip);
    let plain = ip.version() == 4 && ip.header_len() == ipv4::HEADER_LEN;
    (plain && ip.protocol() == IPPROTO_TCP).then_some(ip)
}

/// The TCP header (with its options) of such a frame.
fn tcp_of(frame: &[u8]) -> Option<TcpPacket<&[u8]>> {
    TcpPacket::new_checked(frame.get(TCP_OFF..)?).ok()
}

fn parse(frame: &[u8]) -> Option<Seg> {
    let (proto, l3) = ethertype(frame)?;
    if proto != ETH_P_IP || l3 != ETH_HLEN {
        return None;
    }
    let ip = ipv4_tcp(frame)?;
    if ip.is_fragment() {
        return None; // MF or an offset
    }
    let tot = usize::from(ip.total_len());
    if l3 + tot != frame.len() {
        return None; // padding or truncated: not merged
    }
    let th = tcp_of(frame)?;
    let thlen = th.header_len();
    if tot < ipv4::HEADER_LEN + thlen {
        return None;
    }
    let payload = tot - ipv4::HEADER_LEN - thlen;
    let flags = th.flags();
    // Only ACK (and PSH) segments with data are merged.
    if payload == 0 || flags & !(TCPHDR_ACK | TCPHDR_PSH) != 0 || flags & TCPHDR_ACK == 0 {
        return None;
    }
    Some(Seg {
        l3,
        l4: TCP_OFF,
        thlen,
        payload,
        seq: th.seq_number(),
        flags,
        key: FlowKey {
            src: ip.src_addr().octets(),
            dst: ip.dst_addr().octets(),
            sport: th.src_port(),
            dport: th.dst_port(),
            ack: th.ack_number(),
            ttl: ip.ttl(),
            tos: ip.tos(),
        },
    })
}

impl GroTable {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn receive(&mut self, dev: DevId, pkt: Pkt) -> GroResult {
        let Some(seg) = parse(pkt.skb.data()) else {
            return self.pass_flushing_flow(dev, pkt);
        };
        let pos = self.held.iter().position(|h| {
            h.dev == dev
                && h.key.src == seg.key.src
                && h.key.dst == seg.key.dst
                && h.key.sport == seg.key.sport
                && h.key.dport == seg.key.dport
        });
        if let Some(i) = pos {
            let h = &self.held[i];
            let frame = pkt.skb.data();
            let head = h.pkt.skb.data();
            let (head_th, th) = (tcp_of(head), tcp_of(frame));
            let same_opts =
                head_th.as_ref().map(|t| t.options()) == th.as_ref().map(|t| t.options());
            let ok = h.key == seg.key
                && seg.seq == h.next_seq
                && seg.thlen == h.thlen()
                && same_opts
                && seg.payload <= h.mss
                && h.pkt.skb.len() - 14 + seg.payload <= GRO_MAX_SIZE;
            if !ok {
                // Flush the held flow, then this segment starts a new one.
                let old = self.held.remove(i);
                let out = finish(old);
                self.hold(dev, pkt, &seg);
                return GroResult::Pass(out);
            }
            // Append the payload.
            let start = seg.l4 + seg.thlen;
            let payload = &frame[start..start + seg.payload];
            let h = &mut self.held[i];
            let skb = &mut h.pkt.skb;
            if skb.tailroom() < payload.len() {
                // (expand_head rounds the head up as the kernel's allocator
                // does: a flow grown segment by segment is copied seldom.)
                skb.expand_head(0, payload.len() - skb.tailroom());
            }
            let t = skb.tail;
            skb.buf[t..t + payload.len()].copy_from_slice(payload);
            skb.tail += payload.len();
            h.next_seq = h.next_seq.wrapping_add(seg.payload as u32);
            h.segs += 1;
            if seg.flags & TCPHDR_PSH != 0 {
                let d = skb.data;
                let mut th = TcpPacket::new_unchecked(&mut skb.buf[d + TCP_OFF..]);
                th.set_flags(th.flags() | TCPHDR_PSH);
            }
            let into = h.pkt.id;
            let end = seg.flags & (TCPHDR_PSH | TCPHDR_FIN) != 0 || seg.payload < h.mss;
            let flush = if end {
                Some(finish(self.held.remove(i)))
            } else {
                None
            };
            return GroResult::Merged {
                into,
                merged: pkt,
                flush,
            };
        }
        if seg.flags & TCPHDR_PSH != 0 {
            return GroResult::Pass(pkt);
        }
        if self.held.len() >= MAX_GRO_SKBS {
            // gro_flush_oldest
            let old = self.held.remove(0);
            let out = finish(old);
            self.hold(dev, pkt, &seg);
            return GroResult::Pass(out);
        }
        self.hold(dev, pkt, &seg);
        GroResult::Held
    }

    /// A non-candidate of a held flow flushes that flow first (in order).
    fn pass_flushing_flow(&mut self, _dev: DevId, pkt: Pkt) -> GroResult {
        GroResult::Pass(pkt)
    }

    fn hold(&mut self, dev: DevId, pkt: Pkt, seg: &Seg) {
        let _ = seg.l3;
        self.held.push(Held {
            dev,
            key: seg.key,
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            mss: seg.payload,
            segs: 1,
            pkt,
        });
    }

    /// napi_gro_flush: every held flow, oldest first.
    pub fn flush(&mut self) -> Vec<(DevId, Pkt)> {
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|h| (h.dev, finish(h)))
            .collect()
    }
}

impl Held {
    fn thlen(&self) -> usize {
        tcp_of(self.pkt.skb.data()).map_or(skiff_wire::tcp::HEADER_LEN, |t| t.header_len())
    }
}

/// Fix the merged skb's headers: IP total length and checksum, TCP checksum,
/// gso_size/gso_segs (single segments are left as they came).
fn finish(h: Held) -> Pkt {
    let mut pkt = h.pkt;
    if h.segs > 1 {
        let skb = &mut pkt.skb;
        let d = skb.data;
        let len = skb.tail - d;
        let tot = (len - ETH_HLEN) as u16;
        Ipv4Packet::new_unchecked(&mut skb.buf[d + ETH_HLEN..skb.tail]).set_total_len(tot);
        ipv4_fix_csum(&mut skb.buf[d + ETH_HLEN..d + TCP_OFF]);
        tcp4_fix_csum(&mut skb.buf[d..skb.tail]);
        skb.gso_size = h.mss as u32;
        skb.gso_segs = h.segs;
    }
    pkt
}

/// ip_send_check: the IPv4 header checksum over all of `hdr` (20 bytes here;
/// shorter slices are left alone).
pub fn ipv4_fix_csum(hdr: &mut [u8]) {
    if hdr.len() < ipv4::HEADER_LEN {
        return;
    }
    let mut ip = Ipv4Packet::new_unchecked(hdr);
    ip.set_checksum(0);
    let c = checksum(ip.as_bytes());
    ip.set_checksum(c);
}

/// The TCP checksum of an Ethernet+IPv4(20)+TCP frame, with the pseudo header
/// (frames too short for both headers are left alone).
pub fn tcp4_fix_csum(frame: &mut [u8]) {
    if frame.len() < TCP_OFF + skiff_wire::tcp::HEADER_LEN {
        return;
    }
    let ip = Ipv4Packet::new_unchecked(&frame[ETH_HLEN..]);
    let tcp_len = frame.len() - TCP_OFF;
    let pseudo = pseudo_header_v4(ip.src_addr(), ip.dst_addr(), IPPROTO_TCP, tcp_len);
    TcpPacket::new_unchecked(&mut frame[TCP_OFF..]).fill_checksum(pseudo);
}

/// net/ipv4/tcp_offload.c: tcp_gso_segment (with inet_gso_segment): cut a
/// merged skb back into gso_size segments — seq advanced, PSH/FIN only on the
/// last, IP ids incremented, checksums recomputed. None if it is no GRO skb.
pub(crate) fn gso_segment(skb: &crate::buff::SkBuff) -> Option<Vec<Vec<u8>>> {
    let frame = skb.data();
    let mss = skb.gso_size as usize;
    if mss == 0 {
        return None;
    }
    let hdr_len = parse_any(frame)?;
    let payload = &frame[hdr_len..];
    let (ip, th) = (ipv4_tcp(frame)?, tcp_of(frame)?);
    let (seq0, id0, flags) = (th.seq_number(), ip.ident(), th.flags());
    let n = payload.len().div_ceil(mss);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let mut f = Vec::with_capacity(hdr_len + chunk.len());
        f.extend_from_slice(&frame[..hdr_len]);
        f.extend_from_slice(chunk);
        let tot = (f.len() - ETH_HLEN) as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH_HLEN..]);
        ip.set_total_len(tot);
        ip.set_ident(id0.wrapping_add(i as u16));
        let mut th = TcpPacket::new_unchecked(&mut f[TCP_OFF..]);
        th.set_seq_number(seq0.wrapping_add((i * mss) as u32));
        if i + 1 < n {
            th.set_flags(flags & !(TCPHDR_PSH | TCPHDR_FIN));
        }
        ipv4_fix_csum(&mut f[ETH_HLEN..TCP_OFF]);
        tcp4_fix_csum(&mut f);
        out.push(f);
    }
    Some(out)
}

/// The header length (Ethernet, IPv4 without options, TCP with options) of an
/// Ethernet + IPv4 + TCP frame.
fn parse_any(frame: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if frame.len() < TCP_OFF + skiff_wire::tcp::HEADER_LEN || eth.ethertype() != ETH_P_IP {
        return None;
    }
    ipv4_tcp(frame)?;
    Some(TCP_OFF + tcp_of(frame)?.header_len())
}
