//! nf_tables (net/netfilter/nf_tables_api.c, nf_tables_core.c, nft_*.c):
//! tables per family (ip, ip6, inet), chains (base chains on a hook with a
//! type, a priority and a policy; regular chains reached by jump/goto),
//! rules held as the kernel holds them — a list of expressions over
//! registers (`expr`) — and sets/maps/verdict maps (`set`). `core` is
//! nft_do_chain; `dump` prints `nft list ruleset`.
//!
//! Base chains register on the namespace's netfilter hooks beside the
//! x_tables tables (ordered by priority, as on the kernel). nat chains do
//! not register at their own priority: like nft_chain_nat.c they join the
//! NAT core's lookup hook of their family and hook (nf_nat_ipv4_ops at
//! NAT_DST / NAT_SRC), which runs them by chain priority until one binds.

pub mod core;
pub mod dump;
pub mod expr;
pub mod set;

use super::x_tables::Policy;
use super::{nat::NfNatManipType, prio, HookFn, Netfilter, NfError, NfHook, NfHookOps, NfProto};
pub use expr::NftExpr;
pub use set::NftSet;

/// NFPROTO_IPV4 / NFPROTO_IPV6 / NFPROTO_INET tables (the netdev, arp and
/// bridge families are not supported: docs/differences.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NftFamily {
    Ip,
    Ip6,
    Inet,
}

impl NftFamily {
    pub fn name(self) -> &'static str {
        match self {
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
            NftFamily::Inet => "inet",
        }
    }

    /// The hook families a base chain of this family registers on (inet:
    /// both, as nft_register_basechain_hooks does through NFPROTO_INET).
    pub fn pfs(self) -> &'static [NfProto] {
        match self {
            NftFamily::Ip => &[NfProto::Ipv4],
            NftFamily::Ip6 => &[NfProto::Ipv6],
            NftFamily::Inet => &[NfProto::Ipv4, NfProto::Ipv6],
        }
    }

    pub fn has(self, pf: NfProto) -> bool {
        self.pfs().contains(&pf)
    }
}

/// enum nft_chain_types' names: filter, nat, route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// A base chain's hook (struct nft_base_chain): type, hook, priority,
/// policy; `prio_text` is the priority as nft prints it (`dstnat`,
/// `filter - 10`, `-110`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftBaseChain {
    pub ty: ChainType,
    pub hook: NfHook,
    pub priority: i32,
    pub prio_text: String,
    pub policy: Policy,
}

/// One piece of a rule's text for `nft list`: the statement as written, or
/// the place of a counter (printed with its values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleText {
    Text(String),
    Counter,
}

/// struct nft_rule: the expressions, the handle, and the text to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftRule {
    pub exprs: Vec<NftExpr>,
    pub handle: u64,
    pub text: Vec<RuleText>,
}

impl NftRule {
    /// The counters of the rule's `counter` statements, in order.
    pub fn counters(&self) -> impl Iterator<Item = super::x_tables::XtCounters> + '_ {
        self.exprs.iter().filter_map(|e| match e {
            NftExpr::Counter(c) => Some(*c),
            _ => None,
        })
    }
}

/// struct nft_chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftChain {
    pub name: String,
    pub handle: u64,
    pub base: Option<NftBaseChain>,
    pub rules: Vec<NftRule>,
}

/// struct nft_table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftTable {
    pub family: NftFamily,
    pub name: String,
    pub chains: Vec<NftChain>,
    pub sets: Vec<NftSet>,
    /// The next handle (table->hgenerator).
    next_handle: u64,
}

impl NftTable {
    pub fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }

    pub fn set_index(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.name == name)
    }

    fn handle(&mut self) -> u64 {
        self.next_handle += 1;
        self.next_handle
    }
}

/// NFT_JUMP_STACK_SIZE: how deep jumps may nest.
pub const NFT_JUMP_STACK_SIZE: usize = 16;

/// What can go wrong changing the rule set (the kernel's errno, with what
/// it is about).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NftError {
    #[error("No such file or directory: table `{0}' does not exist")]
    NoTable(String),
    #[error("No such file or directory: chain `{0}' does not exist")]
    NoChain(String),
    #[error("No such file or directory: set `{0}' does not exist")]
    NoSet(String),
    #[error("File exists: chain `{0}' exists with another hook, type or priority")]
    ChainExists(String),
    #[error("Too many levels of symbolic links: chain `{0}' jumps back to itself")]
    Loop(String),
    #[error("Operation not supported: {0}")]
    NotSupported(String),
    #[error("Invalid argument: {0}")]
    Invalid(String),
    #[error("{0}")]
    Hook(#[from] NfError),
}

