//! Frames from a readable description: Ethernet, VLAN tags, IPv4/IPv6/ARP,
//! TCP/UDP/ICMP and a payload, each header written by skiff-wire's Reprs and
//! views with lengths and checksums filled in. Used by `skiff test` fixtures
//! (`eth = {…}`, `ipv4 = {…}`, `tcp = {…}`) and by Rust tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use skiff_wire::ethernet::{HEADER_LEN as ETH_LEN, VLAN_HLEN};
use skiff_wire::{
    checksum, ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv6Packet,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket, VlanTag,
};

use crate::harness::Error;

/// The Ethernet header; `ethertype` None: from the layer above.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Eth {
    pub src: [u8; 6],
    pub dst: [u8; 6],
    pub ethertype: Option<u16>,
}

/// An 802.1Q tag (`tpid` 0x8100; 0x88a8 for 802.1ad).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    pub pcp: u8,
    pub tpid: u16,
}

/// The network layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L3 {
    /// `protocol` None: from the layer above.
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        tos: u8,
        ident: u16,
        dont_frag: bool,
        protocol: Option<u8>,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        traffic_class: u8,
        next_header: Option<u8>,
    },
    Arp(ArpRepr),
}

/// The transport layer (ICMP is ICMPv6 over IPv6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        /// TCP flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20).
        flags: u8,
        window: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// Type, code and the 4 bytes after the checksum (echo: id << 16 | seq).
    Icmp {
        msg_type: u8,
        code: u8,
        rest: u32,
    },
}

/// A frame being described; `build` writes it. Setters that parse text keep
/// the first error for `build` to return, so a chain reads as the frame does.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    pub eth: Eth,
    pub vlans: Vec<Vlan>,
    pub l3: Option<L3>,
    pub l4: Option<L4>,
    pub payload: Vec<u8>,
    error: Option<String>,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    skiff_topology::parse_mac(s)
}

