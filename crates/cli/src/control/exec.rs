//! What a request does to the running datapath, executed between batches
//! (the datapath quiescent): map verbs, program show/attach/replace/detach,
//! stats.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::json;
use skiff_maps::Map;
use skiff_net::datapath::{DevId, MprogOrder, NetkitSide, TcAttach, TcDirection, XdpMode};
use skiff_topology::{Built, LoadedObject, Loc, MapDecl, ObjectDecl, Topology, TopologyError};
use skiff_vm::{LoadOptions, Program};

use super::{Reply, Request};
use crate::harness::network::split_dev;
use crate::map::MapSet;
use crate::stats::{DropSites, LiveStats, RecordCounters};

/// What the control plane keeps between requests.
pub(crate) struct State {
    /// The maps `--run` verbs name (as the summary's "maps" keys them), and
    /// those of objects attached since.
    pub maps: MapSet,
    /// Maps by pin name: what an attached object's maps of that name share.
    pub pins: HashMap<String, Arc<Map>>,
    /// Objects attached while running (their maps stay alive with them).
    pub attached: Vec<LoadedObject>,
    /// How the run loads programs (verification as `--no-verify` says).
    pub load: LoadOptions,
    /// Drops counted from the datapath's drop log as it is drained.
    pub drops: DropSites,
    /// A live run's start and record counters (`Control::observe`): stats
    /// and metrics then show worker busy/idle time and the records.
    pub live: Option<(std::time::Instant, Arc<RecordCounters>)>,
}

impl State {
    pub fn execute(&mut self, built: &mut Built, req: &Request) -> Reply {
        let r = match req {
            Request::Map { verb, words, json } => {
                crate::map::execute(&self.maps, verb, words, *json)
            }
            Request::ProgShow { json } => Ok((prog_show(built, *json), 0)),
            Request::ProgAttach {
                object,
                prog,
                dev,
                hook,
                replace,
            } => self.attach(built, object, prog, dev, hook, *replace),
            Request::ProgDetach { dev, hook, prog } => detach(built, dev, hook, prog.as_deref()),
            Request::Stats { json } => {
                self.drain_drops(built);
                let report = built.dp.counters();
                let live = self.live_stats();
                let text = crate::stats::render(&report, &self.drops, live.as_ref(), *json);
                Ok((text, 0))
            }
        };
        match r {
            Ok((out, code)) => Reply::ok(out, code),
            Err(e) => Reply::error(format!("{e:#}")),
        }
    }

    /// The live run's measures now (None before `Control::observe`).
    pub fn live_stats(&self) -> Option<LiveStats> {
        self.live.as_ref().map(|(start, r)| {
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            LiveStats::read(ns, r)
        })
    }

    /// Counts the drop records made since the last call.
    pub fn drain_drops(&mut self, built: &mut Built) {
        let recs = built.dp.take_drops();
        self.drops.add(&recs);
    }

    /// `prog attach --run`: loads OBJECT (verified, pinned maps shared) and
    /// attaches its program `prog`.
    fn attach(
        &mut self,
        built: &mut Built,
        object: &Path,
        prog: &str,
        dev: &str,
        hook: &str,
        replace: bool,
    ) -> Result<(String, i32)> {
        let hook = CtlHook::parse(hook)?;
        let dev_id = device(built, dev)?;
        let loaded = self.load_object(object, built)?;
        let p = loaded.program(prog).cloned().ok_or_else(|| {
            let all: Vec<&str> = loaded.programs.iter().map(|p| p.name.as_str()).collect();
            anyhow!(
                "{}: no program {prog:?} (programs: {})",
                object.display(),
                all.join(", ")
            )
        })?;
        let old = hook.programs(built, dev_id);
        hook.attach(built, dev_id, p.clone(), &old, replace)
            .with_context(|| format!("attaching {prog} to {dev} {}", hook.name()))?;
        self.name_maps(object, &loaded);
        self.attached.push(loaded);
        Ok((
            format!("attached {prog} (id {}) to {dev} {}\n", p.id, hook.name()),
            0,
        ))
    }

    /// The maps of an object attached later: a pinned one keeps its pin
    /// name; a new one is `OBJECT/MAP`, or `OBJECT.N/MAP` (N = 2, 3, ...)
    /// when an object of that stem already has a map of that name.
    fn name_maps(&mut self, object: &Path, loaded: &LoadedObject) {
        let stem = object
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let elf = std::fs::read(object).ok();
        for (name, map) in &loaded.maps {
            let key = match self.pins.iter().find(|(_, m)| Arc::ptr_eq(m, map)) {
                Some((pin, _)) => pin.clone(),
                None => (1u32..)
                    .map(|n| match n {
                        1 => format!("{stem}/{name}"),
                        n => format!("{stem}.{n}/{name}"),
                    })
                    .find(|k| !self.maps.maps.iter().any(|m| m.name == *k))
                    .unwrap_or_default(),
            };
            self.maps.add(key, map.clone(), elf.as_deref(), name);
        }
    }

