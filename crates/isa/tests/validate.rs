//! The validator: what RFC 9669 (cpu v1-v4) accepts, and each rejection with its
//! instruction index and message.

use skiff_isa::*;

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(code, dst, src, off, imm)
}

const EXIT_INSN: Insn = Insn::new(EXIT, 0, 0, 0, 0);

/// `body` followed by exit.
fn prog(body: &[Insn]) -> Vec<Insn> {
    let mut v = body.to_vec();
    v.push(EXIT_INSN);
    v
}

#[test]
fn accepts_cpu_v4_and_the_other_valid_forms() {
    let ok: &[&[Insn]] = &[
        &[i(0x3f, 0, 1, 1, 0)],  // sdiv r0, r1
        &[i(0x34, 0, 0, 1, 3)],  // sdiv32 w0, 3
        &[i(0x9f, 0, 1, 1, 0)],  // smod
        &[i(0xbf, 0, 1, 8, 0)],  // r0 = (s8)r1
        &[i(0xbf, 0, 1, 32, 0)], // r0 = (s32)r1
        &[i(0xbc, 0, 1, 16, 0)], // w0 = (s16)w1
        &[i(0xd7, 0, 0, 0, 16)], // bswap16
        &[i(0xdc, 0, 0, 0, 64)], // be64
        &[
            i(0x91, 0, 1, 0, 0),
            i(0x89, 0, 1, 2, 0),
            i(0x81, 0, 1, -4, 0),
        ], // ldsx
        &[i(JA32, 0, 0, 0, 0)],  // gotol +0
        &[i(0xdb, 1, 2, 0, 0x00)], // lock add
        &[i(0xdb, 1, 2, 0, 0x41)], // fetch or
        &[i(0xc3, 1, 2, 0, 0x51)], // fetch and32
        &[i(0xdb, 1, 2, 0, 0xa0)], // lock xor
        &[i(0xdb, 1, 2, 0, 0xe1)], // xchg
        &[i(0xc3, 1, 2, 0, 0xf1)], // cmpxchg32
        &[i(0x85, 0, 0, 0, 1)],  // helper call
        &[i(0x85, 0, 2, 3, 12345)], // kfunc, module BTF index in off
        &[i(0x8d, 2, 0, 0, 0)],  // callx r2
        &[i(0xbf, 1, 10, 0, 0), i(0x07, 1, 0, 0, -8)], // r1 = r10; r1 += -8
        &[i(0x0f, 1, 10, 0, 0), i(0x1f, 1, 10, 0, 0)], // r1 += r10; r1 -= r10
        &[i(0x7a, 10, 0, -8, 1), i(0x7b, 10, 10, -16, 0)], // stores through r10
        &[i(0x5d, 1, 10, 0, 0)], // if r1 != r10 goto +0
        &[i(0x18, 1, 1, 0, 3), i(0, 0, 0, 0, 0)], // ld map fd
        &[i(0x18, 1, 2, 0, 3), i(0, 0, 0, 0, 8)], // ld map value
        &[i(0x18, 1, 6, 0, 3), i(0, 0, 0, 0, 8)], // ld map idx value
        &[i(0x18, 1, 3, 0, 77), i(0, 0, 0, 0, 0)], // ld btf id
        &[i(0x67, 0, 0, 0, 64), i(0x34, 0, 0, 0, 0)], // shift by 64, divide by 0: defined by RFC 9669
    ];
    for body in ok {
        let p = prog(body);
        assert_eq!(validate(&p), Ok(()), "{body:?}");
    }
    // bpf-to-bpf calls and BPF_PSEUDO_FUNC targets start subprograms.
    let p = [
        i(0x85, 0, 1, 0, 3), // call pc+3 -> 4
        i(0x18, 2, 4, 0, 2), // r2 = subprog[+2] -> 4
        i(0, 0, 0, 0, 0),
        EXIT_INSN,
        i(0xb7, 0, 0, 0, 1),
        EXIT_INSN,
    ];
    assert_eq!(validate(&p), Ok(()));
    // A program may end in an unconditional jump backwards.
    let p = [i(0xb7, 0, 0, 0, 0), EXIT_INSN, i(0x05, 0, 0, -2, 0)];
    assert_eq!(validate(&p), Ok(()));
}

fn rejected(p: &[Insn]) -> (usize, String) {
    let e = validate(p).expect_err("must be rejected");
    assert_eq!(
        e.to_string(),
        format!("instruction {}: {}", e.index, e.message)
    );
    (e.index, e.message)
}

