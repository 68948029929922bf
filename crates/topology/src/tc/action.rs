//! Actions as tc parses them (tc/m_action.c: parse_action and each kind's
//! tc/m_*.c), for `tc actions add|replace|del` lines and a filter's
//! `action ...` list, and their making on the datapath (tcf_action_init:
//! a filter's `action KIND index N` binds to an existing action).

use std::path::PathBuf;
use std::sync::Arc;

use skiff_net::datapath::NsId;
use skiff_net::sched::act_api::*;
use skiff_net::sched::act_bpf::ActBpf;
use skiff_net::sched::act_csum::Csum;
use skiff_net::sched::act_gact::{Gact, GactProb, GactRandom};
use skiff_net::sched::act_mirred::{Mirred, MirredAction};
use skiff_net::sched::act_nat::Nat;
use skiff_net::sched::act_pedit::Pedit;
use skiff_net::sched::act_police::{Police, PoliceParams};
use skiff_net::sched::act_sample::Sample;
use skiff_net::sched::act_skbedit::Skbedit;
use skiff_net::sched::act_vlan::Vlan;

use super::action_kinds as kinds;
use super::{get_u32, kernel_error, matches, TcError, TcTarget, Words};

/// What one action is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActKind {
    Gact(Option<(GactProb, u32, i64)>),
    Mirred {
        eaction: MirredAction,
        dev: String,
    },
    Police(PoliceParams),
    Skbedit(Skbedit),
    Pedit(Pedit),
    Csum(Csum),
    Vlan(Vlan),
    Nat(Nat),
    /// An object file (resolved against the topology file) and section.
    Bpf {
        obj: PathBuf,
        given: String,
        sec: String,
    },
    Sample {
        rate: u32,
        group: u32,
        trunc: u32,
    },
    /// `action KIND index N` alone: the existing action.
    Ref,
}

/// One parsed action: its kind name, index (0: the next free), control
/// action and parameters, and the word it started at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionSpec {
    pub kind: String,
    pub index: u32,
    pub control: i64,
    pub what: ActKind,
    pub word: usize,
}

/// `tc actions add|replace|change|del ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionLine {
    pub cmd: ActCmd,
    pub actions: Vec<ActionSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActCmd {
    Add,
    Replace,
    Delete,
}

/// tc/m_action.c: do_action — the command, then the actions.
pub fn parse(w: &mut Words) -> Result<ActionLine, TcError> {
    let c = w
        .next()
        .ok_or_else(|| TcError::line("tc actions: command missing (add, replace, del)"))?;
    let cmd = match c {
        "add" => ActCmd::Add,
        "replace" | "change" => ActCmd::Replace,
        _ if matches(c, "delete") => ActCmd::Delete,
        _ => {
            return Err(TcError::at(
                w.last(),
                format!("Command \"{c}\" is unknown, try \"tc actions help\"."),
            ))
        }
    };
    let actions = parse_actions(w)?;
    if actions.is_empty() {
        return Err(TcError::line(
            "tc actions: no action given (action KIND ...)",
        ));
    }
    if let Some(word) = w.peek() {
        return Err(TcError::at(w.pos, format!("bad action type {word}")));
    }
    Ok(ActionLine { cmd, actions })
}

/// parse_action: `action KIND ARGS` (or `police ARGS`) repeated; stops at
/// the first word that starts neither.
pub fn parse_actions(w: &mut Words) -> Result<Vec<ActionSpec>, TcError> {
    let mut out = Vec::new();
    while let Some(a) = w.peek() {
        if a == "police" {
            let word = w.pos;
            out.push(parse_one(w, word)?);
            continue;
        }
        if !(matches(a, "action") && a.len() >= 3) {
            break;
        }
        w.next();
        if out.len() >= TCA_ACT_MAX_PRIO {
            return Err(TcError::at(w.last(), "Too many actions (at most 32)"));
        }
        out.push(parse_one(w, w.pos)?);
    }
    Ok(out)
}

