//! Netfilter of one network namespace (net/netfilter/core.c): the hook
//! entries per (family, hook) sorted by priority, `nf_hook` running them as
//! nf_hook_slow does, the rule tables they run (x_tables) and conntrack.
//!
//! The host stack calls [`nf_hook`] at the kernel's places (ip_rcv ->
//! PRE_ROUTING, ip_local_deliver -> LOCAL_IN, ip_forward -> FORWARD,
//! __ip_local_out -> LOCAL_OUT, ip_output -> POST_ROUTING, and the IPv6
//! ones); the device path calls it at the netdev ingress and egress hooks.

pub mod conntrack;
pub mod dump;
pub mod ip_tables;
pub mod ipt_reject;
pub mod nat;
pub mod nat_proto;
pub mod nf_tables;
pub mod targets;
pub mod x_tables;
pub mod xt_addrtype;
pub mod xt_comment;
pub mod xt_log;
pub mod xt_mark;
pub mod xt_match;
pub mod xt_multiport;
pub mod xt_statistic;
pub mod xt_tcpudp;

use conntrack::{Conntrack, NfCt};
use ipt_reject::RejectWith;
use x_tables::{TableTemplate, XtTable};

/// include/uapi/linux/netfilter.h NFPROTO_*: the family a hook list belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NfProto {
    Ipv4,
    Ipv6,
    /// NFPROTO_NETDEV: the per-device ingress/egress hooks.
    Netdev,
}

impl NfProto {
    const ALL: [NfProto; 3] = [NfProto::Ipv4, NfProto::Ipv6, NfProto::Netdev];

    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            NfProto::Ipv4 => "ipv4",
            NfProto::Ipv6 => "ipv6",
            NfProto::Netdev => "netdev",
        }
    }
}

/// enum nf_inet_hooks and enum nf_dev_hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NfHook {
    PreRouting,
    LocalIn,
    Forward,
    LocalOut,
    PostRouting,
    NetdevIngress,
    NetdevEgress,
}

/// NF_INET_NUMHOOKS plus the two netdev hooks.
pub const NF_MAX_HOOKS: usize = 7;

impl NfHook {
    pub const ALL: [NfHook; NF_MAX_HOOKS] = [
        NfHook::PreRouting,
        NfHook::LocalIn,
        NfHook::Forward,
        NfHook::LocalOut,
        NfHook::PostRouting,
        NfHook::NetdevIngress,
        NfHook::NetdevEgress,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The chain name iptables gives the hook (`PREROUTING`); nft's hook
    /// names are [`NfHook::nft_name`].
    pub fn chain_name(self) -> &'static str {
        match self {
            NfHook::PreRouting => "PREROUTING",
            NfHook::LocalIn => "INPUT",
            NfHook::Forward => "FORWARD",
            NfHook::LocalOut => "OUTPUT",
            NfHook::PostRouting => "POSTROUTING",
            NfHook::NetdevIngress => "INGRESS",
            NfHook::NetdevEgress => "EGRESS",
        }
    }

    /// The trace's name for the hook (`nf-prerouting`).
    pub fn trace_name(self) -> &'static str {
        match self {
            NfHook::PreRouting => "nf-prerouting",
            NfHook::LocalIn => "nf-input",
            NfHook::Forward => "nf-forward",
            NfHook::LocalOut => "nf-output",
            NfHook::PostRouting => "nf-postrouting",
            NfHook::NetdevIngress => "nf-ingress",
            NfHook::NetdevEgress => "nf-egress",
        }
    }

    /// include/uapi/linux/netfilter.h NF_DROP 0 .. NF_REPEAT 4.
    pub fn verdict_code(v: NfVerdict) -> i64 {
        match v {
            NfVerdict::Drop => 0,
            NfVerdict::Accept => 1,
            NfVerdict::Stolen => 2,
            NfVerdict::Queue { .. } => 3,
            NfVerdict::Repeat => 4,
        }
    }

    /// nft's hook keyword (`prerouting`, `input`, ..., `ingress`, `egress`).
    pub fn nft_name(self) -> &'static str {
        match self {
            NfHook::PreRouting => "prerouting",
            NfHook::LocalIn => "input",
            NfHook::Forward => "forward",
            NfHook::LocalOut => "output",
            NfHook::PostRouting => "postrouting",
            NfHook::NetdevIngress => "ingress",
            NfHook::NetdevEgress => "egress",
        }
    }
}

