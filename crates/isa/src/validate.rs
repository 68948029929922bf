//! Structural validation of an instruction stream against RFC 9669 (cpu v1-v4): known
//! opcodes, register numbers, reserved fields zero, r10 read-only, ld_imm64 pairs,
//! jump and call targets, and no falling off the end of a (sub)program. It is the part
//! of the kernel verifier that needs no data-flow analysis (kernel/bpf/verifier.c:
//! check_subprogs, check_alu_op, check_cond_jmp_op, do_check's per-class checks).

use crate::opcode::*;
use crate::Insn;

/// Why an instruction stream is not a valid program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instruction {index}: {message}")]
pub struct ValidateError {
    /// Index of the offending instruction slot (8-byte units).
    pub index: usize,
    pub message: String,
}

fn err(index: usize, message: impl Into<String>) -> ValidateError {
    ValidateError {
        index,
        message: message.into(),
    }
}

/// The frame pointer, read-only.
const FP: u8 = 10;

/// Checks `insns` (a whole program, all subprograms included). The first error found
/// is returned.
pub fn validate(insns: &[Insn]) -> Result<(), ValidateError> {
    if insns.is_empty() {
        return Err(err(0, "empty program: no instructions"));
    }
    let n = insns.len();

    // Per-instruction checks; remember which slots are ld_imm64 second halves.
    let mut second_slot = vec![false; n];
    let mut i = 0;
    while i < n {
        let insn = insns[i];
        check_insn(&insn, insns.get(i + 1)).map_err(|m| err(i, m))?;
        if insn.is_ld_imm64() {
            if let Some(s) = second_slot.get_mut(i + 1) {
                *s = true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }

    // Control-flow targets, and the starts of subprograms (kernel: check_subprogs).
    let target_of = |i: usize, rel: i64, what: &str| -> Result<usize, ValidateError> {
        let t = i as i64 + 1 + rel;
        if t < 0 || t >= n as i64 {
            return Err(err(
                i,
                format!("{what} out of range: target {t} (program has {n} instructions)"),
            ));
        }
        let t = t as usize;
        if second_slot.get(t).copied().unwrap_or(false) {
            return Err(err(
                i,
                format!(
                    "{what} into the middle of ld_imm64 at instruction {}",
                    t - 1
                ),
            ));
        }
        Ok(t)
    };
    let mut subprog_starts = vec![0usize];
    let mut jumps: Vec<(usize, usize)> = Vec::new();
    for (i, insn) in insns.iter().enumerate() {
        if second_slot.get(i).copied().unwrap_or(false) {
            continue;
        }
        match jump_rel(insn) {
            Some(Flow::Jump(rel)) => {
                let t = target_of(i, rel, "jump")?;
                jumps.push((i, t));
            }
            Some(Flow::Call(rel)) => {
                let t = target_of(i, rel, "bpf-to-bpf call")?;
                subprog_starts.push(t);
            }
            Some(Flow::FuncAddr(rel)) => {
                let t = target_of(i, rel, "ld_imm64 BPF_PSEUDO_FUNC")?;
                subprog_starts.push(t);
            }
            None => {}
        }
    }
    subprog_starts.sort_unstable();
    subprog_starts.dedup();

    // Each subprogram must end in exit or an unconditional jump, and jumps stay inside
    // their subprogram (kernel: check_subprogs "jump out of range", "last insn is not
    // an exit or jmp").
    for (k, &start) in subprog_starts.iter().enumerate() {
        let end = subprog_starts.get(k + 1).copied().unwrap_or(n);
        let last = end - 1;
        let last_insn = insns[last];
        let ends_ok = !second_slot.get(last).copied().unwrap_or(false)
            && (last_insn.code == EXIT || last_insn.code == JA || last_insn.code == JA32);
        if !ends_ok {
            let what = if start == 0 && end == n {
                "program".to_string()
            } else {
                format!("subprogram starting at instruction {start}")
            };
            return Err(err(
                last,
                format!(
                    "last instruction of {what} is not exit or an unconditional jump (execution would fall off the end)"
                ),
            ));
        }
        for &(from, to) in jumps.iter().filter(|(f, _)| (start..end).contains(f)) {
            if !(start..end).contains(&to) {
                return Err(err(
                    from,
                    format!(
                        "jump to instruction {to} leaves its subprogram (instructions {start} to {last})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

enum Flow {
    Jump(i64),
    Call(i64),
    FuncAddr(i64),
}

/// The relative control-flow target of an instruction already checked by `check_insn`.
fn jump_rel(insn: &Insn) -> Option<Flow> {
    let class = insn.class();
    if class == BPF_LD {
        if insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC {
            return Some(Flow::FuncAddr(insn.imm as i64));
        }
        return None;
    }
    if class != BPF_JMP && class != BPF_JMP32 {
        return None;
    }
    match insn.op() {
        BPF_CALL => (insn.code == CALL && insn.src == BPF_PSEUDO_CALL)
            .then_some(Flow::Call(insn.imm as i64)),
        BPF_EXIT => None,
        _ if insn.code == JA32 => Some(Flow::Jump(insn.imm as i64)),
        _ => Some(Flow::Jump(insn.off as i64)),
    }
}

fn reg(r: u8, field: &str) -> Result<(), String> {
    if r > FP {
        Err(format!(
            "invalid register r{r} in {field} (registers are r0..r10)"
        ))
    } else {
        Ok(())
    }
}

/// A register the instruction writes: r0..r9.
fn written(r: u8) -> Result<(), String> {
    reg(r, "dst_reg")?;
    if r == FP {
        Err("r10 is the read-only frame pointer and cannot be written".into())
    } else {
        Ok(())
    }
}

fn zero(code: u8, field: &str, value: i64) -> Result<(), String> {
    if value != 0 {
        Err(format!(
            "reserved field {field} must be 0, is {value} (opcode 0x{code:02x})"
        ))
    } else {
        Ok(())
    }
}

fn unknown(code: u8) -> String {
    format!("unknown opcode 0x{code:02x}")
}

/// Checks one instruction on its own; `next` is the following slot (the second half
/// of an ld_imm64). Also used by the disassembler to decide what it can print.
pub(crate) fn check_insn(insn: &Insn, next: Option<&Insn>) -> Result<(), String> {
    let code = insn.code;
    match insn.class() {
        BPF_ALU | BPF_ALU64 => check_alu(insn),
        BPF_LDX => {
            match insn.mode() {
                BPF_MEM => {}
                BPF_MEMSX if insn.size() != BPF_DW => {}
                _ => return Err(unknown(code)),
            }
            written(insn.dst)?;
            reg(insn.src, "src_reg")?;
            zero(code, "imm", insn.imm as i64)
        }
        BPF_ST => {
            if insn.mode() != BPF_MEM {
                return Err(unknown(code));
            }
            reg(insn.dst, "dst_reg")?;
            zero(code, "src_reg", insn.src as i64)
        }
        BPF_STX => match insn.mode() {
            BPF_MEM => {
                reg(insn.dst, "dst_reg")?;
                reg(insn.src, "src_reg")?;
                zero(code, "imm", insn.imm as i64)
            }
            BPF_ATOMIC => check_atomic(insn),
            _ => Err(unknown(code)),
        },
        BPF_LD => {
            if code == LD_IMM64 {
                return check_ld_imm64(insn, next);
            }
            // kernel/bpf/verifier.c: check_ld_abs. Legacy packet loads (skb programs
            // only; the VM refuses them elsewhere): r0 is the implicit destination.
            match insn.mode() {
                BPF_ABS | BPF_IND if insn.size() != BPF_DW => {
                    if insn.dst != 0 || insn.off != 0 || (insn.mode() == BPF_ABS && insn.src != 0) {
                        return Err("BPF_LD_[ABS|IND] uses reserved fields".into());
                    }
                    reg(insn.src, "src_reg")
                }
                _ => Err(unknown(code)),
            }
        }
        _ => check_jmp(insn),
    }
}

fn check_alu(insn: &Insn) -> Result<(), String> {
    let code = insn.code;
    let alu64 = insn.class() == BPF_ALU64;
    let op = insn.op();
    match op {
        BPF_END => {
            if alu64 && insn.source() == BPF_X {
                return Err(unknown(code));
            }
            written(insn.dst)?;
            zero(code, "src_reg", insn.src as i64)?;
            zero(code, "off", insn.off as i64)?;
            if !matches!(insn.imm, 16 | 32 | 64) {
                return Err(format!(
                    "byte swap width (imm) must be 16, 32 or 64, is {} (opcode 0x{code:02x})",
                    insn.imm
                ));
            }
            Ok(())
        }
        BPF_NEG => {
            if insn.source() == BPF_X {
                return Err(unknown(code));
            }
            written(insn.dst)?;
            zero(code, "src_reg", insn.src as i64)?;
            zero(code, "off", insn.off as i64)?;
            zero(code, "imm", insn.imm as i64)
        }
        BPF_MOV => {
            written(insn.dst)?;
            if insn.source() == BPF_K {
                zero(code, "src_reg", insn.src as i64)?;
                return zero(code, "off", insn.off as i64);
            }
            reg(insn.src, "src_reg")?;
            if alu64 && insn.off == BPF_ADDR_SPACE_CAST && matches!(insn.imm, 1 | 0x1_0000) {
                return Err("not supported: addr_space_cast (BPF arena)".into());
            }
            zero(code, "imm", insn.imm as i64)?;
            match (alu64, insn.off) {
                (_, 0) | (_, 8) | (_, 16) | (true, 32) => {}
                (_, off) => {
                    return Err(format!(
                        "movsx width (off) must be {}, is {off} (opcode 0x{code:02x})",
                        if alu64 {
                            "0, 8, 16 or 32"
                        } else {
                            "0, 8 or 16"
                        }
                    ))
                }
            }
            if insn.src == FP && insn.off != 0 {
                return Err("r10 (frame pointer) cannot be sign-extended".into());
            }
            Ok(())
        }
        BPF_ADD | BPF_SUB | BPF_MUL | BPF_DIV | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH | BPF_MOD
        | BPF_XOR | BPF_ARSH => {
            written(insn.dst)?;
            match insn.off {
                0 => {}
                1 if op == BPF_DIV || op == BPF_MOD => {}
                off => {
                    return Err(format!(
                        "reserved field off must be 0{}, is {off} (opcode 0x{code:02x})",
                        if op == BPF_DIV || op == BPF_MOD {
                            " or 1 (signed)"
                        } else {
                            ""
                        }
                    ))
                }
            }
            if insn.source() == BPF_K {
                return zero(code, "src_reg", insn.src as i64);
            }
            reg(insn.src, "src_reg")?;
            zero(code, "imm", insn.imm as i64)?;
            // kernel/bpf/verifier.c: adjust_ptr_min_max_vals refuses every pointer
            // operation on the frame pointer except adding and subtracting.
            if insn.src == FP && op != BPF_ADD && op != BPF_SUB {
                return Err(format!(
                    "r10 (frame pointer) cannot be the source of {} (only mov, add, sub)",
                    alu_name(op)
                ));
            }
            Ok(())
        }
        _ => Err(unknown(code)),
    }
}

fn alu_name(op: u8) -> &'static str {
    match op {
        BPF_ADD => "add",
        BPF_SUB => "sub",
        BPF_MUL => "mul",
        BPF_DIV => "div",
        BPF_OR => "or",
        BPF_AND => "and",
        BPF_LSH => "lsh",
        BPF_RSH => "rsh",
        BPF_NEG => "neg",
        BPF_MOD => "mod",
        BPF_XOR => "xor",
        BPF_MOV => "mov",
        BPF_ARSH => "arsh",
        BPF_END => "end",
        _ => "?",
    }
}

fn check_atomic(insn: &Insn) -> Result<(), String> {
    let code = insn.code;
    if insn.size() != BPF_W && insn.size() != BPF_DW {
        return Err(format!(
            "atomic operations must be 32 or 64 bits wide (opcode 0x{code:02x})"
        ));
    }
    const ADD: i32 = BPF_ADD as i32;
    const OR: i32 = BPF_OR as i32;
    const AND: i32 = BPF_AND as i32;
    const XOR: i32 = BPF_XOR as i32;
    match insn.imm {
        ADD | OR | AND | XOR => {}
        i if i & BPF_FETCH != 0 && matches!(i & !BPF_FETCH, ADD | OR | AND | XOR) => {}
        BPF_XCHG | BPF_CMPXCHG => {}
        BPF_LOAD_ACQ | BPF_STORE_REL => {
            return Err("not supported: load-acquire/store-release atomics".into())
        }
        imm => {
            return Err(format!(
                "invalid atomic operation imm 0x{imm:x} (opcode 0x{code:02x})"
            ))
        }
    }
    reg(insn.dst, "dst_reg")?;
    reg(insn.src, "src_reg")?;
    // kernel/bpf/verifier.c: check_atomic refuses a pointer source ("leaks addr into
    // mem"), and the fetching forms would write r10.
    if insn.src == FP {
        return Err("r10 (frame pointer) cannot be the source of an atomic operation".into());
    }
    Ok(())
}

fn check_ld_imm64(insn: &Insn, next: Option<&Insn>) -> Result<(), String> {
    written(insn.dst)?;
    zero(insn.code, "off", insn.off as i64)?;
    if insn.src > BPF_PSEUDO_MAP_IDX_VALUE {
        return Err(format!(
            "invalid ld_imm64 src_reg {} (0 or a BPF_PSEUDO_* value 1..6)",
            insn.src
        ));
    }
    let Some(next) = next else {
        return Err("ld_imm64 is missing its second slot (program ends)".into());
    };
    if next.code != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
        return Err(format!(
            "invalid ld_imm64 second slot: code 0x{:02x} dst_reg {} src_reg {} off {} (all must be 0)",
            next.code, next.dst, next.src, next.off
        ));
    }
    Ok(())
}

fn check_jmp(insn: &Insn) -> Result<(), String> {
    let code = insn.code;
    let jmp32 = insn.class() == BPF_JMP32;
    match insn.op() {
        BPF_JA => {
            if insn.source() != BPF_K {
                return Err(unknown(code));
            }
            zero(code, "dst_reg", insn.dst as i64)?;
            zero(code, "src_reg", insn.src as i64)?;
            if jmp32 {
                zero(code, "off", insn.off as i64)
            } else {
                zero(code, "imm", insn.imm as i64)
            }
        }
        BPF_CALL => {
            if jmp32 {
                return Err(unknown(code));
            }
            if insn.source() == BPF_X {
                // callx: the target register is in dst_reg.
                reg(insn.dst, "dst_reg")?;
                if insn.dst == FP {
                    return Err("callx through r10 (frame pointer)".into());
                }
                zero(code, "src_reg", insn.src as i64)?;
                zero(code, "off", insn.off as i64)?;
                return zero(code, "imm", insn.imm as i64);
            }
            zero(code, "dst_reg", insn.dst as i64)?;
            match insn.src {
                0 | BPF_PSEUDO_CALL => zero(code, "off", insn.off as i64),
                // A kfunc's off selects the module BTF; whether the kfunc exists is the
                // VM's question.
                BPF_PSEUDO_KFUNC_CALL => Ok(()),
                s => Err(format!(
                    "invalid call src_reg {s} (0 helper, 1 bpf-to-bpf, 2 kfunc)"
                )),
            }
        }
        BPF_EXIT => {
            if jmp32 || insn.source() != BPF_K {
                return Err(unknown(code));
            }
            zero(code, "dst_reg", insn.dst as i64)?;
            zero(code, "src_reg", insn.src as i64)?;
            zero(code, "off", insn.off as i64)?;
            zero(code, "imm", insn.imm as i64)
        }
        BPF_JCOND if !jmp32 && insn.source() == BPF_K && insn.src == BPF_MAY_GOTO => {
            Err("not supported: may_goto".into())
        }
        BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET | BPF_JNE | BPF_JSGT | BPF_JSGE | BPF_JLT
        | BPF_JLE | BPF_JSLT | BPF_JSLE => {
            reg(insn.dst, "dst_reg")?;
            if insn.source() == BPF_K {
                zero(code, "src_reg", insn.src as i64)
            } else {
                reg(insn.src, "src_reg")?;
                zero(code, "imm", insn.imm as i64)
            }
        }
        _ => Err(unknown(code)),
    }
}
