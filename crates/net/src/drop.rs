//! Why a packet was dropped: the kernel's `enum skb_drop_reason`
//! (include/net/dropreason-core.h) for packets that have an sk_buff, and skiff's
//! own reasons for XDP frames dropped before one exists (the kernel only has the
//! `xdp:xdp_exception` tracepoint and driver counters for those).

/// A drop reason. `name()` is the kernel's name without the `SKB_DROP_REASON_`
/// prefix (as pwru and `perf trace -e skb:kfree_skb` print it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    NotSpecified,
    NoSocket,
    PktTooSmall,
    TcpCsum,
    UdpCsum,
    OtherHost,
    IpCsum,
    IpInhdr,
    IpNoproto,
    IpOutnoroutes,
    IpInnoroutes,
    IpInaddrerrors,
    IpLocalSource,
    IpInvalidSource,
    Ipv6Disabled,
    NeighCreatefail,
    NeighFailed,
    NeighQueuefull,
    NeighDead,
    TcEgress,
    TcIngress,
    QdiscDrop,
    /// A generic-XDP (skb-mode) program's XDP_DROP/ABORTED, or a failed generic redirect.
    Xdp,
    UnhandledProto,
    DevReady,
    FullRing,
    HdrTrunc,
    IcmpCsum,
    InvalidProto,
    PktTooBig,
    TcChainNotfound,
    TcReclassifyLoop,
    MacInvalidSource,
    IpInvalidDest,
    Ipv6NdiscHopLimit,
    Ipv6NdiscBadCode,
    Ipv6NdiscBadOptions,
    Ipv6NdiscNsOtherhost,
    /// A nested dev_queue_xmit past XMIT_RECURSION_LIMIT (a redirect loop).
    RecursionLimit,
    /// skiff's own: an XDP frame (native mode, no skb yet) dropped by XDP_DROP.
    SkiffXdpDrop,
    /// skiff's own: XDP_ABORTED or a program exception in native XDP.
    SkiffXdpAborted,
    /// skiff's own: XDP_TX failed (the device cannot transmit or the frame is too big).
    SkiffXdpTxError,
    /// skiff's own: the loop guard of the datapath's run (a forwarding loop
    /// the kernel would run forever).
    SkiffLoop,
    /// skiff's own: XDP_REDIRECT to a target that does not exist, is down or cannot take it.
    SkiffXdpRedirectError,
    /// A CPU's backlog held netdev_max_backlog skbs (enqueue_to_backlog).
    CpuBacklog,
    /// The reverse-path filter refused the source (fib_validate_source: -EXDEV).
    IpRpfilter,

    /// A netfilter hook's NF_DROP (nf_hook_slow).
    NetfilterDrop,
}

impl DropReason {
    /// Every reason, in declaration order (`index()` is the position).
    pub const ALL: [DropReason; 47] = [
        DropReason::NotSpecified,
        DropReason::NoSocket,
        DropReason::PktTooSmall,
        DropReason::TcpCsum,
        DropReason::UdpCsum,
        DropReason::OtherHost,
        DropReason::IpCsum,
        DropReason::IpInhdr,
        DropReason::IpNoproto,
        DropReason::IpOutnoroutes,
        DropReason::IpInnoroutes,
        DropReason::IpInaddrerrors,
        DropReason::IpLocalSource,
        DropReason::IpInvalidSource,
        DropReason::Ipv6Disabled,
        DropReason::NeighCreatefail,
        DropReason::NeighFailed,
        DropReason::NeighQueuefull,
        DropReason::NeighDead,
        DropReason::TcEgress,
        DropReason::TcIngress,
        DropReason::QdiscDrop,
        DropReason::Xdp,
        DropReason::UnhandledProto,
        DropReason::DevReady,
        DropReason::FullRing,
        DropReason::HdrTrunc,
        DropReason::IcmpCsum,
        DropReason::InvalidProto,
        DropReason::PktTooBig,
        DropReason::TcChainNotfound,
        DropReason::TcReclassifyLoop,
        DropReason::MacInvalidSource,
        DropReason::IpInvalidDest,
        DropReason::Ipv6NdiscHopLimit,
        DropReason::Ipv6NdiscBadCode,
        DropReason::Ipv6NdiscBadOptions,
        DropReason::Ipv6NdiscNsOtherhost,
        DropReason::RecursionLimit,
        DropReason::SkiffXdpDrop,
        DropReason::SkiffXdpAborted,
        DropReason::SkiffXdpTxError,
        DropReason::SkiffLoop,
        DropReason::SkiffXdpRedirectError,
        DropReason::CpuBacklog,
        DropReason::IpRpfilter,
        DropReason::NetfilterDrop,
    ];