/// include/uapi/linux/netfilter_ipv4.h `enum nf_ip_hook_priorities` (the
/// IPv6 ones are the same numbers).
pub mod prio {
    pub const CONNTRACK_DEFRAG: i32 = -400;
    pub const RAW: i32 = -300;
    pub const SELINUX_FIRST: i32 = -225;
    pub const CONNTRACK: i32 = -200;
    pub const MANGLE: i32 = -150;
    pub const NAT_DST: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SECURITY: i32 = 50;
    pub const NAT_SRC: i32 = 100;
    pub const SELINUX_LAST: i32 = 225;
    pub const CONNTRACK_HELPER: i32 = 300;
    pub const CONNTRACK_CONFIRM: i32 = i32::MAX;
}

/// What a hook function decides (NF_ACCEPT, NF_DROP, NF_STOLEN, NF_QUEUE
/// with its queue number and bypass flag, NF_REPEAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfVerdict {
    Accept,
    Drop,
    Stolen,
    Queue { num: u16, bypass: bool },
    Repeat,
}

/// IFNAMSIZ: interface names are compared as the kernel's 16-byte arrays.
pub const IFNAMSIZ: usize = 16;

/// A device name as the kernel stores it (NUL padded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfName(pub [u8; IFNAMSIZ]);

impl IfName {
    /// The name, cut to IFNAMSIZ - 1 bytes as the kernel stores it.
    pub fn new(name: &str) -> IfName {
        let mut a = [0u8; IFNAMSIZ];
        for (d, s) in a.iter_mut().zip(name.bytes().take(IFNAMSIZ - 1)) {
            *d = s;
        }
        IfName(a)
    }

    pub fn as_str(&self) -> &str {
        let n = self.0.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        std::str::from_utf8(self.0.get(..n).unwrap_or(&[])).unwrap_or("")
    }
}

/// struct nf_hook_state: where the packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfHookState {
    pub hook: NfHook,
    pub pf: NfProto,
    pub in_ifindex: Option<u32>,
    pub out_ifindex: Option<u32>,
    /// The devices' names (state->in->name, state->out->name) for `-i`/`-o`.
    pub in_name: Option<IfName>,
    pub out_name: Option<IfName>,
    /// The address MASQUERADE takes (inet_select_addr on the out device
    /// towards the destination) and REDIRECT's (the in device's primary),
    /// given by the stack where it has them.
    pub masq_addr: Option<std::net::IpAddr>,
    pub redirect_addr: Option<std::net::IpAddr>,
    pub now_ns: u64,
    /// XT_ADDRTYPE_* bits of the source and destination addresses (the
    /// stack's inet_addr_type), for `-m addrtype`; 0 where unknown.
    pub addr_types: (u16, u16),
}

/// The packet as the hooks see it: the L3 packet (from the IP header), its
/// mark, its conntrack.
pub struct NfSkb<'a> {
    pub pkt: &'a mut Vec<u8>,
    pub mark: &'a mut u32,
    pub nfct: &'a mut Option<NfCt>,
}

/// Which of the namespace's tables an entry runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableId(pub usize);

