//! bpf_fib_lookup's view of the routing tables: the `Fib` trait a namespace's
//! FIB will implement, and `EmptyFib`, the answer of a namespace with no routes
//! (and forwarding disabled, the kernel default), used until the datapath hands
//! helpers its FIB.

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
    let family = params[0];
    if family != AF_INET && family != AF_INET6 {
        return -super::EAFNOSUPPORT;
    }
    if family == AF_INET6 && (rt6_need_strict(&params[32..48]) || rt6_need_strict(&params[16..32]))
    {
        return BPF_FIB_LKUP_RET_NOT_FWDED;
    }
    let ifindex = u32::from_le_bytes([params[8], params[9], params[10], params[11]]);
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
        let out = u32::from_le_bytes([params[8], params[9], params[10], params[11]]);
        if let Some((mtu, up)) = fib.device_mtu(out) {
            // net/core/dev.c is_skb_forwardable: mtu + hard_header_len + VLAN_HLEN.
            if !up || skb_len > mtu as usize + 14 + 4 {
                rc = BPF_FIB_LKUP_RET_FRAG_NEEDED;
            }
            params[6..8].copy_from_slice(&(mtu.min(0xffff) as u16).to_le_bytes());
        }
    }
    rc
}
