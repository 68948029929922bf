//! f_flower.c: `flower [KEY VALUE[/MASK]]... [classid C] [action ...]`:
//! MACs, vlan_id/vlan_prio/vlan_ethtype, ip_proto, ip_tos, ip_ttl,
//! src_ip/dst_ip with a prefix, src_port/dst_port, tcp_flags, type/code.

use std::net::IpAddr;

use skiff_net::sched::cls_flower::{FlowerKey, FlowerSpec};

use super::action::{make_exts, parse_actions, ActionSpec};
use super::{get_tc_classid, get_u32, matches, TcError, TcTarget, Words};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowerLine {
    pub key: FlowerKey,
    pub mask: FlowerKey,
    pub classid: u32,
    pub actions: Vec<ActionSpec>,
}

fn bad(w: &Words, what: &str, v: &str) -> TcError {
    TcError::at(w.last(), format!("Illegal \"{what}\" \"{v}\""))
}

/// A value with an optional /MASK (numbers, base 0).
fn num_mask(w: &Words, what: &str, v: &str, max: u32) -> Result<(u32, u32), TcError> {
    let (a, m) = match v.split_once('/') {
        Some((a, m)) => (a, get_u32(m)),
        None => (v, Some(max)),
    };
    match (get_u32(a), m) {
        (Some(a), Some(m)) if a <= max && m <= max => Ok((a, m)),
        _ => Err(bad(w, what, v)),
    }
}

fn mac(w: &Words, what: &str, v: &str) -> Result<([u8; 6], [u8; 6]), TcError> {
    let (a, m) = match v.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (v, None),
    };
    let parse = |s: &str| -> Option<[u8; 6]> {
        let b: Vec<u8> = s
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).ok())
            .collect::<Option<_>>()?;
        b.try_into().ok()
    };
    let addr = parse(a).ok_or_else(|| bad(w, what, v))?;
    let mask = match m {
        None => [0xff; 6],
        Some(m) => match m.parse::<u32>() {
            Ok(len) if len <= 48 && !m.contains(':') => {
                let bits = if len == 0 {
                    0u64
                } else {
                    (!0u64 << (48 - len)) & 0xffff_ffff_ffff
                };
                let b = bits.to_be_bytes();
                [b[2], b[3], b[4], b[5], b[6], b[7]]
            }
            _ => parse(m).ok_or_else(|| bad(w, what, v))?,
        },
    };
    Ok((addr, mask))
}

fn ip_proto(v: &str) -> Option<u8> {
    match v {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        n => get_u32(n).and_then(|n| u8::try_from(n).ok()),
    }
}

/// f_flower.c: flower_parse_opt. `protocol` is the filter's (eth_type).
pub fn parse(w: &mut Words, protocol: u16) -> Result<FlowerLine, TcError> {
    let mut l = FlowerLine::default();
    let (k, m) = (&mut l.key, &mut l.mask);
    if protocol != skiff_net::sched::cls_api::ETH_P_ALL {
        k.n_proto = protocol;
        m.n_proto = 0xffff;
    }
    let is_vlan = protocol == 0x8100 || protocol == 0x88a8;
    let ip = |k: &FlowerKey| k.n_proto == 0x0800 || k.n_proto == 0x86dd;
    while let Some(a) = w.peek() {
        if matches(a, "action") || a == "police" {
            l.actions.extend(parse_actions(w)?);
            continue;
        }
        let known = [
            "classid",
            "flowid",
            "skip_hw",
            "skip_sw",
            "dst_mac",
            "src_mac",
            "vlan_id",
            "vlan_prio",
            "vlan_ethtype",
            "ip_proto",
            "ip_tos",
            "ip_ttl",
            "dst_ip",
            "src_ip",
            "dst_port",
            "src_port",
            "tcp_flags",
            "type",
            "code",
            "indev",
            "ct_state",
            "enc_key_id",
        ];
        if !known.contains(&a) {
            break;
        }
        w.next();
        let kat = w.last();
        let (k, m) = (&mut l.key, &mut l.mask);
        match a {
            "skip_hw" => continue,
            "skip_sw" | "indev" | "ct_state" | "enc_key_id" => {
                return Err(TcError::at(w.last(), format!("not supported: flower {a}")))
            }
            _ => {}
        }
        let v = w.value(a)?;
        match a {
            "classid" | "flowid" => {
                l.classid = get_tc_classid(v).ok_or_else(|| bad(w, a, v))?;
            }
            "dst_mac" => (k.dst_mac, m.dst_mac) = mac(w, a, v)?,
            "src_mac" => (k.src_mac, m.src_mac) = mac(w, a, v)?,
            "vlan_id" | "vlan_prio" | "vlan_ethtype" if !is_vlan => {
                return Err(TcError::at(
                    w.last(),
                    format!("Can't set \"{a}\" if ethertype isn't 802.1Q or 802.1AD"),
                ))
            }
            "vlan_id" => {
                k.vlan_id = get_u32(v)
                    .filter(|x| *x < 4096)
                    .ok_or_else(|| bad(w, a, v))? as u16;
                m.vlan_id = 0x0fff;
            }
            "vlan_prio" => {
                k.vlan_prio = get_u32(v).filter(|x| *x < 8).ok_or_else(|| bad(w, a, v))? as u8;
                m.vlan_prio = 0x7;
            }
            "vlan_ethtype" => {
                k.n_proto = skiff_net::sched::cls_api::protocol_from_name(match v {
                    "ipv4" => "ip",
                    o => o,
                })
                .ok_or_else(|| bad(w, a, v))?;
                m.n_proto = 0xffff;
                k.vlan_tpid = protocol;
                m.vlan_tpid = 0xffff;
            }
            _ if !ip(k) => {
                return Err(TcError::at(
                    kat,
                    format!("Illegal \"{a}\" for non-IP protocol (give protocol ip or ipv6)"),
                ))
            }
            "ip_proto" => {
                k.ip_proto = ip_proto(v).ok_or_else(|| bad(w, a, v))?;
                m.ip_proto = 0xff;
            }
            "ip_tos" => {
                let (x, y) = num_mask(w, a, v, 0xff)?;
                (k.ip_tos, m.ip_tos) = (x as u8, y as u8);
            }
            "ip_ttl" => {
                let (x, y) = num_mask(w, a, v, 0xff)?;
                (k.ip_ttl, m.ip_ttl) = (x as u8, y as u8);
            }
            "dst_ip" | "src_ip" => ip_addr(w, a, v, k, m)?,
            "dst_port" | "src_port" | "tcp_flags" | "type" | "code" => l4(w, kat, a, v, k, m)?,
            _ => return Err(TcError::at(w.last(), format!("What is \"{a}\"?"))),
        }
    }
    Ok(l)
}

