//! net/netfilter/nf_tables_core.c: nft_do_chain, the hook functions of
//! base chains (nft_do_chain_ipv4/ipv6/inet) and of nat chains
//! (nft_nat_do_chain under nf_nat_inet_fn), and the chain graph check of
//! nf_tables_api.c (nft_chain_validate).

use super::super::ip_tables::XtPkt;
use super::super::nat::{self, NatTarget, NfNatManipType};
use super::super::x_tables::Policy;
use super::super::{Netfilter, NfHookState, NfSkb, NfVerdict, StateDevices, XtEnv};
use super::expr::{EvalCx, NftExpr, NftRegs, NftVerdict, NFT_REG_VERDICT};
use super::set::NftSet;
use super::{NftRule, NftTable, NFT_JUMP_STACK_SIZE};

/// What a chain walk decided and the NAT binding a nat expression chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NftOutcome {
    pub verdict: NfVerdict,
    pub nat: Option<NatTarget>,
}

/// One rule: its expressions until one sets a verdict other than
/// NFT_CONTINUE.
fn run_rule(rule: &mut NftRule, regs: &mut NftRegs, cx: &mut EvalCx) -> NftVerdict {
    regs.verdict = NftVerdict::Continue;
    for e in rule.exprs.iter_mut() {
        e.eval(regs, cx);
        if regs.verdict != NftVerdict::Continue {
            break;
        }
    }
    regs.verdict
}

/// nft_do_chain: the base chain `base` of `t` rule by rule; NFT_BREAK and
/// NFT_CONTINUE go on to the next rule, accept/drop/queue end the walk, a
/// jump pushes the next rule (at most NFT_JUMP_STACK_SIZE deep, else drop),
/// a goto does not, return or a chain's end pops; the base chain's end is
/// its policy.
pub fn nft_do_chain(
    t: &mut NftTable,
    base: usize,
    skb: &mut NfSkb,
    st: &NfHookState,
    env: &mut XtEnv,
) -> NftOutcome {
    let NftTable { chains, sets, .. } = t;
    let policy = chains
        .get(base)
        .and_then(|c| c.base.as_ref())
        .map_or(Policy::Accept, |b| b.policy);
    let xt = XtPkt::parse(st.pf, skb.pkt);
    let mut cx = EvalCx {
        skb,
        st,
        xt,
        env,
        sets: sets.as_slice(),
        nat: None,
    };
    let mut regs = NftRegs::default();
    let mut stack = [(0usize, 0usize); NFT_JUMP_STACK_SIZE];
    let mut sp = 0usize;
    let (mut c, mut r) = (base, 0usize);
    loop {
        let Some(chain) = chains.get_mut(c) else {
            return outcome(NfVerdict::Accept, &cx);
        };
        let mut v = NftVerdict::Continue;
        let mut next = chain.rules.len();
        for (i, rule) in chain.rules.iter_mut().enumerate().skip(r) {
            v = run_rule(rule, &mut regs, &mut cx);
            if !matches!(v, NftVerdict::Continue | NftVerdict::Break) {
                next = i + 1;
                break;
            }
            v = NftVerdict::Continue;
        }
        if let Some(nv) = v.nf() {
            return outcome(nv, &cx);
        }
        match v {
            NftVerdict::Jump(to) => {
                let Some(slot) = stack.get_mut(sp) else {
                    return outcome(NfVerdict::Drop, &cx);
                };
                *slot = (c, next);
                sp += 1;
                (c, r) = (to, 0);
                continue;
            }
            NftVerdict::Goto(to) => {
                (c, r) = (to, 0);
                continue;
            }
            _ => {}
        }
        if sp > 0 {
            sp -= 1;
            (c, r) = stack[sp];
            continue;
        }
        return outcome(policy.verdict(), &cx);
    }
}

fn outcome(verdict: NfVerdict, cx: &EvalCx) -> NftOutcome {
    NftOutcome {
        verdict,
        nat: cx.nat,
    }
}

