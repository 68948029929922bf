//! What each kernel release skiff knows has, for `skiff prog verify --kernel`:
//! helper ids, map, program and attach types, the instruction set, the verifier's
//! limits and the verifier features that decide accept or reject.
//!
//! How the numbers were derived. The four enums are append-only in
//! include/uapi/linux/bpf.h, so one number per release says what exists. The
//! 6.18 values are the running kernel's own (`bpftool btf dump file
//! /sys/kernel/btf/vmlinux`: `__BPF_FUNC_MAX_ID` 212, `__MAX_BPF_MAP_TYPE` 34,
//! `__MAX_BPF_PROG_TYPE` 33, `__MAX_BPF_ATTACH_TYPE` 58). For the older releases
//! each table below names, for the last value a release has and the first one it
//! lacks, the release that value's commit landed in (bcc's
//! docs/kernel-versions.md and the commits it cites, checked against the
//! position of the entry in `__BPF_FUNC_MAPPER` and the other enums).

use std::fmt;

use skiff_isa::opcode::*;

use super::{KernelVersion, VerifierError, E2BIG, EINVAL};

/// A kernel release, `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release(pub u8, pub u8);

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl KernelVersion {
    /// The release this version names.
    pub fn release(self) -> Release {
        match self {
            KernelVersion::V5_15 => Release(5, 15),
            KernelVersion::V6_1 => Release(6, 1),
            KernelVersion::V6_6 => Release(6, 6),
            KernelVersion::V6_18 => Release(6, 18),
        }
    }

    /// Whether this release has what came in `since`.
    pub fn has(self, since: Release) -> bool {
        self.release() >= since
    }
}

/// The highest `enum bpf_func_id` value (helper id) in each release.
///
/// - 5.15: 175, `bpf_task_pt_regs` (5.15, dd6e10fbd9fb); 176
///   `bpf_get_branch_snapshot` came in 5.16 (856c02dbce4f).
/// - 6.1: 209, `bpf_user_ringbuf_drain` (6.1, 205715673844); 210
///   `bpf_cgrp_storage_get` came in 6.2 (c4bcfb38a95e).
/// - 6.6 and 6.18: 211, `bpf_cgrp_storage_delete` (6.2), the last helper ever
///   added (new interfaces are kfuncs); the running 6.18's `__BPF_FUNC_MAX_ID`
///   is 212.
pub fn max_helper_id(kernel: KernelVersion) -> u32 {
    match kernel {
        KernelVersion::V5_15 => 175,
        KernelVersion::V6_1 => 209,
        KernelVersion::V6_6 | KernelVersion::V6_18 => 211,
    }
}

/// `enum bpf_map_type` by value, with the release each came in.
const MAP_TYPES: [(&str, Release); 34] = [
    ("BPF_MAP_TYPE_UNSPEC", Release(3, 19)),
    ("BPF_MAP_TYPE_HASH", Release(3, 19)),
    ("BPF_MAP_TYPE_ARRAY", Release(3, 19)),
    ("BPF_MAP_TYPE_PROG_ARRAY", Release(4, 2)),
    ("BPF_MAP_TYPE_PERF_EVENT_ARRAY", Release(4, 3)),
    ("BPF_MAP_TYPE_PERCPU_HASH", Release(4, 6)),
    ("BPF_MAP_TYPE_PERCPU_ARRAY", Release(4, 6)),
    ("BPF_MAP_TYPE_STACK_TRACE", Release(4, 6)),
    ("BPF_MAP_TYPE_CGROUP_ARRAY", Release(4, 8)),
    ("BPF_MAP_TYPE_LRU_HASH", Release(4, 10)),
    ("BPF_MAP_TYPE_LRU_PERCPU_HASH", Release(4, 10)),
    ("BPF_MAP_TYPE_LPM_TRIE", Release(4, 11)),
    ("BPF_MAP_TYPE_ARRAY_OF_MAPS", Release(4, 12)),
    ("BPF_MAP_TYPE_HASH_OF_MAPS", Release(4, 12)),
    ("BPF_MAP_TYPE_DEVMAP", Release(4, 14)),
    ("BPF_MAP_TYPE_SOCKMAP", Release(4, 14)),
    ("BPF_MAP_TYPE_CPUMAP", Release(4, 15)),
    ("BPF_MAP_TYPE_XSKMAP", Release(4, 18)),
    ("BPF_MAP_TYPE_SOCKHASH", Release(4, 18)),
    ("BPF_MAP_TYPE_CGROUP_STORAGE", Release(4, 19)),
    ("BPF_MAP_TYPE_REUSEPORT_SOCKARRAY", Release(4, 19)),
    ("BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE", Release(4, 20)),
    ("BPF_MAP_TYPE_QUEUE", Release(4, 20)),
    ("BPF_MAP_TYPE_STACK", Release(4, 20)),
    ("BPF_MAP_TYPE_SK_STORAGE", Release(5, 2)),
    ("BPF_MAP_TYPE_DEVMAP_HASH", Release(5, 4)),
    ("BPF_MAP_TYPE_STRUCT_OPS", Release(5, 6)),
    ("BPF_MAP_TYPE_RINGBUF", Release(5, 8)),
    ("BPF_MAP_TYPE_INODE_STORAGE", Release(5, 10)),
    ("BPF_MAP_TYPE_TASK_STORAGE", Release(5, 11)),
    ("BPF_MAP_TYPE_BLOOM_FILTER", Release(5, 16)),
    ("BPF_MAP_TYPE_USER_RINGBUF", Release(6, 1)),
    ("BPF_MAP_TYPE_CGRP_STORAGE", Release(6, 2)),
    ("BPF_MAP_TYPE_ARENA", Release(6, 9)),
];

