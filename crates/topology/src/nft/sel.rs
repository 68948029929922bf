//! The selector expressions of a rule (`ip daddr`, `tcp dport`, `th dport`,
//! `meta l4proto`, `ct state`, `numgen inc mod 2`, concatenations with
//! `.`, and `&`/`|`/`^` with a constant): what they load, their type, and
//! the protocol dependency nft adds before a payload load (src/payload.c
//! payload_gen_dependency: `meta l4proto`, in inet `meta nfproto`).

use skiff_net::netfilter::nf_tables::expr::{CtKey, MetaKey, NumgenKind, PayloadBase};
use skiff_net::netfilter::nf_tables::NftFamily;

use super::cursor::Cur;
use super::types::{number, value, Ty};
use super::NftParseError;

/// What a selector loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    Payload(PayloadBase, u32, u32),
    Meta(MetaKey),
    Ct(CtKey),
    Numgen {
        modulus: u32,
        offset: u32,
        kind: NumgenKind,
    },
}

/// A dependency: `meta l4proto P` or (inet) `meta nfproto N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dep {
    L4(u8),
    Nf(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sel {
    pub load: Load,
    pub ty: Ty,
    pub deps: Vec<Dep>,
}

/// A selector expression: one selector or a concatenation, and for one
/// selector a bitwise (mask, xor) from `&`, `|`, `^`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelExpr {
    pub sels: Vec<Sel>,
    pub binop: Option<(Vec<u8>, Vec<u8>)>,
}

/// The protocols nft knows but skiff does not load from.
const UNSUPPORTED: [&str; 24] = [
    "ether", "vlan", "arp", "sctp", "dccp", "ah", "esp", "comp", "udplite", "rt", "frag", "dst",
    "hbh", "mh", "ipsec", "socket", "osf", "fib", "jhash", "symhash", "exthdr", "rt0", "icmpx",
    "igmp",
];

fn payload(base: PayloadBase, off: u32, ty: Ty, deps: Vec<Dep>) -> Sel {
    Sel {
        load: Load::Payload(base, off, ty.len()),
        ty,
        deps,
    }
}

fn field<'a>(c: &mut Cur<'a>, proto: &str) -> Result<&'a str, NftParseError> {
    let t = c.next_tok(&format!("a {proto} header field"))?;
    t.word().ok_or_else(|| {
        t.err(format!(
            "syntax error, unexpected '{}', expecting a {proto} field",
            t.text()
        ))
    })
}

fn bad_field(c: &Cur, proto: &str, f: &str) -> NftParseError {
    c.prev_err(format!(
        "not supported: nft {proto} {f} (docs/differences.md)"
    ))
}

/// The family dependency of an ip / ip6 header field.
fn l3_deps(family: NftFamily, v6: bool, c: &Cur) -> Result<Vec<Dep>, NftParseError> {
    match (family, v6) {
        (NftFamily::Inet, false) => Ok(vec![Dep::Nf(2)]),
        (NftFamily::Inet, true) => Ok(vec![Dep::Nf(10)]),
        (NftFamily::Ip, true) | (NftFamily::Ip6, false) => Err(c.prev_err(format!(
            "conflicting protocols specified: {} vs. {}",
            family.name(),
            if v6 { "ip6" } else { "ip" }
        ))),
        _ => Ok(vec![]),
    }
}

fn ip_sel(c: &mut Cur, family: NftFamily) -> Result<Sel, NftParseError> {
    let f = field(c, "ip")?;
    let deps = l3_deps(family, false, c)?;
    let (off, ty) = match f {
        "saddr" => (12, Ty::Ipv4Addr),
        "daddr" => (16, Ty::Ipv4Addr),
        "protocol" => (9, Ty::InetProto),
        "ttl" => (8, Ty::U8),
        "length" => (2, Ty::Be16),
        _ => return Err(bad_field(c, "ip", f)),
    };
    Ok(payload(PayloadBase::Network, off, ty, deps))
}

