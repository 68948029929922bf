//! Map contents for `--map-update` (hex in memory order) and for `--json` dumps
//! (bpftool's type names; per-CPU maps give one value per CPU).

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};
use skiff_maps::{Map, MapValue};
use skiff_vm::Collection;

pub fn parse_hex(what: &str, s: &str) -> Result<Vec<u8>> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    let clean = clean.strip_prefix("0x").unwrap_or(&clean);
    hex::decode(clean).with_context(|| format!("{what} {s:?} is not hex bytes (e.g. 0a000001)"))
}

/// The syscall-side value for `value`: as given, or for a per-CPU map one
/// value set on every CPU, or one per possible CPU concatenated (each padded to
/// 8 bytes as BPF_MAP_UPDATE_ELEM takes them).
pub fn sys_value(map: &Map, value: &[u8]) -> Result<Vec<u8>, String> {
    let attr = map.attr();
    let vs = attr.value_size as usize;
    if !attr.map_type.is_percpu() {
        if value.len() != vs {
            return Err(format!(
                "value has {} bytes, the map's value_size is {vs}",
                value.len()
            ));
        }
        return Ok(value.to_vec());
    }
    let cpus = map.possible_cpus();
    let stride = vs.div_ceil(8) * 8;
    let mut all = vec![0u8; stride * cpus];
    let per_cpu: Vec<&[u8]> = if value.len() == vs {
        vec![value; cpus]
    } else if value.len() == vs * cpus && vs > 0 {
        value.chunks(vs).collect()
    } else {
        return Err(format!(
            "per-CPU value must be {vs} bytes (all CPUs) or {} ({cpus} CPUs), got {}",
            vs * cpus,
            value.len()
        ));
    };
    for (slot, v) in all.chunks_mut(stride).zip(per_cpu) {
        if let Some(dst) = slot.get_mut(..vs) {
            dst.copy_from_slice(v);
        }
    }
    Ok(all)
}

/// BPF_MAP_UPDATE_ELEM (flags BPF_ANY) with a value as `sys_value` takes it.
pub fn update_bytes(map: &Map, key: &[u8], value: &[u8]) -> Result<(), String> {
    let ks = map.attr().key_size as usize;
    if key.len() != ks {
        return Err(format!(
            "key has {} bytes, the map's key_size is {ks}",
            key.len()
        ));
    }
    let v = sys_value(map, value)?;
    map.sys_update(key, &v, 0)
        .map_err(|errno| format!("the map refused the update: {}", errno_name(errno)))
}

/// `--map-update MAP KEY VALUE`: VALUE is hex bytes; for a PROG_ARRAY
/// `prog:NAME`, for a map-in-map `map:NAME`; a per-CPU map takes one value (set
/// on every CPU) or one per possible CPU, concatenated.
pub fn update(coll: &Collection, name: &str, key: &str, value: &str) -> Result<()> {
    let map = coll.map(name).map_err(|_| {
        anyhow!(
            "--map-update: no map named {name:?} (maps: {})",
            names(coll)
        )
    })?;
    let key = parse_hex("--map-update key", key)?;
    let attr = map.attr();
    if key.len() != attr.key_size as usize {
        bail!(
            "--map-update {name}: key has {} bytes, the map's key_size is {}",
            key.len(),
            attr.key_size
        );
    }
    let r = if let Some(prog) = value.strip_prefix("prog:") {
        let p = coll
            .program(prog)
            .map_err(|_| anyhow!("--map-update {name}: no program named {prog:?}"))?;
        map.sys_update_prog(&key, p.id, 0)
    } else if let Some(inner) = value.strip_prefix("map:") {
        let m = coll
            .map(inner)
            .map_err(|_| anyhow!("--map-update {name}: no map named {inner:?}"))?;
        map.sys_update_map(&key, m.clone(), 0)
    } else {
        let v = parse_hex("--map-update value", value)?;
        return update_bytes(map, &key, &v).map_err(|e| anyhow!("--map-update {name}: {e}"));
    };
    r.map_err(|errno| {
        anyhow!(
            "--map-update {name}: the map refused the update: {}",
            errno_name(errno)
        )
    })
}

pub fn errno_name(errno: i32) -> String {
    let n = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        7 => "E2BIG",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        28 => "ENOSPC",
        95 => "EOPNOTSUPP",
        524 => "ENOTSUPP",
        _ => "",
    };
    format!("{n} ({errno})")
}

