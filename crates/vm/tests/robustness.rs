//! A buggy or hostile program never crashes the process: out-of-bounds accesses,
//! runaway loops, unknown helpers and deep calls end the run with an exception
//! naming the instruction; random bytecode is refused or runs to an end.

use std::sync::Arc;

use proptest::prelude::*;
use skiff_isa::{assemble, Insn};
use skiff_vm::{conformance, Engine, HelperTable, NoContext, ProgType, Program, Vm, VmError};

fn load(text: &str) -> Arc<Program> {
    Arc::new(
        Program::load("t", ProgType::Xdp, assemble(text).expect("assembles"), &[]).expect("loads"),
    )
}

fn run(text: &str) -> Result<u64, skiff_vm::Exception> {
    let mut vm = Vm::new(Arc::new(HelperTable::generic()));
    vm.env.budget = 100_000;
    vm.run(&load(text), &mut NoContext)
}

#[test]
fn out_of_bounds_read_is_an_exception_at_its_insn() {
    let e = run("mov %r1, 4096\nldxdw %r0, [%r1]\nexit").unwrap_err();
    assert_eq!(e.pc, 1);
    assert_eq!(
        e.error,
        VmError::OutOfBounds {
            addr: 4096,
            len: 8,
            write: false
        }
    );
}

#[test]
fn one_byte_access_at_the_last_address_is_an_exception() {
    // r9 is 0: r9 - 1 is u64::MAX, one byte below the wrap (the fuzzer's SIGSEGV:
    // the JIT's empty-range test let exactly this access through).
    for engine in [Engine::Jit, Engine::Interp] {
        for (text, write) in [
            ("stb [%r9-1], 7\nmov %r0, 0\nexit", true),
            ("ldxb %r0, [%r9-1]\nexit", false),
        ] {
            let insns = assemble(text).expect("assembles");
            let e = conformance::run_with(engine, insns, &[0u8; 16]).unwrap_err();
            let want = VmError::OutOfBounds {
                addr: u64::MAX,
                len: 1,
                write,
            };
            assert_eq!(
                e,
                format!("conformance insn 0: {want}"),
                "{engine:?} {text}"
            );
        }
    }
}

#[test]
fn stack_overflow_past_the_frame_is_refused() {
    // The stack of all frames is one region: 8 frames of 512 bytes. Writing above
    // r10 (beyond the top frame) is outside it.
    let e = run("stxdw [%r10+0], %r1\nmov %r0, 0\nexit").unwrap_err();
    assert_eq!(e.pc, 0);
    assert!(
        matches!(
            e.error,
            VmError::OutOfBounds {
                write: true,
                len: 8,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn runaway_loop_hits_the_budget() {
    let e = run("mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit").unwrap_err();
    assert_eq!(e.error, VmError::Budget(100_000));
}

#[test]
fn unknown_helper_is_named() {
    let e = run("call 9999\nexit").unwrap_err();
    assert_eq!((e.pc, e.error), (0, VmError::UnknownHelper(9999)));
}

#[test]
fn recursion_past_eight_frames_is_refused() {
    let e = run("call local f\nexit\nf:\ncall local f\nexit").unwrap_err();
    assert_eq!(e.error, VmError::CallDepth(8));
    assert_eq!(e.pc, 2);
}

#[test]
fn bad_map_pointer_to_helper_is_refused() {
    let e = run("mov %r1, 1234\nmov %r2, %r10\nadd %r2, -8\ncall 1\nexit").unwrap_err();
    assert_eq!((e.pc, e.error), (3, VmError::BadMap(1234)));
}

#[test]
fn division_by_zero_follows_the_isa() {
    assert_eq!(
        run("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1\nexit").unwrap(),
        0
    );
    assert_eq!(
        run("mov %r0, 7\nmov %r1, 0\nmod %r0, %r1\nexit").unwrap(),
        7
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Random instruction streams: refused at load, or run to an exit or an
    /// exception, never a panic or a wild access.
    #[test]
    fn random_bytecode_never_panics(words in proptest::collection::vec(any::<u64>(), 1..40), mem in proptest::collection::vec(any::<u8>(), 0..64)) {
        let insns: Vec<Insn> = words.iter().map(|w| Insn::from_bytes(w.to_le_bytes())).collect();
        let _ = conformance::run(insns, &mem);
    }

    /// Random programs made of valid opcodes with small offsets, ending in exit:
    /// most load, so the interpreter's paths get exercised.
    #[test]
    fn random_valid_programs_never_panic(ops in proptest::collection::vec((0usize..OPS.len(), 0u8..11, 0u8..11, -4i16..4, any::<i32>()), 1..30)) {
        let mut insns: Vec<Insn> = ops.iter().map(|&(o, d, s, off, imm)| Insn::new(OPS[o], d.min(9), s, off, imm)).collect();
        insns.push(Insn::new(skiff_isa::EXIT, 0, 0, 0, 0));
        let _ = conformance::run(insns, &[0u8; 16]);
    }
}

const OPS: &[u8] = &[
    0x07, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x47, 0x4f, 0x57, 0x5f, 0x67, 0x6f, 0x77, 0x7f,
    0x87, 0x97, 0x9f, 0xa7, 0xaf, 0xb7, 0xbf, 0xc7, 0xcf, 0xd4, 0xdc, 0xd7, 0x04, 0x0c, 0x14, 0x1c,
    0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74, 0x7c, 0x84, 0x94, 0x9c, 0xa4,
    0xac, 0xb4, 0xbc, 0xc4, 0xcc, 0x61, 0x69, 0x71, 0x79, 0x62, 0x6a, 0x72, 0x7a, 0x63, 0x6b, 0x73,
    0x7b, 0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d, 0x55, 0x5d, 0x65, 0x6d, 0x75, 0x7d,
    0xa5, 0xad, 0xb5, 0xbd, 0xc5, 0xcd, 0xd5, 0xdd, 0x16, 0x1e, 0x26, 0x2e, 0xdb, 0xc3,
];