    /// A dense index (per-CPU drop counters are an array).
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        use DropReason::*;
        match self {
            NotSpecified => "NOT_SPECIFIED",
            NoSocket => "NO_SOCKET",
            PktTooSmall => "PKT_TOO_SMALL",
            TcpCsum => "TCP_CSUM",
            UdpCsum => "UDP_CSUM",
            OtherHost => "OTHERHOST",
            IpCsum => "IP_CSUM",
            IpInhdr => "IP_INHDR",
            IpNoproto => "IP_NOPROTO",
            IpOutnoroutes => "IP_OUTNOROUTES",
            IpInnoroutes => "IP_INNOROUTES",
            IpInaddrerrors => "IP_INADDRERRORS",
            IpLocalSource => "IP_LOCAL_SOURCE",
            IpInvalidSource => "IP_INVALID_SOURCE",
            Ipv6Disabled => "IPV6DISABLED",
            NeighCreatefail => "NEIGH_CREATEFAIL",
            NeighFailed => "NEIGH_FAILED",
            NeighQueuefull => "NEIGH_QUEUEFULL",
            NeighDead => "NEIGH_DEAD",
            TcEgress => "TC_EGRESS",
            TcIngress => "TC_INGRESS",
            QdiscDrop => "QDISC_DROP",
            Xdp => "XDP",
            UnhandledProto => "UNHANDLED_PROTO",
            DevReady => "DEV_READY",
            FullRing => "FULL_RING",
            HdrTrunc => "HDR_TRUNC",
            IcmpCsum => "ICMP_CSUM",
            InvalidProto => "INVALID_PROTO",
            PktTooBig => "PKT_TOO_BIG",
            TcChainNotfound => "TC_CHAIN_NOTFOUND",
            TcReclassifyLoop => "TC_RECLASSIFY_LOOP",
            MacInvalidSource => "MAC_INVALID_SOURCE",
            IpInvalidDest => "IP_INVALID_DEST",
            Ipv6NdiscHopLimit => "IPV6_NDISC_HOP_LIMIT",
            Ipv6NdiscBadCode => "IPV6_NDISC_BAD_CODE",
            Ipv6NdiscBadOptions => "IPV6_NDISC_BAD_OPTIONS",
            Ipv6NdiscNsOtherhost => "IPV6_NDISC_NS_OTHERHOST",
            RecursionLimit => "RECURSION_LIMIT",
            SkiffXdpDrop => "SKIFF_XDP_DROP",
            SkiffXdpAborted => "SKIFF_XDP_ABORTED",
            SkiffXdpTxError => "SKIFF_XDP_TX_ERROR",
            SkiffXdpRedirectError => "SKIFF_XDP_REDIRECT_ERROR",
            SkiffLoop => "SKIFF_LOOP",
            CpuBacklog => "CPU_BACKLOG",
            IpRpfilter => "IP_RPFILTER",

            NetfilterDrop => "NETFILTER_DROP",
        }
    }

    /// The kernel's full enumerator name (`SKB_DROP_REASON_TC_INGRESS`); skiff's
    /// own reasons keep their `SKIFF_` name.
    pub fn kernel_name(self) -> String {
        let n = self.name();
        if n.starts_with("SKIFF_") {
            n.to_string()
        } else {
            format!("SKB_DROP_REASON_{n}")
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
