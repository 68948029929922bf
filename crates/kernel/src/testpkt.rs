//! Test packets built byte by byte with correct checksums (feature `testpkt`): the
//! named packet set the corpus tests and the differential tests run, and the
//! checksum arithmetic to verify what programs wrote.
#![allow(clippy::vec_init_then_push)]

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

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;

/// One's complement sum of 16-bit big-endian words (RFC 1071), not inverted.
pub fn ones_sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folded and inverted checksum.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn checksum(data: &[u8]) -> u16 {
    fold(ones_sum(data, 0))
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(14 + payload.len());
    p.extend_from_slice(&dst);
    p.extend_from_slice(&src);
    p.extend_from_slice(&ethertype.to_be_bytes());
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
    let opt_len = options.len().div_ceil(4) * 4;
    let hlen = 20 + opt_len;
    let total = (hlen + payload.len()) as u16;
    let mut h = vec![0x40 | (hlen / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&0x1234u16.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.push(64);
    h.push(proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(options);
    h.resize(hlen, 0);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// Pseudo-header sum for an L4 segment over IPv4 or IPv6 addresses.
fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut acc = ones_sum(src, 0);
    acc = ones_sum(dst, acc);
    acc = acc.wrapping_add(u32::from(proto));
    acc.wrapping_add(len as u32)
}

/// L4 segment with its checksum at `csum_off` computed over the pseudo header.
fn l4(src: &[u8], dst: &[u8], proto: u8, mut seg: Vec<u8>, csum_off: usize) -> Vec<u8> {
    let mut c = fold(ones_sum(&seg, pseudo(src, dst, proto, seg.len())));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    if let Some(s) = seg.get_mut(csum_off..csum_off + 2) {
        s.copy_from_slice(&c.to_be_bytes());
    }
    seg
}

pub fn tcp(src: &[u8], dst: &[u8], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&1000u32.to_be_bytes());
    s.extend_from_slice(&0u32.to_be_bytes());
    s.push(5 << 4);
    s.push(flags);
    s.extend_from_slice(&65535u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    l4(src, dst, 6, s, 16)
}

pub fn udp(src: &[u8], dst: &[u8], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    l4(src, dst, 17, s, 6)
}

/// ICMP (v4) echo request: checksum over the message only.
pub fn icmp_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![8, 0, 0, 0];
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(payload);
    let c = checksum(&s);
    s[2..4].copy_from_slice(&c.to_be_bytes());
    s
}

/// ICMPv6 echo request (type 128), checksum with the IPv6 pseudo header.
pub fn icmp6_echo(src: &[u8], dst: &[u8], id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![128, 0, 0, 0];
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(payload);
    l4(src, dst, 58, s, 2)
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
        let mut tagged = Vec::new();
        tagged.extend_from_slice(&100u16.to_be_bytes()); // PCP 0, VID 100
        tagged.extend_from_slice(&ETH_P_IP.to_be_bytes());
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
        let mut arp = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&MAC_SRC);
        arp.extend_from_slice(&IP_SRC);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&IP_DST);
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
    let Some(ip) = frame.get(14..) else {
        return false;
    };
    let ihl = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
    let Some(hdr) = ip.get(..ihl) else {
        return false;
    };
    if ihl < 20 || checksum(hdr) != 0 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    let proto = ip[9];
    let Some(seg) = ip.get(ihl..total) else {
        return false;
    };
    if frag != 0 || !(proto == 6 || proto == 17) {
        return true;
    }
    if proto == 17 && seg.get(6..8) == Some(&[0, 0]) {
        return true;
    }
    fold(ones_sum(
        seg,
        pseudo(&ip[12..16], &ip[16..20], proto, seg.len()),
    )) == 0
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