#[test]
fn rejections_say_where_and_why() {
    let cases: Vec<(Vec<Insn>, usize, &str)> = vec![
        (vec![], 0, "empty program: no instructions"),
        (
            prog(&[i(0xb7, 10, 0, 0, 1)]),
            0,
            "r10 is the read-only frame pointer and cannot be written",
        ),
        (
            prog(&[i(0x79, 10, 1, 0, 0)]),
            0,
            "r10 is the read-only frame pointer and cannot be written",
        ),
        (
            prog(&[i(0x18, 10, 0, 0, 0), i(0, 0, 0, 0, 0)]),
            0,
            "r10 is the read-only frame pointer",
        ),
        (
            prog(&[i(0xd7, 10, 0, 0, 16)]),
            0,
            "r10 is the read-only frame pointer",
        ),
        (
            prog(&[i(0x07, 11, 0, 0, 1)]),
            0,
            "invalid register r11 in dst_reg",
        ),
        (
            prog(&[i(0x5d, 1, 12, 0, 0)]),
            0,
            "invalid register r12 in src_reg",
        ),
        (
            prog(&[i(0x4f, 0, 10, 0, 0)]),
            0,
            "r10 (frame pointer) cannot be the source of or",
        ),
        (
            prog(&[i(0x2f, 0, 10, 0, 0)]),
            0,
            "r10 (frame pointer) cannot be the source of mul",
        ),
        (
            prog(&[i(0x6f, 0, 10, 0, 0)]),
            0,
            "r10 (frame pointer) cannot be the source of lsh",
        ),
        (
            prog(&[i(0xbf, 0, 10, 8, 0)]),
            0,
            "r10 (frame pointer) cannot be sign-extended",
        ),
        (
            prog(&[i(0xdb, 1, 10, 0, 0)]),
            0,
            "r10 (frame pointer) cannot be the source of an atomic",
        ),
        (prog(&[i(0xff, 0, 0, 0, 0)]), 0, "unknown opcode 0xff"),
        (prog(&[i(0xdf, 0, 0, 0, 16)]), 0, "unknown opcode 0xdf"), // bswap with BPF_X
        (prog(&[i(0x8c, 0, 1, 0, 0)]), 0, "unknown opcode 0x8c"),  // neg with BPF_X
        (prog(&[i(0x86, 0, 0, 0, 1)]), 0, "unknown opcode 0x86"),  // jmp32 call
        (prog(&[i(0x96, 0, 0, 0, 0)]), 0, "unknown opcode 0x96"),  // jmp32 exit
        (prog(&[i(0x0d, 0, 0, 0, 0)]), 0, "unknown opcode 0x0d"),  // ja with BPF_X
        (prog(&[i(0xf5, 0, 0, 0, 0)]), 0, "unknown opcode 0xf5"),
        (prog(&[i(0xe7, 0, 0, 0, 0)]), 0, "unknown opcode 0xe7"),
        (prog(&[i(0x99, 0, 1, 0, 0)]), 0, "unknown opcode 0x99"), // ldsx dw
        (prog(&[i(0x92, 1, 0, 0, 0)]), 0, "unknown opcode 0x92"), // st memsx
        (prog(&[i(0x00, 0, 0, 0, 0)]), 0, "unknown opcode 0x00"), // lone second slot
        // ld_abs: r0 implicit, no src for ABS, no offset (check_ld_abs)
        (
            prog(&[i(0x30, 1, 0, 0, 1)]),
            0,
            "BPF_LD_[ABS|IND] uses reserved fields",
        ),
        (
            prog(&[i(0x30, 0, 2, 0, 1)]),
            0,
            "BPF_LD_[ABS|IND] uses reserved fields",
        ),
        (
            prog(&[i(0x50, 0, 2, 1, 1)]),
            0,
            "BPF_LD_[ABS|IND] uses reserved fields",
        ),
        (prog(&[i(0x38, 0, 0, 0, 1)]), 0, "unknown opcode 0x38"),
        (prog(&[i(0xe5, 0, 0, 0, 0)]), 0, "not supported: may_goto"),
        (
            prog(&[i(0xbf, 0, 1, 1, 1)]),
            0,
            "not supported: addr_space_cast (BPF arena)",
        ),
        (
            prog(&[i(0xdb, 1, 2, 0, 0x100)]),
            0,
            "not supported: load-acquire/store-release",
        ),
        (
            prog(&[i(0xbc, 0, 1, 32, 0)]),
            0,
            "movsx width (off) must be 0, 8 or 16, is 32",
        ),
        (
            prog(&[i(0xbf, 0, 1, 4, 0)]),
            0,
            "movsx width (off) must be 0, 8, 16 or 32, is 4",
        ),
        (
            prog(&[i(0x0f, 0, 1, 1, 0)]),
            0,
            "reserved field off must be 0, is 1",
        ),
        (
            prog(&[i(0x3f, 0, 1, 2, 0)]),
            0,
            "reserved field off must be 0 or 1 (signed), is 2",
        ),
        (
            prog(&[i(0xdc, 0, 0, 0, 8)]),
            0,
            "byte swap width (imm) must be 16, 32 or 64, is 8",
        ),
        (
            prog(&[i(0xd3, 1, 2, 0, 0)]),
            0,
            "atomic operations must be 32 or 64 bits wide",
        ),
        (
            prog(&[i(0xdb, 1, 2, 0, 0x02)]),
            0,
            "invalid atomic operation imm 0x2",
        ),
        (
            prog(&[i(0xdb, 1, 2, 0, 0xe0)]),
            0,
            "invalid atomic operation imm 0xe0",
        ),
        (
            prog(&[i(JA32, 0, 0, 1, 0)]),
            0,
            "reserved field off must be 0, is 1",
        ),
        (
            prog(&[i(0x85, 0, 3, 0, 1)]),
            0,
            "invalid call src_reg 3 (0 helper, 1 bpf-to-bpf, 2 kfunc)",
        ),
        (
            prog(&[i(0x8d, 10, 0, 0, 0)]),
            0,
            "callx through r10 (frame pointer)",
        ),
        (
            prog(&[i(0x8d, 1, 0, 0, 2)]),
            0,
            "reserved field imm must be 0, is 2",
        ),
        (
            prog(&[i(0x18, 1, 7, 0, 0), i(0, 0, 0, 0, 0)]),
            0,
            "invalid ld_imm64 src_reg 7",
        ),
        (
            prog(&[i(0x18, 1, 0, 1, 0), i(0, 0, 0, 0, 0)]),
            0,
            "reserved field off must be 0, is 1",
        ),
        (
            prog(&[i(0x18, 1, 0, 0, 0), i(0, 1, 0, 0, 0)]),
            0,
            "invalid ld_imm64 second slot: code 0x00 dst_reg 1",
        ),
        (
            prog(&[i(0x18, 1, 0, 0, 0), i(0x95, 0, 0, 0, 0)]),
            0,
            "invalid ld_imm64 second slot: code 0x95",
        ),
        (
            vec![EXIT_INSN, i(0x18, 1, 0, 0, 0)],
            1,
            "ld_imm64 is missing its second slot",
        ),
        (
            prog(&[i(0x05, 0, 0, 1, 0)]),
            0,
            "jump out of range: target 2 (program has 2 instructions)",
        ),
        (
            prog(&[i(0x15, 0, 0, -2, 0)]),
            0,
            "jump out of range: target -1",
        ),
        (
            prog(&[i(JA32, 0, 0, 0, 5)]),
            0,
            "jump out of range: target 6",
        ),
        (
            prog(&[i(0x05, 0, 0, 1, 0), i(0x18, 1, 0, 0, 0), i(0, 0, 0, 0, 0)]),
            0,
            "jump into the middle of ld_imm64 at instruction 1",
        ),
        (
            prog(&[i(0x85, 0, 1, 0, 5)]),
            0,
            "bpf-to-bpf call out of range: target 6",
        ),
        (
            prog(&[i(0x18, 1, 4, 0, 9), i(0, 0, 0, 0, 0)]),
            0,
            "ld_imm64 BPF_PSEUDO_FUNC out of range",
        ),
        (
            vec![i(0xb7, 0, 0, 0, 0)],
            0,
            "last instruction of program is not exit or an unconditional jump",
        ),
        (
            vec![EXIT_INSN, i(0x18, 1, 0, 0, 0), i(0, 0, 0, 0, 0)],
            2,
            "last instruction of program is not exit",
        ),
        (
            // The main program falls through into the subprogram at 2.
            vec![i(0x85, 0, 1, 0, 0), i(0xb7, 0, 0, 0, 0), EXIT_INSN],
            0,
            "last instruction of subprogram starting at instruction 0 is not exit",
        ),
        (
            // A jump from the main program into the subprogram at 3.
            vec![
                i(0x85, 0, 1, 0, 1),
                i(0x05, 0, 0, 1, 0),
                EXIT_INSN,
                EXIT_INSN,
            ],
            1,
            "jump to instruction 3 leaves its subprogram (instructions 0 to 1)",
        ),
    ];
    for (p, index, msg) in &cases {
        let (got_index, got) = rejected(p);
        assert!(got.starts_with(msg), "{p:?}: got `{got}`, want `{msg}`");
        assert_eq!(got_index, *index, "{p:?}: {got}");
    }
}

