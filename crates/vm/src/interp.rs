//! The interpreter: one instruction, one obvious block (as uBPF's vm and the
//! kernel's ___bpf_prog_run). Semantics per RFC 9669; every memory access goes
//! through the run's region table.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use skiff_isa::*;

use crate::jit::runtime::SHADOW_SLOTS;
use crate::mem::{alu_tag, ctx_field_tag, Tag, Target, CTX, SCALAR, STACK};
use crate::state::{pack_tags, unpack_tag, ProgRef, RunState, ENTRY_TAGS, MAX_CALL_FRAMES};
use crate::VmError;

#[derive(Clone, Copy, Default)]
struct Frame {
    ret_pc: usize,
    saved: [u64; 4],
    saved_tags: [Tag; 4],
}

/// A load of `size` bytes at `addr` through a pointer tagged `tag`, checked
/// against that tag's region; the value and its tag (a spilled pointer's, a
/// packet pointer from the context, else SCALAR). `mem_only`: a helper's memory
/// argument, where the context is not memory. Both engines come here (the JIT
/// for what it does not do inline).
#[inline(always)]
pub(crate) fn load(
    st: &mut RunState,
    tag: Tag,
    addr: u64,
    size: u32,
    signed: bool,
    mem_only: bool,
) -> Result<(u64, Tag), VmError> {
    let v = match st.regions.check(tag, addr, size as u64, false)? {
        // SAFETY: check() put [addr, addr+size) inside the tag's live region.
        Target::Raw(p) => unsafe {
            match size {
                1 => *p as u64,
                2 => (p as *const u16).read_unaligned() as u64,
                4 => (p as *const u32).read_unaligned() as u64,
                _ => (p as *const u64).read_unaligned(),
            }
        },
        Target::Ctx(_) if mem_only => {
            return Err(VmError::OutOfBounds {
                addr,
                len: size as u64,
                write: false,
            })
        }
        Target::Ctx(off) => {
            let v = st.ctx.load(off, size)?;
            // Serve this field natively until a helper or a context store.
            let slot = (off / 4) as usize;
            if size == 4 && off % 4 == 0 && slot < SHADOW_SLOTS {
                st.jit.shadow[slot] = v;
                st.jit.shadow_valid |= 1 << slot;
            }
            v
        }
    };
    if signed {
        let v = match size {
            1 => v as u8 as i8 as i64 as u64,
            2 => v as u16 as i16 as i64 as u64,
            4 => v as u32 as i32 as i64 as u64,
            _ => v,
        };
        return Ok((v, SCALAR));
    }
    let t = match tag {
        STACK => st.jit.load_slot_tag(addr, size),
        CTX => {
            let start = st.regions.by_tag.get(CTX as usize).map_or(0, |r| r.start);
            ctx_field_tag(st.current.prog_type, addr.wrapping_sub(start), size)
        }
        _ => SCALAR,
    };
    Ok((v, t))
}

/// A store through a pointer tagged `tag` of `v`, itself tagged `vtag`.
#[inline(always)]
pub(crate) fn store(
    st: &mut RunState,
    tag: Tag,
    addr: u64,
    size: u32,
    v: u64,
    vtag: Tag,
) -> Result<(), VmError> {
    match st.regions.check(tag, addr, size as u64, true)? {
        // SAFETY: check() put [addr, addr+size) inside the tag's live writable region.
        Target::Raw(p) => unsafe {
            match size {
                1 => *p = v as u8,
                2 => (p as *mut u16).write_unaligned(v as u16),
                4 => (p as *mut u32).write_unaligned(v as u32),
                _ => (p as *mut u64).write_unaligned(v),
            }
        },
        Target::Ctx(off) => {
            // The fields the store touches are read through `load` again.
            let first = off / 4;
            let last = (off + size - 1) / 4;
            for slot in first..=last.min(SHADOW_SLOTS as u32 - 1) {
                st.jit.shadow_valid &= !(1u64 << slot);
            }
            return st.ctx.store(off, size, v);
        }
    }
    if tag == STACK {
        st.jit.store_slot_tags(addr, size, vtag);
    }
    Ok(())
}