fn ip6_sel(c: &mut Cur, family: NftFamily) -> Result<Sel, NftParseError> {
    let f = field(c, "ip6")?;
    let deps = l3_deps(family, true, c)?;
    let (off, ty) = match f {
        "saddr" => (8, Ty::Ipv6Addr),
        "daddr" => (24, Ty::Ipv6Addr),
        "nexthdr" => (6, Ty::InetProto),
        "hoplimit" => (7, Ty::U8),
        _ => return Err(bad_field(c, "ip6", f)),
    };
    Ok(payload(PayloadBase::Network, off, ty, deps))
}

fn l4_sel(c: &mut Cur, proto: &str, family: NftFamily) -> Result<Sel, NftParseError> {
    let f = field(c, proto)?;
    let mut deps = match proto {
        "tcp" => vec![Dep::L4(6)],
        "udp" => vec![Dep::L4(17)],
        "icmp" => vec![Dep::L4(1)],
        "icmpv6" => vec![Dep::L4(58)],
        _ => vec![],
    };
    match (proto, family) {
        ("icmp", NftFamily::Inet) => deps.insert(0, Dep::Nf(2)),
        ("icmpv6", NftFamily::Inet) => deps.insert(0, Dep::Nf(10)),
        ("icmp", NftFamily::Ip6) | ("icmpv6", NftFamily::Ip) => {
            return Err(c.prev_err(format!(
                "conflicting protocols specified: {} vs. {proto}",
                family.name()
            )))
        }
        _ => {}
    }
    let (off, ty) = match (proto, f) {
        ("tcp" | "udp" | "th", "sport") => (0, Ty::InetService),
        ("tcp" | "udp" | "th", "dport") => (2, Ty::InetService),
        ("tcp", "flags") => (13, Ty::TcpFlags),
        ("icmp", "type") => (0, Ty::IcmpType),
        ("icmpv6", "type") => (0, Ty::Icmpv6Type),
        ("icmp" | "icmpv6", "code") => (1, Ty::IcmpCode),
        _ => return Err(bad_field(c, proto, f)),
    };
    Ok(payload(PayloadBase::Transport, off, ty, deps))
}

fn meta_key(c: &Cur, k: &str) -> Result<(MetaKey, Ty), NftParseError> {
    Ok(match k {
        "mark" => (MetaKey::Mark, Ty::Mark),
        "l4proto" => (MetaKey::L4proto, Ty::InetProto),
        "nfproto" => (MetaKey::Nfproto, Ty::NfProto),
        "length" | "len" => (MetaKey::Len, Ty::Integer),
        "iifname" => (MetaKey::Iifname, Ty::IfName),
        "oifname" => (MetaKey::Oifname, Ty::IfName),
        "protocol" => (MetaKey::Protocol, Ty::Be16),
        _ => return Err(c.prev_err(format!("not supported: nft meta {k} (docs/differences.md)"))),
    })
}

fn ct_sel(c: &mut Cur) -> Result<Sel, NftParseError> {
    let k = field(c, "ct")?;
    let (key, ty) = match k {
        "state" => (CtKey::State, Ty::CtState),
        "status" => (CtKey::Status, Ty::CtStatus),
        "mark" => (CtKey::Mark, Ty::Mark),
        "direction" => (CtKey::Direction, Ty::CtDir),
        _ => return Err(c.prev_err(format!("not supported: nft ct {k} (docs/differences.md)"))),
    };
    Ok(Sel {
        load: Load::Ct(key),
        ty,
        deps: vec![],
    })
}

/// `numgen inc|random mod N [offset M]`.
fn numgen_sel(c: &mut Cur) -> Result<Sel, NftParseError> {
    let kind = match c.next_word("inc or random")? {
        "inc" => NumgenKind::Inc { counter: 0 },
        "random" => NumgenKind::Random,
        w => {
            return Err(c.prev_err(format!(
                "syntax error, unexpected '{w}', expecting inc or random"
            )))
        }
    };
    c.expect("mod")?;
    let m = c.next_word("a modulus")?;
    let modulus = number(m)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| c.prev_err(format!("invalid modulus '{m}'")))?;
    let mut offset = 0;
    if c.peek_word() == Some("offset") {
        c.next_word("offset")?;
        let o = c.next_word("an offset")?;
        offset = number(o)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| c.prev_err(format!("invalid offset '{o}'")))?;
    }
    // nft_ng_inc_init: the counter starts at modulus - 1, so the first draw is 0.
    let kind = match kind {
        NumgenKind::Inc { .. } => NumgenKind::Inc {
            counter: modulus - 1,
        },
        k => k,
    };
    Ok(Sel {
        load: Load::Numgen {
            modulus,
            offset,
            kind,
        },
        ty: Ty::Integer,
        deps: vec![],
    })
}

