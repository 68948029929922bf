//! What native code calls back into: the slow paths of memory access (the full
//! region table, the context's field rewriting), helper calls, tail calls and
//! failures. All take the run state as their first argument; an error is
//! recorded in it and `status` tells the native code to unwind.

use std::mem::offset_of;

use crate::mem::{RegionKind, Target};
use crate::state::{ProgRef, RunState};
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

/// rt_load's size flag: a helper's memory argument, where the context is not memory.
pub const MEM_ONLY: u64 = 0x100;

pub const FAIL_BUDGET: u64 = 0;
pub const FAIL_DEPTH: u64 = 1;

/// Number of 4-byte context slots the shadow covers (__sk_buff is 192 bytes).
pub const SHADOW_SLOTS: usize = 64;

/// An empty range for native code's `lo <= a && a <= hi - size` tests: no
/// address passes with `lo = hi = u64::MAX` (with `hi = 0`, `hi - size` wrapped
/// and let a one-byte access at address u64::MAX through: the fuzzer's SIGSEGV).
pub const EMPTY: (u64, u64) = (u64::MAX, u64::MAX);

/// The part of the run state native code reads and writes directly.
// Aligned: each worker writes its own every run; two must not share a line.
#[repr(C, align(128))]
pub struct JitState {
    pub pkt_start: u64,
    pub pkt_end: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// Last non-packet region a load / store went to (map storage, mostly).
    pub load_lo: u64,
    pub load_hi: u64,
    pub store_lo: u64,
    pub store_hi: u64,
    pub ctx_start: u64,
    pub ctx_end: u64,
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
    /// Meaningful only in the slots `shadow_valid` names.
    pub shadow: [u64; SHADOW_SLOTS],
}

impl Default for JitState {
    fn default() -> Self {
        JitState {
            pkt_start: EMPTY.0,
            pkt_end: EMPTY.1,
            stack_lo: EMPTY.0,
            stack_hi: EMPTY.1,
            load_lo: EMPTY.0,
            load_hi: EMPTY.1,
            store_lo: EMPTY.0,
            store_hi: EMPTY.1,
            ctx_start: EMPTY.0,
            ctx_end: EMPTY.1,
            shadow_valid: 0,
            status: RUN,
            exit_value: 0,
            cpu: 0,
            budget: 0,
            depth: 0,
            st: std::ptr::null_mut(),
            shadow: [0; SHADOW_SLOTS],
        }
    }
}

impl JitState {
    /// Forget everything a helper may have changed: cached regions (a ringbuf
    /// record may be gone), context values (the packet may have moved).
    pub fn invalidate(&mut self) {
        (self.load_lo, self.load_hi) = EMPTY;
        (self.store_lo, self.store_hi) = EMPTY;
        self.shadow_valid = 0;
    }
}

/// Byte offsets of the JIT state's fields, for native code (which gets a
/// pointer to the JitState).
pub mod off {
    use super::*;
    const JIT: usize = 0;
    pub const PKT_START: i32 = (JIT + offset_of!(JitState, pkt_start)) as i32;
    pub const PKT_END: i32 = (JIT + offset_of!(JitState, pkt_end)) as i32;
    pub const STACK_LO: i32 = (JIT + offset_of!(JitState, stack_lo)) as i32;
    pub const STACK_HI: i32 = (JIT + offset_of!(JitState, stack_hi)) as i32;
    pub const LOAD_LO: i32 = (JIT + offset_of!(JitState, load_lo)) as i32;
    pub const LOAD_HI: i32 = (JIT + offset_of!(JitState, load_hi)) as i32;
    pub const STORE_LO: i32 = (JIT + offset_of!(JitState, store_lo)) as i32;
    pub const STORE_HI: i32 = (JIT + offset_of!(JitState, store_hi)) as i32;
    pub const CTX_START: i32 = (JIT + offset_of!(JitState, ctx_start)) as i32;
    pub const CTX_END: i32 = (JIT + offset_of!(JitState, ctx_end)) as i32;
    pub const SHADOW_VALID: i32 = (JIT + offset_of!(JitState, shadow_valid)) as i32;
    pub const STATUS: i32 = (JIT + offset_of!(JitState, status)) as i32;
    pub const SHADOW: i32 = (JIT + offset_of!(JitState, shadow)) as i32;
    pub const CPU: i32 = (JIT + offset_of!(JitState, cpu)) as i32;
    pub const BUDGET: i32 = offset_of!(JitState, budget) as i32;
    pub const DEPTH: i32 = offset_of!(JitState, depth) as i32;
}

