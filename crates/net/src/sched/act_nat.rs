//! act_nat (net/sched/act_nat.c): stateless one-to-one IPv4 NAT — the
//! source (egress) or destination (ingress) address within a prefix
//! rewritten, with the IP, TCP/UDP and embedded ICMP-error checksums fixed
//! incrementally.

use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};
use skiff_wire::checksum::csum_replace4;

use super::act_api::{control_name, ActOps, TcfCommon, TC_ACT_SHOT};
use super::cls_api::{network_offset, qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nat {
    pub old_addr: Ipv4Addr,
    pub new_addr: Ipv4Addr,
    pub mask: u32,
    /// TCA_NAT_FLAG_EGRESS: rewrite the source, else the destination.
    pub egress: bool,
}

/// The checksum field at `at` updated for a 4-byte change from `from` to
/// `to` (csum_replace4 / inet_proto_csum_replace4 on CHECKSUM_NONE, with
/// the kernel's memory-order arithmetic).
fn fix(b: &mut [u8], at: usize, from: [u8; 4], to: [u8; 4]) -> Option<()> {
    let f = b.get_mut(at..at + 2)?;
    let sum = u16::from_le_bytes([f[0], f[1]]);
    let new = csum_replace4(sum, u32::from_le_bytes(from), u32::from_le_bytes(to));
    f.copy_from_slice(&new.to_le_bytes());
    Some(())
}

fn addr_at(b: &[u8], at: usize) -> Option<[u8; 4]> {
    b.get(at..at + 4).map(|a| [a[0], a[1], a[2], a[3]])
}

impl Nat {
    fn rewrite(&self, addr: [u8; 4]) -> [u8; 4] {
        let a = u32::from_be_bytes(addr);
        let n = (u32::from(self.new_addr) & self.mask) | (a & !self.mask);
        n.to_be_bytes()
    }

    fn matches(&self, addr: [u8; 4]) -> bool {
        (u32::from(self.old_addr) ^ u32::from_be_bytes(addr)) & self.mask == 0
    }

    /// tcf_nat_act on the IPv4 packet `b`; None is a drop.
    fn nat(&self, b: &mut [u8]) -> Option<()> {
        let aoff = if self.egress { 12 } else { 16 };
        let addr = addr_at(b, aoff)?;
        b.get(..20)?;
        let frag = u16::from_be_bytes([b[6], b[7]]) & 0x1fff != 0;
        let mut new = addr;
        if self.matches(addr) {
            new = self.rewrite(addr);
            b[aoff..aoff + 4].copy_from_slice(&new);
            fix(b, 10, addr, new)?;
        } else if frag || b[9] != 1 {
            return Some(());
        }
        let ihl = (b[0] & 0x0f) as usize * 4;
        match if frag { 0 } else { b[9] } {
            6 => {
                b.get(ihl..ihl + 20)?;
                fix(b, ihl + 16, addr, new)?;
            }
            17 => {
                let u = b.get(ihl..ihl + 8)?;
                if u[6] != 0 || u[7] != 0 {
                    fix(b, ihl + 6, addr, new)?;
                    if b[ihl + 6] == 0 && b[ihl + 7] == 0 {
                        b[ihl + 6..ihl + 8].copy_from_slice(&[0xff, 0xff]);
                    }
                }
            }
            1 => self.icmp_error(b, ihl)?,
            _ => {}
        }
        Some(())
    }

    /// The ICMP case: an error's embedded header gets the reverse rewrite.
    fn icmp_error(&self, b: &mut [u8], ihl: usize) -> Option<()> {
        let ty = *b.get(ihl)?;
        b.get(ihl..ihl + 8)?;
        // icmp_is_err: unreachable, source quench, redirect, time exceeded, parameter problem.
        if !matches!(ty, 3 | 4 | 5 | 11 | 12) {
            return Some(());
        }
        let inner = ihl + 8;
        b.get(inner..inner + 20)?;
        let aoff = inner + if self.egress { 16 } else { 12 };
        let addr = addr_at(b, aoff)?;
        if !self.matches(addr) {
            return Some(());
        }
        let new = self.rewrite(addr);
        b[aoff..aoff + 4].copy_from_slice(&new);
        fix(b, ihl + 2, addr, new)
    }
}

impl ActOps for Nat {
    fn kind(&self) -> &'static str {
        "nat"
    }

    /// net/sched/act_nat.c: tcf_nat_act — only IPv4; a truncated header is a drop.
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
        let ok = skb
            .data_mut()
            .get_mut(off..)
            .and_then(|b| self.nat(b))
            .is_some();
        if !ok {
            common.stats.drop_inc();
            return TC_ACT_SHOT;
        }
        common.control
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        out.insert(
            "direction".into(),
            json!(if self.egress { "egress" } else { "ingress" }),
        );
        out.insert(
            "old_addr".into(),
            json!(format!("{}/{}", self.old_addr, self.mask.count_ones())),
        );
        out.insert("new_addr".into(), json!(self.new_addr.to_string()));
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        format!(
            "{} {}/{} {} {}",
            if self.egress { "egress" } else { "ingress" },
            self.old_addr,
            self.mask.count_ones(),
            self.new_addr,
            control_name(common.control)
        )
    }
}
