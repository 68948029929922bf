//! Actions (net/sched/act_api.c): the TC_ACT_* control codes, an action's
//! common part (index, control action, `tc -s action` statistics), the
//! per-namespace action table `tc actions add` fills, and tcf_action_exec —
//! the walk over a filter's actions with pipe, jump, goto chain and repeat.
//!
//! A new action is one file (`act_KIND.rs`) implementing `ActOps`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::cls_api::{TcfEnv, TcfResult};
use crate::buff::SkBuff;

pub const TC_ACT_UNSPEC: i64 = -1;
pub const TC_ACT_OK: i64 = 0;
pub const TC_ACT_RECLASSIFY: i64 = 1;
pub const TC_ACT_SHOT: i64 = 2;
pub const TC_ACT_PIPE: i64 = 3;
pub const TC_ACT_STOLEN: i64 = 4;
pub const TC_ACT_QUEUED: i64 = 5;
pub const TC_ACT_REPEAT: i64 = 6;
pub const TC_ACT_REDIRECT: i64 = 7;
pub const TC_ACT_TRAP: i64 = 8;
/// include/net/sch_generic.h: TC_ACT_CONSUMED (TC_ACT_VALUE_MAX + 1) — the
/// skb was taken (mirred redirect at ingress) and must not be freed.
pub const TC_ACT_CONSUMED: i64 = 9;
/// include/uapi/linux/pkt_cls.h: __TC_ACT_EXT_SHIFT and the extended opcodes.
pub const TC_ACT_EXT_SHIFT: u32 = 28;
pub const TC_ACT_EXT_VAL_MASK: i64 = (1 << TC_ACT_EXT_SHIFT) - 1;
pub const TC_ACT_JUMP: i64 = 1 << TC_ACT_EXT_SHIFT;
pub const TC_ACT_GOTO_CHAIN: i64 = 2 << TC_ACT_EXT_SHIFT;
/// include/uapi/linux/pkt_cls.h: TCA_ACT_MAX_PRIO (actions per filter).
pub const TCA_ACT_MAX_PRIO: usize = 32;
/// include/net/act_api.h: TCA_ACT_MAX_PRIO_MASK.
const TCA_ACT_MAX_PRIO_MASK: i64 = 0x1ff;

/// include/uapi/linux/pkt_cls.h: TC_ACT_EXT_CMP.
pub fn tc_act_ext_cmp(combined: i64, opcode: i64) -> bool {
    combined & !TC_ACT_EXT_VAL_MASK == opcode
}

/// A control action as tc names it (iproute2 tc/tc_util.c: action_n2a), for
/// dumps: "pass" for OK, "drop" for SHOT, "goto chain N", "jump N".
pub fn control_name(code: i64) -> String {
    if tc_act_ext_cmp(code, TC_ACT_GOTO_CHAIN) {
        return format!("goto chain {}", code & TC_ACT_EXT_VAL_MASK);
    }
    if tc_act_ext_cmp(code, TC_ACT_JUMP) {
        return format!("jump {}", code & TC_ACT_EXT_VAL_MASK);
    }
    match code {
        TC_ACT_UNSPEC => "continue",
        TC_ACT_OK => "pass",
        TC_ACT_SHOT => "drop",
        TC_ACT_RECLASSIFY => "reclassify",
        TC_ACT_PIPE => "pipe",
        TC_ACT_STOLEN => "stolen",
        TC_ACT_TRAP => "trap",
        TC_ACT_QUEUED => "queued",
        TC_ACT_REPEAT => "repeat",
        TC_ACT_REDIRECT => "redirect",
        _ => return code.to_string(),
    }
    .to_string()
}

/// `"control_action": {...}` as tc -j prints it (print_action_control).
pub fn control_json(code: i64) -> Value {
    if tc_act_ext_cmp(code, TC_ACT_GOTO_CHAIN) {
        return json!({"type": "goto", "chain": code & TC_ACT_EXT_VAL_MASK});
    }
    if tc_act_ext_cmp(code, TC_ACT_JUMP) {
        return json!({"type": "jump", "jump": code & TC_ACT_EXT_VAL_MASK});
    }
    json!({ "type": control_name(code) })
}

/// struct gnet_stats_basic + gnet_stats_queue of an action, as `tc -s action`
/// prints them. Relaxed atomics: counted by whichever worker runs the action.
#[derive(Debug, Default)]
pub struct ActStats {
    bytes: AtomicU64,
    packets: AtomicU64,
    drops: AtomicU64,
    overlimits: AtomicU64,
}

/// A snapshot of `ActStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActStatsSnapshot {
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
}

impl ActStats {
    /// bstats_update: one packet of `len` bytes (qdisc_pkt_len).
    pub fn bstats_update(&self, len: usize) {
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.packets.fetch_add(1, Ordering::Relaxed);
    }

