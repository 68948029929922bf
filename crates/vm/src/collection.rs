//! Loading a whole object: create its maps (global data initialised, .rodata
//! frozen), load its programs, fill PROG_ARRAY / map-in-map slots from `.values`,
//! as libbpf's bpf_object__load does.

use std::sync::Arc;

use skiff_maps::{Map, MapAttr, MapType};
use skiff_object::{Object, SlotInit};

use crate::program::Program;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("program {prog}: invalid: {msg}")]
    Invalid { prog: String, msg: String },
    #[error("program {prog}: not supported: {msg}")]
    NotSupported { prog: String, msg: String },
    #[error("map {map}: {msg}")]
    Map { map: String, msg: String },
    #[error("no program named {0}")]
    NoProgram(String),
    #[error("no map named {0}")]
    NoMap(String),
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Values per per-CPU map element (the kernel's possible CPUs).
    pub possible_cpus: usize,
    /// The engine programs are loaded for (compiled here for the JIT).
    pub engine: crate::Engine,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            possible_cpus: 1,
            engine: crate::Engine::default(),
        }
    }
}

pub struct Collection {
    pub maps: Vec<(String, Arc<Map>)>,
    pub programs: Vec<Arc<Program>>,
}

fn map_attr(spec: &skiff_object::MapSpec) -> Result<MapAttr, LoadError> {
    let map_type = MapType::from_kernel(spec.map_type).ok_or_else(|| LoadError::Map {
        map: spec.name.clone(),
        msg: format!("not supported: map type {}", spec.map_type),
    })?;
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

impl Collection {
    pub fn load(obj: &Object, opts: &LoadOptions) -> Result<Collection, LoadError> {
        let mut maps = Vec::with_capacity(obj.maps.len());
        for spec in &obj.maps {
            let err = |msg: String| LoadError::Map {
                map: spec.name.clone(),
                msg,
            };
            let map =
                Map::create(map_attr(spec)?, opts.possible_cpus).map_err(|e| err(e.to_string()))?;
            if let Some(data) = &spec.initial_data {
                map.sys_update(&0u32.to_le_bytes(), data, 0)
                    .map_err(|e| err(format!("initialising global data: errno {e}")))?;
            }
            if let skiff_object::MapOrigin::GlobalData { readonly: true, .. } = spec.origin {
                map.freeze()
                    .map_err(|e| err(format!("freeze: errno {e}")))?;
            }
            maps.push((spec.name.clone(), map));
        }
        let map_refs: Vec<Arc<Map>> = maps.iter().map(|(_, m)| m.clone()).collect();
        let mut programs = Vec::with_capacity(obj.programs.len());
        for p in &obj.programs {
            programs.push(Arc::new(Program::load_with(
                &p.name,
                p.prog_type,
                p.insns.clone(),
                &map_refs,
                opts.engine,
            )?));
        }
        let coll = Collection { maps, programs };
        for spec in &obj.maps {
            for (index, init) in &spec.slots {
                let key = index.to_le_bytes();
                let map = coll.map(&spec.name)?;
                let r = match init {
                    SlotInit::Prog(name) => map.sys_update_prog(&key, coll.program(name)?.id, 0),
                    SlotInit::Map(name) => map.sys_update_map(&key, coll.map(name)?.clone(), 0),
                };
                r.map_err(|e| LoadError::Map {
                    map: spec.name.clone(),
                    msg: format!("initialising slot {index}: errno {e}"),
                })?;
            }
        }
        Ok(coll)
    }

    pub fn map(&self, name: &str) -> Result<&Arc<Map>, LoadError> {
        self.maps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| LoadError::NoMap(name.to_string()))
    }

    pub fn program(&self, name: &str) -> Result<&Arc<Program>, LoadError> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| LoadError::NoProgram(name.to_string()))
    }
}
