//! Helper calls: through the runtime's helper table (`rt_helper`), array
//! lookups inlined, and the calls the verifier proved emitted without the
//! helper table's run-time checks: bpf_tail_call through the PROG_ARRAY slot (the kernel's JIT
//! jumps through the slot's program; arch/x86/net/bpf_jit_comp.c:
//! emit_bpf_tail_call_indirect), and map lookups, updates and deletes on a
//! constant map as a direct call into the map (the kernel's JIT calls the
//! map's `map_lookup_elem` op, rewritten by do_misc_fixups: no helper
//! dispatch, no argument checks at run time); every other call at a verified
//! site goes to the function the verifier resolved, or to the helper's map
//! op with its constant map (`resolved_call`).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{AbiParam, InstBuilder, SigRef};

use skiff_isa::{Insn, BPF_X};
use skiff_maps::MapType;

use super::runtime::{self, off};
use super::translate::FnTranslator;
use crate::helpers::{neg, BPF_MAX_LOOPS, E2BIG};
use crate::mem::{Tag, FIRST_MAP, MAX_TAGS, SCALAR};
use crate::program::Program;
use crate::verifier::{
    HelperSite, InsnAux, BPF_FUNC_LOOP, BPF_FUNC_MAP_DELETE_ELEM, BPF_FUNC_MAP_LOOKUP_ELEM,
    BPF_FUNC_MAP_UPDATE_ELEM,
};

/// A map helper call compiled as a direct call into its map.
#[derive(Clone, Copy, Debug)]
pub(super) struct DirectMapCall {
    pub pc: usize,
    /// Index into `Program::maps`.
    pub map: usize,
    pub helper: i32,
}

impl DirectMapCall {
    /// r0's tag after the call: the map's storage for a lookup (what
    /// `RunState::ret_map_value` gives at run time), else a scalar.
    pub fn ret_tag(&self) -> Tag {
        if self.helper == BPF_FUNC_MAP_LOOKUP_ELEM {
            FIRST_MAP + self.map as Tag
        } else {
            SCALAR
        }
    }
}

/// The map helper calls in `start..end` the verifier checked with a constant
/// map (`sites`, `aux`) that go straight to the map: every one whose helper
/// does nothing but the map's lookup, update or delete (map-in-map lookups
/// and the maps a lookup refuses keep the helper), but array lookups already
/// inlined (`inlined`, by pc).
pub(super) fn direct_map_calls(
    prog: &Program,
    (start, end): (usize, usize),
    aux: Option<&[InsnAux]>,
    sites: &[HelperSite],
    inlined: &[(usize, usize)],
) -> Vec<DirectMapCall> {
    let Some(aux) = aux else {
        return Vec::new();
    };
    let of_site = |s: &HelperSite| -> Option<DirectMapCall> {
        let insn = *prog.code.get(s.pc)?;
        let helper = insn.imm;
        let is_map_call = insn.code == skiff_isa::CALL
            && insn.src == 0
            && (BPF_FUNC_MAP_LOOKUP_ELEM..=BPF_FUNC_MAP_DELETE_ELEM).contains(&helper);
        if !is_map_call || inlined.iter().any(|&(p, _)| p == s.pc) {
            return None;
        }
        let map = const_map(prog, aux, s.pc)?;
        // Beyond the static tag table the run gives the map a tag of its own.
        if map >= MAX_TAGS - FIRST_MAP as usize {
            return None;
        }
        let ty = prog.maps.get(map)?.attr().map_type;
        let lookup_is_plain = !crate::helpers::lookup_refused(ty);
        (helper != BPF_FUNC_MAP_LOOKUP_ELEM || lookup_is_plain).then_some(DirectMapCall {
            pc: s.pc,
            map,
            helper,
        })
    };
    sites
        .iter()
        .filter(|s| (start..end).contains(&s.pc))
        .filter_map(of_site)
        .collect()
}

/// The constant map the verifier proved the map argument of the helper call
/// at `pc` to be, as an index into `Program::maps`; none for a map-in-map (an
/// inner map's calls carry the outer map's index, MemKind::MapValue: the call
/// may be on any of its inner maps).
pub(super) fn const_map(prog: &Program, aux: &[InsnAux], pc: usize) -> Option<usize> {
    let m = aux.get(pc)?.const_map?;
    let map = prog.map_indices.iter().position(|&x| x == m)?;
    let ty = prog.maps.get(map)?.attr().map_type;
    (!matches!(ty, MapType::ArrayOfMaps | MapType::HashOfMaps)).then_some(map)
}