/// TCP flags as letters (`S`, `SA`, `FA`, `R`, `P`, `U`; `.` for ACK as tcpdump
/// prints it) or names joined by `|` / `,` (`syn|ack`).
pub fn parse_tcp_flags(s: &str) -> Result<u8, String> {
    let names = [
        ("fin", 0x01),
        ("syn", 0x02),
        ("rst", 0x04),
        ("psh", 0x08),
        ("ack", 0x10),
        ("urg", 0x20),
    ];
    if s.contains(['|', ',']) || names.iter().any(|(n, _)| s.eq_ignore_ascii_case(n)) {
        let mut f = 0;
        for part in s.split(['|', ',']).map(str::trim) {
            let bit = names
                .iter()
                .find(|(n, _)| part.eq_ignore_ascii_case(n))
                .map(|(_, b)| *b)
                .ok_or_else(|| format!("TCP flag {part:?}: want fin, syn, rst, psh, ack, urg"))?;
            f |= bit;
        }
        return Ok(f);
    }
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' | '.' => 0x10,
            'U' => 0x20,
            _ => {
                return Err(format!(
                    "TCP flags {s:?}: {c:?} is not one of F S R P A . U"
                ))
            }
        };
    }
    Ok(f)
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    fn keep<T>(&mut self, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Source and destination MAC (`aa:bb:cc:dd:ee:ff`).
    pub fn eth(mut self, src: &str, dst: &str) -> Builder {
        if let Some(m) = self.keep(parse_mac(src)) {
            self.eth.src = m;
        }
        if let Some(m) = self.keep(parse_mac(dst)) {
            self.eth.dst = m;
        }
        self
    }

    /// An 802.1Q tag (outermost first when called again).
    pub fn vlan(mut self, id: u16) -> Builder {
        self.vlans.push(Vlan {
            id,
            pcp: 0,
            tpid: skiff_wire::ETH_P_8021Q,
        });
        self
    }

    /// An IPv4 header (TTL 64, no DF).
    pub fn ipv4(mut self, src: &str, dst: &str) -> Builder {
        let ip = |s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("{s:?} is not an IPv4 address"))
        };
        let (s, d) = (ip(src), ip(dst));
        if let (Some(src), Some(dst)) = (self.keep(s), self.keep(d)) {
            self.l3 = Some(L3::Ipv4 {
                src,
                dst,
                ttl: 64,
                tos: 0,
                ident: 0,
                dont_frag: false,
                protocol: None,
            });
        }
        self
    }

    /// An IPv6 header (hop limit 64).
    pub fn ipv6(mut self, src: &str, dst: &str) -> Builder {
        let ip = |s: &str| {
            s.parse::<Ipv6Addr>()
                .map_err(|_| format!("{s:?} is not an IPv6 address"))
        };
        let (s, d) = (ip(src), ip(dst));
        if let (Some(src), Some(dst)) = (self.keep(s), self.keep(d)) {
            self.l3 = Some(L3::Ipv6 {
                src,
                dst,
                hop_limit: 64,
                traffic_class: 0,
                next_header: None,
            });
        }
        self
    }

    /// The IPv4 TTL or IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Builder {
        match &mut self.l3 {
            Some(L3::Ipv4 { ttl: t, .. }) | Some(L3::Ipv6 { hop_limit: t, .. }) => *t = ttl,
            _ => {
                self.error.get_or_insert("ttl before ipv4/ipv6".into());
            }
        }
        self
    }

    /// A TCP header (window 65535, no flags; see `flags`).
    pub fn tcp(mut self, sport: u16, dport: u16) -> Builder {
        self.l4 = Some(L4::Tcp {
            sport,
            dport,
            seq: 0,
            ack: 0,
            flags: 0,
            window: 65535,
        });
        self
    }

    /// TCP flags (`"S"`, `"SA"`, `"syn|ack"`).
    pub fn flags(mut self, flags: &str) -> Builder {
        let f = parse_tcp_flags(flags);
        if let Some(f) = self.keep(f) {
            match &mut self.l4 {
                Some(L4::Tcp { flags, .. }) => *flags = f,
                _ => {
                    self.error.get_or_insert("flags before tcp".into());
                }
            }
        }
        self
    }

    /// A UDP header.
    pub fn udp(mut self, sport: u16, dport: u16) -> Builder {
        self.l4 = Some(L4::Udp { sport, dport });
        self
    }

    /// An ICMP echo (`msg_type` 8 request, 0 reply; ICMPv6 128/129).
    pub fn icmp_echo(mut self, msg_type: u8, id: u16, seq: u16) -> Builder {
        self.l4 = Some(L4::Icmp {
            msg_type,
            code: 0,
            rest: (u32::from(id) << 16) | u32::from(seq),
        });
        self
    }

    /// An ARP message (operation 1 request, 2 reply).
    pub fn arp(mut self, operation: u16, sha: &str, spa: &str, tha: &str, tpa: &str) -> Builder {
        let ip = |s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("{s:?} is not an IPv4 address"))
        };
        let parts = (parse_mac(sha), ip(spa), parse_mac(tha), ip(tpa));
        let (a, b, c, d) = (
            self.keep(parts.0),
            self.keep(parts.1),
            self.keep(parts.2),
            self.keep(parts.3),
        );
        if let (Some(a), Some(b), Some(c), Some(d)) = (a, b, c, d) {
            self.l3 = Some(L3::Arp(ArpRepr {
                operation,
                source_hardware_addr: a,
                source_protocol_addr: b,
                target_hardware_addr: c,
                target_protocol_addr: d,
            }));
        }
        self
    }

    /// The bytes after the last header.
    pub fn payload(mut self, bytes: &[u8]) -> Builder {
        self.payload = bytes.to_vec();
        self
    }

    /// The frame, or the first error a setter met.
    pub fn build(&self) -> Result<Vec<u8>, Error> {
        if let Some(e) = &self.error {
            return Err(Error::Input(e.clone()));
        }
        build(self).map_err(Error::Input)
    }
}

fn l4_len(l4: &Option<L4>) -> usize {
    match l4 {
        Some(L4::Tcp { .. }) => skiff_wire::tcp::HEADER_LEN,
        Some(L4::Udp { .. }) => skiff_wire::udp::HEADER_LEN,
        Some(L4::Icmp { .. }) => skiff_wire::icmpv4::HEADER_LEN,
        None => 0,
    }
}

fn l4_proto(l4: &Option<L4>, v6: bool) -> u8 {
    match l4 {
        Some(L4::Tcp { .. }) => skiff_wire::IPPROTO_TCP,
        Some(L4::Udp { .. }) => skiff_wire::IPPROTO_UDP,
        Some(L4::Icmp { .. }) if v6 => skiff_wire::IPPROTO_ICMPV6,
        Some(L4::Icmp { .. }) => skiff_wire::IPPROTO_ICMP,
        None => 0xff, // IPPROTO_RAW: a payload with no header
    }
}

