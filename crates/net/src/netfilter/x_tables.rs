//! x_tables (net/netfilter/x_tables.c, net/ipv4/netfilter/ip_tables.c,
//! net/ipv6/netfilter/ip6_tables.c): a table's chains and their traversal,
//! ipt_do_table.

use super::{NfHookState, NfProto, NfSkb, NfVerdict, NF_MAX_HOOKS};

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

/// A chain: built-in (with a policy and its counters) or user-defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtChain {
    pub name: String,
    /// Some for a built-in chain.
    pub policy: Option<Policy>,
    pub policy_counters: XtCounters,
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
}

/// ipt_do_table / ip6t_do_table: the hook's built-in chain; a chain that ends
/// without a verdict returns its policy, counted in the policy's counters.
pub fn ipt_do_table(table: &mut XtTable, skb: &mut NfSkb, st: &NfHookState) -> NfVerdict {
    let Some(ci) = table.hook_chain.get(st.hook.index()).copied().flatten() else {
        return NfVerdict::Accept;
    };
    let Some(chain) = table.chains.get_mut(ci) else {
        return NfVerdict::Accept;
    };
    let policy = chain.policy.unwrap_or(Policy::Accept);
    chain.policy_counters.add(skb.pkt.len());
    policy.verdict()
}
