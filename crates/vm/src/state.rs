//! The state of one run (registers live in the interpreter), and the per-worker
//! environment that outlives runs: CPU number, clock, random state, trace buffer,
//! the programs a tail call can reach.

use std::any::TypeId;
use std::sync::Arc;
use std::time::Instant;

use skiff_maps::Map;

use crate::jit::JitState;
use crate::mem::{Region, RegionKind, Regions, Tag, CTX, FIRST_MAP, PACKET, SCALAR, STACK};
use crate::program::{map_handle, Program};
use crate::{Context, HelperTable, VmError};

/// Kernel MAX_CALL_FRAMES: the main program and seven levels of bpf-to-bpf calls.
pub const MAX_CALL_FRAMES: usize = 8;
/// Each frame gets MAX_BPF_STACK bytes.
pub const STACK_SIZE: usize = skiff_isa::MAX_BPF_STACK * MAX_CALL_FRAMES;
/// Kernel MAX_TAIL_CALL_CNT.
pub const MAX_TAIL_CALL_CNT: u32 = 33;
/// Bound on executed instructions per run: the kernel proves termination with its
/// verifier; skiff stops a run that goes past this instead.
pub const DEFAULT_BUDGET: u64 = 1 << 26;
const SCRATCH_SIZE: usize = 512;
/// Lines of `bpf_trace_printk` output an `Env` keeps.
pub const TRACE_LINES: usize = 4096;

/// Where `bpf_ktime_get_ns` and friends read time from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// CLOCK_MONOTONIC-like, from process start.
    Monotonic(Instant),
    /// A virtual clock (deterministic mode): nanoseconds, set by the engine.
    Virtual(u64),
}

impl Clock {
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Monotonic(start) => start.elapsed().as_nanos() as u64,
            Clock::Virtual(ns) => *ns,
        }
    }
}

/// Per-worker environment.
pub struct Env {
    /// `bpf_get_smp_processor_id`; the index of per-CPU map values.
    pub cpu: u32,
    pub clock: Clock,
    /// xorshift state for `bpf_get_prandom_u32`.
    pub prandom: u64,
    /// `bpf_trace_printk` output lines (the kernel's trace buffer): the newest
    /// TRACE_LINES, older ones dropped and counted, as a ring buffer does.
    pub trace: std::collections::VecDeque<String>,
    pub trace_dropped: u64,
    /// Programs a PROG_ARRAY may name (by `Program::id`): `set_programs`.
    programs: Vec<Arc<Program>>,
    /// Bumped by every `set_programs` (native tail calls recorded before
    /// may name a program no longer among them).
    programs_gen: u64,
    pub budget: u64,
}

impl Default for Env {
    fn default() -> Self {
        Env {
            cpu: 0,
            clock: Clock::Monotonic(Instant::now()),
            prandom: 0x2545_f491_4f6c_dd1d,
            trace: Default::default(),
            trace_dropped: 0,
            programs: Vec::new(),
            programs_gen: 0,
            budget: DEFAULT_BUDGET,
        }
    }
}

impl Env {
    /// The programs a PROG_ARRAY may name (by `Program::id`).
    pub fn programs(&self) -> &[Arc<Program>] {
        &self.programs
    }

    /// Make `programs` the ones a PROG_ARRAY may name in this worker.
    pub fn set_programs(&mut self, programs: Vec<Arc<Program>>) {
        self.programs = programs;
        self.programs_gen += 1;
    }

