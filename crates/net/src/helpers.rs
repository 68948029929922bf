//! The networking helpers of XDP and TC programs (net/core/filter.c), registered
//! into the VM's one helper table by kernel helper id. Helpers whose id the
//! kernel maps to different functions for XDP and TC (bpf_redirect,
//! perf_event_output, fib_lookup, check_mtu) dispatch on the program type.

pub mod csum;
pub mod fib;
mod skb;
pub(crate) use skb::skb_get_hash;
pub mod tunnel;
mod xdp;

use skiff_vm::{
    ArgType as A, HelperDef, HelperProto as P, HelperTable, ProgType, RetType as R, RunState,
    VmError,
};

use crate::buff::{SkBuff, XdpBuff};

pub use fib::{EmptyFib, Fib, FIB_LOOKUP_SIZE};

const XDP: &[ProgType] = &[ProgType::Xdp];
const TC: &[ProgType] = &[ProgType::SchedCls, ProgType::SchedAct];
const XDP_TC: &[ProgType] = &[ProgType::Xdp, ProgType::SchedCls, ProgType::SchedAct];

// errno values (include/uapi/asm-generic/errno*.h, include/linux/errno.h).
pub const EFAULT: i64 = 14;
pub const EACCES: i64 = 13;
pub const ENOMEM: i64 = 12;
pub const ENODEV: i64 = 19;
pub const EINVAL: i64 = 22;
pub const E2BIG: i64 = 7;
pub const ENOENT: i64 = 2;
pub const ERANGE: i64 = 34;
pub const EAFNOSUPPORT: i64 = 97;
pub const EALREADY: i64 = 114;
/// Kernel-internal ENOTSUPP (include/linux/errno.h), which helpers do return.
pub const ENOTSUPP: i64 = 524;

/// Device model of a test run (and the default until devices are wired in):
/// `lo`, ifindex 1, MTU 65536, hard_header_len 14.
pub const LO_IFINDEX: u32 = 1;
pub const LO_MTU: u32 = 65536;
pub const HARD_HEADER_LEN: u32 = 14;

fn neg(e: i64) -> u64 {
    skiff_vm::helpers::neg(e)
}

macro_rules! def {
    ($id:expr, $name:expr, $f:expr, $types:expr, $proto:expr) => {
        def!($id, $name, $f, $types, $proto, None)
    };
    ($id:expr, $name:expr, $f:expr, $types:expr, $proto:expr, $map_op:expr) => {
        HelperDef {
            id: $id,
            name: $name,
            func: $f,
            prog_types: $types,
            proto: $proto,
            map_op: $map_op,
        }
    };
}

/// ARG_PTR_TO_MEM | MEM_RDONLY.
const MEM_RDONLY: A = A::PtrToMem {
    maybe_null: false,
    rdonly: true,
};
/// ARG_PTR_TO_MEM | PTR_MAYBE_NULL | MEM_RDONLY.
const MEM_RDONLY_OR_NULL: A = A::PtrToMem {
    maybe_null: true,
    rdonly: true,
};
/// ARG_PTR_TO_MEM (read and written by the helper, e.g. bpf_fib_lookup's params).
const MEM_RW: A = A::PtrToMem {
    maybe_null: false,
    rdonly: false,
};

/// `(ctx, anything...)`: the shape of most skb/xdp helpers; `n` ARG_ANYTHING after ctx.
const fn ctx_anything(n: usize) -> P {
    const ARGS: [A; 5] = [
        A::PtrToCtx,
        A::Anything,
        A::Anything,
        A::Anything,
        A::Anything,
    ];
    let (head, _) = ARGS.split_at(n + 1);
    P::new(R::Integer, head)
}

