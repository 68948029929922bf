//! Header parsing the datapath itself needs (RSS, GRO, trace): the 5-tuple of
//! an Ethernet frame, read with bounds checks (malformed frames give None).

use std::net::IpAddr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Addresses, protocol and ports (0 when the protocol has none or the header
/// is a non-first fragment); `l4_off` is the transport header's offset in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiveTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub has_ports: bool,
    pub l3_off: usize,
    pub l4_off: usize,
}

pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// The EtherType and network header offset, looking through one or two VLAN tags.
pub fn ethertype(frame: &[u8]) -> Option<(u16, usize)> {
    let mut proto = be16(frame, 12)?;
    let mut off = 14;
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = be16(frame, off + 2)?;
            off += 4;
        }
    }
    Some((proto, off))
}

/// The 5-tuple of `frame` (an Ethernet frame), IPv4 or IPv6 (no extension headers).
pub fn five_tuple(frame: &[u8]) -> Option<FiveTuple> {
    let (proto, l3) = ethertype(frame)?;
    let (src, dst, ip_proto, l4, first_frag) = match proto {
        ETH_P_IP => {
            let h = frame.get(l3..l3 + 20)?;
            if h[0] >> 4 != 4 {
                return None;
            }
            let ihl = (h[0] & 0xf) as usize * 4;
            if ihl < 20 {
                return None;
            }
            let frag = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            let s: [u8; 4] = h[12..16].try_into().ok()?;
            let d: [u8; 4] = h[16..20].try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), h[9], l3 + ihl, frag == 0)
        }
        ETH_P_IPV6 => {
            let h = frame.get(l3..l3 + 40)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let s: [u8; 16] = h[8..24].try_into().ok()?;
            let d: [u8; 16] = h[24..40].try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), h[6], l3 + 40, true)
        }
        _ => return None,
    };
    let mut t = FiveTuple {
        src,
        dst,
        proto: ip_proto,
        sport: 0,
        dport: 0,
        has_ports: false,
        l3_off: l3,
        l4_off: l4,
    };
    if first_frag && matches!(ip_proto, IPPROTO_TCP | IPPROTO_UDP | 132) {
        if let (Some(s), Some(d)) = (be16(frame, l4), be16(frame, l4 + 2)) {
            t.sport = s;
            t.dport = d;
            t.has_ports = true;
        }
    }
    Some(t)
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmp6",
        132 => "sctp",
        47 => "gre",
        4 => "ipip",
        41 => "ipv6",
        _ => "ip",
    }
}

impl FiveTuple {
    /// pwru's tuple format: `10.0.0.1:1234->10.0.0.2:80(tcp)`.
    pub fn to_pwru(&self) -> String {
        let a = |ip: IpAddr, p: u16| match ip {
            IpAddr::V4(v) => format!("{v}:{p}"),
            IpAddr::V6(v) => format!("[{v}]:{p}"),
        };
        format!(
            "{}->{}({})",
            a(self.src, self.sport),
            a(self.dst, self.dport),
            proto_name(self.proto)
        )
    }
}
