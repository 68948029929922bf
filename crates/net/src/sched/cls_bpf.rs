//! cls_bpf (net/sched/cls_bpf.c): eBPF programs as filters, in
//! direct-action mode (the return value is the verdict) or classic mode (the
//! return value is a classid, then the filter's actions run).

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_vm::Program;

use super::act_api::{
    TcfExts, TC_ACT_OK, TC_ACT_RECLASSIFY, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_STOLEN,
    TC_ACT_TRAP, TC_ACT_UNSPEC,
};
use super::cls_api::{Classifier, ClsError, FilterSpec, HandleList, TcfEnv, TcfResult};
use crate::buff::SkBuff;

/// `tc filter add ... bpf [da] obj O sec S [classid C] [action ...]`.
pub struct BpfSpec {
    pub prog: Arc<Program>,
    /// TCA_BPF_FLAG_ACT_DIRECT (`da`, `direct-action`).
    pub direct_action: bool,
    /// `classid`/`flowid` (res.classid); 0 when none.
    pub classid: u32,
    /// How tc names the program ("cls.o:[tc]").
    pub name: String,
    pub exts: TcfExts,
}

/// struct cls_bpf_head: the programs of one priority, in the order added.
#[derive(Default)]
pub struct ClsBpf {
    plist: HandleList<BpfSpec>,
}

/// net/sched/cls_bpf.c: cls_bpf_exec_opcode — in direct-action mode only these
/// codes are actions; anything else (PIPE, QUEUED, out of range) is UNSPEC.
pub fn cls_bpf_exec_opcode(code: i64) -> i64 {
    match code {
        TC_ACT_OK | TC_ACT_SHOT | TC_ACT_STOLEN | TC_ACT_TRAP | TC_ACT_REDIRECT
        | TC_ACT_RECLASSIFY => code,
        _ => TC_ACT_UNSPEC,
    }
}

impl ClsBpf {
    /// The program and handle of each filter (for traces and attach lists).
    pub fn programs(&self) -> impl Iterator<Item = (u32, &Arc<Program>)> {
        self.plist.iter().map(|(h, s)| (*h, &s.prog))
    }
}

impl Classifier for ClsBpf {
    fn kind(&self) -> &'static str {
        "bpf"
    }

    /// net/sched/cls_bpf.c: cls_bpf_classify.
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        let mut ret = TC_ACT_UNSPEC;
        for (_, p) in self.plist.iter() {
            // qdisc_skb_cb(skb)->tc_classid = prog->res.classid (16 bits kept).
            skb.tc_classid = p.classid as u16;
            let filter_res = env.run_bpf(&p.prog, skb);
            if p.direct_action {
                res.classid = (p.classid & 0xffff_0000) | skb.tc_classid as u32;
                ret = cls_bpf_exec_opcode(filter_res);
                if ret == TC_ACT_UNSPEC {
                    continue;
                }
                break;
            }
            if filter_res == 0 {
                continue;
            }
            res.classid = if filter_res != -1 {
                filter_res as u32
            } else {
                p.classid
            };
            ret = p.exts.exec(skb, res, env);
            if ret < 0 {
                continue;
            }
            break;
        }
        ret
    }

    /// net/sched/cls_bpf.c: cls_bpf_change — handle 0 takes the next free
    /// one from 1 (idr_alloc_u32); a taken handle is EEXIST unless replacing.
    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError> {
        let FilterSpec::Bpf(spec) = spec else {
            return Err(ClsError::Invalid("not a bpf filter".into()));
        };
        self.plist.change("bpf", handle, spec, replace)
    }

    fn delete(&mut self, handle: u32) -> Result<(), ClsError> {
        self.plist.delete("bpf", handle)
    }

    fn is_empty(&self) -> bool {
        self.plist.is_empty()
    }

    /// net/sched/cls_bpf.c: cls_bpf_dump, as iproute2 f_bpf.c prints it.
    fn dump(&self) -> Vec<Value> {
        self.plist
            .iter()
            .map(|(h, s)| {
                let mut o = serde_json::Map::new();
                o.insert("handle".into(), json!(format!("0x{h:x}")));
                if s.classid != 0 {
                    o.insert("flowid".into(), json!(classid_name(s.classid)));
                }
                o.insert("bpf_name".into(), json!(s.name));
                if s.direct_action {
                    o.insert("direct-action".into(), json!(true));
                }
                o.insert("not_in_hw".into(), json!(true));
                o.insert("prog".into(), json!({"id": s.prog.id, "name": s.prog.name}));
                if !s.exts.is_empty() {
                    o.insert("actions".into(), Value::Array(s.exts.dump()));
                }
                Value::Object(o)
            })
            .collect()
    }

    fn single_direct_bpf(&self) -> Option<(&Arc<Program>, u32)> {
        match self.plist.items.as_slice() {
            [(_, s)] if s.direct_action && s.exts.is_empty() => Some((&s.prog, s.classid)),
            _ => None,
        }
    }

    fn dump_text(&self) -> Vec<String> {
        self.plist
            .iter()
            .map(|(h, s)| {
                let mut t = format!("handle 0x{h:x} ");
                if s.classid != 0 {
                    t.push_str(&format!("flowid {} ", classid_name(s.classid)));
                }
                t.push_str(&s.name);
                if s.direct_action {
                    t.push_str(" direct-action");
                }
                t.push_str(&format!(
                    " not_in_hw id {} name {}\n",
                    s.prog.id, s.prog.name
                ));
                t.push_str(&s.exts.dump_text());
                t
            })
            .collect()
    }
}

/// iproute2 tc/tc_util.c: sprint_tc_classid — "major:minor" in hex, "root",
/// "none", or ":minor" when the major is 0.
pub fn classid_name(h: u32) -> String {
    match h {
        0xffff_ffff => "root".into(),
        0 => "none".into(),
        h if h >> 16 == 0 => format!(":{:x}", h & 0xffff),
        h if h & 0xffff == 0 => format!("{:x}:", h >> 16),
        h => format!("{:x}:{:x}", h >> 16, h & 0xffff),
    }
}