/// What a hook entry runs (the kernel's nf_hook_entry's hook function and its priv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFn {
    /// An x_tables table's chain for the hook (ipt_do_table / ip6t_do_table).
    Table(TableId),
    /// ipv4_conntrack_in / ipv4_conntrack_local (nf_conntrack_in).
    ConntrackIn,
    /// ipv4_confirm (nf_conntrack_confirm).
    ConntrackConfirm,
    /// nf_nat_ipv4_ops: nf_nat_inet_fn running the nat table's chain.
    Nat {
        table: TableId,
        manip: nat::NfNatManipType,
    },
    /// An nf_tables filter/route base chain (nft_do_chain_ipv4 / _ipv6 / _inet).
    Nft { table: usize, chain: usize },
    /// The NAT core's hook with the nf_tables nat chains of its hook
    /// (nf_nat_inet_fn over nf_nat_lookup_hook_priv->entries).
    NftNat { manip: nat::NfNatManipType },
}

/// struct nf_hook_ops: one registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfHookOps {
    pub pf: NfProto,
    pub hook: NfHook,
    pub priority: i32,
    /// The device of a netdev-family hook (ops->dev); None for the inet hooks.
    pub dev: Option<u32>,
    pub hook_fn: HookFn,
}

/// A reply a REJECT target asked for: the stack sends it after the hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfReply {
    pub with: RejectWith,
    pub pf: NfProto,
    pub hook: NfHook,
    pub in_ifindex: Option<u32>,
    /// The rejected packet (L3).
    pub pkt: Vec<u8>,
}

/// One hook entry a packet crossed, for the datapath's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfTraceEntry {
    pub pf: NfProto,
    pub hook: NfHook,
    pub hook_fn: HookFn,
    pub verdict: NfVerdict,
}

/// How many LOG lines a namespace keeps (the oldest go first).
pub const LOG_LINES_MAX: usize = 10_000;

/// Per namespace: the hook entries per (pf, hook) sorted by priority, the
/// tables, the conntrack table.
#[derive(Debug, Default)]
pub struct Netfilter {
    hooks: [[Vec<NfHookOps>; NF_MAX_HOOKS]; 3],
    pub tables: Vec<XtTable>,
    /// The nf_tables tables and their nat chains.
    pub nft: nf_tables::NfTables,
    pub conntrack: Conntrack,
    /// The seed-driven generator `-m statistic --mode random` draws from
    /// (the kernel's get_random_u32), so a replay makes the same choices.
    prandom: u64,
    /// REJECT replies waiting for the stack.
    pub replies: Vec<NfReply>,
    /// LOG lines, oldest first.
    pub log: std::collections::VecDeque<String>,
    /// Record each entry a packet crosses in `trace_log`.
    pub trace: bool,
    pub trace_log: Vec<NfTraceEntry>,
}

/// What the rule tables' matches and targets may use besides the packet.
pub struct XtEnv<'a> {
    prandom: &'a mut u64,
    pub replies: &'a mut Vec<NfReply>,
    log: &'a mut std::collections::VecDeque<String>,
    /// The namespace's conntrack (None inside the nat table, whose caller holds it).
    pub ct: Option<&'a mut Conntrack>,
}

