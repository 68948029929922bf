//! What one side of a diff saw, and the skiff side's run: the topology built
//! in skiff's datapath, the frames injected at their pcap timestamps, one NAPI
//! poll per timestamp (as `skiff run` does), the clock run on by the window
//! the kernel side compares, what each NIC transmitted and every map's
//! entries afterwards.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_net::datapath::DatapathOptions;
use skiff_topology::Topology;

use super::inputs::Frame;
use super::netns::GRACE;
use super::CannotRun;
use crate::harness::map_flat;
use crate::harness::network::{map_report_name, named_maps, resolve_dev};

/// A map's entries, sorted by key: (key, value) as BPF_MAP_LOOKUP_ELEM gives them.
pub type MapDump = Vec<(Vec<u8>, Vec<u8>)>;

/// What a side saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideResult {
    /// Per NIC (`NETNS/NAME`): the frames it transmitted, in order.
    pub frames: BTreeMap<String, Vec<Vec<u8>>>,
    /// Per map (pin name, else `OBJECT/MAP`).
    pub maps: BTreeMap<String, MapDump>,
}

/// How a map's values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// Byte for byte.
    Plain,
    /// One value per CPU: skiff's CPUs are its workers, the kernel's the CPUs
    /// that happened to run the program, so the values are summed over CPUs
    /// (as u64 words; a value size that is not a multiple of 8 is not compared).
    PerCpu { value_size: usize },
    /// Program or map ids (PROG_ARRAY, *_OF_MAPS): the ids differ by nature,
    /// only the keys are compared.
    Ids,
}

/// A device of the skiff side's datapath, as the kernel side rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevInfo {
    pub ns: String,
    pub name: String,
    pub ifindex: u32,
    pub mac: Option<[u8; 6]>,
}

pub struct SkiffRun {
    pub result: SideResult,
    pub devices: Vec<DevInfo>,
    /// Per NIC, when each of `result.frames` left (virtual ns).
    times: BTreeMap<String, Vec<u64>>,
    /// The first and the last input frame's time.
    ts0: u64,
    last_ts: u64,
}

/// How far skiff's clock runs on after the last frame: past the kernel
/// side's window (GRACE after its last frame was sent, later than the
/// frame's time when the machine is busy), which `SkiffRun::trim` then cuts
/// at.
const RUN_ON: Duration = Duration::from_secs(1);

/// `BPF_MAP_TYPE_PROG_ARRAY`, `_ARRAY_OF_MAPS`, `_HASH_OF_MAPS` (include/uapi/linux/bpf.h).
const ID_VALUED: [u32; 3] = [3, 12, 13];

/// Every map of the topology's objects by its report name, with how to compare it.
pub fn map_kinds(t: &Topology) -> BTreeMap<String, MapKind> {
    let mut out = BTreeMap::new();
    for decl in &t.objects {
        for spec in &decl.object.maps {
            let kind = if skiff_kernel::map_type::is_percpu(spec.map_type) {
                MapKind::PerCpu {
                    value_size: spec.value_size as usize,
                }
            } else if ID_VALUED.contains(&spec.map_type) {
                MapKind::Ids
            } else {
                MapKind::Plain
            };
            out.entry(map_report_name(decl, &spec.name)).or_insert(kind);
        }
    }
    out
}

/// The skiff side: built, fed, drained.
pub fn run_skiff(t: &Topology, frames: &[Frame]) -> Result<SkiffRun, CannotRun> {
    let built = t.build(DatapathOptions::default())?;
    let maps = named_maps(t, &built);
    let mut dp = built.dp;
    let mut devs = Vec::with_capacity(frames.len());
    for f in frames {
        let d = resolve_dev(&dp, &f.dev)?;
        devs.push(d);
    }
    let mut result = SideResult::default();
    let mut times = BTreeMap::new();
    feed(&mut dp, frames, &devs, &mut result, &mut times)?;
    for (name, map) in maps {
        let mut entries: MapDump = map
            .dump()
            .into_iter()
            .map(|(k, v)| (k, map_flat(&v)))
            .collect();
        entries.sort();
        result.maps.insert(name, entries);
    }
    let devices = dp
        .devices()
        .into_iter()
        .map(|(id, ns, name, ifindex, _)| DevInfo {
            ns: dp.netns_name(ns).unwrap_or("host").to_string(),
            name,
            ifindex,
            mac: dp.mac(id),
        })
        .collect();
    let ts0 = frames.first().map_or(0, |f| f.ts_ns);
    Ok(SkiffRun {
        result,
        devices,
        times,
        ts0,
        last_ts: frames.last().map_or(0, |f| f.ts_ns),
    })
}

