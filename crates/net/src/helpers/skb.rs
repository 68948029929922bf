//! TC helpers over `SkBuff` (net/core/filter.c, net/core/skbuff.c). skbs are
//! linear and never GSO/cloned, so the kernel's uncloning and linearising steps
//! reduce to bounds checks.

use skiff_vm::{with_buffer, RunState, VmError};

use super::csum::{self, IpSummed};
use super::{
    device_exists, neg, skb_ctx, EACCES, EALREADY, EFAULT, EINVAL, ENOMEM, ENOTSUPP, ERANGE,
};
use crate::buff::{Redirect, SkBuff, ETH_HLEN, NET_SKB_PAD, SKB_SHARED_INFO_SIZE};

pub const TC_ACT_SHOT: u64 = 2;
pub const TC_ACT_REDIRECT: u64 = 7;
pub const BPF_F_INGRESS: u64 = 1;
pub const BPF_F_RECOMPUTE_CSUM: u64 = 1;
pub const BPF_F_INVALIDATE_HASH: u64 = 2;
pub const BPF_F_HDR_FIELD_MASK: u64 = 0xf;
pub const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
pub const BPF_F_MARK_MANGLED_0: u64 = 1 << 5;
pub const BPF_F_MARK_ENFORCE: u64 = 1 << 6;
pub const BPF_F_IPV6: u64 = 1 << 7;
pub const BPF_HDR_START_MAC: u64 = 0;
pub const BPF_HDR_START_NET: u64 = 1;
use skiff_wire::ethernet::VLAN_HLEN;
use skiff_wire::{
    flow_ports, ipv4, ipv6, EthernetFrame, Ipv4Packet, Ipv6Packet, VlanTag, IPPROTO_SCTP,
    IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};
pub use skiff_wire::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};
const INT_MAX: u64 = i32::MAX as u64;
/// SKB_MAX_ALLOC: SKB_WITH_OVERHEAD(PAGE_SIZE << 2).
pub const BPF_SKB_MAX_LEN: u64 = (4096 << 2) - SKB_SHARED_INFO_SIZE as u64;

pub const BPF_ADJ_ROOM_NET: u64 = 0;
pub const BPF_ADJ_ROOM_MAC: u64 = 1;
pub const BPF_F_ADJ_ROOM_FIXED_GSO: u64 = 1 << 0;
pub const BPF_F_ADJ_ROOM_ENCAP_L3_IPV4: u64 = 1 << 1;
pub const BPF_F_ADJ_ROOM_ENCAP_L3_IPV6: u64 = 1 << 2;
pub const BPF_F_ADJ_ROOM_ENCAP_L4_GRE: u64 = 1 << 3;
pub const BPF_F_ADJ_ROOM_ENCAP_L4_UDP: u64 = 1 << 4;
pub const BPF_F_ADJ_ROOM_NO_CSUM_RESET: u64 = 1 << 5;
pub const BPF_F_ADJ_ROOM_ENCAP_L2_ETH: u64 = 1 << 6;
pub const BPF_F_ADJ_ROOM_DECAP_L3_IPV4: u64 = 1 << 7;
pub const BPF_F_ADJ_ROOM_DECAP_L3_IPV6: u64 = 1 << 8;
const BPF_ADJ_ROOM_ENCAP_L2_SHIFT: u64 = 56;
const ENCAP_L3_MASK: u64 = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L3_IPV6;
const DECAP_L3_MASK: u64 = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
const ADJ_ROOM_MASK: u64 = BPF_F_ADJ_ROOM_FIXED_GSO
    | ENCAP_L3_MASK
    | BPF_F_ADJ_ROOM_ENCAP_L4_GRE
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | (0xff << BPF_ADJ_ROOM_ENCAP_L2_SHIFT)
    | DECAP_L3_MASK;

/// skb->ip_summed / csum / csum_level. `SkBuff` does not model these yet: an skb
/// is CHECKSUM_NONE, as test_run builds it (docs/differences.md).
fn ip_summed(_skb: &SkBuff) -> IpSummed {
    IpSummed::None
}

