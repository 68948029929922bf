//! Tail calls. At a call site the verifier checked on a constant PROG_ARRAY,
//! native code reads the slot itself and, when this worker has made the same
//! call before and nothing it relied on has changed (`TailEntry`), calls the
//! target's native code directly and returns its r0 in place of the current
//! program's, as the kernel's JIT jumps through the slot's program
//! (arch/x86/net/bpf_jit_comp.c: emit_bpf_tail_call_indirect). Every other
//! case goes through the runtime (`rt_tail_call`), which sets up the target
//! (its tags, the context shadow) and records the call for next time.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{Block, InstBuilder, Value};

use skiff_isa::{Insn, BPF_X};
use skiff_maps::{Map, MapType};

use super::runtime::{
    fail, fill_shadow, load_shadow, off, rt_helper, run_native, shadow_wanted, state, JitState,
    RETURN_NOW, RUN,
};
use super::translate::{FnTranslator, MF};
use super::JitFn;
use crate::helpers::{neg, E2BIG, ENOENT};
use crate::mem::SCALAR;
use crate::state::{ProgRef, RunState, MAX_TAIL_CALL_CNT};
use crate::verifier::BPF_FUNC_TAIL_CALL;

/// Entries of `JitState::tail_cache` (a power of two).
pub const TAIL_CACHE: usize = 16;

/// A tail call the worker made through the runtime at one site, which native
/// code may make again by itself: from the code of program `from` to program
/// `id`, whose native main function is `code`. Recorded only when the target
/// needed no set-up of its own: the tag table already held the target's maps
/// (the same maps at the same tags, among the caller's own, which its code
/// always runs with) and its context layout was the caller's. What can change
/// between runs native code checks itself: the slot's program, the count, the
/// call depth, regions the run added, the context fields the target reads
/// (`wanted`) still valid in the shadow.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TailEntry {
    /// The target's program id (u64::MAX: no entry; a slot's id is 32 bits).
    pub id: u64,
    pub from: u64,
    pub code: u64,
    /// The target (`RunState::current` during its run).
    pub prog: u64,
    /// Context slots the target's code reads from the shadow.
    pub wanted: u64,
}

impl Default for TailEntry {
    fn default() -> Self {
        TailEntry {
            id: u64::MAX,
            from: 0,
            code: 0,
            prog: 0,
            wanted: 0,
        }
    }
}

mod entry {
    use super::TailEntry;
    use std::mem::offset_of;
    pub const SIZE: i64 = size_of::<TailEntry>() as i64;
    pub const ID: i32 = offset_of!(TailEntry, id) as i32;
    pub const FROM: i32 = offset_of!(TailEntry, from) as i32;
    pub const CODE: i32 = offset_of!(TailEntry, code) as i32;
    pub const PROG: i32 = offset_of!(TailEntry, prog) as i32;
    pub const WANTED: i32 = offset_of!(TailEntry, wanted) as i32;
}

impl JitState {
    /// The worker's programs changed: a recorded call may name one it no
    /// longer holds (which the runtime would not reach).
    #[cold]
    pub(crate) fn forget_tail_calls(&mut self) {
        self.tail_cache = Default::default();
        self.tail_keep = Default::default();
    }
}

/// Each compiled tail-call site's entry in `tail_cache`: sites numbered in
/// the order they are compiled (a chain's stages, compiled one after another,
/// get distinct entries; two sites that share one take turns through the
/// runtime). Fixed at compile time, so native code finds its entry at a
/// constant offset, without waiting for the slot's word.
fn next_site() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (TAIL_CACHE - 1)
}

/// rt_tail_call's `pc` argument: the instruction, and the site's entry above.
const SITE_SHIFT: u32 = 32;

