//! Connection tracking (net/netfilter/nf_conntrack_core.c): what a packet
//! carries (`skb->_nfct`: the connection and the packet's place in it) and the
//! per-namespace table. This file holds the shared types; the tracking itself
//! (nf_conntrack_in, nf_conntrack_confirm, the protocol trackers) lives beside it.

/// include/uapi/linux/netfilter/nf_conntrack_common.h `enum ip_conntrack_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpConntrackInfo {
    /// IP_CT_ESTABLISHED: part of an established connection (either direction).
    Established,
    /// IP_CT_RELATED: related to an established connection (an ICMP error, an expectation).
    Related,
    /// IP_CT_NEW: starts a new connection or is part of one not yet seen in reply.
    New,
    /// IP_CT_ESTABLISHED_REPLY (IP_CT_ESTABLISHED + IP_CT_IS_REPLY).
    EstablishedReply,
    /// IP_CT_RELATED_REPLY.
    RelatedReply,
    /// IP_CT_UNTRACKED: `-j CT --notrack` / `notrack`.
    Untracked,
}

/// What the packet carries (skb->_nfct): the connection's id in its
/// namespace's [`Conntrack`] table and the packet's ctinfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NfCt {
    pub id: u32,
    pub info: IpConntrackInfo,
}

/// The namespace's conntrack table (net->ct), bounded by nf_conntrack_max.
#[derive(Debug, Default)]
pub struct Conntrack {}