fn encapsulation(skb: &SkBuff) -> bool {
    skb.encapsulation
}

/// skb_ensure_writable / pskb_may_pull on a linear skb.
fn may_pull(skb: &SkBuff, len: u64) -> bool {
    len <= skb.len() as u64
}

/// __skb_cow: make at least `headroom` (and NET_SKB_PAD) bytes of headroom.
fn cow(skb: &mut SkBuff, headroom: usize) {
    let want = headroom.max(NET_SKB_PAD);
    if want > skb.headroom() {
        let delta = want - skb.headroom();
        let aligned = delta.div_ceil(NET_SKB_PAD) * NET_SKB_PAD;
        skb.expand_head(aligned, 0);
    }
}

fn skb_clear_hash(skb: &mut SkBuff) {
    skb.hash = 0;
    skb.sw_hash = false;
    skb.l4_hash = false;
}

// net/core/filter.c: bpf_skb_store_bytes
pub fn store_bytes(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (offset, len, flags) = (a[1] as u32 as u64, a[3] as u32 as usize, a[4]);
    with_buffer(len, |src| {
        st.read_into(a[2], src)?;
        let skb = skb_ctx(st)?;
        if flags & !(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) != 0 {
            return Ok(neg(EINVAL));
        }
        if offset > INT_MAX {
            return Ok(neg(EFAULT));
        }
        if !may_pull(skb, offset + len as u64) {
            return Ok(neg(EFAULT));
        }
        // BPF_F_RECOMPUTE_CSUM only changes skb->csum under CHECKSUM_COMPLETE.
        let start = skb.data + offset as usize;
        if let Some(d) = skb.buf.get_mut(start..start + len) {
            d.copy_from_slice(src);
        }
        if flags & BPF_F_INVALIDATE_HASH != 0 {
            skb_clear_hash(skb);
        }
        Ok(0)
    })
}

// net/core/filter.c: bpf_skb_load_bytes
pub fn load_bytes(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (offset, len) = (a[1] as u32 as u64, a[3] as u32 as usize);
    st.raw(a[2], len, true)?;
    load_into(st, a[2], len, |skb| {
        let inside = offset <= INT_MAX && offset + len as u64 <= skb.len() as u64;
        inside.then(|| skb.data + offset as usize)
    })
}

/// Copy `len` bytes of the skb's buffer, from where `start` says, into
/// program memory at `to`; zeros and -EFAULT when it says nowhere (the
/// kernel's memset on the error path).
fn load_into(
    st: &mut RunState,
    to: u64,
    len: usize,
    start: impl FnOnce(&SkBuff) -> Option<usize>,
) -> Result<u64, VmError> {
    with_buffer(len, |b| {
        let skb = skb_ctx(st)?;
        let src = start(skb).and_then(|s| skb.buf.get(s..s + len));
        let found = src.map(|s| b.copy_from_slice(s)).is_some();
        st.write(to, b)?;
        Ok(if found { 0 } else { neg(EFAULT) })
    })
}

// net/core/filter.c: bpf_skb_load_bytes_relative
pub fn load_bytes_relative(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (offset, len, hdr) = (
        a[1] as u32 as usize,
        a[3] as u32 as usize,
        a[4] as u32 as u64,
    );
    st.raw(a[2], len, true)?;
    load_into(st, a[2], len, |skb| {
        let start = match hdr {
            BPF_HDR_START_MAC => skb.mac_header,
            BPF_HDR_START_NET => skb.network_header,
            _ => return None,
        };
        (offset <= 0xffff && start + offset + len <= skb.tail).then_some(start + offset)
    })
}

fn sum16_at(skb: &SkBuff, off: usize) -> u16 {
    let p = skb.data + off;
    u16::from_le_bytes([
        skb.buf.get(p).copied().unwrap_or(0),
        skb.buf.get(p + 1).copied().unwrap_or(0),
    ])
}

