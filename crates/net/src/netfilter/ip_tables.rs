//! The part of a rule every packet is checked against first: struct ipt_ip
//! / ip6t_ip6 (-s, -d, -p, -i, -o, -f, each with `!`) and ip_packet_match /
//! ip6_packet_match; the packet's fields as the matches read them (the
//! xt_action_param's fragoff and thoff).

use std::net::IpAddr;

use skiff_wire::{
    Ipv4Packet, Ipv6ExtHeader, Ipv6Packet, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
    IPPROTO_ROUTING,
};

use super::{IfName, NfHookState, NfProto, IFNAMSIZ};

/// IPT_INV_* bits of ipt_ip.invflags.
pub const IPT_INV_VIA_IN: u8 = 0x01;
pub const IPT_INV_VIA_OUT: u8 = 0x02;
pub const IPT_INV_SRCIP: u8 = 0x08;
pub const IPT_INV_DSTIP: u8 = 0x10;
pub const IPT_INV_FRAG: u8 = 0x20;
pub const IPT_INV_PROTO: u8 = 0x40;

/// An interface name and mask as iptables sets them: `eth0` compares the
/// name and its NUL, `eth+` only the prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfMatch {
    pub name: IfName,
    pub mask: [u8; IFNAMSIZ],
}

impl IfMatch {
    /// xtables_parse_interface: `+` at the end matches any suffix.
    pub fn parse(s: &str) -> IfMatch {
        let (base, wild) = match s.strip_suffix('+') {
            Some(b) => (b, true),
            None => (s, false),
        };
        let name = IfName::new(base);
        let n = base.len().min(IFNAMSIZ - 1) + usize::from(!wild);
        let mut mask = [0u8; IFNAMSIZ];
        for m in mask.iter_mut().take(n) {
            *m = 0xff;
        }
        IfMatch { name, mask }
    }

    /// ifname_compare_aligned: 0 when the masked bytes are equal.
    fn matches(&self, dev: &IfName) -> bool {
        self.name
            .0
            .iter()
            .zip(dev.0.iter())
            .zip(self.mask.iter())
            .all(|((a, b), m)| (a ^ b) & m == 0)
    }

    /// iptables' printing: `eth0`, `eth+`.
    pub fn to_text(&self) -> String {
        let n = self.name.as_str();
        let full = self.mask.iter().filter(|&&m| m == 0xff).count();
        if full == n.len() {
            format!("{n}+")
        } else {
            n.to_string()
        }
    }
}

/// struct ipt_ip / ip6t_ip6: addresses with masks, interfaces, protocol,
/// the -f flag and the inversions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IptIp {
    pub src: Option<(IpAddr, u8)>,
    pub dst: Option<(IpAddr, u8)>,
    pub iniface: Option<IfMatch>,
    pub outiface: Option<IfMatch>,
    /// 0: any protocol.
    pub proto: u8,
    /// `-f`: only second and later fragments (IPv4).
    pub frag: bool,
    pub invflags: u8,
}

/// The masked address comparison (addr & mask) == net.
pub fn addr_in(a: IpAddr, net: IpAddr, plen: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(plen.min(32)))
                .unwrap_or(0);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(plen.min(128)))
                .unwrap_or(0);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

impl IptIp {
    fn inv(&self, bit: u8, cond: bool) -> bool {
        cond ^ (self.invflags & bit != 0)
    }

    /// ip_packet_match / ip6_packet_match: true when the packet matches.
    pub fn matches(&self, p: &XtPkt, st: &NfHookState) -> bool {
        if let Some((n, l)) = self.src {
            if !self.inv(IPT_INV_SRCIP, addr_in(p.src, n, l)) {
                return false;
            }
        }
        if let Some((n, l)) = self.dst {
            if !self.inv(IPT_INV_DSTIP, addr_in(p.dst, n, l)) {
                return false;
            }
        }
        let nul = IfName::default();
        if let Some(m) = &self.iniface {
            if !self.inv(
                IPT_INV_VIA_IN,
                m.matches(st.in_name.as_ref().unwrap_or(&nul)),
            ) {
                return false;
            }
        }
        if let Some(m) = &self.outiface {
            if !self.inv(
                IPT_INV_VIA_OUT,
                m.matches(st.out_name.as_ref().unwrap_or(&nul)),
            ) {
                return false;
            }
        }
        if self.proto != 0 && !self.inv(IPT_INV_PROTO, p.proto == self.proto) {
            return false;
        }
        if self.frag && !self.inv(IPT_INV_FRAG, p.fragoff != 0) {
            return false;
        }
        true
    }
}

/// The packet as the matches read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtPkt {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol (IPv6: after the extension headers, ipv6_find_hdr).
    pub proto: u8,
    /// The transport header's offset in the L3 packet (par->thoff).
    pub thoff: usize,
    /// The fragment offset in 8-byte units (par->fragoff); 0 for a first fragment.
    pub fragoff: u16,
    pub tos: u8,
    pub ttl: u8,
}

impl XtPkt {
    pub fn parse(family: NfProto, pkt: &[u8]) -> Option<XtPkt> {
        match (family, pkt.first().map(|b| b >> 4)) {
            (NfProto::Ipv4, _) | (NfProto::Netdev, Some(4)) => parse4(pkt),
            (NfProto::Ipv6, _) | (NfProto::Netdev, Some(6)) => parse6(pkt),
            _ => None,
        }
    }

    /// The transport header bytes (empty when the packet ends before it).
    pub fn l4<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        pkt.get(self.thoff..).unwrap_or(&[])
    }
}

fn parse4(pkt: &[u8]) -> Option<XtPkt> {
    let ip = Ipv4Packet::new_checked(pkt).ok()?;
    Some(XtPkt {
        src: IpAddr::V4(ip.src_addr()),
        dst: IpAddr::V4(ip.dst_addr()),
        proto: ip.protocol(),
        thoff: ip.header_len(),
        fragoff: (ip.frag_offset() / 8) as u16,
        tos: ip.tos(),
        ttl: ip.ttl(),
    })
}

/// ipv6_find_hdr: past hop-by-hop, routing, destination options and
/// fragment headers to the upper layer.
fn parse6(pkt: &[u8]) -> Option<XtPkt> {
    let ip = Ipv6Packet::new_checked(pkt).ok()?;
    let mut nh = ip.next_header();
    let mut off = skiff_wire::ipv6::HEADER_LEN;
    let mut fragoff = 0u16;
    for _ in 0..16 {
        match nh {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h = Ipv6ExtHeader::new_checked(pkt.get(off..)?).ok()?;
                nh = h.next_header();
                off += h.header_len();
            }
            IPPROTO_FRAGMENT => {
                let f = pkt.get(off..off + 8)?;
                nh = *f.first()?;
                fragoff = u16::from_be_bytes([*f.get(2)?, *f.get(3)?]) >> 3;
                off += 8;
                if fragoff != 0 {
                    break;
                }
            }
            _ => break,
        }
    }
    Some(XtPkt {
        src: IpAddr::V6(ip.src_addr()),
        dst: IpAddr::V6(ip.dst_addr()),
        proto: nh,
        thoff: off,
        fragoff,
        tos: ip.traffic_class(),
        ttl: ip.hop_limit(),
    })
}
