//! What the JIT knows of a function before translating it: which registers hold
//! the context pointer r1 came in with, the provenance tag of every register where
//! it is the same on every path (so its access check is specialised at compile
//! time: the tag rules are those of `crate::mem`, which the interpreter follows at
//! run time), and which map lookups are inlined.

use skiff_isa::*;
use skiff_object::ProgType;

use crate::mem::{alu_tag, ctx_field_tag, Tag, CTX, SCALAR, STACK};

/// A register's tag differs between paths (or comes from memory): read at run time.
pub const DYN: u8 = 0xfe;
/// Not reached yet (the top of the lattice).
const TOP: u8 = 0xff;

/// Static tags of r0-r10.
pub type Tags = [u8; 11];

/// The registers `insn` writes.
pub fn written(insn: Insn) -> u16 {
    let bit = |r: u8| 1u16 << (r & 0xf);
    match insn.code & 7 {
        BPF_ALU | BPF_ALU64 | BPF_LDX => bit(insn.dst),
        BPF_LD if insn.code == LD_IMM64 => bit(insn.dst),
        BPF_LD => bit(0),
        BPF_STX if insn.code & 0xe0 == BPF_ATOMIC => bit(insn.src) | bit(0),
        BPF_JMP | BPF_JMP32 if insn.code & 0xf0 == BPF_CALL => 0x3f,
        _ => 0,
    }
}

/// Which registers hold the context pointer after `insn`, given `known` before.
pub fn ctx_after(known: u16, insn: Insn) -> u16 {
    let bit = |r: u8| 1u16 << (r & 0xf);
    match insn.code & 7 {
        BPF_ALU64 if insn.code == BPF_ALU64 | BPF_MOV | BPF_X && insn.off == 0 => {
            if known & bit(insn.src) != 0 {
                known | bit(insn.dst)
            } else {
                known & !bit(insn.dst)
            }
        }
        BPF_ALU | BPF_ALU64 | BPF_LDX => known & !bit(insn.dst),
        BPF_LD => known & !(bit(insn.dst) | bit(0)),
        BPF_STX if insn.code & 0xe0 == BPF_ATOMIC => known & !(bit(insn.src) | bit(0)),
        // Calls leave r0-r5 undefined; r6-r9 survive.
        BPF_JMP | BPF_JMP32 if insn.code & 0xf0 == BPF_CALL => known & !0x3f,
        _ => known,
    }
}

/// Where control goes after the instruction at `pc`: (fall-through, jump target).
fn successors(pc: usize, insn: Insn) -> (Option<usize>, Option<i64>) {
    let class = insn.code & 7;
    let op = insn.code & 0xf0;
    let next = if insn.code == LD_IMM64 {
        pc + 2
    } else {
        pc + 1
    };
    if class != BPF_JMP && class != BPF_JMP32 {
        return (Some(next), None);
    }
    if op == BPF_EXIT && class == BPF_JMP {
        return (None, None);
    }
    if op == BPF_CALL && class == BPF_JMP {
        return (Some(next), None);
    }
    let o = if op == BPF_JA && class == BPF_JMP32 {
        insn.imm as i64
    } else {
        insn.off as i64
    };
    let t = pc as i64 + 1 + o;
    (if op == BPF_JA { None } else { Some(next) }, Some(t))
}

/// A forward dataflow over the function [start, end): the state at the start of
/// every instruction (`meet` over predecessors, `top` where not reached). None
/// when no fixpoint is found within a bound.
fn forward<S: Copy + PartialEq>(
    code: &[Insn],
    start: usize,
    end: usize,
    in_wide: &[bool],
    (entry, top): (S, S),
    meet: impl Fn(S, S) -> S,
    transfer: impl Fn(usize, Insn, S) -> S,
) -> Option<Vec<S>> {
    let n = end - start;
    let mut at = vec![top; n];
    at[0] = entry;
    for _round in 0..64 {
        let mut changed = false;
        let mut pc = start;
        while pc < end {
            let i = pc - start;
            if in_wide[i] {
                pc += 1;
                continue;
            }
            let insn = code[pc];
            let (next, target) = successors(pc, insn);
            if at[i] != top {
                let out = transfer(pc, insn, at[i]);
                let mut flow = |t: usize| {
                    if t >= start && t < end {
                        let m = meet(at[t - start], out);
                        if m != at[t - start] {
                            at[t - start] = m;
                            changed = true;
                        }
                    }
                };
                if let Some(t) = next {
                    flow(t);
                }
                if let Some(t) = target.filter(|&t| t >= 0) {
                    flow(t as usize);
                }
            }
            pc = if insn.code == LD_IMM64 {
                pc + 2
            } else {
                pc + 1
            };
        }
        if !changed {
            return Some(at);
        }
    }
    None
}

