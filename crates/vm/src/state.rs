//! The state of one run (registers live in the interpreter), and the per-worker
//! environment that outlives runs: CPU number, clock, random state, trace buffer,
//! the programs a tail call can reach.

use std::sync::Arc;
use std::time::Instant;

use skiff_maps::Map;

use crate::jit::JitState;
use crate::mem::{Region, RegionKind, Regions};
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
    /// Programs a PROG_ARRAY may name (by `Program::id`).
    pub programs: Vec<Arc<Program>>,
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
            budget: DEFAULT_BUDGET,
        }
    }
}

impl Env {
    pub fn program(&self, id: u32) -> Option<&Arc<Program>> {
        self.programs.iter().find(|p| p.id == id)
    }
}

/// Memory a worker reuses run after run: the stack, the ctx placeholder whose
/// address r1 carries, the region table and the JIT's run registers (nothing is
/// allocated or moved per run).
pub struct Vm {
    stack: Box<[u8]>,
    ctx_block: Box<[u8]>,
    scratch: Box<[u8]>,
    regions: Regions,
    maps: Vec<*const Map>,
    jit: Box<JitState>,
    /// The program (and number of extra regions) `regions.others` and `maps`
    /// were last set up for: the next run of the same program reuses them.
    setup_for: Option<(*const Program, usize)>,
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
        let mut stack = vec![0u8; STACK_SIZE].into_boxed_slice();
        let stack_start = stack.as_mut_ptr() as usize;
        let regions = Regions {
            stack: Some(Region::new(stack_start, STACK_SIZE, RegionKind::ReadWrite)),
            ..Regions::default()
        };
        let mut jit = Box::<JitState>::default();
        jit.stack_lo = stack_start as u64;
        jit.stack_hi = (stack_start + STACK_SIZE) as u64;
        Vm {
            stack,
            ctx_block: vec![0u8; 256].into_boxed_slice(),
            scratch: vec![0u8; SCRATCH_SIZE].into_boxed_slice(),
            regions,
            maps: Vec::new(),
            jit,
            setup_for: None,
            env: Env::default(),
            helpers,
            engine: crate::Engine::default(),
        }
    }

    /// Run `prog` with r1 pointing at `ctx`.
    pub fn run(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut dyn Context,
    ) -> Result<u64, crate::Exception> {
        self.run_inner(prog, ctx, None, &[])
    }

    /// Run `prog` with explicit r1-r5; `extra` are plain memory regions the
    /// arguments point into (the conformance suite's input buffer).
    pub fn run_with_args(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut dyn Context,
        args: [u64; 5],
        extra: &[Region],
    ) -> Result<u64, crate::Exception> {
        self.run_inner(prog, ctx, Some(args), extra)
    }

    fn run_inner(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut dyn Context,
        args: Option<[u64; 5]>,
        extra: &[Region],
    ) -> Result<u64, crate::Exception> {
        let stack_top = self.stack.as_ptr() as usize + STACK_SIZE;
        let ctx_addr = self.ctx_block.as_ptr() as usize;
        let ctx_size = ctx.ctx_size();
        let regions = &mut self.regions;
        regions.ctx = (ctx_size > 0).then(|| Region::new(ctx_addr, ctx_size, RegionKind::Ctx));
        // Static regions: the extra ones, then the program's maps; kept from the
        // last run of the same program (runs only ever append to them).
        let key = (Arc::as_ptr(prog), extra.len());
        if self.setup_for == Some(key) && extra.is_empty() {
            regions.others.truncate(regions.static_len);
            self.maps.truncate(prog.maps.len());
        } else {
            regions.others.clear();
            regions.others.extend_from_slice(extra);
            regions.others.extend_from_slice(&prog.map_regions);
            regions.static_len = regions.others.len();
            self.maps.clear();
            self.maps.extend(prog.maps.iter().map(Arc::as_ptr));
            self.setup_for = Some(key);
        }
        let jit = &mut *self.jit;
        jit.budget = self.env.budget;
        jit.cpu = self.env.cpu as u64;
        jit.depth = 0;
        jit.status = crate::jit::runtime::RUN;
        let mut st = RunState {
            regions,
            ctx,
            env: &mut self.env,
            helpers: &self.helpers,
            maps: &mut self.maps,
            stack_top,
            tail_call_cnt: 0,
            pending_tail_call: None,
            current: ProgRef(Arc::as_ptr(prog)),
            keepalive: Vec::new(),
            exit_now: None,
            scratch: self.scratch.as_mut_ptr() as usize,
            scratch_mapped: false,
            engine: self.engine,
            jit,
            jit_error: None,
        };
        st.refresh_packet();
        let args = args.unwrap_or([ctx_addr as u64, 0, 0, 0, 0]);
        let res = if self.engine == crate::Engine::Jit && prog.jit().is_some() {
            (st.jit.ctx_start, st.jit.ctx_end) = match st.regions.ctx {
                Some(r) => (r.start, r.end),
                None => crate::jit::runtime::EMPTY,
            };
            crate::jit::execute(&mut st, args)
        } else {
            crate::interp::execute(&mut st, None, 0, args)
        };
        let res = res.map_err(|(pc, error)| crate::Exception {
            prog: st.current.name.clone(),
            pc,
            error,
        });
        if !st.keepalive.is_empty() || st.scratch_mapped {
            // Inner maps / scratch were appended: the next run starts afresh.
            self.setup_for = None;
        }
        res
    }
}

