//! Conntrack tuples (struct nf_conntrack_tuple): what identifies one direction
//! of a connection, taken from a packet's L3 and L4 headers, and inverted for
//! the reply direction (net/netfilter/nf_conntrack_core.c: nf_ct_get_tuple,
//! nf_ct_invert_tuple).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use skiff_wire::ipv4::{Ipv4Packet, IP_OFFSET};
use skiff_wire::ipv6::Ipv6Packet;

use super::super::NfProto;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// One direction of a connection. For TCP and UDP `src_u`/`dst_u` are the
/// ports; for ICMP `src_u` is the echo id and `dst_u` holds type (high byte)
/// and code (low byte), as the kernel's `dst.u.icmp` does; other protocols
/// (nf_conntrack_generic) carry zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NfConntrackTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protonum: u8,
    pub src_u: u16,
    pub dst_u: u16,
}

impl NfConntrackTuple {
    pub fn icmp_type(&self) -> u8 {
        (self.dst_u >> 8) as u8
    }

    pub fn icmp_code(&self) -> u8 {
        self.dst_u as u8
    }

    pub fn pf(&self) -> NfProto {
        match self.src {
            IpAddr::V4(_) => NfProto::Ipv4,
            IpAddr::V6(_) => NfProto::Ipv6,
        }
    }
}

/// Where a packet's L4 header is and what it is (get_l4proto's result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Info {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protonum: u8,
    /// Offset of the L4 header from the start of the L3 packet.
    pub dataoff: usize,
    /// End of the L3 payload (the IPv4 total length, the IPv6 payload
    /// length plus its header), at most the packet's length.
    pub end: usize,
}

impl L4Info {
    /// The L4 header and payload.
    pub fn l4<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        pkt.get(self.dataoff..self.end).unwrap_or(&[])
    }
}

/// nf_ip_checksum / nf_ip6_checksum over the L4 segment with its
/// pseudo-header (true when the checksum verifies).
pub fn l4_checksum_ok(pkt: &[u8], l4: &L4Info) -> bool {
    use skiff_wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum};
    let seg = l4.l4(pkt);
    let pseudo = match (l4.src, l4.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if l4.protonum != IPPROTO_ICMP => {
            pseudo_header_v4(s, d, l4.protonum, seg.len())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, l4.protonum, seg.len()),
        // ICMPv4 has no pseudo-header.
        _ => 0,
    };
    fold(sum(seg, pseudo)) == 0
}

/// net/netfilter/nf_conntrack_core.c: get_l4proto (ipv4_get_l4proto,
/// ipv6_get_l4proto). None where the kernel returns <= 0: a header that does
/// not parse, or an IPv4 fragment that is not the first (conntrack sees
/// defragmented packets; skiff has no defrag, so later fragments get no ct).
pub fn get_l4proto(pkt: &[u8], pf: NfProto) -> Option<L4Info> {
    match pf {
        NfProto::Ipv4 => ipv4_get_l4proto(pkt),
        NfProto::Ipv6 => ipv6_get_l4proto(pkt),
        // The netdev hooks see frames of any protocol: no conntrack there.
        NfProto::Netdev => None,
    }
}

fn ipv4_get_l4proto(pkt: &[u8]) -> Option<L4Info> {
    // Header checks only: an ICMP error quotes a truncated inner packet.
    let ip = Ipv4Packet::new_unchecked(pkt);
    ip.check_header().ok()?;
    if ip.frag_off() & IP_OFFSET != 0 {
        return None;
    }
    let dataoff = ip.header_len();
    let end = usize::from(ip.total_len()).min(pkt.len());
    if dataoff > end {
        return None;
    }
    Some(L4Info {
        src: IpAddr::V4(ip.src_addr()),
        dst: IpAddr::V4(ip.dst_addr()),
        protonum: ip.protocol(),
        dataoff,
        end,
    })
}

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_NONE: u8 = 59;
const NEXTHDR_DEST: u8 = 60;

