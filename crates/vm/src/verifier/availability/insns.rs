//! The instruction set by release: the kernel's opcode table
//! (kernel/bpf/core.c: bpf_opcode_in_insntable over BPF_INSN_MAP) and the field
//! checks with which a release that predates an encoding refuses it.
//!
//! The 6.18 table was checked opcode by opcode against the running kernel
//! (each of the 256 codes loaded in a socket filter, `unknown opcode` or not);
//! the older tables remove what came later: 0x81/0x89/0x91 (ldsx), 0xd7
//! (bswap) and 0x06 (gotol) in 6.6, 0xe5 (may_goto) in 6.9, 0xcb/0xd3 (8- and
//! 16-bit atomics, for load-acquire/store-release) in 6.15.

use skiff_isa::opcode::*;
use skiff_isa::Insn;

use super::{error, Release};
use crate::verifier::{KernelVersion, VerifierError, EINVAL};

/// An encoding newer than some release skiff knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsnFeature {
    /// BPF_DIV/BPF_MOD with off 1 (sdiv, smod): 6.6.
    SignedDivMod,
    /// BPF_MOV | BPF_X with off 8, 16 or 32 (movsx): 6.6.
    MovSx,
    /// BPF_LDX | BPF_MEMSX (ldsx): 6.6.
    LoadSx,
    /// BPF_ALU64 | BPF_END (bswap16/32/64): 6.6.
    Bswap,
    /// BPF_JMP32 | BPF_JA (gotol, 32-bit offset in imm): 6.6.
    Gotol,
    /// BPF_JMP | BPF_JCOND (may_goto): 6.9.
    MayGoto,
    /// BPF_ALU64 | BPF_MOV | BPF_X with off 1 (addr_space_cast): 6.9.
    AddrSpaceCast,
    /// BPF_STX | BPF_ATOMIC with imm BPF_LOAD_ACQ or BPF_STORE_REL: 6.15.
    LoadAcquireStoreRelease,
    /// BPF_STX | BPF_ATOMIC of 8 or 16 bits (load-acquire/store-release only): 6.15.
    NarrowAtomic,
}

impl InsnFeature {
    /// The release it came in.
    pub fn since(self) -> Release {
        match self {
            InsnFeature::SignedDivMod
            | InsnFeature::MovSx
            | InsnFeature::LoadSx
            | InsnFeature::Bswap
            | InsnFeature::Gotol => Release(6, 6),
            InsnFeature::MayGoto | InsnFeature::AddrSpaceCast => Release(6, 9),
            InsnFeature::LoadAcquireStoreRelease | InsnFeature::NarrowAtomic => Release(6, 15),
        }
    }

    /// The feature an instruction needs beyond 5.15's instruction set, if any.
    pub fn of(insn: &Insn) -> Option<InsnFeature> {
        let class = insn.class();
        let alu = class == BPF_ALU || class == BPF_ALU64;
        match (class, insn.op()) {
            (_, BPF_DIV | BPF_MOD) if alu && insn.off == 1 => Some(InsnFeature::SignedDivMod),
            (BPF_ALU64, BPF_MOV) if insn.source() == BPF_X && insn.off == 1 => {
                Some(InsnFeature::AddrSpaceCast)
            }
            (BPF_ALU, BPF_MOV) if insn.source() == BPF_X && matches!(insn.off, 8 | 16) => {
                Some(InsnFeature::MovSx)
            }
            (BPF_ALU64, BPF_MOV) if insn.source() == BPF_X && matches!(insn.off, 8 | 16 | 32) => {
                Some(InsnFeature::MovSx)
            }
            (BPF_ALU64, BPF_END) => Some(InsnFeature::Bswap),
            (BPF_LDX, _) if insn.mode() == BPF_MEMSX => Some(InsnFeature::LoadSx),
            (BPF_JMP32, BPF_JA) => Some(InsnFeature::Gotol),
            (BPF_JMP, BPF_JCOND) => Some(InsnFeature::MayGoto),
            (BPF_STX, _) if insn.mode() == BPF_ATOMIC => atomic_feature(insn),
            _ => None,
        }
    }
}

fn atomic_feature(insn: &Insn) -> Option<InsnFeature> {
    if insn.size() == BPF_B || insn.size() == BPF_H {
        Some(InsnFeature::NarrowAtomic)
    } else if insn.imm == BPF_LOAD_ACQ || insn.imm == BPF_STORE_REL {
        Some(InsnFeature::LoadAcquireStoreRelease)
    } else {
        None
    }
}

