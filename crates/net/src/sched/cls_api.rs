//! Classification (net/sched/cls_api.c): a filter block per qdisc or clsact
//! hook, its chains, the filters of a chain by priority (one `tcf_proto` per
//! prio, of one kind and protocol), and tcf_classify — the walk that runs them
//! with `goto chain` and the reclassify loop limit.
//!
//! Who calls what: the clsact hooks (core/tc.rs) and classful qdiscs
//! (htb, prio enqueue) call `tcf_classify(&block, &mut skb, env)` and read
//! `TcfResult { action, classid }`. `env` is what classification needs from
//! the CPU running it (`TcfEnv`: programs, the clock, mirred's sends).
//! A new classifier is one file (`cls_KIND.rs`) implementing `Classifier`,
//! one `FilterSpec` variant and one line in `new_classifier`.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use skiff_vm::Program;

use super::act_api::{TC_ACT_GOTO_CHAIN, TC_ACT_RECLASSIFY, TC_ACT_SHOT, TC_ACT_UNSPEC};
use super::{cls_basic, cls_bpf, cls_flower, cls_fw, cls_matchall, cls_u32};
use crate::buff::SkBuff;
use crate::core::DevId;

/// include/uapi/linux/if_ether.h: ETH_P_ALL (`protocol all`).
pub const ETH_P_ALL: u16 = 0x0003;
/// net/sched/cls_api.c: __tcf_classify's max_reclassify_loop.
pub const MAX_RECLASSIFY_LOOP: u32 = 16;
/// net/sched/cls_api.c: tcf_auto_prio's first priority (TC_H_MAJ 0xC0000000).
pub const TC_AUTO_PRIO: u16 = 0xc000;

/// Where act_mirred sends a packet: a device, to its egress (dev_queue_xmit)
/// or its ingress (netif_receive_skb / netif_rx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirredTarget {
    pub dev: DevId,
    pub ingress: bool,
}

/// struct tcf_result and the verdict tcf_classify returns with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcfResult {
    /// The verdict: a TC_ACT_* code (TC_ACT_UNSPEC: no filter matched).
    pub action: i64,
    /// res->classid: the class a classful qdisc puts the packet in
    /// (major:minor); clsact copies its minor to skb->tc_index on OK.
    pub classid: u32,
    /// A mirred redirect that took the packet itself (TC_ACT_CONSUMED at
    /// ingress, STOLEN at egress): the caller sends it there.
    pub redirect: Option<MirredTarget>,
    /// res->goto_tp: the chain an action's `goto chain` continues with.
    pub goto_chain: Option<u32>,
    /// TC_ACT_SHOT because the reclassify loop limit was reached
    /// (SKB_DROP_REASON_TC_RECLASSIFY_LOOP).
    pub reclassify_loop: bool,
}

impl Default for TcfResult {
    fn default() -> Self {
        TcfResult {
            action: TC_ACT_UNSPEC,
            classid: 0,
            redirect: None,
            goto_chain: None,
            reclassify_loop: false,
        }
    }
}

/// What classification needs from the CPU that runs it.
pub trait TcfEnv {
    /// bpf_prog_run on the skb (cls_bpf, act_bpf): the return value as the
    /// kernel's int; an aborted run gives TC_ACT_SHOT.
    fn run_bpf(&mut self, prog: &Arc<Program>, skb: &mut SkBuff) -> i64;
    /// ktime_get_ns on the engine's clock (the packet's time in a replay).
    fn now_ns(&mut self) -> u64;
    /// get_random_u32 (act_gact random, act_sample).
    fn prandom_u32(&mut self) -> u32;
    /// Whether the device is up (act_mirred: IFF_UP and carrier).
    fn dev_up(&self, dev: DevId) -> bool;
    /// act_mirred on a clone (mirror, or a redirect that keeps the original):
    /// send a copy of `skb` to `to` now. false: the send failed (counted as
    /// an overlimit).
    fn mirred_clone(&mut self, skb: &SkBuff, to: MirredTarget) -> bool;
}

/// qdisc_pkt_len as classifiers and actions see it: at ingress the MAC
/// header is pulled (skb->len from the network header), at egress the whole
/// frame (qdisc_pkt_len_init).
pub fn qdisc_pkt_len(skb: &SkBuff) -> usize {
    if skb.tc_at_ingress {
        skb.len()
            .saturating_sub(skb.network_header.saturating_sub(skb.mac_header))
    } else {
        skb.len()
    }
}

