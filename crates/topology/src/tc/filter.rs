//! `tc filter ...` lines. The tc-cls branch replaces these bodies with the
//! classifiers' parsers (cls_bpf, u32, matchall, flower, fw, basic); until
//! then every filter line is refused with a clear error.

use super::{TcError, TcTarget, Words};

/// A parsed `tc filter` line (the tc-cls branch defines its fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterLine {
    /// The line's words, as given.
    pub words: Vec<String>,
}

/// Not supported yet: replaced by the tc-cls branch.
pub fn parse(w: &mut Words) -> Result<FilterLine, TcError> {
    let _ = w.rest();
    Err(TcError::line("not supported: tc filter lines yet"))
}

/// The device a filter line names.
pub fn dev(_f: &FilterLine) -> Option<&str> {
    None
}

/// Not supported yet: replaced by the tc-cls branch.
pub fn apply(_t: &mut TcTarget, _f: &FilterLine) -> Result<(), TcError> {
    Err(TcError::line("not supported: tc filter lines yet"))
}
