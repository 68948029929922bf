//! iptables-save text as iptables-restore reads it (iptables/iptables-xml's
//! sibling iptables/xtables-restore.c, legacy iptables-restore.c):
//! `*TABLE` starts a table that replaces the namespace's (its rules flushed,
//! its user chains deleted), `:CHAIN POLICY [p:b]` sets a built-in chain's
//! policy or makes a user chain (`-`), `[p:b] -A CHAIN ...` lines are
//! iptables commands without `-t`, `COMMIT` ends the table, `#` lines are
//! comments. Counters are read and ignored, as iptables-restore does without
//! `-c`.

use skiff_net::netfilter::NfProto;

use super::{parse_line_in, IptCommand, IptOp};

/// One command of the text, with the line (from 0) and the byte offset in
/// that line where its text starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreLine {
    pub line: usize,
    pub col: usize,
    pub text: String,
    pub cmd: IptCommand,
}

/// An error at a line (from 0) of the text, at a byte offset in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    pub line: usize,
    pub col: usize,
    /// The word the error is about, if one.
    pub word: Option<String>,
    pub msg: String,
}

impl RestoreError {
    fn at(line: usize, col: usize, word: Option<&str>, msg: impl Into<String>) -> RestoreError {
        RestoreError {
            line,
            col,
            word: word.map(String::from),
            msg: msg.into(),
        }
    }
}

/// The table being read: its name and the line of its `*TABLE`.
struct Open {
    table: String,
    line: usize,
}

/// Parses iptables-save text of one family into the commands that build it,
/// in order: per table a [`IptOp::Restore`], then its chains, then its rules.
pub fn parse_restore(text: &str, family: NfProto) -> Result<Vec<RestoreLine>, RestoreError> {
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for (n, raw) in text.lines().enumerate() {
        let body = raw.trim_start();
        let col = raw.len() - body.len();
        let body = body.trim_end();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let at = |c: usize, w: Option<&str>, m: String| RestoreError::at(n, col + c, w, m);
        if let Some(name) = body.strip_prefix('*') {
            if let Some(o) = &open {
                return Err(at(0, None, format!("COMMIT expected at line {}", n + 1))
                    .with_note(&o.table, o.line));
            }
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(at(0, Some(body), "bad table line (*TABLE)".into()));
            }
            open = Some(Open {
                table: name.to_string(),
                line: n,
            });
            out.push(line_of(n, col, body, family, name, IptOp::Restore));
            continue;
        }
        let Some(o) = &open else {
            return Err(at(
                0,
                Some(first_word(body)),
                "not inside a table: a *TABLE line must come first".into(),
            ));
        };
        if body == "COMMIT" {
            open = None;
            continue;
        }
        if let Some(decl) = body.strip_prefix(':') {
            let op = chain_decl(decl).map_err(|(c, w, m)| at(c + 1, w.as_deref(), m))?;
            out.extend(
                op.into_iter()
                    .map(|op| line_of(n, col, body, family, &o.table, op)),
            );
            continue;
        }
        let (skip, cmd_text) = strip_counters(body).map_err(|m| at(0, Some(body), m))?;
        let cmd = parse_line_in(cmd_text, family, Some(&o.table)).map_err(|e| {
            let words = super::ShellWords::new(cmd_text)
                .map(|w| w.words)
                .unwrap_or_default();
            let w = e.word.and_then(|i| words.get(i));
            let c = skip + w.map(|(off, _)| *off).unwrap_or(0);
            at(c, w.map(|(_, s)| s.as_str()), e.msg)
        })?;
        out.push(RestoreLine {
            line: n,
            col: col + skip,
            text: cmd_text.to_string(),
            cmd,
        });
    }
    match open {
        Some(o) => Err(RestoreError::at(
            text.lines().count().saturating_sub(1),
            0,
            None,
            format!(
                "COMMIT expected at line {} (table {} opened at line {})",
                text.lines().count() + 1,
                o.table,
                o.line + 1
            ),
        )),
        None => Ok(out),
    }
}

impl RestoreError {
    fn with_note(mut self, table: &str, line: usize) -> RestoreError {
        self.msg = format!("{} (table {table} opened at line {})", self.msg, line + 1);
        self
    }
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or(s)
}

fn line_of(
    n: usize,
    col: usize,
    body: &str,
    family: NfProto,
    table: &str,
    op: IptOp,
) -> RestoreLine {
    RestoreLine {
        line: n,
        col,
        text: body.to_string(),
        cmd: IptCommand {
            family,
            table: table.to_string(),
            op,
        },
    }
}

/// `[pkts:bytes]`, iptables-restore's parse_counters.
fn counters_ok(w: &str) -> bool {
    let Some(inner) = w.strip_prefix('[').and_then(|w| w.strip_suffix(']')) else {
        return false;
    };
    let mut it = inner.split(':');
    matches!(
        (it.next(), it.next(), it.next()),
        (Some(p), Some(b), None) if p.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()
    )
}

/// A rule line's leading `[pkts:bytes]` (iptables-save -c): the byte offset
/// of the command after it and the command.
fn strip_counters(body: &str) -> Result<(usize, &str), String> {
    if !body.starts_with('[') {
        return Ok((0, body));
    }
    let end = body
        .find(']')
        .ok_or_else(|| "bad counters: no ']' after '['".to_string())?;
    let ctr = body.get(..=end).unwrap_or(body);
    if !counters_ok(ctr) {
        return Err(format!("bad counters {ctr:?} (want [PACKETS:BYTES])"));
    }
    let rest = body.get(end + 1..).unwrap_or("");
    let cmd = rest.trim_start();
    Ok((end + 1 + rest.len() - cmd.len(), cmd))
}

/// `:CHAIN POLICY [p:b]` (after the colon): a built-in chain's policy, or
/// `-` for a user chain, which is made. Err: (byte offset, word, message).
type DeclError = (usize, Option<String>, String);

fn chain_decl(decl: &str) -> Result<Vec<IptOp>, DeclError> {
    let words: Vec<(usize, &str)> = decl
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - decl.as_ptr() as usize, w))
        .collect();
    let (chain, policy, ctrs) = match words.as_slice() {
        [c, p] => (*c, *p, None),
        [c, p, k] => (*c, *p, Some(*k)),
        [] => return Err((0, None, "no chain name after ':'".into())),
        [(_, c)] => {
            return Err((
                0,
                Some(c.to_string()),
                format!("Unable to chain policy: no policy for chain `{c}'"),
            ))
        }
        [_, _, _, (o, w), ..] => {
            return Err((
                *o,
                Some(w.to_string()),
                "unexpected word after the counters".into(),
            ))
        }
    };
    if let Some((o, k)) = ctrs {
        if !counters_ok(k) {
            return Err((
                o,
                Some(k.to_string()),
                format!("invalid policy counters for chain '{}'", chain.1),
            ));
        }
    }
    let name = chain.1.to_string();
    match policy.1 {
        "-" => Ok(vec![IptOp::NewChain(name)]),
        "ACCEPT" => Ok(vec![IptOp::Policy {
            chain: name,
            policy: skiff_net::netfilter::x_tables::Policy::Accept,
        }]),
        "DROP" => Ok(vec![IptOp::Policy {
            chain: name,
            policy: skiff_net::netfilter::x_tables::Policy::Drop,
        }]),
        p => Err((
            policy.0,
            Some(p.to_string()),
            format!("Can't set policy `{p}' on `{name}': Bad policy name"),
        )),
    }
}

#[cfg(test)]
mod tests;
