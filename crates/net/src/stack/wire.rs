//! Byte-level helpers for the host stack: bounds-checked reads, the Internet
//! checksum (RFC 1071, as include/net/checksum.h folds it) and builders for the
//! headers the stack writes. Every frame the stack builds starts with a 14-byte
//! Ethernet header that `neigh_output` fills in.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

pub fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn ip4(b: &[u8], off: usize) -> Option<Ipv4Addr> {
    be32(b, off).map(Ipv4Addr::from)
}

pub fn ip6(b: &[u8], off: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(off..off.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

pub fn mac(b: &[u8], off: usize) -> Option<[u8; 6]> {
    b.get(off..off.checked_add(6)?)?.try_into().ok()
}

/// One's-complement sum of `data` added to `acc` (not folded).
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: the checksum field value.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

pub fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u64 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc + u64::from(proto) + len as u64
}

pub fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> u64 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc + u64::from(next) + len as u64
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// An Ethernet frame with an unfilled (zero) MAC header and `ethertype`.
pub fn eth_frame(ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload_len);
    f.extend_from_slice(&[0u8; 12]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

pub fn set_eth(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    if let Some(d) = frame.get_mut(0..6) {
        d.copy_from_slice(&dst);
    }
    if let Some(s) = frame.get_mut(6..12) {
        s.copy_from_slice(&src);
    }
}

/// Fields of an IPv4 header the stack writes (no options).
pub struct Ipv4Out {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub ttl: u8,
    pub id: u16,
    pub df: bool,
}

/// Ethernet (unfilled) + IPv4 header + payload, header checksum set.
pub fn ipv4_frame(h: &Ipv4Out, payload: &[u8]) -> Vec<u8> {
    let tot = 20 + payload.len();
    let mut f = eth_frame(ETH_P_IP, tot);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[1] = h.tos;
    put16(&mut ip, 2, tot.min(0xffff) as u16);
    put16(&mut ip, 4, h.id);
    put16(&mut ip, 6, if h.df { 0x4000 } else { 0 });
    ip[8] = h.ttl;
    ip[9] = h.proto;
    ip[12..16].copy_from_slice(&h.src.octets());
    ip[16..20].copy_from_slice(&h.dst.octets());
    let c = checksum(&ip);
    put16(&mut ip, 10, c);
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

/// Ethernet (unfilled) + IPv6 header + payload (whose transport checksum the
/// caller has already set).
pub fn ipv6_frame(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    tclass: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth_frame(ETH_P_IPV6, 40 + payload.len());
    let vtc = 0x6000_0000u32 | (u32::from(tclass) << 20);
    f.extend_from_slice(&vtc.to_be_bytes());
    f.extend_from_slice(&(payload.len().min(0xffff) as u16).to_be_bytes());
    f.push(next);
    f.push(hop);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(payload);
    f
}

/// Sets the ICMPv6 checksum (bytes 2..4 of `msg`) for the given addresses.
pub fn icmp6_csum(src: Ipv6Addr, dst: Ipv6Addr, msg: &mut [u8]) {
    put16(msg, 2, 0);
    let c = fold(sum(msg, pseudo6(src, dst, IPPROTO_ICMPV6, msg.len())));
    put16(msg, 2, c);
}

/// Sets the ICMP checksum (bytes 2..4 of `msg`).
pub fn icmp_csum(msg: &mut [u8]) {
    put16(msg, 2, 0);
    let c = checksum(msg);
    put16(msg, 2, c);
}

/// include/net/ip.h: ip_decrease_ttl — the incremental checksum update the
/// forwarding path applies (the exact bytes the kernel writes).
pub fn ip_decrease_ttl(ip: &mut [u8]) {
    let (Some(ttl), Some(check)) = (u8_at(ip, 8), be16(ip, 10)) else {
        return;
    };
    // The kernel works on the raw big-endian u16 as a host (little-endian) u32.
    let raw = u32::from(u16::from_ne_bytes(check.to_be_bytes()));
    let mut c = raw + u32::from(u16::from_ne_bytes(0x0100u16.to_be_bytes()));
    c += u32::from(c >= 0xffff);
    let new = (c as u16).to_ne_bytes();
    if let Some(s) = ip.get_mut(10..12) {
        s.copy_from_slice(&new);
    }
    if let Some(t) = ip.get_mut(8) {
        *t = ttl.wrapping_sub(1);
    }
}

/// The IPv6 solicited-node multicast address of `a`: ff02::1:ff00:0/104 with the
/// low 24 bits of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// include/net/if_inet6.h: ipv6_eth_mc_map.
pub fn ipv6_mc_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// include/net/ip.h: ip_eth_mc_map.
pub fn ipv4_mc_mac(a: Ipv4Addr) -> [u8; 6] {
    let o = a.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

pub fn prefix_match(a: std::net::IpAddr, net: std::net::IpAddr, plen: u8) -> bool {
    use std::net::IpAddr;
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = mask32(plen);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = mask128(plen);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

pub fn mask32(plen: u8) -> u32 {
    if plen == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(plen.min(32)))
    }
}

pub fn mask128(plen: u8) -> u128 {
    if plen == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(plen.min(128)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrease_ttl_matches_full_recompute() {
        let h = Ipv4Out {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 1, 0, 2),
            proto: 17,
            tos: 0,
            ttl: 64,
            id: 0x1234,
            df: true,
        };
        let f = ipv4_frame(&h, &[1, 2, 3, 4]);
        let mut ip = f[14..34].to_vec();
        ip_decrease_ttl(&mut ip);
        assert_eq!(ip[8], 63);
        assert_eq!(checksum(&ip), 0);
        let h2 = Ipv4Out { ttl: 63, ..h };
        assert_eq!(&ipv4_frame(&h2, &[1, 2, 3, 4])[14..34], &ip[..]);
    }
}