/// `enum bpf_prog_type` by value, with the release each came in.
const PROG_TYPES: [(&str, Release); 33] = [
    ("BPF_PROG_TYPE_UNSPEC", Release(3, 19)),
    ("BPF_PROG_TYPE_SOCKET_FILTER", Release(3, 19)),
    ("BPF_PROG_TYPE_KPROBE", Release(4, 1)),
    ("BPF_PROG_TYPE_SCHED_CLS", Release(4, 1)),
    ("BPF_PROG_TYPE_SCHED_ACT", Release(4, 1)),
    ("BPF_PROG_TYPE_TRACEPOINT", Release(4, 7)),
    ("BPF_PROG_TYPE_XDP", Release(4, 8)),
    ("BPF_PROG_TYPE_PERF_EVENT", Release(4, 9)),
    ("BPF_PROG_TYPE_CGROUP_SKB", Release(4, 10)),
    ("BPF_PROG_TYPE_CGROUP_SOCK", Release(4, 10)),
    ("BPF_PROG_TYPE_LWT_IN", Release(4, 10)),
    ("BPF_PROG_TYPE_LWT_OUT", Release(4, 10)),
    ("BPF_PROG_TYPE_LWT_XMIT", Release(4, 10)),
    ("BPF_PROG_TYPE_SOCK_OPS", Release(4, 13)),
    ("BPF_PROG_TYPE_SK_SKB", Release(4, 14)),
    ("BPF_PROG_TYPE_CGROUP_DEVICE", Release(4, 15)),
    ("BPF_PROG_TYPE_SK_MSG", Release(4, 17)),
    ("BPF_PROG_TYPE_RAW_TRACEPOINT", Release(4, 17)),
    ("BPF_PROG_TYPE_CGROUP_SOCK_ADDR", Release(4, 17)),
    ("BPF_PROG_TYPE_LWT_SEG6LOCAL", Release(4, 18)),
    ("BPF_PROG_TYPE_LIRC_MODE2", Release(4, 18)),
    ("BPF_PROG_TYPE_SK_REUSEPORT", Release(4, 19)),
    ("BPF_PROG_TYPE_FLOW_DISSECTOR", Release(4, 20)),
    ("BPF_PROG_TYPE_CGROUP_SYSCTL", Release(5, 2)),
    ("BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE", Release(5, 2)),
    ("BPF_PROG_TYPE_CGROUP_SOCKOPT", Release(5, 3)),
    ("BPF_PROG_TYPE_TRACING", Release(5, 5)),
    ("BPF_PROG_TYPE_STRUCT_OPS", Release(5, 6)),
    ("BPF_PROG_TYPE_EXT", Release(5, 6)),
    ("BPF_PROG_TYPE_LSM", Release(5, 7)),
    ("BPF_PROG_TYPE_SK_LOOKUP", Release(5, 9)),
    ("BPF_PROG_TYPE_SYSCALL", Release(5, 14)),
    ("BPF_PROG_TYPE_NETFILTER", Release(6, 4)),
];

/// `enum bpf_attach_type` by value from 40 on (the older ones predate 5.15),
/// with the release each came in.
const ATTACH_TYPES_FROM_40: [(&str, Release); 18] = [
    ("BPF_SK_REUSEPORT_SELECT_OR_MIGRATE", Release(5, 14)),
    ("BPF_PERF_EVENT", Release(5, 15)),
    ("BPF_TRACE_KPROBE_MULTI", Release(5, 18)),
    ("BPF_LSM_CGROUP", Release(6, 0)),
    ("BPF_STRUCT_OPS", Release(6, 4)),
    ("BPF_NETFILTER", Release(6, 4)),
    ("BPF_TCX_INGRESS", Release(6, 6)),
    ("BPF_TCX_EGRESS", Release(6, 6)),
    ("BPF_TRACE_UPROBE_MULTI", Release(6, 6)),
    ("BPF_CGROUP_UNIX_CONNECT", Release(6, 7)),
    ("BPF_CGROUP_UNIX_SENDMSG", Release(6, 7)),
    ("BPF_CGROUP_UNIX_RECVMSG", Release(6, 7)),
    ("BPF_CGROUP_UNIX_GETPEERNAME", Release(6, 7)),
    ("BPF_CGROUP_UNIX_GETSOCKNAME", Release(6, 7)),
    ("BPF_NETKIT_PRIMARY", Release(6, 7)),
    ("BPF_NETKIT_PEER", Release(6, 7)),
    ("BPF_TRACE_KPROBE_SESSION", Release(6, 10)),
    ("BPF_TRACE_UPROBE_SESSION", Release(6, 13)),
];