// net/core/filter.c: bpf_xdp_adjust_{head,meta,tail}_proto (changes packet data).
const XDP_ADJUST: P = ctx_anything(1).changes_pkt_data();
// net/core/filter.c: bpf_xdp_get_buff_len_proto
const XDP_GET_BUFF_LEN: P = ctx_anything(0);
// net/core/filter.c: bpf_xdp_load_bytes_proto
const XDP_LOAD_BYTES: P = P::new(
    R::Integer,
    &[A::PtrToCtx, A::Anything, A::PtrToUninitMem, A::ConstSize],
);
// net/core/filter.c: bpf_xdp_store_bytes_proto (MEM_RDONLY since the 2025 fix;
// ARG_PTR_TO_UNINIT_MEM before).
const XDP_STORE_BYTES: P = P::new(
    R::Integer,
    &[A::PtrToCtx, A::Anything, MEM_RDONLY, A::ConstSize],
);
// net/core/filter.c: bpf_xdp_redirect_map_proto
const XDP_REDIRECT_MAP: P = P::new(R::Integer, &[A::ConstMapPtr, A::Anything, A::Anything]);
// net/core/filter.c: bpf_skb_store_bytes_proto (changes packet data).
const SKB_STORE_BYTES: P = P::new(
    R::Integer,
    &[
        A::PtrToCtx,
        A::Anything,
        MEM_RDONLY,
        A::ConstSize,
        A::Anything,
    ],
)
.changes_pkt_data();
// net/core/filter.c: bpf_skb_load_bytes_proto
const SKB_LOAD_BYTES: P = P::new(
    R::Integer,
    &[A::PtrToCtx, A::Anything, A::PtrToUninitMem, A::ConstSize],
);
// net/core/filter.c: bpf_skb_load_bytes_relative_proto
const SKB_LOAD_BYTES_RELATIVE: P = P::new(
    R::Integer,
    &[
        A::PtrToCtx,
        A::Anything,
        A::PtrToUninitMem,
        A::ConstSize,
        A::Anything,
    ],
);
// net/core/filter.c: bpf_l3_csum_replace_proto, bpf_l4_csum_replace_proto
const CSUM_REPLACE: P = ctx_anything(4).changes_pkt_data();
// net/core/filter.c: bpf_skb_{change_tail,change_head,change_proto,vlan_push}_proto,
// bpf_clone_redirect_proto: (ctx, anything, anything), changing packet data.
const CTX_2_CHANGES: P = ctx_anything(2).changes_pkt_data();
// net/core/filter.c: bpf_skb_adjust_room_proto
const SKB_ADJUST_ROOM: P = ctx_anything(3).changes_pkt_data();
// net/core/filter.c: bpf_skb_pull_data_proto
const SKB_PULL_DATA: P = ctx_anything(1).changes_pkt_data();
// net/core/filter.c: bpf_skb_vlan_pop_proto
const SKB_VLAN_POP: P = ctx_anything(0).changes_pkt_data();
// net/core/filter.c: bpf_redirect_proto, bpf_xdp_redirect_proto, bpf_redirect_peer_proto
const REDIRECT: P = P::new(R::Integer, &[A::Anything, A::Anything]);
// net/core/filter.c: bpf_redirect_neigh_proto
const REDIRECT_NEIGH: P = P::new(
    R::Integer,
    &[
        A::Anything,
        MEM_RDONLY_OR_NULL,
        A::ConstSizeOrZero,
        A::Anything,
    ],
);
// net/core/filter.c: bpf_csum_diff_proto (pkt_access: from/to may be packet).
const CSUM_DIFF: P = P::new(
    R::Integer,
    &[
        MEM_RDONLY_OR_NULL,
        A::ConstSizeOrZero,
        MEM_RDONLY_OR_NULL,
        A::ConstSizeOrZero,
        A::Anything,
    ],
)
.pkt_access();
// net/core/filter.c: bpf_skb_event_output_proto, bpf_xdp_event_output_proto (GPL).
const EVENT_OUTPUT: P = P::new(
    R::Integer,
    &[
        A::PtrToCtx,
        A::ConstMapPtr,
        A::Anything,
        MEM_RDONLY,
        A::ConstSizeOrZero,
    ],
)
.gpl_only();
// net/core/filter.c: bpf_skb_fib_lookup_proto, bpf_xdp_fib_lookup_proto (GPL).
const FIB_LOOKUP: P = P::new(
    R::Integer,
    &[A::PtrToCtx, MEM_RW, A::ConstSize, A::Anything],
)
.gpl_only();
// net/core/filter.c: bpf_skb_check_mtu_proto, bpf_xdp_check_mtu_proto (GPL;
// ARG_PTR_TO_FIXED_SIZE_MEM | MEM_WRITE | MEM_ALIGNED, arg3_size 4: mtu_len is
// read and written, so it must be initialised).
const CHECK_MTU: P = P::new(
    R::Integer,
    &[
        A::PtrToCtx,
        A::Anything,
        A::PtrToFixedSizeMem {
            size: 4,
            rdonly: false,
            uninit: false,
        },
        A::Anything,
        A::Anything,
    ],
)
.gpl_only();

