//! `nft = '''...'''` of a namespace: the text `nft -f` reads, scanned and
//! parsed as nft does (lex, parse), each rule compiled to nf_tables
//! expressions (stmt, sel, set, types) and applied in order to the
//! namespace's netfilter (skiff_net::netfilter::nf_tables). Errors name
//! the line and column in the text and the word.

mod cursor;
mod lex;
mod parse;
mod sel;
mod set;
mod stmt;
mod types;

use skiff_net::netfilter::nf_tables::{self as nft, NftBaseChain, NftError, NftFamily};
use skiff_net::netfilter::Netfilter;

pub use lex::Token;

/// An error at a line and column of the nft text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl std::fmt::Display for NftParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nft: line {}:{}: {}", self.line, self.col, self.msg)
    }
}

/// Where an error in a text whose first line starts at `start` is in the file.
pub fn loc_in_file(start: &crate::error::Loc, e: &NftParseError) -> crate::error::Loc {
    let line = start.line + e.line.saturating_sub(1);
    let col = if e.line <= 1 {
        start.col + e.col.saturating_sub(1)
    } else {
        e.col
    };
    crate::error::Loc {
        line,
        col,
        field: start.field.clone(),
    }
}

/// What `flush table|chain|set` empties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obj {
    Table,
    Chain,
    Set,
}

/// One command of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    FlushRuleset,
    Flush {
        obj: Obj,
        family: NftFamily,
        table: String,
        name: String,
        at: Token,
    },
    Table {
        family: NftFamily,
        name: String,
    },
    Chain {
        family: NftFamily,
        table: String,
        name: String,
        base: Option<NftBaseChain>,
        at: Token,
    },
    Rule {
        family: NftFamily,
        table: String,
        chain: String,
        toks: Vec<Token>,
        end: (usize, usize),
        insert: bool,
        at: Token,
    },
    Set {
        family: NftFamily,
        table: String,
        name: String,
        toks: Vec<Token>,
        end: (usize, usize),
        at: Token,
    },
    Element {
        family: NftFamily,
        table: String,
        set: String,
        toks: Vec<Token>,
        end: (usize, usize),
        at: Token,
    },
}

/// Parses an nft -f text.
pub fn parse(src: &str) -> Result<Vec<Cmd>, NftParseError> {
    let toks = lex::expand_defines(lex::scan(src)?)?;
    parse::commands(&toks)
}

/// The kernel's answer to a command, at the command's word.
fn kerr(at: &Token, e: NftError) -> NftParseError {
    at.err(format!("Could not process rule: {e}"))
}

fn table_of(
    nf: &Netfilter,
    family: NftFamily,
    name: &str,
    at: &Token,
) -> Result<usize, NftParseError> {
    nf.nft.table(family, name).map_err(|e| kerr(at, e))
}

/// Applies the commands in order (one `nft -f` transaction's effect).
pub fn apply(nf: &mut Netfilter, cmds: &[Cmd]) -> Result<(), NftParseError> {
    for c in cmds {
        apply_one(nf, c)?;
    }
    Ok(())
}

fn apply_one(nf: &mut Netfilter, c: &Cmd) -> Result<(), NftParseError> {
    match c {
        Cmd::FlushRuleset => nft::flush_ruleset(nf),
        Cmd::Table { family, name } => {
            nft::add_table(nf, *family, name);
        }
        Cmd::Chain {
            family,
            table,
            name,
            base,
            at,
        } => {
            let t = table_of(nf, *family, table, at)?;
            nft::add_chain(nf, t, name, base.clone()).map_err(|e| kerr(at, e))?;
        }
        Cmd::Rule {
            family,
            table,
            chain,
            toks,
            end,
            insert,
            at,
        } => {
            let t = table_of(nf, *family, table, at)?;
            let tb = &nf.nft.tables[t];
            let ci = tb
                .chain_index(chain)
                .ok_or_else(|| kerr(at, NftError::NoChain(chain.clone())))?;
            let compiled = stmt::compile(toks, *end, tb)?;
            for s in compiled.anon {
                nft::add_set(nf, t, s).map_err(|e| kerr(at, e))?;
            }
            let pos = insert.then_some(0);
            nft::add_rule(nf, t, ci, compiled.exprs, compiled.text, pos)
                .map_err(|e| kerr(at, e))?;
        }
        Cmd::Set {
            family,
            table,
            name,
            toks,
            end,
            at,
        } => {
            let t = table_of(nf, *family, table, at)?;
            let s = set::set_body(name, toks, *end, *family, &nf.nft.tables[t])?;
            nft::add_set(nf, t, s).map_err(|e| kerr(at, e))?;
        }
        Cmd::Element {
            family,
            table,
            set,
            toks,
            end,
            at,
        } => {
            let t = table_of(nf, *family, table, at)?;
            let tb = &nf.nft.tables[t];
            let si = tb
                .set_index(set)
                .ok_or_else(|| kerr(at, NftError::NoSet(set.clone())))?;
            let (key, data) = set::declared_types(&tb.sets[si], *family)?;
            let elems = set::elements(toks, *end, &key, &data, tb)?;
            let s = &mut nf.nft.tables[t].sets[si];
            for e in elems {
                s.insert(e).map_err(|e| kerr(at, e))?;
            }
            if let Some(l) = nft::core::find_loop(&nf.nft.tables[t]) {
                let name = nf.nft.tables[t]
                    .chains
                    .get(l)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return Err(kerr(at, NftError::Loop(name)));
            }
        }
        Cmd::Flush {
            obj,
            family,
            table,
            name,
            at,
        } => {
            let t = table_of(nf, *family, table, at)?;
            let tb = &mut nf.nft.tables[t];
            match obj {
                Obj::Table => nft::flush_table(nf, t),
                Obj::Chain => {
                    let ci = tb
                        .chain_index(name)
                        .ok_or_else(|| kerr(at, NftError::NoChain(name.clone())))?;
                    nft::flush_chain(nf, t, ci);
                }
                Obj::Set => {
                    let si = tb
                        .set_index(name)
                        .ok_or_else(|| kerr(at, NftError::NoSet(name.clone())))?;
                    tb.sets[si].flush();
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