/// A program the run is executing. Runs hold the owning `Arc`s (the caller's
/// program, `Env::programs` for tail calls), so the pointer stays valid for the run
/// without an atomic reference count per run.
#[derive(Clone, Copy)]
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

/// Everything a helper may look at or change during a run.
pub struct RunState<'a> {
    pub regions: &'a mut Regions,
    pub ctx: &'a mut dyn Context,
    pub env: &'a mut Env,
    pub helpers: &'a HelperTable,
    /// Maps whose handles are valid in this run: the program's, the inner maps
    /// it looked up, the maps of programs it tail-called. Kept alive by the
    /// programs' `Arc`s and by `keepalive`.
    maps: &'a mut Vec<*const Map>,
    keepalive: Vec<Arc<Map>>,
    pub(crate) stack_top: usize,
    pub(crate) tail_call_cnt: u32,
    pub(crate) pending_tail_call: Option<ProgRef>,
    pub current: ProgRef,
    /// Set by a helper that ends the program (the conformance suite's `unwind`).
    pub exit_now: Option<u64>,
    scratch: usize,
    scratch_mapped: bool,
    pub(crate) engine: crate::Engine,
    /// The run's registers both engines share (budget, call depth) and what
    /// native code reads directly (see jit::runtime).
    pub(crate) jit: &'a mut JitState,
    pub(crate) jit_error: Option<(usize, VmError)>,
}