// net/core/filter.c: bpf_skb_set_tunnel_key_proto
const SET_TUNNEL_KEY: P = P::new(
    R::Integer,
    &[A::PtrToCtx, MEM_RDONLY, A::ConstSize, A::Anything],
);
// net/core/filter.c: bpf_skb_get_tunnel_key_proto
const GET_TUNNEL_KEY: P = P::new(
    R::Integer,
    &[A::PtrToCtx, A::PtrToUninitMem, A::ConstSize, A::Anything],
);
// net/core/filter.c: bpf_skb_set_tunnel_opt_proto
const SET_TUNNEL_OPT: P = P::new(R::Integer, &[A::PtrToCtx, MEM_RDONLY, A::ConstSize]);
// net/core/filter.c: bpf_skb_get_tunnel_opt_proto
const GET_TUNNEL_OPT: P = P::new(R::Integer, &[A::PtrToCtx, A::PtrToUninitMem, A::ConstSize]);

const DEFS: &[HelperDef] = &[
    // XDP
    def!(44, "bpf_xdp_adjust_head", xdp::adjust_head, XDP, XDP_ADJUST),
    def!(54, "bpf_xdp_adjust_meta", xdp::adjust_meta, XDP, XDP_ADJUST),
    def!(65, "bpf_xdp_adjust_tail", xdp::adjust_tail, XDP, XDP_ADJUST),
    def!(
        188,
        "bpf_xdp_get_buff_len",
        xdp::get_buff_len,
        XDP,
        XDP_GET_BUFF_LEN
    ),
    def!(
        189,
        "bpf_xdp_load_bytes",
        xdp::load_bytes,
        XDP,
        XDP_LOAD_BYTES
    ),
    def!(
        190,
        "bpf_xdp_store_bytes",
        xdp::store_bytes,
        XDP,
        XDP_STORE_BYTES
    ),
    def!(
        51,
        "bpf_redirect_map",
        xdp::redirect_map,
        XDP,
        XDP_REDIRECT_MAP,
        Some(skiff_vm::map_op!(xdp::map_redirect))
    ),
    // TC
    def!(
        9,
        "bpf_skb_store_bytes",
        skb::store_bytes,
        TC,
        SKB_STORE_BYTES
    ),
    def!(
        26,
        "bpf_skb_load_bytes",
        skb::load_bytes,
        TC,
        SKB_LOAD_BYTES
    ),
    def!(
        68,
        "bpf_skb_load_bytes_relative",
        skb::load_bytes_relative,
        TC,
        SKB_LOAD_BYTES_RELATIVE
    ),
    def!(
        10,
        "bpf_l3_csum_replace",
        skb::l3_csum_replace,
        TC,
        CSUM_REPLACE
    ),
    def!(
        11,
        "bpf_l4_csum_replace",
        skb::l4_csum_replace,
        TC,
        CSUM_REPLACE
    ),
    // net/core/filter.c: bpf_csum_update_proto, bpf_csum_level_proto
    def!(40, "bpf_csum_update", skb::csum_update, TC, ctx_anything(1)),
    def!(135, "bpf_csum_level", skb::csum_level, TC, ctx_anything(1)),
    def!(39, "bpf_skb_pull_data", skb::pull_data, TC, SKB_PULL_DATA),
    def!(
        38,
        "bpf_skb_change_tail",
        skb::change_tail,
        TC,
        CTX_2_CHANGES
    ),
    def!(
        43,
        "bpf_skb_change_head",
        skb::change_head,
        TC,
        CTX_2_CHANGES
    ),
    def!(
        50,
        "bpf_skb_adjust_room",
        skb::adjust_room,
        TC,
        SKB_ADJUST_ROOM
    ),
    def!(
        31,
        "bpf_skb_change_proto",
        skb::change_proto,
        TC,
        CTX_2_CHANGES
    ),
    // net/core/filter.c: bpf_skb_change_type_proto (not in bpf_helper_changes_pkt_data)
    def!(
        32,
        "bpf_skb_change_type",
        skb::change_type,
        TC,
        ctx_anything(1)
    ),
    def!(
        21,
        "bpf_skb_set_tunnel_key",
        tunnel::set_tunnel_key,
        TC,
        SET_TUNNEL_KEY
    ),
    def!(
        20,
        "bpf_skb_get_tunnel_key",
        tunnel::get_tunnel_key,
        TC,
        GET_TUNNEL_KEY
    ),
    def!(
        30,
        "bpf_skb_set_tunnel_opt",
        tunnel::set_tunnel_opt,
        TC,
        SET_TUNNEL_OPT
    ),
    def!(
        29,
        "bpf_skb_get_tunnel_opt",
        tunnel::get_tunnel_opt,
        TC,
        GET_TUNNEL_OPT
    ),
    def!(18, "bpf_skb_vlan_push", skb::vlan_push, TC, CTX_2_CHANGES),
    def!(19, "bpf_skb_vlan_pop", skb::vlan_pop, TC, SKB_VLAN_POP),
    // net/core/filter.c: bpf_get_hash_recalc_proto, bpf_set_hash_invalid_proto,
    // bpf_set_hash_proto
    def!(
        34,
        "bpf_get_hash_recalc",
        skb::get_hash_recalc,
        TC,
        ctx_anything(0)
    ),
    def!(
        41,
        "bpf_set_hash_invalid",
        skb::set_hash_invalid,
        TC,
        ctx_anything(0)
    ),
    def!(48, "bpf_set_hash", skb::set_hash, TC, ctx_anything(1)),
    def!(155, "bpf_redirect_peer", skb::redirect_peer, TC, REDIRECT),
    def!(
        152,
        "bpf_redirect_neigh",
        skb::redirect_neigh,
        TC,
        REDIRECT_NEIGH
    ),
    def!(
        13,
        "bpf_clone_redirect",
        skb::clone_redirect,
        TC,
        CTX_2_CHANGES
    ),
    // Both (one id, two kernel functions with the same prototype: dispatch on
    // the program type).
    def!(28, "bpf_csum_diff", csum_diff, XDP_TC, CSUM_DIFF),
    def!(23, "bpf_redirect", redirect, XDP_TC, REDIRECT),
    def!(
        25,
        "bpf_perf_event_output",
        perf_event_output,
        XDP_TC,
        EVENT_OUTPUT
    ),
    def!(69, "bpf_fib_lookup", fib_lookup, XDP_TC, FIB_LOOKUP),
    def!(163, "bpf_check_mtu", check_mtu, XDP_TC, CHECK_MTU),
];