/// The highest value of an enum whose entries came in the given releases.
fn max_value(since: impl Iterator<Item = Release>, first: u32, kernel: KernelVersion) -> u32 {
    let mut max = first;
    for (i, r) in (first..).zip(since) {
        if kernel.has(r) {
            max = i;
        }
    }
    max
}

/// The highest `enum bpf_map_type` value: 5.15 29 (TASK_STORAGE; BLOOM_FILTER
/// is 5.16), 6.1 31 (USER_RINGBUF), 6.6 32 (CGRP_STORAGE, 6.2; ARENA is 6.9),
/// 6.18 33 (ARENA).
pub fn max_map_type(kernel: KernelVersion) -> u32 {
    max_value(MAP_TYPES.iter().map(|m| m.1), 0, kernel)
}

/// The highest `enum bpf_prog_type` value: 31 (SYSCALL, 5.14) in 5.15 and 6.1,
/// 32 (NETFILTER, 6.4) in 6.6 and 6.18.
pub fn max_prog_type(kernel: KernelVersion) -> u32 {
    max_value(PROG_TYPES.iter().map(|p| p.1), 0, kernel)
}

/// The highest `enum bpf_attach_type` value: 5.15 41 (PERF_EVENT), 6.1 43
/// (LSM_CGROUP, 6.0), 6.6 48 (TRACE_UPROBE_MULTI; TCX_* are 46/47; the
/// CGROUP_UNIX_* and NETKIT_* came in 6.7), 6.18 57 (TRACE_UPROBE_SESSION, 6.13).
pub fn max_attach_type(kernel: KernelVersion) -> u32 {
    max_value(ATTACH_TYPES_FROM_40.iter().map(|a| a.1), 40, kernel)
}

fn error(errno: i32, message: String) -> VerifierError {
    VerifierError {
        errno,
        insn: 0,
        line: None,
        log: message.clone(),
        message,
    }
}

/// A helper call on `kernel`: check_helper_call refuses an id at or past the
/// release's `__BPF_FUNC_MAX_ID` with `invalid func unknown#N` (EINVAL).
/// func_id_name has no name for an id the release does not know, so the kernel
/// names it `unknown`.
pub fn check_helper(id: u32, kernel: KernelVersion) -> Result<(), VerifierError> {
    if id <= max_helper_id(kernel) {
        return Ok(());
    }
    Err(error(EINVAL, format!("invalid func unknown#{id}")))
}

/// A map type on `kernel`. BPF_MAP_CREATE refuses a type past the release's
/// last one with EINVAL and writes no log, so the message is skiff's.
pub fn check_map_type(map_type: u32, kernel: KernelVersion) -> Result<(), VerifierError> {
    if map_type <= max_map_type(kernel) {
        return Ok(());
    }
    let (name, since) = lookup(&MAP_TYPES, map_type, 0);
    Err(error(
        EINVAL,
        format!(
            "BPF_MAP_CREATE: map type {name} ({map_type}) is not in Linux {}{since}",
            kernel.as_str()
        ),
    ))
}

