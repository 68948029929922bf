//! The assembler: exact encodings of every instruction form and its errors.

use skiff_isa::*;

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(code, dst, src, off, imm)
}

fn asm1(line: &str) -> Vec<Insn> {
    assemble(line).unwrap_or_else(|e| panic!("`{line}`: {e}"))
}

#[test]
fn encodings() {
    let cases: &[(&str, &[Insn])] = &[
        ("mov %r0, 1", &[i(0xb7, 0, 0, 0, 1)]),
        ("mov64 %r0, -1", &[i(0xb7, 0, 0, 0, -1)]),
        ("mov32 %r0, 0xffffffff", &[i(0xb4, 0, 0, 0, -1)]),
        ("mov32 %r0, -2147483648", &[i(0xb4, 0, 0, 0, i32::MIN)]),
        ("mov %r1, %r10", &[i(0xbf, 1, 10, 0, 0)]),
        ("add %r1, -8", &[i(0x07, 1, 0, 0, -8)]),
        ("add32 %r1, %r2", &[i(0x0c, 1, 2, 0, 0)]),
        ("sub64 %r1, 0x10", &[i(0x17, 1, 0, 0, 16)]),
        ("mul %r3, %r4", &[i(0x2f, 3, 4, 0, 0)]),
        ("div32 %r3, 7", &[i(0x34, 3, 0, 0, 7)]),
        ("sdiv %r0, %r1", &[i(0x3f, 0, 1, 1, 0)]),
        ("sdiv32 %r0, 3", &[i(0x34, 0, 0, 1, 3)]),
        ("smod %r0, -3", &[i(0x97, 0, 0, 1, -3)]),
        ("smod32 %r0, %r2", &[i(0x9c, 0, 2, 1, 0)]),
        ("or %r0, 1", &[i(0x47, 0, 0, 0, 1)]),
        ("and32 %r0, 1", &[i(0x54, 0, 0, 0, 1)]),
        ("lsh %r0, 63", &[i(0x67, 0, 0, 0, 63)]),
        ("rsh32 %r0, %r1", &[i(0x7c, 0, 1, 0, 0)]),
        ("mod %r0, 5", &[i(0x97, 0, 0, 0, 5)]),
        ("xor %r0, %r9", &[i(0xaf, 0, 9, 0, 0)]),
        ("arsh32 %r0, 3", &[i(0xc4, 0, 0, 0, 3)]),
        ("neg %r2", &[i(0x87, 2, 0, 0, 0)]),
        ("neg32 %r2", &[i(0x84, 2, 0, 0, 0)]),
        ("movsx832 %r0, %r1", &[i(0xbc, 0, 1, 8, 0)]),
        ("movsx1632 %r0, %r1", &[i(0xbc, 0, 1, 16, 0)]),
        ("movsx864 %r0, %r1", &[i(0xbf, 0, 1, 8, 0)]),
        ("movsx1664 %r0, %r1", &[i(0xbf, 0, 1, 16, 0)]),
        ("movsx3264 %r0, %r1", &[i(0xbf, 0, 1, 32, 0)]),
        ("be16 %r0", &[i(0xdc, 0, 0, 0, 16)]),
        ("be64 %r3", &[i(0xdc, 3, 0, 0, 64)]),
        ("le32 %r0", &[i(0xd4, 0, 0, 0, 32)]),
        ("swap16 %r0", &[i(0xd7, 0, 0, 0, 16)]),
        ("bswap64 %r0", &[i(0xd7, 0, 0, 0, 64)]),
        ("ldxb %r0, [%r1]", &[i(0x71, 0, 1, 0, 0)]),
        ("ldxh %r0, [%r1+2]", &[i(0x69, 0, 1, 2, 0)]),
        ("ldxw %r0, [%r1+0x10]", &[i(0x61, 0, 1, 16, 0)]),
        ("ldxdw %r0, [%r10-8]", &[i(0x79, 0, 10, -8, 0)]),
        ("ldxsb %r0, [%r10-1]", &[i(0x91, 0, 10, -1, 0)]),
        ("ldxsh %r0, [%r1+2]", &[i(0x89, 0, 1, 2, 0)]),
        ("ldxsw %r0, [%r1]", &[i(0x81, 0, 1, 0, 0)]),
        ("stb [%r1+2], 5", &[i(0x72, 1, 0, 2, 5)]),
        ("sth [%r1], -1", &[i(0x6a, 1, 0, 0, -1)]),
        ("stw [%r10-4], 0x80000000", &[i(0x62, 10, 0, -4, i32::MIN)]),
        ("stdw [%r10-8], 1", &[i(0x7a, 10, 0, -8, 1)]),
        ("stxb [%r1+1], %r2", &[i(0x73, 1, 2, 1, 0)]),
        ("stxdw [%r10-8], %r0", &[i(0x7b, 10, 0, -8, 0)]),
        (
            "lddw %r0, 0x1122334455667788",
            &[i(0x18, 0, 0, 0, 0x55667788), i(0, 0, 0, 0, 0x11223344)],
        ),
        ("lddw %r1, -1", &[i(0x18, 1, 0, 0, -1), i(0, 0, 0, 0, -1)]),
        (
            "lddw %r1, 2147483648",
            &[i(0x18, 1, 0, 0, i32::MIN), i(0, 0, 0, 0, 0)],
        ),
        (
            "lddw %r1, 18446744073709551615",
            &[i(0x18, 1, 0, 0, -1), i(0, 0, 0, 0, -1)],
        ),
        ("ja +3", &[i(0x05, 0, 0, 3, 0)]),
        ("ja -1", &[i(0x05, 0, 0, -1, 0)]),
        ("ja32 -70000", &[i(0x06, 0, 0, 0, -70000)]),
        ("gotol +2", &[i(0x06, 0, 0, 0, 2)]),
        ("jeq %r1, 5, +2", &[i(0x15, 1, 0, 2, 5)]),
        ("jne %r1, %r2, -2", &[i(0x5d, 1, 2, -2, 0)]),
        ("jsgt32 %r1, -1, +0", &[i(0x66, 1, 0, 0, -1)]),
        ("jset32 %r1, %r3, +1", &[i(0x4e, 1, 3, 1, 0)]),
        ("jsle %r1, 0x80000000, +1", &[i(0xd5, 1, 0, 1, i32::MIN)]),
        ("exit", &[i(0x95, 0, 0, 0, 0)]),
        ("call 1", &[i(0x85, 0, 0, 0, 1)]),
        ("call helper 12", &[i(0x85, 0, 0, 0, 12)]),
        ("call runtime 77", &[i(0x85, 0, 2, 0, 77)]),
        ("call local +4", &[i(0x85, 0, 1, 0, 4)]),
        ("call %r2", &[i(0x8d, 2, 0, 0, 0)]),
        ("lock add [%r10-8], %r1", &[i(0xdb, 10, 1, -8, 0x00)]),
        ("lock add32 [%r10-4], %r1", &[i(0xc3, 10, 1, -4, 0x00)]),
        ("lock fetch add [%r1], %r2", &[i(0xdb, 1, 2, 0, 0x01)]),
        ("lock or [%r1], %r2", &[i(0xdb, 1, 2, 0, 0x40)]),
        ("lock fetch and32 [%r1], %r2", &[i(0xc3, 1, 2, 0, 0x51)]),
        ("lock fetch xor [%r1], %r2", &[i(0xdb, 1, 2, 0, 0xa1)]),
        ("lock xchg [%r1], %r2", &[i(0xdb, 1, 2, 0, 0xe1)]),
        ("lock cmpxchg32 [%r1+8], %r2", &[i(0xc3, 1, 2, 8, 0xf1)]),
        (
            "  MOV   %r0 ,  1   # trailing comment",
            &[i(0xb7, 0, 0, 0, 1)],
        ),
    ];
    for (line, want) in cases {
        assert_eq!(asm1(line), *want, "`{line}`");
    }
}

