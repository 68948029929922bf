//! Source-line coverage: per-instruction hit counters, kept by the
//! interpreter for programs loaded while coverage is on.
//!
//! Why the interpreter and not block counters in the JIT: the interpreter
//! already visits every instruction, so one relaxed add per instruction is
//! exact (tail calls, callbacks, bpf_loop bodies included) and needs no
//! second code generator; the JIT stays untouched and costs nothing extra.
//! When coverage is off no program has counters and the interpreter's loop is
//! the instance compiled without the counting code (`interp::run_loop`'s
//! `COVER` parameter), so the off case costs one pointer test per run.
//!
//! Coverage is a process-wide mode (`enable`): every program loaded from an
//! object afterwards gets counters and is loaded for the interpreter, and
//! `take` hands back the counters of all of them (a `skiff test` case loads
//! its object afresh; the counters outlive the programs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skiff_object::{FuncStart, LineInfo};

static ENABLED: AtomicBool = AtomicBool::new(false);
static REGISTRY: Mutex<Vec<Arc<Counters>>> = Mutex::new(Vec::new());

/// One loaded program's counters and what maps them to source.
pub struct Counters {
    /// The program's name.
    pub name: String,
    /// Its line info (`skiff_object::Program::lines`).
    pub lines: Vec<LineInfo>,
    /// Its functions (`skiff_object::Program::funcs`).
    pub funcs: Vec<FuncStart>,
    hits: Box<[AtomicU64]>,
}

impl Counters {
    /// How often instruction `insn` ran (0 outside the program).
    pub fn hits(&self, insn: usize) -> u64 {
        self.hits.get(insn).map_or(0, |h| h.load(Ordering::Relaxed))
    }

    /// Counts one execution of instruction `pc`.
    #[inline(always)]
    pub(crate) fn hit(&self, pc: usize) {
        if let Some(h) = self.hits.get(pc) {
            h.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Turns coverage on for every program loaded from now on.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// Whether programs loaded now get counters.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Counters for a program about to be loaded from `spec` with `len`
/// instructions, registered for `take`; None when coverage is off.
pub(crate) fn counters_for(spec: &skiff_object::Program, len: usize) -> Option<Arc<Counters>> {
    if !enabled() {
        return None;
    }
    let c = Arc::new(Counters {
        name: spec.name.clone(),
        lines: spec.lines.clone(),
        funcs: spec.funcs.clone(),
        hits: (0..len).map(|_| AtomicU64::new(0)).collect(),
    });
    // A poisoned registry still holds valid counters (they are only pushed).
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.push(c.clone());
    Some(c)
}

/// The counters of every program loaded since coverage was enabled.
pub fn take() -> Vec<Arc<Counters>> {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *reg)
}
