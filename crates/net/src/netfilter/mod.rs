//! Netfilter: the hooks, the rule tables, conntrack and NAT (net/netfilter/).
//! This file is nf-hooks' (the hook lists and tables); until its skeleton is
//! merged it holds only the shared interface types conntrack and NAT use.

pub mod conntrack;
pub mod nat;
pub mod nat_proto;

/// NFPROTO_IPV4 / NFPROTO_IPV6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfProto {
    Ipv4,
    Ipv6,
}

/// The hook points (enum nf_inet_hooks plus the netdev hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfHook {
    PreRouting,
    LocalIn,
    Forward,
    LocalOut,
    PostRouting,
    NetdevIngress,
    NetdevEgress,
}

/// The hook priorities (enum nf_ip_hook_priorities).
pub mod prio {
    pub const CONNTRACK_DEFRAG: i32 = -400;
    pub const RAW: i32 = -300;
    pub const CONNTRACK: i32 = -200;
    pub const MANGLE: i32 = -150;
    pub const NAT_DST: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SECURITY: i32 = 50;
    pub const NAT_SRC: i32 = 100;
    pub const CONNTRACK_CONFIRM: i32 = i32::MAX;
}

/// A hook function's verdict (NF_ACCEPT, NF_DROP, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfVerdict {
    Accept,
    Drop,
    Stolen,
    Queue { num: u16, bypass: bool },
    Repeat,
}

/// struct nf_hook_state: where the packet is.
#[derive(Clone, Debug)]
pub struct NfHookState {
    pub hook: NfHook,
    pub pf: NfProto,
    pub in_ifindex: Option<u32>,
    pub out_ifindex: Option<u32>,
    pub now_ns: u64,
}

/// The packet as the hooks see it: the L3 packet (from the IP header), its
/// mark, its conntrack (skb->_nfct).
pub struct NfSkb<'a> {
    pub pkt: &'a mut Vec<u8>,
    pub mark: &'a mut u32,
    pub nfct: &'a mut Option<conntrack::NfCt>,
}
