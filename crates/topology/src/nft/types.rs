//! nft's data types (src/datatype.c, proto.c, ct.c, meta.c) as far as the
//! supported selectors use them: how a value is written and the bytes a
//! register holds for it (network order for addresses and ports, host
//! order for marks, ct state/status and plain integers).

use std::net::{Ipv4Addr, Ipv6Addr};

/// A data type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Ipv4Addr,
    Ipv6Addr,
    InetService,
    InetProto,
    /// meta mark, ct mark: 32 bits, host order.
    Mark,
    /// A host-order integer of 4 bytes (numgen, meta len, meta iif/oif).
    Integer,
    IfName,
    CtState,
    CtStatus,
    CtDir,
    NfProto,
    IcmpType,
    Icmpv6Type,
    IcmpCode,
    TcpFlags,
    /// A one-byte number (ip ttl, ip6 hoplimit).
    U8,
    /// A two-byte network-order number (ip length).
    Be16,
}

impl Ty {
    /// The value's length in a register.
    pub fn len(self) -> u32 {
        match self {
            Ty::Ipv4Addr | Ty::Mark | Ty::Integer | Ty::CtState | Ty::CtStatus => 4,
            Ty::Ipv6Addr | Ty::IfName => 16,
            Ty::InetService | Ty::Be16 => 2,
            _ => 1,
        }
    }

    /// Types whose values combine with `,` into a mask and match as a flag
    /// test (nft's bitmask types).
    pub fn is_bitmask(self) -> bool {
        matches!(self, Ty::CtState | Ty::CtStatus | Ty::TcpFlags)
    }

    /// Whether memcmp orders the bytes as the numbers (network order or one byte).
    pub fn ordered(self) -> bool {
        !matches!(self, Ty::Mark | Ty::Integer | Ty::CtState | Ty::CtStatus)
    }

    /// The name nft's `type` takes.
    pub fn by_name(n: &str) -> Option<Ty> {
        Some(match n {
            "ipv4_addr" => Ty::Ipv4Addr,
            "ipv6_addr" => Ty::Ipv6Addr,
            "inet_service" => Ty::InetService,
            "inet_proto" => Ty::InetProto,
            "mark" => Ty::Mark,
            "ifname" => Ty::IfName,
            "ct_state" => Ty::CtState,
            "ct_status" => Ty::CtStatus,
            "nf_proto" => Ty::NfProto,
            "icmp_type" => Ty::IcmpType,
            "icmpv6_type" => Ty::Icmpv6Type,
            "integer" => Ty::Integer,
            _ => return None,
        })
    }
}

const CT_STATES: [(&str, u32); 5] = [
    ("invalid", 1),
    ("established", 2),
    ("related", 4),
    ("new", 8),
    ("untracked", 64),
];

const CT_STATUS: [(&str, u32); 7] = [
    ("expected", 1),
    ("seen-reply", 2),
    ("assured", 4),
    ("confirmed", 8),
    ("snat", 16),
    ("dnat", 32),
    ("dying", 512),
];

const PROTOS: [(&str, u8); 8] = [
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("icmpv6", 58),
    ("sctp", 132),
];

const SERVICES: [(&str, u16); 14] = [
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("http-alt", 8080),
    ("bgp", 179),
];

const ICMP_TYPES: [(&str, u8); 9] = [
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
];

const ICMPV6_TYPES: [(&str, u8); 10] = [
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
];

const TCP_FLAGS: [(&str, u8); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ecn", 0x40),
    ("cwr", 0x80),
];

fn named<T: Copy>(table: &[(&str, T)], w: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == w).map(|(_, v)| *v)
}

/// A number as nft reads it: decimal or 0x hex.
pub fn number(w: &str) -> Option<u64> {
    match w.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => w.parse().ok(),
    }
}

fn small<T: TryFrom<u64>>(w: &str) -> Option<T> {
    number(w).and_then(|n| T::try_from(n).ok())
}

/// The bytes of one value of type `ty` (no prefix, no range).
pub fn value(ty: Ty, w: &str) -> Option<Vec<u8>> {
    Some(match ty {
        Ty::Ipv4Addr => w.parse::<Ipv4Addr>().ok()?.octets().to_vec(),
        Ty::Ipv6Addr => w
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<Ipv6Addr>()
            .ok()?
            .octets()
            .to_vec(),
        Ty::InetService => named(&SERVICES, w)
            .or_else(|| small(w))?
            .to_be_bytes()
            .to_vec(),
        Ty::Be16 => small::<u16>(w)?.to_be_bytes().to_vec(),
        Ty::InetProto => vec![named(&PROTOS, w).or_else(|| small(w))?],
        Ty::Mark | Ty::Integer => small::<u32>(w)?.to_ne_bytes().to_vec(),
        Ty::IfName => {
            if w.len() >= 16 {
                return None;
            }
            let mut b = w.as_bytes().to_vec();
            b.resize(16, 0);
            b
        }
        Ty::CtState => named(&CT_STATES, w)?.to_ne_bytes().to_vec(),
        Ty::CtStatus => named(&CT_STATUS, w)?.to_ne_bytes().to_vec(),
        Ty::CtDir => vec![match w {
            "original" => 0,
            "reply" => 1,
            _ => return None,
        }],
        Ty::NfProto => vec![match w {
            "ipv4" => 2,
            "ipv6" => 10,
            _ => small(w)?,
        }],
        Ty::IcmpType => vec![named(&ICMP_TYPES, w).or_else(|| small(w))?],
        Ty::Icmpv6Type => vec![named(&ICMPV6_TYPES, w).or_else(|| small(w))?],
        Ty::TcpFlags => vec![named(&TCP_FLAGS, w).or_else(|| small(w))?],
        Ty::IcmpCode | Ty::U8 => vec![small(w)?],
    })
}

/// The mask of a `/len` prefix over `n` bytes.
pub fn prefix_mask(n: usize, plen: u32) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let bits = plen.saturating_sub(i as u32 * 8).min(8);
            if bits == 0 {
                0
            } else {
                0xffu8 << (8 - bits)
            }
        })
        .collect()
}

/// Pads `v` with zeros to a multiple of 4 bytes (a concatenation's field).
pub fn pad4(mut v: Vec<u8>) -> Vec<u8> {
    let n = v.len().div_ceil(4) * 4;
    v.resize(n, 0);
    v
}

/// The last address of a prefix (the interval's end).
pub fn prefix_end(start: &[u8], mask: &[u8]) -> Vec<u8> {
    start.iter().zip(mask).map(|(a, m)| (a & m) | !m).collect()
}
