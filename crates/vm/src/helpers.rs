//! The one helper table both engines call (by kernel helper id), and the generic
//! helpers: maps, time, random, tail calls, ring buffer, loops, trace_printk.
//! Networking helpers are registered into the same table by skiff-net.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use skiff_maps::{Map, MapType};

use crate::mem::{Region, RegionKind, SCALAR};
use crate::proto::{ArgType as A, HelperProto as P, RetType as R};
use crate::state::{ProgRef, RunState, MAX_TAIL_CALL_CNT};
use crate::{CtxLayout, ProgType, Program, VmError};

pub type HelperFn = fn(&mut RunState, &[u64; 5]) -> Result<u64, VmError>;

/// A helper whose r1 is a map, given that map (the kernel's map ops that
/// do_misc_fixups calls straight at a verified site, map_redirect for
/// bpf_redirect_map): the JIT passes the constant map the verifier proved r1
/// to be, with no search of the run's maps by handle. `a` is r1-r5 as passed.
pub type MapOpFn = fn(&mut RunState, &Map, &[u64; 5]) -> Result<u64, VmError>;

/// A map op as a type (`map_op!` writes one): what lets the JIT's call of
/// it be a function of its own with the op's body inlined, as the kernel's
/// JIT calls the map op's address, instead of a trampoline that calls the
/// op through a pointer.
pub trait MapOpBody {
    const OP: MapOpFn;
}

/// The native entry the JIT calls for a helper's map op
/// (`jit::runtime::rt_map_op`, made for this op). The engines' own path
/// calls the op through the helper's `func`.
#[derive(Clone, Copy, Debug)]
pub struct MapOp {
    pub(crate) native: crate::jit::runtime::NativeMapOp,
}

impl MapOp {
    pub const fn of<T: MapOpBody>() -> MapOp {
        MapOp {
            native: crate::jit::runtime::rt_map_op::<T>,
        }
    }
}

/// The `MapOp` of the function `$f` (a `MapOpFn`).
#[macro_export]
macro_rules! map_op {
    ($f:expr) => {{
        struct Op;
        impl $crate::helpers::MapOpBody for Op {
            const OP: $crate::MapOpFn = $f;
        }
        $crate::helpers::MapOp::of::<Op>()
    }};
}

#[derive(Clone, Copy)]
pub struct HelperDef {
    /// Kernel helper id (`enum bpf_func_id`).
    pub id: u32,
    pub name: &'static str,
    pub func: HelperFn,
    /// Program types that may call it (the kernel's `*_func_proto` tables); empty: all.
    pub prog_types: &'static [ProgType],
    /// The kernel's prototype (`struct bpf_func_proto`).
    pub proto: crate::HelperProto,
    /// What `func` does once it has found the map r1 names, for call sites
    /// with a constant map (`map_op!`); `func` must be that search and this.
    pub map_op: Option<MapOp>,
}

#[derive(Clone, Default)]
pub struct HelperTable {
    slots: Vec<Option<HelperDef>>,
    /// Each program type's context layout (ctx_layout): programs loaded with
    /// this table are compiled to reach those fields directly.
    ctx_layouts: Vec<(ProgType, &'static CtxLayout)>,
}

impl std::fmt::Debug for HelperTable {
    /// The registered helpers by name (the functions themselves say nothing).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|d| d.name)).finish()
    }
}

// errno values as helpers return them (negated).
pub const ENOENT: i64 = 2;
pub const E2BIG: i64 = 7;
pub const EBUSY: i64 = 16;
pub const EINVAL: i64 = 22;
pub const ENOSPC: i64 = 28;
pub const EOPNOTSUPP: i64 = 95;

pub fn neg(errno: i64) -> u64 {
    (-errno) as u64
}

pub const XDP_TC: &[ProgType] = &[ProgType::Xdp, ProgType::SchedCls, ProgType::SchedAct];

impl HelperTable {
    pub fn empty() -> Self {
        HelperTable {
            slots: Vec::new(),
            ctx_layouts: Vec::new(),
        }
    }

    /// Programs of `prog_type` loaded with this table see their context as
    /// `layout` describes it (the crate that owns the context registers it).
    pub fn set_ctx_layout(&mut self, prog_type: ProgType, layout: &'static CtxLayout) {
        self.ctx_layouts.retain(|&(t, _)| t != prog_type);
        self.ctx_layouts.push((prog_type, layout));
    }

