//! The expressions of a rule (struct nft_expr_ops' eval per kind) over the
//! registers (struct nft_regs): loads (payload, meta, ct, numgen,
//! immediate), comparisons (cmp, range, lookup), bitwise, and the
//! statements (counter, verdicts, nat/masq/redir, reject, log, notrack,
//! meta/ct set).

use super::super::conntrack::xt as ctxt;
use super::super::conntrack::{IpConntrackInfo, IPS_CONFIRMED};
use super::super::ip_tables::XtPkt;
use super::super::ipt_reject::RejectWith;
use super::super::nat::{
    NatTarget, NfNatRange2, NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED,
};
use super::super::x_tables::XtCounters;
use super::super::xt_log::XtLog;
use super::super::{NfHookState, NfProto, NfReply, NfSkb, NfVerdict, XtEnv};
use super::set::NftSet;

/// Register numbers as the kernel keeps them after nft_parse_register: the
/// index of a 32-bit word of nft_regs.data. NFT_REG_VERDICT is word 0;
/// NFT_REG_1..4 (16 bytes each) are words 4, 8, 12, 16; NFT_REG32_00..15
/// are words 4..19.
pub const NFT_REG_VERDICT: u8 = 0;
pub const NFT_REG_1: u8 = 4;
/// NFT_REG32_NUM.
const NFT_REG32_NUM: usize = 20;

/// A rule's verdict (struct nft_verdict): the netfilter verdicts and the
/// nf_tables ones; chains by index in their table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NftVerdict {
    /// NFT_CONTINUE: on to the next expression / rule.
    Continue,
    /// NFT_BREAK: the rule does not match.
    Break,
    Accept,
    Drop,
    Queue {
        num: u16,
        bypass: bool,
    },
    Jump(usize),
    Goto(usize),
    Return,
}

/// struct nft_regs: the verdict and 16 data words (the verdict's words are
/// kept apart).
pub struct NftRegs {
    pub verdict: NftVerdict,
    data: [u8; NFT_REG32_NUM * 4],
}

impl Default for NftRegs {
    fn default() -> Self {
        NftRegs {
            verdict: NftVerdict::Continue,
            data: [0; NFT_REG32_NUM * 4],
        }
    }
}

impl NftRegs {
    /// `len` bytes from register `r`.
    pub fn load(&self, r: u8, len: usize) -> Option<&[u8]> {
        let at = usize::from(r) * 4;
        self.data.get(at..at.checked_add(len)?)
    }

    /// Stores `v` at register `r`, the rest of its last word zeroed (as
    /// nft_reg_store8/16 and nft_payload_eval's `dest[len / 4] = 0`).
    pub fn store(&mut self, r: u8, v: &[u8]) -> bool {
        let at = usize::from(r) * 4;
        let words = v.len().div_ceil(4) * 4;
        let Some(end) = at.checked_add(words) else {
            return false;
        };
        match self.data.get_mut(at..end) {
            Some(d) => {
                d.fill(0);
                d[..v.len()].copy_from_slice(v);
                true
            }
            None => false,
        }
    }

    fn load_u32(&self, r: u8) -> Option<u32> {
        let b = self.load(r, 4)?;
        Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// enum nft_payload_bases (the link layer one is not supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadBase {
    Network,
    Transport,
}

/// enum nft_meta_keys, the ones supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    Len,
    Protocol,
    Nfproto,
    L4proto,
    Mark,
    Iif,
    Oif,
    Iifname,
    Oifname,
}

/// enum nft_ct_keys, the ones supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKey {
    State,
    Direction,
    Status,
    Mark,
}

/// enum nft_cmp_ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// enum nft_ng_types, with the inc generator's counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumgenKind {
    /// NFT_NG_INCREMENTAL: the counter starts at modulus - 1.
    Inc {
        counter: u32,
    },
    Random,
}

/// The NAT expressions (nft_nat, nft_masq, nft_redir).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
    Masq,
    Redir,
}

/// enum nft_reject_types with the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// NFT_REJECT_ICMP_UNREACH: an ICMP (ip) or ICMPv6 (ip6) code.
    Icmp(u8),
    TcpRst,
    /// NFT_REJECT_ICMPX_UNREACH: enum nft_reject_inet_code.
    Icmpx(u8),
}

