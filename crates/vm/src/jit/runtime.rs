//! What native code calls back into: the slow paths of memory access (the full
//! region table, the context's field rewriting), helper calls, tail calls and
//! failures. All take the run state as their first argument; an error is
//! recorded in it and `status` tells the native code to unwind.

use std::mem::offset_of;

use crate::mem::{ProgTags, Region, Regions, Tag, MAX_TAGS, SCALAR};
use crate::state::RunState;
use crate::VmError;

use super::JitFn;

/// `JitState::status`: keep going.
pub const RUN: u64 = 0;
/// The current native function must return r0 now (a tail call has run in its
/// place); its caller goes on.
pub const RETURN_NOW: u64 = 1;
/// Unwind every native frame: an error, or the program ended early (LD_ABS out
/// of the packet, a helper that ends the program); `exit_value` is r0.
pub const ABORT: u64 = 2;

/// rt_call's and rt_map_op's `pc_site` argument: the call's pc, and what
/// the call may change (the verifier's HelperSite, decided at compile time
/// instead of looking the helper up per call).
pub const SITE_PKT: u64 = 1 << 33;
pub const SITE_CTX: u64 = 1 << 34;

/// rt_load's size flag: a helper's memory argument, where the context is not memory.
pub const MEM_ONLY: u64 = 0x100;

pub const FAIL_BUDGET: u64 = 0;
pub const FAIL_DEPTH: u64 = 1;
pub const FAIL_JUMP: u64 = 2;

/// Number of 4-byte context slots the shadow covers (__sk_buff is 192 bytes).
pub const SHADOW_SLOTS: usize = 64;

/// An empty range for native code's `lo <= a && a <= hi - size` tests: no
/// address passes with `lo = hi = u64::MAX` (with `hi = 0`, `hi - size` wrapped
/// and let a one-byte access at address u64::MAX through: the fuzzer's SIGSEGV).
pub const EMPTY: (u64, u64) = (u64::MAX, u64::MAX);

/// 8-byte stack slots (each has a tag: what a spilled register pointed to).
pub const STACK_SLOTS: usize = crate::state::STACK_SIZE / 8;

/// The part of the run state native code reads and writes directly, and the
/// interpreter shares (budget, depth, tags).
// Aligned: each worker writes its own every run; two must not share a line.
#[repr(C, align(128))]
pub struct JitState {
    pub pkt_start: u64,
    pub pkt_end: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// Bit i: `shadow[i]` holds what a 4-byte context load at offset 4i returns.
    pub shadow_valid: u64,
    pub status: u64,
    pub exit_value: u64,
    /// The worker's CPU (Env::cpu), for per-CPU array lookups.
    pub cpu: u64,
    /// Instructions left (both engines); call depth (0 = the main program).
    pub budget: u64,
    pub depth: usize,
    /// The run state of the current run (set when native code is entered).
    pub st: *mut RunState<'static>,
    /// Tags of r1-r5 passed to a function or helper (`state::pack_tags`).
    pub arg_tags: u64,
    /// r0's tag after a helper or function returns.
    pub ret_tag: u64,
    /// The tag of what the runtime's load returned.
    pub load_tag: u64,
    /// Nonzero once a pointer was spilled to the stack this run (the slot tags
    /// are cleared at the next run).
    pub slots_dirty: u64,
    /// The structure behind the context (`Context::direct_base`) for the
    /// layout `layout` points to, or 0: native code compiled for that layout
    /// loads and stores its fields at this address (else through the runtime).
    pub ctx_base: u64,
    pub layout: *const crate::CtxLayout,
    /// The shadow slots native code reads at `ctx_base` this run (they may
    /// be stale in the shadow).
    pub direct_slots: u64,
    /// The shadow slots of the packet fields (data_meta, data, data_end) the
    /// last `refresh_packet` wrote: current until the packet moves, when it
    /// writes them again (the shadow's other fills leave them).
    pub pkt_slots: u64,
    /// Tail calls made this run (the kernel's tail_call_cnt; both engines).
    pub tail_call_cnt: u64,
    /// `Regions::has_dynamic` of the run's table, for native code (native
    /// tail calls take the runtime then): `note_dynamic` after each change.
    pub regions_dynamic: u64,
    /// The tail calls native code makes without the runtime (jit::tail).
    pub tail_cache: [super::tail::TailEntry; super::tail::TAIL_CACHE],
    /// Meaningful only in the slots `shadow_valid` names.
    pub shadow: [u64; SHADOW_SLOTS],
    /// Each tag's region bounds for reads and for writes (`Region::native_bounds`).
    pub rbounds: [[u64; 2]; MAX_TAGS],
    pub wbounds: [[u64; 2]; MAX_TAGS],
    /// The tag of the pointer each 8-byte stack slot holds (SCALAR: none).
    pub slot_tags: [u8; STACK_SLOTS],
    /// The programs `tail_cache` names, held so its code stays alive.
    pub(crate) tail_keep: [Option<std::sync::Arc<crate::Program>>; super::tail::TAIL_CACHE],
}