    pub fn ctx_layout(&self, prog_type: ProgType) -> Option<&'static CtxLayout> {
        self.ctx_layouts
            .iter()
            .find(|&&(t, _)| t == prog_type)
            .map(|&(_, l)| l)
    }

    /// The generic helpers every program type has.
    pub fn generic() -> Self {
        let mut t = HelperTable::empty();
        t.register_all(GENERIC);
        t
    }

    pub fn register(&mut self, def: HelperDef) {
        let i = def.id as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(def);
    }

    pub fn register_all(&mut self, defs: &[HelperDef]) {
        for d in defs {
            self.register(*d);
        }
    }

    /// Every registered helper, by id.
    pub fn iter(&self) -> impl Iterator<Item = &HelperDef> {
        self.slots.iter().flatten()
    }

    pub fn get(&self, id: u32) -> Option<&HelperDef> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    #[inline]
    pub fn call(&self, st: &mut RunState, id: u32, args: &[u64; 5]) -> Result<u64, VmError> {
        let def = self.get(id).ok_or(VmError::UnknownHelper(id))?;
        if !def.prog_types.is_empty() && !def.prog_types.contains(&st.current.prog_type) {
            return Err(VmError::HelperNotAllowed {
                id,
                name: def.name,
                prog_type: st.current.prog_type,
            });
        }
        (def.func)(st, args)
    }
}

macro_rules! helper {
    ($id:expr, $name:expr, $f:expr, $proto:expr) => {
        HelperDef {
            id: $id,
            name: $name,
            func: $f,
            prog_types: &[],
            proto: $proto,
            map_op: None,
        }
    };
}

/// A helper whose r1 is a map, written as its map op `$op`: the function
/// finds the map by handle, the JIT calls the op with a constant map.
macro_rules! map_helper {
    ($id:expr, $name:expr, $op:expr, $proto:expr) => {
        HelperDef {
            id: $id,
            name: $name,
            func: |st, a| {
                let map = st.map(a[0])?;
                $op(st, map, a)
            },
            prog_types: &[],
            proto: $proto,
            map_op: Some(crate::map_op!($op)),
        }
    };
}

/// ARG_PTR_TO_MEM | MEM_RDONLY: readable memory sized by the next argument.
const MEM_RDONLY: A = A::PtrToMem {
    maybe_null: false,
    rdonly: true,
};

// kernel/bpf/helpers.c: bpf_map_lookup_elem_proto (pkt_access: the key may be
// in the packet).
const MAP_LOOKUP: P =
    P::new(R::PtrToMapValueOrNull, &[A::ConstMapPtr, A::PtrToMapKey]).pkt_access();
// kernel/bpf/helpers.c: bpf_map_update_elem_proto
const MAP_UPDATE: P = P::new(
    R::Integer,
    &[
        A::ConstMapPtr,
        A::PtrToMapKey,
        A::PtrToMapValue,
        A::Anything,
    ],
)
.pkt_access();
// kernel/bpf/helpers.c: bpf_map_delete_elem_proto
const MAP_DELETE: P = P::new(R::Integer, &[A::ConstMapPtr, A::PtrToMapKey]).pkt_access();
// kernel/bpf/helpers.c: bpf_map_push_elem_proto
const MAP_PUSH: P =
    P::new(R::Integer, &[A::ConstMapPtr, A::PtrToMapValue, A::Anything]).pkt_access();
