//! Array-shaped maps: ARRAY / PERCPU_ARRAY (values in one block), the fd arrays
//! (PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS: slots holding ids or inner maps) and the
//! redirect arrays (DEVMAP, CPUMAP, XSKMAP: 8-byte entries, read-only for programs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::errno::*;
use crate::hash::Src;
use crate::storage::{Block, MAX_BLOCK_BYTES};
use crate::{
    key_u32, round_up8, Errno, Map, MapAttr, MapType, MapValue, BPF_ANY, BPF_EXIST, BPF_F_LOCK,
    BPF_NOEXIST,
};

pub(crate) struct ArrayMap {
    block: Block,
    elem: usize,
    ncpu: usize,
    value_size: usize,
    max: u32,
    percpu: bool,
}

impl ArrayMap {
    pub(crate) fn new(attr: &MapAttr, possible_cpus: usize) -> Option<ArrayMap> {
        let percpu = attr.map_type == MapType::PercpuArray;
        let ncpu = if percpu { possible_cpus } else { 1 };
        let elem = round_up8(attr.value_size as usize)?;
        let total = elem
            .checked_mul(ncpu)?
            .checked_mul(attr.max_entries as usize)?;
        Some(ArrayMap {
            block: Block::new(total)?,
            elem,
            ncpu,
            value_size: attr.value_size as usize,
            max: attr.max_entries,
            percpu,
        })
    }

    pub(crate) fn block(&self) -> &Block {
        &self.block
    }

    pub(crate) fn layout(&self, possible_cpus: usize) -> crate::ArrayLayout {
        crate::ArrayLayout {
            base: self.block.base(),
            index_stride: self.elem * self.ncpu,
            cpu_stride: self.elem,
            max_entries: self.max,
            percpu: self.percpu,
            possible_cpus: if self.percpu {
                self.ncpu.min(possible_cpus)
            } else {
                possible_cpus
            },
        }
    }

    fn offset(&self, index: u32, cpu: usize) -> Option<usize> {
        (index as usize)
            .checked_mul(self.ncpu)?
            .checked_add(cpu)?
            .checked_mul(self.elem)
    }

    /// kernel/bpf/arraymap.c: array_map_lookup_elem / percpu_array_map_lookup_elem
    #[inline]
    pub(crate) fn lookup(&self, key: &[u8], cpu: usize) -> Option<*mut u8> {
        let index = key_u32(key)?;
        if index >= self.max || (self.percpu && cpu >= self.ncpu) {
            return None;
        }
        let cpu = if self.percpu { cpu } else { 0 };
        self.block.ptr(self.offset(index, cpu)?, self.elem)
    }

    pub(crate) fn update(&self, key: &[u8], src: Src<'_>, flags: u64) -> Result<(), Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        match src {
            Src::Sys(value) if self.percpu => {
                // kernel/bpf/arraymap.c: bpf_percpu_array_update
                if flags > BPF_EXIST {
                    return Err(EINVAL);
                }
                if index >= self.max {
                    return Err(E2BIG);
                }
                if flags == BPF_NOEXIST {
                    return Err(EEXIST);
                }
                for cpu in 0..self.ncpu {
                    let src_off = cpu * self.elem;
                    let chunk = value.get(src_off..src_off + self.elem).ok_or(EINVAL)?;
                    let off = self.offset(index, cpu).ok_or(EINVAL)?;
                    self.block.write(off, chunk);
                }
                Ok(())
            }
            Src::Sys(value) | Src::Prog { value, .. } => {
                // kernel/bpf/arraymap.c: array_map_update_elem
                if (flags & !BPF_F_LOCK) > BPF_EXIST {
                    return Err(EINVAL);
                }
                if index >= self.max {
                    return Err(E2BIG);
                }
                if flags & BPF_NOEXIST != 0 {
                    return Err(EEXIST);
                }
                // BPF_F_LOCK needs a bpf_spin_lock in the value (btf_record_has_field);
                // skiff does not track spin locks in values yet, so it is refused as
                // the kernel refuses it for values without one.
                if flags & BPF_F_LOCK != 0 {
                    return Err(EINVAL);
                }
                let cpu = match src {
                    Src::Prog { cpu, .. } if self.percpu => cpu,
                    _ => 0,
                };
                let off = self.offset(index, cpu).ok_or(EINVAL)?;
                let value = value.get(..self.value_size).ok_or(EINVAL)?;
                if self.block.write(off, value) {
                    Ok(())
                } else {
                    Err(EINVAL)
                }
            }
        }
    }

    fn values(&self, index: u32) -> Option<MapValue> {
        let mut per = Vec::with_capacity(self.ncpu);
        for cpu in 0..self.ncpu {
            let mut v = vec![0u8; self.value_size];
            if !self.block.read(self.offset(index, cpu)?, &mut v) {
                return None;
            }
            per.push(v);
        }
        if self.percpu {
            Some(MapValue::PerCpu(per))
        } else {
            per.pop().map(MapValue::Single)
        }
    }

    pub(crate) fn sys_lookup(&self, key: &[u8]) -> Result<MapValue, Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        if index >= self.max {
            return Err(ENOENT);
        }
        self.values(index).ok_or(ENOENT)
    }

    /// The syscall buffer of a per-CPU value (bpf_percpu_array_copy: padding included).
    pub(crate) fn sys_lookup_padded(&self, key: &[u8]) -> Result<Vec<u8>, Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        if index >= self.max {
            return Err(ENOENT);
        }
        let mut out = vec![0u8; self.elem * self.ncpu];
        let off = self.offset(index, 0).ok_or(ENOENT)?;
        if self.block.read(off, &mut out) {
            Ok(out)
        } else {
            Err(ENOENT)
        }
    }

    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        (0..self.max)
            .filter_map(|i| self.values(i).map(|v| (i.to_ne_bytes().to_vec(), v)))
            .collect()
    }
}

