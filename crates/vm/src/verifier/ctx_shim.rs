//! What the walk asks of the program type's context rules (kernel
//! `bpf_verifier_ops.is_valid_access`, `may_access_skb`, `may_access_direct_pkt_data`).
//! The rules themselves live with the program types (`ctx`).

use skiff_object::ProgType;

use super::state::RegType;

/// xdp_is_valid_access / tc_cls_act_is_valid_access: what a load of `size` bytes at
/// `off` yields (None: invalid access).
pub fn ctx_access(prog_type: ProgType, off: i32, size: i32, write: bool) -> Option<RegType> {
    match prog_type {
        ProgType::Xdp => xdp_access(off, size, write),
        ProgType::SchedCls | ProgType::SchedAct => skb_access(off, size, write),
    }
}

/// net/core/filter.c: xdp_is_valid_access, __is_valid_xdp_access
fn xdp_access(off: i32, size: i32, write: bool) -> Option<RegType> {
    if write || !(0..24).contains(&off) || size != 4 || off % size != 0 {
        return None;
    }
    Some(match off {
        0 => RegType::Packet,
        4 => RegType::PacketEnd,
        8 => RegType::PacketMeta,
        _ => RegType::Scalar,
    })
}

/// net/core/filter.c: tc_cls_act_is_valid_access (struct __sk_buff, 192 bytes).
fn skb_access(off: i32, size: i32, write: bool) -> Option<RegType> {
    if !(0..192).contains(&off) || off % size != 0 || !matches!(size, 1 | 2 | 4 | 8) {
        return None;
    }
    let ptr = match off {
        76 => Some(RegType::Packet),
        80 => Some(RegType::PacketEnd),
        140 => Some(RegType::PacketMeta),
        _ => None,
    };
    if let Some(t) = ptr {
        return (!write && size == 4).then_some(t);
    }
    if write {
        // mark, priority, tc_index, cb[0..5], tc_classid, queue_mapping, tstamp
        let ok = matches!(off, 8 | 32 | 36 | 48..=67 | 12) || (off == 152 && size == 8);
        return ok.then_some(RegType::Scalar);
    }
    Some(RegType::Scalar)
}

/// `may_access_direct_pkt_data` for a write.
pub fn may_write_packet(prog_type: ProgType) -> bool {
    matches!(prog_type, ProgType::Xdp | ProgType::SchedCls | ProgType::SchedAct)
}

/// `may_access_skb`: LD_ABS/LD_IND.
pub fn may_access_skb(prog_type: ProgType) -> bool {
    matches!(prog_type, ProgType::SchedCls | ProgType::SchedAct)
}
