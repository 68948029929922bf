//! `[[object.attach]]`: a program on a device's hook, checked as the kernel
//! checks the attach (program type, one XDP program per device and mode, tc
//! filter prio/handle, mprog before/after, netkit through the primary).

use std::collections::HashMap;
use std::path::Path;

use super::{choose, one_of, DevInfo, Names};
use crate::error::{At, Ctx, SpanOf, TopologyError};
use crate::model::{Attach, Hook};
use crate::raw::RawAttach;
use skiff_net::datapath::{MprogOrder, NetkitSide, TcDirection, XdpMode};
use skiff_object::{AttachType, Object, ProgType};

const HOOKS: [&str; 7] = [
    "xdp",
    "tc/ingress",
    "tc/egress",
    "tcx/ingress",
    "tcx/egress",
    "netkit/primary",
    "netkit/peer",
];
const TC: [&str; 2] = ["tc/ingress", "tc/egress"];
const CHAINED: [&str; 4] = ["tcx/ingress", "tcx/egress", "netkit/primary", "netkit/peer"];

/// What the attachments so far hold, for the checks of later ones.
#[derive(Default)]
pub(super) struct Hooks {
    /// (ns, dev) -> the XDP program's mode and line
    xdp: HashMap<(String, String), (XdpMode, usize)>,
    /// (ns, dev, ingress, prio, handle) -> line
    tc: HashMap<(String, String, bool, u16, u32), usize>,
    /// (ns, dev, ingress) -> the lowest prio so far (tcf_auto_prio)
    auto_prio: HashMap<(String, String, bool), u16>,
    /// (ns, dev, hook name) -> program names attached so far (before/after)
    chains: HashMap<(String, String, String), Vec<String>>,
}

/// The object the attachment's program is in.
pub(super) struct Prog<'a> {
    pub path: &'a Path,
    pub object: &'a Object,
}

/// Where the attachment goes, once its names are resolved.
struct Target<'a> {
    netns: String,
    dev: String,
    info: &'a DevInfo,
    hook: &'static str,
}

pub(super) fn attach(
    cx: &Ctx,
    names: &Names,
    hooks: &mut Hooks,
    (oi, ai): (usize, usize),
    a: &RawAttach,
    p: Prog,
) -> Result<Attach, TopologyError> {
    let at = At(format!("object[{oi}].attach[{ai}]"));
    let prog = program(cx, &at, a, &p)?;
    let (netns, dev) = target(cx, names, &at, a)?;
    let info = names
        .info(&netns, &dev)
        .ok_or_else(|| cx.err(&a.dev, &at.f("dev"), "unknown device"))?;
    let hook_name = one_of(cx, &a.hook, &at.f("hook"), &HOOKS)?;
    prog_fits(cx, &at, a, prog, hook_name)?;
    fields_fit(cx, &at, a, hook_name)?;
    let t = Target {
        netns,
        dev,
        info,
        hook: hook_name,
    };
    let key = (t.netns.clone(), t.dev.clone(), hook_name.to_string());
    let order = order(cx, &at, a, &t, hooks.chains.get(&key))?;
    let hook = match hook_name {
        "xdp" => xdp(cx, &at, a, &t, hooks)?,
        "tc/ingress" | "tc/egress" => tc(cx, &at, a, &t, hooks)?,
        "tcx/ingress" | "tcx/egress" => Hook::Tcx {
            dir: direction(hook_name),
            order,
        },
        _ => netkit(cx, &at, a, &t, order)?,
    };
    hooks.chains.entry(key).or_default().push(prog.name.clone());
    Ok(Attach {
        program: prog.name.clone(),
        netns: t.netns,
        dev: t.dev,
        hook,
        loc: cx.loc(&a.hook, &at.f("hook")),
    })
}