/// A PROG_ARRAY slot's hint when the engine gave none.
pub const NO_HINT: u32 = u32::MAX;

fn prog_word(id: u32, hint: u32) -> u64 {
    id as u64 | (hint as u64) << 32
}

pub(crate) enum FdSlot {
    Prog(u32),
    Perf(u32),
    Map(Arc<Map>),
}

/// PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS (kernel/bpf/arraymap.c: fd_array_*).
pub(crate) struct FdArray {
    max: u32,
    slots: Mutex<BTreeMap<u32, FdSlot>>,
    /// PROG_ARRAY: every slot's program id (low 32 bits, 0: empty) and the
    /// engine's hint where to find that program (high 32 bits, NO_HINT: none),
    /// read without the lock by tail calls (the kernel reads
    /// prog_array->ptrs[] under RCU). One word, so a reader never pairs one
    /// program's id with another's hint.
    progs: Option<Box<[AtomicU64]>>,
}

impl FdArray {
    /// The kernel allocates max_entries pointers; skiff stores slots sparsely but
    /// refuses the sizes the kernel could not allocate either.
    pub(crate) fn new(attr: &MapAttr) -> Option<FdArray> {
        if (attr.max_entries as usize).checked_mul(8)? > MAX_BLOCK_BYTES {
            return None;
        }
        let progs = (attr.map_type == MapType::ProgArray)
            .then(|| (0..attr.max_entries).map(|_| AtomicU64::new(0)).collect());
        Some(FdArray {
            max: attr.max_entries,
            slots: Mutex::new(BTreeMap::new()),
            progs,
        })
    }

    /// A new program (or 0) in slot `index`: any hint is for the old one.
    fn publish(&self, index: u32, prog: u32) {
        if let Some(p) = self.progs.as_ref().and_then(|p| p.get(index as usize)) {
            p.store(prog_word(prog, NO_HINT), Ordering::Release);
        }
    }

    /// PROG_ARRAY slot `index` as (program id, hint), lock-free; None when
    /// the slot is empty or out of range.
    #[inline]
    pub(crate) fn prog_slot(&self, index: u32) -> Option<(u32, u32)> {
        let w = self
            .progs
            .as_ref()?
            .get(index as usize)?
            .load(Ordering::Acquire);
        let (id, hint) = (w as u32, (w >> 32) as u32);
        (id != 0).then_some((id, hint))
    }

    pub(crate) fn prog_words(&self) -> Option<&[AtomicU64]> {
        self.progs.as_deref()
    }

