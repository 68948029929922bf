//! The running 6.18 kernel as the oracle: `kernel_6_18.txt` holds random
//! sequences of ALU operations and conditional jumps on three scalars, each run
//! through BPF_PROG_LOAD (socket filter, log level 2) with the verifier's own
//! log of the register afterwards. Replaying them here must print the same.
//!
//! Each case starts `case` with the logged r7 (`bpf_ktime_get_ns()`, unknown),
//! r8 (a u32 load from the context) and r9 (a u8 load). Each step is one line:
//! `alu W OP DST k IMM` / `alu W OP DST x SRC`, `neg W DST`, `movk W DST IMM`,
//! `movx W DST SRC`, `movsx W DST SRC OFF`, `end le|be|bswap BITS DST`, then
//! the logged DST; or
//! `jmp W OP DST k IMM` / `jmp W OP DST x SRC`, then DST on the fall-through and
//! on the jump (and SRC on both for `x`). `-`: that path was never walked
//! (the kernel decided the branch); `=`: walked, the register not logged
//! (unchanged). Register ids and precision marks are stripped from the log.

use super::*;

const CORPUS: &str = include_str!("kernel_6_18.txt");

fn alu_op(name: &str) -> AluOp {
    match name {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "xor" => AluOp::Xor,
        "arsh" => AluOp::Arsh,
        other => panic!("corpus: unknown alu op {other}"),
    }
}

fn jmp_op(name: &str) -> JmpOp {
    match name {
        "jeq" => JmpOp::Jeq,
        "jgt" => JmpOp::Jgt,
        "jge" => JmpOp::Jge,
        "jset" => JmpOp::Jset,
        "jne" => JmpOp::Jne,
        "jsgt" => JmpOp::Jsgt,
        "jsge" => JmpOp::Jsge,
        "jlt" => JmpOp::Jlt,
        "jle" => JmpOp::Jle,
        "jslt" => JmpOp::Jslt,
        "jsle" => JmpOp::Jsle,
        other => panic!("corpus: unknown jump op {other}"),
    }
}

/// r7, r8, r9.
struct Regs([Scalar; 3]);

impl Regs {
    fn get(&self, r: &str) -> Scalar {
        self.0[reg_index(r)]
    }
    fn set(&mut self, r: &str, v: Scalar) {
        self.0[reg_index(r)] = v;
    }
}

fn reg_index(r: &str) -> usize {
    match r {
        "7" => 0,
        "8" => 1,
        "9" => 2,
        other => panic!("corpus: register {other}"),
    }
}

fn imm(s: &str) -> i64 {
    s.parse().expect("corpus: immediate")
}

/// What one non-jump step leaves in its destination (check_alu_op).
fn alu_step(f: &[&str], regs: &Regs) -> (String, Scalar) {
    let alu32 = f.get(1) == Some(&"32");
    match f[0] {
        "alu" => {
            let src = if f[4] == "k" {
                Scalar::constant(imm(f[5]) as u64)
            } else {
                regs.get(f[5])
            };
            let op = alu_op(f[2]);
            // The kernel logs the path that goes on (the pushed one is not
            // followed here).
            let dst = match Scalar::maybe_fork(op, &regs.get(f[3]), &src) {
                Some((go_on, _pushed)) => go_on,
                None => regs.get(f[3]),
            };
            (f[3].into(), Scalar::alu(op, &dst, &src, alu32))
        }
        "neg" => {
            let d = regs.get(f[2]);
            (f[2].into(), Scalar::alu(AluOp::Neg, &d, &d, alu32))
        }
        "movx" => {
            let src = regs.get(f[3]);
            (f[2].into(), Scalar::alu(AluOp::Mov, &src, &src, alu32))
        }
        "movk" => {
            let v = imm(f[3]);
            let v = if alu32 { u64::from(v as u32) } else { v as u64 };
            (f[2].into(), Scalar::constant(v))
        }
        "movsx" => {
            let mut d = regs.get(f[3]);
            let size = (imm(f[4]) / 8) as u8;
            if alu32 {
                d.coerce_subreg_to_size_sx(size);
                d.zext_32_to_64();
                d.sync();
            } else {
                d.coerce_to_size_sx(size);
            }
            (f[2].into(), d)
        }
        "end" => {
            let (to_be, alu32) = match f[1] {
                "le" => (false, true),
                "be" => (true, true),
                _ => (false, false),
            };
            let width = Scalar::constant(imm(f[2]) as u64);
            let op = AluOp::End { to_be };
            (f[3].into(), Scalar::alu(op, &regs.get(f[3]), &width, alu32))
        }
        other => panic!("corpus: unknown step {other}"),
    }
}