fn build(b: &Builder) -> Result<Vec<u8>, String> {
    let l3_len = match &b.l3 {
        Some(L3::Ipv4 { .. }) => skiff_wire::ipv4::HEADER_LEN,
        Some(L3::Ipv6 { .. }) => skiff_wire::ipv6::HEADER_LEN,
        Some(L3::Arp(_)) => skiff_wire::arp::PACKET_LEN,
        None => 0,
    };
    if b.l4.is_some() && !matches!(b.l3, Some(L3::Ipv4 { .. } | L3::Ipv6 { .. })) {
        return Err("a tcp/udp/icmp header needs ipv4 or ipv6 below it".into());
    }
    let l4_len = l4_len(&b.l4) + b.payload.len();
    let l2_len = ETH_LEN + VLAN_HLEN * b.vlans.len();
    let mut f = vec![0u8; l2_len + l3_len + l4_len];
    let l3_type = match &b.l3 {
        Some(L3::Ipv4 { .. }) => skiff_wire::ETH_P_IP,
        Some(L3::Ipv6 { .. }) => skiff_wire::ETH_P_IPV6,
        Some(L3::Arp(_)) => skiff_wire::ETH_P_ARP,
        None => 0,
    };
    let inner_type = b.eth.ethertype.unwrap_or(l3_type);
    emit_l2(b, &mut f, inner_type);
    let (_, rest) = f.split_at_mut(l2_len);
    let (l3, l4) = rest.split_at_mut(l3_len);
    emit_l3(b, l3, l4_len)?;
    if let Some(p) = l4.get_mut(l4_len - b.payload.len()..) {
        p.copy_from_slice(&b.payload);
    }
    emit_l4(b, l4);
    Ok(f)
}

