//! bpf_fib_lookup's view of the routing tables: the `Fib` trait a namespace's
//! FIB will implement, and `EmptyFib`, the answer of a namespace with no routes
//! (and forwarding disabled, the kernel default), used until the datapath hands
//! helpers its FIB.

use std::net::{Ipv4Addr, Ipv6Addr};

/// sizeof(struct bpf_fib_lookup).
pub const FIB_LOOKUP_SIZE: usize = 64;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

pub const BPF_FIB_LOOKUP_DIRECT: u32 = 1 << 0;
pub const BPF_FIB_LOOKUP_OUTPUT: u32 = 1 << 1;
pub const BPF_FIB_LOOKUP_SKIP_NEIGH: u32 = 1 << 2;
pub const BPF_FIB_LOOKUP_TBID: u32 = 1 << 3;
pub const BPF_FIB_LOOKUP_SRC: u32 = 1 << 4;
pub const BPF_FIB_LOOKUP_MARK: u32 = 1 << 5;
pub const BPF_FIB_LOOKUP_MASK: u32 = BPF_FIB_LOOKUP_DIRECT
    | BPF_FIB_LOOKUP_OUTPUT
    | BPF_FIB_LOOKUP_SKIP_NEIGH
    | BPF_FIB_LOOKUP_TBID
    | BPF_FIB_LOOKUP_SRC
    | BPF_FIB_LOOKUP_MARK;

pub const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
pub const BPF_FIB_LKUP_RET_BLACKHOLE: i64 = 1;
pub const BPF_FIB_LKUP_RET_UNREACHABLE: i64 = 2;
pub const BPF_FIB_LKUP_RET_PROHIBIT: i64 = 3;
pub const BPF_FIB_LKUP_RET_NOT_FWDED: i64 = 4;
pub const BPF_FIB_LKUP_RET_FWD_DISABLED: i64 = 5;
pub const BPF_FIB_LKUP_RET_UNSUPP_LWT: i64 = 6;
pub const BPF_FIB_LKUP_RET_NO_NEIGH: i64 = 7;
pub const BPF_FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;
pub const BPF_FIB_LKUP_RET_NO_SRC_ADDR: i64 = 9;

mod field {
    pub const FAMILY: usize = 0;
    pub const TOT_LEN: usize = 6;
    pub const IFINDEX: usize = 8;
    pub const RT_METRIC: usize = 12;
    pub const SRC: usize = 16;
    pub const DST: usize = 32;
    pub const TBID: usize = 48;
    pub const MARK: usize = 52;
    pub const SMAC: usize = 52;
    pub const DMAC: usize = 58;
}

/// A typed view of `struct bpf_fib_lookup` (include/uapi/linux/bpf.h) as the
/// program passed it: host-order integers, network-order addresses.
pub struct FibParams<'a>(pub &'a mut [u8; FIB_LOOKUP_SIZE]);

impl FibParams<'_> {
    fn le16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.0[off], self.0[off + 1]])
    }
    fn le32(&self, off: usize) -> u32 {
        let b = &self.0[off..off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn addr16(&self, off: usize) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.0[off..off + 16]);
        a
    }

    /// family (AF_INET, AF_INET6).
    pub fn family(&self) -> u8 {
        self.0[field::FAMILY]
    }
    /// tot_len (the union's input side).
    pub fn tot_len(&self) -> u16 {
        self.le16(field::TOT_LEN)
    }
    /// Sets mtu_result (the union's output side).
    pub fn set_mtu_result(&mut self, mtu: u16) {
        self.put(field::TOT_LEN, &mtu.to_le_bytes());
    }
    /// ifindex.
    pub fn ifindex(&self) -> u32 {
        self.le32(field::IFINDEX)
    }
    /// Sets ifindex.
    pub fn set_ifindex(&mut self, i: u32) {
        self.put(field::IFINDEX, &i.to_le_bytes());
    }
    /// Sets rt_metric.
    pub fn set_rt_metric(&mut self, m: u32) {
        self.put(field::RT_METRIC, &m.to_le_bytes());
    }
    /// ipv4_src.
    pub fn ipv4_src(&self) -> Ipv4Addr {
        let s = &self.0[field::SRC..field::SRC + 4];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }
    /// Sets ipv4_src.
    pub fn set_ipv4_src(&mut self, a: Ipv4Addr) {
        self.put(field::SRC, &a.octets());
    }
    /// ipv4_dst.
    pub fn ipv4_dst(&self) -> Ipv4Addr {
        let d = &self.0[field::DST..field::DST + 4];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }
    /// Sets ipv4_dst.
    pub fn set_ipv4_dst(&mut self, a: Ipv4Addr) {
        self.put(field::DST, &a.octets());
    }
    /// ipv6_src, as bytes.
    pub fn ipv6_src_bytes(&self) -> [u8; 16] {
        self.addr16(field::SRC)
    }
    /// ipv6_dst, as bytes.
    pub fn ipv6_dst_bytes(&self) -> [u8; 16] {
        self.addr16(field::DST)
    }
    /// ipv6_src.
    pub fn ipv6_src(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.ipv6_src_bytes())
    }
    /// Sets ipv6_src.
    pub fn set_ipv6_src(&mut self, a: Ipv6Addr) {
        self.put(field::SRC, &a.octets());
    }
    /// ipv6_dst.
    pub fn ipv6_dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.ipv6_dst_bytes())
    }
    /// Sets ipv6_dst.
    pub fn set_ipv6_dst(&mut self, a: Ipv6Addr) {
        self.put(field::DST, &a.octets());
    }
    /// tbid (the union with h_vlan_proto/h_vlan_TCI).
    pub fn tbid(&self) -> u32 {
        self.le32(field::TBID)
    }
    /// Zeroes the tbid / VLAN union ("zero out for vlan output").
    pub fn clear_tbid_vlan(&mut self) {
        self.0[field::TBID..field::MARK].fill(0);
    }
    /// mark (the union with smac/dmac).
    pub fn mark(&self) -> u32 {
        self.le32(field::MARK)
    }
    /// Sets smac and dmac.
    pub fn set_macs(&mut self, smac: [u8; 6], dmac: [u8; 6]) {
        self.put(field::DMAC, &dmac);
        self.put(field::SMAC, &smac);
    }
}

