//! `tc filter add|replace|del dev D [parent P|ingress|egress|root]
//! [protocol P] [prio N] [handle H] [chain N] KIND OPTIONS [action ...]`
//! (tc/tc_filter.c: tc_filter_modify) and each classifier's options as
//! tc/f_*.c parses them: bpf, matchall, fw, basic here, u32 in u32.rs,
//! flower in flower.rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_net::datapath::{FilterCmd, FilterParent};
use skiff_net::sched::cls_api::{protocol_from_name, FilterKey, FilterSpec, ETH_P_ALL};
use skiff_net::sched::cls_basic::{BasicSpec, CmpOp, EmCmp, Ematch, Layer, Relation};
use skiff_net::sched::cls_bpf::BpfSpec;
use skiff_net::sched::cls_fw::FwSpec;
use skiff_net::sched::cls_matchall::MatchallSpec;
use skiff_net::sched::TC_H_ROOT;
use skiff_vm::{Collection, LoadOptions, ProgType, Program};

use super::action::{make_exts, parse_actions, resolve_paths as resolve_action_paths, ActionSpec};
use super::flower::{self, FlowerLine};
use super::u32::{self as u32f, U32Line};
use super::{get_tc_classid, get_u32, kernel_error, matches, TcError, TcTarget, Words};

/// A classifier and its options, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindLine {
    Bpf {
        obj: PathBuf,
        given: String,
        sec: String,
        da: bool,
        classid: u32,
        actions: Vec<ActionSpec>,
    },
    U32(Box<U32Line>),
    Flower(Box<FlowerLine>),
    Matchall {
        classid: u32,
        actions: Vec<ActionSpec>,
    },
    Fw {
        classid: u32,
        actions: Vec<ActionSpec>,
    },
    Basic {
        ematches: Vec<Ematch>,
        text: String,
        classid: u32,
        actions: Vec<ActionSpec>,
    },
}

/// A parsed `tc filter` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterLine {
    pub cmd: FilterCmd,
    pub dev: String,
    /// None: the root qdisc (tcm_parent 0).
    pub parent: Option<FilterParent>,
    pub protocol: u16,
    pub prio: u16,
    pub chain: u32,
    /// The `handle` word as given (each kind reads it its own way).
    pub handle: Option<(usize, String)>,
    /// None: `del` without a kind.
    pub kind: Option<KindLine>,
}

fn cmd_of(w: &mut Words) -> Result<FilterCmd, TcError> {
    let c = w
        .next()
        .ok_or_else(|| TcError::line("tc filter: command missing (add, replace, del)"))?;
    Ok(match c {
        "add" => FilterCmd::Add,
        "replace" | "change" => FilterCmd::Replace,
        _ if matches(c, "delete") => FilterCmd::Delete,
        _ => {
            return Err(TcError::at(
                w.last(),
                format!("Command \"{c}\" is unknown, try \"tc filter help\"."),
            ))
        }
    })
}

/// tc_filter_modify's parent words.
fn parent_of(w: &mut Words, a: &str) -> Result<Option<FilterParent>, TcError> {
    Ok(Some(match a {
        "root" => FilterParent::Qdisc(TC_H_ROOT),
        "ingress" => FilterParent::Ingress,
        "egress" => FilterParent::Egress,
        _ => {
            let v = w.value("parent")?;
            let id = get_tc_classid(v)
                .ok_or_else(|| TcError::at(w.last(), format!("Invalid parent ID \"{v}\"")))?;
            match id {
                0xffff_fff3 => FilterParent::Egress,
                i if i == 0xffff_0000 | 0xfff3 => FilterParent::Egress,
                i if i >> 16 == 0xffff => FilterParent::Ingress,
                i => FilterParent::Qdisc(i),
            }
        }
    }))
}

