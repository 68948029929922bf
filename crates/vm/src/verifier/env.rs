//! The verifier's environment (`struct bpf_verifier_env`): the program, the current
//! path's state, the stack of paths still to explore, the explored states, the
//! per-instruction facts and the log. Shared by every room of the verifier.

use skiff_isa::Insn;
use skiff_maps::{MapAttr, MapType};

use super::log::Log;
use super::prune::Explored;
use super::state::{MapRef, Reg, VerifierState};
use super::{InsnAux, MemKind, VerifyOptions};

/// A refusal on its way out: the message lines are already in `Env::err_lines`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    pub errno: i32,
}

pub type VResult<T> = Result<T, Fail>;

/// Per-instruction facts used while verifying (beyond the public `InsnAux`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AuxInternal {
    /// `insn_aux_data[].ptr_type` seen so far, as the kernel's `save_aux_ptr_type`.
    pub ptr_ctx: Option<bool>,
    /// map_ptr_state: the map a helper call's map argument was (None: none seen),
    /// `poisoned` once two paths disagree.
    pub map: Option<MapRef>,
    pub map_poisoned: bool,
    /// A helper call checked against its prototype: what the call may change
    /// and the helper it calls, for the JIT (`Verified::helper_sites`).
    pub helper: Option<super::HelperSite>,
    /// bpf_loop: its callback and flags on the paths seen so far
    /// (`bpf_loop_inline_state`).
    pub loop_inline: LoopInline,
    /// A state pruning point (`mark_prune_point`).
    pub prune_point: bool,
    /// A jump target reached by a back-edge (loop head).
    pub loop_head: bool,
    /// Registers live before this instruction (`compute_live_registers`), bit i = ri.
    pub live_regs: u16,
}

/// kernel/bpf/verifier.c: struct bpf_loop_inline_state. A bpf_loop call is
/// fit to be inlined when every path gives it flags 0 and the same callback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoopInline {
    #[default]
    Unseen,
    /// The callback's first instruction.
    Fit(usize),
    Unfit,
}

/// One path waiting to be explored (`struct bpf_verifier_stack_elem`).
pub struct Pending {
    pub st: VerifierState,
    pub insn_idx: usize,
    pub prev_insn_idx: usize,
}

/// A subprogram (`struct bpf_subprog_info`).
#[derive(Clone, Copy, Debug)]
pub struct Subprog {
    pub start: usize,
    /// Deepest stack use seen, in bytes (`stack_depth`).
    pub stack_depth: i32,
}

pub struct Env<'a> {
    pub opts: &'a VerifyOptions<'a>,
    pub insns: &'a [Insn],
    pub aux: Vec<InsnAux>,
    pub iaux: Vec<AuxInternal>,
    pub subprogs: Vec<Subprog>,
    pub cur: VerifierState,
    pub pending: Vec<Pending>,
    pub explored: Explored,
    pub log: Log,
    pub err_lines: Vec<String>,
    pub insn_idx: usize,
    pub prev_insn_idx: usize,
    pub insn_processed: u64,
    /// Some path stores a pointer to the stack (a spill).
    pub stack_pointers: bool,
    pub jmps_processed: u64,
    pub prev_insn_processed: u64,
    pub prev_jmps_processed: u64,
    /// `id_gen`.
    pub id_gen: u32,
    /// `env->prog->aux->max_pkt_offset`.
    pub max_pkt_offset: u32,
    /// A jump-history record was pushed for the current instruction
    /// (`env->cur_hist_ent`).
    pub hist_pushed_here: bool,
}

impl<'a> Env<'a> {
    /// `verbose()` of an error line: goes to the log and to the refusal's message.
    pub fn error(&mut self, errno: i32, line: impl Into<String>) -> Fail {
        let line = line.into();
        self.log.line(line.clone());
        self.err_lines.push(line);
        Fail { errno }
    }

    /// A second (or later) line of the same refusal.
    pub fn error_more(&mut self, line: impl Into<String>) {
        let line = line.into();
        self.log.line(line.clone());
        self.err_lines.push(line);
    }

    pub fn eacces<T>(&mut self, line: impl Into<String>) -> VResult<T> {
        Err(self.error(super::EACCES, line))
    }

    pub fn einval<T>(&mut self, line: impl Into<String>) -> VResult<T> {
        Err(self.error(super::EINVAL, line))
    }

    pub fn insn(&self) -> Insn {
        self.insns.get(self.insn_idx).copied().unwrap_or_default()
    }

    pub fn new_id(&mut self) -> u32 {
        self.id_gen = self.id_gen.wrapping_add(1);
        self.id_gen
    }

    pub fn reg(&self, r: usize) -> Reg {
        self.cur
            .cur()
            .regs
            .get(r)
            .copied()
            .unwrap_or_else(Reg::not_init)
    }

    pub fn set_reg(&mut self, r: usize, reg: Reg) {
        if let Some(slot) = self.cur.cur_mut().regs.get_mut(r) {
            *slot = reg;
        }
    }

    /// The attributes of the map a register refers to (inner template for map-in-map).
    pub fn map_attr(&self, m: MapRef) -> Option<&'a MapAttr> {
        let map = self.opts.maps.get(m.index as usize)?;
        let attr = map.attr();
        if m.inner {
            attr.inner.as_deref()
        } else {
            Some(attr)
        }
    }

    pub fn map_type(&self, m: MapRef) -> Option<MapType> {
        self.map_attr(m).map(|a| a.map_type)
    }

    /// A read-only map for the program (`BPF_F_RDONLY_PROG`, frozen .rodata).
    pub fn map_rdonly_prog(&self, m: MapRef) -> bool {
        const BPF_F_RDONLY_PROG: u32 = 1 << 7;
        self.map_attr(m)
            .is_some_and(|a| a.map_flags & BPF_F_RDONLY_PROG != 0)
            || (!m.inner
                && self
                    .opts
                    .maps
                    .get(m.index as usize)
                    .is_some_and(|map| map.is_frozen() && map.attr().name.ends_with(".rodata")))
    }

    /// A write-only map for the program (`BPF_F_WRONLY_PROG`): kernel/bpf/verifier.c
    /// check_map_access_type refuses reads.
    pub fn map_wronly_prog(&self, m: MapRef) -> bool {
        const BPF_F_WRONLY_PROG: u32 = 1 << 8;
        self.map_attr(m)
            .is_some_and(|a| a.map_flags & BPF_F_WRONLY_PROG != 0)
    }

    /// Records the pointer kind of a memory instruction (`save_aux_ptr_type`): the
    /// kernel refuses one instruction used with ctx and another kind.
    pub fn save_mem_kind(&mut self, kind: MemKind) -> VResult<()> {
        let idx = self.insn_idx;
        let is_ctx = kind == MemKind::Ctx;
        let prev = self.iaux.get(idx).and_then(|a| a.ptr_ctx);
        if let Some(prev_ctx) = prev {
            if prev_ctx != is_ctx {
                return self.eacces("same insn cannot be used with different pointers");
            }
        }
        if let Some(a) = self.iaux.get_mut(idx) {
            a.ptr_ctx = Some(is_ctx);
        }
        if let Some(a) = self.aux.get_mut(idx) {
            // Different non-ctx kinds may meet here (the kernel does not tell them
            // apart either): the first is kept; each was proved in bounds.
            if a.mem.is_none() {
                a.mem = Some(kind);
            }
        }
        Ok(())
    }
}
