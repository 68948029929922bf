//! Helper calls (kernel/bpf/verifier.c: check_helper_call, check_func_arg,
//! check_reg_type, check_helper_mem_access, check_mem_size_reg): each argument is
//! checked against the helper's prototype (`crate::proto`), then r0 gets the return
//! type, r1-r5 become unreadable and packet pointers die if the helper moves data.

use skiff_isa::opcode::*;
use skiff_isa::Insn;
use skiff_maps::MapType;

use super::do_check::{Next, RegArg};
use super::env::{Env, LoopInline, VResult};
use super::state::{MapRef, Reg, RegType};
use super::ENOTSUPP;
use crate::proto::{ArgType, HelperProto, RetType};

/// `__BPF_FUNC_MAX_ID` of 6.18.
const BPF_FUNC_MAX_ID: i32 = 212;
/// `BPF_MAX_VAR_SIZ`.
const BPF_MAX_VAR_SIZ: u64 = 1 << 29;

pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
pub const BPF_FUNC_MAP_UPDATE_ELEM: i32 = 2;
pub const BPF_FUNC_MAP_DELETE_ELEM: i32 = 3;
pub const BPF_FUNC_TAIL_CALL: i32 = 12;
pub const BPF_FUNC_SPIN_LOCK: i32 = 93;
pub const BPF_FUNC_SPIN_UNLOCK: i32 = 94;
pub const BPF_FUNC_FOR_EACH_MAP_ELEM: i32 = 164;
pub const BPF_FUNC_LOOP: i32 = 181;
pub const BPF_FUNC_RINGBUF_RESERVE: i32 = 131;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// perf_event_read, perf_event_output, perf_event_read_value, xdp_output.
const PERF_FUNCS: &[i32] = &[22, 25, 55, 121];
/// ringbuf_output, ringbuf_reserve, ringbuf_query, ringbuf_reserve_dynptr.
const RINGBUF_FUNCS: &[i32] = &[130, BPF_FUNC_RINGBUF_RESERVE, 134, 198];
/// map_push_elem, map_pop_elem, map_peek_elem.
const QUEUE_FUNCS: &[i32] = &[87, 88, 89];

/// `struct bpf_call_arg_meta`: what the arguments told about the call.
#[derive(Default, Clone, Copy)]
pub struct ArgMeta {
    pub map: Option<MapRef>,
    /// The previous memory argument: register and whether the helper writes it.
    pub mem_regno: Option<(usize, bool)>,
    pub mem_size: u64,
    pub ref_obj_id: u32,
    pub release_regno: Option<usize>,
    pub subprog: Option<u32>,
}

/// `func_id_name`.
pub fn func_name(id: i32) -> &'static str {
    u32::try_from(id)
        .ok()
        .and_then(skiff_isa::helper_name)
        .unwrap_or("unknown")
}

/// Names of the types `compatible_reg_types` lists for an argument type, for the
/// `R%d type=%s expected=%s` message.
fn expected_types(arg: ArgType) -> &'static [&'static str] {
    const MEM: &[&str] = &[
        "fp",
        "pkt",
        "pkt_meta",
        "map_key",
        "map_value",
        "mem",
        "ringbuf_mem",
        "buf",
        "trusted_ptr_",
    ];
    match arg {
        ArgType::PtrToMapKey
        | ArgType::PtrToMapValue
        | ArgType::PtrToUninitMapValue
        | ArgType::PtrToMem { .. }
        | ArgType::PtrToUninitMem
        | ArgType::PtrToFixedSizeMem { .. } => MEM,
        ArgType::PtrToLong | ArgType::PtrToInt => {
            &["fp", "pkt", "pkt_meta", "map_key", "map_value"]
        }
        ArgType::ConstSize | ArgType::ConstSizeOrZero | ArgType::ConstAllocSizeOrZero => {
            &["scalar"]
        }
        ArgType::ConstMapPtr => &["map_ptr"],
        ArgType::PtrToCtx | ArgType::PtrToCtxOrNull => &["ctx"],
        ArgType::PtrToFunc => &["func"],
        ArgType::PtrToStackOrNull => &["fp"],
        ArgType::PtrToConstStr | ArgType::PtrToTimer => &["map_value"],
        ArgType::PtrToSpinLock => &["map_value", "ptr_"],
        ArgType::PtrToAllocMemRelease => &["ringbuf_mem"],
        ArgType::PtrToSockCommon | ArgType::PtrToBtfIdSockCommon => {
            &["sock_common", "sock", "tcp_sock", "xdp_sock", "ptr_"]
        }
        ArgType::PtrToSocket { .. } => &["sock"],
        ArgType::PtrToDynptr => &["fp", "dynptr_ptr"],
        ArgType::PtrToKptr => &["map_value"],
        ArgType::DontCare | ArgType::Anything => &[],
    }
}

