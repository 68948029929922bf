//! Each action kind's options as its tc/m_*.c parses them: m_gact.c,
//! m_mirred.c, m_police.c, m_skbedit.c, m_pedit.c (+ p_ip.c, p_tcp.c,
//! p_udp.c, p_eth.c), m_csum.c, m_vlan.c, m_nat.c, m_bpf.c, m_sample.c.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use skiff_net::sched::act_api::*;
use skiff_net::sched::act_csum::{Csum, CSUM_NAMES};
use skiff_net::sched::act_gact::GactProb;
use skiff_net::sched::act_mirred::MirredAction;
use skiff_net::sched::act_nat::Nat;
use skiff_net::sched::act_pedit::{Pedit, PeditCmd, PeditHeader, PeditKey};
use skiff_net::sched::act_police::PoliceParams;
use skiff_net::sched::act_skbedit::Skbedit;
use skiff_net::sched::act_vlan::{Vlan, VlanOp};

use super::action::{parse_control, parse_index, ActKind, ActionSpec};
use super::{get_rate, get_size, get_tc_classid, get_u32, TcError, Words};

fn bad(w: &Words, msg: impl Into<String>) -> TcError {
    TcError::at(w.last(), msg)
}

/// m_gact.c: parse_gact — CONTROL [random netrand|determ CONTROL VAL].
pub fn gact(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    if w.peek() == Some("gact") {
        w.next();
    }
    s.control = parse_control(w)?.unwrap_or(TC_ACT_OK);
    if w.peek() != Some("random") {
        return Ok(ActKind::Gact(None));
    }
    w.next();
    let t = match w.value("random")? {
        "netrand" => GactProb::Netrand,
        "determ" => GactProb::Determ,
        r => return Err(bad(w, format!("Illegal \"random type\" ({r})"))),
    };
    let p = parse_control(w)?.ok_or_else(|| bad(w, "Illegal \"random\" action"))?;
    let v = w.value("random")?;
    let val = get_u32(v)
        .filter(|v| (1..=10000).contains(v))
        .ok_or_else(|| bad(w, "Illegal probability val 0x0 (1..10000)"))?;
    Ok(ActKind::Gact(Some((t, val, p))))
}

/// m_mirred.c: parse_direction — egress|ingress redirect|mirror dev DEV [CONTROL].
pub fn mirred(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    if let Some(i) = parse_index(w)? {
        s.index = i;
    }
    let dir = w.value("mirred")?;
    let ingress = match dir {
        "egress" => false,
        "ingress" => true,
        _ => return Err(bad(w, format!("Illegal \"{dir}\" (egress or ingress)"))),
    };
    let what = w.value(dir)?;
    let eaction = match (ingress, what) {
        (false, "redirect") => MirredAction::EgressRedir,
        (false, "mirror") => MirredAction::EgressMirror,
        (true, "redirect") => MirredAction::IngressRedir,
        (true, "mirror") => MirredAction::IngressMirror,
        _ => return Err(bad(w, format!("Illegal \"{what}\" (redirect or mirror)"))),
    };
    if let Some(i) = parse_index(w)? {
        s.index = i;
    }
    match w.next() {
        Some("dev") => {}
        Some("blockid") => return Err(bad(w, "not supported: mirred blockid")),
        _ => return Err(bad(w, "Must specify device")),
    }
    let dev = w.value("dev")?.to_string();
    s.control = parse_control(w)?.unwrap_or(eaction.default_control());
    Ok(ActKind::Mirred { eaction, dev })
}

/// tc_core.c: tc_calc_xmittime — ceil of the psched ticks (64 ns, 15.625 a
/// microsecond) to send `size` bytes at `rate` bytes/s.
fn xmittime(rate: u64, size: u64) -> u32 {
    let t = (1e6 * (size as f64 / rate as f64) * (1000.0 / 64.0)).ceil();
    t.min(u32::MAX as f64) as u32
}

