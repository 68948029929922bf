//! Frames in a fixture: hex, a pcap file, or the readable builder (`eth`,
//! `vlan`, `ipv4`/`ipv6`/`arp`, `tcp`/`udp`/`icmp`, `payload`); expected
//! frames as hex with `x` for a nibble that may be anything; and the name of
//! the header field at a byte offset, for diffs.

use std::path::Path;

use toml_edit::Item;

use super::fixture::{int_field, str_field, tables, At};
use crate::frames::{parse_mac, parse_tcp_flags, Builder, Vlan, L3, L4};

/// Expected bytes: (value, mask) per byte; a mask bit 0 matches anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(pub Vec<(u8, u8)>);

impl Pattern {
    pub fn exact(bytes: &[u8]) -> Pattern {
        Pattern(bytes.iter().map(|&b| (b, 0xff)).collect())
    }

    /// Hex digits or `x` per nibble; spaces, `:` and newlines ignored.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let nibbles: Vec<char> = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        if !nibbles.len().is_multiple_of(2) {
            return Err(format!("{} hex digits: want an even number", nibbles.len()));
        }
        let nib = |c: char| -> Result<(u8, u8), String> {
            match c {
                'x' | 'X' => Ok((0, 0)),
                _ => c
                    .to_digit(16)
                    .map(|d| (d as u8, 0xf))
                    .ok_or_else(|| format!("{c:?} is neither a hex digit nor x")),
            }
        };
        let mut out = Vec::with_capacity(nibbles.len() / 2);
        for pair in nibbles.chunks(2) {
            if let [h, l] = pair {
                let ((hv, hm), (lv, lm)) = (nib(*h)?, nib(*l)?);
                out.push(((hv << 4) | lv, (hm << 4) | lm));
            }
        }
        Ok(Pattern(out))
    }

    pub fn matches(&self, got: &[u8]) -> bool {
        self.0.len() == got.len() && self.0.iter().zip(got).all(|((v, m), g)| g & m == v & m)
    }

    /// The pattern as written: hex with `x` for masked nibbles.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(self.0.len() * 2);
        for (v, m) in &self.0 {
            for shift in [4u8, 0] {
                match (m >> shift) & 0xf {
                    0 => s.push('x'),
                    _ => s.push(char::from_digit(u32::from((v >> shift) & 0xf), 16).unwrap_or('?')),
                }
            }
        }
        s
    }

    /// Where `got` differs: the length, then each differing byte with its
    /// field (at most `max` bytes listed).
    pub fn diff(&self, got: &[u8], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        if self.0.len() != got.len() {
            out.push(format!(
                "length: expected {} bytes, got {}",
                self.0.len(),
                got.len()
            ));
        }
        let bad: Vec<usize> = self
            .0
            .iter()
            .zip(got)
            .enumerate()
            .filter(|(_, ((v, m), g))| *g & m != v & m)
            .map(|(i, _)| i)
            .collect();
        for &i in bad.iter().take(max) {
            let (v, m) = self.0.get(i).copied().unwrap_or((0, 0));
            let want = Pattern(vec![(v, m)]).to_hex();
            out.push(format!(
                "byte {i} ({}): expected {want}, got {:02x}",
                field_at(got, i),
                got.get(i).copied().unwrap_or(0)
            ));
        }
        if bad.len() > max {
            out.push(format!("… and {} more bytes differ", bad.len() - max));
        }
        out
    }
}

/// (name, offset, length) of each field of a header.
type Fields = &'static [(&'static str, usize, usize)];

