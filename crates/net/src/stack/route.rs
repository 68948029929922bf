//! Routing: IPv4 tables with the local/main merge (net/ipv4/fib_trie.c
//! fib_table_lookup, fib_unmerge), IPv6 tables (net/ipv6/ip6_fib.c
//! fib6_table_lookup, net/ipv6/route.c find_rr_leaf), policy rules
//! (net/core/fib_rules.c fib_rules_lookup, fib4_rule_match, fib6_rule_match),
//! source address selection (inet_select_addr, ipv6_dev_get_saddr) and
//! bpf_fib_lookup (net/core/filter.c bpf_ipv4_fib_lookup / bpf_ipv6_fib_lookup).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::neigh::NeighState;
use super::{HostStack, Route, RouteKind, Rule, RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN};
use crate::helpers::fib::*;

/// LOOPBACK_IFINDEX: the iif of output route lookups.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// A route lookup key (struct flowi4 / flowi6, the fields skiff models).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    pub dst: IpAddr,
    pub src: IpAddr,
    pub iif: u32,
    pub oif: u32,
    pub mark: u32,
    /// IPv6 RT6_LOOKUP_F_HAS_SADDR.
    pub has_saddr: bool,
    /// IPv6 RT6_LOOKUP_F_IFACE.
    pub iface: bool,
}

/// fib_table_lookup errors (fib_props[].error) and "nothing found".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FibErr {
    /// -EAGAIN inside a table, -ENETUNREACH / -ESRCH after all rules.
    NotFound,
    /// -EINVAL
    Blackhole,
    /// -EHOSTUNREACH
    Unreachable,
    /// -EACCES
    Prohibit,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FibRes {
    pub kind: RouteKind,
    pub ifindex: u32,
    pub gateway: Option<IpAddr>,
    pub metric: u32,
    pub src: Option<IpAddr>,
    pub mtu: Option<u32>,
    /// fi->fib_scope (IPv4).
    pub scope: u8,
}

fn route_scope(r: &Route) -> u8 {
    match r.kind {
        RouteKind::Local | RouteKind::Broadcast | RouteKind::Anycast => 254,
        _ if r.gateway.is_none() => 253,
        _ => 0,
    }
}

fn res_of(r: &Route) -> FibRes {
    FibRes {
        kind: r.kind,
        ifindex: r.ifindex.unwrap_or(LOOPBACK_IFINDEX),
        gateway: r.gateway,
        metric: r.metric,
        src: r.src,
        mtu: r.mtu,
        scope: route_scope(r),
    }
}

/// __ipv6_addr_src_scope of ipv6_addr_type: 1 node-local (loopback), 2 link,
/// 5 site, 14 global; multicast: its scope field.
pub(crate) fn v6_scope(a: Ipv6Addr) -> u8 {
    let o = a.octets();
    if o[0] == 0xff {
        return o[1] & 0x0f;
    }
    if a == Ipv6Addr::LOCALHOST {
        return 1;
    }
    if o[0] == 0xfe && o[1] & 0xc0 == 0x80 {
        return 2;
    }
    if o[0] == 0xfe && o[1] & 0xc0 == 0xc0 {
        return 5;
    }
    14
}