/// A size with an optional "/CELL" (get_size_and_cell): the cell's log2.
fn size_and_cell(w: &Words, v: &str) -> Result<(u64, Option<u8>), TcError> {
    let (sz, cell) = match v.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let size = get_size(sz).ok_or_else(|| bad(w, format!("Illegal \"{v}\"")))?;
    let cell_log = match cell {
        Some(c) => {
            let c = get_size(c)
                .filter(|c| c.is_power_of_two())
                .ok_or_else(|| bad(w, "cell must be a power of 2"))?;
            Some(c.trailing_zeros() as u8)
        }
        None => None,
    };
    Ok((size, cell_log))
}

/// m_police.c: act_parse_police — rate, burst, mtu, peakrate,
/// conform-exceed EXCEED[/CONFORM] (exceed defaults to reclassify,
/// conform to ok).
pub fn police(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let mut p = PoliceParams {
        conform: TC_ACT_OK,
        ..Default::default()
    };
    let (mut buffer, mut mtu) = (0u64, 0u64);
    let mut rcell = None;
    s.control = TC_ACT_RECLASSIFY;
    while let Some(a) = w.peek() {
        match a {
            "index" => {
                w.next();
                let v = w.value("index")?;
                s.index = get_u32(v).ok_or_else(|| bad(w, "Illegal \"index\""))?;
            }
            "burst" | "buffer" | "maxburst" => {
                w.next();
                let v = w.value(a)?;
                if buffer != 0 {
                    return Err(bad(w, "Double \"buffer/burst\" spec"));
                }
                (buffer, rcell) = size_and_cell(w, v)?;
            }
            "mtu" | "minburst" => {
                w.next();
                let v = w.value(a)?;
                mtu = size_and_cell(w, v)?.0;
            }
            "rate" | "peakrate" => {
                w.next();
                let v = w.value(a)?;
                let r = get_rate(v).ok_or_else(|| bad(w, format!("Illegal \"{a}\"")))?;
                if a == "rate" {
                    p.rate = r;
                } else {
                    p.peakrate = r;
                }
            }
            "conform-exceed" => {
                w.next();
                let v = w.value(a)?;
                let (e, c) = match v.split_once('/') {
                    Some((e, c)) => (e, Some(c)),
                    None => (v, None),
                };
                s.control = control_word(w, e)?;
                if let Some(c) = c {
                    p.conform = control_word(w, c)?;
                }
            }
            "avrate" | "overhead" | "linklayer" | "pkts_rate" | "pkts_burst" | "estimator" => {
                return Err(TcError::at(w.pos, format!("not supported: police {a}")))
            }
            _ => match parse_control(w)? {
                Some(c) => s.control = c,
                None => break,
            },
        }
    }
    if p.rate == 0 && mtu == 0 && s.index == 0 {
        return Err(TcError::line(
            "'rate' or 'avrate' or 'mtu' or 'pkts_rate' MUST be specified.",
        ));
    }
    if p.rate != 0 && buffer == 0 {
        return Err(TcError::line("'burst' requires 'rate'."));
    }
    if p.peakrate != 0 && mtu == 0 {
        return Err(TcError::line(
            "'mtu' is required, if 'peakrate' is requested.",
        ));
    }
    if p.rate != 0 {
        // tc_calc_rtable: mtu 0 counts as 2047; cell_log so that mtu >> cell_log <= 255.
        let m = if mtu == 0 { 2047 } else { mtu };
        p.cell_log = rcell.unwrap_or_else(|| (0..32).find(|c| (m >> c) <= 255).unwrap_or(0));
        p.burst_ticks = xmittime(p.rate, buffer);
    }
    p.mtu = mtu.min(u32::MAX as u64) as u32;
    Ok(ActKind::Police(p))
}

/// One control name (for `conform-exceed A/B`).
fn control_word(w: &Words, v: &str) -> Result<i64, TcError> {
    let mut tmp = Words::new(v);
    match parse_control(&mut tmp)? {
        Some(c) if tmp.peek().is_none() => Ok(c),
        _ => Err(bad(w, format!("Illegal control action \"{v}\""))),
    }
}

