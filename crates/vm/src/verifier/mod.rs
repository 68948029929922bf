//! The verifier, in the kernel's model (kernel/bpf/verifier.c): it walks every path
//! of a program with abstract register and stack state, refuses what the kernel
//! refuses (errno and message in the kernel's words), and hands the engines what it
//! proved about each instruction (`InsnAux`, the kernel's `bpf_insn_aux_data`).
//!
//! Rooms: `tnum` and `scalar` (value tracking), the state and exploration
//! (registers, stack slots, paths, pruning), memory access per pointer type,
//! helper calls against their prototypes (`crate::proto`), ctx access rules per
//! program type, and the availability of features by kernel version.

mod alu;
pub mod availability;
mod branch;
mod call;
pub(crate) use call::{
    BPF_FUNC_LOOP, BPF_FUNC_MAP_DELETE_ELEM, BPF_FUNC_MAP_LOOKUP_ELEM, BPF_FUNC_MAP_UPDATE_ELEM,
    BPF_FUNC_TAIL_CALL,
};
mod cfg;
pub mod ctx;
mod do_check;
mod env;
mod liveness;
mod log;
mod mem;
mod precision;
mod prune;
mod refs;
pub mod report;
pub mod scalar;
mod scalar_ops;
mod stack;
mod state;
mod subprog;
pub mod tnum;

use std::sync::Arc;

use skiff_isa::Insn;
use skiff_maps::Map;
use skiff_object::ProgType;

use crate::HelperTable;

/// errno values the kernel's verifier returns.
pub const EACCES: i32 = 13;
pub const EINVAL: i32 = 22;
pub const E2BIG: i32 = 7;
pub const ENOTSUPP: i32 = 524;
pub const EFAULT: i32 = 14;
pub const EPERM: i32 = 1;

/// The kernel releases `skiff prog verify --kernel` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelVersion {
    V5_15,
    V6_1,
    V6_6,
    V6_18,
}

impl KernelVersion {
    /// The running kernel skiff follows.
    pub const LATEST: KernelVersion = KernelVersion::V6_18;

    pub fn parse(s: &str) -> Option<KernelVersion> {
        match s {
            "5.15" => Some(KernelVersion::V5_15),
            "6.1" => Some(KernelVersion::V6_1),
            "6.6" => Some(KernelVersion::V6_6),
            "6.18" => Some(KernelVersion::V6_18),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KernelVersion::V5_15 => "5.15",
            KernelVersion::V6_1 => "6.1",
            KernelVersion::V6_6 => "6.6",
            KernelVersion::V6_18 => "6.18",
        }
    }
}

/// What a verification is run against.
#[derive(Clone)]
pub struct VerifyOptions<'a> {
    pub prog_type: ProgType,
    /// The program's name (for messages).
    pub name: &'a str,
    /// The object's maps by index (ld_imm64 BPF_PSEUDO_MAP_IDX imm), as
    /// `Program::load` takes them.
    pub maps: &'a [Arc<Map>],
    pub helpers: &'a HelperTable,
    /// Root as `bpftool prog load` runs (CAP_SYS_ADMIN: bpf_capable, perfmon,
    /// bypass_spec_v1/v4, allow_ptr_leaks); false: unprivileged.
    pub privileged: bool,
    /// The kernel whose rules and feature set apply.
    pub kernel: KernelVersion,
    /// GPL-compatible license (gpl_only helpers).
    pub gpl: bool,
    /// Source lines by instruction, from BTF line info (messages name them).
    pub lines: Option<&'a [SourceLine]>,
}

/// One BTF line-info record (struct bpf_line_info), resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    /// First instruction the line covers.
    pub insn: usize,
    pub file: String,
    pub line: u32,
    pub col: u32,
    /// The source text of the line, as the verifier log prints it (`; text @ file:line`).
    pub text: String,
}

impl From<&skiff_object::LineInfo> for SourceLine {
    fn from(l: &skiff_object::LineInfo) -> SourceLine {
        SourceLine {
            insn: l.insn,
            file: l.file.clone(),
            line: l.line,
            col: l.col,
            text: l.text.clone(),
        }
    }
}

/// A program's BTF line info as the verifier takes it (`VerifyOptions::lines`).
pub fn source_lines(prog: &skiff_object::Program) -> Vec<SourceLine> {
    prog.lines.iter().map(SourceLine::from).collect()
}