const ETH: Fields = &[("eth.dst", 0, 6), ("eth.src", 6, 6), ("eth.type", 12, 2)];
const VLAN: Fields = &[("vlan.tci", 0, 2), ("vlan.type", 2, 2)];
const IPV4: Fields = &[
    ("ipv4.version_ihl", 0, 1),
    ("ipv4.tos", 1, 1),
    ("ipv4.tot_len", 2, 2),
    ("ipv4.id", 4, 2),
    ("ipv4.frag_off", 6, 2),
    ("ipv4.ttl", 8, 1),
    ("ipv4.protocol", 9, 1),
    ("ipv4.check", 10, 2),
    ("ipv4.saddr", 12, 4),
    ("ipv4.daddr", 16, 4),
];
const IPV6: Fields = &[
    ("ipv6.version_tc_flow", 0, 4),
    ("ipv6.payload_len", 4, 2),
    ("ipv6.nexthdr", 6, 1),
    ("ipv6.hop_limit", 7, 1),
    ("ipv6.saddr", 8, 16),
    ("ipv6.daddr", 24, 16),
];
const ARP: Fields = &[
    ("arp.hrd_pro_len", 0, 6),
    ("arp.op", 6, 2),
    ("arp.sha", 8, 6),
    ("arp.sip", 14, 4),
    ("arp.tha", 18, 6),
    ("arp.tip", 24, 4),
];
const TCP: Fields = &[
    ("tcp.source", 0, 2),
    ("tcp.dest", 2, 2),
    ("tcp.seq", 4, 4),
    ("tcp.ack_seq", 8, 4),
    ("tcp.doff", 12, 1),
    ("tcp.flags", 13, 1),
    ("tcp.window", 14, 2),
    ("tcp.check", 16, 2),
    ("tcp.urg_ptr", 18, 2),
];
const UDP: Fields = &[
    ("udp.source", 0, 2),
    ("udp.dest", 2, 2),
    ("udp.len", 4, 2),
    ("udp.check", 6, 2),
];
const ICMP: Fields = &[
    ("icmp.type", 0, 1),
    ("icmp.code", 1, 1),
    ("icmp.checksum", 2, 2),
    ("icmp.rest", 4, 4),
];

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// The header field at byte `off` of an Ethernet frame (`ipv4.ttl`,
/// `tcp.check`, `payload+3`), following VLAN tags, IPv4 options and the
/// protocol numbers; `byte N` past what it can name.
pub fn field_at(f: &[u8], off: usize) -> String {
    let name = |fields: Fields, base: usize| -> Option<String> {
        fields
            .iter()
            .find(|(_, o, l)| off >= base + o && off < base + o + l)
            .map(|(n, _, _)| n.to_string())
    };
    if off < 14 {
        return name(ETH, 0).unwrap_or_default();
    }
    let mut at = 14;
    let mut ethertype = be16(f, 12).unwrap_or(0);
    while matches!(ethertype, 0x8100 | 0x88a8) {
        if off < at + 4 {
            return name(VLAN, at).unwrap_or_default();
        }
        ethertype = be16(f, at + 2).unwrap_or(0);
        at += 4;
    }
    let (fields, hlen, proto) = match ethertype {
        0x0800 => {
            let ihl = f.get(at).map(|b| usize::from(b & 0xf) * 4).unwrap_or(20);
            (IPV4, ihl.max(20), f.get(at + 9).copied())
        }
        0x86dd => (IPV6, 40, f.get(at + 6).copied()),
        0x0806 => (ARP, 28, None),
        _ => return format!("payload+{}", off - at),
    };
    if off < at + hlen {
        return name(fields, at).unwrap_or_else(|| "ipv4.options".into());
    }
    at += hlen;
    let (l4, l4len): (Fields, usize) = match proto {
        Some(6) => {
            let doff = f
                .get(at + 12)
                .map(|b| usize::from(b >> 4) * 4)
                .unwrap_or(20);
            (TCP, doff.max(20))
        }
        Some(17) => (UDP, 8),
        Some(1) | Some(58) => (ICMP, 8),
        _ => return format!("payload+{}", off - at),
    };
    if off < at + l4len {
        return name(l4, at).unwrap_or_else(|| "tcp.options".into());
    }
    format!("payload+{}", off - at - l4len)
}

/// The frames a `[[case.frame]]` table describes: `hex`, `pcap` (every
/// packet of the file, relative to the fixture), or the builder.
pub(crate) fn frame_from_item(f: &Item, dir: &Path, at: &At) -> Result<Vec<Vec<u8>>, String> {
    if let Some(h) = str_field(f, "hex", at)? {
        let p = Pattern::parse(h).map_err(|e| at.sub("hex").err(e))?;
        if p.0.iter().any(|(_, m)| *m != 0xff) {
            return Err(at
                .sub("hex")
                .err("x masks are for expected frames, not frames in"));
        }
        return Ok(vec![p.0.into_iter().map(|(v, _)| v).collect()]);
    }
    if let Some(p) = str_field(f, "pcap", at)? {
        let path = dir.join(p);
        let cap = skiff_io::read(&path)
            .map_err(|e| at.sub("pcap").err(format!("{}: {e}", path.display())))?;
        return Ok(cap.packets.into_iter().map(|p| p.data).collect());
    }
    Ok(vec![builder(f, at)?.build().map_err(|e| at.err(e))?])
}