    /// tcf_action_inc_drop_qstats.
    pub fn drop_inc(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    /// tcf_action_inc_overlimit_qstats.
    pub fn overlimit_inc(&self) {
        self.overlimits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ActStatsSnapshot {
        ActStatsSnapshot {
            bytes: self.bytes.load(Ordering::Relaxed),
            packets: self.packets.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            overlimits: self.overlimits.load(Ordering::Relaxed),
        }
    }
}

/// struct tc_action's common part.
#[derive(Debug)]
pub struct TcfCommon {
    /// tcfa_index: unique per kind in a namespace, from 1.
    pub index: u32,
    /// tcfa_action: the control code the action's own result is (for most
    /// kinds what they return; police: the exceed action).
    pub control: i64,
    pub stats: ActStats,
}

/// struct tc_action_ops: what one kind of action does and how it dumps.
pub trait ActOps: Send + Sync {
    /// The kind as tc names it ("mirred").
    fn kind(&self) -> &'static str;
    /// tc_action_ops->act: the verdict for this packet (a TC_ACT_* code).
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> i64;
    /// The kind's own keys of `tc -j actions show` (without kind, index,
    /// control_action and stats, which `TcAction::dump` adds).
    fn dump(&self, common: &TcfCommon, out: &mut Map<String, Value>);
    /// The kind's own part of `tc actions show` text, after "KIND ".
    fn dump_text(&self, common: &TcfCommon) -> String;
}

/// One action instance (struct tc_action), shared by the filters bound to it.
pub struct TcAction {
    pub common: TcfCommon,
    pub ops: Box<dyn ActOps>,
    /// Made by `tc actions add` (holds a reference of its own), not inline
    /// in a filter.
    pub standalone: bool,
}

impl TcAction {
    pub fn new(index: u32, control: i64, ops: Box<dyn ActOps>) -> TcAction {
        TcAction {
            common: TcfCommon {
                index,
                control,
                stats: ActStats::default(),
            },
            ops,
            standalone: false,
        }
    }

    /// (bind, ref) as tc prints them: filters bound, plus the standalone
    /// reference of `tc actions add`. The table holds one Arc itself.
    fn counts(this: &Arc<TcAction>) -> (u32, u32) {
        let bind = (Arc::strong_count(this) as u32).saturating_sub(1);
        (bind, bind + this.standalone as u32)
    }

    pub fn kind(&self) -> &'static str {
        self.ops.kind()
    }

    /// One entry of `tc -s -j actions show` / a filter's "actions" array.
    pub fn dump(this: &Arc<TcAction>, order: usize) -> Value {
        let (bind, refs) = TcAction::counts(this);
        let s = this;
        let mut m = Map::new();
        m.insert("order".into(), json!(order));
        m.insert("kind".into(), json!(s.kind()));
        s.ops.dump(&s.common, &mut m);
        if !m.contains_key("control_action") {
            m.insert("control_action".into(), control_json(s.common.control));
        }
        m.insert("index".into(), json!(s.common.index));
        m.insert("ref".into(), json!(refs));
        m.insert("bind".into(), json!(bind));
        let s = s.common.stats.snapshot();
        m.insert(
            "stats".into(),
            json!({"bytes": s.bytes, "packets": s.packets, "drops": s.drops,
                   "overlimits": s.overlimits, "requeues": 0, "backlog": 0, "qlen": 0}),
        );
        Value::Object(m)
    }

    /// The `tc -s actions show` text of this action.
    pub fn dump_text(this: &Arc<TcAction>, order: usize) -> String {
        let (bind, refs) = TcAction::counts(this);
        let s = this.common.stats.snapshot();
        format!(
            "\taction order {order}: {} {}\n\tindex {} ref {refs} bind {bind}\n\
             \tAction statistics:\n\tSent {} bytes {} pkt (dropped {}, overlimits {} requeues 0) \n\
             \tbacklog 0b 0p requeues 0\n",
            this.kind(),
            this.ops.dump_text(&this.common),
            this.common.index,
            s.bytes,
            s.packets,
            s.drops,
            s.overlimits
        )
    }
}

/// net/sched/act_api.c: tcf_action_exec — run the actions in order while
/// they say PIPE; TC_ACT_REPEAT reruns one (at most 32 times), TC_ACT_JUMP
/// skips ahead (the graph restarts, at most TCA_ACT_MAX_PRIO times), a goto
/// chain leaves the chain for tcf_classify in `res`.
pub fn tcf_action_exec(
    actions: &[Arc<TcAction>],
    skb: &mut SkBuff,
    res: &mut TcfResult,
    env: &mut dyn TcfEnv,
) -> i64 {
    let nr = actions.len() as i64;
    let mut jmp_prgcnt: i64 = 0;
    let mut jmp_ttl = TCA_ACT_MAX_PRIO;
    let mut ret = TC_ACT_OK;
    'restart: loop {
        for a in actions {
            if jmp_prgcnt > 0 {
                jmp_prgcnt -= 1;
                continue;
            }
            let mut repeat_ttl = 32;
            loop {
                ret = a.ops.act(&a.common, skb, res, env);
                if ret != TC_ACT_REPEAT {
                    break;
                }
                repeat_ttl -= 1;
                if repeat_ttl == 0 {
                    // "TC_ACT_REPEAT abuse ?": stop the pipeline.
                    return TC_ACT_OK;
                }
            }
            if tc_act_ext_cmp(ret, TC_ACT_JUMP) {
                jmp_prgcnt = ret & TCA_ACT_MAX_PRIO_MASK;
                if jmp_prgcnt == 0 || jmp_prgcnt > nr {
                    return TC_ACT_OK; // faulty opcode
                }
                jmp_ttl -= 1;
                if jmp_ttl == 0 {
                    return TC_ACT_OK; // faulty graph
                }
                continue 'restart;
            }
            if tc_act_ext_cmp(ret, TC_ACT_GOTO_CHAIN) {
                // tcf_action_goto_chain_exec: the chain's first filter.
                res.goto_chain = Some((ret & TC_ACT_EXT_VAL_MASK) as u32);
            }
            if ret != TC_ACT_PIPE {
                break;
            }
        }
        return ret;
    }
}