/// m_skbedit.c: parse_skbedit — priority, mark[/mask], ptype, inheritdsfield.
pub fn skbedit(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let mut e = Skbedit::default();
    loop {
        match w.peek() {
            Some("priority") => {
                w.next();
                let v = w.value("priority")?;
                e.priority = Some(get_tc_classid(v).ok_or_else(|| bad(w, "Illegal priority"))?);
            }
            Some("mark") => {
                w.next();
                let v = w.value("mark")?;
                let (m, mask) = match v.split_once('/') {
                    Some((m, k)) => (m, get_u32(k)),
                    None => (v, Some(u32::MAX)),
                };
                let (Some(m), Some(mask)) = (get_u32(m), mask) else {
                    return Err(bad(w, "Illegal mark"));
                };
                e.mark = Some((m, mask));
            }
            Some("ptype") => {
                w.next();
                e.ptype = Some(match w.value("ptype")? {
                    "host" => 0,
                    "broadcast" => 1,
                    "multicast" => 2,
                    "otherhost" => 3,
                    _ => return Err(bad(w, "Illegal ptype")),
                });
            }
            Some("inheritdsfield") => {
                w.next();
                e.inherit_dsfield = true;
            }
            Some("queue_mapping") => {
                return Err(TcError::at(w.pos, "not supported: skbedit queue_mapping"))
            }
            _ => break,
        }
    }
    if e == Skbedit::default() {
        return Err(TcError::line(
            "skbedit: need one of priority, mark, ptype, inheritdsfield",
        ));
    }
    s.control = parse_control(w)?.unwrap_or(TC_ACT_PIPE);
    Ok(ActKind::Skbedit(e))
}

/// m_csum.c: parse_csum — the protocol names, then the control.
pub fn csum(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let mut flags = 0;
    while let Some(a) = w.peek() {
        let Some((_, f)) = CSUM_NAMES.iter().find(|(n, _)| *n == a) else {
            if a == "and" {
                w.next();
                continue;
            }
            break;
        };
        flags |= f;
        w.next();
    }
    if flags == 0 {
        return Err(TcError::at(w.pos, "Illegal csum construct (no protocol)"));
    }
    s.control = parse_control(w)?.unwrap_or(TC_ACT_OK);
    Ok(ActKind::Csum(Csum {
        update_flags: flags,
    }))
}

/// m_vlan.c: parse_vlan — pop | push id ID [protocol P] [priority P] |
/// modify id ID [protocol P] [priority P].
pub fn vlan(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let op = w.value("vlan")?;
    let (mut vid, mut proto, mut prio) = (None, 0x8100u16, None);
    while let Some(a) = w.peek() {
        match a {
            "id" => {
                w.next();
                let v = w.value("id")?;
                vid = Some(
                    get_u32(v)
                        .filter(|v| *v < 4096)
                        .ok_or_else(|| bad(w, "Illegal \"id\""))? as u16,
                );
            }
            "protocol" => {
                w.next();
                proto = match w.value("protocol")? {
                    "802.1Q" | "802.1q" => 0x8100,
                    "802.1ad" | "802.1AD" => 0x88a8,
                    _ => return Err(bad(w, "Illegal \"vlan protocol\"")),
                };
            }
            "priority" => {
                w.next();
                let v = w.value("priority")?;
                prio = Some(
                    get_u32(v)
                        .filter(|v| *v < 8)
                        .ok_or_else(|| bad(w, "Illegal \"priority\""))? as u8,
                );
            }
            _ => break,
        }
    }
    let op = match op {
        "pop" => VlanOp::Pop,
        "push" => VlanOp::Push {
            proto,
            vid: vid.ok_or_else(|| TcError::line("vlan push: \"id\" is required"))?,
            prio: prio.unwrap_or(0),
        },
        "modify" => VlanOp::Modify {
            proto,
            vid: vid.ok_or_else(|| TcError::line("vlan modify: \"id\" is required"))?,
            prio,
        },
        o if o == "pop_eth" || o == "push_eth" => {
            return Err(bad(w, format!("not supported: vlan {o}")))
        }
        o => return Err(bad(w, format!("Unknown vlan action \"{o}\""))),
    };
    s.control = parse_control(w)?.unwrap_or(TC_ACT_PIPE);
    Ok(ActKind::Vlan(Vlan { op }))
}