/// One expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftExpr {
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u8,
    },
    Meta {
        key: MetaKey,
        dreg: u8,
    },
    MetaSet {
        key: MetaKey,
        sreg: u8,
    },
    Cmp {
        op: CmpOp,
        sreg: u8,
        data: Vec<u8>,
    },
    /// dreg = (sreg & mask) ^ xor over mask.len() bytes.
    Bitwise {
        sreg: u8,
        dreg: u8,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// NFT_RANGE_EQ (`neq` false) / NFT_RANGE_NEQ.
    Range {
        neq: bool,
        sreg: u8,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// A set (dreg None) or map lookup; a verdict map's dreg is NFT_REG_VERDICT.
    Lookup {
        sreg: u8,
        set: usize,
        dreg: Option<u8>,
        invert: bool,
    },
    Immediate {
        dreg: u8,
        data: Vec<u8>,
    },
    Verdict(NftVerdict),
    Counter(XtCounters),
    Ct {
        key: CtKey,
        dreg: u8,
    },
    CtSet {
        key: CtKey,
        sreg: u8,
    },
    Numgen {
        dreg: u8,
        modulus: u32,
        offset: u32,
        kind: NumgenKind,
    },
    /// Address registers (min, max) and port registers (min, max).
    Nat {
        kind: NatKind,
        pf: NfProto,
        addr: Option<(u8, u8)>,
        proto: Option<(u8, u8)>,
        flags: u32,
    },
    Reject(RejectKind),
    Log {
        prefix: String,
        level: u8,
    },
    Notrack,
}

/// What an expression reads besides the registers.
pub struct EvalCx<'e, 'p, 's> {
    pub skb: &'p mut NfSkb<'s>,
    pub st: &'p NfHookState,
    /// The packet's headers (None: the family's header parse failed).
    pub xt: Option<XtPkt>,
    pub env: &'p mut XtEnv<'e>,
    pub sets: &'p [NftSet],
    /// The binding a nat/masq/redir expression chose.
    pub nat: Option<NatTarget>,
}

impl NftExpr {
    /// Whether loading the expression takes conntrack (nf_ct_netns_get in
    /// nft_ct_get_init, nft_nat_init, nft_masq_init, nft_redir_init).
    pub fn needs_conntrack(&self) -> bool {
        matches!(
            self,
            NftExpr::Ct { .. } | NftExpr::CtSet { .. } | NftExpr::Nat { .. }
        )
    }

    /// The expression's eval; a failure to load sets NFT_BREAK.
    pub fn eval(&mut self, regs: &mut NftRegs, cx: &mut EvalCx) {
        let ok = match self {
            NftExpr::Payload {
                base,
                offset,
                len,
                dreg,
            } => payload(regs, cx, *base, *offset, *len, *dreg),
            NftExpr::Meta { key, dreg } => meta(regs, cx, *key, *dreg),
            NftExpr::MetaSet { key, sreg } => meta_set(regs, cx, *key, *sreg),
            NftExpr::Cmp { op, sreg, data } => cmp(regs, *op, *sreg, data),
            NftExpr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => bitwise(regs, *sreg, *dreg, mask, xor),
            NftExpr::Range {
                neq,
                sreg,
                from,
                to,
            } => range(regs, *neq, *sreg, from, to),
            NftExpr::Lookup {
                sreg,
                set,
                dreg,
                invert,
            } => lookup(regs, cx, *sreg, *set, *dreg, *invert),
            NftExpr::Immediate { dreg, data } => regs.store(*dreg, data),
            NftExpr::Verdict(v) => {
                regs.verdict = *v;
                true
            }
            NftExpr::Counter(c) => {
                c.add(cx.skb.pkt.len());
                true
            }
            NftExpr::Ct { key, dreg } => ct(regs, cx, *key, *dreg),
            NftExpr::CtSet { key, sreg } => ct_set(regs, cx, *key, *sreg),
            NftExpr::Numgen {
                dreg,
                modulus,
                offset,
                kind,
            } => numgen(regs, cx, *dreg, *modulus, *offset, kind),
            NftExpr::Nat {
                kind,
                pf,
                addr,
                proto,
                flags,
            } => nat(regs, cx, *kind, *pf, *addr, *proto, *flags),
            NftExpr::Reject(k) => reject(regs, cx, *k),
            NftExpr::Log { prefix, level } => {
                if let Some(p) = &cx.xt {
                    let l = XtLog {
                        prefix: prefix.clone(),
                        level: *level,
                    };
                    let line = l.line(p, cx.skb, cx.st);
                    cx.env.log_line(line);
                }
                true
            }
            NftExpr::Notrack => {
                ctxt::notrack(cx.skb.nfct);
                true
            }
        };
        if !ok {
            regs.verdict = NftVerdict::Break;
        }
    }
}