/// tc_filter_modify's argument loop, then the kind's parser.
pub fn parse(w: &mut Words) -> Result<FilterLine, TcError> {
    let cmd = cmd_of(w)?;
    let mut f = FilterLine {
        cmd,
        dev: String::new(),
        parent: None,
        protocol: ETH_P_ALL,
        prio: 0,
        chain: 0,
        handle: None,
        kind: None,
    };
    let mut kind = None;
    while let Some(a) = w.next() {
        match a {
            "dev" => f.dev = w.value("dev")?.to_string(),
            "root" | "ingress" | "egress" | "parent" => {
                if f.parent.is_some() {
                    return Err(TcError::at(
                        w.last(),
                        format!("Error: \"{a}\" is duplicate parent ID"),
                    ));
                }
                f.parent = parent_of(w, a)?;
            }
            "handle" => f.handle = Some((w.pos, w.value("handle")?.to_string())),
            "chain" => {
                let v = w.value("chain")?;
                f.chain = get_u32(v).ok_or_else(|| TcError::at(w.last(), "Illegal \"chain\""))?;
            }
            _ if a == "pref"
                || a == "prio"
                || matches(a, "priority")
                || matches(a, "preference") =>
            {
                let v = w.value(a)?;
                f.prio = get_u32(v)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| {
                        TcError::at(
                            w.last(),
                            format!("Error: argument \"{v}\" is wrong: invalid priority value"),
                        )
                    })?;
            }
            _ if matches(a, "protocol") => {
                let v = w.value("protocol")?;
                f.protocol = protocol_from_name(v).ok_or_else(|| {
                    TcError::at(
                        w.last(),
                        format!("Error: argument \"{v}\" is wrong: invalid protocol"),
                    )
                })?;
            }
            _ if matches(a, "estimator") => {
                return Err(TcError::at(w.last(), "not supported: tc filter estimator"))
            }
            _ => {
                kind = Some((w.last(), a));
                break;
            }
        }
    }
    if f.dev.is_empty() {
        return Err(TcError::line("Cannot find device \"\" (dev is required)"));
    }
    f.kind = match kind {
        Some((at, k)) => Some(kind_line(w, at, k, &f)?),
        None if cmd == FilterCmd::Delete => None,
        None => {
            return Err(TcError::line(
                "Error: Filter kind is required (u32, bpf, matchall, flower, fw, basic).",
            ))
        }
    };
    if let Some(word) = w.peek() {
        return Err(TcError::at(w.pos, format!("What is \"{word}\"?")));
    }
    Ok(f)
}

/// Classifiers Linux has that skiff does not run.
const NOT_SUPPORTED: &[&str] = &["route", "flow", "cgroup", "rsvp", "rsvp6", "tcindex"];

fn kind_line(w: &mut Words, at: usize, kind: &str, f: &FilterLine) -> Result<KindLine, TcError> {
    Ok(match kind {
        "bpf" => bpf(w)?,
        "u32" => KindLine::U32(Box::new(u32f::parse(w, f.handle.as_ref())?)),
        "flower" => KindLine::Flower(Box::new(flower::parse(w, f.protocol)?)),
        "matchall" => {
            let (classid, actions) = classid_and_actions(w, &["skip_hw", "skip_sw"])?;
            KindLine::Matchall { classid, actions }
        }
        "fw" => {
            let (classid, actions) = classid_and_actions(w, &[])?;
            KindLine::Fw { classid, actions }
        }
        "basic" => basic(w)?,
        k if NOT_SUPPORTED.contains(&k) => {
            return Err(TcError::at(at, format!("not supported: filter {k}")))
        }
        k => {
            return Err(TcError::at(
                at,
                format!(
                    "Unknown filter \"{k}\", hence option \"{}\" is unparsable",
                    w.peek().unwrap_or("")
                ),
            ))
        }
    })
}

