//! The eBPF instruction set (RFC 9669, cpu v1-v4): the instruction type, opcode
//! constants, decoding/encoding, a bpftool-style disassembler and an assembler for
//! the text format of the bpf_conformance suite.
#![forbid(unsafe_code)]

pub mod asm;
pub mod conformance;
pub mod disasm;
mod helpers;
pub mod opcode;
pub mod validate;

pub use asm::{assemble, AsmError};
pub use disasm::{disassemble, format_insn, helper_name, RawSymbolizer, Symbolizer};
pub use helpers::HELPER_NAMES;
pub use opcode::*;
pub use validate::{validate, ValidateError};

/// Bytecode that cannot be split into instructions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "bytecode length {len} is not a multiple of 8: {trailing} trailing byte(s) at byte offset {offset}"
    )]
    TrailingBytes {
        len: usize,
        trailing: usize,
        offset: usize,
    },
}

/// Splits little-endian bytecode into instruction slots. Only the length is checked
/// here; [`validate`] checks the instructions.
pub fn decode(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
    let chunks = bytes.chunks_exact(Insn::SIZE);
    let rest = chunks.remainder().len();
    if rest != 0 {
        return Err(DecodeError::TrailingBytes {
            len: bytes.len(),
            trailing: rest,
            offset: bytes.len() - rest,
        });
    }
    Ok(chunks
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Insn::from_bytes(b)
        })
        .collect())
}

/// The little-endian wire format of `insns`, 8 bytes per slot.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// One 8-byte eBPF instruction slot, as `struct bpf_insn` in the kernel UAPI.
/// A 64-bit immediate load (`lddw`) occupies two slots; the second has code 0 and
/// carries the upper 32 bits in `imm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u8,
    /// Destination register (low nibble of byte 1).
    pub dst: u8,
    /// Source register (high nibble of byte 1).
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const SIZE: usize = 8;

    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Little-endian wire format (the only byte order skiff runs).
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    pub fn class(&self) -> u8 {
        self.code & 0x07
    }

    /// `BPF_OP`: the operation bits of an ALU or jump opcode.
    pub fn op(&self) -> u8 {
        self.code & 0xf0
    }

    /// `BPF_SRC`: `BPF_K` (immediate) or `BPF_X` (register).
    pub fn source(&self) -> u8 {
        self.code & 0x08
    }

    /// `BPF_SIZE` of a load or store.
    pub fn size(&self) -> u8 {
        self.code & 0x18
    }

    /// `BPF_MODE` of a load or store.
    pub fn mode(&self) -> u8 {
        self.code & 0xe0
    }

    /// The first slot of a 64-bit immediate load (`lddw`), which occupies two slots.
    pub fn is_ld_imm64(&self) -> bool {
        self.code == LD_IMM64
    }

    /// Width in bytes of a load or store of this size.
    pub fn size_bytes(&self) -> usize {
        match self.size() {
            BPF_B => 1,
            BPF_H => 2,
            BPF_W => 4,
            _ => 8,
        }
    }
}