/// `compatible_reg_types` membership.
fn type_ok(arg: ArgType, r: &Reg) -> bool {
    use RegType::*;
    let mem_ok = |rdonly_ok: bool| {
        (!r.rdonly || rdonly_ok)
            && !r.maybe_null
            && matches!(
                r.ty,
                Stack | Packet | PacketMeta | MapKey | MapValue | Mem | BtfId
            )
    };
    match arg {
        ArgType::PtrToMapKey | ArgType::PtrToMapValue => mem_ok(true),
        ArgType::PtrToMem { rdonly, .. } => mem_ok(rdonly),
        ArgType::PtrToFixedSizeMem { rdonly, .. } => mem_ok(rdonly),
        ArgType::PtrToUninitMapValue | ArgType::PtrToUninitMem => mem_ok(false),
        ArgType::PtrToLong | ArgType::PtrToInt => {
            !r.maybe_null && matches!(r.ty, Stack | Packet | PacketMeta | MapKey | MapValue)
        }
        ArgType::ConstSize | ArgType::ConstSizeOrZero | ArgType::ConstAllocSizeOrZero => {
            r.is_scalar()
        }
        ArgType::ConstMapPtr => r.ty == ConstPtrToMap && !r.maybe_null,
        ArgType::PtrToCtx | ArgType::PtrToCtxOrNull => r.ty == Ctx,
        ArgType::PtrToFunc => r.ty == Func,
        ArgType::PtrToStackOrNull => r.ty == Stack,
        ArgType::PtrToConstStr | ArgType::PtrToTimer | ArgType::PtrToKptr => {
            r.ty == MapValue && !r.maybe_null
        }
        ArgType::PtrToSpinLock => r.ty == MapValue && !r.maybe_null,
        ArgType::PtrToAllocMemRelease => r.ty == Mem && r.ringbuf && !r.maybe_null,
        ArgType::PtrToSockCommon | ArgType::PtrToBtfIdSockCommon => {
            !r.maybe_null && matches!(r.ty, SockCommon | Socket | TcpSock | XdpSock | BtfId)
        }
        ArgType::PtrToSocket { .. } => r.ty == Socket && !r.maybe_null,
        ArgType::PtrToDynptr => r.ty == Stack,
        ArgType::DontCare | ArgType::Anything => true,
    }
}

fn may_be_null(arg: ArgType) -> bool {
    matches!(
        arg,
        ArgType::PtrToMem {
            maybe_null: true,
            ..
        } | ArgType::PtrToCtxOrNull
            | ArgType::PtrToStackOrNull
            | ArgType::PtrToSocket { maybe_null: true }
    )
}

impl<'a> Env<'a> {
    /// BPF_JMP | BPF_CALL: helper, bpf-to-bpf call or kfunc.
    pub fn check_call(&mut self, insn: Insn) -> VResult<Next> {
        if self.cur.active_lock().is_some() {
            let unlock = insn.src == 0 && insn.imm == BPF_FUNC_SPIN_UNLOCK;
            if insn.src != BPF_PSEUDO_CALL && !unlock {
                return self.einval("function calls are not allowed while holding a lock");
            }
        }
        match insn.src {
            BPF_PSEUDO_CALL => self.check_func_call(insn),
            BPF_PSEUDO_KFUNC_CALL => Err(self.error(ENOTSUPP, "not supported: kfunc calls")),
            _ => self.check_helper_call(insn),
        }
    }