fn set_sum16(skb: &mut SkBuff, off: usize, v: u16) {
    let p = skb.data + off;
    if let Some(d) = skb.buf.get_mut(p..p + 2) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

// net/core/filter.c: bpf_l3_csum_replace
pub fn l3_csum_replace(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (offset, from, to, flags) = (a[1] as u32 as u64, a[2], a[3], a[4]);
    let skb = skb_ctx(st)?;
    if flags & !BPF_F_HDR_FIELD_MASK != 0 {
        return Ok(neg(EINVAL));
    }
    if offset > 0xffff || offset & 1 != 0 || !may_pull(skb, offset + 2) {
        return Ok(neg(EFAULT));
    }
    let off = offset as usize;
    let sum = sum16_at(skb, off);
    let new = match flags & BPF_F_HDR_FIELD_MASK {
        0 => {
            if from != 0 {
                return Ok(neg(EINVAL));
            }
            csum::csum_replace_by_diff(sum, to as u32)
        }
        2 => csum::csum_replace2(sum, from as u16, to as u16),
        4 => csum::csum_replace4(sum, from as u32, to as u32),
        _ => return Ok(neg(EINVAL)),
    };
    set_sum16(skb, off, new);
    Ok(0)
}

// net/core/filter.c: bpf_l4_csum_replace
pub fn l4_csum_replace(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (offset, from, to, flags) = (a[1] as u32 as u64, a[2], a[3], a[4]);
    let is_pseudo = flags & BPF_F_PSEUDO_HDR != 0;
    let is_mmzero = flags & BPF_F_MARK_MANGLED_0 != 0;
    let do_mforce = flags & BPF_F_MARK_ENFORCE != 0;
    let is_ipv6 = flags & BPF_F_IPV6 != 0;
    let skb = skb_ctx(st)?;
    if flags
        & !(BPF_F_MARK_MANGLED_0
            | BPF_F_MARK_ENFORCE
            | BPF_F_PSEUDO_HDR
            | BPF_F_HDR_FIELD_MASK
            | BPF_F_IPV6)
        != 0
    {
        return Ok(neg(EINVAL));
    }
    if offset > 0xffff || offset & 1 != 0 || !may_pull(skb, offset + 2) {
        return Ok(neg(EFAULT));
    }
    let off = offset as usize;
    let sum = sum16_at(skb, off);
    if is_mmzero && !do_mforce && sum == 0 {
        return Ok(0);
    }
    let summed = ip_summed(skb);
    // skb->csum is only read/written under CHECKSUM_COMPLETE, which skiff's
    // skbs never are yet.
    let mut skb_csum = 0u32;
    let mut new = match flags & BPF_F_HDR_FIELD_MASK {
        0 => {
            if from != 0 {
                return Ok(neg(EINVAL));
            }
            csum::inet_proto_csum_replace_by_diff(
                sum,
                summed,
                &mut skb_csum,
                to as u32,
                is_pseudo,
                is_ipv6,
            )
        }
        2 => csum::inet_proto_csum_replace2(
            sum,
            summed,
            &mut skb_csum,
            from as u16,
            to as u16,
            is_pseudo,
        ),
        4 => csum::inet_proto_csum_replace4(
            sum,
            summed,
            &mut skb_csum,
            from as u32,
            to as u32,
            is_pseudo,
        ),
        _ => return Ok(neg(EINVAL)),
    };
    if is_mmzero && new == 0 {
        new = 0xffff; // CSUM_MANGLED_0
    }
    set_sum16(skb, off, new);
    Ok(0)
}

// net/core/filter.c: bpf_csum_update
pub fn csum_update(st: &mut RunState, _a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    if ip_summed(skb) == IpSummed::Complete {
        return Err(VmError::NotSupported(
            "bpf_csum_update on a CHECKSUM_COMPLETE skb".into(),
        ));
    }
    Ok(neg(ENOTSUPP))
}

pub const BPF_CSUM_LEVEL_QUERY: u64 = 0;
pub const BPF_CSUM_LEVEL_INC: u64 = 1;
pub const BPF_CSUM_LEVEL_DEC: u64 = 2;
pub const BPF_CSUM_LEVEL_RESET: u64 = 3;

// net/core/filter.c: bpf_csum_level
pub fn csum_level(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    match a[1] {
        BPF_CSUM_LEVEL_INC | BPF_CSUM_LEVEL_DEC | BPF_CSUM_LEVEL_RESET => {
            Err(VmError::NotSupported(
                "bpf_csum_level INC/DEC/RESET: SkBuff has no ip_summed/csum_level yet".into(),
            ))
        }
        BPF_CSUM_LEVEL_QUERY => {
            if ip_summed(skb) == IpSummed::Unnecessary {
                Ok(0)
            } else {
                Ok(neg(EACCES))
            }
        }
        _ => Ok(neg(EINVAL)),
    }
}

// net/core/filter.c: bpf_skb_pull_data
pub fn pull_data(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let len = a[1] as u32 as u64;
    let len = if len == 0 { skb.len() as u64 } else { len };
    Ok(if may_pull(skb, len) { 0 } else { neg(ENOMEM) })
}

// net/core/filter.c: __bpf_skb_min_len
fn min_len(skb: &SkBuff) -> u64 {
    let mut m = 0i64;
    let net = skb.network_header as i64 - skb.data as i64;
    if net > 0 {
        m = net;
    }
    if let Some(t) = skb.transport_header {
        let off = t as i64 - skb.data as i64;
        if off > 0 {
            m = off;
        }
    }
    m as u64
}

// net/core/filter.c: bpf_skb_change_tail
pub fn change_tail(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let (new_len, flags) = (a[1] as u32 as u64, a[2]);
    if flags != 0 || new_len > BPF_SKB_MAX_LEN || new_len < min_len(skb) {
        return Ok(neg(EINVAL));
    }
    if encapsulation(skb) {
        return Ok(neg(ENOTSUPP));
    }
    let new_len = new_len as usize;
    let old = skb.len();
    if new_len > old {
        let grow = new_len - old;
        if skb.tailroom() < grow {
            skb.expand_head(0, grow - skb.tailroom());
        }
        let t = skb.tail;
        if let Some(s) = skb.buf.get_mut(t..t + grow) {
            s.fill(0);
        }
    }
    skb.tail = skb.data + new_len;
    Ok(0)
}

// net/core/filter.c: bpf_skb_change_head
pub fn change_head(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let (head_room, flags) = (a[1] as u32, a[2]);
    let new_len = (skb.len() as u32).wrapping_add(head_room);
    if flags != 0
        || (head_room as i32) < 0
        || new_len as u64 > BPF_SKB_MAX_LEN
        || new_len < skb.len() as u32
    {
        return Ok(neg(EINVAL));
    }
    let room = head_room as usize;
    cow(skb, room);
    skb.data -= room;
    let d = skb.data;
    if let Some(s) = skb.buf.get_mut(d..d + room) {
        s.fill(0);
    }
    skb.mac_header = skb.data;
    Ok(0)
}

/// net/core/filter.c: bpf_skb_generic_push + bpf_skb_net_hdr_push.
fn net_hdr_push(skb: &mut SkBuff, off: usize, len: usize) {
    let trans_same = skb.transport_header == Some(skb.network_header);
    cow(skb, len);
    let old = skb.data;
    skb.data -= len;
    skb.buf.copy_within(old..old + off, skb.data);
    let z = skb.data + off;
    if let Some(s) = skb.buf.get_mut(z..z + len) {
        s.fill(0);
    }
    skb.mac_header -= len;
    skb.network_header -= len;
    if trans_same {
        skb.transport_header = Some(skb.network_header);
    }
}

/// net/core/filter.c: bpf_skb_generic_pop + bpf_skb_net_hdr_pop.
fn net_hdr_pop(skb: &mut SkBuff, off: usize, len: usize) -> Result<(), i64> {
    let trans_same = skb.transport_header == Some(skb.network_header);
    if !may_pull(skb, (off + len) as u64) {
        return Err(ENOMEM);
    }
    let old = skb.data;
    skb.data += len;
    skb.buf.copy_within(old..old + off, skb.data);
    skb.mac_header += len;
    skb.network_header += len;
    if trans_same {
        skb.transport_header = Some(skb.network_header);
    }
    Ok(())
}

fn mac_header_len(skb: &SkBuff) -> usize {
    skb.network_header.saturating_sub(skb.mac_header)
}

fn net_base_len(skb: &SkBuff) -> u32 {
    match skb.protocol {
        ETH_P_IP => ipv4::HEADER_LEN as u32,
        ETH_P_IPV6 => ipv6::HEADER_LEN as u32,
        _ => u32::MAX,
    }
}

// net/core/filter.c: bpf_skb_adjust_room
pub fn adjust_room(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let len_diff = a[1] as u32 as i32;
    let (mode, flags) = (a[2] as u32 as u64, a[3]);
    let len_diff_abs = len_diff.unsigned_abs();
    let mut len_min = net_base_len(skb);
    let shrink = len_diff < 0;
    if flags & !(ADJ_ROOM_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET) != 0 {
        return Ok(neg(EINVAL));
    }
    if len_diff_abs > 0xfff {
        return Ok(neg(EFAULT));
    }
    if skb.protocol != ETH_P_IP && skb.protocol != ETH_P_IPV6 {
        return Ok(neg(ENOTSUPP));
    }
    let mut off = mac_header_len(skb);
    match mode {
        BPF_ADJ_ROOM_NET => off += net_base_len(skb) as usize,
        BPF_ADJ_ROOM_MAC => {}
        _ => return Ok(neg(ENOTSUPP)),
    }
    if flags & DECAP_L3_MASK != 0 {
        if !shrink {
            return Ok(neg(EINVAL));
        }
        len_min = match flags & DECAP_L3_MASK {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV4 => 20,
            BPF_F_ADJ_ROOM_DECAP_L3_IPV6 => 40,
            _ => return Ok(neg(EINVAL)),
        };
    }
    let len_cur = (skb.tail as i64 - skb.network_header as i64) as u32;
    if (shrink && (len_diff_abs >= len_cur || len_cur - len_diff_abs < len_min))
        || (!shrink && skb.len() as u64 + len_diff_abs as u64 > BPF_SKB_MAX_LEN)
    {
        return Ok(neg(ENOTSUPP));
    }
    let r = if shrink {
        net_shrink(skb, off, len_diff_abs as usize, flags)
    } else {
        net_grow(skb, off, len_diff_abs as usize, flags)
    };
    // __skb_reset_checksum_unnecessary is a no-op for CHECKSUM_NONE.
    Ok(match r {
        Ok(()) => 0,
        Err(e) => neg(e),
    })
}

// net/core/filter.c: bpf_skb_net_grow
fn net_grow(skb: &mut SkBuff, off: usize, len_diff: usize, flags: u64) -> Result<(), i64> {
    let inner_mac_len = (flags >> BPF_ADJ_ROOM_ENCAP_L2_SHIFT) as usize;
    let encap = flags & ENCAP_L3_MASK != 0;
    cow(skb, len_diff);
    let mut mac_len = 0;
    if encap {
        if flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 != 0 && flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 != 0 {
            return Err(EINVAL);
        }
        if flags & BPF_F_ADJ_ROOM_ENCAP_L4_GRE != 0 && flags & BPF_F_ADJ_ROOM_ENCAP_L4_UDP != 0 {
            return Err(EINVAL);
        }
        if flags & BPF_F_ADJ_ROOM_ENCAP_L2_ETH != 0 && inner_mac_len < ETH_HLEN {
            return Err(EINVAL);
        }
        if encapsulation(skb) {
            return Err(EALREADY);
        }
        mac_len = mac_header_len(skb);
        if inner_mac_len > len_diff {
            return Err(EINVAL);
        }
    }
    net_hdr_push(skb, off, len_diff);
    if encap {
        // bpf_skb_net_grow: the skb is now encapsulated (inner headers and inner
        // protocol are not modelled: nothing reads them yet).
        skb.encapsulation = true;
        skb.network_header = skb.data + mac_len;
        if flags & (BPF_F_ADJ_ROOM_ENCAP_L4_GRE | BPF_F_ADJ_ROOM_ENCAP_L4_UDP) != 0 {
            let nh_len = if flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 != 0 {
                40
            } else {
                20
            };
            skb.transport_header = Some(skb.data + mac_len + nh_len);
        }
        if skb.protocol == ETH_P_IP && flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 != 0 {
            skb.protocol = ETH_P_IPV6;
        } else if skb.protocol == ETH_P_IPV6 && flags & BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 != 0 {
            skb.protocol = ETH_P_IP;
        }
    }
    Ok(())
}

// net/core/filter.c: bpf_skb_net_shrink
fn net_shrink(skb: &mut SkBuff, off: usize, len_diff: usize, flags: u64) -> Result<(), i64> {
    if flags & !(BPF_F_ADJ_ROOM_FIXED_GSO | DECAP_L3_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET) != 0 {
        return Err(EINVAL);
    }
    net_hdr_pop(skb, off, len_diff)?;
    if skb.protocol == ETH_P_IP && flags & BPF_F_ADJ_ROOM_DECAP_L3_IPV6 != 0 {
        skb.protocol = ETH_P_IPV6;
    } else if skb.protocol == ETH_P_IPV6 && flags & BPF_F_ADJ_ROOM_DECAP_L3_IPV4 != 0 {
        skb.protocol = ETH_P_IP;
    }
    Ok(())
}

// net/core/filter.c: bpf_skb_change_proto (bpf_skb_proto_4_to_6 / _6_to_4)
pub fn change_proto(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let (to, flags) = ((a[1] as u16).swap_bytes(), a[2]);
    if flags != 0 {
        return Ok(neg(EINVAL));
    }
    const LEN_DIFF: usize = 40 - 20;
    let off = mac_header_len(skb);
    if skb.protocol == ETH_P_IP && to == ETH_P_IPV6 {
        net_hdr_push(skb, off, LEN_DIFF);
        skb.protocol = ETH_P_IPV6;
        skb_clear_hash(skb);
        Ok(0)
    } else if skb.protocol == ETH_P_IPV6 && to == ETH_P_IP {
        if let Err(e) = net_hdr_pop(skb, off, LEN_DIFF) {
            return Ok(neg(e));
        }
        skb.protocol = ETH_P_IP;
        skb_clear_hash(skb);
        Ok(0)
    } else {
        Ok(neg(ENOTSUPP))
    }
}

// net/core/filter.c: bpf_skb_change_type
pub fn change_type(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let t = a[1] as u32;
    // skb_pkt_type_ok: up to PACKET_OTHERHOST
    if skb.pkt_type > 3 || t > 3 {
        return Ok(neg(EINVAL));
    }
    skb.pkt_type = t as u8;
    Ok(0)
}

fn eth_type_vlan(p: u16) -> bool {
    p == ETH_P_8021Q || p == ETH_P_8021AD
}

// net/core/filter.c: bpf_skb_vlan_push -> net/core/skbuff.c: skb_vlan_push
pub fn vlan_push(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    let mut proto = (a[1] as u16).swap_bytes();
    let tci = a[2] as u16;
    if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
        proto = ETH_P_8021Q;
    }
    if skb.vlan_present {
        if skb.data != skb.mac_header {
            return Ok(neg(EINVAL));
        }
        // __vlan_insert_inner_tag(skb, vlan_proto, tci, ETH_HLEN)
        cow(skb, VLAN_HLEN);
        let old = skb.data;
        skb.data -= VLAN_HLEN;
        skb.buf.copy_within(old..old + 2 * 6, skb.data);
        skb.mac_header -= VLAN_HLEN;
        let (d, vlan_proto, vlan_tci) = (skb.data, skb.vlan_proto, skb.vlan_tci);
        // The outer tag goes into the frame: TPID as its EtherType, then the TCI.
        if let Some(Ok(mut eth)) = skb.buf.get_mut(d..).map(EthernetFrame::new_checked) {
            eth.set_ethertype(vlan_proto);
            if let Ok(mut tag) = VlanTag::new_checked(eth.payload_mut()) {
                tag.set_tci(vlan_tci);
            }
        }
        skb.protocol = skb.vlan_proto;
        skb.network_header -= VLAN_HLEN;
    }
    skb.vlan_present = true;
    skb.vlan_proto = proto;
    skb.vlan_tci = tci;
    Ok(0)
}

