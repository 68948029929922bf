//! eBPF instructions to Cranelift IR, one function per eBPF function. Registers
//! are Cranelift variables (SSA is built by cranelift-frontend); every jump
//! target starts a block. Semantics as the interpreter (RFC 9669).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{
    AbiParam, Block, FuncRef, InstBuilder, MemFlagsData, SigRef, Signature, Type, Value,
};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

use skiff_isa::*;

use super::analysis::{self, size_of, Tags, DYN};
use super::runtime::{self, off, FAIL_BUDGET, FAIL_DEPTH, FAIL_JUMP, RETURN_NOW, RUN};
use super::{JitError, JitFn};
use crate::mem::{Tag, CTX, FIRST_MAP, SCALAR, STACK};
use crate::program::{Program, FUNC_TAG};
use crate::state::MAX_CALL_FRAMES;
use crate::verifier::{HelperSite, InsnAux, MemKind};
use skiff_object::ProgType;

fn err(pc: usize, msg: impl Into<String>) -> JitError {
    JitError {
        pc,
        msg: msg.into(),
    }
}

/// The eBPF functions of a program: entry instructions, sorted. The main program
/// starts at 0; bpf-to-bpf call targets and callback addresses start the others.
fn function_entries(code: &[Insn]) -> Result<Vec<usize>, JitError> {
    let mut entries = vec![0usize];
    let mut pc = 0;
    while pc < code.len() {
        let insn = code[pc];
        if insn.code == CALL && insn.src == BPF_PSEUDO_CALL {
            let t = pc as i64 + 1 + insn.imm as i64;
            if t < 0 || t as usize >= code.len() {
                return Err(err(pc, format!("call to insn {t}, outside the program")));
            }
            entries.push(t as usize);
        }
        if insn.code == LD_IMM64 {
            let hi = code.get(pc + 1).map(|i| i.imm as u32 as u64).unwrap_or(0);
            let v = insn.imm as u32 as u64 | hi << 32;
            if v & !0xffff_ffff == FUNC_TAG && ((v & 0xffff_ffff) as usize) < code.len() {
                entries.push((v & 0xffff_ffff) as usize);
            }
            pc += 2;
            continue;
        }
        pc += 1;
    }
    entries.sort_unstable();
    entries.dedup();
    Ok(entries)
}

fn native_signature(module: &JITModule) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// What translating emitted, over all functions.
#[derive(Default)]
pub(super) struct Counts {
    pub code_size: usize,
    pub checks: usize,
    pub charges: usize,
    pub inlined: usize,
    /// Context field accesses compiled as direct loads and stores.
    pub direct: usize,
    /// Map helper calls compiled as direct calls into the map.
    pub direct_maps: usize,
    /// Helper calls to the function the verifier resolved; of them, to a
    /// map op with a constant map.
    pub resolved: usize,
    pub map_ops: usize,
    /// Context slots (4-byte offset / 4) native code reads from the shadow.
    pub shadow_slots: u64,
    /// bpf_loop calls compiled as native loops.
    pub inlined_loops: usize,
}

/// The functions of a compiled program, by entry instruction.
type Funcs = Vec<(usize, JitFn)>;

/// What the verifier proved of a program, as the translator uses it.
#[derive(Clone, Copy)]
pub(super) struct Proofs<'a> {
    /// One per instruction, if it ran.
    pub aux: Option<&'a [InsnAux]>,
    /// The helper calls it checked, by pc.
    pub sites: &'a [HelperSite],
    /// A pointer may reach the stack (or the verifier did not say): the tag
    /// of each stack slot is kept at every store and read at every 8-byte
    /// fill. Else every fill is a scalar (`Verified::stack_scalars_only`).
    pub stack_tags: bool,
}

/// Compile every function of `prog` (`aux`: the verifier's proofs, one per
/// instruction); returns the module (finalized), the functions by entry and
/// what was emitted.
pub(super) fn translate(
    mut module: JITModule,
    prog: &Program,
    proofs: Proofs,
) -> Result<(JITModule, Funcs, Counts), JitError> {
    let code = &prog.code;
    if code.is_empty() {
        return Err(err(0, "empty program"));
    }
    let entries = function_entries(code)?;
    let sig = native_signature(&module);
    let mut ids = Vec::with_capacity(entries.len());
    for &e in &entries {
        let id = module
            .declare_function(&format!("bpf_{}_{e}", prog.id), Linkage::Local, &sig)
            .map_err(|x| err(e, format!("cranelift: {x}")))?;
        ids.push(id);
    }
    let mut ctx = module.make_context();
    let mut fbc = FunctionBuilderContext::new();
    let mut counts = Counts::default();
    for (i, &start) in entries.iter().enumerate() {
        let end = entries.get(i + 1).copied().unwrap_or(code.len());
        ctx.func.signature = sig.clone();
        let fc = module.isa().frontend_config();
        {
            let mut t = FnTranslator::new(
                &mut module,
                &mut ctx,
                &mut fbc,
                prog,
                proofs,
                start,
                end,
                &entries,
                &ids,
            )?;
            t.body()?;
            counts.checks += t.checks;
            counts.charges += t.charges;
            counts.inlined += t.inlined.len();
            counts.direct += t.direct;
            counts.direct_maps += t.direct_maps.len();
            counts.resolved += t.resolved;
            counts.map_ops += t.map_ops;
            counts.shadow_slots |= t.shadow_slots;
            counts.inlined_loops += t.inlined_loops;
            t.b.seal_all_blocks();
            t.b.finalize(fc);
        }
        // SKIFF_JIT_DUMP=1 prints the generated code (for developers of skiff).
        let dump = std::env::var_os("SKIFF_JIT_DUMP").is_some();
        ctx.set_disasm(dump);
        module
            .define_function(ids[i], &mut ctx)
            .map_err(|x| err(start, format!("cranelift: {x:?}")))?;
        if let Some(d) = ctx
            .compiled_code()
            .and_then(|c| c.vcode.as_ref())
            .filter(|_| dump)
        {
            eprintln!("; {} function at insn {start}\n{d}", prog.name);
        }
        counts.code_size += ctx
            .compiled_code()
            .map(|c| c.code_info().total_size as usize)
            .unwrap_or(0);
        module.clear_context(&mut ctx);
    }
    module
        .finalize_definitions()
        .map_err(|x| err(0, format!("cranelift: {x}")))?;
    let funcs = entries
        .iter()
        .zip(&ids)
        .map(|(&e, &id)| {
            let p = module.get_finalized_function(id);
            // SAFETY: the function was compiled with `native_signature`, which is
            // JitFn's C ABI signature.
            #[allow(unsafe_code)]
            let f = unsafe { std::mem::transmute::<*const u8, JitFn>(p) };
            (e, f)
        })
        .collect();
    Ok((module, funcs, counts))
}

