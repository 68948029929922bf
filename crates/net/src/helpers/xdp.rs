//! XDP helpers over `XdpBuff` (net/core/filter.c). Offsets are into `buf`, whose
//! start is data_hard_start; frames are linear (no frags).

use skiff_maps::{Map, MapType};
use skiff_vm::{with_buffer, RunState, VmError};

use super::{neg, xdp_ctx, EFAULT, EINVAL};
use crate::buff::{Redirect, ETH_HLEN, XDP_FRAME_SIZE};

pub const XDP_ABORTED: u64 = 0;
pub const XDP_DROP: u64 = 1;
pub const XDP_PASS: u64 = 2;
pub const XDP_TX: u64 = 3;
pub const XDP_REDIRECT: u64 = 4;
pub const BPF_F_BROADCAST: u64 = 1 << 3;
pub const BPF_F_EXCLUDE_INGRESS: u64 = 1 << 4;
/// type_max(skb_shared_info.meta_len): u8.
const META_MAX: i64 = 255;
const EACCES: i64 = super::EACCES;
const ENOTSUPP: i64 = super::ENOTSUPP;

fn offset_arg(v: u64) -> i64 {
    v as u32 as i32 as i64
}

// net/core/filter.c: bpf_xdp_adjust_head
pub fn adjust_head(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let x = xdp_ctx(st)?;
    let offset = offset_arg(a[1]);
    let metalen = x.metalen() as i64;
    let data_start = XDP_FRAME_SIZE as i64 + metalen;
    let data = x.data as i64 + offset;
    if data < data_start || data > x.data_end as i64 - ETH_HLEN as i64 {
        return Ok(neg(EINVAL));
    }
    let new_meta = (x.data_meta as i64 + offset) as usize;
    if metalen > 0 {
        let m = metalen as usize;
        x.buf.copy_within(x.data_meta..x.data_meta + m, new_meta);
    }
    x.data_meta = new_meta;
    x.data = data as usize;
    Ok(0)
}

// net/core/filter.c: bpf_xdp_adjust_meta
pub fn adjust_meta(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let x = xdp_ctx(st)?;
    let offset = offset_arg(a[1]);
    if !x.meta_valid {
        return Ok(neg(ENOTSUPP));
    }
    let meta = x.data_meta as i64 + offset;
    if meta < XDP_FRAME_SIZE as i64 || meta > x.data as i64 {
        return Ok(neg(EINVAL));
    }
    let metalen = x.data as i64 - meta;
    // xdp_metalen_invalid
    if metalen % 4 != 0 || metalen > META_MAX {
        return Ok(neg(EACCES));
    }
    x.data_meta = meta as usize;
    Ok(0)
}

// net/core/filter.c: bpf_xdp_adjust_tail (linear buffer)
pub fn adjust_tail(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let x = xdp_ctx(st)?;
    let offset = offset_arg(a[1]);
    let data_end = x.data_end as i64 + offset;
    if data_end > x.data_hard_end() as i64 {
        return Ok(neg(EINVAL));
    }
    if data_end < (x.data + ETH_HLEN) as i64 {
        return Ok(neg(EINVAL));
    }
    let data_end = data_end as usize;
    if data_end > x.data_end {
        if let Some(s) = x.buf.get_mut(x.data_end..data_end) {
            s.fill(0);
        }
    }
    x.data_end = data_end;
    Ok(0)
}

// net/core/filter.c: bpf_xdp_get_buff_len
pub fn get_buff_len(st: &mut RunState, _a: &[u64; 5]) -> Result<u64, VmError> {
    let x = xdp_ctx(st)?;
    Ok((x.data_end - x.data) as u64)
}

/// net/core/filter.c: bpf_xdp_pointer: Ok(start offset in buf) or -errno.
fn xdp_pointer(st: &mut RunState, offset: u32, len: u32) -> Result<Result<usize, i64>, VmError> {
    let x = xdp_ctx(st)?;
    if offset > 0xffff || len > 0xffff {
        return Ok(Err(EFAULT));
    }
    if (offset + len) as usize > x.data_end - x.data {
        return Ok(Err(EINVAL));
    }
    Ok(Ok(x.data + offset as usize))
}

// net/core/filter.c: bpf_xdp_load_bytes
pub fn load_bytes(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let len = a[3] as u32;
    // ARG_PTR_TO_UNINIT_MEM: the verifier proves the destination writable.
    st.raw(a[2], len as usize, true)?;
    match xdp_pointer(st, a[1] as u32, len)? {
        Err(e) => Ok(neg(e)),
        Ok(off) => with_buffer(len as usize, |b| {
            let x = xdp_ctx(st)?;
            if let Some(s) = x.buf.get(off..off + b.len()) {
                b.copy_from_slice(s);
            }
            st.write(a[2], b)?;
            Ok(0)
        }),
    }
}

// net/core/filter.c: bpf_xdp_store_bytes
pub fn store_bytes(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let len = a[3] as u32;
    with_buffer(len as usize, |src| {
        st.read_into(a[2], src)?;
        match xdp_pointer(st, a[1] as u32, len)? {
            Err(e) => Ok(neg(e)),
            Ok(off) => {
                let x = xdp_ctx(st)?;
                if let Some(d) = x.buf.get_mut(off..off + src.len()) {
                    d.copy_from_slice(src);
                }
                Ok(0)
            }
        }
    })
}

// net/core/filter.c: bpf_xdp_redirect
pub fn redirect(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let x = xdp_ctx(st)?;
    if a[1] != 0 {
        return Ok(XDP_ABORTED);
    }
    x.redirect = Some(Redirect::Ifindex {
        ifindex: a[0] as u32,
        ingress: false,
    });
    Ok(XDP_REDIRECT)
}

// net/core/filter.c: bpf_xdp_redirect_map -> map->ops->map_redirect
pub fn redirect_map(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = st.map(a[0])?;
    map_redirect(st, map, a)
}

/// The map's `map_redirect` op (dev_map_redirect, dev_hash_map_redirect,
/// cpu_map_redirect, xsk_map_redirect -> include/linux/filter.h:
/// __bpf_xdp_redirect_map), which the JIT calls straight when r1 is a
/// constant map (do_misc_fixups).
// (Inlined into the JIT's call of the op: its Result never goes through memory.)
#[inline(always)]
pub fn map_redirect(st: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    let ty = map.attr().map_type;
    let flag_mask = match ty {
        MapType::Devmap | MapType::DevmapHash => BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS,
        MapType::Cpumap | MapType::Xskmap => 0,
        t => {
            return Err(VmError::Helper(format!(
                "bpf_redirect_map on {} map {}",
                t.name(),
                map.attr().name
            )))
        }
    };
    let flags = a[2];
    let action_mask = XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX;
    if flags & !(action_mask | flag_mask) != 0 {
        return Ok(XDP_ABORTED);
    }
    let key = a[1] as u32;
    // The map's own redirect lookup (__dev_map_lookup_elem and its kin).
    let found = map.has_redirect_target(key);
    let x = xdp_ctx(st)?;
    if !found && flags & BPF_F_BROADCAST == 0 {
        x.redirect = None;
        return Ok(flags & action_mask);
    }
    let broadcast = flags & BPF_F_BROADCAST != 0;
    x.redirect = Some(Redirect::Map {
        map_id: map.id(),
        map_type: ty.name(),
        key,
        broadcast,
        exclude_ingress: broadcast && flags & BPF_F_EXCLUDE_INGRESS != 0,
    });
    Ok(XDP_REDIRECT)
}
