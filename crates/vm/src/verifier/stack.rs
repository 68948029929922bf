//! The stack (kernel/bpf/verifier.c: check_stack_access_within_bounds,
//! check_stack_write_fixed_off / _var_off, check_stack_read_fixed_off / _var_off,
//! check_stack_range_initialized): slots track spilled registers byte by byte, so a
//! pointer spilled and filled stays a pointer and uninitialised bytes are known.

use skiff_isa::opcode::*;

use super::env::{Env, VResult};
use super::mem::Access;
use super::state::{FuncState, Reg, SlotType, StackSlot, BPF_REG_SIZE, MAX_BPF_STACK};
use super::{EACCES, EINVAL};

const BPF_MAX_VAR_OFF: i64 = 1 << 29;

/// Where a stack byte lives: slot index and the kernel's `slot % BPF_REG_SIZE`.
fn byte_pos(off: i64) -> Option<(usize, usize)> {
    if off >= 0 {
        return None;
    }
    let slot = (-off - 1) as usize;
    Some((slot / BPF_REG_SIZE, slot % BPF_REG_SIZE))
}

fn byte_type(f: &FuncState, off: i64) -> SlotType {
    byte_pos(off)
        .and_then(|(spi, i)| f.stack.get(spi).map(|s| s.slot_type[i]))
        .unwrap_or(SlotType::Invalid)
}

/// The kernel's helpers also accept a STACK_ZERO/MISC read of uninit bytes under root.
impl<'a> Env<'a> {
    fn frame_of(&mut self, reg: &Reg) -> Option<&mut FuncState> {
        self.cur.frames.get_mut(reg.frameno as usize)
    }

    /// kernel/bpf/verifier.c: check_stack_access_within_bounds; also grows the
    /// frame's stack and records the subprogram's stack depth.
    pub fn check_stack_within_bounds(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i32,
        size: i32,
        extra: &str,
    ) -> VResult<(i64, i64)> {
        let (min_off, max_off) = if let Some(v) = reg.const_value() {
            let min = (v as i64).wrapping_add(off as i64);
            (min, min + size as i64)
        } else {
            if reg.s.smax_value >= BPF_MAX_VAR_OFF || reg.s.smin_value <= -BPF_MAX_VAR_OFF {
                return self.eacces(format!(
                    "invalid unbounded variable-offset{extra} stack R{regno}"
                ));
            }
            (
                reg.s.smin_value + off as i64,
                reg.s.smax_value + off as i64 + size as i64,
            )
        };
        let allocated = self
            .cur
            .frames
            .get(reg.frameno as usize)
            .map(|f| f.allocated_stack())
            .unwrap_or(0) as i64;
        let write = extra == " write to";
        let min_valid = if write || self.opts.privileged {
            -(MAX_BPF_STACK as i64)
        } else {
            -allocated
        };
        let errno = if min_off < min_valid || min_off > -1 {
            Some(EACCES)
        } else if max_off > 0 {
            Some(EINVAL)
        } else {
            None
        };
        if let Some(errno) = errno {
            let line = if reg.const_value().is_some() {
                format!("invalid{extra} stack R{regno} off={off} size={size}")
            } else {
                format!(
                    "invalid variable-offset{extra} stack R{regno} var_off={} off={off} size={size}",
                    reg.s.var_off
                )
            };
            return Err(self.error(errno, line));
        }
        if let Some(f) = self.frame_of(reg) {
            f.grow_stack(min_off as i32);
        }
        self.note_stack_depth(reg.frameno as usize, -min_off);
        Ok((min_off, max_off))
    }

    fn note_stack_depth(&mut self, frameno: usize, depth: i64) {
        let Some(f) = self.cur.frames.get(frameno) else {
            return;
        };
        let start = f.subprog_start;
        if let Some(sp) = self.subprogs.iter_mut().find(|s| s.start == start) {
            sp.stack_depth = sp.stack_depth.max(depth as i32);
        }
    }

    /// The stack case of check_mem_access.
    pub fn check_stack_access(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i32,
        size: i32,
        t: Access,
        value_regno: Option<usize>,
    ) -> VResult<()> {
        let extra = if t == Access::Read {
            " read from"
        } else {
            " write to"
        };
        let (min_off, max_off) = self.check_stack_within_bounds(regno, reg, off, size, extra)?;
        if t == Access::Write && value_regno.is_some_and(|v| self.reg(v).ty.is_pointer()) {
            self.stack_pointers = true;
        }
        let fixed = reg.const_value().is_some();
        match (t, fixed) {
            (Access::Write, true) => self.stack_write_fixed(reg, min_off, size, value_regno),
            (Access::Write, false) => {
                self.stack_write_var(reg, min_off, max_off, value_regno);
                Ok(())
            }
            (Access::Read, true) => self.stack_read_fixed(reg, min_off, size, value_regno),
            (Access::Read, false) => {
                self.stack_read_var(reg, min_off, max_off, value_regno);
                Ok(())
            }
        }
    }