    /// Record `hint` for slot `index` if it still holds program `id` with no
    /// hint (a slot updated meanwhile keeps its new program's word).
    pub(crate) fn set_prog_hint(&self, index: u32, id: u32, hint: u32) {
        if let Some(p) = self.progs.as_ref().and_then(|p| p.get(index as usize)) {
            let _ = p.compare_exchange(
                prog_word(id, NO_HINT),
                prog_word(id, hint),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// kernel/bpf/arraymap.c: bpf_fd_array_map_update_elem (flags and index checks)
    pub(crate) fn precheck(&self, key: &[u8], flags: u64) -> Result<u32, Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        if flags != BPF_ANY {
            return Err(EINVAL);
        }
        if index >= self.max {
            return Err(E2BIG);
        }
        Ok(index)
    }

    pub(crate) fn update(&self, key: &[u8], slot: FdSlot, flags: u64) -> Result<(), Errno> {
        let index = self.precheck(key, flags)?;
        let mut slots = self.slots.lock();
        self.publish(index, if let FdSlot::Prog(id) = slot { id } else { 0 });
        slots.insert(index, slot);
        Ok(())
    }

    /// kernel/bpf/arraymap.c: fd_array_map_delete_elem
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        if index >= self.max {
            return Err(E2BIG);
        }
        let mut slots = self.slots.lock();
        self.publish(index, 0);
        slots.remove(&index).map(|_| ()).ok_or(ENOENT)
    }

    /// kernel/bpf/arraymap.c: bpf_fd_array_map_lookup_elem
    pub(crate) fn sys_lookup(&self, key: &[u8], t: MapType) -> Result<MapValue, Errno> {
        if t == MapType::PerfEventArray {
            // no map_fd_sys_lookup_elem for perf event arrays
            return Err(ENOTSUPP);
        }
        let index = key_u32(key).ok_or(EINVAL)?;
        match self.slots.lock().get(&index) {
            Some(FdSlot::Prog(id)) => Ok(MapValue::Prog(*id)),
            Some(FdSlot::Map(m)) => Ok(MapValue::Map(m.id())),
            Some(FdSlot::Perf(_)) => Err(ENOTSUPP),
            None => Err(ENOENT),
        }
    }

    pub(crate) fn get_map(&self, key: &[u8]) -> Option<Arc<Map>> {
        let index = key_u32(key)?;
        match self.slots.lock().get(&index) {
            Some(FdSlot::Map(m)) => Some(Arc::clone(m)),
            _ => None,
        }
    }

    pub(crate) fn get_prog(&self, index: u32) -> Option<u32> {
        if self.progs.is_some() {
            return self.prog_slot(index).map(|(id, _)| id);
        }
        match self.slots.lock().get(&index) {
            Some(FdSlot::Prog(id)) => Some(*id),
            _ => None,
        }
    }

    pub(crate) fn perf_present(&self, index: u32) -> bool {
        matches!(self.slots.lock().get(&index), Some(FdSlot::Perf(_)))
    }

    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        self.slots
            .lock()
            .iter()
            .map(|(i, s)| {
                let v = match s {
                    FdSlot::Prog(id) => MapValue::Prog(*id),
                    FdSlot::Perf(id) => MapValue::Single(id.to_ne_bytes().to_vec()),
                    FdSlot::Map(m) => MapValue::Map(m.id()),
                };
                (i.to_ne_bytes().to_vec(), v)
            })
            .collect()
    }
}

/// Size of one DEVMAP / CPUMAP / XSKMAP entry in storage: `struct bpf_devmap_val`
/// { u32 ifindex; u32 prog id } / `struct bpf_cpumap_val` { u32 qsize; u32 prog id } /
/// the XSKMAP socket id.
const VAL_ENTRY: usize = 8;

/// DEVMAP, CPUMAP, XSKMAP. Readers (program lookups, redirects, broadcasts) take no
/// lock: which slots are in use is a bitmap of atomic words, and each entry is one
/// atomic 8-byte word, so a reader sees an entry before or after an update, never a
/// mix (the kernel swaps the entry pointer under RCU: __dev_map_update_elem).
/// Updates are serialised by `update`.
pub(crate) struct ValArray {
    block: Block,
    /// Bit `i` set while slot `i` holds an entry (u64 words).
    present: Block,
    max: u32,
    value_size: usize,
    update: Mutex<()>,
}

fn prog_id_of(value: &[u8]) -> u32 {
    // A program "fd" <= 0 (as the kernel's signed int) means no program: stored id 0.
    let id = value.get(4..8).and_then(key_u32).unwrap_or(0);
    if (id as i32) > 0 {
        id
    } else {
        0
    }
}

impl ValArray {
    pub(crate) fn new(attr: &MapAttr) -> Option<ValArray> {
        let total = (attr.max_entries as usize).checked_mul(VAL_ENTRY)?;
        Some(ValArray {
            block: Block::new(total)?,
            present: Block::new((attr.max_entries as usize).div_ceil(64).checked_mul(8)?)?,
            max: attr.max_entries,
            value_size: attr.value_size as usize,
            update: Mutex::new(()),
        })
    }

    pub(crate) fn block(&self) -> &Block {
        &self.block
    }

    fn present_word(&self, index: u32) -> Option<&AtomicU64> {
        self.present.atomic_u64((index / 64) as usize * 8)
    }

