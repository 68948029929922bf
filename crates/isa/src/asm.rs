//! An assembler for the text format of the bpf_conformance suite (its
//! lib/src/bpf_assembler.cc, itself uBPF's format): `%rN` registers, `mov`/`mov32`,
//! `ldxw %r0, [%r1+2]`, `jeq %r1, 5, +2` or a label, `lock fetch add [%r10-8], %r1`,
//! `#` comments, `name:` labels; `exit` used as a jump target names the first `exit`
//! instruction unless a label of that name exists. Unlike the original it refuses
//! rather than truncates: immediates outside 32 bits, offsets outside 16 bits,
//! registers above r10.

use std::collections::HashMap;

use crate::opcode::*;
use crate::Insn;

/// A line that does not assemble.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct AsmError {
    /// 1-based line number in the assembled text.
    pub line: usize,
    pub message: String,
}

/// Where a label's relative offset goes once the label is known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Off,
    Imm,
}

struct Fixup {
    slot: usize,
    label: String,
    line: usize,
    field: Field,
}

/// A jump or call target: a signed number (`+2`, `-1`) or a label.
enum Target {
    Rel(i64),
    Label(String),
}

/// Assembles `text` into instruction slots (an `lddw` yields two). Does not run
/// [`crate::validate`]; call it on the result.
pub fn assemble(text: &str) -> Result<Vec<Insn>, AsmError> {
    let mut out: Vec<Insn> = Vec::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut first_exit: Option<usize> = None;
    let mut fixups: Vec<Fixup> = Vec::new();

    for (n, raw_line) in text.lines().enumerate() {
        let line = n + 1;
        let e = |message: String| AsmError { line, message };
        let code_part = raw_line.split('#').next().unwrap_or("");
        let spaced = code_part.replace(',', " ");
        let mut tokens: Vec<&str> = spaced.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        if let Some(label) = tokens[0].strip_suffix(':') {
            if !is_label(label) {
                return Err(e(format!("invalid label name `{label}`")));
            }
            if labels.insert(label.to_string(), out.len()).is_some() {
                return Err(e(format!("duplicate label `{label}`")));
            }
            tokens.remove(0);
            if tokens.is_empty() {
                continue;
            }
        }
        let mnemonic = tokens[0].to_ascii_lowercase();
        let operands = &tokens[1..];
        if mnemonic == "exit" && first_exit.is_none() {
            first_exit = Some(out.len());
        }
        let slot = out.len();
        let (mut insns, target) = encode_line(&mnemonic, operands).map_err(e)?;
        match target {
            Some((Target::Rel(rel), field)) => {
                if let Some(first) = insns.first_mut() {
                    set_rel(first, field, rel).map_err(e)?;
                }
            }
            Some((Target::Label(label), field)) => fixups.push(Fixup {
                slot,
                label,
                line,
                field,
            }),
            None => {}
        }
        out.extend(insns);
    }

    for f in fixups {
        let e = |message: String| AsmError {
            line: f.line,
            message,
        };
        let target = match labels.get(&f.label) {
            Some(&t) => t,
            None if f.label == "exit" => {
                first_exit.ok_or_else(|| e("unknown label `exit`: no exit instruction".into()))?
            }
            None => return Err(e(format!("unknown label `{}`", f.label))),
        };
        let rel = target as i64 - f.slot as i64 - 1;
        let insn = out
            .get_mut(f.slot)
            .ok_or_else(|| e("internal: fixup slot out of range".into()))?;
        set_rel(insn, f.field, rel).map_err(|m| e(format!("label `{}`: {m}", f.label)))?;
    }
    Ok(out)
}

fn set_rel(insn: &mut Insn, field: Field, rel: i64) -> Result<(), String> {
    match field {
        Field::Off => {
            insn.off =
                i16::try_from(rel).map_err(|_| format!("jump offset {rel} out of 16-bit range"))?;
        }
        Field::Imm => {
            insn.imm =
                i32::try_from(rel).map_err(|_| format!("jump offset {rel} out of 32-bit range"))?;
        }
    }
    Ok(())
}

