//! Test packets built byte by byte with correct checksums (feature `testpkt`): the
//! named packet set the corpus tests and the differential tests run, and the
//! checksum arithmetic to verify what programs wrote.
#![allow(clippy::vec_init_then_push)]

use std::net::Ipv6Addr;

use skiff_wire::checksum::{fold as wire_fold, pseudo_header_v4, pseudo_header_v6, sum};
use skiff_wire::{
    icmpv4, icmpv6, ipv4, ipv6, tcp, udp, ArpPacket, ArpRepr, EthernetFrame, EthernetRepr,
    Ipv4Packet, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket, VlanTag,
};

pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const IP_SRC: [u8; 4] = [10, 0, 0, 1];
pub const IP_DST: [u8; 4] = [10, 0, 0, 2];
/// A source inside 192.168.1.0/24 (the README's blocked prefix).
pub const IP_BLOCKED: [u8; 4] = [192, 168, 1, 7];
/// The load balancer's VIP and port (TCP).
pub const LB_VIP: [u8; 4] = [10, 0, 0, 100];
pub const LB_PORT: u16 = 80;
pub const IP6_SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const IP6_DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

pub use skiff_wire::{ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6};

/// One's complement sum of 16-bit big-endian words (RFC 1071), not inverted.
pub fn ones_sum(data: &[u8], acc: u32) -> u32 {
    // Truncating the 64-bit sum is the same as adding with 32-bit wrapping.
    sum(data, u64::from(acc)) as u32
}

/// Folded and inverted checksum.
pub fn fold(acc: u32) -> u16 {
    wire_fold(u64::from(acc))
}

pub fn checksum(data: &[u8]) -> u16 {
    skiff_wire::checksum::checksum(data)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    };
    let mut p = repr.to_frame(payload.len());
    p.extend_from_slice(payload);
    p
}

/// IPv4 header (with `options`, padded to 4 bytes) + payload; `frag` is the raw
/// flags+offset field; checksum computed.
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hlen = ipv4::HEADER_LEN + options.len().div_ceil(4) * 4;
    let mut h = vec![0u8; hlen];
    let mut ip = Ipv4Packet::new_unchecked(&mut h[..]);
    ip.set_version(4);
    ip.set_header_len(hlen);
    ip.set_total_len((hlen + payload.len()) as u16);
    ip.set_ident(0x1234);
    ip.set_frag_off(frag);
    ip.set_ttl(64);
    ip.set_protocol(proto);
    ip.set_src_addr(src.into());
    ip.set_dst_addr(dst.into());
    ip.options_mut()[..options.len()].copy_from_slice(options);
    ip.fill_checksum();
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; ipv6::HEADER_LEN];
    let repr = Ipv6Repr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        next_header: next,
        hop_limit: 64,
        traffic_class: 0,
        payload_len: payload.len(),
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(payload);
    h
}

/// An address of 16 bytes as IPv6, anything else as the unspecified address.
fn v6(a: &[u8]) -> Ipv6Addr {
    <[u8; 16]>::try_from(a).map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

/// Pseudo-header sum for an L4 segment over IPv4 (4-byte) or IPv6 addresses.
fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    match (<[u8; 4]>::try_from(src), <[u8; 4]>::try_from(dst)) {
        (Ok(s), Ok(d)) => pseudo_header_v4(s.into(), d.into(), proto, len),
        _ => pseudo_header_v6(v6(src), v6(dst), proto, len),
    }
}

pub fn tcp(src: &[u8], dst: &[u8], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; tcp::HEADER_LEN];
    s.extend_from_slice(payload);
    let mut t = TcpPacket::new_unchecked(&mut s[..]);
    t.set_src_port(sport);
    t.set_dst_port(dport);
    t.set_seq_number(1000);
    t.set_header_len(tcp::HEADER_LEN);
    t.set_flags(flags);
    t.set_window_len(65535);
    let len = s.len();
    TcpPacket::new_unchecked(&mut s[..]).fill_checksum(pseudo(src, dst, 6, len));
    s
}

pub fn udp(src: &[u8], dst: &[u8], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; udp::HEADER_LEN];
    s.extend_from_slice(payload);
    let len = s.len();
    let mut u = UdpPacket::new_unchecked(&mut s[..]);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_length(len as u16);
    u.fill_checksum(pseudo(src, dst, 17, len));
    s
}

