//! The JIT: eBPF to native code with Cranelift, once per program at load time.
//! Each eBPF function (the main program, every bpf-to-bpf callee and callback)
//! becomes one native function `(st, r1..r5, r10) -> r0` (the tags of r1-r5 and
//! r0 pass through the JitState). The code keeps the interpreter's guarantees
//! without a verifier: every load and store is checked against the region of its
//! pointer's provenance tag (crate::mem; tags known at compile time specialise
//! the check: constant bounds for the program's maps, registers for the packet),
//! loops are bounded by the instruction budget, and any violation ends the run
//! with the interpreter's error.

mod access;
mod analysis;
mod calls;
mod memory;
pub(crate) mod runtime;
mod tail;
mod translate;

use std::time::{Duration, Instant};

use cranelift_jit::{JITBuilder, JITModule};

use crate::program::Program;
use crate::state::RunState;
use crate::verifier::Verified;
use crate::VmError;

pub(crate) use runtime::{call_function as runtime_call, execute, fill_shadow_for, JitState};

/// Which engine runs a program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Native code compiled at load time (the default).
    #[default]
    Jit,
    /// The interpreter.
    Interp,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "jit" => Ok(Engine::Jit),
            "interp" | "interpreter" => Ok(Engine::Interp),
            _ => Err(format!("unknown engine {s:?} (jit or interp)")),
        }
    }
}

/// What compiling a program cost.
#[derive(Clone, Copy, Debug)]
pub struct JitStats {
    pub compile_time: Duration,
    /// Bytes of native code, all functions.
    pub code_size: usize,
    pub functions: usize,
    /// Inline bounds checks emitted (loads, stores, atomics the verifier did
    /// not prove).
    pub checks: usize,
    /// Budget charges emitted (back-edges of loops not proven bounded, and one
    /// at the entry of each function but the main one).
    pub budget_charges: usize,
    /// bpf_map_lookup_elem calls on array maps compiled inline.
    pub inlined_lookups: usize,
    /// bpf_map_lookup/update/delete_elem calls on a constant map compiled as
    /// direct calls into the map (no helper dispatch, no argument checks).
    pub direct_map_calls: usize,
    /// Helper calls at verified sites compiled as calls of the function the
    /// verifier resolved (no helper table, no id dispatch); of them, calls of
    /// the helper's map op with the constant map r1 was proved to be.
    pub resolved_helper_calls: usize,
    pub map_op_calls: usize,
    /// bpf_loop calls compiled as a native loop calling the callback (the
    /// verifier found flags 0 and one callback on every path).
    pub inlined_loops: usize,
}

/// A native function: `(run state, r1, r2, r3, r4, r5, r10) -> r0`.
pub(crate) type JitFn = unsafe extern "C" fn(*mut JitState, u64, u64, u64, u64, u64, u64) -> u64;

/// A program's native code.
pub struct Compiled {
    module: Option<JITModule>,
    /// (entry instruction, function), sorted by entry; the main program is pc 0.
    pub(crate) funcs: Vec<(usize, JitFn)>,
    /// The main program's function (funcs[0]), called every run.
    pub(crate) main: JitFn,
    /// Context slots (4-byte offset / 4) the code reads through the shadow
    /// (4-byte loads of the context r1 came in with): what the shadow is
    /// filled with at the start of a run and after a helper call.
    pub(crate) ctx_wanted: u64,
    /// The context layout the code reaches fields through directly, and the
    /// slots of `ctx_wanted` it then loads directly (not from the shadow).
    pub(crate) layout: Option<&'static crate::CtxLayout>,
    pub(crate) direct_slots: u64,
    pub stats: JitStats,
}

// SAFETY: after finalize the module is never touched again until it is freed in
// Drop; the code it owns is immutable and may run on any thread.
#[allow(unsafe_code)]
unsafe impl Send for Compiled {}
#[allow(unsafe_code)]
unsafe impl Sync for Compiled {}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the Compiled is owned by its Program, which runs hold by Arc:
            // no code of this module can be running or be called after this.
            #[allow(unsafe_code)]
            unsafe {
                m.free_memory()
            };
        }
    }
}

impl Compiled {
    pub(crate) fn func(&self, pc: usize) -> Option<JitFn> {
        self.funcs
            .binary_search_by_key(&pc, |(e, _)| *e)
            .ok()
            .map(|i| self.funcs[i].1)
    }
}