/// `[classid|flowid X] [FLAGS] [action ...]` in any order (f_matchall.c, f_fw.c).
fn classid_and_actions(w: &mut Words, flags: &[&str]) -> Result<(u32, Vec<ActionSpec>), TcError> {
    let mut classid = 0;
    let mut actions = Vec::new();
    while let Some(a) = w.peek() {
        if a == "classid" || a == "flowid" {
            w.next();
            let v = w.value(a)?;
            classid = get_tc_classid(v)
                .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"{a}\"")))?;
        } else if flags.contains(&a) {
            w.next();
            if a == "skip_sw" {
                return Err(TcError::at(
                    w.last(),
                    "not supported: skip_sw (no hardware offload)",
                ));
            }
        } else if matches(a, "action") || a == "police" {
            actions.extend(parse_actions(w)?);
        } else {
            break;
        }
    }
    Ok((classid, actions))
}

/// f_bpf.c: bpf_parse_opt.
fn bpf(w: &mut Words) -> Result<KindLine, TcError> {
    let (mut obj, mut sec, mut da, mut classid) = (None, "classifier".to_string(), false, 0);
    let mut actions = Vec::new();
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
            "da" | "direct-action" => {
                w.next();
                da = true;
            }
            "verbose" | "skip_hw" => {
                w.next();
            }
            "classid" | "flowid" => {
                w.next();
                let v = w.value(a)?;
                classid = get_tc_classid(v)
                    .ok_or_else(|| TcError::at(w.last(), "Illegal \"classid\""))?;
            }
            "bytecode" | "bytecode-file" | "object-pinned" | "fd" | "export" | "skip_sw" => {
                return Err(TcError::at(w.pos, format!("not supported: bpf {a}")))
            }
            _ if matches(a, "action") || a == "police" => actions.extend(parse_actions(w)?),
            _ => break,
        }
    }
    let given = obj.ok_or_else(|| {
        TcError::line("bpf: \"obj FILE\" is required (classic bytecode is not supported)")
    })?;
    Ok(KindLine::Bpf {
        obj: PathBuf::from(&given),
        given,
        sec,
        da,
        classid,
        actions,
    })
}

/// f_basic.c + tc/m_ematch.c: `match EXPR` of cmp() terms joined by
/// and/or, each maybe after `not`; then classid and actions.
fn basic(w: &mut Words) -> Result<KindLine, TcError> {
    let (mut ematches, mut text) = (Vec::new(), String::new());
    if w.peek() == Some("match") {
        w.next();
        (ematches, text) = ematch_expr(w)?;
    }
    let (classid, actions) = classid_and_actions(w, &[])?;
    Ok(KindLine::Basic {
        ematches,
        text,
        classid,
        actions,
    })
}

fn ematch_expr(w: &mut Words) -> Result<(Vec<Ematch>, String), TcError> {
    let mut out: Vec<Ematch> = Vec::new();
    let mut text = Vec::new();
    loop {
        let mut invert = false;
        if w.peek() == Some("not") {
            w.next();
            invert = true;
            text.push("NOT".to_string());
        }
        let start = w.pos;
        let mut term = String::new();
        while let Some(x) = w.next() {
            let x = x.trim_matches(|c| c == '\'' || c == '"');
            if !term.is_empty() {
                term.push(' ');
            }
            term.push_str(x);
            if term.contains(')') {
                break;
            }
        }
        let cmp = em_cmp(&term).map_err(|m| TcError::at(start, m))?;
        text.push(term);
        out.push(Ematch {
            cmp,
            invert,
            rel: Relation::End,
        });
        let rel = match w.peek() {
            Some("and") => Relation::And,
            Some("or") => Relation::Or,
            _ => break,
        };
        text.push(w.next().unwrap_or("").to_uppercase());
        if let Some(last) = out.last_mut() {
            last.rel = rel;
        }
    }
    Ok((out, text.join(" ")))
}