#[test]
fn decode_and_encode() {
    let bytes = [
        0xb7, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, // r1 = -1
        0x63, 0x1a, 0xfc, 0xff, 0x00, 0x00, 0x00, 0x00, // *(u32 *)(r10 -4) = r1
        0x95, 0, 0, 0, 0, 0, 0, 0,
    ];
    let insns = decode(&bytes).unwrap();
    assert_eq!(
        insns,
        vec![i(0xb7, 1, 0, 0, -1), i(0x63, 10, 1, -4, 0), EXIT_INSN]
    );
    assert_eq!(encode(&insns), bytes);
    assert_eq!(decode(&[]).unwrap(), vec![]);
    assert_eq!(
        decode(&bytes[..13]).unwrap_err().to_string(),
        "bytecode length 13 is not a multiple of 8: 5 trailing byte(s) at byte offset 8"
    );
}

#[test]
fn legacy_packet_loads_validate_and_print_as_bpftool() {
    let p = vec![
        i(0x30, 0, 0, 0, 23),
        i(0x48, 0, 3, 0, 2),
        i(0x95, 0, 0, 0, 0),
    ];
    assert_eq!(skiff_isa::validate(&p), Ok(()));
    let text = skiff_isa::disassemble(&p, &skiff_isa::RawSymbolizer);
    assert_eq!(
        text,
        "   0: (30) r0 = *(u8 *)skb[23]\n   1: (48) r0 = *(u16 *)skb[r3 + 2]\n   2: (95) exit\n"
    );
}