/// BPF_STX | BPF_ATOMIC through a pointer tagged `tag`. Returns the value to
/// put in the fetch register, if any, and r0's for cmpxchg. The result is a
/// scalar, and so is the slot it changed.
pub(crate) fn atomic(
    st: &mut RunState,
    tag: Tag,
    addr: u64,
    size: u32,
    op: i32,
    src: u64,
    r0: u64,
) -> Result<(Option<u64>, Option<u64>), VmError> {
    if !addr.is_multiple_of(size as u64) {
        return Err(VmError::Misaligned {
            addr,
            len: size as u64,
        });
    }
    let p = match st.regions.check(tag, addr, size as u64, true)? {
        Target::Raw(p) => p,
        Target::Ctx(_) => return Err(VmError::Ctx("atomic operation on the context".into())),
    };
    if tag == STACK {
        st.jit.clear_slot_tags(addr, size as u64);
    }
    let fetch = op & BPF_FETCH != 0;
    // One body for both widths; `$t` is the atomic type, `$v` the integer type.
    macro_rules! rmw {
        ($t:ty, $v:ty) => {{
            // SAFETY: p is aligned to the access size (checked above) and inside a
            // live writable region.
            let a = unsafe { <$t>::from_ptr(p as *mut $v) };
            let s = src as $v;
            let old = match op {
                x if x & !BPF_FETCH == BPF_ADD as i32 => a.fetch_add(s, Ordering::SeqCst),
                x if x & !BPF_FETCH == BPF_OR as i32 => a.fetch_or(s, Ordering::SeqCst),
                x if x & !BPF_FETCH == BPF_AND as i32 => a.fetch_and(s, Ordering::SeqCst),
                x if x & !BPF_FETCH == BPF_XOR as i32 => a.fetch_xor(s, Ordering::SeqCst),
                BPF_XCHG => a.swap(s, Ordering::SeqCst),
                BPF_CMPXCHG => {
                    let old =
                        match a.compare_exchange(r0 as $v, s, Ordering::SeqCst, Ordering::SeqCst) {
                            Ok(v) | Err(v) => v,
                        };
                    return Ok((None, Some(old as u64)));
                }
                _ => return Err(VmError::NotSupported(format!("atomic op {op:#x}"))),
            };
            Ok((if fetch { Some(old as u64) } else { None }, None))
        }};
    }
    if size == 8 {
        rmw!(AtomicU64, u64)
    } else {
        rmw!(AtomicU32, u32)
    }
}

fn size_of(code: u8) -> u32 {
    match code & 0x18 {
        BPF_B => 1,
        BPF_H => 2,
        BPF_W => 4,
        _ => 8,
    }
}

/// 64-bit ALU operation (RFC 9669 semantics, incl. division by zero and sdiv/smod/movsx).
#[inline(always)]
fn alu64(op: u8, off: i16, dst: u64, src: u64) -> u64 {
    match op {
        BPF_ADD => dst.wrapping_add(src),
        BPF_SUB => dst.wrapping_sub(src),
        BPF_MUL => dst.wrapping_mul(src),
        BPF_DIV if off == 1 => {
            if src == 0 {
                0
            } else {
                (dst as i64).wrapping_div(src as i64) as u64
            }
        }
        BPF_DIV => dst.checked_div(src).unwrap_or(0),
        BPF_MOD if off == 1 => {
            if src == 0 {
                dst
            } else {
                (dst as i64).wrapping_rem(src as i64) as u64
            }
        }
        BPF_MOD => {
            if src == 0 {
                dst
            } else {
                dst % src
            }
        }
        BPF_OR => dst | src,
        BPF_AND => dst & src,
        BPF_XOR => dst ^ src,
        BPF_LSH => dst.wrapping_shl(src as u32 & 63),
        BPF_RSH => dst.wrapping_shr(src as u32 & 63),
        BPF_ARSH => ((dst as i64).wrapping_shr(src as u32 & 63)) as u64,
        BPF_NEG => (dst as i64).wrapping_neg() as u64,
        BPF_MOV => match off {
            8 => src as u8 as i8 as i64 as u64,
            16 => src as u16 as i16 as i64 as u64,
            32 => src as u32 as i32 as i64 as u64,
            _ => src,
        },
        _ => dst,
    }
}

