//! `iptables = [...]` / `ip6tables = [...]` lines: each parsed as iptables
//! parses it; an error names the line, the word and what went wrong.
//! `nft = '''...'''` is refused as not supported (docs/differences.md).

use toml::Spanned;

use crate::error::{line_col, Ctx, Loc, TopologyError};
use crate::model::NfLine;
use crate::netfilter::{self, NfLineError, ShellWords};
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

/// `nft` text: not supported yet.
pub(super) fn nft(cx: &Ctx, ns_name: &str, raw: &Spanned<String>) -> TopologyError {
    let field = format!("netns.{ns_name}.nft");
    cx.loc(raw, &field).error(
        cx.file,
        "not supported: nft rule sets (use iptables = [...] lines; see docs/differences.md)",
    )
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