/// A program type and expected attach type on `kernel`. BPF_PROG_LOAD refuses
/// a program type past the release's last one with EINVAL and no log; an attach
/// type the release lacks is refused when the program is attached (link create,
/// EINVAL, no log). The messages are skiff's.
pub fn check_prog_type(
    prog_type: u32,
    attach: Option<u32>,
    kernel: KernelVersion,
) -> Result<(), VerifierError> {
    if prog_type > max_prog_type(kernel) {
        let (name, since) = lookup(&PROG_TYPES, prog_type, 0);
        return Err(error(
            EINVAL,
            format!(
                "BPF_PROG_LOAD: program type {name} ({prog_type}) is not in Linux {}{since}",
                kernel.as_str()
            ),
        ));
    }
    match attach {
        Some(a) if a > max_attach_type(kernel) => {
            let (name, since) = lookup(&ATTACH_TYPES_FROM_40, a, 40);
            Err(error(
                EINVAL,
                format!(
                    "BPF_LINK_CREATE: attach type {name} ({a}) is not in Linux {}{since}",
                    kernel.as_str()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The name of value `v` in a table starting at `first`, and ", it came in X".
fn lookup(table: &[(&'static str, Release)], v: u32, first: u32) -> (&'static str, String) {
    let entry = v
        .checked_sub(first)
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| table.get(i));
    match entry {
        Some((name, since)) => (name, format!(" (it came in {since})")),
        None => ("unknown", String::new()),
    }
}

mod insns;

pub use insns::{check_insn, in_insntable, InsnFeature};

/// The verifier's size and complexity limits (include/linux/bpf.h,
/// include/linux/bpf_verifier.h, kernel/bpf/syscall.c). They are the same in
/// the four releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// bpf_prog_load: at most BPF_COMPLEXITY_LIMIT_INSNS (1M) instructions when
    /// bpf_capable, BPF_MAXINSNS (4096) otherwise (E2BIG, no log).
    pub max_insns: usize,
    /// BPF_COMPLEXITY_LIMIT_INSNS: instructions processed, on every path.
    pub complexity_limit_insns: u64,
    /// MAX_BPF_STACK: bytes of stack per frame, and of the combined call chain.
    pub max_stack: u32,
    /// BPF_MAX_SUBPROGS.
    pub max_subprogs: usize,
    /// MAX_CALL_FRAMES.
    pub max_call_frames: usize,
    /// BPF_COMPLEXITY_LIMIT_JMP_SEQ: pending branches (the exploration stack).
    pub complexity_limit_jmp_seq: usize,
    /// BPF_COMPLEXITY_LIMIT_STATES: states kept per instruction before pruning
    /// gives up on adding more.
    pub complexity_limit_states: usize,
    /// Tail calls a chain may make (MAX_TAIL_CALL_CNT: 33 since 5.17; 5.15's 32
    /// with its `>` test also allowed 33).
    pub max_tail_calls: u32,
}

/// The limits on `kernel` for a privileged (root, bpf_capable) or unprivileged
/// loader.
pub fn limits(kernel: KernelVersion, privileged: bool) -> Limits {
    let _ = kernel;
    Limits {
        max_insns: if privileged { 1_000_000 } else { 4096 },
        complexity_limit_insns: 1_000_000,
        max_stack: MAX_BPF_STACK as u32,
        max_subprogs: 256,
        max_call_frames: 8,
        complexity_limit_jmp_seq: 8192,
        complexity_limit_states: 64,
        max_tail_calls: 33,
    }
}

/// bpf_prog_load's size check: E2BIG, and the kernel writes no log (the
/// message is skiff's).
pub fn check_prog_size(
    insn_cnt: usize,
    kernel: KernelVersion,
    privileged: bool,
) -> Result<(), VerifierError> {
    let max = limits(kernel, privileged).max_insns;
    if insn_cnt == 0 || insn_cnt > max {
        return Err(error(
            E2BIG,
            format!(
                "BPF_PROG_LOAD: {insn_cnt} instructions (the limit is {max}{})",
                if privileged { "" } else { " unprivileged" }
            ),
        ));
    }
    Ok(())
}

/// Verifier features that decide accept or reject, with the release each came
/// in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Bounded loops (back-edges the verifier explores until they end): 5.3.
    BoundedLoops,
    /// `bpf_for_each_map_elem` callbacks: 5.13.
    ForEachMapElem,
    /// `bpf_timer`: 5.15.
    Timer,
    /// `bpf_loop` callbacks: 5.17.
    Loop,
    /// Dynptrs (`bpf_dynptr_*`, ringbuf dynptrs): 5.19.
    Dynptr,
    /// Open-coded iterators (`bpf_iter_num_*` kfuncs): 6.4.
    OpenCodedIterators,
    /// cpu v4 instructions (sdiv/smod, movsx, ldsx, bswap, gotol): 6.6.
    CpuV4,
    /// `may_goto` and BPF arenas (`addr_space_cast`): 6.9.
    MayGotoAndArena,
    /// Load-acquire / store-release atomics (and 8/16-bit atomics): 6.15.
    LoadAcquireStoreRelease,
}

impl Feature {
    pub fn since(self) -> Release {
        match self {
            Feature::BoundedLoops => Release(5, 3),
            Feature::ForEachMapElem => Release(5, 13),
            Feature::Timer => Release(5, 15),
            Feature::Loop => Release(5, 17),
            Feature::Dynptr => Release(5, 19),
            Feature::OpenCodedIterators => Release(6, 4),
            Feature::CpuV4 => Release(6, 6),
            Feature::MayGotoAndArena => Release(6, 9),
            Feature::LoadAcquireStoreRelease => Release(6, 15),
        }
    }

    /// Whether `kernel` has it.
    pub fn in_kernel(self, kernel: KernelVersion) -> bool {
        kernel.has(self.since())
    }
}

#[cfg(test)]
mod tests;