impl XtEnv<'_> {
    /// A 32-bit draw (splitmix64 of the namespace's state).
    pub fn prandom_u32(&mut self) -> u32 {
        *self.prandom = self.prandom.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *self.prandom;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }

    pub fn log_line(&mut self, line: String) {
        if self.log.len() >= LOG_LINES_MAX {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NfError {
    #[error("{pf} hook {hook:?} is not a hook of that family")]
    BadHook { pf: &'static str, hook: NfHook },
    #[error("a netdev hook needs a device, an {pf} hook takes none")]
    BadDevice { pf: &'static str },
}

impl Netfilter {
    pub fn new() -> Netfilter {
        Netfilter::default()
    }

    /// Seeds the generator `-m statistic --mode random` draws from.
    pub fn set_seed(&mut self, seed: u64) {
        self.prandom = seed;
    }

    /// The family's built-in table `t`, made and registered on its hooks
    /// the first time (the kernel loads iptable_nat etc. on first use).
    pub fn table(&mut self, pf: NfProto, t: &TableTemplate) -> Result<TableId, NfError> {
        if let Some(i) = self
            .tables
            .iter()
            .position(|x| x.family == pf && x.name == t.name)
        {
            return Ok(TableId(i));
        }
        let id = TableId(self.tables.len());
        self.tables.push(XtTable::builtin(pf, t));
        let nat = t.name == "nat";
        if nat {
            self.conntrack_enable(pf)?;
        }
        for &hook in t.hooks {
            let hook_fn = if nat {
                HookFn::Nat {
                    table: id,
                    manip: nat::NfNatManipType::of_hook(hook),
                }
            } else {
                HookFn::Table(id)
            };
            self.register_hook(NfHookOps {
                pf,
                hook,
                priority: x_tables::table_hook_priority(t, hook),
                dev: None,
                hook_fn,
            })?;
        }
        Ok(id)
    }

    /// nf_ct_netns_get: conntrack's hooks for the family, once (a nat table,
    /// a conntrack/state/connmark match or a CONNMARK/CT target needs them):
    /// nf_conntrack_in at PRE_ROUTING and LOCAL_OUT (priority CONNTRACK),
    /// nf_conntrack_confirm at POST_ROUTING and LOCAL_IN (CONNTRACK_CONFIRM).
    pub fn conntrack_enable(&mut self, pf: NfProto) -> Result<(), NfError> {
        let on = self
            .hook_entries(pf, NfHook::PreRouting)
            .iter()
            .any(|e| e.hook_fn == HookFn::ConntrackIn);
        if on || pf == NfProto::Netdev {
            return Ok(());
        }
        let entries = [
            (NfHook::PreRouting, prio::CONNTRACK, HookFn::ConntrackIn),
            (NfHook::LocalOut, prio::CONNTRACK, HookFn::ConntrackIn),
            (
                NfHook::PostRouting,
                prio::CONNTRACK_CONFIRM,
                HookFn::ConntrackConfirm,
            ),
            (
                NfHook::LocalIn,
                prio::CONNTRACK_CONFIRM,
                HookFn::ConntrackConfirm,
            ),
        ];
        for (hook, priority, hook_fn) in entries {
            self.register_hook(NfHookOps {
                pf,
                hook,
                priority,
                dev: None,
                hook_fn,
            })?;
        }
        Ok(())
    }

    /// The table of family `pf` named `name`, if made.
    pub fn find_table(&self, pf: NfProto, name: &str) -> Option<&XtTable> {
        self.tables
            .iter()
            .find(|x| x.family == pf && x.name == name)
    }

    /// The entries crossed since the last call, as (hook, what ran: the
    /// table's name or `conntrack` / `conntrack-confirm`, verdict).
    pub fn take_trace(&mut self) -> Vec<(NfHook, String, NfVerdict)> {
        let log = std::mem::take(&mut self.trace_log);
        log.into_iter()
            .map(|e| {
                let what = match e.hook_fn {
                    HookFn::Table(TableId(t))
                    | HookFn::Nat {
                        table: TableId(t), ..
                    } => self
                        .tables
                        .get(t)
                        .map(|x| x.name.clone())
                        .unwrap_or_default(),
                    HookFn::ConntrackIn => "conntrack".into(),
                    HookFn::ConntrackConfirm => "conntrack-confirm".into(),
                    HookFn::Nft { table, chain } => self
                        .nft
                        .tables
                        .get(table)
                        .map(|t| {
                            let c = t.chains.get(chain).map_or("", |c| c.name.as_str());
                            format!("nft {} {} {}", t.family.name(), t.name, c)
                        })
                        .unwrap_or_default(),
                    HookFn::NftNat { .. } => "nft nat".into(),
                };
                (e.hook, what, e.verdict)
            })
            .collect()
    }

    /// The REJECT replies to send, in order.
    pub fn take_replies(&mut self) -> Vec<NfReply> {
        std::mem::take(&mut self.replies)
    }

    /// net/netfilter/core.c nf_register_net_hook: inserted after the
    /// entries of lower or equal priority (nf_hook_entries_grow).
    pub fn register_hook(&mut self, ops: NfHookOps) -> Result<(), NfError> {
        let netdev_hook = matches!(ops.hook, NfHook::NetdevIngress | NfHook::NetdevEgress);
        if netdev_hook != (ops.pf == NfProto::Netdev) {
            return Err(NfError::BadHook {
                pf: ops.pf.name(),
                hook: ops.hook,
            });
        }
        if netdev_hook != ops.dev.is_some() {
            return Err(NfError::BadDevice { pf: ops.pf.name() });
        }
        let list = &mut self.hooks[ops.pf.index()][ops.hook.index()];
        let pos = list.partition_point(|e| e.priority <= ops.priority);
        list.insert(pos, ops);
        Ok(())
    }

    /// nf_unregister_net_hook: every registration equal to `ops`.
    pub fn unregister_hook(&mut self, ops: &NfHookOps) {
        self.hooks[ops.pf.index()][ops.hook.index()].retain(|e| e != ops);
    }

    /// The entries of (pf, hook), in the order they run.
    pub fn hook_entries(&self, pf: NfProto, hook: NfHook) -> &[NfHookOps] {
        &self.hooks[pf.index()][hook.index()]
    }

    /// Whether (pf, hook) has entries (for a device: entries of that device):
    /// nf_hook's `if (hook_head)`, so an empty hook costs no copy of the packet.
    pub fn hook_active(&self, pf: NfProto, hook: NfHook, dev: Option<u32>) -> bool {
        self.hooks[pf.index()][hook.index()]
            .iter()
            .any(|e| e.dev.is_none() || e.dev == dev)
    }

    /// The devices that have netdev entries for `hook` (the kernel's
    /// dev->nf_hooks_ingress / nf_hooks_egress being set).
    pub fn netdev_devices(&self, hook: NfHook) -> impl Iterator<Item = u32> + '_ {
        self.hooks[NfProto::Netdev.index()][hook.index()]
            .iter()
            .filter_map(|e| e.dev)
    }

    /// Every (pf, hook) with entries.
    pub fn active_hooks(&self) -> impl Iterator<Item = (NfProto, NfHook)> + '_ {
        NfProto::ALL.into_iter().flat_map(move |pf| {
            NfHook::ALL
                .into_iter()
                .filter(move |h| !self.hooks[pf.index()][h.index()].is_empty())
                .map(move |h| (pf, h))
        })
    }
}

/// One entry's function on the packet (nf_hook_entry_hookfn).
fn run_entry(nf: &mut Netfilter, f: HookFn, skb: &mut NfSkb, st: &NfHookState) -> NfVerdict {
    let v = match f {
        HookFn::Table(t) => do_table(nf, t, skb, st).verdict,
        HookFn::ConntrackIn => conntrack::nf_conntrack_in(&mut nf.conntrack, skb, st),
        HookFn::ConntrackConfirm => conntrack::nf_conntrack_confirm(&mut nf.conntrack, skb, st),
        HookFn::Nat { table, manip } => nat_hook(nf, table, manip, skb, st),
        HookFn::Nft { table, chain } => nf_tables::core::run_base_chain(nf, table, chain, skb, st),
        HookFn::NftNat { manip } => nf_tables::core::run_nat(nf, manip, skb, st),
    };
    if nf.trace {
        nf.trace_log.push(NfTraceEntry {
            pf: st.pf,
            hook: st.hook,
            hook_fn: f,
            verdict: v,
        });
    }
    v
}

/// The addresses MASQUERADE and REDIRECT use, from the hook state.
struct StateDevices<'a>(&'a NfHookState);

impl nat::NatDevices for StateDevices<'_> {
    fn masquerade_addr(
        &self,
        out_ifindex: u32,
        _daddr: std::net::IpAddr,
    ) -> Option<std::net::IpAddr> {
        self.0
            .masq_addr
            .filter(|_| self.0.out_ifindex == Some(out_ifindex))
    }
    fn primary_addr(&self, ifindex: u32, _pf: NfProto) -> Option<std::net::IpAddr> {
        self.0
            .redirect_addr
            .filter(|_| self.0.in_ifindex == Some(ifindex))
    }
}

