//! A topology built for tests: frames sent into its devices one call at a
//! time, each call run until the datapath is idle, and what happened returned
//! (hook verdicts, frames out, frames delivered, drops).

use std::path::Path;
use std::sync::Arc;

use skiff_maps::Map;
use skiff_net::datapath::{Datapath, DatapathOptions, DevId};
use skiff_topology::{Built, Topology};

use super::{map::MapRef, names, Error};

/// The gap between frames one call sends (virtual time: `bpf_ktime_get_ns`
/// sees it), and between calls.
const FRAME_GAP_NS: u64 = 1_000;

/// A built topology.
pub struct Network {
    topology: Topology,
    dp: Datapath,
    maps: Vec<(String, Arc<Map>)>,
    now_ns: u64,
    drops_seen: usize,
}

/// A hook a packet passed (the trace line of `skiff run --trace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The packet id.
    pub packet: u64,
    /// `NETNS/NAME`.
    pub dev: String,
    /// `xdp`, `tc-ingress`, `tc-egress`, `netkit`, `stack`, `xmit`, `kfree_skb`, ...
    pub hook: String,
    pub prog: Option<String>,
    /// `XDP_PASS`, `TC_ACT_SHOT`, `DELIVERED`, ...; for `kfree_skb` the drop reason.
    pub verdict: String,
    /// Where a redirect sent the packet.
    pub target: Option<String>,
}

/// A frame a device transmitted out of the datapath, or a stack took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameOut {
    /// `NETNS/NAME`.
    pub dev: String,
    pub bytes: Vec<u8>,
}

/// A packet dropped: the kernel's drop reason (SKB_DROP_REASON_* without the
/// prefix) and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropSeen {
    pub reason: String,
    /// `NAME` of the device.
    pub dev: String,
    pub hook: String,
    pub prog: Option<String>,
}

/// What one call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Every hook every packet passed, in order.
    pub steps: Vec<Step>,
    /// Out of NICs, in order.
    pub transmitted: Vec<FrameOut>,
    /// Taken by a host stack or consumed by a hook (TC_ACT_STOLEN).
    pub delivered: Vec<FrameOut>,
    pub drops: Vec<DropSeen>,
}

impl Outcome {
    /// The verdict of the first packet that passed `hook` on device `dev`
    /// (`NAME` for the host namespace, or `NETNS/NAME`).
    pub fn verdict(&self, dev: &str, hook: &str) -> Option<&str> {
        let want = qualified(dev);
        self.steps
            .iter()
            .find(|s| s.dev == want && s.hook == hook)
            .map(|s| s.verdict.as_str())
    }

    /// Frames `dev` transmitted (`NAME` or `NETNS/NAME`).
    pub fn transmitted_by(&self, dev: &str) -> Vec<&[u8]> {
        let want = qualified(dev);
        self.transmitted
            .iter()
            .filter(|f| f.dev == want)
            .map(|f| f.bytes.as_slice())
            .collect()
    }
}

/// `NAME` (host) or `NETNS/NAME` as `NETNS/NAME`.
fn qualified(dev: &str) -> String {
    match dev.contains('/') {
        true => dev.to_string(),
        false => format!("host/{dev}"),
    }
}

/// `NAME` (namespace "host") or `NETNS/NAME`: the namespace and the name.
pub fn split_dev(s: &str) -> (&str, &str) {
    match s.split_once('/') {
        Some((ns, d)) => (ns, d),
        None => ("host", s),
    }
}

/// A device by `NAME` (namespace "host") or `NETNS/NAME`.
pub fn resolve_dev(dp: &Datapath, spec: &str) -> Result<DevId, Error> {
    let (ns, name) = split_dev(spec);
    let known = || names(dp.devices().iter().map(|d| d.2.as_str()));
    let n = dp.netns(ns).ok_or_else(|| Error::NotFound {
        what: "network namespace",
        name: ns.to_string(),
        known: String::new(),
    })?;
    dp.device(n, name).ok_or_else(|| Error::NotFound {
        what: "device",
        name: spec.to_string(),
        known: known(),
    })
}

/// The maps of a built topology by the names `skiff run --json` reports
/// them under: the pin name for a pinned map (once, however many objects
/// share it), else `OBJECT/MAP` with OBJECT the object file's stem.
pub fn named_maps(topology: &Topology, built: &Built) -> Vec<(String, Arc<Map>)> {
    let mut out: Vec<(String, Arc<Map>)> = Vec::new();
    for (decl, lo) in topology.objects.iter().zip(&built.objects) {
        for (name, map) in &lo.maps {
            let key = map_report_name(decl, name);
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, map.clone()));
            }
        }
    }
    out
}

/// The name map `map` of object `decl` is reported under: its pin name, else
/// `OBJECT/MAP` with OBJECT the object file's stem.
pub fn map_report_name(decl: &skiff_topology::ObjectDecl, map: &str) -> String {
    let pin = decl
        .maps
        .iter()
        .find(|d| d.name == map)
        .and_then(|d| d.pin.clone());
    pin.unwrap_or_else(|| {
        let stem = decl
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{stem}/{map}")
    })
}

