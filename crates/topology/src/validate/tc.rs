//! `tc = ["qdisc add dev eth0 root handle 1: htb default 30", ...]`: each
//! line parsed as tc parses it; an error names the line, the word and
//! what tc would have said.

use toml::Spanned;

use super::Names;
use crate::error::{line_col, Ctx, Loc, TopologyError};
use crate::model::TcLine;
use crate::tc::{self, TcError, Words};

pub(super) fn lines(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    raw: &[Spanned<String>],
    dir: &std::path::Path,
) -> Result<Vec<TcLine>, TopologyError> {
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let field = format!("netns.{ns_name}.tc[{i}]");
        let text = l.get_ref();
        let mut cmd = tc::parse_line(text).map_err(|e| error(cx, l, &field, &e))?;
        // Object paths are relative to the topology file, as [[object]]'s.
        tc::resolve_paths(&mut cmd, dir);
        if let Some(dev) = tc::line_dev(&cmd) {
            if !names.exists(ns_name, dev) {
                let e = TcError::line(format!("Cannot find device \"{dev}\""));
                return Err(error(cx, l, &field, &e));
            }
        }
        out.push(TcLine {
            text: text.clone(),
            cmd,
            loc: cx.loc(l, &field),
        });
    }
    Ok(out)
}

/// The error at the word it is about (column inside the string).
pub(crate) fn error(cx: &Ctx, l: &Spanned<String>, field: &str, e: &TcError) -> TopologyError {
    let text = l.get_ref();
    let words = Words::new(text);
    let word = e.word.and_then(|i| words.words.get(i).copied());
    // The string's opening quote is at the span's start.
    let (line, col) = line_col(cx.src, l.span().start);
    let (col, msg) = match word {
        Some((off, w)) => (
            col + 1 + text.get(..off).map(|s| s.chars().count()).unwrap_or(0),
            format!("tc {text:?}: at \"{w}\": {}", e.msg),
        ),
        None => (col, format!("tc {text:?}: {}", e.msg)),
    };
    Loc {
        line,
        col,
        field: field.to_string(),
    }
    .error(cx.file, msg)
}
