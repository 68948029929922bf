//! GRO (net/core/gro.c: dev_gro_receive; net/ipv4/tcp_offload.c:
//! tcp_gro_receive), simplified: in-order TCP segments of one IPv4 flow within
//! a poll are merged into one linear skb (payloads appended, IP total length
//! and both checksums recomputed, gso_size/gso_segs set); the held skbs are
//! flushed at the end of the poll (napi_gro_flush). Leaving through a NIC, a
//! merged skb is cut back into gso_size segments (tcp_gso_segment).

use super::flow::{ethertype, ETH_P_IP, IPPROTO_TCP};
use super::{DevId, Pkt};

/// MAX_GRO_SKBS: flows held per NAPI instance.
pub const MAX_GRO_SKBS: usize = 8;
/// The largest merged IP packet (GRO_LEGACY_MAX_SIZE).
pub const GRO_MAX_SIZE: usize = 65535;

const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_ACK: u8 = 0x10;

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

fn parse(frame: &[u8]) -> Option<Seg> {
    let (proto, l3) = ethertype(frame)?;
    if proto != ETH_P_IP || l3 != 14 {
        return None;
    }
    let ip = frame.get(l3..l3 + 20)?;
    if ip[0] != 0x45 || ip[9] != IPPROTO_TCP {
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return None; // MF or an offset
    }
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if l3 + tot != frame.len() {
        return None; // padding or truncated: not merged
    }
    let l4 = l3 + 20;
    let th = frame.get(l4..l4 + 20)?;
    let thlen = (th[12] >> 4) as usize * 4;
    if thlen < 20 || tot < 20 + thlen {
        return None;
    }
    frame.get(l4..l4 + thlen)?;
    let payload = tot - 20 - thlen;
    let flags = th[13];
    // Only ACK (and PSH) segments with data are merged.
    if payload == 0 || flags & !(TCP_FLAG_ACK | TCP_FLAG_PSH) != 0 || flags & TCP_FLAG_ACK == 0 {
        return None;
    }
    Some(Seg {
        l3,
        l4,
        thlen,
        payload,
        seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        flags,
        key: FlowKey {
            src: [ip[12], ip[13], ip[14], ip[15]],
            dst: [ip[16], ip[17], ip[18], ip[19]],
            sport: u16::from_be_bytes([th[0], th[1]]),
            dport: u16::from_be_bytes([th[2], th[3]]),
            ack: u32::from_be_bytes([th[8], th[9], th[10], th[11]]),
            ttl: ip[8],
            tos: ip[1],
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
            let same_opts =
                head.get(34 + 20..34 + h.thlen()) == frame.get(seg.l4 + 20..seg.l4 + seg.thlen);
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
            let payload: Vec<u8> =
                frame[seg.l4 + seg.thlen..seg.l4 + seg.thlen + seg.payload].to_vec();
            let h = &mut self.held[i];
            let skb = &mut h.pkt.skb;
            if skb.tailroom() < payload.len() {
                skb.expand_head(0, payload.len() - skb.tailroom() + 1024);
            }
            let t = skb.tail;
            skb.buf[t..t + payload.len()].copy_from_slice(&payload);
            skb.tail += payload.len();
            h.next_seq = h.next_seq.wrapping_add(seg.payload as u32);
            h.segs += 1;
            if seg.flags & TCP_FLAG_PSH != 0 {
                let d = skb.data;
                skb.buf[d + 34 + 13] |= TCP_FLAG_PSH;
            }
            let into = h.pkt.id;
            let end = seg.flags & (TCP_FLAG_PSH | TCP_FLAG_FIN) != 0 || seg.payload < h.mss;
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
        if seg.flags & TCP_FLAG_PSH != 0 {
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
        self.pkt
            .skb
            .data()
            .get(34 + 12)
            .map(|b| (b >> 4) as usize * 4)
            .unwrap_or(20)
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
        let tot = (len - 14) as u16;
        skb.buf[d + 16..d + 18].copy_from_slice(&tot.to_be_bytes());
        ipv4_fix_csum(&mut skb.buf[d + 14..d + 34]);
        tcp4_fix_csum(&mut skb.buf[d..skb.tail]);
        skb.gso_size = h.mss as u32;
        skb.gso_segs = h.segs;
    }
    pkt
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ip_send_check: the IPv4 header checksum over `hdr` (20 bytes here).
pub fn ipv4_fix_csum(hdr: &mut [u8]) {
    if hdr.len() < 20 {
        return;
    }
    hdr[10] = 0;
    hdr[11] = 0;
    let c = fold(csum_add(0, hdr));
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The TCP checksum of an Ethernet+IPv4(20)+TCP frame, with the pseudo header.
pub fn tcp4_fix_csum(frame: &mut [u8]) {
    if frame.len() < 54 {
        return;
    }
    let tcp_len = frame.len() - 34;
    frame[34 + 16] = 0;
    frame[34 + 17] = 0;
    let mut sum = csum_add(0, &frame[26..34]);
    sum += IPPROTO_TCP as u32;
    sum += tcp_len as u32;
    sum = csum_add(sum, &frame[34..]);
    let c = fold(sum);
    frame[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
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
    let seg = parse_any(frame)?;
    let (hdr_len, payload) = (seg.0, &frame[seg.0..]);
    let seq0 = u32::from_be_bytes(frame.get(38..42)?.try_into().ok()?);
    let id0 = u16::from_be_bytes([frame[18], frame[19]]);
    let flags = frame[34 + 13];
    let n = payload.len().div_ceil(mss);
    let mut out = Vec::with_capacity(n);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let mut f = Vec::with_capacity(hdr_len + chunk.len());
        f.extend_from_slice(&frame[..hdr_len]);
        f.extend_from_slice(chunk);
        let tot = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&tot.to_be_bytes());
        f[18..20].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        let seq = seq0.wrapping_add((i * mss) as u32);
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < n {
            f[34 + 13] = flags & !(TCP_FLAG_PSH | TCP_FLAG_FIN);
        }
        ipv4_fix_csum(&mut f[14..34]);
        tcp4_fix_csum(&mut f);
        out.push(f);
    }
    Some(out)
}

/// (header length) of an Ethernet + IPv4(20) + TCP frame.
fn parse_any(frame: &[u8]) -> Option<(usize,)> {
    if frame.len() < 54
        || frame[12..14] != [0x08, 0x00]
        || frame[14] != 0x45
        || frame[23] != IPPROTO_TCP
    {
        return None;
    }
    let thlen = (frame[34 + 12] >> 4) as usize * 4;
    if thlen < 20 || frame.len() < 34 + thlen {
        return None;
    }
    Some((34 + thlen,))
}