/// nf_nat_ipv4_fn / nf_nat_ipv6_fn: nf-ct's nf_nat_fn with the nat table's
/// chain for this hook (the table sees no conntrack: the NAT core holds it).
fn nat_hook(
    nf: &mut Netfilter,
    TableId(t): TableId,
    manip: nat::NfNatManipType,
    skb: &mut NfSkb,
    st: &NfHookState,
) -> NfVerdict {
    let Netfilter {
        tables,
        prandom,
        replies,
        log,
        conntrack,
        ..
    } = nf;
    let Some(table) = tables.get_mut(t) else {
        return NfVerdict::Accept;
    };
    let mut run = |skb: &mut NfSkb, st: &NfHookState| {
        let mut env = XtEnv {
            prandom,
            replies,
            log,
            ct: None,
        };
        let r = x_tables::ipt_do_table(table, skb, st, &mut env);
        (r.verdict, r.rule.and_then(|rule| table.nat_target(rule)))
    };
    nat::nf_nat_fn_dev(conntrack, skb, st, manip, &StateDevices(st), &mut run)
}

/// ipt_do_table on table `t` of `nf`.
pub fn do_table(
    nf: &mut Netfilter,
    TableId(t): TableId,
    skb: &mut NfSkb,
    st: &NfHookState,
) -> x_tables::XtResult {
    let Netfilter {
        tables,
        prandom,
        replies,
        log,
        conntrack,
        ..
    } = nf;
    let mut env = XtEnv {
        prandom,
        replies,
        log,
        ct: Some(conntrack),
    };
    match tables.get_mut(t) {
        Some(table) => x_tables::ipt_do_table(table, skb, st, &mut env),
        // An entry whose table is gone accepts, as an unregistered hook would.
        None => x_tables::XtResult {
            verdict: NfVerdict::Accept,
            rule: None,
        },
    }
}