/// net/ipv6/exthdrs_core.c: ipv6_skip_exthdr, as conntrack uses it. A
/// fragment header ends the walk with no protocol (the kernel's conntrack
/// sees reassembled packets; skiff does not reassemble).
fn ipv6_get_l4proto(pkt: &[u8]) -> Option<L4Info> {
    let ip = Ipv6Packet::new_unchecked(pkt);
    ip.check_header().ok()?;
    let mut nexthdr = ip.next_header();
    let mut off = 40usize;
    // Bounded: each step advances at least 8 bytes through a finite packet.
    while matches!(
        nexthdr,
        NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_AUTH | NEXTHDR_DEST | NEXTHDR_FRAGMENT
    ) {
        if nexthdr == NEXTHDR_FRAGMENT {
            return None;
        }
        let hdr = pkt.get(off..off.checked_add(2)?)?;
        let len = if nexthdr == NEXTHDR_AUTH {
            (usize::from(hdr[1]) + 2) * 4
        } else {
            (usize::from(hdr[1]) + 1) * 8
        };
        nexthdr = hdr[0];
        off = off.checked_add(len)?;
    }
    let end = (40 + usize::from(ip.payload_len())).min(pkt.len());
    if nexthdr == NEXTHDR_NONE || off > end {
        return None;
    }
    Some(L4Info {
        src: IpAddr::V6(ip.src_addr()),
        dst: IpAddr::V6(ip.dst_addr()),
        protonum: nexthdr,
        dataoff: off,
        end,
    })
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// nf_ct_get_tuple: the L4 part by protocol (tcp_pkt_to_tuple needs the first
/// 8 bytes, udp and icmp the same; unknown protocols track addresses only).
pub fn pkt_to_tuple(pkt: &[u8], l4: &L4Info) -> Option<NfConntrackTuple> {
    let hdr = l4.l4(pkt);
    let (src_u, dst_u) = match l4.protonum {
        IPPROTO_TCP | IPPROTO_UDP => {
            if hdr.len() < 8 {
                return None;
            }
            (be16(hdr, 0)?, be16(hdr, 2)?)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if hdr.len() < 8 {
                return None;
            }
            // icmp_pkt_to_tuple: id, type, code.
            (be16(hdr, 4)?, be16(hdr, 0)?)
        }
        _ => (0, 0),
    };
    Some(NfConntrackTuple {
        src: l4.src,
        dst: l4.dst,
        protonum: l4.protonum,
        src_u,
        dst_u,
    })
}

/// nf_conntrack_proto_icmp.c: icmp_pkt_to_tuple's invmap (echo, timestamp,
/// info, address mask and their replies), and icmpv6's (echo, node info).
fn icmp_invert_type(protonum: u8, t: u8) -> Option<u8> {
    let pairs: &[(u8, u8)] = if protonum == IPPROTO_ICMP {
        &[(8, 0), (13, 14), (15, 16), (17, 18)]
    } else {
        &[(128, 129), (139, 140)]
    };
    pairs.iter().find_map(|&(a, b)| {
        if t == a {
            Some(b)
        } else if t == b {
            Some(a)
        } else {
            None
        }
    })
}

/// nf_ct_invert_tuple: swap the addresses and ports; ICMP types map to their
/// reply (None where the type has none: the kernel refuses those).
pub fn invert_tuple(t: &NfConntrackTuple) -> Option<NfConntrackTuple> {
    let (src_u, dst_u) = match t.protonum {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let inv = icmp_invert_type(t.protonum, t.icmp_type())?;
            (t.src_u, (u16::from(inv) << 8) | u16::from(t.icmp_code()))
        }
        _ => (t.dst_u, t.src_u),
    };
    Some(NfConntrackTuple {
        src: t.dst,
        dst: t.src,
        protonum: t.protonum,
        src_u,
        dst_u,
    })
}

/// The unspecified address of a tuple's family (for sorting and defaults).
pub fn unspecified(pf: NfProto) -> IpAddr {
    match pf {
        NfProto::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        NfProto::Ipv4 | NfProto::Netdev => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_inverts_to_reply_keeping_the_id() {
        let t = NfConntrackTuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protonum: IPPROTO_ICMP,
            src_u: 0x1234,
            dst_u: 8 << 8,
        };
        let r = invert_tuple(&t).unwrap();
        assert_eq!(r.src, t.dst);
        assert_eq!(r.src_u, 0x1234);
        assert_eq!(r.icmp_type(), 0);
        // Destination unreachable has no inverse: no conntrack.
        let e = NfConntrackTuple { dst_u: 3 << 8, ..t };
        assert_eq!(invert_tuple(&e), None);
    }

    #[test]
    fn ipv6_walks_extension_headers_and_stops_at_fragments() {
        let mut p = vec![0u8; 40 + 8 + 8];
        p[0] = 0x60;
        p[5] = 16; // payload length
        p[6] = NEXTHDR_HOP;
        p[40] = IPPROTO_UDP; // hop-by-hop: next = UDP, len 0 (8 bytes)
        let l4 = get_l4proto(&p, NfProto::Ipv6).unwrap();
        assert_eq!((l4.protonum, l4.dataoff), (IPPROTO_UDP, 48));
        p[6] = NEXTHDR_FRAGMENT;
        assert_eq!(get_l4proto(&p, NfProto::Ipv6), None);
    }
}