impl Network {
    /// Reads, validates and builds a topology file (docs/topology.md): one
    /// worker, deterministic, what the stacks take kept for the outcome.
    pub fn load(path: impl AsRef<Path>) -> Result<Network, Error> {
        let topology = Topology::load(path.as_ref())?;
        Network::build(topology)
    }

    /// Builds an already parsed topology.
    pub fn build(topology: Topology) -> Result<Network, Error> {
        let built = topology.build(DatapathOptions {
            keep_delivered: true,
            ..Default::default()
        })?;
        let maps = named_maps(&topology, &built);
        let mut dp = built.dp;
        dp.set_trace(true);
        dp.set_record_drops(true);
        Ok(Network {
            topology,
            dp,
            maps,
            now_ns: 0,
            drops_seen: 0,
        })
    }

    /// The datapath itself (counters, devices, the full API).
    pub fn datapath(&mut self) -> &mut Datapath {
        &mut self.dp
    }

    /// The topology as parsed.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A map by pin name, `OBJECT/MAP`, or a map name only one object has.
    pub fn map(&self, name: &str) -> Result<MapRef, Error> {
        let exact = self.maps.iter().find(|(k, _)| k == name);
        let by_map: Vec<_> = self
            .maps
            .iter()
            .filter(|(k, _)| k.rsplit('/').next() == Some(name))
            .collect();
        let found = match (exact, by_map.as_slice()) {
            (Some(m), _) => m,
            (None, [one]) => *one,
            (None, []) => {
                return Err(Error::NotFound {
                    what: "map",
                    name: name.to_string(),
                    known: names(self.maps.iter().map(|(k, _)| k.as_str())),
                })
            }
            (None, _) => {
                return Err(Error::Input(format!(
                    "map {name:?} is in several objects: name it OBJECT/MAP ({})",
                    names(by_map.iter().map(|(k, _)| k.as_str()))
                )))
            }
        };
        Ok(MapRef {
            name: found.0.clone(),
            map: found.1.clone(),
        })
    }

    /// Every map, by the names `map` takes.
    pub fn maps(&self) -> Vec<MapRef> {
        self.maps
            .iter()
            .map(|(n, m)| MapRef {
                name: n.clone(),
                map: m.clone(),
            })
            .collect()
    }

    /// One frame received on `dev` (`NAME` or `NETNS/NAME`; a NIC receives it
    /// from the wire), run until the datapath is idle.
    pub fn send(&mut self, dev: &str, frame: &[u8]) -> Result<Outcome, Error> {
        self.send_all(&[(dev, frame)])
    }

    /// Frames received in order, 1 µs apart, then run until idle.
    pub fn send_all(&mut self, frames: &[(&str, &[u8])]) -> Result<Outcome, Error> {
        for (dev, frame) in frames {
            let d = resolve_dev(&self.dp, dev)?;
            self.now_ns = self.now_ns.saturating_add(FRAME_GAP_NS);
            self.dp
                .inject(d, frame, self.now_ns)
                .map_err(|e| Error::Refused(format!("{dev}: {e}")))?;
            // each frame to its end before the next, as frames with distinct
            // timestamps on a wire
            self.dp.run();
        }
        Ok(self.collect())
    }

    /// End of input: what still waits for a neighbour is dropped
    /// (NEIGH_FAILED), as at the end of `skiff run`.
    pub fn finish(&mut self) -> Outcome {
        self.dp.finish();
        self.collect()
    }

    /// The counters (per device, per hook and verdict; drops; conservation).
    pub fn counters(&self) -> skiff_net::datapath::CountersReport {
        self.dp.counters()
    }

    fn dev_name(&self, dev: DevId) -> String {
        let ns = self
            .dp
            .dev_netns(dev)
            .and_then(|n| self.dp.netns_name(n))
            .unwrap_or("host");
        format!("{ns}/{}", self.dp.dev_name(dev).unwrap_or("?"))
    }

    fn collect(&mut self) -> Outcome {
        let mut out = Outcome::default();
        for t in self.dp.take_transmitted() {
            out.transmitted.push(FrameOut {
                dev: self.dev_name(t.dev),
                bytes: t.frame,
            });
        }
        for d in self.dp.take_delivered() {
            out.delivered.push(FrameOut {
                dev: self.dev_name(d.dev),
                bytes: d.frame,
            });
        }
        for (dev, q) in self.dp.xsk_queues() {
            for f in self.dp.take_xsk(dev, q) {
                self.dp.recycle(f.frame);
            }
        }
        self.dp.take_captures();
        out.steps = self
            .dp
            .take_trace()
            .into_iter()
            .map(|e| Step {
                packet: e.skb,
                dev: format!("{}/{}", e.netns, e.iface),
                hook: e.func.to_string(),
                prog: e.prog,
                verdict: e.verdict,
                target: e.target,
            })
            .collect();
        let drops: Vec<DropSeen> = self
            .dp
            .drops()
            .skip(self.drops_seen)
            .map(|d| DropSeen {
                reason: d.reason.to_string(),
                dev: d.iface.clone(),
                hook: d.hook.to_string(),
                prog: d.prog.clone(),
            })
            .collect();
        self.drops_seen += drops.len();
        out.drops = drops;
        out
    }
}