/// ALU operations with both sources (NEG and END are special).
const ALU_OPS: [u8; 12] = [
    BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_MOD, BPF_XOR,
    BPF_MOV, BPF_ARSH,
];

/// Conditional jumps (both sources, both classes).
const JMP_OPS: [u8; 11] = [
    BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT,
    BPF_JSLE,
];

/// `bpf_opcode_in_insntable` as `kernel` has it.
pub fn in_insntable(code: u8, kernel: KernelVersion) -> bool {
    let op = code & 0xf0;
    let src = code & 0x08;
    let class = code & 0x07;
    let v6_6 = kernel.has(Release(6, 6));
    match class {
        BPF_ALU | BPF_ALU64 => {
            ALU_OPS.contains(&op)
                || (op == BPF_NEG && src == BPF_K)
                || (op == BPF_END && class == BPF_ALU)
                || (op == BPF_END && src == BPF_K && v6_6)
        }
        BPF_JMP => {
            JMP_OPS.contains(&op)
                || (src == BPF_K && matches!(op, BPF_JA | BPF_CALL | BPF_EXIT))
                || (code == BPF_JMP | BPF_JCOND && kernel.has(Release(6, 9)))
        }
        BPF_JMP32 => JMP_OPS.contains(&op) || (code == JA32 && v6_6),
        BPF_LD => code == LD_IMM64 || matches!(code & !0x18, 0x20 | 0x40) && code & 0x18 != BPF_DW,
        BPF_LDX => match code & 0xe0 {
            BPF_MEM => true,
            BPF_MEMSX => code & 0x18 != BPF_DW && v6_6,
            _ => false,
        },
        BPF_ST => code & 0xe0 == BPF_MEM,
        _ => match code & 0xe0 {
            // BPF_STX
            BPF_MEM => true,
            BPF_ATOMIC => matches!(code & 0x18, BPF_W | BPF_DW) || kernel.has(Release(6, 15)),
            _ => false,
        },
    }
}

/// What `kernel` says to one instruction before the verifier walks it
/// (resolve_pseudo_ldimm64's checks), and what a release that predates its
/// encoding says when the walk reaches it (check_alu_op's and check_atomic's
/// field checks): the kernel's words, EINVAL. `idx` is the instruction's index.
/// The second slot of an ld_imm64 is not an instruction (resolve_pseudo_ldimm64
/// steps over it): callers skip it.
pub fn check_insn(insn: &Insn, idx: usize, kernel: KernelVersion) -> Result<(), VerifierError> {
    let message = refusal(insn, kernel);
    match message {
        None => Ok(()),
        Some(m) => {
            let mut e = error(EINVAL, m);
            e.insn = idx;
            Err(e)
        }
    }
}

fn refusal(insn: &Insn, kernel: KernelVersion) -> Option<String> {
    let code = insn.code;
    // resolve_pseudo_ldimm64, before the opcode table.
    if insn.class() == BPF_LDX {
        let memsx = insn.mode() == BPF_MEMSX && kernel.has(Release(6, 6));
        if (insn.mode() != BPF_MEM && !memsx) || insn.imm != 0 {
            return Some("BPF_LDX uses reserved fields".into());
        }
    }
    if !in_insntable(code, kernel) {
        return Some(format!("unknown opcode {code:02x}"));
    }
    let feature = InsnFeature::of(insn)?;
    if kernel.has(feature.since()) {
        return None;
    }
    // An encoding the release's opcode table knows but its field checks refuse.
    Some(match feature {
        InsnFeature::SignedDivMod => "BPF_ALU uses reserved fields".into(),
        InsnFeature::MovSx | InsnFeature::AddrSpaceCast => "BPF_MOV uses reserved fields".into(),
        InsnFeature::LoadAcquireStoreRelease => {
            format!("BPF_ATOMIC uses invalid atomic opcode {:02x}", insn.imm)
        }
        // The rest are refused by the opcode table above.
        InsnFeature::LoadSx
        | InsnFeature::Bswap
        | InsnFeature::Gotol
        | InsnFeature::MayGoto
        | InsnFeature::NarrowAtomic => return None,
    })
}