#[inline(always)]
fn alu32(op: u8, off: i16, dst: u64, src: u64) -> u64 {
    let d = dst as u32;
    let s = src as u32;
    let r: u32 = match op {
        BPF_ADD => d.wrapping_add(s),
        BPF_SUB => d.wrapping_sub(s),
        BPF_MUL => d.wrapping_mul(s),
        BPF_DIV if off == 1 => {
            if s == 0 {
                0
            } else {
                (d as i32).wrapping_div(s as i32) as u32
            }
        }
        BPF_DIV => d.checked_div(s).unwrap_or(0),
        BPF_MOD if off == 1 => {
            if s == 0 {
                d
            } else {
                (d as i32).wrapping_rem(s as i32) as u32
            }
        }
        BPF_MOD => {
            if s == 0 {
                d
            } else {
                d % s
            }
        }
        BPF_OR => d | s,
        BPF_AND => d & s,
        BPF_XOR => d ^ s,
        BPF_LSH => d.wrapping_shl(s & 31),
        BPF_RSH => d.wrapping_shr(s & 31),
        BPF_ARSH => ((d as i32).wrapping_shr(s & 31)) as u32,
        BPF_NEG => (d as i32).wrapping_neg() as u32,
        BPF_MOV => match off {
            8 => s as u8 as i8 as i32 as u32,
            16 => s as u16 as i16 as i32 as u32,
            _ => s,
        },
        _ => d,
    };
    r as u64
}

#[inline(always)]
fn cond(op: u8, a: u64, b: u64, wide: bool) -> bool {
    let (a, b) = if wide {
        (a, b)
    } else {
        (a as u32 as u64, b as u32 as u64)
    };
    let (sa, sb) = if wide {
        (a as i64, b as i64)
    } else {
        (a as u32 as i32 as i64, b as u32 as i32 as i64)
    };
    match op {
        BPF_JEQ => a == b,
        BPF_JNE => a != b,
        BPF_JGT => a > b,
        BPF_JGE => a >= b,
        BPF_JLT => a < b,
        BPF_JLE => a <= b,
        BPF_JSET => a & b != 0,
        BPF_JSGT => sa > sb,
        BPF_JSGE => sa >= sb,
        BPF_JSLT => sa < sb,
        BPF_JSLE => sa <= sb,
        _ => false,
    }
}

fn byteswap(v: u64, bits: i32, to_be: bool) -> u64 {
    match (bits, to_be) {
        (16, true) => (v as u16).swap_bytes() as u64,
        (32, true) => (v as u32).swap_bytes() as u64,
        (64, true) => v.swap_bytes(),
        (16, false) => v as u16 as u64,
        (32, false) => v as u32 as u64,
        _ => v,
    }
}

/// Run from `entry` of `prog` (default: the current program) until the frame it
/// starts in exits, r1-r5 = `args` tagged `tags` (`pack_tags`). Errors carry the
/// failing instruction index.
pub(crate) fn execute(
    st: &mut RunState,
    prog: Option<ProgRef>,
    entry: usize,
    args: [u64; 5],
    tags: u64,
) -> Result<u64, (usize, VmError)> {
    // The budget lives in a local while the loop runs (a register, not a store per
    // instruction) and goes back to the run state around helper calls and at the end.
    let mut budget = st.jit.budget;
    // Counting is a separate instance of the loop: none of it when off.
    let covered = prog.unwrap_or(st.current).coverage.is_some();
    let r = if covered {
        run_loop::<true>(st, prog, entry, args, tags, &mut budget)
    } else {
        run_loop::<false>(st, prog, entry, args, tags, &mut budget)
    };
    st.jit.budget = budget;
    r
}