/// How many times an entry may answer NF_REPEAT before the packet is dropped
/// (the kernel re-runs it without bound; a rule set that always repeats
/// would spin forever).
const REPEAT_LIMIT: u32 = 16;

/// net/netfilter/core.c nf_hook_slow: the entries of (pf, hook) in priority
/// order; NF_ACCEPT goes on to the next, NF_DROP and NF_STOLEN end the walk,
/// NF_QUEUE with no listener (skiff has no nfnetlink_queue) goes on when the
/// bypass flag is set and drops otherwise (nf_queue's -ESRCH), NF_REPEAT runs
/// the same entry again. Returns Accept when the packet may go on (okfn).
pub fn nf_hook(nf: &mut Netfilter, skb: &mut NfSkb, state: &NfHookState) -> NfVerdict {
    let (pf, hook) = (state.pf.index(), state.hook.index());
    let dev = match state.hook {
        NfHook::NetdevEgress => state.out_ifindex,
        _ => state.in_ifindex,
    };
    let mut i = 0;
    let mut repeats = 0;
    while let Some(e) = nf.hooks[pf][hook].get(i).copied() {
        if e.dev.is_some() && e.dev != dev {
            i += 1;
            continue;
        }
        match run_entry(nf, e.hook_fn, skb, state) {
            NfVerdict::Accept => {}
            NfVerdict::Queue { bypass: true, .. } => {}
            NfVerdict::Repeat if repeats < REPEAT_LIMIT => {
                repeats += 1;
                continue;
            }
            NfVerdict::Repeat => return NfVerdict::Drop,
            v => return v,
        }
        i += 1;
    }
    NfVerdict::Accept
}