/// ICMP (v4) echo request: checksum over the message only.
pub fn icmp_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let rest = (u32::from(id) << 16) | u32::from(seq);
    icmpv4::message(icmpv4::ICMP_ECHO, 0, rest, payload)
}

/// ICMPv6 echo request (type 128), checksum with the IPv6 pseudo header.
pub fn icmp6_echo(src: &[u8], dst: &[u8], id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let rest = (u32::from(id) << 16) | u32::from(seq);
    let t = icmpv6::ICMPV6_ECHO_REQUEST;
    icmpv6::message(t, 0, rest, payload, v6(src), v6(dst))
}

pub fn ipv4_tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    eth(
        MAC_DST,
        MAC_SRC,
        ETH_P_IP,
        &ipv4(
            src,
            dst,
            6,
            0x4000,
            &[],
            &tcp(&src, &dst, sport, dport, flags, payload),
        ),
    )
}

pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(
        MAC_DST,
        MAC_SRC,
        ETH_P_IP,
        &ipv4(
            src,
            dst,
            17,
            0,
            &[],
            &udp(&src, &dst, sport, dport, payload),
        ),
    )
}

/// The named packet set (name, frame). Names are stable: tests refer to them.
pub fn packets() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    v.push((
        "ipv4_tcp_syn",
        ipv4_tcp(IP_SRC, IP_DST, 40000, 443, 0x02, &[]),
    ));
    v.push((
        "ipv4_tcp_payload",
        ipv4_tcp(IP_SRC, IP_DST, 40001, 8080, 0x18, b"GET / HTTP/1.0\r\n\r\n"),
    ));
    v.push((
        "ipv4_udp",
        ipv4_udp(IP_SRC, IP_DST, 5353, 53, b"skiff-udp-payload"),
    ));
    v.push((
        "ipv4_icmp_echo",
        eth(
            MAC_DST,
            MAC_SRC,
            ETH_P_IP,
            &ipv4(
                IP_SRC,
                IP_DST,
                1,
                0,
                &[],
                &icmp_echo(7, 1, b"pingpingpingping"),
            ),
        ),
    ));
    v.push((
        "ipv6_tcp",
        eth(
            MAC_DST,
            MAC_SRC,
            ETH_P_IPV6,
            &ipv6(
                IP6_SRC,
                IP6_DST,
                6,
                &tcp(&IP6_SRC, &IP6_DST, 40002, 80, 0x02, &[]),
            ),
        ),
    ));
    v.push((
        "ipv6_udp",
        eth(
            MAC_DST,
            MAC_SRC,
            ETH_P_IPV6,
            &ipv6(
                IP6_SRC,
                IP6_DST,
                17,
                &udp(&IP6_SRC, &IP6_DST, 5353, 53, b"v6-udp"),
            ),
        ),
    ));
    v.push((
        "ipv6_icmp6_echo",
        eth(
            MAC_DST,
            MAC_SRC,
            ETH_P_IPV6,
            &ipv6(
                IP6_SRC,
                IP6_DST,
                58,
                &icmp6_echo(&IP6_SRC, &IP6_DST, 9, 1, b"ping6"),
            ),
        ),
    ));
    {
        let ip = ipv4(
            IP_SRC,
            IP_DST,
            17,
            0,
            &[],
            &udp(&IP_SRC, &IP_DST, 1234, 4321, b"vlan-udp"),
        );
        let mut tagged = vec![0u8; skiff_wire::ethernet::VLAN_HLEN];
        let mut tag = VlanTag::new_unchecked(&mut tagged[..]);
        tag.set_tci(100); // PCP 0, VID 100
        tag.set_inner_ethertype(ETH_P_IP);
        tagged.extend_from_slice(&ip);
        v.push(("vlan_ipv4_udp", eth(MAC_DST, MAC_SRC, ETH_P_8021Q, &tagged)));
    }
    {
        // A 40-byte UDP datagram split in two: first fragment (MF, offset 0) carries
        // the UDP header and 16 bytes; the second (offset 3 * 8) the remaining 16.
        let seg = udp(&IP_SRC, &IP_DST, 7000, 7001, &[0xab; 32]);
        let (a, b) = seg.split_at(24);
        v.push((
            "ipv4_frag_first",
            eth(
                MAC_DST,
                MAC_SRC,
                ETH_P_IP,
                &ipv4(IP_SRC, IP_DST, 17, 0x2000, &[], a),
            ),
        ));
        v.push((
            "ipv4_frag_second",
            eth(
                MAC_DST,
                MAC_SRC,
                ETH_P_IP,
                &ipv4(IP_SRC, IP_DST, 17, 3, &[], b),
            ),
        ));
    }
    {
        let full = ipv4_udp(IP_SRC, IP_DST, 1, 2, b"x");
        v.push(("ipv4_truncated", full.get(..24).unwrap_or(&full).to_vec()));
    }
    {
        // Ethernet + 39 bytes of an IPv6 header: TC test runs refuse it, XDP runs it.
        let full = eth(
            MAC_DST,
            MAC_SRC,
            ETH_P_IPV6,
            &ipv6(IP6_SRC, IP6_DST, 17, &udp(&IP6_SRC, &IP6_DST, 1, 2, b"x")),
        );
        v.push(("ipv6_truncated", full.get(..53).unwrap_or(&full).to_vec()));
    }
    v.push(("runt", vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0]));
    {
        let mut arp = vec![0u8; skiff_wire::arp::PACKET_LEN];
        let repr = ArpRepr {
            operation: skiff_wire::arp::ARPOP_REQUEST,
            source_hardware_addr: MAC_SRC,
            source_protocol_addr: IP_SRC.into(),
            target_hardware_addr: [0; 6],
            target_protocol_addr: IP_DST.into(),
        };
        repr.emit(&mut ArpPacket::new_unchecked(&mut arp[..]));
        v.push(("arp_request", eth([0xff; 6], MAC_SRC, ETH_P_ARP, &arp)));
    }
    {
        // Record Route option (type 7, len 7, pointer 4) + End of options.
        let opts = [7, 7, 4, 0, 0, 0, 0, 0];
        let seg = udp(&IP_SRC, &IP_DST, 1111, 2222, b"opts");
        v.push((
            "ipv4_options_udp",
            eth(
                MAC_DST,
                MAC_SRC,
                ETH_P_IP,
                &ipv4(IP_SRC, IP_DST, 17, 0, &opts, &seg),
            ),
        ));
    }
    v.push((
        "ipv4_blocked_src",
        ipv4_udp(IP_BLOCKED, IP_DST, 5000, 53, b"from-blocked"),
    ));
    v.push((
        "ipv4_lb_vip",
        ipv4_tcp(IP_SRC, LB_VIP, 40003, LB_PORT, 0x02, &[]),
    ));
    v
}

