//! What `tc filter` and `tc actions` change (net/sched/cls_api.c:
//! tc_new_tfilter, tc_del_tfilter; net/sched/act_api.c: tcf_action_add,
//! tcf_del_action) and what `tc -s filter|actions show` reads.
//!
//! Filters live in blocks: the ingress/clsact hooks' (core/tc.rs) and, on
//! the egress hook, one per classful qdisc or class they were attached to
//! (`parent 1:` / `parent 1:10`), which the qdiscs' enqueue classifies with.

use std::sync::Arc;

use serde_json::{json, Value};

use super::tc::cls_errno;
use super::*;
use crate::sched::act_api::{ActError, ActionTable, TcAction};
use crate::sched::cls_api::{FilterKey, FilterSpec, TcfBlock};
use crate::sched::dump::handle_str;
use crate::sched::ingress::{IngressKind, TC_H_MIN_EGRESS, TC_H_MIN_INGRESS};
use crate::sched::{tc_h_maj, TC_H_ROOT};

/// Where `tc filter add|del` puts a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterParent {
    /// `ingress`, `parent ffff:` or `parent ffff:fff2`: the ingress/clsact
    /// qdisc's ingress block.
    Ingress,
    /// `egress` or `parent ffff:fff3`: clsact's egress block (an ingress
    /// qdisc has one block only: its ingress one, as ingress_tcf_block).
    Egress,
    /// `parent X:` or `parent X:Y`: a classful qdisc or one of its classes.
    Qdisc(u32),
}

impl FilterParent {
    /// tc's parent argument as a handle ("ffff:fff2", "1:", "1:10").
    pub fn handle(self) -> u32 {
        match self {
            FilterParent::Ingress => 0xffff_0000 | TC_H_MIN_INGRESS,
            FilterParent::Egress => 0xffff_0000 | TC_H_MIN_EGRESS,
            FilterParent::Qdisc(h) => h,
        }
    }
}

/// `tc filter add|replace|del`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterCmd {
    Add,
    Replace,
    Delete,
}

/// One filter entry of `tc -s -j filter show` with the attachment point.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterShow {
    /// "ffff:fff2" (ingress), "ffff:fff3" (egress), or the qdisc/class handle.
    pub parent: String,
    pub json: Value,
}

/// The ingress block's parent as tc shows it: "ffff:" on an ingress qdisc,
/// "ffff:fff2" on clsact.
fn ingress_parent(d: &NetDev) -> u32 {
    match d.ingress_qdisc.map(|q| q.kind) {
        Some(IngressKind::Ingress) => 0xffff_0000,
        _ => FilterParent::Ingress.handle(),
    }
}

fn cls_err(e: crate::sched::cls_api::ClsError) -> DatapathError {
    match e {
        crate::sched::cls_api::ClsError::NotSupported(m) => DatapathError::NotSupported(m),
        e => errno(cls_errno(&e), e.to_string()),
    }
}

fn act_err(e: ActError) -> DatapathError {
    match e {
        ActError::Exists { .. } => errno(EEXIST, e.to_string()),
        ActError::NotFound { .. } => errno(ENOENT, e.to_string()),
        ActError::Invalid(_) => errno(EINVAL, e.to_string()),
        ActError::NotSupported(m) => DatapathError::NotSupported(m),
    }
}

impl Datapath {
    /// The block a filter parent names (tcf_block_find): "Parent Qdisc
    /// doesn't exists" when there is no such qdisc or class.
    fn filter_block(
        &mut self,
        dev: DevId,
        parent: FilterParent,
    ) -> Result<&mut TcfBlock, DatapathError> {
        let missing = || errno(EINVAL, "Parent Qdisc doesn't exists.");
        if let FilterParent::Qdisc(h) = parent {
            if !self.filter_parent_exists(dev, h)? {
                return Err(missing());
            }
        }
        let d = self.dev_mut(dev)?;
        match parent {
            FilterParent::Ingress => match d.ingress_qdisc {
                Some(_) => Ok(&mut d.tc_ingress.block),
                None => Err(missing()),
            },
            FilterParent::Egress => match d.ingress_qdisc.map(|q| q.kind) {
                Some(IngressKind::Clsact) => Ok(&mut d.tc_egress.block),
                Some(IngressKind::Ingress) => Ok(&mut d.tc_ingress.block),
                None => Err(missing()),
            },
            FilterParent::Qdisc(h) => Ok(d.tc_egress.qdisc_block(h)),
        }
    }

    /// A classful qdisc with this handle, or a class with this classid.
    fn filter_parent_exists(&self, dev: DevId, h: u32) -> Result<bool, DatapathError> {
        let show = self.tc_show(dev)?;
        let hs = handle_str(h);
        let qdisc = show
            .qdisc
            .iter()
            .any(|q| h & 0xffff == 0 && q.handle == handle_str(tc_h_maj(h)) && q.kind != "noqueue");
        Ok(qdisc || show.class.iter().any(|c| c.handle == hs))
    }

