//! Value parsers: prefixes, MACs, device names, route tables and the pieces
//! of map keys and values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::Piece;
use crate::raw::{RawBytes, RawTable};

/// An IPv4 or IPv6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or an address alone (a host prefix).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("bad CIDR {s:?}: {a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len =
            match p {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    format!("bad CIDR {s:?}: prefix length {p:?} is not 0..={max}")
                })?,
            };
        Ok(Cidr { addr, prefix_len })
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask32(self.prefix_len);
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask128(self.prefix_len);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }

    /// Whether bits past the prefix are set (a route's `ip route add 10.0.0.1/24`).
    pub fn has_host_bits(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => u32::from(a) & !mask32(self.prefix_len) != 0,
            IpAddr::V6(a) => u128::from(a) & !mask128(self.prefix_len) != 0,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn mask32(p: u8) -> u32 {
    if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p.min(32)))
    }
}

fn mask128(p: u8) -> u128 {
    if p == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(p.min(128)))
    }
}

/// `02:00:00:00:00:01` (or with dashes).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || format!("bad MAC {s:?}: want six hex bytes like 02:00:00:00:00:01");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// A device's own MAC must be unicast and non-zero (is_valid_ether_addr; the
/// kernel refuses others with EADDRNOTAVAIL).
pub(crate) fn device_mac(s: &str) -> Result<[u8; 6], String> {
    let mac = parse_mac(s)?;
    if mac[0] & 1 != 0 {
        return Err(format!(
            "bad MAC {s:?}: a multicast address cannot be a device's (is_valid_ether_addr: EADDRNOTAVAIL)"
        ));
    }
    if mac == [0; 6] {
        return Err(format!(
            "bad MAC {s:?}: the zero address cannot be a device's (is_valid_ether_addr: EADDRNOTAVAIL)"
        ));
    }
    Ok(mac)
}

/// net/core/dev.c: dev_valid_name.
pub(crate) fn valid_dev_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("a device name cannot be empty".into());
    }
    if n.len() >= 16 {
        return Err(format!(
            "device name {n:?} is {} bytes; IFNAMSIZ allows 15",
            n.len()
        ));
    }
    if n == "." || n == ".." {
        return Err(format!("device name {n:?} is not allowed"));
    }
    if n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "device name {n:?} contains '/', ':' or whitespace (dev_valid_name)"
        ));
    }
    Ok(())
}

pub(crate) fn parse_table(t: &RawTable) -> Result<u32, String> {
    match t {
        RawTable::Num(0) => Err("table 0 is RT_TABLE_UNSPEC, not a table".into()),
        RawTable::Num(n) => Ok(*n),
        RawTable::Name(n) => match n.as_str() {
            "main" => Ok(254),
            "local" => Ok(255),
            "default" => Ok(253),
            other => Err(format!(
                "unknown table {other:?}: use a number or main, local, default"
            )),
        },
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

fn parse_int(s: &str) -> Option<u128> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u128::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// One piece of a key or value: `hex:..` / bare hex bytes, `u8:`..`u64:` (host
/// order, little-endian here as on x86-64), `be16:`..`be64:` (network order),
/// `ipv4:`, `ipv6:`, `mac:`, `ifindex:[NETNS/]DEV`, `prog:NAME`, `zero:N`.
pub fn parse_piece(s: &str) -> Result<Piece, String> {
    let Some((ty, v)) = s.split_once(':') else {
        return parse_hex(s).map(Piece::Bytes).ok_or_else(|| {
            format!("{s:?} is neither hex bytes nor TYPE:VALUE (u8, u16, u32, u64, be16, be32, be64, ipv4, ipv6, mac, ifindex, prog, zero, hex)")
        });
    };
    let int = |bits: u32, be: bool| -> Result<Piece, String> {
        let n = parse_int(v)
            .filter(|n| bits == 128 || *n < (1u128 << bits))
            .ok_or_else(|| format!("{s:?}: {v:?} is not a {bits}-bit unsigned integer"))?;
        let bytes = (bits / 8) as usize;
        let le = n.to_le_bytes();
        let mut out: Vec<u8> = le.get(..bytes).unwrap_or(&[]).to_vec();
        if be {
            out.reverse();
        }
        Ok(Piece::Bytes(out))
    };
    match ty {
        "hex" => parse_hex(v)
            .map(Piece::Bytes)
            .ok_or_else(|| format!("{s:?}: {v:?} is not an even number of hex digits")),
        "u8" => int(8, false),
        "u16" => int(16, false),
        "u32" => int(32, false),
        "u64" => int(64, false),
        "be16" => int(16, true),
        "be32" => int(32, true),
        "be64" => int(64, true),
        "ipv4" => v
            .parse::<Ipv4Addr>()
            .map(|a| Piece::Bytes(a.octets().to_vec()))
            .map_err(|_| format!("{s:?}: {v:?} is not an IPv4 address")),
        "ipv6" => v
            .parse::<Ipv6Addr>()
            .map(|a| Piece::Bytes(a.octets().to_vec()))
            .map_err(|_| format!("{s:?}: {v:?} is not an IPv6 address")),
        "mac" => parse_mac(v).map(|m| Piece::Bytes(m.to_vec())),
        "zero" => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1 << 20)
            .map(|n| Piece::Bytes(vec![0; n]))
            .ok_or_else(|| format!("{s:?}: {v:?} is not a byte count")),
        "ifindex" => {
            let (netns, dev) = match v.split_once('/') {
                Some((n, d)) => (n.to_string(), d.to_string()),
                None => ("host".to_string(), v.to_string()),
            };
            Ok(Piece::Ifindex { netns, dev })
        }
        "prog" => Ok(Piece::Prog(v.to_string())),
        _ => Err(format!(
            "{s:?}: unknown type {ty:?} (u8, u16, u32, u64, be16, be32, be64, ipv4, ipv6, mac, ifindex, prog, zero, hex)"
        )),
    }
}

pub(crate) fn parse_bytes(b: &RawBytes) -> Result<Vec<Piece>, String> {
    match b {
        RawBytes::One(s) => Ok(vec![parse_piece(s)?]),
        RawBytes::Many(v) => v.iter().map(|s| parse_piece(s)).collect(),
    }
}
