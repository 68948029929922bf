//! NAT (net/netfilter/nf_nat_core.c, nf_nat_masquerade.c, nf_nat_redirect.c):
//! bindings set up on a connection's first packet (DNAT, SNAT, MASQUERADE,
//! REDIRECT, or a null binding), the kernel's choice of address and port
//! (get_unique_tuple), and the hook function that mangles every packet of
//! the connection (nf_nat_inet_fn, nf_nat_packet).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::conntrack::tuple::{
    self, NfConntrackTuple, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};
use super::conntrack::{
    Conntrack, Dir, IpConntrackInfo, IPS_DST_NAT, IPS_DST_NAT_DONE, IPS_NAT_DONE_MASK,
    IPS_NAT_MASK, IPS_SRC_NAT, IPS_SRC_NAT_DONE,
};
use super::nat_proto;
use super::{NfHook, NfHookState, NfProto, NfSkb, NfVerdict};

/// enum nf_nat_manip_type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfNatManipType {
    Src,
    Dst,
}

impl NfNatManipType {
    pub fn other(self) -> NfNatManipType {
        match self {
            NfNatManipType::Src => NfNatManipType::Dst,
            NfNatManipType::Dst => NfNatManipType::Src,
        }
    }

    /// HOOK2MANIP: source NAT at POSTROUTING and INPUT, destination NAT at
    /// PREROUTING and OUTPUT.
    pub fn of_hook(hook: NfHook) -> NfNatManipType {
        match hook {
            NfHook::PostRouting | NfHook::LocalIn => NfNatManipType::Src,
            _ => NfNatManipType::Dst,
        }
    }
}

// NF_NAT_RANGE_* (include/uapi/linux/netfilter/nf_nat.h).
pub const NF_NAT_RANGE_MAP_IPS: u32 = 1 << 0;
pub const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 1 << 1;
pub const NF_NAT_RANGE_PROTO_RANDOM: u32 = 1 << 2;
pub const NF_NAT_RANGE_PERSISTENT: u32 = 1 << 3;
pub const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 1 << 4;
pub const NF_NAT_RANGE_PROTO_OFFSET: u32 = 1 << 5;
pub const NF_NAT_RANGE_PROTO_RANDOM_ALL: u32 =
    NF_NAT_RANGE_PROTO_RANDOM | NF_NAT_RANGE_PROTO_RANDOM_FULLY;

/// NF_NAT_MAX_ATTEMPTS.
const NF_NAT_MAX_ATTEMPTS: u32 = 128;

/// struct nf_nat_range2 (ports and ICMP ids in host order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfNatRange2 {
    pub flags: u32,
    pub min_addr: IpAddr,
    pub max_addr: IpAddr,
    pub min_proto: u16,
    pub max_proto: u16,
    pub base_proto: u16,
}

/// What a nat table rule chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatTarget {
    Dnat(NfNatRange2),
    Snat(NfNatRange2),
    /// The range's ports (and flags); the address is the out device's.
    Masquerade(NfNatRange2),
    /// The range's ports (and flags); the address is the in device's.
    Redirect(NfNatRange2),
}

/// The device addresses MASQUERADE and REDIRECT need.
pub trait NatDevices {
    /// inet_select_addr(out, nexthop, RT_SCOPE_UNIVERSE) (IPv4) or
    /// nf_nat_masquerade_ipv6's source address selection: the address the
    /// out device would use to reach `daddr`.
    fn masquerade_addr(&self, out_ifindex: u32, daddr: IpAddr) -> Option<IpAddr>;
    /// nf_nat_redirect_ipv4/6: the in device's primary address.
    fn primary_addr(&self, ifindex: u32, pf: NfProto) -> Option<IpAddr>;
}

/// No devices: MASQUERADE and REDIRECT at PREROUTING find no address and
/// drop, as the kernel does for a device without one.
pub struct NoDevices;

impl NatDevices for NoDevices {
    fn masquerade_addr(&self, _: u32, _: IpAddr) -> Option<IpAddr> {
        None
    }
    fn primary_addr(&self, _: u32, _: NfProto) -> Option<IpAddr> {
        None
    }
}

/// The nat table's rules for this hook: their verdict and the NAT target a
/// rule chose.
pub type NatTable<'t> = dyn FnMut(&mut NfSkb, &NfHookState) -> (NfVerdict, Option<NatTarget>) + 't;