/// net/netfilter/nft_payload.c: nft_payload_eval (the transport header only
/// when the packet has one and is not a later fragment).
fn payload(
    regs: &mut NftRegs,
    cx: &EvalCx,
    base: PayloadBase,
    offset: u32,
    len: u32,
    dreg: u8,
) -> bool {
    let start = match base {
        PayloadBase::Network => 0,
        PayloadBase::Transport => match &cx.xt {
            Some(p) if p.fragoff == 0 => p.thoff,
            _ => return false,
        },
    };
    let Some(at) = start.checked_add(offset as usize) else {
        return false;
    };
    match cx.skb.pkt.get(at..at.saturating_add(len as usize)) {
        Some(b) => regs.store(dreg, b),
        None => false,
    }
}

/// NFPROTO_IPV4 / NFPROTO_IPV6 as nft's meta nfproto holds them.
pub fn nfproto_num(pf: NfProto) -> u8 {
    match pf {
        NfProto::Ipv4 => 2,
        NfProto::Ipv6 => 10,
        NfProto::Netdev => 5,
    }
}

/// net/netfilter/nft_meta.c: nft_meta_get_eval.
fn meta(regs: &mut NftRegs, cx: &EvalCx, key: MetaKey, dreg: u8) -> bool {
    let st = cx.st;
    let name = |n: Option<super::super::IfName>| n.unwrap_or_default().0;
    match key {
        MetaKey::Len => regs.store(dreg, &(cx.skb.pkt.len() as u32).to_ne_bytes()),
        MetaKey::Protocol => {
            let p: u16 = if st.pf == NfProto::Ipv6 {
                0x86dd
            } else {
                0x0800
            };
            regs.store(dreg, &p.to_be_bytes())
        }
        MetaKey::Nfproto => regs.store(dreg, &[nfproto_num(st.pf)]),
        MetaKey::L4proto => match &cx.xt {
            Some(p) => regs.store(dreg, &[p.proto]),
            None => false,
        },
        MetaKey::Mark => regs.store(dreg, &cx.skb.mark.to_ne_bytes()),
        MetaKey::Iif => match st.in_ifindex {
            Some(i) => regs.store(dreg, &i.to_ne_bytes()),
            None => false,
        },
        MetaKey::Oif => match st.out_ifindex {
            Some(i) => regs.store(dreg, &i.to_ne_bytes()),
            None => false,
        },
        MetaKey::Iifname => regs.store(dreg, &name(st.in_name)),
        MetaKey::Oifname => regs.store(dreg, &name(st.out_name)),
    }
}

/// nft_meta_set_eval: only the mark is settable here.
fn meta_set(regs: &NftRegs, cx: &mut EvalCx, key: MetaKey, sreg: u8) -> bool {
    match (key, regs.load_u32(sreg)) {
        (MetaKey::Mark, Some(v)) => {
            *cx.skb.mark = v;
            true
        }
        _ => false,
    }
}

/// net/netfilter/nft_cmp.c: nft_cmp_eval (memcmp over the data's length).
fn cmp(regs: &NftRegs, op: CmpOp, sreg: u8, data: &[u8]) -> bool {
    let Some(r) = regs.load(sreg, data.len()) else {
        return false;
    };
    let d = r.cmp(data);
    match op {
        CmpOp::Eq => d.is_eq(),
        CmpOp::Neq => d.is_ne(),
        CmpOp::Lt => d.is_lt(),
        CmpOp::Lte => d.is_le(),
        CmpOp::Gt => d.is_gt(),
        CmpOp::Gte => d.is_ge(),
    }
}

/// net/netfilter/nft_bitwise.c: nft_bitwise_eval_bool.
fn bitwise(regs: &mut NftRegs, sreg: u8, dreg: u8, mask: &[u8], xor: &[u8]) -> bool {
    let mut out = [0u8; 64];
    let Some(src) = regs.load(sreg, mask.len()) else {
        return false;
    };
    let Some(o) = out.get_mut(..mask.len()) else {
        return false;
    };
    for (((o, s), m), x) in o.iter_mut().zip(src).zip(mask).zip(xor) {
        *o = (s & m) ^ x;
    }
    regs.store(dreg, &out[..mask.len()])
}