/// Registers and their tags (16 slots so a 4-bit register field indexes
/// without a bounds check; the validator already refused registers above r10).
struct Regs {
    v: [u64; 16],
    t: [Tag; 16],
}

impl Regs {
    /// A function's entry: r1-r5 and their tags, r10.
    fn new(args: [u64; 5], tags: u64, r10: u64) -> Regs {
        let [a1, a2, a3, a4, a5] = args;
        let t = |i| unpack_tag(tags, i);
        #[rustfmt::skip]
        let r = Regs {
            v: [0, a1, a2, a3, a4, a5, 0, 0, 0, 0, r10, 0, 0, 0, 0, 0],
            t: [SCALAR, t(0), t(1), t(2), t(3), t(4), SCALAR, SCALAR, SCALAR, SCALAR, STACK,
                SCALAR, SCALAR, SCALAR, SCALAR, SCALAR],
        };
        r
    }

    fn arg_tags(&self) -> u64 {
        pack_tags([self.t[1], self.t[2], self.t[3], self.t[4], self.t[5]])
    }
}

/// One ALU instruction on `r` (value and tag).
#[inline(always)]
fn alu_insn(r: &mut Regs, insn: Insn, class: u8, dst: usize, srcr: usize) {
    let op = insn.code & 0xf0;
    if op == BPF_END {
        // ALU: BPF_TO_LE/BPF_TO_BE; ALU64|K: unconditional bswap.
        let to_be = class == BPF_ALU64 || insn.code & BPF_X != 0;
        r.v[dst] = byteswap(r.v[dst], insn.imm, to_be);
        r.t[dst] = SCALAR;
        return;
    }
    let x = insn.code & BPF_X != 0;
    let src = if x {
        r.v[srcr]
    } else if class == BPF_ALU64 {
        insn.imm as i64 as u64
    } else {
        insn.imm as u32 as u64
    };
    if class == BPF_ALU64 {
        r.v[dst] = alu64(op, insn.off, r.v[dst], src);
        let stag = if x { r.t[srcr] } else { SCALAR };
        r.t[dst] = if op == BPF_MOV && (insn.off != 0 || !x) {
            SCALAR
        } else {
            alu_tag(op, r.t[dst], stag)
        };
    } else {
        r.v[dst] = alu32(op, insn.off, r.v[dst], src);
        r.t[dst] = SCALAR;
    }
}

