//! Classic BPF to eBPF, as the kernel's net/core/filter.c: bpf_convert_filter
//! converts a socket filter: A in r0, X in r7, the context in r6, scratch
//! memory M[0..16] on the stack, `ret` as `r0 = K; exit`.
//!
//! One difference in form, none in result: packet loads (LD|ABS, LD|IND,
//! LDX|MSH) stay eBPF BPF_LD_ABS/IND instructions, as bpf_convert_filter
//! emitted them before convert_bpf_ld_abs inlined them; both read big-endian
//! and end the program with 0 when the load is outside the packet.

use skiff_isa::*;

/// struct sock_filter (include/uapi/linux/filter.h), as libpcap returns it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// BPF_MEMWORDS: classic BPF's scratch memory words.
const MEMWORDS: u32 = 16;
// Classic-only opcode parts (include/uapi/linux/bpf_common.h, filter.h).
const BPF_RET: u8 = 0x06;
const BPF_MISC: u8 = 0x07;
const BPF_LEN: u8 = 0x80;
const BPF_MSH: u8 = 0xa0;
const BPF_A: u8 = 0x10;
const BPF_TAX: u8 = 0x00;
const BPF_TXA: u8 = 0x80;
/// SKF_AD_OFF: loads at or above it are the kernel's ancillary data.
const SKF_AD_OFF: u32 = 0xffff_f000;

// net/core/filter.c: BPF_REG_A, BPF_REG_X, BPF_REG_TMP, BPF_REG_CTX.
const A: u8 = 0;
const X: u8 = 7;
const TMP: u8 = 2;
const CTX: u8 = 6;
const FP: u8 = 10;
/// offsetof(struct __sk_buff, len).
const SKB_LEN: i16 = 0;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(code, dst, src, off, imm)
}

/// A converted instruction whose jump offset still names classic targets.
struct Pending {
    insn: Insn,
    /// Classic instruction index this jump goes to (patched to an eBPF offset).
    target: Option<usize>,
}

fn plain(insn: Insn) -> Pending {
    Pending { insn, target: None }
}

/// Converts a classic program (already checked by `check`) to eBPF.
pub fn convert(prog: &[SockFilter]) -> Result<Vec<Insn>, String> {
    check(prog)?;
    // net/core/filter.c: bpf_convert_filter's prologue: A = X = 0, r6 = ctx.
    let mut out = vec![
        plain(ins(BPF_ALU | BPF_XOR | BPF_X, A, A, 0, 0)),
        plain(ins(BPF_ALU | BPF_XOR | BPF_X, X, X, 0, 0)),
        plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, CTX, 1, 0, 0)),
    ];
    let mut starts = Vec::with_capacity(prog.len());
    for (i, f) in prog.iter().enumerate() {
        starts.push(out.len());
        convert_one(i, f, &mut out)?;
    }
    let mut code = Vec::with_capacity(out.len());
    for (pos, p) in out.iter().enumerate() {
        let mut insn = p.insn;
        if let Some(t) = p.target {
            let to = *starts
                .get(t)
                .ok_or_else(|| format!("classic insn jumps to {t}, past the end"))?;
            let off = to as i64 - pos as i64 - 1;
            insn.off = i16::try_from(off).map_err(|_| format!("jump of {off} too far for eBPF"))?;
        }
        code.push(insn);
    }
    Ok(code)
}

/// net/core/filter.c: bpf_check_classic, the parts the conversion relies on:
/// known opcodes, jumps inside the program, scratch indexes below 16, no
/// constant division by zero, a final `ret`.
fn check(prog: &[SockFilter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > 4096 {
        return Err(format!("classic program of {} instructions", prog.len()));
    }
    for (i, f) in prog.iter().enumerate() {
        let code = f.code as u8;
        let err = |m: &str| Err(format!("classic insn {i} (code {:#06x}): {m}", f.code));
        if f.code > 0xff {
            return err("unknown opcode");
        }
        match code & 0x07 {
            BPF_JMP => {
                let far = |o: u32| i + 1 + o as usize >= prog.len();
                let bad = if code & 0xf0 == BPF_JA {
                    far(f.k)
                } else {
                    far(f.jt as u32) || far(f.jf as u32)
                };
                if bad {
                    return err("jump out of the program");
                }
            }
            BPF_ST | BPF_STX if f.k >= MEMWORDS => return err("scratch index over 15"),
            BPF_LD | BPF_LDX if code & 0xe0 == BPF_MEM && f.k >= MEMWORDS => {
                return err("scratch index over 15")
            }
            BPF_ALU
                if code & 0x08 == BPF_K && matches!(code & 0xf0, BPF_DIV | BPF_MOD) && f.k == 0 =>
            {
                return err("division by zero")
            }
            _ => {}
        }
    }
    match prog.last() {
        Some(l) if l.code as u8 & 0x07 == BPF_RET => Ok(()),
        _ => Err("classic program does not end with ret".into()),
    }
}

/// The scratch slot M[k] on the stack (bpf_convert_filter: -(k * 4 + 4)).
fn slot(k: u32) -> i16 {
    -((k as i16) * 4 + 4)
}

fn convert_one(i: usize, f: &SockFilter, out: &mut Vec<Pending>) -> Result<(), String> {
    let code = f.code as u8;
    let k = f.k as i32;
    let unsupported = || {
        Err(format!(
            "not supported: classic insn {i} (code {:#06x})",
            f.code
        ))
    };
    match code & 0x07 {
        BPF_ALU => convert_alu(code, k, out),
        BPF_JMP => convert_jmp(i, f, out),
        BPF_LD | BPF_LDX => return convert_load(i, f, out),
        BPF_ST => out.push(plain(ins(BPF_STX | BPF_MEM | BPF_W, FP, A, slot(f.k), 0))),
        BPF_STX => out.push(plain(ins(BPF_STX | BPF_MEM | BPF_W, FP, X, slot(f.k), 0))),
        BPF_RET => {
            match code & 0x18 {
                BPF_K => out.push(plain(ins(BPF_ALU | BPF_MOV | BPF_K, A, 0, 0, k))),
                BPF_A => {}
                _ => return unsupported(),
            }
            out.push(plain(ins(EXIT, 0, 0, 0, 0)));
        }
        BPF_MISC => match code & 0xf8 {
            BPF_TAX => out.push(plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, X, A, 0, 0))),
            BPF_TXA => out.push(plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, A, X, 0, 0))),
            _ => return unsupported(),
        },
        _ => return unsupported(),
    }
    Ok(())
}