/// Record an error at `pc` and tell native code to unwind.
fn fail(st: &mut RunState, pc: u64, e: VmError) -> u64 {
    if st.jit_error.is_none() {
        st.jit_error = Some((pc as usize, e));
    }
    st.jit.status = ABORT;
    0
}

/// Fill the context shadow (at the start of a run and after a miss).
pub(crate) fn fill_shadow(st: &mut RunState) {
    let wanted = st.current.jit().map(|c| c.ctx_wanted).unwrap_or(0);
    if wanted == 0 {
        st.jit.shadow_valid = 0;
        return;
    }
    let mask = st.ctx.fast_loads(wanted, &mut st.jit.shadow);
    st.jit.shadow_valid = mask;
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
unsafe fn state<'a>(js: *mut JitState) -> &'a mut RunState<'static> {
    // SAFETY: run_native set `st` to the live run state before entering native
    // code; the JitState itself is only reached through it from here on.
    unsafe { &mut *(*js).st }
}

/// Run the current program (JIT compiled) from instruction 0.
pub(crate) fn execute(st: &mut RunState, args: [u64; 5]) -> Result<u64, (usize, VmError)> {
    let Some(f) = st.current.jit().and_then(|c| c.func(0)) else {
        return crate::interp::execute(st, None, 0, args);
    };
    st.jit.status = RUN;
    // Regions cached by an earlier run may be gone.
    st.jit.invalidate();
    fill_shadow(st);
    let r0 = run_native(st, f, args);
    if let Some(e) = st.jit_error.take() {
        return Err(e);
    }
    Ok(if st.jit.status == ABORT {
        st.jit.exit_value
    } else {
        r0
    })
}