    /// The next value of this worker's `bpf_get_prandom_u32` stream (a
    /// xorshift64*; the kernel's is a per-CPU prandom state). Actions that draw
    /// at random (gact netrand, sample) read the same stream.
    pub fn prandom_u32(&mut self) -> u32 {
        let mut x = self.prandom;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.prandom = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    pub fn program(&self, id: u32) -> Option<&Arc<Program>> {
        self.programs.iter().find(|p| p.id == id)
    }
}

/// Memory a worker reuses run after run: the stack, the ctx placeholder whose
/// address r1 carries, the tag table and the JIT's run registers (nothing is
/// allocated or moved per run).
pub struct Vm {
    /// u64s so that r10, and every 8-byte stack slot, is 8-aligned.
    stack: Box<[u64]>,
    ctx_block: Box<[u8]>,
    scratch: Box<[u8]>,
    regions: Regions,
    maps: Vec<*const Map>,
    /// Inner maps a run adopted (kept alive until the run ends).
    keepalive: Vec<Arc<Map>>,
    jit: Box<JitState>,
    /// The program (by id: an address may be reused by the next program) the
    /// static part of `regions` (its maps' tags) and `maps` were last set up
    /// for: the next run of the same program reuses them.
    setup_for: Option<u32>,
    /// The `Env::programs_gen` the JIT's recorded tail calls were made with.
    tail_gen: u64,
    pub env: Env,
    pub helpers: Arc<HelperTable>,
    /// Which engine runs programs (the JIT when the program was compiled).
    pub engine: crate::Engine,
}

// SAFETY: the raw pointers a Vm holds (`maps`, `setup_for`) are caches of
// what the program being run owns (its `Arc<Map>`s, itself); they are only
// dereferenced during a run, on the thread running it. A Vm is used by one
// thread at a time (a worker owns its Vm), so moving it to another thread is
// sound; it is not Sync.
#[allow(unsafe_code)]
unsafe impl Send for Vm {}

impl Vm {
    pub fn new(helpers: Arc<HelperTable>) -> Vm {
        let stack = vec![0u64; STACK_SIZE / 8].into_boxed_slice();
        let stack_start = stack.as_ptr() as usize;
        let mut regions = Regions::default();
        let stack_region = Region::new(stack_start, STACK_SIZE, RegionKind::ReadWrite);
        regions.set(STACK, stack_region);
        let mut jit = Box::<JitState>::default();
        jit.stack_lo = stack_start as u64;
        jit.stack_hi = (stack_start + STACK_SIZE) as u64;
        jit.set_bounds(STACK, &stack_region);
        Vm {
            stack,
            ctx_block: vec![0u8; 256].into_boxed_slice(),
            scratch: vec![0u8; SCRATCH_SIZE].into_boxed_slice(),
            regions,
            maps: Vec::new(),
            keepalive: Vec::new(),
            jit,
            setup_for: None,
            tail_gen: 0,
            env: Env::default(),
            helpers,
            engine: crate::Engine::default(),
        }
    }

    /// Run `prog` with r1 pointing at `ctx` (helpers reach it as a `C`
    /// without a dynamic type check: `RunState::ctx_as`).
    pub fn run<C: Context>(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut C,
    ) -> Result<u64, crate::Exception> {
        self.run_inner(prog, ctx, None, &[])
    }

    /// Tail calls the JIT's native code now makes without the runtime (each
    /// from one program to another, recorded when the runtime made it).
    pub fn native_tail_calls(&self) -> usize {
        self.jit.tail_keep.iter().flatten().count()
    }

    /// Run `prog` with explicit r1-r5: r1 is the context pointer; when it points
    /// into one of `extra` (plain memory: the conformance suite's input buffer),
    /// that region is the context (raw memory, no field rewriting). r2-r5 are
    /// scalars.
    pub fn run_with_args<C: Context>(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut C,
        args: [u64; 5],
        extra: &[Region],
    ) -> Result<u64, crate::Exception> {
        self.run_inner(prog, ctx, Some(args), extra)
    }

    /// The tag table's static part for `prog` (its maps), kept from the last
    /// run of the same program (regions the last run added are dropped), else
    /// copied from what the program prepared at load.
    #[inline(always)]
    fn set_up(&mut self, prog: &Arc<Program>) {
        if self.setup_for == Some(prog.id) {
            if self.regions.has_dynamic() {
                self.drop_dynamic();
            }
            // Handles a tail call made valid are not the program's own.
            self.maps.truncate(prog.maps.len());
            return;
        }
        self.switch_to(prog);
    }

    #[cold]
    fn drop_dynamic(&mut self) {
        let (from, to) = (self.regions.static_len, self.regions.len());
        self.jit.clear_bounds(from, to);
        self.regions.truncate_dynamic();
    }