/// The context registers at the start of every instruction (intersection over
/// predecessors; r1 at the main program's entry).
pub fn ctx_dataflow(code: &[Insn], start: usize, end: usize, in_wide: &[bool]) -> Vec<u16> {
    let entry = if start == 0 { 1 << 1 } else { 0 };
    match forward(
        code,
        start,
        end,
        in_wide,
        (entry, u16::MAX),
        |a, b| a & b,
        |_, insn, s| ctx_after(s, insn),
    ) {
        Some(at) => at
            .into_iter()
            .map(|v| if v == u16::MAX { 0 } else { v })
            .collect(),
        None => vec![0; end - start],
    }
}

/// What the tag rules need besides the instruction.
pub struct TagFacts<'a> {
    pub prog_type: ProgType,
    /// Exact context registers before each instruction (`ctx_dataflow`).
    pub ctx_in: &'a [u16],
    pub start: usize,
    /// The instruction after each ld_imm64 (its `off` is the value's tag).
    pub code: &'a [Insn],
    /// Helper calls whose r0 tag the compiler knows (inlined array lookups,
    /// direct map calls), by pc.
    pub inlined: &'a [(usize, Tag)],
    /// Stack slots may hold pointers (`translate::Proofs::stack_tags`).
    pub stack_tags: bool,
}

/// The tag of a load's result, known at compile time or DYN: a fill from the
/// stack (where it may hold pointers, `stack_tags`) and a load through a
/// pointer of unknown provenance are read at run time.
pub fn load_tag(base: u8, exact_ctx: bool, off: i16, size: u32, signed: bool, f: &TagFacts) -> u8 {
    if signed {
        return SCALAR;
    }
    let pt = f.prog_type;
    match base {
        STACK if size == 8 && f.stack_tags => DYN,
        CTX if size == 4 && exact_ctx => ctx_field_tag(pt, off as i64 as u64, size),
        CTX if size == 4 => DYN,
        DYN if size == 8 || size == 4 => DYN,
        _ => SCALAR,
    }
}

/// The tag of an ALU64 result from static tags (DYN when either is DYN and
/// the rule needs it).
pub fn static_alu_tag(op: u8, x: bool, off: i16, d: u8, s: u8) -> u8 {
    if !x {
        return match op {
            BPF_ADD | BPF_SUB => d,
            _ => SCALAR,
        };
    }
    match op {
        BPF_MOV if off == 0 => s,
        BPF_ADD | BPF_SUB => {
            if d == DYN || s == DYN {
                // ADD/SUB with a scalar operand keep the other tag, whatever it is.
                match (op, d, s) {
                    (BPF_ADD, _, SCALAR) | (BPF_SUB, _, SCALAR) => d,
                    (BPF_ADD, SCALAR, _) => s,
                    _ => DYN,
                }
            } else {
                alu_tag(op, d, s)
            }
        }
        _ => SCALAR,
    }
}

/// Static tags after `insn` at `pc`.
pub fn tags_after(f: &TagFacts, pc: usize, insn: Insn, mut t: Tags) -> Tags {
    let d = (insn.dst & 0xf).min(10) as usize;
    let s = (insn.src & 0xf).min(10) as usize;
    let class = insn.code & 7;
    let op = insn.code & 0xf0;
    match class {
        BPF_ALU64 if op != BPF_END => {
            t[d] = static_alu_tag(op, insn.code & BPF_X != 0, insn.off, t[d], t[s]);
        }
        BPF_ALU | BPF_ALU64 => t[d] = SCALAR,
        BPF_LDX => {
            let exact = f
                .ctx_in
                .get(pc - f.start)
                .is_some_and(|m| m & (1 << s) != 0);
            let signed = insn.code & 0xe0 == BPF_MEMSX;
            t[d] = load_tag(t[s], exact, insn.off, size_of(insn.code), signed, f);
        }
        BPF_LD if insn.code == LD_IMM64 => {
            t[d] = f.code.get(pc + 1).map_or(SCALAR, |n| n.off as u8);
        }
        BPF_LD => t[0] = SCALAR,
        BPF_STX if insn.code & 0xe0 == BPF_ATOMIC => {
            if insn.imm == BPF_CMPXCHG {
                t[0] = SCALAR;
            } else if insn.imm & BPF_FETCH != 0 {
                t[s] = SCALAR;
            }
        }
        BPF_JMP if op == BPF_CALL => {
            t[0] = f
                .inlined
                .iter()
                .find(|(p, _)| *p == pc)
                .map_or(DYN, |&(_, tag)| tag);
        }
        _ => {}
    }
    t
}

