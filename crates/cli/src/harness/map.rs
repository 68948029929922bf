//! A map of a loaded topology or object, read and written as userspace does
//! with bpf(2) (BPF_MAP_LOOKUP_ELEM, _UPDATE_ELEM, _DELETE_ELEM, dumps).

use std::sync::Arc;

use skiff_maps::{Map, MapValue};

use super::Error;
use crate::maps::{errno_name, update_bytes};

/// A map by the name the call used; cheap to clone (the map is shared with
/// the programs using it).
#[derive(Clone)]
pub struct MapRef {
    pub(crate) name: String,
    pub(crate) map: Arc<Map>,
}

impl MapRef {
    /// The name this map was asked by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The map itself (its attributes, the full syscall-side API).
    pub fn raw(&self) -> &Arc<Map> {
        &self.map
    }

    fn err(&self, message: String) -> Error {
        Error::Map {
            map: self.name.clone(),
            message,
        }
    }

    /// BPF_MAP_UPDATE_ELEM with BPF_ANY. A per-CPU map takes one value (set on
    /// every CPU) or one per CPU, concatenated.
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        update_bytes(&self.map, key, value).map_err(|m| self.err(m))
    }

    /// BPF_MAP_LOOKUP_ELEM: the value (a per-CPU map's values concatenated,
    /// CPU 0 first), or None when the key is not there.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        match self.map.sys_lookup(key) {
            Ok(v) => Ok(Some(flat(&v))),
            Err(2) => Ok(None),
            Err(e) => Err(self.err(format!("lookup refused: {}", errno_name(e)))),
        }
    }

    /// BPF_MAP_DELETE_ELEM; deleting a missing key is an error (ENOENT), as in the kernel.
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        self.map
            .sys_delete(key)
            .map_err(|e| self.err(format!("delete refused: {}", errno_name(e))))
    }

    /// Every entry in the map's key order (arrays: every index).
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .dump()
            .into_iter()
            .map(|(k, v)| (k, flat(&v)))
            .collect()
    }
}

/// A value's bytes: per-CPU values concatenated, ids in host order.
pub fn flat(v: &MapValue) -> Vec<u8> {
    match v {
        MapValue::Single(b) => b.clone(),
        MapValue::PerCpu(vs) => vs.concat(),
        MapValue::Map(id) | MapValue::Prog(id) => id.to_ne_bytes().to_vec(),
    }
}
