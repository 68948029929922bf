//! `tc qdisc add|replace|change|del dev DEV [root|ingress|clsact|parent
//! ID] [handle H] KIND OPTIONS` (tc/tc_qdisc.c: tc_qdisc_modify) and each
//! kind's options as its tc/q_*.c parses them.

use skiff_net::datapath::{QdiscCmd, TcParent};
use skiff_net::sched::htb::HtbOptions;
use skiff_net::sched::prio::PrioOptions;
use skiff_net::sched::tbf::TbfOptions;
use skiff_net::sched::{QdiscOptions, TC_H_ROOT};

use super::{
    get_qdisc_handle, get_rate, get_size, get_tc_classid, get_time_us, get_u32, kernel_error,
    matches, TcError, TcTarget, Words,
};

/// A parsed `tc qdisc` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdiscLine {
    pub cmd: QdiscCmd,
    pub dev: String,
    pub parent: TcParent,
    pub handle: Option<u32>,
    /// None: `del` without a kind.
    pub opts: Option<QdiscOptions>,
}

/// Qdisc kinds Linux has that skiff does not run (yet).
const NOT_SUPPORTED: &[&str] = &[
    "fq", "sfq", "cake", "red", "choke", "codel", "fq_pie", "pie", "hfsc", "drr", "qfq", "ets",
    "multiq", "mqprio", "taprio", "cbs", "etf", "gred", "hhf", "sfb", "skbprio", "plug", "dualpi2",
    "atm", "cbq", "dsmark", "teql",
];

fn cmd_of(w: &mut Words) -> Result<QdiscCmd, TcError> {
    let c = w
        .next()
        .ok_or_else(|| TcError::line("tc qdisc: command missing (add, del, replace, change)"))?;
    Ok(match c {
        "add" => QdiscCmd::Add,
        "replace" => QdiscCmd::Replace,
        "change" => QdiscCmd::Change,
        "delete" | "del" => QdiscCmd::Delete,
        _ if matches(c, "delete") => QdiscCmd::Delete,
        _ => {
            return Err(TcError::at(
                w.last(),
                format!("Command \"{c}\" is unknown, try \"tc qdisc help\"."),
            ))
        }
    })
}

/// tc_qdisc_modify's argument loop, then the kind's parser.
pub fn parse(w: &mut Words) -> Result<QdiscLine, TcError> {
    let cmd = cmd_of(w)?;
    let mut dev = None;
    let mut parent: Option<TcParent> = None;
    let mut handle = None;
    let mut kind = None;
    while let Some(a) = w.next() {
        let at = w.last();
        let set_parent = |p: &mut Option<TcParent>, v: TcParent, word: &str| {
            if p.is_some() {
                return Err(TcError::at(
                    at,
                    format!("Error: \"{word}\" is duplicate parent ID"),
                ));
            }
            *p = Some(v);
            Ok(())
        };
        match a {
            "dev" => dev = Some(w.value("dev")?.to_string()),
            "handle" => {
                let v = w.value("handle")?;
                if handle.is_some() {
                    return Err(TcError::at(
                        w.last(),
                        format!("Error: duplicate \"handle\": \"{v}\" is the second value."),
                    ));
                }
                handle = Some(get_qdisc_handle(v).ok_or_else(|| {
                    TcError::at(
                        w.last(),
                        format!("Error: argument \"{v}\" is wrong: invalid qdisc ID"),
                    )
                })?);
            }
            "root" => set_parent(&mut parent, TcParent::Root, a)?,
            "ingress" | "clsact" => {
                set_parent(&mut parent, TcParent::Ingress, a)?;
                kind = Some((at, a));
                break;
            }
            "parent" => {
                let v = w.value("parent")?;
                let id = get_tc_classid(v).ok_or_else(|| {
                    TcError::at(
                        w.last(),
                        format!("Error: argument \"{v}\" is wrong: invalid parent ID"),
                    )
                })?;
                let p = if id == TC_H_ROOT {
                    TcParent::Root
                } else {
                    TcParent::Class(id)
                };
                set_parent(&mut parent, p, a)?;
            }
            _ if matches(a, "estimator") || matches(a, "stab") => {
                return Err(TcError::at(at, format!("not supported: tc qdisc \"{a}\"")))
            }
            _ => {
                kind = Some((at, a));
                break;
            }
        }
    }
    let dev = dev.ok_or_else(|| TcError::line("Cannot find device \"\" (dev is required)"))?;
    let parent = parent.ok_or_else(|| {
        TcError::line("Error: Parent ID is required (root, ingress, clsact or parent ID)")
    })?;
    let opts = match kind {
        Some((at, k)) => Some(kind_options(w, at, k)?),
        None if cmd == QdiscCmd::Delete => None,
        None => return Err(TcError::line("Error: qdisc kind is required.")),
    };
    Ok(QdiscLine {
        cmd,
        dev,
        parent,
        handle,
        opts,
    })
}

