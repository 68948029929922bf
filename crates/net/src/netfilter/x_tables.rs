//! x_tables (net/netfilter/x_tables.c, net/ipv4/netfilter/ip_tables.c,
//! net/ipv6/netfilter/ip6_tables.c): tables of chains of rules and their
//! traversal (ipt_do_table), the built-in tables (iptable_raw, _mangle,
//! _nat, _filter, _security) with their hooks and priorities.

use super::ip_tables::{IptIp, XtPkt};
use super::targets::XtTarget;
use super::xt_match::XtMatch;
use super::{prio, NfHook, NfHookState, NfProto, NfSkb, NfVerdict, XtEnv, NF_MAX_HOOKS};

/// struct xt_counters: packets and bytes (skb->len, the L3 length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XtCounters {
    pub pcnt: u64,
    pub bcnt: u64,
}

impl XtCounters {
    /// ADD_COUNTER.
    pub fn add(&mut self, bytes: usize) {
        self.pcnt = self.pcnt.wrapping_add(1);
        self.bcnt = self.bcnt.wrapping_add(bytes as u64);
    }
}

/// A built-in chain's policy (the verdict of its last, unconditional rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn verdict(self) -> NfVerdict {
        match self {
            Policy::Accept => NfVerdict::Accept,
            Policy::Drop => NfVerdict::Drop,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// One rule: the IP header part (-s/-d/-p/-i/-o/-f), the matches (-m), the
/// target (-j/-g) and its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtRule {
    pub ip: IptIp,
    pub matches: Vec<XtMatch>,
    pub target: XtTarget,
    pub counters: XtCounters,
}

/// A chain: built-in (with a policy and its counters) or user-defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtChain {
    pub name: String,
    /// Some for a built-in chain.
    pub policy: Option<Policy>,
    pub policy_counters: XtCounters,
    pub rules: Vec<XtRule>,
}

impl XtChain {
    pub fn new(name: &str, policy: Option<Policy>) -> XtChain {
        XtChain {
            name: name.into(),
            policy,
            policy_counters: XtCounters::default(),
            rules: Vec::new(),
        }
    }
}

/// One table (`filter`, `nat`, ...) of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtTable {
    pub name: String,
    pub family: NfProto,
    pub chains: Vec<XtChain>,
    /// The built-in chain (an index in `chains`) of each hook the table is on
    /// (table->valid_hooks and the hook_entry offsets).
    pub hook_chain: [Option<usize>; NF_MAX_HOOKS],
    /// The jump stack (private->stacksize entries at most), kept between
    /// packets so a traversal allocates nothing.
    pub(crate) jumpstack: Vec<(usize, usize)>,
}

/// A built-in table: its name, hooks and priority (iptable_*.c's
/// xt_table and nf_hook_ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableTemplate {
    pub name: &'static str,
    pub hooks: &'static [NfHook],
    pub priority: i32,
}

use NfHook::{
    Forward as FWD, LocalIn as IN, LocalOut as OUT, PostRouting as POST, PreRouting as PRE,
};

/// iptable_raw, iptable_mangle, iptable_nat, iptable_filter, iptable_security
/// (the ip6table_* ones are the same). The nat table's hooks run at two
/// priorities (NAT_DST at PRE_ROUTING/LOCAL_OUT, NAT_SRC at
/// POST_ROUTING/LOCAL_IN): see [`table_hook_priority`].
pub const TABLES: [TableTemplate; 5] = [
    TableTemplate {
        name: "raw",
        hooks: &[PRE, OUT],
        priority: prio::RAW,
    },
    TableTemplate {
        name: "mangle",
        hooks: &[PRE, IN, FWD, OUT, POST],
        priority: prio::MANGLE,
    },
    TableTemplate {
        name: "nat",
        hooks: &[PRE, IN, OUT, POST],
        priority: prio::NAT_DST,
    },
    TableTemplate {
        name: "filter",
        hooks: &[IN, FWD, OUT],
        priority: prio::FILTER,
    },
    TableTemplate {
        name: "security",
        hooks: &[IN, FWD, OUT],
        priority: prio::SECURITY,
    },
];

/// The template of a built-in table name.
pub fn table_template(name: &str) -> Option<&'static TableTemplate> {
    TABLES.iter().find(|t| t.name == name)
}

/// The priority a table's hook entry has (nf_nat_ipv4_ops: NAT_SRC for
/// POST_ROUTING and LOCAL_IN).
pub fn table_hook_priority(t: &TableTemplate, hook: NfHook) -> i32 {
    match (t.name, hook) {
        ("nat", NfHook::PostRouting | NfHook::LocalIn) => prio::NAT_SRC,
        _ => t.priority,
    }
}

impl XtTable {
    /// A built-in table with its built-in chains, every policy ACCEPT.
    pub fn builtin(family: NfProto, t: &TableTemplate) -> XtTable {
        let mut hook_chain = [None; NF_MAX_HOOKS];
        let mut chains = Vec::new();
        for &h in t.hooks {
            hook_chain[h.index()] = Some(chains.len());
            chains.push(XtChain::new(h.chain_name(), Some(Policy::Accept)));
        }
        XtTable {
            name: t.name.into(),
            family,
            chains,
            hook_chain,
            jumpstack: Vec::new(),
        }
    }

