//! The verifier log in the kernel's words (kernel/bpf/log.c, verifier.c): one line per
//! processed instruction (`12: (71) r3 = *(u8 *)(r2 +12)`), source lines from BTF
//! line info (`; text @ file:line`), path switches and the error lines. Only the
//! tail is kept, and instruction lines are formatted when the log is read, so a
//! million processed instructions cost no formatting.

use std::collections::VecDeque;
use std::fmt::Write as _;

use skiff_isa::disasm::{format_insn, Symbolizer};
use skiff_isa::Insn;

use super::state::{FuncState, Reg, RegType, SlotType, BPF_REG_SIZE};
use super::SourceLine;

/// Lines kept (the refusal's log is its last ~20 lines).
const KEPT: usize = 24;

enum Entry {
    Insn(usize),
    FromTo(usize, usize),
    Safe(usize),
    Linfo(usize),
    Line(String),
}

/// The tail of the log.
#[derive(Default)]
pub struct Log {
    entries: VecDeque<Entry>,
    /// File and line of the last source line printed (verbose_linfo skips a
    /// record of the same line).
    last_linfo: Option<(String, u32)>,
}

/// Prints ld_imm64 constants raw, as the verifier log does without a callback.
struct NoSymbols;

impl Symbolizer for NoSymbols {
    fn map_name(&self, _src: u8, _imm: i32, _next_imm: i32) -> Option<String> {
        None
    }
}

impl Log {
    fn push(&mut self, e: Entry) {
        if self.entries.len() >= KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    pub fn line(&mut self, s: String) {
        self.push(Entry::Line(s));
    }

    /// `verbose_linfo` then the instruction (do_check's per-insn print).
    pub fn insn(&mut self, idx: usize, lines: Option<&[SourceLine]>) {
        if let Some(ls) = lines {
            if let Some(l) = linfo_index(ls, idx) {
                if let Some(sl) = ls.get(l) {
                    let same = self
                        .last_linfo
                        .as_ref()
                        .is_some_and(|(f, n)| *f == sl.file && *n == sl.line);
                    if !same {
                        self.last_linfo = Some((sl.file.clone(), sl.line));
                        self.push(Entry::Linfo(l));
                    }
                }
            }
        }
        self.push(Entry::Insn(idx));
    }

    /// A new path starts: `from X to Y:` (the kernel adds the state; skiff keeps
    /// the line cheap, a path switch happens at every pop).
    pub fn path_switch(&mut self, from: usize, to: usize) {
        self.last_linfo = None;
        self.push(Entry::FromTo(from, to));
    }

    /// `N: safe`: the path was pruned at N.
    pub fn safe(&mut self, idx: usize) {
        self.push(Entry::Safe(idx));
    }

    /// The kept tail, formatted.
    pub fn render(&self, insns: &[Insn], lines: Option<&[SourceLine]>) -> String {
        let mut out = String::new();
        for e in &self.entries {
            match e {
                Entry::Insn(i) => {
                    let _ = writeln!(out, "{i}: {}", format_insn(insns, *i, &NoSymbols));
                }
                Entry::Linfo(l) => {
                    if let Some(sl) = lines.and_then(|ls| ls.get(*l)) {
                        let _ = writeln!(out, "{}", linfo_str(sl));
                    }
                }
                Entry::Line(s) => {
                    let _ = writeln!(out, "{s}");
                }
                Entry::Safe(i) => {
                    let _ = writeln!(out, "{i}: safe");
                }
                Entry::FromTo(from, to) => {
                    let _ = writeln!(out, "from {from} to {to}:");
                }
            }
        }
        out
    }
}

/// The line record covering instruction `idx` (records are sorted by insn).
pub fn linfo_index(lines: &[SourceLine], idx: usize) -> Option<usize> {
    let after = lines.partition_point(|l| l.insn <= idx);
    after.checked_sub(1)
}

/// kernel/bpf/log.c: verbose_linfo: `; text @ file:line`.
pub fn linfo_str(l: &SourceLine) -> String {
    let file = l.file.rsplit('/').next().unwrap_or(&l.file);
    format!("; {} @ {}:{}", l.text.trim(), file, l.line)
}

/// kernel/bpf/log.c: print_reg_state, the part after `R1=`.
pub fn reg_str(r: &Reg) -> String {
    if r.ty == RegType::Scalar {
        return r.s.to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    if r.id != 0 && r.ty != RegType::Ctx {
        parts.push(format!("id={}", r.id));
    }
    if r.ref_obj_id != 0 {
        parts.push(format!("ref_obj_id={}", r.ref_obj_id));
    }
    if r.off != 0 && r.ty != RegType::Stack {
        parts.push(format!("off={}", r.off));
    }
    if r.ty.is_pkt_pointer() {
        parts.push(format!("r={}", r.range));
    }
    if r.ty == RegType::Mem {
        parts.push(format!("sz={}", r.range));
    }
    if r.s.const_value() != Some(0) {
        parts.push(format!("var_off={}", r.s));
    }
    if r.ty == RegType::Stack {
        return format!("fp{}", r.off);
    }
    format!("{}({})", r.type_str(), parts.join(","))
}

/// kernel/bpf/log.c: print_verifier_state for one frame: `R1=ctx() R10=fp0 fp-8=mmmmmmmm`.
pub fn state_str(st: &FuncState) -> String {
    let mut out = Vec::new();
    for (i, r) in st.regs.iter().enumerate() {
        if r.ty != RegType::NotInit {
            out.push(format!("R{i}={}", reg_str(r)));
        }
    }
    for (spi, slot) in st.stack.iter().enumerate() {
        let off = -(((spi + 1) * BPF_REG_SIZE) as i64);
        if slot.is_spilled_reg() {
            out.push(format!("fp{off}={}", reg_str(&slot.spilled)));
        } else if slot.slot_type.iter().any(|t| *t != SlotType::Invalid) {
            let s: String = slot.slot_type.iter().map(|t| t.ch()).collect();
            out.push(format!("fp{off}={s}"));
        }
    }
    out.join(" ")
}
