//! Header parsing the datapath itself needs (RSS, GRO, trace): the 5-tuple of
//! an Ethernet frame, read through skiff-wire's views (malformed frames give None).

use std::net::IpAddr;

use skiff_wire::{flow_ports, ipv4, ipv6, EthernetFrame, Ipv4Packet, Ipv6Packet};
pub use skiff_wire::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP,
};
use skiff_wire::{IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_SCTP};

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

/// The EtherType and network header offset, looking through one or two VLAN tags.
pub fn ethertype(frame: &[u8]) -> Option<(u16, usize)> {
    EthernetFrame::new_checked(frame)
        .ok()?
        .network_protocol()
        .ok()
}

/// The 5-tuple of `frame` (an Ethernet frame), IPv4 or IPv6 (no extension
/// headers). Only the fixed network header must be there and valid (version,
/// IPv4 IHL); lengths beyond it are not checked.
pub fn five_tuple(frame: &[u8]) -> Option<FiveTuple> {
    let (proto, l3) = ethertype(frame)?;
    let net = frame.get(l3..)?;
    let (src, dst, ip_proto, l4, first_frag) = match proto {
        ETH_P_IP if net.len() >= ipv4::HEADER_LEN => {
            let ip = Ipv4Packet::new_unchecked(net);
            if ip.version() != 4 || ip.header_len() < ipv4::HEADER_LEN {
                return None;
            }
            let (s, d) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
            (
                s,
                d,
                ip.protocol(),
                l3 + ip.header_len(),
                ip.frag_offset() == 0,
            )
        }
        ETH_P_IPV6 if net.len() >= ipv6::HEADER_LEN => {
            let ip = Ipv6Packet::new_unchecked(net);
            if ip.version() != 6 {
                return None;
            }
            let (s, d) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
            (s, d, ip.next_header(), l3 + ipv6::HEADER_LEN, true)
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
    if first_frag && matches!(ip_proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) {
        if let Some((s, d)) = frame.get(l4..).and_then(flow_ports) {
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
        IPPROTO_SCTP => "sctp",
        IPPROTO_GRE => "gre",
        IPPROTO_IPIP => "ipip",
        IPPROTO_IPV6 => "ipv6",
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
