//! The real kernel as skiff's oracle: loads a parsed [`skiff_object::Object`] with raw
//! bpf(2) syscalls (maps, global data, programs with `fd_array`, initial slots), runs
//! programs with BPF_PROG_TEST_RUN and dumps maps, so results can be compared with skiff.
#![deny(unsafe_code)]

pub mod clang;
pub mod live;
pub mod mask;
pub mod netns;
pub mod refusals;
pub mod sys;
#[cfg(feature = "testpkt")]
pub mod testpkt;

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use skiff_object::{MapOrigin, MapSpec, Object, SlotInit};
use sys::Attr;

/// `enum bpf_map_type` values this crate treats specially.
pub mod map_type {
    pub const HASH: u32 = 1;
    pub const ARRAY: u32 = 2;
    pub const PROG_ARRAY: u32 = 3;
    pub const PERF_EVENT_ARRAY: u32 = 4;
    pub const PERCPU_HASH: u32 = 5;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const LRU_HASH: u32 = 9;
    pub const LRU_PERCPU_HASH: u32 = 10;
    pub const LPM_TRIE: u32 = 11;
    pub const ARRAY_OF_MAPS: u32 = 12;
    pub const HASH_OF_MAPS: u32 = 13;
    pub const DEVMAP: u32 = 14;
    pub const CPUMAP: u32 = 16;
    pub const XSKMAP: u32 = 17;
    pub const PERCPU_CGROUP_STORAGE: u32 = 21;
    pub const QUEUE: u32 = 22;
    pub const STACK: u32 = 23;
    pub const DEVMAP_HASH: u32 = 25;
    pub const RINGBUF: u32 = 27;

    /// Map types whose syscall value is one slot per possible CPU.
    pub fn is_percpu(t: u32) -> bool {
        matches!(
            t,
            PERCPU_HASH | PERCPU_ARRAY | LRU_PERCPU_HASH | PERCPU_CGROUP_STORAGE
        )
    }
}

// include/uapi/linux/bpf.h
const BPF_F_RDONLY_PROG: u32 = 1 << 7;
const BPF_F_MMAPABLE: u32 = 1 << 10;
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
const BPF_OBJ_NAME_LEN: usize = 16;
const LOG_SIZE: usize = 1 << 20;
const LOG_TAIL: usize = 4000;

/// What went wrong, at which step, with the kernel's errno where there is one.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("creating map `{map}` (type {map_type}): {}", errstr(*.errno))]
    MapCreate {
        map: String,
        map_type: u32,
        errno: i32,
    },
    #[error("initialising global data map `{map}` ({step}): {}", errstr(*.errno))]
    MapInit {
        map: String,
        step: &'static str,
        errno: i32,
    },
    #[error("loading program `{prog}`: {}; verifier log tail:\n{log}", errstr(*.errno))]
    ProgLoad {
        prog: String,
        errno: i32,
        log: String,
    },
    #[error("filling slot {index} of map `{map}` with {target}: {}", errstr(*.errno))]
    SlotFill {
        map: String,
        index: u32,
        target: String,
        errno: i32,
    },
    #[error("{op} on map `{map}`: {}", errstr(*.errno))]
    MapOp {
        op: &'static str,
        map: String,
        errno: i32,
    },
    #[error("test run of program `{prog}`: {}", errstr(*.errno))]
    TestRun { prog: String, errno: i32 },
    #[error("attaching {what}: {}", errstr(*.errno))]
    Attach { what: String, errno: i32 },
    #[error("no map named `{0}` in this object")]
    NoSuchMap(String),
    #[error("no program named `{0}` in this object")]
    NoSuchProg(String),
    #[error("{what}: expected {expected} bytes, got {got}")]
    BadSize {
        what: String,
        expected: usize,
        got: usize,
    },
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("{0}")]
    Io(String),
}