impl Default for JitState {
    fn default() -> Self {
        JitState {
            pkt_start: EMPTY.0,
            pkt_end: EMPTY.1,
            stack_lo: EMPTY.0,
            stack_hi: EMPTY.1,
            shadow_valid: 0,
            status: RUN,
            exit_value: 0,
            cpu: 0,
            budget: 0,
            depth: 0,
            st: std::ptr::null_mut(),
            arg_tags: 0,
            ret_tag: 0,
            load_tag: 0,
            slots_dirty: 0,
            ctx_base: 0,
            layout: std::ptr::null(),
            direct_slots: 0,
            pkt_slots: 0,
            tail_call_cnt: 0,
            regions_dynamic: 0,
            tail_cache: Default::default(),
            shadow: [0; SHADOW_SLOTS],
            rbounds: [[EMPTY.0, EMPTY.1]; MAX_TAGS],
            wbounds: [[EMPTY.0, EMPTY.1]; MAX_TAGS],
            slot_tags: [SCALAR; STACK_SLOTS],
            tail_keep: Default::default(),
        }
    }
}

impl JitState {
    /// The registers of a new run.
    pub fn begin_run(&mut self, budget: u64, cpu: u32) {
        self.budget = budget;
        self.cpu = cpu as u64;
        self.depth = 0;
        self.status = RUN;
        self.tail_call_cnt = 0;
        if self.slots_dirty != 0 {
            self.slot_tags = [SCALAR; STACK_SLOTS];
            self.slots_dirty = 0;
        }
    }

    /// The context's packet fields into the shadow (`Context::packet_view`),
    /// so no run asks the context for them (`fast_loads`).
    #[inline]
    pub fn set_packet_fields(&mut self, view: Option<crate::PacketView>) {
        let mut slots = 0u64;
        let mut put = |shadow: &mut [u64; SHADOW_SLOTS], off: u32, v: u64| {
            debug_assert!(off % 4 == 0 && (off as usize) < SHADOW_SLOTS * 4);
            let slot = (off / 4) as usize & (SHADOW_SLOTS - 1);
            shadow[slot] = v;
            slots |= 1 << slot;
        };
        if let Some(v) = view {
            if let Some(offs) = v.fields {
                for (off, addr) in offs.into_iter().zip([v.start, v.data, v.end]) {
                    put(&mut self.shadow, off, addr as u64);
                }
            }
            if let Some(off) = v.len_field {
                put(&mut self.shadow, off, v.end.saturating_sub(v.data) as u64);
            }
        }
        self.shadow_valid = (self.shadow_valid & !self.pkt_slots) | slots;
        self.pkt_slots = slots;
    }

    pub fn set_bounds(&mut self, tag: Tag, r: &Region) {
        let (rd, wr) = r.native_bounds();
        if let (Some(a), Some(b)) = (
            self.rbounds.get_mut(tag as usize),
            self.wbounds.get_mut(tag as usize),
        ) {
            (*a, *b) = (rd, wr);
        }
    }

    /// Tags [from, to) name no region any more.
    pub fn clear_bounds(&mut self, from: usize, to: usize) {
        for t in from..to.min(MAX_TAGS) {
            self.rbounds[t] = [EMPTY.0, EMPTY.1];
            self.wbounds[t] = [EMPTY.0, EMPTY.1];
        }
    }

