//! Shared by the verifier tests: assembling programs with map loads, the helper
//! table programs get, running skiff's verifier and the kernel's.

#![allow(dead_code, clippy::result_large_err)]

use std::sync::Arc;

use skiff_isa::opcode::{BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, LD_IMM64};
use skiff_isa::Insn;
use skiff_maps::{Map, MapAttr, MapType};
use skiff_object::ProgType;
use skiff_vm::verifier::{self, KernelVersion, Verified, VerifierError, VerifyOptions};

/// Marks `lddw %rN, MAP` placeholders: upper half of the immediate.
const MAP_MAGIC: u32 = 0x6d61_7000;
const MAP_VALUE_MAGIC: u32 = 0x6d61_7600;
const FUNC_MAGIC: u32 = 0x6675_6e00;

/// Assembles `text`; `ldmap %rN, I` loads map I (BPF_PSEUDO_MAP_IDX) and
/// `ldmapval %rN, I, OFF` a pointer into map I's value (BPF_PSEUDO_MAP_IDX_VALUE).
pub fn asm(text: &str) -> Vec<Insn> {
    let mut lines = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("ldfunc ") {
            let ops: Vec<&str> = rest.split(',').map(|s| s.trim()).collect();
            let at: u64 = ops[1].parse().unwrap();
            lines.push(format!(
                "lddw {}, {:#x}",
                ops[0],
                ((FUNC_MAGIC as u64) << 32) | at
            ));
        } else if let Some(rest) = t.strip_prefix("ldmapval ") {
            let ops: Vec<&str> = rest.split(',').map(|s| s.trim()).collect();
            let (idx, off): (u64, u64) = (ops[1].parse().unwrap(), ops[2].parse().unwrap());
            let v = ((MAP_VALUE_MAGIC as u64 | idx) << 32) | off;
            lines.push(format!("lddw {}, {:#x}", ops[0], v));
        } else if let Some(rest) = t.strip_prefix("ldmap ") {
            let ops: Vec<&str> = rest.split(',').map(|s| s.trim()).collect();
            let idx: u64 = ops[1].parse().unwrap();
            lines.push(format!(
                "lddw {}, {:#x}",
                ops[0],
                (MAP_MAGIC as u64 | idx) << 32
            ));
        } else {
            lines.push(l.to_string());
        }
    }
    let mut insns = skiff_isa::assemble(&lines.join("\n")).unwrap();
    for i in 0..insns.len().saturating_sub(1) {
        if insns[i].code != LD_IMM64 {
            continue;
        }
        let hi = insns[i + 1].imm as u32;
        if hi & 0xffff_ff00 == MAP_MAGIC {
            insns[i].src = BPF_PSEUDO_MAP_IDX;
            insns[i].imm = (hi & 0xff) as i32;
            insns[i + 1].imm = 0;
        } else if hi == FUNC_MAGIC {
            // `ldfunc %rN, AT`: BPF_PSEUDO_FUNC to absolute instruction AT.
            insns[i].src = skiff_isa::opcode::BPF_PSEUDO_FUNC;
            insns[i].imm = insns[i].imm - i as i32 - 1;
            insns[i + 1].imm = 0;
        } else if hi & 0xffff_ff00 == MAP_VALUE_MAGIC {
            insns[i].src = BPF_PSEUDO_MAP_IDX_VALUE;
            let off = insns[i].imm;
            insns[i].imm = (hi & 0xff) as i32;
            insns[i + 1].imm = off;
        }
    }
    insns
}

pub fn map(t: MapType, key: u32, value: u32, entries: u32) -> Arc<Map> {
    Map::create(MapAttr::new(t, key, value, entries), 1).unwrap()
}

pub fn verify_with(
    insns: &[Insn],
    prog_type: ProgType,
    maps: &[Arc<Map>],
) -> Result<Verified, VerifierError> {
    let helpers = skiff_net::helper_table();
    let opts = VerifyOptions {
        prog_type,
        name: "test",
        maps,
        helpers: &helpers,
        privileged: true,
        kernel: KernelVersion::LATEST,
        gpl: true,
        lines: None,
    };
    verifier::verify(insns, &opts)
}

pub fn verify_xdp(insns: &[Insn], maps: &[Arc<Map>]) -> Result<Verified, VerifierError> {
    verify_with(insns, ProgType::Xdp, maps)
}