/// Static tags at the start of every instruction of the function: the main
/// function starts with r1 the context (both engines enter it only so), other
/// functions with their arguments' tags unknown.
pub fn tag_dataflow(f: &TagFacts, end: usize, in_wide: &[bool]) -> Vec<Tags> {
    let mut entry = [SCALAR; 11];
    entry[10] = STACK;
    if f.start == 0 {
        entry[1] = CTX;
    } else {
        entry[1..6].fill(DYN);
    }
    let meet = |a: Tags, b: Tags| -> Tags {
        std::array::from_fn(|i| match (a[i], b[i]) {
            (TOP, y) => y,
            (x, TOP) => x,
            (x, y) if x == y => x,
            _ => DYN,
        })
    };
    forward(
        f.code,
        f.start,
        end,
        in_wide,
        (entry, [TOP; 11]),
        meet,
        |pc, insn, s| tags_after(f, pc, insn, s),
    )
    .map(|at| {
        at.into_iter()
            .map(|t| t.map(|x| if x == TOP { DYN } else { x }))
            .collect()
    })
    .unwrap_or_else(|| vec![[DYN; 11]; end - f.start])
}

/// bpf_map_lookup_elem calls with r1 an array map the program names (a
/// ld_imm64 handle in the same basic block, or the verifier's `const_map`,
/// here as an index into the program's maps): (pc, the map's index).
/// `arrays`: each map's handle, 0 for a map that is no array.
pub fn inline_lookups(
    code: &[Insn],
    start: usize,
    end: usize,
    leader: &[bool],
    arrays: &[u64],
    const_maps: &[(usize, usize)],
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut consts: [Option<u64>; 11] = [None; 11];
    let mut pc = start;
    while pc < end {
        if leader[pc - start] {
            consts = [None; 11];
        }
        let insn = code[pc];
        if insn.code == CALL && insn.src == 0 && insn.imm == 1 {
            let proven = const_maps.iter().find(|(p, _)| *p == pc).map(|&(_, m)| m);
            let known = consts[1].and_then(|h| arrays.iter().position(|&a| a != 0 && a == h));
            let proven = proven.filter(|&m| arrays.get(m).is_some_and(|&a| a != 0));
            if let Some(i) = known.or(proven) {
                out.push((pc, i));
            }
        }
        let copied = (insn.code == BPF_ALU64 | BPF_MOV | BPF_X && insn.off == 0)
            .then(|| consts[(insn.src & 0xf).min(10) as usize]);
        let w = written(insn);
        for (r, c) in consts.iter_mut().enumerate() {
            if w & (1 << r) != 0 {
                *c = None;
            }
        }
        let d = (insn.dst & 0xf).min(10) as usize;
        if insn.code == LD_IMM64 {
            let hi = code.get(pc + 1).map_or(0, |i| i.imm as u32 as u64);
            consts[d] = Some(insn.imm as u32 as u64 | hi << 32);
            pc += 2;
            continue;
        }
        if let Some(v) = copied {
            consts[d] = v;
        }
        pc += 1;
    }
    out
}

/// What a function keeps in registers: (the packet bounds: some memory
/// instruction's base may be a packet pointer; the budget: a back-edge not
/// proven bounded, or it is no main function).
pub fn register_needs(
    code: &[Insn],
    start: usize,
    end: usize,
    in_wide: &[bool],
    tags_in: &[Tags],
    aux: Option<&[crate::verifier::InsnAux]>,
) -> (bool, bool) {
    let mut packet = false;
    let mut budget = start != 0;
    for (i, &insn) in code[start..end].iter().enumerate() {
        let pc = start + i;
        if in_wide[i] {
            continue;
        }
        let class = insn.code & 7;
        let base = match class {
            BPF_LDX => Some(insn.src),
            BPF_ST | BPF_STX => Some(insn.dst),
            // Inlined lookups load their key through r2.
            BPF_JMP if insn.code == CALL => Some(2),
            _ => None,
        };
        // Only a checked access through a pointer known to be the packet's
        // compares with the bounds in registers (one of unknown provenance
        // reads its region's bounds from the JitState); an access the
        // verifier proved (not a context field, not an atomic) is not checked.
        let proven = aux
            .and_then(|a| a.get(pc))
            .and_then(|x| x.mem)
            .is_some_and(|k| k != crate::verifier::MemKind::Ctx)
            && insn.code & 0xe0 != BPF_ATOMIC;
        if let Some(r) = base.filter(|_| !proven || class == BPF_JMP) {
            packet |= tags_in[i][(r & 0xf).min(10) as usize] == crate::mem::PACKET;
        }
        if class == BPF_JMP || class == BPF_JMP32 {
            let (_, target) = successors(pc, insn);
            let proven = aux.and_then(|a| a.get(pc)).is_some_and(|x| x.bounded_loop);
            budget |= target.is_some_and(|t| t <= pc as i64) && !proven;
        }
    }
    (packet, budget)
}

/// `r10 + offset` for `size` bytes stays inside the function's own 512-byte
/// frame: the stack region, no check needed (r10 is read-only).
pub fn in_own_frame(base_reg: u8, offset: i16, size: u32) -> bool {
    base_reg == 10
        && (offset as i32) >= -(MAX_BPF_STACK as i32)
        && (offset as i32) + size as i32 <= 0
}

pub fn size_of(code: u8) -> u32 {
    match code & 0x18 {
        BPF_B => 1,
        BPF_H => 2,
        BPF_W => 4,
        _ => 8,
    }
}