/// Register every networking helper (XDP and TC) into `t`.
pub fn register(t: &mut HelperTable) {
    t.register_all(DEFS);
}

fn is_xdp(st: &RunState) -> bool {
    st.current.prog_type == ProgType::Xdp
}

/// The program's `struct xdp_md` context (the verifier guarantees ARG_PTR_TO_CTX).
pub(crate) fn xdp_ctx<'a>(st: &'a mut RunState) -> Result<&'a mut XdpBuff, VmError> {
    st.ctx_as::<XdpBuff>()
        .ok_or_else(|| VmError::Ctx("helper needs an xdp_md context".into()))
}

/// The program's `struct __sk_buff` context.
pub(crate) fn skb_ctx<'a>(st: &'a mut RunState) -> Result<&'a mut SkBuff, VmError> {
    st.ctx_as::<SkBuff>()
        .ok_or_else(|| VmError::Ctx("helper needs a __sk_buff context".into()))
}

/// A device as helpers see it in the packet's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsDevice {
    pub ifindex: u32,
    pub mtu: u32,
    pub up: bool,
}

/// What helpers need from the network namespace a packet is in, handed over by
/// the datapath through `XdpBuff::netns` / `SkBuff::netns` (dev_get_by_index_rcu
/// on dev_net(skb->dev), the namespace's FIB). Test runs have none: the `lo`-only
/// model applies there.
pub trait NetNs: Send + Sync {
    /// The device `ifindex` of this namespace (dev_get_by_index_rcu).
    fn device(&self, ifindex: u32) -> Option<NsDevice>;
    /// bpf_fib_lookup against this namespace's FIB (net/core/filter.c:
    /// bpf_ipv4_fib_lookup / bpf_ipv6_fib_lookup).
    fn fib_lookup(
        &self,
        params: &mut [u8; FIB_LOOKUP_SIZE],
        flags: u32,
        check_mtu: bool,
        own: u32,
        skb_len: usize,
    ) -> i64;
}

