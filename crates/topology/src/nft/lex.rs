//! nft's scanner (src/scanner.l), as far as `nft -f` files need it: words,
//! quoted strings, `{ } ; ,` and newlines as tokens, `#` comments, `\`
//! line continuations; then `define NAME = ...` / `$NAME` substitution.

use super::NftParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Word(String),
    Str(String),
    LBrace,
    RBrace,
    Semi,
    Comma,
    Newline,
}

/// A token and where it starts (line and column from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

impl Token {
    /// The token's text as nft prints it in an error.
    pub fn text(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::Semi => ";".into(),
            Tok::Comma => ",".into(),
            Tok::Newline => "newline".into(),
        }
    }

    pub fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }

    pub fn err(&self, msg: impl Into<String>) -> NftParseError {
        NftParseError {
            line: self.line,
            col: self.col,
            msg: msg.into(),
        }
    }
}

fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '{' | '}' | ';' | ',' | '"' | '#')
}

/// The tokens of `src`.
pub fn scan(src: &str) -> Result<Vec<Token>, NftParseError> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    while let Some(&c) = chars.get(i) {
        let at = (line, col);
        let push = |out: &mut Vec<Token>, tok| {
            out.push(Token {
                tok,
                line: at.0,
                col: at.1,
            })
        };
        match c {
            '\n' => {
                push(&mut out, Tok::Newline);
                line += 1;
                col = 1;
                i += 1;
                continue;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                line += 1;
                col = 1;
                i += 2;
                continue;
            }
            '#' => {
                while chars.get(i).is_some_and(|&c| c != '\n') {
                    i += 1;
                }
                continue;
            }
            '"' => {
                let start = i + 1;
                let end = (start..chars.len()).find(|&j| chars[j] == '"' || chars[j] == '\n');
                match end.filter(|&j| chars[j] == '"') {
                    Some(j) => {
                        push(&mut out, Tok::Str(chars[start..j].iter().collect()));
                        col += j + 1 - i;
                        i = j + 1;
                    }
                    None => {
                        return Err(NftParseError {
                            line,
                            col,
                            msg: "unterminated string".into(),
                        })
                    }
                }
                continue;
            }
            '{' | '}' | ';' | ',' => {
                let t = match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    ';' => Tok::Semi,
                    _ => Tok::Comma,
                };
                push(&mut out, t);
            }
            c if c.is_whitespace() => {}
            _ => {
                let start = i;
                while chars.get(i).is_some_and(|&c| !is_delim(c)) {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                split_word(&mut out, w, at);
                col += i - start;
                continue;
            }
        }
        i += 1;
        col += 1;
    }
    Ok(out)
}

/// A word ending in one `:` (`0:` before a map's data) is the word and `:`.
fn split_word(out: &mut Vec<Token>, w: String, (line, col): (usize, usize)) {
    let colons = w.matches(':').count();
    if w.len() > 1 && w.ends_with(':') && colons == 1 {
        let n = w.chars().count();
        out.push(Token {
            tok: Tok::Word(w[..w.len() - 1].to_string()),
            line,
            col,
        });
        out.push(Token {
            tok: Tok::Word(":".into()),
            line,
            col: col + n - 1,
        });
    } else {
        out.push(Token {
            tok: Tok::Word(w),
            line,
            col,
        });
    }
}

/// `define NAME = VALUE` lines taken out, `$NAME` replaced by the value's
/// tokens (at the place of the `$NAME`).
pub fn expand_defines(toks: Vec<Token>) -> Result<Vec<Token>, NftParseError> {
    let mut defs: Vec<(String, Vec<Token>)> = Vec::new();
    let mut out = Vec::new();
    let mut it = toks.into_iter().peekable();
    let mut at_start = true;
    while let Some(t) = it.next() {
        if at_start && t.word() == Some("define") {
            let name = it
                .next()
                .filter(|n| n.word().is_some())
                .ok_or_else(|| t.err("define needs a name"))?;
            let eq = it.next().ok_or_else(|| name.err("define needs `='"))?;
            if eq.word() != Some("=") {
                return Err(eq.err(format!(
                    "syntax error, unexpected '{}', expecting '='",
                    eq.text()
                )));
            }
            let mut value = Vec::new();
            let mut depth = 0i32;
            while let Some(v) = it.peek() {
                match v.tok {
                    Tok::Newline | Tok::Semi if depth == 0 => break,
                    Tok::LBrace => depth += 1,
                    Tok::RBrace => depth -= 1,
                    _ => {}
                }
                let v = it.next().ok_or_else(|| t.err("define"))?;
                if v.tok != Tok::Newline {
                    value.push(substitute(&defs, v)?);
                }
            }
            let value = value.into_iter().flatten().collect();
            defs.retain(|(n, _)| Some(n.as_str()) != name.word());
            defs.push((name.word().unwrap_or_default().to_string(), value));
            continue;
        }
        at_start = matches!(t.tok, Tok::Newline | Tok::Semi | Tok::LBrace | Tok::RBrace);
        out.extend(substitute(&defs, t)?);
    }
    Ok(out)
}

fn substitute(defs: &[(String, Vec<Token>)], t: Token) -> Result<Vec<Token>, NftParseError> {
    let Some(name) = t.word().and_then(|w| w.strip_prefix('$')) else {
        return Ok(vec![t]);
    };
    match defs.iter().rev().find(|(n, _)| n == name) {
        Some((_, v)) => Ok(v
            .iter()
            .map(|x| Token {
                tok: x.tok.clone(),
                line: t.line,
                col: t.col,
            })
            .collect()),
        None => Err(t.err(format!("unknown identifier '{name}'"))),
    }
}
