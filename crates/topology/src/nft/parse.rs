//! The commands of an `nft -f` file (src/parser_bison.y): `flush ruleset`,
//! `table FAMILY NAME { chain ... { ... } set ... { ... } map ... }`,
//! `add|create table|chain|set|map|element|rule ...`, `insert rule ...`,
//! `flush table|chain|set|map ...`. Rules, set bodies and elements are kept
//! as tokens and compiled against the table when applied.

use skiff_net::netfilter::nf_tables::{ChainType, NftBaseChain, NftFamily};
use skiff_net::netfilter::x_tables::Policy;
use skiff_net::netfilter::NfHook;

use super::lex::{Tok, Token};
use super::set::braced;
use super::{Cmd, NftParseError, Obj};

struct P<'a> {
    toks: &'a [Token],
    i: usize,
}

fn unexpected(t: &Token, what: &str) -> NftParseError {
    t.err(format!(
        "syntax error, unexpected '{}', expecting {what}",
        t.text()
    ))
}

impl<'a> P<'a> {
    fn eof(&self) -> NftParseError {
        let (line, col) = self.toks.last().map_or((1, 1), |t| (t.line, t.col));
        NftParseError {
            line,
            col,
            msg: "syntax error, unexpected end of file".into(),
        }
    }

    fn next(&mut self) -> Result<&'a Token, NftParseError> {
        let t = self.toks.get(self.i).ok_or_else(|| self.eof())?;
        self.i += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.i)
    }

    fn word(&mut self, what: &str) -> Result<&'a Token, NftParseError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Word(_) | Tok::Str(_) => Ok(t),
            _ => Err(unexpected(t, what)),
        }
    }

    fn name(&mut self, what: &str) -> Result<String, NftParseError> {
        let t = self.word(what)?;
        Ok(match &t.tok {
            Tok::Word(w) | Tok::Str(w) => w.clone(),
            _ => String::new(),
        })
    }

    /// An optional family (default ip).
    fn family(&mut self) -> Result<NftFamily, NftParseError> {
        let Some(w) = self.peek().and_then(Token::word) else {
            return Ok(NftFamily::Ip);
        };
        let f = match w {
            "ip" => NftFamily::Ip,
            "ip6" => NftFamily::Ip6,
            "inet" => NftFamily::Inet,
            "arp" | "bridge" | "netdev" => {
                let t = self.next()?;
                return Err(t.err(format!(
                    "not supported: nft {w} family tables (docs/differences.md)"
                )));
            }
            _ => return Ok(NftFamily::Ip),
        };
        self.i += 1;
        Ok(f)
    }

    fn skip_seps(&mut self) {
        while self
            .peek()
            .is_some_and(|t| matches!(t.tok, Tok::Newline | Tok::Semi))
        {
            self.i += 1;
        }
    }

    /// Tokens to the end of the line / `;` (braces may span lines); a
    /// closing `}` of the enclosing block also ends it (not taken).
    fn line(&mut self) -> (Vec<Token>, (usize, usize)) {
        let mut out = Vec::new();
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t.tok {
                Tok::Newline | Tok::Semi if depth == 0 => break,
                Tok::RBrace if depth == 0 => break,
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth -= 1,
                _ => {}
            }
            out.push(t.clone());
            self.i += 1;
        }
        let end = self
            .peek()
            .or(self.toks.last())
            .map_or((1, 1), |t| (t.line, t.col));
        (out, end)
    }

    /// The `{ ... }` at the cursor: its inside, the cursor after it.
    fn block(&mut self) -> Result<(&'a [Token], (usize, usize)), NftParseError> {
        let t = self.next()?;
        if t.tok != Tok::LBrace {
            return Err(unexpected(t, "'{'"));
        }
        let (inside, after) = braced(self.toks, self.i - 1)?;
        let end = self
            .toks
            .get(after - 1)
            .map_or((t.line, t.col), |x| (x.line, x.col));
        self.i = after;
        Ok((inside, end))
    }
}