    /// Looks the helper up: unknown ids, helpers of other program types, GPL.
    fn helper_def(&mut self, func_id: i32) -> VResult<crate::HelperDef> {
        let name = func_name(func_id);
        if !(0..BPF_FUNC_MAX_ID).contains(&func_id) {
            return self.einval(format!("invalid func {name}#{func_id}"));
        }
        let def = self.opts.helpers.get(func_id as u32).copied();
        if def.is_none() {
            // A helper the kernel has but skiff does not implement: say so,
            // rather than the kernel's "cannot use" (which would claim the
            // kernel refuses it for this program type).
            return Err(self.error(
                ENOTSUPP,
                format!("not supported: helper {name}#{func_id} (skiff does not implement it)"),
            ));
        }
        let allowed = def.is_some_and(|d| {
            d.prog_types.is_empty() || d.prog_types.contains(&self.opts.prog_type)
        });
        let Some(def) = def.filter(|_| allowed) else {
            return self.einval(format!(
                "program of this type cannot use helper {name}#{func_id}"
            ));
        };
        if !def.proto.declared {
            return Err(self.error(
                ENOTSUPP,
                format!("not supported: no prototype for helper {name}#{func_id}"),
            ));
        }
        if def.proto.gpl_only && !self.opts.gpl {
            return self
                .einval("cannot call GPL-restricted function from non-GPL compatible program");
        }
        Ok(def)
    }

    /// kernel/bpf/verifier.c: check_helper_call
    fn check_helper_call(&mut self, insn: Insn) -> VResult<Next> {
        let func_id = insn.imm;
        let def = self.helper_def(func_id)?;
        let proto = def.proto;
        let mut meta = ArgMeta::default();
        for (i, arg) in proto.args.iter().enumerate() {
            self.check_func_arg(i + 1, *arg, &mut meta, &proto, func_id)?;
        }
        self.record_func_map(meta.map);
        if func_id == BPF_FUNC_LOOP {
            self.update_loop_inline_state(meta.subprog);
        }
        if let Some(ia) = self.iaux.get_mut(self.insn_idx) {
            ia.helper = Some(super::HelperSite::of(&def));
        }
        if let Some(regno) = meta.release_regno {
            if meta.ref_obj_id != 0 {
                self.release_reference(meta.ref_obj_id);
            } else if !self.reg(regno).is_null() {
                let name = func_name(func_id);
                return self.einval(format!(
                    "func {name}#{func_id} reference has not been acquired before"
                ));
            }
        }
        self.check_map_func_compatibility(meta.map, func_id)?;
        match func_id {
            BPF_FUNC_TAIL_CALL => self.check_resource_leak(false, true, "tail_call")?,
            BPF_FUNC_SPIN_LOCK => self.process_spin_lock(1, true)?,
            BPF_FUNC_SPIN_UNLOCK => self.process_spin_lock(1, false)?,
            _ => {}
        }
        let pre_call = self.cur.clone();
        for r in 0..=5 {
            self.set_reg(r, Reg::not_init());
        }
        self.set_return(proto.ret, &meta, func_id)?;
        // A tail call from a subprogram may have run programs that changed the
        // packet when its caller goes on: the kernel counts it among what makes
        // a subprogram change packet data (a main program's tail call does not
        // invalidate its pointers on this kernel).
        let tail_call_in_subprog = func_id == BPF_FUNC_TAIL_CALL && self.cur.curframe() > 0;
        if proto.changes_pkt_data || tail_call_in_subprog {
            self.clear_all_pkt_pointers();
        }
        if matches!(func_id, BPF_FUNC_LOOP | BPF_FUNC_FOR_EACH_MAP_ELEM) {
            let start = self.push_callback_call(pre_call, func_id, &meta)?;
            return Ok(Next::Goto(start));
        }
        Ok(Next::Step(1))
    }

    /// kernel/bpf/verifier.c: update_loop_inline_state (loop_flag_is_zero:
    /// r4 a known 0).
    fn update_loop_inline_state(&mut self, subprog: Option<u32>) {
        let flags_zero = self.reg(4).const_value() == Some(0);
        // (A PTR_TO_FUNC register's `subprog` is the callback's first insn.)
        let callback = subprog
            .map(|s| s as usize)
            .filter(|&s| self.subprogs.iter().any(|p| p.start == s));
        let Some(ia) = self.iaux.get_mut(self.insn_idx) else {
            return;
        };
        ia.loop_inline = match (ia.loop_inline, callback) {
            (LoopInline::Unseen, Some(c)) if flags_zero => LoopInline::Fit(c),
            (LoopInline::Fit(was), Some(c)) if flags_zero && was == c => LoopInline::Fit(c),
            _ => LoopInline::Unfit,
        };
    }

