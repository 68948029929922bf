//! Set and map elements (`{ 10.0.0.0/8, 22, 80-90, 10.96.0.10 . tcp . 80 :
//! goto svc }`) and named set declarations (`type`, `typeof`, `flags`,
//! `elements = { ... }`), as nft's evaluate step turns them into keys.

use skiff_net::netfilter::nf_tables::expr::NftVerdict;
use skiff_net::netfilter::nf_tables::set::{ElemData, SetData, SetElem};
use skiff_net::netfilter::nf_tables::{NftFamily, NftSet, NftTable};

use super::cursor::Cur;
use super::lex::{Tok, Token};
use super::sel::sel_expr;
use super::types::{pad4, prefix_end, prefix_mask, value, Ty};
use super::NftParseError;

/// What a map's data is: a verdict or values of these types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataTy {
    None,
    Verdict,
    Values(Vec<Ty>),
}

impl DataTy {
    pub fn set_data(&self) -> SetData {
        match self {
            DataTy::None => SetData::None,
            DataTy::Verdict => SetData::Verdict,
            DataTy::Values(v) => SetData::Bytes(
                v.iter()
                    .map(|t| pad4(vec![0; t.len() as usize]).len() as u32)
                    .sum(),
            ),
        }
    }
}

/// One value written for type `ty`: its start and inclusive end (a prefix
/// `/len` or a range `a-b` make an interval).
pub fn interval_value(ty: Ty, t: &Token) -> Result<(Vec<u8>, Vec<u8>), NftParseError> {
    let w = match &t.tok {
        Tok::Word(w) | Tok::Str(w) => w.as_str(),
        _ => return Err(t.err(format!("syntax error, unexpected '{}'", t.text()))),
    };
    let bad = || t.err(format!("Could not parse {}: '{w}'", ty_name(ty)));
    if let Some(v) = value(ty, w) {
        return Ok((v.clone(), v));
    }
    if let Some((a, l)) = w.split_once('/') {
        let v = value(ty, a).ok_or_else(bad)?;
        let plen: u32 = l.parse().map_err(|_| bad())?;
        if plen > v.len() as u32 * 8 || !matches!(ty, Ty::Ipv4Addr | Ty::Ipv6Addr) {
            return Err(bad());
        }
        let m = prefix_mask(v.len(), plen);
        let start: Vec<u8> = v.iter().zip(&m).map(|(a, m)| a & m).collect();
        let end = prefix_end(&start, &m);
        return Ok((start, end));
    }
    if let Some((a, b)) = w.split_once('-') {
        let (a, b) = (value(ty, a).ok_or_else(bad)?, value(ty, b).ok_or_else(bad)?);
        if !ty.ordered() || a > b {
            return Err(bad());
        }
        return Ok((a, b));
    }
    Err(bad())
}

pub fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Ipv4Addr => "IPv4 address",
        Ty::Ipv6Addr => "IPv6 address",
        Ty::InetService => "internet network service",
        Ty::InetProto => "Internet protocol",
        Ty::Mark => "packet mark",
        Ty::IfName => "network interface name",
        Ty::CtState => "conntrack state",
        Ty::CtStatus => "conntrack status",
        _ => "value",
    }
}

/// Splits tokens at `.` words (a concatenation's fields).
fn fields(toks: &[Token]) -> Vec<&[Token]> {
    toks.split(|t| t.word() == Some(".")).collect()
}

/// A verdict written as data: accept, drop, continue, return, jump/goto CHAIN.
pub fn verdict(c: &mut Cur, t: &NftTable) -> Result<NftVerdict, NftParseError> {
    let w = c.next_word("a verdict")?;
    Ok(match w {
        "accept" => NftVerdict::Accept,
        "drop" => NftVerdict::Drop,
        "continue" => NftVerdict::Continue,
        "return" => NftVerdict::Return,
        "jump" | "goto" => {
            let name = c.next_name("a chain name")?;
            let i = t.chain_index(name).ok_or_else(|| {
                c.prev_err(format!(
                    "Could not process rule: No such file or directory: chain '{name}'"
                ))
            })?;
            if w == "jump" {
                NftVerdict::Jump(i)
            } else {
                NftVerdict::Goto(i)
            }
        }
        _ => {
            return Err(c.prev_err(format!(
                "syntax error, unexpected '{w}', expecting a verdict"
            )))
        }
    })
}