/// The program named by `program` (function name) or `section`.
fn program<'o>(
    cx: &Ctx,
    at: &At,
    a: &RawAttach,
    p: &Prog<'o>,
) -> Result<&'o skiff_object::Program, TopologyError> {
    let programs = &p.object.programs;
    let list = |f: fn(&skiff_object::Program) -> &str| {
        programs.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    match (&a.program, &a.section) {
        (Some(n), None) => p
            .object
            .find_program(n.get_ref())
            .map_err(|e| cx.err(n, &at.f("program"), e.to_string()))?
            .ok_or_else(|| {
                cx.err(
                    n,
                    &at.f("program"),
                    format!(
                        "program {:?} not found in {} (it has: {})",
                        n.get_ref(),
                        p.path.display(),
                        list(|p| &p.name)
                    ),
                )
            }),
        (None, Some(s)) => {
            let mut found = programs.iter().filter(|p| &p.section == s.get_ref());
            let first = found.next().ok_or_else(|| {
                cx.err(
                    s,
                    &at.f("section"),
                    format!(
                        "section {:?} not found in {} (it has: {})",
                        s.get_ref(),
                        p.path.display(),
                        list(|p| &p.section)
                    ),
                )
            })?;
            if found.next().is_some() {
                return Err(cx.err(
                    s,
                    &at.f("section"),
                    format!(
                        "section {:?} holds several programs: name one with `program`",
                        s.get_ref()
                    ),
                ));
            }
            Ok(first)
        }
        (Some(n), Some(_)) => {
            Err(cx.err(n, &at.f("program"), "give `program` or `section`, not both"))
        }
        (None, None) => Err(cx.err(
            &a.hook,
            &at.f("program"),
            "which program? give `program` (function name) or `section`",
        )),
    }
}

/// The device's namespace and name: `netns` with `dev`, or `dev` as
/// `NETNS/DEV`; without either, the one namespace that has a device of that
/// name (an error naming the candidates when several do: never a silent
/// `host`).
fn target(
    cx: &Ctx,
    names: &Names,
    at: &At,
    a: &RawAttach,
) -> Result<(String, String), TopologyError> {
    let (ns_part, dev) = match a.dev.get_ref().split_once('/') {
        Some((n, d)) => (Some(n), d),
        None => (None, a.dev.get_ref().as_str()),
    };
    let netns = match (&a.netns, ns_part) {
        (Some(n), Some(p)) if n.get_ref() != p => {
            return Err(cx.err(
                n,
                &at.f("netns"),
                format!(
                    "netns {:?} but dev {:?} names netns {p:?}",
                    n.get_ref(),
                    a.dev.get_ref()
                ),
            ))
        }
        (Some(n), _) => n.get_ref().clone(),
        (None, Some(p)) => p.to_string(),
        (None, None) => only_holder(cx, names, at, a, dev)?,
    };
    if !names.ns.contains(&netns) {
        let (span, field) = match &a.netns {
            Some(n) => (n, at.f("netns")),
            None => (&a.dev, at.f("dev")),
        };
        return Err(cx.err(span, &field, format!("unknown netns {netns:?}")));
    }
    if ns_part.is_none() {
        let dev = names.check_dev(cx, &netns, &a.dev, &at.f("dev"))?;
        return Ok((netns, dev));
    }
    if !names.exists(&netns, dev) {
        return Err(cx.err(
            &a.dev,
            &at.f("dev"),
            format!("unknown device {dev:?} in netns {netns:?}"),
        ));
    }
    Ok((netns, dev.to_string()))
}

