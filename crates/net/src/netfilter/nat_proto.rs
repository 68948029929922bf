//! NAT packet mangling (net/netfilter/nf_nat_proto.c): rewrite addresses and
//! ports (ICMP query ids) to a target tuple with incremental checksum
//! updates, and translate the packet an ICMP error quotes.

use std::net::IpAddr;

use skiff_wire::checksum::{checksum, csum_replace2, csum_replace4, fold, pseudo_header_v6, sum};
use skiff_wire::ipv4::Ipv4Packet;
use skiff_wire::ipv6::Ipv6Packet;

use super::conntrack::tuple::{
    self, NfConntrackTuple, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};
use super::nat::NfNatManipType;

/// CSUM_MANGLED_0: a UDP checksum that computes to 0 is sent as 0xffff.
const CSUM_MANGLED_0: u16 = 0xffff;

fn be16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn put16(b: &mut [u8], off: usize, v: u16) -> Option<()> {
    b.get_mut(off..off.checked_add(2)?)?
        .copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// The 32-bit words of an address (as inet_proto_csum_replace4/16 see them).
fn addr_words(a: IpAddr) -> Vec<u32> {
    match a {
        IpAddr::V4(v) => vec![u32::from(v)],
        IpAddr::V6(v) => v
            .octets()
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

/// inet_proto_csum_replace4 / _16 with a pseudo-header, on a full checksum
/// (skiff's packets are CHECKSUM_NONE: the field holds the whole sum).
fn csum_replace_addr(check: u16, old: IpAddr, new: IpAddr) -> u16 {
    addr_words(old)
        .into_iter()
        .zip(addr_words(new))
        .fold(check, |c, (o, n)| csum_replace4(c, o, n))
}

/// The L3 address the manip rewrites: (old, new).
fn l3_change(
    pkt: &[u8],
    target: &NfConntrackTuple,
    manip: NfNatManipType,
) -> Option<(IpAddr, IpAddr)> {
    let l4 = tuple::get_l4proto(pkt, target.pf())?;
    Some(match manip {
        NfNatManipType::Src => (l4.src, target.src),
        NfNatManipType::Dst => (l4.dst, target.dst),
    })
}

/// nf_nat_ipv4_manip_pkt / nf_nat_ipv6_manip_pkt: L4 first (its checksum
/// covers the addresses), then the L3 addresses. `pkt` starts at the IP
/// header. False where the kernel's manip fails (the packet is dropped).
pub fn manip_pkt(pkt: &mut [u8], target: &NfConntrackTuple, manip: NfNatManipType) -> bool {
    manip_pkt_inner(pkt, target, manip).is_some()
}

fn manip_pkt_inner(pkt: &mut [u8], target: &NfConntrackTuple, manip: NfNatManipType) -> Option<()> {
    let l4 = tuple::get_l4proto(pkt, target.pf())?;
    let (old, new) = l3_change(pkt, target, manip)?;
    let end = l4.end;
    let l4buf = pkt.get_mut(l4.dataoff..end)?;
    l4proto_manip_pkt(l4buf, target, manip, (old, new))?;
    match new {
        IpAddr::V4(n) => {
            let mut ip = Ipv4Packet::new_unchecked(&mut *pkt);
            ip.check_header().ok()?;
            let old4 = match manip {
                NfNatManipType::Src => ip.src_addr(),
                NfNatManipType::Dst => ip.dst_addr(),
            };
            let c = csum_replace4(ip.checksum(), u32::from(old4), u32::from(n));
            ip.set_checksum(c);
            match manip {
                NfNatManipType::Src => ip.set_src_addr(n),
                NfNatManipType::Dst => ip.set_dst_addr(n),
            }
        }
        IpAddr::V6(n) => {
            let mut ip = Ipv6Packet::new_unchecked(&mut *pkt);
            ip.check_header().ok()?;
            match manip {
                NfNatManipType::Src => ip.set_src_addr(n),
                NfNatManipType::Dst => ip.set_dst_addr(n),
            }
        }
    }
    Some(())
}

/// l4proto_manip_pkt: ports (TCP, UDP) or the ICMP query id; protocols NAT
/// does not know pass unmodified.
fn l4proto_manip_pkt(
    l4: &mut [u8],
    target: &NfConntrackTuple,
    manip: NfNatManipType,
    addrs: (IpAddr, IpAddr),
) -> Option<()> {
    let (port_off, newport) = match manip {
        NfNatManipType::Src => (0, target.src_u),
        NfNatManipType::Dst => (2, target.dst_u),
    };
    match target.protonum {
        IPPROTO_TCP => tcp_manip_pkt(l4, port_off, newport, addrs),
        IPPROTO_UDP => udp_manip_pkt(l4, port_off, newport, addrs),
        IPPROTO_ICMP => icmp_manip_pkt(l4, target.src_u, None),
        IPPROTO_ICMPV6 => icmp_manip_pkt(l4, target.src_u, Some(addrs)),
        _ => Some(()),
    }
}

/// tcp_manip_pkt: inside an ICMP error only 8 bytes may be there; then the
/// port changes and the checksum (out of reach) does not.
fn tcp_manip_pkt(
    l4: &mut [u8],
    port_off: usize,
    newport: u16,
    (old, new): (IpAddr, IpAddr),
) -> Option<()> {
    let oldport = be16_at(l4, port_off)?;
    put16(l4, port_off, newport)?;
    if l4.len() < 20 {
        return Some(());
    }
    let c = csum_replace_addr(be16_at(l4, 16)?, old, new);
    put16(l4, 16, csum_replace2(c, oldport, newport))
}

/// udp_manip_pkt: a zero checksum (none, IPv4) stays zero.
fn udp_manip_pkt(
    l4: &mut [u8],
    port_off: usize,
    newport: u16,
    (old, new): (IpAddr, IpAddr),
) -> Option<()> {
    let oldport = be16_at(l4, port_off)?;
    let check = be16_at(l4, 6)?;
    if check != 0 {
        let c = csum_replace2(csum_replace_addr(check, old, new), oldport, newport);
        put16(l4, 6, if c == 0 { CSUM_MANGLED_0 } else { c })?;
    }
    put16(l4, port_off, newport)
}

/// icmp_manip_pkt / icmpv6_manip_pkt: the id of query messages; ICMPv6's
/// checksum also covers the pseudo-header.
fn icmp_manip_pkt(l4: &mut [u8], newid: u16, v6_addrs: Option<(IpAddr, IpAddr)>) -> Option<()> {
    let t = *l4.first()?;
    let mut check = be16_at(l4, 2)?;
    if let Some((old, new)) = v6_addrs {
        check = csum_replace_addr(check, old, new);
        put16(l4, 2, check)?;
    }
    let query = if v6_addrs.is_some() {
        matches!(t, 128 | 129)
    } else {
        matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
    };
    if !query {
        return Some(());
    }
    let oldid = be16_at(l4, 4)?;
    put16(l4, 2, csum_replace2(check, oldid, newid))?;
    put16(l4, 4, newid)
}

/// nf_nat_icmp_reply_translation / nf_nat_icmpv6_reply_translation's
/// mangling: the quoted packet with `inner_target` and the opposite manip,
/// the ICMP checksum recomputed, then the outer header with `outer_target`.
pub fn icmp_reply_translation(
    pkt: &mut [u8],
    inner_target: &NfConntrackTuple,
    outer_target: &NfConntrackTuple,
    manip: NfNatManipType,
) -> bool {
    icmp_reply_inner(pkt, inner_target, outer_target, manip).is_some()
}

fn icmp_reply_inner(
    pkt: &mut [u8],
    inner_target: &NfConntrackTuple,
    outer_target: &NfConntrackTuple,
    manip: NfNatManipType,
) -> Option<()> {
    let l4 = tuple::get_l4proto(pkt, inner_target.pf())?;
    let (src, dst) = (l4.src, l4.dst);
    // nf_ip_checksum / nf_ip6_checksum: a damaged error is dropped.
    if !tuple::l4_checksum_ok(pkt, &l4) {
        return None;
    }
    let icmp = pkt.get_mut(l4.dataoff..l4.end)?;
    if icmp.len() < 8 {
        return None;
    }
    let inner = icmp.get_mut(8..)?;
    if !manip_pkt(inner, inner_target, manip.other()) {
        return None;
    }
    put16(icmp, 2, 0)?;
    let c = match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => fold(sum(
            icmp,
            pseudo_header_v6(s, d, IPPROTO_ICMPV6, icmp.len()),
        )),
        _ => checksum(icmp),
    };
    put16(icmp, 2, c)?;
    manip_pkt(pkt, outer_target, manip).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_wire::checksum::pseudo_header_v4;
    use std::net::Ipv4Addr;

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 8 + 4];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[8] = 64;
        p[9] = IPPROTO_UDP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        p[28..32].copy_from_slice(b"ping");
        let ps = pseudo_header_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst), IPPROTO_UDP, 12);
        let c = fold(sum(&p[20..], ps));
        p[26..28].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn checksums_ok(p: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(p).unwrap();
        let ps = pseudo_header_v4(ip.src_addr(), ip.dst_addr(), IPPROTO_UDP, p.len() - 20);
        checksum(&p[..20]) == 0 && fold(sum(&p[20..], ps)) == 0
    }

    #[test]
    fn dnat_rewrites_address_port_and_both_checksums() {
        let mut p = udp4([10, 0, 0, 1], [10, 96, 0, 10], 40000, 53);
        let target = NfConntrackTuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.244.1.5".parse().unwrap(),
            protonum: IPPROTO_UDP,
            src_u: 40000,
            dst_u: 5353,
        };
        assert!(manip_pkt(&mut p, &target, NfNatManipType::Dst));
        assert_eq!(&p[16..20], &[10, 244, 1, 5]);
        assert_eq!(be16_at(&p, 22), Some(5353));
        assert!(checksums_ok(&p));
        // The same packet built from scratch has the same checksums.
        let fresh = udp4([10, 0, 0, 1], [10, 244, 1, 5], 40000, 5353);
        assert_eq!(p, fresh);
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 2000);
        p[26..28].copy_from_slice(&[0, 0]);
        let target = NfConntrackTuple {
            src: "192.168.1.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protonum: IPPROTO_UDP,
            src_u: 1000,
            dst_u: 2000,
        };
        assert!(manip_pkt(&mut p, &target, NfNatManipType::Src));
        assert_eq!(be16_at(&p, 26), Some(0));
        assert_eq!(&p[12..16], &[192, 168, 1, 1]);
        assert_eq!(checksum(&p[..20]), 0);
    }
}
