//! Loads and stores (kernel/bpf/verifier.c: check_mem_access and what it calls):
//! per pointer type, the bounds the kernel proves: the packet within the range a
//! comparison with data_end established, map values within value_size, ctx through
//! the program type's field rules, helper memory within its size.

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::do_check::RegArg;
use super::env::{Env, VResult};
use super::scalar_ops;
use super::state::{Reg, RegType};
use super::{MemKind, EACCES};

/// `BPF_MAX_VAR_OFF`.
const BPF_MAX_VAR_OFF: i64 = 1 << 29;

/// `enum bpf_access_type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
}

impl<'a> Env<'a> {
    /// BPF_LDX (do_check's load case).
    pub fn check_ldx(&mut self, insn: Insn) -> VResult<()> {
        self.check_reg_arg(insn.src, RegArg::SrcOp)?;
        self.check_reg_arg(insn.dst, RegArg::DstOpNoMark)?;
        let sx = insn.mode() == BPF_MEMSX;
        self.check_mem_access(
            insn.src as usize,
            insn.off as i32,
            insn.size_bytes() as i32,
            Access::Read,
            Some(insn.dst as usize),
            sx,
        )
    }

    /// BPF_STX | BPF_MEM.
    pub fn check_stx(&mut self, insn: Insn) -> VResult<()> {
        self.check_reg_arg(insn.src, RegArg::SrcOp)?;
        self.check_reg_arg(insn.dst, RegArg::SrcOp)?;
        self.check_mem_access(
            insn.dst as usize,
            insn.off as i32,
            insn.size_bytes() as i32,
            Access::Write,
            Some(insn.src as usize),
            false,
        )
    }

    /// BPF_ST | BPF_MEM.
    pub fn check_st(&mut self, insn: Insn) -> VResult<()> {
        self.check_reg_arg(insn.dst, RegArg::SrcOp)?;
        self.check_mem_access(
            insn.dst as usize,
            insn.off as i32,
            insn.size_bytes() as i32,
            Access::Write,
            None,
            false,
        )
    }

    /// kernel/bpf/verifier.c: check_atomic (check_atomic_rmw, load-acquire,
    /// store-release).
    pub fn check_atomic(&mut self, insn: Insn) -> VResult<()> {
        let size = insn.size_bytes() as i32;
        match insn.imm {
            BPF_LOAD_ACQ => {
                let ld = Insn {
                    code: BPF_LDX | insn.size() | BPF_MEM,
                    ..insn
                };
                return self.check_ldx(ld);
            }
            BPF_STORE_REL => {
                let st = Insn {
                    code: BPF_STX | insn.size() | BPF_MEM,
                    ..insn
                };
                return self.check_stx(st);
            }
            _ => {}
        }
        if size != 4 && size != 8 {
            return self.einval("invalid atomic operand size");
        }
        self.check_reg_arg(insn.src, RegArg::SrcOp)?;
        self.check_reg_arg(insn.dst, RegArg::SrcOp)?;
        if insn.imm == BPF_CMPXCHG {
            self.check_reg_arg(0, RegArg::SrcOp)?;
        }
        let src = self.reg(insn.src as usize);
        if !src.is_scalar() && !self.opts.privileged {
            return self.eacces(format!("R{} leaks addr into mem", insn.src));
        }
        let dst = self.reg(insn.dst as usize);
        if matches!(dst.ty, RegType::Ctx | RegType::Packet | RegType::PacketMeta) {
            return self.eacces(format!(
                "BPF_ATOMIC stores into R{} {} is not allowed",
                insn.dst,
                dst.type_str()
            ));
        }
        let fetch = insn.imm & BPF_FETCH != 0;
        let load_reg = if insn.imm == BPF_CMPXCHG {
            Some(0)
        } else if fetch {
            Some(insn.src as usize)
        } else {
            None
        };
        // check_ptr_alignment with strict_alignment_once (the stack is checked
        // in check_mem_access).
        let desc = match dst.ty {
            // check_ptr_alignment switches on the type with its flags.
            RegType::MapValue | RegType::MapKey if dst.maybe_null => Some(""),
            RegType::MapValue => Some("value "),
            RegType::MapKey => Some("key "),
            RegType::Mem => Some(""),
            _ => None,
        };
        if let Some(desc) = desc {
            self.check_generic_alignment(&dst, desc, insn.off as i32, size)?;
        }
        // Read then write the same location (the kernel checks both ways).
        self.check_mem_access(
            insn.dst as usize,
            insn.off as i32,
            size,
            Access::Read,
            load_reg,
            false,
        )?;
        self.check_mem_access(
            insn.dst as usize,
            insn.off as i32,
            size,
            Access::Write,
            None,
            false,
        )
    }

