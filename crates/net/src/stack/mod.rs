//! The host stack of one network namespace: addresses, routing (FIB with tables
//! and rules), neighbours (ARP/NDP), forwarding and local delivery (ARP and ICMP
//! echo replies, UDP/TCP sinks). `bpf_fib_lookup` answers from it.
//!
//! Files: `route` (FIB tables, policy rules, source address selection and the
//! `Fib` impl for bpf_fib_lookup), `neigh` (neighbour table, arp_queue,
//! ip_finish_output2), `input` (ip_rcv, ip_forward, arp_process, icmp, ndisc),
//! `frame` (the frames the stack builds), `tcp` (resets to closed ports),
//! `ratelimit` (ICMP rate limits), `sysctl` (the sysctls and rp_filter). Headers are read and written through
//! skiff-wire's views.

mod frame;
mod input;
mod ipv6;
mod neigh;
mod ratelimit;

mod nf;
mod route;
mod sysctl;
mod tcp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::drop::DropReason;

pub use neigh::{NeighOutput, NeighState, QueuedPacket};
/// The protocol numbers `set_listening` takes.
pub use skiff_wire::{IPPROTO_TCP, IPPROTO_UDP};
pub use sysctl::{Conf4Key, ConfDev, Sysctl, SysctlError, SYSCTL_NAMES};

/// `enum rt_class_t`: the kernel's table ids.
pub const RT_TABLE_DEFAULT: u32 = 253;
pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_TABLE_LOCAL: u32 = 255;

/// include/uapi/linux/if_packet.h pkt_type values.
pub const PACKET_HOST: u8 = 0;
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;
pub const PACKET_OTHERHOST: u8 = 3;

/// A device as the stack sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackDevice {
    pub ifindex: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    /// false for L3 devices (netkit L3 mode, loopback): IFF_NOARP, no Ethernet
    /// neighbour resolution (the neighbour's address is the device's own, as
    /// arp_constructor sets for NUD_NOARP).
    pub arp: bool,
    pub loopback: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Unicast,
    Local,
    Blackhole,
    Unreachable,
    Prohibit,
    /// RTN_BROADCAST (only `add_route` makes these; addresses get none, as
    /// `ip addr add` without `brd`).
    Broadcast,
    /// RTN_ANYCAST: the IPv6 subnet-router anycast address of each prefix,
    /// present while forwarding is on (addrconf_join_anycast).
    Anycast,
    /// RTN_THROW: the lookup continues with the next rule.
    Throw,
}

/// A route. `mtu` is the route's (unlocked) MTU metric: forwarding honours it
/// (ip_dst_mtu_maybe_forward), bpf_fib_lookup does not (ip_mtu_from_fib_result and
/// ip6_mtu_from_fib6 read only a locked MTU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub ifindex: Option<u32>,
    pub src: Option<IpAddr>,
    pub metric: u32,
    pub kind: RouteKind,
    pub mtu: Option<u32>,
}

impl Route {
    /// A unicast route in the main table.
    pub fn unicast(dst: IpAddr, prefix_len: u8, gateway: Option<IpAddr>, ifindex: u32) -> Route {
        Route {
            table: RT_TABLE_MAIN,
            dst,
            prefix_len,
            gateway,
            ifindex: Some(ifindex),
            src: None,
            metric: 0,
            kind: RouteKind::Unicast,
            mtu: None,
        }
    }
}

/// A policy routing rule (FR_ACT_TO_TBL). `add_rule` adds it to the family of
/// `from`/`to` when one is given, else to both (as `ip rule` and `ip -6 rule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    /// (mark, mask)
    pub fwmark: Option<(u32, u32)>,
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    pub table: u32,
}