fn is_label(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

type Encoded = (Vec<Insn>, Option<(Target, Field)>);

fn one(insn: Insn) -> Encoded {
    (vec![insn], None)
}

fn count(mnemonic: &str, operands: &[&str], n: usize) -> Result<(), String> {
    if operands.len() != n {
        Err(format!(
            "invalid number of operands for `{mnemonic}`: expected {n}, got {}",
            operands.len()
        ))
    } else {
        Ok(())
    }
}

fn alu_op(name: &str) -> Option<(u8, i16)> {
    Some(match name {
        "add" => (BPF_ADD, 0),
        "sub" => (BPF_SUB, 0),
        "mul" => (BPF_MUL, 0),
        "div" => (BPF_DIV, 0),
        "sdiv" => (BPF_DIV, 1),
        "or" => (BPF_OR, 0),
        "and" => (BPF_AND, 0),
        "lsh" => (BPF_LSH, 0),
        "rsh" => (BPF_RSH, 0),
        "mod" => (BPF_MOD, 0),
        "smod" => (BPF_MOD, 1),
        "xor" => (BPF_XOR, 0),
        "mov" => (BPF_MOV, 0),
        "arsh" => (BPF_ARSH, 0),
        _ => return None,
    })
}

fn jmp_op(name: &str) -> Option<u8> {
    Some(match name {
        "jeq" => BPF_JEQ,
        "jgt" => BPF_JGT,
        "jge" => BPF_JGE,
        "jset" => BPF_JSET,
        "jne" => BPF_JNE,
        "jsgt" => BPF_JSGT,
        "jsge" => BPF_JSGE,
        "jlt" => BPF_JLT,
        "jle" => BPF_JLE,
        "jslt" => BPF_JSLT,
        "jsle" => BPF_JSLE,
        _ => return None,
    })
}

fn size_suffix(s: &str) -> Option<u8> {
    Some(match s {
        "b" => BPF_B,
        "h" => BPF_H,
        "w" => BPF_W,
        "dw" => BPF_DW,
        _ => return None,
    })
}

/// Splits `add32` into (`add`, ALU), `add64`/`add` into (`add`, ALU64).
fn class_suffix(m: &str) -> (&str, u8) {
    if let Some(base) = m.strip_suffix("32") {
        (base, BPF_ALU)
    } else if let Some(base) = m.strip_suffix("64") {
        (base, BPF_ALU64)
    } else {
        (m, BPF_ALU64)
    }
}

fn encode_line(m: &str, ops: &[&str]) -> Result<Encoded, String> {
    // Byte swaps: be16, le32, swap64, bswap16.
    for (prefix, code) in [
        ("bswap", BPF_ALU64 | BPF_END | BPF_TO_LE),
        ("swap", BPF_ALU64 | BPF_END | BPF_TO_LE),
        ("be", BPF_ALU | BPF_END | BPF_TO_BE),
        ("le", BPF_ALU | BPF_END | BPF_TO_LE),
    ] {
        let imm = match m.strip_prefix(prefix) {
            Some("16") => 16,
            Some("32") => 32,
            Some("64") => 64,
            _ => continue,
        };
        count(m, ops, 1)?;
        return Ok(one(Insn::new(code, reg(ops[0])?, 0, 0, imm)));
    }

    // Sign-extending moves: movsx832, movsx1632, movsx864, movsx1664, movsx3264.
    if let Some(rest) = m.strip_prefix("movsx") {
        let (width, class) = match rest {
            "832" => (8, BPF_ALU),
            "1632" => (16, BPF_ALU),
            "864" => (8, BPF_ALU64),
            "1664" => (16, BPF_ALU64),
            "3264" => (32, BPF_ALU64),
            _ => return Err(format!("invalid mnemonic `{m}`")),
        };
        count(m, ops, 2)?;
        let dst = reg(ops[0])?;
        let src = reg(ops[1]).map_err(|e| format!("`{m}` needs a source register: {e}"))?;
        return Ok(one(Insn::new(class | BPF_MOV | BPF_X, dst, src, width, 0)));
    }

    match m {
        "exit" => {
            count(m, ops, 0)?;
            return Ok(one(Insn::new(EXIT, 0, 0, 0, 0)));
        }
        "ja" => {
            count(m, ops, 1)?;
            return Ok((
                vec![Insn::new(JA, 0, 0, 0, 0)],
                Some((target(ops[0], 16)?, Field::Off)),
            ));
        }
        "ja32" | "gotol" => {
            count(m, ops, 1)?;
            return Ok((
                vec![Insn::new(JA32, 0, 0, 0, 0)],
                Some((target(ops[0], 32)?, Field::Imm)),
            ));
        }
        "call" => return encode_call(ops),
        "lock" => return encode_lock(ops),
        "lddw" => {
            count(m, ops, 2)?;
            let dst = reg(ops[0])?;
            let v = imm64(ops[1])?;
            return Ok((
                vec![
                    Insn::new(LD_IMM64, dst, 0, 0, v as u32 as i32),
                    Insn::new(0, 0, 0, 0, (v >> 32) as u32 as i32),
                ],
                None,
            ));
        }
        _ => {}
    }

    // neg, neg32, neg64.
    if let ("neg", class) = class_suffix(m) {
        count(m, ops, 1)?;
        return Ok(one(Insn::new(
            class | BPF_NEG | BPF_K,
            reg(ops[0])?,
            0,
            0,
            0,
        )));
    }

    // ALU: add, add32, add64, ...
    let (base, class) = class_suffix(m);
    if let Some((op, off)) = alu_op(base) {
        count(m, ops, 2)?;
        let dst = reg(ops[0])?;
        return Ok(one(if is_reg(ops[1]) {
            Insn::new(class | op | BPF_X, dst, reg(ops[1])?, off, 0)
        } else {
            Insn::new(class | op | BPF_K, dst, 0, off, imm32(ops[1])?)
        }));
    }

    // Conditional jumps: jeq, jeq32, ...
    let (base, class) = match m.strip_suffix("32") {
        Some(b) => (b, BPF_JMP32),
        None => (m, BPF_JMP),
    };
    if let Some(op) = jmp_op(base) {
        count(m, ops, 3)?;
        let dst = reg(ops[0])?;
        let insn = if is_reg(ops[1]) {
            Insn::new(class | op | BPF_X, dst, reg(ops[1])?, 0, 0)
        } else {
            Insn::new(class | op | BPF_K, dst, 0, 0, imm32(ops[1])?)
        };
        return Ok((vec![insn], Some((target(ops[2], 16)?, Field::Off))));
    }

    // Loads and stores: ldxw, ldxsb, stw, stxdw.
    if let Some(rest) = m.strip_prefix("ldxs") {
        if let Some(size @ (BPF_B | BPF_H | BPF_W)) = size_suffix(rest) {
            count(m, ops, 2)?;
            let dst = reg(ops[0])?;
            let (src, off) = mem(ops[1])?;
            return Ok(one(Insn::new(BPF_LDX | BPF_MEMSX | size, dst, src, off, 0)));
        }
    }
    if let Some(size) = m.strip_prefix("ldx").and_then(size_suffix) {
        count(m, ops, 2)?;
        let dst = reg(ops[0])?;
        let (src, off) = mem(ops[1])?;
        return Ok(one(Insn::new(BPF_LDX | BPF_MEM | size, dst, src, off, 0)));
    }
    if let Some(size) = m.strip_prefix("stx").and_then(size_suffix) {
        count(m, ops, 2)?;
        let (dst, off) = mem(ops[0])?;
        let src = reg(ops[1])?;
        return Ok(one(Insn::new(BPF_STX | BPF_MEM | size, dst, src, off, 0)));
    }
    if let Some(size) = m.strip_prefix("st").and_then(size_suffix) {
        count(m, ops, 2)?;
        let (dst, off) = mem(ops[0])?;
        let imm = imm32(ops[1])?;
        return Ok(one(Insn::new(BPF_ST | BPF_MEM | size, dst, 0, off, imm)));
    }

    Err(format!("invalid mnemonic `{m}`"))
}

fn encode_call(ops: &[&str]) -> Result<Encoded, String> {
    match ops {
        [r] if is_reg(r) => Ok(one(Insn::new(CALLX, reg(r)?, 0, 0, 0))),
        [imm] | ["helper", imm] => Ok(one(Insn::new(CALL, 0, 0, 0, imm32(imm)?))),
        ["local", t] => Ok((
            vec![Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 0)],
            Some((target(t, 32)?, Field::Imm)),
        )),
        ["runtime", imm] => Ok(one(Insn::new(
            CALL,
            0,
            BPF_PSEUDO_KFUNC_CALL,
            0,
            imm32(imm)?,
        ))),
        [mode, _] => Err(format!(
            "invalid call mode `{mode}` (helper, local or runtime)"
        )),
        _ => Err(format!(
            "invalid number of operands for `call`: expected 1 or 2, got {}",
            ops.len()
        )),
    }
}