/// The elements between braces (the tokens inside), for key types `key`
/// and data `data`.
pub fn elements(
    toks: &[Token],
    end: (usize, usize),
    key: &[Ty],
    data: &DataTy,
    t: &NftTable,
) -> Result<Vec<SetElem>, NftParseError> {
    let toks: Vec<Token> = toks
        .iter()
        .filter(|t| t.tok != Tok::Newline)
        .cloned()
        .collect();
    let mut out = Vec::new();
    for e in toks
        .split(|t| t.tok == Tok::Comma)
        .filter(|e| !e.is_empty())
    {
        let colon = e.iter().position(|t| t.word() == Some(":"));
        let (k, d) = match colon {
            Some(i) => (&e[..i], Some(&e[i + 1..])),
            None => (e, None),
        };
        let kf = fields(k);
        if kf.len() != key.len() || kf.iter().any(|f| f.len() != 1) {
            let at = e.first().map_or_else(|| end, |t| (t.line, t.col));
            return Err(NftParseError {
                line: at.0,
                col: at.1,
                msg: format!(
                    "element does not match the set's key of {} field(s)",
                    key.len()
                ),
            });
        }
        let (mut start, mut stop) = (Vec::new(), Vec::new());
        for (f, ty) in kf.iter().zip(key) {
            let (a, b) = interval_value(*ty, &f[0])?;
            start.extend(pad4(a));
            stop.extend(pad4(b));
        }
        let data = elem_data(d, end, data, t)?;
        let text = e.iter().map(Token::text).collect::<Vec<_>>().join(" ");
        out.push(SetElem {
            key: start,
            key_end: stop,
            data,
            text,
        });
    }
    Ok(out)
}

fn elem_data(
    d: Option<&[Token]>,
    end: (usize, usize),
    data: &DataTy,
    t: &NftTable,
) -> Result<ElemData, NftParseError> {
    match (d, data) {
        (None, DataTy::None) => Ok(ElemData::None),
        (Some(d), DataTy::Verdict) => {
            let mut c = Cur::new(d, end);
            let v = verdict(&mut c, t)?;
            match c.peek() {
                Some(x) => Err(x.err(format!("syntax error, unexpected '{}'", x.text()))),
                None => Ok(ElemData::Verdict(v)),
            }
        }
        (Some(d), DataTy::Values(tys)) => {
            let df = fields(d);
            if df.len() != tys.len() || df.iter().any(|f| f.len() != 1) {
                return Err(NftParseError {
                    line: end.0,
                    col: end.1,
                    msg: "map data does not match the map's type".into(),
                });
            }
            let mut b = Vec::new();
            for (f, ty) in df.iter().zip(tys) {
                let (v, _) = interval_value(*ty, &f[0])?;
                b.extend(pad4(v));
            }
            Ok(ElemData::Bytes(b))
        }
        (None, _) => Err(NftParseError {
            line: end.0,
            col: end.1,
            msg: "map element needs data (`key : value')".into(),
        }),
        (Some(d), DataTy::None) => {
            let at = d.first().map_or(end, |t| (t.line, t.col));
            Err(NftParseError {
                line: at.0,
                col: at.1,
                msg: "a set's element takes no data".into(),
            })
        }
    }
}

/// The tokens between a `{` at `toks[open]` and its `}`: (inside, index after `}`).
pub fn braced(toks: &[Token], open: usize) -> Result<(&[Token], usize), NftParseError> {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::LBrace => depth += 1,
            Tok::RBrace => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&toks[open + 1..i], i + 1));
                }
            }
            _ => {}
        }
    }
    let t = toks.get(open).cloned().unwrap_or(Token {
        tok: Tok::LBrace,
        line: 1,
        col: 1,
    });
    Err(t.err("syntax error, unexpected end of file, expecting '}'"))
}