/// The network header's offset in `skb.data()` (skb_network_offset at egress;
/// at ingress the kernel's data is there already, skiff keeps the MAC).
pub fn network_offset(skb: &SkBuff) -> usize {
    skb.network_header.saturating_sub(skb.data)
}

/// Why a filter could not be added, changed or deleted (the errno tc prints).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClsError {
    #[error("filter {what} exists (EEXIST)")]
    Exists { what: String },
    #[error("{what} not found (ENOENT)")]
    NotFound { what: String },
    #[error("{0} (EINVAL)")]
    Invalid(String),
    #[error("not supported: {0}")]
    NotSupported(String),
}

/// The filters of a tp kept by handle in the order added (cls_bpf's plist,
/// cls_basic's flist, cls_fw's table): handle 0 takes the next free one
/// from 1 (idr_alloc_u32), a taken handle is EEXIST unless replacing.
pub struct HandleList<T> {
    pub items: Vec<(u32, T)>,
}

impl<T> Default for HandleList<T> {
    fn default() -> Self {
        HandleList { items: Vec::new() }
    }
}

impl<T> HandleList<T> {
    pub fn change(
        &mut self,
        kind: &str,
        handle: u32,
        f: T,
        replace: bool,
    ) -> Result<u32, ClsError> {
        if let Some(slot) = self.items.iter_mut().find(|(h, _)| *h == handle) {
            if !replace {
                return Err(ClsError::Exists {
                    what: format!("{kind} handle 0x{handle:x}"),
                });
            }
            slot.1 = f;
            return Ok(handle);
        }
        let handle = if handle == 0 {
            (1..u32::MAX)
                .find(|c| !self.items.iter().any(|(h, _)| h == c))
                .ok_or_else(|| ClsError::Invalid(format!("no free {kind} handle")))?
        } else {
            handle
        };
        self.items.push((handle, f));
        Ok(handle)
    }

    pub fn delete(&mut self, kind: &str, handle: u32) -> Result<(), ClsError> {
        let n = self.items.len();
        self.items.retain(|(h, _)| *h != handle);
        if self.items.len() == n {
            return Err(ClsError::NotFound {
                what: format!("{kind} filter handle 0x{handle:x}"),
            });
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &(u32, T)> {
        self.items.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What `tc filter add ... KIND OPTIONS` configures, per kind.
pub enum FilterSpec {
    Basic(cls_basic::BasicSpec),
    Bpf(cls_bpf::BpfSpec),
    Flower(cls_flower::FlowerSpec),
    Fw(cls_fw::FwSpec),
    Matchall(cls_matchall::MatchallSpec),
    U32(cls_u32::U32Spec),
}

impl FilterSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            FilterSpec::Basic(_) => "basic",
            FilterSpec::Bpf(_) => "bpf",
            FilterSpec::Flower(_) => "flower",
            FilterSpec::Fw(_) => "fw",
            FilterSpec::Matchall(_) => "matchall",
            FilterSpec::U32(_) => "u32",
        }
    }
}

/// struct tcf_proto_ops: one classifier kind's filters at one priority.
pub trait Classifier: Send + Sync {
    fn kind(&self) -> &'static str;
    /// tcf_proto_ops->classify: TC_ACT_UNSPEC (negative) when nothing
    /// matched, else the verdict with `res.classid` set.
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64;
    /// tcf_proto_ops->change: add (or with `replace` change) the filter
    /// `handle` (0: the kind picks one). Returns the handle used.
    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError>;
    /// tcf_proto_ops->delete.
    fn delete(&mut self, handle: u32) -> Result<(), ClsError>;
    /// No filters left (the tp is destroyed, tcf_proto_check_delete).
    fn is_empty(&self) -> bool;
    /// tcf_proto_ops->dump: each filter's "options" object (the tp's own
    /// header entry is added by the block).
    fn dump(&self) -> Vec<Value>;
    /// The same as `tc -s filter show` text lines, one string per filter
    /// (after "filter protocol P pref N KIND chain C ").
    fn dump_text(&self) -> Vec<String>;
    /// The program and classid when this tp is one direct-action cls_bpf
    /// filter without actions (the block's fast path); None otherwise.
    fn single_direct_bpf(&self) -> Option<(&Arc<Program>, u32)> {
        None
    }
}

/// A new, empty tp of `kind` (tcf_proto_lookup_ops + ops->init).
fn new_classifier(kind: &str) -> Result<Box<dyn Classifier>, ClsError> {
    match kind {
        "basic" => Ok(Box::new(cls_basic::ClsBasic::default())),
        "bpf" => Ok(Box::new(cls_bpf::ClsBpf::default())),
        "flower" => Ok(Box::new(cls_flower::ClsFlower::default())),
        "fw" => Ok(Box::new(cls_fw::ClsFw::default())),
        "matchall" => Ok(Box::new(cls_matchall::ClsMatchall::default())),
        "u32" => Ok(Box::new(cls_u32::ClsU32::new())),
        k => Err(ClsError::NotSupported(format!("classifier {k}"))),
    }
}

/// struct tcf_proto: the filters of one priority in a chain.
pub struct TcfProto {
    pub prio: u16,
    /// Host-order EtherType, ETH_P_ALL for any.
    pub protocol: u16,
    pub cls: Box<dyn Classifier>,
}

/// struct tcf_chain: filters by ascending priority.
#[derive(Default)]
pub struct TcfChain {
    pub index: u32,
    pub protos: Vec<TcfProto>,
}

/// struct tcf_block: the chains of one qdisc or clsact hook.
#[derive(Default)]
pub struct TcfBlock {
    /// Chain 0 first, then by index.
    chains: Vec<TcfChain>,
    /// Set while the block's only filter is one direct-action cls_bpf
    /// (`tc filter add ... bpf da`, the common clsact set-up): classified
    /// without the general walk (`tcf_classify_direct`).
    direct: Option<DirectBpf>,
}

/// The one direct-action cls_bpf filter of a block.
pub struct DirectBpf {
    pub prog: Arc<Program>,
    pub classid: u32,
    /// The tp's protocol (host order; ETH_P_ALL for any).
    pub protocol: u16,
}

/// Where `tc filter add|replace` puts a filter and what it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterKey {
    pub chain: u32,
    /// 0: tcf_auto_prio picks one.
    pub prio: u16,
    /// Host-order EtherType (ETH_P_ALL when tc is given none).
    pub protocol: u16,
    /// 0: the classifier picks one.
    pub handle: u32,
}

