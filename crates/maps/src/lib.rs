//! skiff-maps: the kernel's BPF map types with the kernel's semantics (creation checks,
//! update flags, errno values, iteration order), storing values in memory allocated once
//! at creation so running programs can use the pointers that lookups hand out.
//!
//! Program-side calls (`lookup`, `update`, `delete`, `push`/`pop`/`peek`, `ringbuf_*`)
//! mirror the BPF helpers; `sys_*` calls mirror the bpf(2) syscall as bpftool and libbpf
//! see it. Differences from the kernel are listed below and in the
//! documentation of each function.
//!
//! # Differences from the kernel (documented, deliberate)
//! - Keys and values are byte slices: a slice whose length is not the map's key or value
//!   size gives EINVAL (the kernel copies exactly key_size/value_size bytes, so it cannot
//!   see a wrong length).
//! - BPF_F_LOCK is refused (EINVAL) on every update: skiff does not yet track whether
//!   a value holds a `bpf_spin_lock`, and the kernel gives EINVAL when it does not.
//! - PROG_ARRAY, ARRAY_OF_MAPS/HASH_OF_MAPS, PERF_EVENT_ARRAY, XSKMAP and the program
//!   fields of DEVMAP/CPUMAP values take ids (prog id, map id, socket id) where the
//!   kernel's syscall takes file descriptors; DEVMAP ifindexes and program ids are not
//!   checked against devices or programs (the kernel gives EINVAL/ENODEV for unknown
//!   ones): the datapath resolves them when it uses them.
//! - Hash maps iterate in key-byte order (DEVMAP_HASH: numeric key order); the kernel's
//!   order follows its jhash buckets.
//! - LRU maps evict exactly one least-recently-used element, only when the map is full.
//!   The kernel's LRU (common or per-CPU lists, BPF_F_NO_COMMON_LRU) refills per-CPU free
//!   lists in batches (LOCAL_FREE_TARGET = 128), so it may evict several elements at once,
//!   before the map is full, and it approximates recency with reference bits.
//! - As in the kernel, an LRU update takes a free node (evicting if the map is full)
//!   before it checks the flags or looks for the key: in a full LRU map, replacing an
//!   existing key or a failed BPF_EXIST/BPF_NOEXIST update can evict another element.
//! - Hash maps and LPM tries are always preallocated, keys included, as the kernel's
//!   preallocated htab elements (BPF_F_NO_PREALLOC is accepted where
//!   the kernel accepts it, and ignored). Replacing a HASH or LPM
//!   value installs a new slot and frees the old one (a program holding the old pointer
//!   keeps reading the old value until the slot is reused); per-CPU and DEVMAP values are
//!   updated in place.
//! - Program-side lookups of hash maps, LPM tries, HASH_OF_MAPS and DEVMAP/CPUMAP/
//!   XSKMAP take no lock (index.rs explains the mechanism); updates and deletes take a
//!   per-map lock (the kernel: a per-bucket lock). The LPM trie is a hash index per
//!   prefix length in use, not the kernel's trie (same results). The slot tables of
//!   PROG_ARRAY, PERF_EVENT_ARRAY and ARRAY_OF_MAPS are still guarded by a mutex.
//!   Values are read and written without locks through the stable pointers.
//! - Map names longer than 15 bytes are truncated as libbpf does before bpf(2).
//! - A single map may not allocate more than 1 GiB (ENOMEM, as a failed allocation).

// Only the storage block (raw, stable value memory) uses unsafe code.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

mod array;
mod hash;
mod index;
mod lpm;
mod queue;
mod ringbuf;
#[allow(unsafe_code)]
mod storage;
mod syscall;

pub use array::NO_HINT;

/// Positive errno value (libc numbering).
pub type Errno = i32;

/// errno values the maps return (x86_64 Linux numbering).
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const E2BIG: i32 = 7;
    pub const EBADF: i32 = 9;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const EOVERFLOW: i32 = 75;
    pub const EOPNOTSUPP: i32 = 95;
    /// Kernel-internal "not supported" that leaks to userspace (bpftool: "Unknown error 524").
    pub const ENOTSUPP: i32 = 524;
}
use errno::*;

/// Update flags (include/uapi/linux/bpf.h).
pub const BPF_ANY: u64 = 0;
pub const BPF_NOEXIST: u64 = 1;
pub const BPF_EXIST: u64 = 2;
pub const BPF_F_LOCK: u64 = 4;

/// Map creation flags (include/uapi/linux/bpf.h).
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
pub const BPF_F_NUMA_NODE: u32 = 1 << 2;
pub const BPF_F_RDONLY: u32 = 1 << 3;
pub const BPF_F_WRONLY: u32 = 1 << 4;
pub const BPF_F_ZERO_SEED: u32 = 1 << 6;
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
pub const BPF_F_WRONLY_PROG: u32 = 1 << 8;
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
pub const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;
pub const BPF_F_INNER_MAP: u32 = 1 << 12;
/// BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG
pub const BPF_F_ACCESS_MASK: u32 =
    BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

