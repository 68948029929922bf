//! A disassembler printing what `bpftool prog dump xlated` prints: the kernel's
//! kernel/bpf/disasm.c `print_bpf_insn` with bpftool's callbacks
//! (tools/bpf/bpftool/xlated_dumper.c), names for ld_imm64 pseudo sources coming from
//! a [`Symbolizer`].

use std::fmt::Write as _;

use crate::helpers::HELPER_NAMES;
use crate::opcode::*;
use crate::validate::check_insn;
use crate::Insn;

/// Names what the disassembler cannot know from the bytecode alone.
pub trait Symbolizer {
    /// Text for the value of an ld_imm64 whose src_reg is `src` (a `BPF_PSEUDO_*`
    /// value, or 0 for a plain constant), first-slot `imm` and second-slot
    /// `next_imm`; e.g. `map[blocked]`, `map[.rodata]+8`. `None` prints the raw
    /// 64-bit constant (`0x...`), as the kernel does without a callback.
    fn map_name(&self, src: u8, imm: i32, next_imm: i32) -> Option<String>;

    /// Name of the kfunc called by a `call` with src_reg `BPF_PSEUDO_KFUNC_CALL`
    /// (BTF id `imm`, module BTF index `off`). `None` prints `kernel-function`.
    fn kfunc_name(&self, imm: i32, off: i16) -> Option<String> {
        let _ = (imm, off);
        None
    }
}

/// Prints raw values exactly as bpftool's `print_imm` does for a program read back
/// from the kernel: `map[id:N]`, `map[id:N][0]+OFF`, `map[idx:N]+OFF`,
/// `subprog[+N]`, otherwise the 64-bit constant.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawSymbolizer;

impl Symbolizer for RawSymbolizer {
    // tools/bpf/bpftool/xlated_dumper.c: print_imm
    fn map_name(&self, src: u8, imm: i32, next_imm: i32) -> Option<String> {
        match src {
            BPF_PSEUDO_MAP_FD => Some(format!("map[id:{}]", imm as u32)),
            BPF_PSEUDO_MAP_VALUE => Some(format!("map[id:{}][0]+{}", imm as u32, next_imm as u32)),
            BPF_PSEUDO_MAP_IDX_VALUE => {
                Some(format!("map[idx:{}]+{}", imm as u32, next_imm as u32))
            }
            BPF_PSEUDO_FUNC => Some(format!("subprog[{imm:+}]")),
            _ => None,
        }
    }
}

/// The kernel's name for helper `id` as bpftool prints it (`bpf_map_lookup_elem` for
/// 1), for ids 1..=211; `None` for 0 (`BPF_FUNC_unspec`) and unknown ids.
pub fn helper_name(id: u32) -> Option<&'static str> {
    if id == 0 {
        return None;
    }
    HELPER_NAMES.get(id as usize).copied()
}

/// One line per instruction, as `bpftool prog dump xlated` prints them:
/// `   0: (61) r2 = *(u32 *)(r1 +0)`. The second slot of an ld_imm64 gets no line.
/// Never fails: an invalid instruction is printed as `(cc) invalid: <reason>`.
pub fn disassemble(insns: &[Insn], sym: &dyn Symbolizer) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < insns.len() {
        // printf("% 4d: ", i)
        let _ = writeln!(
            out,
            "{:>4}: {}",
            format!(" {i}"),
            format_insn(insns, i, sym)
        );
        i += if insns[i].is_ld_imm64() { 2 } else { 1 };
    }
    out
}

fn ldst(size: u8) -> &'static str {
    match size {
        BPF_W => "u32",
        BPF_H => "u16",
        BPF_B => "u8",
        _ => "u64",
    }
}

fn ldsx(size: u8) -> &'static str {
    match size {
        BPF_W => "s32",
        BPF_H => "s16",
        _ => "s8",
    }
}

fn alu_str(op: u8) -> &'static str {
    match op {
        BPF_ADD => "+=",
        BPF_SUB => "-=",
        BPF_MUL => "*=",
        BPF_DIV => "/=",
        BPF_OR => "|=",
        BPF_AND => "&=",
        BPF_LSH => "<<=",
        BPF_RSH => ">>=",
        BPF_MOD => "%=",
        BPF_XOR => "^=",
        BPF_MOV => "=",
        BPF_ARSH => "s>>=",
        _ => "?",
    }
}

fn jmp_str(op: u8) -> &'static str {
    match op {
        BPF_JEQ => "==",
        BPF_JGT => ">",
        BPF_JLT => "<",
        BPF_JGE => ">=",
        BPF_JLE => "<=",
        BPF_JSET => "&",
        BPF_JNE => "!=",
        BPF_JSGT => "s>",
        BPF_JSLT => "s<",
        BPF_JSGE => "s>=",
        BPF_JSLE => "s<=",
        _ => "?",
    }
}

fn atomic_op_str(op: u8) -> &'static str {
    match op {
        BPF_ADD => "add",
        BPF_AND => "and",
        BPF_OR => "or",
        BPF_XOR => "xor",
        _ => "?",
    }
}

