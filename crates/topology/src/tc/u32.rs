//! f_u32.c: `u32 [match SELECTOR]... [offset ...] [hashkey mask M at N]
//! [divisor N] [ht H:[B:]] [link H:] [order N] [sample SELECTOR]
//! [classid|flowid C] [action ...]`, keys packed as pack_key/pack_key16/
//! pack_key8 pack them (values and masks as the big-endian word reads).

use std::net::Ipv4Addr;

use skiff_net::sched::cls_api::FilterSpec;
use skiff_net::sched::cls_u32::{
    U32Key, U32Sel, U32Spec, TC_U32_EAT, TC_U32_OFFSET, TC_U32_TERMINAL, TC_U32_VAROFFSET,
};

use super::action::{make_exts, parse_actions, ActionSpec};
use super::{get_tc_classid, get_u32, matches, TcError, TcTarget, Words};

/// A parsed u32 filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct U32Line {
    pub sel: U32Sel,
    pub divisor: Option<u32>,
    pub ht: Option<u32>,
    pub link: Option<u32>,
    pub order: Option<u32>,
    pub classid: Option<u32>,
    pub mark: Option<(u32, u32)>,
    /// `sample`: the bucket it computes goes into ht's hash.
    pub sample_bucket: Option<u32>,
    pub actions: Vec<ActionSpec>,
}

/// f_u32.c: get_u32_handle — "H:B:N" in hex, each part optional.
pub fn get_u32_handle(s: &str) -> Option<u32> {
    let mut parts = s.split(':');
    let mut part = |max: u32| -> Option<u32> {
        match parts.next() {
            None | Some("") => Some(0),
            Some(p) => u32::from_str_radix(p, 16).ok().filter(|v| *v <= max),
        }
    };
    let (h, b, n) = (part(0xfff)?, part(0xff)?, part(0xfff)?);
    if parts.next().is_some() {
        return None;
    }
    Some((h << 20) | (b << 12) | n)
}

/// pack_key: keys at the same offset merge (a contradiction is an error).
fn pack_key(sel: &mut U32Sel, key: u32, mask: u32, off: i32, offmask: i32) -> Result<(), ()> {
    let key = key & mask;
    if let Some(k) = sel
        .keys
        .iter_mut()
        .find(|k| k.off == off && k.offmask == offmask)
    {
        if (key ^ k.val) & mask & k.mask != 0 {
            return Err(());
        }
        k.val |= key;
        k.mask |= mask;
        return Ok(());
    }
    if sel.keys.len() >= 128 || off % 4 != 0 {
        return Err(());
    }
    sel.keys.push(U32Key {
        val: key,
        mask,
        off,
        offmask,
    });
    Ok(())
}

/// pack_key16: a 16-bit value into the high half at offsets 4n, else the low.
fn pack_key16(sel: &mut U32Sel, key: u32, mask: u32, off: i32, offmask: i32) -> Result<(), ()> {
    if key > 0xffff || mask > 0xffff {
        return Err(());
    }
    let (k, m) = if off & 3 == 0 {
        (key << 16, mask << 16)
    } else {
        (key, mask)
    };
    pack_key(sel, k, m, off & !3, offmask)
}

/// pack_key8: an 8-bit value into its byte of the word.
fn pack_key8(sel: &mut U32Sel, key: u32, mask: u32, off: i32, offmask: i32) -> Result<(), ()> {
    if key > 0xff || mask > 0xff {
        return Err(());
    }
    let shift = 8 * (3 - (off & 3) as u32);
    pack_key(sel, key << shift, mask << shift, off & !3, offmask)
}

/// parse_at: "at [nexthdr+]OFF".
fn parse_at(w: &mut Words, off: i32, offmask: i32) -> Result<(i32, i32), ()> {
    if w.peek() != Some("at") {
        return Ok((off, offmask));
    }
    w.next();
    let mut v = w.next().ok_or(())?;
    let mut om = offmask;
    if let Some(rest) = v.strip_prefix("nexthdr+") {
        om = -1;
        if rest.is_empty() {
            v = w.next().ok_or(())?;
        } else {
            v = rest;
        }
    }
    let o = parse_int(v).ok_or(())?;
    Ok((o, om))
}

fn parse_int(v: &str) -> Option<i32> {
    match v.strip_prefix('-') {
        Some(n) => get_u32(n).and_then(|n| i32::try_from(n).ok()).map(|n| -n),
        None => get_u32(v).and_then(|n| i32::try_from(n).ok()),
    }
}

/// parse_u32/parse_u16/parse_u8: VAL MASK [at OFF].
fn parse_un(w: &mut Words, sel: &mut U32Sel, bits: u32, off: i32, offmask: i32) -> Result<(), ()> {
    let key = w.next().and_then(get_u32).ok_or(())?;
    let mask = w
        .next()
        .and_then(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).ok())
        .ok_or(())?;
    let (off, offmask) = parse_at(w, off, offmask)?;
    match bits {
        32 => pack_key(sel, key, mask, off, offmask),
        16 => pack_key16(sel, key, mask, off, offmask),
        _ => pack_key8(sel, key, mask, off, offmask),
    }
}