    /// kernel/bpf/verifier.c: check_mem_access. `value_regno`: the register loaded
    /// into (read) or stored from (write); None for BPF_ST and plain atomics.
    pub fn check_mem_access(
        &mut self,
        regno: usize,
        off: i32,
        size: i32,
        t: Access,
        value_regno: Option<usize>,
        is_ldsx: bool,
    ) -> VResult<()> {
        let reg = self.reg(regno);
        if reg.ty == RegType::Stack {
            self.check_generic_alignment(&reg, "stack ", off, size)?;
        }
        let off = off.saturating_add(reg.off);
        let kind = match (reg.ty, reg.maybe_null) {
            (RegType::MapValue, false) => {
                self.check_map_value_access(regno, &reg, off, size, t, value_regno)?;
                MemKind::MapValue {
                    map: reg.map.map(|m| m.index as usize).unwrap_or(0),
                }
            }
            (RegType::MapKey, false) => {
                if t == Access::Write {
                    return self.eacces(format!("write to change key R{regno} not allowed"));
                }
                let ks = reg.map.and_then(|m| self.map_attr(m)).map(|a| a.key_size);
                self.check_mem_region_access(regno, &reg, off, size, ks.unwrap_or(0), false)?;
                self.mark_loaded_unknown(value_regno, t);
                MemKind::MapKey
            }
            (RegType::Mem, false) => {
                if t == Access::Write && reg.rdonly {
                    return self.eacces(format!("R{regno} cannot write into {}", reg.type_str()));
                }
                self.check_mem_region_access(regno, &reg, off, size, reg.range as u32, false)?;
                self.mark_loaded_unknown(value_regno, t);
                MemKind::Mem
            }
            (RegType::Ctx, _) => {
                self.check_ctx_mem_access(regno, off, size, t, value_regno, is_ldsx)?;
                MemKind::Ctx
            }
            (RegType::Stack, _) => {
                self.check_stack_access(regno, &reg, off, size, t, value_regno)?;
                MemKind::Stack
            }
            (RegType::Packet | RegType::PacketMeta, _) => {
                if t == Access::Write && !super::ctx::may_write_packet(self.opts.prog_type) {
                    return self.eacces("cannot write into packet");
                }
                self.check_packet_access(regno, &reg, off, size, false)?;
                self.mark_loaded_unknown(value_regno, t);
                MemKind::Packet
            }
            _ => {
                return self.eacces(format!("R{regno} invalid mem access '{}'", reg.type_str()));
            }
        };
        self.save_mem_kind(kind)?;
        if let Some(v) = value_regno {
            let r = self.reg(v);
            if t == Access::Read && size < 8 && r.is_scalar() {
                let s = if is_ldsx {
                    scalar_ops::sext(r.s, size as u8)
                } else {
                    scalar_ops::coerce(r.s, size as u8)
                };
                let mut nr = Reg::scalar(s);
                // A narrowing fill keeps no link to the spilled register.
                nr.id = if s == r.s { r.id } else { 0 };
                self.set_reg(v, nr);
            }
        }
        Ok(())
    }

    fn mark_loaded_unknown(&mut self, value_regno: Option<usize>, t: Access) {
        if let (Some(v), Access::Read) = (value_regno, t) {
            self.set_reg(v, Reg::unknown());
        }
    }

