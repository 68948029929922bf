//! The control plane's side of a map, as bpf(2) gives it (kernel/bpf/syscall.c:
//! map_lookup_elem, map_update_elem, map_delete_elem, map_get_next_key,
//! map_freeze, and the permission checks map_get_sys_perms makes): values
//! copied in and out, per-CPU values as one value per possible CPU.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::errno::*;
use crate::*;

impl Map {
    /// kernel/bpf/syscall.c: map_get_sys_perms (FMODE_CAN_WRITE).
    fn sys_may_write(&self) -> Result<(), Errno> {
        if self.attr.map_flags & BPF_F_RDONLY != 0 || self.is_frozen() {
            Err(EPERM)
        } else {
            Ok(())
        }
    }

    /// kernel/bpf/syscall.c: map_get_sys_perms (FMODE_CAN_READ).
    fn sys_may_read(&self) -> Result<(), Errno> {
        if self.attr.map_flags & BPF_F_WRONLY != 0 {
            Err(EPERM)
        } else {
            Ok(())
        }
    }

    /// BPF_MAP_LOOKUP_ELEM. LPM tries do a longest-prefix match; queue/stack peek (key
    /// must be empty).
    pub fn sys_lookup(&self, key: &[u8]) -> Result<MapValue, Errno> {
        self.sys_may_read()?;
        if key.len() != self.attr.key_size as usize {
            return Err(EINVAL);
        }
        let vs = self.attr.value_size as usize;
        match &self.kind {
            Kind::Array(a) => a.sys_lookup(key),
            Kind::Fd(f) => f.sys_lookup(key, self.attr.map_type),
            Kind::Dev(d) => {
                if self.attr.map_type == MapType::Xskmap {
                    // net/xdp/xskmap.c: xsk_map_lookup_elem_sys_only
                    return Err(EOPNOTSUPP);
                }
                d.sys_lookup(key).map(MapValue::Single)
            }
            Kind::Hash(h) => {
                let v = h.sys_lookup(key).ok_or(ENOENT)?;
                Ok(if self.attr.map_type.is_percpu() {
                    MapValue::PerCpu(v)
                } else {
                    MapValue::Single(v.into_iter().next().unwrap_or_default())
                })
            }
            Kind::HashOfMaps(h) => h.get(key).map(|m| MapValue::Map(m.id())).ok_or(ENOENT),
            Kind::Lpm(l) => l.sys_lookup(key).map(MapValue::Single).ok_or(ENOENT),
            Kind::Queue(q) => {
                let mut out = vec![0u8; vs];
                q.take(&mut out, false)?;
                Ok(MapValue::Single(out))
            }
            Kind::Ringbuf(_) => Err(ENOTSUPP),
        }
    }

    /// BPF_MAP_LOOKUP_ELEM with the exact buffer the syscall fills: per-CPU maps give
    /// possible_cpus values each padded to 8 bytes; others the value_size bytes
    /// (PROG_ARRAY / map-in-map: the u32 id).
    pub fn sys_lookup_raw(&self, key: &[u8]) -> Result<Vec<u8>, Errno> {
        if self.attr.map_type.is_percpu() {
            self.sys_may_read()?;
            if key.len() != self.attr.key_size as usize {
                return Err(EINVAL);
            }
            return match &self.kind {
                Kind::Array(a) => a.sys_lookup_padded(key),
                Kind::Hash(h) => h.sys_lookup_padded(key).ok_or(ENOENT),
                _ => Err(EINVAL),
            };
        }
        Ok(match self.sys_lookup(key)? {
            MapValue::Single(b) => b,
            MapValue::Map(id) | MapValue::Prog(id) => id.to_ne_bytes().to_vec(),
            MapValue::PerCpu(vals) => vals.concat(),
        })
    }

    /// The value length `sys_update` expects: possible_cpus * round_up(value_size, 8) for
    /// per-CPU maps, value_size otherwise.
    pub fn sys_value_len(&self) -> usize {
        let vs = self.attr.value_size as usize;
        if self.attr.map_type.is_percpu() {
            round_up8(vs)
                .unwrap_or(0)
                .saturating_mul(self.possible_cpus)
        } else {
            vs
        }
    }