/// A filter's actions (struct tcf_exts).
#[derive(Clone, Default)]
pub struct TcfExts {
    pub actions: Vec<Arc<TcAction>>,
}

impl TcfExts {
    /// include/net/pkt_cls.h: tcf_exts_exec — no actions is TC_ACT_OK.
    pub fn exec(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        if self.actions.is_empty() {
            return TC_ACT_OK;
        }
        tcf_action_exec(&self.actions, skb, res, env)
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The filter's "actions" array (order from 1, bound once).
    pub fn dump(&self) -> Vec<Value> {
        self.actions
            .iter()
            .enumerate()
            .map(|(i, a)| TcAction::dump(a, i + 1))
            .collect()
    }

    pub fn dump_text(&self) -> String {
        self.actions
            .iter()
            .enumerate()
            .map(|(i, a)| TcAction::dump_text(a, i + 1))
            .collect()
    }
}

/// A namespace's actions by kind and index (struct tc_action_net's idr per
/// kind): what `tc actions add` creates and `action KIND index N` binds to.
#[derive(Default)]
pub struct ActionTable {
    by_kind: BTreeMap<&'static str, BTreeMap<u32, Arc<TcAction>>>,
}

/// Why an action could not be added (the errno tc would print).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error("action {kind} index {index} exists (EEXIST)")]
    Exists { kind: &'static str, index: u32 },
    #[error("action {kind} index {index} not found (ENOENT)")]
    NotFound { kind: String, index: u32 },
    #[error("{0} (EINVAL)")]
    Invalid(String),
    #[error("not supported: {0}")]
    NotSupported(String),
}

impl ActionTable {
    /// tcf_idr_check_alloc: index 0 takes the next free one (from 1).
    pub fn alloc_index(&self, kind: &str, index: u32) -> u32 {
        if index != 0 {
            return index;
        }
        let last = self
            .by_kind
            .get(kind)
            .and_then(|m| m.keys().next_back().copied())
            .unwrap_or(0);
        last.saturating_add(1)
    }

    /// `tc actions add` (ovr false) or a filter's new action: EEXIST when the
    /// index is taken and `replace` is not set.
    pub fn insert(&mut self, a: TcAction, replace: bool) -> Result<Arc<TcAction>, ActError> {
        let kind = a.kind();
        let index = a.common.index;
        let m = self.by_kind.entry(kind).or_default();
        if m.contains_key(&index) && !replace {
            return Err(ActError::Exists { kind, index });
        }
        let a = Arc::new(a);
        m.insert(index, a.clone());
        Ok(a)
    }

    /// `action KIND index N` with no parameters: bind to an existing one.
    pub fn get(&self, kind: &str, index: u32) -> Result<Arc<TcAction>, ActError> {
        self.by_kind
            .get(kind)
            .and_then(|m| m.get(&index))
            .cloned()
            .ok_or(ActError::NotFound {
                kind: kind.to_string(),
                index,
            })
    }

    /// `tc actions del action KIND index N`.
    pub fn remove(&mut self, kind: &str, index: u32) -> Result<(), ActError> {
        self.by_kind
            .get_mut(kind)
            .and_then(|m| m.remove(&index))
            .map(|_| ())
            .ok_or(ActError::NotFound {
                kind: kind.to_string(),
                index,
            })
    }

    /// Every action, by kind then index.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<TcAction>> {
        self.by_kind.values().flat_map(|m| m.values())
    }

    /// `tc -s -j actions show action KIND`: the actions of one kind.
    pub fn dump_kind(&self, kind: &str) -> Vec<Value> {
        self.by_kind
            .get(kind)
            .map(|m| {
                m.values()
                    .enumerate()
                    .map(|(i, a)| TcAction::dump(a, i))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "act_tests.rs"]
mod tests;
