//! Kernel-only: the context access rules (`skiff_vm::verifier::ctx`) against the
//! running kernel's verifier. Every load, sign-extending load and store of 1, 2,
//! 4 and 8 bytes at every offset around `struct xdp_md` (plain and
//! BPF_XDP_DEVMAP) and `struct __sk_buff` is loaded as a tiny program; the
//! kernel's accept/refuse (and its message) must be skiff's. Needs root; skips
//! with a printed reason otherwise.

use skiff_isa::Insn;
use skiff_kernel::{KernelError, KernelObject};
use skiff_object::{AttachType, Object, ProgType, Program};
use skiff_vm::verifier::ctx::{check_ctx_access, ctx_size, CtxQuery};

const EXIT: u8 = 0x95;
const MOV64_IMM: u8 = 0xb7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Load,
    /// BPF_LDX | BPF_MEMSX (sizes 1, 2, 4).
    LoadSx,
    Store,
}

/// The opcode of an access of `size` bytes (BPF_LDX|BPF_MEM, BPF_LDX|BPF_MEMSX,
/// BPF_STX|BPF_MEM).
fn opcode(kind: Kind, size: u32) -> u8 {
    let sz = match size {
        1 => 0x10,
        2 => 0x08,
        4 => 0x00,
        _ => 0x18,
    };
    match kind {
        Kind::Load => 0x61 | sz,
        Kind::LoadSx => 0x81 | sz,
        Kind::Store => 0x63 | sz,
    }
}

/// `r0 = *(uN *)(r1 + off)` or `r2 = 0; *(uN *)(r1 + off) = r2`, then `return 0`.
fn program(t: ProgType, devmap: bool, off: i16, size: u32, kind: Kind) -> Object {
    let mut insns = Vec::new();
    if kind == Kind::Store {
        insns.push(Insn::new(MOV64_IMM, 2, 0, 0, 0));
        insns.push(Insn::new(opcode(kind, size), 1, 2, off, 0));
    } else {
        insns.push(Insn::new(opcode(kind, size), 0, 1, off, 0));
    }
    insns.push(Insn::new(MOV64_IMM, 0, 0, 0, 0));
    insns.push(Insn::new(EXIT, 0, 0, 0, 0));
    Object {
        license: "GPL".into(),
        programs: vec![Program {
            name: "ctx_probe".into(),
            section: "probe".into(),
            prog_type: t,
            expected_attach_type: devmap.then_some(AttachType::XdpDevmap),
            frags: false,
            insns,
            lines: Vec::new(),
            funcs: Vec::new(),
        }],
        maps: Vec::new(),
        skipped: Vec::new(),
    }
}

/// The kernel's verdict: Ok, or the message line of an EACCES refusal.
fn kernel(t: ProgType, devmap: bool, off: i16, size: u32, kind: Kind) -> Result<(), String> {
    match KernelObject::load(&program(t, devmap, off, size, kind)) {
        Ok(_) => Ok(()),
        Err(KernelError::ProgLoad { errno: 13, log, .. }) => Err(log
            .lines()
            .find(|l| l.starts_with("invalid bpf_context access"))
            .unwrap_or("(no ctx message)")
            .to_string()),
        Err(e) => Err(format!("unexpected: {e}")),
    }
}

#[test]
fn ctx_rules_match_the_kernel() {
    if let Err(why) = skiff_kernel::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (t, devmap) in [
        (ProgType::Xdp, false),
        (ProgType::Xdp, true),
        (ProgType::SchedCls, false),
    ] {
        let end = ctx_size(t) as i16 + 8;
        for off in -8..end {
            for size in [1, 2, 4, 8] {
                for kind in [Kind::Load, Kind::LoadSx, Kind::Store] {
                    if kind == Kind::LoadSx && size == 8 {
                        continue;
                    }
                    let q = CtxQuery {
                        off: i64::from(off),
                        size,
                        write: kind == Kind::Store,
                        is_ldsx: kind == Kind::LoadSx,
                        xdp_devmap: devmap,
                    };
                    let skiff = check_ctx_access(t, &q).map(|_| ());
                    let k = kernel(t, devmap, off, size, kind);
                    checked += 1;
                    if skiff != k {
                        wrong.push(format!(
                            "{t:?} devmap={devmap} off={off} size={size} {kind:?}: kernel {k:?}, skiff {skiff:?}"
                        ));
                    }
                }
            }
        }
    }
    // offsets -8 .. size + 8 of xdp_md (24, twice) and __sk_buff (192), sizes
    // 1, 2, 4, 8 loaded and stored, 1, 2, 4 sign-extended.
    assert_eq!(checked, (40 + 40 + 208) * 11);
    assert!(
        wrong.is_empty(),
        "{} of {checked} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