/// The gact controls tc takes as the action kind itself (`action drop`).
const GACT_WORDS: &[&str] = &[
    "continue",
    "drop",
    "shot",
    "pass",
    "ok",
    "reclassify",
    "pipe",
    "goto",
    "jump",
    "trap",
];

/// tc_util.c: parse_action_control — a control word, if one is next:
/// "goto chain N" and "jump N" take a number.
pub fn parse_control(w: &mut Words) -> Result<Option<i64>, TcError> {
    let Some(a) = w.peek() else { return Ok(None) };
    let code = match a {
        "continue" => TC_ACT_UNSPEC,
        "drop" | "shot" => TC_ACT_SHOT,
        "pass" | "ok" => TC_ACT_OK,
        "reclassify" => TC_ACT_RECLASSIFY,
        "pipe" => TC_ACT_PIPE,
        "trap" => TC_ACT_TRAP,
        "goto" => {
            w.next();
            if w.next() != Some("chain") {
                return Err(TcError::at(
                    w.last(),
                    "\"goto\" must be followed by \"chain\"",
                ));
            }
            let n = w.value("chain")?;
            let c = get_u32(n)
                .filter(|c| (*c as i64) <= TC_ACT_EXT_VAL_MASK)
                .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"chain index\": {n}")))?;
            return Ok(Some(TC_ACT_GOTO_CHAIN | c as i64));
        }
        "jump" => {
            w.next();
            let n = w.value("jump")?;
            let c = get_u32(n)
                .filter(|c| *c > 0 && *c < 0x1ff)
                .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"jump count\": {n}")))?;
            return Ok(Some(TC_ACT_JUMP | c as i64));
        }
        _ => return Ok(None),
    };
    w.next();
    Ok(Some(code))
}

/// A trailing `index N`.
pub fn parse_index(w: &mut Words) -> Result<Option<u32>, TcError> {
    if w.peek() != Some("index") {
        return Ok(None);
    }
    w.next();
    let v = w.value("index")?;
    get_u32(v)
        .map(Some)
        .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"index\": {v}")))
}

/// Kinds Linux has that skiff does not run.
const NOT_SUPPORTED: &[&str] = &[
    "tunnel_key",
    "connmark",
    "ctinfo",
    "ct",
    "ife",
    "mpls",
    "simple",
    "skbmod",
    "gate",
    "xt",
    "ipt",
];

fn parse_one(w: &mut Words, word: usize) -> Result<ActionSpec, TcError> {
    let k = w.value("action")?;
    let kind = if GACT_WORDS.iter().any(|g| matches(k, g)) {
        w.pos -= 1;
        "gact"
    } else {
        k
    };
    if NOT_SUPPORTED.contains(&kind) {
        return Err(TcError::at(
            w.last(),
            format!("not supported: action {kind}"),
        ));
    }
    let mut spec = ActionSpec {
        kind: kind.to_string(),
        index: 0,
        control: TC_ACT_PIPE,
        what: ActKind::Ref,
        word,
    };
    // `action KIND index N` alone binds to an existing action.
    if kind != "gact" && w.peek() == Some("index") {
        let save = w.pos;
        spec.index = parse_index(w)?.unwrap_or(0);
        let next = w.peek();
        if next.is_none()
            || next.is_some_and(|n| matches(n, "action") || n == "classid" || n == "flowid")
        {
            return Ok(spec);
        }
        w.pos = save;
        spec.index = 0;
    }
    spec.what = match kind {
        "gact" => kinds::gact(w, &mut spec)?,
        "mirred" => kinds::mirred(w, &mut spec)?,
        "police" => kinds::police(w, &mut spec)?,
        "skbedit" => kinds::skbedit(w, &mut spec)?,
        "pedit" => kinds::pedit(w, &mut spec)?,
        "csum" => kinds::csum(w, &mut spec)?,
        "vlan" => kinds::vlan(w, &mut spec)?,
        "nat" => kinds::nat(w, &mut spec)?,
        "bpf" => kinds::bpf(w, &mut spec)?,
        "sample" => kinds::sample(w, &mut spec)?,
        _ => return Err(TcError::at(w.last(), format!("bad action type {kind}"))),
    };
    if let Some(i) = parse_index(w)? {
        spec.index = i;
    }
    Ok(spec)
}