pub(super) struct FnTranslator<'a> {
    pub(super) b: FunctionBuilder<'a>,
    prog: &'a Program,
    code: &'a [Insn],
    start: usize,
    end: usize,
    regs: [Variable; 11],
    /// Each register's provenance tag (crate::mem) at run time, where the
    /// static analysis does not know it.
    tags: [Variable; 11],
    /// Static tags (analysis::DYN: read `tags`): now, and at the start of each
    /// instruction.
    pub(super) cur: Tags,
    tags_in: Vec<Tags>,
    prog_type: ProgType,
    /// Storage of the program's maps by index (tag FIRST_MAP + i): (start, end, writable).
    pub(super) map_bounds: Vec<(u64, u64, bool)>,
    /// Helper calls inlined as array lookups: (pc, map index).
    pub(super) inlined: Vec<(usize, usize)>,
    /// The verifier's proofs, one per instruction, if it ran.
    pub(super) aux: Option<&'a [InsnAux]>,
    /// The helper calls it checked, by pc.
    sites: &'a [HelperSite],
    /// Stack slot tags are kept and read (`Proofs::stack_tags`).
    pub(super) stack_tags: bool,
    /// The function has a checked access through a pointer known to be the
    /// packet's (`analysis::register_needs`): it keeps the packet bounds in
    /// registers.
    uses_packet: bool,
    /// It charges the budget (a back-edge not proven bounded, or it is no
    /// main function): it keeps the budget in a register.
    uses_budget: bool,
    /// Inline bounds checks and budget charges emitted; helper calls to the
    /// resolved function, and to a map op.
    pub(super) checks: usize,
    charges: usize,
    pub(super) resolved: usize,
    pub(super) map_ops: usize,
    /// Context slots read through the shadow (`Counts::shadow_slots`).
    pub(super) shadow_slots: u64,
    inlined_tags: Vec<(usize, Tag)>,
    /// Map helper calls compiled as direct calls into the map.
    direct_maps: Vec<super::calls::DirectMapCall>,
    /// bpf_loop calls compiled as native loops.
    pub(super) inlined_loops: usize,
    /// The packet bounds and the budget, kept in registers; written back to /
    /// reloaded from the JitState around calls that may use or change them.
    pub(super) pkt_lo: Variable,
    pub(super) pkt_hi: Variable,
    budget: Variable,
    /// Registers known to hold the context pointer r1 came in with (only in
    /// the main function): now, and at the start of each instruction.
    pub(super) ctx_regs: u16,
    ctx_in: Vec<u16>,
    /// Array maps the program names, by map index: layout (lookups inlined).
    pub(super) arrays: Vec<Option<skiff_maps::ArrayLayout>>,
    /// The load being emitted reads a helper argument (ARG_PTR_TO_MEM): the
    /// context is not memory for it.
    pub(super) mem_only: bool,
    /// The context layout whose fields are loaded and stored directly.
    pub(super) layout: Option<&'static crate::CtxLayout>,
    /// Direct field accesses emitted.
    pub(super) direct: usize,
    pub(super) st: Value,
    /// Block of each instruction that starts one (index: pc - start).
    blocks: Vec<Option<Block>>,
    callees: Vec<(usize, FuncRef)>,
    pub(super) sig_load: SigRef,
    pub(super) sig_store: SigRef,
    pub(super) sig_atomic: SigRef,
    pub(super) sig_helper: SigRef,
    pub(super) sig_map_op: SigRef,
    sig_ld_abs: SigRef,
    sig_fail: SigRef,
}

pub(super) const MF: MemFlagsData = MemFlagsData::new().with_notrap();

fn sig(module: &JITModule, params: usize) -> Signature {
    let mut s = module.make_signature();
    for _ in 0..params {
        s.params.push(AbiParam::new(I64));
    }
    s.returns.push(AbiParam::new(I64));
    s
}

fn is_jump_class(code: u8) -> bool {
    matches!(code & 7, BPF_JMP | BPF_JMP32)
}

