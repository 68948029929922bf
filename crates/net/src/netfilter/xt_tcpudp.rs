//! net/netfilter/xt_tcpudp.c: `-p tcp --sport/--dport/--tcp-flags/--syn`,
//! `-p udp --sport/--dport` (port ranges, each with `!`).

use super::ip_tables::XtPkt;

/// XT_TCP_INV_* / XT_UDP_INV_* bits.
pub const XT_TCP_INV_SRCPT: u8 = 0x01;
pub const XT_TCP_INV_DSTPT: u8 = 0x02;
pub const XT_TCP_INV_FLAGS: u8 = 0x04;

/// struct xt_tcp (the option match is not supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtTcp {
    pub spts: (u16, u16),
    pub dpts: (u16, u16),
    pub flg_mask: u8,
    pub flg_cmp: u8,
    pub invflags: u8,
}

/// struct xt_udp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtUdp {
    pub spts: (u16, u16),
    pub dpts: (u16, u16),
    pub invflags: u8,
}

pub const ALL_PORTS: (u16, u16) = (0, 0xffff);

/// port_match.
fn port_match(min: u16, max: u16, port: u16, invert: bool) -> bool {
    (port >= min && port <= max) ^ invert
}

/// The ports of a TCP or UDP header: none for a non-first fragment or a
/// header too short (tcp_mt: hotdrop on a short first fragment, which
/// skiff answers as no match).
fn ports<'a>(p: &XtPkt, pkt: &'a [u8], need: usize) -> Option<(u16, u16, &'a [u8])> {
    if p.fragoff != 0 {
        return None;
    }
    let l4 = p.l4(pkt);
    let h = l4.get(..need)?;
    let sp = u16::from_be_bytes([*h.first()?, *h.get(1)?]);
    let dp = u16::from_be_bytes([*h.get(2)?, *h.get(3)?]);
    Some((sp, dp, h))
}

impl XtTcp {
    /// tcp_mt.
    pub fn matches(&self, p: &XtPkt, pkt: &[u8]) -> bool {
        let Some((sp, dp, h)) = ports(p, pkt, 20) else {
            return false;
        };
        let flags = h.get(13).copied().unwrap_or(0);
        port_match(
            self.spts.0,
            self.spts.1,
            sp,
            self.invflags & XT_TCP_INV_SRCPT != 0,
        ) && port_match(
            self.dpts.0,
            self.dpts.1,
            dp,
            self.invflags & XT_TCP_INV_DSTPT != 0,
        ) && (((flags & self.flg_mask) == self.flg_cmp) ^ (self.invflags & XT_TCP_INV_FLAGS != 0))
    }
}

impl XtUdp {
    /// udp_mt.
    pub fn matches(&self, p: &XtPkt, pkt: &[u8]) -> bool {
        let Some((sp, dp, _)) = ports(p, pkt, 8) else {
            return false;
        };
        port_match(
            self.spts.0,
            self.spts.1,
            sp,
            self.invflags & XT_TCP_INV_SRCPT != 0,
        ) && port_match(
            self.dpts.0,
            self.dpts.1,
            dp,
            self.invflags & XT_TCP_INV_DSTPT != 0,
        )
    }
}

/// The (source, destination) ports of a TCP/UDP/SCTP/DCCP packet, for
/// multiport.
pub fn l4_ports(p: &XtPkt, pkt: &[u8]) -> Option<(u16, u16)> {
    ports(p, pkt, 4).map(|(s, d, _)| (s, d))
}
