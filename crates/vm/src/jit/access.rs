//! Loads, stores and atomics in native code, checked by provenance: the address
//! is tested against the region of the base register's tag only (bounds known at
//! compile time for the program's maps, in registers for the packet, in the
//! JitState's tag table otherwise); what fails the test goes to the runtime,
//! which does exactly what the interpreter does (the context's field rewriting,
//! the error). Stack slots keep the tags of spilled pointers as the interpreter
//! does.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I16, I32, I64, I8};
use cranelift_codegen::ir::{AtomicRmwOp, Block, InstBuilder, Type, Value};

use skiff_isa::*;

use super::analysis::{in_own_frame, DYN};
use super::runtime::{self, off, LOAD_SIGNED, MEM_ONLY, SHADOW_SLOTS, STACK_SLOTS};
use super::translate::{FnTranslator, MF};
use crate::mem::{
    ctx_field_tag, ctx_packet_fields, CTX, FIRST_MAP, MAX_TAGS, PACKET, SCALAR, STACK,
};
use crate::verifier::MemKind;
use crate::{ctx_layout::DirectAccess, FieldStore};

fn mem_type(size: u32) -> Type {
    match size {
        1 => I8,
        2 => I16,
        4 => I32,
        _ => I64,
    }
}

impl FnTranslator<'_> {
    /// Branch to `yes` when `lo <= a && a <= hi - size`, else to `no` (two
    /// compare-and-branch pairs: cheaper than materialising the conditions).
    fn branch_in(&mut self, a: Value, lo: Value, hi: Value, size: u32, yes: Block, no: Block) {
        let second = self.b.create_block();
        let c1 = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, a, lo);
        self.b.ins().brif(c1, second, &[], no, &[]);
        self.b.switch_to_block(second);
        let last = self.b.ins().iadd_imm_s(hi, -(size as i64));
        let c2 = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, last);
        self.b.ins().brif(c2, yes, &[], no, &[]);
    }

    /// Branch to `yes` when [a, a + size) lies in the region of tag `t` (static,
    /// or DYN with `tv` its value), writable when `write`; else to `no`.
    #[allow(clippy::too_many_arguments)]
    fn branch_region(
        &mut self,
        t: u8,
        tv: Value,
        a: Value,
        size: u32,
        write: bool,
        yes: Block,
        no: Block,
    ) {
        let table = if write { off::WBOUNDS } else { off::RBOUNDS };
        if t != SCALAR {
            self.checks += 1;
        }
        let map = (t as usize)
            .checked_sub(FIRST_MAP as usize)
            .filter(|_| t != DYN)
            .and_then(|i| self.map_bounds.get(i).copied());
        match t {
            SCALAR => {
                self.b.ins().jump(no, &[]);
            }
            PACKET => {
                let lo = self.b.use_var(self.pkt_lo);
                let hi = self.b.use_var(self.pkt_hi);
                self.branch_in(a, lo, hi, size, yes, no);
            }
            STACK => {
                let lo = self.st_load(off::STACK_LO);
                let hi = self.st_load(off::STACK_HI);
                self.branch_in(a, lo, hi, size, yes, no);
            }
            _ if map.is_some() => {
                let (lo, hi, writable) = map.unwrap_or((u64::MAX, u64::MAX, false));
                if (write && !writable) || hi.saturating_sub(lo) < size as u64 {
                    self.b.ins().jump(no, &[]);
                    return;
                }
                let lo = self.b.ins().iconst(I64, lo as i64);
                let hi = self.b.ins().iconst(I64, hi as i64);
                self.branch_in(a, lo, hi, size, yes, no);
            }
            DYN => {
                let idx = self.b.ins().band_imm_u(tv, (MAX_TAGS - 1) as i64);
                let o = self.b.ins().ishl_imm_u(idx, 4);
                let p = self.b.ins().iadd(self.st, o);
                let lo = self.b.ins().load(I64, MF, p, table);
                let hi = self.b.ins().load(I64, MF, p, table + 8);
                self.branch_in(a, lo, hi, size, yes, no);
            }
            _ => {
                let lo = self.st_load(table + 16 * t as i32);
                let hi = self.st_load(table + 16 * t as i32 + 8);
                self.branch_in(a, lo, hi, size, yes, no);
            }
        }
    }

    /// The address of `a`'s stack slot tag (a masked index: in bounds whatever `a`).
    fn slot_addr(&mut self, a: Value) -> Value {
        let lo = self.st_load(off::STACK_LO);
        let d = self.b.ins().isub(a, lo);
        let i = self.b.ins().ushr_imm_u(d, 3);
        let i = self.b.ins().band_imm_u(i, (STACK_SLOTS - 1) as i64);
        self.b.ins().iadd(self.st, i)
    }

    /// `select(c, x, 0)`.
    fn or_scalar(&mut self, c: Value, x: Value) -> Value {
        let z = self.b.ins().iconst(I64, SCALAR as i64);
        self.b.ins().select(c, x, z)
    }

    /// The tag of a raw load's result (mem::load's rule), for base tag `t`.
    fn raw_load_tag(&mut self, t: u8, tv: Value, a: Value, exact: (bool, i16), size: u32) -> Value {
        let scalar = self.b.ins().iconst(I64, SCALAR as i64);
        match (t, size) {
            (STACK, 8) | (DYN, 8) if self.stack_tags => {
                let p = self.slot_addr(a);
                let slot = self.b.ins().uload8(I64, MF, p, off::SLOT_TAGS);
                let mis = self.b.ins().band_imm_u(a, 7);
                let mut ok = self.b.ins().icmp_imm_s(IntCC::Equal, mis, 0);
                if t == DYN {
                    let s = self.b.ins().icmp_imm_s(IntCC::Equal, tv, STACK as i64);
                    ok = self.b.ins().band(ok, s);
                }
                self.or_scalar(ok, slot)
            }
            (CTX, 4) if exact.0 => {
                let f = ctx_field_tag(self.prog_type(), exact.1 as i64 as u64, 4);
                self.b.ins().iconst(I64, f as i64)
            }
            (CTX, 4) | (DYN, 4) => {
                let start = self.st_load(off::RBOUNDS + 16 * CTX as i32);
                let o = self.b.ins().isub(a, start);
                let mut hit = self.b.ins().iconst(I8, 0);
                for f in ctx_packet_fields(self.prog_type()) {
                    let c = self.b.ins().icmp_imm_s(IntCC::Equal, o, f as i64);
                    hit = self.b.ins().bor(hit, c);
                }
                if t == DYN {
                    let c = self.b.ins().icmp_imm_s(IntCC::Equal, tv, CTX as i64);
                    hit = self.b.ins().band(hit, c);
                }
                let pk = self.b.ins().iconst(I64, PACKET as i64);
                self.or_scalar(hit, pk)
            }
            _ => scalar,
        }
    }

    /// A checked load; (value, its tag).
    pub(super) fn load(
        &mut self,
        pc: usize,
        base_reg: u8,
        offset: i16,
        size: u32,
        signed: bool,
    ) -> (Value, Value) {
        let base = self.reg(base_reg);
        let (t, tv) = self.tag(base_reg);
        let a = self.b.ins().iadd_imm_s(base, offset as i64);
        let done = self.b.create_block();
        self.b.append_block_param(done, I64);
        self.b.append_block_param(done, I64);
        let raw = self.b.create_block();
        let exact = t == CTX && self.ctx_regs & (1 << (base_reg & 0xf)) != 0;
        if let Some(d) = self.direct_field(exact, offset, size, signed, false) {
            self.load_direct(d, done);
        }
        if in_own_frame(base_reg, offset, size) || self.proven_raw(pc) {
            self.b.ins().jump(raw, &[]);
        } else {
            if !self.mem_only
                && exact
                && size == 4
                && !signed
                && offset >= 0
                && offset % 4 == 0
                && (offset as usize) < SHADOW_SLOTS * 4
            {
                // A field of the context r1 came in with: the shadow slot first.
                let slot = (offset / 4) as i64;
                self.shadow_slots |= 1 << slot;
                let valid = self.st_load(off::SHADOW_VALID);
                let bit = self.b.ins().band_imm_u(valid, 1i64 << slot);
                let hit = self.b.create_block();
                let check = self.b.create_block();
                self.b.ins().brif(bit, hit, &[], check, &[]);
                self.b.switch_to_block(hit);
                let v = self.st_load(off::SHADOW + 8 * slot as i32);
                let f = ctx_field_tag(self.prog_type(), offset as u64, 4);
                let ft = self.b.ins().iconst(I64, f as i64);
                self.b.ins().jump(done, &[v.into(), ft.into()]);
                self.b.switch_to_block(check);
            }
            let slow = self.b.create_block();
            self.b.set_cold_block(slow);
            self.branch_region(t, tv, a, size, false, raw, slow);
            self.b.switch_to_block(slow);
            let flags = size as i64
                | if self.mem_only { MEM_ONLY as i64 } else { 0 }
                | if signed { LOAD_SIGNED as i64 } else { 0 };
            let tag_bits = self.b.ins().ishl_imm_u(tv, 16);
            let sz = self.b.ins().bor_imm_u(tag_bits, flags);
            let p = self.b.ins().iconst(I64, pc as i64);
            let st = self.st;
            let v = self.call_rt(
                self.sig_load,
                runtime::rt_load as *const () as usize,
                &[st, a, sz, p],
            );
            self.check_abort();
            let lt = self.st_load(off::LOAD_TAG);
            self.b.ins().jump(done, &[v.into(), lt.into()]);
        }
        self.b.switch_to_block(raw);
        let v = if size == 8 {
            self.b.ins().load(I64, MF, a, 0)
        } else if signed {
            match size {
                1 => self.b.ins().sload8(I64, MF, a, 0),
                2 => self.b.ins().sload16(I64, MF, a, 0),
                _ => self.b.ins().sload32(MF, a, 0),
            }
        } else {
            let v = self.b.ins().load(mem_type(size), MF, a, 0);
            self.b.ins().uextend(I64, v)
        };
        let vt = if signed {
            self.b.ins().iconst(I64, SCALAR as i64)
        } else {
            self.raw_load_tag(t, tv, a, (exact, offset), size)
        };
        self.b.ins().jump(done, &[v.into(), vt.into()]);
        self.b.switch_to_block(done);
        let p = self.b.block_params(done);
        (p[0], p[1])
    }

    /// After a raw store through a STACK pointer: the slots it touches hold no
    /// pointer any more, unless it is an aligned 8-byte spill (mem's rule).
    fn store_slot_tags(&mut self, a: Value, size: u32, vt: (u8, Value)) {
        let last = self.b.ins().iadd_imm_s(a, size as i64 - 1);
        let p_last = self.slot_addr(last);
        let zero = self.b.ins().iconst(I8, 0);
        self.b.ins().store(MF, zero, p_last, off::SLOT_TAGS);
        let p = self.slot_addr(a);
        if size != 8 {
            self.b.ins().store(MF, zero, p, off::SLOT_TAGS);
            return;
        }
        let mis = self.b.ins().band_imm_u(a, 7);
        let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, mis, 0);
        let t = self.or_scalar(aligned, vt.1);
        let t8 = self.b.ins().ireduce(I8, t);
        self.b.ins().store(MF, t8, p, off::SLOT_TAGS);
        if vt.0 != SCALAR {
            let d = self.st_load(off::SLOTS_DIRTY);
            let d = self.b.ins().bor(d, t);
            self.st_store(d, off::SLOTS_DIRTY);
        }
    }

    /// A checked store of `v` (tagged `vt`).
    pub(super) fn store(
        &mut self,
        pc: usize,
        base_reg: u8,
        offset: i16,
        size: u32,
        v: Value,
        vt: (u8, Value),
    ) {
        let base = self.reg(base_reg);
        let (t, tv) = self.tag(base_reg);
        let a = self.b.ins().iadd_imm_s(base, offset as i64);
        let done = self.b.create_block();
        let raw = self.b.create_block();
        let exact = t == CTX && self.ctx_regs & (1 << (base_reg & 0xf)) != 0;
        if let Some(d) = self.direct_field(exact, offset, size, false, true) {
            self.store_direct(d, v, done);
        }
        if in_own_frame(base_reg, offset, size) || self.proven_raw(pc) {
            self.b.ins().jump(raw, &[]);
        } else {
            let slow = self.b.create_block();
            self.b.set_cold_block(slow);
            self.branch_region(t, tv, a, size, true, raw, slow);
            self.b.switch_to_block(slow);
            let tags = self.b.ins().ishl_imm_u(vt.1, 8);
            let tags = self.b.ins().bor(tags, tv);
            let tags = self.b.ins().ishl_imm_u(tags, 16);
            let sz = self.b.ins().bor_imm_u(tags, size as i64);
            let p = self.b.ins().iconst(I64, pc as i64);
            let st = self.st;
            self.call_rt(
                self.sig_store,
                runtime::rt_store as *const () as usize,
                &[st, a, sz, v, p],
            );
            self.check_abort();
            self.b.ins().jump(done, &[]);
        }
        self.b.switch_to_block(raw);
        match size {
            1 => self.b.ins().istore8(MF, v, a, 0),
            2 => self.b.ins().istore16(MF, v, a, 0),
            4 => self.b.ins().istore32(MF, v, a, 0),
            _ => self.b.ins().store(MF, v, a, 0),
        };
        match t {
            _ if !self.stack_tags => {}
            STACK => self.store_slot_tags(a, size, vt),
            DYN => {
                let on_stack = self.b.create_block();
                let is_stack = self.b.ins().icmp_imm_s(IntCC::Equal, tv, STACK as i64);
                self.b.ins().brif(is_stack, on_stack, &[], done, &[]);
                self.b.switch_to_block(on_stack);
                self.store_slot_tags(a, size, vt);
            }
            _ => {}
        }
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// BPF_STX | BPF_ATOMIC: aligned and in a writable region other than the
    /// stack (whose slot tag it would change), a native atomic; anything else
    /// through the runtime (which reports the interpreter's error).
    pub(super) fn atomic(&mut self, pc: usize, insn: Insn, size: u32) {
        let base = self.reg(insn.dst);
        let (t, tv) = self.tag(insn.dst);
        let a = self.b.ins().iadd_imm_s(base, insn.off as i64);
        let src = self.reg(insn.src);
        let r0 = self.reg(0);
        let done = self.b.create_block();
        self.b.append_block_param(done, I64);
        let slow = self.b.create_block();
        self.b.set_cold_block(slow);
        let rmw = match insn.imm & !BPF_FETCH {
            x if x == BPF_ADD as i32 => Some(AtomicRmwOp::Add),
            x if x == BPF_OR as i32 => Some(AtomicRmwOp::Or),
            x if x == BPF_AND as i32 => Some(AtomicRmwOp::And),
            x if x == BPF_XOR as i32 => Some(AtomicRmwOp::Xor),
            _ if insn.imm == BPF_XCHG => Some(AtomicRmwOp::Xchg),
            _ => None,
        };
        let inline = (rmw.is_some() || insn.imm == BPF_CMPXCHG) && t != STACK;
        // Proven in bounds and aligned (the verifier's check_atomic), off the
        // stack (whose slot tag the runtime clears): the native atomic alone.
        let proven = self
            .proven(pc)
            .is_some_and(|k| !matches!(k, MemKind::Ctx | MemKind::Stack));
        if inline && proven && t != DYN {
            let fast = self.b.create_block();
            self.b.ins().jump(fast, &[]);
            self.native_atomic(fast, done, a, src, r0, rmw, size);
        } else if inline {
            let fast = self.b.create_block();
            let check = self.b.create_block();
            let mis = self.b.ins().band_imm_u(a, (size - 1) as u64 as i64);
            let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, mis, 0);
            let mut ok = aligned;
            if t == DYN {
                let s = self.b.ins().icmp_imm_s(IntCC::NotEqual, tv, STACK as i64);
                ok = self.b.ins().band(ok, s);
            }
            self.b.ins().brif(ok, check, &[], slow, &[]);
            self.b.switch_to_block(check);
            self.branch_region(t, tv, a, size, true, fast, slow);
            self.native_atomic(fast, done, a, src, r0, rmw, size);
        } else {
            self.b.ins().jump(slow, &[]);
        }
        // (Unreachable when the access was proven: cranelift drops it.)
        self.b.switch_to_block(slow);
        let tag_bits = self.b.ins().ishl_imm_u(tv, 40);
        let so = self.b.ins().bor_imm_u(
            tag_bits,
            (size as u64 | (insn.imm as u32 as u64) << 8) as i64,
        );
        let p = self.b.ins().iconst(I64, pc as i64);
        let st = self.st;
        let old = self.call_rt(
            self.sig_atomic,
            runtime::rt_atomic as *const () as usize,
            &[st, a, so, src, r0, p],
        );
        self.check_abort();
        self.b.ins().jump(done, &[old.into()]);
        self.b.switch_to_block(done);
        let old = self.b.block_params(done)[0];
        if insn.imm == BPF_CMPXCHG {
            self.set(0, old);
        } else if insn.imm & BPF_FETCH != 0 {
            self.set(insn.src, old);
        }
    }

    /// The direct form of a context field access through the context pointer
    /// r1 came in with (`exact`), when the program's layout has one.
    fn direct_field(
        &self,
        exact: bool,
        offset: i16,
        size: u32,
        signed: bool,
        write: bool,
    ) -> Option<DirectAccess> {
        if !exact || signed || self.mem_only {
            return None;
        }
        let d = self.layout?.find(offset as i64, size, write)?;
        // (Native loads and stores take an i32 displacement.)
        i32::try_from(d.host_off).is_ok().then_some(d)
    }

    /// Branch on the run's direct base: to a new block with the base when the
    /// context is the layout's (returned, current), else on in another (the
    /// runtime's path, a context of another kind: cold).
    fn branch_direct(&mut self) -> (Value, Block) {
        self.direct += 1;
        let base = self.st_load(off::CTX_BASE);
        let direct = self.b.create_block();
        let other = self.b.create_block();
        self.b.set_cold_block(other);
        self.b.ins().brif(base, direct, &[], other, &[]);
        self.b.switch_to_block(direct);
        (base, other)
    }

    // net/core/filter.c: bpf_convert_ctx_access (a field load becomes one
    // load from the sk_buff, zero-extended from the field's width).
    /// A direct field load to `done` (value, SCALAR); the current block is
    /// then the path for other contexts.
    fn load_direct(&mut self, d: DirectAccess, done: Block) {
        let (base, other) = self.branch_direct();
        let o = d.host_off as i32;
        let v = if d.host_len == 8 {
            self.b.ins().load(I64, MF, base, o)
        } else if d.net_order && d.host_len == 2 {
            let v = self.b.ins().load(I16, MF, base, o);
            let v = if cfg!(target_endian = "little") {
                self.b.ins().bswap(v)
            } else {
                v
            };
            self.b.ins().uextend(I64, v)
        } else {
            let v = self.b.ins().load(mem_type(d.host_len), MF, base, o);
            self.b.ins().uextend(I64, v)
        };
        let t = self.b.ins().iconst(I64, SCALAR as i64);
        self.b.ins().jump(done, &[v.into(), t.into()]);
        self.b.switch_to_block(other);
    }

    // net/core/filter.c: bpf_convert_ctx_access (a field store becomes one
    // store of the field's width; queue_mapping skips values >= NO_QUEUE_MAPPING).
    /// A direct field store of `v`, then to `done`; the current block is then
    /// the path for other contexts.
    fn store_direct(&mut self, d: DirectAccess, v: Value, done: Block) {
        let (base, other) = self.branch_direct();
        if let FieldStore::StoreBelow(limit) = d.store {
            let store = self.b.create_block();
            let over = self
                .b
                .ins()
                .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, v, limit as i64);
            self.b.ins().brif(over, done, &[], store, &[]);
            self.b.switch_to_block(store);
        }
        let o = d.host_off as i32;
        match d.host_len {
            1 => self.b.ins().istore8(MF, v, base, o),
            2 => self.b.ins().istore16(MF, v, base, o),
            4 => self.b.ins().istore32(MF, v, base, o),
            _ => self.b.ins().store(MF, v, base, o),
        };
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(other);
    }

    /// A proven access to raw memory (not the context, whose fields are rewritten).
    fn proven_raw(&self, pc: usize) -> bool {
        self.proven(pc).is_some_and(|k| k != MemKind::Ctx)
    }

    /// The native atomic in block `fast`, then to `done` with the old value.
    #[allow(clippy::too_many_arguments)]
    fn native_atomic(
        &mut self,
        fast: Block,
        done: Block,
        a: Value,
        src: Value,
        r0: Value,
        rmw: Option<AtomicRmwOp>,
        size: u32,
    ) {
        self.b.switch_to_block(fast);
        let ty = if size == 8 { I64 } else { I32 };
        let x = if size == 8 {
            src
        } else {
            self.b.ins().ireduce(I32, src)
        };
        let old = match rmw {
            Some(op) => self.b.ins().atomic_rmw(ty, MF, op, a, x),
            None => {
                let e = if size == 8 {
                    r0
                } else {
                    self.b.ins().ireduce(I32, r0)
                };
                self.b.ins().atomic_cas(MF, a, e, x)
            }
        };
        let old = if size == 8 {
            old
        } else {
            self.b.ins().uextend(I64, old)
        };
        self.b.ins().jump(done, &[old.into()]);
    }
}