    /// A program's map tags from FIRST_MAP on, in place of the `old_len`
    /// tags the table had.
    pub fn load_program(&mut self, tags: &ProgTags, old_len: usize) {
        let first = crate::mem::FIRST_MAP as usize;
        let n = tags.bounds.len().min(MAX_TAGS - first);
        for (i, &(rd, wr)) in tags.bounds.iter().take(n).enumerate() {
            self.rbounds[first + i] = rd;
            self.wbounds[first + i] = wr;
        }
        self.clear_bounds(first + n, old_len);
    }

    /// Whether `regions`, the run's table, now holds regions the run added.
    pub fn note_dynamic(&mut self, regions: &Regions) {
        self.regions_dynamic = regions.has_dynamic() as u64;
    }

    /// Bounds of `regions`' tags from `from` on.
    pub fn sync_bounds(&mut self, regions: &Regions, from: usize) {
        for (t, r) in regions.by_tag.iter().enumerate().skip(from) {
            self.set_bounds(t as Tag, r);
        }
    }

    fn slot(&self, addr: u64) -> Option<usize> {
        let i = (addr.wrapping_sub(self.stack_lo) >> 3) as usize;
        (addr >= self.stack_lo && i < STACK_SLOTS).then_some(i)
    }

    /// A checked store of `size` bytes at `addr` through a STACK pointer: the
    /// slots it touches hold no pointer any more, unless it is an aligned 8-byte
    /// store of a pointer (a spill), whose tag the slot keeps.
    #[inline(always)]
    pub fn store_slot_tags(&mut self, addr: u64, size: u32, tag: Tag) {
        self.clear_slot_tags(addr, size as u64);
        if size == 8 && addr & 7 == 0 {
            if let Some(i) = self.slot(addr) {
                self.slot_tags[i] = tag;
                self.slots_dirty |= tag as u64;
            }
        }
    }

    /// Stack bytes [addr, addr + len) were overwritten (by a narrow store or a helper).
    pub fn clear_slot_tags(&mut self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (Some(a), Some(b)) = (self.slot(addr), self.slot(addr.wrapping_add(len - 1))) else {
            return;
        };
        for t in &mut self.slot_tags[a..=b] {
            *t = SCALAR;
        }
    }

    /// The tag of an aligned 8-byte load through a STACK pointer (a fill).
    #[inline(always)]
    pub fn load_slot_tag(&self, addr: u64, size: u32) -> Tag {
        if size != 8 || addr & 7 != 0 {
            return SCALAR;
        }
        self.slot(addr).map_or(SCALAR, |i| self.slot_tags[i])
    }
}

/// Byte offsets of the JIT state's fields, for native code (which gets a
/// pointer to the JitState).
pub mod off {
    use super::*;
    pub const PKT_START: i32 = offset_of!(JitState, pkt_start) as i32;
    pub const PKT_END: i32 = offset_of!(JitState, pkt_end) as i32;
    pub const STACK_LO: i32 = offset_of!(JitState, stack_lo) as i32;
    pub const STACK_HI: i32 = offset_of!(JitState, stack_hi) as i32;
    pub const SHADOW_VALID: i32 = offset_of!(JitState, shadow_valid) as i32;
    pub const STATUS: i32 = offset_of!(JitState, status) as i32;
    pub const SHADOW: i32 = offset_of!(JitState, shadow) as i32;
    pub const CTX_BASE: i32 = offset_of!(JitState, ctx_base) as i32;
    pub const CPU: i32 = offset_of!(JitState, cpu) as i32;
    pub const BUDGET: i32 = offset_of!(JitState, budget) as i32;
    pub const DEPTH: i32 = offset_of!(JitState, depth) as i32;
    pub const ARG_TAGS: i32 = offset_of!(JitState, arg_tags) as i32;
    pub const RET_TAG: i32 = offset_of!(JitState, ret_tag) as i32;
    pub const LOAD_TAG: i32 = offset_of!(JitState, load_tag) as i32;
    pub const SLOTS_DIRTY: i32 = offset_of!(JitState, slots_dirty) as i32;
    pub const RBOUNDS: i32 = offset_of!(JitState, rbounds) as i32;
    pub const WBOUNDS: i32 = offset_of!(JitState, wbounds) as i32;
    pub const SLOT_TAGS: i32 = offset_of!(JitState, slot_tags) as i32;
    pub const TAIL_CALL_CNT: i32 = offset_of!(JitState, tail_call_cnt) as i32;
    pub const REGIONS_DYNAMIC: i32 = offset_of!(JitState, regions_dynamic) as i32;
    pub const DIRECT_SLOTS: i32 = offset_of!(JitState, direct_slots) as i32;
    pub const PKT_SLOTS: i32 = offset_of!(JitState, pkt_slots) as i32;
    pub const TAIL_CACHE: i32 = offset_of!(JitState, tail_cache) as i32;
    /// The run state (RunState::current is written through it).
    pub const ST: i32 = offset_of!(JitState, st) as i32;
}