/// parse_ip_addr: ADDR[/LEN] as a 32-bit key at `off`.
fn parse_ip_addr(w: &mut Words, sel: &mut U32Sel, off: i32) -> Result<(), ()> {
    let v = w.next().ok_or(())?;
    let (a, len) = match v.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().map_err(|_| ())?),
        None => (v, 32),
    };
    if len > 32 {
        return Err(());
    }
    let addr: Ipv4Addr = a.parse().map_err(|_| ())?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let (off, offmask) = parse_at(w, off, 0)?;
    pack_key(sel, u32::from(addr), mask, off, offmask)
}

/// parse_selector: the `match` forms (u32/u16/u8, ip, tcp, udp, icmp, mark).
fn parse_selector(w: &mut Words, l: &mut U32Line) -> Result<(), ()> {
    let sel = &mut l.sel;
    match w.next().ok_or(())? {
        "u32" => parse_un(w, sel, 32, 0, 0),
        "u16" => parse_un(w, sel, 16, 0, 0),
        "u8" => parse_un(w, sel, 8, 0, 0),
        "ip" => match w.next().ok_or(())? {
            "src" => parse_ip_addr(w, sel, 12),
            "dst" => parse_ip_addr(w, sel, 16),
            "tos" | "dsfield" | "precedence" => parse_un(w, sel, 8, 1, 0),
            "ihl" => parse_un(w, sel, 8, 0, 0),
            "protocol" => parse_un(w, sel, 8, 9, 0),
            "sport" => parse_un(w, sel, 16, 20, 0),
            "dport" => parse_un(w, sel, 16, 22, 0),
            "icmp_type" => parse_un(w, sel, 8, 20, 0),
            "icmp_code" => parse_un(w, sel, 8, 21, 0),
            _ => Err(()),
        },
        "tcp" | "udp" => match w.next().ok_or(())? {
            "src" => parse_un(w, sel, 16, 0, -1),
            "dst" => parse_un(w, sel, 16, 2, -1),
            _ => Err(()),
        },
        "icmp" => match w.next().ok_or(())? {
            "type" => parse_un(w, sel, 8, 0, -1),
            "code" => parse_un(w, sel, 8, 1, -1),
            _ => Err(()),
        },
        "mark" => {
            let v = w.next().and_then(get_u32).ok_or(())?;
            let m = w
                .next()
                .and_then(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).ok())
                .ok_or(())?;
            l.mark = Some((v & m, m));
            Ok(())
        }
        _ => Err(()),
    }
}

/// parse_offset: plus N | at N | mask M | shift S | eat.
fn parse_offset(w: &mut Words, sel: &mut U32Sel) -> Result<(), TcError> {
    let bad = |w: &Words| TcError::at(w.last(), "Illegal \"offset\"");
    while let Some(a) = w.peek() {
        match a {
            "plus" => {
                w.next();
                sel.off = w
                    .next()
                    .and_then(parse_int)
                    .and_then(|v| i16::try_from(v).ok())
                    .ok_or_else(|| bad(w))?;
                sel.flags |= TC_U32_OFFSET;
            }
            "at" => {
                w.next();
                let v = w
                    .next()
                    .and_then(parse_int)
                    .and_then(|v| i16::try_from(v).ok())
                    .ok_or_else(|| bad(w))?;
                if v % 2 != 0 {
                    return Err(TcError::at(w.last(), "offset \"at\" must be even"));
                }
                sel.offoff = v;
                sel.flags |= TC_U32_VAROFFSET;
            }
            "mask" => {
                w.next();
                sel.offmask = w
                    .next()
                    .and_then(|m| u16::from_str_radix(m.trim_start_matches("0x"), 16).ok())
                    .ok_or_else(|| bad(w))?;
                sel.flags |= TC_U32_VAROFFSET;
            }
            "shift" => {
                w.next();
                sel.offshift = w
                    .next()
                    .and_then(get_u32)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| bad(w))?;
                sel.flags |= TC_U32_VAROFFSET;
            }
            "eat" => {
                w.next();
                sel.flags |= TC_U32_EAT;
            }
            _ => break,
        }
    }
    Ok(())
}

/// parse_hashkey: mask M at N (N a multiple of 4).
fn parse_hashkey(w: &mut Words, sel: &mut U32Sel) -> Result<(), TcError> {
    let bad = |w: &Words| TcError::at(w.last(), "Illegal \"hashkey\"");
    while let Some(a) = w.peek() {
        match a {
            "mask" => {
                w.next();
                sel.hmask = w
                    .next()
                    .and_then(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).ok())
                    .ok_or_else(|| bad(w))?;
            }
            "at" => {
                w.next();
                let v = w.next().and_then(parse_int).ok_or_else(|| bad(w))?;
                if v % 4 != 0 {
                    return Err(bad(w));
                }
                sel.hoff = i16::try_from(v).map_err(|_| bad(w))?;
            }
            _ => break,
        }
    }
    Ok(())
}