    /// Whether slot `index` holds an entry.
    #[inline]
    pub(crate) fn is_present(&self, index: u32) -> bool {
        self.present_word(index)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (index % 64)) != 0)
    }

    fn entry_word(&self, index: u32) -> Option<&AtomicU64> {
        self.block
            .atomic_u64((index as usize).checked_mul(VAL_ENTRY)?)
    }

    /// kernel/bpf/devmap.c: dev_map_lookup_elem; net/xdp/xskmap.c: xsk_map_lookup_elem
    #[inline]
    pub(crate) fn lookup(&self, key: &[u8]) -> Option<*mut u8> {
        let index = key_u32(key)?;
        if !self.is_present(index) {
            return None;
        }
        self.block.ptr(index as usize * VAL_ENTRY, VAL_ENTRY)
    }

    /// The entry at `index` as (first u32, program id): lock-free, no allocation
    /// (__dev_map_lookup_elem / __cpu_map_lookup_elem).
    pub(crate) fn entry(&self, index: u32) -> Option<(u32, u32)> {
        if !self.is_present(index) {
            return None;
        }
        let b = self
            .entry_word(index)?
            .load(Ordering::Acquire)
            .to_ne_bytes();
        let first = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let prog = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        Some((first, prog))
    }

    /// Every entry in index order as (index, first u32, program id), without a lock or
    /// an allocation (dev_map_enqueue_multi's walk of a DEVMAP).
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(u32, u32, u32)) {
        for w in 0..self.max.div_ceil(64) {
            let Some(word) = self.present_word(w * 64) else {
                return;
            };
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                let index = w * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                if let Some((first, prog)) = self.entry(index) {
                    f(index, first, prog);
                }
            }
        }
    }

    /// Write the entry, then mark the slot present (a reader that sees the bit sees the
    /// entry).
    fn store(&self, index: u32, entry: [u8; VAL_ENTRY]) {
        if let Some(e) = self.entry_word(index) {
            e.store(u64::from_ne_bytes(entry), Ordering::Release);
        }
        if let Some(w) = self.present_word(index) {
            w.fetch_or(1 << (index % 64), Ordering::Release);
        }
    }

    fn clear(&self, index: u32) {
        if let Some(w) = self.present_word(index) {
            w.fetch_and(!(1 << (index % 64)), Ordering::Release);
        }
        if let Some(e) = self.entry_word(index) {
            e.store(0, Ordering::Release);
        }
    }

    pub(crate) fn update(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        t: MapType,
        possible_cpus: usize,
    ) -> Result<(), Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        let first = value.get(0..4).and_then(key_u32).ok_or(EINVAL)?;
        let prog = prog_id_of(value);
        let mut entry = [0u8; VAL_ENTRY];
        entry[0..4].copy_from_slice(&first.to_ne_bytes());
        entry[4..8].copy_from_slice(&prog.to_ne_bytes());
        if flags > BPF_EXIST {
            return Err(EINVAL);
        }
        if index >= self.max {
            return Err(E2BIG);
        }
        let _g = self.update.lock();
        match t {
            MapType::Devmap => {
                // kernel/bpf/devmap.c: __dev_map_update_elem
                if flags == BPF_NOEXIST {
                    return Err(EEXIST);
                }
                if first == 0 {
                    // can not specify a program when ifindex is 0
                    if prog != 0 {
                        return Err(EINVAL);
                    }
                    self.clear(index);
                } else {
                    self.store(index, entry);
                }
            }
            MapType::Cpumap => {
                // kernel/bpf/cpumap.c: cpu_map_update_elem
                if flags == BPF_NOEXIST {
                    return Err(EEXIST);
                }
                if first > 16384 {
                    return Err(EOVERFLOW);
                }
                if index as usize >= possible_cpus {
                    return Err(ENODEV);
                }
                if first == 0 {
                    self.clear(index);
                } else {
                    self.store(index, entry);
                }
            }
            _ => {
                // net/xdp/xskmap.c: xsk_map_update_elem
                let old = self.is_present(index);
                if old && flags == BPF_NOEXIST {
                    return Err(EEXIST);
                }
                if !old && flags == BPF_EXIST {
                    return Err(ENOENT);
                }
                entry[4..8].fill(0);
                self.store(index, entry);
            }
        }
        Ok(())
    }

    /// kernel/bpf/devmap.c: dev_map_delete_elem; cpumap.c: cpu_map_delete_elem;
    /// xskmap.c: xsk_map_delete_elem — out of range EINVAL, an empty slot is fine.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        if index >= self.max {
            return Err(EINVAL);
        }
        let _g = self.update.lock();
        self.clear(index);
        Ok(())
    }

    fn value(&self, index: u32) -> Option<Vec<u8>> {
        let mut v = vec![0u8; self.value_size];
        self.block
            .read(index as usize * VAL_ENTRY, &mut v)
            .then_some(v)
    }

    pub(crate) fn sys_lookup(&self, key: &[u8]) -> Result<Vec<u8>, Errno> {
        let index = key_u32(key).ok_or(EINVAL)?;
        if !self.is_present(index) {
            return Err(ENOENT);
        }
        self.value(index).ok_or(ENOENT)
    }

    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        let mut out = Vec::new();
        self.for_each(&mut |i, _, _| {
            if let Some(v) = self.value(i) {
                out.push((i.to_ne_bytes().to_vec(), MapValue::Single(v)));
            }
        });
        out
    }
}
