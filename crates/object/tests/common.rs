// Shared by the integration tests: compiles C with clang-19 into a temp dir.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Command;

pub const PRELUDE: &str = "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n";

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("skiff-object-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Compiles `src`; `None` (with a printed reason) when clang-19 is missing.
pub fn compile_with(name: &str, src: &str, extra: &[&str]) -> Option<Vec<u8>> {
    if Command::new("clang-19").arg("--version").output().is_err() {
        eprintln!("skipping: clang-19 not found");
        return None;
    }
    let dir = tmpdir();
    let c = dir.join(format!("{name}.c"));
    let o = dir.join(format!("{name}.o"));
    std::fs::write(&c, src).expect("write C source");
    let out = Command::new("clang-19")
        .args(["-O2", "-g", "-I/usr/include/x86_64-linux-gnu", "-c"])
        .args(if extra.iter().any(|a| a.starts_with("-target")) {
            vec![]
        } else {
            vec!["-target", "bpf"]
        })
        .args(extra)
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .output()
        .expect("run clang-19");
    assert!(
        out.status.success(),
        "clang-19 failed on {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(std::fs::read(&o).expect("read object"))
}

pub fn compile(name: &str, src: &str) -> Option<Vec<u8>> {
    compile_with(name, src, &[])
}