/// net/netfilter/nft_range.c: nft_range_eval.
fn range(regs: &NftRegs, neq: bool, sreg: u8, from: &[u8], to: &[u8]) -> bool {
    let Some(r) = regs.load(sreg, from.len()) else {
        return false;
    };
    let inside = r >= from && r <= to;
    inside != neq
}

/// net/netfilter/nft_lookup.c: nft_lookup_eval (a map copies the element's
/// data, a verdict map its verdict).
fn lookup(
    regs: &mut NftRegs,
    cx: &EvalCx,
    sreg: u8,
    set: usize,
    dreg: Option<u8>,
    invert: bool,
) -> bool {
    let Some(s) = cx.sets.get(set) else {
        return false;
    };
    let Some(key) = regs.load(sreg, s.key_len as usize) else {
        return false;
    };
    let found = s.lookup(key);
    if found.is_some() == invert {
        return false;
    }
    match (found, dreg) {
        (Some(e), Some(NFT_REG_VERDICT)) => match e.data.verdict() {
            Some(v) => {
                regs.verdict = v;
                true
            }
            None => false,
        },
        (Some(e), Some(d)) => match e.data.bytes() {
            Some(b) => {
                let b = b.to_vec();
                regs.store(d, &b)
            }
            None => false,
        },
        _ => true,
    }
}

/// NF_CT_STATE_INVALID_BIT, NF_CT_STATE_UNTRACKED_BIT.
pub const NF_CT_STATE_INVALID_BIT: u32 = 1 << 0;
pub const NF_CT_STATE_UNTRACKED_BIT: u32 = 1 << 6;

/// net/netfilter/nft_ct.c: nft_ct_get_eval. The state needs only the
/// packet's ctinfo; the other keys read the entry (not inside a nat chain,
/// whose caller holds the table: NFT_BREAK there).
fn ct(regs: &mut NftRegs, cx: &EvalCx, key: CtKey, dreg: u8) -> bool {
    let nfct = *cx.skb.nfct;
    let tracked = nfct.filter(|n| n.info != IpConntrackInfo::Untracked);
    if key == CtKey::State {
        let state = match nfct {
            Some(n) if n.info == IpConntrackInfo::Untracked => NF_CT_STATE_UNTRACKED_BIT,
            Some(n) => ctxt::state_bit(n.info),
            None => NF_CT_STATE_INVALID_BIT,
        };
        return regs.store(dreg, &state.to_ne_bytes());
    }
    let Some(n) = tracked else { return false };
    if key == CtKey::Direction {
        return regs.store(dreg, &[n.info.dir() as u8]);
    }
    let Some(c) = cx.env.ct.as_deref().and_then(|t| t.get(n.id)) else {
        return false;
    };
    match key {
        CtKey::Status => regs.store(dreg, &c.status.to_ne_bytes()),
        _ => regs.store(dreg, &c.mark.to_ne_bytes()),
    }
}

/// nft_ct_set_eval: the mark (a confirmed entry's too).
fn ct_set(regs: &NftRegs, cx: &mut EvalCx, key: CtKey, sreg: u8) -> bool {
    let (Some(v), Some(n)) = (regs.load_u32(sreg), *cx.skb.nfct) else {
        return false;
    };
    if key != CtKey::Mark || n.info == IpConntrackInfo::Untracked {
        return true;
    }
    if let Some(c) = cx.env.ct.as_deref_mut().and_then(|t| t.get_mut(n.id)) {
        c.mark = v;
    }
    true
}

/// net/netfilter/nft_numgen.c: nft_ng_inc_gen / nft_ng_random_eval
/// (reciprocal_scale of a draw from the namespace's seeded generator).
fn numgen(
    regs: &mut NftRegs,
    cx: &mut EvalCx,
    dreg: u8,
    modulus: u32,
    offset: u32,
    kind: &mut NumgenKind,
) -> bool {
    let v = match kind {
        NumgenKind::Inc { counter } => {
            let n = if counter.saturating_add(1) < modulus {
                *counter + 1
            } else {
                0
            };
            *counter = n;
            n
        }
        NumgenKind::Random => ((u64::from(cx.env.prandom_u32()) * u64::from(modulus)) >> 32) as u32,
    };
    regs.store(dreg, &v.wrapping_add(offset).to_ne_bytes())
}

