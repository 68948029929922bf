//! `skiff map show|dump|lookup|update|delete OBJECT [name MAP] [key HEX]
//! [value HEX]`: an object's maps in their initial state (global data, slots
//! from `.values`, then any `--map-update`), printed as bpftool prints them;
//! `--json` as `bpftool -j` (bytes as "0x.." strings, per-CPU values per
//! CPU, `"formatted"` keys and values from the object's BTF).

mod btf;

use std::path::PathBuf;
use std::sync::Arc;

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
    /// The eBPF object (ELF); with --run there is none (this is then the
    /// first keyword).
    #[arg(required_unless_present = "run")]
    object: Option<PathBuf>,
    /// bpftool's keyword arguments: `name MAP`, `key HEX`, `value HEX` (hex
    /// bytes in memory order, as --map-update takes them; spaces allowed).
    words: Vec<String>,
    /// MAP KEY VALUE applied first (as `prog run` takes it); repeatable.
    #[arg(long, num_args = 3, value_names = ["MAP", "KEY", "VALUE"], action = clap::ArgAction::Append)]
    map_update: Vec<String>,
    /// Print as `bpftool -j`.
    #[arg(long)]
    json: bool,
    /// The maps of a running `skiff run --live` (NAME: /run/skiff/NAME.sock,
    /// or the socket's path), named as its `--json` "maps" keys them (the
    /// pin name or OBJECT/MAP; a bare MAP when only one object has it).
    #[arg(long, value_name = "NAME|PATH")]
    run: Option<String>,
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

/// One map a verb can name, and the BTF of the object it came from (with
/// its name there) for `"formatted"`.
pub struct NamedMap {
    pub name: String,
    pub map: Arc<Map>,
    btf: Option<(Arc<MapBtf>, String)>,
}

/// The maps a verb works on: an object's, or a running datapath's.
#[derive(Default)]
pub struct MapSet {
    pub maps: Vec<NamedMap>,
}

impl MapSet {
    /// An object's maps, by their names in it.
    fn of_object(maps: &[(String, Arc<Map>)], btf: Option<MapBtf>) -> MapSet {
        let btf = btf.map(Arc::new);
        MapSet {
            maps: maps
                .iter()
                .map(|(n, m)| NamedMap {
                    name: n.clone(),
                    map: m.clone(),
                    btf: btf.clone().map(|b| (b, n.clone())),
                })
                .collect(),
        }
    }

    /// Adds `name` for `map`, which the object `elf` names `in_object`
    /// (nothing if a map of that name is there already).
    pub fn add(&mut self, name: String, map: Arc<Map>, elf: Option<&[u8]>, in_object: &str) {
        if self.maps.iter().any(|m| m.name == name) {
            return;
        }
        let btf = elf
            .and_then(MapBtf::load)
            .map(|b| (Arc::new(b), in_object.to_string()));
        self.maps.push(NamedMap { name, map, btf });
    }

    /// By its name, or a bare MAP for the one OBJECT/MAP.
    fn find(&self, n: &str) -> Result<&NamedMap> {
        if let Some(m) = self.maps.iter().find(|m| m.name == n) {
            return Ok(m);
        }
        let tail: Vec<&NamedMap> = self
            .maps
            .iter()
            .filter(|m| m.name.rsplit('/').next() == Some(n))
            .collect();
        match tail.as_slice() {
            [one] => Ok(one),
            _ => {
                let all: Vec<&str> = self.maps.iter().map(|m| m.name.as_str()).collect();
                let why = match tail.is_empty() {
                    true => "no map named",
                    false => "more than one map ends in",
                };
                Err(anyhow!("{why} {n:?} (maps: {})", all.join(", ")))
            }
        }
    }
}

fn load(a: &MapArgs) -> Result<MapSet> {
    let object = a
        .object
        .as_deref()
        .ok_or_else(|| anyhow!("map verbs want an OBJECT or --run"))?;
    let bytes =
        std::fs::read(object).with_context(|| format!("reading object {}", object.display()))?;
    let obj = skiff_object::Object::parse(&bytes)
        .with_context(|| format!("loading {}", object.display()))?;
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
    Ok(MapSet::of_object(&coll.maps, MapBtf::load(&bytes)))
}

pub fn main(cmd: MapCmd) -> i32 {
    let (a, verb) = match &cmd {
        MapCmd::Show(a) => (a, "show"),
        MapCmd::Dump(a) => (a, "dump"),
        MapCmd::Lookup(a) => (a, "lookup"),
        MapCmd::Update(a) => (a, "update"),
        MapCmd::Delete(a) => (a, "delete"),
    };
    let result = match &a.run {
        Some(run) => remote(a, verb, run),
        None => load(a).and_then(|set| execute(&set, verb, &a.words, a.json)),
    };
    match result {
        Ok((out, code)) => {
            print!("{out}");
            code
        }
        Err(e) => {
            print_error(a.json, &format!("{e:#}"));
            1
        }
    }
}

/// An error as `skiff map` prints it: `{"error": ...}` on stdout with --json.
pub fn print_error(as_json: bool, e: &str) {
    if as_json {
        println!("{}", json!({ "error": e }));
    } else {
        eprintln!("Error: {e}");
    }
}

