//! cls_basic (net/sched/cls_basic.c) with extended matches: each filter an
//! ematch tree (net/sched/ematch.c) of `cmp` matches (net/sched/em_cmp.c)
//! joined left to right by and/or, each maybe negated.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use super::act_api::TcfExts;
use super::cls_api::{Classifier, ClsError, FilterSpec, HandleList, TcfEnv, TcfResult};
use super::cls_bpf::classid_name;
use crate::buff::SkBuff;

/// include/uapi/linux/pkt_cls.h: TCF_LAYER_* (the header an offset counts from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Link,
    Network,
    Transport,
}

/// include/uapi/linux/tc_ematch/tc_em_cmp.h: TCF_EM_OPND_*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Gt,
    Lt,
}

/// struct tcf_em_cmp: `cmp(ALIGN at OFF [layer L] [mask M] [trans] OP VAL)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmCmp {
    /// TCF_EM_ALIGN_U8/U16/U32: 1, 2 or 4 bytes.
    pub align: u8,
    pub off: i32,
    pub layer: Layer,
    pub mask: u32,
    /// TCF_EM_CMP_TRANS: byte order transformed (the value read little-endian).
    pub trans: bool,
    pub op: CmpOp,
    pub val: u32,
}

/// include/uapi/linux/pkt_cls.h: TCF_EM_REL_* — how a match joins the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    End,
    And,
    Or,
}

/// One match of the tree with its TCF_EM_INVERT flag and relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ematch {
    pub cmp: EmCmp,
    pub invert: bool,
    pub rel: Relation,
}

/// `tc filter add ... basic [match EXPR] [classid C] [action ...]`.
#[derive(Clone, Default)]
pub struct BasicSpec {
    pub ematches: Vec<Ematch>,
    /// The expression as given (for dumps).
    pub text: String,
    pub classid: u32,
    pub exts: TcfExts,
}

struct BasicFilter {
    spec: BasicSpec,
    rcnt: AtomicU64,
    rhit: AtomicU64,
}

#[derive(Default)]
pub struct ClsBasic {
    flist: HandleList<BasicFilter>,
}

/// net/sched/ematch.c: tcf_get_base_ptr's header offset in the frame.
fn base_offset(skb: &SkBuff, layer: Layer) -> usize {
    let h = match layer {
        Layer::Link => skb.mac_header,
        Layer::Network => skb.network_header,
        // Before ip_rcv the transport header is reset to the network header.
        Layer::Transport => skb.transport_header.unwrap_or(skb.network_header),
    };
    h.saturating_sub(skb.data)
}

/// net/sched/em_cmp.c: em_cmp_match.
pub fn em_cmp_match(skb: &SkBuff, c: &EmCmp) -> bool {
    let start = base_offset(skb, c.layer) as i64 + c.off as i64;
    let Ok(start) = usize::try_from(start) else {
        return false;
    };
    let Some(b) = skb
        .data()
        .get(start..start.saturating_add(c.align as usize))
    else {
        return false;
    };
    let mut val = match *b {
        [x] => x as u32,
        [x, y] if c.trans => u16::from_le_bytes([x, y]) as u32,
        [x, y] => u16::from_be_bytes([x, y]) as u32,
        [w, x, y, z] if c.trans => u32::from_le_bytes([w, x, y, z]),
        [w, x, y, z] => u32::from_be_bytes([w, x, y, z]),
        _ => return false,
    };
    if c.mask != 0 {
        val &= c.mask;
    }
    match c.op {
        CmpOp::Eq => val == c.val,
        CmpOp::Lt => val < c.val,
        CmpOp::Gt => val > c.val,
    }
}

/// net/sched/ematch.c: __tcf_em_tree_match for a tree without containers —
/// left to right, ending early when an AND fails or an OR holds.
pub fn tcf_em_tree_match(skb: &SkBuff, tree: &[Ematch]) -> bool {
    let mut res = true;
    for m in tree {
        res = em_cmp_match(skb, &m.cmp) != m.invert;
        match m.rel {
            Relation::End => break,
            Relation::Or if res => break,
            Relation::And if !res => break,
            _ => {}
        }
    }
    res
}

impl Classifier for ClsBasic {
    fn kind(&self) -> &'static str {
        "basic"
    }

    /// net/sched/cls_basic.c: basic_classify.
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        for (_, f) in self.flist.iter() {
            f.rcnt.fetch_add(1, Ordering::Relaxed);
            if !tcf_em_tree_match(skb, &f.spec.ematches) {
                continue;
            }
            f.rhit.fetch_add(1, Ordering::Relaxed);
            res.classid = f.spec.classid;
            let r = f.spec.exts.exec(skb, res, env);
            if r >= 0 {
                return r;
            }
        }
        -1
    }

    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError> {
        let FilterSpec::Basic(spec) = spec else {
            return Err(ClsError::Invalid("not a basic filter".into()));
        };
        let f = BasicFilter {
            spec,
            rcnt: AtomicU64::new(0),
            rhit: AtomicU64::new(0),
        };
        self.flist.change("basic", handle, f, replace)
    }

    fn delete(&mut self, handle: u32) -> Result<(), ClsError> {
        self.flist.delete("basic", handle)
    }

    fn is_empty(&self) -> bool {
        self.flist.is_empty()
    }

    fn dump(&self) -> Vec<Value> {
        self.flist
            .iter()
            .map(|(h, f)| {
                let mut o = serde_json::Map::new();
                o.insert("handle".into(), json!(format!("0x{h:x}")));
                if f.spec.classid != 0 {
                    o.insert("flowid".into(), json!(classid_name(f.spec.classid)));
                }
                if !f.spec.text.is_empty() {
                    o.insert("ematch".into(), json!(f.spec.text));
                }
                o.insert(
                    "pcnt".into(),
                    json!({"rcnt": f.rcnt.load(Ordering::Relaxed),
                           "rhit": f.rhit.load(Ordering::Relaxed)}),
                );
                if !f.spec.exts.is_empty() {
                    o.insert("actions".into(), Value::Array(f.spec.exts.dump()));
                }
                Value::Object(o)
            })
            .collect()
    }

    fn dump_text(&self) -> Vec<String> {
        self.flist
            .iter()
            .map(|(h, f)| {
                let mut t = format!("handle 0x{h:x} ");
                if f.spec.classid != 0 {
                    t.push_str(&format!("flowid {} ", classid_name(f.spec.classid)));
                }
                t.push('\n');
                if !f.spec.text.is_empty() {
                    t.push_str(&format!("  {}\n", f.spec.text));
                }
                t.push_str(&format!(
                    "  (rule hit {} success {})\n",
                    f.rcnt.load(Ordering::Relaxed),
                    f.rhit.load(Ordering::Relaxed)
                ));
                t.push_str(&f.spec.exts.dump_text());
                t
            })
            .collect()
    }
}