/// The kind's own options (q_fifo.c, q_prio.c, q_tbf.c, q_htb.c ...).
fn kind_options(w: &mut Words, at: usize, kind: &str) -> Result<QdiscOptions, TcError> {
    let opts = match kind {
        "pfifo" | "bfifo" => fifo(w, kind == "bfifo")?,
        "prio" => prio(w)?,
        "tbf" => tbf(w)?,
        "htb" => htb(w)?,
        "netem" => super::netem::parse(w)?,
        "fq_codel" => fq_codel(w)?,
        "pfifo_fast" | "mq" | "noqueue" | "ingress" | "clsact" => {
            if let Some(x) = w.next() {
                return Err(TcError::at(
                    w.last(),
                    format!("qdisc '{kind}' does not support option parsing (\"{x}\")"),
                ));
            }
            match kind {
                "pfifo_fast" => QdiscOptions::PfifoFast,
                "mq" => QdiscOptions::Mq,
                "noqueue" => QdiscOptions::Noqueue,
                "ingress" => QdiscOptions::Ingress,
                _ => QdiscOptions::Clsact,
            }
        }
        _ if NOT_SUPPORTED.contains(&kind) => {
            return Err(TcError::at(
                at,
                format!("not supported: qdisc {kind} (see docs/differences.md)"),
            ))
        }
        _ => return Err(TcError::at(at, "Error: Specified qdisc kind is unknown.")),
    };
    Ok(opts)
}

/// q_fifo.c: `limit N` (packets for pfifo, a size for bfifo).
fn fifo(w: &mut Words, bytes: bool) -> Result<QdiscOptions, TcError> {
    let mut limit = None;
    while let Some(a) = w.next() {
        if matches(a, "limit") {
            let v = w.value("limit")?;
            let l = if bytes {
                get_size(v)
            } else {
                get_u32(v).map(u64::from)
            };
            let l = l.and_then(|l| u32::try_from(l).ok()).ok_or_else(|| {
                TcError::at(
                    w.last(),
                    format!(
                        "{}: Illegal value for \"limit\": \"{v}\"",
                        if bytes { "bfifo" } else { "pfifo" }
                    ),
                )
            })?;
            limit = Some(l);
        } else {
            return Err(TcError::at(w.last(), format!("What is \"{a}\"?")));
        }
    }
    Ok(if bytes {
        QdiscOptions::Bfifo { limit }
    } else {
        QdiscOptions::Pfifo { limit }
    })
}

/// q_prio.c: `bands N priomap P0 .. P15`.
fn prio(w: &mut Words) -> Result<QdiscOptions, TcError> {
    let mut o = PrioOptions::default();
    let mut map: Vec<(usize, u8)> = Vec::new();
    while let Some(a) = w.next() {
        if a == "bands" {
            let v = w.value("bands")?;
            o.bands = get_u32(v)
                .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"bands\" \"{v}\"")))?;
        } else if a == "priomap" {
            while let Some(v) = w.peek() {
                let Some(b) = get_u32(v) else { break };
                w.next();
                if map.len() >= 16 {
                    return Err(TcError::at(
                        w.last(),
                        "Illegal \"priomap\": more than 16 values",
                    ));
                }
                map.push((w.last(), b.min(255) as u8));
            }
        } else if a == "multiqueue" {
            return Err(TcError::at(w.last(), "not supported: prio multiqueue"));
        } else {
            return Err(TcError::at(w.last(), format!("What is \"{a}\"?")));
        }
    }
    for (i, (at, b)) in map.iter().enumerate() {
        if *b as u32 >= o.bands {
            return Err(TcError::at(
                *at,
                format!("Illegal \"priomap\" element: band {b} >= bands {}", o.bands),
            ));
        }
        o.priomap[i] = *b;
    }
    Ok(QdiscOptions::Prio(o))
}