/// One nat base chain in the NAT core's lookup list of its hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NatChain {
    pf: NfProto,
    hook: NfHook,
    priority: i32,
    table: usize,
    chain: usize,
}

/// The namespace's nf_tables state: the tables and the nat chains' lookup
/// lists (nf_nat_lookup_hook_priv->entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NfTables {
    pub tables: Vec<NftTable>,
    nat_chains: Vec<NatChain>,
}

impl NfTables {
    pub fn table_index(&self, family: NftFamily, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.family == family && t.name == name)
    }

    pub fn table(&self, family: NftFamily, name: &str) -> Result<usize, NftError> {
        self.table_index(family, name)
            .ok_or_else(|| NftError::NoTable(format!("{} {name}", family.name())))
    }
}

/// nf_tables_newtable: `add table` (an existing table is kept).
pub fn add_table(nf: &mut Netfilter, family: NftFamily, name: &str) -> usize {
    if let Some(t) = nf.nft.table_index(family, name) {
        return t;
    }
    nf.nft.tables.push(NftTable {
        family,
        name: name.to_string(),
        chains: Vec::new(),
        sets: Vec::new(),
        next_handle: 0,
    });
    nf.nft.tables.len() - 1
}

/// The hooks a chain type may use per family (nft_chain_filter_*,
/// nft_chain_nat_*, nft_chain_route_* type definitions).
fn check_chain_type(ty: ChainType, hook: NfHook) -> Result<(), NftError> {
    let ok = match ty {
        ChainType::Filter => !matches!(hook, NfHook::NetdevIngress | NfHook::NetdevEgress),
        ChainType::Nat => matches!(
            hook,
            NfHook::PreRouting | NfHook::LocalIn | NfHook::LocalOut | NfHook::PostRouting
        ),
        ChainType::Route => hook == NfHook::LocalOut,
    };
    if ok {
        Ok(())
    } else {
        Err(NftError::NotSupported(format!(
            "a {} chain cannot hook {}",
            ty.name(),
            hook.nft_name()
        )))
    }
}

/// nf_tables_newchain: `add chain` (an existing chain with the same hook is
/// kept; a base chain registers on its hooks).
pub fn add_chain(
    nf: &mut Netfilter,
    table: usize,
    name: &str,
    base: Option<NftBaseChain>,
) -> Result<usize, NftError> {
    let t = nf
        .nft
        .tables
        .get_mut(table)
        .ok_or_else(|| NftError::NoTable(table.to_string()))?;
    if let Some(c) = t.chain_index(name) {
        let same = match (&t.chains[c].base, &base) {
            (_, None) => true,
            (Some(a), Some(b)) => a.ty == b.ty && a.hook == b.hook && a.priority == b.priority,
            (None, Some(_)) => false,
        };
        if !same {
            return Err(NftError::ChainExists(name.to_string()));
        }
        if let (Some(a), Some(b)) = (t.chains[c].base.as_mut(), base) {
            a.policy = b.policy;
        }
        return Ok(c);
    }
    if let Some(b) = &base {
        check_chain_type(b.ty, b.hook)?;
    }
    let handle = t.handle();
    let family = t.family;
    t.chains.push(NftChain {
        name: name.to_string(),
        handle,
        base: base.clone(),
        rules: Vec::new(),
    });
    let chain = t.chains.len() - 1;
    if let Some(b) = base {
        register_base_chain(nf, family, table, chain, &b)?;
    }
    Ok(chain)
}

/// nf_tables_register_hook: a filter/route chain's own entry at its
/// priority; a nat chain joins the NAT lookup list (nf_nat_register_fn),
/// whose hook entry (NAT_DST / NAT_SRC) is registered with the first one.
fn register_base_chain(
    nf: &mut Netfilter,
    family: NftFamily,
    table: usize,
    chain: usize,
    b: &NftBaseChain,
) -> Result<(), NftError> {
    for &pf in family.pfs() {
        if b.ty != ChainType::Nat {
            nf.register_hook(NfHookOps {
                pf,
                hook: b.hook,
                priority: b.priority,
                dev: None,
                hook_fn: HookFn::Nft { table, chain },
            })?;
            continue;
        }
        nf.conntrack_enable(pf)?;
        let manip = NfNatManipType::of_hook(b.hook);
        let entry = HookFn::NftNat { manip };
        if !nf
            .hook_entries(pf, b.hook)
            .iter()
            .any(|e| e.hook_fn == entry)
        {
            let priority = match manip {
                NfNatManipType::Dst => prio::NAT_DST,
                NfNatManipType::Src => prio::NAT_SRC,
            };
            nf.register_hook(NfHookOps {
                pf,
                hook: b.hook,
                priority,
                dev: None,
                hook_fn: entry,
            })?;
        }
        let n = NatChain {
            pf,
            hook: b.hook,
            priority: b.priority,
            table,
            chain,
        };
        let list = &mut nf.nft.nat_chains;
        let pos = list.partition_point(|e| e.priority <= n.priority);
        list.insert(pos, n);
    }
    Ok(())
}

