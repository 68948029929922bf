//! act_pedit (net/sched/act_pedit.c): rewrite 32-bit words of the packet
//! at offsets from a header (`munge ... set|add VAL`), keys as iproute2's
//! m_pedit.c packs them.

use serde_json::{json, Map, Value};

use super::act_api::{control_name, ActOps, TcfCommon};
use super::cls_api::{qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;

/// include/uapi/linux/tc_act/tc_pedit.h: enum pedit_header_type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeditHeader {
    /// TCA_PEDIT_KEY_EX_HDR_TYPE_NETWORK (the legacy, non-`ex` keys).
    Network,
    Eth,
    Ip4,
    Ip6,
    Tcp,
    Udp,
}

/// enum pedit_cmd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeditCmd {
    Set,
    Add,
}

/// struct tc_pedit_key (+ its _ex part). `val` and `mask` are the words as
/// they lie in memory read little-endian (the kernel's u32 on x86): tc puts
/// htonl(value) there, and ADD adds those words as the CPU reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeditKey {
    /// Bits kept (tc: the inverse of what is written).
    pub mask: u32,
    pub val: u32,
    pub off: i32,
    pub htype: PeditHeader,
    pub cmd: PeditCmd,
}

impl PeditKey {
    /// A key from host-order value/keep-mask words as m_pedit.c packs them
    /// (htonl) into the kernel's memory order.
    pub fn from_host(val: u32, mask: u32, off: i32, htype: PeditHeader, cmd: PeditCmd) -> Self {
        PeditKey {
            mask: u32::from_le_bytes(mask.to_be_bytes()),
            val: u32::from_le_bytes(val.to_be_bytes()),
            off,
            htype,
            cmd,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pedit {
    pub keys: Vec<PeditKey>,
    /// `ex`: TCA_PEDIT_KEYS_EX sent.
    pub extended: bool,
}

/// net/sched/act_pedit.c: pedit_skb_hdr_offset, from the frame's start;
/// None is "bad header type" (the key fails).
fn hdr_offset(skb: &SkBuff, h: PeditHeader) -> Option<usize> {
    let noff = skb.network_header.saturating_sub(skb.data);
    match h {
        PeditHeader::Eth => Some(skb.mac_header.saturating_sub(skb.data)),
        PeditHeader::Network | PeditHeader::Ip4 | PeditHeader::Ip6 => Some(noff),
        PeditHeader::Tcp | PeditHeader::Udp => pedit_l4_skb_offset(skb, noff, h),
    }
}

/// net/sched/act_pedit.c: pedit_l4_skb_offset — after the IPv4 header's
/// ihl, or the IPv6 header when its next header is the one asked for
/// (ipv6_find_hdr; extension headers are not walked here).
fn pedit_l4_skb_offset(skb: &SkBuff, noff: usize, h: PeditHeader) -> Option<usize> {
    let d = skb.data();
    match skb.protocol {
        0x0800 => d.get(noff).map(|b| noff + (b & 0x0f) as usize * 4),
        0x86dd => {
            let want = if h == PeditHeader::Tcp { 6 } else { 17 };
            (d.get(noff + 6) == Some(&want)).then_some(noff + 40)
        }
        _ => None,
    }
}

impl ActOps for Pedit {
    fn kind(&self) -> &'static str {
        "pedit"
    }

    /// net/sched/act_pedit.c: tcf_pedit_act — each key: `*ptr = (*ptr &
    /// mask) ^ val` (SET) or `^ ((*ptr + val) & ~mask)` (ADD); a key outside
    /// the packet ends the walk as an overlimit, the verdict unchanged.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        _env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        for k in &self.keys {
            let at = hdr_offset(skb, k.htype).map(|h| h as i64 + k.off as i64);
            let word = at
                .and_then(|a| usize::try_from(a).ok())
                .and_then(|a| skb.data_mut().get_mut(a..a.checked_add(4)?));
            let Some(w) = word else {
                common.stats.overlimit_inc();
                break;
            };
            let cur = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let val = match k.cmd {
                PeditCmd::Set => k.val,
                PeditCmd::Add => cur.wrapping_add(k.val) & !k.mask,
            };
            w.copy_from_slice(&((cur & k.mask) ^ val).to_le_bytes());
        }
        common.control
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                let mut o = json!({
                    "htype": htype_name(k.htype),
                    "offset": k.off,
                    "cmd": if k.cmd == PeditCmd::Set { "set" } else { "add" },
                    "val": format!("{:08x}", u32::from_be_bytes(k.val.to_le_bytes())),
                    "mask": format!("{:08x}", u32::from_be_bytes(k.mask.to_le_bytes())),
                });
                if !self.extended {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("htype");
                        m.remove("cmd");
                    }
                }
                o
            })
            .collect();
        out.insert("nkeys".into(), json!(self.keys.len()));
        out.insert("keys".into(), Value::Array(keys));
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        let mut s = format!(
            "action {} keys {}\n",
            control_name(common.control),
            self.keys.len()
        );
        for (i, k) in self.keys.iter().enumerate() {
            s.push_str(&format!(
                "\t key #{i}  at {}: val {:08x} mask {:08x}\n",
                k.off,
                u32::from_be_bytes(k.val.to_le_bytes()),
                u32::from_be_bytes(k.mask.to_le_bytes())
            ));
        }
        s
    }
}

fn htype_name(h: PeditHeader) -> &'static str {
    match h {
        PeditHeader::Network => "network",
        PeditHeader::Eth => "eth",
        PeditHeader::Ip4 => "ipv4",
        PeditHeader::Ip6 => "ipv6",
        PeditHeader::Tcp => "tcp",
        PeditHeader::Udp => "udp",
    }
}