/// include/net/ip6_route.h rt6_need_strict: multicast, link-local or loopback.
pub(crate) fn rt6_need_strict(a: Ipv6Addr) -> bool {
    let o = a.octets();
    o[0] == 0xff || (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || a == Ipv6Addr::LOCALHOST
}

/// net/ipv6/addrlabel.c ip6addrlbl_init_table (RFC 6724 policy labels).
fn v6_label(a: Ipv6Addr) -> u32 {
    const T: &[(u128, u8, u32)] = &[
        (1, 128, 0),
        (0xffff_0000_0000, 96, 4),
        (0x2002 << 112, 16, 2),
        (0x2001_0000 << 96, 32, 6),
        (0x2001_0010 << 96, 28, 7),
        (0xfc << 120, 7, 5),
        (0, 96, 3),
        (0xfec0 << 112, 10, 11),
        (0x3ffe << 112, 16, 12),
        (0, 0, 1),
    ];
    let v = u128::from(a);
    let mut best: Option<(u8, u32)> = None;
    for &(p, l, lab) in T {
        let m = mask128(l);
        if v & m == p & m && best.is_none_or(|(bl, _)| l > bl) {
            best = Some((l, lab));
        }
    }
    best.map_or(1, |b| b.1)
}

fn common_prefix(a: Ipv6Addr, b: Ipv6Addr) -> u32 {
    (u128::from(a) ^ u128::from(b)).leading_zeros()
}

impl HostStack {
    fn dev_up(&self, ifindex: u32) -> bool {
        self.dev(ifindex).is_some_and(|d| d.cfg.up)
    }

    fn table_has_routes(&self, table: u32, v4: bool) -> bool {
        self.routes
            .iter()
            .any(|e| e.r.table == table && e.r.dst.is_ipv4() == v4)
    }

    /// net/ipv4/fib_trie.c fib_table_lookup over `tables` (main and local are one
    /// trie until the first custom rule): longest prefix first, then the lowest
    /// metric; reject routes answer at once; a nexthop whose device is down or is
    /// not the flow's oif is skipped (fib_lookup_good_nhc), falling back to
    /// shorter prefixes.
    fn table_lookup4(&self, tables: &[u32], fl: &Flow) -> Result<FibRes, FibErr> {
        let matches = self.order4.iter().map(|&i| &self.routes[i]).filter(|e| {
            tables.contains(&e.r.table) && prefix_match(fl.dst, e.r.dst, e.r.prefix_len)
        });
        for e in matches {
            match e.r.kind {
                RouteKind::Blackhole => return Err(FibErr::Blackhole),
                RouteKind::Unreachable => return Err(FibErr::Unreachable),
                RouteKind::Prohibit => return Err(FibErr::Prohibit),
                RouteKind::Throw => return Err(FibErr::NotFound),
                _ => {}
            }
            let Some(dev) = e.r.ifindex else { continue };
            if !self.dev_up(dev) || (fl.oif != 0 && fl.oif != dev) {
                continue;
            }
            return Ok(res_of(&e.r));
        }
        Err(FibErr::NotFound)
    }

    fn tables4(&self, table: u32) -> &'static [u32] {
        let t = if table == 0 { RT_TABLE_MAIN } else { table };
        if !self.custom4 && (t == RT_TABLE_MAIN || t == RT_TABLE_LOCAL) {
            &[RT_TABLE_MAIN, RT_TABLE_LOCAL]
        } else {
            match t {
                RT_TABLE_MAIN => &[RT_TABLE_MAIN],
                RT_TABLE_LOCAL => &[RT_TABLE_LOCAL],
                RT_TABLE_DEFAULT => &[RT_TABLE_DEFAULT],
                _ => &[],
            }
        }
    }

    /// One table (any id).
    pub(crate) fn lookup_table4(&self, table: u32, fl: &Flow) -> Result<FibRes, FibErr> {
        let fixed = self.tables4(table);
        if fixed.is_empty() {
            let t = [table];
            return self.table_lookup4(&t, fl);
        }
        self.table_lookup4(fixed, fl)
    }

    fn rule_match(r: &Rule, fl: &Flow, v6: bool) -> bool {
        if r.iif.is_some_and(|i| i != fl.iif) || r.oif.is_some_and(|o| o != fl.oif) {
            return false;
        }
        if let Some((mark, mask)) = r.fwmark {
            if (mark ^ fl.mark) & mask != 0 {
                return false;
            }
        }
        if let Some((a, plen)) = r.from {
            if v6 && plen > 0 && !fl.has_saddr {
                // fib6_rule_match: a source prefix needs RT6_LOOKUP_F_HAS_SADDR.
                return false;
            }
            if !prefix_match(fl.src, a, plen) {
                return false;
            }
        }
        if let Some((a, plen)) = r.to {
            if !prefix_match(fl.dst, a, plen) {
                return false;
            }
        }
        true
    }

    /// include/net/ip_fib.h fib_lookup / net/ipv4/fib_rules.c __fib_lookup.
    pub(crate) fn fib_lookup4(&self, fl: &Flow) -> Result<FibRes, FibErr> {
        if !self.custom4 {
            let r = self.table_lookup4(&[RT_TABLE_MAIN, RT_TABLE_LOCAL], fl);
            if r.is_ok() || !self.table_has_routes(RT_TABLE_DEFAULT, true) {
                return r;
            }
            return self.table_lookup4(&[RT_TABLE_DEFAULT], fl);
        }
        for rule in &self.rules4 {
            if !Self::rule_match(rule, fl, false) {
                continue;
            }
            match self.lookup_table4(rule.table, fl) {
                Err(FibErr::NotFound) => continue,
                other => return other,
            }
        }
        Err(FibErr::NotFound)
    }

    /// net/ipv6/ip6_fib.c fib6_table_lookup: the longest matching prefix node,
    /// rt6_select there (find_rr_leaf: the first metric group, scored by oif;
    /// then the rest), backtracking to shorter prefixes when nothing qualifies.
    /// None is the null entry.
    pub(crate) fn table_lookup6(&self, table: u32, fl: &Flow) -> Option<FibRes> {
        let table = if table == 0 { RT_TABLE_MAIN } else { table };
        let at = |e: &&super::RouteEntry| {
            !e.r.dst.is_ipv4()
                && e.r.table == table
                && prefix_match(fl.dst, e.r.dst, e.r.prefix_len)
        };
        let mut below: u16 = 129;
        loop {
            let p = self
                .routes
                .iter()
                .filter(at)
                .map(|e| e.r.prefix_len)
                .filter(|&l| u16::from(l) < below)
                .max()?;
            below = u16::from(p);
            let node = || {
                self.routes
                    .iter()
                    .filter(at)
                    .filter(move |e| e.r.prefix_len == p)
            };
            let first_metric = node().map(|e| e.r.metric).min()?;
            let score = |e: &super::RouteEntry| -> Option<u8> {
                let reject = matches!(
                    e.r.kind,
                    RouteKind::Blackhole | RouteKind::Unreachable | RouteKind::Prohibit
                );
                let dev = e.r.ifindex.unwrap_or(LOOPBACK_IFINDEX);
                if !reject && !self.dev_up(dev) {
                    return None;
                }
                let m = if fl.oif == 0 || dev == fl.oif { 2 } else { 0 };
                if m == 0 && fl.iface {
                    return None;
                }
                Some(m)
            };
            fn pick<'a>(
                group: &mut dyn Iterator<Item = &'a super::RouteEntry>,
                score: &dyn Fn(&super::RouteEntry) -> Option<u8>,
            ) -> Option<&'a super::RouteEntry> {
                let mut best: Option<(&super::RouteEntry, u8)> = None;
                for e in group {
                    if let Some(m) = score(e) {
                        if best.is_none_or(|(_, bm)| m > bm) {
                            best = Some((e, m));
                        }
                    }
                }
                best.map(|b| b.0)
            }
            let mut g1 = node().filter(|e| e.r.metric == first_metric);
            let mut found = pick(&mut g1, &score);
            if found.is_none() {
                let mut rest: Vec<&super::RouteEntry> =
                    node().filter(|e| e.r.metric != first_metric).collect();
                rest.sort_by_key(|e| (e.r.metric, e.seq));
                found = pick(&mut rest.into_iter(), &score);
            }
            if let Some(e) = found {
                return Some(res_of(&e.r));
            }
        }
    }

    /// net/ipv6/ip6_fib.c fib6_lookup (rules via fib6_rule_action_alt).
    pub(crate) fn fib_lookup6(&self, fl: &Flow) -> Option<FibRes> {
        if !self.custom6 {
            return self
                .anycast6(fl)
                .or_else(|| self.table_lookup6(RT_TABLE_LOCAL, fl))
                .or_else(|| self.table_lookup6(RT_TABLE_MAIN, fl));
        }
        for rule in &self.rules6 {
            if !Self::rule_match(rule, fl, true) {
                continue;
            }
            if rule.table == RT_TABLE_LOCAL {
                if let Some(r) = self.anycast6(fl) {
                    return Some(r);
                }
            }
            if let Some(r) = self.table_lookup6(rule.table, fl) {
                return Some(r);
            }
        }
        None
    }

    /// The subnet-router anycast addresses (RTN_ANYCAST /128 in table local)
    /// that exist while forwarding is on (addrconf_join_anycast).
    fn anycast6(&self, fl: &Flow) -> Option<FibRes> {
        let IpAddr::V6(dst) = fl.dst else { return None };
        for d in &self.devs {
            if !d.fwd6 || !d.cfg.up {
                continue;
            }
            for &(a, plen) in &d.v6 {
                if plen >= 127 {
                    continue;
                }
                let any = Ipv6Addr::from(u128::from(a) & mask128(plen));
                if any == dst && !any.is_unspecified() {
                    return Some(FibRes {
                        kind: RouteKind::Anycast,
                        ifindex: d.cfg.ifindex,
                        gateway: None,
                        metric: 0,
                        src: None,
                        mtu: None,
                        scope: 254,
                    });
                }
            }
        }
        None
    }

    /// net/ipv4/devinet.c inet_select_addr.
    pub(crate) fn inet_select_addr(
        &self,
        ifindex: u32,
        dst: Option<Ipv4Addr>,
        scope: u8,
    ) -> Option<Ipv4Addr> {
        let mut first = None;
        if let Some(d) = self.dev(ifindex) {
            for a in d.v4.iter().filter(|a| !a.secondary) {
                if a.scope.min(254) > scope {
                    continue;
                }
                if dst.is_none_or(|t| prefix_match(IpAddr::V4(t), IpAddr::V4(a.addr), a.plen)) {
                    return Some(a.addr);
                }
                first.get_or_insert(a.addr);
            }
        }
        if first.is_some() {
            return first;
        }
        for d in &self.devs {
            for a in d.v4.iter().filter(|a| !a.secondary) {
                if a.scope != 253 && a.scope <= scope {
                    return Some(a.addr);
                }
            }
        }
        None
    }

    /// net/ipv4/fib_semantics.c fib_result_prefsrc.
    pub(crate) fn prefsrc4(&self, res: &FibRes) -> Option<Ipv4Addr> {
        if let Some(IpAddr::V4(s)) = res.src {
            return Some(s);
        }
        let gw = match res.gateway {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        };
        self.inet_select_addr(res.ifindex, gw, res.scope)
    }

    /// net/ipv6/addrconf.c ipv6_dev_get_saddr (RFC 6724 rules 1, 2, 5, 6, 8;
    /// skiff's addresses are never deprecated, home, temporary or tentative).
    pub(crate) fn ipv6_dev_get_saddr(&self, out_dev: u32, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let dst_scope = v6_scope(dst);
        let oif_only = dst.octets()[0] == 0xff || dst_scope <= 2;
        let dst_label = v6_label(dst);
        let mut best: Option<([i64; 5], Ipv6Addr)> = None;
        for d in &self.devs {
            if oif_only && d.cfg.ifindex != out_dev {
                continue;
            }
            for &(a, plen) in &d.v6 {
                if a.is_unspecified() || a.octets()[0] == 0xff {
                    continue;
                }
                let s = i64::from(v6_scope(a));
                let scope_score = if s >= i64::from(dst_scope) {
                    -s
                } else {
                    s - 128
                };
                let score = [
                    i64::from(a == dst),
                    scope_score,
                    i64::from(d.cfg.ifindex == out_dev),
                    i64::from(v6_label(a) == dst_label),
                    i64::from(common_prefix(a, dst).min(u32::from(plen))),
                ];
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, a));
                }
            }
        }
        best.map(|b| b.1)
    }

    fn neigh_valid(&self, ifindex: u32, ip: IpAddr) -> Option<[u8; 6]> {
        let n = self.neigh.get(&(ifindex, ip))?;
        match n.state {
            NeighState::Incomplete | NeighState::Failed => None,
            _ => Some(n.mac),
        }
    }

    fn bpf_fib4(&self, p: &mut [u8; FIB_LOOKUP_SIZE], flags: u32, check_mtu: bool) -> i64 {
        let mut p = FibParams(p);
        let ifindex = p.ifindex();
        let (iif, oif) = if flags & BPF_FIB_LOOKUP_OUTPUT != 0 {
            (LOOPBACK_IFINDEX, ifindex)
        } else {
            (ifindex, 0)
        };
        let (src, dst) = (p.ipv4_src(), p.ipv4_dst());
        let mut fl = Flow {
            dst: IpAddr::V4(dst),
            src: IpAddr::V4(src),
            iif,
            oif,
            mark: 0,
            has_saddr: false,
            iface: false,
        };
        let r = if flags & BPF_FIB_LOOKUP_DIRECT != 0 {
            let mut tbid = RT_TABLE_MAIN;
            if flags & BPF_FIB_LOOKUP_TBID != 0 {
                tbid = p.tbid();
                // "zero out for vlan output"
                p.clear_tbid_vlan();
            }
            self.lookup_table4(tbid, &fl)
        } else {
            if flags & BPF_FIB_LOOKUP_MARK != 0 {
                fl.mark = p.mark();
            }
            self.fib_lookup4(&fl)
        };
        let res = match r {
            Ok(res) => res,
            Err(FibErr::Blackhole) => return BPF_FIB_LKUP_RET_BLACKHOLE,
            Err(FibErr::Unreachable) => return BPF_FIB_LKUP_RET_UNREACHABLE,
            Err(FibErr::Prohibit) => return BPF_FIB_LKUP_RET_PROHIBIT,
            Err(FibErr::NotFound) => return BPF_FIB_LKUP_RET_NOT_FWDED,
        };
        if res.kind != RouteKind::Unicast {
            return BPF_FIB_LKUP_RET_NOT_FWDED;
        }
        let Some(dev) = self.dev(res.ifindex) else {
            return BPF_FIB_LKUP_RET_NOT_FWDED;
        };
        let mut mtu = 0;
        if check_mtu {
            // ip_mtu_from_fib_result: the device's MTU (the route's is unlocked).
            mtu = dev.cfg.mtu.min(0xffff);
            if u32::from(p.tot_len()) > mtu {
                p.set_mtu_result(mtu as u16);
                return BPF_FIB_LKUP_RET_FRAG_NEEDED;
            }
        }
        p.set_rt_metric(res.metric);
        p.set_ifindex(res.ifindex);
        if flags & BPF_FIB_LOOKUP_SRC != 0 {
            p.set_ipv4_src(self.prefsrc4(&res).unwrap_or(Ipv4Addr::UNSPECIFIED));
        }
        let mut nh = dst;
        if let Some(IpAddr::V4(g)) = res.gateway {
            nh = g;
            p.set_ipv4_dst(g);
        }
        if flags & BPF_FIB_LOOKUP_SKIP_NEIGH == 0 {
            let Some(ha) = self.neigh_valid(res.ifindex, IpAddr::V4(nh)) else {
                return BPF_FIB_LKUP_RET_NO_NEIGH;
            };
            p.set_macs(dev.cfg.mac, ha);
        }
        set_fwd_params(&mut p, mtu)
    }

    fn bpf_fib6(&self, p: &mut [u8; FIB_LOOKUP_SIZE], flags: u32, check_mtu: bool) -> i64 {
        let mut p = FibParams(p);
        let ifindex = p.ifindex();
        let (src, dst) = (p.ipv6_src(), p.ipv6_dst());
        let output = flags & BPF_FIB_LOOKUP_OUTPUT != 0;
        let fl = Flow {
            dst: IpAddr::V6(dst),
            src: IpAddr::V6(src),
            iif: if output { LOOPBACK_IFINDEX } else { ifindex },
            // bpf_ipv6_fib_lookup passes params->ifindex as oif in both modes.
            oif: ifindex,
            mark: if flags & BPF_FIB_LOOKUP_MARK != 0 && flags & BPF_FIB_LOOKUP_DIRECT == 0 {
                p.mark()
            } else {
                0
            },
            has_saddr: !output,
            iface: false,
        };
        let res = if flags & BPF_FIB_LOOKUP_DIRECT != 0 {
            let mut tbid = RT_TABLE_MAIN;
            if flags & BPF_FIB_LOOKUP_TBID != 0 {
                tbid = p.tbid();
                p.clear_tbid_vlan();
            }
            self.table_lookup6(tbid, &fl)
        } else {
            self.fib_lookup6(&fl)
        };
        let Some(res) = res else {
            return BPF_FIB_LKUP_RET_NOT_FWDED;
        };
        match res.kind {
            RouteKind::Unicast => {}
            RouteKind::Blackhole => return BPF_FIB_LKUP_RET_BLACKHOLE,
            RouteKind::Unreachable => return BPF_FIB_LKUP_RET_UNREACHABLE,
            RouteKind::Prohibit => return BPF_FIB_LKUP_RET_PROHIBIT,
            _ => return BPF_FIB_LKUP_RET_NOT_FWDED,
        }
        let Some(dev) = self.dev(res.ifindex) else {
            return BPF_FIB_LKUP_RET_NOT_FWDED;
        };
        let mut mtu = 0;
        if check_mtu {
            // ip6_mtu_from_fib6: max(IPV6_MIN_MTU, mtu6), at most IP6_MAX_MTU.
            mtu = dev.cfg.mtu.clamp(1280, 0xffff + 40);
            if u32::from(p.tot_len()) > mtu {
                p.set_mtu_result(mtu as u16);
                return BPF_FIB_LKUP_RET_FRAG_NEEDED;
            }
        }
        let mut nh = dst;
        if let Some(IpAddr::V6(g)) = res.gateway {
            nh = g;
            p.set_ipv6_dst(g);
        }
        p.set_rt_metric(res.metric);
        p.set_ifindex(res.ifindex);
        if flags & BPF_FIB_LOOKUP_SRC != 0 {
            let s = match res.src {
                Some(IpAddr::V6(s)) => Some(s),
                _ => self.ipv6_dev_get_saddr(res.ifindex, dst),
            };
            match s {
                Some(s) => p.set_ipv6_src(s),
                None => return BPF_FIB_LKUP_RET_NO_SRC_ADDR,
            }
        }
        if flags & BPF_FIB_LOOKUP_SKIP_NEIGH == 0 {
            let Some(ha) = self.neigh_valid(res.ifindex, IpAddr::V6(nh)) else {
                return BPF_FIB_LKUP_RET_NO_NEIGH;
            };
            p.set_macs(dev.cfg.mac, ha);
        }
        set_fwd_params(&mut p, mtu)
    }
}