    /// As the topology loader loads an object: a map the object pins by name
    /// (LIBBPF_PIN_BY_NAME), or named as a pin of the running topology, is
    /// that pinned map when compatible (libbpf: map_is_reuse_compat).
    fn load_object(&mut self, path: &Path, built: &Built) -> Result<LoadedObject> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let object = skiff_object::Object::parse(&bytes)
            .with_context(|| format!("loading {}", path.display()))?;
        let loc = Loc {
            line: 0,
            col: 0,
            field: "prog attach".into(),
        };
        let mut maps = Vec::new();
        for spec in &object.maps {
            let pinned = self.pins.get(&spec.name);
            if spec.pinning != 1 && pinned.is_none() {
                continue;
            }
            if let Some(m) = pinned {
                let a = m.attr();
                if (Some(a.map_type), a.key_size, a.value_size, a.max_entries)
                    != (
                        skiff_maps::MapType::from_kernel(spec.map_type),
                        spec.key_size,
                        spec.value_size,
                        spec.max_entries,
                    )
                {
                    bail!("{}: map {}: differs from the pinned map of that name (type, key, value or max_entries)", path.display(), spec.name);
                }
            }
            let pin = Some(spec.name.clone());
            maps.push(MapDecl {
                name: spec.name.clone(),
                pin,
                entries: Vec::new(),
                loc: loc.clone(),
            });
        }
        let decl = ObjectDecl {
            path: path.to_path_buf(),
            object,
            maps,
            attach: Vec::new(),
            loc,
        };
        let topo = Topology {
            file: path.to_path_buf(),
            namespaces: Vec::new(),
            objects: Vec::new(),
            pin_dir: None,
        };
        let load = LoadOptions {
            possible_cpus: built.dp.options().possible_cpus.max(1),
            ..self.load.clone()
        };
        topo.load_object(&decl, &mut self.pins, &load, &|_, _| None)
            .map_err(|e| anyhow!("{}", topology_msg(e)))
    }
}

/// A topology error's message without the made-up place.
fn topology_msg(e: TopologyError) -> String {
    match e {
        TopologyError::At { msg, .. } | TopologyError::File { msg, .. } => msg,
    }
}

/// `NETNS/DEV` or `DEV` (namespace host).
fn device(built: &Built, spec: &str) -> Result<DevId> {
    let (ns, name) = split_dev(spec);
    let n = built
        .dp
        .netns(ns)
        .ok_or_else(|| anyhow!("--dev {spec}: no network namespace {ns:?}"))?;
    built
        .dp
        .device(n, name)
        .ok_or_else(|| anyhow!("--dev {spec}: no device {name:?} in netns {ns:?}"))
}

/// The attach points `--hook` names.
#[derive(Clone, Copy)]
enum CtlHook {
    Xdp,
    Tcx(TcDirection),
    Netkit(NetkitSide),
}