/// `lock [fetch] op[32|64] [%rD+off], %rS`
fn encode_lock(ops: &[&str]) -> Result<Encoded, String> {
    let (fetch, rest) = match ops.first() {
        Some(&"fetch") => (true, &ops[1..]),
        _ => (false, ops),
    };
    if rest.len() != 3 {
        return Err(format!(
            "invalid number of operands for lock: expected `lock [fetch] <op> [%rD+off], %rS`, got {} operand(s)",
            ops.len()
        ));
    }
    let name = rest[0].to_ascii_lowercase();
    let (base, size) = match name.strip_suffix("32") {
        Some(b) => (b, BPF_W),
        None => (name.strip_suffix("64").unwrap_or(&name), BPF_DW),
    };
    let fetch_bit = if fetch { BPF_FETCH } else { 0 };
    let imm = match base {
        "add" => BPF_ADD as i32 | fetch_bit,
        "or" => BPF_OR as i32 | fetch_bit,
        "and" => BPF_AND as i32 | fetch_bit,
        "xor" => BPF_XOR as i32 | fetch_bit,
        "xchg" => BPF_XCHG,
        "cmpxchg" => BPF_CMPXCHG,
        _ => return Err(format!("invalid atomic operation `lock {name}`")),
    };
    let (dst, off) = mem(rest[1])?;
    let src = reg(rest[2])?;
    Ok(one(Insn::new(
        BPF_STX | BPF_ATOMIC | size,
        dst,
        src,
        off,
        imm,
    )))
}