    /// The return register (check_helper_call's `switch (base_type(ret_type))`).
    fn set_return(&mut self, ret: RetType, meta: &ArgMeta, func_id: i32) -> VResult<()> {
        let mut r0 = match ret {
            RetType::Integer => Reg::unknown(),
            RetType::Void => Reg::not_init(),
            RetType::PtrToMapValue | RetType::PtrToMapValueOrNull => {
                let Some(m) = meta.map else {
                    return self.einval("kernel subsystem misconfigured verifier");
                };
                let mut r = self.map_value_reg(m);
                r.maybe_null |= ret == RetType::PtrToMapValueOrNull;
                r
            }
            RetType::PtrToAllocMemOrNull => {
                let mut r = Reg::ptr(RegType::Mem);
                r.ringbuf = true;
                r.maybe_null = true;
                r.range = meta.mem_size.min(i32::MAX as u64) as i32;
                r
            }
            RetType::PtrToSocketOrNull => null_ptr(RegType::Socket),
            RetType::PtrToTcpSockOrNull => null_ptr(RegType::TcpSock),
            RetType::PtrToSockCommonOrNull => null_ptr(RegType::SockCommon),
            RetType::PtrToBtfIdOrNull => null_ptr(RegType::BtfId),
            RetType::PtrToMemOrBtfId { maybe_null } => Reg {
                maybe_null,
                ..Reg::ptr(RegType::BtfId)
            },
        };
        if r0.maybe_null {
            r0.id = self.new_id();
        } else if r0.ty == RegType::MapValue {
            // bpf_spin_lock pairs lock and unlock by the value's id.
            r0.id = self.new_id();
        }
        if is_acquire_function(func_id, ret) {
            let id = self.acquire_reference(self.insn_idx);
            r0.id = id;
            r0.ref_obj_id = id;
        }
        self.set_reg(0, r0);
        Ok(())
    }

    /// A pointer to a value of `m` (map-in-map values are the inner map; an
    /// XSKMAP's are sockets), as mark_ptr_not_null_reg types them.
    fn map_value_reg(&self, m: MapRef) -> Reg {
        let mut r = Reg::ptr(RegType::MapValue);
        r.map = Some(m);
        match self.map_type(m) {
            Some(MapType::ArrayOfMaps | MapType::HashOfMaps) if !m.inner => {
                r.ty = RegType::ConstPtrToMap;
                r.map = Some(MapRef {
                    index: m.index,
                    inner: true,
                });
            }
            Some(MapType::Xskmap) => r.ty = RegType::XdpSock,
            _ => {}
        }
        r
    }

    /// kernel/bpf/verifier.c: clear_all_pkt_pointers (mark_reg_invalid: privileged
    /// leaves an unknown scalar).
    fn clear_all_pkt_pointers(&mut self) {
        let privileged = self.opts.privileged;
        self.cur.for_each_reg(|r| {
            if matches!(
                r.ty,
                RegType::Packet | RegType::PacketMeta | RegType::PacketEnd
            ) {
                *r = if privileged {
                    Reg::unknown()
                } else {
                    Reg::not_init()
                };
            }
        });
    }

    /// kernel/bpf/verifier.c: record_func_map (the kernel's map_ptr_state).
    fn record_func_map(&mut self, map: Option<MapRef>) {
        let idx = self.insn_idx;
        let Some(m) = map else {
            return;
        };
        let Some(ia) = self.iaux.get_mut(idx) else {
            return;
        };
        match ia.map {
            None if !ia.map_poisoned => ia.map = Some(m),
            Some(prev) if prev != m => {
                ia.map = None;
                ia.map_poisoned = true;
            }
            _ => {}
        }
    }