// kernel/bpf/helpers.c: bpf_map_pop_elem_proto, bpf_map_peek_elem_proto
// (ARG_PTR_TO_MAP_VALUE | MEM_UNINIT | MEM_WRITE; no pkt_access).
const MAP_POP: P = P::new(R::Integer, &[A::ConstMapPtr, A::PtrToUninitMapValue]);
// kernel/bpf/helpers.c: bpf_map_lookup_percpu_elem_proto
const MAP_LOOKUP_PERCPU: P = P::new(
    R::PtrToMapValueOrNull,
    &[A::ConstMapPtr, A::PtrToMapKey, A::Anything],
)
.pkt_access();
/// A helper taking nothing and returning a scalar (ktime_get_ns, get_prandom_u32,
/// get_smp_processor_id, get_numa_node_id, jiffies64...).
const NO_ARGS: P = P::new(R::Integer, &[]);
// kernel/trace/bpf_trace.c: bpf_trace_printk_proto (gpl_only).
const TRACE_PRINTK: P = P::new(R::Integer, &[MEM_RDONLY, A::ConstSize]).gpl_only();
// kernel/bpf/core.c: bpf_tail_call_proto. Not in bpf_helper_changes_pkt_data
// since 6.17: the verifier marks a subprogram that tail-calls as changing
// packet data (visit_insn: mark_subprog_changes_pkt_data) instead.
const TAIL_CALL: P = P::new(R::Void, &[A::PtrToCtx, A::ConstMapPtr, A::Anything]);
// kernel/bpf/helpers.c: bpf_spin_lock_proto, bpf_spin_unlock_proto
const SPIN_LOCK: P = P::new(R::Void, &[A::PtrToSpinLock]);
// kernel/bpf/ringbuf.c: bpf_ringbuf_output_proto
const RINGBUF_OUTPUT: P = P::new(
    R::Integer,
    &[A::ConstMapPtr, MEM_RDONLY, A::ConstSizeOrZero, A::Anything],
);
// kernel/bpf/ringbuf.c: bpf_ringbuf_reserve_proto
// (RET_PTR_TO_MEM | MEM_RINGBUF | PTR_MAYBE_NULL: acquires a reference).
const RINGBUF_RESERVE: P = P::new(
    R::PtrToAllocMemOrNull,
    &[A::ConstMapPtr, A::ConstAllocSizeOrZero, A::Anything],
);
// kernel/bpf/ringbuf.c: bpf_ringbuf_submit_proto, bpf_ringbuf_discard_proto
// (ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE).
const RINGBUF_COMMIT: P = P::new(R::Void, &[A::PtrToAllocMemRelease, A::Anything]);
// kernel/bpf/ringbuf.c: bpf_ringbuf_query_proto
const RINGBUF_QUERY: P = P::new(R::Integer, &[A::ConstMapPtr, A::Anything]);
// kernel/bpf/bpf_iter.c: bpf_for_each_map_elem_proto
const FOR_EACH_MAP_ELEM: P = P::new(
    R::Integer,
    &[
        A::ConstMapPtr,
        A::PtrToFunc,
        A::PtrToStackOrNull,
        A::Anything,
    ],
);
// kernel/bpf/bpf_iter.c: bpf_loop_proto
const LOOP: P = P::new(
    R::Integer,
    &[A::Anything, A::PtrToFunc, A::PtrToStackOrNull, A::Anything],
);

const GENERIC: &[HelperDef] = &[
    helper!(1, "bpf_map_lookup_elem", map_lookup_elem, MAP_LOOKUP),
    helper!(2, "bpf_map_update_elem", map_update_elem, MAP_UPDATE),
    helper!(3, "bpf_map_delete_elem", map_delete_elem, MAP_DELETE),
    helper!(5, "bpf_ktime_get_ns", ktime_get_ns, NO_ARGS),
    helper!(6, "bpf_trace_printk", trace_printk, TRACE_PRINTK),
    helper!(7, "bpf_get_prandom_u32", get_prandom_u32, NO_ARGS),
    helper!(8, "bpf_get_smp_processor_id", get_smp_processor_id, NO_ARGS),
    helper!(12, "bpf_tail_call", tail_call, TAIL_CALL),
    helper!(42, "bpf_get_numa_node_id", |_, _| Ok(0), NO_ARGS),
    map_helper!(87, "bpf_map_push_elem", map_push_elem, MAP_PUSH),
    map_helper!(88, "bpf_map_pop_elem", map_pop_elem, MAP_POP),
    map_helper!(89, "bpf_map_peek_elem", map_peek_elem, MAP_POP),
    helper!(93, "bpf_spin_lock", spin_lock, SPIN_LOCK),
    helper!(94, "bpf_spin_unlock", spin_unlock, SPIN_LOCK),
    helper!(118, "bpf_jiffies64", jiffies64, NO_ARGS),
    helper!(125, "bpf_ktime_get_boot_ns", ktime_get_ns, NO_ARGS),
    map_helper!(130, "bpf_ringbuf_output", ringbuf_output, RINGBUF_OUTPUT),
    map_helper!(131, "bpf_ringbuf_reserve", ringbuf_reserve, RINGBUF_RESERVE),
    helper!(132, "bpf_ringbuf_submit", ringbuf_submit, RINGBUF_COMMIT),
    helper!(133, "bpf_ringbuf_discard", ringbuf_discard, RINGBUF_COMMIT),
    map_helper!(134, "bpf_ringbuf_query", ringbuf_query, RINGBUF_QUERY),
    helper!(160, "bpf_ktime_get_coarse_ns", ktime_get_ns, NO_ARGS),
    map_helper!(
        164,
        "bpf_for_each_map_elem",
        for_each_map_elem,
        FOR_EACH_MAP_ELEM
    ),
    helper!(181, "bpf_loop", bpf_loop, LOOP),
    map_helper!(
        195,
        "bpf_map_lookup_percpu_elem",
        map_lookup_percpu_elem,
        MAP_LOOKUP_PERCPU
    ),
    helper!(208, "bpf_ktime_get_tai_ns", ktime_get_ns, NO_ARGS),
];

