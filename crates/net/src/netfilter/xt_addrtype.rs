//! net/netfilter/xt_addrtype.c (revision 1): `-m addrtype --src-type /
//! --dst-type TYPE[,TYPE...]` with `!`. The stack gives the hook the types of
//! the packet's addresses (inet_addr_type: the route in table local).

/// XT_ADDRTYPE_* = 1 << RTN_*.
pub const XT_ADDRTYPE_UNSPEC: u16 = 1 << 0;
pub const XT_ADDRTYPE_UNICAST: u16 = 1 << 1;
pub const XT_ADDRTYPE_LOCAL: u16 = 1 << 2;
pub const XT_ADDRTYPE_BROADCAST: u16 = 1 << 3;
pub const XT_ADDRTYPE_ANYCAST: u16 = 1 << 4;
pub const XT_ADDRTYPE_MULTICAST: u16 = 1 << 5;
pub const XT_ADDRTYPE_BLACKHOLE: u16 = 1 << 6;
pub const XT_ADDRTYPE_UNREACHABLE: u16 = 1 << 7;
pub const XT_ADDRTYPE_PROHIBIT: u16 = 1 << 8;
pub const XT_ADDRTYPE_THROW: u16 = 1 << 9;
pub const XT_ADDRTYPE_NAT: u16 = 1 << 10;
pub const XT_ADDRTYPE_XRESOLVE: u16 = 1 << 11;

/// The names iptables accepts and prints, in its order.
pub const ADDRTYPE_NAMES: [(&str, u16); 12] = [
    ("UNSPEC", XT_ADDRTYPE_UNSPEC),
    ("UNICAST", XT_ADDRTYPE_UNICAST),
    ("LOCAL", XT_ADDRTYPE_LOCAL),
    ("BROADCAST", XT_ADDRTYPE_BROADCAST),
    ("ANYCAST", XT_ADDRTYPE_ANYCAST),
    ("MULTICAST", XT_ADDRTYPE_MULTICAST),
    ("BLACKHOLE", XT_ADDRTYPE_BLACKHOLE),
    ("UNREACHABLE", XT_ADDRTYPE_UNREACHABLE),
    ("PROHIBIT", XT_ADDRTYPE_PROHIBIT),
    ("THROW", XT_ADDRTYPE_THROW),
    ("NAT", XT_ADDRTYPE_NAT),
    ("XRESOLVE", XT_ADDRTYPE_XRESOLVE),
];

/// struct xt_addrtype_info_v1 (the --limit-iface-* flags are not supported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtAddrtype {
    pub source: u16,
    pub dest: u16,
    pub invert_source: bool,
    pub invert_dest: bool,
}

impl XtAddrtype {
    /// addrtype_mt_v1: each given type set must contain the address's type.
    pub fn matches(&self, src_type: u16, dst_type: u16) -> bool {
        if self.source != 0 && ((self.source & src_type != 0) == self.invert_source) {
            return false;
        }
        if self.dest != 0 && ((self.dest & dst_type != 0) == self.invert_dest) {
            return false;
        }
        true
    }
}

/// `LOCAL,UNICAST` for a set of types.
pub fn types_to_text(t: u16) -> String {
    ADDRTYPE_NAMES
        .iter()
        .filter(|(_, b)| t & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}