/// net/core/skbuff.c: __skb_vlan_pop. Returns the TCI.
fn skb_vlan_pop_payload(skb: &mut SkBuff) -> Result<u16, i64> {
    if skb.data != skb.mac_header {
        return Err(EINVAL);
    }
    if !may_pull(skb, (ETH_HLEN + VLAN_HLEN) as u64) {
        return Err(ENOMEM);
    }
    let d = skb.data;
    let Some(Ok(tag)) = skb.buf.get(d + ETH_HLEN..).map(VlanTag::new_checked) else {
        return Err(ENOMEM);
    };
    let tci = tag.tci();
    // vlan_set_encap_proto: below ETH_P_802_3_MIN the field is a length; raw
    // 802.3 (IPX) frames start with 0xffff.
    let inner = tag.inner_ethertype();
    skb.protocol = if inner >= 0x0600 {
        inner
    } else if tag.payload().starts_with(&[0xff, 0xff]) {
        0x0001 // ETH_P_802_3
    } else {
        0x0004 // ETH_P_802_2
    };
    skb.buf.copy_within(d..d + 12, d + VLAN_HLEN);
    skb.data += VLAN_HLEN;
    skb.mac_header += VLAN_HLEN;
    if (skb.network_header as i64 - skb.data as i64) < ETH_HLEN as i64 {
        skb.network_header = skb.data + ETH_HLEN;
    }
    Ok(tci)
}