/// Ring buffer flags and query selectors.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
pub const BPF_RB_AVAIL_DATA: u64 = 0;
pub const BPF_RB_RING_SIZE: u64 = 1;
pub const BPF_RB_CONS_POS: u64 = 2;
pub const BPF_RB_PROD_POS: u64 = 3;
/// Ring buffer record header bits (include/uapi/linux/bpf.h).
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
pub const BPF_RINGBUF_HDR_SZ: u32 = 8;

/// CONFIG_NR_CPUS of the reference kernel on this machine
/// (/sys/devices/system/cpu/kernel_max = 255): the CPUMAP max_entries limit.
pub const NR_CPUS: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    ProgArray = 3,
    PerfEventArray = 4,
    PercpuHash = 5,
    PercpuArray = 6,
    LruHash = 9,
    LruPercpuHash = 10,
    LpmTrie = 11,
    ArrayOfMaps = 12,
    HashOfMaps = 13,
    Devmap = 14,
    Cpumap = 16,
    Xskmap = 17,
    Queue = 22,
    Stack = 23,
    DevmapHash = 25,
    Ringbuf = 27,
}

impl MapType {
    const ALL: [MapType; 18] = [
        MapType::Hash,
        MapType::Array,
        MapType::ProgArray,
        MapType::PerfEventArray,
        MapType::PercpuHash,
        MapType::PercpuArray,
        MapType::LruHash,
        MapType::LruPercpuHash,
        MapType::LpmTrie,
        MapType::ArrayOfMaps,
        MapType::HashOfMaps,
        MapType::Devmap,
        MapType::Cpumap,
        MapType::Xskmap,
        MapType::Queue,
        MapType::Stack,
        MapType::DevmapHash,
        MapType::Ringbuf,
    ];

    /// The map type for a kernel `enum bpf_map_type` value, if skiff supports it.
    pub fn from_kernel(id: u32) -> Option<MapType> {
        Self::ALL.into_iter().find(|t| t.kernel_id() == id)
    }

    pub fn kernel_id(self) -> u32 {
        self as u32
    }

    /// The name bpftool prints.
    pub fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::ProgArray => "prog_array",
            MapType::PerfEventArray => "perf_event_array",
            MapType::PercpuHash => "percpu_hash",
            MapType::PercpuArray => "percpu_array",
            MapType::LruHash => "lru_hash",
            MapType::LruPercpuHash => "lru_percpu_hash",
            MapType::LpmTrie => "lpm_trie",
            MapType::ArrayOfMaps => "array_of_maps",
            MapType::HashOfMaps => "hash_of_maps",
            MapType::Devmap => "devmap",
            MapType::Cpumap => "cpumap",
            MapType::Xskmap => "xskmap",
            MapType::Queue => "queue",
            MapType::Stack => "stack",
            MapType::DevmapHash => "devmap_hash",
            MapType::Ringbuf => "ringbuf",
        }
    }

    /// The map type for a bpftool name.
    pub fn from_name(name: &str) -> Option<MapType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapAttr {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: String,
    /// Template of the inner maps, for ARRAY_OF_MAPS / HASH_OF_MAPS (the kernel's
    /// `inner_map_fd`).
    pub inner: Option<Box<MapAttr>>,
}

