//! How a refusal is told to a person: errno names, the source line, the tail of the
//! log, laid out as libbpf prints a failed load (`libbpf: prog 'x': BPF program
//! load failed: Permission denied` then the log with `; source @ file:line`).

use super::{SourceLine, VerifierError, E2BIG, EACCES, EFAULT, EINVAL, ENOTSUPP, EPERM};

/// The kernel's name for an errno the verifier returns.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        EACCES => "EACCES",
        EINVAL => "EINVAL",
        E2BIG => "E2BIG",
        ENOTSUPP => "ENOTSUPP",
        EFAULT => "EFAULT",
        EPERM => "EPERM",
        _ => "E?",
    }
}

/// `; text @ file:line`, as the verifier log prints a line-info record
/// (kernel/bpf/log.c: verbose_linfo, which trims leading blanks).
pub fn line_text(l: &SourceLine) -> String {
    let file = l.file.rsplit('/').next().unwrap_or(&l.file);
    format!("; {} @ {}:{}", l.text.trim_start(), file, l.line)
}

impl VerifierError {
    /// The message on one line: the kernel's message lines (e.g. `invalid access
    /// to packet, ...` then `R1 offset is outside of the packet`) joined by "; ".
    pub fn summary(&self) -> String {
        let lines: Vec<&str> = self.message.lines().filter(|l| !l.is_empty()).collect();
        lines.join("; ")
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        let start = lines.len().saturating_sub(n);
        lines.get(start..).unwrap_or(&[]).join("\n")
    }

    /// A refusal for a person: errno, message, instruction and source line, then
    /// the log's tail (at most `tail` lines).
    pub fn describe(&self, tail: usize) -> String {
        let mut s = format!(
            "refused by the verifier: {} (errno {} {})\n  at insn {}",
            self.summary(),
            self.errno,
            errno_name(self.errno),
            self.insn
        );
        if let Some(l) = &self.line {
            s.push_str(&format!(
                " ({}:{}:{}): {}",
                l.file,
                l.line,
                l.col,
                l.text.trim()
            ));
        }
        let log = self.log_tail(tail);
        if !log.is_empty() {
            s.push_str("\n  verifier log (last lines):");
            for line in log.lines() {
                s.push_str("\n    ");
                s.push_str(line);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> VerifierError {
        VerifierError {
            errno: EACCES,
            insn: 3,
            line: Some(SourceLine {
                insn: 2,
                file: "/src/xdp_fail.c".into(),
                line: 12,
                col: 9,
                text: "\tif (eth->h_proto == 0)".into(),
            }),
            message: "invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)".into(),
            log: "0: (61) r2 = *(u32 *)(r1 +0)\n1: R1=ctx() R2=pkt(r=0)\n2: (71) r3 = *(u8 *)(r2 +12)\ninvalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)\nR2 offset is outside of the packet".into(),
        }
    }

    #[test]
    fn describe_names_errno_line_and_log_tail() {
        assert_eq!(
            refusal().describe(2),
            "refused by the verifier: invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0) (errno 13 EACCES)\n  at insn 3 (/src/xdp_fail.c:12:9): if (eth->h_proto == 0)\n  verifier log (last lines):\n    invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)\n    R2 offset is outside of the packet"
        );
    }

    #[test]
    fn log_tail_and_line_text() {
        let e = refusal();
        assert_eq!(e.log_tail(1), "R2 offset is outside of the packet");
        assert_eq!(e.log_tail(100).lines().count(), 5);
        assert_eq!(
            e.line.as_ref().map(line_text),
            Some("; if (eth->h_proto == 0) @ xdp_fail.c:12".to_string())
        );
        assert_eq!(errno_name(524), "ENOTSUPP");
        let two = VerifierError {
            message: "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)\nR1 offset is outside of the packet\n".into(),
            ..e
        };
        assert_eq!(
            two.summary(),
            "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0); R1 offset is outside of the packet"
        );
        assert_eq!(errno_name(99), "E?");
    }
}