/// q_tbf.c: rate, burst (buffer, maxburst), limit or latency, peakrate
/// with mtu (minburst).
fn tbf(w: &mut Words) -> Result<QdiscOptions, TcError> {
    let (mut rate, mut burst, mut limit, mut latency, mut peak, mut mtu) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let bad = |w: &Words, k: &str, v: &str| {
        TcError::at(w.last(), format!("tbf: illegal value for \"{k}\": \"{v}\""))
    };
    let dup =
        |w: &Words, k: &str| TcError::at(w.last(), format!("tbf: duplicate \"{k}\" specification"));
    while let Some(a) = w.next() {
        if matches(a, "limit") {
            let v = w.value(a)?;
            if limit != 0 {
                return Err(dup(w, "limit"));
            }
            if latency != 0 {
                return Err(TcError::at(
                    w.last(),
                    "tbf: specifying both \"latency\" and \"limit\" is not allowed",
                ));
            }
            limit = get_size(v).ok_or_else(|| bad(w, "limit", v))?;
        } else if matches(a, "latency") {
            let v = w.value(a)?;
            if latency != 0 {
                return Err(dup(w, "latency"));
            }
            if limit != 0 {
                return Err(TcError::at(
                    w.last(),
                    "tbf: specifying both \"limit\" and \"latency\" is not allowed",
                ));
            }
            latency = get_time_us(v).ok_or_else(|| bad(w, "latency", v))?;
        } else if matches(a, "burst") || a == "buffer" || a == "maxburst" {
            let v = w.value(a)?;
            if burst != 0 {
                return Err(dup(w, "buffer/burst/maxburst"));
            }
            burst = get_size(v.split('/').next().unwrap_or(v)).ok_or_else(|| bad(w, a, v))?;
        } else if a == "mtu" || a == "minburst" {
            let v = w.value(a)?;
            if mtu != 0 {
                return Err(dup(w, "mtu/minburst"));
            }
            mtu = get_size(v.split('/').next().unwrap_or(v)).ok_or_else(|| bad(w, a, v))?;
        } else if a == "rate" {
            let v = w.value(a)?;
            if rate != 0 {
                return Err(dup(w, "rate"));
            }
            rate = get_rate(v).ok_or_else(|| bad(w, "rate", v))?;
        } else if matches(a, "peakrate") {
            let v = w.value(a)?;
            if peak != 0 {
                return Err(dup(w, "peakrate"));
            }
            peak = get_rate(v).ok_or_else(|| bad(w, "peakrate", v))?;
        } else if a == "mpu" || matches(a, "overhead") || matches(a, "linklayer") {
            return Err(TcError::at(w.last(), format!("not supported: tbf \"{a}\"")));
        } else {
            return Err(TcError::at(
                w.last(),
                format!("tbf: unknown parameter \"{a}\""),
            ));
        }
    }
    let mut errs = Vec::new();
    if rate == 0 {
        errs.push("tbf: the \"rate\" parameter is mandatory.");
    }
    if burst == 0 {
        errs.push("tbf: the \"burst\" parameter is mandatory.");
    }
    if peak != 0 && mtu == 0 {
        errs.push("tbf: when \"peakrate\" is specified, \"mtu\" must also be specified.");
    }
    if limit == 0 && latency == 0 {
        errs.push("tbf: either \"limit\" or \"latency\" is required.");
    }
    if !errs.is_empty() {
        return Err(TcError::line(errs.join(" ")));
    }
    if limit == 0 {
        // q_tbf.c: the limit that holds `latency` worth of queue.
        let mut lim = rate as f64 * latency as f64 / 1e6 + burst as f64;
        if peak != 0 {
            lim = lim.min(peak as f64 * latency as f64 / 1e6 + mtu as f64);
        }
        limit = lim.min(u32::MAX as f64) as u64;
    }
    Ok(QdiscOptions::Tbf(TbfOptions {
        rate,
        burst: burst.min(u32::MAX as u64) as u32,
        limit: limit.min(u32::MAX as u64) as u32,
        peakrate: peak,
        mtu: mtu.min(u32::MAX as u64) as u32,
    }))
}