fn run_loop<const COVER: bool>(
    st: &mut RunState,
    prog: Option<ProgRef>,
    entry: usize,
    args: [u64; 5],
    tags: u64,
    budget: &mut u64,
) -> Result<u64, (usize, VmError)> {
    let mut cur = prog.unwrap_or(st.current);
    let base_depth = st.jit.depth;
    let r10 = (st.stack_top - base_depth * skiff_isa::MAX_BPF_STACK) as u64;
    let mut r = Regs::new(args, tags, r10);
    let mut frames = [Frame::default(); MAX_CALL_FRAMES];
    let mut nframes = 0usize;
    let mut pc = entry;
    'program: loop {
        let prog = cur;
        let code: &[Insn] = &prog.code;
        loop {
            let Some(&insn) = code.get(pc) else {
                return Err((pc, VmError::BadJump));
            };
            if *budget == 0 {
                return Err((pc, VmError::Budget(st.env.budget)));
            }
            *budget -= 1;
            if COVER {
                if let Some(c) = &prog.coverage {
                    c.hit(pc);
                }
            }
            let dst = insn.dst as usize & 0xf;
            let srcr = insn.src as usize & 0xf;
            let class = insn.code & 0x07;
            match class {
                BPF_ALU | BPF_ALU64 => {
                    alu_insn(&mut r, insn, class, dst, srcr);
                    pc += 1;
                }
                BPF_JMP | BPF_JMP32 => {
                    let op = insn.code & 0xf0;
                    match op {
                        BPF_JA => {
                            let off = if class == BPF_JMP32 {
                                insn.imm as i64
                            } else {
                                insn.off as i64
                            };
                            pc = (pc as i64 + 1 + off) as usize;
                        }
                        BPF_EXIT if class == BPF_JMP => {
                            if nframes == 0 {
                                st.jit.ret_tag = r.t[0] as u64;
                                return Ok(r.v[0]);
                            }
                            nframes -= 1;
                            let f = frames[nframes];
                            r.v[6..10].copy_from_slice(&f.saved);
                            r.t[6..10].copy_from_slice(&f.saved_tags);
                            r.v[10] += skiff_isa::MAX_BPF_STACK as u64;
                            st.jit.depth -= 1;
                            pc = f.ret_pc;
                        }
                        BPF_CALL if class == BPF_JMP => {
                            if insn.src == BPF_PSEUDO_CALL {
                                let t = pc as i64 + 1 + insn.imm as i64;
                                // The main function is entered only with the context in r1.
                                if t <= 0 {
                                    return Err((pc, VmError::BadJump));
                                }
                                if st.jit.depth + 1 >= MAX_CALL_FRAMES {
                                    return Err((pc, VmError::CallDepth(MAX_CALL_FRAMES)));
                                }
                                frames[nframes] = Frame {
                                    ret_pc: pc + 1,
                                    saved: [r.v[6], r.v[7], r.v[8], r.v[9]],
                                    saved_tags: [r.t[6], r.t[7], r.t[8], r.t[9]],
                                };
                                nframes += 1;
                                st.jit.depth += 1;
                                r.v[10] -= skiff_isa::MAX_BPF_STACK as u64;
                                pc = t as usize;
                                continue;
                            }
                            // Helper call; callx takes the helper id from a register.
                            let id = if insn.code & BPF_X != 0 {
                                r.v[dst] as u32
                            } else {
                                insn.imm as u32
                            };
                            st.jit.budget = *budget;
                            let args = [r.v[1], r.v[2], r.v[3], r.v[4], r.v[5]];
                            let res = st.call_helper(id, args, r.arg_tags());
                            *budget = st.jit.budget;
                            r.v[0] = res.map_err(|e| (pc, e))?;
                            r.t[0] = st.jit.ret_tag as Tag;
                            // r1-r5 are scratch after a call; the kernel leaves them
                            // undefined, skiff leaves them as they were.
                            st.refresh_packet();
                            if let Some(v) = st.exit_now.take() {
                                return Ok(v);
                            }
                            if let Some(next) = st.pending_tail_call.take() {
                                if nframes == 0 {
                                    st.enter_program(next);
                                    cur = next;
                                    r = Regs::new(args, ENTRY_TAGS, r.v[10]);
                                    pc = 0;
                                    continue 'program;
                                }
                                // From a subprogram: the target runs in the
                                // subprogram's place and returns to its caller,
                                // whose program and tags come back.
                                let saved = st.save();
                                st.enter_program(next);
                                st.jit.budget = *budget;
                                let res = execute(st, Some(next), 0, args, ENTRY_TAGS);
                                *budget = st.jit.budget;
                                st.restore(saved);
                                r.v[0] = res?;
                                r.t[0] = SCALAR;
                                nframes -= 1;
                                let f = frames[nframes];
                                r.v[6..10].copy_from_slice(&f.saved);
                                r.t[6..10].copy_from_slice(&f.saved_tags);
                                r.v[10] += skiff_isa::MAX_BPF_STACK as u64;
                                st.jit.depth -= 1;
                                pc = f.ret_pc;
                                continue;
                            }
                            pc += 1;
                        }
                        _ => {
                            let wide = class == BPF_JMP;
                            let src = if insn.code & BPF_X != 0 {
                                r.v[srcr]
                            } else {
                                insn.imm as i64 as u64
                            };
                            if cond(op, r.v[dst], src, wide) {
                                pc = (pc as i64 + 1 + insn.off as i64) as usize;
                            } else {
                                pc += 1;
                            }
                        }
                    }
                }
                BPF_LDX => {
                    let size = size_of(insn.code);
                    let addr = r.v[srcr].wrapping_add(insn.off as i64 as u64);
                    let signed = insn.code & 0xe0 == BPF_MEMSX;
                    let (v, t) =
                        load(st, r.t[srcr], addr, size, signed, false).map_err(|e| (pc, e))?;
                    r.v[dst] = v;
                    r.t[dst] = t;
                    pc += 1;
                }
                BPF_ST => {
                    let size = size_of(insn.code);
                    let addr = r.v[dst].wrapping_add(insn.off as i64 as u64);
                    let v = insn.imm as i64 as u64;
                    store(st, r.t[dst], addr, size, v, SCALAR).map_err(|e| (pc, e))?;
                    pc += 1;
                }
                BPF_STX => {
                    let size = size_of(insn.code);
                    let addr = r.v[dst].wrapping_add(insn.off as i64 as u64);
                    if insn.code & 0xe0 == BPF_ATOMIC {
                        let (fetched, cmp) =
                            atomic(st, r.t[dst], addr, size, insn.imm, r.v[srcr], r.v[0])
                                .map_err(|e| (pc, e))?;
                        if let Some(v) = fetched {
                            r.v[srcr] = v;
                            r.t[srcr] = SCALAR;
                        }
                        if let Some(v) = cmp {
                            r.v[0] = v;
                            r.t[0] = SCALAR;
                        }
                    } else {
                        store(st, r.t[dst], addr, size, r.v[srcr], r.t[srcr])
                            .map_err(|e| (pc, e))?;
                    }
                    pc += 1;
                }
                BPF_LD => {
                    if insn.code == LD_IMM64 {
                        let next = code.get(pc + 1).copied().unwrap_or_default();
                        r.v[dst] = (insn.imm as u32 as u64) | ((next.imm as u32 as u64) << 32);
                        // Program::link left the value's tag in the second slot.
                        r.t[dst] = next.off as u8;
                        pc += 2;
                    } else if insn.code & 0xe0 == BPF_ABS || insn.code & 0xe0 == BPF_IND {
                        let mut off = insn.imm as i64;
                        if insn.code & 0xe0 == BPF_IND {
                            off += r.v[srcr] as u32 as i32 as i64;
                        }
                        match ld_abs(st, off, size_of(insn.code)).map_err(|e| (pc, e))? {
                            Some(v) => {
                                r.v[0] = v;
                                r.t[0] = SCALAR;
                            }
                            None => return Ok(0),
                        }
                        pc += 1;
                    } else {
                        return Err((pc, VmError::BadInsn(insn.code)));
                    }
                }
                _ => return Err((pc, VmError::BadInsn(insn.code))),
            }
        }
    }
}

