//! A cursor over a slice of tokens (one rule, one set body), with nft's
//! error texts for what is missing or unexpected.

use super::lex::{Tok, Token};
use super::NftParseError;

pub struct Cur<'a> {
    pub toks: &'a [Token],
    pub i: usize,
    /// Where the slice ends (for "unexpected end" errors).
    pub end: (usize, usize),
}

impl<'a> Cur<'a> {
    pub fn new(toks: &'a [Token], end: (usize, usize)) -> Cur<'a> {
        Cur { toks, i: 0, end }
    }

    pub fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.i)
    }

    pub fn peek_word(&self) -> Option<&'a str> {
        self.peek().and_then(Token::word)
    }

    pub fn at_end(&self) -> bool {
        self.i >= self.toks.len()
    }

    pub fn end_err(&self, what: &str) -> NftParseError {
        NftParseError {
            line: self.end.0,
            col: self.end.1,
            msg: format!("syntax error, unexpected end of statement, expecting {what}"),
        }
    }

    pub fn next_tok(&mut self, what: &str) -> Result<&'a Token, NftParseError> {
        let t = self.toks.get(self.i).ok_or_else(|| self.end_err(what))?;
        self.i += 1;
        Ok(t)
    }

    pub fn next_word(&mut self, what: &str) -> Result<&'a str, NftParseError> {
        let t = self.next_tok(what)?;
        t.word().ok_or_else(|| {
            t.err(format!(
                "syntax error, unexpected '{}', expecting {what}",
                t.text()
            ))
        })
    }

    /// A word or a quoted string.
    pub fn next_name(&mut self, what: &str) -> Result<&'a str, NftParseError> {
        let t = self.next_tok(what)?;
        match &t.tok {
            Tok::Word(w) | Tok::Str(w) => Ok(w),
            _ => Err(t.err(format!(
                "syntax error, unexpected '{}', expecting {what}",
                t.text()
            ))),
        }
    }

    pub fn expect(&mut self, w: &str) -> Result<(), NftParseError> {
        let t = self.next_tok(&format!("'{w}'"))?;
        if t.word() == Some(w) {
            Ok(())
        } else {
            Err(t.err(format!(
                "syntax error, unexpected '{}', expecting '{w}'",
                t.text()
            )))
        }
    }

    /// An error at the token just read.
    pub fn prev_err(&self, msg: impl Into<String>) -> NftParseError {
        match self.i.checked_sub(1).and_then(|i| self.toks.get(i)) {
            Some(t) => t.err(msg),
            None => NftParseError {
                line: self.end.0,
                col: self.end.1,
                msg: msg.into(),
            },
        }
    }

    /// The text of tokens `from..self.i` as nft prints it: words joined by
    /// spaces, `,` tight in a list (`established,related`) and followed by
    /// a space inside braces.
    pub fn text_since(&self, from: usize) -> String {
        let mut s = String::new();
        let mut depth = 0i32;
        let mut tight = false;
        for t in self.toks.get(from..self.i).unwrap_or(&[]) {
            match t.tok {
                Tok::Comma => {
                    s.push(',');
                    tight = depth == 0;
                    continue;
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth -= 1,
                _ => {}
            }
            if !s.is_empty() && !tight {
                s.push(' ');
            }
            tight = false;
            s += &t.text();
        }
        s
    }
}
