//! One rule's statements compiled to nf_tables expressions, as nft's
//! evaluate + netlink_linearize do: a match loads its selector into
//! register 1 (a concatenation into consecutive 32-bit registers) and
//! compares (cmp, bitwise + cmp for prefixes and flags, range, lookup in an
//! anonymous or named set); verdicts, vmaps, counter, nat, reject, log,
//! notrack and mark setting are the statements.

use skiff_net::netfilter::nat::{
    NF_NAT_RANGE_PERSISTENT, NF_NAT_RANGE_PROTO_RANDOM, NF_NAT_RANGE_PROTO_RANDOM_FULLY,
};
use skiff_net::netfilter::nf_tables::expr::{
    CmpOp, CtKey, MetaKey, NatKind, NftExpr, NftVerdict, RejectKind, NFT_REG_1, NFT_REG_VERDICT,
};
use skiff_net::netfilter::nf_tables::{NftFamily, NftSet, NftTable, RuleText};
use skiff_net::netfilter::x_tables::XtCounters;
use skiff_net::netfilter::NfProto;

use super::cursor::Cur;
use super::lex::{Tok, Token};
use super::sel::{sel_expr, starts_selector, Dep, Load, SelExpr};
use super::set::{braced, declared_types, elements, interval_value, verdict, DataTy};
use super::types::{number, pad4, value, Ty};
use super::NftParseError;

/// A compiled rule: its expressions, its text, the anonymous sets it made
/// (to be added to the table before it, in order).
pub struct Compiled {
    pub exprs: Vec<NftExpr>,
    pub text: Vec<RuleText>,
    pub anon: Vec<NftSet>,
}

struct Rule<'t> {
    t: &'t NftTable,
    family: NftFamily,
    out: Compiled,
    /// The transport protocol / family a match established (dependency elimination).
    l4: Option<u8>,
    nf: Option<u8>,
}

/// Compiles a rule's tokens for table `t`.
pub fn compile(
    toks: &[Token],
    end: (usize, usize),
    t: &NftTable,
) -> Result<Compiled, NftParseError> {
    let mut r = Rule {
        t,
        family: t.family,
        out: Compiled {
            exprs: Vec::new(),
            text: Vec::new(),
            anon: Vec::new(),
        },
        l4: None,
        nf: None,
    };
    let mut c = Cur::new(toks, end);
    if c.at_end() {
        return Err(c.end_err("a statement"));
    }
    while !c.at_end() {
        let from = c.i;
        let counter = r.statement(&mut c)?;
        r.out.text.push(if counter {
            RuleText::Counter
        } else {
            RuleText::Text(c.text_since(from))
        });
    }
    Ok(r.out)
}