/// Whether `ifindex` names a device in the program's namespace. Without a
/// datapath namespace, the test-run model applies: only `lo` (ifindex 1) and
/// the packet's own device exist.
pub(crate) fn device_exists(netns: Option<&dyn NetNs>, ifindex: u32, own: u32) -> bool {
    match netns {
        Some(ns) => ns.device(ifindex).is_some(),
        None => ifindex == LO_IFINDEX || (ifindex != 0 && ifindex == own),
    }
}

// net/core/filter.c: bpf_csum_diff
fn csum_diff(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let from = st.bytes(a[0], a[1] as u32 as usize)?;
    let to = st.bytes(a[2], a[3] as u32 as usize)?;
    Ok(csum::csum_diff(from, to, a[4] as u32) as u64)
}

// net/core/filter.c: bpf_xdp_redirect / bpf_redirect
fn redirect(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    if is_xdp(st) {
        xdp::redirect(st, a)
    } else {
        skb::redirect(st, a)
    }
}

// net/core/filter.c: bpf_xdp_event_output / bpf_skb_event_output
fn perf_event_output(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let pkt_len = if is_xdp(st) {
        let x = xdp_ctx(st)?;
        x.data_end - x.data
    } else {
        skb_ctx(st)?.len()
    };
    event_output(st, a, pkt_len)
}

pub const BPF_F_INDEX_MASK: u64 = 0xffff_ffff;
pub const BPF_F_CURRENT_CPU: u64 = BPF_F_INDEX_MASK;
pub const BPF_F_CTXLEN_MASK: u64 = 0xf_ffff << 32;