/// Parses a file into commands.
pub fn commands(toks: &[Token]) -> Result<Vec<Cmd>, NftParseError> {
    let mut p = P { toks, i: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_seps();
        let Some(t) = p.peek() else { return Ok(out) };
        p.i += 1;
        match t.word().unwrap_or("") {
            "flush" => flush(&mut p, &mut out)?,
            "table" => table(&mut p, &mut out, true)?,
            "add" | "create" | "insert" => add(&mut p, &mut out, t)?,
            w @ ("delete" | "destroy" | "list" | "reset" | "rename" | "replace" | "describe"
            | "monitor" | "export" | "import" | "include" | "undefine" | "redefine") => {
                return Err(t.err(format!(
                    "not supported: nft {w} (a topology's rule set is built, not edited)"
                )))
            }
            _ => return Err(unexpected(t, "a command")),
        }
    }
}

fn flush(p: &mut P, out: &mut Vec<Cmd>) -> Result<(), NftParseError> {
    let t = p.word("ruleset, table, chain, set or map")?;
    let what = t.word().unwrap_or("");
    if what == "ruleset" {
        if p.peek().and_then(Token::word).is_some() {
            p.family()?;
        }
        out.push(Cmd::FlushRuleset);
        return Ok(());
    }
    let obj = match what {
        "table" => Obj::Table,
        "chain" => Obj::Chain,
        "set" | "map" => Obj::Set,
        _ => return Err(unexpected(t, "ruleset, table, chain, set or map")),
    };
    let family = p.family()?;
    let table = p.name("a table name")?;
    let name = if obj == Obj::Table {
        String::new()
    } else {
        p.name("a name")?
    };
    out.push(Cmd::Flush {
        obj,
        family,
        table,
        name,
        at: t.clone(),
    });
    Ok(())
}

fn add(p: &mut P, out: &mut Vec<Cmd>, cmd: &Token) -> Result<(), NftParseError> {
    let t = p.word("table, chain, rule, set, map or element")?;
    let what = t.word().unwrap_or("");
    let insert = cmd.word() == Some("insert");
    if insert && what != "rule" {
        return Err(unexpected(t, "rule"));
    }
    match what {
        "table" => table(p, out, false),
        "chain" => {
            let family = p.family()?;
            let table = p.name("a table name")?;
            let at = p.word("a chain name")?.clone();
            let name = at
                .word()
                .map(String::from)
                .unwrap_or_else(|| at.text().trim_matches('"').to_string());
            if p.peek().map(|t| &t.tok) == Some(&Tok::LBrace) {
                let (inside, _) = p.block()?;
                let mut rules = Vec::new();
                chain_block(inside, family, &table, &name, &at, out, &mut rules)?;
                out.extend(rules);
                Ok(())
            } else {
                out.push(Cmd::Chain {
                    family,
                    table,
                    name,
                    base: None,
                    at,
                });
                Ok(())
            }
        }
        "rule" => {
            let family = p.family()?;
            let table = p.name("a table name")?;
            let at = p.word("a chain name")?.clone();
            let chain = at.word().map(String::from).unwrap_or_default();
            let (toks, end) = p.line();
            out.push(Cmd::Rule {
                family,
                table,
                chain,
                toks,
                end,
                insert,
                at,
            });
            Ok(())
        }
        "set" | "map" => {
            let family = p.family()?;
            let table = p.name("a table name")?;
            let at = p.word("a set name")?.clone();
            let (inside, end) = p.block()?;
            out.push(Cmd::Set {
                family,
                table,
                name: at.word().unwrap_or("").into(),
                toks: inside.to_vec(),
                end,
                at,
            });
            Ok(())
        }
        "element" => {
            let family = p.family()?;
            let table = p.name("a table name")?;
            let at = p.word("a set name")?.clone();
            let (inside, end) = p.block()?;
            out.push(Cmd::Element {
                family,
                table,
                set: at.word().unwrap_or("").into(),
                toks: inside.to_vec(),
                end,
                at,
            });
            Ok(())
        }
        _ => Err(unexpected(t, "table, chain, rule, set, map or element")),
    }
}