/// The frames injected one NAPI poll per timestamp, then the clock run on by
/// [`RUN_ON`]; what the NICs sent (and when) taken after each poll.
fn feed(
    dp: &mut skiff_net::datapath::Datapath,
    frames: &[Frame],
    devs: &[skiff_net::datapath::DevId],
    result: &mut SideResult,
    times: &mut BTreeMap<String, Vec<u64>>,
) -> Result<(), CannotRun> {
    let batch = dp.run_batch().max(1);
    let mut at = 0;
    while let Some(rest) = frames.get(at..).filter(|r| !r.is_empty()) {
        let n = poll_len(rest, batch);
        for (f, d) in rest.iter().zip(devs.iter().skip(at)).take(n) {
            dp.inject(*d, &f.data, f.ts_ns)
                .map_err(|e| CannotRun(format!("skiff: inject into {}: {e}", f.dev)))?;
        }
        dp.run();
        take_frames(dp, result, times);
        at += n;
    }
    // the kernel side compares what its NICs sent up to GRACE after it sent
    // the last frame (later on a busy machine): skiff's clock runs on, its
    // shapers release what they would by then, and `trim` cuts at the
    // kernel's window
    if let Some(last) = frames.last() {
        let run_on = u64::try_from(RUN_ON.as_nanos()).unwrap_or(u64::MAX);
        dp.run_until(last.ts_ns.saturating_add(run_on));
    }
    dp.finish();
    take_frames(dp, result, times);
    Ok(())
}

impl SkiffRun {
    /// Keeps the frames each NIC sent within `window` of the first frame's
    /// time (the window the kernel side compared: up to GRACE after its
    /// last frame was sent); the rest are counted in the notes returned.
    pub fn trim(&mut self, window: Duration) -> Vec<String> {
        let mut notes = Vec::new();
        if window > self.span() + RUN_ON {
            notes.push(format!(
                "kernel: its last frame was sent {} ms after its time (a busy machine): skiff's clock ran on {} ms only, its shapers may have sent less",
                window.saturating_sub(self.span() + GRACE).as_millis(),
                RUN_ON.as_millis()
            ));
        }
        let limit = self
            .ts0
            .saturating_add(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX));
        let after = window.saturating_sub(self.span()).as_millis();
        for (dev, frames) in &mut self.result.frames {
            let times = self.times.get(dev).map(Vec::as_slice).unwrap_or(&[]);
            let keep = times.iter().take_while(|t| **t <= limit).count();
            if keep < frames.len() {
                notes.push(format!(
                    "skiff: {} frame(s) out of {dev} left more than {} ms after the last frame's time: not compared",
                    frames.len() - keep,
                    after
                ));
                frames.truncate(keep);
            }
        }
        notes
    }

    /// From the first input frame's time to the last's.
    fn span(&self) -> Duration {
        Duration::from_nanos(self.last_ts.saturating_sub(self.ts0))
    }
}

/// How many of `frames` (sorted by time) one NAPI poll takes: those sharing
/// the first one's timestamp, at most `batch` (a later frame has not arrived
/// when the poll runs), as `skiff run` injects them; at least 1.
fn poll_len(frames: &[Frame], batch: usize) -> usize {
    let first = frames.first().map(|f| f.ts_ns);
    frames
        .iter()
        .take(batch.max(1))
        .take_while(|f| Some(f.ts_ns) == first)
        .count()
        .max(1)
}

/// What the NICs transmitted since the last call, by `NETNS/NAME`, and when.
fn take_frames(
    dp: &mut skiff_net::datapath::Datapath,
    out: &mut SideResult,
    times: &mut BTreeMap<String, Vec<u64>>,
) {
    for t in dp.take_transmitted() {
        let ns = dp
            .dev_netns(t.dev)
            .and_then(|n| dp.netns_name(n))
            .unwrap_or("host");
        let name = format!("{ns}/{}", dp.dev_name(t.dev).unwrap_or("?"));
        times.entry(name.clone()).or_default().push(t.ts_ns);
        out.frames.entry(name).or_default().push(t.frame);
    }
}
