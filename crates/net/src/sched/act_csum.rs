//! act_csum (net/sched/act_csum.c): recompute the checksums of the IPv4
//! header and of the ICMP/IGMP/TCP/UDP message after a rewrite (pedit, nat).

use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};
use skiff_wire::checksum::{checksum, fold, pseudo_header_v4, sum};

use super::act_api::{control_name, ActOps, TcfCommon, TC_ACT_SHOT};
use super::cls_api::{network_offset, qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;

/// include/uapi/linux/tc_act/tc_csum.h: TCA_CSUM_UPDATE_FLAG_*.
pub const CSUM_IPV4HDR: u32 = 1;
pub const CSUM_ICMP: u32 = 2;
pub const CSUM_IGMP: u32 = 4;
pub const CSUM_TCP: u32 = 8;
pub const CSUM_UDP: u32 = 16;
pub const CSUM_UDPLITE: u32 = 32;
pub const CSUM_SCTP: u32 = 64;

/// The names `tc ... csum` takes, with their flags (m_csum.c).
pub const CSUM_NAMES: &[(&str, u32)] = &[
    ("iph", CSUM_IPV4HDR),
    ("ip4h", CSUM_IPV4HDR),
    ("ipv4h", CSUM_IPV4HDR),
    ("icmp", CSUM_ICMP),
    ("igmp", CSUM_IGMP),
    ("tcp", CSUM_TCP),
    ("udp", CSUM_UDP),
    ("udplite", CSUM_UDPLITE),
    ("sctp", CSUM_SCTP),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csum {
    pub update_flags: u32,
}

/// Why a recomputation failed (tcf_csum_ipv4 returning 0: a drop).
struct Fail;

fn set_u16(b: &mut [u8], at: usize, v: u16) -> Result<(), Fail> {
    b.get_mut(at..at + 2)
        .ok_or(Fail)?
        .copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// net/sched/act_csum.c: tcf_csum_ipv4 (its _icmp/_igmp/_tcp/_udp helpers):
/// the message checksums over the IP total length, then the header's.
fn tcf_csum_ipv4(flags: u32, b: &mut [u8]) -> Result<(), Fail> {
    let iph = b.get(..20).ok_or(Fail)?;
    let ihl = (iph[0] & 0x0f) as usize * 4;
    let ipl = u16::from_be_bytes([iph[2], iph[3]]) as usize;
    let frag = u16::from_be_bytes([iph[6], iph[7]]) & 0x1fff != 0;
    let proto = if frag { 0 } else { iph[9] };
    let src = Ipv4Addr::new(iph[12], iph[13], iph[14], iph[15]);
    let dst = Ipv4Addr::new(iph[16], iph[17], iph[18], iph[19]);
    let l4 = |b: &mut [u8], min: usize| -> Result<usize, Fail> {
        if ipl < ihl + min || b.len() < ihl + min {
            return Err(Fail);
        }
        Ok(ipl.min(b.len()) - ihl)
    };
    match proto {
        1 if flags & CSUM_ICMP != 0 => {
            let n = l4(b, 8)?;
            set_u16(b, ihl + 2, 0)?;
            let c = checksum(&b[ihl..ihl + n]);
            set_u16(b, ihl + 2, c)?;
        }
        2 if flags & CSUM_IGMP != 0 => {
            let n = l4(b, 8)?;
            set_u16(b, ihl + 2, 0)?;
            let c = checksum(&b[ihl..ihl + n]);
            set_u16(b, ihl + 2, c)?;
        }
        6 if flags & CSUM_TCP != 0 => {
            let n = l4(b, 20)?;
            set_u16(b, ihl + 16, 0)?;
            let c = fold(sum(&b[ihl..ihl + n], pseudo_header_v4(src, dst, 6, n)));
            set_u16(b, ihl + 16, c)?;
        }
        17 if flags & CSUM_UDP != 0 => udp4(b, ihl, ipl, src, dst)?,
        _ => {}
    }
    if flags & CSUM_IPV4HDR != 0 {
        if b.len() < ihl {
            return Err(Fail);
        }
        set_u16(b, 10, 0)?;
        let c = checksum(&b[..ihl]);
        set_u16(b, 10, c)?;
    }
    Ok(())
}

/// tcf_csum_ipv4_udp: only a UDP checksum in use is recomputed, over the
/// UDP length when it is sane (else left alone); 0 becomes CSUM_MANGLED_0.
fn udp4(b: &mut [u8], ihl: usize, ipl: usize, src: Ipv4Addr, dst: Ipv4Addr) -> Result<(), Fail> {
    let u = b.get(ihl..ihl + 8).ok_or(Fail)?;
    let ul = u16::from_be_bytes([u[4], u[5]]) as usize;
    if u16::from_be_bytes([u[6], u[7]]) == 0 {
        return Ok(());
    }
    if ul < 8 || ul > ipl.saturating_sub(ihl) || b.len() < ihl + ul {
        return Ok(());
    }
    set_u16(b, ihl + 6, 0)?;
    let mut c = fold(sum(&b[ihl..ihl + ul], pseudo_header_v4(src, dst, 17, ul)));
    if c == 0 {
        c = 0xffff;
    }
    set_u16(b, ihl + 6, c)
}

impl ActOps for Csum {
    fn kind(&self) -> &'static str {
        "csum"
    }

    /// net/sched/act_csum.c: tcf_csum_act — IPv4 only here (IPv6's have no
    /// header checksum; their TCP/UDP/ICMPv6 ones are in docs/differences.md).
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        _env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        if skb.protocol != 0x0800 {
            return common.control;
        }
        let off = network_offset(skb);
        let ok = match skb.data_mut().get_mut(off..) {
            Some(b) => tcf_csum_ipv4(self.update_flags, b).is_ok(),
            None => false,
        };
        if !ok {
            common.stats.drop_inc();
            return TC_ACT_SHOT;
        }
        common.control
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        out.insert("csum".into(), json!(self.names()));
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        format!("({}) action {}", self.names(), control_name(common.control))
    }
}

impl Csum {
    /// m_csum.c: print_tcf_csum's list ("iph, tcp").
    fn names(&self) -> String {
        let mut seen = 0;
        let mut v = Vec::new();
        for (n, f) in CSUM_NAMES {
            if self.update_flags & f != 0 && seen & f == 0 {
                seen |= f;
                v.push(*n);
            }
        }
        v.join(", ")
    }
}