fn event_output(st: &mut RunState, a: &[u64; 5], pkt_len: usize) -> Result<u64, VmError> {
    let map = st.map(a[1])?;
    if map.attr().map_type != skiff_maps::MapType::PerfEventArray {
        return Err(VmError::Helper(format!(
            "bpf_perf_event_output on {} map {}",
            map.attr().map_type.name(),
            map.attr().name
        )));
    }
    let flags = a[2];
    // The sample bytes are read as the kernel's verifier would check them.
    st.read(a[3], a[4] as usize)?;
    let ctx_size = (flags & BPF_F_CTXLEN_MASK) >> 32;
    if flags & !(BPF_F_CTXLEN_MASK | BPF_F_INDEX_MASK) != 0 {
        return Ok(neg(EINVAL));
    }
    if ctx_size > pkt_len as u64 {
        return Ok(neg(EFAULT));
    }
    // kernel/trace/bpf_trace.c: __bpf_perf_event_output
    let mut index = flags & BPF_F_INDEX_MASK;
    if index == BPF_F_CURRENT_CPU {
        index = st.cpu() as u64;
    }
    if index >= map.attr().max_entries as u64 {
        return Ok(neg(E2BIG));
    }
    // skiff has no perf events: every slot is empty (as in a test run, where no
    // perf event fd was stored).
    Ok(neg(ENOENT))
}

// net/core/filter.c: bpf_xdp_fib_lookup / bpf_skb_fib_lookup
fn fib_lookup(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let plen = a[2] as u32 as i32;
    let flags = a[3] as u32;
    let len = (plen.max(0) as usize).min(FIB_LOOKUP_SIZE);
    let mut params = [0u8; FIB_LOOKUP_SIZE];
    if let Some(p) = params.get_mut(..len) {
        st.read_into(a[1], p)?;
    }
    if (plen as i64) < FIB_LOOKUP_SIZE as i64 {
        return Ok(neg(EINVAL));
    }
    if flags & !fib::BPF_FIB_LOOKUP_MASK != 0 {
        return Ok(neg(EINVAL));
    }
    let xdp = is_xdp(st);
    let (own, skb_len, tot_len, netns) = if xdp {
        let x = xdp_ctx(st)?;
        (x.ingress_ifindex, 0, 0, x.netns.clone())
    } else {
        let s = skb_ctx(st)?;
        (
            s.ifindex,
            s.len(),
            fib::FibParams(&mut params).tot_len(),
            s.netns.clone(),
        )
    };
    // XDP always checks the MTU; TC only when tot_len is given.
    let check_mtu = xdp || tot_len != 0;
    let rc = match netns {
        Some(ns) => ns.fib_lookup(&mut params, flags, check_mtu, own, skb_len),
        None => fib::lookup(
            &EmptyFib::default(),
            &mut params,
            flags,
            check_mtu,
            own,
            skb_len,
        ),
    };
    st.write(a[1], &params)?;
    Ok(rc as u64)
}

pub const BPF_MTU_CHK_SEGS: u64 = 1;
pub const BPF_MTU_CHK_RET_SUCCESS: u64 = 0;
pub const BPF_MTU_CHK_RET_FRAG_NEEDED: u64 = 1;

