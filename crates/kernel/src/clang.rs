//! Compiling the project's eBPF C sources with clang-19, as libbpf users do
//! (`clang -O2 -g -target bpf -mcpu=v3`), cached by source modification time.

use std::path::{Path, PathBuf};
use std::process::Command;

const CANDIDATES: &[&str] = &[
    "clang-19",
    "/usr/bin/clang-19",
    "/usr/lib/llvm-19/bin/clang",
];

/// The clang-19 binary, or why there is none.
pub fn available() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    for c in CANDIDATES {
        match Command::new(c).arg("--version").output() {
            Ok(o) if o.status.success() => return Ok(PathBuf::from(c)),
            Ok(o) => tried.push(format!("{c}: exit {}", o.status)),
            Err(e) => tried.push(format!("{c}: {e}")),
        }
    }
    Err(format!("clang-19 not found ({})", tried.join("; ")))
}

/// Compiles `src` (a `.c` file) to `out_dir/<stem>.o` and returns that path. Skips the
/// compilation when the object is newer than the source.
pub fn compile(src: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    compile_variant(src, out_dir, "", &[])
}

/// As `compile`, with preprocessor `defines` (`NAME` or `NAME=VALUE`, passed as
/// `-D`), into `out_dir/<stem><variant>.o` so each variant has its own object.
pub fn compile_variant(
    src: &Path,
    out_dir: &Path,
    variant: &str,
    defines: &[String],
) -> Result<PathBuf, String> {
    let stem = src
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("{}: no file name", src.display()))?;
    let stem = format!("{stem}{variant}");
    let out = out_dir.join(format!("{stem}.o"));
    let src_time = std::fs::metadata(src)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", src.display()))?;
    if let Ok(out_time) = std::fs::metadata(&out).and_then(|m| m.modified()) {
        if out_time > src_time {
            return Ok(out);
        }
    }
    let clang = available()?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    // Compile to a temporary name first so a concurrent reader never sees half a file.
    let tmp = out_dir.join(format!("{stem}.o.tmp{}", std::process::id()));
    let o = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-mcpu=v3",
            "-Wall",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg(src)
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| format!("running {}: {e}", clang.display()))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "{} failed on {}: {}",
            clang.display(),
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}
