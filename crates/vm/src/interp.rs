//! The interpreter: one instruction, one obvious block (as uBPF's vm and the
//! kernel's ___bpf_prog_run). Semantics per RFC 9669; every memory access goes
//! through the run's region table.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use skiff_isa::*;

use crate::mem::Target;
use crate::state::{ProgRef, RunState, MAX_CALL_FRAMES};
use crate::VmError;

#[derive(Clone, Copy, Default)]
struct Frame {
    ret_pc: usize,
    saved: [u64; 4],
}

#[inline(always)]
fn load(st: &mut RunState, addr: u64, size: u32) -> Result<u64, VmError> {
    match st.regions.translate(addr, size as u64, false)? {
        // SAFETY: translate() checked [addr, addr+size) lies in a live region.
        Target::Raw(p) => Ok(unsafe {
            match size {
                1 => *p as u64,
                2 => (p as *const u16).read_unaligned() as u64,
                4 => (p as *const u32).read_unaligned() as u64,
                _ => (p as *const u64).read_unaligned(),
            }
        }),
        Target::Ctx(off) => st.ctx.load(off, size),
    }
}

#[inline(always)]
fn store(st: &mut RunState, addr: u64, size: u32, v: u64) -> Result<(), VmError> {
    match st.regions.translate(addr, size as u64, true)? {
        // SAFETY: translate() checked [addr, addr+size) lies in a live writable region.
        Target::Raw(p) => unsafe {
            match size {
                1 => *p = v as u8,
                2 => (p as *mut u16).write_unaligned(v as u16),
                4 => (p as *mut u32).write_unaligned(v as u32),
                _ => (p as *mut u64).write_unaligned(v),
            }
            Ok(())
        },
        Target::Ctx(off) => st.ctx.store(off, size, v),
    }
}

