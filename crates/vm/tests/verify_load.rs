//! Loading runs the verifier first, as BPF_PROG_LOAD does: a refusal is
//! `LoadError::Refused` with the kernel's errno, instruction and source line; with
//! verification off an accepted program carries no proof (every access checked
//! at run time).

use skiff_isa::assemble;
use skiff_object::{LineInfo, ProgType};
use skiff_vm::verifier::EINVAL;
use skiff_vm::{LoadError, LoadOptions, Program};

fn spec(text: &str) -> skiff_object::Program {
    skiff_object::Program {
        name: "p".into(),
        section: "xdp".into(),
        prog_type: ProgType::Xdp,
        expected_attach_type: None,
        frags: false,
        insns: assemble(text).expect("assembles"),
        lines: vec![
            LineInfo {
                insn: 0,
                file: "/src/p.c".into(),
                line: 3,
                col: 2,
                text: "\tint x = 2;".into(),
            },
            LineInfo {
                insn: 1,
                file: "/src/p.c".into(),
                line: 4,
                col: 2,
                text: "\tgoto far;".into(),
            },
        ],
        funcs: Vec::new(),
    }
}

#[test]
fn accepted_program_is_verified() {
    let p = Program::load_object(
        "GPL",
        &spec("mov %r0, 2\nexit"),
        &[],
        &LoadOptions::default(),
    )
    .expect("loads");
    assert_eq!(p.verified().map(|v| v.aux.len()), Some(2));
    assert!(p.refusal().is_none());
}

#[test]
fn unverified_load_carries_no_proof() {
    let opts = LoadOptions {
        verify: false,
        ..LoadOptions::default()
    };
    let p = Program::load_object("", &spec("mov %r0, 2\nexit"), &[], &opts).expect("loads");
    assert!(p.verified().is_none());
    assert!(p.refusal().is_none());
}

#[test]
fn refusal_names_errno_insn_and_source_line() {
    // A jump past the end: the kernel's check_cfg refuses it with EINVAL.
    let e = Program::load_object(
        "GPL",
        &spec("mov %r0, 2\nja +5\nexit"),
        &[],
        &LoadOptions::default(),
    )
    .err()
    .expect("refused");
    let LoadError::Refused { prog, error } = &e else {
        panic!("not a refusal: {e}");
    };
    assert_eq!(prog, "p");
    assert_eq!(error.errno, EINVAL);
    assert_eq!(error.insn, 1);
    assert_eq!(error.line.as_ref().map(|l| (l.line, l.col)), Some((4, 2)));
    let text = e.to_string();
    assert!(
        text.starts_with("program p: refused by the verifier: "),
        "{text}"
    );
    assert!(
        text.contains("(errno 22 EINVAL)\n  at insn 1 (/src/p.c:4:2): goto far;"),
        "{text}"
    );
}

#[test]
fn gpl_compatible_licenses() {
    for l in [
        "GPL",
        "GPL v2",
        "Dual BSD/GPL",
        "Dual MIT/GPL",
        "Dual MPL/GPL",
        "GPL and additional rights",
    ] {
        assert!(skiff_vm::license_is_gpl_compatible(l), "{l}");
    }
    for l in ["", "MIT", "BSD", "gpl", "Proprietary"] {
        assert!(!skiff_vm::license_is_gpl_compatible(l), "{l}");
    }
}
