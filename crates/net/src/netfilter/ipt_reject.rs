//! net/ipv4/netfilter/ipt_REJECT.c and net/ipv6/netfilter/ip6t_REJECT.c:
//! the reply kinds (`--reject-with`). The replies themselves are built by
//! the stack (nf_send_unreach: icmp_send; nf_send_reset: a RST by
//! ip_local_out) after the hook returned NF_DROP.

/// A `--reject-with` name and its ICMP(v6) code.
type RejectName = (&'static str, u8);

/// enum ipt_reject_with / ip6t_reject_with, as `--reject-with` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectWith {
    /// An ICMP destination-unreachable code (IPv4) or ICMPv6 one (IPv6).
    IcmpUnreach(u8),
    TcpReset,
}

/// (iptables name, ICMP code) for IPv4.
pub const REJECT_NAMES4: [(&str, u8); 7] = [
    ("icmp-net-unreachable", 0),
    ("icmp-host-unreachable", 1),
    ("icmp-proto-unreachable", 2),
    ("icmp-port-unreachable", 3),
    ("icmp-net-prohibited", 9),
    ("icmp-host-prohibited", 10),
    ("icmp-admin-prohibited", 13),
];

/// (ip6tables name, ICMPv6 code) for IPv6 (reject_tg6's IP6T_ICMP6_* ->
/// ICMPV6_* mapping).
pub const REJECT_NAMES6: [(&str, u8); 6] = [
    ("icmp6-no-route", 0),
    ("icmp6-adm-prohibited", 1),
    ("icmp6-addr-unreachable", 3),
    ("icmp6-port-unreachable", 4),
    ("icmp6-policy-fail", 5),
    ("icmp6-reject-route", 6),
];

/// The short names libipt_REJECT / libip6t_REJECT also take.
const REJECT_ALIASES4: [(&str, u8); 7] = [
    ("net-unreach", 0),
    ("host-unreach", 1),
    ("proto-unreach", 2),
    ("port-unreach", 3),
    ("net-prohib", 9),
    ("host-prohib", 10),
    ("admin-prohib", 13),
];
const REJECT_ALIASES6: [(&str, u8); 6] = [
    ("no-route", 0),
    ("adm-prohibited", 1),
    ("addr-unreach", 3),
    ("port-unreach", 4),
    ("policy-fail", 5),
    ("reject-route", 6),
];

impl RejectWith {
    /// `--reject-with NAME` as libipt_REJECT / libip6t_REJECT parse it
    /// (the long name, its short alias, or `tcp-reset`).
    pub fn parse(name: &str, v6: bool) -> Option<RejectWith> {
        if name == "tcp-reset" {
            return Some(RejectWith::TcpReset);
        }
        let (names, aliases): (&[RejectName], &[RejectName]) = if v6 {
            (&REJECT_NAMES6, &REJECT_ALIASES6)
        } else {
            (&REJECT_NAMES4, &REJECT_ALIASES4)
        };
        names
            .iter()
            .chain(aliases)
            .find(|(n, _)| *n == name)
            .map(|(_, c)| RejectWith::IcmpUnreach(*c))
    }

    /// The name `iptables -L` prints (`reject-with icmp-port-unreachable`).
    pub fn name(self, v6: bool) -> &'static str {
        match self {
            RejectWith::TcpReset => "tcp-reset",
            RejectWith::IcmpUnreach(c) => {
                let names: &[(&str, u8)] = if v6 { &REJECT_NAMES6 } else { &REJECT_NAMES4 };
                names
                    .iter()
                    .find(|(_, x)| *x == c)
                    .map(|(n, _)| *n)
                    .unwrap_or("icmp-port-unreachable")
            }
        }
    }
}