/// nf_nat_inet_fn without device addresses (see nf_nat_fn_dev).
pub fn nf_nat_fn(
    ct: &mut Conntrack,
    skb: &mut NfSkb,
    st: &NfHookState,
    manip: NfNatManipType,
    table: &mut NatTable,
) -> NfVerdict {
    nf_nat_fn_dev(ct, skb, st, manip, &NoDevices, table)
}

/// nf_nat_inet_fn (with nf_nat_ipv4_fn's ICMP error case): a new connection
/// without a binding of this manip type runs the nat table, then gets the
/// rule's binding or a null one; every packet is then mangled.
pub fn nf_nat_fn_dev(
    ct: &mut Conntrack,
    skb: &mut NfSkb,
    st: &NfHookState,
    manip: NfNatManipType,
    devs: &dyn NatDevices,
    table: &mut NatTable,
) -> NfVerdict {
    let Some(nfct) = *skb.nfct else {
        return NfVerdict::Accept;
    };
    let Some(c) = ct.get(nfct.id) else {
        return NfVerdict::Accept;
    };
    let done_bit = done_bit(manip);
    let related = matches!(
        nfct.info,
        IpConntrackInfo::Related | IpConntrackInfo::RelatedReply
    );
    if related && is_icmp_error(skb.pkt, st.pf) {
        return if nf_nat_icmp_reply_translation(ct, skb, nfct.id, nfct.info, st.hook) {
            NfVerdict::Accept
        } else {
            NfVerdict::Drop
        };
    }
    let new_or_related = related || nfct.info == IpConntrackInfo::New;
    if new_or_related && c.status & done_bit == 0 {
        let (verdict, target) = table(skb, st);
        if verdict != NfVerdict::Accept {
            return verdict;
        }
        let v = match target {
            Some(t) => setup_target(ct, skb, st, nfct.id, t, devs),
            None => NfVerdict::Accept,
        };
        if v != NfVerdict::Accept {
            return v;
        }
        // nf_nat_alloc_null_binding when no rule bound this manip.
        if ct.get(nfct.id).is_some_and(|c| c.status & done_bit == 0) {
            alloc_null_binding(ct, nfct.id, manip, st.now_ns);
        }
    } else if oif_changed(ct, nfct.id, nfct.info, st) {
        ct.kill(nfct.id);
        return NfVerdict::Drop;
    }
    if nf_nat_packet(ct, skb, nfct.id, nfct.info, st.hook) {
        NfVerdict::Accept
    } else {
        NfVerdict::Drop
    }
}

fn done_bit(manip: NfNatManipType) -> u32 {
    match manip {
        NfNatManipType::Src => IPS_SRC_NAT_DONE,
        NfNatManipType::Dst => IPS_DST_NAT_DONE,
    }
}

fn is_icmp_error(pkt: &[u8], pf: NfProto) -> bool {
    let Some(l4) = tuple::get_l4proto(pkt, pf) else {
        return false;
    };
    let t = l4.l4(pkt).first().copied().unwrap_or(0);
    match l4.protonum {
        IPPROTO_ICMP => matches!(t, 3 | 4 | 5 | 11 | 12),
        IPPROTO_ICMPV6 => t < 128,
        _ => false,
    }
}

/// nf_nat_oif_changed: a masqueraded connection whose packets now leave by
/// another device is killed.
fn oif_changed(ct: &Conntrack, id: u32, info: IpConntrackInfo, st: &NfHookState) -> bool {
    let masq = ct.get(id).and_then(|c| c.masq_index);
    matches!(masq, Some(m) if st.hook == NfHook::PostRouting
        && info.dir() == Dir::Original
        && Some(m) != st.out_ifindex)
}

