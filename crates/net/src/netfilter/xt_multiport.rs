//! net/netfilter/xt_multiport.c (revision 1): `-m multiport --sports /
//! --dports / --ports` with up to 15 ports or ranges, and `!`.

use super::ip_tables::XtPkt;
use super::xt_tcpudp::l4_ports;

/// XT_MULTIPORT_SOURCE / _DESTINATION / _EITHER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiportFlags {
    Source,
    Destination,
    Either,
}

/// XT_MULTI_PORTS.
pub const XT_MULTI_PORTS: usize = 15;

/// struct xt_multiport_v1: ports, with `pflags[i]` set where ports[i]..=ports[i+1] is a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtMultiport {
    pub flags: MultiportFlags,
    /// (min, max) per entry (a single port has min == max).
    pub ports: Vec<(u16, u16)>,
    pub invert: bool,
}

impl XtMultiport {
    /// multiport_mt: only TCP, UDP, UDP-Lite, SCTP and DCCP first fragments.
    pub fn matches(&self, p: &XtPkt, pkt: &[u8]) -> bool {
        if !matches!(p.proto, 6 | 17 | 136 | 132 | 33) {
            return false;
        }
        let Some((sp, dp)) = l4_ports(p, pkt) else {
            return false;
        };
        let hit = |port: u16| self.ports.iter().any(|&(a, b)| port >= a && port <= b);
        let m = match self.flags {
            MultiportFlags::Source => hit(sp),
            MultiportFlags::Destination => hit(dp),
            MultiportFlags::Either => hit(sp) || hit(dp),
        };
        m ^ self.invert
    }
}