impl TcfBlock {
    pub fn is_empty(&self) -> bool {
        self.chains.iter().all(|c| c.protos.is_empty())
    }

    pub fn chain(&self, index: u32) -> Option<&TcfChain> {
        self.chains.iter().find(|c| c.index == index)
    }

    /// tcf_chain_get: the chain, made when missing (as `goto chain N` and
    /// `tc filter add ... chain N` make it).
    pub fn chain_get(&mut self, index: u32) -> &mut TcfChain {
        // The caller may change the chain: add/del_filter work the fast path
        // out again.
        self.direct = None;
        let pos = match self.chains.binary_search_by_key(&index, |c| c.index) {
            Ok(p) => p,
            Err(p) => {
                self.chains.insert(
                    p,
                    TcfChain {
                        index,
                        protos: Vec::new(),
                    },
                );
                p
            }
        };
        &mut self.chains[pos]
    }

    /// net/sched/cls_api.c: tc_new_tfilter — find the tp of the priority
    /// (tcf_chain_tp_find: EINVAL for another kind or protocol there),
    /// make it when missing (prio 0: tcf_auto_prio), then ops->change.
    /// Returns (prio, handle).
    pub fn add_filter(
        &mut self,
        key: FilterKey,
        spec: FilterSpec,
        replace: bool,
    ) -> Result<(u16, u32), ClsError> {
        let kind = spec.kind();
        let chain = self.chain_get(key.chain);
        let prio = match key.prio {
            // tcf_auto_prio: one below the chain's first priority.
            0 => chain
                .protos
                .first()
                .map(|t| t.prio.saturating_sub(1))
                .unwrap_or(TC_AUTO_PRIO),
            p => p,
        };
        let pos = chain.protos.iter().position(|t| t.prio >= prio);
        let idx = match pos {
            Some(i) if chain.protos[i].prio == prio => {
                let tp = &chain.protos[i];
                if tp.cls.kind() != kind {
                    return Err(ClsError::Invalid(format!(
                        "filter prio {prio} is {}, not {kind}",
                        tp.cls.kind()
                    )));
                }
                if tp.protocol != key.protocol {
                    return Err(ClsError::Invalid(format!(
                        "filter prio {prio} has another protocol"
                    )));
                }
                i
            }
            p => {
                let i = p.unwrap_or(chain.protos.len());
                chain.protos.insert(
                    i,
                    TcfProto {
                        prio,
                        protocol: key.protocol,
                        cls: new_classifier(kind)?,
                    },
                );
                i
            }
        };
        let res = chain.protos[idx].cls.change(key.handle, spec, replace);
        if res.is_err() && chain.protos[idx].cls.is_empty() {
            chain.protos.remove(idx);
        }
        self.find_direct();
        res.map(|h| (prio, h))
    }