/// A refusal, as the kernel reports it: errno from BPF_PROG_LOAD and the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (insn {insn}, errno {errno})")]
pub struct VerifierError {
    pub errno: i32,
    /// The instruction the verifier stopped at.
    pub insn: usize,
    /// Its source line, from BTF line info.
    pub line: Option<SourceLine>,
    /// The kernel's message, e.g. `invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)`.
    pub message: String,
    /// The verifier's last log lines (level 1), in the kernel's words.
    pub log: String,
}

/// What the pointer of a memory instruction pointed to, on every path that
/// reached it (the kernel's `insn_aux_data[i].ptr_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// PTR_TO_CTX: the access goes through the context's field rewriting.
    Ctx,
    /// PTR_TO_STACK, within the frame.
    Stack,
    /// PTR_TO_PACKET / PTR_TO_PACKET_META, within the range a comparison with
    /// data_end proved.
    Packet,
    /// PTR_TO_MAP_VALUE of `map` (index into `VerifyOptions::maps`; for a value of
    /// an inner map of a map-in-map, the outer map's index), within the value.
    MapValue { map: usize },
    /// PTR_TO_MAP_KEY (callbacks of for_each_map_elem).
    MapKey,
    /// PTR_TO_MEM: helper-returned memory (ringbuf records, dynptr slices).
    Mem,
}

/// What the verifier proved about one instruction (`struct bpf_insn_aux_data`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsnAux {
    /// Reached on some path (dead code is not).
    pub seen: bool,
    /// Load/store/atomic: the pointer kind on every path. None when the
    /// instruction is not a memory access or was never reached. Every access of a
    /// verified program is proved in bounds for this kind.
    pub mem: Option<MemKind>,
    /// A jump back-edge whose loop the verifier proved bounded (the engines need
    /// not charge an instruction budget on it).
    pub bounded_loop: bool,
    /// A call to a helper whose map argument was the same constant map on every
    /// path: its index in `VerifyOptions::maps` (map_lookup_elem inlining).
    pub const_map: Option<usize>,
    /// bpf_loop with flags 0 and the same callback on every path: the
    /// callback's first instruction (the kernel inlines the loop:
    /// inline_bpf_loop).
    pub loop_callback: Option<usize>,
}

/// A helper call the verifier checked on every path that reaches it: its
/// arguments fit the prototype, and what the call may change (the prototype's
/// `invalidates`, decided here so the JIT need not look the helper up).
#[derive(Clone, Copy, Debug, Default)]
pub struct HelperSite {
    pub pc: usize,
    /// The packet bounds must be reloaded (bpf_helper_changes_pkt_data).
    pub changes_pkt: bool,
    /// Context fields may have changed (the helper was given the context).
    pub changes_ctx: bool,
    /// r0 is a scalar after the call (RET_INTEGER, RET_VOID).
    pub ret_scalar: bool,
    /// The helper's function in the table the program was verified against,
    /// and its map op: the call resolved once, at load, as the kernel's
    /// do_misc_fixups resolves `insn->imm` to the function (the JIT calls it
    /// straight, with no table lookup per call).
    pub func: Option<crate::HelperFn>,
    pub map_op: Option<crate::MapOp>,
}

impl HelperSite {
    /// A site that calls `def` (pc set when the walk is done).
    pub(crate) fn of(def: &crate::HelperDef) -> HelperSite {
        let (changes_pkt, changes_ctx) = def.proto.invalidates();
        HelperSite {
            pc: 0,
            changes_pkt,
            changes_ctx,
            ret_scalar: matches!(
                def.proto.ret,
                crate::RetType::Integer | crate::RetType::Void
            ),
            func: Some(def.func),
            map_op: def.map_op,
        }
    }
}

/// A program the verifier accepted, and what it proved.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// One per instruction slot of the program.
    pub aux: Vec<InsnAux>,
    /// Each reached helper call, by ascending pc.
    pub helper_sites: Vec<HelperSite>,
    /// The kernel's `insn_processed` (the 1M complexity limit counts these).
    pub insns_processed: u64,
    /// The verifier log (level 1 on success: the summary line).
    pub log: String,
    /// No path of the program stores a pointer to the stack: every stack
    /// slot it reads holds a scalar (its own stores, a helper's bytes, or
    /// what the verifier lets it read uninitialised as an unknown scalar),
    /// so the JIT neither keeps nor reads the pointer tags of stack slots.
    /// (False, the safe side, in proofs made by hand.)
    pub stack_scalars_only: bool,
}