/// The targets' own work before nf_nat_setup_info (xt_nat.c,
/// nf_nat_masquerade_ipv4/6, nf_nat_redirect_ipv4/6).
fn setup_target(
    ct: &mut Conntrack,
    skb: &NfSkb,
    st: &NfHookState,
    id: u32,
    target: NatTarget,
    devs: &dyn NatDevices,
) -> NfVerdict {
    match target {
        NatTarget::Dnat(r) => nf_nat_setup_info(ct, id, &r, NfNatManipType::Dst, st.now_ns),
        NatTarget::Snat(r) => nf_nat_setup_info(ct, id, &r, NfNatManipType::Src, st.now_ns),
        NatTarget::Masquerade(r) => {
            let Some(c) = ct.get(id) else {
                return NfVerdict::Accept;
            };
            let orig = c.tuplehash[0];
            // A locally generated loopback packet (source 0.0.0.0) passes.
            if orig.src.is_unspecified() {
                return NfVerdict::Accept;
            }
            let (Some(out), Some(l4)) = (st.out_ifindex, tuple::get_l4proto(skb.pkt, st.pf)) else {
                return NfVerdict::Drop;
            };
            let Some(newsrc) = devs.masquerade_addr(out, l4.dst) else {
                return NfVerdict::Drop;
            };
            if let Some(c) = ct.get_mut(id) {
                c.masq_index = Some(out);
            }
            let range = single_addr(r, newsrc);
            nf_nat_setup_info(ct, id, &range, NfNatManipType::Src, st.now_ns)
        }
        NatTarget::Redirect(r) => {
            let newdst = if st.hook == NfHook::LocalOut {
                match st.pf {
                    NfProto::Ipv4 => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    NfProto::Ipv6 => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                    NfProto::Netdev => None,
                }
            } else {
                st.in_ifindex.and_then(|i| devs.primary_addr(i, st.pf))
            };
            let Some(newdst) = newdst else {
                return NfVerdict::Drop;
            };
            let range = single_addr(r, newdst);
            nf_nat_setup_info(ct, id, &range, NfNatManipType::Dst, st.now_ns)
        }
    }
}

fn single_addr(r: NfNatRange2, a: IpAddr) -> NfNatRange2 {
    NfNatRange2 {
        flags: r.flags | NF_NAT_RANGE_MAP_IPS,
        min_addr: a,
        max_addr: a,
        ..r
    }
}

/// __nf_nat_alloc_null_binding: the address stays (taken from the reply
/// tuple in case it was already mangled), the port may still move to keep
/// the tuple unique.
fn alloc_null_binding(ct: &mut Conntrack, id: u32, manip: NfNatManipType, now: u64) {
    let Some(c) = ct.get(id) else { return };
    let ip = match manip {
        NfNatManipType::Src => c.tuplehash[1].dst,
        NfNatManipType::Dst => c.tuplehash[1].src,
    };
    let range = NfNatRange2 {
        flags: NF_NAT_RANGE_MAP_IPS,
        min_addr: ip,
        max_addr: ip,
        min_proto: 0,
        max_proto: 0,
        base_proto: 0,
    };
    nf_nat_setup_info(ct, id, &range, manip, now);
}

/// nf_nat_setup_info: choose the tuple, make replies recognisable, record
/// the binding.
pub fn nf_nat_setup_info(
    ct: &mut Conntrack,
    id: u32,
    range: &NfNatRange2,
    manip: NfNatManipType,
    now: u64,
) -> NfVerdict {
    let Some(c) = ct.get(id) else {
        return NfVerdict::Accept;
    };
    if c.is_confirmed() {
        return NfVerdict::Accept;
    }
    if c.status & done_bit(manip) != 0 {
        return NfVerdict::Drop;
    }
    let Some(curr) = tuple::invert_tuple(&c.tuplehash[1]) else {
        return NfVerdict::Drop;
    };
    let zone = c.zone;
    let new = get_unique_tuple(ct, id, zone, &curr, range, manip, now);
    if new != curr {
        if let Some(reply) = tuple::invert_tuple(&new) {
            ct.alter_reply(id, reply);
        }
        if let Some(c) = ct.get_mut(id) {
            c.status |= match manip {
                NfNatManipType::Src => IPS_SRC_NAT,
                NfNatManipType::Dst => IPS_DST_NAT,
            };
        }
    }
    if let Some(c) = ct.get_mut(id) {
        c.status |= done_bit(manip);
        if manip == NfNatManipType::Src {
            let o = c.tuplehash[0];
            ct.bysource
                .entry((zone, o.protonum, o.src, o.src_u))
                .or_default()
                .push(id);
        }
    }
    NfVerdict::Accept
}

/// nf_nat_used_tuple: is the reply to `t` someone else's tuple?
fn used_tuple(ct: &mut Conntrack, zone: u16, t: &NfConntrackTuple, ignored: u32, now: u64) -> bool {
    match tuple::invert_tuple(t) {
        Some(reply) => ct.tuple_taken(zone, &reply, ignored, now),
        None => true,
    }
}