/// The key a map helper's argument points at, read in place.
fn key_of<'s>(st: &'s RunState, map: &Map, addr: u64) -> Result<&'s [u8], VmError> {
    st.bytes(addr, map.attr().key_size as usize)
}

pub(crate) fn errno_ret(r: Result<(), i32>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => neg(e as i64),
    }
}

/// Map types whose values a program cannot look up (no value to point to):
/// bpf_map_lookup_elem on them is an error (the verifier refuses it first).
pub(crate) fn lookup_refused(t: MapType) -> bool {
    matches!(
        t,
        MapType::ProgArray
            | MapType::PerfEventArray
            | MapType::Ringbuf
            | MapType::Queue
            | MapType::Stack
    )
}

// kernel/bpf/helpers.c: bpf_map_lookup_elem
fn map_lookup_elem(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = st.map(a[0])?;
    let key = key_of(st, map, a[1])?;
    match map.attr().map_type {
        MapType::ArrayOfMaps | MapType::HashOfMaps => Ok(match map.lookup_map(key) {
            Some(inner) => st.adopt_map(&inner),
            None => 0,
        }),
        t if lookup_refused(t) => Err(VmError::Helper(format!(
            "bpf_map_lookup_elem on {} map {}",
            map.attr().map_type.name(),
            map.attr().name
        ))),
        _ => {
            let v = map.lookup(key, st.cpu()).map_or(0, |p| p as usize as u64);
            st.ret_map_value(map);
            Ok(v)
        }
    }
}

// kernel/bpf/helpers.c: bpf_map_lookup_percpu_elem (per-CPU array and hash maps;
// NULL for a CPU that does not exist)
fn map_lookup_percpu_elem(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    if !map.attr().map_type.is_percpu() {
        return Err(VmError::Helper(format!(
            "bpf_map_lookup_percpu_elem on {} map",
            map.attr().map_type.name()
        )));
    }
    let key = key_of(st, map, a[1])?;
    let cpu = a[2] as u32 as usize;
    if cpu >= map.possible_cpus() {
        return Ok(0);
    }
    let v = map.lookup(key, cpu).map_or(0, |p| p as usize as u64);
    st.ret_map_value(map);
    Ok(v)
}

// kernel/bpf/helpers.c: bpf_map_update_elem
fn map_update_elem(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = st.map(a[0])?;
    let key = key_of(st, map, a[1])?;
    let value = st.bytes(a[2], map.attr().value_size as usize)?;
    Ok(errno_ret(map.update(key, value, a[3], st.cpu())))
}

fn map_delete_elem(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = st.map(a[0])?;
    let key = key_of(st, map, a[1])?;
    Ok(errno_ret(map.delete(key)))
}

// kernel/bpf/helpers.c: bpf_map_push_elem / pop / peek
fn map_push_elem(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    let value = st.bytes(a[1], map.attr().value_size as usize)?;
    Ok(errno_ret(map.push(value, a[2])))
}

fn map_pop_elem(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    pop_or_peek(st, map, a, false)
}

fn map_peek_elem(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    pop_or_peek(st, map, a, true)
}