fn names(coll: &Collection) -> String {
    coll.maps
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn value_json(v: &MapValue) -> (&'static str, Value) {
    match v {
        MapValue::Single(b) => ("value", json!(hex::encode(b))),
        MapValue::PerCpu(vs) => (
            "values",
            json!(vs.iter().map(hex::encode).collect::<Vec<_>>()),
        ),
        MapValue::Map(id) => ("value", json!(hex::encode(id.to_le_bytes()))),
        MapValue::Prog(id) => ("value", json!(hex::encode(id.to_le_bytes()))),
    }
}

/// `prog run --json` lists every entry of a map up to this many entries; a
/// larger map only its non-zero entries, marked `"sparse": true` (a full dump of
/// a 10M-entry array took 7.8 GB).
pub const FULL_DUMP_MAX_ENTRIES: u32 = 65_536;

/// Which entries a dump lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entries {
    /// Every entry (`Map::dump`).
    All,
    /// Only entries with a byte that is not zero, walked one key at a time
    /// (BPF_MAP_GET_NEXT_KEY, as bpftool does), so memory does not grow with the map.
    NonZero,
    /// Arrays (ARRAY, PERCPU_ARRAY) without their all-zero entries; other maps whole.
    ArraysNonZero,
}

fn is_zero(v: &MapValue) -> bool {
    match v {
        MapValue::Single(b) => b.iter().all(|&x| x == 0),
        MapValue::PerCpu(vs) => vs.iter().all(|b| b.iter().all(|&x| x == 0)),
        MapValue::Map(_) | MapValue::Prog(_) => false,
    }
}

/// The entries `which` selects, in the map's key order, passed to `f`.
pub fn for_each_entry(map: &Map, which: Entries, mut f: impl FnMut(&[u8], &MapValue)) {
    let is_array = matches!(
        map.attr().map_type,
        skiff_maps::MapType::Array | skiff_maps::MapType::PercpuArray
    );
    let sparse = match which {
        Entries::All => false,
        Entries::NonZero => true,
        Entries::ArraysNonZero => is_array,
    };
    if !sparse {
        for (k, v) in map.dump() {
            f(&k, &v);
        }
        return;
    }
    // bounded: a map holds at most max_entries keys, and get_next_key ends
    // with ENOENT after the last
    let mut key: Option<Vec<u8>> = None;
    for _ in 0..=map.attr().max_entries {
        let Ok(next) = map.sys_get_next_key(key.as_deref()) else {
            break;
        };
        if let Ok(v) = map.sys_lookup(&next) {
            if !is_zero(&v) {
                f(&next, &v);
            }
        }
        key = Some(next);
    }
}

fn entry_json(k: &[u8], v: &MapValue) -> Value {
    let (field, val) = value_json(v);
    let mut o = serde_json::Map::new();
    o.insert("key".into(), json!(hex::encode(k)));
    o.insert(field.into(), val);
    Value::Object(o)
}

/// A map as `prog run --json` shows it: every entry, or above
/// `FULL_DUMP_MAX_ENTRIES` only the non-zero ones with `"sparse": true`.
pub fn map_json(map: &Map) -> Value {
    let which = match map.attr().max_entries > FULL_DUMP_MAX_ENTRIES {
        true => Entries::NonZero,
        false => Entries::All,
    };
    map_json_with(map, which)
}

/// A map with the entries `which` selects (`"sparse": true` unless all).
pub fn map_json_with(map: &Map, which: Entries) -> Value {
    let a = map.attr();
    if a.map_type == skiff_maps::MapType::Ringbuf {
        // A ring buffer has no keys: its committed records, in order (consumed).
        let records: Vec<String> = map.ringbuf_consume().iter().map(hex::encode).collect();
        return json!({
            "type": a.map_type.name(),
            "key_size": a.key_size,
            "value_size": a.value_size,
            "max_entries": a.max_entries,
            "entries": [],
            "records": records,
        });
    }
    let mut entries = Vec::new();
    for_each_entry(map, which, |k, v| entries.push(entry_json(k, v)));
    let mut o = json!({
        "type": a.map_type.name(),
        "key_size": a.key_size,
        "value_size": a.value_size,
        "max_entries": a.max_entries,
        "entries": entries,
    });
    if which == Entries::NonZero {
        o["sparse"] = json!(true);
    }
    o
}

pub fn maps_json(coll: &Collection) -> Value {
    let mut o = serde_json::Map::new();
    for (name, m) in &coll.maps {
        o.insert(name.clone(), map_json(m));
    }
    Value::Object(o)
}