/// An address of family `pf` from a register.
fn reg_addr(regs: &NftRegs, r: u8, pf: NfProto) -> Option<std::net::IpAddr> {
    match pf {
        NfProto::Ipv6 => {
            let b: [u8; 16] = regs.load(r, 16)?.try_into().ok()?;
            Some(std::net::IpAddr::from(b))
        }
        _ => {
            let b: [u8; 4] = regs.load(r, 4)?.try_into().ok()?;
            Some(std::net::IpAddr::from(b))
        }
    }
}

fn reg_port(regs: &NftRegs, r: u8) -> Option<u16> {
    let b = regs.load(r, 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// nft_nat_eval / nft_masq_eval / nft_redir_eval: the range from the
/// registers; the binding itself is made by the NAT core
/// (nf_nat_setup_info) after the chain, the verdict is NF_ACCEPT. Outside
/// a nat hook (or on a packet without conntrack) the expression breaks.
fn nat(
    regs: &mut NftRegs,
    cx: &mut EvalCx,
    kind: NatKind,
    pf: NfProto,
    addr: Option<(u8, u8)>,
    proto: Option<(u8, u8)>,
    flags: u32,
) -> bool {
    let confirmed = cx
        .env
        .ct
        .as_deref()
        .zip(*cx.skb.nfct)
        .and_then(|(t, n)| t.get(n.id))
        .is_some_and(|c| c.status & IPS_CONFIRMED != 0);
    if cx.skb.nfct.is_none() || confirmed {
        return false;
    }
    let unspec = super::super::conntrack::tuple::unspecified(if pf == NfProto::Netdev {
        cx.st.pf
    } else {
        pf
    });
    let mut r = NfNatRange2 {
        flags,
        min_addr: unspec,
        max_addr: unspec,
        min_proto: 0,
        max_proto: 0,
        base_proto: 0,
    };
    if let Some((lo, hi)) = addr {
        let (Some(a), Some(b)) = (reg_addr(regs, lo, pf), reg_addr(regs, hi, pf)) else {
            return false;
        };
        r.min_addr = a;
        r.max_addr = b;
        r.flags |= NF_NAT_RANGE_MAP_IPS;
    }
    if let Some((lo, hi)) = proto {
        let (Some(a), Some(b)) = (reg_port(regs, lo), reg_port(regs, hi)) else {
            return false;
        };
        r.min_proto = a;
        r.max_proto = b;
        r.flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
    }
    cx.nat = Some(match kind {
        NatKind::Snat => NatTarget::Snat(r),
        NatKind::Dnat => NatTarget::Dnat(r),
        NatKind::Masq => NatTarget::Masquerade(r),
        NatKind::Redir => NatTarget::Redirect(r),
    });
    regs.verdict = NftVerdict::Accept;
    true
}

/// nft_reject_icmp_code / nft_reject_icmpv6_code: an icmpx code for the
/// packet's family.
fn icmpx_code(code: u8, pf: NfProto) -> u8 {
    let v4 = [0u8, 3, 1, 13];
    let v6 = [0u8, 4, 3, 1];
    let t = if pf == NfProto::Ipv6 { v6 } else { v4 };
    t.get(usize::from(code)).copied().unwrap_or(t[1])
}

/// nft_reject_ipv4_eval / _ipv6_eval / nft_reject_inet_eval: the reply is
/// sent by the stack after the hook (nf_send_unreach, nf_send_reset), the
/// packet dropped.
fn reject(regs: &mut NftRegs, cx: &mut EvalCx, k: RejectKind) -> bool {
    let with = match k {
        RejectKind::Icmp(c) => RejectWith::IcmpUnreach(c),
        RejectKind::TcpRst => RejectWith::TcpReset,
        RejectKind::Icmpx(c) => RejectWith::IcmpUnreach(icmpx_code(c, cx.st.pf)),
    };
    cx.env.replies.push(NfReply {
        with,
        pf: cx.st.pf,
        hook: cx.st.hook,
        in_ifindex: cx.st.in_ifindex,
        pkt: cx.skb.pkt.clone(),
    });
    regs.verdict = NftVerdict::Drop;
    true
}

impl NftVerdict {
    /// The netfilter verdict of a terminal nf_tables one.
    pub fn nf(self) -> Option<NfVerdict> {
        match self {
            NftVerdict::Accept => Some(NfVerdict::Accept),
            NftVerdict::Drop => Some(NfVerdict::Drop),
            NftVerdict::Queue { num, bypass } => Some(NfVerdict::Queue { num, bypass }),
            _ => None,
        }
    }
}