impl RunState<'_> {
    /// The map a register value (from ld_imm64 or an inner-map lookup) refers to.
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

    /// Make a map usable by handle for the rest of the run (an inner map from an
    /// *_OF_MAPS lookup, the maps of a tail-called program) and return its handle.
    pub fn adopt_map(&mut self, m: &Arc<Map>) -> u64 {
        let p = Arc::as_ptr(m);
        if !self.maps.contains(&p) {
            self.maps.push(p);
            self.keepalive.push(m.clone());
            self.regions.others.extend(crate::program::map_regions(m));
            self.regions.static_len = self.regions.others.len();
        }
        map_handle(m)
    }

    pub fn cpu(&self) -> usize {
        self.env.cpu as usize
    }

    /// Bytes of program memory for a helper argument (ARG_PTR_TO_MEM).
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, VmError> {
        let p = self.regions.raw(addr, len as u64, false)?;
        // SAFETY: `raw` checked that [addr, addr+len) lies inside one live region.
        Ok(unsafe { std::slice::from_raw_parts(p, len) }.to_vec())
    }

    /// Program memory for a read-only helper argument, without copying it.
    pub fn bytes(&self, addr: u64, len: usize) -> Result<&[u8], VmError> {
        let p = self.regions.raw(addr, len as u64, false)?;
        // SAFETY: `raw` checked that [addr, addr+len) lies inside one live region;
        // the borrow of `self` keeps helpers from changing memory meanwhile.
        Ok(unsafe { std::slice::from_raw_parts(p, len) })
    }

    pub fn read_into(&self, addr: u64, out: &mut [u8]) -> Result<(), VmError> {
        let p = self.regions.raw(addr, out.len() as u64, false)?;
        // SAFETY: as in `read`; `out` is a distinct Rust buffer.
        unsafe { std::ptr::copy(p, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), VmError> {
        let p = self.regions.raw(addr, data.len() as u64, true)?;
        // SAFETY: `raw` checked that the range lies in one writable region.
        unsafe { std::ptr::copy(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Checked raw pointer to `len` bytes at `addr` (for helpers that hand the
    /// address to a map, e.g. ringbuf submit).
    pub fn raw(&self, addr: u64, len: usize, write: bool) -> Result<*mut u8, VmError> {
        self.regions.raw(addr, len as u64, write)
    }

    /// Copy `key` into the run's read-only scratch block and return its address
    /// (keys handed to bpf_for_each_map_elem callbacks).
    pub fn scratch_key(&mut self, key: &[u8]) -> Result<u64, VmError> {
        if key.len() > SCRATCH_SIZE {
            return Err(VmError::NotSupported(format!("key of {} bytes", key.len())));
        }
        if !self.scratch_mapped {
            self.regions.others.push(Region::new(
                self.scratch,
                SCRATCH_SIZE,
                RegionKind::ReadOnly,
            ));
            self.scratch_mapped = true;
        }
        // SAFETY: scratch is the Vm's own SCRATCH_SIZE-byte block, alive for the run.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), self.scratch as *mut u8, key.len()) };
        Ok(self.scratch as u64)
    }

    /// Add a region for the rest of the run (e.g. a reserved ringbuf record).
    pub fn add_region(&mut self, r: Region) {
        self.regions.others.push(r);
    }

    /// Re-read the packet bounds after a helper moved or resized the packet.
    pub fn refresh_packet(&mut self) {
        self.regions.packet = self
            .ctx
            .packet()
            .map(|(s, e)| Region::new(s, e - s, RegionKind::ReadWrite));
        (self.jit.pkt_start, self.jit.pkt_end) = match self.regions.packet {
            Some(r) => (r.start, r.end),
            None => crate::jit::runtime::EMPTY,
        };
    }

    /// Request a tail call; the interpreter performs it when the helper returns.
    /// `prog` must be one of `Env::programs` (which keep it alive).
    pub fn tail_call(&mut self, prog: &Arc<Program>) {
        self.pending_tail_call = Some(ProgRef::new(prog));
    }

    pub(crate) fn tail_call_ref(&mut self, prog: ProgRef) {
        self.pending_tail_call = Some(prog);
    }

    /// Call a subprogram of the current program (a callback of bpf_loop or
    /// bpf_for_each_map_elem) and return its r0.
    pub fn call_callback(&mut self, func: u64, args: [u64; 5]) -> Result<u64, VmError> {
        if func & !0xffff_ffff != crate::program::FUNC_TAG {
            return Err(VmError::BadCallback(func));
        }
        let pc = (func & 0xffff_ffff) as usize;
        if pc >= self.current.code.len() {
            return Err(VmError::BadCallback(func));
        }
        if self.jit.depth + 1 >= MAX_CALL_FRAMES {
            return Err(VmError::CallDepth(MAX_CALL_FRAMES));
        }
        let prog = self.current;
        self.jit.depth += 1;
        let r = match self.engine {
            crate::Engine::Jit => crate::jit::runtime_call(self, pc, args),
            crate::Engine::Interp => None,
        };
        let r = match r {
            Some(r) => r,
            None => crate::interp::execute(self, Some(prog), pc, args).map_err(|(_, e)| e),
        };
        self.jit.depth -= 1;
        r
    }
}