/// The namespace of `dev` when `netns` is not given: the file's only
/// namespace, or the only one with a device of that name (none: `host`
/// when there is one, for its error).
fn only_holder(
    cx: &Ctx,
    names: &Names,
    at: &At,
    a: &RawAttach,
    dev: &str,
) -> Result<String, TopologyError> {
    if let [only] = names.ns.as_slice() {
        return Ok(only.clone());
    }
    let holders: Vec<&String> = names.ns.iter().filter(|n| names.exists(n, dev)).collect();
    match holders.as_slice() {
        [one] => Ok((*one).clone()),
        // Nobody has it: `host`, as the rest of the file reads a bare DEV,
        // so that the error lists what host has.
        [] if names.ns.iter().any(|n| n == "host") => Ok("host".to_string()),
        [] => Err(cx.err(
            &a.dev,
            &at.f("dev"),
            format!("no namespace has a device {dev:?}"),
        )),
        several => Err(cx.err(
            &a.dev,
            &at.f("netns"),
            format!(
                "device {dev:?} is in netns {}: say which with `netns = \"NAME\"` or `dev = \"NAME/{dev}\"`",
                several.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

fn type_name(t: ProgType) -> &'static str {
    match t {
        ProgType::Xdp => "XDP",
        ProgType::SchedCls => "SCHED_CLS (tc)",
        ProgType::SchedAct => "SCHED_ACT (tc action)",
    }
}

/// The program's type must be the hook's (EINVAL); devmap and cpumap programs
/// run from map entries, not from a device (net/core/dev.c: dev_xdp_attach).
fn prog_fits(
    cx: &Ctx,
    at: &At,
    a: &RawAttach,
    prog: &skiff_object::Program,
    hook_name: &str,
) -> Result<(), TopologyError> {
    let want = if hook_name == "xdp" {
        ProgType::Xdp
    } else {
        ProgType::SchedCls
    };
    if prog.prog_type != want {
        let (have, need) = (type_name(prog.prog_type), type_name(want));
        return Err(cx.err(&a.hook, &at.f("hook"), format!(
            "program {:?} (section {:?}) is a {have} program; hook {hook_name} takes {need} programs (EINVAL)",
            prog.name, prog.section
        )));
    }
    let map_prog = match prog.expected_attach_type {
        Some(AttachType::XdpDevmap) => "BPF_XDP_DEVMAP",
        Some(AttachType::XdpCpumap) => "BPF_XDP_CPUMAP",
        _ => return Ok(()),
    };
    if hook_name != "xdp" {
        return Ok(());
    }
    Err(cx.err(&a.hook, &at.f("hook"), format!(
        "program {:?} is a {map_prog} program (section {:?}); it runs from a map entry and cannot be attached to a device (EINVAL)",
        prog.name, prog.section
    )))
}

/// Fields that only fit some hooks.
fn fields_fit(cx: &Ctx, at: &At, a: &RawAttach, hook_name: &str) -> Result<(), TopologyError> {
    let given: [(&str, Option<&dyn SpanOf>, &[&str]); 5] = [
        ("mode", a.mode.as_ref().map(|v| v as _), &["xdp"]),
        ("prio", a.prio.as_ref().map(|v| v as _), &TC),
        ("handle", a.handle.as_ref().map(|v| v as _), &TC),
        ("before", a.before.as_ref().map(|v| v as _), &CHAINED),
        ("after", a.after.as_ref().map(|v| v as _), &CHAINED),
    ];
    for (name, v, fits) in given {
        if let (Some(v), false) = (v, fits.contains(&hook_name)) {
            return Err(cx.err(
                v,
                &at.f(name),
                format!(
                    "field `{name}` does not apply to hook {hook_name} (only {})",
                    fits.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `before` / `after` a program attached earlier to the same hook.
fn order(
    cx: &Ctx,
    at: &At,
    a: &RawAttach,
    t: &Target,
    chain: Option<&Vec<String>>,
) -> Result<MprogOrder<String>, TopologyError> {
    let (r, field) = match (&a.before, &a.after) {
        (Some(b), Some(_)) => {
            return Err(cx.err(b, &at.f("before"), "give `before` or `after`, not both"))
        }
        (Some(r), None) => (r, "before"),
        (None, Some(r)) => (r, "after"),
        (None, None) => return Ok(MprogOrder::Append),
    };
    if !chain.is_some_and(|c| c.contains(r.get_ref())) {
        return Err(cx.err(
            r,
            &at.f(field),
            format!(
                "no program {:?} is attached earlier in the file to {} of {} (ENOENT)",
                r.get_ref(),
                t.hook,
                t.dev
            ),
        ));
    }
    Ok(match field {
        "before" => MprogOrder::Before(r.get_ref().clone()),
        _ => MprogOrder::After(r.get_ref().clone()),
    })
}

fn direction(hook_name: &str) -> TcDirection {
    if hook_name.ends_with("ingress") {
        TcDirection::Ingress
    } else {
        TcDirection::Egress
    }
}

/// XDP: native where the driver has it; one program per device and mode, and
/// not native and generic at once.
fn xdp(
    cx: &Ctx,
    at: &At,
    a: &RawAttach,
    t: &Target,
    hooks: &mut Hooks,
) -> Result<Hook, TopologyError> {
    let mode = match &a.mode {
        Some(m) => choose(cx, m, &at.f("mode"), &[XdpMode::Native, XdpMode::Generic])?,
        None if t.info.native_xdp => XdpMode::Native,
        None => XdpMode::Generic,
    };
    let dev = &t.dev;
    if mode == XdpMode::Native && !t.info.native_xdp {
        let m = a.mode.as_ref().map(|m| m as &dyn SpanOf).unwrap_or(&a.hook);
        return Err(cx.err(m, &at.f("mode"), format!(
            "{dev} is a {} device: its driver has no native XDP (EOPNOTSUPP); use mode = \"generic\"",
            t.info.kind
        )));
    }
    let k = (t.netns.clone(), dev.clone());
    if let Some((other, line)) = hooks.xdp.get(&k) {
        let msg = if *other == mode {
            format!("{dev} already has an XDP program in {mode} mode (line {line}); one per device and mode (EBUSY)")
        } else {
            format!("{dev} has an XDP program in the other mode (line {line}): native and generic XDP can't be active at the same time (EEXIST)")
        };
        return Err(cx.err(&a.hook, &at.f("hook"), msg));
    }
    hooks.xdp.insert(k, (mode, cx.line(&a.hook)));
    Ok(Hook::Xdp(mode))
}

/// clsact + cls_bpf: net/sched/cls_api.c: tcf_auto_prio (0xC000, then one
/// below the lowest); one filter per prio and handle (EEXIST).
fn tc(
    cx: &Ctx,
    at: &At,
    a: &RawAttach,
    t: &Target,
    hooks: &mut Hooks,
) -> Result<Hook, TopologyError> {
    let dir = direction(t.hook);
    let ak = (t.netns.clone(), t.dev.clone(), dir == TcDirection::Ingress);
    let prio = match &a.prio {
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(n) if n != 0 => n,
            _ => {
                let msg = format!("prio {} is not 1..=65535", p.get_ref());
                return Err(cx.err(p, &at.f("prio"), msg));
            }
        },
        None => hooks
            .auto_prio
            .get(&ak)
            .map(|p| p.saturating_sub(1))
            .unwrap_or(0xC000),
    };
    let lowest = hooks.auto_prio.entry(ak.clone()).or_insert(prio);
    *lowest = (*lowest).min(prio);
    let handle = match &a.handle {
        Some(h) if *h.get_ref() == 0 => {
            return Err(cx.err(h, &at.f("handle"), "handle 0 is not a handle"))
        }
        Some(h) => *h.get_ref(),
        None => 1,
    };
    let tk = (ak.0, ak.1, ak.2, prio, handle);
    if let Some(line) = hooks.tc.get(&tk) {
        let (s, field): (&dyn SpanOf, &str) = match (&a.handle, &a.prio) {
            (Some(h), _) => (h, "handle"),
            (None, Some(p)) => (p, "prio"),
            (None, None) => (&a.hook, "prio"),
        };
        return Err(cx.err(
            s,
            &at.f(field),
            format!(
            "{} of {} already has a filter with prio {prio} handle {handle} (line {line}; EEXIST)",
            t.hook, t.dev
        ),
        ));
    }
    hooks.tc.insert(tk, cx.line(&a.hook));
    Ok(Hook::Tc { dir, prio, handle })
}

/// drivers/net/netkit.c: netkit_dev_fetch: netkit programs attach through the
/// primary device only, for either side.
fn netkit(
    cx: &Ctx,
    at: &At,
    a: &RawAttach,
    t: &Target,
    order: MprogOrder<String>,
) -> Result<Hook, TopologyError> {
    let dev = &t.dev;
    if t.info.kind != "netkit" {
        return Err(cx.err(
            &a.dev,
            &at.f("dev"),
            format!("{dev} is a {} device, not netkit (ENXIO)", t.info.kind),
        ));
    }
    if !t.info.primary {
        return Err(cx.err(&a.dev, &at.f("dev"), format!(
            "{dev} is a netkit peer: netkit programs attach only through the primary device, for either side (the kernel refuses the peer with EACCES in netkit_dev_fetch)"
        )));
    }
    let side = if t.hook == "netkit/primary" {
        NetkitSide::Primary
    } else {
        NetkitSide::Peer
    };
    Ok(Hook::Netkit { side, order })
}