/// A namespace's routing state as bpf_fib_lookup sees it.
pub trait Fib {
    /// `Some(forwarding enabled for the family)` when the device exists.
    fn device_forwarding(&self, ifindex: u32, family: u8) -> Option<bool>;
    /// The route lookup proper (after the device and forwarding checks):
    /// a BPF_FIB_LKUP_RET_* code, filling `params` (struct bpf_fib_lookup bytes)
    /// on success as the kernel's bpf_fib_set_fwd_params does.
    fn route(
        &self,
        params: &mut [u8; FIB_LOOKUP_SIZE],
        flags: u32,
        check_mtu: bool,
        skb_len: usize,
    ) -> i64;
    /// (MTU, up) of a device, for bpf_skb_fib_lookup's is_skb_forwardable check
    /// when the program gave no tot_len. None: no such device.
    fn device_mtu(&self, _ifindex: u32) -> Option<(u32, bool)> {
        None
    }
}

/// include/net/ip6_route.h rt6_need_strict on a raw address: multicast,
/// link-local or loopback (never forwarded).
fn rt6_need_strict(a: &[u8]) -> bool {
    match a {
        [0xff, ..] => true,
        [0xfe, b, ..] if b & 0xc0 == 0x80 => true,
        _ => a.len() == 16 && a[..15].iter().all(|&x| x == 0) && a[15] == 1,
    }
}

/// No routes; devices `lo` (and the packet's own) exist with forwarding off
/// (net.ipv4.conf.*.forwarding=0, as on a fresh kernel).
#[derive(Clone, Debug, Default)]
pub struct EmptyFib {
    pub forwarding: bool,
    /// Extra devices beyond lo (ifindex 1).
    pub devices: Vec<u32>,
}

impl Fib for EmptyFib {
    fn device_forwarding(&self, ifindex: u32, _family: u8) -> Option<bool> {
        (ifindex == super::LO_IFINDEX || self.devices.contains(&ifindex)).then_some(self.forwarding)
    }

    fn route(
        &self,
        _params: &mut [u8; FIB_LOOKUP_SIZE],
        _flags: u32,
        _check_mtu: bool,
        _skb_len: usize,
    ) -> i64 {
        BPF_FIB_LKUP_RET_NOT_FWDED
    }
}

/// net/core/filter.c: bpf_ipv4_fib_lookup / bpf_ipv6_fib_lookup, up to the
/// route lookup: family (-EAFNOSUPPORT), IPv6 link-local/multicast/loopback
/// (NOT_FWDED, before the device), device (-ENODEV), forwarding
/// (BPF_FIB_LKUP_RET_FWD_DISABLED); then `Fib::route`; then, for TC without
/// tot_len (`check_mtu` false), bpf_skb_fib_lookup's is_skb_forwardable check
/// and mtu_result. `own` is the packet's device, which exists.
pub fn lookup(
    fib: &dyn Fib,
    params: &mut [u8; FIB_LOOKUP_SIZE],
    flags: u32,
    check_mtu: bool,
    own: u32,
    skb_len: usize,
) -> i64 {
    let p = FibParams(&mut *params);
    let family = p.family();
    if family != AF_INET && family != AF_INET6 {
        return -super::EAFNOSUPPORT;
    }
    if family == AF_INET6
        && (rt6_need_strict(&p.ipv6_dst_bytes()) || rt6_need_strict(&p.ipv6_src_bytes()))
    {
        return BPF_FIB_LKUP_RET_NOT_FWDED;
    }
    let ifindex = p.ifindex();
    let fwd = match fib.device_forwarding(ifindex, family) {
        Some(f) => f,
        None if ifindex != 0 && ifindex == own => false,
        None => return -super::ENODEV,
    };
    if !fwd {
        return BPF_FIB_LKUP_RET_FWD_DISABLED;
    }
    let mut rc = fib.route(params, flags, check_mtu, skb_len);
    if rc == BPF_FIB_LKUP_RET_SUCCESS && !check_mtu {
        let mut p = FibParams(params);
        if let Some((mtu, up)) = fib.device_mtu(p.ifindex()) {
            // net/core/dev.c is_skb_forwardable: mtu + hard_header_len + VLAN_HLEN.
            if !up || skb_len > mtu as usize + 14 + 4 {
                rc = BPF_FIB_LKUP_RET_FRAG_NEEDED;
            }
            p.set_mtu_result(mtu.min(0xffff) as u16);
        }
    }
    rc
}