/// `type a . b [: c . d]` / `typeof EXPR [: EXPR]`: key types and data.
fn set_type(c: &mut Cur, family: NftFamily, of: bool) -> Result<(Vec<Ty>, DataTy), NftParseError> {
    let mut key = Vec::new();
    let mut data = DataTy::None;
    let mut in_data = false;
    loop {
        let tys: Vec<Ty> = if of {
            sel_expr(c, family)?.sels.iter().map(|s| s.ty).collect()
        } else {
            let w = c.next_word("a type")?;
            if in_data && w == "verdict" {
                data = DataTy::Verdict;
                vec![]
            } else {
                vec![Ty::by_name(w).ok_or_else(|| c.prev_err(format!("unknown datatype {w}")))?]
            }
        };
        if in_data {
            if let DataTy::Values(v) = &mut data {
                v.extend(tys);
            } else if !tys.is_empty() {
                data = DataTy::Values(tys);
            }
        } else {
            key.extend(tys);
        }
        match c.peek_word() {
            Some(".") if !of => {
                c.next_word(".")?;
            }
            Some(":") if !in_data => {
                c.next_word(":")?;
                in_data = true;
            }
            _ => return Ok((key, data)),
        }
    }
}

/// A named set's body: the set (its elements added) with its key types.
pub fn set_body(
    name: &str,
    toks: &[Token],
    end: (usize, usize),
    family: NftFamily,
    t: &NftTable,
) -> Result<NftSet, NftParseError> {
    let mut c = Cur::new(toks, end);
    let mut key: Option<(Vec<Ty>, DataTy)> = None;
    let mut interval = false;
    let mut decl = Vec::new();
    let mut elems: Option<(usize, usize)> = None;
    while let Some(tok) = c.peek() {
        if matches!(tok.tok, Tok::Newline | Tok::Semi) {
            c.i += 1;
            continue;
        }
        let from = c.i;
        match c.next_word("a set property")? {
            "type" => key = Some(set_type(&mut c, family, false)?),
            "typeof" => key = Some(set_type(&mut c, family, true)?),
            "flags" => loop {
                match c.next_word("a set flag")? {
                    "interval" => interval = true,
                    "constant" => {}
                    f => {
                        return Err(c.prev_err(format!(
                            "not supported: nft set flag {f} (docs/differences.md)"
                        )))
                    }
                }
                if c.peek().map(|t| &t.tok) != Some(&Tok::Comma) {
                    break;
                }
                c.i += 1;
            },
            "comment" | "auto-merge" | "policy" | "size" => {
                if !matches!(
                    c.peek().map(|t| &t.tok),
                    Some(Tok::Newline | Tok::Semi) | None
                ) {
                    c.next_name("a value")?;
                }
            }
            "elements" => {
                c.expect("=")?;
                let (_, after) = braced(toks, c.i)?;
                elems = Some((c.i, after));
                c.i = after;
                continue;
            }
            w => return Err(c.prev_err(format!("not supported: nft set property '{w}'"))),
        }
        decl.push(c.text_since(from));
    }
    let (kt, dt) = key.ok_or_else(|| NftParseError {
        line: end.0,
        col: end.1,
        msg: format!("set '{name}' needs a type"),
    })?;
    let fields = kt
        .iter()
        .map(|t| pad4(vec![0; t.len() as usize]).len() as u32)
        .collect();
    let mut set = NftSet::new(name, fields, interval, dt.set_data());
    set.decl = decl;
    if let Some((open, _)) = elems {
        let (inside, _) = braced(toks, open)?;
        for e in elements(inside, end, &kt, &dt, t)? {
            set.insert(e).map_err(|e| NftParseError {
                line: end.0,
                col: end.1,
                msg: e.to_string(),
            })?;
        }
    }
    Ok(set)
}

/// The key and data types of an existing named set are not kept by the
/// kernel model; a later `add element` reads them from the declaration
/// text of the set (`type ...` / `typeof ...`).
pub fn declared_types(s: &NftSet, family: NftFamily) -> Result<(Vec<Ty>, DataTy), NftParseError> {
    let decl = s
        .decl
        .iter()
        .find(|d| d.starts_with("type"))
        .cloned()
        .unwrap_or_default();
    let toks = super::lex::scan(&decl)?;
    let mut c = Cur::new(&toks, (1, 1));
    let of = c.next_word("type")? == "typeof";
    set_type(&mut c, family, of)
}
