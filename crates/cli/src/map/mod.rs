//! `skiff map show|dump|lookup|update|delete OBJECT [name MAP] [key HEX]
//! [value HEX]`: an object's maps in their initial state (global data, slots
//! from `.values`, then any `--map-update`), printed as bpftool prints them;
//! `--json` as `bpftool -j` (bytes as "0x.." strings, per-CPU values per
//! CPU, `"formatted"` keys and values from the object's BTF).

mod btf;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use skiff_maps::{Map, MapValue};
use skiff_vm::{Collection, LoadOptions};

use crate::maps;
use btf::MapBtf;

#[derive(Subcommand)]
pub enum MapCmd {
    /// The object's maps (or one: `name MAP`).
    Show(MapArgs),
    /// Every entry of a map: `name MAP`.
    Dump(MapArgs),
    /// One entry: `name MAP key HEX`.
    Lookup(MapArgs),
    /// Write one entry: `name MAP key HEX value HEX` (then shown by `--json` as bpftool: null).
    Update(MapArgs),
    /// Delete one entry: `name MAP key HEX`.
    Delete(MapArgs),
}

#[derive(Args)]
pub struct MapArgs {
    /// The eBPF object (ELF).
    object: PathBuf,
    /// bpftool's keyword arguments: `name MAP`, `key HEX`, `value HEX` (hex
    /// bytes in memory order, as --map-update takes them; spaces allowed).
    words: Vec<String>,
    /// MAP KEY VALUE applied first (as `prog run` takes it); repeatable.
    #[arg(long, num_args = 3, value_names = ["MAP", "KEY", "VALUE"], action = clap::ArgAction::Append)]
    map_update: Vec<String>,
    /// Print as `bpftool -j`.
    #[arg(long)]
    json: bool,
}

/// The keyword arguments.
#[derive(Default)]
struct Words {
    name: Option<String>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn words(w: &[String]) -> Result<Words> {
    let mut out = Words::default();
    let mut it = w.iter();
    while let Some(k) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow!("{k:?} wants a value (name MAP, key HEX, value HEX)"))?;
        match k.as_str() {
            "name" => out.name = Some(v.clone()),
            "key" => out.key = Some(maps::parse_hex("key", v)?),
            "value" => out.value = Some(maps::parse_hex("value", v)?),
            _ => bail!("unknown word {k:?} (want name MAP, key HEX, value HEX)"),
        }
    }
    Ok(out)
}

/// The possible CPUs of this machine, as `prog run` loads with (bpftool
/// shows one value per possible CPU).
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .rsplit(['-', ','])
                .next()
                .and_then(|n| n.parse::<usize>().ok())
        })
        .map(|n| n + 1)
        .unwrap_or(1)
}

struct Loaded {
    coll: Collection,
    btf: Option<MapBtf>,
}

fn load(a: &MapArgs) -> Result<Loaded> {
    let bytes = std::fs::read(&a.object)
        .with_context(|| format!("reading object {}", a.object.display()))?;
    let obj = skiff_object::Object::parse(&bytes)
        .with_context(|| format!("loading {}", a.object.display()))?;
    let coll = Collection::load(
        &obj,
        &LoadOptions {
            possible_cpus: possible_cpus(),
            ..Default::default()
        },
    )?;
    for u in a.map_update.chunks(3) {
        if let [m, k, v] = u {
            maps::update(&coll, m, k, v)?;
        }
    }
    Ok(Loaded {
        coll,
        btf: MapBtf::load(&bytes),
    })
}

pub fn main(cmd: MapCmd) -> i32 {
    let (a, verb) = match &cmd {
        MapCmd::Show(a) => (a, "show"),
        MapCmd::Dump(a) => (a, "dump"),
        MapCmd::Lookup(a) => (a, "lookup"),
        MapCmd::Update(a) => (a, "update"),
        MapCmd::Delete(a) => (a, "delete"),
    };
    match run(a, verb) {
        Ok(code) => code,
        Err(e) => {
            if a.json {
                println!("{}", json!({ "error": format!("{e:#}") }));
            } else {
                eprintln!("Error: {e:#}");
            }
            1
        }
    }
}

fn run(a: &MapArgs, verb: &str) -> Result<i32> {
    let w = words(&a.words)?;
    let l = load(a)?;
    let map = |w: &Words| -> Result<(String, std::sync::Arc<Map>)> {
        let n = w
            .name
            .as_deref()
            .ok_or_else(|| anyhow!("{verb} wants name MAP"))?;
        let m = l.coll.map(n).map_err(|_| {
            let all: Vec<&str> = l.coll.maps.iter().map(|(n, _)| n.as_str()).collect();
            anyhow!("no map named {n:?} (maps: {})", all.join(", "))
        })?;
        Ok((n.to_string(), m.clone()))
    };
    let key = |w: &Words| w.key.clone().ok_or_else(|| anyhow!("{verb} wants key HEX"));
    match verb {
        "show" => show(&l, w.name.as_deref(), a.json),
        "dump" => {
            let (n, m) = map(&w)?;
            dump(&l, &n, &m, a.json)
        }
        "lookup" => {
            let (n, m) = map(&w)?;
            lookup(&l, &n, &m, &key(&w)?, a.json)
        }
        "update" => {
            let (_, m) = map(&w)?;
            let v = w
                .value
                .clone()
                .ok_or_else(|| anyhow!("update wants value HEX"))?;
            maps::update_bytes(&m, &key(&w)?, &v).map_err(|e| anyhow!("update failed: {e}"))?;
            print_done(a.json);
            Ok(0)
        }
        _ => {
            let (_, m) = map(&w)?;
            m.sys_delete(&key(&w)?)
                .map_err(|e| anyhow!("delete failed: {}", maps::errno_name(e)))?;
            print_done(a.json);
            Ok(0)
        }
    }
}