/// tc/em_cmp.c: cmp(ALIGN at OFF [layer L] [mask M] [trans] eq|gt|lt VAL).
fn em_cmp(term: &str) -> Result<EmCmp, String> {
    let inner = term
        .strip_prefix("cmp(")
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("not supported: ematch \"{term}\" (only cmp(...))"))?;
    let mut it = inner.split_whitespace();
    let align = match it.next() {
        Some("u8") => 1,
        Some("u16") => 2,
        Some("u32") => 4,
        a => return Err(format!("cmp: unknown alignment {a:?}")),
    };
    let mut c = EmCmp {
        align,
        off: 0,
        layer: Layer::Link,
        mask: 0,
        trans: false,
        op: CmpOp::Eq,
        val: 0,
    };
    let num = |v: Option<&str>| {
        v.and_then(get_u32)
            .ok_or_else(|| format!("cmp: bad number in \"{term}\""))
    };
    while let Some(k) = it.next() {
        match k {
            "at" => c.off = num(it.next())? as i32,
            "layer" => {
                c.layer = match it.next() {
                    Some("link" | "0") => Layer::Link,
                    Some("network" | "1") => Layer::Network,
                    Some("transport" | "2") => Layer::Transport,
                    l => return Err(format!("cmp: unknown layer {l:?}")),
                }
            }
            "mask" => c.mask = num(it.next())?,
            "trans" => c.trans = true,
            "eq" | "gt" | "lt" => {
                c.op = match k {
                    "eq" => CmpOp::Eq,
                    "gt" => CmpOp::Gt,
                    _ => CmpOp::Lt,
                };
                c.val = num(it.next())?;
            }
            k => return Err(format!("cmp: unknown \"{k}\"")),
        }
    }
    Ok(c)
}

/// The device a filter line names.
pub fn dev(f: &FilterLine) -> Option<&str> {
    Some(&f.dev)
}

/// Object paths made absolute against the topology file's directory.
pub fn resolve_paths(f: &mut FilterLine, base: &Path) {
    match &mut f.kind {
        Some(KindLine::Bpf { obj, actions, .. }) => {
            *obj = base.join(&*obj);
            resolve_paths_of(actions, base);
        }
        Some(KindLine::U32(u)) => resolve_paths_of(&mut u.actions, base),
        Some(KindLine::Flower(l)) => resolve_paths_of(&mut l.actions, base),
        Some(
            KindLine::Matchall { actions, .. }
            | KindLine::Fw { actions, .. }
            | KindLine::Basic { actions, .. },
        ) => resolve_paths_of(actions, base),
        None => {}
    }
}

fn resolve_paths_of(a: &mut [ActionSpec], base: &Path) {
    resolve_action_paths(a, base)
}

/// Loads the program of section `sec` of an object file as `ty` whatever
/// the section's name says (as tc's bpf_obj_open: SCHED_CLS for a filter,
/// SCHED_ACT for an action; maps created for it), registered with the
/// datapath. Returns it with tc's name for it ("cls.o:[tc]").
pub fn load_prog(
    t: &mut TcTarget,
    obj: &Path,
    given: &str,
    sec: &str,
    ty: ProgType,
) -> Result<(Arc<Program>, String), TcError> {
    let bytes = std::fs::read(obj)
        .map_err(|e| TcError::line(format!("Cannot open object {}: {e}", obj.display())))?;
    let popts = skiff_object::ParseOptions {
        force_type: Some(ty),
    };
    let o = skiff_object::Object::parse_with(&bytes, &popts)
        .map_err(|e| TcError::line(format!("{}: {e}", obj.display())))?;
    let opts = LoadOptions {
        possible_cpus: t.dp.options().possible_cpus.max(1),
        ..Default::default()
    };
    let c = Collection::load(&o, &opts)
        .map_err(|e| TcError::line(format!("{}: {e}", obj.display())))?;
    let idx = o
        .programs
        .iter()
        .position(|p| p.section == sec)
        .ok_or_else(|| TcError::line(format!("Program section '{sec}' not found in ELF file!")))?;
    let prog =
        c.programs.get(idx).cloned().ok_or_else(|| {
            TcError::line(format!("Program section '{sec}' not found in ELF file!"))
        })?;
    t.dp.register_programs(std::slice::from_ref(&prog));
    let file = Path::new(given)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| given.to_string());
    Ok((prog, format!("{file}:[{sec}]")))
}

