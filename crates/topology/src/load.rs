//! Loading the objects: maps created (a pinned map once, shared by every object
//! pinning its name, as libbpf does with bpffs pins), programs linked for the
//! JIT, PROG_ARRAY and map-in-map slots filled, then the file's entries written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use skiff_maps::{Map, MapAttr, MapType};
use skiff_object::{MapSpec, SlotInit};
use skiff_vm::{LoadOptions, Program};

use crate::error::TopologyError;
use crate::model::{MapDecl, MapEntry, ObjectDecl, Piece, Topology};

/// One object as loaded: its maps by name (shared ones are the same `Arc` in
/// every object that pins them) and its programs.
pub struct LoadedObject {
    pub path: PathBuf,
    pub maps: NamedMaps,
    pub programs: Vec<Arc<Program>>,
}

impl LoadedObject {
    pub fn map(&self, name: &str) -> Option<&Arc<Map>> {
        self.maps.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
    pub fn program(&self, name: &str) -> Option<&Arc<Program>> {
        self.programs.iter().find(|p| p.name == name)
    }
}

/// An object's maps by name.
type NamedMaps = Vec<(String, Arc<Map>)>;

/// Resolves `ifindex:NETNS/DEV` pieces.
type IfindexOf<'a> = &'a dyn Fn(&str, &str) -> Option<u32>;

impl Topology {
    /// Loads every object as `skiff_vm::Collection::load` does (maps created, global
    /// data initialised and .rodata frozen, programs linked, PROG_ARRAY / map-in-map
    /// slots from `.values`), except that a map with a pin name is created once and
    /// handed to every later object pinning the same name (libbpf's
    /// bpf_object__reuse_map). Then writes the file's initial map entries.
    /// `ifindex` resolves `ifindex:NETNS/DEV` pieces. Programs are verified
    /// (`skiff_net::load_options`): a refused one fails the load.
    pub fn load_objects(
        &self,
        possible_cpus: usize,
        ifindex: IfindexOf,
    ) -> Result<Vec<LoadedObject>, TopologyError> {
        let opts = LoadOptions {
            possible_cpus,
            ..skiff_net::load_options()
        };
        self.load_objects_with(&opts, ifindex)
    }

    /// As `load_objects`, with `opts` (verification, kernel, helpers); the maps
    /// get `opts.possible_cpus`.
    pub fn load_objects_with(
        &self,
        opts: &LoadOptions,
        ifindex: IfindexOf,
    ) -> Result<Vec<LoadedObject>, TopologyError> {
        let mut pinned: HashMap<String, Arc<Map>> = HashMap::new();
        let mut out = Vec::new();
        for o in &self.objects {
            out.push(self.load_object(o, &mut pinned, opts, ifindex)?);
        }
        Ok(out)
    }

    /// One object as `load_objects_with` loads each: a map whose decl has a
    /// pin name in `pinned` is that map, a new pinned one joins `pinned`.
    /// Also how a running datapath loads an object attached later (`skiff
    /// prog attach --run`), with the pins of the objects loaded before.
    pub fn load_object(
        &self,
        o: &ObjectDecl,
        pinned: &mut HashMap<String, Arc<Map>>,
        opts: &LoadOptions,
        ifindex: IfindexOf,
    ) -> Result<LoadedObject, TopologyError> {
        let oerr = |msg: String| {
            o.loc
                .error(&self.file, format!("{}: {msg}", o.path.display()))
        };
        let (maps, reused) = create_maps(o, pinned, opts.possible_cpus).map_err(oerr)?;
        let refs: Vec<Arc<Map>> = maps.iter().map(|(_, m)| m.clone()).collect();
        let mut programs = Vec::new();
        for p in &o.object.programs {
            let prog = Program::load_object(&o.object.license, p, &refs, opts)
                .map_err(|e| oerr(e.to_string()))?;
            programs.push(Arc::new(prog));
        }
        let loaded = LoadedObject {
            path: o.path.clone(),
            maps,
            programs,
        };
        for spec in &o.object.maps {
            fill_slots(&loaded, spec, reused.contains(&spec.name)).map_err(oerr)?;
        }
        for d in &o.maps {
            self.write_entries(&loaded, d, ifindex)?;
        }
        Ok(loaded)
    }