fn pop_or_peek(st: &mut RunState, map: &Map, a: &[u64; 5], peek: bool) -> Result<u64, VmError> {
    with_buffer(map.attr().value_size as usize, |out| {
        let r = if peek { map.peek(out) } else { map.pop(out) };
        if r.is_ok() {
            st.write(a[1], out)?;
        }
        Ok(errno_ret(r))
    })
}

/// Bytes a helper moves between a map or the packet and program memory go
/// through a buffer on the stack up to this size (no allocation per call;
/// the kernel copies straight).
const BOUNCE: usize = 128;

/// `f` given a zeroed buffer of `len` bytes (on the stack up to BOUNCE).
pub fn with_buffer<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut small = [0u8; BOUNCE];
    match small.get_mut(..len) {
        Some(b) => f(b),
        None => f(&mut vec![0u8; len]),
    }
}

fn ktime_get_ns(st: &mut RunState, _: &[u64; 5]) -> Result<u64, VmError> {
    Ok(st.env.clock.now_ns())
}

/// HZ of the modelled kernel (CONFIG_HZ=1000).
pub const HZ: u64 = 1000;
/// include/linux/jiffies.h: INITIAL_JIFFIES, (unsigned int)(-300 * HZ) on 64-bit.
pub const INITIAL_JIFFIES: u64 = (-300i64 * HZ as i64) as u32 as u64;

// kernel/bpf/helpers.c: bpf_jiffies64 (jiffies start at INITIAL_JIFFIES with the
// engine clock, so they are never 0, as on a running kernel).
fn jiffies64(st: &mut RunState, _: &[u64; 5]) -> Result<u64, VmError> {
    Ok(INITIAL_JIFFIES + st.env.clock.now_ns() / (1_000_000_000 / HZ))
}

// The kernel's is a per-CPU prandom state; skiff's is a xorshift64* stream, seeded
// per worker (documented in docs/differences.md: values differ, distribution same).
fn get_prandom_u32(st: &mut RunState, _: &[u64; 5]) -> Result<u64, VmError> {
    Ok(st.env.prandom_u32() as u64)
}

fn get_smp_processor_id(st: &mut RunState, _: &[u64; 5]) -> Result<u64, VmError> {
    Ok(st.env.cpu as u64)
}

// kernel/bpf/core.c: ___bpf_prog_run JMP_TAIL_CALL. A failed tail call returns to
// the program, which goes on with the next instruction.
fn tail_call(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = st.map(a[1])?;
    if map.attr().map_type != MapType::ProgArray {
        return Err(VmError::Helper(format!(
            "bpf_tail_call on {} map",
            map.attr().map_type.name()
        )));
    }
    let prog = match tail_call_target(st, map, a[2] as u32) {
        Ok(p) => p,
        Err(r0) => return Ok(r0),
    };
    // ARG_PTR_TO_CTX: the target starts with r1 the context, as every program.
    if st.arg_tag(0) != crate::mem::CTX {
        return Err(VmError::Ctx("bpf_tail_call: r1 is not the context".into()));
    }
    begin_tail_call(st, prog);
    st.tail_call_ref(prog);
    Ok(0)
}

/// The target of a tail call through PROG_ARRAY `map` at `index`, or what
/// bpf_tail_call returns when it falls through. The checks in the kernel's
/// order (arch/x86/net/bpf_jit_comp.c: emit_bpf_tail_call_indirect): index <
/// max_entries, tail_call_cnt < MAX_TAIL_CALL_CNT, a program in the slot (the
/// count goes up only for a call made: `begin_tail_call`).
pub(crate) fn tail_call_target(st: &RunState, map: &Map, index: u32) -> Result<ProgRef, u64> {
    if index >= map.attr().max_entries || st.jit.tail_call_cnt >= MAX_TAIL_CALL_CNT as u64 {
        return Err(neg(E2BIG));
    }
    slot_program(st.env.programs(), map, index).ok_or(neg(ENOENT))
}

/// The program in PROG_ARRAY slot `index`, among the worker's programs: at the
/// position the slot's hint names (no search by id), else found by id and the
/// hint recorded for the next call. A program not in `programs` is not
/// reachable (as before: `Env::programs` keeps what a run may enter alive).
fn slot_program(programs: &[Arc<Program>], map: &Map, index: u32) -> Option<ProgRef> {
    let (id, hint) = map.lookup_prog_hinted(index)?;
    if let Some(p) = programs.get(hint as usize).filter(|p| p.id == id) {
        return Some(ProgRef::new(p));
    }
    let at = programs.iter().position(|p| p.id == id)?;
    if let Ok(h) = u32::try_from(at) {
        map.hint_prog(index, id, h);
    }
    programs.get(at).map(ProgRef::new)
}

