//! cls_fw (net/sched/cls_fw.c): filters keyed by the packet's mark
//! (`handle MARK[/MASK] fw`): `skb->mark & mask` equal to a filter's handle.

use serde_json::{json, Value};

use super::act_api::TcfExts;
use super::cls_api::{Classifier, ClsError, FilterSpec, HandleList, TcfEnv, TcfResult};
use super::cls_bpf::classid_name;
use crate::buff::SkBuff;

/// `tc filter add ... handle MARK[/MASK] fw [classid C] [action ...]`.
#[derive(Clone, Default)]
pub struct FwSpec {
    /// TCA_FW_MASK (0xffffffff when none is given).
    pub mask: u32,
    pub classid: u32,
    pub exts: TcfExts,
}

/// struct fw_head: one mask for all filters of the priority.
#[derive(Default)]
pub struct ClsFw {
    mask: u32,
    filters: HandleList<FwSpec>,
}

impl Classifier for ClsFw {
    fn kind(&self) -> &'static str {
        "fw"
    }

    /// net/sched/cls_fw.c: fw_classify — the filter whose id is the masked
    /// mark; its actions may say continue (then no match).
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        let id = skb.mark & self.mask;
        for (h, f) in self.filters.iter() {
            if *h != id {
                continue;
            }
            res.classid = f.classid;
            let r = f.exts.exec(skb, res, env);
            if r >= 0 {
                return r;
            }
        }
        -1
    }

    /// net/sched/cls_fw.c: fw_change — a handle is required (the mark) and
    /// every filter shares the first one's mask (EINVAL otherwise).
    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError> {
        let FilterSpec::Fw(spec) = spec else {
            return Err(ClsError::Invalid("not a fw filter".into()));
        };
        if handle == 0 {
            return Err(ClsError::Invalid("fw needs a handle (the mark)".into()));
        }
        if self.filters.is_empty() {
            self.mask = spec.mask;
        } else if spec.mask != self.mask {
            return Err(ClsError::Invalid(format!(
                "fw mask 0x{:x} differs from this priority's 0x{:x}",
                spec.mask, self.mask
            )));
        }
        self.filters.change("fw", handle, spec, replace)
    }

    fn delete(&mut self, handle: u32) -> Result<(), ClsError> {
        self.filters.delete("fw", handle)
    }

    fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    fn dump(&self) -> Vec<Value> {
        self.filters
            .iter()
            .map(|(h, f)| {
                let mut o = serde_json::Map::new();
                let fh = if self.mask != u32::MAX {
                    format!("0x{h:x}/0x{:x}", self.mask)
                } else {
                    format!("0x{h:x}")
                };
                o.insert("handle".into(), json!(fh));
                if f.classid != 0 {
                    o.insert("classid".into(), json!(classid_name(f.classid)));
                }
                if !f.exts.is_empty() {
                    o.insert("actions".into(), Value::Array(f.exts.dump()));
                }
                Value::Object(o)
            })
            .collect()
    }

    fn dump_text(&self) -> Vec<String> {
        self.filters
            .iter()
            .map(|(h, f)| {
                let mut t = if self.mask != u32::MAX {
                    format!("handle 0x{h:x}/0x{:x} ", self.mask)
                } else {
                    format!("handle 0x{h:x} ")
                };
                if f.classid != 0 {
                    t.push_str(&format!("classid {} ", classid_name(f.classid)));
                }
                t.push('\n');
                t.push_str(&f.exts.dump_text());
                t
            })
            .collect()
    }
}