/// The kind's FilterSpec, its actions made on the datapath.
fn spec(t: &mut TcTarget, f: &FilterLine, k: &KindLine) -> Result<(FilterSpec, u32), TcError> {
    let handle = match &f.handle {
        Some((at, h)) if !matches!(k, KindLine::U32(_) | KindLine::Fw { .. }) => {
            get_u32(h).ok_or_else(|| TcError::at(*at, format!("Illegal \"handle\" \"{h}\"")))?
        }
        _ => 0,
    };
    Ok(match k {
        KindLine::Bpf {
            obj,
            given,
            sec,
            da,
            classid,
            actions,
        } => {
            let (prog, name) = load_prog(t, obj, given, sec, ProgType::SchedCls)?;
            let exts = make_exts(t, actions)?;
            (
                FilterSpec::Bpf(BpfSpec {
                    prog,
                    direct_action: *da,
                    classid: *classid,
                    name,
                    exts,
                }),
                handle,
            )
        }
        KindLine::U32(u) => u32f::spec(t, u, f.handle.as_ref())?,
        KindLine::Flower(l) => (FilterSpec::Flower(flower::spec(t, l)?), handle),
        KindLine::Matchall { classid, actions } => {
            let exts = make_exts(t, actions)?;
            (
                FilterSpec::Matchall(MatchallSpec {
                    classid: *classid,
                    exts,
                }),
                handle,
            )
        }
        KindLine::Fw { classid, actions } => {
            let (h, mask) = fw_handle(f)?;
            let exts = make_exts(t, actions)?;
            (
                FilterSpec::Fw(FwSpec {
                    mask,
                    classid: *classid,
                    exts,
                }),
                h,
            )
        }
        KindLine::Basic {
            ematches,
            text,
            classid,
            actions,
        } => {
            let exts = make_exts(t, actions)?;
            (
                FilterSpec::Basic(BasicSpec {
                    ematches: ematches.clone(),
                    text: text.clone(),
                    classid: *classid,
                    exts,
                }),
                handle,
            )
        }
    })
}

/// f_fw.c: fw_parse_opt's handle "MARK[/MASK]".
fn fw_handle(f: &FilterLine) -> Result<(u32, u32), TcError> {
    let Some((at, h)) = &f.handle else {
        return Ok((0, u32::MAX));
    };
    let (m, mask) = match h.split_once('/') {
        Some((m, k)) => (m, get_u32(k)),
        None => (h.as_str(), Some(u32::MAX)),
    };
    match (get_u32(m), mask) {
        (Some(m), Some(k)) => Ok((m, k)),
        _ => Err(TcError::at(*at, format!("Illegal \"handle\" \"{h}\""))),
    }
}

/// Runs a filter line on the datapath.
pub fn apply(t: &mut TcTarget, f: &FilterLine) -> Result<(), TcError> {
    let dev = t.dev(&f.dev)?;
    let parent = f.parent.unwrap_or(FilterParent::Qdisc(TC_H_ROOT));
    let (spec, handle) = match &f.kind {
        Some(k) => {
            let (s, h) = spec(t, f, k)?;
            (Some(s), h)
        }
        None => {
            let h = match &f.handle {
                Some((at, h)) => u32f::get_u32_handle(h)
                    .or_else(|| get_u32(h))
                    .ok_or_else(|| TcError::at(*at, format!("Illegal \"handle\" \"{h}\"")))?,
                None => 0,
            };
            (None, h)
        }
    };
    let key = FilterKey {
        chain: f.chain,
        prio: f.prio,
        protocol: f.protocol,
        handle,
    };
    t.dp.tc_filter(dev, parent, f.cmd, key, spec)
        .map(|_| ())
        .map_err(kernel_error)
}
