//! `tc class add|change|replace|del dev DEV parent P classid C KIND
//! OPTIONS` (tc/tc_class.c: tc_class_modify) and htb's class options as
//! q_htb.c parses them (burst defaults, buffers in psched ticks).

use skiff_net::datapath::ClassCmd;
use skiff_net::sched::htb::HtbClassOptions;
use skiff_net::sched::rate::xmittime;
use skiff_net::sched::{ClassOptions, TC_H_ROOT};

use super::{get_rate, get_size, get_tc_classid, kernel_error, matches, TcError, TcTarget, Words};

/// A parsed `tc class` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassLine {
    pub cmd: ClassCmd,
    pub dev: String,
    /// None: `root`.
    pub parent: Option<u32>,
    pub classid: u32,
    /// The kind named (must be the qdisc's) and its options; None for `del`.
    pub kind: Option<String>,
    pub opts: Option<ClassOptions>,
}

/// get_hz(): /proc/net/psched on a kernel with a 1 ns hrtimer gives 1e9.
const HZ: u64 = 1_000_000_000;

pub fn parse(w: &mut Words) -> Result<ClassLine, TcError> {
    let c = w
        .next()
        .ok_or_else(|| TcError::line("tc class: command missing (add, change, replace, del)"))?;
    let cmd = match c {
        "add" => ClassCmd::Add,
        "change" => ClassCmd::Change,
        "replace" => ClassCmd::Replace,
        "del" | "delete" => ClassCmd::Delete,
        _ => {
            return Err(TcError::at(
                w.last(),
                format!("Command \"{c}\" is unknown, try \"tc class help\"."),
            ))
        }
    };
    let (mut dev, mut parent, mut classid, mut kind) = (None, None, None, None);
    let mut parent_set = false;
    while let Some(a) = w.next() {
        match a {
            "dev" => dev = Some(w.value("dev")?.to_string()),
            "classid" => {
                let v = w.value("classid")?;
                classid = Some(get_tc_classid(v).ok_or_else(|| {
                    TcError::at(
                        w.last(),
                        format!("Error: argument \"{v}\" is wrong: invalid class ID"),
                    )
                })?);
            }
            "handle" => {
                return Err(TcError::at(
                    w.last(),
                    "Error: try \"classid\" instead of \"handle\"",
                ))
            }
            "root" | "parent" => {
                if parent_set {
                    return Err(TcError::at(
                        w.last(),
                        format!("Error: \"{a}\" is duplicate parent ID"),
                    ));
                }
                parent_set = true;
                if a == "parent" {
                    let v = w.value("parent")?;
                    let id = get_tc_classid(v).ok_or_else(|| {
                        TcError::at(
                            w.last(),
                            format!("Error: argument \"{v}\" is wrong: invalid parent ID"),
                        )
                    })?;
                    parent = (id != TC_H_ROOT).then_some(id);
                }
            }
            _ if matches(a, "estimator") => {
                return Err(TcError::at(w.last(), "not supported: tc class estimator"))
            }
            _ => {
                kind = Some((w.last(), a));
                break;
            }
        }
    }
    let dev = dev.ok_or_else(|| TcError::line("Cannot find device \"\" (dev is required)"))?;
    let classid = classid.ok_or_else(|| TcError::line("Error: classid is required."))?;
    let opts = match kind {
        Some((_, "htb")) => Some(ClassOptions::Htb(htb(w)?)),
        Some((at, k)) if matches!(k, "prio" | "tbf" | "mq" | "pfifo" | "bfifo" | "pfifo_fast") => {
            return Err(TcError::at(
                at,
                format!("class '{k}' does not support option parsing"),
            ))
        }
        Some((at, k)) => {
            return Err(TcError::at(
                at,
                format!("not supported: class kind {k} (see docs/differences.md)"),
            ))
        }
        None if cmd == ClassCmd::Delete => None,
        None => return Err(TcError::line("Error: class kind is required.")),
    };
    Ok(ClassLine {
        cmd,
        dev,
        parent,
        classid,
        kind: kind.map(|k| k.1.to_string()),
        opts,
    })
}

/// q_htb.c: htb_parse_class_opt.
fn htb(w: &mut Words) -> Result<HtbClassOptions, TcError> {
    let (mut rate, mut ceil, mut buffer, mut cbuffer) = (0u64, 0u64, 0u64, 0u64);
    let (mut quantum, mut prio, mut mtu) = (0u32, 0u32, 1600u64);
    let illegal = |w: &Words, k: &str| TcError::at(w.last(), format!("Illegal \"{k}\""));
    while let Some(a) = w.next() {
        if matches(a, "prio") {
            prio = w.value(a)?.parse().map_err(|_| illegal(w, "prio"))?;
        } else if matches(a, "mtu") {
            mtu = w.value(a)?.parse().map_err(|_| illegal(w, "mtu"))?;
        } else if matches(a, "quantum") {
            quantum = w.value(a)?.parse().map_err(|_| illegal(w, "quantum"))?;
        } else if matches(a, "burst") || a == "buffer" || a == "maxburst" {
            let v = w.value(a)?;
            buffer = get_size(v.split('/').next().unwrap_or(v)).ok_or_else(|| illegal(w, a))?;
        } else if matches(a, "cburst") || a == "cbuffer" || a == "cmaxburst" {
            let v = w.value(a)?;
            cbuffer = get_size(v.split('/').next().unwrap_or(v)).ok_or_else(|| illegal(w, a))?;
        } else if a == "ceil" {
            let v = w.value(a)?;
            if ceil != 0 {
                return Err(TcError::at(w.last(), "Double \"ceil\" spec"));
            }
            ceil = get_rate(v).ok_or_else(|| illegal(w, "ceil"))?;
        } else if a == "rate" {
            let v = w.value(a)?;
            if rate != 0 {
                return Err(TcError::at(w.last(), "Double \"rate\" spec"));
            }
            rate = get_rate(v).ok_or_else(|| illegal(w, "rate"))?;
        } else if matches(a, "mpu") || matches(a, "overhead") || matches(a, "linklayer") {
            return Err(TcError::at(
                w.last(),
                format!("not supported: htb class \"{a}\""),
            ));
        } else {
            return Err(TcError::at(w.last(), format!("What is \"{a}\"?")));
        }
    }
    if rate == 0 {
        return Err(TcError::line("\"rate\" is required."));
    }
    if ceil == 0 {
        ceil = rate;
    }
    // The smallest burst that still passes an MTU-sized packet.
    if buffer == 0 {
        buffer = rate / HZ + mtu;
    }
    if cbuffer == 0 {
        cbuffer = ceil / HZ + mtu;
    }
    Ok(HtbClassOptions {
        rate,
        ceil,
        buffer: xmittime(rate, buffer),
        cbuffer: xmittime(ceil, cbuffer),
        quantum,
        prio,
    })
}

/// Runs the line; the kind named must be the qdisc's.
pub fn apply(t: &mut TcTarget, c: &ClassLine) -> Result<(), TcError> {
    let dev = t.dev(&c.dev)?;
    t.dp.tc_class(dev, c.cmd, c.parent, c.classid, c.opts.as_ref())
        .map_err(kernel_error)
}
