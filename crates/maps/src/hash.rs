//! Hash maps: HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, DEVMAP_HASH (values in a
//! slab of preallocated slots, as the kernel's preallocated htab) and HASH_OF_MAPS.
//! The key index is an FxHashMap behind a mutex; iteration sorts keys by their bytes
//! (the kernel's order follows its jhash buckets, see the crate docs).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use parking_lot::Mutex;

use crate::errno::*;
use crate::storage::Block;
use crate::{
    key_u32, round_up8, Errno, Map, MapAttr, MapType, MapValue, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST,
};

/// Where a value comes from: a program (one CPU's value) or the syscall (all CPUs'
/// values, each padded to 8 bytes, for per-CPU maps).
pub(crate) enum Src<'a> {
    Prog { value: &'a [u8], cpu: usize },
    Sys(&'a [u8]),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Plain,
    Percpu,
    Lru,
    LruPercpu,
    DevmapHash,
}

struct Entry {
    slot: usize,
    /// LRU recency stamp (0 for non-LRU maps).
    stamp: u64,
}

struct State {
    entries: FxHashMap<Box<[u8]>, Entry>,
    free: Vec<usize>,
    /// Slots never used yet start here (the free list grows lazily).
    fresh: usize,
    /// LRU: stamp -> key, oldest first (keys move between stamps, never copied).
    lru: BTreeMap<u64, Box<[u8]>>,
    clock: u64,
}

pub(crate) struct HashTable {
    flavor: Flavor,
    value_size: usize,
    elem: usize,
    ncpu: usize,
    max: usize,
    capacity: usize,
    block: Block,
    state: Mutex<State>,
}

/// kernel/bpf/hashtab.c: check_flags
fn check_flags(exists: bool, flags: u64) -> Result<(), Errno> {
    let f = flags & !BPF_F_LOCK;
    if exists && f == BPF_NOEXIST {
        return Err(EEXIST);
    }
    if !exists && f == BPF_EXIST {
        return Err(ENOENT);
    }
    Ok(())
}

impl State {
    fn alloc(&mut self, capacity: usize) -> Option<usize> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        if self.fresh < capacity {
            self.fresh += 1;
            return Some(self.fresh - 1);
        }
        None
    }

    fn touch(&mut self, key: &[u8]) {
        self.clock += 1;
        let now = self.clock;
        if let Some(e) = self.entries.get_mut(key) {
            let k = self.lru.remove(&e.stamp).unwrap_or_else(|| key.into());
            e.stamp = now;
            self.lru.insert(now, k);
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<usize> {
        let e = self.entries.remove(key)?;
        self.lru.remove(&e.stamp);
        self.free.push(e.slot);
        Some(e.slot)
    }

    /// kernel/bpf/hashtab.c: prealloc_lru_pop — a free node, evicting the least recently
    /// used element when there is none.
    fn lru_pop(&mut self, capacity: usize) -> Option<usize> {
        if let Some(s) = self.alloc(capacity) {
            return Some(s);
        }
        let (_, victim) = self.lru.pop_first()?;
        self.remove(&victim)?;
        self.free.pop()
    }

    fn insert(&mut self, key: &[u8], slot: usize, lru: bool) {
        self.entries.insert(key.into(), Entry { slot, stamp: 0 });
        if lru {
            self.touch(key);
        }
    }
}

impl HashTable {
    pub(crate) fn new(attr: &MapAttr, possible_cpus: usize) -> Option<HashTable> {
        let flavor = match attr.map_type {
            MapType::PercpuHash => Flavor::Percpu,
            MapType::LruHash => Flavor::Lru,
            MapType::LruPercpuHash => Flavor::LruPercpu,
            MapType::DevmapHash => Flavor::DevmapHash,
            _ => Flavor::Plain,
        };
        let ncpu = if attr.map_type.is_percpu() {
            possible_cpus
        } else {
            1
        };
        let elem = if flavor == Flavor::DevmapHash {
            8
        } else {
            round_up8(attr.value_size as usize)?
        };
        let max = attr.max_entries as usize;
        // A plain preallocated htab keeps spare elements so that replacing a key in a
        // full map works (kernel/bpf/hashtab.c: htab_has_extra_elems); one suffices here
        // because updates are serialised.
        let capacity = if flavor == Flavor::Plain {
            max.checked_add(1)?
        } else {
            max
        };
        let total = capacity.checked_mul(ncpu)?.checked_mul(elem)?;
        Some(HashTable {
            flavor,
            value_size: attr.value_size as usize,
            elem,
            ncpu,
            max,
            capacity,
            block: Block::new(total)?,
            state: Mutex::new(State {
                entries: FxHashMap::default(),
                free: Vec::new(),
                fresh: 0,
                lru: BTreeMap::new(),
                clock: 0,
            }),
        })
    }

    pub(crate) fn block(&self) -> &Block {
        &self.block
    }

    fn is_lru(&self) -> bool {
        matches!(self.flavor, Flavor::Lru | Flavor::LruPercpu)
    }

    fn off(&self, slot: usize, cpu: usize) -> Option<usize> {
        slot.checked_mul(self.ncpu)?
            .checked_add(cpu)?
            .checked_mul(self.elem)
    }

    /// Copy a value into a slot. `init`: a new element (other CPUs' copies are zeroed
    /// for a program-side per-CPU update, as pcpu_init_value).
    fn write(&self, slot: usize, src: &Src<'_>, init: bool) -> Result<(), Errno> {
        match *src {
            Src::Sys(value) => {
                if self.ncpu > 1 || matches!(self.flavor, Flavor::Percpu | Flavor::LruPercpu) {
                    for cpu in 0..self.ncpu {
                        let chunk = value
                            .get(cpu * self.elem..(cpu + 1) * self.elem)
                            .ok_or(EINVAL)?;
                        self.block.write(self.off(slot, cpu).ok_or(EINVAL)?, chunk);
                    }
                } else {
                    let off = self.off(slot, 0).ok_or(EINVAL)?;
                    if init {
                        self.block.zero(off, self.elem);
                    }
                    self.block
                        .write(off, value.get(..self.value_size).ok_or(EINVAL)?);
                }
            }
            Src::Prog { value, cpu } => {
                if init {
                    for c in 0..self.ncpu {
                        self.block.zero(self.off(slot, c).ok_or(EINVAL)?, self.elem);
                    }
                }
                let cpu = if self.ncpu > 1 { cpu } else { 0 };
                self.block.write(
                    self.off(slot, cpu).ok_or(EINVAL)?,
                    value.get(..self.value_size).ok_or(EINVAL)?,
                );
            }
        }
        Ok(())
    }

    /// kernel/bpf/hashtab.c: htab_map_lookup_elem / htab_lru_map_lookup_elem (marks the
    /// element used) / htab_percpu_map_lookup_elem.
    pub(crate) fn lookup(&self, key: &[u8], cpu: usize, prog: bool) -> Option<*mut u8> {
        let mut st = self.state.lock();
        let slot = st.entries.get(key)?.slot;
        if prog && self.is_lru() {
            st.touch(key);
        }
        let cpu = if self.ncpu > 1 { cpu } else { 0 };
        if cpu >= self.ncpu {
            return None;
        }
        self.block.ptr(self.off(slot, cpu)?, self.elem)
    }

    /// A key not in the map yet: take a free element (E2BIG when full, as
    /// alloc_htab_elem) and fill it.
    fn insert_new(&self, st: &mut State, key: &[u8], src: &Src<'_>) -> Result<(), Errno> {
        if st.entries.len() >= self.max {
            return Err(E2BIG);
        }
        let new = st.alloc(self.capacity).ok_or(E2BIG)?;
        if let Err(e) = self.write(new, src, true) {
            st.free.push(new);
            return Err(e);
        }
        st.insert(key, new, false);
        Ok(())
    }

    pub(crate) fn update(&self, key: &[u8], src: Src<'_>, flags: u64) -> Result<(), Errno> {
        let mut st = self.state.lock();
        match self.flavor {
            Flavor::Plain => {
                // kernel/bpf/hashtab.c: htab_map_update_elem. BPF_F_LOCK needs a
                // bpf_spin_lock in the value, which skiff does not track yet: EINVAL,
                // as for a value without one.
                if (flags & !BPF_F_LOCK) > BPF_EXIST || flags & BPF_F_LOCK != 0 {
                    return Err(EINVAL);
                }
                let old = st.entries.get(key).map(|e| e.slot);
                check_flags(old.is_some(), flags)?;
                match old {
                    Some(old_slot) if flags & BPF_F_LOCK != 0 => {
                        // BPF_F_LOCK updates in place (copy_map_value_locked)
                        self.write(old_slot, &src, false)
                    }
                    Some(old_slot) => {
                        // a new element replaces the old one, whose memory goes back to the
                        // free list (readers holding it see the old value until reuse)
                        let new = st.alloc(self.capacity).ok_or(E2BIG)?;
                        if let Err(e) = self.write(new, &src, true) {
                            st.free.push(new);
                            return Err(e);
                        }
                        if let Some(e) = st.entries.get_mut(key) {
                            e.slot = new;
                        }
                        st.free.push(old_slot);
                        Ok(())
                    }
                    None => self.insert_new(&mut st, key, &src),
                }
            }
            Flavor::Percpu => {
                // kernel/bpf/hashtab.c: __htab_percpu_map_update_elem
                if flags > BPF_EXIST {
                    return Err(EINVAL);
                }
                let old = st.entries.get(key).map(|e| e.slot);
                check_flags(old.is_some(), flags)?;
                if let Some(slot) = old {
                    return self.write(slot, &src, false);
                }
                self.insert_new(&mut st, key, &src)
            }
            Flavor::Lru => {
                // kernel/bpf/hashtab.c: htab_lru_map_update_elem — the new node is taken
                // (evicting if needed) before the flags are checked.
                if flags > BPF_EXIST {
                    return Err(EINVAL);
                }
                let new = st.lru_pop(self.capacity).ok_or(ENOMEM)?;
                let old = st.entries.get(key).map(|e| e.slot);
                if let Err(e) =
                    check_flags(old.is_some(), flags).and_then(|_| self.write(new, &src, true))
                {
                    st.free.push(new);
                    return Err(e);
                }
                if old.is_some() {
                    st.remove(key);
                }
                st.insert(key, new, true);
                Ok(())
            }
            Flavor::LruPercpu => {
                // kernel/bpf/hashtab.c: __htab_lru_percpu_map_update_elem
                if flags > BPF_EXIST {
                    return Err(EINVAL);
                }
                let new = if flags != BPF_EXIST {
                    Some(st.lru_pop(self.capacity).ok_or(ENOMEM)?)
                } else {
                    None
                };
                let old = st.entries.get(key).map(|e| e.slot);
                let res = check_flags(old.is_some(), flags).and_then(|_| match (old, new) {
                    (Some(slot), _) => self.write(slot, &src, false),
                    (None, Some(slot)) => self.write(slot, &src, true),
                    (None, None) => Err(ENOENT),
                });
                match (res, old, new) {
                    (Err(e), _, n) => {
                        if let Some(n) = n {
                            st.free.push(n);
                        }
                        Err(e)
                    }
                    (Ok(()), Some(_), n) => {
                        if let Some(n) = n {
                            st.free.push(n);
                        }
                        st.touch(key);
                        Ok(())
                    }
                    (Ok(()), None, Some(n)) => {
                        st.insert(key, n, true);
                        Ok(())
                    }
                    (Ok(()), None, None) => Err(ENOENT),
                }
            }
            Flavor::DevmapHash => Err(EINVAL),
        }
    }

    /// kernel/bpf/devmap.c: __dev_map_hash_update_elem — BPF_EXIST is not checked; an
    /// ifindex of 0 names no device (EINVAL).
    pub(crate) fn devmap_hash_update(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), Errno> {
        if flags > BPF_EXIST {
            return Err(EINVAL);
        }
        let ifindex = value.get(0..4).and_then(key_u32).ok_or(EINVAL)?;
        let prog = value
            .get(4..8)
            .and_then(key_u32)
            .filter(|id| (*id as i32) > 0)
            .unwrap_or(0);
        let mut entry = [0u8; 8];
        entry[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        entry[4..8].copy_from_slice(&prog.to_ne_bytes());
        let mut st = self.state.lock();
        let old = st.entries.get(key).map(|e| e.slot);
        if old.is_some() && flags & BPF_NOEXIST != 0 {
            return Err(EEXIST);
        }
        if ifindex == 0 {
            return Err(EINVAL);
        }
        let slot = match old {
            Some(s) => s,
            None => {
                if st.entries.len() >= self.max {
                    return Err(E2BIG);
                }
                let s = st.alloc(self.capacity).ok_or(E2BIG)?;
                st.insert(key, s, false);
                s
            }
        };
        self.block.write(self.off(slot, 0).ok_or(EINVAL)?, &entry);
        Ok(())
    }

    /// kernel/bpf/hashtab.c: htab_map_delete_elem / htab_lru_map_delete_elem;
    /// devmap.c: dev_map_hash_delete_elem.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        self.state.lock().remove(key).map(|_| ()).ok_or(ENOENT)
    }

    fn read_values(&self, slot: usize) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(self.ncpu);
        for cpu in 0..self.ncpu {
            let mut v = vec![0u8; self.value_size];
            if !self.block.read(self.off(slot, cpu)?, &mut v) {
                return None;
            }
            out.push(v);
        }
        Some(out)
    }

    /// Values of `key`, one per CPU (one for non-per-CPU maps). The syscall does not mark
    /// LRU elements used (htab_lru_map_lookup_elem_sys).
    pub(crate) fn sys_lookup(&self, key: &[u8]) -> Option<Vec<Vec<u8>>> {
        let slot = self.state.lock().entries.get(key)?.slot;
        self.read_values(slot)
    }

    /// The syscall buffer of a per-CPU value: each CPU's copy with its padding to 8
    /// bytes, as bpf_percpu_hash_copy copies it.
    pub(crate) fn sys_lookup_padded(&self, key: &[u8]) -> Option<Vec<u8>> {
        let slot = self.state.lock().entries.get(key)?.slot;
        let mut out = vec![0u8; self.elem.checked_mul(self.ncpu)?];
        self.block.read(self.off(slot, 0)?, &mut out).then_some(out)
    }

    fn ordered_keys(&self, numeric: bool) -> Vec<(Vec<u8>, usize)> {
        let st = self.state.lock();
        let mut keys: Vec<(Vec<u8>, usize)> = st
            .entries
            .iter()
            .map(|(k, e)| (k.to_vec(), e.slot))
            .collect();
        if numeric {
            keys.sort_by_key(|(k, _)| key_u32(k).unwrap_or(0));
        } else {
            keys.sort();
        }
        keys
    }

    /// kernel/bpf/hashtab.c: htab_map_get_next_key (a missing key restarts at the first).
    pub(crate) fn next_key(&self, key: Option<&[u8]>, numeric: bool) -> Result<Vec<u8>, Errno> {
        if numeric {
            let keys = self.ordered_keys(true);
            let pos = key.and_then(|k| keys.iter().position(|(x, _)| x.as_slice() == k));
            let next = match pos {
                Some(p) => keys.get(p + 1),
                None => keys.first(),
            };
            return next.map(|(k, _)| k.clone()).ok_or(ENOENT);
        }
        let keys = self.ordered_keys(false);
        let pos = key.and_then(|k| keys.iter().position(|(x, _)| x.as_slice() == k));
        let next = match pos {
            Some(p) => keys.get(p + 1),
            None => keys.first(),
        };
        next.map(|(k, _)| k.clone()).ok_or(ENOENT)
    }

    pub(crate) fn dump(&self, percpu: bool, numeric: bool) -> Vec<(Vec<u8>, MapValue)> {
        self.ordered_keys(numeric)
            .into_iter()
            .filter_map(|(k, slot)| {
                let mut vals = self.read_values(slot)?;
                let v = if percpu {
                    MapValue::PerCpu(vals)
                } else {
                    MapValue::Single(vals.pop()?)
                };
                Some((k, v))
            })
            .collect()
    }
}

/// HASH_OF_MAPS (kernel/bpf/hashtab.c: htab_of_maps_*).
pub(crate) struct MapHash {
    max: usize,
    entries: Mutex<BTreeMap<Vec<u8>, Arc<Map>>>,
}

impl MapHash {
    pub(crate) fn new(attr: &MapAttr) -> MapHash {
        MapHash {
            max: attr.max_entries as usize,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// kernel/bpf/hashtab.c: bpf_fd_htab_map_update_elem -> htab_map_update_elem
    pub(crate) fn update(&self, key: &[u8], inner: Arc<Map>, flags: u64) -> Result<(), Errno> {
        if (flags & !BPF_F_LOCK) > BPF_EXIST || flags & BPF_F_LOCK != 0 {
            // a u32 map id holds no bpf_spin_lock
            return Err(EINVAL);
        }
        let mut e = self.entries.lock();
        let exists = e.contains_key(key);
        check_flags(exists, flags)?;
        if !exists && e.len() >= self.max {
            return Err(E2BIG);
        }
        e.insert(key.to_vec(), inner);
        Ok(())
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        self.entries.lock().remove(key).map(|_| ()).ok_or(ENOENT)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Map>> {
        self.entries.lock().get(key).cloned()
    }

    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, Errno> {
        let e = self.entries.lock();
        let present = key.filter(|k| e.contains_key(*k));
        let next = match present {
            Some(k) => e
                .range::<[u8], _>((Bound::Excluded(k), Bound::Unbounded))
                .next(),
            None => e.iter().next(),
        };
        next.map(|(k, _)| k.clone()).ok_or(ENOENT)
    }

    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        self.entries
            .lock()
            .iter()
            .map(|(k, m)| (k.clone(), MapValue::Map(m.id())))
            .collect()
    }
}