/// The object paths of the actions, made absolute against `base`.
pub fn resolve_paths(actions: &mut [ActionSpec], base: &std::path::Path) {
    for a in actions {
        if let ActKind::Bpf { obj, .. } = &mut a.what {
            *obj = base.join(&*obj);
        }
    }
}

/// The ActOps an action spec makes (device names resolved in the namespace).
fn ops(t: &mut TcTarget, a: &ActionSpec) -> Result<Box<dyn ActOps>, TcError> {
    Ok(match &a.what {
        ActKind::Gact(r) => Box::new(Gact {
            random: r.map(|(t, v, p)| GactRandom::new(t, v, p)),
        }),
        ActKind::Mirred { eaction, dev } => Box::new(Mirred {
            eaction: *eaction,
            dev: t.dev(dev)?,
            dev_name: dev.clone(),
        }),
        ActKind::Police(p) => Box::new(Police::new(*p)),
        ActKind::Skbedit(s) => Box::new(s.clone()),
        ActKind::Pedit(p) => Box::new(p.clone()),
        ActKind::Csum(c) => Box::new(*c),
        ActKind::Vlan(v) => Box::new(*v),
        ActKind::Nat(n) => Box::new(*n),
        ActKind::Bpf { obj, given, sec } => {
            let (prog, name) =
                super::filter::load_prog(t, obj, given, sec, skiff_vm::ProgType::SchedAct)?;
            Box::new(ActBpf { prog, name })
        }
        ActKind::Sample { rate, group, trunc } => Box::new(Sample {
            rate: *rate,
            group: *group,
            trunc: *trunc,
            sampled: Default::default(),
        }),
        ActKind::Ref => {
            return Err(TcError::at(
                a.word,
                format!("action {} needs parameters or an index", a.kind),
            ))
        }
    })
}

/// tcf_action_init_1: an existing index binds (a filter's action) or is
/// EEXIST (`tc actions add`); otherwise a new action.
pub fn make(
    t: &mut TcTarget,
    ns: NsId,
    a: &ActionSpec,
    standalone: bool,
    replace: bool,
) -> Result<Arc<TcAction>, TcError> {
    if a.what == ActKind::Ref {
        return t
            .dp
            .tc_action_get(ns, &a.kind, a.index)
            .map_err(kernel_error);
    }
    if a.index != 0 && !standalone {
        if let Ok(x) = t.dp.tc_action_get(ns, &a.kind, a.index) {
            return Ok(x);
        }
    }
    let o = ops(t, a)?;
    let control = a.control;
    t.dp.tc_action_add(
        ns,
        move |index| TcAction::new(index, control, o),
        &a.kind,
        a.index,
        replace,
        standalone,
    )
    .map_err(kernel_error)
}

/// A filter's actions, made or bound.
pub fn make_exts(t: &mut TcTarget, actions: &[ActionSpec]) -> Result<TcfExts, TcError> {
    let ns = t.ns;
    let mut exts = TcfExts::default();
    for a in actions {
        exts.actions.push(make(t, ns, a, false, false)?);
    }
    Ok(exts)
}

/// Runs a `tc actions` line.
pub fn apply(t: &mut TcTarget, l: &ActionLine) -> Result<(), TcError> {
    let ns = t.ns;
    for a in &l.actions {
        match l.cmd {
            ActCmd::Delete => {
                t.dp.tc_action_del(ns, &a.kind, a.index)
                    .map_err(kernel_error)?
            }
            c => {
                make(t, ns, a, true, c == ActCmd::Replace)?;
            }
        }
    }
    Ok(())
}