fn addr_in_range(a: IpAddr, r: &NfNatRange2) -> bool {
    match (a, r.min_addr, r.max_addr) {
        (IpAddr::V4(a), IpAddr::V4(lo), IpAddr::V4(hi)) => a >= lo && a <= hi,
        (IpAddr::V6(a), IpAddr::V6(lo), IpAddr::V6(hi)) => a >= lo && a <= hi,
        _ => false,
    }
}

fn has_ports(protonum: u8) -> bool {
    matches!(
        protonum,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_ICMPV6
    )
}

/// The per-protocol key NAT may change: the ICMP id (either manip), or the
/// port of the manip's side.
fn key(t: &mut NfConntrackTuple, manip: NfNatManipType) -> Option<&mut u16> {
    match (t.protonum, manip) {
        (IPPROTO_ICMP | IPPROTO_ICMPV6, _) => Some(&mut t.src_u),
        (IPPROTO_TCP | IPPROTO_UDP, NfNatManipType::Src) => Some(&mut t.src_u),
        (IPPROTO_TCP | IPPROTO_UDP, NfNatManipType::Dst) => Some(&mut t.dst_u),
        _ => None,
    }
}

/// l4proto_in_range.
fn l4proto_in_range(t: &NfConntrackTuple, manip: NfNatManipType, min: u16, max: u16) -> bool {
    let mut t = *t;
    match key(&mut t, manip) {
        Some(k) => *k >= min && *k <= max,
        None => true,
    }
}

/// nf_in_range (source manip only).
fn nf_in_range(t: &NfConntrackTuple, r: &NfNatRange2) -> bool {
    if r.flags & NF_NAT_RANGE_MAP_IPS != 0 && !addr_in_range(t.src, r) {
        return false;
    }
    r.flags & NF_NAT_RANGE_PROTO_SPECIFIED == 0
        || l4proto_in_range(t, NfNatManipType::Src, r.min_proto, r.max_proto)
}

/// get_unique_tuple.
fn get_unique_tuple(
    ct: &mut Conntrack,
    id: u32,
    zone: u16,
    orig: &NfConntrackTuple,
    range: &NfNatRange2,
    manip: NfNatManipType,
    now: u64,
) -> NfConntrackTuple {
    // 1) A source mapping already in use for this source, or the original
    // tuple itself, when unique and in range.
    if manip == NfNatManipType::Src && range.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL == 0 {
        if nf_in_range(orig, range) {
            if !used_tuple(ct, zone, orig, id, now) {
                return *orig;
            }
        } else if let Some(t) = find_appropriate_src(ct, zone, orig, range) {
            if !used_tuple(ct, zone, &t, id, now) {
                return t;
            }
        }
    }
    // 2) The address from the range.
    let mut t = *orig;
    find_best_ips_proto(zone, &mut t, range, manip);
    // 3) Keep the port if it is in range and unique.
    if range.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL == 0 {
        if range.flags & NF_NAT_RANGE_PROTO_SPECIFIED != 0 {
            if range.flags & NF_NAT_RANGE_PROTO_OFFSET == 0
                && l4proto_in_range(&t, manip, range.min_proto, range.max_proto)
                && (range.min_proto == range.max_proto || !used_tuple(ct, zone, &t, id, now))
            {
                return t;
            }
        } else if !used_tuple(ct, zone, &t, id, now) {
            return t;
        }
    }
    nf_nat_l4proto_unique_tuple(ct, id, zone, &mut t, range, manip, now);
    t
}

/// find_appropriate_src: an existing connection from the same source
/// (address, protocol, port) with a source binding; the newest first, as
/// the kernel's bysource chain (hlist_add_head).
fn find_appropriate_src(
    ct: &Conntrack,
    zone: u16,
    t: &NfConntrackTuple,
    range: &NfNatRange2,
) -> Option<NfConntrackTuple> {
    let ids = ct.bysource.get(&(zone, t.protonum, t.src, t.src_u))?;
    ids.iter().rev().find_map(|&id| {
        let c = ct.get(id)?;
        let mut result = tuple::invert_tuple(&c.tuplehash[1])?;
        result.dst = t.dst;
        result.dst_u = t.dst_u;
        nf_in_range(&result, range).then_some(result)
    })
}