impl Rule {
    pub fn table(priority: u32, table: u32) -> Rule {
        Rule {
            priority,
            from: None,
            to: None,
            fwmark: None,
            iif: None,
            oif: None,
            table,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StackError {
    #[error("device ifindex {0} already exists")]
    DuplicateDevice(u32),
    #[error("ifindex 0 is not a valid device index (device `{0}`)")]
    ZeroIfindex(String),
    #[error("no device with ifindex {0} in this namespace")]
    UnknownIfindex(u32),
    #[error("address {addr} already on ifindex {ifindex}")]
    DuplicateAddress { ifindex: u32, addr: IpAddr },
    #[error("bad prefix length /{prefix_len} for {addr}")]
    BadPrefixLength { addr: IpAddr, prefix_len: u8 },
    #[error("route {dst}/{prefix_len} metric {metric} already exists in table {table}")]
    RouteExists {
        table: u32,
        dst: IpAddr,
        prefix_len: u8,
        metric: u32,
    },
    #[error("route {dst}/{prefix_len}: {what}")]
    BadRoute {
        dst: IpAddr,
        prefix_len: u8,
        what: &'static str,
    },
    #[error("rule priority {priority}: {what}")]
    BadRule { priority: u32, what: &'static str },
    #[error("neighbour {ip} on ifindex {ifindex}: {what}")]
    BadNeighbour {
        ifindex: u32,
        ip: IpAddr,
        what: &'static str,
    },
}

/// Receive-time metadata of the skb.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    pub mark: u32,
    /// PACKET_HOST / BROADCAST / MULTICAST / OTHERHOST as eth_type_trans (or a TC
    /// program) set it; see [`pkt_type_for`].
    pub pkt_type: u8,
    pub now_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The received packet itself, forwarded.
    Forwarded,
    /// ARP reply, echo reply, neighbour advertisement.
    Reply,
    /// ICMP error (time exceeded, unreachable, packet too big).
    Error,
    /// ARP request / neighbour solicitation.
    Solicit,
}

/// A frame the stack transmits on `ifindex` (Ethernet header filled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackOutput {
    pub ifindex: u32,
    pub frame: Vec<u8>,
    pub origin: Origin,
    /// The packet id given to `receive`/`neigh_output` for that packet; None for
    /// frames the stack originates.
    pub tag: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Delivered(Delivery),
    Forwarded,
    /// Waiting for a neighbour (it leaves later through `receive` of the answer,
    /// `neigh_timeout` or `flush_unresolved`).
    Queued,
    Dropped(DropReason),
    /// A netfilter hook took the packet (NF_STOLEN).
    Stolen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Arp,
    IcmpEcho,
    Icmpv6Echo,
    Ndisc,
    Udp {
        port: u16,
    },
    Tcp {
        port: u16,
    },
    /// Delivered to the IP layer but to no sink: other ICMP types, IP fragments
    /// (skiff does not reassemble), IPv6 no-next-header.
    Other {
        protocol: u8,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCount {
    pub packets: u64,
    /// Transport payload bytes (after the UDP/TCP header).
    pub bytes: u64,
}

/// What local delivery consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sinks {
    pub udp: BTreeMap<u16, SinkCount>,
    pub tcp: BTreeMap<u16, SinkCount>,
    pub icmp_echo_requests: u64,
    pub icmpv6_echo_requests: u64,
    pub echo_replies_sent: u64,
    pub arp_requests: u64,
    pub arp_replies_sent: u64,
    pub neighbour_solicitations: u64,
    pub neighbour_advertisements_sent: u64,
}

/// include/linux/etherdevice.h eth_type_trans's pkt_type for a frame arriving on
/// a device with MAC `dev_mac`.
pub fn pkt_type_for(dev_mac: [u8; 6], frame: &[u8]) -> u8 {
    match skiff_wire::EthernetFrame::new_checked(frame).map(|e| e.dst_addr()) {
        Err(_) => PACKET_OTHERHOST,
        Ok(d) if d == dev_mac => PACKET_HOST,
        Ok(d) if d == [0xff; 6] => PACKET_BROADCAST,
        Ok(d) if d[0] & 1 == 1 => PACKET_MULTICAST,
        Ok(_) => PACKET_OTHERHOST,
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Addr4 {
    pub addr: Ipv4Addr,
    pub plen: u8,
    /// RT_SCOPE_* (0 universe, 253 link, 254 host).
    pub scope: u8,
    pub secondary: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Dev {
    pub cfg: StackDevice,
    pub fwd4: bool,
    pub fwd6: bool,
    pub v4: Vec<Addr4>,
    /// In the kernel's idev->addr_list order (ipv6_link_dev_addr: by scope, the
    /// newest first among equal scopes).
    pub v6: Vec<(Ipv6Addr, u8)>,
}

#[derive(Clone, Debug)]
pub(crate) struct RouteEntry {
    pub r: Route,
    pub seq: u64,
}

/// The host stack of one network namespace.
#[derive(Debug)]
pub struct HostStack {
    pub(crate) devs: Vec<Dev>,
    pub(crate) routes: Vec<RouteEntry>,
    /// The IPv4 routes' indexes in lookup order: longest prefix, lowest
    /// metric, oldest first (fib_table_lookup's order), so a lookup is one
    /// pass that stops at the first usable match.
    pub(crate) order4: Vec<usize>,
    pub(crate) rules4: Vec<Rule>,
    pub(crate) rules6: Vec<Rule>,
    /// net->ipv4.fib_has_custom_rules: set by the first rule added, never
    /// cleared; until then the local table is merged into main (fib_unmerge).
    pub(crate) custom4: bool,
    pub(crate) custom6: bool,
    pub(crate) fwd4: bool,
    pub(crate) fwd6: bool,
    pub(crate) neigh: HashMap<(u32, IpAddr), neigh::Neigh>,
    pub(crate) seq: u64,
    pub(crate) now_ns: u64,
    pub(crate) ip_id: u16,
    pub(crate) unres_qlen_bytes: usize,
    pub(crate) pending_drops: Vec<(QueuedPacket, DropReason)>,
    pub(crate) sinks: Sinks,
    pub(crate) listening: Option<BTreeSet<(u8, u16)>>,
    /// net.ipv4.conf.all.send_redirects (on by default).
    pub(crate) send_redirects: bool,
    /// The inet_peer redirect state per source (ip_rt_send_redirect):
    /// (rate_last in ns, n_redirects).
    pub(crate) redirect_peers: HashMap<Ipv4Addr, (u64, u32)>,
    /// The ICMP rate limit sysctls and buckets (`ratelimit`).
    pub(crate) icmp_limits: ratelimit::IcmpLimits,
    /// The other sysctls the paths read (`sysctl`).
    pub(crate) sysctl: sysctl::Sysctls,

    /// The namespace's netfilter (hooks, tables, conntrack).
    pub(crate) nf: crate::netfilter::Netfilter,
    /// The conntrack reference of the packet being received (skb->_nfct),
    /// from PRE_ROUTING to LOCAL_IN or FORWARD/POST_ROUTING.
    pub(crate) nf_rx_ct: Option<crate::netfilter::conntrack::NfCt>,
}

impl Default for HostStack {
    fn default() -> Self {
        HostStack::new()
    }
}

/// include/net/fib_rules.h defaults: 0 local, 32766 main, 32767 default (IPv4);
/// IPv6 has no 32767 rule.
fn default_rules(family: Family) -> Vec<Rule> {
    let mut v = vec![
        Rule::table(0, RT_TABLE_LOCAL),
        Rule::table(32766, RT_TABLE_MAIN),
    ];
    if family == Family::V4 {
        v.push(Rule::table(32767, RT_TABLE_DEFAULT));
    }
    v
}

impl HostStack {
    pub fn new() -> HostStack {
        HostStack {
            devs: Vec::new(),
            routes: Vec::new(),
            order4: Vec::new(),
            rules4: default_rules(Family::V4),
            rules6: default_rules(Family::V6),
            custom4: false,
            custom6: false,
            fwd4: false,
            fwd6: false,
            neigh: HashMap::new(),
            seq: 0,
            now_ns: 0,
            ip_id: 1,
            // /proc/sys/net/ipv4/neigh/default/unres_qlen_bytes (SK_WMEM_MAX).
            unres_qlen_bytes: 212_992,
            pending_drops: Vec::new(),
            sinks: Sinks::default(),
            listening: None,
            send_redirects: true,
            redirect_peers: HashMap::new(),
            icmp_limits: ratelimit::IcmpLimits::default(),
            sysctl: sysctl::Sysctls::default(),

            nf: crate::netfilter::Netfilter::new(),
            nf_rx_ct: None,
        }
    }

    pub(crate) fn dev(&self, ifindex: u32) -> Option<&Dev> {
        self.devs.iter().find(|d| d.cfg.ifindex == ifindex)
    }

    pub(crate) fn dev_mut(&mut self, ifindex: u32) -> Option<&mut Dev> {
        self.devs.iter_mut().find(|d| d.cfg.ifindex == ifindex)
    }

    pub fn device(&self, ifindex: u32) -> Option<&StackDevice> {
        self.dev(ifindex).map(|d| &d.cfg)
    }

    pub fn add_device(&mut self, dev: StackDevice) -> Result<(), StackError> {
        if dev.ifindex == 0 {
            return Err(StackError::ZeroIfindex(dev.name));
        }
        if self.dev(dev.ifindex).is_some() {
            return Err(StackError::DuplicateDevice(dev.ifindex));
        }
        let (ifindex, up) = (dev.ifindex, dev.up);
        self.devs.push(Dev {
            cfg: StackDevice { up: false, ..dev },
            fwd4: self.fwd4,
            fwd6: self.fwd6,
            v4: Vec::new(),
            v6: Vec::new(),
        });
        self.sysctl_new_device(ifindex);
        if up {
            self.set_device_up(ifindex, true);
        }
        Ok(())
    }

    /// Routes through a device that is down are skipped by every lookup (the
    /// kernel removes or marks them RTNH_F_DEAD). A loopback device coming up gets
    /// 127.0.0.1/8 and ::1/128 (inetdev_event / addrconf_notify NETDEV_UP).
    /// `ip link set dev X mtu N` (net/core/dev.c: dev_set_mtu): forwarding,
    /// fragmentation and ICMP "fragmentation needed" use the new MTU at once.
    /// (The kernel also takes IPv6 off a device whose MTU drops below 1280,
    /// addrconf_notify NETDEV_CHANGEMTU; that is not modelled.)
    pub fn set_device_mtu(&mut self, ifindex: u32, mtu: u32) {
        if let Some(d) = self.dev_mut(ifindex) {
            d.cfg.mtu = mtu;
        }
    }

    pub fn set_device_up(&mut self, ifindex: u32, up: bool) {
        let Some(d) = self.dev_mut(ifindex) else {
            return;
        };
        let was = d.cfg.up;
        d.cfg.up = up;
        let lo = d.cfg.loopback;
        if up && !was && lo {
            let _ = self.add_address(ifindex, IpAddr::V4(Ipv4Addr::LOCALHOST), 8);
            let _ = self.add_address(ifindex, IpAddr::V6(Ipv6Addr::LOCALHOST), 128);
        }
        if !up {
            // net/core/neighbour.c neigh_flush_dev: the device's entries go (not
            // permanent ones), their queued packets dropped NEIGH_DEAD.
            let keys: Vec<_> = self
                .neigh
                .keys()
                .filter(|(i, _)| *i == ifindex)
                .copied()
                .collect();
            for k in keys {
                if let Some(n) = self.neigh.get(&k) {
                    if n.state == NeighState::Permanent {
                        continue;
                    }
                }
                if let Some(mut n) = self.neigh.remove(&k) {
                    for p in n.queue.drain(..) {
                        self.pending_drops.push((p, DropReason::NeighDead));
                    }
                }
            }
        }
    }

    /// net.ipv4.ip_forward / net.ipv6.conf.all.forwarding: sets every device (and
    /// the default for devices added later), as the kernel propagates "all".
    pub fn set_forwarding(&mut self, ipv4: bool, ipv6: bool) {
        self.fwd4 = ipv4;
        self.fwd6 = ipv6;
        for d in &mut self.devs {
            d.fwd4 = ipv4;
            d.fwd6 = ipv6;
        }
    }

    /// net.ipv4.conf.DEV.forwarding / net.ipv6.conf.DEV.forwarding.
    pub fn set_device_forwarding(&mut self, ifindex: u32, ipv4: bool, ipv6: bool) {
        if let Some(d) = self.dev_mut(ifindex) {
            d.fwd4 = ipv4;
            d.fwd6 = ipv6;
        }
    }

    /// net/ipv4/devinet.c inet_insert_ifa + fib_add_ifaddr (local route in table
    /// local, connected route in main with the address as prefsrc; a second
    /// address of an existing subnet is secondary and adds no prefix route);
    /// net/ipv6/addrconf.c inet6_addr_add (local /128 route in table local,
    /// prefix route metric 256 in main). IPv6 addresses are usable at once (no
    /// DAD, as `nodad`).
    pub fn add_address(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), StackError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(StackError::BadPrefixLength { addr, prefix_len });
        }
        let d = self
            .dev_mut(ifindex)
            .ok_or(StackError::UnknownIfindex(ifindex))?;
        let loopback = d.cfg.loopback;
        match addr {
            IpAddr::V4(a) => {
                if d.v4.iter().any(|x| x.addr == a) {
                    return Err(StackError::DuplicateAddress { ifindex, addr });
                }
                let secondary = d.v4.iter().any(|x| {
                    !x.secondary
                        && x.plen == prefix_len
                        && route::prefix_match(IpAddr::V4(a), IpAddr::V4(x.addr), prefix_len)
                });
                let scope = if a.is_loopback() { 254 } else { 0 };
                d.v4.push(Addr4 {
                    addr: a,
                    plen: prefix_len,
                    scope,
                    secondary,
                });
                self.push_route(Route {
                    table: RT_TABLE_LOCAL,
                    dst: addr,
                    prefix_len: 32,
                    gateway: None,
                    ifindex: Some(ifindex),
                    src: Some(addr),
                    metric: 0,
                    kind: RouteKind::Local,
                    mtu: None,
                });
                // iproute2 (6.x) gives `ip addr add A/N` (N < 31) the broadcast
                // address "+" by default; fib_add_ifaddr then adds an RTN_BROADCAST
                // route for it in table local.
                if !loopback && prefix_len < 31 {
                    let bcast = Ipv4Addr::from(u32::from(a) | !route::mask32(prefix_len));
                    self.push_route(Route {
                        table: RT_TABLE_LOCAL,
                        dst: IpAddr::V4(bcast),
                        prefix_len: 32,
                        gateway: None,
                        ifindex: Some(ifindex),
                        src: Some(addr),
                        metric: 0,
                        kind: RouteKind::Broadcast,
                        mtu: None,
                    });
                }
                let prefix = Ipv4Addr::from(u32::from(a) & route::mask32(prefix_len));
                if !secondary && prefix != Ipv4Addr::UNSPECIFIED && (prefix != a || prefix_len < 32)
                {
                    let (table, kind) = if loopback {
                        (RT_TABLE_LOCAL, RouteKind::Local)
                    } else {
                        (RT_TABLE_MAIN, RouteKind::Unicast)
                    };
                    self.push_route(Route {
                        table,
                        dst: IpAddr::V4(prefix),
                        prefix_len,
                        gateway: None,
                        ifindex: Some(ifindex),
                        src: Some(addr),
                        metric: 0,
                        kind,
                        mtu: None,
                    });
                }
            }
            IpAddr::V6(a) => {
                if d.v6.iter().any(|x| x.0 == a) {
                    return Err(StackError::DuplicateAddress { ifindex, addr });
                }
                let sc = route::v6_scope(a);
                let pos =
                    d.v6.iter()
                        .position(|x| sc >= route::v6_scope(x.0))
                        .unwrap_or(d.v6.len());
                d.v6.insert(pos, (a, prefix_len));
                self.push_route(Route {
                    table: RT_TABLE_LOCAL,
                    dst: addr,
                    prefix_len: 128,
                    gateway: None,
                    ifindex: Some(ifindex),
                    src: None,
                    metric: 0,
                    kind: RouteKind::Local,
                    mtu: None,
                });
                let prefix = Ipv6Addr::from(u128::from(a) & route::mask128(prefix_len));
                self.push_route(Route {
                    table: RT_TABLE_MAIN,
                    dst: IpAddr::V6(prefix),
                    prefix_len,
                    gateway: None,
                    ifindex: Some(ifindex),
                    src: None,
                    metric: 256,
                    kind: RouteKind::Unicast,
                    mtu: None,
                });
            }
        }
        Ok(())
    }

    fn push_route(&mut self, r: Route) {
        self.seq += 1;
        let seq = self.seq;
        // Kernel-made routes never collide with themselves; a same-key duplicate
        // (same address on two devices) is ignored as fib_table_insert's EEXIST.
        if self.routes.iter().any(|e| same_key(&e.r, &r)) {
            return;
        }
        self.insert_route(RouteEntry { r, seq });
    }

    /// Keep `routes` in insertion order and `order4` in lookup order.
    fn insert_route(&mut self, e: RouteEntry) {
        let v4 = e.r.dst.is_ipv4();
        self.routes.push(e);
        if v4 {
            let i = self.routes.len() - 1;
            let key = |e: &RouteEntry| (std::cmp::Reverse(e.r.prefix_len), e.r.metric, e.seq);
            let k = key(&self.routes[i]);
            let pos = self.order4.partition_point(|&j| key(&self.routes[j]) < k);
            self.order4.insert(pos, i);
        }
    }

    /// `ip route add`: a second route with the same table, prefix and metric is
    /// EEXIST (skiff does not build IPv6 ECMP siblings).
    pub fn add_route(&mut self, r: Route) -> Result<(), StackError> {
        let max = if r.dst.is_ipv4() { 32 } else { 128 };
        if r.prefix_len > max {
            return Err(StackError::BadPrefixLength {
                addr: r.dst,
                prefix_len: r.prefix_len,
            });
        }
        let (rdst, rplen) = (r.dst, r.prefix_len);
        let bad = move |what| StackError::BadRoute {
            dst: rdst,
            prefix_len: rplen,
            what,
        };
        if let Some(g) = r.gateway {
            if g.is_ipv4() != r.dst.is_ipv4() {
                return Err(bad("gateway family differs from the destination's"));
            }
        }
        if let Some(s) = r.src {
            if s.is_ipv4() != r.dst.is_ipv4() {
                return Err(bad("source family differs from the destination's"));
            }
        }
        if let Some(i) = r.ifindex {
            if self.dev(i).is_none() {
                return Err(StackError::UnknownIfindex(i));
            }
        }
        let needs_dev = matches!(
            r.kind,
            RouteKind::Unicast | RouteKind::Local | RouteKind::Broadcast | RouteKind::Anycast
        );
        let mut r = r;
        if needs_dev && r.ifindex.is_none() {
            // fib_check_nh: the device of a gateway route is the one whose connected
            // route reaches the gateway.
            let gw = r
                .gateway
                .ok_or(bad("a unicast route needs a device or a gateway"))?;
            let dev = self
                .connected_dev(gw)
                .ok_or(bad("gateway is not reachable through a connected route"))?;
            r.ifindex = Some(dev);
        }
        // Normalise the destination to its prefix, as the kernel stores it.
        r.dst = match r.dst {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & route::mask32(r.prefix_len))),
            IpAddr::V6(a) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & route::mask128(r.prefix_len)))
            }
        };
        if self.routes.iter().any(|e| same_key(&e.r, &r)) {
            return Err(StackError::RouteExists {
                table: r.table,
                dst: r.dst,
                prefix_len: r.prefix_len,
                metric: r.metric,
            });
        }
        self.seq += 1;
        let seq = self.seq;
        self.insert_route(RouteEntry { r, seq });
        Ok(())
    }

    fn connected_dev(&self, gw: IpAddr) -> Option<u32> {
        self.routes
            .iter()
            .filter(|e| {
                e.r.kind == RouteKind::Unicast
                    && e.r.gateway.is_none()
                    && route::prefix_match(gw, e.r.dst, e.r.prefix_len)
            })
            .max_by_key(|e| e.r.prefix_len)
            .and_then(|e| e.r.ifindex)
    }

    /// `ip rule add` (FR_ACT_TO_TBL), to the family of from/to, else both.
    pub fn add_rule(&mut self, r: Rule) -> Result<(), StackError> {
        let fam = match (r.from.map(|x| x.0), r.to.map(|x| x.0)) {
            (Some(a), Some(b)) if a.is_ipv4() != b.is_ipv4() => {
                return Err(StackError::BadRule {
                    priority: r.priority,
                    what: "from and to of different families",
                })
            }
            (Some(a), _) | (_, Some(a)) => Some(if a.is_ipv4() { Family::V4 } else { Family::V6 }),
            (None, None) => None,
        };
        match fam {
            Some(f) => self.add_rule_family(r, f),
            None => {
                self.add_rule_family(r.clone(), Family::V4)?;
                self.add_rule_family(r, Family::V6)
            }
        }
    }

    /// `ip rule add` / `ip -6 rule add`: inserted after the rules of equal or
    /// lower priority (fib_nl_newrule).
    pub fn add_rule_family(&mut self, r: Rule, family: Family) -> Result<(), StackError> {
        for (p, max) in [(r.from, 0u8), (r.to, 0u8)] {
            let _ = max;
            if let Some((a, plen)) = p {
                let m = if a.is_ipv4() { 32 } else { 128 };
                if plen > m {
                    return Err(StackError::BadPrefixLength {
                        addr: a,
                        prefix_len: plen,
                    });
                }
                if a.is_ipv4() != (family == Family::V4) {
                    return Err(StackError::BadRule {
                        priority: r.priority,
                        what: "address family differs from the rule's",
                    });
                }
            }
        }
        let rules = match family {
            Family::V4 => {
                self.custom4 = true;
                &mut self.rules4
            }
            Family::V6 => {
                self.custom6 = true;
                &mut self.rules6
            }
        };
        let pos = rules
            .iter()
            .position(|x| x.priority > r.priority)
            .unwrap_or(rules.len());
        rules.insert(pos, r);
        Ok(())
    }

    /// A permanent neighbour entry (`ip neigh add ... nud permanent`).
    pub fn add_neighbour(
        &mut self,
        ifindex: u32,
        ip: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), StackError> {
        if self.dev(ifindex).is_none() {
            return Err(StackError::UnknownIfindex(ifindex));
        }
        self.neigh_update(ifindex, ip, mac, NeighState::Permanent, &mut Vec::new());
        Ok(())
    }

    /// net.ipv4.conf.all.send_redirects: ICMP redirects for packets forwarded
    /// out of the device they came in on (on by default, as in the kernel).
    pub fn set_send_redirects(&mut self, on: bool) {
        self.send_redirects = on;
    }

    /// Only these (protocol, port) pairs have a listening socket; a UDP datagram
    /// to another port gets ICMP port unreachable and is dropped NO_SOCKET, a TCP
    /// segment gets a RST (tcp_v4_send_reset / tcp_v6_send_reset) and is dropped
    /// NO_SOCKET. By default every port is a sink.
    pub fn set_listening(&mut self, ports: Option<BTreeSet<(u8, u16)>>) {
        self.listening = ports;
    }

    /// /proc/sys/net/ipv4/neigh/default/unres_qlen_bytes (212992 by default).
    pub fn set_unres_qlen_bytes(&mut self, bytes: usize) {
        self.unres_qlen_bytes = bytes;
    }

    /// The namespace's netfilter: hooks, tables, conntrack.
    pub fn netfilter(&self) -> &crate::netfilter::Netfilter {
        &self.nf
    }

    pub fn netfilter_mut(&mut self) -> &mut crate::netfilter::Netfilter {
        &mut self.nf
    }

    pub fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// Packets that were queued for a neighbour and have since been dropped by
    /// something other than `neigh_timeout`/`flush_unresolved` (the arp_queue
    /// overflow drops its oldest packet NEIGH_QUEUEFULL; a device going down
    /// drops its queues). Call after each `receive`/`neigh_output`.
    pub fn take_dropped(&mut self, into: &mut Vec<(QueuedPacket, DropReason)>) {
        into.append(&mut self.pending_drops);
    }

    /// The neighbour entry for (ifindex, ip), if any: its state and address.
    pub fn neighbour(&self, ifindex: u32, ip: IpAddr) -> Option<(NeighState, [u8; 6])> {
        self.neigh.get(&(ifindex, ip)).map(|n| (n.state, n.mac))
    }

    pub(crate) fn next_ip_id(&mut self) -> u16 {
        // The kernel picks random ids for these (ip_select_ident); skiff counts, so
        // replays are reproducible.
        let id = self.ip_id;
        self.ip_id = self.ip_id.wrapping_add(1);
        id
    }

    /// Whether `a` is an address of any device in the namespace.
    pub fn is_local(&self, a: IpAddr) -> bool {
        self.devs.iter().any(|d| match a {
            IpAddr::V4(a) => d.v4.iter().any(|x| x.addr == a),
            IpAddr::V6(a) => d.v6.iter().any(|x| x.0 == a),
        })
    }
}

fn same_key(a: &Route, b: &Route) -> bool {
    a.table == b.table && a.dst == b.dst && a.prefix_len == b.prefix_len && a.metric == b.metric
}