    /// BPF_MAP_UPDATE_ELEM. Per-CPU maps take `sys_value_len()` bytes. Queue/stack push
    /// (empty key). PROG_ARRAY takes a prog id, map-in-map a map id (see `Map::by_id`;
    /// unknown id: EBADF), PERF_EVENT_ARRAY and XSKMAP an opaque id, as u32 values.
    pub fn sys_update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), Errno> {
        self.sys_may_write()?;
        if key.len() != self.attr.key_size as usize || value.len() != self.sys_value_len() {
            return Err(EINVAL);
        }
        match &self.kind {
            Kind::Array(a) => a.update(key, hash::Src::Sys(value), flags),
            Kind::Hash(h) => {
                if self.attr.map_type == MapType::DevmapHash {
                    h.devmap_hash_update(key, value, flags)
                } else {
                    h.update(key, hash::Src::Sys(value), flags)
                }
            }
            Kind::Lpm(l) => l.update(key, value, flags),
            Kind::Queue(q) => q.push(value, flags),
            Kind::Ringbuf(_) => Err(ENOTSUPP),
            Kind::Dev(d) => d.update(key, value, flags, self.attr.map_type, self.possible_cpus),
            Kind::Fd(_) | Kind::HashOfMaps(_) => {
                let id = key_u32(value).ok_or(EINVAL)?;
                match self.attr.map_type {
                    MapType::ProgArray => self.sys_update_prog(key, id, flags),
                    MapType::PerfEventArray => match &self.kind {
                        Kind::Fd(f) => f.update(key, array::FdSlot::Perf(id), flags),
                        _ => Err(EINVAL),
                    },
                    _ => {
                        let inner = Map::by_id(id).ok_or(EBADF)?;
                        self.sys_update_map(key, inner, flags)
                    }
                }
            }
        }
    }

    /// BPF_MAP_UPDATE_ELEM on ARRAY_OF_MAPS / HASH_OF_MAPS: the inner map must match the
    /// template (kernel/bpf/map_in_map.c: bpf_map_meta_equal: type, key_size, value_size,
    /// map_flags; plus max_entries for ARRAY templates without BPF_F_INNER_MAP, as
    /// array_map_meta_equal) else EINVAL. ARRAY_OF_MAPS takes only BPF_ANY.
    pub fn sys_update_map(&self, key: &[u8], inner: Arc<Map>, flags: u64) -> Result<(), Errno> {
        self.sys_may_write()?;
        if key.len() != self.attr.key_size as usize {
            return Err(EINVAL);
        }
        let tmpl = self.attr.inner.as_deref().ok_or(EINVAL)?;
        let ia = inner.attr();
        let mut equal = tmpl.map_type == ia.map_type
            && tmpl.key_size == ia.key_size
            && tmpl.value_size == ia.value_size
            && tmpl.map_flags == ia.map_flags;
        if tmpl.map_type == MapType::Array && tmpl.map_flags & BPF_F_INNER_MAP == 0 {
            equal &= tmpl.max_entries == ia.max_entries;
        }
        match &self.kind {
            Kind::Fd(f) if self.attr.map_type == MapType::ArrayOfMaps => {
                // kernel/bpf/arraymap.c: bpf_fd_array_map_update_elem checks flags and index first
                f.precheck(key, flags)?;
                if !equal {
                    return Err(EINVAL);
                }
                f.update(key, array::FdSlot::Map(inner), flags)
            }
            Kind::HashOfMaps(h) => {
                // kernel/bpf/hashtab.c: bpf_fd_htab_map_update_elem gets the map first
                if !equal {
                    return Err(EINVAL);
                }
                h.update(key, inner, flags)
            }
            _ => Err(EINVAL),
        }
    }

    /// BPF_MAP_UPDATE_ELEM on PROG_ARRAY with a program id (the kernel takes a prog fd
    /// and checks the program type; skiff does not know programs here).
    pub fn sys_update_prog(&self, key: &[u8], prog_id: u32, flags: u64) -> Result<(), Errno> {
        self.sys_may_write()?;
        if key.len() != self.attr.key_size as usize {
            return Err(EINVAL);
        }
        match &self.kind {
            Kind::Fd(f) if self.attr.map_type == MapType::ProgArray => {
                f.update(key, array::FdSlot::Prog(prog_id), flags)
            }
            _ => Err(EINVAL),
        }
    }

    /// BPF_MAP_DELETE_ELEM.
    pub fn sys_delete(&self, key: &[u8]) -> Result<(), Errno> {
        self.sys_may_write()?;
        if key.len() != self.attr.key_size as usize {
            return Err(EINVAL);
        }
        match &self.kind {
            Kind::Array(_) | Kind::Queue(_) => Err(EINVAL),
            Kind::Fd(f) => f.delete(key),
            Kind::Dev(d) => d.delete(key),
            Kind::Hash(h) => h.delete(key),
            Kind::HashOfMaps(h) => h.delete(key),
            Kind::Lpm(l) => l.delete(key),
            Kind::Ringbuf(_) => Err(ENOTSUPP),
        }
    }

    /// BPF_MAP_GET_NEXT_KEY: None (or a key not in the map) gives the first key; the last
    /// key gives ENOENT. Arrays walk all indexes (empty DEVMAP/PROG_ARRAY slots included,
    /// as the kernel); LPM tries walk the trie in post-order (more specific first).
    pub fn sys_get_next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, Errno> {
        self.sys_may_read()?;
        if let Some(k) = key {
            if k.len() != self.attr.key_size as usize {
                return Err(EINVAL);
            }
        }
        match &self.kind {
            Kind::Array(_) | Kind::Fd(_) | Kind::Dev(_) => {
                // kernel/bpf/arraymap.c: array_map_get_next_key
                let max = self.attr.max_entries;
                let index = key.and_then(key_u32).unwrap_or(u32::MAX);
                if index >= max {
                    return Ok(0u32.to_ne_bytes().to_vec());
                }
                if index == max - 1 {
                    return Err(ENOENT);
                }
                Ok((index + 1).to_ne_bytes().to_vec())
            }
            Kind::Hash(h) => h.next_key(key, self.attr.map_type == MapType::DevmapHash),
            Kind::HashOfMaps(h) => h.next_key(key),
            Kind::Lpm(l) => l.next_key(key),
            // kernel/bpf/queue_stack_maps.c: queue_stack_map_get_next_key
            Kind::Queue(_) => Err(EINVAL),
            Kind::Ringbuf(_) => Err(ENOTSUPP),
        }
    }

    /// Every present entry, ordered: arrays by index (skipping empty DEVMAP/CPUMAP/XSKMAP/
    /// PROG_ARRAY/PERF_EVENT_ARRAY/ARRAY_OF_MAPS slots), hashes by key bytes (DEVMAP_HASH
    /// by numeric key; the kernel's order follows its jhash buckets), LPM tries in the
    /// kernel's get_next_key post-order, queue/stack in pop order with empty keys.
    /// XSKMAP and PERF_EVENT_ARRAY values are the stored u32 ids (the kernel's syscall
    /// lookup refuses them). Ring buffers have no entries.
    pub fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        match &self.kind {
            Kind::Array(a) => a.dump(),
            Kind::Fd(f) => f.dump(),
            Kind::Dev(d) => d.dump(),
            Kind::Hash(h) => h.dump(
                self.attr.map_type.is_percpu(),
                self.attr.map_type == MapType::DevmapHash,
            ),
            Kind::HashOfMaps(h) => h.dump(),
            Kind::Lpm(l) => l.dump(),
            Kind::Queue(q) => q.dump(),
            Kind::Ringbuf(_) => Vec::new(),
        }
    }

    /// BPF_MAP_FREEZE: later syscall-side writes give EPERM. A frozen map or one created
    /// BPF_F_RDONLY has no write permission left, so freezing it again gives EPERM
    /// (kernel/bpf/syscall.c: map_freeze checks map_get_sys_perms before `frozen`).
    pub fn freeze(&self) -> Result<(), Errno> {
        if self.attr.map_flags & BPF_F_RDONLY != 0 {
            return Err(EPERM);
        }
        if self.frozen.swap(true, Ordering::AcqRel) {
            return Err(EPERM);
        }
        Ok(())
    }
}