    /// kernel/bpf/verifier.c: check_generic_ptr_alignment, strict (the stack
    /// always; atomics: `strict_alignment_once`). `desc`: the kernel's
    /// pointer_desc ("stack ", "value ", ...).
    fn check_generic_alignment(
        &mut self,
        reg: &Reg,
        desc: &str,
        off: i32,
        size: i32,
    ) -> VResult<()> {
        if size <= 1 {
            return Ok(());
        }
        let total = reg.off as i64 + off as i64;
        let t = reg.s.var_off.add(super::tnum::Tnum::const_(total as u64));
        if !t.is_aligned(size as u64) {
            // tnum_strn prints a constant as its value.
            let var = match reg.const_value() {
                Some(v) => format!("{}", v as i64),
                None => reg.s.var_off.to_string(),
            };
            return self.eacces(format!(
                "misaligned {desc}access off {var}+{}+{off} size {size}",
                reg.off
            ));
        }
        Ok(())
    }

    /// The map-value case of check_mem_access: check_map_access_type,
    /// check_map_access, and read-only maps loading constants.
    fn check_map_value_access(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i32,
        size: i32,
        t: Access,
        value_regno: Option<usize>,
    ) -> VResult<()> {
        let Some(m) = reg.map else {
            return self.eacces(format!("R{regno} invalid mem access 'map_value'"));
        };
        let value_size = self.map_attr(m).map(|a| a.value_size).unwrap_or(0);
        if t == Access::Write && (self.map_rdonly_prog(m) || reg.rdonly) {
            return self.eacces(format!(
                "write into map forbidden, value_size={value_size} off={off} size={size}"
            ));
        }
        if t == Access::Read && self.map_wronly_prog(m) {
            return self.eacces(format!(
                "read from map forbidden, value_size={value_size} off={off} size={size}"
            ));
        }
        self.check_mem_region_access(regno, reg, off, size, value_size, false)?;
        if let (Access::Read, Some(v)) = (t, value_regno) {
            let val = self.read_rdonly_map(m, reg, off, size);
            self.set_reg(v, val.map(Reg::known).unwrap_or_else(Reg::unknown));
        }
        Ok(())
    }

    /// bpf_map_direct_read: a frozen read-only map's bytes are constants.
    fn read_rdonly_map(
        &self,
        m: super::state::MapRef,
        reg: &Reg,
        off: i32,
        size: i32,
    ) -> Option<u64> {
        if m.inner || !self.map_rdonly_prog(m) {
            return None;
        }
        let map = self.opts.maps.get(m.index as usize)?;
        if !map.is_frozen() {
            return None;
        }
        let var = reg.const_value()?;
        let start = (off as i64).checked_add(var as i64)?;
        let start = usize::try_from(start).ok()?;
        let value = map.sys_lookup(&0u32.to_le_bytes()).ok()?;
        let bytes = match value {
            skiff_maps::MapValue::Single(b) => b,
            _ => return None,
        };
        let end = start.checked_add(size as usize)?;
        let slice = bytes.get(start..end)?;
        let mut buf = [0u8; 8];
        buf.get_mut(..slice.len())?.copy_from_slice(slice);
        Some(u64::from_le_bytes(buf))
    }

    /// kernel/bpf/verifier.c: check_mem_region_access
    pub fn check_mem_region_access(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i32,
        size: i32,
        mem_size: u32,
        zero_size_allowed: bool,
    ) -> VResult<()> {
        let smin = reg.s.smin_value;
        let off64 = off as i64;
        if smin < 0
            && (smin == i64::MIN
                || off64.checked_add(smin).is_none_or(|v| v != v as i32 as i64)
                || smin + off64 < 0)
        {
            return self.eacces(format!(
                "R{regno} min value is negative, either use unsigned index or do a if (index >=0) check."
            ));
        }
        let min_off = smin.saturating_add(off64);
        if let Err(e) =
            self.check_mem_access_size(regno, reg, min_off, size, mem_size, zero_size_allowed)
        {
            self.error_more(format!(
                "R{regno} min value is outside of the allowed memory range"
            ));
            return Err(e);
        }
        if reg.s.umax_value >= BPF_MAX_VAR_OFF as u64 {
            return self.eacces(format!(
                "R{regno} unbounded memory access, make sure to bounds check any such access"
            ));
        }
        let max_off = (reg.s.umax_value as i64).saturating_add(off64);
        if let Err(e) =
            self.check_mem_access_size(regno, reg, max_off, size, mem_size, zero_size_allowed)
        {
            self.error_more(format!(
                "R{regno} max value is outside of the allowed memory range"
            ));
            return Err(e);
        }
        Ok(())
    }