/// Record an error at `pc` and tell native code to unwind.
pub(super) fn fail(st: &mut RunState, pc: u64, e: VmError) -> u64 {
    if st.jit_error.is_none() {
        st.jit_error = Some((pc as usize, e));
    }
    st.jit.status = ABORT;
    0
}

/// Set up the context for the current program's code (at the start of a run,
/// and when a tail call or a return changes the code): the direct fields'
/// base when the context is the layout the code was compiled for, and the
/// shadow filled with the other fields the code reads.
pub(crate) fn fill_shadow(st: &mut RunState) {
    let current = st.current;
    match current.jit() {
        Some(code) => fill_shadow_for(st.jit, code, st.ctx),
        None => fill_shadow_none(st.jit),
    }
}

/// `fill_shadow` for `code` and the context `ctx` (at a run's start, of the
/// context's own type: its calls inline).
pub(crate) fn fill_shadow_for<C: crate::Context + ?Sized>(
    jit: &mut JitState,
    code: &super::Compiled,
    ctx: &mut C,
) {
    let layout = code.layout;
    let base = layout.and_then(|l| ctx.direct_base(l));
    jit.ctx_base = base.map_or(0, |p| p as u64);
    jit.layout = layout.map_or(std::ptr::null(), |l| l as *const crate::CtxLayout);
    jit.direct_slots = if base.is_some() { code.direct_slots } else { 0 };
    let wanted = code.ctx_wanted & !jit.direct_slots & !jit.pkt_slots;
    jit.shadow_valid &= jit.pkt_slots;
    load_shadow(jit, ctx, wanted);
}

/// The shadow slots `wanted` filled from the context (`fast_loads`), and
/// marked valid as far as it filled them.
pub(super) fn load_shadow<C: crate::Context + ?Sized>(
    jit: &mut JitState,
    ctx: &mut C,
    wanted: u64,
) {
    if wanted != 0 {
        jit.shadow_valid |= ctx.fast_loads(wanted, &mut jit.shadow);
    }
}

/// `fill_shadow` for code without native code (the interpreter's): nothing
/// is read directly or from the shadow.
fn fill_shadow_none(jit: &mut JitState) {
    (jit.ctx_base, jit.layout, jit.direct_slots) = (0, std::ptr::null(), 0);
    jit.shadow_valid &= jit.pkt_slots;
}

/// The shadow filled again after a helper that may change any field (the
/// direct base stays: the context is the same structure).
fn refill_shadow(st: &mut RunState) {
    let wanted = shadow_wanted(st);
    st.jit.shadow_valid &= st.jit.pkt_slots;
    load_shadow(st.jit, st.ctx, wanted);
}

/// The shadow slots the current program's code reads from the shadow and
/// the context fills (not the direct ones, not the packet fields).
pub(super) fn shadow_wanted(st: &RunState) -> u64 {
    st.current.jit().map_or(0, |c| c.ctx_wanted) & !st.jit.direct_slots & !st.jit.pkt_slots
}