    /// A map's initial entries from the file.
    fn write_entries(
        &self,
        loaded: &LoadedObject,
        d: &MapDecl,
        ifindex: IfindexOf,
    ) -> Result<(), TopologyError> {
        let map = loaded
            .map(&d.name)
            .ok_or_else(|| d.loc.error(&self.file, format!("no map {}", d.name)))?;
        for e in &d.entries {
            let key = self.resolve(loaded, e, &e.key, ifindex)?;
            let value = percpu_value(map, self.resolve(loaded, e, &e.value, ifindex)?);
            let r = match map.attr().map_type {
                MapType::ProgArray => {
                    let id = value
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 4]);
                    map.sys_update_prog(&key, u32::from_ne_bytes(id), 0)
                }
                _ => map.sys_update(&key, &value, 0),
            };
            r.map_err(|errno| {
                e.loc.error(
                    &self.file,
                    format!("map {}: update refused: errno {errno}", d.name),
                )
            })?;
        }
        Ok(())
    }

    /// The bytes of a key or value: ifindexes and program ids filled in.
    fn resolve(
        &self,
        loaded: &LoadedObject,
        e: &MapEntry,
        pieces: &[Piece],
        ifindex: IfindexOf,
    ) -> Result<Vec<u8>, TopologyError> {
        let mut v = Vec::new();
        for p in pieces {
            match p {
                Piece::Bytes(b) => v.extend_from_slice(b),
                Piece::Ifindex { netns, dev } => {
                    let i = ifindex(netns, dev).ok_or_else(|| {
                        e.loc.error(
                            &self.file,
                            format!("ifindex: no device {dev:?} in netns {netns:?}"),
                        )
                    })?;
                    v.extend_from_slice(&i.to_ne_bytes());
                }
                Piece::Prog(name) => {
                    let p = loaded.program(name).ok_or_else(|| {
                        e.loc
                            .error(&self.file, format!("prog: no program {name:?}"))
                    })?;
                    v.extend_from_slice(&p.id.to_ne_bytes());
                }
            }
        }
        Ok(v)
    }
}

/// One value for a per-CPU map: every CPU gets it (8-byte slots).
fn percpu_value(map: &Map, value: Vec<u8>) -> Vec<u8> {
    let want = map.sys_value_len();
    if want == value.len() || !map.attr().map_type.is_percpu() {
        return value;
    }
    let slot = value.len().div_ceil(8) * 8;
    let mut all = Vec::with_capacity(want);
    while all.len() + slot <= want {
        all.extend_from_slice(&value);
        all.resize(all.len() + slot - value.len(), 0);
    }
    all
}

/// An object's maps, and the names of those taken from an earlier pin
/// (libbpf: map->reused).
fn create_maps(
    o: &ObjectDecl,
    pinned: &mut HashMap<String, Arc<Map>>,
    possible_cpus: usize,
) -> Result<(NamedMaps, Vec<String>), String> {
    let mut maps = Vec::new();
    let mut reused = Vec::new();
    for spec in &o.object.maps {
        let decl = o.maps.iter().find(|d| d.name == spec.name);
        let pin = decl.and_then(|d| d.pin.clone());
        if let Some(m) = pin.as_ref().and_then(|p| pinned.get(p)) {
            maps.push((spec.name.clone(), m.clone()));
            reused.push(spec.name.clone());
            continue;
        }
        let map = create_map(spec, possible_cpus).map_err(|m| format!("map {}: {m}", spec.name))?;
        if let Some(p) = pin {
            pinned.insert(p, map.clone());
        }
        maps.push((spec.name.clone(), map));
    }
    Ok((maps, reused))
}

/// A map with its global data written and .rodata frozen.
fn create_map(spec: &MapSpec, possible_cpus: usize) -> Result<Arc<Map>, String> {
    let map = Map::create(map_attr(spec)?, possible_cpus).map_err(|e| e.to_string())?;
    if let Some(data) = &spec.initial_data {
        map.sys_update(&0u32.to_le_bytes(), data, 0)
            .map_err(|e| format!("initialising global data: errno {e}"))?;
    }
    if let skiff_object::MapOrigin::GlobalData { readonly: true, .. } = spec.origin {
        map.freeze().map_err(|e| format!("freeze: errno {e}"))?;
    }
    Ok(map)
}

fn map_attr(spec: &MapSpec) -> Result<MapAttr, String> {
    let map_type = MapType::from_kernel(spec.map_type)
        .ok_or_else(|| format!("not supported: map type {}", spec.map_type))?;
    let inner = match &spec.inner {
        Some(i) => Some(Box::new(map_attr(i)?)),
        None => None,
    };
    Ok(MapAttr {
        map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.map_flags,
        name: spec.name.clone(),
        inner,
    })
}

/// libbpf.c: bpf_object_create_maps fills map-in-map slots only of the maps it
/// created; PROG_ARRAY slots (init_prog_array_slots) of every map.
fn fill_slots(loaded: &LoadedObject, spec: &MapSpec, reused: bool) -> Result<(), String> {
    let name = &spec.name;
    for (index, init) in &spec.slots {
        if reused && matches!(init, SlotInit::Map(_)) {
            continue;
        }
        let key = index.to_le_bytes();
        let map = loaded.map(name).ok_or_else(|| format!("no map {name}"))?;
        let r = match init {
            SlotInit::Prog(p) => {
                let p = loaded
                    .program(p)
                    .ok_or_else(|| format!("map {name}: slot {index}: no program {p}"))?;
                map.sys_update_prog(&key, p.id, 0)
            }
            SlotInit::Map(m) => {
                let m = loaded
                    .map(m)
                    .ok_or_else(|| format!("map {name}: slot {index}: no map {m}"))?;
                map.sys_update_map(&key, m.clone(), 0)
            }
        };
        r.map_err(|e| format!("map {name}: initialising slot {index}: errno {e}"))?;
    }
    Ok(())
}
