//! Opcode constants with the kernel's names (include/uapi/linux/bpf_common.h, bpf.h).

// Instruction classes.
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

// Load/store sizes and modes.
pub const BPF_W: u8 = 0x00;
pub const BPF_H: u8 = 0x08;
pub const BPF_B: u8 = 0x10;
pub const BPF_DW: u8 = 0x18;
pub const BPF_IMM: u8 = 0x00;
pub const BPF_ABS: u8 = 0x20;
pub const BPF_IND: u8 = 0x40;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_MEMSX: u8 = 0x80;
pub const BPF_ATOMIC: u8 = 0xc0;

// Source operand.
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

// ALU operations.
pub const BPF_ADD: u8 = 0x00;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_MUL: u8 = 0x20;
pub const BPF_DIV: u8 = 0x30;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_LSH: u8 = 0x60;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_NEG: u8 = 0x80;
pub const BPF_MOD: u8 = 0x90;
pub const BPF_XOR: u8 = 0xa0;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_ARSH: u8 = 0xc0;
pub const BPF_END: u8 = 0xd0;
/// Byte-swap direction for BPF_END in class ALU (BPF_TO_LE = BPF_K, BPF_TO_BE = BPF_X);
/// in class ALU64 with BPF_K it is the unconditional `bswap` (cpu v4).
pub const BPF_TO_LE: u8 = 0x00;
pub const BPF_TO_BE: u8 = 0x08;

// Jump operations.
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JGT: u8 = 0x20;
pub const BPF_JGE: u8 = 0x30;
pub const BPF_JSET: u8 = 0x40;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JSGT: u8 = 0x60;
pub const BPF_JSGE: u8 = 0x70;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_JLE: u8 = 0xb0;
pub const BPF_JSLT: u8 = 0xc0;
pub const BPF_JSLE: u8 = 0xd0;

// Atomic operations (imm field of BPF_STX | BPF_ATOMIC).
pub const BPF_FETCH: i32 = 0x01;
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;

// src_reg of BPF_LD | BPF_IMM | BPF_DW (ld_imm64) pseudo sources.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
pub const BPF_PSEUDO_FUNC: u8 = 4;
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;

// src_reg of BPF_JMP | BPF_CALL.
pub const BPF_PSEUDO_CALL: u8 = 1;
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// Whole opcodes used often enough to deserve a name.
pub const LD_IMM64: u8 = BPF_LD | BPF_IMM | BPF_DW;
pub const CALL: u8 = BPF_JMP | BPF_CALL;
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

pub const MAX_BPF_STACK: usize = 512;
/// r0..r10; r10 is the read-only frame pointer.
pub const MAX_BPF_REG: u8 = 11;

/// `off` of `BPF_ALU64 | BPF_MOV | BPF_X` for the arena address-space cast (kernel
/// extension beyond RFC 9669).
pub const BPF_ADDR_SPACE_CAST: i16 = 1;
/// Jump op of `may_goto` (`BPF_JMP | BPF_JCOND`, src_reg `BPF_MAY_GOTO`), a kernel extension.
pub const BPF_JCOND: u8 = 0xe0;
pub const BPF_MAY_GOTO: u8 = 0;
/// Atomic load-acquire / store-release (imm of `BPF_STX | BPF_ATOMIC`), kernel extensions.
pub const BPF_LOAD_ACQ: i32 = 0x100;
pub const BPF_STORE_REL: i32 = 0x110;

/// `callx`: indirect call through the register in dst_reg (LLVM's encoding; the kernel
/// does not accept it).
pub const CALLX: u8 = BPF_JMP | BPF_CALL | BPF_X;
/// `gotol`: `BPF_JMP32 | BPF_JA`, an unconditional jump whose 32-bit offset is in imm.
pub const JA32: u8 = BPF_JMP32 | BPF_JA;
pub const JA: u8 = BPF_JMP | BPF_JA;

/// The kernel's field macros (include/uapi/linux/bpf_common.h).
pub const fn bpf_class(code: u8) -> u8 {
    code & 0x07
}
pub const fn bpf_size(code: u8) -> u8 {
    code & 0x18
}
pub const fn bpf_mode(code: u8) -> u8 {
    code & 0xe0
}
pub const fn bpf_op(code: u8) -> u8 {
    code & 0xf0
}
pub const fn bpf_src(code: u8) -> u8 {
    code & 0x08
}
