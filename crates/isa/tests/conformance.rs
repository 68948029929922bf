//! The bpf_conformance suite in /work/shared/conformance: every test in tests/ parses,
//! assembles and validates; every file in negative/ is rejected.

use std::path::{Path, PathBuf};

use skiff_isa::conformance::{parse_data_file, ConformanceTest};
use skiff_isa::{assemble, decode, disassemble, encode, validate, RawSymbolizer};

fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SKIFF_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    if dir.join("tests").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: conformance suite not found at {} (set SKIFF_CONFORMANCE_DIR)",
            dir.display()
        );
        None
    }
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    files
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_positive_test_parses_assembles_and_validates() {
    let Some(dir) = conformance_dir() else { return };
    let files = data_files(&dir.join("tests"));
    assert!(files.len() >= 300, "only {} test files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let t = match parse_data_file(&text) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: parse: {e}", name(f)));
                continue;
            }
        };
        if t.result.is_none() {
            failures.push(format!("{}: no -- result", name(f)));
        }
        if t.error.is_some() {
            failures.push(format!("{}: unexpected -- error", name(f)));
        }
        if let Err(e) = t.program() {
            failures.push(format!("{}: {e}", name(f)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn lddw_raw_section_equals_its_asm() {
    let Some(dir) = conformance_dir() else { return };
    let text = std::fs::read_to_string(dir.join("tests/lddw.data")).unwrap();
    let t = parse_data_file(&text).unwrap();
    let from_asm = assemble(t.asm.as_deref().unwrap()).unwrap();
    let from_raw = decode(t.raw.as_deref().unwrap()).unwrap();
    assert_eq!(from_asm, from_raw);
    assert_eq!(from_asm.len(), 3);
    assert_eq!(t.result, Some(0x1122334455667788));
}

/// How a negative file is rejected.
fn rejection(t: &ConformanceTest) -> Option<String> {
    if let Some(raw) = &t.raw {
        return match decode(raw) {
            Err(e) => Some(format!("decode: {e}")),
            Ok(insns) => validate(&insns).err().map(|e| format!("validate: {e}")),
        };
    }
    t.program().err()
}

/// The one negative file whose program is valid: its expected result is wrong, and the
/// VM's runner rejects it by comparing results.
const VALID_PROGRAM_WRONG_RESULT: &str = "incorrect_return_value_high_bits.data";

#[test]
fn every_negative_file_is_rejected() {
    let Some(dir) = conformance_dir() else { return };
    let files = data_files(&dir.join("negative"));
    assert!(files.len() >= 50, "only {} negative files", files.len());
    let mut accepted = Vec::new();
    let mut checked = 0;
    for f in &files {
        let n = name(f);
        let text = std::fs::read_to_string(f).unwrap();
        if n == VALID_PROGRAM_WRONG_RESULT {
            let t = parse_data_file(&text).unwrap();
            let prog = t.program().expect("its program is valid");
            assert_eq!(prog.len(), 2);
            assert_eq!(t.result, Some(0x8977665544332211));
            continue;
        }
        checked += 1;
        match parse_data_file(&text) {
            Err(e) => eprintln!("{n}: rejected by the parser: {e}"),
            Ok(t) => match rejection(&t) {
                Some(why) => eprintln!("{n}: rejected: {why}"),
                None => accepted.push(n),
            },
        }
    }
    assert_eq!(
        checked,
        files.len() - 1,
        "{VALID_PROGRAM_WRONG_RESULT} missing"
    );
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// Every negative file, with the reason it is rejected (a substring of the error).
/// The directory must hold exactly these files plus [`VALID_PROGRAM_WRONG_RESULT`].
const NEGATIVE: &[(&str, &str)] = &[
    ("empty.data", "no program: the file has no -- asm or -- raw section"),
    ("empty_instructions.data", "no program: the file has no -- asm or -- raw section"),
    ("error.data", "r10 (frame pointer) cannot be the source of or (only mov, add, sub)"),
    ("invalid_imm32_dec_range.data", "immediate `2147483648` out of 32-bit range"),
    ("invalid_imm32_hex_range.data", "immediate `0x100000000` out of 32-bit range"),
    ("invalid_label.data", "unknown label `NOT_A_LABEL`"),
    ("invalid_lock.data", "invalid number of operands for lock: expected `lock [fetch] <op> [%rD+off], %rS`, got 2 operand(s)"),
    ("invalid_lock2.data", "invalid number of operands for lock: expected `lock [fetch] <op> [%rD+off], %rS`, got 0 operand(s)"),
    ("invalid_mnemonic.data", "invalid mnemonic `ldxq`"),
    ("invalid_offset.data", "invalid memory operand `%r1` (expected [%rN+off])"),
    ("invalid_offset_range.data", "offset `+0x10000` out of 16-bit range"),
    ("invalid_operand_count.data", "invalid number of operands for `lddw`: expected 2, got 1"),
    ("invalid_register.data", "invalid register `%r50` (registers are %r0..%r10)"),
    ("invalid_unknown_directive.data", "unknown directive `-- Unknown directive`"),
    ("unused-add64_imm-offset.data", "reserved field off must be 0, is 1 (opcode 0x07)"),
    ("unused-add64_imm-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x07)"),
    ("unused-add64_reg-imm.data", "reserved field imm must be 0, is 1 (opcode 0x0f)"),
    ("unused-add64_reg-offset.data", "reserved field off must be 0, is 1 (opcode 0x0f)"),
    ("unused-add_imm-offset.data", "reserved field off must be 0, is 1 (opcode 0x04)"),
    ("unused-add_imm-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x04)"),
    ("unused-add_reg-imm.data", "reserved field imm must be 0, is 1 (opcode 0x0c)"),
    ("unused-add_reg-offset.data", "reserved field off must be 0, is 1 (opcode 0x0c)"),
    ("unused-be16-offset.data", "reserved field off must be 0, is 1 (opcode 0xdc)"),
    ("unused-be16-src.data", "reserved field src_reg must be 0, is 1 (opcode 0xdc)"),
    ("unused-call-dst.data", "reserved field dst_reg must be 0, is 1 (opcode 0x85)"),
    ("unused-call-offset.data", "reserved field off must be 0, is 1 (opcode 0x85)"),
    ("unused-exit-dst.data", "reserved field dst_reg must be 0, is 1 (opcode 0x95)"),
    ("unused-exit-imm.data", "reserved field imm must be 0, is 1 (opcode 0x95)"),
    ("unused-exit-offset.data", "reserved field off must be 0, is 1 (opcode 0x95)"),
    ("unused-exit-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x95)"),
    ("unused-ja-dst.data", "reserved field dst_reg must be 0, is 1 (opcode 0x05)"),
    ("unused-ja-imm.data", "reserved field imm must be 0, is 1 (opcode 0x05)"),
    ("unused-ja-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x05)"),
    ("unused-jeq_imm-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x15)"),
    ("unused-jeq_reg-imm.data", "reserved field imm must be 0, is 1 (opcode 0x1d)"),
    ("unused-jgt_imm-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x25)"),
    ("unused-jgt_reg-imm.data", "reserved field imm must be 0, is 1 (opcode 0x2d)"),
    ("unused-ldxdw-imm.data", "reserved field imm must be 0, is 1 (opcode 0x79)"),
    ("unused-ldxw-imm.data", "reserved field imm must be 0, is 1 (opcode 0x61)"),
    ("unused-le16-offset.data", "reserved field off must be 0, is 1 (opcode 0xd4)"),
    ("unused-le16-src.data", "reserved field src_reg must be 0, is 1 (opcode 0xd4)"),
    ("unused-mov64_imm-offset.data", "reserved field off must be 0, is 1 (opcode 0xb7)"),
    ("unused-mov64_imm-src.data", "reserved field src_reg must be 0, is 1 (opcode 0xb7)"),
    ("unused-mov64_reg-imm.data", "reserved field imm must be 0, is 1 (opcode 0xbf)"),
    ("unused-mov64_reg-offset.data", "movsx width (off) must be 0, 8, 16 or 32, is 1 (opcode 0xbf)"),
    ("unused-mov_imm-offset.data", "reserved field off must be 0, is 1 (opcode 0xb4)"),
    ("unused-mov_imm-src.data", "reserved field src_reg must be 0, is 1 (opcode 0xb4)"),
    ("unused-mov_reg-imm.data", "reserved field imm must be 0, is 1 (opcode 0xbc)"),
    ("unused-mov_reg-offset.data", "movsx width (off) must be 0, 8 or 16, is 1 (opcode 0xbc)"),
    ("unused-neg-imm.data", "reserved field imm must be 0, is 1 (opcode 0x84)"),
    ("unused-neg-offset.data", "reserved field off must be 0, is 1 (opcode 0x84)"),
    ("unused-neg-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x84)"),
    ("unused-neg64-imm.data", "reserved field imm must be 0, is 1 (opcode 0x87)"),
    ("unused-neg64-offset.data", "reserved field off must be 0, is 1 (opcode 0x87)"),
    ("unused-neg64-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x87)"),
    ("unused-stdw-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x7a)"),
    ("unused-stw-src.data", "reserved field src_reg must be 0, is 1 (opcode 0x62)"),
    ("unused-stxdw-imm.data", "reserved field imm must be 0, is 1 (opcode 0x7b)"),
    ("unused-stxw-imm.data", "reserved field imm must be 0, is 1 (opcode 0x63)"),
];

#[test]
fn each_negative_file_fails_for_its_reason() {
    let Some(dir) = conformance_dir() else { return };
    let mut listed: Vec<String> = NEGATIVE.iter().map(|(f, _)| f.to_string()).collect();
    listed.push(VALID_PROGRAM_WRONG_RESULT.to_string());
    listed.sort();
    let present: Vec<String> = data_files(&dir.join("negative"))
        .iter()
        .map(|p| name(p))
        .collect();
    assert_eq!(present, listed, "negative/ changed: update NEGATIVE");
    for (file, want) in NEGATIVE {
        let text = std::fs::read_to_string(dir.join("negative").join(file)).unwrap();
        let why = match parse_data_file(&text) {
            Err(e) => e.to_string(),
            Ok(t) => rejection(&t).unwrap_or_else(|| panic!("{file} accepted")),
        };
        assert!(why.contains(want), "{file}: got `{why}`, want `{want}`");
    }
    let text =
        std::fs::read_to_string(dir.join("negative/invalid_unknown_directive.data")).unwrap();
    assert_eq!(
        parse_data_file(&text).unwrap_err().to_string(),
        "line 4: unknown directive `-- Unknown directive`"
    );
}

#[test]
fn conformance_programs_round_trip_through_bytes() {
    let Some(dir) = conformance_dir() else { return };
    for f in data_files(&dir.join("tests")) {
        let t = parse_data_file(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let prog = t.program().unwrap();
        assert_eq!(decode(&encode(&prog)).unwrap(), prog, "{}", name(&f));
        let text = disassemble(&prog, &RawSymbolizer);
        assert!(!text.contains("invalid"), "{}:\n{text}", name(&f));
        let slots = prog.iter().filter(|i| i.is_ld_imm64()).count();
        assert_eq!(text.lines().count(), prog.len() - slots, "{}", name(&f));
    }
}
