//! cls_matchall (net/sched/cls_matchall.c): one filter that matches every
//! packet: its classid, then its actions.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use super::act_api::TcfExts;
use super::cls_api::{Classifier, ClsError, FilterSpec, TcfEnv, TcfResult};
use super::cls_bpf::classid_name;
use crate::buff::SkBuff;

/// `tc filter add ... matchall [classid C] [action ...]`.
#[derive(Clone, Default)]
pub struct MatchallSpec {
    pub classid: u32,
    pub exts: TcfExts,
}

/// struct cls_mall_head: at most one filter per priority.
#[derive(Default)]
pub struct ClsMatchall {
    head: Option<(u32, MatchallSpec)>,
    /// pf->rhit: packets the filter took.
    rhit: AtomicU64,
}

impl Classifier for ClsMatchall {
    fn kind(&self) -> &'static str {
        "matchall"
    }

    /// net/sched/cls_matchall.c: mall_classify.
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        let Some((_, h)) = &self.head else {
            return -1;
        };
        res.classid = h.classid;
        self.rhit.fetch_add(1, Ordering::Relaxed);
        h.exts.exec(skb, res, env)
    }

    /// net/sched/cls_matchall.c: mall_change — EEXIST once the head is set;
    /// handle 0 is 1.
    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError> {
        let FilterSpec::Matchall(spec) = spec else {
            return Err(ClsError::Invalid("not a matchall filter".into()));
        };
        let handle = if handle == 0 { 1 } else { handle };
        match &self.head {
            Some((h, _)) if !(replace && *h == handle) => Err(ClsError::Exists {
                what: format!("matchall handle 0x{h:x}"),
            }),
            _ => {
                self.head = Some((handle, spec));
                Ok(handle)
            }
        }
    }

    fn delete(&mut self, handle: u32) -> Result<(), ClsError> {
        match &self.head {
            Some((h, _)) if *h == handle => {
                self.head = None;
                Ok(())
            }
            _ => Err(ClsError::NotFound {
                what: format!("matchall handle 0x{handle:x}"),
            }),
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    fn dump(&self) -> Vec<Value> {
        let Some((h, s)) = &self.head else {
            return Vec::new();
        };
        let mut o = serde_json::Map::new();
        o.insert("handle".into(), json!(format!("0x{h:x}")));
        if s.classid != 0 {
            o.insert("flowid".into(), json!(classid_name(s.classid)));
        }
        o.insert("not_in_hw".into(), json!(true));
        o.insert("hit".into(), json!(self.rhit.load(Ordering::Relaxed)));
        if !s.exts.is_empty() {
            o.insert("actions".into(), Value::Array(s.exts.dump()));
        }
        vec![Value::Object(o)]
    }

    fn dump_text(&self) -> Vec<String> {
        let Some((h, s)) = &self.head else {
            return Vec::new();
        };
        let mut t = format!("handle 0x{h:x} ");
        if s.classid != 0 {
            t.push_str(&format!("flowid {} ", classid_name(s.classid)));
        }
        t.push_str("\n  not_in_hw\n");
        t.push_str(&s.exts.dump_text());
        vec![t]
    }
}