    /// Another program than the last: its prepared tags replace the table's,
    /// unless the table holds them already (a program of the same object).
    fn switch_to(&mut self, prog: &Arc<Program>) {
        if !self.regions.holds_program(&prog.tags) {
            let old_len = self.regions.len();
            self.regions.set_program(&prog.tags);
            self.jit.load_program(&prog.tags, old_len);
        }
        self.maps.clear();
        self.maps.extend(prog.maps.iter().map(Arc::as_ptr));
        self.setup_for = Some(prog.id);
    }

    #[inline(always)]
    fn run_inner<C: Context>(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut C,
        args: Option<[u64; 5]>,
        extra: &[Region],
    ) -> Result<u64, crate::Exception> {
        self.set_up(prog);
        let stack_top = self.stack.as_ptr() as usize + STACK_SIZE;
        let ctx_addr = self.ctx_block.as_ptr() as usize;
        let args = args.unwrap_or([ctx_addr as u64, 0, 0, 0, 0]);
        // (Asked of the context's own type, not through `dyn Context`.)
        let (ctx_size, view) = (ctx.ctx_size(), ctx.packet_view());
        let ctx_region = match extra.iter().find(|r| r.contains(args[0], 0)) {
            Some(r) => Region {
                start: args[0],
                ..*r
            },
            None if ctx_size > 0 => Region::new(ctx_addr, ctx_size, RegionKind::Ctx),
            None => Region::EMPTY,
        };
        // The same context as the last run, mostly: nothing to write then.
        if self.regions.by_tag.get(CTX as usize) != Some(&ctx_region) {
            self.regions.set(CTX, ctx_region);
            self.jit.set_bounds(CTX, &ctx_region);
        }
        if self.tail_gen != self.env.programs_gen {
            self.jit.forget_tail_calls();
            self.tail_gen = self.env.programs_gen;
        }
        let jit = &mut *self.jit;
        jit.begin_run(self.env.budget, self.env.cpu);
        jit.note_dynamic(&self.regions);
        set_packet(&mut self.regions, jit, view);
        // The context set up for the program's code through the context's
        // own type (no `dyn Context` calls at every run).
        let native = match self.engine {
            crate::Engine::Jit => prog.jit().map(|c| {
                crate::jit::fill_shadow_for(jit, c, ctx);
                c.main
            }),
            crate::Engine::Interp => None,
        };
        let mut st = RunState {
            regions: &mut self.regions,
            ctx,
            ctx_type: TypeId::of::<C>(),
            env: &mut self.env,
            helpers: &self.helpers,
            maps: &mut self.maps,
            stack_top,
            pending_tail_call: None,
            current: ProgRef(Arc::as_ptr(prog)),
            keepalive: &mut self.keepalive,
            exit_now: None,
            scratch: self.scratch.as_mut_ptr() as usize,
            scratch_tag: SCALAR,
            engine: self.engine,
            jit,
            jit_error: None,
            call_args: std::ptr::null(),
            retabled: false,
        };
        // The value comes back alone; an error waits in the run state (the
        // large Result is built only on the cold path).
        let r0 = match native {
            Some(f) => crate::jit::execute(&mut st, f, args),
            None => st.interp_main(args),
        };
        if st.retabled || !st.keepalive.is_empty() {
            // Inner maps were adopted (they are let go now), or a tail call
            // set up another program's tags: the next run starts afresh.
            st.keepalive.clear();
            self.setup_for = None;
        }
        if let Some((pc, error)) = st.jit_error.take() {
            return Err(exception(&st, pc, error));
        }
        Ok(r0)
    }
}

/// The packet bounds (and packet fields) of `view`, for both engines: the
/// PACKET tag's region, the JIT's bounds and the shadow's packet fields.
#[inline]
fn set_packet(regions: &mut Regions, jit: &mut JitState, view: Option<crate::PacketView>) {
    let r = match view {
        Some(v) => Region::new(
            v.start,
            v.end.saturating_sub(v.start),
            RegionKind::ReadWrite,
        ),
        None => Region::EMPTY,
    };
    regions.set(PACKET, r);
    jit.set_bounds(PACKET, &r);
    (jit.pkt_start, jit.pkt_end) = (r.start, r.end);
    jit.set_packet_fields(view);
}

/// The run's error as an Exception (where it happened).
#[cold]
#[inline(never)]
fn exception(st: &RunState, pc: usize, error: VmError) -> crate::Exception {
    crate::Exception {
        prog: st.current.name.clone(),
        pc,
        error,
    }
}

/// The tags a program's main function starts with: r1 the context, r2-r5 scalars
/// (at a run and at a tail call; `pack_tags` order).
pub const ENTRY_TAGS: u64 = CTX as u64;

/// Tags of r1-r5, one byte each, r1 in the low byte.
pub fn pack_tags(tags: [Tag; 5]) -> u64 {
    tags.iter()
        .enumerate()
        .fold(0u64, |m, (i, &t)| m | (t as u64) << (8 * i))
}

/// The tag of argument `i` (0 = r1) in packed tags.
pub fn unpack_tag(tags: u64, i: usize) -> Tag {
    (tags >> (8 * (i & 7))) as u8
}

/// A program the run is executing. Runs hold the owning `Arc`s (the caller's
/// program, `Env::programs` for tail calls), so the pointer stays valid for the run
/// without an atomic reference count per run.
// Transparent: native code writes `RunState::current` as a pointer (jit::tail).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct ProgRef(*const Program);

impl std::ops::Deref for ProgRef {
    type Target = Program;
    fn deref(&self) -> &Program {
        // SAFETY: see the type's comment: the Arc owning the program outlives the run.
        unsafe { &*self.0 }
    }
}

impl ProgRef {
    pub fn new(p: &Arc<Program>) -> ProgRef {
        ProgRef(Arc::as_ptr(p))
    }
}

/// What a tail call from a subprogram replaces and its return restores: the
/// current program and its tags.
pub(crate) struct Saved {
    current: ProgRef,
    regions: Vec<Region>,
    owners: Vec<usize>,
    static_len: usize,
}

/// Everything a helper may look at or change during a run.
pub struct RunState<'a> {
    pub regions: &'a mut Regions,
    /// (Not public: `ctx_type` must stay the type of what it points to.)
    pub(crate) ctx: &'a mut dyn Context,
    /// The concrete type `ctx` was made from (`Vm::run`'s `C`).
    ctx_type: TypeId,
    pub env: &'a mut Env,
    pub helpers: &'a HelperTable,
    /// Maps whose handles are valid in this run: the program's, the inner maps
    /// it looked up, the maps of programs it tail-called. Kept alive by the
    /// programs' `Arc`s and by `keepalive`.
    maps: &'a mut Vec<*const Map>,
    keepalive: &'a mut Vec<Arc<Map>>,
    pub(crate) stack_top: usize,
    pub(crate) pending_tail_call: Option<ProgRef>,
    pub current: ProgRef,
    /// Set by a helper that ends the program (the conformance suite's `unwind`).
    pub exit_now: Option<u64>,
    scratch: usize,
    /// The tag of the scratch block once a callback key was put there.
    scratch_tag: Tag,
    pub(crate) engine: crate::Engine,
    /// The run's registers both engines share (budget, call depth, stack slot
    /// tags) and what native code reads directly (see jit::runtime).
    pub(crate) jit: &'a mut JitState,
    pub(crate) jit_error: Option<(usize, VmError)>,
    /// r1-r5 of the helper call being made (their tags: `jit.arg_tags`), or
    /// null: the caller's array, not a copy (copying a just-written array
    /// stalled store forwarding on every helper call).
    call_args: *const [u64; 5],
    /// A tail call replaced the program's tags.
    retabled: bool,
}