/// The verb sent to a running datapath (`--run`): OBJECT is the first word.
fn remote(a: &MapArgs, verb: &str, run: &str) -> Result<(String, i32)> {
    if !a.map_update.is_empty() {
        bail!("--map-update is for an object; with --run use `skiff map update --run`");
    }
    let first = a.object.iter().map(|o| o.to_string_lossy().into_owned());
    let words: Vec<String> = first.chain(a.words.iter().cloned()).collect();
    let req = crate::control::Request::Map {
        verb: verb.to_string(),
        words,
        json: a.json,
    };
    crate::control::client::call(run, &req)
}

/// One verb on `set` with bpftool's keyword arguments: what it prints and
/// its exit code (what `skiff map` and a running datapath's control socket
/// both answer).
pub fn execute(set: &MapSet, verb: &str, words_in: &[String], json: bool) -> Result<(String, i32)> {
    let w = words(words_in)?;
    let map = |w: &Words| -> Result<&NamedMap> {
        let n = w
            .name
            .as_deref()
            .ok_or_else(|| anyhow!("{verb} wants name MAP"))?;
        set.find(n)
    };
    let key = |w: &Words| w.key.clone().ok_or_else(|| anyhow!("{verb} wants key HEX"));
    let mut out = String::new();
    let code = match verb {
        "show" => show(&mut out, set, w.name.as_deref(), json)?,
        "dump" => dump(&mut out, map(&w)?, json)?,
        "lookup" => lookup(&mut out, map(&w)?, &key(&w)?, json)?,
        "update" => {
            let m = map(&w)?;
            let v = w
                .value
                .clone()
                .ok_or_else(|| anyhow!("update wants value HEX"))?;
            maps::update_bytes(&m.map, &key(&w)?, &v).map_err(|e| anyhow!("update failed: {e}"))?;
            done(&mut out, json)
        }
        "delete" => {
            let m = map(&w)?;
            m.map
                .sys_delete(&key(&w)?)
                .map_err(|e| anyhow!("delete failed: {}", maps::errno_name(e)))?;
            done(&mut out, json)
        }
        other => bail!("unknown map verb {other:?} (show, dump, lookup, update, delete)"),
    };
    Ok((out, code))
}

/// bpftool -j prints `null` for a command with nothing to say.
fn done(out: &mut String, json: bool) -> i32 {
    if json {
        out.push_str("null\n");
    }
    0
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

fn show(out: &mut String, set: &MapSet, name: Option<&str>, as_json: bool) -> Result<i32> {
    let chosen: Vec<&NamedMap> = match name {
        Some(n) => vec![set.find(n)?],
        None => set.maps.iter().collect(),
    };
    if as_json {
        let v: Vec<Value> = chosen.iter().map(|m| show_json(&m.map)).collect();
        match (name, v.as_slice()) {
            (Some(_), [one]) => line(out, one),
            _ => line(out, Value::Array(v)),
        }
        return Ok(0);
    }
    for m in chosen {
        let (a, m) = (m.map.attr(), &m.map);
        line(
            out,
            format_args!(
                "{}: {}  name {}  flags 0x{:x}",
                m.id(),
                a.map_type.name(),
                a.name,
                a.map_flags
            ),
        );
        line(
            out,
            format_args!(
                "\tkey {}B  value {}B  max_entries {}",
                a.key_size, a.value_size, a.max_entries
            ),
        );
        if m.is_frozen() {
            line(out, "\tfrozen");
        }
    }
    Ok(0)
}

/// `println!` into the verb's output.
fn line(out: &mut String, s: impl std::fmt::Display) {
    use std::fmt::Write as _;
    // writing into a String cannot fail
    let _ = writeln!(out, "{s}");
}

/// bpftool's JSON bytes: ["0x0a", "0x00", ...].
fn hex_bytes(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|x| json!(format!("0x{x:02x}"))).collect())
}

/// One entry as `bpftool -j map dump` prints it.
fn entry_json(m: &NamedMap, k: &[u8], v: &MapValue) -> Value {
    let types = m
        .btf
        .as_ref()
        .and_then(|(b, name)| b.types(name).map(|t| (b, t)));
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

fn dump(out: &mut String, m: &NamedMap, as_json: bool) -> Result<i32> {
    if m.map.attr().map_type == skiff_maps::MapType::Ringbuf {
        bail!("not supported: dumping a ring buffer (it has no keys; `prog run --json` shows its records)");
    }
    let entries = m.map.dump();
    if as_json {
        let v: Vec<Value> = entries.iter().map(|(k, v)| entry_json(m, k, v)).collect();
        line(out, Value::Array(v));
        return Ok(0);
    }
    for (k, v) in &entries {
        line(out, entry_text(k, v));
    }
    let n = entries.len();
    line(
        out,
        format_args!("Found {n} element{}", if n == 1 { "" } else { "s" }),
    );
    Ok(0)
}

fn lookup(out: &mut String, m: &NamedMap, key: &[u8], as_json: bool) -> Result<i32> {
    match m.map.sys_lookup(key) {
        Ok(v) => {
            match as_json {
                true => line(out, entry_json(m, key, &v)),
                false => line(out, entry_text(key, &v)),
            }
            Ok(0)
        }
        Err(2) => {
            match as_json {
                true => line(out, "null"),
                false => line(out, format_args!("key:\n{}\n\nNot found", spaced(key))),
            }
            Ok(1)
        }
        Err(e) => Err(anyhow!("lookup failed: {}", maps::errno_name(e))),
    }
}