impl<'a> FnTranslator<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        module: &mut JITModule,
        ctx: &'a mut Context,
        fbc: &'a mut FunctionBuilderContext,
        prog: &'a Program,
        proofs: Proofs<'a>,
        start: usize,
        end: usize,
        entries: &[usize],
        ids: &[FuncId],
    ) -> Result<Self, JitError> {
        let Proofs {
            aux,
            sites,
            stack_tags,
        } = proofs;
        let code: &'a [Insn] = &prog.code;
        let sig_load = sig(module, 4);
        let sig_store = sig(module, 5);
        let sig_atomic = sig(module, 6);
        let sig_helper = sig(module, 8);
        let sig_map_op = sig(module, 7);
        let sig_ld_abs = sig(module, 4);
        let sig_fail = sig(module, 3);
        let mut callees = Vec::new();
        // Callees this function calls: only those, declared in this function.
        let mut wanted = Vec::new();
        for pc in start..end {
            let insn = code[pc];
            let t = if insn.code == CALL && insn.src == BPF_PSEUDO_CALL {
                Some((pc as i64 + 1 + insn.imm as i64) as usize)
            } else {
                // An inlined bpf_loop calls its callback (calls.rs).
                aux.and_then(|a| a.get(pc)).and_then(|a| a.loop_callback)
            };
            if let Some(t) = t.filter(|t| !wanted.contains(t)) {
                wanted.push(t);
            }
        }
        for t in wanted {
            let i = entries
                .binary_search(&t)
                .map_err(|_| err(t, "call target is not a function"))?;
            let fr = module.declare_func_in_func(ids[i], &mut ctx.func);
            callees.push((t, fr));
        }
        let mut b = FunctionBuilder::new(&mut ctx.func, fbc);
        let sig_load = b.import_signature(sig_load);
        let sig_store = b.import_signature(sig_store);
        let sig_atomic = b.import_signature(sig_atomic);
        let sig_helper = b.import_signature(sig_helper);
        let sig_map_op = b.import_signature(sig_map_op);
        let sig_ld_abs = b.import_signature(sig_ld_abs);
        let sig_fail = b.import_signature(sig_fail);
        let regs: [Variable; 11] = std::array::from_fn(|_| b.declare_var(I64));
        let tags: [Variable; 11] = std::array::from_fn(|_| b.declare_var(I64));
        let pkt_lo = b.declare_var(I64);
        let pkt_hi = b.declare_var(I64);
        let budget = b.declare_var(I64);
        // Leaders: the entry, every jump target, every instruction after a jump.
        let n = end - start;
        let mut leader = vec![false; n];
        leader[0] = true;
        let mut pc = start;
        let mut in_wide = vec![false; n];
        while pc < end {
            let insn = code[pc];
            if insn.code == LD_IMM64 {
                if pc + 1 >= end {
                    return Err(err(pc, "ld_imm64 without its second half"));
                }
                in_wide[pc + 1 - start] = true;
                pc += 2;
                continue;
            }
            if is_jump_class(insn.code) {
                let op = insn.code & 0xf0;
                let class = insn.code & 7;
                let is_call = op == BPF_CALL && class == BPF_JMP;
                let is_exit = op == BPF_EXIT && class == BPF_JMP;
                if !is_call && !is_exit {
                    let off = if op == BPF_JA && class == BPF_JMP32 {
                        insn.imm as i64
                    } else {
                        insn.off as i64
                    };
                    let t = pc as i64 + 1 + off;
                    if t < start as i64 || t >= end as i64 {
                        return Err(err(
                            pc,
                            format!("jump to insn {t}, outside its function [{start}, {end})"),
                        ));
                    }
                    leader[t as usize - start] = true;
                }
                if pc + 1 < end {
                    leader[pc + 1 - start] = true;
                }
            }
            pc += 1;
        }
        for (i, l) in leader.iter().enumerate() {
            if *l && in_wide[i] {
                return Err(err(start + i, "jump into the middle of ld_imm64"));
            }
        }
        // The last instruction must not fall through into the next function.
        let last = code[end - 1];
        let falls = !(last.code == EXIT
            || (last.code & 0xf0 == BPF_JA && is_jump_class(last.code))
            || in_wide[end - 1 - start]);
        if falls || in_wide[end - 1 - start] {
            return Err(err(
                end - 1,
                "the function falls through its last instruction",
            ));
        }
        let ctx_in = analysis::ctx_dataflow(code, start, end, &in_wide);
        let arrays: Vec<Option<skiff_maps::ArrayLayout>> =
            prog.maps.iter().map(|m| m.array_layout()).collect();
        let handles: Vec<u64> = prog
            .maps
            .iter()
            .zip(&arrays)
            .map(|(m, a)| {
                if a.is_some() {
                    crate::program::map_handle(m)
                } else {
                    0
                }
            })
            .collect();
        let const_maps: Vec<(usize, usize)> = aux
            .map(|a| {
                (0..a.len())
                    .filter_map(|pc| Some((pc, super::calls::const_map(prog, a, pc)?)))
                    .collect()
            })
            .unwrap_or_default();
        let inlined = analysis::inline_lookups(code, start, end, &leader, &handles, &const_maps);
        let direct_maps = super::calls::direct_map_calls(prog, (start, end), aux, sites, &inlined);
        // r0's tag after each call whose result the compiler knows.
        let inlined_tags: Vec<(usize, Tag)> = inlined
            .iter()
            .map(|&(pc, i)| (pc, FIRST_MAP + i as Tag))
            .chain(direct_maps.iter().map(|d| (d.pc, d.ret_tag())))
            .chain(super::calls::resolved_ret_tags(prog, (start, end), sites))
            .collect();
        let facts = analysis::TagFacts {
            prog_type: prog.prog_type,
            ctx_in: &ctx_in,
            start,
            code,
            inlined: &inlined_tags,
            stack_tags,
        };
        let tags_in = analysis::tag_dataflow(&facts, end, &in_wide);
        let (uses_packet, uses_budget) =
            analysis::register_needs(code, start, end, &in_wide, &tags_in, aux);
        let map_bounds = prog
            .map_storage
            .iter()
            .map(|(_, r)| (r.start, r.end, r.kind == crate::mem::RegionKind::ReadWrite))
            .collect();
        let blocks: Vec<Option<Block>> = leader
            .iter()
            .map(|&l| l.then(|| b.create_block()))
            .collect();
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let st = params[0];
        let zero = b.ins().iconst(I64, 0);
        for (i, r) in regs.iter().enumerate() {
            let v = match i {
                1..=5 => params[i],
                10 => params[6],
                _ => zero,
            };
            b.def_var(*r, v);
        }
        // Argument tags: the main function's are known (r1 the context); the
        // others' come in the JitState.
        let arg_tags = (start != 0).then(|| b.ins().load(I64, MF, st, off::ARG_TAGS));
        for (i, r) in tags.iter().enumerate() {
            let v = match (i, arg_tags) {
                (1..=5, Some(a)) => {
                    let x = b.ins().ushr_imm_u(a, 8 * (i as i64 - 1));
                    b.ins().band_imm_u(x, 0xff)
                }
                (1, None) => b.ins().iconst(I64, CTX as i64),
                (10, _) => b.ins().iconst(I64, STACK as i64),
                _ => zero,
            };
            b.def_var(*r, v);
        }
        let mut t = FnTranslator {
            b,
            prog,
            code,
            start,
            end,
            regs,
            tags,
            cur: tags_in[0],
            tags_in,
            prog_type: prog.prog_type,
            map_bounds,
            inlined,
            inlined_tags,
            direct_maps,
            inlined_loops: 0,
            aux,
            sites,
            stack_tags,
            uses_packet,
            uses_budget,
            checks: 0,
            charges: 0,
            resolved: 0,
            map_ops: 0,
            shadow_slots: 0,
            pkt_lo,
            pkt_hi,
            budget,
            ctx_regs: ctx_in[0],
            ctx_in,
            arrays,
            mem_only: false,
            layout: prog.ctx_layout,
            direct: 0,
            st,
            blocks,
            callees,
            sig_load,
            sig_store,
            sig_atomic,
            sig_helper,
            sig_map_op,
            sig_ld_abs,
            sig_fail,
        };
        t.reload_state();
        if start != 0 {
            // Charge one instruction per call, so recursion through calls and
            // callbacks is bounded too (the main function is entered once per
            // run or tail call, which are bounded).
            t.charge(start, 1);
        }
        let first = t.blocks[0].expect("entry is a leader");
        t.b.ins().jump(first, &[]);
        Ok(t)
    }

    pub(super) fn reg(&mut self, r: u8) -> Value {
        self.b.use_var(self.regs[r as usize & 0xf])
    }

    pub(super) fn set(&mut self, r: u8, v: Value) {
        self.b.def_var(self.regs[r as usize & 0xf], v);
    }

    pub(super) fn st_load(&mut self, offset: i32) -> Value {
        self.b.ins().load(I64, MF, self.st, offset)
    }

    pub(super) fn st_store(&mut self, v: Value, offset: i32) {
        self.b.ins().store(MF, v, self.st, offset);
    }

    /// Packet bounds and budget from the JitState (at entry, after calls).
    /// (Only what the function uses: the packet bounds when it may access the
    /// packet, the budget when it charges it.)
    pub(super) fn reload_state(&mut self) {
        self.reload_state_after(true);
    }

    /// `reload_state` after a call that moved the packet (`packet`) or not.
    pub(super) fn reload_state_after(&mut self, packet: bool) {
        if self.uses_packet && packet {
            let lo = self.st_load(off::PKT_START);
            let hi = self.st_load(off::PKT_END);
            self.b.def_var(self.pkt_lo, lo);
            self.b.def_var(self.pkt_hi, hi);
        }
        if self.uses_budget {
            let bu = self.st_load(off::BUDGET);
            self.b.def_var(self.budget, bu);
        }
    }

    /// The budget back to the JitState (before calls and returns).
    pub(super) fn spill_budget(&mut self) {
        if !self.uses_budget {
            return;
        }
        let bu = self.b.use_var(self.budget);
        self.st_store(bu, off::BUDGET);
    }

    fn block_at(&self, pc: usize) -> Block {
        self.blocks[pc - self.start].expect("jump targets are leaders")
    }

    pub(super) fn call_rt(&mut self, sig: SigRef, f: usize, args: &[Value]) -> Value {
        let fp = self.b.ins().iconst(I64, f as i64);
        let call = self.b.ins().call_indirect(sig, fp, args);
        self.b.inst_results(call)[0]
    }

    /// After a runtime call: if `status` is not RUN, return (RETURN_NOW is
    /// consumed here: a tail call ran in this function's place).
    pub(super) fn check_status(&mut self, r0: Value) {
        let status = self.st_load(off::STATUS);
        let cont = self.b.create_block();
        let out = self.b.create_block();
        self.b.set_cold_block(out);
        self.b.ins().brif(status, out, &[], cont, &[]);
        self.b.switch_to_block(out);
        let is_ret = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, RETURN_NOW as i64);
        let run = self.b.ins().iconst(I64, RUN as i64);
        let new = self.b.ins().select(is_ret, run, status);
        self.st_store(new, off::STATUS);
        self.b.ins().return_(&[r0]);
        self.b.switch_to_block(cont);
    }

    /// Return immediately when the run is aborting (after a slow memory access).
    pub(super) fn check_abort(&mut self) {
        let status = self.st_load(off::STATUS);
        let cont = self.b.create_block();
        let out = self.b.create_block();
        self.b.set_cold_block(out);
        self.b.ins().brif(status, out, &[], cont, &[]);
        self.b.switch_to_block(out);
        let z = self.b.ins().iconst(I64, 0);
        self.b.ins().return_(&[z]);
        self.b.switch_to_block(cont);
    }

    fn fail(&mut self, code: u64, pc: usize) {
        let c = self.b.ins().iconst(I64, code as i64);
        let p = self.b.ins().iconst(I64, pc as i64);
        let st = self.st;
        self.call_rt(
            self.sig_fail,
            runtime::rt_fail as *const () as usize,
            &[st, c, p],
        );
        let z = self.b.ins().iconst(I64, 0);
        self.b.ins().return_(&[z]);
    }

    /// Take `cost` from the instruction budget; fail at `pc` when it runs out.
    fn charge(&mut self, pc: usize, cost: u64) {
        self.charges += 1;
        let budget = self.b.use_var(self.budget);
        let ok = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, budget, cost as i64);
        let cont = self.b.create_block();
        let out = self.b.create_block();
        self.b.set_cold_block(out);
        self.b.ins().brif(ok, cont, &[], out, &[]);
        self.b.switch_to_block(out);
        self.fail(FAIL_BUDGET, pc);
        self.b.switch_to_block(cont);
        let left = self.b.ins().iadd_imm_s(budget, -(cost as i64));
        self.b.def_var(self.budget, left);
    }

    fn body(&mut self) -> Result<(), JitError> {
        let mut pc = self.start;
        // The entry block already jumped to the first instruction's block.
        let mut terminated = true;
        while pc < self.end {
            if let Some(blk) = self.blocks[pc - self.start] {
                if !terminated {
                    self.b.ins().jump(blk, &[]);
                }
                self.b.switch_to_block(blk);
                self.ctx_regs = self.ctx_in[pc - self.start];
                self.cur = self.tags_in[pc - self.start];
            } else if terminated {
                // Unreachable straight-line code after an unconditional jump or exit
                // that no jump reaches: skip it (leaders cover every reachable insn).
                pc += if self.code[pc].code == LD_IMM64 { 2 } else { 1 };
                continue;
            }
            let insn = self.code[pc];
            let (next, term) = self.insn(pc, insn)?;
            self.track(pc, insn);
            terminated = term;
            pc = next;
        }
        Ok(())
    }

    /// After `insn`: the exact context registers and the static tags; a
    /// written register whose tag is known gets it as a constant (the
    /// instruction's own code set it where it is not).
    fn track(&mut self, pc: usize, insn: Insn) {
        self.ctx_regs = analysis::ctx_after(self.ctx_regs, insn);
        let facts = analysis::TagFacts {
            prog_type: self.prog_type,
            ctx_in: &self.ctx_in,
            start: self.start,
            code: self.code,
            inlined: &self.inlined_tags,
            stack_tags: self.stack_tags,
        };
        self.cur = analysis::tags_after(&facts, pc, insn, self.cur);
        let w = analysis::written(insn);
        for r in 0..11 {
            if w & (1 << r) != 0 && self.cur[r] != DYN {
                let c = self.b.ins().iconst(I64, self.cur[r] as i64);
                self.b.def_var(self.tags[r], c);
            }
        }
    }

    /// The back-edge at `pc` closes a loop the verifier proved bounded.
    fn bounded_loop(&self, pc: usize) -> bool {
        self.aux
            .and_then(|a| a.get(pc))
            .is_some_and(|x| x.bounded_loop)
    }

    /// The helper call at `pc`, when the verifier checked it.
    pub(super) fn site(&self, pc: usize) -> Option<HelperSite> {
        let i = self.sites.binary_search_by_key(&pc, |s| s.pc).ok()?;
        self.sites.get(i).copied()
    }

    pub(super) fn direct_map(&self, pc: usize) -> Option<super::calls::DirectMapCall> {
        self.direct_maps.iter().find(|d| d.pc == pc).copied()
    }

    /// The function entered at `entry`, when this function calls it.
    pub(super) fn callee(&self, entry: usize) -> Option<FuncRef> {
        self.callees
            .iter()
            .find(|(e, _)| *e == entry)
            .map(|(_, f)| *f)
    }

    /// This function is the program's main function (not a callee).
    pub(super) fn is_main(&self) -> bool {
        self.start == 0
    }

    pub(super) fn prog(&self) -> &Program {
        self.prog
    }

    /// The memory access at `pc` was proven in bounds for this pointer kind.
    pub(super) fn proven(&self, pc: usize) -> Option<MemKind> {
        self.aux.and_then(|a| a.get(pc)).and_then(|x| x.mem)
    }

    pub(super) fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// Register `r`'s tag: (static tag or DYN, its value at run time).
    pub(super) fn tag(&mut self, r: u8) -> (u8, Value) {
        let r = (r & 0xf).min(10) as usize;
        let t = self.cur[r];
        let v = if t == DYN {
            self.b.use_var(self.tags[r])
        } else {
            self.b.ins().iconst(I64, t as i64)
        };
        (t, v)
    }

    pub(super) fn set_tag(&mut self, r: u8, v: Value) {
        self.b.def_var(self.tags[(r & 0xf).min(10) as usize], v);
    }

    /// r1-r5's tags packed (state::pack_tags) into the JitState, for a helper or callee.
    pub(super) fn store_arg_tags(&mut self) {
        let mut packed: Option<Value> = None;
        let mut known = 0u64;
        for r in 1..=5u8 {
            let (t, v) = self.tag(r);
            if t != DYN {
                known |= (t as u64) << (8 * (r - 1));
                continue;
            }
            let sh = self.b.ins().ishl_imm_u(v, 8 * (r as i64 - 1));
            packed = Some(match packed {
                Some(p) => self.b.ins().bor(p, sh),
                None => sh,
            });
        }
        let all = match packed {
            Some(p) => self.b.ins().bor_imm_u(p, known as i64),
            None => self.b.ins().iconst(I64, known as i64),
        };
        self.st_store(all, off::ARG_TAGS);
    }

    /// The run-time tag of an ALU64 result (the rule of mem::alu_tag), for a
    /// register the static analysis leaves DYN.
    fn alu_tag_value(&mut self, insn: Insn) -> Value {
        let op = insn.code & 0xf0;
        let (_, d) = self.tag(insn.dst);
        if insn.code & BPF_X == 0 {
            return match op {
                BPF_ADD | BPF_SUB => d,
                _ => self.b.ins().iconst(I64, SCALAR as i64),
            };
        }
        let (_, s) = self.tag(insn.src);
        let zero = self.b.ins().iconst(I64, SCALAR as i64);
        let s_scalar = self.b.ins().icmp_imm_s(IntCC::Equal, s, SCALAR as i64);
        match op {
            BPF_MOV if insn.off == 0 => s,
            BPF_ADD => {
                let d_scalar = self.b.ins().icmp_imm_s(IntCC::Equal, d, SCALAR as i64);
                let other = self.b.ins().select(d_scalar, s, zero);
                self.b.ins().select(s_scalar, d, other)
            }
            BPF_SUB => self.b.ins().select(s_scalar, d, zero),
            _ => zero,
        }
    }

    /// Translate one instruction; returns the next pc and whether control does
    /// not fall through.
    fn insn(&mut self, pc: usize, insn: Insn) -> Result<(usize, bool), JitError> {
        let class = insn.code & 7;
        let op = insn.code & 0xf0;
        let x = insn.code & BPF_X != 0;
        match class {
            BPF_ALU | BPF_ALU64 => {
                let wide = class == BPF_ALU64;
                if op == BPF_END {
                    let d = self.reg(insn.dst);
                    let to_be = wide || x;
                    let v = self.byteswap(d, insn.imm, to_be);
                    self.set(insn.dst, v);
                } else {
                    let src = if x {
                        self.reg(insn.src)
                    } else if wide {
                        self.b.ins().iconst(I64, insn.imm as i64)
                    } else {
                        self.b.ins().iconst(I64, insn.imm as u32 as i64)
                    };
                    // Constant where the analysis knows it (track() sets those).
                    let dyn_in = |r: u8| self.cur[(r & 0xf).min(10) as usize] == DYN;
                    if wide && (dyn_in(insn.dst) || dyn_in(insn.src)) {
                        let t = self.alu_tag_value(insn);
                        self.set_tag(insn.dst, t);
                    }
                    let d = self.reg(insn.dst);
                    let v = if wide {
                        self.alu(I64, op, insn.off, d, src)
                    } else {
                        let d32 = self.b.ins().ireduce(I32, d);
                        let s32 = self.b.ins().ireduce(I32, src);
                        let r = self.alu(I32, op, insn.off, d32, s32);
                        self.b.ins().uextend(I64, r)
                    };
                    self.set(insn.dst, v);
                }
                Ok((pc + 1, false))
            }
            BPF_JMP | BPF_JMP32 => self.jump(pc, insn),
            BPF_LDX => {
                let size = size_of(insn.code);
                let signed = insn.code & 0xe0 == BPF_MEMSX;
                let (v, t) = self.load(pc, insn.src, insn.off, size, signed);
                self.set(insn.dst, v);
                self.set_tag(insn.dst, t);
                Ok((pc + 1, false))
            }
            BPF_ST => {
                let size = size_of(insn.code);
                let v = self.b.ins().iconst(I64, insn.imm as i64);
                self.store(pc, insn.dst, insn.off, size, v, (SCALAR, v));
                Ok((pc + 1, false))
            }
            BPF_STX => {
                let size = size_of(insn.code);
                if insn.code & 0xe0 == BPF_ATOMIC {
                    self.atomic(pc, insn, size);
                } else {
                    let v = self.reg(insn.src);
                    let vt = self.tag(insn.src);
                    self.store(pc, insn.dst, insn.off, size, v, vt);
                }
                Ok((pc + 1, false))
            }
            BPF_LD => {
                if insn.code == LD_IMM64 {
                    let hi = self.code.get(pc + 1).map(|i| i.imm).unwrap_or(0);
                    let v = (insn.imm as u32 as u64) | ((hi as u32 as u64) << 32);
                    let c = self.b.ins().iconst(I64, v as i64);
                    self.set(insn.dst, c);
                    Ok((pc + 2, false))
                } else if insn.code & 0xe0 == BPF_ABS || insn.code & 0xe0 == BPF_IND {
                    let size = size_of(insn.code);
                    let mut o = self.b.ins().iconst(I64, insn.imm as i64);
                    if insn.code & 0xe0 == BPF_IND {
                        let r = self.reg(insn.src);
                        let r32 = self.b.ins().ireduce(I32, r);
                        let r = self.b.ins().sextend(I64, r32);
                        o = self.b.ins().iadd(o, r);
                    }
                    let sz = self.b.ins().iconst(I64, size as i64);
                    let p = self.b.ins().iconst(I64, pc as i64);
                    let st = self.st;
                    let v = self.call_rt(
                        self.sig_ld_abs,
                        runtime::rt_ld_abs as *const () as usize,
                        &[st, o, sz, p],
                    );
                    self.check_abort();
                    self.set(0, v);
                    Ok((pc + 1, false))
                } else {
                    Err(err(pc, format!("invalid instruction {:#04x}", insn.code)))
                }
            }
            _ => Err(err(pc, format!("invalid instruction {:#04x}", insn.code))),
        }
    }

    fn byteswap(&mut self, d: Value, bits: i32, to_be: bool) -> Value {
        let ty = match bits {
            16 => I16,
            32 => I32,
            _ => I64,
        };
        let v = if ty == I64 {
            d
        } else {
            self.b.ins().ireduce(ty, d)
        };
        let v = if to_be { self.b.ins().bswap(v) } else { v };
        if ty == I64 {
            v
        } else {
            self.b.ins().uextend(I64, v)
        }
    }

    fn alu(&mut self, ty: Type, op: u8, off: i16, d: Value, s: Value) -> Value {
        match op {
            BPF_ADD => self.b.ins().iadd(d, s),
            BPF_SUB => self.b.ins().isub(d, s),
            BPF_MUL => self.b.ins().imul(d, s),
            BPF_OR => self.b.ins().bor(d, s),
            BPF_AND => self.b.ins().band(d, s),
            BPF_XOR => self.b.ins().bxor(d, s),
            // Cranelift masks the shift amount to the type's width, as eBPF does.
            BPF_LSH => self.b.ins().ishl(d, s),
            BPF_RSH => self.b.ins().ushr(d, s),
            BPF_ARSH => self.b.ins().sshr(d, s),
            BPF_NEG => self.b.ins().ineg(d),
            BPF_MOV => match off {
                8 | 16 | 32 => {
                    let nt = match off {
                        8 => I8,
                        16 => I16,
                        _ => I32,
                    };
                    if nt == ty {
                        s
                    } else {
                        let n = self.b.ins().ireduce(nt, s);
                        self.b.ins().sextend(ty, n)
                    }
                }
                _ => s,
            },
            BPF_DIV | BPF_MOD => self.divmod(ty, op == BPF_DIV, off == 1, d, s),
            _ => d,
        }
    }

    /// Division and modulo without traps: x / 0 = 0, x % 0 = x; signed MIN / -1
    /// wraps (= MIN), MIN % -1 = 0.
    fn divmod(&mut self, ty: Type, div: bool, signed: bool, d: Value, s: Value) -> Value {
        let zero = self.b.ins().iconst(ty, 0);
        let one = self.b.ins().iconst(ty, 1);
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, s, 0);
        if !signed {
            let s1 = self.b.ins().select(is_zero, one, s);
            return if div {
                let q = self.b.ins().udiv(d, s1);
                self.b.ins().select(is_zero, zero, q)
            } else {
                let r = self.b.ins().urem(d, s1);
                self.b.ins().select(is_zero, d, r)
            };
        }
        let is_m1 = self.b.ins().icmp_imm_s(IntCC::Equal, s, -1);
        let special = self.b.ins().bor(is_zero, is_m1);
        let s1 = self.b.ins().select(special, one, s);
        if div {
            let q = self.b.ins().sdiv(d, s1);
            let neg = self.b.ins().ineg(d);
            let q = self.b.ins().select(is_m1, neg, q);
            self.b.ins().select(is_zero, zero, q)
        } else {
            let r = self.b.ins().srem(d, s1);
            let r = self.b.ins().select(is_m1, zero, r);
            self.b.ins().select(is_zero, d, r)
        }
    }

    fn jump(&mut self, pc: usize, insn: Insn) -> Result<(usize, bool), JitError> {
        let class = insn.code & 7;
        let op = insn.code & 0xf0;
        match op {
            BPF_JA => {
                let o = if class == BPF_JMP32 {
                    insn.imm as i64
                } else {
                    insn.off as i64
                };
                let t = (pc as i64 + 1 + o) as usize;
                if t <= pc && !self.bounded_loop(pc) {
                    self.charge(pc, (pc - t + 1) as u64);
                }
                let blk = self.block_at(t);
                self.b.ins().jump(blk, &[]);
                Ok((pc + 1, true))
            }
            BPF_EXIT if class == BPF_JMP => {
                self.spill_budget();
                if self.start != 0 {
                    // A callee's r0 tag, for its caller.
                    let (_, t) = self.tag(0);
                    self.st_store(t, off::RET_TAG);
                }
                let r0 = self.reg(0);
                self.b.ins().return_(&[r0]);
                Ok((pc + 1, true))
            }
            BPF_CALL if class == BPF_JMP => {
                if insn.src == BPF_PSEUDO_CALL {
                    self.bpf_call(pc, insn);
                } else {
                    self.helper_call(pc, insn);
                }
                Ok((pc + 1, false))
            }
            _ => {
                let wide = class == BPF_JMP;
                let x = insn.code & BPF_X != 0;
                let d = self.reg(insn.dst);
                let s = if x {
                    self.reg(insn.src)
                } else {
                    self.b.ins().iconst(I64, insn.imm as i64)
                };
                let (d, s) = if wide {
                    (d, s)
                } else {
                    (self.b.ins().ireduce(I32, d), self.b.ins().ireduce(I32, s))
                };
                let c = match op {
                    BPF_JSET => {
                        let a = self.b.ins().band(d, s);
                        self.b.ins().icmp_imm_s(IntCC::NotEqual, a, 0)
                    }
                    _ => {
                        let cc = match op {
                            BPF_JEQ => IntCC::Equal,
                            BPF_JNE => IntCC::NotEqual,
                            BPF_JGT => IntCC::UnsignedGreaterThan,
                            BPF_JGE => IntCC::UnsignedGreaterThanOrEqual,
                            BPF_JLT => IntCC::UnsignedLessThan,
                            BPF_JLE => IntCC::UnsignedLessThanOrEqual,
                            BPF_JSGT => IntCC::SignedGreaterThan,
                            BPF_JSGE => IntCC::SignedGreaterThanOrEqual,
                            BPF_JSLT => IntCC::SignedLessThan,
                            BPF_JSLE => IntCC::SignedLessThanOrEqual,
                            _ => return Err(err(pc, format!("invalid jump {:#04x}", insn.code))),
                        };
                        self.b.ins().icmp(cc, d, s)
                    }
                };
                let t = (pc as i64 + 1 + insn.off as i64) as usize;
                let fall = self.block_at(pc + 1);
                if t <= pc && !self.bounded_loop(pc) {
                    // A backward branch: charge the loop body when it is taken.
                    let charge = self.b.create_block();
                    self.b.ins().brif(c, charge, &[], fall, &[]);
                    self.b.switch_to_block(charge);
                    self.charge(pc, (pc - t + 1) as u64);
                    let blk = self.block_at(t);
                    self.b.ins().jump(blk, &[]);
                } else {
                    let blk = self.block_at(t);
                    self.b.ins().brif(c, blk, &[], fall, &[]);
                }
                Ok((pc + 1, true))
            }
        }
    }

    fn bpf_call(&mut self, pc: usize, insn: Insn) {
        let t = (pc as i64 + 1 + insn.imm as i64) as usize;
        let fr = self
            .callee(t)
            .expect("callees were declared for every call");
        if t == 0 {
            // The main function is entered only with the context in r1.
            self.fail(FAIL_JUMP, pc);
            let dead = self.b.create_block();
            self.b.switch_to_block(dead);
        }
        let regs = [1, 2, 3, 4, 5].map(|r| self.reg(r));
        let r0 = self.call_frame(pc, fr, regs, None);
        self.set(0, r0);
        let t0 = self.st_load(off::RET_TAG);
        self.set_tag(0, t0);
    }

    /// Call native function `fr` (a callee or callback of this program) one
    /// frame deeper with r1-r5 = `regs` tagged `tags` (None: their own
    /// tags), its frame below this one's; returns its r0. Too deep a call
    /// fails at `pc`; a callee that aborts makes this function return.
    pub(super) fn call_frame(
        &mut self,
        pc: usize,
        fr: FuncRef,
        regs: [Value; 5],
        tags: Option<Value>,
    ) -> Value {
        let depth = self.st_load(off::DEPTH);
        let ok =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedLessThan, depth, (MAX_CALL_FRAMES - 1) as i64);
        let cont = self.b.create_block();
        let out = self.b.create_block();
        self.b.set_cold_block(out);
        self.b.ins().brif(ok, cont, &[], out, &[]);
        self.b.switch_to_block(out);
        self.fail(FAIL_DEPTH, pc);
        self.b.switch_to_block(cont);
        let d1 = self.b.ins().iadd_imm_s(depth, 1);
        self.st_store(d1, off::DEPTH);
        match tags {
            Some(t) => self.st_store(t, off::ARG_TAGS),
            None => self.store_arg_tags(),
        }
        let mut args = vec![self.st];
        args.extend(regs);
        let r10 = self.reg(10);
        let r10 = self.b.ins().iadd_imm_s(r10, -(MAX_BPF_STACK as i64));
        args.push(r10);
        self.spill_budget();
        let call = self.b.ins().call(fr, &args);
        let r0 = self.b.inst_results(call)[0];
        self.reload_state();
        self.st_store(depth, off::DEPTH);
        // Only ABORT can come back from a callee (it consumes RETURN_NOW itself).
        let status = self.st_load(off::STATUS);
        let cont = self.b.create_block();
        let out = self.b.create_block();
        self.b.set_cold_block(out);
        self.b.ins().brif(status, out, &[], cont, &[]);
        self.b.switch_to_block(out);
        self.b.ins().return_(&[r0]);
        self.b.switch_to_block(cont);
        r0
    }
}
