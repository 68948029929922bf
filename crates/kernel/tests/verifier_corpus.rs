//! Kernel-only: proves the negative corpus (bpf/verifier/*.c). Each program is
//! loaded into the running kernel, which must refuse it with the errno its header
//! states and a log holding the stated message line. Needs root and clang-19;
//! skips with a printed reason otherwise.

use std::path::PathBuf;

use skiff_kernel::refusals::{self, Refusal};
use skiff_kernel::{KernelError, KernelObject};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf/verifier")
}

fn skip() -> bool {
    let reason = skiff_kernel::available()
        .err()
        .or_else(|| skiff_kernel::clang::available().err());
    if let Some(r) = reason {
        eprintln!("skipping kernel verifier corpus test: {r}");
        return true;
    }
    false
}

/// What the kernel said, or why the program did not get as far as the verifier.
fn kernel_refusal(r: &Refusal) -> Result<(i32, String), String> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bpf-verifier");
    let obj = skiff_kernel::clang::compile(&r.source, &out)?;
    let bytes = std::fs::read(&obj).map_err(|e| e.to_string())?;
    let parsed = skiff_object::Object::parse(&bytes).map_err(|e| e.to_string())?;
    match KernelObject::load(&parsed) {
        Ok(_) => Err("the kernel accepted it".into()),
        Err(KernelError::ProgLoad { errno, log, .. }) => Ok((errno, log)),
        Err(e) => Err(format!("failed before the verifier: {e}")),
    }
}

#[test]
fn kernel_refuses_each_as_stated() {
    if skip() {
        return;
    }
    let corpus = refusals::load(&corpus_dir()).expect("corpus headers");
    assert_eq!(corpus.len(), 19, "{corpus:?}");
    let mut wrong = Vec::new();
    for r in &corpus {
        match kernel_refusal(r) {
            Ok((errno, log)) if errno == r.errno && refusals::log_has_line(&log, &r.message) => {}
            Ok((errno, log)) => wrong.push(format!(
                "{}: kernel errno {errno}, stated {}; stated line {:?}; log tail:\n{log}",
                r.stem, r.errno, r.message
            )),
            Err(e) => wrong.push(format!("{}: {e}", r.stem)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
