//! ICMP and ICMPv6 connection tracking (net/netfilter/nf_conntrack_proto_icmp.c,
//! nf_conntrack_proto_icmpv6.c): queries and their replies are a flow of
//! their own (30 s); errors are RELATED to the flow whose packet they quote.

use std::net::IpAddr;

use super::tuple::{self, L4Info, IPPROTO_ICMP};
use super::NfProto;

const SEC: u64 = 1_000_000_000;
/// nf_conntrack_icmp_timeout, nf_conntrack_icmpv6_timeout.
pub const ICMP_TIMEOUT: u64 = 30 * SEC;

/// NR_ICMP_TYPES.
const NR_ICMP_TYPES: u8 = 18;

/// icmp_is_err / icmpv6: the messages that quote an offending packet.
fn is_error(protonum: u8, t: u8) -> bool {
    if protonum == IPPROTO_ICMP {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    } else {
        t < 128
    }
}

/// nf_conntrack_icmp_packet's valid_new (and icmpv6's): the types that may
/// open a flow (echo, timestamp, info, address mask; echo and node info).
pub fn valid_new(protonum: u8, orig_type: u8) -> bool {
    if protonum == IPPROTO_ICMP {
        matches!(orig_type, 8 | 13 | 15 | 17)
    } else {
        matches!(orig_type, 128 | 139)
    }
}

/// What nf_conntrack_icmpv4_error / icmpv6_error decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// Not an error message: track it as a flow of its own.
    NotError,
    /// ICMPv6 neighbour discovery and MLD: never tracked (noct_valid_new).
    Untracked,
    /// An error that fails the checks (-NF_ACCEPT: counted as `error`).
    Invalid,
    /// An error quoting a packet of a tracked flow: this tuple (already
    /// inverted: the lookup key) and the outer destination to compare.
    Quotes {
        inner: tuple::NfConntrackTuple,
        outer_daddr: IpAddr,
    },
}

/// nf_conntrack_icmpv4_error / nf_conntrack_icmpv6_error up to the lookup
/// (nf_conntrack_inet_error's tuple work). `verify_csum` is
/// nf_conntrack_checksum at PREROUTING.
pub fn icmp_error(pkt: &[u8], l4: &L4Info, pf: NfProto, verify_csum: bool) -> IcmpError {
    let hdr = l4.l4(pkt);
    let Some(&t) = hdr.first() else {
        return IcmpError::Invalid;
    };
    if hdr.len() < 8 {
        return IcmpError::Invalid;
    }
    if verify_csum && !tuple::l4_checksum_ok(pkt, l4) {
        return IcmpError::Invalid;
    }
    if l4.protonum == IPPROTO_ICMP && t > NR_ICMP_TYPES {
        return IcmpError::Invalid;
    }
    // nf_conntrack_icmpv6_error: noct_valid_new (MLD query, report, done;
    // router and neighbour solicitation/advertisement; MLDv2 report).
    if l4.protonum != IPPROTO_ICMP && matches!(t, 130..=136 | 143) {
        return IcmpError::Untracked;
    }
    if !is_error(l4.protonum, t) {
        return IcmpError::NotError;
    }
    let inner_pkt = &hdr[8..];
    let Some(inner_l4) = tuple::get_l4proto(inner_pkt, pf) else {
        return IcmpError::Invalid;
    };
    let Some(orig) = tuple::pkt_to_tuple(inner_pkt, &inner_l4) else {
        return IcmpError::Invalid;
    };
    // The quoted packet's tuple is preserved inside: look up its inverse.
    match tuple::invert_tuple(&orig) {
        Some(inner) => IcmpError::Quotes {
            inner,
            outer_daddr: l4.dst,
        },
        None => IcmpError::Invalid,
    }
}
