//! The project's negative corpus (`bpf/verifier/*.c`): one small program per class
//! of rejection the kernel's verifier knows, each stating in its header comment
//! the errno and the verifier's message line (` * errno: EACCES`,
//! ` * message: ...`). The kernel test proves each statement against the running
//! kernel; skiff's verifier is held to the same.

use std::path::{Path, PathBuf};

/// One corpus program and the refusal its header states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// File stem; also the program's name.
    pub stem: String,
    pub source: PathBuf,
    /// errno as a number (EACCES 13, EINVAL 22, E2BIG 7, ...).
    pub errno: i32,
    /// The verifier's message line, exactly as the log prints it.
    pub message: String,
}

/// The errnos the verifier returns, by name.
fn errno_of(name: &str) -> Option<i32> {
    Some(match name {
        "EPERM" => 1,
        "E2BIG" => 7,
        "EACCES" => 13,
        "EFAULT" => 14,
        "EINVAL" => 22,
        "ENOTSUPP" => 524,
        _ => return None,
    })
}

/// Reads a header's `errno:` and `message:` lines.
pub fn parse_header(stem: &str, source: &Path, text: &str) -> Result<Refusal, String> {
    let field = |key: &str| {
        text.lines()
            .take_while(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(" * ")?.strip_prefix(key))
            .map(str::trim)
            .ok_or_else(|| format!("{}: no `{key}` line in the header", source.display()))
    };
    let errno_name = field("errno:")?;
    let errno = errno_of(errno_name)
        .ok_or_else(|| format!("{}: unknown errno {errno_name}", source.display()))?;
    Ok(Refusal {
        stem: stem.to_string(),
        source: source.to_path_buf(),
        errno,
        message: field("message:")?.to_string(),
    })
}

/// Every `*.c` of `dir` with its stated refusal, sorted by name.
pub fn load(dir: &Path) -> Result<Vec<Refusal>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_none_or(|x| x != "c") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: no file name", path.display()))?
            .to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(parse_header(&stem, &path, &text)?);
    }
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    Ok(out)
}

/// Whether `log` has `message` as one of its lines.
pub fn log_has_line(log: &str, message: &str) -> bool {
    log.lines().any(|l| l.trim_end() == message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let text = "/* x: y\n * errno: EINVAL\n * message: infinite loop detected at insn 1\n */\n#include \"../common.h\"\n * errno: EACCES\n";
        let r = parse_header("x", Path::new("x.c"), text).expect("parses");
        assert_eq!(r.errno, 22);
        assert_eq!(r.message, "infinite loop detected at insn 1");
        assert_eq!(
            parse_header("x", Path::new("x.c"), "/* x\n * errno: EWHAT\n */"),
            Err("x.c: unknown errno EWHAT".to_string())
        );
        assert_eq!(
            parse_header("x", Path::new("x.c"), "/* x\n * errno: EACCES\n */"),
            Err("x.c: no `message:` line in the header".to_string())
        );
    }

    #[test]
    fn whole_line_match() {
        let log = "0: (61) r1 = *(u32 *)(r1 +0)\nR1 offset is outside of the packet\n";
        assert!(log_has_line(log, "R1 offset is outside of the packet"));
        assert!(!log_has_line(log, "R1 offset is outside"));
    }
}