/// Run `prog` (already `st.current`) natively from its entry with `args`,
/// r10 at the frame of the current depth.
pub(crate) fn run_native(st: &mut RunState, f: JitFn, args: [u64; 5]) -> u64 {
    let r10 = (st.stack_top - st.jit.depth * skiff_isa::MAX_BPF_STACK) as u64;
    st.jit.st = st as *mut RunState as *mut RunState<'static>;
    let js: *mut JitState = &mut *st.jit;
    // SAFETY: `f` was compiled from the current program for exactly this
    // signature; every memory access it makes is checked against `st`'s regions.
    // Runtime calls reach the run state through `JitState::st` only.
    unsafe { f(js, args[0], args[1], args[2], args[3], args[4], r10) }
}

/// The run state behind the JitState pointer native code passes back.
///
/// # Safety
/// `js` is the pointer `run_native` passed to native code, during that run.
pub(super) unsafe fn state<'a>(js: *mut JitState) -> &'a mut RunState<'static> {
    // SAFETY: run_native set `st` to the live run state before entering native
    // code; the JitState itself is only reached through it from here on.
    unsafe { &mut *(*js).st }
}

/// Run the current program's native main function `f` from instruction 0
/// (the context already set up for it: `fill_shadow_for`): r0, or an error
/// left in `st.jit_error`.
pub(crate) fn execute(st: &mut RunState, f: JitFn, args: [u64; 5]) -> u64 {
    st.jit.arg_tags = crate::state::ENTRY_TAGS;
    let r0 = run_native(st, f, args);
    if st.jit.status == ABORT {
        st.jit.exit_value
    } else {
        r0
    }
}

/// Call a function of the current program (a bpf_loop / for_each callback)
/// with r1-r5 tagged `tags`.
pub(crate) fn call_function(
    st: &mut RunState,
    pc: usize,
    args: [u64; 5],
    tags: u64,
) -> Option<Result<u64, VmError>> {
    let f = st.current.jit()?.func(pc)?;
    st.jit.arg_tags = tags;
    let r0 = run_native(st, f, args);
    if st.jit.status == ABORT {
        if let Some((_, e)) = st.jit_error.take() {
            st.jit.status = RUN;
            return Some(Err(e));
        }
        // An early end (LD_ABS) inside a callback: the callback returns that value.
        st.jit.status = RUN;
        return Some(Ok(st.jit.exit_value));
    }
    Some(Ok(r0))
}

/// rt_load's size argument: size | MEM_ONLY | tag << 16 | signed << 24.
pub const LOAD_SIGNED: u64 = 1 << 24;

pub(super) unsafe extern "C" fn rt_load(js: *mut JitState, addr: u64, size: u64, pc: u64) -> u64 {
    // SAFETY: native code passes the JitState it was given, during its run.
    let st = unsafe { state(js) };
    let mem_only = size & MEM_ONLY != 0;
    let tag = (size >> 16) as u8;
    let signed = size & LOAD_SIGNED != 0;
    let size = (size & 0xff) as u32;
    match crate::interp::load(st, tag, addr, size, signed, mem_only) {
        Ok((v, t)) => {
            st.jit.load_tag = t as u64;
            v
        }
        Err(e) => fail(st, pc, e),
    }
}

/// `size_tags` is size | tag << 16 | value tag << 24.
pub(super) unsafe extern "C" fn rt_store(
    js: *mut JitState,
    addr: u64,
    size_tags: u64,
    value: u64,
    pc: u64,
) -> u64 {
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    let size = (size_tags & 0xff) as u32;
    let (tag, vtag) = ((size_tags >> 16) as u8, (size_tags >> 24) as u8);
    match crate::interp::store(st, tag, addr, size, value, vtag) {
        Ok(()) => 0,
        Err(e) => fail(st, pc, e),
    }
}

/// BPF_ATOMIC: `size_op` is the access size | imm << 8 | tag << 40. Returns the old value.
pub(super) unsafe extern "C" fn rt_atomic(
    js: *mut JitState,
    addr: u64,
    size_op: u64,
    src: u64,
    r0: u64,
    pc: u64,
) -> u64 {
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    let size = (size_op & 0xff) as u32;
    let op = (size_op >> 8) as u32 as i32;
    let tag = (size_op >> 40) as u8;
    match crate::interp::atomic(st, tag, addr, size, op, src, r0) {
        Ok((fetched, cmp)) => fetched.or(cmp).unwrap_or(0),
        Err(e) => fail(st, pc, e),
    }
}