/// The target's native main function, when native code may call it itself
/// from now on: the call is made from the main
/// function (no frame to restore after), no region was added to the tag
/// table and the table already holds the target's maps, all with static tags
/// (then its maps are valid by handle too), and the target's code reads the
/// context as the caller's does.
fn native_entry(st: &RunState, next: ProgRef) -> Option<JitFn> {
    // (Only native code calls rt_tail_call: the engine is the JIT.)
    if st.jit.depth != 0 || st.regions.has_dynamic() {
        return None;
    }
    let (code, cur) = (next.jit()?, st.current.jit()?);
    let layout = |l: Option<&'static crate::CtxLayout>| l.map(|l| l as *const crate::CtxLayout);
    // The caller's code runs with a table that holds its own maps (at
    // least): the target's must be among them.
    let same = layout(code.layout) == layout(cur.layout)
        && next.maps.len() == next.tags.len()
        && next.tags.len() <= st.current.tags.len()
        && st.regions.holds_program(&next.tags);
    same.then_some(code.main)
}

/// Record the tail call from `from` to `next` at site entry `i` for native
/// code, holding `next` (from the worker's programs) so its code stays alive.
fn remember(st: &mut RunState, i: usize, from: u32, next: ProgRef, code: JitFn) {
    let Some(keep) = st.env.program(next.id).cloned() else {
        return;
    };
    let wanted = next.jit().map_or(0, |c| c.ctx_wanted);
    let i = i & (TAIL_CACHE - 1);
    st.jit.tail_cache[i] = TailEntry {
        id: next.id as u64,
        from: from as u64,
        code: code as usize as u64,
        prog: std::sync::Arc::as_ptr(&keep) as usize as u64,
        wanted,
    };
    st.jit.tail_keep[i] = Some(keep);
}

/// bpf_tail_call at a call site the verifier checked (r1 the context, r2 the
/// constant PROG_ARRAY whose address is `map`); the emitted code already
/// checked index < max_entries. The slot gives the target (no helper table,
/// no search by map handle or program id), whose native entry runs in place
/// of the current function (arch/x86/net/bpf_jit_comp.c:
/// emit_bpf_tail_call_indirect). Falling through returns what the helper
/// returns; nothing cached is stale then (a tail call changes nothing).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C" fn rt_tail_call(
    js: *mut JitState,
    map: u64,
    r1: u64,
    r2: u64,
    r3: u64,
    r4: u64,
    r5: u64,
    site_pc: u64,
) -> u64 {
    let (site, pc) = ((site_pc >> SITE_SHIFT) as usize, site_pc & 0xffff_ffff);
    // SAFETY: as in rt_load.
    let st = unsafe { state(js) };
    if !crate::helpers::is_own_tail_call(st.helpers) {
        st.jit.arg_tags = crate::state::ENTRY_TAGS;
        // SAFETY: as above.
        return unsafe {
            rt_helper(
                js,
                crate::verifier::BPF_FUNC_TAIL_CALL as u64,
                r1,
                r2,
                r3,
                r4,
                r5,
                pc,
            )
        };
    }
    // SAFETY: `map` is the address of one of the running program's maps (the
    // compiler took it from `Program::maps`); the program, which holds it, is
    // kept alive for the run.
    let map = unsafe { &*(map as usize as *const skiff_maps::Map) };
    match crate::helpers::tail_call_target(st, map, r3 as u32) {
        Ok(next) => {
            let from = st.current.id;
            let native = native_entry(st, next);
            crate::helpers::begin_tail_call(st, next);
            if let Some(code) = native {
                remember(st, site, from, next, code);
            }
            tail_call(st, next, [r1, r2, r3, r4, r5])
        }
        Err(r0) => r0,
    }
}

/// Run the tail-call target in place of the current function: its r0 is what
/// the current function returns (the kernel jumps into the target, reusing the
/// frame; a tail call from a subprogram returns to the subprogram's caller,
/// whose program and tags come back).
pub(super) fn tail_call(st: &mut RunState, next: ProgRef, args: [u64; 5]) -> u64 {
    let saved = (st.jit.depth > 0).then(|| st.save());
    st.enter_program(next);
    fill_shadow_missing(st);
    let native = if st.engine == super::Engine::Jit {
        next.jit().map(|c| c.main)
    } else {
        None
    };
    let r0 = match native {
        Some(f) => {
            st.jit.arg_tags = crate::state::ENTRY_TAGS;
            let r0 = run_native(st, f, args);
            if st.jit.status == RUN {
                st.jit.status = RETURN_NOW;
            }
            r0
        }
        None => match crate::interp::execute(st, Some(next), 0, args, crate::state::ENTRY_TAGS) {
            Ok(v) => {
                st.jit.status = RETURN_NOW;
                v
            }
            Err((pc, e)) => fail(st, pc as u64, e),
        },
    };
    if let Some(s) = saved {
        st.restore(s);
        fill_shadow(st);
    }
    r0
}