fn check(what: &str, got: &Scalar, before: &Scalar, want: &str) {
    let want = if want == "=" {
        before.log_fmt()
    } else {
        want.to_string()
    };
    assert_eq!(got.log_fmt(), want, "{what}");
}

/// Replays one jump; returns false when the fall-through is dead.
fn jmp_step(line: &str, f: &[&str], want: &[&str], regs: &mut Regs) -> bool {
    let jmp32 = f[1] == "32";
    let op = jmp_op(f[2]);
    let a = regs.get(f[3]);
    let b = if f[4] == "k" {
        Scalar::constant(imm(f[5]) as u64)
    } else {
        regs.get(f[5])
    };
    let pred = is_branch_taken(op, &a, &b, jmp32);
    let fall_dead = want[0] == "-";
    let taken_dead = want[1] == "-";
    assert_eq!(
        (fall_dead, taken_dead),
        (pred == Some(true), pred == Some(false)),
        "{line}: predicted {pred:?}"
    );
    let same = f[4] == "x" && f[3] == f[5];
    let (mut fa, mut fb) = (a, b);
    let (mut ta, mut tb) = (a, b);
    if pred.is_none() && same {
        reg_set_min_max_same_reg(op, &mut ta, &mut fa, jmp32);
        (fb, tb) = (fa, ta);
    } else if pred.is_none() {
        reg_set_min_max(op, &mut ta, &mut tb, &mut fa, &mut fb, jmp32);
    }
    if !fall_dead {
        check(&format!("{line} (fall-through)"), &fa, &a, want[0]);
    }
    if !taken_dead {
        check(&format!("{line} (jump)"), &ta, &a, want[1]);
    }
    if f[4] == "x" {
        if !fall_dead {
            check(&format!("{line} (fall-through, src)"), &fb, &b, want[2]);
        }
        if !taken_dead {
            check(&format!("{line} (jump, src)"), &tb, &b, want[3]);
        }
        regs.set(f[5], fb);
    }
    regs.set(f[3], fa);
    !fall_dead
}

#[test]
fn replays_the_running_kernels_verifier_log() {
    let mut regs = Regs([Scalar::unknown(); 3]);
    let mut dead = false;
    let mut steps = 0;
    for line in CORPUS.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let f: Vec<&str> = cols[0].split(' ').collect();
        if f[0] == "case" {
            let mut r8 = Scalar::unknown();
            r8.coerce_to_size(4);
            let mut r9 = Scalar::unknown();
            r9.coerce_to_size(1);
            regs = Regs([Scalar::unknown(), r8, r9]);
            for (r, want) in regs.0.iter().zip(&cols[1..]) {
                assert_eq!(&r.log_fmt(), want, "{line}");
            }
            dead = false;
            continue;
        }
        if dead {
            assert!(
                cols[1..].iter().all(|c| *c == "-"),
                "{line}: after a dead fall-through"
            );
            continue;
        }
        steps += 1;
        if f[0] == "jmp" {
            dead = !jmp_step(line, &f, &cols[1..], &mut regs);
            continue;
        }
        let (dst, v) = alu_step(&f, &regs);
        check(line, &v, &regs.get(&dst), cols[1]);
        regs.set(&dst, v);
    }
    assert!(steps > 100, "{steps} steps replayed");
}