/// BPF_STX | BPF_ATOMIC. Returns the value to put in the fetch register, if any.
pub(crate) fn atomic(
    st: &mut RunState,
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
    let p = match st.regions.translate(addr, size as u64, true)? {
        Target::Raw(p) => p,
        Target::Ctx(_) => return Err(VmError::Ctx("atomic operation on the context".into())),
    };
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
/// starts in exits. Errors carry the failing instruction index.
pub(crate) fn execute(
    st: &mut RunState,
    prog: Option<ProgRef>,
    entry: usize,
    args: [u64; 5],
) -> Result<u64, (usize, VmError)> {
    // The budget lives in a local while the loop runs (a register, not a store per
    // instruction) and goes back to the run state around helper calls and at the end.
    let mut budget = st.jit.budget;
    let r = run_loop(st, prog, entry, args, &mut budget);
    st.jit.budget = budget;
    r
}

fn run_loop(
    st: &mut RunState,
    prog: Option<ProgRef>,
    entry: usize,
    args: [u64; 5],
    budget: &mut u64,
) -> Result<u64, (usize, VmError)> {
    let mut cur = prog.unwrap_or(st.current);
    // 16 slots so a 4-bit register field indexes without a bounds check; the
    // validator already refused registers above r10.
    let mut reg = [0u64; 16];
    reg[1..6].copy_from_slice(&args);
    let base_depth = st.jit.depth;
    reg[10] = (st.stack_top - base_depth * skiff_isa::MAX_BPF_STACK) as u64;
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
            let dst = insn.dst as usize & 0xf;
            let srcr = insn.src as usize & 0xf;
            let class = insn.code & 0x07;
            match class {
                BPF_ALU | BPF_ALU64 => {
                    let op = insn.code & 0xf0;
                    if op == BPF_END {
                        // ALU: BPF_TO_LE/BPF_TO_BE; ALU64|K: unconditional bswap.
                        let to_be = class == BPF_ALU64 || insn.code & BPF_X != 0;
                        reg[dst] = byteswap(reg[dst], insn.imm, to_be);
                    } else {
                        let src = if insn.code & BPF_X != 0 {
                            reg[srcr]
                        } else if class == BPF_ALU64 {
                            insn.imm as i64 as u64
                        } else {
                            insn.imm as u32 as u64
                        };
                        reg[dst] = if class == BPF_ALU64 {
                            alu64(op, insn.off, reg[dst], src)
                        } else {
                            alu32(op, insn.off, reg[dst], src)
                        };
                    }
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
                                return Ok(reg[0]);
                            }
                            nframes -= 1;
                            let f = frames[nframes];
                            reg[6..10].copy_from_slice(&f.saved);
                            reg[10] += skiff_isa::MAX_BPF_STACK as u64;
                            st.jit.depth -= 1;
                            pc = f.ret_pc;
                        }
                        BPF_CALL if class == BPF_JMP => {
                            if insn.src == BPF_PSEUDO_CALL {
                                if st.jit.depth + 1 >= MAX_CALL_FRAMES {
                                    return Err((pc, VmError::CallDepth(MAX_CALL_FRAMES)));
                                }
                                frames[nframes] = Frame {
                                    ret_pc: pc + 1,
                                    saved: [reg[6], reg[7], reg[8], reg[9]],
                                };
                                nframes += 1;
                                st.jit.depth += 1;
                                reg[10] -= skiff_isa::MAX_BPF_STACK as u64;
                                pc = (pc as i64 + 1 + insn.imm as i64) as usize;
                                continue;
                            }
                            // Helper call; callx takes the helper id from a register.
                            let id = if insn.code & BPF_X != 0 {
                                reg[dst] as u32
                            } else {
                                insn.imm as u32
                            };
                            let helpers = st.helpers;
                            st.jit.budget = *budget;
                            let r = helpers.call(st, id, [reg[1], reg[2], reg[3], reg[4], reg[5]]);
                            *budget = st.jit.budget;
                            let r = r.map_err(|e| (pc, e))?;
                            reg[0] = r;
                            // r1-r5 are scratch after a call; the kernel leaves them
                            // undefined, skiff leaves them as they were.
                            st.refresh_packet();
                            if let Some(v) = st.exit_now.take() {
                                return Ok(v);
                            }
                            if let Some(next) = st.pending_tail_call.take() {
                                st.current = next;
                                if nframes == 0 {
                                    cur = next;
                                    pc = 0;
                                    continue 'program;
                                }
                                // From a subprogram: the target runs in the
                                // subprogram's place and returns to its caller.
                                st.jit.budget = *budget;
                                let args = [reg[1], reg[2], reg[3], reg[4], reg[5]];
                                let r = execute(st, Some(next), 0, args);
                                *budget = st.jit.budget;
                                reg[0] = r?;
                                nframes -= 1;
                                let f = frames[nframes];
                                reg[6..10].copy_from_slice(&f.saved);
                                reg[10] += skiff_isa::MAX_BPF_STACK as u64;
                                st.jit.depth -= 1;
                                pc = f.ret_pc;
                                continue;
                            }
                            pc += 1;
                        }
                        _ => {
                            let wide = class == BPF_JMP;
                            let src = if insn.code & BPF_X != 0 {
                                reg[srcr]
                            } else {
                                insn.imm as i64 as u64
                            };
                            if cond(op, reg[dst], src, wide) {
                                pc = (pc as i64 + 1 + insn.off as i64) as usize;
                            } else {
                                pc += 1;
                            }
                        }
                    }
                }
                BPF_LDX => {
                    let size = size_of(insn.code);
                    let addr = reg[srcr].wrapping_add(insn.off as i64 as u64);
                    let v = load(st, addr, size).map_err(|e| (pc, e))?;
                    reg[dst] = if insn.code & 0xe0 == BPF_MEMSX {
                        match size {
                            1 => v as u8 as i8 as i64 as u64,
                            2 => v as u16 as i16 as i64 as u64,
                            4 => v as u32 as i32 as i64 as u64,
                            _ => v,
                        }
                    } else {
                        v
                    };
                    pc += 1;
                }
                BPF_ST => {
                    let size = size_of(insn.code);
                    let addr = reg[dst].wrapping_add(insn.off as i64 as u64);
                    store(st, addr, size, insn.imm as i64 as u64).map_err(|e| (pc, e))?;
                    pc += 1;
                }
                BPF_STX => {
                    let size = size_of(insn.code);
                    let addr = reg[dst].wrapping_add(insn.off as i64 as u64);
                    if insn.code & 0xe0 == BPF_ATOMIC {
                        let (fetched, cmp) = atomic(st, addr, size, insn.imm, reg[srcr], reg[0])
                            .map_err(|e| (pc, e))?;
                        if let Some(v) = fetched {
                            reg[srcr] = v;
                        }
                        if let Some(v) = cmp {
                            reg[0] = v;
                        }
                    } else {
                        store(st, addr, size, reg[srcr]).map_err(|e| (pc, e))?;
                    }
                    pc += 1;
                }
                BPF_LD => {
                    if insn.code == LD_IMM64 {
                        let hi = code.get(pc + 1).map(|i| i.imm).unwrap_or(0);
                        reg[dst] = (insn.imm as u32 as u64) | ((hi as u32 as u64) << 32);
                        pc += 2;
                    } else if insn.code & 0xe0 == BPF_ABS || insn.code & 0xe0 == BPF_IND {
                        let mut off = insn.imm as i64;
                        if insn.code & 0xe0 == BPF_IND {
                            off += reg[srcr] as u32 as i32 as i64;
                        }
                        match ld_abs(st, off, size_of(insn.code)).map_err(|e| (pc, e))? {
                            Some(v) => reg[0] = v,
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