fn is_reg(s: &str) -> bool {
    s.starts_with('%')
        || (s.starts_with('r') && s.len() > 1 && s[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// `%r0`..`%r10` (the `%` may be left out).
fn reg(s: &str) -> Result<u8, String> {
    let name = s.strip_prefix('%').unwrap_or(s);
    let num = name
        .strip_prefix('r')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("invalid register `{s}`"))?;
    match num.parse::<u8>() {
        Ok(r) if r <= 10 => Ok(r),
        _ => Err(format!("invalid register `{s}` (registers are %r0..%r10)")),
    }
}

/// A signed integer, decimal or `0x` hex: (value, was_hex).
fn int(s: &str) -> Result<(i128, bool), String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (hex, digits) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => (true, h),
        None => (false, body),
    };
    let ok_digits = !digits.is_empty()
        && digits.bytes().all(|b| {
            if hex {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        });
    if !ok_digits {
        return Err(format!("invalid number `{s}`"));
    }
    let magnitude = u64::from_str_radix(digits, if hex { 16 } else { 10 })
        .map_err(|_| format!("number `{s}` out of 64-bit range"))?;
    let v = magnitude as i128;
    Ok((if neg { -v } else { v }, hex))
}

/// A 32-bit immediate: decimal in i32 range; hex up to 0xffffffff (its bit pattern).
fn imm32(s: &str) -> Result<i32, String> {
    let (v, hex) = int(s)?;
    if (i32::MIN as i128..=i32::MAX as i128).contains(&v) {
        Ok(v as i32)
    } else if hex && (0..=u32::MAX as i128).contains(&v) {
        Ok(v as u32 as i32)
    } else {
        Err(format!("immediate `{s}` out of 32-bit range"))
    }
}

/// A 64-bit immediate: anything in i64 or u64 range.
fn imm64(s: &str) -> Result<u64, String> {
    let (v, _) = int(s)?;
    if (i64::MIN as i128..=u64::MAX as i128).contains(&v) {
        // Negative values keep their two's-complement bit pattern.
        Ok(v as u64)
    } else {
        Err(format!("immediate `{s}` out of 64-bit range"))
    }
}

fn off16(s: &str) -> Result<i16, String> {
    let (v, _) = int(s)?;
    i16::try_from(v).map_err(|_| format!("offset `{s}` out of 16-bit range"))
}

fn target(s: &str, bits: u32) -> Result<Target, String> {
    if s.starts_with('+') || s.starts_with('-') {
        let (v, _) = int(s)?;
        let ok = if bits == 16 {
            i16::try_from(v).is_ok()
        } else {
            i32::try_from(v).is_ok()
        };
        if !ok {
            return Err(format!("jump offset `{s}` out of {bits}-bit range"));
        }
        Ok(Target::Rel(v as i64))
    } else if is_label(s) {
        Ok(Target::Label(s.to_string()))
    } else {
        Err(format!("invalid jump target `{s}` (a label or +N/-N)"))
    }
}

/// `[%rN]`, `[%rN+off]`, `[%rN-off]`.
fn mem(s: &str) -> Result<(u8, i16), String> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("invalid memory operand `{s}` (expected [%rN+off])"))?;
    match inner.find(['+', '-']) {
        None => Ok((reg(inner)?, 0)),
        Some(p) => Ok((reg(&inner[..p])?, off16(&inner[p..])?)),
    }
}