    /// kernel/bpf/verifier.c: check_func_arg
    fn check_func_arg(
        &mut self,
        regno: usize,
        arg: ArgType,
        meta: &mut ArgMeta,
        proto: &HelperProto,
        func_id: i32,
    ) -> VResult<()> {
        if arg == ArgType::DontCare {
            return Ok(());
        }
        self.check_reg_arg(regno as u8, RegArg::SrcOp)?;
        let reg = self.reg(regno);
        if arg == ArgType::Anything {
            if reg.ty.is_pointer() && !self.opts.privileged {
                return self.eacces(format!("R{regno} leaks addr into helper function"));
            }
            return Ok(());
        }
        if reg.ty.is_pkt_pointer() && !proto.pkt_access {
            return self.eacces("helper access to the packet is not allowed");
        }
        let null_ok = reg.is_null() && may_be_null(arg);
        if !null_ok && !type_ok(arg, &reg) {
            return self.reg_type_mismatch(regno, &reg, arg);
        }
        if !null_ok {
            self.check_func_arg_reg_off(regno, &reg, arg)?;
        }
        if arg == ArgType::PtrToAllocMemRelease {
            if reg.ref_obj_id == 0 && !reg.is_null() {
                return self.einval(format!(
                    "R{regno} must be referenced when passed to release function"
                ));
            }
            meta.release_regno = Some(regno);
        }
        if reg.ref_obj_id != 0 {
            if meta.ref_obj_id != 0 {
                return self.eacces(format!(
                    "more than one arg with ref_obj_id R{regno} {} {}",
                    reg.ref_obj_id, meta.ref_obj_id
                ));
            }
            meta.ref_obj_id = reg.ref_obj_id;
        }
        self.check_arg_by_type(regno, &reg, arg, meta, func_id)
    }

