//! What one side of a diff saw, and the skiff side's run: the topology built
//! in skiff's datapath, the frames injected at their pcap timestamps a NAPI
//! poll's worth at a time (as `skiff run` does), what each NIC transmitted and
//! every map's entries afterwards.

use std::collections::BTreeMap;

use skiff_net::datapath::DatapathOptions;
use skiff_topology::Topology;

use super::inputs::Frame;
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
}

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
    let batch = dp.run_batch().max(1);
    for (chunk, dchunk) in frames.chunks(batch).zip(devs.chunks(batch)) {
        for (f, d) in chunk.iter().zip(dchunk) {
            dp.inject(*d, &f.data, f.ts_ns)
                .map_err(|e| CannotRun(format!("skiff: inject into {}: {e}", f.dev)))?;
        }
        dp.run();
        take_frames(&mut dp, &mut result);
    }
    dp.finish();
    take_frames(&mut dp, &mut result);
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
    Ok(SkiffRun { result, devices })
}

/// What the NICs transmitted since the last call, by `NETNS/NAME`.
fn take_frames(dp: &mut skiff_net::datapath::Datapath, out: &mut SideResult) {
    for t in dp.take_transmitted() {
        let ns = dp
            .dev_netns(t.dev)
            .and_then(|n| dp.netns_name(n))
            .unwrap_or("host");
        let name = format!("{ns}/{}", dp.dev_name(t.dev).unwrap_or("?"));
        out.frames.entry(name).or_default().push(t.frame);
    }
}