    /// kernel/bpf/verifier.c: check_stack_write_fixed_off
    fn stack_write_fixed(
        &mut self,
        ptr: &Reg,
        off: i64,
        size: i32,
        value_regno: Option<usize>,
    ) -> VResult<()> {
        let insn = self.insn();
        let value = value_regno.map(|v| self.reg(v));
        let Some((spi, _)) = byte_pos(off) else {
            return Ok(());
        };
        let aligned = off % BPF_REG_SIZE as i64 == 0;
        let is_st = insn.class() == BPF_ST;
        let spill = match value {
            Some(r) if aligned && r.is_scalar() => Some(r),
            None if aligned && is_st => Some(Reg::known(insn.imm as i64 as u64)),
            Some(r) if r.ty.is_pointer() => {
                if size != BPF_REG_SIZE as i32 {
                    return self.eacces("invalid size of register spill");
                }
                if ptr.frameno as usize != self.cur.curframe()
                    && r.ty == super::state::RegType::Stack
                {
                    return self
                        .einval("cannot spill pointers to stack into stack frame of the caller");
                }
                Some(r)
            }
            _ => None,
        };
        self.mark_stack_written(ptr.frameno as usize, off, size);
        if spill.is_some_and(|r| r.is_scalar()) {
            // A scalar spill: backtracking follows it from a later fill.
            let frameno = ptr.frameno;
            self.note_stack_access(frameno, off);
        }
        let Some(f) = self.frame_of(ptr) else {
            return Ok(());
        };
        let Some(slot) = f.stack.get_mut(spi) else {
            return Ok(());
        };
        match spill {
            Some(mut r) => {
                // save_register_state: a narrowing spill keeps no link.
                if size < 8 && r.is_scalar() && r.s.umax_value >> (size * 8) != 0 {
                    r.id = 0;
                }
                slot.spilled = r;
                for i in (0..BPF_REG_SIZE).rev() {
                    if i >= BPF_REG_SIZE - size as usize {
                        slot.slot_type[i] = SlotType::Spill;
                    } else if slot.slot_type[i] != SlotType::Zero
                        && slot.slot_type[i] != SlotType::Invalid
                    {
                        slot.slot_type[i] = SlotType::Misc;
                    }
                }
            }
            None => {
                let zero = match value {
                    Some(r) => r.is_null(),
                    None => is_st && insn.imm == 0,
                };
                let ty = if zero { SlotType::Zero } else { SlotType::Misc };
                scrub_spill(slot);
                let (_, first) = byte_pos(off).unwrap_or((0, 0));
                for k in 0..size as usize {
                    if let Some(b) = first.checked_sub(k) {
                        slot.slot_type[b] = ty;
                    }
                }
            }
        }
        Ok(())
    }

    /// kernel/bpf/verifier.c: check_stack_write_var_off (privileged): every byte
    /// that may be written becomes STACK_MISC (or stays STACK_ZERO for a zero).
    fn stack_write_var(
        &mut self,
        ptr: &Reg,
        min_off: i64,
        max_off: i64,
        value_regno: Option<usize>,
    ) {
        let insn = self.insn();
        let zero = match value_regno.map(|v| self.reg(v)) {
            Some(r) => r.is_null(),
            None => insn.class() == BPF_ST && insn.imm == 0,
        };
        let Some(f) = self.frame_of(ptr) else {
            return;
        };
        let mut o = min_off;
        while o < max_off {
            if let Some((spi, i)) = byte_pos(o) {
                if let Some(slot) = f.stack.get_mut(spi) {
                    scrub_spill(slot);
                    let cur = slot.slot_type[i];
                    slot.slot_type[i] = if zero && cur == SlotType::Zero {
                        SlotType::Zero
                    } else {
                        SlotType::Misc
                    };
                }
            }
            o += 1;
        }
    }

    /// kernel/bpf/verifier.c: check_stack_read_fixed_off
    fn stack_read_fixed(
        &mut self,
        ptr: &Reg,
        off: i64,
        size: i32,
        dst: Option<usize>,
    ) -> VResult<()> {
        let Some((spi, _)) = byte_pos(off) else {
            return Ok(());
        };
        let frame = ptr.frameno as usize;
        self.mark_stack_read(frame, off, off + size as i64);
        let Some(slot) = self
            .cur
            .frames
            .get(frame)
            .and_then(|f| f.stack.get(spi))
            .copied()
        else {
            return Ok(());
        };
        if slot.is_spilled_reg() {
            let mut spill_size = 1;
            let mut i = BPF_REG_SIZE - 1;
            while i > 0 && slot.slot_type[i - 1] == SlotType::Spill {
                spill_size += 1;
                i -= 1;
            }
            let spilled = slot.spilled;
            if size == BPF_REG_SIZE as i32 && spill_size == BPF_REG_SIZE {
                if let Some(d) = dst {
                    self.set_reg(d, spilled);
                    if spilled.is_scalar() {
                        self.note_stack_access(ptr.frameno, off);
                    }
                }
                return Ok(());
            }
            if !spilled.is_scalar() {
                return self.eacces("invalid size of register fill");
            }
            let Some(d) = dst else {
                return Ok(());
            };
            if size as usize <= spill_size && off % BPF_REG_SIZE as i64 == 0 {
                let mut r = spilled;
                if size < 8 && spilled.s.umax_value >> (size * 8) != 0 {
                    r.id = 0;
                }
                self.set_reg(d, r);
                self.note_stack_access(ptr.frameno, off);
                return Ok(());
            }
            return self.read_bytes(frame, off, size, Some(d), spilled.is_null());
        }
        self.read_bytes(frame, off, size, dst, false)
    }

