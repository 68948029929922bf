//! Calls the verifier proved, emitted without the helper table's run-time
//! checks: bpf_tail_call through the PROG_ARRAY slot (the kernel's JIT
//! jumps through the slot's program; arch/x86/net/bpf_jit_comp.c:
//! emit_bpf_tail_call_indirect).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::InstBuilder;

use skiff_isa::{Insn, BPF_X};
use skiff_maps::{Map, MapType};

use super::runtime;
use super::translate::FnTranslator;
use crate::helpers::{neg, E2BIG};
use crate::mem::SCALAR;

/// Kernel helper id of bpf_tail_call.
const BPF_FUNC_TAIL_CALL: i32 = 12;

impl FnTranslator<'_> {
    /// The PROG_ARRAY of the bpf_tail_call at `pc`, when the verifier checked
    /// the call (r1 the context) and r2 was the same map on every path.
    fn tail_call_map(&self, pc: usize, insn: Insn) -> Option<&Map> {
        if insn.code & BPF_X != 0 || insn.imm != BPF_FUNC_TAIL_CALL {
            return None;
        }
        self.site(pc)?;
        let m = self.aux?.get(pc)?.const_map?;
        let prog = self.prog();
        let i = prog.map_indices.iter().position(|&x| x == m)?;
        let map = prog.maps.get(i)?;
        (map.attr().map_type == MapType::ProgArray).then_some(&**map)
    }

    /// bpf_tail_call at a verified site: index < max_entries checked here
    /// (max_entries is fixed at map creation), the count and the slot by
    /// `rt_tail_call`, which enters the target's native code. Returns false
    /// when the site is not one (the call goes through the helper table).
    pub(super) fn direct_tail_call(&mut self, pc: usize, insn: Insn) -> bool {
        let Some(map) = self.tail_call_map(pc, insn) else {
            return false;
        };
        let (addr, max) = (map as *const Map as usize, map.attr().max_entries);
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
        let mut args = vec![self.st, self.b.ins().iconst(I64, addr as i64)];
        for r in 1..=5 {
            args.push(self.reg(r));
        }
        args.push(self.b.ins().iconst(I64, pc as i64));
        self.spill_budget();
        let sig = self.sig_helper;
        let v = self.call_rt(sig, runtime::rt_tail_call as *const () as usize, &args);
        self.reload_state();
        self.check_status(v);
        self.b.ins().jump(join, &[v.into()]);

        self.b.switch_to_block(join);
        self.set(0, r0);
        let t0 = self.b.ins().iconst(I64, SCALAR as i64);
        self.set_tag(0, t0);
        true
    }
}