/// m_nat.c: parse_nat — ingress|egress OLD[/LEN] NEW.
pub fn nat(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let egress = match w.value("nat")? {
        "egress" => true,
        "ingress" => false,
        d => return Err(bad(w, format!("Illegal nat direction \"{d}\""))),
    };
    let old = w.value("nat")?;
    let (a, len) = match old.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok().filter(|l| *l <= 32)),
        None => (old, Some(32)),
    };
    let (Ok(old_addr), Some(len)) = (a.parse::<Ipv4Addr>(), len) else {
        return Err(bad(w, format!("Illegal old address \"{old}\"")));
    };
    let new = w.value("nat")?;
    let new_addr: Ipv4Addr = new
        .parse()
        .map_err(|_| bad(w, format!("Illegal new address \"{new}\"")))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    s.control = parse_control(w)?.unwrap_or(TC_ACT_OK);
    Ok(ActKind::Nat(Nat {
        old_addr,
        new_addr,
        mask,
        egress,
    }))
}

/// m_bpf.c: bpf_parse_opt — obj FILE [sec SECTION] (default section "action").
pub fn bpf(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let (mut obj, mut sec) = (None, "action".to_string());
    while let Some(a) = w.peek() {
        match a {
            "obj" | "object-file" => {
                w.next();
                obj = Some(w.value(a)?.to_string());
            }
            "sec" | "section" => {
                w.next();
                sec = w.value(a)?.to_string();
            }
            "bytecode" | "bytecode-file" | "object-pinned" | "fd" => {
                return Err(TcError::at(w.pos, format!("not supported: bpf {a}")))
            }
            "verbose" => {
                w.next();
            }
            _ => break,
        }
    }
    let given = obj.ok_or_else(|| TcError::line("bpf: \"obj FILE\" is required"))?;
    s.control = parse_control(w)?.unwrap_or(TC_ACT_PIPE);
    Ok(ActKind::Bpf {
        obj: PathBuf::from(&given),
        given,
        sec,
    })
}

/// m_sample.c: parse_sample — rate R group G [trunc SIZE].
pub fn sample(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let (mut rate, mut group, mut trunc) = (0, 0, 0);
    while let Some(a) = w.peek() {
        let slot = match a {
            "rate" => &mut rate,
            "group" => &mut group,
            "trunc" => &mut trunc,
            _ => break,
        };
        w.next();
        let v = w.value(a)?;
        *slot = get_u32(v).ok_or_else(|| bad(w, format!("Illegal {a}")))?;
    }
    if rate == 0 || group == 0 {
        return Err(TcError::line(
            "sample: rate and group are required (rate must not be 0)",
        ));
    }
    s.control = parse_control(w)?.unwrap_or(TC_ACT_PIPE);
    Ok(ActKind::Sample { rate, group, trunc })
}

// ---- pedit ------------------------------------------------------------------

/// A field pedit can name: (header, offset, length in bytes).
fn pedit_field(layer: &str, field: &str) -> Option<(PeditHeader, i32, u32)> {
    Some(match (layer, field) {
        ("ip", "src") => (PeditHeader::Ip4, 12, 4),
        ("ip", "dst") => (PeditHeader::Ip4, 16, 4),
        ("ip", "tos" | "dsfield") => (PeditHeader::Ip4, 1, 1),
        ("ip", "ttl") => (PeditHeader::Ip4, 8, 1),
        ("ip", "protocol") => (PeditHeader::Ip4, 9, 1),
        ("tcp", "sport") => (PeditHeader::Tcp, 0, 2),
        ("tcp", "dport") => (PeditHeader::Tcp, 2, 2),
        ("tcp", "flags") => (PeditHeader::Tcp, 13, 1),
        ("udp", "sport") => (PeditHeader::Udp, 0, 2),
        ("udp", "dport") => (PeditHeader::Udp, 2, 2),
        ("eth", "type") => (PeditHeader::Eth, 12, 2),
        _ => return None,
    })
}