    /// The `switch (base_type(arg_type))` of check_func_arg.
    fn check_arg_by_type(
        &mut self,
        regno: usize,
        reg: &Reg,
        arg: ArgType,
        meta: &mut ArgMeta,
        func_id: i32,
    ) -> VResult<()> {
        let _ = func_id;
        match arg {
            ArgType::ConstMapPtr => meta.map = reg.map,
            ArgType::PtrToMapKey | ArgType::PtrToMapValue | ArgType::PtrToUninitMapValue => {
                let Some(m) = meta.map else {
                    let what = if arg == ArgType::PtrToMapKey {
                        "key"
                    } else {
                        "value"
                    };
                    return self.eacces(format!("invalid map_ptr to access map->{what}"));
                };
                let attr = self.map_attr(m);
                let size = if arg == ArgType::PtrToMapKey {
                    attr.map(|a| a.key_size)
                } else {
                    attr.map(|a| a.value_size)
                };
                let write = arg == ArgType::PtrToUninitMapValue;
                self.check_helper_mem_access(regno, reg, size.unwrap_or(0) as u64, write, false)?;
            }
            ArgType::PtrToMem { .. } => meta.mem_regno = Some((regno, false)),
            ArgType::PtrToUninitMem => meta.mem_regno = Some((regno, true)),
            ArgType::PtrToFixedSizeMem { size, uninit, .. } if !reg.is_null() => {
                self.check_helper_mem_access(regno, reg, size as u64, uninit, false)?;
            }
            ArgType::ConstSize | ArgType::ConstSizeOrZero => {
                self.check_mem_size_reg(regno, reg, meta, arg == ArgType::ConstSizeOrZero)?;
            }
            ArgType::ConstAllocSizeOrZero => {
                let Some(v) = reg.const_value() else {
                    return self.eacces(format!("R{regno} is not a known constant'"));
                };
                meta.mem_size = v;
                self.mark_chain_precision(regno as u8);
            }
            ArgType::PtrToLong | ArgType::PtrToInt => {
                let size = if arg == ArgType::PtrToLong { 8 } else { 4 };
                self.check_helper_mem_access(regno, reg, size, true, false)?;
            }
            ArgType::PtrToFunc => meta.subprog = Some(reg.subprog),
            ArgType::PtrToConstStr => {
                if let Some(m) = reg.map {
                    if !self.map_rdonly_prog(m) {
                        return self.eacces(format!("R{regno} does not point to a readonly map'"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `R%d type=%s expected=%s` (check_reg_type).
    fn reg_type_mismatch<T>(&mut self, regno: usize, reg: &Reg, arg: ArgType) -> VResult<T> {
        let expected = expected_types(arg).join(", ");
        self.eacces(format!(
            "R{regno} type={} expected={expected}",
            reg.type_str()
        ))
    }

    /// kernel/bpf/verifier.c: check_func_arg_reg_off
    fn check_func_arg_reg_off(&mut self, regno: usize, reg: &Reg, arg: ArgType) -> VResult<()> {
        if arg == ArgType::PtrToAllocMemRelease {
            if reg.off != 0 {
                return self.einval(format!(
                    "R{regno} must have zero offset when passed to release func or trusted arg to kfunc"
                ));
            }
            return self.check_ptr_off_reg(regno, reg);
        }
        match reg.ty {
            RegType::Stack
            | RegType::Packet
            | RegType::PacketMeta
            | RegType::MapKey
            | RegType::MapValue
            | RegType::Mem
            | RegType::Scalar
            | RegType::BtfId => Ok(()),
            _ => self.check_ptr_off_reg(regno, reg),
        }
    }

    /// kernel/bpf/verifier.c: __check_ptr_off_reg (fixed_off_ok = false)
    pub fn check_ptr_off_reg(&mut self, regno: usize, reg: &Reg) -> VResult<()> {
        if reg.off < 0 {
            return self.eacces(format!(
                "negative offset {} ptr R{regno} off={} disallowed",
                reg.type_str(),
                reg.off
            ));
        }
        if reg.off != 0 {
            return self.eacces(format!(
                "dereference of modified {} ptr R{regno} off={} disallowed",
                reg.type_str(),
                reg.off
            ));
        }
        if reg.const_value() != Some(0) {
            return self.eacces(format!(
                "variable {} access var_off={} disallowed",
                reg.type_str(),
                reg.s.var_off
            ));
        }
        Ok(())
    }

    /// kernel/bpf/verifier.c: check_mem_size_reg
    fn check_mem_size_reg(
        &mut self,
        regno: usize,
        reg: &Reg,
        meta: &mut ArgMeta,
        zero_ok: bool,
    ) -> VResult<()> {
        if reg.s.smin_value < 0 {
            return self.eacces(format!(
                "R{regno} min value is negative, either use unsigned or 'var &= const'"
            ));
        }
        if reg.s.umin_value == 0 && !zero_ok {
            return self.eacces(format!(
                "R{regno} invalid zero-sized read: u64=[{},{}]",
                reg.s.umin_value as i64, reg.s.umax_value as i64
            ));
        }
        if reg.s.umax_value >= BPF_MAX_VAR_SIZ {
            return self.eacces(format!(
                "R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"
            ));
        }
        let Some((mem_regno, write)) = meta.mem_regno else {
            return Ok(());
        };
        let mem = self.reg(mem_regno);
        // A variable size must come from initialised memory (raw mode off).
        let raw = write && reg.const_value().is_some();
        self.check_helper_mem_access(mem_regno, &mem, reg.s.umax_value, raw, zero_ok)?;
        if write && !raw {
            self.check_helper_mem_access(mem_regno, &mem, reg.s.umax_value, true, zero_ok)?;
        }
        // The access was checked against the size's bounds.
        self.mark_chain_precision(regno as u8);
        meta.mem_size = reg.s.umax_value;
        Ok(())
    }

    /// kernel/bpf/verifier.c: check_helper_mem_access. `write`: the helper writes
    /// the bytes (raw mode on the stack: no initialisation needed).
    pub fn check_helper_mem_access(
        &mut self,
        regno: usize,
        reg: &Reg,
        size: u64,
        write: bool,
        zero_size_allowed: bool,
    ) -> VResult<()> {
        let size = size.min(i32::MAX as u64) as i32;
        match reg.ty {
            RegType::Packet | RegType::PacketMeta => {
                self.check_packet_access(regno, reg, reg.off, size, zero_size_allowed)
            }
            RegType::MapKey => {
                if write {
                    return self.eacces(format!("R{regno} cannot write into {}", reg.type_str()));
                }
                let ks = reg
                    .map
                    .and_then(|m| self.map_attr(m))
                    .map(|a| a.key_size)
                    .unwrap_or(0);
                self.check_mem_region_access(regno, reg, reg.off, size, ks, false)
            }
            RegType::MapValue => {
                let Some(m) = reg.map else {
                    return self.eacces(format!("R{regno} invalid mem access 'map_value'"));
                };
                let vs = self.map_attr(m).map(|a| a.value_size).unwrap_or(0);
                if write && (self.map_rdonly_prog(m) || reg.rdonly) {
                    return self.eacces(format!(
                        "write into map forbidden, value_size={vs} off={} size={size}",
                        reg.off
                    ));
                }
                if !write && self.map_wronly_prog(m) {
                    return self.eacces(format!(
                        "read from map forbidden, value_size={vs} off={} size={size}",
                        reg.off
                    ));
                }
                self.check_mem_region_access(regno, reg, reg.off, size, vs, zero_size_allowed)
            }
            RegType::Mem => {
                if write && reg.rdonly {
                    return self.eacces(format!("R{regno} cannot write into {}", reg.type_str()));
                }
                self.check_mem_region_access(
                    regno,
                    reg,
                    reg.off,
                    size,
                    reg.range as u32,
                    zero_size_allowed,
                )
            }
            RegType::Stack => self.check_stack_range_initialized(
                regno,
                reg,
                reg.off,
                size,
                zero_size_allowed,
                write,
            ),
            _ => {
                if zero_size_allowed && size == 0 && reg.is_null() {
                    return Ok(());
                }
                self.eacces(format!("R{regno} type={} expected=fp", reg.type_str()))
            }
        }
    }

    /// kernel/bpf/verifier.c: check_map_func_compatibility (the map side: which
    /// helpers a map type accepts).
    fn check_map_func_compatibility(&mut self, map: Option<MapRef>, func_id: i32) -> VResult<()> {
        let Some(m) = map else {
            return Ok(());
        };
        let Some(mt) = self.map_type(m) else {
            return Ok(());
        };
        // The map type's list of helpers, then the helper's list of map types.
        let ok = match mt {
            MapType::ProgArray => func_id == BPF_FUNC_TAIL_CALL,
            MapType::PerfEventArray => PERF_FUNCS.contains(&func_id),
            MapType::Ringbuf => RINGBUF_FUNCS.contains(&func_id),
            MapType::Devmap | MapType::DevmapHash | MapType::Xskmap => {
                matches!(func_id, BPF_FUNC_REDIRECT_MAP | BPF_FUNC_MAP_LOOKUP_ELEM)
            }
            MapType::Cpumap => func_id == BPF_FUNC_REDIRECT_MAP,
            MapType::ArrayOfMaps | MapType::HashOfMaps => func_id == BPF_FUNC_MAP_LOOKUP_ELEM,
            MapType::Queue | MapType::Stack => QUEUE_FUNCS.contains(&func_id),
            _ => true,
        };
        let func_ok = match func_id {
            BPF_FUNC_TAIL_CALL => mt == MapType::ProgArray,
            BPF_FUNC_REDIRECT_MAP => matches!(
                mt,
                MapType::Devmap | MapType::DevmapHash | MapType::Cpumap | MapType::Xskmap
            ),
            f if RINGBUF_FUNCS.contains(&f) => mt == MapType::Ringbuf,
            f if QUEUE_FUNCS.contains(&f) => matches!(mt, MapType::Queue | MapType::Stack),
            f if PERF_FUNCS.contains(&f) => mt == MapType::PerfEventArray,
            _ => true,
        };
        if ok && func_ok {
            return Ok(());
        }
        let name = func_name(func_id);
        self.einval(format!(
            "cannot pass map_type {} into func {name}#{func_id}",
            mt.kernel_id()
        ))
    }
}

fn null_ptr(ty: RegType) -> Reg {
    Reg {
        maybe_null: true,
        ..Reg::ptr(ty)
    }
}

/// `is_acquire_function`: the helpers whose result must be released.
fn is_acquire_function(func_id: i32, ret: RetType) -> bool {
    func_id == BPF_FUNC_RINGBUF_RESERVE
        || matches!(
            ret,
            RetType::PtrToSocketOrNull
                | RetType::PtrToTcpSockOrNull
                | RetType::PtrToSockCommonOrNull
        ) && matches!(func_id, 84 | 85 | 99)
}