/// r0's tag after each helper call in `start..end` that `resolved_call`
/// compiles and whose prototype returns a scalar.
pub(super) fn resolved_ret_tags<'a>(
    prog: &'a Program,
    (start, end): (usize, usize),
    sites: &'a [HelperSite],
) -> impl Iterator<Item = (usize, Tag)> + 'a {
    sites
        .iter()
        .filter(move |s| (start..end).contains(&s.pc) && s.ret_scalar && s.func.is_some())
        .filter(|s| prog.code.get(s.pc).is_some_and(|i| i.code & BPF_X == 0))
        .map(|s| (s.pc, SCALAR))
}

impl FnTranslator<'_> {
    /// A map helper call of `direct_map_calls`: the map's address a constant,
    /// r2 (and r3, r4 for an update) passed as they are.
    pub(super) fn direct_map_call(&mut self, pc: usize) -> bool {
        let Some(d) = self.direct_map(pc) else {
            return false;
        };
        let addr = std::sync::Arc::as_ptr(&self.prog().maps[d.map]) as usize;
        let mut args = vec![self.st, self.b.ins().iconst(I64, addr as i64), self.reg(2)];
        let f = match d.helper {
            BPF_FUNC_MAP_LOOKUP_ELEM => runtime::rt_map_lookup as *const () as usize,
            BPF_FUNC_MAP_UPDATE_ELEM => {
                args.push(self.reg(3));
                args.push(self.reg(4));
                runtime::rt_map_update as *const () as usize
            }
            _ => runtime::rt_map_delete as *const () as usize,
        };
        let sig = self.sig_with(args.len());
        let r0 = self.call_rt(sig, f, &args);
        self.set(0, r0);
        true
    }

    /// A runtime function's signature: `params` 64-bit arguments, one result.
    pub(super) fn sig_with(&mut self, params: usize) -> SigRef {
        let mut sig = self.b.func.dfg.signatures[self.sig_helper].clone();
        sig.params = vec![AbiParam::new(I64); params];
        self.b.import_signature(sig)
    }

    /// bpf_map_lookup_elem on an array map the program names (r1 a known
    /// handle): the address computed inline, as array_map_gen_lookup does.
    fn inline_array_lookup(&mut self, pc: usize) -> bool {
        let Some(&(_, i)) = self.inlined.iter().find(|(p, _)| *p == pc) else {
            return false;
        };
        let Some(Some(l)) = self.arrays.get(i).copied() else {
            return false;
        };
        // The key: 4 bytes at r2. At a site the verifier checked, r2 was
        // proved readable for the key (ARG_PTR_TO_MAP_KEY), which the kernel's
        // inlined lookup trusts; elsewhere checked like any load (the
        // helper's own check).
        let idx = if self.site(pc).is_some() {
            let key = self.reg(2);
            let k = self.b.ins().load(I32, super::translate::MF, key, 0);
            self.b.ins().uextend(I64, k)
        } else {
            self.mem_only = true;
            let (idx, _) = self.load(pc, 2, 0, 4, false);
            self.mem_only = false;
            idx
        };
        let in_range = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, idx, l.max_entries as i64);
        let cpu = self.st_load(off::CPU);
        let cpu_ok = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, cpu, l.possible_cpus as i64);
        let ok = self.b.ins().band(in_range, cpu_ok);
        let off_i = self.b.ins().imul_imm_s(idx, l.index_stride as i64);
        let base = self.b.ins().iconst(I64, l.base as i64);
        let mut p = self.b.ins().iadd(base, off_i);
        if l.percpu {
            let off_c = self.b.ins().imul_imm_s(cpu, l.cpu_stride as i64);
            p = self.b.ins().iadd(p, off_c);
        }
        let zero = self.b.ins().iconst(I64, 0);
        let r0 = self.b.ins().select(ok, p, zero);
        self.set(0, r0);
        true
    }

    /// A helper call at a site the verifier checked, straight to the
    /// function it resolved (`rt_call`), or, when r1 is a constant map and
    /// the helper has a map op, to the op with the map's address (`rt_map_op`:
    /// no search of the run's maps by handle). Returns false when the site
    /// is not one.
    fn resolved_call(&mut self, pc: usize, insn: Insn) -> bool {
        let Some(site) = self.site(pc).filter(|_| insn.code & BPF_X == 0) else {
            return false;
        };
        let Some(func) = site.func else {
            return false;
        };
        let map = self.aux.and_then(|aux| const_map(self.prog(), aux, pc));
        self.store_arg_tags();
        let mut args = vec![self.st];
        let (f, sig) = match (site.map_op, map) {
            (Some(op), Some(m)) => {
                let addr = std::sync::Arc::as_ptr(&self.prog().maps[m]) as usize;
                args.push(self.b.ins().iconst(I64, addr as i64));
                self.map_ops += 1;
                (op.native as usize, self.sig_map_op)
            }
            _ => {
                args.push(self.b.ins().iconst(I64, func as usize as i64));
                args.push(self.reg(1));
                (runtime::rt_call as *const () as usize, self.sig_helper)
            }
        };
        for r in 2..=5 {
            args.push(self.reg(r));
        }
        let pc_site = runtime::pc_site(pc, (site.changes_pkt, site.changes_ctx));
        args.push(self.b.ins().iconst(I64, pc_site as i64));
        self.spill_budget();
        let r0 = self.call_rt(sig, f, &args);
        self.reload_state_after(site.changes_pkt);
        self.set(0, r0);
        // (resolved_ret_tags told the tag analysis the same.)
        let t0 = if site.ret_scalar {
            self.b.ins().iconst(I64, SCALAR as i64)
        } else {
            self.st_load(off::RET_TAG)
        };
        self.set_tag(0, t0);
        self.check_status(r0);
        self.resolved += 1;
        true
    }

    /// bpf_loop at a call site the verifier found fit (flags 0 and one
    /// callback on every path: `InsnAux::loop_callback`): the loop in native
    /// code, calling the callback's function with r1 = the iteration and
    /// r2 = r3's context, until it returns nonzero, as the kernel's
    /// inline_bpf_loop rewrites it (r0: the iterations made; past
    /// BPF_MAX_LOOPS its 32-bit -E2BIG). r1 is taken as the helper's u32.
    fn inline_bpf_loop(&mut self, pc: usize, insn: Insn) -> bool {
        if insn.code & BPF_X != 0 || insn.imm != BPF_FUNC_LOOP || self.site(pc).is_none() {
            return false;
        }
        let Some(cb) = self
            .aux
            .and_then(|a| a.get(pc))
            .and_then(|a| a.loop_callback)
        else {
            return false;
        };
        let Some(fr) = self.callee(cb) else {
            return false;
        };
        self.inlined_loops += 1;
        let r1 = self.reg(1);
        let nr32 = self.b.ins().ireduce(I32, r1);
        let nr = self.b.ins().uextend(I64, nr32);
        let ctx = self.reg(3);
        // The callback's r2 carries r3's tag; r1, r3-r5 are scalars.
        let (t3, v3) = self.tag(3);
        let tags = if t3 == super::analysis::DYN {
            self.b.ins().ishl_imm_u(v3, 8)
        } else {
            self.b.ins().iconst(I64, (t3 as i64) << 8)
        };
        let (head, body, done) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        let i = self.b.append_block_param(head, I64);
        let r0 = self.b.append_block_param(done, I64);
        let too_many =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThan, nr, BPF_MAX_LOOPS as i64);
        let e2big = self.b.ins().iconst(I64, neg(E2BIG) as u32 as i64);
        let zero = self.b.ins().iconst(I64, 0);
        self.b
            .ins()
            .brif(too_many, done, &[e2big.into()], head, &[zero.into()]);

        self.b.switch_to_block(head);
        let more = self.b.ins().icmp(IntCC::UnsignedLessThan, i, nr);
        self.b.ins().brif(more, body, &[], done, &[i.into()]);

        self.b.switch_to_block(body);
        let regs = [i, ctx, zero, zero, zero];
        let ret = self.call_frame(pc, fr, regs, Some(tags));
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b
            .ins()
            .brif(ret, done, &[next.into()], head, &[next.into()]);

        self.b.switch_to_block(done);
        self.set(0, r0);
        let t0 = self.b.ins().iconst(I64, SCALAR as i64);
        self.set_tag(0, t0);
        true
    }

    pub(super) fn helper_call(&mut self, pc: usize, insn: Insn) {
        if self.inline_array_lookup(pc)
            || self.inline_bpf_loop(pc, insn)
            || self.direct_tail_call(pc, insn)
            || self.direct_map_call(pc)
            || self.resolved_call(pc, insn)
        {
            return;
        }
        self.store_arg_tags();
        let id = if insn.code & BPF_X != 0 {
            let r = self.reg(insn.dst);
            let r32 = self.b.ins().ireduce(I32, r);
            self.b.ins().uextend(I64, r32)
        } else {
            self.b.ins().iconst(I64, insn.imm as u32 as i64)
        };
        let mut args = vec![self.st, id];
        for r in 1..=5 {
            args.push(self.reg(r));
        }
        let p = self.b.ins().iconst(I64, pc as i64);
        args.push(p);
        self.spill_budget();
        let r0 = self.call_rt(
            self.sig_helper,
            runtime::rt_helper as *const () as usize,
            &args,
        );
        // A checked call that does not change packet data leaves the bounds.
        let moved = insn.code & BPF_X != 0 || self.site(pc).is_none_or(|s| s.changes_pkt);
        self.reload_state_after(moved);
        self.set(0, r0);
        let t0 = self.st_load(off::RET_TAG);
        self.set_tag(0, t0);
        self.check_status(r0);
    }
}