/// Whether `w` starts a selector.
pub fn starts_selector(w: &str) -> bool {
    matches!(
        w,
        "ip" | "ip6"
            | "tcp"
            | "udp"
            | "th"
            | "icmp"
            | "icmpv6"
            | "meta"
            | "ct"
            | "numgen"
            | "mark"
            | "iifname"
            | "oifname"
            | "iif"
            | "oif"
    ) || UNSUPPORTED.contains(&w)
}

/// One selector at the cursor.
pub fn selector(c: &mut Cur, family: NftFamily) -> Result<Sel, NftParseError> {
    let w = c.next_word("an expression")?;
    match w {
        "ip" => ip_sel(c, family),
        "ip6" => ip6_sel(c, family),
        "tcp" | "udp" | "th" | "icmp" | "icmpv6" => l4_sel(c, w, family),
        "ct" => ct_sel(c),
        "numgen" => numgen_sel(c),
        "meta" => {
            let k = c.next_word("a meta key")?;
            let (key, ty) = meta_key(c, k)?;
            Ok(Sel {
                load: Load::Meta(key),
                ty,
                deps: vec![],
            })
        }
        "mark" | "iifname" | "oifname" => {
            let (key, ty) = meta_key(c, w)?;
            Ok(Sel {
                load: Load::Meta(key),
                ty,
                deps: vec![],
            })
        }
        "iif" | "oif" => Err(c.prev_err(format!(
            "not supported: nft {w} (an interface index; use {w}name)"
        ))),
        w if UNSUPPORTED.contains(&w) => Err(c.prev_err(format!(
            "not supported: nft {w} expressions (docs/differences.md)"
        ))),
        w => Err(c.prev_err(format!("unknown expression '{w}'"))),
    }
}

/// A selector expression: `a . b . c` or `a [& | ^ CONST]...`.
pub fn sel_expr(c: &mut Cur, family: NftFamily) -> Result<SelExpr, NftParseError> {
    let mut sels = vec![selector(c, family)?];
    while c.peek_word() == Some(".") {
        c.next_word(".")?;
        sels.push(selector(c, family)?);
    }
    let mut binop: Option<(Vec<u8>, Vec<u8>)> = None;
    while let Some(op) = c
        .peek_word()
        .filter(|w| matches!(*w, "&" | "|" | "^" | "and" | "or" | "xor"))
    {
        let op = op.to_string();
        c.next_word("op")?;
        let [s] = sels.as_slice() else {
            return Err(c.prev_err("not supported: nft a binary operation on a concatenation"));
        };
        let vw = c.next_word("a value")?;
        let v = value(s.ty, vw).ok_or_else(|| c.prev_err(format!("invalid value '{vw}'")))?;
        let ones = vec![0xffu8; v.len()];
        let (m2, x2) = match op.as_str() {
            "&" | "and" => (v.clone(), vec![0u8; v.len()]),
            "|" | "or" => (v.iter().map(|b| !b).collect(), v.clone()),
            _ => (ones.clone(), v.clone()),
        };
        let (m1, x1) = binop.take().unwrap_or((ones, vec![0u8; v.len()]));
        // ((x & m1) ^ x1) & m2 ^ x2 = (x & (m1 & m2)) ^ ((x1 & m2) ^ x2)
        let m: Vec<u8> = m1.iter().zip(&m2).map(|(a, b)| a & b).collect();
        let x: Vec<u8> = x1
            .iter()
            .zip(&m2)
            .zip(&x2)
            .map(|((a, b), c)| (a & b) ^ c)
            .collect();
        binop = Some((m, x));
    }
    Ok(SelExpr { sels, binop })
}