fn ip_addr(
    w: &Words,
    a: &str,
    v: &str,
    k: &mut FlowerKey,
    m: &mut FlowerKey,
) -> Result<(), TcError> {
    let (addr, len) = match v.split_once('/') {
        Some((x, l)) => (x, l.parse::<u32>().ok()),
        None => (v, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad(w, a, v))?;
    match (addr, k.n_proto) {
        (IpAddr::V4(x), 0x0800) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(bad(w, a, v));
            }
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let (kk, mm) = if a == "dst_ip" {
                (&mut k.ipv4_dst, &mut m.ipv4_dst)
            } else {
                (&mut k.ipv4_src, &mut m.ipv4_src)
            };
            (*kk, *mm) = (u32::from(x), mask);
        }
        (IpAddr::V6(x), 0x86dd) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(bad(w, a, v));
            }
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let (kk, mm) = if a == "dst_ip" {
                (&mut k.ipv6_dst, &mut m.ipv6_dst)
            } else {
                (&mut k.ipv6_src, &mut m.ipv6_src)
            };
            (*kk, *mm) = (u128::from(x), mask);
        }
        _ => {
            return Err(TcError::at(
                w.last(),
                format!("Illegal \"{a}\": the address family is not the filter's protocol"),
            ))
        }
    }
    Ok(())
}

fn l4(
    w: &Words,
    kat: usize,
    a: &str,
    v: &str,
    k: &mut FlowerKey,
    m: &mut FlowerKey,
) -> Result<(), TcError> {
    let need = match a {
        "tcp_flags" => k.ip_proto == 6,
        "type" | "code" => k.ip_proto == 1 || k.ip_proto == 58,
        _ => matches!(k.ip_proto, 6 | 17 | 132),
    };
    if !need {
        return Err(TcError::at(
            kat,
            format!("Illegal \"{a}\" without a fitting \"ip_proto\""),
        ));
    }
    match a {
        "dst_port" | "src_port" => {
            if v.contains('-') {
                return Err(TcError::at(w.last(), "not supported: flower port ranges"));
            }
            let p = get_u32(v)
                .filter(|p| *p <= 0xffff)
                .ok_or_else(|| bad(w, a, v))? as u16;
            if a == "dst_port" {
                (k.dst_port, m.dst_port) = (p, 0xffff);
            } else {
                (k.src_port, m.src_port) = (p, 0xffff);
            }
        }
        "tcp_flags" => {
            let (x, y) = num_mask(w, a, v, 0x0fff)?;
            (k.tcp_flags, m.tcp_flags) = (x as u16, y as u16);
        }
        "type" => {
            let (x, y) = num_mask(w, a, v, 0xff)?;
            (k.icmp_type, m.icmp_type) = (x as u8, y as u8);
        }
        _ => {
            let (x, y) = num_mask(w, a, v, 0xff)?;
            (k.icmp_code, m.icmp_code) = (x as u8, y as u8);
        }
    }
    Ok(())
}

/// The FilterSpec of a flower line (its actions made).
pub fn spec(t: &mut TcTarget, l: &FlowerLine) -> Result<FlowerSpec, TcError> {
    Ok(FlowerSpec {
        key: l.key,
        mask: l.mask,
        classid: l.classid,
        exts: make_exts(t, &l.actions)?,
    })
}