/// A helper call (call imm, or callx with the id in a register); the tags of
/// r1-r5 are in `arg_tags`, r0's is left in `ret_tag`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C" fn rt_helper(
    js: *mut JitState,
    id: u64,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
    pc: u64,
) -> u64 {
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    let tags = st.jit.arg_tags;
    let changed = helper_changes(st, id as u32);
    let args = [r1, r2, r3, r4, r5];
    let r = st.call_helper(id as u32, args, tags);
    after_helper(st, r, changed, &args, pc)
}

/// What follows every helper call: the packet bounds and the context's
/// shadow again as far as the call may have changed them (`changed`: the
/// packet, the context), then an error, an early end or a requested tail
/// call handled; else r0.
#[inline(always)]
fn after_helper(
    st: &mut RunState,
    r: Result<u64, VmError>,
    (pkt, ctx): (bool, bool),
    // (By reference: a copy of the array built from registers a moment ago
    // was read back in 16-byte halves that wait out the 8-byte stores.)
    args: &[u64; 5],
    pc: u64,
) -> u64 {
    if pkt {
        st.refresh_packet();
    }
    // (A tail call fills the shadow for its target.) The packet's fields
    // are not among those refilled: refresh_packet keeps them (`pkt_slots`).
    if ctx && st.pending_tail_call.is_none() {
        refill_shadow(st);
    }
    let r0 = match r {
        Ok(v) => v,
        Err(e) => return fail(st, pc, e),
    };
    if let Some(v) = st.exit_now.take() {
        st.jit.exit_value = v;
        st.jit.status = ABORT;
        return v;
    }
    if let Some(next) = st.pending_tail_call.take() {
        return super::tail::tail_call(st, next, *args);
    }
    r0
}

// Helper calls at a site the verifier checked go to the function it resolved
// there (`HelperSite::func`, `map_op`), as the kernel's JIT calls the address
// do_misc_fixups put in the instruction: no helper table, no id, no program
// type check. `pc_site` is the call's pc | SITE_PKT | SITE_CTX (what the
// call may change, decided at compile time).

/// The `pc_site` argument of a call at `pc` that may change the packet
/// and/or the context.
pub(super) fn pc_site(pc: usize, (pkt, ctx): (bool, bool)) -> u64 {
    pc as u64 | if pkt { SITE_PKT } else { 0 } | if ctx { SITE_CTX } else { 0 }
}

/// `pc_site`'s pc and what the call may change.
fn site_of(pc_site: u64) -> (u64, (bool, bool)) {
    let changed = (pc_site & SITE_PKT != 0, pc_site & SITE_CTX != 0);
    (pc_site & 0xffff_ffff, changed)
}

/// A call of the helper function `f`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C" fn rt_call(
    js: *mut JitState,
    f: u64,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
    pc_site: u64,
) -> u64 {
    // SAFETY: the compiler took `f` from a `HelperSite::func`, a HelperFn.
    let f = unsafe { std::mem::transmute::<usize, crate::HelperFn>(f as usize) };
    // SAFETY: as in rt_load.
    unsafe { call_resolved(js, [r1, r2, r3, r4, r5], pc_site, f) }
}

/// `rt_map_op`'s type.
pub(crate) type NativeMapOp =
    unsafe extern "C" fn(*mut JitState, u64, u64, u64, u64, u64, u64) -> u64;

/// A call of the map op `T` of a helper whose r1 is the constant map at
/// address `map`: one function per op (`MapOp::of`), its body inlined here.
pub(crate) unsafe extern "C" fn rt_map_op<T: crate::helpers::MapOpBody>(
    js: *mut JitState,
    map: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
    pc_site: u64,
) -> u64 {
    // SAFETY: the compiler took `map` from `Program::maps` (the program,
    // which holds the map, is kept alive for the run).
    let m = unsafe { &*(map as usize as *const skiff_maps::Map) };
    // SAFETY: as in rt_load.
    unsafe {
        call_resolved(js, [map, r2, r3, r4, r5], pc_site, |st, a| {
            (T::OP)(st, m, a)
        })
    }
}

