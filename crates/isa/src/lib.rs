//! The eBPF instruction set (RFC 9669, cpu v1-v4): the instruction type, opcode
//! constants, decoding/encoding, a bpftool-style disassembler and an assembler for
//! the text format of the bpf_conformance suite.
#![forbid(unsafe_code)]

pub mod opcode;

pub use opcode::*;

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
        Insn { code, dst, src, off, imm }
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
}
