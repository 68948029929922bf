//! What the skiff-net tests share: their eBPF programs (tests/bpf/*.c), compiled
//! with clang-19 through skiff_kernel::clang (one compile per source, cached).

// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn bpf_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bpf")
        .join(format!("{name}.c"))
}

pub fn out_dir() -> PathBuf {
    std::env::temp_dir().join(format!("skiff-net-tests-{}", std::process::id()))
}

/// The bytes of tests/bpf/`name`.c compiled, or None (the reason printed: the
/// caller skips) without clang-19.
pub fn bpf_object(name: &str) -> Option<Vec<u8>> {
    match skiff_kernel::clang::compile(&bpf_src(name), &out_dir()) {
        Ok(o) => std::fs::read(o).ok(),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

pub mod datapath;
pub mod datapath_kernel;