/// nf_tables_newrule: appends (or inserts at `pos`) a rule, then checks
/// that no chain reaches itself (nft_chain_validate: ELOOP) and that jumps
/// nest at most NFT_JUMP_STACK_SIZE deep.
pub fn add_rule(
    nf: &mut Netfilter,
    table: usize,
    chain: usize,
    exprs: Vec<NftExpr>,
    text: Vec<RuleText>,
    pos: Option<usize>,
) -> Result<(), NftError> {
    if exprs.iter().any(NftExpr::needs_conntrack) {
        let family = nf.nft.tables.get(table).map(|t| t.family);
        for &pf in family.map(NftFamily::pfs).unwrap_or(&[]) {
            nf.conntrack_enable(pf)?;
        }
    }
    let t = nf
        .nft
        .tables
        .get_mut(table)
        .ok_or_else(|| NftError::NoTable(table.to_string()))?;
    let handle = t.handle();
    let c = t
        .chains
        .get_mut(chain)
        .ok_or_else(|| NftError::NoChain(chain.to_string()))?;
    let at = pos.unwrap_or(c.rules.len()).min(c.rules.len());
    c.rules.insert(
        at,
        NftRule {
            exprs,
            handle,
            text,
        },
    );
    if let Some(l) = core::find_loop(t) {
        let name = t.chains.get(l).map(|c| c.name.clone()).unwrap_or_default();
        if let Some(c) = t.chains.get_mut(chain) {
            c.rules.remove(at);
        }
        return Err(NftError::Loop(name));
    }
    Ok(())
}

/// `flush chain`: the chain's rules go.
pub fn flush_chain(nf: &mut Netfilter, table: usize, chain: usize) {
    if let Some(c) = nf
        .nft
        .tables
        .get_mut(table)
        .and_then(|t| t.chains.get_mut(chain))
    {
        c.rules.clear();
    }
}

/// `flush table`: every chain's rules and every set's elements go; chains
/// and sets stay.
pub fn flush_table(nf: &mut Netfilter, table: usize) {
    if let Some(t) = nf.nft.tables.get_mut(table) {
        t.chains.iter_mut().for_each(|c| c.rules.clear());
        t.sets.iter_mut().for_each(NftSet::flush);
    }
}

/// `flush ruleset`: every nf_tables table goes, with its hook entries
/// (x_tables tables stay, as they do with `nft flush ruleset` on a
/// kernel whose iptables is the legacy one).
pub fn flush_ruleset(nf: &mut Netfilter) {
    let entries: Vec<NfHookOps> = nf
        .active_hooks()
        .flat_map(|(pf, h)| nf.hook_entries(pf, h).to_vec())
        .filter(|e| matches!(e.hook_fn, HookFn::Nft { .. } | HookFn::NftNat { .. }))
        .collect();
    for e in &entries {
        nf.unregister_hook(e);
    }
    nf.nft = NfTables::default();
}

/// `add set` / `add map`: a new set (an existing one of the same name is
/// kept, its elements added). Returns its index.
pub fn add_set(nf: &mut Netfilter, table: usize, set: NftSet) -> Result<usize, NftError> {
    let t = nf
        .nft
        .tables
        .get_mut(table)
        .ok_or_else(|| NftError::NoTable(table.to_string()))?;
    if let Some(i) = t.set_index(&set.name) {
        let old = &mut t.sets[i];
        if old.key_len != set.key_len || old.data.len() != set.data.len() {
            return Err(NftError::Invalid(format!(
                "set `{}' exists with another type",
                set.name
            )));
        }
        for e in set.elems {
            old.insert(e)?;
        }
        return Ok(i);
    }
    t.sets.push(set);
    Ok(t.sets.len() - 1)
}

#[cfg(test)]
mod tests;
