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
        let vs = attr.value_size as usize;
        let value = if attr.map_type.is_percpu() {
            let cpus = map.possible_cpus();
            let stride = vs.div_ceil(8) * 8;
            let mut all = vec![0u8; stride * cpus];
            if v.len() == vs {
                for c in 0..cpus {
                    all[c * stride..c * stride + vs].copy_from_slice(&v);
                }
            } else if v.len() == vs * cpus {
                for c in 0..cpus {
                    all[c * stride..c * stride + vs].copy_from_slice(&v[c * vs..(c + 1) * vs]);
                }
            } else {
                bail!("--map-update {name}: per-CPU value must be {vs} bytes (all CPUs) or {} ({cpus} CPUs), got {}", vs * cpus, v.len());
            }
            all
        } else {
            if v.len() != vs {
                bail!(
                    "--map-update {name}: value has {} bytes, the map's value_size is {vs}",
                    v.len()
                );
            }
            v
        };
        map.sys_update(&key, &value, 0)
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

pub fn map_json(map: &Map) -> Value {
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
    let entries: Vec<Value> = map
        .dump()
        .iter()
        .map(|(k, v)| {
            let (field, val) = value_json(v);
            let mut o = serde_json::Map::new();
            o.insert("key".into(), json!(hex::encode(k)));
            o.insert(field.into(), val);
            Value::Object(o)
        })
        .collect();
    json!({
        "type": a.map_type.name(),
        "key_size": a.key_size,
        "value_size": a.value_size,
        "max_entries": a.max_entries,
        "entries": entries,
    })
}

pub fn maps_json(coll: &Collection) -> Value {
    let mut o = serde_json::Map::new();
    for (name, m) in &coll.maps {
        o.insert(name.clone(), map_json(m));
    }
    Value::Object(o)
}