/// An expected frame: `hex` (with `x` masks) or the builder (exact).
pub(crate) fn pattern_from_item(f: &Item, at: &At) -> Result<Pattern, String> {
    if let Some(h) = str_field(f, "hex", at)? {
        return Pattern::parse(h).map_err(|e| at.sub("hex").err(e));
    }
    let b = builder(f, at)?.build().map_err(|e| at.err(e))?;
    Ok(Pattern::exact(&b))
}

fn u8_field(t: &Item, key: &str, at: &At) -> Result<Option<u8>, String> {
    int_field(t, key, at)?
        .map(|v| u8::try_from(v).map_err(|_| at.sub(key).err(format!("{v} does not fit 8 bits"))))
        .transpose()
}

fn u16_field(t: &Item, key: &str, at: &At) -> Result<Option<u16>, String> {
    int_field(t, key, at)?
        .map(|v| u16::try_from(v).map_err(|_| at.sub(key).err(format!("{v} does not fit 16 bits"))))
        .transpose()
}

fn u32_field(t: &Item, key: &str, at: &At) -> Result<Option<u32>, String> {
    int_field(t, key, at)?
        .map(|v| u32::try_from(v).map_err(|_| at.sub(key).err(format!("{v} does not fit 32 bits"))))
        .transpose()
}

fn need<'i>(t: &'i Item, key: &str, at: &At) -> Result<&'i str, String> {
    str_field(t, key, at)?.ok_or_else(|| at.sub(key).err("missing"))
}

fn builder(f: &Item, at: &At) -> Result<Builder, String> {
    let known = [
        "dev", "eth", "vlan", "ipv4", "ipv6", "arp", "tcp", "udp", "icmp", "payload",
    ];
    if let Some(t) = f.as_table_like() {
        if let Some((k, _)) = t.iter().find(|(k, _)| !known.contains(k)) {
            return Err(at.sub(k).err(format!(
                "unknown field (a frame is hex = …, pcap = …, or built from {})",
                known[1..].join(", ")
            )));
        }
    }
    let eth = f
        .get("eth")
        .ok_or_else(|| at.err("a frame needs hex = …, pcap = … or eth = { src = …, dst = … }"))?;
    let ea = at.sub("eth");
    let mut b = Builder::new();
    b.eth.src = parse_mac(need(eth, "src", &ea)?).map_err(|e| ea.sub("src").err(e))?;
    b.eth.dst = parse_mac(need(eth, "dst", &ea)?).map_err(|e| ea.sub("dst").err(e))?;
    b.eth.ethertype = u16_field(eth, "type", &ea)?;
    let vlans = match f.get("vlan") {
        Some(v) if v.is_array() || v.is_array_of_tables() => tables(Some(v), &at.sub("vlan"))?,
        Some(v) => vec![v.clone()],
        None => Vec::new(),
    };
    for v in &vlans {
        let va = at.sub("vlan");
        b.vlans.push(Vlan {
            id: u16_field(v, "id", &va)?.ok_or_else(|| va.sub("id").err("missing"))?,
            pcp: u8_field(v, "pcp", &va)?.unwrap_or(0),
            tpid: u16_field(v, "tpid", &va)?.unwrap_or(skiff_wire::ETH_P_8021Q),
        });
    }
    b.l3 = l3(f, at)?;
    b.l4 = l4(f, at)?;
    if let Some(p) = str_field(f, "payload", at)? {
        b.payload = crate::maps::parse_hex("payload", p)
            .map_err(|e| at.sub("payload").err(format!("{e:#}")))?;
    }
    Ok(b)
}

fn addr<T: std::str::FromStr>(t: &Item, key: &str, at: &At, what: &str) -> Result<T, String> {
    let s = need(t, key, at)?;
    s.parse()
        .map_err(|_| at.sub(key).err(format!("{s:?} is not an {what} address")))
}