/// bpftool -j prints `null` for a command with nothing to say.
fn print_done(json: bool) {
    if json {
        println!("null");
    }
}

fn show_json(m: &Map) -> Value {
    let a = m.attr();
    json!({
        "id": m.id(),
        "type": a.map_type.name(),
        "name": a.name,
        "flags": a.map_flags,
        "bytes_key": a.key_size,
        "bytes_value": a.value_size,
        "max_entries": a.max_entries,
        "frozen": u8::from(m.is_frozen()),
    })
}

fn show(l: &Loaded, name: Option<&str>, as_json: bool) -> Result<i32> {
    let chosen: Vec<&std::sync::Arc<Map>> = match name {
        Some(n) => vec![l.coll.map(n).map_err(|_| anyhow!("no map named {n:?}"))?],
        None => l.coll.maps.iter().map(|(_, m)| m).collect(),
    };
    if as_json {
        let v: Vec<Value> = chosen.iter().map(|m| show_json(m)).collect();
        match (name, v.as_slice()) {
            (Some(_), [one]) => println!("{one}"),
            _ => println!("{}", Value::Array(v)),
        }
        return Ok(0);
    }
    for m in chosen {
        let a = m.attr();
        println!(
            "{}: {}  name {}  flags 0x{:x}",
            m.id(),
            a.map_type.name(),
            a.name,
            a.map_flags
        );
        println!(
            "\tkey {}B  value {}B  max_entries {}",
            a.key_size, a.value_size, a.max_entries
        );
        if m.is_frozen() {
            println!("\tfrozen");
        }
    }
    Ok(0)
}

/// bpftool's JSON bytes: ["0x0a", "0x00", ...].
fn hex_bytes(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|x| json!(format!("0x{x:02x}"))).collect())
}

/// One entry as `bpftool -j map dump` prints it.
fn entry_json(l: &Loaded, name: &str, k: &[u8], v: &MapValue) -> Value {
    let types = l.btf.as_ref().and_then(|b| b.types(name).map(|t| (b, t)));
    let mut o = serde_json::Map::new();
    o.insert("key".into(), hex_bytes(k));
    let mut f = serde_json::Map::new();
    if let Some((b, (kt, _))) = types {
        f.insert("key".into(), b.format(kt, k));
    }
    match v {
        MapValue::PerCpu(vs) => {
            let per = |g: &dyn Fn(&[u8]) -> Value| -> Value {
                Value::Array(
                    vs.iter()
                        .enumerate()
                        .map(|(cpu, b)| json!({"cpu": cpu, "value": g(b)}))
                        .collect(),
                )
            };
            o.insert("values".into(), per(&hex_bytes));
            if let Some((b, (_, vt))) = types {
                f.insert("values".into(), per(&|x| b.format(vt, x)));
            }
        }
        other => {
            let bytes = crate::harness::map_flat(other);
            o.insert("value".into(), hex_bytes(&bytes));
            if let Some((b, (_, vt))) = types {
                f.insert("value".into(), b.format(vt, &bytes));
            }
        }
    }
    if !f.is_empty() {
        o.insert("formatted".into(), Value::Object(f));
    }
    Value::Object(o)
}

fn spaced(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One entry as bpftool prints it without -j.
fn entry_text(k: &[u8], v: &MapValue) -> String {
    match v {
        MapValue::PerCpu(vs) => {
            let mut s = format!("key:\n{}\n", spaced(k));
            for (cpu, b) in vs.iter().enumerate() {
                s.push_str(&format!("value (CPU {cpu:02}): {}\n", spaced(b)));
            }
            s.trim_end().to_string()
        }
        other => format!(
            "key: {}  value: {}",
            spaced(k),
            spaced(&crate::harness::map_flat(other))
        ),
    }
}

fn dump(l: &Loaded, name: &str, m: &Map, as_json: bool) -> Result<i32> {
    if m.attr().map_type == skiff_maps::MapType::Ringbuf {
        bail!("not supported: dumping a ring buffer (it has no keys; `prog run --json` shows its records)");
    }
    let entries = m.dump();
    if as_json {
        let v: Vec<Value> = entries
            .iter()
            .map(|(k, v)| entry_json(l, name, k, v))
            .collect();
        println!("{}", Value::Array(v));
        return Ok(0);
    }
    for (k, v) in &entries {
        println!("{}", entry_text(k, v));
    }
    let n = entries.len();
    println!("Found {n} element{}", if n == 1 { "" } else { "s" });
    Ok(0)
}

fn lookup(l: &Loaded, name: &str, m: &Map, key: &[u8], as_json: bool) -> Result<i32> {
    match m.sys_lookup(key) {
        Ok(v) => {
            match as_json {
                true => println!("{}", entry_json(l, name, key, &v)),
                false => println!("{}", entry_text(key, &v)),
            }
            Ok(0)
        }
        Err(2) => {
            match as_json {
                true => println!("null"),
                false => println!("key:\n{}\n\nNot found", spaced(key)),
            }
            Ok(1)
        }
        Err(e) => Err(anyhow!("lookup failed: {}", maps::errno_name(e))),
    }
}