/// q_fq_codel.c: limit, flows, target, interval, quantum, ce_threshold,
/// memory_limit, ecn/noecn, drop_batch (times to us as tc sends them).
fn fq_codel(w: &mut Words) -> Result<QdiscOptions, TcError> {
    let mut o = skiff_net::sched::fq_codel::FqCodelOptions::default();
    let illegal = |w: &Words, k: &str| TcError::at(w.last(), format!("Illegal \"{k}\""));
    while let Some(a) = w.next() {
        match a {
            "limit" | "flows" | "quantum" | "drop_batch" => {
                let v = w.value(a)?;
                let n = get_u32(v).ok_or_else(|| illegal(w, a))?;
                match a {
                    "limit" => o.limit = Some(n),
                    "flows" => o.flows = Some(n),
                    "quantum" => o.quantum = Some(n),
                    _ => o.drop_batch = Some(n),
                }
            }
            "target" | "interval" | "ce_threshold" => {
                let v = w.value(a)?;
                let t = get_time_us(v)
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| illegal(w, a))?;
                match a {
                    "target" => o.target_us = Some(t),
                    "interval" => o.interval_us = Some(t),
                    _ => o.ce_threshold_us = Some(t),
                }
            }
            "memory_limit" => {
                let v = w.value(a)?;
                let m = get_size(v)
                    .and_then(|m| u32::try_from(m).ok())
                    .ok_or_else(|| illegal(w, a))?;
                o.memory_limit = Some(m);
            }
            "ecn" => o.ecn = Some(true),
            "noecn" => o.ecn = Some(false),
            _ if matches(a, "ce_threshold_selector") => {
                return Err(TcError::at(
                    w.last(),
                    "not supported: fq_codel ce_threshold_selector",
                ))
            }
            _ => return Err(TcError::at(w.last(), format!("What is \"{a}\"?"))),
        }
    }
    Ok(QdiscOptions::FqCodel(o))
}

/// q_htb.c: htb_parse_opt — r2q, default (hex), direct_qlen.
fn htb(w: &mut Words) -> Result<QdiscOptions, TcError> {
    let mut o = HtbOptions::default();
    let illegal = |w: &Words, k: &str| TcError::at(w.last(), format!("Illegal \"{k}\""));
    while let Some(a) = w.next() {
        if matches(a, "r2q") {
            let v = w.value(a)?;
            o.r2q = v.parse().map_err(|_| illegal(w, "r2q"))?;
        } else if matches(a, "default") {
            let v = w.value(a)?;
            o.defcls = u32::from_str_radix(v.trim_start_matches("0x"), 16)
                .map_err(|_| illegal(w, "default"))?;
        } else if matches(a, "debug") {
            w.value(a)?;
        } else if matches(a, "direct_qlen") {
            let v = w.value(a)?;
            o.direct_qlen = Some(v.parse().map_err(|_| illegal(w, "direct_qlen"))?);
        } else if matches(a, "offload") {
            return Err(TcError::at(w.last(), "not supported: htb offload"));
        } else {
            return Err(TcError::at(w.last(), format!("What is \"{a}\"?")));
        }
    }
    Ok(QdiscOptions::Htb(o))
}

/// Runs the line.
pub fn apply(t: &mut TcTarget, q: &QdiscLine) -> Result<(), TcError> {
    let dev = t.dev(&q.dev)?;
    t.dp.tc_qdisc(dev, q.cmd, q.parent, q.handle, q.opts.as_ref())
        .map_err(kernel_error)
}