/// A tail call to `prog` is made: it counts, and its maps are valid by handle
/// for the rest of the run (`Env::programs` keeps `prog`, and so its maps,
/// alive for the run).
pub(crate) fn begin_tail_call(st: &mut RunState, prog: ProgRef) {
    st.jit.tail_call_cnt += 1;
    st.adopt_program_maps(prog);
}

/// Whether helper 12 of `table` is this module's bpf_tail_call (the JIT's
/// direct tail calls do what it does; another table's helper 12 is called
/// through the table).
pub(crate) fn is_own_tail_call(table: &HelperTable) -> bool {
    table
        .get(12)
        .is_some_and(|d| d.func as usize == tail_call as HelperFn as usize)
}

pub(crate) const BPF_MAX_LOOPS: u64 = 8 * 1024 * 1024;

// kernel/bpf/bpf_iter.c: bpf_loop
fn bpf_loop(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (nr, func, ctx, flags) = (a[0] as u32 as u64, a[1], a[2], a[3]);
    if flags != 0 {
        return Ok(neg(EINVAL));
    }
    if nr > BPF_MAX_LOOPS {
        // With flags 0 the verifier inlines the loop (inline_bpf_loop), whose
        // error path is a 32-bit move: -E2BIG zero-extended.
        return Ok(neg(E2BIG) as u32 as u64);
    }
    for i in 0..nr {
        let tags = [SCALAR, st.arg_tag(2), SCALAR, SCALAR, SCALAR];
        let ret = st.call_callback(func, [i, ctx, 0, 0, 0], tags)?;
        if ret != 0 {
            return Ok(i + 1);
        }
    }
    Ok(nr)
}

// kernel/bpf/bpf_iter.c: bpf_for_each_map_elem (array and hash maps)
fn for_each_map_elem(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    let (func, ctx, flags) = (a[1], a[2], a[3]);
    if flags != 0 {
        return Ok(neg(EINVAL));
    }
    match map.attr().map_type {
        MapType::Array
        | MapType::PercpuArray
        | MapType::Hash
        | MapType::PercpuHash
        | MapType::LruHash
        | MapType::LruPercpuHash => {}
        t => {
            return Err(VmError::NotSupported(format!(
                "bpf_for_each_map_elem on {} map",
                t.name()
            )))
        }
    }
    // The callback gets a pointer to a copy of the key (read-only), as the kernel's
    // key lives in the map element.
    let mut count = 0u64;
    let (map_tag, ctx_tag) = (st.map_tag(map), st.arg_tag(2));
    for (key, _) in map.dump() {
        let Some(value) = map.lookup(&key, st.cpu()) else {
            continue;
        };
        let (key_addr, key_tag) = st.scratch_key(&key)?;
        count += 1;
        let args = [a[0], key_addr, value as usize as u64, ctx, 0];
        let tags = [SCALAR, key_tag, map_tag, ctx_tag, SCALAR];
        let ret = st.call_callback(func, args, tags)?;
        if ret != 0 {
            break;
        }
    }
    Ok(count)
}

// kernel/bpf/helpers.c: bpf_spin_lock. The lock word is a u32 in a map value.
fn spin_lock(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let p = lock_word(st, a[0])?;
    for _ in 0..10_000_000u32 {
        if p.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(0);
        }
        std::hint::spin_loop();
    }
    Err(VmError::Helper(
        "bpf_spin_lock: lock held too long (deadlock?)".into(),
    ))
}

fn spin_unlock(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    lock_word(st, a[0])?.store(0, Ordering::Release);
    Ok(0)
}

fn lock_word<'a>(st: &RunState, addr: u64) -> Result<&'a AtomicU32, VmError> {
    if !addr.is_multiple_of(4) {
        return Err(VmError::Misaligned { addr, len: 4 });
    }
    let p = st.raw(addr, 4, true)?;
    // SAFETY: 4 aligned writable bytes inside map storage, which outlives the run.
    Ok(unsafe { AtomicU32::from_ptr(p as *mut u32) })
}