/// The 32-bit words of an address as the kernel's union nf_inet_addr holds
/// them, read as native (little-endian) u32s.
fn raw_words(a: IpAddr) -> [u32; 4] {
    let mut w = [0u32; 4];
    let bytes: Vec<u8> = match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    for (i, c) in bytes.chunks_exact(4).enumerate() {
        if let Some(slot) = w.get_mut(i) {
            *slot = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    w
}

/// find_best_ips_proto: one address from the range, spread by a hash of
/// the source and destination addresses (deterministic: jhash2 with a
/// seed from the tuple, not a random one).
fn find_best_ips_proto(
    zone: u16,
    t: &mut NfConntrackTuple,
    range: &NfNatRange2,
    manip: NfNatManipType,
) {
    if range.flags & NF_NAT_RANGE_MAP_IPS == 0 {
        return;
    }
    let var = match manip {
        NfNatManipType::Src => &mut t.src,
        NfNatManipType::Dst => &mut t.dst,
    };
    if range.min_addr == range.max_addr {
        *var = range.min_addr;
        return;
    }
    let max = if matches!(t.src, IpAddr::V4(_)) { 0 } else { 3 };
    let dst = raw_words(t.dst);
    let persistent = range.flags & NF_NAT_RANGE_PERSISTENT != 0;
    let seed = if persistent {
        0
    } else {
        dst[max] ^ u32::from(zone)
    };
    let mut j = jhash2(&raw_words(t.src), seed);
    let (minw, maxw) = (be_words(range.min_addr), be_words(range.max_addr));
    let mut out = [0u32; 4];
    let mut full_range = false;
    for i in 0..=max {
        let (minip, dist) = if full_range {
            (0u32, u32::MAX)
        } else {
            (minw[i], maxw[i].wrapping_sub(minw[i]).wrapping_add(1))
        };
        // reciprocal_scale(j, dist).
        out[i] = minip.wrapping_add(((u64::from(j) * u64::from(dist)) >> 32) as u32);
        if out[i] != maxw[i] {
            full_range = true;
        }
        if !persistent {
            j ^= dst[i];
        }
    }
    let var = match manip {
        NfNatManipType::Src => &mut t.src,
        NfNatManipType::Dst => &mut t.dst,
    };
    *var = match var {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(out[0])),
        IpAddr::V6(_) => {
            let mut b = [0u8; 16];
            for (i, w) in out.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
}

/// Host-order 32-bit words of an address.
fn be_words(a: IpAddr) -> [u32; 4] {
    let mut w = [0u32; 4];
    match a {
        IpAddr::V4(v) => w[0] = u32::from(v),
        IpAddr::V6(v) => {
            for (i, c) in v.octets().chunks_exact(4).enumerate() {
                w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    w
}

/// include/linux/jhash.h: jhash2 over 4 words (sizeof union nf_inet_addr).
pub fn jhash2(k: &[u32; 4], initval: u32) -> u32 {
    let mut a = 0xdeadbeefu32.wrapping_add(4 << 2).wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    a = a.wrapping_add(k[0]);
    b = b.wrapping_add(k[1]);
    c = c.wrapping_add(k[2]);
    // __jhash_mix
    a = a.wrapping_sub(c) ^ c.rotate_left(4);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a) ^ a.rotate_left(6);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b) ^ b.rotate_left(8);
    b = b.wrapping_add(a);
    a = a.wrapping_sub(c) ^ c.rotate_left(16);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a) ^ a.rotate_left(19);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b) ^ b.rotate_left(4);
    b = b.wrapping_add(a);
    // The last word, then __jhash_final.
    a = a.wrapping_add(k[3]);
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

/// nf_nat_l4proto_unique_tuple: search the range for a free port (ICMP
/// id) from an offset, in rounds of at most 128 tries that halve. The
/// offset is random for source NAT and random ranges (the kernel's
/// get_random_u16; skiff's is the table's seeded stream), 0 for DNAT.
fn nf_nat_l4proto_unique_tuple(
    ct: &mut Conntrack,
    id: u32,
    zone: u16,
    t: &mut NfConntrackTuple,
    range: &NfNatRange2,
    manip: NfNatManipType,
    now: u64,
) {
    if !has_ports(t.protonum) {
        return;
    }
    let icmp = matches!(t.protonum, IPPROTO_ICMP | IPPROTO_ICMPV6);
    let cur = key(t, manip).map_or(0, |k| *k);
    let specified = range.flags & NF_NAT_RANGE_PROTO_SPECIFIED != 0;
    let (min, range_size): (u32, u32) = if specified {
        let (lo, hi) = (
            range.min_proto.min(range.max_proto),
            range.min_proto.max(range.max_proto),
        );
        (u32::from(lo), u32::from(hi) - u32::from(lo) + 1)
    } else if icmp {
        (0, 65536)
    } else if manip == NfNatManipType::Dst {
        return;
    } else if cur < 512 {
        (1, 511)
    } else if cur < 1024 {
        (600, 1023 - 600 + 1)
    } else {
        (1024, 65535 - 1024 + 1)
    };
    let mut off: u16 = if range.flags & NF_NAT_RANGE_PROTO_OFFSET != 0 {
        cur.wrapping_sub(range.base_proto)
    } else if range.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL != 0 || manip != NfNatManipType::Dst {
        ct.rnd.next_u32() as u16
    } else {
        0
    };
    let mut attempts = range_size.min(NF_NAT_MAX_ATTEMPTS);
    // Bounded: attempts halves each round and stops under 16.
    loop {
        for _ in 0..attempts {
            let port = (min + u32::from(off) % range_size) as u16;
            if let Some(k) = key(t, manip) {
                *k = port;
            }
            if !used_tuple(ct, zone, t, id, now) {
                return;
            }
            off = off.wrapping_add(1);
        }
        if attempts >= range_size || attempts < 16 {
            return;
        }
        attempts /= 2;
        off = ct.rnd.next_u32() as u16;
    }
}

/// nf_nat_packet: mangle for the manip types this hook does, in this
/// direction (the reply direction undoes the other side's binding).
fn nf_nat_packet(
    ct: &Conntrack,
    skb: &mut NfSkb,
    id: u32,
    info: IpConntrackInfo,
    hook: NfHook,
) -> bool {
    let Some(c) = ct.get(id) else { return true };
    let manip = NfNatManipType::of_hook(hook);
    let dir = info.dir();
    let mut statusbit = match manip {
        NfNatManipType::Src => IPS_SRC_NAT,
        NfNatManipType::Dst => IPS_DST_NAT,
    };
    if dir == Dir::Reply {
        statusbit ^= IPS_NAT_MASK;
    }
    if c.status & statusbit == 0 {
        return true;
    }
    // nf_nat_manip_pkt: the target is the inverse of the other direction.
    let Some(target) = tuple::invert_tuple(&c.tuplehash[dir.other() as usize]) else {
        return false;
    };
    nat_proto::manip_pkt(skb.pkt, &target, manip)
}

/// nf_nat_icmp_reply_translation: an ICMP error about a NATed connection
/// gets its quoted packet and its outer header translated.
fn nf_nat_icmp_reply_translation(
    ct: &Conntrack,
    skb: &mut NfSkb,
    id: u32,
    info: IpConntrackInfo,
    hook: NfHook,
) -> bool {
    let Some(c) = ct.get(id) else { return true };
    let dir = info.dir();
    let manip = NfNatManipType::of_hook(hook);
    let is_redirect = tuple::get_l4proto(skb.pkt, c.l3num())
        .is_some_and(|l4| l4.protonum == IPPROTO_ICMP && l4.l4(skb.pkt).first() == Some(&5));
    if is_redirect
        && (c.status & IPS_NAT_DONE_MASK != IPS_NAT_DONE_MASK || c.status & IPS_NAT_MASK != 0)
    {
        return false;
    }
    let mut statusbit = match manip {
        NfNatManipType::Src => IPS_SRC_NAT,
        NfNatManipType::Dst => IPS_DST_NAT,
    };
    if dir == Dir::Reply {
        statusbit ^= IPS_NAT_MASK;
    }
    if c.status & statusbit == 0 {
        return true;
    }
    let inner_target = c.tuplehash[dir.other() as usize];
    let Some(mut outer) = tuple::invert_tuple(&inner_target) else {
        return false;
    };
    outer.protonum = match inner_target.src {
        IpAddr::V4(_) => IPPROTO_ICMP,
        IpAddr::V6(_) => IPPROTO_ICMPV6,
    };
    nat_proto::icmp_reply_translation(skb.pkt, &inner_target, &outer, manip)
}