    /// tc_del_tfilter: the filter `handle` of a priority (handle 0: the
    /// whole priority; prio 0: the whole chain).
    pub fn del_filter(&mut self, chain: u32, prio: u16, handle: u32) -> Result<(), ClsError> {
        let res = self.del_filter_in(chain, prio, handle);
        self.find_direct();
        res
    }

    fn del_filter_in(&mut self, chain: u32, prio: u16, handle: u32) -> Result<(), ClsError> {
        let c = self.chain_get(chain);
        if prio == 0 {
            c.protos.clear();
            return Ok(());
        }
        let Some(i) = c.protos.iter().position(|t| t.prio == prio) else {
            return Err(ClsError::NotFound {
                what: format!("filter prio {prio}"),
            });
        };
        if handle == 0 {
            c.protos.remove(i);
            return Ok(());
        }
        c.protos[i].cls.delete(handle)?;
        if c.protos[i].cls.is_empty() {
            c.protos.remove(i);
        }
        Ok(())
    }

    /// The fast path's filter, when the block's only filter (empty chains
    /// aside) is one direct-action cls_bpf in chain 0.
    fn find_direct(&mut self) {
        let mut tps = self
            .chains
            .iter()
            .flat_map(|c| c.protos.iter().map(move |t| (c, t)));
        let only = match (tps.next(), tps.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        };
        self.direct = only.filter(|(c, _)| c.index == 0).and_then(|(_, tp)| {
            tp.cls.single_direct_bpf().map(|(prog, classid)| DirectBpf {
                prog: prog.clone(),
                classid,
                protocol: tp.protocol,
            })
        });
    }

    /// The block's one direct-action cls_bpf filter, if that is all it holds.
    #[inline]
    pub fn direct_bpf(&self) -> Option<&DirectBpf> {
        self.direct.as_ref()
    }

    /// `tc -s -j filter show`: per tp a header entry, then each filter's.
    pub fn dump(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for c in &self.chains {
            for tp in &c.protos {
                let mut head = Map::new();
                head.insert("protocol".into(), json!(protocol_name(tp.protocol)));
                head.insert("pref".into(), json!(tp.prio));
                head.insert("kind".into(), json!(tp.cls.kind()));
                head.insert("chain".into(), json!(c.index));
                out.push(Value::Object(head.clone()));
                for opts in tp.cls.dump() {
                    let mut e = head.clone();
                    e.insert("options".into(), opts);
                    out.push(Value::Object(e));
                }
            }
        }
        out
    }

    /// `tc -s filter show dev D ...` text.
    pub fn dump_text(&self, prefix: &str) -> String {
        let mut s = String::new();
        for c in &self.chains {
            for tp in &c.protos {
                let head = format!(
                    "filter {prefix}protocol {} pref {} {} chain {} ",
                    protocol_name(tp.protocol),
                    tp.prio,
                    tp.cls.kind(),
                    c.index
                );
                s.push_str(&head);
                s.push('\n');
                for f in tp.cls.dump_text() {
                    s.push_str(&head);
                    s.push_str(&f);
                    if !f.ends_with('\n') {
                        s.push('\n');
                    }
                }
            }
        }
        s
    }
}

/// iproute2 lib/ll_proto.c: ll_proto_n2a for the EtherTypes filters name.
pub fn protocol_name(p: u16) -> String {
    match p {
        ETH_P_ALL => "all".into(),
        0x0800 => "ip".into(),
        0x86dd => "ipv6".into(),
        0x0806 => "arp".into(),
        0x8100 => "802.1Q".into(),
        0x88a8 => "802.1ad".into(),
        0x8847 => "mpls_uc".into(),
        p => format!("0x{p:04x}"),
    }
}