fn ringbuf_of(map: &Map) -> Result<&Map, VmError> {
    if map.attr().map_type != MapType::Ringbuf {
        return Err(VmError::Helper(format!(
            "{} is not a ringbuf map",
            map.attr().name
        )));
    }
    Ok(map)
}

// kernel/bpf/ringbuf.c: bpf_ringbuf_output
fn ringbuf_output(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = ringbuf_of(map)?;
    let data = st.bytes(a[1], a[2] as usize)?;
    Ok(errno_ret(map.ringbuf_output(data, a[3])))
}

fn ringbuf_reserve(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = ringbuf_of(map)?;
    Ok(match map.ringbuf_reserve(a[1], a[2]) {
        Some(p) => {
            // RET_PTR_TO_RINGBUF_MEM_OR_NULL: r0 points into this record only.
            let tag = st.add_region(Region::new(
                p as usize,
                a[1] as usize,
                RegionKind::ReadWrite,
            ));
            st.set_ret_tag(tag);
            p as usize as u64
        }
        None => 0,
    })
}

fn ringbuf_commit(st: &mut RunState, a: &[u64; 5], discard: bool) -> Result<u64, VmError> {
    let at = a[0] as usize;
    let ring = st.maps().find(|m| {
        m.attr().map_type == MapType::Ringbuf
            && m.regions()
                .iter()
                .any(|r| at >= r.start && at < r.start + r.len)
    });
    let Some(m) = ring else {
        return Err(VmError::Helper(format!(
            "{:#x} is not a reserved ringbuf record",
            a[0]
        )));
    };
    m.ringbuf_submit(at as *mut u8, discard, a[1])
        .map_err(|e| VmError::Helper(format!("ringbuf submit: errno {e}")))?;
    Ok(0)
}

fn ringbuf_submit(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    ringbuf_commit(st, a, false)
}

fn ringbuf_discard(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    ringbuf_commit(st, a, true)
}

fn ringbuf_query(_: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    Ok(ringbuf_of(map)?.ringbuf_query(a[1]))
}

// kernel/trace/bpf_trace.c: bpf_trace_printk (format checks of bpf_bprintf_prepare)
fn trace_printk(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let fmt = st.read(a[0], a[1] as usize)?;
    match format_printk(st, &fmt, &a[2..5]) {
        Ok(s) => {
            let n = s.len() as u64;
            if st.env.trace.len() >= crate::state::TRACE_LINES {
                st.env.trace.pop_front();
                st.env.trace_dropped += 1;
            }
            st.env.trace.push_back(s);
            Ok(n)
        }
        Err(()) => Ok(neg(EINVAL)),
    }
}