impl KernelError {
    /// The errno the kernel returned, for errors that came from a syscall.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::MapCreate { errno, .. }
            | KernelError::MapInit { errno, .. }
            | KernelError::ProgLoad { errno, .. }
            | KernelError::SlotFill { errno, .. }
            | KernelError::MapOp { errno, .. }
            | KernelError::TestRun { errno, .. }
            | KernelError::Attach { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn errstr(errno: i32) -> String {
    format!(
        "errno {errno} ({})",
        std::io::Error::from_raw_os_error(errno)
    )
}

/// Pin the calling thread to `cpu`, so BPF_PROG_TEST_RUN runs there and per-CPU
/// map values land in that CPU's slot (skiff's single-run commands are CPU 0).
pub fn pin_current_thread(cpu: usize) -> Result<(), KernelError> {
    sys::pin_current_thread(cpu)
        .map_err(|e| KernelError::Io(format!("sched_setaffinity(cpu {cpu}): errno {e}")))
}

/// Lets the calling thread run on every possible CPU again (undoes
/// [`pin_current_thread`]; threads it starts inherit this).
pub fn unpin_current_thread() -> Result<(), KernelError> {
    let n = possible_cpus()?;
    sys::set_affinity(0..n).map_err(|e| {
        KernelError::Io(format!(
            "sched_setaffinity(cpus 0-{}): errno {e}",
            n.saturating_sub(1)
        ))
    })
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. "0-1" or "0,2-3"):
/// the number of slots in a per-CPU map value as the syscall returns it.
pub fn possible_cpus() -> Result<usize, KernelError> {
    let path = "/sys/devices/system/cpu/possible";
    let s = std::fs::read_to_string(path).map_err(|e| KernelError::Io(format!("{path}: {e}")))?;
    parse_cpu_list(s.trim()).ok_or_else(|| KernelError::Io(format!("{path}: cannot parse {s:?}")))
}

fn parse_cpu_list(s: &str) -> Option<usize> {
    // libbpf_num_possible_cpus: highest CPU number + 1.
    let mut max = None;
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let hi = match part.split_once('-') {
            Some((_, hi)) => hi.trim().parse::<usize>().ok()?,
            None => part.trim().parse::<usize>().ok()?,
        };
        max = Some(max.map_or(hi, |m: usize| m.max(hi)));
    }
    max.and_then(|m| m.checked_add(1))
}

/// Err(reason) when this process cannot use bpf(): not root, or the syscall refused
/// (EPERM, ENOSYS). Probes by creating (and closing) a one-element array map.
pub fn available() -> Result<(), String> {
    let mut a = Attr::new();
    a.put_u32(0, map_type::ARRAY);
    a.put_u32(4, 4);
    a.put_u32(8, 4);
    a.put_u32(12, 1);
    match sys::bpf_fd(sys::BPF_MAP_CREATE, &mut a) {
        Ok(_fd) => Ok(()),
        Err(e) => Err(format!("bpf(BPF_MAP_CREATE) refused: {}", errstr(e))),
    }
}

/// A kernel object name: at most 15 bytes (libbpf truncates to BPF_OBJ_NAME_LEN - 1),
/// only the characters the kernel accepts (`bpf_obj_name_cpy`: alnum, '_', '.').
fn obj_name(name: &str) -> [u8; BPF_OBJ_NAME_LEN] {
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    for (o, c) in out.iter_mut().zip(name.bytes().take(BPF_OBJ_NAME_LEN - 1)) {
        *o = if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            c
        } else {
            b'_'
        };
    }
    out
}

struct KMap {
    spec: MapSpec,
    fd: OwnedFd,
}

struct KProg {
    name: String,
    fd: OwnedFd,
}

/// An object loaded into the kernel. Owns every map and program descriptor; dropping it
/// closes them (the kernel frees maps and programs with their last reference).
pub struct KernelObject {
    maps: Vec<KMap>,
    progs: Vec<KProg>,
}