#[test]
fn labels_and_the_implicit_exit_label() {
    let prog = asm1(
        "# a comment line\n\
         mov %r0, 0\n\
         jeq %r1, 0, done\n\
         lddw %r2, 1\n\
         back:\n\
         add %r0, 1\n\
         jne %r0, 3, back\n\
         ja exit\n\
         done: mov %r0, 2\n\
         exit\n\
         call local func\n\
         ja32 back\n\
         func:\n\
         exit\n",
    );
    assert_eq!(
        prog,
        vec![
            i(0xb7, 0, 0, 0, 0),
            i(0x15, 1, 0, 5, 0), // 1: to `done` at 7
            i(0x18, 2, 0, 0, 1),
            i(0, 0, 0, 0, 0),
            i(0x07, 0, 0, 0, 1),  // 4: back
            i(0x55, 0, 0, -2, 3), // 5: to `back`
            i(0x05, 0, 0, 1, 0),  // 6: to the first exit, at 8
            i(0xb7, 0, 0, 0, 2),  // 7: done
            i(0x95, 0, 0, 0, 0),  // 8
            i(0x85, 0, 1, 0, 1),  // 9: to `func` at 11
            i(0x06, 0, 0, 0, -7), // 10: to `back`
            i(0x95, 0, 0, 0, 0),  // 11: func
        ]
    );
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "mov32 %r0, 2147483648",
            1,
            "immediate `2147483648` out of 32-bit range",
        ),
        (
            "mov32 %r0, -2147483649",
            1,
            "immediate `-2147483649` out of 32-bit range",
        ),
        (
            "mov32 %r0, 0x100000000",
            1,
            "immediate `0x100000000` out of 32-bit range",
        ),
        (
            "\nlddw %r0, 0x10000000000000000",
            2,
            "number `0x10000000000000000` out of 64-bit range",
        ),
        (
            "ldxb %r0, [%r1+0x10000]",
            1,
            "offset `+0x10000` out of 16-bit range",
        ),
        (
            "ldxb %r0, [%r1-32769]",
            1,
            "offset `-32769` out of 16-bit range",
        ),
        ("ja +32768", 1, "jump offset `+32768` out of 16-bit range"),
        (
            "ldxb %r0, %r1",
            1,
            "invalid memory operand `%r1` (expected [%rN+off])",
        ),
        ("ldxq %r0, [%r1]", 1, "invalid mnemonic `ldxq`"),
        ("movsx3232 %r0, %r1", 1, "invalid mnemonic `movsx3232`"),
        (
            "movsx864 %r0, 5",
            1,
            "`movsx864` needs a source register: invalid register `5`",
        ),
        (
            "or %r0, %r50",
            1,
            "invalid register `%r50` (registers are %r0..%r10)",
        ),
        (
            "mov %r11, 1",
            1,
            "invalid register `%r11` (registers are %r0..%r10)",
        ),
        (
            "lddw %r0",
            1,
            "invalid number of operands for `lddw`: expected 2, got 1",
        ),
        (
            "exit %r0",
            1,
            "invalid number of operands for `exit`: expected 0, got 1",
        ),
        (
            "mov %r0, 1\nja NOT_A_LABEL\nexit",
            2,
            "unknown label `NOT_A_LABEL`",
        ),
        ("x:\nx:\nexit", 2, "duplicate label `x`"),
        ("lock", 1, "invalid number of operands for lock"),
        ("lock or [%r10-8]", 1, "invalid number of operands for lock"),
        (
            "lock nand [%r1], %r2",
            1,
            "invalid atomic operation `lock nand`",
        ),
        (
            "call indirect 5",
            1,
            "invalid call mode `indirect` (helper, local or runtime)",
        ),
        ("mov %r0, 12abc", 1, "invalid number `12abc`"),
        (
            "jeq %r0, 1, 5",
            1,
            "invalid jump target `5` (a label or +N/-N)",
        ),
    ];
    for (text, line, msg) in cases {
        let e = assemble(text).expect_err(text);
        assert_eq!(e.line, *line, "`{text}`: {e}");
        assert!(
            e.message.starts_with(msg),
            "`{text}`: got `{}`, want `{msg}`",
            e.message
        );
    }
    assert_eq!(
        assemble("ja exit").unwrap_err().to_string(),
        "line 1: unknown label `exit`: no exit instruction"
    );
}

#[test]
fn assembled_programs_disassemble_and_validate() {
    let prog = asm1(
        "mov %r1, %r10\n add %r1, -8\n stdw [%r1], 0\n lock fetch add [%r1], %r0\n ldxdw %r0, [%r1]\n exit",
    );
    validate(&prog).unwrap();
    assert_eq!(
        disassemble(&prog, &RawSymbolizer),
        "   0: (bf) r1 = r10\n   1: (07) r1 += -8\n   2: (7a) *(u64 *)(r1 +0) = 0\n   3: (db) r0 = atomic64_fetch_add((u64 *)(r1 +0), r0)\n   4: (79) r0 = *(u64 *)(r1 +0)\n   5: (95) exit\n"
    );
}