/// The frame of `packets()` called `name`.
pub fn packet(name: &str) -> Option<Vec<u8>> {
    packets()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| p)
}

/// True when the frame is Ethernet + IPv4 with a correct header checksum and, for an
/// unfragmented TCP/UDP payload, a correct L4 checksum.
pub fn ipv4_checksums_ok(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    let b = eth.payload();
    if b.len() < ipv4::HEADER_LEN {
        return false;
    }
    // The version is not checked: programs under test may have written anything.
    let ip = Ipv4Packet::new_unchecked(b);
    let ihl = ip.header_len();
    if ihl < ipv4::HEADER_LEN || b.len() < ihl || !ip.verify_checksum() {
        return false;
    }
    let Some(seg) = b.get(ihl..usize::from(ip.total_len())) else {
        return false;
    };
    let proto = ip.protocol();
    if ip.is_fragment() || !(proto == 6 || proto == 17) {
        return true;
    }
    if proto == 17 && seg.len() >= udp::HEADER_LEN && UdpPacket::new_unchecked(seg).checksum() == 0
    {
        return true;
    }
    let pseudo = pseudo_header_v4(ip.src_addr(), ip.dst_addr(), proto, seg.len());
    wire_fold(sum(seg, pseudo)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packets_have_good_checksums() {
        for (name, p) in packets() {
            if p.get(12..14) == Some(&ETH_P_IP.to_be_bytes()) && name != "ipv4_truncated" {
                assert!(ipv4_checksums_ok(&p), "{name}");
            }
        }
        // a known header: RFC 1071 example-ish sanity
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2u16
        );
    }

    #[test]
    fn corrupting_a_byte_breaks_the_checksum() {
        let mut p = packet("ipv4_udp").unwrap_or_default();
        assert!(ipv4_checksums_ok(&p));
        if let Some(b) = p.get_mut(40) {
            *b ^= 0x40;
        }
        assert!(!ipv4_checksums_ok(&p));
    }
}
