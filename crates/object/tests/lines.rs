//! BTF line info (`.BTF.ext` line_info): each program gets the source lines of its
//! own code and of every `.text` subprogram appended to it, moved with the code.
mod common;
use common::{compile, PRELUDE};
use skiff_object::*;

const CALL: u8 = 0x85;
const PSEUDO_CALL: u8 = 1;

const BODY: &str = r#"
static __attribute__((noinline)) int add_one(int x)
{
	return x + 1;
}

static __attribute__((noinline)) int twice(int x)
{
	return add_one(x) * 2;
}

SEC("xdp")
int first(struct xdp_md *ctx)
{
	int v = ctx->ingress_ifindex;
	return add_one(v) & 3;
}

SEC("tc")
int second(struct __sk_buff *skb)
{
	int w = skb->mark;
	if (w == 7)
		return twice(w) & 1;
	return 2;
}

char _license[] SEC("license") = "GPL";
"#;

/// The 1-based number of the line of `src` containing `needle`.
fn line_no(src: &str, needle: &str) -> u32 {
    let i = src
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}"));
    u32::try_from(i + 1).expect("line number")
}

/// Instruction indexes a bpf-to-bpf call in `p` jumps to.
fn call_targets(p: &Program) -> Vec<usize> {
    p.insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.code == CALL && i.src == PSEUDO_CALL)
        .map(|(n, i)| (n as i64 + i64::from(i.imm) + 1) as usize)
        .collect()
}

#[test]
fn line_info_follows_subprograms() {
    let src = format!("{PRELUDE}{BODY}");
    let Some(bytes) = compile("lines", &src) else {
        return;
    };
    let obj = Object::parse(&bytes).expect("parse");
    let src_lines: Vec<&str> = src.lines().collect();
    let add_one = line_no(&src, "return x + 1;");
    let twice = line_no(&src, "return add_one(x) * 2;");
    for p in &obj.programs {
        assert!(!p.lines.is_empty(), "{}: no line info", p.name);
        assert_eq!(p.lines[0].insn, 0, "{}: first record", p.name);
        assert!(p.lines.windows(2).all(|w| w[0].insn <= w[1].insn));
        for l in &p.lines {
            assert!(l.file.ends_with("lines.c"), "{}: file {}", p.name, l.file);
            assert!(l.insn < p.insns.len(), "{}: insn {}", p.name, l.insn);
            // The recorded text is the source line itself.
            let idx = usize::try_from(l.line).expect("line") - 1;
            assert_eq!(
                Some(&l.text.as_str()),
                src_lines.get(idx),
                "{}: {l:?}",
                p.name
            );
        }
    }

    // add_one's records as clang-19 writes them: its declaration line at .text 0,
    // its body at 1 and 2 (the exit).
    let add_decl = line_no(&src, "int add_one(int x)");
    let tail = |p: &Program, from: usize| -> Vec<(usize, u32)> {
        p.lines
            .iter()
            .filter(|l| l.insn >= from)
            .map(|l| (l.insn, l.line))
            .collect()
    };

    let first = obj.program("first").expect("first");
    assert_eq!(
        first.line_of(0).map(|l| l.line),
        Some(line_no(&src, "return add_one(v) & 3;"))
    );
    // add_one is appended after first's own code; its lines moved with it.
    let targets = call_targets(first);
    assert_eq!(targets.len(), 1);
    let t = targets[0];
    assert_eq!(
        tail(first, t),
        vec![(t, add_decl), (t + 1, add_one), (t + 2, add_one)]
    );

    // second reaches twice, which reaches add_one: both appended in that order
    // (depth first, as libbpf), each with its own lines (twice: one record per
    // instruction but the call's argument set-up).
    let second = obj.program("second").expect("second");
    let targets = call_targets(second);
    assert_eq!(targets.len(), 2);
    let (t_twice, t_add) = (targets[0], targets[1]);
    assert!(t_twice < t_add);
    assert_eq!(
        tail(second, t_twice),
        vec![
            (t_twice, twice),
            (t_twice + 2, twice),
            (t_twice + 3, twice),
            (t_add, add_decl),
            (t_add + 1, add_one),
            (t_add + 2, add_one)
        ]
    );
    assert_eq!(
        second.line_of(0).map(|l| l.line),
        Some(line_no(&src, "int second("))
    );
    // Past the end of the records the last one still covers.
    let last = second.lines.last().expect("lines");
    assert_eq!(second.line_of(second.insns.len() - 1), Some(last));
}

#[test]
fn no_line_info_without_debug_info() {
    let src = format!("{PRELUDE}{BODY}");
    let Some(bytes) = common::compile_with("lines_nog", &src, &["-g0"]) else {
        return;
    };
    let obj = Object::parse(&bytes).expect("parse");
    assert!(obj.programs.iter().all(|p| p.lines.is_empty()));
    assert_eq!(obj.programs.len(), 2);
}