/// Call a function of the current program (a bpf_loop / for_each callback).
pub(crate) fn call_function(
    st: &mut RunState,
    pc: usize,
    args: [u64; 5],
) -> Option<Result<u64, VmError>> {
    let f = st.current.jit()?.func(pc)?;
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

fn region_of(st: &RunState, addr: u64, len: u64) -> Option<(u64, u64, RegionKind)> {
    let r = st.regions.others.iter().find(|r| {
        addr >= r.start && addr.wrapping_add(len) <= r.end && addr.wrapping_add(len) >= addr
    })?;
    Some((r.start, r.end, r.kind))
}

pub(super) unsafe extern "C" fn rt_load(js: *mut JitState, addr: u64, size: u64, pc: u64) -> u64 {
    // SAFETY: native code passes the JitState it was given, during its run.
    let st = unsafe { state(js) };
    let mem_only = size & MEM_ONLY != 0;
    let size = size & 0xff;
    match st.regions.translate(addr, size, false) {
        Ok(Target::Ctx(_)) if mem_only => fail(
            st,
            pc,
            VmError::OutOfBounds {
                addr,
                len: size,
                write: false,
            },
        ),
        Ok(Target::Raw(p)) => {
            if let Some((lo, hi, _)) = region_of(st, addr, size) {
                st.jit.load_lo = lo;
                st.jit.load_hi = hi;
            }
            // SAFETY: translate() checked [addr, addr+size) lies in a live region.
            unsafe {
                match size {
                    1 => *p as u64,
                    2 => (p as *const u16).read_unaligned() as u64,
                    4 => (p as *const u32).read_unaligned() as u64,
                    _ => (p as *const u64).read_unaligned(),
                }
            }
        }
        Ok(Target::Ctx(off)) => match st.ctx.load(off, size as u32) {
            Ok(v) => {
                // Serve this field natively until a helper or a context store.
                let slot = (off / 4) as usize;
                if size == 4 && off % 4 == 0 && slot < SHADOW_SLOTS {
                    st.jit.shadow[slot] = v;
                    st.jit.shadow_valid |= 1 << slot;
                }
                v
            }
            Err(e) => fail(st, pc, e),
        },
        Err(e) => fail(st, pc, e),
    }
}

pub(super) unsafe extern "C" fn rt_store(
    js: *mut JitState,
    addr: u64,
    size: u64,
    value: u64,
    pc: u64,
) -> u64 {
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    match st.regions.translate(addr, size, true) {
        Ok(Target::Raw(p)) => {
            if let Some((lo, hi, RegionKind::ReadWrite)) = region_of(st, addr, size) {
                st.jit.store_lo = lo;
                st.jit.store_hi = hi;
            }
            // SAFETY: translate() checked the range lies in a live writable region.
            unsafe {
                match size {
                    1 => *p = value as u8,
                    2 => (p as *mut u16).write_unaligned(value as u16),
                    4 => (p as *mut u32).write_unaligned(value as u32),
                    _ => (p as *mut u64).write_unaligned(value),
                }
            }
            0
        }
        Ok(Target::Ctx(off)) => {
            // The fields the store touched are read through `load` again.
            let first = off / 4;
            let last = (off + size as u32 - 1) / 4;
            for slot in first..=last.min(SHADOW_SLOTS as u32 - 1) {
                st.jit.shadow_valid &= !(1u64 << slot);
            }
            match st.ctx.store(off, size as u32, value) {
                Ok(()) => 0,
                Err(e) => fail(st, pc, e),
            }
        }
        Err(e) => fail(st, pc, e),
    }
}

/// BPF_ATOMIC: `size_op` is the access size | imm << 8. Returns the old value.
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
    match crate::interp::atomic(st, addr, size, op, src, r0) {
        Ok((fetched, cmp)) => {
            if let Some((lo, hi, RegionKind::ReadWrite)) = region_of(st, addr, size as u64) {
                st.jit.store_lo = lo;
                st.jit.store_hi = hi;
            }
            fetched.or(cmp).unwrap_or(0)
        }
        Err(e) => fail(st, pc, e),
    }
}

/// A helper call (call imm, or callx with the id in a register).
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
    let helpers = st.helpers;
    let r = helpers.call(st, id as u32, [r1, r2, r3, r4, r5]);
    if !keeps_packet_and_ctx(id) {
        st.refresh_packet();
        fill_shadow(st);
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
        return tail_call(st, next, [r1, r2, r3, r4, r5]);
    }
    r0
}

/// Helpers that change neither the packet nor a context field (the complement
/// of the kernel's bpf_helper_changes_pkt_data, narrowed to what skiff's
/// contexts expose): after them native code keeps its packet bounds and
/// context values. Callbacks (bpf_loop, for_each) refresh them themselves.
fn keeps_packet_and_ctx(id: u64) -> bool {
    matches!(
        id,
        1 | 2
            | 3
            | 5
            | 6
            | 7
            | 8
            | 12
            | 23
            | 25
            | 28
            | 51
            | 69
            | 87
            | 88
            | 89
            | 93
            | 94
            | 118
            | 125
            | 130..=134 | 160 | 164 | 181 | 195 | 208
    )
}

/// Run the tail-call target in place of the current function: its r0 is what
/// the current function returns (the kernel jumps into the target, reusing the
/// frame; a tail call from a subprogram returns to the subprogram's caller).
fn tail_call(st: &mut RunState, next: ProgRef, args: [u64; 5]) -> u64 {
    st.current = next;
    fill_shadow(st);
    let native = if st.engine == super::Engine::Jit {
        next.jit().and_then(|c| c.func(0))
    } else {
        None
    };
    match native {
        Some(f) => {
            let r0 = run_native(st, f, args);
            if st.jit.status == RUN {
                st.jit.status = RETURN_NOW;
            }
            r0
        }
        None => match crate::interp::execute(st, Some(next), 0, args) {
            Ok(v) => {
                st.jit.status = RETURN_NOW;
                v
            }
            Err((pc, e)) => fail(st, pc as u64, e),
        },
    }
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
