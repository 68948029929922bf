//! act_skbedit (net/sched/act_skbedit.c): set sk_buff fields — priority
//! (the class a prio/htb qdisc may pick by), mark under a mask, packet type,
//! priority from the DS field.

use serde_json::{json, Map, Value};

use super::act_api::{control_name, ActOps, TcfCommon, TC_ACT_SHOT};
use super::cls_api::{network_offset, qdisc_pkt_len, TcfEnv, TcfResult};
use super::cls_bpf::classid_name;
use crate::buff::SkBuff;

/// The fields `skbedit` sets (SKBEDIT_F_*).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skbedit {
    pub priority: Option<u32>,
    /// (mark, mask): skb->mark = (mark & ~mask) | (value & mask).
    pub mark: Option<(u32, u32)>,
    pub ptype: Option<u8>,
    pub inherit_dsfield: bool,
}

/// ETH_P_IP / ETH_P_IPV6 after any VLAN tags (skb_protocol(skb, true)).
fn l3_protocol(skb: &SkBuff) -> u16 {
    skb.protocol
}

impl ActOps for Skbedit {
    fn kind(&self) -> &'static str {
        "skbedit"
    }

    /// net/sched/act_skbedit.c: tcf_skbedit_act — a DS field that is not in
    /// the packet is a drop.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        _env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        if let Some(p) = self.priority {
            skb.priority = p;
        }
        if self.inherit_dsfield {
            let off = network_offset(skb);
            let (need, dsfield) = match l3_protocol(skb) {
                0x0800 => (20, skb.data().get(off + 1).copied()),
                0x86dd => {
                    let b = skb.data().get(off..off + 2);
                    (40, b.map(|b| (b[0] << 4) | (b[1] >> 4)))
                }
                _ => (0, None),
            };
            if need != 0 {
                match dsfield {
                    Some(ds) if skb.data().len() >= off + need => {
                        skb.priority = (ds >> 2) as u32;
                    }
                    _ => {
                        common.stats.drop_inc();
                        return TC_ACT_SHOT;
                    }
                }
            }
        }
        if let Some((mark, mask)) = self.mark {
            skb.mark = (skb.mark & !mask) | (mark & mask);
        }
        if let Some(t) = self.ptype {
            skb.pkt_type = t;
        }
        common.control
    }

    fn dump(&self, common: &TcfCommon, out: &mut Map<String, Value>) {
        if let Some(p) = self.priority {
            out.insert("priority".into(), json!(classid_name(p)));
        }
        if let Some((m, mask)) = self.mark {
            out.insert("mark".into(), json!(m));
            if mask != u32::MAX {
                out.insert("mask".into(), json!(format!("0x{mask:x}")));
            }
        }
        if let Some(t) = self.ptype {
            out.insert("ptype".into(), json!(ptype_name(t)));
        }
        if self.inherit_dsfield {
            out.insert("inheritdsfield".into(), json!(true));
        }
        let _ = common;
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        let mut s = String::new();
        if let Some(p) = self.priority {
            s.push_str(&format!("priority {} ", classid_name(p)));
        }
        if let Some((m, mask)) = self.mark {
            s.push_str(&format!("mark {m}"));
            if mask != u32::MAX {
                s.push_str(&format!("/0x{mask:x}"));
            }
            s.push(' ');
        }
        if let Some(t) = self.ptype {
            s.push_str(&format!("ptype {} ", ptype_name(t)));
        }
        if self.inherit_dsfield {
            s.push_str("inheritdsfield ");
        }
        s.push_str(&control_name(common.control));
        s
    }
}

/// The packet types `skbedit ptype` names (host, otherhost, broadcast, multicast).
pub fn ptype_name(t: u8) -> &'static str {
    match t {
        0 => "host",
        1 => "broadcast",
        2 => "multicast",
        3 => "otherhost",
        _ => "unknown",
    }
}