/// A op= K|X in 32 bits; division or modulo by X == 0 returns 0, as classic
/// BPF always did (bpf_convert_filter's `if X == 0 return 0`).
fn convert_alu(code: u8, k: i32, out: &mut Vec<Pending>) {
    let op = code & 0xf0;
    if code & 0x08 == BPF_X && matches!(op, BPF_DIV | BPF_MOD) {
        out.push(plain(ins(BPF_JMP | BPF_JNE | BPF_K, X, 0, 2, 0)));
        out.push(plain(ins(BPF_ALU | BPF_XOR | BPF_X, A, A, 0, 0)));
        out.push(plain(ins(EXIT, 0, 0, 0, 0)));
    }
    out.push(plain(operands(code, A, k)));
}

/// `code` on `dst` with X or K as its source: the other field zero, as eBPF
/// requires of an operation's unused source.
fn operands(code: u8, dst: u8, k: i32) -> Insn {
    if code & 0x08 == BPF_X {
        ins(code, dst, X, 0, 0)
    } else {
        ins(code, dst, 0, 0, k)
    }
}

/// Conditional jumps: true to `jt`, false to `jf`, compared in 32 bits (A and
/// X are 32-bit values; JMP32 keeps an immediate with the top bit set
/// unsigned, which bpf_convert_filter does through BPF_REG_TMP).
fn convert_jmp(i: usize, f: &SockFilter, out: &mut Vec<Pending>) {
    let code = f.code as u8;
    let next = i + 1;
    if code & 0xf0 == BPF_JA {
        out.push(Pending {
            insn: ins(JA, 0, 0, 0, 0),
            target: Some(next + f.k as usize),
        });
        return;
    }
    let cond = BPF_JMP32 | (code & 0xf8);
    out.push(Pending {
        insn: operands(cond, A, f.k as i32),
        target: Some(next + f.jt as usize),
    });
    if f.jf != 0 {
        out.push(Pending {
            insn: ins(JA, 0, 0, 0, 0),
            target: Some(next + f.jf as usize),
        });
    }
}

fn convert_load(i: usize, f: &SockFilter, out: &mut Vec<Pending>) -> Result<(), String> {
    let code = f.code as u8;
    let k = f.k as i32;
    let ldx = code & 0x07 == BPF_LDX;
    let dst = if ldx { X } else { A };
    match code & 0xe0 {
        BPF_ABS | BPF_IND if !ldx => {
            if f.k >= SKF_AD_OFF {
                return Err(format!(
                    "not supported: classic insn {i} reads the kernel's ancillary data (SKF_AD_OFF + {})",
                    f.k - SKF_AD_OFF
                ));
            }
            // BPF_IND adds X; BPF_ABS keeps src 0 (check_ld_abs).
            let src = if code & 0xe0 == BPF_IND { X } else { 0 };
            out.push(plain(ins(code, 0, src, 0, k)));
        }
        BPF_IMM => out.push(plain(ins(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, k))),
        BPF_MEM => out.push(plain(ins(BPF_LDX | BPF_MEM | BPF_W, dst, FP, slot(f.k), 0))),
        // A|X = skb->len, read through the context as __sk_buff.len.
        BPF_LEN => out.push(plain(ins(BPF_LDX | BPF_MEM | BPF_W, dst, CTX, SKB_LEN, 0))),
        // X = 4 * (P[k] & 0xf), A kept: bpf_convert_filter's BPF_LDX|BPF_MSH|BPF_B.
        BPF_MSH if ldx => {
            out.push(plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, X, A, 0, 0)));
            out.push(plain(ins(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, k)));
            out.push(plain(ins(BPF_ALU | BPF_AND | BPF_K, A, 0, 0, 0xf)));
            out.push(plain(ins(BPF_ALU | BPF_LSH | BPF_K, A, 0, 0, 2)));
            out.push(plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, TMP, X, 0, 0)));
            out.push(plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, X, A, 0, 0)));
            out.push(plain(ins(BPF_ALU64 | BPF_MOV | BPF_X, A, TMP, 0, 0)));
        }
        _ => {
            return Err(format!(
                "not supported: classic insn {i} (code {:#06x})",
                f.code
            ))
        }
    }
    Ok(())
}