    /// kernel/bpf/verifier.c: __check_mem_access
    fn check_mem_access_size(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i64,
        size: i32,
        mem_size: u32,
        zero_size_allowed: bool,
    ) -> VResult<()> {
        let size_ok = size > 0 || (size == 0 && zero_size_allowed);
        if off >= 0 && size_ok && (off as u64).saturating_add(size as u64) <= mem_size as u64 {
            return Ok(());
        }
        // The kernel prints these with %d.
        let off = off as i32;
        let line = match reg.ty {
            RegType::MapKey => format!(
                "invalid access to map key, key_size={mem_size} off={off} size={size}"
            ),
            RegType::MapValue => format!(
                "invalid access to map value, value_size={mem_size} off={off} size={size}"
            ),
            RegType::Packet | RegType::PacketMeta | RegType::PacketEnd => format!(
                "invalid access to packet, off={off} size={size}, R{regno}(id={},off={off},r={mem_size})",
                reg.id
            ),
            _ => format!(
                "invalid access to memory, mem_size={mem_size} off={off} size={size}"
            ),
        };
        Err(self.error(EACCES, line))
    }

    /// kernel/bpf/verifier.c: check_packet_access
    pub fn check_packet_access(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i32,
        size: i32,
        zero_size_allowed: bool,
    ) -> VResult<()> {
        if reg.s.smin_value < 0 {
            return self.eacces(format!(
                "R{regno} min value is negative, either use unsigned index or do a if (index >=0) check."
            ));
        }
        if reg.range < 0 {
            // At or beyond data_end (mark_pkt_end): nothing is readable.
            return self.einval(format!("R{regno} offset is outside of the packet"));
        }
        let range = reg.range as u32;
        if let Err(e) =
            self.check_mem_access_size(regno, reg, off as i64, size, range, zero_size_allowed)
        {
            self.error_more(format!("R{regno} offset is outside of the packet"));
            return Err(e);
        }
        // Within u32: the range check bounded off + size, find_good_pkt_pointers umax.
        let end = (off as i64)
            .saturating_add(reg.s.umax_value.min(u32::MAX as u64) as i64)
            .saturating_add(size as i64 - 1)
            .clamp(0, u32::MAX as i64) as u32;
        self.max_pkt_offset = self.max_pkt_offset.max(end);
        Ok(())
    }

    /// The ctx case of check_mem_access: check_ptr_off_reg, check_ctx_access.
    fn check_ctx_mem_access(
        &mut self,
        regno: usize,
        off: i32,
        size: i32,
        t: Access,
        value_regno: Option<usize>,
        is_ldsx: bool,
    ) -> VResult<()> {
        let reg = self.reg(regno);
        if reg.off != 0 {
            return self.eacces(format!(
                "dereference of modified ctx ptr R{regno} off={} disallowed",
                reg.off
            ));
        }
        if reg.const_value() != Some(0) {
            return self.eacces(format!(
                "variable ctx access var_off={} disallowed",
                reg.s.var_off
            ));
        }
        let q = super::ctx::CtxQuery {
            off: off as i64,
            size: size as u32,
            write: t == Access::Write,
            is_ldsx,
            xdp_devmap: false,
        };
        let loaded = match super::ctx::check_ctx_access(self.opts.prog_type, &q) {
            Ok(a) => a,
            Err(msg) => return self.eacces(msg),
        };
        if let (Access::Read, Some(v)) = (t, value_regno) {
            use super::ctx::CtxAccess;
            let r = match loaded {
                CtxAccess::Scalar { .. } => Reg::unknown(),
                CtxAccess::PtrToPacket => Reg::ptr(RegType::Packet),
                CtxAccess::PtrToPacketMeta => Reg::ptr(RegType::PacketMeta),
                CtxAccess::PtrToPacketEnd => Reg::ptr(RegType::PacketEnd),
                CtxAccess::PtrToSockCommonOrNull => {
                    let mut r = Reg::ptr(RegType::SockCommon);
                    r.maybe_null = true;
                    r.id = self.new_id();
                    r
                }
            };
            self.set_reg(v, r);
        }
        Ok(())
    }
}
