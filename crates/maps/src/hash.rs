//! Hash maps: HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, DEVMAP_HASH (values in a
//! slab of preallocated slots, as the kernel's preallocated htab) and HASH_OF_MAPS.
//!
//! Program lookups go through the lock-free `Index` (see index.rs for the mechanism);
//! updates and deletes take the map's update lock, as the kernel's take the bucket lock
//! (htab_lock_bucket), and keep a key-ordered view for iteration (skiff iterates in key
//! byte order; the kernel's order follows its jhash buckets, see the crate docs).
//! The LRU "touch" of a lookup is a lock-free raise of the element's stamp (the kernel
//! sets a reference bit, bpf_lru_node_set_ref); eviction, under the lock, picks the
//! element with the oldest stamp exactly as a list ordered by last use would.
//! HASH_OF_MAPS publishes its key -> map table through `ArcSwap` (copy on update: only
//! bpf(2) updates it, rarely), so `bpf_map_lookup_elem` on it is lock-free too.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::errno::*;
use crate::index::Index;
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

/// A DEVMAP_HASH entry as broadcasts walk it: key, ifindex, program id.
type DevEntry = (u32, u32, u32);

/// What only writers touch, under the map's update lock.
struct State {
    /// Key -> element: the writers' view, in key-byte order for iteration. Readers use
    /// the lock-free `Index` instead.
    entries: BTreeMap<Box<[u8]>, usize>,
    free: Vec<usize>,
    /// Slots never used yet start here (the free list grows lazily).
    fresh: usize,
    /// LRU: stamp -> element, oldest first. Lookups raise an element's stamp without the
    /// lock, so the stamp recorded here may be older than the element's (see `evict`).
    lru: BTreeMap<u64, usize>,
    /// LRU: element -> its key in `lru`.
    recorded: FxHashMap<usize, u64>,
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
}