impl RunState<'_> {
    /// The context as its concrete type `T` (None when it is another): a
    /// comparison of type ids known at compile time when the run was given a
    /// `T` (helpers reach their `xdp_buff` / `sk_buff` as the kernel's get
    /// it in r1, with no dynamic call), else through `Context::as_any_mut`.
    #[inline]
    pub fn ctx_as<T: Context>(&mut self) -> Option<&mut T> {
        if self.ctx_type == TypeId::of::<T>() {
            let p = &mut *self.ctx as *mut dyn Context as *mut T;
            // SAFETY: `ctx` was made from a `&mut C` with TypeId::of::<C>() ==
            // `ctx_type` (run_inner; neither field changes after), so it points
            // at a T; the borrow of `self` keeps it unique.
            return Some(unsafe { &mut *p });
        }
        self.ctx.as_any_mut().downcast_mut::<T>()
    }

    /// The context, for what any context offers.
    pub fn ctx(&mut self) -> &mut dyn Context {
        &mut *self.ctx
    }

    /// The map a register value (a map handle) refers to. The reference is valid
    /// for the whole run (see `maps`), whatever else the helper does with `self`.
    pub fn map<'r>(&self, handle: u64) -> Result<&'r Map, VmError> {
        match self.maps.iter().find(|&&m| m as usize as u64 == handle) {
            // SAFETY: every pointer in `maps` is kept alive for the run by the
            // programs' Arcs or by `keepalive`.
            Some(&m) => Ok(unsafe { &*m }),
            None => Err(VmError::BadMap(handle)),
        }
    }

    /// All maps valid in this run.
    pub fn maps<'r>(&self) -> impl Iterator<Item = &'r Map> + '_ {
        // SAFETY: as in `map`.
        self.maps.iter().map(|&m| unsafe { &*m })
    }

    /// Make the maps of a tail-call target usable by handle for the rest of
    /// the run. `Env::programs` keeps the target, and so its maps, alive for
    /// the run: no reference is taken.
    pub(crate) fn adopt_program_maps(&mut self, prog: ProgRef) {
        for m in &prog.maps {
            let p = Arc::as_ptr(m);
            if !self.maps.contains(&p) {
                self.maps.push(p);
            }
        }
    }

    /// Make a map usable by handle for the rest of the run (an inner map from an
    /// *_OF_MAPS lookup) and return its handle.
    pub fn adopt_map(&mut self, m: &Arc<Map>) -> u64 {
        let p = Arc::as_ptr(m);
        if !self.maps.contains(&p) {
            self.maps.push(p);
            self.keepalive.push(m.clone());
        }
        map_handle(m)
    }

    /// The tag of `map`'s storage: the current program's, else one added for
    /// the rest of the run (an inner map).
    pub fn map_tag(&mut self, map: &Map) -> Tag {
        let owner = map as *const Map as usize;
        if let Some(t) = self.regions.tag_of_owner(owner) {
            return t;
        }
        match crate::program::map_storage(map) {
            Some(r) => self.add_tagged(r, owner),
            None => SCALAR,
        }
    }

    /// The value this helper returns points into `map`'s storage
    /// (RET_PTR_TO_MAP_VALUE_OR_NULL): r0 gets that map's tag.
    pub fn ret_map_value(&mut self, map: &Map) {
        self.jit.ret_tag = self.map_tag(map) as u64;
    }

    /// The tag r0 gets after this helper returns (SCALAR unless set).
    pub fn set_ret_tag(&mut self, tag: Tag) {
        self.jit.ret_tag = tag as u64;
    }

    /// The tag of argument `i` (0 = r1) of the helper call being made.
    pub fn arg_tag(&self, i: usize) -> Tag {
        unpack_tag(self.jit.arg_tags, i)
    }

    /// Call helper `id` with r1-r5 = `args` tagged `tags` (`pack_tags`); r0's tag
    /// is left in `jit.ret_tag`. (A call site the verifier checked goes to
    /// the function it resolved instead: jit::calls.)
    pub(crate) fn call_helper(
        &mut self,
        id: u32,
        args: [u64; 5],
        tags: u64,
    ) -> Result<u64, VmError> {
        let saved = self.jit.arg_tags;
        self.jit.arg_tags = tags;
        let helpers = self.helpers;
        let r = self.with_args(&args, |st| helpers.call(st, id, &args));
        self.jit.arg_tags = saved;
        r
    }

    /// Make `call` the helper call with r1-r5 = `args` (their tags already in
    /// `jit.arg_tags`): a memory argument is checked against the region of
    /// the argument it came from (`raw`), r0's tag is SCALAR unless the
    /// helper sets it.
    #[inline(always)]
    pub(crate) fn with_args(
        &mut self,
        args: &[u64; 5],
        call: impl FnOnce(&mut Self) -> Result<u64, VmError>,
    ) -> Result<u64, VmError> {
        let saved = self.call_args;
        self.call_args = args;
        self.jit.ret_tag = SCALAR as u64;
        let r = call(self);
        self.call_args = saved;
        r
    }

    /// The interpreter from the current program's entry: r0, or an error left
    /// in `jit_error` (as the JIT leaves it).
    pub(crate) fn interp_main(&mut self, args: [u64; 5]) -> u64 {
        match crate::interp::execute(self, None, 0, args, ENTRY_TAGS) {
            Ok(v) => v,
            Err(e) => {
                self.jit_error = Some(e);
                0
            }
        }
    }

    pub fn cpu(&self) -> usize {
        self.env.cpu as usize
    }

    /// The tag a helper's memory argument at `addr` carries: the argument passed
    /// as that pointer, else an argument whose region holds it (a pointer the
    /// helper derived from it).
    #[inline]
    fn arg_region_tag(&self, addr: u64, len: u64) -> Tag {
        let tags = self.jit.arg_tags;
        let args = if self.call_args.is_null() {
            [0; 5]
        } else {
            // SAFETY: a non-null `call_args` points at the array `with_args`
            // was given, alive for the whole helper call, which is running.
            unsafe { *self.call_args }
        };
        let passed = (0..5).find(|&i| args[i] == addr && unpack_tag(tags, i) != SCALAR);
        if let Some(i) = passed {
            return unpack_tag(tags, i);
        }
        (0..5)
            .map(|i| unpack_tag(tags, i))
            .find(|&t| {
                t != SCALAR
                    && self
                        .regions
                        .by_tag
                        .get(t as usize)
                        .is_some_and(|r| r.contains(addr, len))
            })
            .unwrap_or(SCALAR)
    }

    /// Checked raw pointer to `len` bytes at `addr`, a helper's memory argument
    /// (ARG_PTR_TO_MEM): checked against the region of the argument it came from.
    #[inline]
    pub fn raw(&self, addr: u64, len: usize, write: bool) -> Result<*mut u8, VmError> {
        let tag = self.arg_region_tag(addr, len as u64);
        self.regions.raw(tag, addr, len as u64, write)
    }

    /// Bytes of program memory for a helper argument (ARG_PTR_TO_MEM).
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, VmError> {
        Ok(self.bytes(addr, len)?.to_vec())
    }

    /// Program memory for a read-only helper argument, without copying it.
    #[inline]
    pub fn bytes(&self, addr: u64, len: usize) -> Result<&[u8], VmError> {
        if len == 0 {
            return Ok(&[]);
        }
        let p = self.raw(addr, len, false)?;
        // SAFETY: `raw` checked that [addr, addr+len) lies inside the region of
        // the argument it came from; the borrow of `self` keeps helpers from
        // changing memory meanwhile.
        Ok(unsafe { std::slice::from_raw_parts(p, len) })
    }

    #[inline]
    pub fn read_into(&self, addr: u64, out: &mut [u8]) -> Result<(), VmError> {
        let p = self.raw(addr, out.len(), false)?;
        // SAFETY: as in `bytes`; `out` is a distinct Rust buffer.
        unsafe { std::ptr::copy(p, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    #[inline]
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), VmError> {
        let p = self.raw(addr, data.len(), true)?;
        // What a helper writes on the stack is no spilled pointer any more.
        self.jit.clear_slot_tags(addr, data.len() as u64);
        // SAFETY: `raw` checked that the range lies in one writable region.
        unsafe { std::ptr::copy(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Copy `key` into the run's read-only scratch block and return its address
    /// and tag (keys handed to bpf_for_each_map_elem callbacks).
    pub fn scratch_key(&mut self, key: &[u8]) -> Result<(u64, Tag), VmError> {
        if key.len() > SCRATCH_SIZE {
            return Err(VmError::NotSupported(format!("key of {} bytes", key.len())));
        }
        if self.scratch_tag == SCALAR {
            let r = Region::new(self.scratch, SCRATCH_SIZE, RegionKind::ReadOnly);
            self.scratch_tag = self.add_tagged(r, 0);
        }
        // SAFETY: scratch is the Vm's own SCRATCH_SIZE-byte block, alive for the run.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), self.scratch as *mut u8, key.len()) };
        Ok((self.scratch as u64, self.scratch_tag))
    }

    /// Add a region for the rest of the run (e.g. a reserved ringbuf record);
    /// its tag (SCALAR when the tag table is full).
    pub fn add_region(&mut self, r: Region) -> Tag {
        self.add_tagged(r, 0)
    }

    fn add_tagged(&mut self, r: Region, owner: usize) -> Tag {
        let t = self.regions.add(r, owner);
        if t != SCALAR {
            self.jit.set_bounds(t, &r);
            self.jit.note_dynamic(self.regions);
        }
        t
    }

    /// Re-read the packet bounds after a helper moved or resized the packet.
    #[inline]
    pub fn refresh_packet(&mut self) {
        let view = self.ctx.packet_view();
        set_packet(self.regions, self.jit, view);
    }

    /// Request a tail call; the engine performs it when the helper returns.
    /// `prog` must be one of `Env::programs` (which keep it alive).
    pub fn tail_call(&mut self, prog: &Arc<Program>) {
        self.pending_tail_call = Some(ProgRef::new(prog));
    }

    pub(crate) fn tail_call_ref(&mut self, prog: ProgRef) {
        self.pending_tail_call = Some(prog);
    }

    /// Make `next` the current program (a tail call): its maps take the map
    /// tags; what the run added is dropped (the kernel refuses a tail call with
    /// references held). From a subprogram, `save` first: its return restores.
    pub(crate) fn enter_program(&mut self, next: ProgRef) {
        let old_len = self.regions.len();
        self.current = next;
        self.scratch_tag = SCALAR;
        // A chain whose programs share their maps (one PROG_ARRAY): the tags
        // and the JIT's bounds already stand, and still do for the next run
        // of the first program (whose set-up they are).
        if self.regions.holds_program(&next.tags) {
            return;
        }
        self.retabled = true;
        self.regions.set_program(&next.tags);
        self.jit.load_program(&next.tags, old_len);
        self.jit.note_dynamic(self.regions);
    }

    pub(crate) fn save(&self) -> Saved {
        Saved {
            current: self.current,
            regions: self.regions.by_tag.clone(),
            owners: self.regions.owners().to_vec(),
            static_len: self.regions.static_len,
        }
    }

    pub(crate) fn restore(&mut self, s: Saved) {
        let old_len = self.regions.len();
        self.current = s.current;
        self.regions.restore(s.regions, s.owners, s.static_len);
        self.jit.clear_bounds(FIRST_MAP as usize, old_len);
        self.jit.sync_bounds(self.regions, FIRST_MAP as usize);
        self.jit.note_dynamic(self.regions);
        self.scratch_tag = SCALAR;
    }

    /// Call a subprogram of the current program (a callback of bpf_loop or
    /// bpf_for_each_map_elem) with r1-r5 = `args` tagged `tags`; return its r0.
    pub fn call_callback(
        &mut self,
        func: u64,
        args: [u64; 5],
        tags: [Tag; 5],
    ) -> Result<u64, VmError> {
        if func & !0xffff_ffff != crate::program::FUNC_TAG {
            return Err(VmError::BadCallback(func));
        }
        let pc = (func & 0xffff_ffff) as usize;
        // The main function is entered only with the context in r1.
        if pc == 0 || pc >= self.current.code.len() {
            return Err(VmError::BadCallback(func));
        }
        if self.jit.depth + 1 >= MAX_CALL_FRAMES {
            return Err(VmError::CallDepth(MAX_CALL_FRAMES));
        }
        let prog = self.current;
        let tags = pack_tags(tags);
        // The calling helper's own arguments come back after the callback.
        let saved = (self.call_args, self.jit.arg_tags);
        self.jit.depth += 1;
        let r = match self.engine {
            crate::Engine::Jit => crate::jit::runtime_call(self, pc, args, tags),
            crate::Engine::Interp => None,
        };
        let r = match r {
            Some(r) => r,
            None => crate::interp::execute(self, Some(prog), pc, args, tags).map_err(|(_, e)| e),
        };
        self.jit.depth -= 1;
        (self.call_args, self.jit.arg_tags) = saved;
        r
    }
}