/// `table FAMILY NAME { ... }` (the block optional after `add table`).
fn table(p: &mut P, out: &mut Vec<Cmd>, block_needed: bool) -> Result<(), NftParseError> {
    let family = p.family()?;
    let name = p.name("a table name")?;
    out.push(Cmd::Table {
        family,
        name: name.clone(),
    });
    if !block_needed && p.peek().map(|t| &t.tok) != Some(&Tok::LBrace) {
        return Ok(());
    }
    let (inside, _) = p.block()?;
    let mut b = P { toks: inside, i: 0 };
    // nft_cmd_expand: the table's chains, then its sets, then the rules.
    let (mut sets, mut rules) = (Vec::new(), Vec::new());
    loop {
        b.skip_seps();
        let Some(t) = b.peek() else {
            out.extend(sets);
            out.extend(rules);
            return Ok(());
        };
        b.i += 1;
        match t.word().unwrap_or("") {
            "chain" => {
                let cat = b.word("a chain name")?.clone();
                let cname = cat.word().map(String::from).unwrap_or_default();
                let (ci, _) = b.block()?;
                chain_block(ci, family, &name, &cname, &cat, out, &mut rules)?;
            }
            "set" | "map" => {
                let sat = b.word("a set name")?.clone();
                let (si, end) = b.block()?;
                sets.push(Cmd::Set {
                    family,
                    table: name.clone(),
                    name: sat.word().unwrap_or("").into(),
                    toks: si.to_vec(),
                    end,
                    at: sat,
                });
            }
            "comment" => {
                b.word("a comment")?;
            }
            "flags" => return Err(t.err("not supported: nft table flags (dormant, owner)")),
            _ => return Err(unexpected(t, "chain, set, map or comment")),
        }
    }
}

/// nft's std_prio_table for the ip, ip6 and inet families, and the hooks
/// dstnat and srcnat are valid at (std_prio_family_hook_compat: prerouting
/// and postrouting only, as nft 1.0.6 answers).
fn std_prio(name: &str, hook: NfHook) -> Option<i32> {
    use skiff_net::netfilter::prio;
    Some(match name {
        "raw" => prio::RAW,
        "mangle" => prio::MANGLE,
        "dstnat" if hook == NfHook::PreRouting => prio::NAT_DST,
        "filter" => prio::FILTER,
        "security" => prio::SECURITY,
        "srcnat" if hook == NfHook::PostRouting => prio::NAT_SRC,
        _ => return None,
    })
}

/// `priority N | NAME [+|- N]` (the sign may touch the number or the name).
fn priority(words: &[&Token], hook: NfHook, at: &Token) -> Result<(i32, String), NftParseError> {
    let joined: String = words.iter().filter_map(|t| t.word()).collect();
    let t = words.first().copied().unwrap_or(at);
    let bad = || t.err("invalid priority expression value in this context.");
    if let Ok(n) = joined.parse::<i32>() {
        return Ok((n, n.to_string()));
    }
    let split = joined.find(['+', '-']).unwrap_or(joined.len());
    let (name, off) = joined.split_at(split);
    let base = std_prio(name, hook).ok_or_else(bad)?;
    let off: i32 = match off {
        "" => 0,
        o => o
            .strip_prefix('+')
            .unwrap_or(o)
            .parse()
            .map_err(|_| bad())?,
    };
    let text = match off {
        0 => name.to_string(),
        o if o > 0 => format!("{name} + {o}"),
        o => format!("{name} - {}", o.unsigned_abs()),
    };
    Ok((base.saturating_add(off), text))
}

