//! `iptables = [...]` / `ip6tables = [...]` lines: each parsed as iptables
//! parses it; an error names the line, the word and what went wrong.
//! `iptables_save = '''...'''` / `ip6tables_save`: iptables-save text, each
//! command of it at its own line of the file.
//! `nft = '''...'''`: parsed and applied to a scratch netfilter, so every
//! error (syntax, unknown chain or set, unsupported expression) is found at
//! load, at its line and column in the file.

use toml::Spanned;

use crate::error::{line_col, Ctx, Loc, TopologyError};
use crate::model::{NfLine, NftScript};
use crate::netfilter::restore::{parse_restore, RestoreError};
use crate::netfilter::{self, NfLineError, ShellWords};
use crate::raw::RawNetns;
use skiff_net::netfilter::NfProto;

pub(super) fn lines(
    cx: &Ctx,
    ns_name: &str,
    key: &str,
    raw: &[Spanned<String>],
    family: NfProto,
) -> Result<Vec<NfLine>, TopologyError> {
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let field = format!("netns.{ns_name}.{key}[{i}]");
        let text = l.get_ref();
        let cmd = netfilter::parse_line(text, family).map_err(|e| error(cx, l, &field, key, &e))?;
        out.push(NfLine {
            text: text.clone(),
            cmd,
            loc: cx.loc(l, &field),
        });
    }
    Ok(out)
}

/// The namespace's `iptables_save` then `ip6tables_save` text, as the
/// commands iptables-restore runs, in order.
pub(super) fn save(cx: &Ctx, ns_name: &str, ns: &RawNetns) -> Result<Vec<NfLine>, TopologyError> {
    let mut out = Vec::new();
    for (key, raw, family) in [
        ("iptables_save", &ns.iptables_save, NfProto::Ipv4),
        ("ip6tables_save", &ns.ip6tables_save, NfProto::Ipv6),
    ] {
        let Some(raw) = raw else { continue };
        let field = format!("netns.{ns_name}.{key}");
        let at = |line: usize, col: usize| text_loc(cx, raw, &field, line, col);
        let lines = parse_restore(raw.get_ref(), family).map_err(|e: RestoreError| {
            let what = match &e.word {
                Some(w) => format!("{key} line {}: at \"{w}\": {}", e.line + 1, e.msg),
                None => format!("{key} line {}: {}", e.line + 1, e.msg),
            };
            at(e.line, e.col).error(cx.file, what)
        })?;
        out.extend(lines.into_iter().map(|l| NfLine {
            loc: at(l.line, l.col),
            text: l.text,
            cmd: l.cmd,
        }));
    }
    Ok(out)
}

/// Where line `line` (from 0), byte `col` of a multi-line string's text is
/// in the file: exact for a '''literal''' string (its text is the source),
/// by line for a """basic""" one (escapes may shift the column); a one-line
/// string is pointed at as a whole.
fn text_loc(cx: &Ctx, raw: &Spanned<String>, field: &str, line: usize, col: usize) -> Loc {
    let (at, true) = text_start(cx, raw) else {
        return cx.loc(raw, field);
    };
    let body = cx.src.get(at..raw.span().end).unwrap_or("");
    let line_start: usize = body.split_inclusive('\n').take(line).map(str::len).sum();
    cx.loc_at(at + line_start + col, field)
}

/// Where a string's text starts in the file (a byte offset), and whether
/// the string is multi-line: after `'''` or `"""` and the newline TOML trims
/// there, or after a one-line string's quote.
fn text_start(cx: &Ctx, raw: &Spanned<String>) -> (usize, bool) {
    let start = raw.span().start;
    let rest = cx.src.get(start..).unwrap_or("");
    let Some(after) = rest
        .strip_prefix("'''")
        .or_else(|| rest.strip_prefix("\"\"\""))
    else {
        return (start + 1, false);
    };
    let newline = if after.starts_with("\r\n") {
        2
    } else {
        usize::from(after.starts_with('\n'))
    };
    (start + 3 + newline, true)
}

/// `nft` text: parsed, then applied to a scratch netfilter.
pub(super) fn nft(
    cx: &Ctx,
    ns_name: &str,
    raw: &Spanned<String>,
) -> Result<NftScript, TopologyError> {
    let field = format!("netns.{ns_name}.nft");
    let text = raw.get_ref();
    // where the text's first line is: nft errors count from there
    let loc = cx.loc_at(text_start(cx, raw).0, &field);
    let cmds = crate::nft::parse(text).map_err(|e| nft_error(cx, &loc, &e))?;
    let mut scratch = skiff_net::netfilter::Netfilter::new();
    crate::nft::apply(&mut scratch, &cmds).map_err(|e| nft_error(cx, &loc, &e))?;
    Ok(NftScript {
        text: text.clone(),
        cmds,
        loc,
    })
}

/// An nft error at its place in the file.
fn nft_error(cx: &Ctx, at: &Loc, e: &crate::nft::NftParseError) -> TopologyError {
    crate::nft::loc_in_file(at, e).error(cx.file, e.to_string())
}

/// The error at the word it is about (column inside the string).
fn error(cx: &Ctx, l: &Spanned<String>, field: &str, tool: &str, e: &NfLineError) -> TopologyError {
    let text = l.get_ref();
    let words = ShellWords::new(text).map(|w| w.words).unwrap_or_default();
    let word = e.word.and_then(|i| words.get(i));
    let (line, col) = line_col(cx.src, l.span().start);
    let (col, msg) = match word {
        Some((off, w)) => (
            col + 1 + text.get(..*off).map(|s| s.chars().count()).unwrap_or(0),
            format!("{tool} {text:?}: at \"{w}\": {}", e.msg),
        ),
        None => (col, format!("{tool} {text:?}: {}", e.msg)),
    };
    Loc {
        line,
        col,
        field: field.to_string(),
    }
    .error(cx.file, msg)
}