    /// The byte-wise part of a fixed-offset read: uninitialised bytes are refused
    /// unless privileged (allow_uninit_stack); all-zero bytes read as 0.
    fn read_bytes(
        &mut self,
        frame: usize,
        off: i64,
        size: i32,
        dst: Option<usize>,
        spill_zero: bool,
    ) -> VResult<()> {
        let mut zero_cnt = 0;
        let mut spill_cnt = 0;
        for i in 0..size as i64 {
            let ty = self
                .cur
                .frames
                .get(frame)
                .map(|f| byte_type(f, off + i))
                .unwrap_or(SlotType::Invalid);
            match ty {
                SlotType::Misc => {}
                SlotType::Zero => zero_cnt += 1,
                SlotType::Spill => spill_cnt += 1,
                SlotType::Invalid if self.opts.privileged => {}
                SlotType::Invalid => {
                    return self
                        .eacces(format!("invalid read from stack off {off}+{i} size {size}"));
                }
            }
        }
        if let Some(d) = dst {
            let r = if zero_cnt == size || (spill_cnt == size && spill_zero) {
                Reg::known(0)
            } else {
                Reg::unknown()
            };
            self.set_reg(d, r);
        }
        Ok(())
    }

    /// kernel/bpf/verifier.c: check_stack_read_var_off (mark_reg_stack_read).
    fn stack_read_var(&mut self, ptr: &Reg, min_off: i64, max_off: i64, dst: Option<usize>) {
        self.mark_stack_read(ptr.frameno as usize, min_off, max_off);
        let Some(d) = dst else {
            return;
        };
        let all_zero = self
            .cur
            .frames
            .get(ptr.frameno as usize)
            .is_some_and(|f| (min_off..max_off).all(|o| byte_type(f, o) == SlotType::Zero));
        self.set_reg(
            d,
            if all_zero {
                Reg::known(0)
            } else {
                Reg::unknown()
            },
        );
    }

    /// kernel/bpf/verifier.c: check_stack_range_initialized, for helper memory
    /// arguments: `clobber` when the helper writes the bytes.
    pub fn check_stack_range_initialized(
        &mut self,
        regno: usize,
        reg: &Reg,
        off: i32,
        size: i32,
        zero_size_allowed: bool,
        clobber: bool,
    ) -> VResult<()> {
        if size == 0 && zero_size_allowed {
            return Ok(());
        }
        // The kernel names the helper's access by its direction.
        let extra = if clobber { " write to" } else { " read from" };
        let (min_off, max_off) = self.check_stack_within_bounds(regno, reg, off, size, extra)?;
        let privileged = self.opts.privileged;
        let frame = reg.frameno as usize;
        // Helpers' accesses count as reads, writes too (the kernel cannot tell
        // whether the helper wrote every byte).
        self.mark_stack_read(frame, min_off, max_off);
        for o in min_off..max_off {
            let Some((spi, i)) = byte_pos(o) else {
                continue;
            };
            let Some(slot) = self
                .cur
                .frames
                .get_mut(frame)
                .and_then(|f| f.stack.get_mut(spi))
            else {
                continue;
            };
            let ty = slot.slot_type[i];
            let ok = match ty {
                SlotType::Misc | SlotType::Zero => true,
                SlotType::Invalid => privileged,
                SlotType::Spill => slot.spilled.is_scalar() || privileged,
            };
            if !ok {
                let rel = o - min_off;
                return self.eacces(format!(
                    "invalid read from stack R{regno} off {min_off}+{rel} size {size}"
                ));
            }
            if clobber {
                if slot.is_spilled_reg() {
                    scrub_spill(slot);
                }
                slot.slot_type[i] = SlotType::Misc;
            }
        }
        Ok(())
    }
}

/// A plain write over a spilled register turns its remaining spill bytes into data
/// (the kernel's scrub_spilled_slot).
fn scrub_spill(slot: &mut StackSlot) {
    if slot.slot_type.contains(&SlotType::Spill) {
        for t in slot.slot_type.iter_mut() {
            if *t == SlotType::Spill {
                *t = SlotType::Misc;
            }
        }
    }
    slot.spilled = Reg::not_init();
}