fn emit_l2(b: &Builder, f: &mut [u8], inner_type: u16) {
    let outer = b.vlans.first().map(|v| v.tpid).unwrap_or(inner_type);
    EthernetRepr {
        src_addr: b.eth.src,
        dst_addr: b.eth.dst,
        ethertype: outer,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    for (i, v) in b.vlans.iter().enumerate() {
        let next = b.vlans.get(i + 1).map(|n| n.tpid).unwrap_or(inner_type);
        let at = ETH_LEN + i * VLAN_HLEN;
        if let Some(tag) = f.get_mut(at..at + VLAN_HLEN) {
            let mut t = VlanTag::new_unchecked(tag);
            t.set_tci((u16::from(v.pcp & 7) << 13) | (v.id & 0x0fff));
            t.set_inner_ethertype(next);
        }
    }
}

fn emit_l3(b: &Builder, l3: &mut [u8], l4_len: usize) -> Result<(), String> {
    match &b.l3 {
        Some(L3::Ipv4 {
            src,
            dst,
            ttl,
            tos,
            ident,
            dont_frag,
            protocol,
        }) => Ipv4Repr {
            src_addr: *src,
            dst_addr: *dst,
            protocol: protocol.unwrap_or_else(|| l4_proto(&b.l4, false)),
            tos: *tos,
            ttl: *ttl,
            ident: *ident,
            dont_frag: *dont_frag,
            payload_len: l4_len,
        }
        .emit(&mut Ipv4Packet::new_unchecked(l3)),
        Some(L3::Ipv6 {
            src,
            dst,
            hop_limit,
            traffic_class,
            next_header,
        }) => Ipv6Repr {
            src_addr: *src,
            dst_addr: *dst,
            next_header: next_header.unwrap_or_else(|| l4_proto(&b.l4, true)),
            hop_limit: *hop_limit,
            traffic_class: *traffic_class,
            payload_len: l4_len,
        }
        .emit(&mut Ipv6Packet::new_unchecked(l3)),
        Some(L3::Arp(a)) => a.emit(&mut ArpPacket::new_unchecked(l3)),
        None => {}
    }
    if l4_len > 0xffff && b.l3.is_some() {
        return Err(format!(
            "{l4_len} bytes after the IP header do not fit its length field"
        ));
    }
    Ok(())
}

/// The pseudo-header sum of the IP header before `l4`.
fn pseudo(b: &Builder, proto: u8, len: usize) -> u64 {
    match &b.l3 {
        Some(L3::Ipv4 { src, dst, .. }) => checksum::pseudo_header_v4(*src, *dst, proto, len),
        Some(L3::Ipv6 { src, dst, .. }) => checksum::pseudo_header_v6(*src, *dst, proto, len),
        _ => 0,
    }
}

fn emit_l4(b: &Builder, l4: &mut [u8]) {
    let len = l4.len();
    match &b.l4 {
        Some(L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
        }) => {
            let mut t = TcpPacket::new_unchecked(l4);
            t.set_src_port(*sport);
            t.set_dst_port(*dport);
            t.set_seq_number(*seq);
            t.set_ack_number(*ack);
            t.set_header_len(skiff_wire::tcp::HEADER_LEN);
            t.set_flags(*flags);
            t.set_window_len(*window);
            t.fill_checksum(pseudo(b, skiff_wire::IPPROTO_TCP, len));
        }
        Some(L4::Udp { sport, dport }) => {
            let mut u = UdpPacket::new_unchecked(l4);
            u.set_src_port(*sport);
            u.set_dst_port(*dport);
            u.set_length(len.min(0xffff) as u16);
            u.fill_checksum(pseudo(b, skiff_wire::IPPROTO_UDP, len));
        }
        Some(L4::Icmp {
            msg_type,
            code,
            rest,
        }) => match &b.l3 {
            Some(L3::Ipv6 { src, dst, .. }) => {
                let mut p = Icmpv6Packet::new_unchecked(l4);
                p.set_msg_type(*msg_type);
                p.set_msg_code(*code);
                p.set_data_word(*rest);
                p.fill_checksum(*src, *dst);
            }
            _ => {
                let mut p = Icmpv4Packet::new_unchecked(l4);
                p.set_msg_type(*msg_type);
                p.set_msg_code(*code);
                p.set_rest_of_header(*rest);
                p.fill_checksum();
            }
        },
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_over_ipv4_matches_the_bundled_frame() {
        // examples/xdp_fw/blocked.bin: 192.168.1.7:5000 -> 10.0.0.2:53, id 0x1234
        let mut b = Builder::new()
            .eth("02:00:00:00:00:01", "02:00:00:00:00:02")
            .ipv4("192.168.1.7", "10.0.0.2")
            .udp(5000, 53)
            .payload(b"from-blocked-prefix-payload-bytes");
        if let Some(L3::Ipv4 { ident, .. }) = &mut b.l3 {
            *ident = 0x1234;
        }
        let want = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/xdp_fw/blocked.bin"
        ))
        .unwrap();
        assert_eq!(hex::encode(b.build().unwrap()), hex::encode(want));
    }

    #[test]
    fn tcp_flags_read_as_letters_and_names() {
        assert_eq!(parse_tcp_flags("S"), Ok(0x02));
        assert_eq!(parse_tcp_flags("SA"), Ok(0x12));
        assert_eq!(parse_tcp_flags("syn|ack"), Ok(0x12));
        assert_eq!(parse_tcp_flags("fin"), Ok(0x01));
        assert_eq!(
            parse_tcp_flags("SX"),
            Err("TCP flags \"SX\": 'X' is not one of F S R P A . U".into())
        );
    }

    #[test]
    fn a_vlan_tag_sits_between_mac_and_ip() {
        let f = Builder::new()
            .eth("02:00:00:00:00:01", "02:00:00:00:00:02")
            .vlan(100)
            .ipv4("10.0.0.1", "10.0.0.2")
            .build()
            .unwrap();
        assert_eq!(f.len(), 14 + 4 + 20);
        assert_eq!(hex::encode(&f[12..18]), "8100 0064 0800".replace(' ', ""));
        assert_eq!(f[18 + 9], 0xff);
    }

    #[test]
    fn bad_input_is_reported_at_build() {
        let e = Builder::new()
            .ipv4("10.0.0.300", "10.0.0.1")
            .build()
            .unwrap_err();
        assert_eq!(e.to_string(), "\"10.0.0.300\" is not an IPv4 address");
        let e = Builder::new().tcp(1, 2).build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "a tcp/udp/icmp header needs ipv4 or ipv6 below it"
        );
    }
}