    /// tc_new_tfilter / tc_del_tfilter on `dev`. Returns the filter's
    /// (prio, handle). `spec` is None for a delete.
    pub fn tc_filter(
        &mut self,
        dev: DevId,
        parent: FilterParent,
        cmd: FilterCmd,
        key: FilterKey,
        spec: Option<FilterSpec>,
    ) -> Result<(u16, u32), DatapathError> {
        // tcm_parent 0 / root: the root qdisc's own block.
        let parent = match parent {
            FilterParent::Qdisc(TC_H_ROOT) => {
                let show = self.tc_show(dev)?;
                let root = show.qdisc.iter().find(|q| q.root && q.kind != "noqueue");
                let h = root
                    .and_then(|q| q.handle.strip_suffix(':'))
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                    .ok_or_else(|| errno(EINVAL, "Parent Qdisc doesn't exists."))?;
                FilterParent::Qdisc(h << 16)
            }
            p => p,
        };
        let block = self.filter_block(dev, parent)?;
        match (cmd, spec) {
            (FilterCmd::Delete, _) => block
                .del_filter(key.chain, key.prio, key.handle)
                .map(|_| (key.prio, key.handle))
                .map_err(cls_err),
            (_, None) => Err(errno(EINVAL, "a filter kind is needed")),
            (c, Some(spec)) => block
                .add_filter(key, spec, c == FilterCmd::Replace)
                .map_err(cls_err),
        }
    }

    /// `tc -s -j filter show dev X` for every attachment point of the device.
    pub fn tc_filter_show(&self, dev: DevId) -> Result<Vec<FilterShow>, DatapathError> {
        let d = self.dev(dev)?;
        let mut out = Vec::new();
        let mut add = |parent: u32, b: &TcfBlock| {
            for json in b.dump() {
                out.push(FilterShow {
                    parent: handle_str(parent),
                    json,
                });
            }
        };
        add(ingress_parent(d), &d.tc_ingress.block);
        add(FilterParent::Egress.handle(), &d.tc_egress.block);
        for (h, b) in &d.tc_egress.qdisc_blocks {
            add(*h, b);
        }
        Ok(out)
    }

    /// `tc -s filter show dev X [ingress|egress|parent P]` text, all parents.
    pub fn tc_filter_text(&self, dev: DevId) -> Result<String, DatapathError> {
        let d = self.dev(dev)?;
        let mut s = String::new();
        let parents = [
            (ingress_parent(d), &d.tc_ingress.block),
            (FilterParent::Egress.handle(), &d.tc_egress.block),
        ];
        let qb = d.tc_egress.qdisc_blocks.iter().map(|(h, b)| (*h, b));
        for (h, b) in parents.into_iter().chain(qb) {
            s.push_str(&b.dump_text(&format!("parent {} ", handle_str(h))));
        }
        Ok(s)
    }

    fn actions_mut(&mut self, ns: NsId) -> &mut ActionTable {
        self.tc_actions.entry(ns).or_default()
    }

    /// tcf_action_add for an action of a namespace (`tc actions add`, or
    /// one given inline in a filter): its index from the table when 0.
    pub fn tc_action_add(
        &mut self,
        ns: NsId,
        make: impl FnOnce(u32) -> TcAction,
        kind: &str,
        index: u32,
        replace: bool,
        standalone: bool,
    ) -> Result<Arc<TcAction>, DatapathError> {
        let t = self.actions_mut(ns);
        let index = t.alloc_index(kind, index);
        let mut a = make(index);
        a.standalone = standalone;
        t.insert(a, replace).map_err(act_err)
    }

    /// `action KIND index N`: bind to an existing action.
    pub fn tc_action_get(
        &self,
        ns: NsId,
        kind: &str,
        index: u32,
    ) -> Result<Arc<TcAction>, DatapathError> {
        match self.tc_actions.get(&ns) {
            Some(t) => t.get(kind, index).map_err(act_err),
            None => Err(act_err(ActError::NotFound {
                kind: kind.into(),
                index,
            })),
        }
    }

    /// `tc actions del action KIND index N`.
    pub fn tc_action_del(&mut self, ns: NsId, kind: &str, index: u32) -> Result<(), DatapathError> {
        self.actions_mut(ns).remove(kind, index).map_err(act_err)
    }

    /// `tc -s -j actions show action KIND` for every kind in the namespace.
    pub fn tc_actions_show(&self, ns: NsId) -> Vec<Value> {
        let Some(t) = self.tc_actions.get(&ns) else {
            return Vec::new();
        };
        let mut kinds: Vec<&str> = t.iter().map(|a| a.kind()).collect();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|k| json!({"kind": k, "total acts": t.dump_kind(k).len(), "actions": t.dump_kind(k)}))
            .collect()
    }
}