fn hook_by_name(t: &Token) -> Result<NfHook, NftParseError> {
    Ok(match t.word().unwrap_or("") {
        "prerouting" => NfHook::PreRouting,
        "input" => NfHook::LocalIn,
        "forward" => NfHook::Forward,
        "output" => NfHook::LocalOut,
        "postrouting" => NfHook::PostRouting,
        "ingress" | "egress" => {
            return Err(t.err("not supported: nft ingress/egress hooks (docs/differences.md)"))
        }
        w => return Err(t.err(format!("unknown chain hook '{w}'"))),
    })
}

/// `type T hook H priority P ;` at the cursor (after `type`).
fn base_spec(p: &mut P) -> Result<NftBaseChain, NftParseError> {
    let tt = p.word("filter, nat or route")?;
    let ty = match tt.word().unwrap_or("") {
        "filter" => ChainType::Filter,
        "nat" => ChainType::Nat,
        "route" => ChainType::Route,
        w => return Err(tt.err(format!("unknown chain type '{w}'"))),
    };
    let ht = p.word("hook")?;
    if ht.word() != Some("hook") {
        return Err(unexpected(ht, "hook"));
    }
    let hook = hook_by_name(p.word("a hook")?)?;
    let pt = p.word("priority")?;
    if pt.word() == Some("device") {
        return Err(pt.err("not supported: nft chain device (netdev hooks)"));
    }
    if pt.word() != Some("priority") {
        return Err(unexpected(pt, "priority"));
    }
    let mut words = Vec::new();
    while let Some(t) = p.peek().filter(|t| t.word().is_some()) {
        words.push(t);
        p.i += 1;
    }
    let (priority, prio_text) = priority(&words, hook, pt)?;
    Ok(NftBaseChain {
        ty,
        hook,
        priority,
        prio_text,
        policy: Policy::Accept,
    })
}

/// A chain's block: the chain into `out`, its rules into `rules`.
fn chain_block(
    inside: &[Token],
    family: NftFamily,
    table: &str,
    name: &str,
    at: &Token,
    out: &mut Vec<Cmd>,
    rules_out: &mut Vec<Cmd>,
) -> Result<(), NftParseError> {
    let mut p = P { toks: inside, i: 0 };
    let mut base: Option<NftBaseChain> = None;
    let mut rules = Vec::new();
    loop {
        p.skip_seps();
        let Some(t) = p.peek() else { break };
        match t.word() {
            Some("type") => {
                p.i += 1;
                base = Some(base_spec(&mut p)?);
            }
            Some("policy") => {
                p.i += 1;
                let pt = p.word("accept or drop")?;
                let pol = match pt.word().unwrap_or("") {
                    "accept" => Policy::Accept,
                    "drop" => Policy::Drop,
                    _ => return Err(unexpected(pt, "accept or drop")),
                };
                match base.as_mut() {
                    Some(b) => b.policy = pol,
                    None => return Err(pt.err("a policy needs a base chain (type ... hook ...)")),
                }
            }
            Some("comment")
                if rules.is_empty()
                    && p.toks
                        .get(p.i + 2)
                        .is_none_or(|n| matches!(n.tok, Tok::Newline | Tok::Semi)) =>
            {
                p.i += 1;
                p.word("a comment")?;
            }
            _ => {
                let (toks, rend) = p.line();
                if toks.is_empty() {
                    let bad = p.next()?;
                    return Err(unexpected(bad, "a rule"));
                }
                rules.push((toks, rend));
            }
        }
    }
    out.push(Cmd::Chain {
        family,
        table: table.into(),
        name: name.into(),
        base,
        at: at.clone(),
    });
    for (toks, rend) in rules {
        rules_out.push(Cmd::Rule {
            family,
            table: table.into(),
            chain: name.into(),
            toks,
            end: rend,
            insert: false,
            at: at.clone(),
        });
    }
    Ok(())
}