/// m_pedit.c: pack_key8 / pack_key16 / pack_key32 — the value shifted into
/// its word, the bits kept around it.
fn pack_key(val: u32, len: u32, off: i32, h: PeditHeader, cmd: PeditCmd) -> Option<PeditKey> {
    let ind = off.rem_euclid(4) as u32;
    let word = off - ind as i32;
    let (v, keep) = match len {
        1 => {
            let stride = 8 * (3 - ind);
            (val << stride, !(0xffu32 << stride))
        }
        2 if ind != 3 => {
            let stride = 8 * (2 - ind);
            (val << stride, !(0xffffu32 << stride))
        }
        4 if ind == 0 => (val, 0),
        _ => return None,
    };
    Some(PeditKey::from_host(v, keep, word, h, cmd))
}

/// m_pedit.c: parse_pedit — [ex] munge (LAYER FIELD | offset N u8|u16|u32)
/// set|add VAL, repeated; then the control.
pub fn pedit(w: &mut Words, s: &mut ActionSpec) -> Result<ActKind, TcError> {
    let mut p = Pedit {
        keys: Vec::new(),
        extended: false,
    };
    if w.peek() == Some("ex") {
        w.next();
        p.extended = true;
    }
    while w.peek() == Some("munge") {
        w.next();
        p.keys.extend(pedit_munge(w, p.extended)?);
    }
    if p.keys.is_empty() {
        return Err(TcError::at(w.pos, "pedit: need at least one \"munge\""));
    }
    s.control = parse_control(w)?.unwrap_or(TC_ACT_OK);
    Ok(ActKind::Pedit(p))
}

fn pedit_munge(w: &mut Words, ex: bool) -> Result<Vec<PeditKey>, TcError> {
    let layer = w.value("munge")?;
    let (h, off, len) = if layer == "offset" {
        let o = w.value("offset")?;
        let off: i32 = o
            .parse()
            .map_err(|_| bad(w, format!("Illegal offset \"{o}\"")))?;
        let len = match w.value("offset")? {
            "u8" => 1,
            "u16" => 2,
            "u32" => 4,
            t => return Err(bad(w, format!("Illegal type \"{t}\""))),
        };
        (PeditHeader::Network, off, len)
    } else {
        let f = w.value(layer)?;
        let (h, off, len) = pedit_field(layer, f)
            .ok_or_else(|| bad(w, format!("not supported: pedit munge {layer} {f}")))?;
        let h = match (ex, h) {
            (true, h) => h,
            (false, PeditHeader::Ip4) => PeditHeader::Network,
            (false, _) => return Err(bad(w, format!("pedit munge {layer} needs \"ex\""))),
        };
        (h, off, len)
    };
    let cmd = match w.value("munge")? {
        "set" => PeditCmd::Set,
        "add" if ex => PeditCmd::Add,
        "add" => return Err(bad(w, "Non extended mode. only 'set' command is supported")),
        c => return Err(bad(w, format!("Illegal pedit command \"{c}\""))),
    };
    let v = w.value("set")?;
    let val = if len == 4 && v.contains('.') {
        v.parse::<Ipv4Addr>().ok().map(u32::from)
    } else {
        get_u32(v).filter(|x| len == 4 || *x < (1 << (8 * len)))
    }
    .ok_or_else(|| bad(w, format!("Illegal value \"{v}\"")))?;
    let key = pack_key(val, len, off, h, cmd)
        .ok_or_else(|| bad(w, "pedit: offset not aligned for the field"))?;
    Ok(vec![key])
}
