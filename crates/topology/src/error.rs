//! Errors with the file, line, column and field they are about.

use std::path::{Path, PathBuf};

use toml::Spanned;

/// A topology error. `At` names the file, the line and column (1-based) and the
/// field (a path such as `netns.host.device[1].mac`).
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{}:{line}:{col}: {field}: {msg}", file.display())]
    At {
        file: PathBuf,
        line: usize,
        col: usize,
        field: String,
        msg: String,
    },
    #[error("{}: {msg}", file.display())]
    File { file: PathBuf, msg: String },
}

impl TopologyError {
    /// The line of an `At` error.
    pub fn line(&self) -> Option<usize> {
        match self {
            TopologyError::At { line, .. } => Some(*line),
            TopologyError::File { .. } => None,
        }
    }

    /// The field of an `At` error.
    pub fn field(&self) -> Option<&str> {
        match self {
            TopologyError::At { field, .. } => Some(field),
            TopologyError::File { .. } => None,
        }
    }
}

/// Where a field is in the topology file: for errors found later (building).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
    pub field: String,
}

impl Loc {
    pub fn error(&self, file: &Path, msg: impl Into<String>) -> TopologyError {
        TopologyError::At {
            file: file.to_path_buf(),
            line: self.line,
            col: self.col,
            field: self.field.clone(),
            msg: msg.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// The key a toml error points at, for the `field` part of the message.
pub(crate) fn field_of(src: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return "(file)".into();
    };
    let line_start = src
        .get(..span.start.min(src.len()))
        .and_then(|b| b.rfind('\n'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = src.get(line_start..).unwrap_or("");
    let line = line.split('\n').next().unwrap_or("").trim();
    if line.starts_with('[') {
        return line.trim_matches(|c| c == '[' || c == ']').to_string();
    }
    match line.split_once('=') {
        Some((k, _)) => k.trim().to_string(),
        None => line.to_string(),
    }
}

/// The file being validated: its text (for line and column) and its name.
pub(crate) struct Ctx<'a> {
    pub src: &'a str,
    pub file: &'a Path,
}

impl Ctx<'_> {
    pub fn loc(&self, s: &dyn SpanOf, field: &str) -> Loc {
        self.loc_at(s.start(), field)
    }

    /// The place of byte `offset` of the file.
    pub fn loc_at(&self, offset: usize, field: &str) -> Loc {
        let (line, col) = line_col(self.src, offset);
        Loc {
            line,
            col,
            field: field.to_string(),
        }
    }

    pub fn err(&self, s: &dyn SpanOf, field: &str, msg: impl Into<String>) -> TopologyError {
        self.loc(s, field).error(self.file, msg)
    }

    /// The line of a field (for "already ... (line N)" messages).
    pub fn line(&self, s: &dyn SpanOf) -> usize {
        line_col(self.src, s.start()).0
    }
}

/// Anything with a span, for errors that point at one of several fields.
pub(crate) trait SpanOf {
    fn start(&self) -> usize;
}

impl<T> SpanOf for Spanned<T> {
    fn start(&self) -> usize {
        self.span().start
    }
}

/// The path of one entry (`netns.host.device[1]`): its fields' names for errors.
pub(crate) struct At(pub String);

impl At {
    pub fn f(&self, field: &str) -> String {
        format!("{}.{field}", self.0)
    }
}
