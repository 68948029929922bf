//! The BPF ISA conformance suite (../shared/conformance, or $SKIFF_CONFORMANCE_DIR):
//! every test in tests/ passes in the interpreter and in the JIT; every file in negative/ fails
//! (refused by the assembler, decoder or validator, or a wrong result).

use std::path::PathBuf;

use skiff_isa::conformance::parse_data_file;
use skiff_vm::Engine;

fn suite_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SKIFF_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    if dir.join("tests").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: conformance suite not found at {} (set SKIFF_CONFORMANCE_DIR)",
            dir.display()
        );
        None
    }
}

fn files(dir: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read conformance dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    v.sort();
    v
}

/// Ok(r0) or Err(why it did not run).
fn run_file(engine: Engine, path: &PathBuf) -> (Result<u64, String>, Option<u64>) {
    let text = std::fs::read_to_string(path).expect("read test file");
    let t = match parse_data_file(&text) {
        Ok(t) => t,
        Err(e) => return (Err(format!("parse: {e}")), None),
    };
    let expected = t.result;
    let insns = match t.program() {
        Ok(i) => i,
        Err(e) => return (Err(format!("assemble: {e}")), expected),
    };
    (
        skiff_vm::conformance::run_with(engine, insns, &t.mem),
        expected,
    )
}

#[test]
fn conformance_suite_passes_in_the_interpreter() {
    suite_passes(Engine::Interp);
}

#[test]
fn conformance_suite_passes_in_the_jit() {
    suite_passes(Engine::Jit);
}

fn suite_passes(engine: Engine) {
    let Some(dir) = suite_dir() else { return };
    let all = files(dir.join("tests"));
    assert!(
        all.len() > 300,
        "expected the whole suite, found {} files",
        all.len()
    );
    let mut failures = Vec::new();
    for path in &all {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match run_file(engine, path) {
            (Ok(r0), Some(want)) if r0 == want => {}
            (Ok(r0), Some(want)) => {
                failures.push(format!("{name}: r0 = {r0:#x}, expected {want:#x}"))
            }
            (Ok(r0), None) => failures.push(format!(
                "{name}: ran (r0 = {r0:#x}) but the test has no expected result"
            )),
            (Err(e), _) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "conformance ({engine:?}): {} passed, {} failed",
        all.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn conformance_negative_files_fail() {
    negative_files_fail(Engine::Interp);
    negative_files_fail(Engine::Jit);
}

fn negative_files_fail(engine: Engine) {
    let Some(dir) = suite_dir() else { return };
    let all = files(dir.join("negative"));
    assert!(!all.is_empty());
    let mut passed_wrongly = Vec::new();
    for path in &all {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let (Ok(r0), expected) = run_file(engine, path) {
            // A negative test "passes" only if it ran and matched an expected result.
            if expected.is_none() || expected == Some(r0) {
                passed_wrongly.push(format!(
                    "{name}: ran to r0 = {r0:#x} (expected {expected:?})"
                ));
            }
        }
    }
    assert!(
        passed_wrongly.is_empty(),
        "negative tests not rejected:\n{}",
        passed_wrongly.join("\n")
    );
}

/// The JIT translates for aarch64 too (the code is compiled, not run: this
/// machine is x86-64): every program of the suite.
#[test]
fn conformance_suite_compiles_for_aarch64() {
    let Some(dir) = suite_dir() else { return };
    let mut compiled = 0;
    let mut failures = Vec::new();
    for path in files(dir.join("tests")) {
        let text = std::fs::read_to_string(&path).expect("read test file");
        let Some(insns) = parse_data_file(&text).ok().and_then(|t| t.program().ok()) else {
            continue;
        };
        let Ok(prog) =
            skiff_vm::Program::load_with("c", skiff_vm::ProgType::Xdp, insns, &[], Engine::Interp)
        else {
            continue;
        };
        match skiff_vm::jit::compile_for(&prog, "aarch64-unknown-linux-gnu") {
            Ok(s) if s.code_size > 0 => compiled += 1,
            Ok(_) => failures.push(format!("{}: no code", path.display())),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    println!("aarch64: {compiled} programs compiled");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compiled > 300, "only {compiled} compiled");
}