/// Why a program cannot be compiled (the kernel's verifier refuses the same).
#[derive(Debug, Clone, thiserror::Error)]
#[error("insn {pc}: {msg}")]
pub struct JitError {
    pub pc: usize,
    pub msg: String,
}

fn isa() -> Result<cranelift_codegen::isa::OwnedTargetIsa, String> {
    use cranelift_codegen::settings::{self, Configurable};
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("is_pic", "false"),
        (
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        ),
    ] {
        flags
            .set(k, v)
            .map_err(|e| format!("cranelift flag {k}: {e}"))?;
    }
    let builder = cranelift_native::builder().map_err(|e| format!("host ISA: {e}"))?;
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("host ISA: {e}"))
}

/// Compile `prog.code` for this machine, with what the verifier proved of it
/// if it ran.
pub fn compile(prog: &Program, verified: Option<&Verified>) -> Result<Compiled, JitError> {
    let isa = isa().map_err(|msg| JitError { pc: 0, msg })?;
    compile_with(prog, isa, verified)
}

/// Compile `prog.code` for another architecture (a target triple such as
/// `aarch64-unknown-linux-gnu`), to check the JIT translates for it; the code is
/// not run. Returns what compiling cost.
pub fn compile_for(prog: &Program, triple: &str) -> Result<JitStats, JitError> {
    use cranelift_codegen::settings::{self, Configurable};
    let fail = |msg: String| JitError { pc: 0, msg };
    let mut flags = settings::builder();
    flags
        .set("opt_level", "speed")
        .map_err(|e| fail(e.to_string()))?;
    let isa = cranelift_codegen::isa::lookup_by_name(triple)
        .map_err(|e| fail(format!("target {triple}: {e}")))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| fail(e.to_string()))?;
    compile_with(prog, isa, None).map(|c| c.stats)
}

fn compile_with(
    prog: &Program,
    isa: cranelift_codegen::isa::OwnedTargetIsa,
    verified: Option<&Verified>,
) -> Result<Compiled, JitError> {
    let start = Instant::now();
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    builder.memory_provider(Box::new(memory::Staggered::new()));
    let module = JITModule::new(builder);
    let aux = verified
        .map(|v| v.aux.as_slice())
        .filter(|a| a.len() == prog.code.len());
    // Call-site facts only with the proofs they came with.
    let sites = match (aux, verified) {
        (Some(_), Some(v)) => v.helper_sites.as_slice(),
        _ => &[],
    };
    // Without the verifier's word that no pointer reaches the stack, the
    // stack's slot tags are kept.
    let stack_tags = aux.is_none() || verified.is_none_or(|v| !v.stack_scalars_only);
    let proofs = translate::Proofs {
        aux,
        sites,
        stack_tags,
    };
    let (module, funcs, counts) = translate::translate(module, prog, proofs)?;
    let n = funcs.len();
    // Without a direct access the run need not ask the context for its base.
    let layout = prog.ctx_layout.filter(|_| counts.direct > 0);
    let Some(&(0, main)) = funcs.first() else {
        return Err(JitError {
            pc: 0,
            msg: "no main function".into(),
        });
    };
    Ok(Compiled {
        module: Some(module),
        main,
        funcs,
        ctx_wanted: counts.shadow_slots,
        layout,
        direct_slots: layout.map_or(0, |l| l.load_slots()),
        stats: JitStats {
            compile_time: start.elapsed(),
            code_size: counts.code_size,
            functions: n,
            checks: counts.checks,
            budget_charges: counts.charges,
            inlined_lookups: counts.inlined,
            direct_map_calls: counts.direct_maps,
            resolved_helper_calls: counts.resolved,
            map_op_calls: counts.map_ops,
            inlined_loops: counts.inlined_loops,
        },
    })
}

/// Errors the native code reports, by code (the first argument of `rt_fail`).
pub(crate) fn fail_error(code: u64, st: &RunState) -> VmError {
    match code {
        runtime::FAIL_DEPTH => VmError::CallDepth(crate::state::MAX_CALL_FRAMES),
        runtime::FAIL_JUMP => VmError::BadJump,
        _ => VmError::Budget(st.env.budget),
    }
}
