//! `--coverage FILE` (skiff run, skiff test): per-source-line hit counts of
//! the eBPF C code, from the interpreter's per-instruction counters
//! (`skiff_vm::coverage`) and the object's BTF line info, written as lcov's
//! tracefile format (geninfo(1): TN, SF, FN/FNDA/FNF/FNH, DA, LF/LH,
//! end_of_record) so that genhtml and CI coverage services read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_vm::coverage::Counters;

/// Hits of one source file: per line, per function (its line and hits).
#[derive(Default)]
struct FileCov {
    lines: BTreeMap<u32, u64>,
    funcs: BTreeMap<String, (u32, u64)>,
}

/// A line's hits in one program: how often execution reached it, i.e. the
/// most-executed of the line-info records that start on it (a record's first
/// instruction runs each time control enters the record; a line split over
/// records, a loop condition say, counts its busiest entry).
fn add_program(files: &mut BTreeMap<String, FileCov>, c: &Counters) {
    let mut per_line: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for l in &c.lines {
        let e = per_line.entry((l.file.as_str(), l.line)).or_default();
        *e = (*e).max(c.hits(l.insn));
    }
    // Summed over every program (and every load) that holds the line.
    for ((file, line), hits) in per_line {
        let f = files.entry(file.to_string()).or_default();
        let e = f.lines.entry(line).or_default();
        *e = e.saturating_add(hits);
    }
    for func in &c.funcs {
        // A function's line: its first line record (clang puts one on the
        // opening line of the body).
        let first = c.lines.iter().find(|l| l.insn >= func.insn);
        let Some(first) = first else { continue };
        let f = files.entry(first.file.clone()).or_default();
        let e = f.funcs.entry(func.name.clone()).or_insert((first.line, 0));
        e.1 = e.1.saturating_add(c.hits(func.insn));
    }
}

/// A source path as lcov should name it: the recorded path (`..` folded)
/// where that file exists; else the longest tail of it that exists under
/// one of `bases` (an object built in another checkout, a relative path);
/// else as recorded.
fn resolve(file: &str, bases: &[PathBuf]) -> String {
    let norm = normalize(Path::new(file));
    if norm.is_absolute() && norm.is_file() {
        return norm.display().to_string();
    }
    let parts: Vec<_> = norm.components().collect();
    for skip in 0..parts.len() {
        let tail: PathBuf = parts[skip..].iter().collect();
        if tail.is_absolute() {
            continue;
        }
        let found = bases.iter().map(|b| b.join(&tail)).find(|c| c.is_file());
        if let Some(c) = found.and_then(|c| c.canonicalize().ok()) {
            return c.display().to_string();
        }
    }
    file.to_string()
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The lcov text for `counters`, relative source paths resolved against `bases`.
pub fn render(counters: &[Arc<Counters>], bases: &[PathBuf]) -> String {
    let mut files: BTreeMap<String, FileCov> = BTreeMap::new();
    for c in counters {
        add_program(&mut files, c);
    }
    let mut out = String::new();
    for (file, cov) in &files {
        render_file(&mut out, &resolve(file, bases), cov);
    }
    out
}

fn render_file(out: &mut String, path: &str, cov: &FileCov) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = writeln!(out, "TN:\nSF:{path}");
    let mut funcs: Vec<(&String, &(u32, u64))> = cov.funcs.iter().collect();
    funcs.sort_by_key(|(n, (l, _))| (*l, n.as_str()));
    for (name, (line, _)) in &funcs {
        let _ = writeln!(out, "FN:{line},{name}");
    }
    for (name, (_, hits)) in &funcs {
        let _ = writeln!(out, "FNDA:{hits},{name}");
    }
    let fnh = funcs.iter().filter(|(_, (_, h))| *h > 0).count();
    let _ = writeln!(out, "FNF:{}\nFNH:{fnh}", funcs.len());
    for (line, hits) in &cov.lines {
        let _ = writeln!(out, "DA:{line},{hits}");
    }
    let lh = cov.lines.values().filter(|h| **h > 0).count();
    let _ = writeln!(out, "LF:{}\nLH:{lh}\nend_of_record", cov.lines.len());
}

/// Writes the counters of every program loaded since `skiff_vm::coverage::enable`
/// to `path`; how many programs and source files it covered.
pub fn write(path: &Path, bases: &[PathBuf]) -> Result<(usize, usize), String> {
    let counters = skiff_vm::coverage::take();
    let text = render(&counters, bases);
    std::fs::write(path, &text).map_err(|e| format!("--coverage {}: {e}", path.display()))?;
    let files = text.lines().filter(|l| l.starts_with("SF:")).count();
    Ok((counters.len(), files))
}

/// The directories relative source paths are tried against: the current
/// directory, then each given file's directory and its ancestors (a source
/// path recorded relative to a repository root resolves from an object deep
/// inside it).
pub fn bases(files: &[&Path]) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(".")];
    for f in files {
        let abs = f.canonicalize().unwrap_or_else(|_| f.to_path_buf());
        for a in abs.ancestors().skip(1) {
            if !out.iter().any(|o| o == a) {
                out.push(a.to_path_buf());
            }
        }
    }
    out
}
