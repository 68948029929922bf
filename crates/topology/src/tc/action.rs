//! `tc actions ...` lines. The tc-cls branch replaces these bodies with the
//! actions' parsers (gact, police, mirred, skbedit, pedit, ...); until then
//! every action line is refused with a clear error.

use super::{TcError, TcTarget, Words};

/// A parsed `tc actions` line (the tc-cls branch defines its fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionLine {
    /// The line's words, as given.
    pub words: Vec<String>,
}

/// Not supported yet: replaced by the tc-cls branch.
pub fn parse(w: &mut Words) -> Result<ActionLine, TcError> {
    let _ = w.rest();
    Err(TcError::line("not supported: tc action lines yet"))
}

/// Not supported yet: replaced by the tc-cls branch.
pub fn apply(_t: &mut TcTarget, _a: &ActionLine) -> Result<(), TcError> {
    Err(TcError::line("not supported: tc action lines yet"))
}
