//! Pinned maps across restarts of a live run, as bpffs pins outlive the
//! process that loaded them: every map with a pin name (`pin`, `pinning =
//! "by_name"`, or LIBBPF_PIN_BY_NAME in the object) is saved at exit to
//! PIN_DIR/PIN (written to a temporary file, then renamed), and at start a
//! saved map replaces the topology's initial entries (libbpf writes no
//! initial contents into a map it reuses), after the check libbpf's
//! map_is_reuse_compat makes: a mismatch is an error naming what differs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use serde::{Deserialize, Serialize};
use skiff_maps::{Map, MapType};
use skiff_topology::{Built, Topology};

/// One saved map: its parameters and its entries as bpf(2) gives them
/// (BPF_MAP_LOOKUP_ELEM's buffer: per-CPU values padded to 8 bytes each).
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    map_type: String,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    /// The CPUs a per-CPU value holds one value for (`--workers`).
    possible_cpus: usize,
    /// (key, value), hex.
    entries: Vec<(String, String)>,
}

/// The pinned maps a live run keeps, and where.
pub struct Pins {
    dir: PathBuf,
    maps: Vec<(String, Arc<Map>)>,
}

/// Whether the map's contents mean the same in the next run: not program,
/// map or socket references (their ids are the old process's), not a ring
/// buffer, not (yet) a queue or stack.
fn keepable(m: &Map) -> bool {
    let a = m.attr();
    match a.map_type {
        MapType::Hash
        | MapType::Array
        | MapType::PercpuHash
        | MapType::PercpuArray
        | MapType::LruHash
        | MapType::LruPercpuHash
        | MapType::LpmTrie => true,
        // an ifindex (or CPUMAP qsize) only, without a program
        MapType::Devmap | MapType::DevmapHash | MapType::Cpumap => a.value_size == 4,
        _ => false,
    }
}

impl Pins {
    /// The topology's pinned maps, each restored from `dir` when saved there.
    pub fn restore(topo: &Topology, built: &Built, dir: &Path) -> Result<Pins> {
        let mut all: Vec<(String, Arc<Map>)> = skiff::control::pinned_maps(topo, built)
            .into_iter()
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut maps = Vec::new();
        for (pin, m) in all {
            if !keepable(&m) {
                eprintln!(
                    "skiff run --live: pinned map {pin:?} ({}) is not kept across restarts: not supported for its type (docs/differences.md)",
                    m.attr().map_type.name()
                );
                continue;
            }
            let file = dir.join(&pin);
            if file.exists() {
                let n = load(&file, &pin, &m)?;
                eprintln!(
                    "skiff run --live: pinned map {pin:?}: {n} entries restored from {}",
                    file.display()
                );
            }
            maps.push((pin, m));
        }
        Ok(Pins {
            dir: dir.to_path_buf(),
            maps,
        })
    }

    /// Every kept map's contents to PIN_DIR/PIN.
    pub fn save(&self) -> Result<()> {
        if self.maps.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("making the pin directory {}", self.dir.display()))?;
        for (pin, m) in &self.maps {
            let file = self.dir.join(pin);
            let tmp = self.dir.join(format!(".{pin}.tmp"));
            let text = serde_json::to_string(&saved(m))?;
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &file)
                .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
        }
        eprintln!(
            "skiff run --live: {} pinned maps saved in {}",
            self.maps.len(),
            self.dir.display()
        );
        Ok(())
    }
}

/// A map's contents as saved.
fn saved(m: &Map) -> Saved {
    let a = m.attr();
    let entries = m
        .dump()
        .into_iter()
        .filter_map(|(k, _)| {
            let v = m.sys_lookup_raw(&k).ok()?;
            Some((hex::encode(&k), hex::encode(v)))
        })
        .collect();
    Saved {
        map_type: a.map_type.name().to_string(),
        key_size: a.key_size,
        value_size: a.value_size,
        max_entries: a.max_entries,
        map_flags: a.map_flags,
        possible_cpus: m.possible_cpus(),
        entries,
    }
}

/// Replaces `m`'s contents with the file's: how many entries.
fn load(file: &Path, pin: &str, m: &Map) -> Result<usize> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let s: Saved = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a saved pinned map", file.display()))?;
    reuse_compat(&s, m).map_err(|what| {
        anyhow!(
            "couldn't reuse pinned map {pin:?} saved in {}: parameter mismatch: {what} (as libbpf's map_is_reuse_compat; remove the file to start from the topology's entries)",
            file.display()
        )
    })?;
    // the saved contents replace the initial entries
    for (k, _) in m.dump() {
        let _ = m.sys_delete(&k);
    }
    for (i, (k, v)) in s.entries.iter().enumerate() {
        let at = |e: String| anyhow!("{}: entry {i}: {e}", file.display());
        let key = hex::decode(k).map_err(|e| at(format!("key: {e}")))?;
        let value = hex::decode(v).map_err(|e| at(format!("value: {e}")))?;
        m.sys_update(&key, &value, 0)
            .map_err(|e| at(format!("update: {e:?}")))?;
    }
    Ok(s.entries.len())
}

/// libbpf.c: map_is_reuse_compat (type, key and value size, max_entries,
/// flags), and the CPUs a per-CPU value is saved for: what differs, saved
/// first.
fn reuse_compat(s: &Saved, m: &Map) -> std::result::Result<(), String> {
    let a = m.attr();
    let mut diff = Vec::new();
    if s.map_type != a.map_type.name() {
        diff.push(format!("type {} / {}", s.map_type, a.map_type.name()));
    }
    for (what, was, now) in [
        ("key_size", s.key_size, a.key_size),
        ("value_size", s.value_size, a.value_size),
        ("max_entries", s.max_entries, a.max_entries),
        ("map_flags", s.map_flags, a.map_flags),
    ] {
        if was != now {
            diff.push(format!("{what} {was} / {now}"));
        }
    }
    if a.map_type.is_percpu() && s.possible_cpus != m.possible_cpus() {
        diff.push(format!(
            "possible CPUs (--workers) {} / {}",
            s.possible_cpus,
            m.possible_cpus()
        ));
    }
    match diff.is_empty() {
        true => Ok(()),
        false => Err(format!("{} (saved / now)", diff.join(", "))),
    }
}

/// `pin_dir` of the topology, or RUN_DIR/NAME/pins.
pub fn dir(topo: &Topology, name: &str) -> PathBuf {
    match &topo.pin_dir {
        Some(d) => d.clone(),
        None => skiff::control::run_dir().join(name).join("pins"),
    }
}