/// The helper call `call` with r1-r5 = `args`, at `pc_site`, and what follows
/// it (`after_helper`).
///
/// # Safety
/// As `state`: `js` is the run's JitState, during the run.
unsafe fn call_resolved(
    js: *mut JitState,
    args: [u64; 5],
    pc_site: u64,
    call: impl FnOnce(&mut RunState, &[u64; 5]) -> Result<u64, VmError>,
) -> u64 {
    // SAFETY: the caller's contract.
    let st = unsafe { state(js) };
    let r = st.with_args(&args, |st| call(st, &args));
    let (pc, changed) = site_of(pc_site);
    after_helper(st, r, changed, &args, pc)
}

// bpf_map_lookup_elem / update / delete at a call site the verifier checked
// with a constant map: `map` is the address of one of the running program's
// maps (the compiler took it from `Program::maps`; the program holds it for
// the run). The verifier proved `key` (key_size bytes) and `value`
// (value_size bytes) readable there, and the kernel's JIT trusts it as these
// do: no region check, no helper table, no search of the run's maps, and
// nothing native code caches changes.

/// The map behind `map`, and key_size bytes at `key`.
///
/// # Safety
/// As above: `map` a live map's address, `key` proved readable for key_size.
unsafe fn map_and_key<'m>(map: u64, key: u64) -> (&'m skiff_maps::Map, &'m [u8]) {
    // SAFETY: the caller's contract.
    unsafe {
        let map = &*(map as usize as *const skiff_maps::Map);
        let n = map.attr().key_size as usize;
        (
            map,
            std::slice::from_raw_parts(key as usize as *const u8, n),
        )
    }
}

/// bpf_map_lookup_elem: the value's address or 0.
pub(super) unsafe extern "C" fn rt_map_lookup(js: *mut JitState, map: u64, key: u64) -> u64 {
    // SAFETY: see above; `js` is the run's JitState.
    let ((map, key), cpu) = unsafe { (map_and_key(map, key), (*js).cpu as usize) };
    map.lookup(key, cpu).map_or(0, |p| p as usize as u64)
}

/// bpf_map_update_elem.
pub(super) unsafe extern "C" fn rt_map_update(
    js: *mut JitState,
    map: u64,
    key: u64,
    value: u64,
    flags: u64,
) -> u64 {
    // SAFETY: see above; value_size bytes at `value` proved readable.
    let ((map, key), cpu, value) = unsafe {
        let (m, k) = map_and_key(map, key);
        let n = m.attr().value_size as usize;
        let v = std::slice::from_raw_parts(value as usize as *const u8, n);
        ((m, k), (*js).cpu as usize, v)
    };
    crate::helpers::errno_ret(map.update(key, value, flags, cpu))
}

/// bpf_map_delete_elem.
pub(super) unsafe extern "C" fn rt_map_delete(_js: *mut JitState, map: u64, key: u64) -> u64 {
    // SAFETY: see above.
    let (map, key) = unsafe { map_and_key(map, key) };
    crate::helpers::errno_ret(map.delete(key))
}

/// What a helper may have changed that native code caches (its prototype's
/// `invalidates`); a helper with no row: everything.
fn helper_changes(st: &RunState, id: u32) -> (bool, bool) {
    st.helpers
        .get(id)
        .map_or((true, true), |d| d.proto.invalidates())
}

/// BPF_LD_ABS / BPF_LD_IND: `size` | (is_ind << 8); `off` already includes the
/// index register for IND.
pub(super) unsafe extern "C" fn rt_ld_abs(js: *mut JitState, off: u64, size: u64, pc: u64) -> u64 {
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    match crate::interp::ld_abs(st, off as i64, size as u32) {
        Ok(Some(v)) => v,
        Ok(None) => {
            st.jit.exit_value = 0;
            st.jit.status = ABORT;
            0
        }
        Err(e) => fail(st, pc, e),
    }
}

/// A failure the native code detected itself (budget, call depth).
pub(super) unsafe extern "C" fn rt_fail(js: *mut JitState, code: u64, pc: u64) -> u64 {
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    let e = super::fail_error(code, st);
    fail(st, pc, e)
}