    /// The NAT target of rule (chain, index), if it has one.
    pub fn nat_target(&self, (c, i): (usize, usize)) -> Option<super::nat::NatTarget> {
        match self.chains.get(c)?.rules.get(i)?.target {
            XtTarget::Nat(t) => Some(t),
            _ => None,
        }
    }

    pub fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }

    /// The built-in chains' hooks.
    pub fn hooks(&self) -> impl Iterator<Item = NfHook> + '_ {
        NfHook::ALL
            .into_iter()
            .filter(|h| self.hook_chain.get(h.index()).copied().flatten().is_some())
    }

    /// translate_table's mark_source_chains: no chain may reach itself by
    /// jumps and gotos (ELOOP). Returns the name of the chain a loop comes back to.
    pub fn find_loop(&self) -> Option<&str> {
        // 0 unvisited, 1 on the path, 2 done.
        let mut state = vec![0u8; self.chains.len()];
        (0..self.chains.len())
            .find_map(|start| self.visit_loop(start, &mut state))
            .and_then(|c| self.chains.get(c))
            .map(|c| c.name.as_str())
    }

    fn visit_loop(&self, c: usize, state: &mut [u8]) -> Option<usize> {
        match state.get(c) {
            Some(1) => return Some(c),
            Some(0) => {}
            _ => return None,
        }
        state[c] = 1;
        let targets: Vec<usize> = self
            .chains
            .get(c)
            .map(|ch| ch.rules.iter().filter_map(|r| r.target.chain()).collect())
            .unwrap_or_default();
        for t in targets {
            if let Some(l) = self.visit_loop(t, state) {
                return Some(l);
            }
        }
        state[c] = 2;
        None
    }
}

/// What a traversal decided, and the rule whose target decided it (the nat
/// table's NAT targets are read from that rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtResult {
    pub verdict: NfVerdict,
    /// (chain, rule) of the deciding rule; None for a policy.
    pub rule: Option<(usize, usize)>,
}

/// Where the walk goes after a standard target.
enum Step {
    Next,
    Goto(usize),
    Verdict(NfVerdict),
}

/// ipt_do_table / ip6t_do_table: the hook's built-in chain rule by rule;
/// a matching rule counts the packet and runs its target: a verdict ends the
/// walk, a jump pushes the return point (a goto does not), RETURN or the end
/// of a user chain pops it, RETURN or the end of a built-in chain applies
/// its policy (the underflow rule) and counts the packet there.
pub fn ipt_do_table(
    table: &mut XtTable,
    skb: &mut NfSkb,
    st: &NfHookState,
    env: &mut XtEnv,
) -> XtResult {
    let accept = XtResult {
        verdict: NfVerdict::Accept,
        rule: None,
    };
    let Some(base) = table.hook_chain.get(st.hook.index()).copied().flatten() else {
        return accept;
    };
    // A packet the family's header parser rejects matches no rule
    // (ip_packet_match reads a header the stack has checked).
    let pkt = XtPkt::parse(table.family, skb.pkt);
    let stacksize = table.chains.len();
    table.jumpstack.clear();
    let (mut c, mut i) = (base, 0usize);
    loop {
        let Some(chain) = table.chains.get_mut(c) else {
            return accept;
        };
        let Some(rule) = chain.rules.get_mut(i) else {
            // The chain's end: a built-in chain's policy, a user chain's RETURN.
            match table.jumpstack.pop() {
                Some((pc, pi)) if chain.policy.is_none() => {
                    (c, i) = (pc, pi + 1);
                    continue;
                }
                _ => return policy(table, base, skb.pkt.len()),
            }
        };
        let matched = match &pkt {
            Some(p) => {
                rule.ip.matches(p, st)
                    && rule.matches.iter_mut().all(|m| m.matches(p, skb, st, env))
            }
            None => false,
        };
        if !matched {
            i += 1;
            continue;
        }
        rule.counters.add(skb.pkt.len());
        let step = match &rule.target {
            XtTarget::Jump(t) => {
                if table.jumpstack.len() >= stacksize {
                    return XtResult {
                        verdict: NfVerdict::Drop,
                        rule: Some((c, i)),
                    };
                }
                table.jumpstack.push((c, i));
                Step::Goto(*t)
            }
            XtTarget::Goto(t) => Step::Goto(*t),
            XtTarget::Return => match table.jumpstack.pop() {
                Some((pc, pi)) => {
                    (c, i) = (pc, pi + 1);
                    continue;
                }
                None => return policy(table, base, skb.pkt.len()),
            },
            t => match pkt.as_ref().map(|p| t.run(p, skb, st, env)) {
                Some(Some(v)) => Step::Verdict(v),
                _ => Step::Next,
            },
        };
        match step {
            Step::Next => i += 1,
            Step::Goto(t) => (c, i) = (t, 0),
            Step::Verdict(v) => {
                return XtResult {
                    verdict: v,
                    rule: Some((c, i)),
                }
            }
        }
    }
}

/// The underflow rule of the hook's built-in chain: its policy, counted.
fn policy(table: &mut XtTable, base: usize, len: usize) -> XtResult {
    let verdict = match table.chains.get_mut(base) {
        Some(ch) => {
            ch.policy_counters.add(len);
            ch.policy.unwrap_or(Policy::Accept).verdict()
        }
        None => NfVerdict::Accept,
    };
    XtResult {
        verdict,
        rule: None,
    }
}