/// Input of one BPF_PROG_TEST_RUN.
#[derive(Clone, Debug)]
pub struct TestRun<'a> {
    pub data_in: &'a [u8],
    /// `struct xdp_md` / `struct __sk_buff` given to the program, if any.
    pub ctx_in: Option<&'a [u8]>,
    /// 0 and 1 both run once.
    pub repeat: u32,
    /// Size of the data_out buffer (e.g. `data_in.len() + 512`); a larger output makes
    /// the kernel fail the run with ENOSPC.
    pub data_size_out: u32,
    /// Size of the ctx_out buffer; 0 asks for no ctx_out.
    pub ctx_size_out: u32,
}

impl<'a> TestRun<'a> {
    /// One run of `data_in`, no ctx, a data_out buffer 512 bytes larger than the input.
    pub fn new(data_in: &'a [u8]) -> Self {
        let out = u32::try_from(data_in.len())
            .unwrap_or(u32::MAX)
            .saturating_add(512);
        TestRun {
            data_in,
            ctx_in: None,
            repeat: 1,
            data_size_out: out,
            ctx_size_out: 0,
        }
    }
}

/// Output of one BPF_PROG_TEST_RUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunResult {
    pub retval: u32,
    pub duration_ns: u32,
    /// The bytes the kernel copied out, `data_size_out` as it reported it (for XDP this
    /// starts at data_meta).
    pub data_out: Vec<u8>,
    /// The ctx the kernel copied out, when `ctx_size_out` was non-zero.
    pub ctx_out: Option<Vec<u8>>,
}

impl KernelObject {
    /// Creates every map, writes and freezes global data, loads every program with the
    /// maps as `fd_array`, then fills the BTF `.values` slots of prog arrays and
    /// map-in-maps.
    pub fn load(obj: &Object) -> Result<KernelObject, KernelError> {
        KernelObject::load_sharing(obj, &BTreeMap::new())
    }