pub(crate) struct HashTable {
    flavor: Flavor,
    value_size: usize,
    elem: usize,
    ncpu: usize,
    max: usize,
    capacity: usize,
    block: Block,
    index: Index,
    /// LRU: the stamp (u64) of each element's last use; empty for other flavors.
    stamps: Block,
    /// LRU: the last stamp handed out.
    clock: AtomicU64,
    /// DEVMAP_HASH: every entry in key order, republished on each update (broadcasts
    /// walk it without a lock or an allocation); empty for other flavors.
    dev: ArcSwap<Vec<DevEntry>>,
    state: Mutex<State>,
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
        let lru = matches!(flavor, Flavor::Lru | Flavor::LruPercpu);
        Some(HashTable {
            flavor,
            value_size: attr.value_size as usize,
            elem,
            ncpu,
            max,
            capacity,
            block: Block::new(total)?,
            index: Index::new(attr.key_size as usize, capacity, max)?,
            stamps: Block::new(if lru { capacity.checked_mul(8)? } else { 0 })?,
            clock: AtomicU64::new(0),
            dev: ArcSwap::from_pointee(Vec::new()),
            state: Mutex::new(State {
                entries: BTreeMap::new(),
                free: Vec::new(),
                fresh: 0,
                lru: BTreeMap::new(),
                recorded: FxHashMap::default(),
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

    /// The element of `key`: lock-free, or under the update lock in the rare case the
    /// lock-free walk gave up (see index.rs).
    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        match self.index.find(key) {
            Some(found) => found,
            None => {
                let _writers = self.state.lock();
                self.index.find_locked(key)
            }
        }
    }

    fn stamp(&self, elem: usize) -> Option<&AtomicU64> {
        self.stamps.atomic_u64(elem.checked_mul(8)?)
    }

    /// Mark `elem` used now, without a lock (bpf_lru_node_set_ref); stamps only grow.
    fn touch(&self, elem: usize) -> u64 {
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        self.stamp(elem)
            .map_or(now, |s| s.fetch_max(now, Ordering::Relaxed).max(now))
    }

    /// Mark `elem` used now and move it to the young end of the writers' LRU list.
    fn touch_locked(&self, st: &mut State, elem: usize) {
        let now = self.touch(elem);
        if let Some(old) = st.recorded.insert(elem, now) {
            st.lru.remove(&old);
        }
        st.lru.insert(now, elem);
    }

    /// Publish `elem` (already filled) under `key`; returns the element the key had.
    /// A replaced element stays linked until the caller retires it, so readers find
    /// the key throughout (the kernel links the new element before unlinking the old).
    fn link(&self, st: &mut State, key: &[u8], elem: usize) -> Option<usize> {
        self.index.link(elem, key);
        let old = st.entries.insert(key.into(), elem);
        if self.is_lru() {
            self.touch_locked(st, elem);
        }
        old
    }

    /// Unlink `elem` (stored under `key`) and give its memory back to the free list at
    /// once (readers holding its pointer see the old value until it is reused).
    fn retire(&self, st: &mut State, key: &[u8], elem: usize) {
        if let Some(r) = st.recorded.remove(&elem) {
            st.lru.remove(&r);
        }
        self.index.unlink(elem, key);
        st.free.push(elem);
    }

    fn remove(&self, st: &mut State, key: &[u8]) -> Option<usize> {
        let elem = st.entries.remove(key)?;
        self.retire(st, key, elem);
        Some(elem)
    }

    /// The least recently used element, unlinked. Lookups raise stamps without the
    /// lock, so an element whose stamp grew since it was recorded gets its place back
    /// at the young end and the walk goes on: the first element found unchanged has
    /// the oldest stamp of all (stamps only grow). Concurrent lookups could keep
    /// raising stamps: after one pass over the list the oldest recorded one goes.
    fn evict(&self, st: &mut State) -> Option<usize> {
        let mut second_chances = st.lru.len();
        loop {
            let (recorded, elem) = st.lru.pop_first()?;
            let now = self
                .stamp(elem)
                .map_or(recorded, |s| s.load(Ordering::Relaxed));
            if now > recorded && second_chances > 0 {
                second_chances -= 1;
                st.lru.insert(now, elem);
                st.recorded.insert(elem, now);
                continue;
            }
            st.recorded.remove(&elem);
            if let Some(key) = self.index.key_of(elem) {
                st.entries.remove(key.as_slice());
                self.index.unlink(elem, &key);
            }
            return Some(elem);
        }
    }

    /// kernel/bpf/hashtab.c: prealloc_lru_pop — a free node, evicting the least recently
    /// used element when there is none.
    fn lru_pop(&self, st: &mut State) -> Option<usize> {
        st.alloc(self.capacity).or_else(|| self.evict(st))
    }

    /// kernel/bpf/hashtab.c: htab_map_lookup_elem / htab_lru_map_lookup_elem (marks the
    /// element used) / htab_percpu_map_lookup_elem. Lock-free and allocation-free.
    #[inline]
    pub(crate) fn lookup(&self, key: &[u8], cpu: usize, prog: bool) -> Option<*mut u8> {
        let cpu = if self.ncpu > 1 { cpu } else { 0 };
        if cpu >= self.ncpu {
            return None;
        }
        let slot = self.find(key)?;
        if prog && self.is_lru() {
            self.touch(slot);
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
        self.link(st, key, new);
        Ok(())
    }

    pub(crate) fn update(&self, key: &[u8], src: Src<'_>, flags: u64) -> Result<(), Errno> {
        let mut st = self.state.lock();
        let st = &mut *st;
        match self.flavor {
            Flavor::Plain => {
                // kernel/bpf/hashtab.c: htab_map_update_elem. BPF_F_LOCK needs a
                // bpf_spin_lock in the value, which skiff does not track yet: EINVAL,
                // as for a value without one.
                if (flags & !BPF_F_LOCK) > BPF_EXIST || flags & BPF_F_LOCK != 0 {
                    return Err(EINVAL);
                }
                let old = st.entries.get(key).copied();
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
                        self.link(st, key, new);
                        self.retire(st, key, old_slot);
                        Ok(())
                    }
                    None => self.insert_new(st, key, &src),
                }
            }
            Flavor::Percpu => {
                // kernel/bpf/hashtab.c: __htab_percpu_map_update_elem
                if flags > BPF_EXIST {
                    return Err(EINVAL);
                }
                let old = st.entries.get(key).copied();
                check_flags(old.is_some(), flags)?;
                if let Some(slot) = old {
                    return self.write(slot, &src, false);
                }
                self.insert_new(st, key, &src)
            }
            Flavor::Lru => {
                // kernel/bpf/hashtab.c: htab_lru_map_update_elem — the new node is taken
                // (evicting if needed) before the flags are checked.
                if flags > BPF_EXIST {
                    return Err(EINVAL);
                }
                let new = self.lru_pop(st).ok_or(ENOMEM)?;
                let old = st.entries.get(key).copied();
                if let Err(e) =
                    check_flags(old.is_some(), flags).and_then(|_| self.write(new, &src, true))
                {
                    st.free.push(new);
                    return Err(e);
                }
                if let Some(old) = self.link(st, key, new) {
                    self.retire(st, key, old);
                }
                Ok(())
            }
            Flavor::LruPercpu => self.lru_percpu_update(st, key, &src, flags),
            Flavor::DevmapHash => Err(EINVAL),
        }
    }

    /// kernel/bpf/hashtab.c: __htab_lru_percpu_map_update_elem — an existing element is
    /// updated in place; a node is taken first unless the update needs an existing key.
    fn lru_percpu_update(
        &self,
        st: &mut State,
        key: &[u8],
        src: &Src<'_>,
        flags: u64,
    ) -> Result<(), Errno> {
        if flags > BPF_EXIST {
            return Err(EINVAL);
        }
        let new = if flags != BPF_EXIST {
            Some(self.lru_pop(st).ok_or(ENOMEM)?)
        } else {
            None
        };
        let old = st.entries.get(key).copied();
        let res = check_flags(old.is_some(), flags).and_then(|_| match (old, new) {
            (Some(slot), _) => self.write(slot, src, false),
            (None, Some(slot)) => self.write(slot, src, true),
            (None, None) => Err(ENOENT),
        });
        match (res, old, new) {
            (Err(e), _, n) => {
                if let Some(n) = n {
                    st.free.push(n);
                }
                Err(e)
            }
            (Ok(()), Some(slot), n) => {
                if let Some(n) = n {
                    st.free.push(n);
                }
                self.touch_locked(st, slot);
                Ok(())
            }
            (Ok(()), None, Some(n)) => {
                self.link(st, key, n);
                Ok(())
            }
            (Ok(()), None, None) => Err(ENOENT),
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
        let mut st = self.state.lock();
        let st = &mut *st;
        let old = st.entries.get(key).copied();
        if old.is_some() && flags & BPF_NOEXIST != 0 {
            return Err(EEXIST);
        }
        if ifindex == 0 {
            return Err(EINVAL);
        }
        let slot = match old {
            Some(s) => s,
            None if st.entries.len() >= self.max => return Err(E2BIG),
            None => st.alloc(self.capacity).ok_or(E2BIG)?,
        };
        // one atomic store: a reader sees the old or the new (ifindex, prog), never a mix
        let mut entry = [0u8; 8];
        entry[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        entry[4..8].copy_from_slice(&prog.to_ne_bytes());
        if let Some(a) = self.off(slot, 0).and_then(|o| self.block.atomic_u64(o)) {
            a.store(u64::from_ne_bytes(entry), Ordering::Release);
        }
        if old.is_none() {
            self.link(st, key, slot);
        }
        self.publish_dev(st);
        Ok(())
    }

    /// DEVMAP_HASH: (ifindex, program id) of element `slot`.
    fn dev_value(&self, slot: usize) -> Option<(u32, u32)> {
        let v = self
            .block
            .atomic_u64(self.off(slot, 0)?)?
            .load(Ordering::Acquire);
        let b = v.to_ne_bytes();
        let ifindex = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let prog = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        Some((ifindex, prog))
    }

    /// Republish the DEVMAP_HASH entry list broadcasts walk (numeric key order).
    fn publish_dev(&self, st: &State) {
        let mut all: Vec<DevEntry> = st
            .entries
            .iter()
            .filter_map(|(k, &slot)| {
                let (ifindex, prog) = self.dev_value(slot)?;
                Some((key_u32(k)?, ifindex, prog))
            })
            .collect();
        all.sort_unstable_by_key(|e| e.0);
        self.dev.store(Arc::new(all));
    }

    /// Whether a 4-byte key is in the map (DEVMAP_HASH's redirect lookup).
    #[inline]
    pub(crate) fn contains_u32(&self, key: u32) -> bool {
        self.find(&key.to_ne_bytes()).is_some()
    }

    /// DEVMAP_HASH: (ifindex, program id) of `key`, lock-free (__dev_map_hash_lookup_elem).
    pub(crate) fn dev_entry(&self, key: u32) -> Option<(u32, u32)> {
        if self.flavor != Flavor::DevmapHash {
            return None;
        }
        self.dev_value(self.find(&key.to_ne_bytes())?)
            .filter(|(ifindex, _)| *ifindex != 0)
    }

    /// DEVMAP_HASH: every entry as (key, ifindex, program id), in key order, without a
    /// lock or an allocation (dev_map_enqueue_multi's walk).
    pub(crate) fn for_each_dev_entry(&self, f: &mut dyn FnMut(u32, u32, u32)) {
        for &(key, ifindex, prog) in self.dev.load().iter() {
            f(key, ifindex, prog);
        }
    }

    /// kernel/bpf/hashtab.c: htab_map_delete_elem / htab_lru_map_delete_elem;
    /// devmap.c: dev_map_hash_delete_elem.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        let mut st = self.state.lock();
        self.remove(&mut st, key).ok_or(ENOENT)?;
        if self.flavor == Flavor::DevmapHash {
            self.publish_dev(&st);
        }
        Ok(())
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
        self.read_values(self.find(key)?)
    }

    /// The syscall buffer of a per-CPU value: each CPU's copy with its padding to 8
    /// bytes, as bpf_percpu_hash_copy copies it.
    pub(crate) fn sys_lookup_padded(&self, key: &[u8]) -> Option<Vec<u8>> {
        let slot = self.find(key)?;
        let mut out = vec![0u8; self.elem.checked_mul(self.ncpu)?];
        self.block.read(self.off(slot, 0)?, &mut out).then_some(out)
    }

    /// Keys with their elements: by key bytes, or by numeric u32 key (DEVMAP_HASH).
    fn ordered_keys(&self, numeric: bool) -> Vec<(Vec<u8>, usize)> {
        let st = self.state.lock();
        let mut keys: Vec<(Vec<u8>, usize)> =
            st.entries.iter().map(|(k, &e)| (k.to_vec(), e)).collect();
        if numeric {
            keys.sort_by_key(|(k, _)| key_u32(k).unwrap_or(0));
        }
        keys
    }

    /// kernel/bpf/hashtab.c: htab_map_get_next_key (a missing key restarts at the first).
    pub(crate) fn next_key(&self, key: Option<&[u8]>, numeric: bool) -> Result<Vec<u8>, Errno> {
        let keys = self.ordered_keys(numeric);
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

/// HASH_OF_MAPS (kernel/bpf/hashtab.c: htab_of_maps_*). Only bpf(2) updates it (the
/// verifier refuses program updates of map-in-map), so each update publishes a new
/// copy of the table and program lookups read the current one without a lock.
pub(crate) struct MapHash {
    max: usize,
    entries: ArcSwap<BTreeMap<Vec<u8>, Arc<Map>>>,
    /// Serialises updaters (each copies the table it replaces).
    update: Mutex<()>,
}

impl MapHash {
    pub(crate) fn new(attr: &MapAttr) -> MapHash {
        MapHash {
            max: attr.max_entries as usize,
            entries: ArcSwap::from_pointee(BTreeMap::new()),
            update: Mutex::new(()),
        }
    }

    /// kernel/bpf/hashtab.c: bpf_fd_htab_map_update_elem -> htab_map_update_elem
    pub(crate) fn update(&self, key: &[u8], inner: Arc<Map>, flags: u64) -> Result<(), Errno> {
        if (flags & !BPF_F_LOCK) > BPF_EXIST || flags & BPF_F_LOCK != 0 {
            // a u32 map id holds no bpf_spin_lock
            return Err(EINVAL);
        }
        let _g = self.update.lock();
        let cur = self.entries.load();
        let exists = cur.contains_key(key);
        check_flags(exists, flags)?;
        if !exists && cur.len() >= self.max {
            return Err(E2BIG);
        }
        let mut next = BTreeMap::clone(&cur);
        next.insert(key.to_vec(), inner);
        self.entries.store(Arc::new(next));
        Ok(())
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        let _g = self.update.lock();
        let mut next = BTreeMap::clone(&self.entries.load());
        next.remove(key).ok_or(ENOENT)?;
        self.entries.store(Arc::new(next));
        Ok(())
    }

    /// The inner map of `key`: lock-free (htab_of_map_lookup_elem).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<Map>> {
        self.entries.load().get(key).cloned()
    }

    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, Errno> {
        let e = self.entries.load();
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
            .load()
            .iter()
            .map(|(k, m)| (k.clone(), MapValue::Map(m.id())))
            .collect()
    }
}