/// The shadow for a tail call's target: bpf_tail_call changes no context
/// field, so the slots already valid still equal `load`; only the fields the
/// target reads that the shadow lacks are filled (often none: the chain's
/// programs read the same fields). A target compiled for another layout (or
/// none) sets the context up afresh: the direct slots may be stale.
fn fill_shadow_missing(st: &mut RunState) {
    let layout = st
        .current
        .jit()
        .and_then(|c| c.layout)
        .map_or(std::ptr::null(), |l| l as *const crate::CtxLayout);
    if layout != st.jit.layout {
        return fill_shadow(st);
    }
    let missing = shadow_wanted(st) & !st.jit.shadow_valid;
    load_shadow(st.jit, st.ctx, missing);
}

impl FnTranslator<'_> {
    /// The PROG_ARRAY of the bpf_tail_call at `pc`, when the verifier checked
    /// the call (r1 the context) and r2 was the same map on every path.
    fn tail_call_map(&self, pc: usize, insn: Insn) -> Option<&Map> {
        if insn.code & BPF_X != 0 || insn.imm != BPF_FUNC_TAIL_CALL {
            return None;
        }
        self.site(pc)?;
        let prog = self.prog();
        let map = prog
            .maps
            .get(super::calls::const_map(prog, self.aux?, pc)?)?;
        (map.attr().map_type == MapType::ProgArray).then_some(&**map)
    }

    /// bpf_tail_call at a verified site: index < max_entries checked here
    /// (max_entries is fixed at map creation); in the main function, the
    /// call native code can make itself (`native_tail_call`), else
    /// `rt_tail_call`, which checks the count and the slot and enters the
    /// target. Returns false when the site is not one (the call goes through
    /// the helper table).
    pub(super) fn direct_tail_call(&mut self, pc: usize, insn: Insn) -> bool {
        let Some(map) = self.tail_call_map(pc, insn) else {
            return false;
        };
        let (addr, max) = (map as *const Map as usize, map.attr().max_entries);
        let words = map.prog_slot_words().map(|w| w.as_ptr() as usize);
        let r3 = self.reg(3);
        let idx32 = self.b.ins().ireduce(I32, r3);
        let idx = self.b.ins().uextend(I64, idx32);
        let in_range = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, idx, max as i64);
        let call = self.b.create_block();
        let miss = self.b.create_block();
        let join = self.b.create_block();
        self.b.set_cold_block(miss);
        let r0 = self.b.append_block_param(join, I64);
        self.b.ins().brif(in_range, call, &[], miss, &[]);

        self.b.switch_to_block(miss);
        let e2big = self.b.ins().iconst(I64, neg(E2BIG) as i64);
        self.b.ins().jump(join, &[e2big.into()]);

        self.b.switch_to_block(call);
        let site = next_site();
        if let (Some(words), true) = (words, self.is_main()) {
            self.native_tail_call(words, idx, site, join);
        }
        let mut args = vec![self.st, self.b.ins().iconst(I64, addr as i64)];
        for r in 1..=5 {
            args.push(self.reg(r));
        }
        let site_pc = (site as u64) << SITE_SHIFT | pc as u64;
        args.push(self.b.ins().iconst(I64, site_pc as i64));
        self.spill_budget();
        let sig = self.sig_helper;
        let v = self.call_rt(sig, rt_tail_call as *const () as usize, &args);
        self.reload_state();
        self.check_status(v);
        self.b.ins().jump(join, &[v.into()]);

        self.b.switch_to_block(join);
        self.set(0, r0);
        let t0 = self.b.ins().iconst(I64, SCALAR as i64);
        self.set_tag(0, t0);
        true
    }

    /// The tail call through slot `idx` (in range) of the PROG_ARRAY whose
    /// slot words are at `words`, made by native code when the worker's
    /// `TailEntry` for it holds and the run allows it (see `TailEntry`): the
    /// target's main function called with this function's r1-r5 and frame,
    /// its r0 returned; an empty slot falls through to `join` (as the
    /// runtime's call returns, with -ENOENT). Else goes on to the runtime's
    /// call.
    fn native_tail_call(&mut self, words: usize, idx: Value, site: usize, join: Block) {
        let from = self.prog().id;
        let base = self.b.ins().iconst(I64, words as i64);
        let at = self.b.ins().imul_imm_s(idx, 8);
        let slot = self.b.ins().iadd(base, at);
        let word = self.b.ins().atomic_load(I64, MF, slot);
        let id32 = self.b.ins().ireduce(I32, word);
        let id = self.b.ins().uextend(I64, id32);
        let cnt = self.st_load(off::TAIL_CALL_CNT);
        let count_ok =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, cnt, MAX_TAIL_CALL_CNT as i64);
        // An empty slot falls through with the runtime's r0 (the count is
        // checked first, as emit_bpf_tail_call_indirect does).
        let (enoent, e2big) = (neg(ENOENT) as i64, neg(E2BIG) as i64);
        let (enoent, e2big) = (
            self.b.ins().iconst(I64, enoent),
            self.b.ins().iconst(I64, e2big),
        );
        let empty_r0 = self.b.ins().select(count_ok, enoent, e2big);
        let full = self.b.create_block();
        self.b.ins().brif(id, full, &[], join, &[empty_r0.into()]);
        self.b.switch_to_block(full);
        // The site's entry, at a constant offset in the JitState.
        let e = self
            .b
            .ins()
            .iadd_imm_s(self.st, off::TAIL_CACHE as i64 + site as i64 * entry::SIZE);
        let field = |t: &mut Self, o: i32| t.b.ins().load(I64, MF, e, o);
        let (e_id, e_from) = (field(self, entry::ID), field(self, entry::FROM));
        // Every condition, each 0 when it holds.
        let mut miss = self.b.ins().bxor(e_id, id);
        let f = self.b.ins().bxor_imm_s(e_from, from as i64);
        miss = self.b.ins().bor(miss, f);
        for o in [off::DEPTH, off::REGIONS_DYNAMIC] {
            let v = self.st_load(o);
            miss = self.b.ins().bor(miss, v);
        }
        let have = [off::DIRECT_SLOTS, off::PKT_SLOTS, off::SHADOW_VALID]
            .map(|o| self.st_load(o))
            .into_iter()
            .reduce(|a, v| self.b.ins().bor(a, v))
            .expect("three slots");
        let wanted = field(self, entry::WANTED);
        let lacking = self.b.ins().band_not(wanted, have);
        miss = self.b.ins().bor(miss, lacking);
        let none = self.b.ins().icmp_imm_s(IntCC::Equal, miss, 0);
        let go = self.b.ins().band(none, count_ok);
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        self.b.ins().brif(go, fast, &[], slow, &[]);

        self.b.switch_to_block(fast);
        let cnt1 = self.b.ins().iadd_imm_s(cnt, 1);
        self.st_store(cnt1, off::TAIL_CALL_CNT);
        let (code, prog) = (field(self, entry::CODE), field(self, entry::PROG));
        let run = self.st_load(off::ST);
        self.b.ins().store(MF, prog, run, CURRENT);
        let tags = self.b.ins().iconst(I64, crate::state::ENTRY_TAGS as i64);
        self.st_store(tags, off::ARG_TAGS);
        let mut args = vec![self.st];
        for r in 1..=5 {
            args.push(self.reg(r));
        }
        args.push(self.reg(10));
        self.spill_budget();
        let sig = self.sig_with(args.len());
        let call = self.b.ins().call_indirect(sig, code, &args);
        let r0 = self.b.inst_results(call)[0];
        // The target's r0 is this function's (an abort, too, only unwinds).
        self.b.ins().return_(&[r0]);

        self.b.switch_to_block(slow);
    }
}

/// `RunState::current`'s offset (a `ProgRef`: one pointer).
const CURRENT: i32 = std::mem::offset_of!(RunState<'static>, current) as i32;
