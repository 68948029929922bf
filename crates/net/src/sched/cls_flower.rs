//! cls_flower (net/sched/cls_flower.c): filters on dissected packet keys —
//! Ethernet addresses and type, VLAN id/priority/inner type, IPv4/IPv6
//! addresses, IP protocol, TOS, TTL, L4 ports, TCP flags, ICMP type/code —
//! each with a mask. Filters sharing a mask are looked up by their masked
//! key; masks are tried in the order they were first used.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

use super::act_api::TcfExts;
use super::cls_api::{
    network_offset, protocol_name, Classifier, ClsError, FilterSpec, HandleList, TcfEnv, TcfResult,
};
use super::cls_bpf::classid_name;
use crate::buff::SkBuff;

/// struct fl_flow_key: the keys flower matches (host order), also used as
/// its own mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowerKey {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// basic.n_proto: the EtherType after any VLAN tag.
    pub n_proto: u16,
    pub ip_proto: u8,
    pub vlan_id: u16,
    pub vlan_prio: u8,
    /// vlan.vlan_tpid when a tag is present.
    pub vlan_tpid: u16,
    pub ipv4_src: u32,
    pub ipv4_dst: u32,
    pub ipv6_src: u128,
    pub ipv6_dst: u128,
    pub src_port: u16,
    pub dst_port: u16,
    pub ip_tos: u8,
    pub ip_ttl: u8,
    pub tcp_flags: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

fn and6(a: [u8; 6], b: [u8; 6]) -> [u8; 6] {
    let mut r = [0; 6];
    for i in 0..6 {
        r[i] = a[i] & b[i];
    }
    r
}