fn l3(f: &Item, at: &At) -> Result<Option<L3>, String> {
    if let Some(t) = f.get("ipv4") {
        let a = at.sub("ipv4");
        return Ok(Some(L3::Ipv4 {
            src: addr(t, "src", &a, "IPv4")?,
            dst: addr(t, "dst", &a, "IPv4")?,
            ttl: u8_field(t, "ttl", &a)?.unwrap_or(64),
            tos: u8_field(t, "tos", &a)?.unwrap_or(0),
            ident: u16_field(t, "id", &a)?.unwrap_or(0),
            dont_frag: t.get("df").and_then(|v| v.as_bool()).unwrap_or(false),
            protocol: u8_field(t, "protocol", &a)?,
        }));
    }
    if let Some(t) = f.get("ipv6") {
        let a = at.sub("ipv6");
        return Ok(Some(L3::Ipv6 {
            src: addr(t, "src", &a, "IPv6")?,
            dst: addr(t, "dst", &a, "IPv6")?,
            hop_limit: u8_field(t, "hop_limit", &a)?.unwrap_or(64),
            traffic_class: u8_field(t, "tclass", &a)?.unwrap_or(0),
            next_header: u8_field(t, "nexthdr", &a)?,
        }));
    }
    if let Some(t) = f.get("arp") {
        let a = at.sub("arp");
        let mac = |k: &str| parse_mac(need(t, k, &a)?).map_err(|e| a.sub(k).err(e));
        return Ok(Some(L3::Arp(skiff_wire::ArpRepr {
            operation: u16_field(t, "op", &a)?.unwrap_or(1),
            source_hardware_addr: mac("sha")?,
            source_protocol_addr: addr(t, "spa", &a, "IPv4")?,
            target_hardware_addr: mac("tha")?,
            target_protocol_addr: addr(t, "tpa", &a, "IPv4")?,
        })));
    }
    Ok(None)
}

fn l4(f: &Item, at: &At) -> Result<Option<L4>, String> {
    if let Some(t) = f.get("tcp") {
        let a = at.sub("tcp");
        let flags = match str_field(t, "flags", &a)? {
            Some(s) => parse_tcp_flags(s).map_err(|e| a.sub("flags").err(e))?,
            None => 0,
        };
        return Ok(Some(L4::Tcp {
            sport: u16_field(t, "sport", &a)?.ok_or_else(|| a.sub("sport").err("missing"))?,
            dport: u16_field(t, "dport", &a)?.ok_or_else(|| a.sub("dport").err("missing"))?,
            seq: u32_field(t, "seq", &a)?.unwrap_or(0),
            ack: u32_field(t, "ack", &a)?.unwrap_or(0),
            flags,
            window: u16_field(t, "window", &a)?.unwrap_or(65535),
        }));
    }
    if let Some(t) = f.get("udp") {
        let a = at.sub("udp");
        return Ok(Some(L4::Udp {
            sport: u16_field(t, "sport", &a)?.ok_or_else(|| a.sub("sport").err("missing"))?,
            dport: u16_field(t, "dport", &a)?.ok_or_else(|| a.sub("dport").err("missing"))?,
        }));
    }
    if let Some(t) = f.get("icmp") {
        let a = at.sub("icmp");
        let id = u16_field(t, "id", &a)?.unwrap_or(0);
        let seq = u16_field(t, "seq", &a)?.unwrap_or(0);
        return Ok(Some(L4::Icmp {
            msg_type: u8_field(t, "type", &a)?.ok_or_else(|| a.sub("type").err("missing"))?,
            code: u8_field(t, "code", &a)?.unwrap_or(0),
            rest: (u32::from(id) << 16) | u32::from(seq),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_hex_matches_any_nibble_under_x() {
        let p = Pattern::parse("0a0x xx:ff").unwrap();
        assert_eq!(
            p.0,
            vec![(0x0a, 0xff), (0x00, 0xf0), (0x00, 0x00), (0xff, 0xff)]
        );
        assert!(p.matches(&[0x0a, 0x07, 0x99, 0xff]));
        assert!(!p.matches(&[0x0a, 0x17, 0x99, 0xff]));
        assert_eq!(p.to_hex(), "0a0xxxff");
        assert_eq!(
            Pattern::parse("0g").unwrap_err(),
            "'g' is neither a hex digit nor x"
        );
    }

    #[test]
    fn a_diff_names_the_field() {
        let f = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/xdp_fw/blocked.bin"
        ))
        .unwrap();
        assert_eq!(field_at(&f, 0), "eth.dst");
        assert_eq!(field_at(&f, 22), "ipv4.ttl");
        assert_eq!(field_at(&f, 26), "ipv4.saddr");
        assert_eq!(field_at(&f, 36), "udp.dest");
        assert_eq!(field_at(&f, 42), "payload+0");
        let mut want = f.clone();
        want[22] = 63;
        assert_eq!(
            Pattern::exact(&want).diff(&f, 4),
            vec!["byte 22 (ipv4.ttl): expected 3f, got 40".to_string()]
        );
    }
}