impl Rule<'_> {
    fn push(&mut self, e: NftExpr) {
        self.out.exprs.push(e);
    }

    fn dep(&mut self, d: Dep) {
        let (key, v) = match d {
            Dep::L4(p) if self.l4 != Some(p) => {
                self.l4 = Some(p);
                (MetaKey::L4proto, p)
            }
            Dep::Nf(n) if self.family == NftFamily::Inet && self.nf != Some(n) => {
                self.nf = Some(n);
                (MetaKey::Nfproto, n)
            }
            _ => return,
        };
        self.push(NftExpr::Meta {
            key,
            dreg: NFT_REG_1,
        });
        self.push(NftExpr::Cmp {
            op: CmpOp::Eq,
            sreg: NFT_REG_1,
            data: vec![v],
        });
    }

    /// Loads the selector expression from register 1 on; returns the key
    /// length and the field types.
    fn load(&mut self, e: &SelExpr) -> (u32, Vec<Ty>) {
        let mut word = NFT_REG_1;
        let mut len = 0;
        for s in &e.sels {
            for d in s.deps.clone() {
                self.dep(d);
            }
            let dreg = word;
            self.push(match s.load {
                Load::Payload(base, offset, l) => NftExpr::Payload {
                    base,
                    offset,
                    len: l,
                    dreg,
                },
                Load::Meta(key) => NftExpr::Meta { key, dreg },
                Load::Ct(key) => NftExpr::Ct { key, dreg },
                Load::Numgen {
                    modulus,
                    offset,
                    kind,
                } => NftExpr::Numgen {
                    dreg,
                    modulus,
                    offset,
                    kind,
                },
            });
            let l = if e.sels.len() > 1 {
                pad4(vec![0; s.ty.len() as usize]).len() as u32
            } else {
                s.ty.len()
            };
            word = word.saturating_add((s.ty.len().div_ceil(4)) as u8);
            len += l;
        }
        if let Some((mask, xor)) = &e.binop {
            self.push(NftExpr::Bitwise {
                sreg: NFT_REG_1,
                dreg: NFT_REG_1,
                mask: mask.clone(),
                xor: xor.clone(),
            });
        }
        (len, e.sels.iter().map(|s| s.ty).collect())
    }

    /// One statement; true when it was a counter.
    fn statement(&mut self, c: &mut Cur) -> Result<bool, NftParseError> {
        let Some(w) = c.peek_word() else {
            let t = c.next_tok("a statement")?;
            if t.tok == Tok::LBrace {
                return Err(t.err("syntax error, unexpected '{'"));
            }
            return Err(t.err(format!("syntax error, unexpected '{}'", t.text())));
        };
        match w {
            "accept" | "drop" | "continue" | "return" | "jump" | "goto" => {
                let v = verdict(c, self.t)?;
                self.push(NftExpr::Verdict(v));
            }
            "queue" => self.queue(c)?,
            "counter" => {
                c.i += 1;
                let mut ctr = XtCounters::default();
                if c.peek_word() == Some("packets") {
                    c.i += 1;
                    ctr.pcnt = number(c.next_word("a number")?).unwrap_or(0);
                    c.expect("bytes")?;
                    ctr.bcnt = number(c.next_word("a number")?).unwrap_or(0);
                }
                self.push(NftExpr::Counter(ctr));
                return Ok(true);
            }
            "log" => self.log(c)?,
            "notrack" => {
                c.i += 1;
                self.push(NftExpr::Notrack);
            }
            "reject" => self.reject(c)?,
            "snat" | "dnat" => self.nat(c)?,
            "masquerade" | "redirect" => self.masq(c)?,
            "comment" => {
                c.i += 1;
                c.next_name("a comment")?;
            }
            "limit" | "quota" | "meter" | "fwd" | "dup" | "tproxy" | "synproxy" | "flow"
            | "add" | "update" | "delete" | "set" | "reset" | "last" | "xt" | "secmark"
            | "synproxy_ct" => {
                c.i += 1;
                return Err(c.prev_err(format!(
                    "not supported: nft {w} statement (docs/differences.md)"
                )));
            }
            w if starts_selector(w) => self.selector_stmt(c)?,
            w => {
                c.i += 1;
                return Err(c.prev_err(format!("unknown expression '{w}'")));
            }
        }
        Ok(false)
    }

    fn queue(&mut self, c: &mut Cur) -> Result<(), NftParseError> {
        c.i += 1;
        let (mut num, mut bypass) = (0u16, false);
        loop {
            match c.peek_word() {
                Some("num") => {
                    c.i += 1;
                    let w = c.next_word("a queue number")?;
                    num = number(w)
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| c.prev_err(format!("invalid queue number '{w}'")))?;
                }
                Some("bypass") => {
                    c.i += 1;
                    bypass = true;
                }
                Some("flags") => {
                    c.i += 1;
                    match c.next_word("a queue flag")? {
                        "bypass" => bypass = true,
                        f => return Err(c.prev_err(format!("not supported: nft queue flag {f}"))),
                    }
                }
                _ => break,
            }
        }
        self.push(NftExpr::Verdict(NftVerdict::Queue { num, bypass }));
        Ok(())
    }

    fn log(&mut self, c: &mut Cur) -> Result<(), NftParseError> {
        c.i += 1;
        let (mut prefix, mut level) = (String::new(), 4u8);
        loop {
            match c.peek_word() {
                Some("prefix") => {
                    c.i += 1;
                    prefix = c.next_name("a prefix")?.to_string();
                }
                Some("level") => {
                    c.i += 1;
                    let l = c.next_word("a level")?;
                    let names = [
                        "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
                    ];
                    level = names
                        .iter()
                        .position(|n| *n == l)
                        .ok_or_else(|| c.prev_err(format!("invalid log level '{l}'")))?
                        as u8;
                }
                Some("flags" | "group" | "snaplen" | "queue-threshold") => {
                    c.i += 1;
                    return Err(
                        c.prev_err("not supported: nft log flags/group (docs/differences.md)")
                    );
                }
                _ => break,
            }
        }
        self.push(NftExpr::Log { prefix, level });
        Ok(())
    }

    fn reject(&mut self, c: &mut Cur) -> Result<(), NftParseError> {
        c.i += 1;
        let default = match self.family {
            NftFamily::Ip => RejectKind::Icmp(3),
            NftFamily::Ip6 => RejectKind::Icmp(4),
            NftFamily::Inet => RejectKind::Icmpx(1),
        };
        if c.peek_word() != Some("with") {
            self.push(NftExpr::Reject(default));
            return Ok(());
        }
        c.i += 1;
        let kind = c.next_word("icmp, icmpv6, icmpx or tcp")?;
        if kind == "tcp" {
            c.expect("reset")?;
            self.dep(Dep::L4(6));
            self.push(NftExpr::Reject(RejectKind::TcpRst));
            return Ok(());
        }
        if c.peek_word() == Some("type") {
            c.i += 1;
        }
        let name = c.next_word("a reject code")?;
        let codes: &[(&str, u8)] = match kind {
            "icmp" => &[
                ("net-unreachable", 0),
                ("host-unreachable", 1),
                ("prot-unreachable", 2),
                ("port-unreachable", 3),
                ("net-prohibited", 9),
                ("host-prohibited", 10),
                ("admin-prohibited", 13),
            ],
            "icmpv6" => &[
                ("no-route", 0),
                ("admin-prohibited", 1),
                ("addr-unreachable", 3),
                ("port-unreachable", 4),
                ("policy-fail", 5),
                ("reject-route", 6),
            ],
            "icmpx" => &[
                ("no-route", 0),
                ("port-unreachable", 1),
                ("host-unreachable", 2),
                ("admin-prohibited", 3),
            ],
            k => {
                return Err(c.prev_err(format!(
                    "syntax error, unexpected '{k}', expecting icmp, icmpv6, icmpx or tcp"
                )))
            }
        };
        let code = codes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .or_else(|| number(name).and_then(|n| u8::try_from(n).ok()))
            .ok_or_else(|| c.prev_err(format!("invalid {kind} reject code '{name}'")))?;
        let k = match kind {
            "icmpx" => RejectKind::Icmpx(code),
            "icmp" => {
                self.dep(Dep::Nf(2));
                RejectKind::Icmp(code)
            }
            _ => {
                self.dep(Dep::Nf(10));
                RejectKind::Icmp(code)
            }
        };
        self.push(NftExpr::Reject(k));
        Ok(())
    }

    /// NAT flags after the target: random, fully-random, persistent (comma separated).
    fn nat_flags(&mut self, c: &mut Cur) -> Result<u32, NftParseError> {
        let mut flags = 0;
        while let Some(w) = c.peek_word() {
            let f = match w {
                "random" => NF_NAT_RANGE_PROTO_RANDOM,
                "fully-random" => NF_NAT_RANGE_PROTO_RANDOM_FULLY,
                "persistent" => NF_NAT_RANGE_PERSISTENT,
                _ => break,
            };
            flags |= f;
            c.i += 1;
            if c.peek().map(|t| &t.tok) == Some(&Tok::Comma) {
                c.i += 1;
            }
        }
        Ok(flags)
    }

    /// `:P` or `:P-Q` (or without the colon after `redirect to`) into
    /// registers 3 (and 4).
    fn ports(&mut self, c: &Cur, spec: &str) -> Result<(u8, u8), NftParseError> {
        let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
        let p = |w: &str| {
            value(Ty::InetService, w).ok_or_else(|| c.prev_err(format!("invalid port '{w}'")))
        };
        let (pa, pb) = (p(a)?, p(b)?);
        if self.l4.is_none() {
            return Err(c.prev_err(
                "transport protocol mapping is only valid after transport protocol match",
            ));
        }
        let (r3, r4) = (NFT_REG_1 + 8, NFT_REG_1 + 12);
        self.push(NftExpr::Immediate {
            dreg: r3,
            data: pa.clone(),
        });
        if pa == pb {
            return Ok((r3, r3));
        }
        self.push(NftExpr::Immediate { dreg: r4, data: pb });
        Ok((r3, r4))
    }

    fn masq(&mut self, c: &mut Cur) -> Result<(), NftParseError> {
        let w = c.next_word("masquerade")?;
        let kind = if w == "masquerade" {
            NatKind::Masq
        } else {
            NatKind::Redir
        };
        let mut proto = None;
        if c.peek_word() == Some("to") {
            c.i += 1;
            let spec = c.next_word("a port")?;
            proto = Some(self.ports(c, spec.trim_start_matches(':'))?);
        }
        let flags = self.nat_flags(c)?;
        let pf = match self.family {
            NftFamily::Ip6 => NfProto::Ipv6,
            NftFamily::Ip => NfProto::Ipv4,
            // The packet's own family (nft_masq_inet_eval).
            NftFamily::Inet => NfProto::Netdev,
        };
        self.push(NftExpr::Nat {
            kind,
            pf,
            addr: None,
            proto,
            flags,
        });
        Ok(())
    }

    fn nat(&mut self, c: &mut Cur) -> Result<(), NftParseError> {
        let kind = if c.next_word("nat")? == "snat" {
            NatKind::Snat
        } else {
            NatKind::Dnat
        };
        let mut pf = match self.family {
            NftFamily::Ip6 => Some(NfProto::Ipv6),
            NftFamily::Ip => Some(NfProto::Ipv4),
            NftFamily::Inet => None,
        };
        match c.peek_word() {
            Some("ip") => {
                c.i += 1;
                pf = Some(NfProto::Ipv4);
            }
            Some("ip6") => {
                c.i += 1;
                pf = Some(NfProto::Ipv6);
            }
            _ => {}
        }
        c.expect("to")?;
        let w = c.peek_word().unwrap_or("");
        let (addr, proto, pf) = if starts_selector(w) {
            self.nat_map(c, pf)?
        } else {
            let spec = c.next_word("an address")?;
            self.nat_literal(c, spec, pf)?
        };
        let flags = self.nat_flags(c)?;
        self.push(NftExpr::Nat {
            kind,
            pf,
            addr,
            proto,
            flags,
        });
        Ok(())
    }

    /// `A`, `A:P`, `A-B`, `A-B:P-Q`, `[v6]:P`.
    fn nat_literal(
        &mut self,
        c: &Cur,
        spec: &str,
        pf: Option<NfProto>,
    ) -> Result<(Option<(u8, u8)>, Option<(u8, u8)>, NfProto), NftParseError> {
        let (addrs, ports) = if let Some(rest) = spec.strip_prefix('[') {
            let (a, p) = rest
                .split_once(']')
                .ok_or_else(|| c.prev_err(format!("invalid address '{spec}'")))?;
            (a, p.strip_prefix(':'))
        } else if spec.matches(':').count() == 1 {
            let (a, p) = spec.split_once(':').unwrap_or((spec, ""));
            (a, Some(p))
        } else {
            (spec, None)
        };
        let pf = pf.unwrap_or(if addrs.contains(':') {
            NfProto::Ipv6
        } else {
            NfProto::Ipv4
        });
        let ty = if pf == NfProto::Ipv6 {
            Ty::Ipv6Addr
        } else {
            Ty::Ipv4Addr
        };
        let (lo, hi) = addrs.split_once('-').unwrap_or((addrs, addrs));
        let v = |w: &str| {
            value(ty, w).ok_or_else(|| {
                c.prev_err(format!(
                    "Could not parse {}: '{w}'",
                    super::set::ty_name(ty)
                ))
            })
        };
        let (a, b) = (v(lo)?, v(hi)?);
        let (r1, r2) = (NFT_REG_1, NFT_REG_1 + 4);
        self.push(NftExpr::Immediate {
            dreg: r1,
            data: a.clone(),
        });
        let addr = if a == b {
            (r1, r1)
        } else {
            self.push(NftExpr::Immediate { dreg: r2, data: b });
            (r1, r2)
        };
        let proto = match ports.filter(|p| !p.is_empty()) {
            Some(p) => Some(self.ports(c, p)?),
            None => None,
        };
        Ok((Some(addr), proto, pf))
    }

    /// `dnat to SEL map { KEY : ADDR [. PORT], ... }`.
    fn nat_map(
        &mut self,
        c: &mut Cur,
        pf: Option<NfProto>,
    ) -> Result<(Option<(u8, u8)>, Option<(u8, u8)>, NfProto), NftParseError> {
        let e = sel_expr(c, self.family)?;
        c.expect("map")?;
        let pf = pf.unwrap_or(NfProto::Ipv4);
        let aty = if pf == NfProto::Ipv6 {
            Ty::Ipv6Addr
        } else {
            Ty::Ipv4Addr
        };
        let (len, key) = self.load(&e);
        let tok = c.peek().cloned();
        let (set, data) = self.set_ref(c, len, &key, None)?;
        let DataTy::Values(d) = data else {
            return Err(c.prev_err("a nat map's data must be an address or address . port"));
        };
        let port = match d.as_slice() {
            [a] if *a == aty => false,
            [a, Ty::InetService] if *a == aty => true,
            _ => {
                return Err(tok.map_or_else(
                    || c.end_err("a map"),
                    |t| t.err("a nat map's data must be an address or address . port"),
                ))
            }
        };
        if port && self.l4.is_none() {
            return Err(c.prev_err(
                "transport protocol mapping is only valid after transport protocol match",
            ));
        }
        self.push(NftExpr::Lookup {
            sreg: NFT_REG_1,
            set,
            dreg: Some(NFT_REG_1),
            invert: false,
        });
        let pword = NFT_REG_1 + (aty.len() / 4) as u8;
        Ok((
            Some((NFT_REG_1, NFT_REG_1)),
            port.then_some((pword, pword)),
            pf,
        ))
    }

    /// `@name` or `{ ... }` at the cursor: the set's index (an anonymous
    /// one is made) and its data type. `data` is the data type an
    /// anonymous map's elements have (None: take it from the elements).
    fn set_ref(
        &mut self,
        c: &mut Cur,
        len: u32,
        key: &[Ty],
        vmap: Option<bool>,
    ) -> Result<(usize, DataTy), NftParseError> {
        let t = c.next_tok("a set")?;
        if let Some(name) = t.word().and_then(|w| w.strip_prefix('@')) {
            let i = self.t.set_index(name).ok_or_else(|| {
                t.err(format!(
                    "Could not process rule: No such file or directory: set '{name}'"
                ))
            })?;
            let s = &self.t.sets[i];
            let klen: u32 = if key.len() > 1 {
                key.iter()
                    .map(|k| pad4(vec![0; k.len() as usize]).len() as u32)
                    .sum()
            } else {
                pad4(vec![0; len as usize]).len() as u32
            };
            if s.key_len != klen {
                return Err(t.err(format!(
                    "datatype mismatch, set '{name}' has {}-byte keys, expression has {klen}",
                    s.key_len
                )));
            }
            let (_, d) = declared_types(s, self.family)?;
            return Ok((i, d));
        }
        if t.tok != Tok::LBrace {
            return Err(t.err(format!(
                "syntax error, unexpected '{}', expecting a set",
                t.text()
            )));
        }
        let (inside, after) = braced(c.toks, c.i - 1)?;
        let data = match vmap {
            Some(true) => DataTy::Verdict,
            Some(false) => DataTy::None,
            None => guess_map_data(inside)?,
        };
        let elems = elements(inside, (t.line, t.col), key, &data, self.t)?;
        c.i = after;
        let interval = elems.iter().any(|e| e.key != e.key_end);
        let fields = key
            .iter()
            .map(|k| pad4(vec![0; k.len() as usize]).len() as u32)
            .collect();
        let idx = self.t.sets.len() + self.out.anon.len();
        let mut s = NftSet::new(&format!("__set{idx}"), fields, interval, data.set_data());
        s.anonymous = true;
        for e in elems {
            s.insert(e).map_err(|e| t.err(e.to_string()))?;
        }
        self.out.anon.push(s);
        Ok((idx, data))
    }

    /// A statement starting with a selector: `SEL set V` (mark), `SEL vmap
    /// SET`, or a match `SEL [op] RHS`.
    fn selector_stmt(&mut self, c: &mut Cur) -> Result<(), NftParseError> {
        let e = sel_expr(c, self.family)?;
        if c.peek_word() == Some("set") {
            return self.set_stmt(c, &e);
        }
        if c.peek_word() == Some("vmap") {
            c.i += 1;
            let (len, key) = self.load(&e);
            let (set, data) = self.set_ref(c, len, &key, Some(true))?;
            if data != DataTy::Verdict {
                return Err(c.prev_err("a vmap needs a verdict map"));
            }
            self.push(NftExpr::Lookup {
                sreg: NFT_REG_1,
                set,
                dreg: Some(NFT_REG_VERDICT),
                invert: false,
            });
            return Ok(());
        }
        let op = match c.peek_word() {
            Some("==" | "eq") => Some(CmpOp::Eq),
            Some("!=" | "ne") => Some(CmpOp::Neq),
            Some("<" | "lt") => Some(CmpOp::Lt),
            Some("<=" | "le") => Some(CmpOp::Lte),
            Some(">" | "gt") => Some(CmpOp::Gt),
            Some(">=" | "ge") => Some(CmpOp::Gte),
            _ => None,
        };
        if op.is_some() {
            c.i += 1;
        }
        self.match_rhs(c, &e, op)
    }

    /// `meta mark set V`, `ct mark set V`, V a value or a selector expression.
    fn set_stmt(&mut self, c: &mut Cur, e: &SelExpr) -> Result<(), NftParseError> {
        c.i += 1;
        let target = match e.sels.as_slice() {
            [s] if e.binop.is_none() => s.load,
            _ => return Err(c.prev_err("not supported: nft setting this expression")),
        };
        match target {
            Load::Meta(MetaKey::Mark) | Load::Ct(CtKey::Mark) => {}
            _ => return Err(c.prev_err("not supported: nft setting anything but meta mark and ct mark (docs/differences.md)")),
        }
        if c.peek_word().is_some_and(starts_selector) {
            let v = sel_expr(c, self.family)?;
            self.load(&v);
        } else {
            let w = c.next_word("a value")?;
            let v = value(Ty::Mark, w)
                .ok_or_else(|| c.prev_err(format!("Could not parse packet mark: '{w}'")))?;
            self.push(NftExpr::Immediate {
                dreg: NFT_REG_1,
                data: v,
            });
        }
        self.push(match target {
            Load::Ct(_) => NftExpr::CtSet {
                key: CtKey::Mark,
                sreg: NFT_REG_1,
            },
            _ => NftExpr::MetaSet {
                key: MetaKey::Mark,
                sreg: NFT_REG_1,
            },
        });
        Ok(())
    }

    /// The right-hand side of a match.
    fn match_rhs(
        &mut self,
        c: &mut Cur,
        e: &SelExpr,
        op: Option<CmpOp>,
    ) -> Result<(), NftParseError> {
        let t = c.peek().ok_or_else(|| c.end_err("a value"))?;
        let is_set = t.tok == Tok::LBrace || t.word().is_some_and(|w| w.starts_with('@'));
        if is_set {
            let (len, key) = self.load(e);
            let (set, _) = self.set_ref(c, len, &key, Some(false))?;
            let invert = match op {
                None | Some(CmpOp::Eq) => false,
                Some(CmpOp::Neq) => true,
                _ => return Err(t.err("a set lookup takes == or !=")),
            };
            self.push(NftExpr::Lookup {
                sreg: NFT_REG_1,
                set,
                dreg: None,
                invert,
            });
            return Ok(());
        }
        // A value, a concatenation of values, or a `,` list.
        let mut vals: Vec<&Token> = Vec::new();
        loop {
            vals.push(c.next_tok("a value")?);
            match c.peek() {
                Some(n) if n.word() == Some(".") || n.tok == Tok::Comma => {
                    c.i += 1;
                }
                _ => break,
            }
        }
        self.match_values(c, e, op, &vals)
    }

    fn match_values(
        &mut self,
        c: &Cur,
        e: &SelExpr,
        op: Option<CmpOp>,
        vals: &[&Token],
    ) -> Result<(), NftParseError> {
        let first = vals.first().copied().ok_or_else(|| c.end_err("a value"))?;
        let (len, tys) = self.load(e);
        let ty = tys.first().copied().unwrap_or(Ty::Integer);
        let implicit = op.is_none();
        let op = op.unwrap_or(CmpOp::Eq);
        // cmp compares with memcmp: an ordering on a host-order value
        // would need nft's byteorder expression, which skiff does not make.
        if !matches!(op, CmpOp::Eq | CmpOp::Neq) && !ty.ordered() {
            return Err(first.err(
                "not supported: nft <, >, <=, >= on a host-order value (mark, ct state, numgen)",
            ));
        }
        if tys.len() > 1 {
            if vals.len() != tys.len() {
                return Err(first.err("the value does not match the concatenation"));
            }
            let mut key = Vec::new();
            for (v, ty) in vals.iter().zip(&tys) {
                let (a, b) = interval_value(*ty, v)?;
                if a != b {
                    return Err(v.err(
                        "not supported: nft a range or prefix in a concatenation outside a set",
                    ));
                }
                key.extend(pad4(a));
            }
            return self.cmp(op, key);
        }
        if ty.is_bitmask() {
            let mut mask = vec![0u8; len as usize];
            for v in vals {
                let w = v.word().unwrap_or("");
                let b = value(ty, w).ok_or_else(|| {
                    v.err(format!(
                        "Could not parse {}: '{w}'",
                        super::set::ty_name(ty)
                    ))
                })?;
                mask.iter_mut().zip(&b).for_each(|(m, b)| *m |= b);
            }
            if !implicit {
                // An explicit comparison compares the whole value (`tcp flags & (syn|ack) == syn`).
                return self.cmp(op, mask);
            }
            // The implicit operator is a flag test: (x & mask) != 0.
            self.push(NftExpr::Bitwise {
                sreg: NFT_REG_1,
                dreg: NFT_REG_1,
                mask,
                xor: vec![0; len as usize],
            });
            self.push(NftExpr::Cmp {
                op: CmpOp::Neq,
                sreg: NFT_REG_1,
                data: vec![0; len as usize],
            });
            return Ok(());
        }
        if vals.len() > 1 {
            return Err(vals[1].err(format!(
                "not supported: nft a list of values here; write {{ ... }}"
            )));
        }
        if ty == Ty::IfName {
            if let Some(p) = first
                .word()
                .or(match &first.tok {
                    Tok::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .and_then(|w| w.strip_suffix('*'))
            {
                return self.cmp(op, p.as_bytes().to_vec());
            }
        }
        let (a, b) = interval_value(ty, first)?;
        if a == b {
            return self.cmp(op, a);
        }
        let w = first.word().unwrap_or("");
        if w.contains('/') {
            let mask: Vec<u8> = a.iter().zip(&b).map(|(x, y)| !(x ^ y)).collect();
            self.push(NftExpr::Bitwise {
                sreg: NFT_REG_1,
                dreg: NFT_REG_1,
                mask,
                xor: vec![0; a.len()],
            });
            return self.cmp(op, a);
        }
        let neq = match op {
            CmpOp::Eq => false,
            CmpOp::Neq => true,
            _ => return Err(first.err("a range takes == or !=")),
        };
        self.push(NftExpr::Range {
            neq,
            sreg: NFT_REG_1,
            from: a,
            to: b,
        });
        Ok(())
    }

    fn cmp(&mut self, op: CmpOp, data: Vec<u8>) -> Result<(), NftParseError> {
        // An equality on the protocol or family is the dependency it satisfies.
        if op == CmpOp::Eq && data.len() == 1 {
            match self.out.exprs.last() {
                Some(NftExpr::Meta {
                    key: MetaKey::L4proto,
                    ..
                })
                | Some(NftExpr::Payload {
                    offset: 9, len: 1, ..
                })
                | Some(NftExpr::Payload {
                    offset: 6, len: 1, ..
                }) => self.l4 = Some(data[0]),
                Some(NftExpr::Meta {
                    key: MetaKey::Nfproto,
                    ..
                }) => self.nf = Some(data[0]),
                _ => {}
            }
        }
        self.push(NftExpr::Cmp {
            op,
            sreg: NFT_REG_1,
            data,
        });
        Ok(())
    }
}

/// An anonymous map's data type from its first element's data: a verdict
/// or addresses/ports.
fn guess_map_data(inside: &[Token]) -> Result<DataTy, NftParseError> {
    let elem: Vec<&Token> = inside
        .iter()
        .filter(|t| t.tok != Tok::Newline)
        .take_while(|t| t.tok != Tok::Comma)
        .collect();
    let Some(colon) = elem.iter().position(|t| t.word() == Some(":")) else {
        return Ok(DataTy::None);
    };
    let data: Vec<&&Token> = elem.iter().skip(colon + 1).collect();
    let mut tys = Vec::new();
    for d in data.iter().filter(|t| t.word() != Some(".")) {
        let w = d.word().unwrap_or("");
        let ty = if w.parse::<std::net::Ipv4Addr>().is_ok() {
            Ty::Ipv4Addr
        } else if w.contains(':') {
            Ty::Ipv6Addr
        } else if value(Ty::InetService, w).is_some() {
            Ty::InetService
        } else {
            return Ok(DataTy::Verdict);
        };
        tys.push(ty);
    }
    Ok(DataTy::Values(tys))
}