impl FlowerKey {
    /// fl_set_masked_key: the key under `m`.
    pub fn masked(&self, m: &FlowerKey) -> FlowerKey {
        FlowerKey {
            dst_mac: and6(self.dst_mac, m.dst_mac),
            src_mac: and6(self.src_mac, m.src_mac),
            n_proto: self.n_proto & m.n_proto,
            ip_proto: self.ip_proto & m.ip_proto,
            vlan_id: self.vlan_id & m.vlan_id,
            vlan_prio: self.vlan_prio & m.vlan_prio,
            vlan_tpid: self.vlan_tpid & m.vlan_tpid,
            ipv4_src: self.ipv4_src & m.ipv4_src,
            ipv4_dst: self.ipv4_dst & m.ipv4_dst,
            ipv6_src: self.ipv6_src & m.ipv6_src,
            ipv6_dst: self.ipv6_dst & m.ipv6_dst,
            src_port: self.src_port & m.src_port,
            dst_port: self.dst_port & m.dst_port,
            ip_tos: self.ip_tos & m.ip_tos,
            ip_ttl: self.ip_ttl & m.ip_ttl,
            tcp_flags: self.tcp_flags & m.tcp_flags,
            icmp_type: self.icmp_type & m.icmp_type,
            icmp_code: self.icmp_code & m.icmp_code,
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn be128(b: &[u8], at: usize) -> Option<u128> {
    let s = b.get(at..at + 16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    Some(u128::from_be_bytes(a))
}

/// net/core/flow_dissector.c: __skb_flow_dissect for flower's keys: the
/// offloaded VLAN tag (or one in the frame), then IPv4/IPv6, then the L4
/// ports/flags/ICMP header of a packet that is not a fragment.
pub fn fl_dissect(skb: &SkBuff) -> FlowerKey {
    let mut k = FlowerKey::default();
    let d = skb.data();
    let mac = skb.mac_header.saturating_sub(skb.data);
    if let Some(h) = d.get(mac..mac + 12) {
        k.dst_mac.copy_from_slice(&h[..6]);
        k.src_mac.copy_from_slice(&h[6..12]);
    }
    let mut l3 = network_offset(skb);
    let mut proto = skb.protocol;
    if skb.vlan_present {
        k.vlan_id = skb.vlan_tci & 0x0fff;
        k.vlan_prio = (skb.vlan_tci >> 13) as u8;
        k.vlan_tpid = skb.vlan_proto;
    } else if proto == 0x8100 || proto == 0x88a8 {
        if let (Some(tci), Some(inner)) = (be16(d, l3), be16(d, l3 + 2)) {
            k.vlan_id = tci & 0x0fff;
            k.vlan_prio = (tci >> 13) as u8;
            k.vlan_tpid = proto;
            proto = inner;
            l3 += 4;
        }
    }
    k.n_proto = proto;
    let (l4, frag) = match proto {
        0x0800 => dissect_ipv4(d, l3, &mut k),
        0x86dd => dissect_ipv6(d, l3, &mut k),
        _ => return k,
    };
    if let (Some(l4), false) = (l4, frag) {
        dissect_l4(d, l4, &mut k);
    }
    k
}

fn dissect_ipv4(d: &[u8], l3: usize, k: &mut FlowerKey) -> (Option<usize>, bool) {
    let Some(h) = d.get(l3..l3 + 20) else {
        return (None, false);
    };
    let ihl = (h[0] & 0x0f) as usize * 4;
    k.ip_tos = h[1];
    k.ip_ttl = h[8];
    k.ip_proto = h[9];
    k.ipv4_src = be32(h, 12).unwrap_or(0);
    k.ipv4_dst = be32(h, 16).unwrap_or(0);
    let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    (Some(l3 + ihl), frag)
}

fn dissect_ipv6(d: &[u8], l3: usize, k: &mut FlowerKey) -> (Option<usize>, bool) {
    let Some(h) = d.get(l3..l3 + 40) else {
        return (None, false);
    };
    k.ip_tos = (h[0] << 4) | (h[1] >> 4);
    k.ip_ttl = h[7];
    k.ip_proto = h[6];
    k.ipv6_src = be128(h, 8).unwrap_or(0);
    k.ipv6_dst = be128(h, 24).unwrap_or(0);
    (Some(l3 + 40), false)
}

fn dissect_l4(d: &[u8], l4: usize, k: &mut FlowerKey) {
    match k.ip_proto {
        6 | 17 | 132 => {
            k.src_port = be16(d, l4).unwrap_or(0);
            k.dst_port = be16(d, l4 + 2).unwrap_or(0);
            if k.ip_proto == 6 {
                k.tcp_flags = be16(d, l4 + 12).unwrap_or(0) & 0x0fff;
            }
        }
        1 | 58 => {
            k.icmp_type = d.get(l4).copied().unwrap_or(0);
            k.icmp_code = d.get(l4 + 1).copied().unwrap_or(0);
        }
        _ => {}
    }
}

/// `tc filter add ... flower KEYS [classid C] [action ...]`.
#[derive(Clone, Default)]
pub struct FlowerSpec {
    pub key: FlowerKey,
    pub mask: FlowerKey,
    pub classid: u32,
    pub exts: TcfExts,
}

/// struct cls_fl_head: the filters and the masks in first-use order.
#[derive(Default)]
pub struct ClsFlower {
    filters: HandleList<FlowerSpec>,
    masks: Vec<FlowerKey>,
}

impl Classifier for ClsFlower {
    fn kind(&self) -> &'static str {
        "flower"
    }

    /// net/sched/cls_flower.c: fl_classify — per mask, the filter whose
    /// masked key is the packet's; its actions' verdict is the answer.
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        let pkt = fl_dissect(skb);
        for m in &self.masks {
            let want = pkt.masked(m);
            let hit = self
                .filters
                .iter()
                .find(|(_, f)| f.mask == *m && f.key == want);
            if let Some((_, f)) = hit {
                res.classid = f.classid;
                return f.exts.exec(skb, res, env);
            }
        }
        -1
    }

    /// net/sched/cls_flower.c: fl_change — the key stored masked; the same
    /// key and mask twice is EEXIST ("Filter already exists").
    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError> {
        let FilterSpec::Flower(mut spec) = spec else {
            return Err(ClsError::Invalid("not a flower filter".into()));
        };
        spec.key = spec.key.masked(&spec.mask);
        let dup = self
            .filters
            .iter()
            .any(|(h, f)| *h != handle && f.mask == spec.mask && f.key == spec.key);
        if dup {
            return Err(ClsError::Exists {
                what: "flower (same key and mask)".into(),
            });
        }
        let mask = spec.mask;
        let h = self.filters.change("flower", handle, spec, replace)?;
        if !self.masks.contains(&mask) {
            self.masks.push(mask);
        }
        Ok(h)
    }

    fn delete(&mut self, handle: u32) -> Result<(), ClsError> {
        self.filters.delete("flower", handle)?;
        let used: Vec<FlowerKey> = self.filters.iter().map(|(_, f)| f.mask).collect();
        self.masks.retain(|m| used.contains(m));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    fn dump(&self) -> Vec<Value> {
        self.filters
            .iter()
            .map(|(h, f)| {
                let mut o = Map::new();
                o.insert("handle".into(), json!(format!("0x{h:x}")));
                if f.classid != 0 {
                    o.insert("classid".into(), json!(classid_name(f.classid)));
                }
                o.insert("keys".into(), Value::Object(dump_keys(f)));
                o.insert("not_in_hw".into(), json!(true));
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
                let mut t = format!("handle 0x{h:x} ");
                if f.classid != 0 {
                    t.push_str(&format!("classid {} ", classid_name(f.classid)));
                }
                t.push('\n');
                for (k, v) in dump_keys(f) {
                    let v = v.as_str().map(String::from).unwrap_or(v.to_string());
                    t.push_str(&format!("  {k} {v}\n"));
                }
                t.push_str("  not_in_hw\n");
                t.push_str(&f.exts.dump_text());
                t
            })
            .collect()
    }
}

fn mac_name(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The keys a filter matches on, as f_flower.c prints them.
fn dump_keys(f: &FlowerSpec) -> Map<String, Value> {
    let (k, m) = (&f.key, &f.mask);
    let mut o = Map::new();
    if m.vlan_id != 0 {
        o.insert("vlan_id".into(), json!(k.vlan_id));
    }
    if m.vlan_prio != 0 {
        o.insert("vlan_prio".into(), json!(k.vlan_prio));
    }
    if m.dst_mac != [0; 6] {
        o.insert("dst_mac".into(), json!(mac_name(k.dst_mac)));
    }
    if m.src_mac != [0; 6] {
        o.insert("src_mac".into(), json!(mac_name(k.src_mac)));
    }
    if m.n_proto != 0 {
        o.insert("eth_type".into(), json!(eth_type_name(k.n_proto)));
    }
    if m.ip_proto != 0 {
        o.insert("ip_proto".into(), json!(ip_proto_name(k.ip_proto)));
    }
    if m.ip_tos != 0 {
        o.insert("ip_tos".into(), json!(format!("0x{:x}", k.ip_tos)));
    }
    if m.ip_ttl != 0 {
        o.insert("ip_ttl".into(), json!(k.ip_ttl));
    }
    let v4 = |a: u32, mk: u32| format!("{}/{}", Ipv4Addr::from(a), mk.count_ones());
    let v6 = |a: u128, mk: u128| format!("{}/{}", Ipv6Addr::from(a), mk.count_ones());
    if m.ipv4_dst != 0 {
        o.insert("dst_ip".into(), json!(v4(k.ipv4_dst, m.ipv4_dst)));
    }
    if m.ipv4_src != 0 {
        o.insert("src_ip".into(), json!(v4(k.ipv4_src, m.ipv4_src)));
    }
    if m.ipv6_dst != 0 {
        o.insert("dst_ip".into(), json!(v6(k.ipv6_dst, m.ipv6_dst)));
    }
    if m.ipv6_src != 0 {
        o.insert("src_ip".into(), json!(v6(k.ipv6_src, m.ipv6_src)));
    }
    if m.dst_port != 0 {
        o.insert("dst_port".into(), json!(k.dst_port));
    }
    if m.src_port != 0 {
        o.insert("src_port".into(), json!(k.src_port));
    }
    if m.tcp_flags != 0 {
        o.insert(
            "tcp_flags".into(),
            json!(format!("0x{:x}/{:x}", k.tcp_flags, m.tcp_flags)),
        );
    }
    if m.icmp_type != 0 {
        o.insert("icmp_type".into(), json!(k.icmp_type));
    }
    if m.icmp_code != 0 {
        o.insert("icmp_code".into(), json!(k.icmp_code));
    }
    o
}

fn eth_type_name(p: u16) -> String {
    match p {
        0x0800 => "ipv4".into(),
        p => protocol_name(p),
    }
}

fn ip_proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        p => p.to_string(),
    }
}