/// net/core/filter.c bpf_fib_set_fwd_params.
fn set_fwd_params(p: &mut FibParams<'_>, mtu: u32) -> i64 {
    p.clear_tbid_vlan();
    if mtu != 0 {
        p.set_mtu_result(mtu.min(0xffff) as u16);
    }
    BPF_FIB_LKUP_RET_SUCCESS
}

impl Fib for HostStack {
    fn device_forwarding(&self, ifindex: u32, family: u8) -> Option<bool> {
        self.dev(ifindex)
            .map(|d| if family == AF_INET { d.fwd4 } else { d.fwd6 })
    }

    fn route(
        &self,
        params: &mut [u8; FIB_LOOKUP_SIZE],
        flags: u32,
        check_mtu: bool,
        _skb_len: usize,
    ) -> i64 {
        if FibParams(&mut *params).family() == AF_INET {
            self.bpf_fib4(params, flags, check_mtu)
        } else {
            self.bpf_fib6(params, flags, check_mtu)
        }
    }

    fn device_mtu(&self, ifindex: u32) -> Option<(u32, bool)> {
        self.dev(ifindex).map(|d| (d.cfg.mtu, d.cfg.up))
    }
}

/// True when `a` lies in `net`/`plen` (false across families).
pub fn prefix_match(a: IpAddr, net: IpAddr, plen: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = mask32(plen);
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = mask128(plen);
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// The IPv4 netmask of a prefix length (inet_make_mask).
pub fn mask32(plen: u8) -> u32 {
    if plen == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(plen.min(32)))
    }
}

/// The IPv6 netmask of a prefix length.
pub fn mask128(plen: u8) -> u128 {
    if plen == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(plen.min(128)))
    }
}
