//! act_vlan (net/sched/act_vlan.c): pop, push or modify the outer VLAN tag
//! (the offloaded tag first, as skb_vlan_pop/skb_vlan_push keep it).

use serde_json::{json, Map, Value};

use super::act_api::{control_name, ActOps, TcfCommon};
use super::cls_api::{qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;
use crate::core::skb::{skb_vlan_push_inline, skb_vlan_untag};

/// include/uapi/linux/tc_act/tc_vlan.h: TCA_VLAN_ACT_POP/PUSH/MODIFY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanOp {
    Pop,
    /// Push (protocol, id, priority).
    Push {
        proto: u16,
        vid: u16,
        prio: u8,
    },
    /// Modify the id (and the priority when given); a packet without a tag is left.
    Modify {
        proto: u16,
        vid: u16,
        prio: Option<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vlan {
    pub op: VlanOp,
}

fn is_vlan(p: u16) -> bool {
    p == 0x8100 || p == 0x88a8
}

/// net/core/skbuff.c: __skb_vlan_pop — the in-frame outer tag removed;
/// Some(tci) with skb->protocol the inner type.
fn skb_vlan_pop_inframe(skb: &mut SkBuff) -> Option<u16> {
    skb_vlan_untag(skb);
    if !skb.vlan_present {
        return None;
    }
    let tci = skb.vlan_tci;
    skb.vlan_present = false;
    skb.vlan_tci = 0;
    skb.vlan_proto = 0;
    Some(tci)
}

/// net/core/skbuff.c: skb_vlan_pop — drop the outer tag, then move the next
/// in-frame tag (if any) to the offloaded one.
pub fn skb_vlan_pop(skb: &mut SkBuff) {
    if skb.vlan_present {
        skb.vlan_present = false;
        skb.vlan_tci = 0;
        skb.vlan_proto = 0;
    } else if !is_vlan(skb.protocol) || skb_vlan_pop_inframe(skb).is_none() {
        return;
    }
    if is_vlan(skb.protocol) {
        skb_vlan_untag(skb);
    }
}

/// net/core/skbuff.c: skb_vlan_push — an offloaded tag goes into the frame
/// first, the new one becomes the offloaded tag.
pub fn skb_vlan_push(skb: &mut SkBuff, proto: u16, tci: u16) {
    if skb.vlan_present {
        let outer = skb.vlan_proto;
        skb_vlan_push_inline(skb);
        skb.protocol = outer;
    }
    skb.vlan_present = true;
    skb.vlan_proto = proto;
    skb.vlan_tci = tci;
}

impl ActOps for Vlan {
    fn kind(&self) -> &'static str {
        "vlan"
    }

    /// net/sched/act_vlan.c: tcf_vlan_act.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        _env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        match self.op {
            VlanOp::Pop => skb_vlan_pop(skb),
            VlanOp::Push { proto, vid, prio } => {
                skb_vlan_push(skb, proto, vid | ((prio as u16) << 13))
            }
            VlanOp::Modify { proto, vid, prio } => {
                let tci = if skb.vlan_present {
                    let t = skb.vlan_tci;
                    skb.vlan_present = false;
                    Some(t)
                } else if is_vlan(skb.protocol) {
                    skb_vlan_pop_inframe(skb)
                } else {
                    None
                };
                if let Some(t) = tci {
                    let mut t = (t & !0x0fff) | vid;
                    if let Some(p) = prio {
                        t = (t & !0xe000) | ((p as u16) << 13);
                    }
                    skb.vlan_present = true;
                    skb.vlan_proto = proto;
                    skb.vlan_tci = t;
                }
            }
        }
        common.control
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        let (name, proto, vid, prio) = match self.op {
            VlanOp::Pop => ("pop", None, None, None),
            VlanOp::Push { proto, vid, prio } => ("push", Some(proto), Some(vid), Some(prio)),
            VlanOp::Modify { proto, vid, prio } => ("modify", Some(proto), Some(vid), prio),
        };
        out.insert("vlan_action".into(), json!(name));
        if let Some(v) = vid {
            out.insert("id".into(), json!(v));
        }
        if let Some(p) = proto {
            out.insert("protocol".into(), json!(super::cls_api::protocol_name(p)));
        }
        if let Some(p) = prio {
            out.insert("priority".into(), json!(p));
        }
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        let s = match self.op {
            VlanOp::Pop => "pop".to_string(),
            VlanOp::Push { proto, vid, prio } => format!(
                "push id {vid} protocol {} priority {prio}",
                super::cls_api::protocol_name(proto)
            ),
            VlanOp::Modify { proto, vid, prio } => format!(
                "modify id {vid} protocol {}{}",
                super::cls_api::protocol_name(proto),
                prio.map(|p| format!(" priority {p}")).unwrap_or_default()
            ),
        };
        format!("{s} {}", control_name(common.control))
    }
}