impl MapAttr {
    /// An attribute set with no flags, no name and no inner template.
    pub fn new(map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapAttr {
        MapAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags: 0,
            name: String::new(),
            inner: None,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{msg}")]
pub struct MapError {
    pub errno: Errno,
    pub msg: String,
}

/// Where an array map's values live: element `i` of CPU `c` is at
/// `base + i * index_stride + c * cpu_stride` (`c` is 0 unless `percpu`).
#[derive(Clone, Copy, Debug)]
pub struct ArrayLayout {
    pub base: usize,
    pub index_stride: usize,
    pub cpu_stride: usize,
    pub max_entries: u32,
    pub percpu: bool,
    /// Lookups from CPUs at or above this fail.
    pub possible_cpus: usize,
}

/// A contiguous block of map storage the running program may access directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: usize,
    pub len: usize,
    pub writable: bool,
}

/// A value as the syscall side returns it (lookups and dumps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapValue {
    Single(Vec<u8>),
    /// One value per possible CPU, each `value_size` bytes (the syscall buffer pads each
    /// to 8 bytes: see `Map::sys_lookup_raw`).
    PerCpu(Vec<Vec<u8>>),
    /// Inner map id.
    Map(u32),
    /// Program id.
    Prog(u32),
}

pub(crate) fn round_up8(n: usize) -> Option<usize> {
    n.checked_add(7).map(|v| v & !7)
}

pub(crate) fn key_u32(key: &[u8]) -> Option<u32> {
    let b: [u8; 4] = key.try_into().ok()?;
    Some(u32::from_ne_bytes(b))
}

enum Kind {
    Array(array::ArrayMap),
    Fd(array::FdArray),
    Dev(array::ValArray),
    Hash(hash::HashTable),
    HashOfMaps(hash::MapHash),
    Lpm(lpm::LpmTrie),
    Queue(queue::QueueStack),
    Ringbuf(ringbuf::RingBuf),
}

/// A BPF map. Send + Sync; shared as `Arc<Map>` between the control plane and workers.
pub struct Map {
    id: u32,
    attr: MapAttr,
    possible_cpus: usize,
    frozen: AtomicBool,
    kind: Kind,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static REGISTRY: parking_lot::Mutex<BTreeMap<u32, Weak<Map>>> =
    parking_lot::Mutex::new(BTreeMap::new());

fn err(errno: Errno, attr: &MapAttr, what: String) -> MapError {
    MapError {
        errno,
        msg: format!(
            "map create ({} '{}'): {what}",
            attr.map_type.name(),
            attr.name
        ),
    }
}

/// kernel/bpf/syscall.c: bpf_obj_name_cpy (names are alnum, '_' or '.'); names longer than
/// BPF_OBJ_NAME_LEN - 1 are cut as libbpf does before calling bpf(2).
fn check_name(attr: &mut MapAttr) -> Result<(), MapError> {
    if let Some(bad) = attr
        .name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
    {
        return Err(err(
            EINVAL,
            attr,
            format!(
                "name has character {bad:?}; only [A-Za-z0-9_.] are allowed (bpf_obj_name_cpy)"
            ),
        ));
    }
    attr.name.truncate(15);
    Ok(())
}

/// Validation shared with templates of inner maps: everything but allocation.
/// Mirrors kernel/bpf/syscall.c: map_create and each type's map_alloc_check / map_alloc.
fn check_attr(attr: &mut MapAttr, possible_cpus: usize) -> Result<(), MapError> {
    let f = attr.map_flags;
    // kernel/bpf/syscall.c: bpf_get_file_flag
    if f & BPF_F_RDONLY != 0 && f & BPF_F_WRONLY != 0 {
        return Err(err(
            EINVAL,
            attr,
            "BPF_F_RDONLY and BPF_F_WRONLY together".into(),
        ));
    }
    // include/linux/bpf.h: bpf_map_flags_access_ok
    let access_ok =
        f & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG);
    let unknown = |mask: u32| f & !mask;
    let numa = f & BPF_F_NUMA_NODE != 0;
    let t = attr.map_type;
    let (k, v, n) = (attr.key_size, attr.value_size, attr.max_entries);
    match t {
        MapType::Array
        | MapType::PercpuArray
        | MapType::ProgArray
        | MapType::PerfEventArray
        | MapType::ArrayOfMaps => {
            // kernel/bpf/arraymap.c: fd_array_map_alloc_check
            if matches!(
                t,
                MapType::ProgArray | MapType::PerfEventArray | MapType::ArrayOfMaps
            ) && v != 4
            {
                return Err(err(
                    EINVAL,
                    attr,
                    format!("value_size {v} must be 4 (fd_array_map_alloc_check)"),
                ));
            }
            // kernel/bpf/arraymap.c: array_map_alloc_check
            let mask = BPF_F_NUMA_NODE
                | BPF_F_MMAPABLE
                | BPF_F_ACCESS_MASK
                | BPF_F_PRESERVE_ELEMS
                | BPF_F_INNER_MAP;
            let percpu = t == MapType::PercpuArray;
            if n == 0 || k != 4 || v == 0 || unknown(mask) != 0 || !access_ok || (percpu && numa) {
                return Err(err(EINVAL, attr, format!(
                    "array maps need key_size 4 (got {k}), value_size > 0 (got {v}), max_entries > 0 (got {n}), flags within {mask:#x} (got {f:#x}) (array_map_alloc_check)")));
            }
            if t != MapType::Array && f & (BPF_F_MMAPABLE | BPF_F_INNER_MAP) != 0 {
                return Err(err(
                    EINVAL,
                    attr,
                    "BPF_F_MMAPABLE/BPF_F_INNER_MAP only for array maps (array_map_alloc_check)"
                        .into(),
                ));
            }
            if t != MapType::PerfEventArray && f & BPF_F_PRESERVE_ELEMS != 0 {
                return Err(err(
                    EINVAL,
                    attr,
                    "BPF_F_PRESERVE_ELEMS only for perf_event_array (array_map_alloc_check)".into(),
                ));
            }
            if v > i32::MAX as u32 {
                return Err(err(E2BIG, attr, format!("value_size {v} > INT_MAX")));
            }
            if percpu && round_up8(v as usize).unwrap_or(usize::MAX) > 32768 {
                return Err(err(
                    E2BIG,
                    attr,
                    format!("per-CPU value_size {v} over PCPU_MIN_UNIT_SIZE 32768"),
                ));
            }
        }
        MapType::Hash
        | MapType::PercpuHash
        | MapType::LruHash
        | MapType::LruPercpuHash
        | MapType::HashOfMaps => {
            // kernel/bpf/hashtab.c: fd_htab_map_alloc_check
            if t == MapType::HashOfMaps && v != 4 {
                return Err(err(
                    EINVAL,
                    attr,
                    format!("value_size {v} must be 4 (fd_htab_map_alloc_check)"),
                ));
            }
            // kernel/bpf/hashtab.c: htab_map_alloc_check
            let percpu = t.is_percpu();
            let lru = matches!(t, MapType::LruHash | MapType::LruPercpuHash);
            let prealloc = f & BPF_F_NO_PREALLOC == 0;
            let percpu_lru = f & BPF_F_NO_COMMON_LRU != 0;
            let mask = BPF_F_NO_PREALLOC
                | BPF_F_NO_COMMON_LRU
                | BPF_F_NUMA_NODE
                | BPF_F_ACCESS_MASK
                | BPF_F_ZERO_SEED;
            if unknown(mask) != 0 || !access_ok {
                return Err(err(
                    EINVAL,
                    attr,
                    format!("flags {f:#x} not within {mask:#x} (htab_map_alloc_check)"),
                ));
            }
            if !lru && percpu_lru {
                return Err(err(
                    EINVAL,
                    attr,
                    "BPF_F_NO_COMMON_LRU only for LRU maps (htab_map_alloc_check)".into(),
                ));
            }
            if lru && !prealloc {
                return Err(err(
                    ENOTSUPP,
                    attr,
                    "LRU maps cannot be BPF_F_NO_PREALLOC (htab_map_alloc_check)".into(),
                ));
            }
            if numa && (percpu || percpu_lru) {
                return Err(err(
                    EINVAL,
                    attr,
                    "BPF_F_NUMA_NODE with per-CPU storage (htab_map_alloc_check)".into(),
                ));
            }
            if n == 0 || k == 0 || v == 0 {
                return Err(err(EINVAL, attr, format!(
                    "hash maps need key_size > 0 (got {k}), value_size > 0 (got {v}), max_entries > 0 (got {n}) (htab_map_alloc_check)")));
            }
            // KMALLOC_MAX_SIZE (4 MiB on x86_64) - sizeof(struct htab_elem) (48)
            if k as u64 + v as u64 >= (4 << 20) - 48 {
                return Err(err(
                    E2BIG,
                    attr,
                    format!("key_size {k} + value_size {v} too big (htab_map_alloc_check)"),
                ));
            }
            if percpu && round_up8(v as usize).unwrap_or(usize::MAX) > 32768 {
                return Err(err(
                    E2BIG,
                    attr,
                    format!("per-CPU value_size {v} over PCPU_MIN_UNIT_SIZE 32768"),
                ));
            }
            // kernel/bpf/hashtab.c: htab_map_alloc
            if percpu_lru {
                let c = possible_cpus as u64;
                let up = (n as u64).div_ceil(c) * c;
                attr.max_entries = if up > u32::MAX as u64 {
                    (n as u64 / c * c) as u32
                } else {
                    up as u32
                };
            }
            let n = attr.max_entries;
            if n > 1 << 31 || (n as u64).next_power_of_two() > u32::MAX as u64 / 16 {
                return Err(err(
                    E2BIG,
                    attr,
                    format!("max_entries {n} too big for the bucket array (htab_map_alloc)"),
                ));
            }
        }
        MapType::LpmTrie => {
            // kernel/bpf/lpm_trie.c: trie_alloc
            let mask = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK;
            if n == 0
                || f & BPF_F_NO_PREALLOC == 0
                || unknown(mask) != 0
                || !access_ok
                || !(5..=260).contains(&k)
                || !(1..=(4 << 20) - 256 - 40).contains(&v)
            {
                return Err(err(EINVAL, attr, format!(
                    "lpm_trie needs BPF_F_NO_PREALLOC (flags {f:#x}), key_size 4 + 1..=256 data bytes (got {k}), value_size > 0 (got {v}), max_entries > 0 (got {n}) (trie_alloc)")));
            }
        }
        MapType::Queue | MapType::Stack => {
            // kernel/bpf/queue_stack_maps.c: queue_stack_map_alloc_check
            let mask = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK;
            if n == 0 || k != 0 || v == 0 || unknown(mask) != 0 || !access_ok {
                return Err(err(EINVAL, attr, format!(
                    "queue/stack need key_size 0 (got {k}), value_size > 0 (got {v}), max_entries > 0 (got {n}), flags within {mask:#x} (got {f:#x}) (queue_stack_map_alloc_check)")));
            }
            if v > 4 << 20 {
                return Err(err(
                    E2BIG,
                    attr,
                    format!("value_size {v} > KMALLOC_MAX_SIZE"),
                ));
            }
        }
        MapType::Ringbuf => {
            // kernel/bpf/ringbuf.c: ringbuf_map_alloc
            if unknown(BPF_F_NUMA_NODE) != 0 {
                return Err(err(
                    EINVAL,
                    attr,
                    format!("flags {f:#x}: only BPF_F_NUMA_NODE allowed (ringbuf_map_alloc)"),
                ));
            }
            if k != 0 || v != 0 || !n.is_power_of_two() || n % 4096 != 0 {
                return Err(err(EINVAL, attr, format!(
                    "ringbuf needs key_size 0 (got {k}), value_size 0 (got {v}), max_entries a power of 2 and a multiple of 4096 (got {n}) (ringbuf_map_alloc)")));
            }
        }
        MapType::Devmap | MapType::DevmapHash => {
            // kernel/bpf/devmap.c: dev_map_alloc_check / dev_map_init_map
            let mask = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY;
            if n == 0 || k != 4 || (v != 4 && v != 8) || unknown(mask) != 0 {
                return Err(err(EINVAL, attr, format!(
                    "devmap needs key_size 4 (got {k}), value_size 4 or 8 (got {v}), max_entries > 0 (got {n}), flags within {mask:#x} (got {f:#x}) (dev_map_alloc_check)")));
            }
            if t == MapType::DevmapHash && n > 1 << 31 {
                return Err(err(
                    EINVAL,
                    attr,
                    format!("max_entries {n} > 2^31 (dev_map_init_map)"),
                ));
            }
            // Lookups return a pointer to the device entry: the kernel makes it read-only for programs.
            attr.map_flags |= BPF_F_RDONLY_PROG;
        }
        MapType::Cpumap => {
            // kernel/bpf/cpumap.c: cpu_map_alloc
            if n == 0 || k != 4 || (v != 4 && v != 8) || unknown(BPF_F_NUMA_NODE) != 0 {
                return Err(err(EINVAL, attr, format!(
                    "cpumap needs key_size 4 (got {k}), value_size 4 or 8 (got {v}), max_entries > 0 (got {n}), flags within BPF_F_NUMA_NODE (got {f:#x}) (cpu_map_alloc)")));
            }
            if n > NR_CPUS {
                return Err(err(
                    E2BIG,
                    attr,
                    format!("max_entries {n} > NR_CPUS {NR_CPUS} (cpu_map_alloc)"),
                ));
            }
        }
        MapType::Xskmap => {
            // net/xdp/xskmap.c: xsk_map_alloc
            let mask = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY;
            if n == 0 || k != 4 || v != 4 || unknown(mask) != 0 {
                return Err(err(EINVAL, attr, format!(
                    "xskmap needs key_size 4 (got {k}), value_size 4 (got {v}), max_entries > 0 (got {n}), flags within {mask:#x} (got {f:#x}) (xsk_map_alloc)")));
            }
        }
    }
    // kernel/bpf/map_in_map.c: bpf_map_meta_alloc (the template stands for inner_map_fd)
    if matches!(t, MapType::ArrayOfMaps | MapType::HashOfMaps) {
        let Some(inner) = attr.inner.as_mut() else {
            return Err(err(
                EBADF,
                attr,
                "map-in-map needs an inner map template (inner_map_fd)".into(),
            ));
        };
        if matches!(inner.map_type, MapType::ArrayOfMaps | MapType::HashOfMaps) {
            let msg = "inner map may not itself be a map-in-map (bpf_map_meta_alloc)".to_string();
            return Err(err(EINVAL, attr, msg));
        }
        if inner.map_type == MapType::ProgArray {
            let msg = "prog_array cannot be an inner map (no map_meta_equal)".to_string();
            return Err(err(ENOTSUPP, attr, msg));
        }
        check_attr(inner, possible_cpus).map_err(|e| MapError {
            errno: e.errno,
            msg: format!("inner map template: {}", e.msg),
        })?;
    } else if attr.inner.is_some() {
        // kernel/bpf/syscall.c: map_create takes inner_map_fd only for map-in-map types
        // (others have it zero in CHECK_ATTR terms); skiff ignores nothing silently.
        return Err(err(
            EINVAL,
            attr,
            "inner map template given for a type that is not map-in-map".into(),
        ));
    }
    Ok(())
}

impl Map {
    /// Validation as the kernel's map_create / map_alloc_check / *_map_alloc (EINVAL etc.),
    /// then allocation of all storage.
    pub fn create(mut attr: MapAttr, possible_cpus: usize) -> Result<Arc<Map>, MapError> {
        if possible_cpus == 0 {
            return Err(err(
                EINVAL,
                &attr,
                "possible_cpus must be at least 1".into(),
            ));
        }
        check_name(&mut attr)?;
        check_attr(&mut attr, possible_cpus)?;
        let nomem = |a: &MapAttr| {
            err(
                ENOMEM,
                a,
                "cannot allocate map storage (skiff limit 1 GiB per map)".into(),
            )
        };
        let kind = match attr.map_type {
            MapType::Array | MapType::PercpuArray => {
                Kind::Array(array::ArrayMap::new(&attr, possible_cpus).ok_or_else(|| nomem(&attr))?)
            }
            MapType::ProgArray | MapType::PerfEventArray | MapType::ArrayOfMaps => {
                Kind::Fd(array::FdArray::new(&attr).ok_or_else(|| nomem(&attr))?)
            }
            MapType::Devmap | MapType::Cpumap | MapType::Xskmap => {
                Kind::Dev(array::ValArray::new(&attr).ok_or_else(|| nomem(&attr))?)
            }
            MapType::Hash
            | MapType::PercpuHash
            | MapType::LruHash
            | MapType::LruPercpuHash
            | MapType::DevmapHash => {
                Kind::Hash(hash::HashTable::new(&attr, possible_cpus).ok_or_else(|| nomem(&attr))?)
            }
            MapType::HashOfMaps => Kind::HashOfMaps(hash::MapHash::new(&attr)),
            MapType::LpmTrie => Kind::Lpm(lpm::LpmTrie::new(&attr).ok_or_else(|| nomem(&attr))?),
            MapType::Queue | MapType::Stack => {
                Kind::Queue(queue::QueueStack::new(&attr).ok_or_else(|| nomem(&attr))?)
            }
            MapType::Ringbuf => {
                Kind::Ringbuf(ringbuf::RingBuf::new(&attr).ok_or_else(|| nomem(&attr))?)
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let map = Arc::new(Map {
            id,
            attr,
            possible_cpus,
            frozen: AtomicBool::new(false),
            kind,
        });
        REGISTRY.lock().insert(id, Arc::downgrade(&map));
        Ok(map)
    }

    /// The live map with this id (like BPF_MAP_GET_FD_BY_ID).
    pub fn by_id(id: u32) -> Option<Arc<Map>> {
        REGISTRY.lock().get(&id).and_then(Weak::upgrade)
    }

    /// The attributes after the kernel's adjustments (DEVMAP gets BPF_F_RDONLY_PROG,
    /// BPF_F_NO_COMMON_LRU rounds max_entries to a multiple of the CPUs, names are cut
    /// to 15 bytes).
    pub fn attr(&self) -> &MapAttr {
        &self.attr
    }

    /// Unique per process, from 1, like kernel map ids.
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn possible_cpus(&self) -> usize {
        self.possible_cpus
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    fn prog_may_write(&self) -> Result<(), Errno> {
        // The verifier refuses writes into BPF_F_RDONLY_PROG maps at load time
        // (kernel/bpf/verifier.c: check_map_access_type, "write into map forbidden").
        if self.attr.map_flags & BPF_F_RDONLY_PROG != 0 {
            Err(EACCES)
        } else {
            Ok(())
        }
    }

    /// bpf_map_lookup_elem from a program. Pointers point into storage allocated at
    /// create time (stable for the map's life). `cpu` is the current worker (per-CPU maps
    /// return that CPU's copy; a cpu >= possible_cpus gives None). Map-in-map, PROG_ARRAY,
    /// PERF_EVENT_ARRAY, CPUMAP, queue/stack and ringbuf give None: use `lookup_map`,
    /// `lookup_prog`, `perf_event_slot`, `peek` (the verifier forbids the others).
    /// XSKMAP returns a pointer to the slot's socket id (the kernel: the `xdp_sock`).
    #[inline]
    pub fn lookup(&self, key: &[u8], cpu: usize) -> Option<*mut u8> {
        if key.len() != self.attr.key_size as usize || cpu >= self.possible_cpus {
            return None;
        }
        match &self.kind {
            Kind::Array(a) => a.lookup(key, cpu),
            Kind::Dev(d) => {
                if self.attr.map_type == MapType::Cpumap {
                    return None;
                }
                d.lookup(key)
            }
            Kind::Hash(h) => h.lookup(key, cpu, true),
            Kind::Lpm(l) => l.lookup(key),
            Kind::Fd(_) | Kind::HashOfMaps(_) | Kind::Queue(_) | Kind::Ringbuf(_) => None,
        }
    }

    /// Whether bpf_redirect_map finds a target at `key` (__dev_map_lookup_elem,
    /// __dev_map_hash_lookup_elem, __cpu_map_lookup_elem, __xsk_map_lookup_elem):
    /// a present DEVMAP / CPUMAP / XSKMAP slot, a DEVMAP_HASH element. The
    /// redirect asks nothing else of the entry, so this reads no value.
    #[inline]
    pub fn has_redirect_target(&self, key: u32) -> bool {
        match (&self.kind, self.attr.map_type) {
            (Kind::Dev(d), MapType::Devmap | MapType::Cpumap | MapType::Xskmap) => {
                d.is_present(key)
            }
            (Kind::Hash(h), MapType::DevmapHash) => h.contains_u32(key),
            _ => false,
        }
    }

    /// A redirect target without a lock or an allocation (the datapath's
    /// __dev_map_lookup_elem / __dev_map_hash_lookup_elem / __cpu_map_lookup_elem):
    /// DEVMAP / DEVMAP_HASH give (ifindex, entry program id) (`struct bpf_devmap_val`),
    /// CPUMAP (qsize, program id) (`struct bpf_cpumap_val`); the id is 0 when the
    /// value is 4 bytes. None for an empty slot, a missing key or another map type.
    pub fn dev_entry(&self, key: u32) -> Option<(u32, u32)> {
        let entry = match (&self.kind, self.attr.map_type) {
            (Kind::Dev(d), MapType::Devmap | MapType::Cpumap) => d.entry(key),
            (Kind::Hash(h), MapType::DevmapHash) => h.dev_entry(key),
            _ => None,
        };
        let short = self.attr.value_size < 8;
        entry.map(|(first, prog)| (first, if short { 0 } else { prog }))
    }

    /// Every entry of a DEVMAP (index order) or DEVMAP_HASH (key order) as
    /// `f(key, ifindex, program id)`, without a lock or an allocation, as
    /// dev_map_enqueue_multi walks them for a broadcast redirect. Nothing for other
    /// map types.
    pub fn for_each_dev_entry(&self, mut f: impl FnMut(u32, u32, u32)) {
        let short = self.attr.value_size < 8;
        let mut each = |key, ifindex, prog| f(key, ifindex, if short { 0 } else { prog });
        match (&self.kind, self.attr.map_type) {
            (Kind::Dev(d), MapType::Devmap) => d.for_each(&mut each),
            (Kind::Hash(h), MapType::DevmapHash) => h.for_each_dev_entry(&mut each),
            _ => {}
        }
    }

    /// bpf_map_update_elem from a program: per-CPU maps write only `cpu`'s copy (a new
    /// per-CPU hash element gets the other CPUs' copies zeroed, as pcpu_init_value).
    /// Types whose update the verifier refuses for programs give EINVAL; maps created
    /// BPF_F_RDONLY_PROG give EACCES.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64, cpu: usize) -> Result<(), Errno> {
        self.prog_may_write()?;
        if key.len() != self.attr.key_size as usize || value.len() != self.attr.value_size as usize
        {
            return Err(EINVAL);
        }
        if cpu >= self.possible_cpus {
            return Err(EINVAL);
        }
        match &self.kind {
            Kind::Array(a) => a.update(key, hash::Src::Prog { value, cpu }, flags),
            Kind::Hash(h) if self.attr.map_type != MapType::DevmapHash => {
                h.update(key, hash::Src::Prog { value, cpu }, flags)
            }
            Kind::Lpm(l) => l.update(key, value, flags),
            _ => Err(EINVAL),
        }
    }

    /// bpf_map_delete_elem from a program (hash maps and LPM tries; arrays give EINVAL).
    pub fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        self.prog_may_write()?;
        if key.len() != self.attr.key_size as usize {
            return Err(EINVAL);
        }
        match &self.kind {
            Kind::Hash(h) if self.attr.map_type != MapType::DevmapHash => h.delete(key),
            Kind::Lpm(l) => l.delete(key),
            _ => Err(EINVAL),
        }
    }

    /// bpf_map_push_elem (queue/stack). BPF_EXIST on a full map overwrites the oldest.
    pub fn push(&self, value: &[u8], flags: u64) -> Result<(), Errno> {
        self.prog_may_write()?;
        match &self.kind {
            Kind::Queue(q) => q.push(value, flags),
            _ => Err(EINVAL),
        }
    }

    /// bpf_map_pop_elem (queue/stack): ENOENT when empty; `out` must be value_size bytes.
    pub fn pop(&self, out: &mut [u8]) -> Result<(), Errno> {
        self.prog_may_write()?;
        match &self.kind {
            Kind::Queue(q) => q.take(out, true),
            _ => Err(EINVAL),
        }
    }

    /// bpf_map_peek_elem (queue/stack): ENOENT when empty.
    pub fn peek(&self, out: &mut [u8]) -> Result<(), Errno> {
        match &self.kind {
            Kind::Queue(q) => q.take(out, false),
            _ => Err(EINVAL),
        }
    }

    /// The inner map at `key` of an ARRAY_OF_MAPS / HASH_OF_MAPS.
    pub fn lookup_map(&self, key: &[u8]) -> Option<Arc<Map>> {
        match &self.kind {
            Kind::Fd(f) => f.get_map(key),
            Kind::HashOfMaps(h) => h.get(key),
            _ => None,
        }
    }

    /// The program id at `index` of a PROG_ARRAY (for bpf_tail_call).
    pub fn lookup_prog(&self, index: u32) -> Option<u32> {
        match &self.kind {
            Kind::Fd(f) => f.get_prog(index),
            _ => None,
        }
    }

    /// The PROG_ARRAY slot `index` as (program id, hint): the hint is what an
    /// engine recorded with `hint_prog` for this program in this slot
    /// (`NO_HINT` until then; every update clears it), so a tail call
    /// finds its target without a search by id, as the kernel's slot holds
    /// the program itself (kernel/bpf/arraymap.c: prog_fd_array_get_ptr).
    #[inline]
    pub fn lookup_prog_hinted(&self, index: u32) -> Option<(u32, u32)> {
        match &self.kind {
            Kind::Fd(f) => f.prog_slot(index),
            _ => None,
        }
    }

    /// PROG_ARRAY: every slot's word as `lookup_prog_hinted` reads it (the
    /// program id in the low 32 bits, 0: empty; the hint above), for native
    /// code that reads a slot itself (a JIT's tail call, as the kernel's JIT
    /// reads `array->ptrs[index]`). The words never move while the map lives.
    pub fn prog_slot_words(&self) -> Option<&[std::sync::atomic::AtomicU64]> {
        match &self.kind {
            Kind::Fd(f) => f.prog_words(),
            _ => None,
        }
    }

    /// Record where program `id` of PROG_ARRAY slot `index` is found (an
    /// engine's own index); ignored when the slot holds another program or
    /// has a hint already.
    pub fn hint_prog(&self, index: u32, id: u32, hint: u32) {
        if let Kind::Fd(f) = &self.kind {
            f.set_prog_hint(index, id, hint);
        }
    }

    /// Whether the PERF_EVENT_ARRAY slot `index` holds an event.
    pub fn perf_event_slot(&self, index: u32) -> bool {
        match &self.kind {
            Kind::Fd(f) if self.attr.map_type == MapType::PerfEventArray => f.perf_present(index),
            _ => false,
        }
    }

    /// Set or clear a PERF_EVENT_ARRAY slot (`event` is an opaque id; the kernel takes a
    /// perf event fd). E2BIG out of range, EINVAL on other map types; clearing an empty
    /// slot gives ENOENT as the kernel's delete.
    pub fn set_perf_event_slot(&self, index: u32, event: Option<u32>) -> Result<(), Errno> {
        let Kind::Fd(f) = &self.kind else {
            return Err(EINVAL);
        };
        if self.attr.map_type != MapType::PerfEventArray {
            return Err(EINVAL);
        }
        let key = index.to_ne_bytes();
        match event {
            Some(ev) => f.update(&key, array::FdSlot::Perf(ev), BPF_ANY),
            None => f.delete(&key),
        }
    }

    /// bpf_ringbuf_reserve: a pointer to `size` writable bytes in the data area, or None
    /// when flags != 0, the record is too big, or there is not enough free space.
    pub fn ringbuf_reserve(&self, size: u64, flags: u64) -> Option<*mut u8> {
        match &self.kind {
            Kind::Ringbuf(r) if flags == 0 => r.reserve(size),
            _ => None,
        }
    }

    /// bpf_ringbuf_submit / bpf_ringbuf_discard. EINVAL if `sample` is not an outstanding
    /// reservation of this ring buffer (the verifier guarantees it is, in the kernel).
    pub fn ringbuf_submit(&self, sample: *mut u8, discard: bool, flags: u64) -> Result<(), Errno> {
        match &self.kind {
            Kind::Ringbuf(r) => r.commit(sample, discard, flags),
            _ => Err(EINVAL),
        }
    }

    /// bpf_ringbuf_output: EINVAL for unknown flags, EAGAIN when there is no room.
    pub fn ringbuf_output(&self, data: &[u8], flags: u64) -> Result<(), Errno> {
        match &self.kind {
            Kind::Ringbuf(r) => r.output(data, flags),
            _ => Err(EINVAL),
        }
    }

    /// bpf_ringbuf_query: BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, BPF_RB_CONS_POS,
    /// BPF_RB_PROD_POS; 0 for anything else.
    pub fn ringbuf_query(&self, flags: u64) -> u64 {
        match &self.kind {
            Kind::Ringbuf(r) => r.query(flags),
            _ => 0,
        }
    }

    /// User-side reader (libbpf ring_buffer__consume): committed, non-discarded records
    /// in order; stops at the first record still being written; advances the consumer.
    pub fn ringbuf_consume(&self) -> Vec<Vec<u8>> {
        match &self.kind {
            Kind::Ringbuf(r) => r.consume(),
            _ => Vec::new(),
        }
    }

    /// Storage blocks the program may touch through pointers from lookup/reserve.
    /// writable=false for BPF_F_RDONLY_PROG maps and DEVMAP/DEVMAP_HASH/CPUMAP/XSKMAP.
    /// ARRAY and PERCPU_ARRAY storage layout, for a JIT that computes value
    /// addresses itself as the kernel's array_map_gen_lookup does.
    pub fn array_layout(&self) -> Option<ArrayLayout> {
        match &self.kind {
            Kind::Array(a) => Some(a.layout(self.possible_cpus)),
            _ => None,
        }
    }

    pub fn regions(&self) -> Vec<Region> {
        let writable = self.attr.map_flags & BPF_F_RDONLY_PROG == 0
            && !matches!(
                self.attr.map_type,
                MapType::Devmap | MapType::DevmapHash | MapType::Cpumap | MapType::Xskmap
            );
        let block = match &self.kind {
            Kind::Array(a) => Some(a.block()),
            Kind::Dev(d) => Some(d.block()),
            Kind::Hash(h) => Some(h.block()),
            Kind::Lpm(l) => Some(l.block()),
            Kind::Ringbuf(r) => Some(r.block()),
            Kind::Fd(_) | Kind::HashOfMaps(_) | Kind::Queue(_) => None,
        };
        block
            .map(|b| Region {
                start: b.base(),
                len: b.len(),
                writable,
            })
            .into_iter()
            .collect()
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let mut reg = REGISTRY.lock();
        if reg.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            reg.remove(&self.id);
        }
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("id", &self.id)
            .field("attr", &self.attr)
            .field("possible_cpus", &self.possible_cpus)
            .field("frozen", &self.is_frozen())
            .finish()
    }
}