/// f_u32.c: u32_parse_opt.
pub fn parse(w: &mut Words, handle: Option<&(usize, String)>) -> Result<U32Line, TcError> {
    let mut l = U32Line::default();
    let mut terminal = false;
    if let Some((at, h)) = handle {
        get_u32_handle(h).ok_or_else(|| TcError::at(*at, format!("Illegal \"handle\" \"{h}\"")))?;
    }
    while let Some(a) = w.peek() {
        let at = w.pos;
        match a {
            _ if matches(a, "match") => {
                w.next();
                parse_selector(w, &mut l).map_err(|_| TcError::at(at, "Illegal \"match\""))?;
            }
            _ if matches(a, "offset") => {
                w.next();
                parse_offset(w, &mut l.sel)?;
            }
            _ if matches(a, "hashkey") => {
                w.next();
                parse_hashkey(w, &mut l.sel)?;
            }
            "classid" | "flowid" => {
                w.next();
                let v = w.value(a)?;
                l.classid = Some(
                    get_tc_classid(v)
                        .ok_or_else(|| TcError::at(w.last(), "Illegal \"classid\""))?,
                );
                terminal = true;
            }
            _ if matches(a, "divisor") => {
                w.next();
                let v = w.value("divisor")?;
                let d = get_u32(v)
                    .filter(|d| *d > 0 && *d <= 256 && d.is_power_of_two())
                    .ok_or_else(|| TcError::at(w.last(), "Illegal \"divisor\""))?;
                l.divisor = Some(d);
            }
            _ if matches(a, "order") => {
                w.next();
                let v = w.value("order")?;
                l.order =
                    Some(get_u32(v).ok_or_else(|| TcError::at(w.last(), "Illegal \"order\""))?);
            }
            "link" | "ht" => {
                w.next();
                let v = w.value(a)?;
                let h = get_u32_handle(v)
                    .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"{a}\"")))?;
                if h & 0xfff != 0 {
                    return Err(TcError::at(
                        w.last(),
                        format!("\"{a}\" must be a hash table."),
                    ));
                }
                if a == "link" {
                    l.link = Some(h);
                } else {
                    l.ht = Some(h);
                }
            }
            "sample" => {
                w.next();
                l.sample_bucket =
                    Some(sample(w).map_err(|_| TcError::at(at, "Illegal \"sample\""))?);
            }
            _ if matches(a, "action") || a == "police" => {
                l.actions.extend(parse_actions(w)?);
                terminal = true;
            }
            "skip_hw" | "not_in_hw" => {
                w.next();
            }
            "skip_sw" | "indev" => return Err(TcError::at(at, format!("not supported: u32 {a}"))),
            _ => break,
        }
    }
    if terminal {
        l.sel.flags |= TC_U32_TERMINAL;
    }
    Ok(l)
}

/// f_u32.c's `sample`: one key; its bucket by tc's fold (hash ^= hash >> 16,
/// hash ^= hash >> 8, % divisor, divisor 256 unless given).
fn sample(w: &mut Words) -> Result<u32, ()> {
    let mut l = U32Line::default();
    parse_selector(w, &mut l)?;
    let [k] = l.sel.keys.as_slice() else {
        return Err(());
    };
    let mut divisor = 256;
    if w.peek() == Some("divisor") {
        w.next();
        divisor = w.next().and_then(get_u32).filter(|d| *d > 0).ok_or(())?;
    }
    let mut hash = k.val & k.mask;
    hash ^= hash >> 16;
    hash ^= hash >> 8;
    Ok(hash % divisor)
}

/// The FilterSpec and handle of a u32 line (its actions made).
pub fn spec(
    t: &mut TcTarget,
    l: &U32Line,
    handle: Option<&(usize, String)>,
) -> Result<(FilterSpec, u32), TcError> {
    let mut h = handle.and_then(|(_, h)| get_u32_handle(h)).unwrap_or(0);
    if let Some(o) = l.order {
        if h & 0xfff != 0 && o != h & 0xfff {
            return Err(TcError::line("\"order\" contradicts \"handle\""));
        }
        h |= o & 0xfff;
    }
    let mut ht = l.ht;
    if let Some(b) = l.sample_bucket {
        ht = Some(ht.unwrap_or(0) & 0xfff0_0000 | ((b & 0xff) << 12));
    }
    let exts = make_exts(t, &l.actions)?;
    let spec = U32Spec {
        divisor: l.divisor,
        ht,
        sel: l.sel.clone(),
        classid: l.classid,
        link: l.link,
        mark: l.mark,
        exts,
    };
    Ok((FilterSpec::U32(spec), h))
}