/// The text of instruction `index` without the `   N: ` prefix, e.g.
/// `(b7) r0 = 0` (kernel/bpf/disasm.c: print_bpf_insn).
pub fn format_insn(insns: &[Insn], index: usize, sym: &dyn Symbolizer) -> String {
    let Some(insn) = insns.get(index) else {
        return format!("(--) invalid: no instruction {index}");
    };
    let next = insns.get(index + 1);
    let code = insn.code;
    if let Err(msg) = check_insn(insn, next) {
        return format!("({code:02x}) invalid: {msg}");
    }
    let (d, s, off, imm) = (insn.dst, insn.src, insn.off, insn.imm);
    let text = match insn.class() {
        BPF_ALU | BPF_ALU64 => {
            let w = if insn.class() == BPF_ALU { 'w' } else { 'r' };
            let op = insn.op();
            if op == BPF_END {
                if insn.class() == BPF_ALU64 {
                    format!("r{d} = bswap{imm} r{d}")
                } else {
                    let dir = if insn.source() == BPF_TO_BE {
                        "be"
                    } else {
                        "le"
                    };
                    format!("r{d} = {dir}{imm} r{d}")
                }
            } else if op == BPF_NEG {
                format!("{w}{d} = -{w}{d}")
            } else {
                let sign = (op == BPF_DIV || op == BPF_MOD) && off == 1;
                let opstr = match (sign, op) {
                    (true, BPF_DIV) => "s/=",
                    (true, _) => "s%=",
                    _ => alu_str(op),
                };
                if insn.source() == BPF_X {
                    let cast = match (op, off) {
                        (BPF_MOV, 8) => "(s8)",
                        (BPF_MOV, 16) => "(s16)",
                        (BPF_MOV, 32) => "(s32)",
                        _ => "",
                    };
                    format!("{w}{d} {opstr} {cast}{w}{s}")
                } else {
                    format!("{w}{d} {opstr} {imm}")
                }
            }
        }
        BPF_STX => {
            let sz = ldst(insn.size());
            if insn.mode() == BPF_MEM {
                format!("*({sz} *)(r{d} {off:+}) = r{s}")
            } else {
                let bits = if insn.size() == BPF_DW { "64" } else { "" };
                match imm {
                    BPF_XCHG => format!("r{s} = atomic{bits}_xchg(({sz} *)(r{d} {off:+}), r{s})"),
                    BPF_CMPXCHG => {
                        format!("r0 = atomic{bits}_cmpxchg(({sz} *)(r{d} {off:+}), r0, r{s})")
                    }
                    _ if imm & BPF_FETCH != 0 => format!(
                        "r{s} = atomic{bits}_fetch_{}(({sz} *)(r{d} {off:+}), r{s})",
                        atomic_op_str((imm & 0xf0) as u8)
                    ),
                    _ => format!(
                        "lock *({sz} *)(r{d} {off:+}) {} r{s}",
                        alu_str((imm & 0xf0) as u8)
                    ),
                }
            }
        }
        BPF_ST => format!("*({} *)(r{d} {off:+}) = {imm}", ldst(insn.size())),
        BPF_LDX => {
            let sz = if insn.mode() == BPF_MEMSX {
                ldsx(insn.size())
            } else {
                ldst(insn.size())
            };
            format!("r{d} = *({sz} *)(r{s} {off:+})")
        }
        // kernel/bpf/disasm.c: legacy packet loads
        BPF_LD if insn.mode() == BPF_ABS => format!("r0 = *({} *)skb[{imm}]", ldst(insn.size())),
        BPF_LD if insn.mode() == BPF_IND => {
            format!("r0 = *({} *)skb[r{s} + {imm}]", ldst(insn.size()))
        }
        BPF_LD => {
            // check_insn accepted it, so it is an ld_imm64 with its second slot.
            let next_imm = next.map(|n| n.imm).unwrap_or(0);
            let full = ((next_imm as u32 as u64) << 32) | imm as u32 as u64;
            let value = sym
                .map_name(s, imm, next_imm)
                .unwrap_or_else(|| format!("0x{full:x}"));
            format!("r{d} = {value}")
        }
        _ => {
            let w = if insn.class() == BPF_JMP32 { 'w' } else { 'r' };
            let op = insn.op();
            if op == BPF_CALL {
                if insn.source() == BPF_X {
                    format!("callx r{d}")
                } else if s == BPF_PSEUDO_CALL {
                    format!("call pc{imm:+}")
                } else if s == BPF_PSEUDO_KFUNC_CALL {
                    let name = sym
                        .kfunc_name(imm, off)
                        .unwrap_or_else(|| "kernel-function".to_string());
                    format!("call {name}#{imm}")
                } else {
                    let name = usize::try_from(imm)
                        .ok()
                        .and_then(|i| HELPER_NAMES.get(i).copied())
                        .unwrap_or("unknown");
                    format!("call {name}#{imm}")
                }
            } else if code == JA {
                format!("goto pc{off:+}")
            } else if code == JA32 {
                format!("gotol pc{imm:+}")
            } else if code == EXIT {
                "exit".to_string()
            } else if insn.source() == BPF_X {
                format!("if {w}{d} {} {w}{s} goto pc{off:+}", jmp_str(op))
            } else {
                format!(
                    "if {w}{d} {} 0x{:x} goto pc{off:+}",
                    jmp_str(op),
                    imm as u32
                )
            }
        }
    };
    format!("({code:02x}) {text}")
}