/// Formats like the kernel's bstr_printf after bpf_bprintf_prepare's checks; Err
/// where the kernel refuses the format (-EINVAL).
pub fn format_printk(st: &RunState, fmt: &[u8], args: &[u64]) -> Result<String, ()> {
    let end = fmt.iter().position(|&b| b == 0).ok_or(())?;
    let fmt = &fmt[..end];
    let mut out = String::new();
    let mut ai = 0usize;
    let mut i = 0usize;
    while i < fmt.len() {
        let c = fmt[i];
        if c != b'%' {
            if !(c.is_ascii_graphic() || c.is_ascii_whitespace()) {
                return Err(());
            }
            out.push(c as char);
            i += 1;
            continue;
        }
        i += 1;
        if fmt.get(i) == Some(&b'%') {
            out.push('%');
            i += 1;
            continue;
        }
        // flags and width as the kernel accepts them
        let mut spec = String::from("%");
        while let Some(&f) = fmt.get(i) {
            if b"-+ #0".contains(&f) || f.is_ascii_digit() {
                spec.push(f as char);
                i += 1;
            } else {
                break;
            }
        }
        let mut longs = 0;
        while fmt.get(i) == Some(&b'l') {
            longs += 1;
            i += 1;
        }
        if fmt.get(i) == Some(&b'h') {
            return Err(());
        }
        let conv = *fmt.get(i).ok_or(())?;
        i += 1;
        let arg = *args.get(ai).ok_or(())?;
        ai += 1;
        let width: usize = spec
            .trim_start_matches(['%', '-', '+', ' ', '#', '0'])
            .parse()
            .unwrap_or(0);
        let left = spec.contains('-');
        let zero = spec.contains('0') && !left;
        let text = match conv {
            b'd' | b'i' => {
                if longs == 0 {
                    (arg as i32).to_string()
                } else {
                    (arg as i64).to_string()
                }
            }
            b'u' => {
                if longs == 0 {
                    (arg as u32).to_string()
                } else {
                    arg.to_string()
                }
            }
            b'x' | b'X' => {
                let v = if longs == 0 { arg as u32 as u64 } else { arg };
                let s = if conv == b'x' {
                    format!("{v:x}")
                } else {
                    format!("{v:X}")
                };
                if spec.contains('#') && v != 0 {
                    format!("0x{s}")
                } else {
                    s
                }
            }
            b'c' if longs == 0 => ((arg as u8) as char).to_string(),
            b'p' => {
                // %pK/%px/%pks/%pus take an extra letter or two
                while let Some(&f) = fmt.get(i) {
                    if f.is_ascii_alphabetic() {
                        i += 1
                    } else {
                        break;
                    }
                }
                format!("{arg:016x}")
            }
            b's' if longs == 0 => {
                let mut s = String::new();
                let mut addr = arg;
                for _ in 0..1024 {
                    match st.read(addr, 1) {
                        Ok(b) if b[0] != 0 => s.push(b[0] as char),
                        Ok(_) => break,
                        // bpf_bprintf_prepare: an unreadable string prints as ""
                        Err(_) => {
                            s.clear();
                            break;
                        }
                    }
                    addr += 1;
                }
                s
            }
            _ => return Err(()),
        };
        if text.len() < width {
            let pad = width - text.len();
            if left {
                out.push_str(&text);
                out.extend(std::iter::repeat_n(' ', pad));
            } else if zero {
                out.extend(std::iter::repeat_n('0', pad));
                out.push_str(&text);
            } else {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(&text);
            }
        } else {
            out.push_str(&text);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HelperProto, RetType};

    #[test]
    fn every_generic_helper_is_declared() {
        let t = HelperTable::generic();
        let undeclared: Vec<&str> = t
            .iter()
            .filter(|d| !d.proto.declared)
            .map(|d| d.name)
            .collect();
        assert_eq!(undeclared, Vec::<&str>::new());
        assert_eq!(t.iter().count(), 26);
    }

    #[test]
    fn generic_prototypes_are_the_kernels() {
        let t = HelperTable::generic();
        let proto = |id: u32| t.get(id).map(|d| d.proto);
        // kernel/bpf/helpers.c: bpf_map_lookup_elem_proto
        assert_eq!(
            proto(1),
            Some(HelperProto {
                ret: RetType::PtrToMapValueOrNull,
                args: [
                    A::ConstMapPtr,
                    A::PtrToMapKey,
                    A::DontCare,
                    A::DontCare,
                    A::DontCare
                ],
                changes_pkt_data: false,
                pkt_access: true,
                gpl_only: false,
                might_sleep: false,
                declared: true,
            })
        );
        // kernel/bpf/ringbuf.c: bpf_ringbuf_reserve_proto
        assert_eq!(
            proto(131).map(|p| (p.ret, p.args[0], p.args[1], p.args[2])),
            Some((
                RetType::PtrToAllocMemOrNull,
                A::ConstMapPtr,
                A::ConstAllocSizeOrZero,
                A::Anything
            ))
        );
        assert_eq!(
            proto(132).map(|p| (p.ret, p.args[0])),
            Some((RetType::Void, A::PtrToAllocMemRelease))
        );
        // kernel/trace/bpf_trace.c: bpf_trace_printk_proto is GPL-only.
        assert_eq!(proto(6).map(|p| p.gpl_only), Some(true));
        assert_eq!(proto(88).map(|p| p.args[1]), Some(A::PtrToUninitMapValue));
        assert_eq!(proto(88).map(|p| p.pkt_access), Some(false));
        assert_eq!(
            proto(181).map(|p| p.args),
            Some([
                A::Anything,
                A::PtrToFunc,
                A::PtrToStackOrNull,
                A::Anything,
                A::DontCare
            ])
        );
        // No generic helper changes packet data (tail calls are handled per
        // subprogram by the verifier, not by this flag, since 6.17).
        assert!(t.iter().all(|d| !d.proto.changes_pkt_data));
    }
}