// net/core/filter.c: bpf_xdp_check_mtu / bpf_skb_check_mtu
fn check_mtu(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let ifindex = a[1] as u32;
    let mut m = [0u8; 4];
    st.read_into(a[2], &mut m)?;
    let mtu_len = u32::from_le_bytes(m);
    let len_diff = a[3] as u32 as i32;
    let flags = a[4];
    let xdp = is_xdp(st);
    let (own, pkt_len, mtu, netns) = if xdp {
        let x = xdp_ctx(st)?;
        (
            x.ingress_ifindex,
            (x.data_end - x.data) as i64,
            x.mtu,
            x.netns.clone(),
        )
    } else {
        let s = skb_ctx(st)?;
        (s.ifindex, s.len() as i64, s.mtu, s.netns.clone())
    };
    if xdp {
        if flags != 0 {
            return Ok(neg(EINVAL));
        }
    } else {
        if flags & !BPF_MTU_CHK_SEGS != 0 {
            return Ok(neg(EINVAL));
        }
        if flags & BPF_MTU_CHK_SEGS != 0 && (len_diff != 0 || mtu_len != 0) {
            return Ok(neg(EINVAL));
        }
    }
    // __dev_via_ifindex: 0 is the current device.
    let mtu = if ifindex == 0 || ifindex == own {
        mtu
    } else if let Some(ns) = &netns {
        match ns.device(ifindex) {
            Some(d) => d.mtu,
            None => return Ok(neg(ENODEV)),
        }
    } else if device_exists(None, ifindex, own) {
        LO_MTU
    } else {
        return Ok(neg(ENODEV));
    };
    let dev_len = mtu as i64 + HARD_HEADER_LEN as i64;
    let mut len = if mtu_len != 0 {
        mtu_len as i64 + HARD_HEADER_LEN as i64
    } else {
        pkt_len
    };
    // The kernel computes in int: wrap like it.
    len = (len as i32).wrapping_add(len_diff) as i64;
    // skiff skbs are never GSO, so the SEGS branch never applies.
    let ret = if len > dev_len {
        BPF_MTU_CHK_RET_FRAG_NEEDED
    } else {
        BPF_MTU_CHK_RET_SUCCESS
    };
    st.write(a[2], &mtu.to_le_bytes())?;
    Ok(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// net/core/filter.c: bpf_helper_changes_pkt_data (6.18), the ids skiff registers.
    const KERNEL_CHANGES_PKT_DATA: &[u32] =
        &[9, 10, 11, 13, 18, 19, 31, 38, 39, 43, 44, 50, 54, 65];

    #[test]
    fn every_registered_helper_is_declared() {
        let t = crate::helper_table();
        let undeclared: Vec<&str> = t
            .iter()
            .filter(|d| !d.proto.declared)
            .map(|d| d.name)
            .collect();
        assert_eq!(undeclared, Vec::<&str>::new());
        assert_eq!(t.iter().count(), 26 + DEFS.len());
    }

    #[test]
    fn changes_pkt_data_is_the_kernels_list() {
        let t = crate::helper_table();
        let mut ids: Vec<u32> = t
            .iter()
            .filter(|d| d.proto.changes_pkt_data)
            .map(|d| d.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, KERNEL_CHANGES_PKT_DATA);
    }

    #[test]
    fn networking_prototypes_are_the_kernels() {
        let t = crate::helper_table();
        let proto = |id: u32| t.get(id).map(|d| d.proto);
        // net/core/filter.c: bpf_skb_load_bytes_proto
        assert_eq!(
            proto(26).map(|p| p.args),
            Some([
                A::PtrToCtx,
                A::Anything,
                A::PtrToUninitMem,
                A::ConstSize,
                A::DontCare
            ])
        );
        // net/core/filter.c: bpf_skb_store_bytes_proto
        assert_eq!(
            proto(9).map(|p| (p.args, p.changes_pkt_data)),
            Some((
                [
                    A::PtrToCtx,
                    A::Anything,
                    MEM_RDONLY,
                    A::ConstSize,
                    A::Anything
                ],
                true
            ))
        );
        // net/core/filter.c: bpf_csum_diff_proto
        assert_eq!(
            proto(28).map(|p| (p.args[0], p.args[1], p.pkt_access, p.gpl_only)),
            Some((MEM_RDONLY_OR_NULL, A::ConstSizeOrZero, true, false))
        );
        // net/core/filter.c: bpf_xdp_fib_lookup_proto, GPL-only.
        assert_eq!(
            proto(69).map(|p| (p.args[1], p.args[2], p.gpl_only)),
            Some((MEM_RW, A::ConstSize, true))
        );
        assert_eq!(
            proto(163).map(|p| p.args[2]),
            Some(A::PtrToFixedSizeMem {
                size: 4,
                rdonly: false,
                uninit: false
            })
        );
        assert_eq!(proto(19).map(|p| p.args[1]), Some(A::DontCare));
        assert_eq!(
            proto(155).map(|p| p.args),
            Some([
                A::Anything,
                A::Anything,
                A::DontCare,
                A::DontCare,
                A::DontCare
            ])
        );
        assert_eq!(proto(44).map(|p| p.ret), Some(R::Integer));
    }
}