// net/core/filter.c: bpf_skb_vlan_pop -> net/core/skbuff.c: skb_vlan_pop
pub fn vlan_pop(st: &mut RunState, _a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    if skb.vlan_present {
        skb.vlan_present = false;
        skb.vlan_tci = 0;
    } else {
        if !eth_type_vlan(skb.protocol) {
            return Ok(0);
        }
        if let Err(e) = skb_vlan_pop_payload(skb) {
            return Ok(neg(e));
        }
    }
    if !eth_type_vlan(skb.protocol) {
        return Ok(0);
    }
    let proto = skb.protocol;
    match skb_vlan_pop_payload(skb) {
        Ok(tci) => {
            skb.vlan_present = true;
            skb.vlan_proto = proto;
            skb.vlan_tci = tci;
            Ok(0)
        }
        Err(e) => Ok(neg(e)),
    }
}

/// The flow keys skiff hashes: addresses, ports, protocol; `l4` when ports
/// were found (flow_keys_have_l4).
fn flow_hash(skb: &SkBuff) -> (u32, bool) {
    let l3 = skb.buf.get(skb.network_header..skb.tail).unwrap_or(&[]);
    // FNV-1a with a fixed basis then a murmur finaliser: deterministic, unlike
    // the kernel's boot-random siphash key (docs/differences.md).
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for &k in bytes {
            h ^= k as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    let (proto, l4) = match skb.protocol {
        ETH_P_IP if l3.len() >= ipv4::HEADER_LEN => {
            let ip = Ipv4Packet::new_unchecked(l3);
            feed(&ip.src_addr().octets());
            feed(&ip.dst_addr().octets());
            (ip.protocol(), l3.get(ip.header_len()..))
        }
        ETH_P_IPV6 if l3.len() >= ipv6::HEADER_LEN => {
            let ip = Ipv6Packet::new_unchecked(l3);
            feed(&ip.src_addr().octets());
            feed(&ip.dst_addr().octets());
            (ip.next_header(), l3.get(ipv6::HEADER_LEN..))
        }
        _ => (0, None),
    };
    feed(&[proto]);
    let has_ports = matches!(
        proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    );
    let ports = l4.and_then(flow_ports).filter(|_| has_ports);
    if let Some((sport, dport)) = ports {
        feed(&sport.to_be_bytes());
        feed(&dport.to_be_bytes());
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    (if h == 0 { 1 } else { h }, ports.is_some())
}

/// include/linux/skbuff.h: skb_get_hash — the skb's hash, computed (and
/// kept) from its flow when it has none (qdiscs hash flows with it).
pub(crate) fn skb_get_hash(skb: &mut SkBuff) -> u32 {
    if !skb.l4_hash && !skb.sw_hash {
        let (h, l4) = flow_hash(skb);
        skb.hash = h;
        skb.sw_hash = true;
        skb.l4_hash = l4;
    }
    skb.hash
}

// net/core/filter.c: bpf_get_hash_recalc -> skb_get_hash
pub fn get_hash_recalc(st: &mut RunState, _a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    if !skb.l4_hash && !skb.sw_hash {
        let (h, l4) = flow_hash(skb);
        skb.hash = h;
        skb.sw_hash = true;
        skb.l4_hash = l4;
    }
    Ok(skb.hash as u64)
}

// net/core/filter.c: bpf_set_hash_invalid
pub fn set_hash_invalid(st: &mut RunState, _a: &[u64; 5]) -> Result<u64, VmError> {
    skb_clear_hash(skb_ctx(st)?);
    Ok(0)
}

// net/core/filter.c: bpf_set_hash (__skb_set_sw_hash(skb, hash, true))
pub fn set_hash(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let skb = skb_ctx(st)?;
    skb.hash = a[1] as u32;
    skb.sw_hash = true;
    skb.l4_hash = true;
    Ok(0)
}

// net/core/filter.c: bpf_redirect
pub fn redirect(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let flags = a[1];
    if flags & !BPF_F_INGRESS != 0 {
        return Ok(TC_ACT_SHOT);
    }
    skb_ctx(st)?.redirect = Some(Redirect::Ifindex {
        ifindex: a[0] as u32,
        ingress: flags & BPF_F_INGRESS != 0,
    });
    Ok(TC_ACT_REDIRECT)
}

// net/core/filter.c: bpf_redirect_peer
pub fn redirect_peer(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    if a[1] != 0 {
        return Ok(TC_ACT_SHOT);
    }
    skb_ctx(st)?.redirect = Some(Redirect::Peer {
        ifindex: a[0] as u32,
    });
    Ok(TC_ACT_REDIRECT)
}

/// sizeof(struct bpf_redir_neigh).
const REDIR_NEIGH_SIZE: i32 = 20;

// net/core/filter.c: bpf_redirect_neigh
pub fn redirect_neigh(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let plen = a[2] as u32 as i32;
    let params = st.read(a[1], plen.max(0) as usize)?;
    if (plen != 0 && plen < REDIR_NEIGH_SIZE) || a[3] != 0 {
        return Ok(TC_ACT_SHOT);
    }
    let nexthop = if plen != 0 {
        let family = params.first().copied().unwrap_or(0);
        let mut addr = [0u8; 16];
        if let Some(s) = params.get(4..20) {
            addr.copy_from_slice(s);
        }
        Some((family, addr))
    } else {
        None
    };
    skb_ctx(st)?.redirect = Some(Redirect::Neigh {
        ifindex: a[0] as u32,
        nexthop,
    });
    Ok(TC_ACT_REDIRECT)
}

// net/core/filter.c: bpf_clone_redirect (the clone is handed to the datapath
// through `skb.clones`; __bpf_redirect_common's checks apply to it here).
pub fn clone_redirect(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (ifindex, flags) = (a[1] as u32, a[2]);
    let skb = skb_ctx(st)?;
    if flags & !BPF_F_INGRESS != 0 {
        return Ok(neg(EINVAL));
    }
    if !device_exists(skb.netns.as_deref(), ifindex, skb.ifindex) {
        return Ok(neg(EINVAL));
    }
    if skb.mac_header >= skb.network_header || skb.is_empty() {
        return Ok(neg(ERANGE));
    }
    let frame = skb
        .buf
        .get(skb.mac_header.min(skb.data)..skb.tail)
        .map(|b| b.to_vec())
        .unwrap_or_default();
    skb.clones
        .push((ifindex, flags & BPF_F_INGRESS != 0, frame));
    Ok(0)
}