/// The EtherType of a protocol name as `tc filter ... protocol P` takes it
/// (ll_proto_a2n), or a number.
pub fn protocol_from_name(s: &str) -> Option<u16> {
    match s {
        "all" => Some(ETH_P_ALL),
        "ip" => Some(0x0800),
        "ipv6" => Some(0x86dd),
        "arp" => Some(0x0806),
        "802.1Q" | "802.1q" => Some(0x8100),
        "802.1ad" => Some(0x88a8),
        "mpls_uc" => Some(0x8847),
        _ => {
            let t = s.strip_prefix("0x").map(|h| u16::from_str_radix(h, 16));
            match t {
                Some(r) => r.ok(),
                None => s.parse().ok(),
            }
        }
    }
}

/// include/linux/skbuff.h / if_vlan.h: skb_protocol(skb, false) — an
/// offloaded VLAN tag's protocol first.
fn skb_protocol(skb: &SkBuff) -> u16 {
    if skb.vlan_present {
        skb.vlan_proto
    } else {
        skb.protocol
    }
}

/// net/sched/cls_api.c: __tcf_classify over the block from chain 0: the
/// first filter whose protocol fits and whose verdict is not negative wins;
/// RECLASSIFY restarts from the first filter, a `goto chain` continues with
/// that chain's first filter, either at most MAX_RECLASSIFY_LOOP times
/// (then TC_ACT_SHOT).
pub fn tcf_classify(block: &TcfBlock, skb: &mut SkBuff, env: &mut dyn TcfEnv) -> TcfResult {
    let mut res = TcfResult::default();
    let first = match block.chains.first() {
        Some(c) if c.index == 0 => c,
        _ => return res,
    };
    let mut chain = first;
    let mut limit = 0;
    loop {
        let code = classify_chain(chain, skb, &mut res, env);
        let next = if code == TC_ACT_RECLASSIFY {
            Some(first)
        } else if super::act_api::tc_act_ext_cmp(code, TC_ACT_GOTO_CHAIN) {
            // An empty or missing chain has no first filter: UNSPEC.
            let idx = res.goto_chain.take();
            match idx.and_then(|i| block.chain(i)) {
                Some(c) => Some(c),
                None => {
                    res.action = TC_ACT_UNSPEC;
                    return res;
                }
            }
        } else {
            res.action = code;
            return res;
        };
        if limit >= MAX_RECLASSIFY_LOOP {
            res.action = TC_ACT_SHOT;
            res.reclassify_loop = true;
            return res;
        }
        limit += 1;
        if let Some(c) = next {
            chain = c;
        }
    }
}

/// tcf_classify for a block whose only filter is `f` (`TcfBlock::direct_bpf`),
/// with `run` the program run (bpf_prog_run): what the general walk gives,
/// without a dyn environment. cls_bpf_classify in direct-action mode, then
/// __tcf_classify's RECLASSIFY loop (a direct-action verdict is never a goto
/// chain: cls_bpf_exec_opcode).
#[inline]
pub fn tcf_classify_direct(
    f: &DirectBpf,
    skb: &mut SkBuff,
    mut run: impl FnMut(&Arc<Program>, &mut SkBuff) -> i64,
) -> TcfResult {
    let mut res = TcfResult::default();
    if f.protocol != skb_protocol(skb) && f.protocol != ETH_P_ALL {
        return res;
    }
    for _ in 0..=MAX_RECLASSIFY_LOOP {
        skb.tc_classid = f.classid as u16;
        let code = cls_bpf::cls_bpf_exec_opcode(run(&f.prog, skb));
        res.classid = (f.classid & 0xffff_0000) | skb.tc_classid as u32;
        if code != TC_ACT_RECLASSIFY {
            res.action = code;
            return res;
        }
    }
    res.action = TC_ACT_SHOT;
    res.reclassify_loop = true;
    res
}

/// One pass over a chain's filters: the first verdict that is not negative,
/// a RECLASSIFY or a goto chain (for the caller), else TC_ACT_UNSPEC.
fn classify_chain(
    chain: &TcfChain,
    skb: &mut SkBuff,
    res: &mut TcfResult,
    env: &mut dyn TcfEnv,
) -> i64 {
    for tp in &chain.protos {
        let protocol = skb_protocol(skb);
        if tp.protocol != protocol && tp.protocol != ETH_P_ALL {
            continue;
        }
        let err = tp.cls.classify(skb, res, env);
        if err == TC_ACT_RECLASSIFY || super::act_api::tc_act_ext_cmp(err, TC_ACT_GOTO_CHAIN) {
            return err;
        }
        if err >= 0 {
            return err;
        }
    }
    TC_ACT_UNSPEC
}

#[cfg(test)]
#[path = "cls_tests.rs"]
pub(crate) mod tests;
