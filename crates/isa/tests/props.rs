//! Properties over random input: nothing panics on arbitrary bytes or text, and
//! bytes and instructions round-trip.

use proptest::prelude::*;
use skiff_isa::*;

fn any_insn() -> impl Strategy<Value = Insn> {
    (any::<u8>(), 0u8..16, 0u8..16, any::<i16>(), any::<i32>())
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
}

/// Instructions biased towards valid opcodes, so validate gets past the first check.
fn plausible_insn() -> impl Strategy<Value = Insn> {
    let codes = prop::sample::select(vec![
        0x07u8, 0x0f, 0x04, 0x0c, 0xb7, 0xbf, 0xb4, 0xbc, 0x3f, 0x97, 0x87, 0xdc, 0xd4, 0xd7, 0x61,
        0x79, 0x91, 0x62, 0x7a, 0x63, 0x7b, 0xc3, 0xdb, 0x18, 0x00, 0x05, 0x06, 0x15, 0x1d, 0x16,
        0x85, 0x8d, 0x95,
    ]);
    (
        codes,
        0u8..12,
        0u8..7,
        -4i16..4,
        prop_oneof![Just(0i32), Just(1), Just(16), Just(0xe1), -4i32..4],
    )
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(insns) = decode(&bytes) {
            let _ = validate(&insns);
            let text = disassemble(&insns, &RawSymbolizer);
            let lines = text.lines().count();
            prop_assert!(lines <= insns.len());
            for k in 0..insns.len() + 1 {
                let _ = format_insn(&insns, k, &RawSymbolizer);
            }
        } else {
            prop_assert!(bytes.len() % 8 != 0);
        }
    }

    #[test]
    fn plausible_programs_never_panic(insns in prop::collection::vec(plausible_insn(), 0..40)) {
        let verdict = validate(&insns);
        let text = disassemble(&insns, &RawSymbolizer);
        if verdict.is_ok() {
            // A valid program prints no invalid line.
            prop_assert!(!text.contains("invalid"), "{}", text);
        }
    }

    #[test]
    fn bytes_round_trip(words in prop::collection::vec(any::<[u8; 8]>(), 0..64)) {
        let bytes: Vec<u8> = words.concat();
        let insns = decode(&bytes).unwrap();
        prop_assert_eq!(insns.len(), words.len());
        prop_assert_eq!(encode(&insns), bytes);
    }

    #[test]
    fn insns_round_trip(insns in prop::collection::vec(any_insn(), 0..64)) {
        prop_assert_eq!(decode(&encode(&insns)).unwrap(), insns);
    }

    #[test]
    fn random_text_never_panics(text in "[a-z0-9%\\[\\]+\\-:, #\n]{0,200}") {
        let _ = assemble(&text);
    }

    #[test]
    fn random_data_files_never_panic(text in "(-- (asm|raw|mem|result|error)\n|[0-9a-fx %r,\\[\\]+\\-]{0,30}\n){0,12}") {
        if let Ok(t) = conformance::parse_data_file(&text) {
            let _ = t.program();
        }
    }
}