/// The env the expressions use, from the namespace's netfilter parts.
macro_rules! env {
    ($prandom:expr, $replies:expr, $log:expr, $ct:expr) => {
        XtEnv {
            prandom: $prandom,
            replies: $replies,
            log: $log,
            ct: $ct,
        }
    };
}

/// nft_do_chain_ipv4 / _ipv6 / _inet: a filter or route base chain's hook
/// function.
pub fn run_base_chain(
    nf: &mut Netfilter,
    table: usize,
    chain: usize,
    skb: &mut NfSkb,
    st: &NfHookState,
) -> NfVerdict {
    let Netfilter {
        nft,
        prandom,
        replies,
        log,
        conntrack,
        ..
    } = nf;
    let Some(t) = nft.tables.get_mut(table) else {
        return NfVerdict::Accept;
    };
    let mut env = env!(prandom, replies, log, Some(conntrack));
    nft_do_chain(t, chain, skb, st, &mut env).verdict
}

/// nf_nat_inet_fn with the nf_tables nat chains of this hook
/// (nf_nat_lookup_hook_priv->entries): run by priority until one does not
/// accept or binds; the NAT core then binds (or makes a null binding) and
/// mangles.
pub fn run_nat(
    nf: &mut Netfilter,
    manip: NfNatManipType,
    skb: &mut NfSkb,
    st: &NfHookState,
) -> NfVerdict {
    let Netfilter {
        nft,
        prandom,
        replies,
        log,
        conntrack,
        ..
    } = nf;
    let super::NfTables { tables, nat_chains } = nft;
    let mut run = |skb: &mut NfSkb, st: &NfHookState| {
        for n in nat_chains
            .iter()
            .filter(|n| n.pf == st.pf && n.hook == st.hook)
        {
            let Some(t) = tables.get_mut(n.table) else {
                continue;
            };
            let mut env = env!(&mut *prandom, &mut *replies, &mut *log, None);
            let o = nft_do_chain(t, n.chain, skb, st, &mut env);
            if o.verdict != NfVerdict::Accept || o.nat.is_some() {
                return (o.verdict, o.nat);
            }
        }
        (NfVerdict::Accept, None)
    };
    nat::nf_nat_fn_dev(conntrack, skb, st, manip, &StateDevices(st), &mut run)
}

/// The chains a rule's verdicts lead to (immediate jumps and gotos, and
/// those of the verdict maps it looks up).
fn rule_targets(rule: &NftRule, sets: &[NftSet], out: &mut Vec<usize>) {
    for e in &rule.exprs {
        match e {
            NftExpr::Verdict(NftVerdict::Jump(c) | NftVerdict::Goto(c)) => out.push(*c),
            NftExpr::Lookup {
                set,
                dreg: Some(NFT_REG_VERDICT),
                ..
            } => {
                for el in sets.get(*set).map(|s| s.elems.as_slice()).unwrap_or(&[]) {
                    if let Some(NftVerdict::Jump(c) | NftVerdict::Goto(c)) = el.data.verdict() {
                        out.push(c);
                    }
                }
            }
            _ => {}
        }
    }
}

/// nft_chain_validate's loop check (ELOOP): a chain that reaches itself.
/// Returns the chain a loop comes back to.
pub fn find_loop(t: &NftTable) -> Option<usize> {
    // 0 unvisited, 1 on the path, 2 done.
    let mut state = vec![0u8; t.chains.len()];
    (0..t.chains.len()).find_map(|c| visit(t, c, &mut state))
}

fn visit(t: &NftTable, c: usize, state: &mut [u8]) -> Option<usize> {
    match state.get(c) {
        Some(1) => return Some(c),
        Some(0) => {}
        _ => return None,
    }
    state[c] = 1;
    let mut next = Vec::new();
    for r in t.chains.get(c).map(|ch| ch.rules.as_slice()).unwrap_or(&[]) {
        rule_targets(r, &t.sets, &mut next);
    }
    for n in next {
        if let Some(l) = visit(t, n, state) {
            return Some(l);
        }
    }
    state[c] = 2;
    None
}