impl CtlHook {
    fn parse(s: &str) -> Result<CtlHook> {
        Ok(match s {
            "xdp" => CtlHook::Xdp,
            "tc/ingress" => CtlHook::Tcx(TcDirection::Ingress),
            "tc/egress" => CtlHook::Tcx(TcDirection::Egress),
            "netkit/primary" => CtlHook::Netkit(NetkitSide::Primary),
            "netkit/peer" => CtlHook::Netkit(NetkitSide::Peer),
            _ => bail!(
                "--hook {s:?}: want xdp, tc/ingress, tc/egress, netkit/primary or netkit/peer"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            CtlHook::Xdp => "xdp",
            CtlHook::Tcx(TcDirection::Ingress) => "tc/ingress",
            CtlHook::Tcx(TcDirection::Egress) => "tc/egress",
            CtlHook::Netkit(NetkitSide::Primary) => "netkit/primary",
            CtlHook::Netkit(NetkitSide::Peer) => "netkit/peer",
        }
    }

    /// The programs on this hook of `dev` now, in run order.
    fn programs(self, built: &Built, dev: DevId) -> Vec<Arc<Program>> {
        let (target, names): (DevId, &[&str]) = match self {
            CtlHook::Xdp => (dev, &["xdp", "xdpgeneric"]),
            CtlHook::Tcx(TcDirection::Ingress) => (dev, &["tcx_ingress"]),
            CtlHook::Tcx(TcDirection::Egress) => (dev, &["tcx_egress"]),
            CtlHook::Netkit(NetkitSide::Primary) => (dev, &["netkit_primary"]),
            CtlHook::Netkit(NetkitSide::Peer) => {
                (built.dp.peer(dev).unwrap_or(dev), &["netkit_peer"])
            }
        };
        built
            .dp
            .attached_programs()
            .into_iter()
            .filter(|a| a.dev == target && names.contains(&a.hook))
            .map(|a| a.prog)
            .collect()
    }

    /// Attaches `p`; with `replace` in the place of the program of the same
    /// name (or the hook's only one), as bpf_link_update does: the next
    /// packet runs the new program, none is lost.
    fn attach(
        self,
        built: &mut Built,
        dev: DevId,
        p: Arc<Program>,
        old: &[Arc<Program>],
        replace: bool,
    ) -> Result<()> {
        let dp = &mut built.dp;
        let order = match (replace, replaced(old, &p.name)) {
            (false, _) => MprogOrder::Append,
            (true, Ok(id)) => MprogOrder::Replace(id),
            (true, Err(e)) => return Err(e),
        };
        match self {
            CtlHook::Xdp => {
                if !replace {
                    if let Some(o) = old.first() {
                        bail!(
                            "the device has XDP program {} (id {}): use --replace",
                            o.name,
                            o.id
                        );
                    }
                }
                xdp_attach(dp, dev, p)?;
            }
            CtlHook::Tcx(dir) => dp.attach_tc(dev, dir, TcAttach::Tcx(order), p)?,
            CtlHook::Netkit(side) => dp.attach_netkit(dev, side, order, p)?,
        }
        Ok(())
    }
}

/// net/core/dev.c: dev_xdp_attach without mode flags: the driver's mode
/// where it has one, else generic; a program already attached keeps its mode.
fn xdp_attach(dp: &mut skiff_net::datapath::Datapath, dev: DevId, p: Arc<Program>) -> Result<()> {
    let generic_now = dp
        .attached_programs()
        .iter()
        .any(|a| a.dev == dev && a.hook == "xdpgeneric");
    if generic_now {
        return Ok(dp.attach_xdp(dev, p, XdpMode::Generic)?);
    }
    match dp.attach_xdp(dev, p.clone(), XdpMode::Native) {
        Ok(()) => Ok(()),
        Err(skiff_net::datapath::DatapathError::Errno { errno: 95, .. }) => {
            Ok(dp.attach_xdp(dev, p, XdpMode::Generic)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The id of the program `--replace` replaces: the one named `name`, else
/// the hook's only program.
fn replaced(old: &[Arc<Program>], name: &str) -> Result<u32> {
    if let Some(o) = old.iter().find(|o| o.name == name) {
        return Ok(o.id);
    }
    match old {
        [one] => Ok(one.id),
        [] => bail!("--replace: the hook has no program"),
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "--replace: the hook has {} programs and none is named {name} ({})",
                many.len(),
                names.join(", ")
            )
        }
    }
}

/// `prog detach --run`: the hook's program named `prog`, or its only one.
fn detach(built: &mut Built, dev: &str, hook: &str, prog: Option<&str>) -> Result<(String, i32)> {
    let h = CtlHook::parse(hook)?;
    let dev_id = device(built, dev)?;
    let old = h.programs(built, dev_id);
    let p = match (prog, old.as_slice()) {
        (Some(n), _) => old
            .iter()
            .find(|p| p.name == n)
            .ok_or_else(|| anyhow!("{dev} {hook}: no program {n:?}"))?,
        (None, [one]) => one,
        (None, []) => bail!("{dev} {hook}: no program attached"),
        (None, _) => bail!("{dev} {hook}: {} programs: name one with --prog", old.len()),
    };
    let dp = &mut built.dp;
    match h {
        CtlHook::Xdp => {
            dp.detach_xdp(dev_id, XdpMode::Native)?;
            dp.detach_xdp(dev_id, XdpMode::Generic)?;
        }
        CtlHook::Tcx(dir) => dp.detach_tcx(dev_id, dir, p.id)?,
        CtlHook::Netkit(side) => dp.detach_netkit(dev_id, side, p.id)?,
    }
    Ok((
        format!("detached {} (id {}) from {dev} {hook}\n", p.name, p.id),
        0,
    ))
}

/// `prog show --run`: every XDP, tcx and netkit program, as `bpftool net
/// show` lists them (NETNS/DEV(IFINDEX) HOOK id ID name NAME).
fn prog_show(built: &Built, as_json: bool) -> String {
    let dp = &built.dp;
    let rows: Vec<(String, u32, &str, Arc<Program>)> = dp
        .attached_programs()
        .into_iter()
        .map(|a| {
            let ns = dp
                .dev_netns(a.dev)
                .and_then(|n| dp.netns_name(n))
                .unwrap_or("?");
            let name = dp.dev_name(a.dev).unwrap_or("?");
            (
                format!("{ns}/{name}"),
                dp.ifindex(a.dev).unwrap_or(0),
                a.hook,
                a.prog,
            )
        })
        .collect();
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(dev, ifindex, hook, p)| {
                json!({ "dev": dev, "ifindex": ifindex, "hook": hook, "id": p.id,
                        "name": p.name, "type": format!("{:?}", p.prog_type) })
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(v));
    }
    rows.iter()
        .map(|(dev, ifindex, hook, p)| {
            format!("{dev}({ifindex}) {hook} id {} name {}\n", p.id, p.name)
        })
        .collect()
}