/// BPF_LD_ABS / BPF_LD_IND at packet offset `off` (the index register already
/// added): network byte order; `None` when out of the packet, which ends the
/// program with r0 = 0 (net/core/filter.c: bpf_skb_load_helper_*).
pub(crate) fn ld_abs(st: &mut RunState, off: i64, size: u32) -> Result<Option<u64>, VmError> {
    if st.current.prog_type == crate::ProgType::Xdp {
        return Err(VmError::NotSupported(
            "BPF_LD_ABS/IND outside an skb program (the kernel's verifier refuses it)".into(),
        ));
    }
    let Some((start, end)) = st.ctx.data() else {
        return Err(VmError::NotSupported(
            "BPF_LD_ABS/IND without a packet".into(),
        ));
    };
    if off < 0 || start as i64 + off + size as i64 > end as i64 {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    // SAFETY: [start+off, start+off+size) is inside the packet.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (start as i64 + off) as usize as *const u8,
            b.as_mut_ptr(),
            size as usize,
        )
    };
    Ok(Some(match size {
        1 => b[0] as u64,
        2 => u16::from_be_bytes([b[0], b[1]]) as u64,
        4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64,
        _ => return Err(VmError::BadInsn(BPF_LD | BPF_ABS | BPF_DW)),
    }))
}