/// Verifies `insns` (a whole linked program, in fd_array form, subprograms
/// appended) as `bpf(BPF_PROG_LOAD)` would (kernel/bpf/verifier.c: bpf_check).
#[allow(clippy::result_large_err)] // the refusal carries the log, as the interface says
pub fn verify(insns: &[Insn], opts: &VerifyOptions) -> Result<Verified, VerifierError> {
    // Writes to r10 are the walk's to refuse, in the kernel's words (check_reg_arg).
    let probe: Vec<Insn> = insns
        .iter()
        .map(|i| {
            let writes = matches!(
                i.class(),
                skiff_isa::BPF_ALU | skiff_isa::BPF_ALU64 | skiff_isa::BPF_LDX
            ) || i.is_ld_imm64();
            if writes && i.dst == 10 {
                Insn { dst: 0, ..*i }
            } else {
                *i
            }
        })
        .collect();
    skiff_isa::validate(&probe).map_err(|e| VerifierError {
        errno: EINVAL,
        insn: e.index,
        line: opts.lines.and_then(|ls| source_line(ls, e.index)),
        message: e.message.clone(),
        log: e.to_string(),
    })?;
    if !opts.privileged {
        // kernel/bpf/syscall.c: bpf_prog_load: XDP and TC programs need CAP_BPF and
        // CAP_NET_ADMIN; without them the load fails before the verifier runs.
        return Err(VerifierError {
            errno: EPERM,
            insn: 0,
            line: None,
            message: "not supported: unprivileged loading (XDP and TC programs need CAP_BPF and CAP_NET_ADMIN; the kernel refuses with EPERM)".into(),
            log: String::new(),
        });
    }
    let n = insns.len();
    let mut env = env::Env {
        opts,
        insns,
        aux: vec![InsnAux::default(); n],
        iaux: vec![env::AuxInternal::default(); n],
        subprogs: Vec::new(),
        cur: state::VerifierState::new(Vec::new()),
        pending: Vec::new(),
        explored: prune::Explored::new(n),
        log: log::Log::default(),
        err_lines: Vec::new(),
        insn_idx: 0,
        prev_insn_idx: 0,
        insn_processed: 0,
        stack_pointers: false,
        jmps_processed: 0,
        prev_insn_processed: 0,
        prev_jmps_processed: 0,
        id_gen: 0,
        max_pkt_offset: 0,
        hist_pushed_here: false,
    };
    let result = run(&mut env);
    match result {
        Ok(()) => Ok(finish(env)),
        Err(f) => Err(refusal(env, f)),
    }
}

fn run(env: &mut env::Env) -> env::VResult<()> {
    env.check_cfg()?;
    env.compute_live_registers();
    env.init_state();
    env.do_check()?;
    env.check_max_stack_depth()
}

/// The summary line the kernel prints on success (print_verification_stats).
fn stats_line(env: &env::Env) -> String {
    format!(
        "processed {} insns (limit 1000000) max_states_per_insn {} total_states {} peak_states {} mark_read 0",
        env.insn_processed,
        env.explored.max_per_insn(),
        env.explored.arena.len(),
        env.explored.peak
    )
}

fn finish(env: env::Env) -> Verified {
    let mut aux = env.aux.clone();
    for (a, ia) in aux.iter_mut().zip(&env.iaux) {
        // (An inner map of a map-in-map is no constant map: any inner map.)
        a.const_map = ia.map.filter(|m| !m.inner).map(|m| m.index as usize);
        if let env::LoopInline::Fit(c) = ia.loop_inline {
            a.loop_callback = Some(c);
        }
        if !a.seen {
            a.bounded_loop = false;
        }
    }
    let helper_sites = env
        .iaux
        .iter()
        .enumerate()
        .filter_map(|(pc, ia)| ia.helper.map(|site| HelperSite { pc, ..site }))
        .collect();
    Verified {
        aux,
        helper_sites,
        insns_processed: env.insn_processed,
        stack_scalars_only: !env.stack_pointers,
        log: stats_line(&env),
    }
}

fn refusal(env: env::Env, f: env::Fail) -> VerifierError {
    let mut log = env.log.render(env.insns, env.opts.lines);
    log.push_str(&stats_line(&env));
    log.push('\n');
    VerifierError {
        errno: f.errno,
        insn: env.insn_idx,
        line: env.opts.lines.and_then(|ls| source_line(ls, env.insn_idx)),
        message: env.err_lines.join("\n"),
        log,
    }
}

/// The BTF line record covering instruction `idx`.
fn source_line(lines: &[SourceLine], idx: usize) -> Option<SourceLine> {
    log::linfo_index(lines, idx)
        .and_then(|i| lines.get(i))
        .cloned()
}