    /// As [`KernelObject::load`], except that a map named in `shared` is that
    /// map (a duplicate of its descriptor), not a new one: a pinned map reused
    /// by a second object, as libbpf's `bpf_object__reuse_map` does.
    pub fn load_sharing(
        obj: &Object,
        shared: &BTreeMap<String, OwnedFd>,
    ) -> Result<KernelObject, KernelError> {
        let mut maps = Vec::with_capacity(obj.maps.len());
        for spec in &obj.maps {
            if let Some(fd) = shared.get(&spec.name) {
                let fd = fd.try_clone().map_err(|e| {
                    KernelError::Io(format!("dup of shared map `{}`: {e}", spec.name))
                })?;
                maps.push(KMap {
                    spec: spec.clone(),
                    fd,
                });
                continue;
            }
            let fd = create_map(spec)?;
            if let (Some(data), MapOrigin::GlobalData { readonly, .. }) =
                (&spec.initial_data, &spec.origin)
            {
                let key = 0u32.to_ne_bytes();
                map_update_raw(&fd, &key, data, 0).map_err(|errno| KernelError::MapInit {
                    map: spec.name.clone(),
                    step: "writing initial data",
                    errno,
                })?;
                if *readonly {
                    let mut a = Attr::new();
                    a.put_u32(0, fd.as_raw_fd() as u32);
                    sys::bpf(sys::BPF_MAP_FREEZE, &mut a).map_err(|errno| {
                        KernelError::MapInit {
                            map: spec.name.clone(),
                            step: "BPF_MAP_FREEZE",
                            errno,
                        }
                    })?;
                }
            }
            maps.push(KMap {
                spec: spec.clone(),
                fd,
            });
        }
        let fd_array: Vec<i32> = maps.iter().map(|m| m.fd.as_raw_fd()).collect();
        let license = std::ffi::CString::new(obj.license.replace('\0', "")).unwrap_or_default();
        let mut progs = Vec::with_capacity(obj.programs.len());
        for p in &obj.programs {
            let insns: Vec<u8> = p.insns.iter().flat_map(|i| i.to_bytes()).collect();
            let insn_cnt = u32::try_from(p.insns.len()).map_err(|_| KernelError::ProgLoad {
                prog: p.name.clone(),
                errno: libc::E2BIG,
                log: String::new(),
            })?;
            // Callbacks (bpf_loop etc.) need BTF func_info; the object carries none, so
            // a minimal one is synthesised with every subprogram static.
            let func_btf = if needs_func_info(&p.insns) {
                Some(
                    FuncBtf::load(&p.insns).map_err(|errno| KernelError::ProgLoad {
                        prog: p.name.clone(),
                        errno,
                        log: "loading the synthesised func_info BTF failed".into(),
                    })?,
                )
            } else {
                None
            };
            let load = |log: Option<&mut Vec<u8>>| {
                let mut a = Attr::new();
                a.put_u32(0, p.prog_type.kernel_id());
                a.put_u32(4, insn_cnt);
                a.put_u64(8, sys::ptr(insns.as_ptr()));
                a.put_u64(16, sys::ptr(license.as_ptr()));
                if let Some(log) = log {
                    // log_level 1; since 6.4 the log is rotating: the tail survives.
                    a.put_u32(24, 1);
                    a.put_u32(28, u32::try_from(log.len()).unwrap_or(u32::MAX));
                    a.put_u64(32, sys::ptr(log.as_mut_ptr()));
                }
                a.put_u32(44, if p.frags { BPF_F_XDP_HAS_FRAGS } else { 0 });
                a.put_bytes(48, &obj_name(&p.name));
                if let Some(t) = p.expected_attach_type {
                    a.put_u32(68, t.kernel_id());
                }
                if !fd_array.is_empty() {
                    a.put_u64(120, sys::ptr(fd_array.as_ptr()));
                }
                if let Some(fb) = &func_btf {
                    a.put_u32(72, fb.fd.as_raw_fd() as u32);
                    a.put_u32(76, 8);
                    a.put_u64(80, sys::ptr(fb.func_info.as_ptr()));
                    a.put_u32(88, (fb.func_info.len() / 2) as u32);
                }
                sys::bpf_fd(sys::BPF_PROG_LOAD, &mut a)
            };
            // Load without a log first: a log that overflows fails a good program.
            match load(None) {
                Ok(fd) => progs.push(KProg {
                    name: p.name.clone(),
                    fd,
                }),
                Err(errno) => {
                    let mut log = vec![0u8; LOG_SIZE];
                    let _ = load(Some(&mut log));
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[]));
                    let mut start = text.len().saturating_sub(LOG_TAIL);
                    while !text.is_char_boundary(start) {
                        start += 1;
                    }
                    return Err(KernelError::ProgLoad {
                        prog: p.name.clone(),
                        errno,
                        log: text.get(start..).unwrap_or("").to_string(),
                    });
                }
            }
        }
        let ko = KernelObject { maps, progs };
        for m in &ko.maps {
            for (index, target) in &m.spec.slots {
                let (fd, name) = match target {
                    SlotInit::Prog(n) => (ko.prog_fd(n)?, format!("program `{n}`")),
                    SlotInit::Map(n) => (ko.map(n)?.fd.as_raw_fd(), format!("map `{n}`")),
                };
                map_update_raw(&m.fd, &index.to_ne_bytes(), &(fd as u32).to_ne_bytes(), 0)
                    .map_err(|errno| KernelError::SlotFill {
                        map: m.spec.name.clone(),
                        index: *index,
                        target: name,
                        errno,
                    })?;
            }
        }
        Ok(ko)
    }

    fn map(&self, name: &str) -> Result<&KMap, KernelError> {
        self.maps
            .iter()
            .find(|m| m.spec.name == name)
            .ok_or_else(|| KernelError::NoSuchMap(name.to_string()))
    }

    fn prog_fd(&self, name: &str) -> Result<i32, KernelError> {
        self.progs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.fd.as_raw_fd())
            .ok_or_else(|| KernelError::NoSuchProg(name.to_string()))
    }

    /// A duplicate of map `map`'s descriptor (to share it with another object).
    pub fn map_fd(&self, map: &str) -> Result<OwnedFd, KernelError> {
        self.map(map)?
            .fd
            .try_clone()
            .map_err(|e| KernelError::Io(format!("dup of map `{map}`: {e}")))
    }

    /// Names of the maps, in object order (global data maps by section name).
    pub fn map_names(&self) -> Vec<String> {
        self.maps.iter().map(|m| m.spec.name.clone()).collect()
    }

    /// The kernel's id of a program (what a PROG_ARRAY dump returns), from
    /// BPF_OBJ_GET_INFO_BY_FD.
    pub fn prog_id(&self, prog: &str) -> Result<u32, KernelError> {
        let fd = self.prog_fd(prog)?;
        let mut info = [0u8; 256]; // struct bpf_prog_info prefix: type u32, id u32, ...
        let mut a = Attr::new();
        a.put_u32(0, fd as u32);
        a.put_u32(4, info.len() as u32);
        a.put_u64(8, sys::ptr(info.as_mut_ptr()));
        sys::bpf(sys::BPF_OBJ_GET_INFO_BY_FD, &mut a).map_err(|errno| KernelError::TestRun {
            prog: prog.to_string(),
            errno,
        })?;
        Ok(u32::from_ne_bytes([info[4], info[5], info[6], info[7]]))
    }

    /// The kernel's id of a map (BPF_OBJ_GET_INFO_BY_FD: struct bpf_map_info.id).
    pub fn map_id(&self, map: &str) -> Result<u32, KernelError> {
        let m = self.map(map)?;
        let mut info = [0u8; 128]; // struct bpf_map_info prefix: type u32, id u32, ...
        let mut a = Attr::new();
        a.put_u32(0, m.fd.as_raw_fd() as u32);
        a.put_u32(4, info.len() as u32);
        a.put_u64(8, sys::ptr(info.as_mut_ptr()));
        sys::bpf(sys::BPF_OBJ_GET_INFO_BY_FD, &mut a).map_err(|errno| KernelError::MapOp {
            op: "get_info",
            map: map.to_string(),
            errno,
        })?;
        Ok(u32::from_ne_bytes([info[4], info[5], info[6], info[7]]))
    }

    /// Names of the programs, in object order.
    pub fn prog_names(&self) -> Vec<String> {
        self.progs.iter().map(|p| p.name.clone()).collect()
    }

    /// The `enum bpf_map_type` of a map.
    pub fn map_type(&self, map: &str) -> Result<u32, KernelError> {
        Ok(self.map(map)?.spec.map_type)
    }

    /// BPF_MAP_UPDATE_ELEM with the value exactly as the syscall takes it (per-CPU maps:
    /// `possible_cpus * round_up(value_size, 8)` bytes).
    pub fn map_update(
        &self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), KernelError> {
        let m = self.map(map)?;
        check_len(
            &format!("key of map `{map}`"),
            m.spec.key_size as usize,
            key.len(),
        )?;
        check_len(
            &format!("value of map `{map}`"),
            syscall_value_size(&m.spec)?,
            value.len(),
        )?;
        let mut a = Attr::new();
        a.put_u32(0, m.fd.as_raw_fd() as u32);
        a.put_u64(
            8,
            if key.is_empty() {
                0
            } else {
                sys::ptr(key.as_ptr())
            },
        );
        a.put_u64(16, sys::ptr(value.as_ptr()));
        a.put_u64(24, flags);
        sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut a)
            .map(|_| ())
            .map_err(|errno| KernelError::MapOp {
                op: "update",
                map: map.to_string(),
                errno,
            })
    }

    /// Puts program `prog` of this object into slot `key` of a PROG_ARRAY (the value the
    /// syscall takes is the program's fd).
    pub fn map_update_prog(&self, map: &str, key: &[u8], prog: &str) -> Result<(), KernelError> {
        let fd = self.prog_fd(prog)?;
        self.map_update(map, key, &(fd as u32).to_ne_bytes(), 0)
    }

    /// Every (key, value) of a map, sorted by key bytes, values as BPF_MAP_LOOKUP_ELEM
    /// returns them:
    /// - per-CPU maps: `possible_cpus * round_up(value_size, 8)` bytes;
    /// - PROG_ARRAY / *_OF_MAPS: the kernel's program / map **id** (not an fd);
    /// - entries that look up as ENOENT (empty DEVMAP or PROG_ARRAY slots) are skipped;
    /// - QUEUE / STACK: no keys; one entry with an empty key holding the element a
    ///   BPF_MAP_LOOKUP_ELEM (peek) returns, nothing when empty;
    /// - RINGBUF: not supported (no lookup; its records are read through mmap).
    pub fn map_dump(&self, map: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KernelError> {
        let m = self.map(map)?;
        let vsize = syscall_value_size(&m.spec)?;
        let ksize = m.spec.key_size as usize;
        let op_err = |op: &'static str| {
            move |errno| KernelError::MapOp {
                op,
                map: map.to_string(),
                errno,
            }
        };
        match m.spec.map_type {
            // The kernel has no syscall lookup for these: RINGBUF is read by mmap,
            // XSKMAP gives EOPNOTSUPP, PERF_EVENT_ARRAY ENOTSUPP.
            map_type::RINGBUF | map_type::XSKMAP | map_type::PERF_EVENT_ARRAY => {
                return Err(KernelError::NotSupported(format!(
                    "dumping map `{map}` (type {})",
                    m.spec.map_type
                )))
            }
            map_type::QUEUE | map_type::STACK => {
                let mut value = vec![0u8; vsize];
                return match lookup_raw(&m.fd, &[], &mut value) {
                    Ok(()) => Ok(vec![(Vec::new(), value)]),
                    Err(libc::ENOENT) => Ok(Vec::new()),
                    Err(e) => Err(op_err("peek")(e)),
                };
            }
            _ => {}
        }
        let mut out = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        let limit = (m.spec.max_entries as usize).saturating_add(1);
        loop {
            let mut next = vec![0u8; ksize];
            let mut a = Attr::new();
            a.put_u32(0, m.fd.as_raw_fd() as u32);
            a.put_u64(8, key.as_ref().map_or(0, |k| sys::ptr(k.as_ptr())));
            a.put_u64(16, sys::ptr(next.as_mut_ptr()));
            match sys::bpf(sys::BPF_MAP_GET_NEXT_KEY, &mut a) {
                Ok(_) => {}
                Err(libc::ENOENT) => break,
                Err(e) => return Err(op_err("get_next_key")(e)),
            }
            let mut value = vec![0u8; vsize];
            match lookup_raw(&m.fd, &next, &mut value) {
                Ok(()) => out.push((next.clone(), value)),
                Err(libc::ENOENT) => {}
                Err(e) => return Err(op_err("lookup")(e)),
            }
            key = Some(next);
            if out.len() > limit {
                // A hash map being changed under us could loop; the kernel never gives
                // more keys than max_entries.
                return Err(KernelError::NotSupported(format!(
                    "map `{map}` gave more keys than max_entries"
                )));
            }
        }
        out.sort();
        Ok(out)
    }

    /// BPF_PROG_TEST_RUN. A run the kernel refuses (EINVAL for a runt frame, ENOSPC for
    /// a data_out buffer too small) is `KernelError::TestRun` with its errno.
    pub fn test_run(&self, prog: &str, opts: &TestRun) -> Result<TestRunResult, KernelError> {
        let fd = self.prog_fd(prog)?;
        let err = |errno| KernelError::TestRun {
            prog: prog.to_string(),
            errno,
        };
        let mut data_out = vec![0u8; opts.data_size_out as usize];
        let mut ctx_out = vec![0u8; opts.ctx_size_out as usize];
        let len32 = |n: usize| u32::try_from(n).map_err(|_| err(libc::E2BIG));
        let mut a = Attr::new();
        a.put_u32(0, fd as u32);
        a.put_u32(8, len32(opts.data_in.len())?);
        a.put_u32(12, opts.data_size_out);
        a.put_u64(16, sys::ptr(opts.data_in.as_ptr()));
        if !data_out.is_empty() {
            a.put_u64(24, sys::ptr(data_out.as_mut_ptr()));
        }
        a.put_u32(32, opts.repeat);
        if let Some(ctx) = opts.ctx_in {
            a.put_u32(40, len32(ctx.len())?);
            a.put_u64(48, sys::ptr(ctx.as_ptr()));
        }
        if !ctx_out.is_empty() {
            a.put_u32(44, opts.ctx_size_out);
            a.put_u64(56, sys::ptr(ctx_out.as_mut_ptr()));
        }
        sys::bpf(sys::BPF_PROG_TEST_RUN, &mut a).map_err(err)?;
        data_out.truncate(a.get_u32(12) as usize);
        let ctx_out = if opts.ctx_size_out > 0 {
            ctx_out.truncate(a.get_u32(44) as usize);
            Some(ctx_out)
        } else {
            None
        };
        Ok(TestRunResult {
            retval: a.get_u32(4),
            duration_ns: a.get_u32(36),
            data_out,
            ctx_out,
        })
    }

    /// Every map dumped ([`KernelObject::map_dump`]), by name; maps that cannot be
    /// dumped (RINGBUF) are left out.
    pub fn dump_all(&self) -> Result<BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>, KernelError> {
        let mut out = BTreeMap::new();
        for m in &self.maps {
            match self.map_dump(&m.spec.name) {
                Ok(d) => {
                    out.insert(m.spec.name.clone(), d);
                }
                Err(KernelError::NotSupported(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// True when the program takes a function's address (`ld_imm64` src BPF_PSEUDO_FUNC),
/// which the verifier accepts only with BTF func_info.
fn needs_func_info(insns: &[skiff_isa::Insn]) -> bool {
    insns.iter().any(|i| i.code == 0x18 && i.src == 4)
}

/// A minimal BTF (int, one `int (void)` prototype, one FUNC per subprogram) and the
/// func_info records (insn_off, type_id) pointing at it.
struct FuncBtf {
    fd: OwnedFd,
    func_info: Vec<u32>,
}

impl FuncBtf {
    fn load(insns: &[skiff_isa::Insn]) -> Result<FuncBtf, i32> {
        // Subprogram starts: 0, targets of bpf-to-bpf calls and of BPF_PSEUDO_FUNC.
        let mut starts = vec![0i64];
        for (i, insn) in insns.iter().enumerate() {
            let call = insn.code == 0x85 && insn.src == 1;
            let func = insn.code == 0x18 && insn.src == 4;
            if call || func {
                starts.push(i as i64 + i64::from(insn.imm) + 1);
            }
        }
        starts.sort();
        starts.dedup();
        if starts.iter().any(|&s| s < 0 || s as usize >= insns.len()) {
            return Err(libc::EINVAL);
        }
        let mut strings = b"\0int\0".to_vec();
        let mut types: Vec<u32> = vec![
            1,
            1 << 24,
            4,
            (1 << 24) | 32, // [1] INT "int", signed, 32 bits
            0,
            13 << 24,
            1, // [2] FUNC_PROTO int (void)
        ];
        let mut func_info = Vec::new();
        for (n, s) in starts.iter().enumerate() {
            let name_off = strings.len() as u32;
            strings.extend_from_slice(format!("f{n}\0").as_bytes());
            let linkage = if n == 0 { 1 } else { 0 }; // main global, subprograms static
            types.extend_from_slice(&[name_off, (12 << 24) | linkage, 2]);
            func_info.extend_from_slice(&[*s as u32, 3 + n as u32]);
        }
        let type_len = (types.len() * 4) as u32;
        let mut blob = Vec::new();
        blob.extend_from_slice(&0xeb9fu16.to_ne_bytes());
        blob.extend_from_slice(&[1, 0]);
        for v in [24u32, 0, type_len, type_len, strings.len() as u32] {
            blob.extend_from_slice(&v.to_ne_bytes());
        }
        for t in &types {
            blob.extend_from_slice(&t.to_ne_bytes());
        }
        blob.extend_from_slice(&strings);
        let mut a = Attr::new();
        a.put_u64(0, sys::ptr(blob.as_ptr()));
        a.put_u32(16, blob.len() as u32);
        let fd = sys::bpf_fd(sys::BPF_BTF_LOAD, &mut a)?;
        Ok(FuncBtf { fd, func_info })
    }
}

fn check_len(what: &str, expected: usize, got: usize) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::BadSize {
            what: what.to_string(),
            expected,
            got,
        })
    }
}

/// Value size as the syscall moves it (kernel/bpf/syscall.c: bpf_map_value_size).
fn syscall_value_size(spec: &MapSpec) -> Result<usize, KernelError> {
    let vs = spec.value_size as usize;
    Ok(match spec.map_type {
        t if map_type::is_percpu(t) => possible_cpus()?.saturating_mul(vs.div_ceil(8) * 8),
        map_type::PROG_ARRAY | map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS => 4,
        _ => vs,
    })
}

fn lookup_raw(fd: &OwnedFd, key: &[u8], value: &mut [u8]) -> Result<(), i32> {
    let mut a = Attr::new();
    a.put_u32(0, fd.as_raw_fd() as u32);
    a.put_u64(
        8,
        if key.is_empty() {
            0
        } else {
            sys::ptr(key.as_ptr())
        },
    );
    a.put_u64(16, sys::ptr(value.as_mut_ptr()));
    sys::bpf(sys::BPF_MAP_LOOKUP_ELEM, &mut a).map(|_| ())
}

fn map_update_raw(fd: &OwnedFd, key: &[u8], value: &[u8], flags: u64) -> Result<(), i32> {
    let mut a = Attr::new();
    a.put_u32(0, fd.as_raw_fd() as u32);
    a.put_u64(8, sys::ptr(key.as_ptr()));
    a.put_u64(16, sys::ptr(value.as_ptr()));
    a.put_u64(24, flags);
    sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

fn map_create_attr(spec: &MapSpec, inner_fd: Option<&OwnedFd>) -> Attr {
    let mut flags = spec.map_flags;
    if let MapOrigin::GlobalData { readonly, .. } = &spec.origin {
        // libbpf: bpf_object__init_internal_map
        flags |= BPF_F_MMAPABLE;
        if *readonly {
            flags |= BPF_F_RDONLY_PROG;
        }
    }
    let mut a = Attr::new();
    a.put_u32(0, spec.map_type);
    a.put_u32(4, spec.key_size);
    a.put_u32(8, spec.value_size);
    a.put_u32(12, spec.max_entries);
    a.put_u32(16, flags);
    if let Some(fd) = inner_fd {
        a.put_u32(20, fd.as_raw_fd() as u32);
    }
    a.put_bytes(28, &obj_name(&spec.name));
    a
}

fn create_map(spec: &MapSpec) -> Result<OwnedFd, KernelError> {
    fn err(s: &MapSpec) -> impl Fn(i32) -> KernelError + '_ {
        move |errno| KernelError::MapCreate {
            map: s.name.clone(),
            map_type: s.map_type,
            errno,
        }
    }
    // The inner map only serves as a template; it is closed once the outer map exists.
    let inner = match (&spec.inner, spec.map_type) {
        (Some(inner), _) => Some(
            sys::bpf_fd(sys::BPF_MAP_CREATE, &mut map_create_attr(inner, None))
                .map_err(err(inner))?,
        ),
        (None, map_type::ARRAY_OF_MAPS | map_type::HASH_OF_MAPS) => {
            return Err(KernelError::NotSupported(format!(
                "map-in-map `{}` without an inner map template",
                spec.name
            )))
        }
        _ => None,
    };
    sys::bpf_fd(
        sys::BPF_MAP_CREATE,
        &mut map_create_attr(spec, inner.as_ref()),
    )
    .map_err(err(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_list() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-3"), Some(4));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn names_truncated_and_sanitised() {
        assert_eq!(&obj_name("a_very_long_map_name_here"), b"a_very_long_map\0");
        assert_eq!(&obj_name(".rodata"), b".rodata\0\0\0\0\0\0\0\0\0");
        assert_eq!(&obj_name("a-b"), b"a_b\0\0\0\0\0\0\0\0\0\0\0\0\0");
    }
}
