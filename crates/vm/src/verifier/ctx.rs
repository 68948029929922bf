//! Context access rules per program type: which `struct xdp_md` / `struct __sk_buff`
//! fields a program may load or store, with which sizes, and what a load yields
//! (net/core/filter.c: xdp_is_valid_access, tc_cls_act_is_valid_access,
//! bpf_skb_is_valid_access; kernel/bpf/verifier.c: check_ctx_access).

use skiff_object::ProgType;

/// What an accepted context access yields (the kernel's `bpf_insn_access_aux`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtxAccess {
    /// A scalar. `field_size` is the size of the field the access falls in: a
    /// load narrower than it (bpf_ctx_narrow_access_ok) reads the whole field and
    /// keeps the bytes at the access's offset, as convert_ctx_accesses rewrites it.
    /// Stores and `cb[]` accesses are never narrow (`field_size == size`).
    Scalar { field_size: u32 },
    /// PTR_TO_PACKET (`data`).
    PtrToPacket,
    /// PTR_TO_PACKET_META (`data_meta`).
    PtrToPacketMeta,
    /// PTR_TO_PACKET_END (`data_end`).
    PtrToPacketEnd,
    /// PTR_TO_SOCK_COMMON_OR_NULL (`__sk_buff.sk`).
    PtrToSockCommonOrNull,
}

/// One context access as the verifier sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxQuery {
    /// Offset into the context (the instruction's off plus the register's fixed off).
    pub off: i64,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u32,
    /// A store (BPF_STX/BPF_ST/atomic) rather than a load.
    pub write: bool,
    /// A sign-extending load (BPF_MEMSX): refused on packet pointer fields.
    pub is_ldsx: bool,
    /// The program's expected attach type is BPF_XDP_DEVMAP (only those may read
    /// `xdp_md.egress_ifindex`).
    pub xdp_devmap: bool,
}

/// `sizeof(struct xdp_md)`.
pub const XDP_MD_SIZE: i64 = 24;
/// `sizeof(struct __sk_buff)`.
pub const SK_BUFF_SIZE: i64 = 192;

/// The size of the context a program of `prog_type` gets in R1.
pub fn ctx_size(prog_type: ProgType) -> u32 {
    match prog_type {
        ProgType::Xdp => XDP_MD_SIZE as u32,
        ProgType::SchedCls | ProgType::SchedAct => SK_BUFF_SIZE as u32,
    }
}

/// Checks a load (`write` false) or store of `size` bytes at `off` into the
/// context of `prog_type`, for a program of no particular attach type.
/// Err carries the kernel's message.
pub fn ctx_access(
    prog_type: ProgType,
    off: i64,
    size: u32,
    write: bool,
) -> Result<CtxAccess, String> {
    check_ctx_access(
        prog_type,
        &CtxQuery {
            off,
            size,
            write,
            is_ldsx: false,
            xdp_devmap: false,
        },
    )
}

// kernel/bpf/verifier.c: check_ctx_access
/// Checks one context access; Err is the verifier's message (errno EACCES).
pub fn check_ctx_access(prog_type: ProgType, q: &CtxQuery) -> Result<CtxAccess, String> {
    let ok = match prog_type {
        ProgType::Xdp => xdp_is_valid_access(q),
        ProgType::SchedCls | ProgType::SchedAct => tc_cls_act_is_valid_access(q),
    };
    // A sign-extending load never yields a pointer (bpf_skb_is_valid_access
    // says so for __sk_buff; 6.18 refuses it for xdp_md's data, data_end and
    // data_meta too, with the same message).
    let ok = ok.filter(|a| !q.is_ldsx || matches!(a, CtxAccess::Scalar { .. }));
    ok.ok_or_else(|| format!("invalid bpf_context access off={} size={}", q.off, q.size))
}

/// `struct xdp_md` offsets (include/uapi/linux/bpf.h).
mod xdp_md {
    pub const DATA: i64 = 0;
    pub const DATA_END: i64 = 4;
    pub const DATA_META: i64 = 8;
    pub const EGRESS_IFINDEX: i64 = 20;
}

// net/core/filter.c: xdp_is_valid_access. Stores are allowed only to
// rx_queue_index of device-bound (offloaded) programs, which skiff does not load.
fn xdp_is_valid_access(q: &CtxQuery) -> Option<CtxAccess> {
    if !q.xdp_devmap && q.off == xdp_md::EGRESS_IFINDEX {
        return None;
    }
    if q.write {
        return None;
    }
    let access = match q.off {
        xdp_md::DATA => CtxAccess::PtrToPacket,
        xdp_md::DATA_META => CtxAccess::PtrToPacketMeta,
        xdp_md::DATA_END => CtxAccess::PtrToPacketEnd,
        _ => CtxAccess::Scalar { field_size: 4 },
    };
    // net/core/filter.c: __is_valid_xdp_access
    let valid = (0..XDP_MD_SIZE).contains(&q.off) && q.size == 4 && q.off % 4 == 0;
    valid.then_some(access)
}

/// `struct __sk_buff` offsets (include/uapi/linux/bpf.h), as half-open ranges
/// where the kernel matches `bpf_ctx_range`/`bpf_ctx_range_till`.
mod skb {
    use std::ops::Range;
    pub const MARK: Range<i64> = 8..12;
    pub const QUEUE_MAPPING: Range<i64> = 12..16;
    pub const PRIORITY: Range<i64> = 32..36;
    pub const TC_INDEX: Range<i64> = 44..48;
    pub const CB: Range<i64> = 48..68;
    pub const TC_CLASSID: Range<i64> = 72..76;
    pub const DATA: Range<i64> = 76..80;
    pub const DATA_END: Range<i64> = 80..84;
    /// family .. local_port: the sk_skb-only socket fields.
    pub const FAMILY_TILL_LOCAL_PORT: Range<i64> = 88..140;
    pub const REMOTE_IP4: Range<i64> = 92..96;
    pub const LOCAL_IP4: Range<i64> = 96..100;
    pub const REMOTE_IP6: Range<i64> = 100..116;
    pub const LOCAL_IP6: Range<i64> = 116..132;
    pub const DATA_META: Range<i64> = 140..144;
    pub const FLOW_KEYS: Range<i64> = 144..152;
    pub const TSTAMP: Range<i64> = 152..160;
    /// `__bpf_md_ptr(struct bpf_sock *, sk)`: the kernel matches the whole 8 bytes
    /// (bpf_ctx_range_ptr), so no access inside it but the u64 load.
    pub const SK: Range<i64> = 168..176;
    pub const TSTAMP_TYPE: i64 = 180;
    /// Padding between tstamp_type and hwtstamp.
    pub const PADDING: Range<i64> = 181..184;
    pub const HWTSTAMP: Range<i64> = 184..192;
}

// net/core/filter.c: tc_cls_act_is_valid_access
fn tc_cls_act_is_valid_access(q: &CtxQuery) -> Option<CtxAccess> {
    let off = q.off;
    if q.write {
        let writable = [
            skb::MARK,
            skb::TC_INDEX,
            skb::PRIORITY,
            skb::TC_CLASSID,
            skb::CB,
            skb::TSTAMP,
            skb::QUEUE_MAPPING,
        ];
        if !writable.iter().any(|r| r.contains(&off)) {
            return None;
        }
    }
    let pointer = if skb::DATA.contains(&off) {
        Some(CtxAccess::PtrToPacket)
    } else if skb::DATA_META.contains(&off) {
        Some(CtxAccess::PtrToPacketMeta)
    } else if skb::DATA_END.contains(&off) {
        Some(CtxAccess::PtrToPacketEnd)
    } else if skb::FAMILY_TILL_LOCAL_PORT.contains(&off) {
        return None;
    } else if off == skb::TSTAMP_TYPE {
        // Writes were refused above; a read must be the whole byte.
        return (q.size == 1).then_some(CtxAccess::Scalar { field_size: 1 });
    } else {
        None
    };
    let access = bpf_skb_is_valid_access(q)?;
    Some(pointer.unwrap_or(access))
}

// net/core/filter.c: bpf_skb_is_valid_access
fn bpf_skb_is_valid_access(q: &CtxQuery) -> Option<CtxAccess> {
    const SIZE_DEFAULT: u32 = 4;
    let (off, size) = (q.off, q.size);
    if !(0..SK_BUFF_SIZE).contains(&off) || size == 0 || off % i64::from(size) != 0 {
        return None;
    }
    let whole = CtxAccess::Scalar { field_size: size };
    let pkt = [skb::DATA, skb::DATA_META, skb::DATA_END];
    let ip = [
        skb::REMOTE_IP6,
        skb::LOCAL_IP6,
        skb::REMOTE_IP4,
        skb::LOCAL_IP4,
    ];
    if skb::CB.contains(&off) {
        (off + i64::from(size) <= skb::CB.end).then_some(whole)
    } else if pkt.iter().any(|r| r.contains(&off)) {
        (!q.is_ldsx && size == SIZE_DEFAULT).then_some(whole)
    } else if ip.iter().any(|r| r.contains(&off)) {
        (size == SIZE_DEFAULT).then_some(whole)
    } else if skb::FLOW_KEYS.contains(&off) {
        None
    } else if skb::HWTSTAMP.contains(&off) {
        (!q.write && size == 8).then_some(whole)
    } else if skb::TSTAMP.contains(&off) {
        (size == 8).then_some(whole)
    } else if skb::SK.contains(&off) {
        (!q.write && size == 8).then_some(CtxAccess::PtrToSockCommonOrNull)
    } else if off == skb::TSTAMP_TYPE || skb::PADDING.contains(&off) {
        None
    } else if q.write {
        // Only narrow read access allowed for now.
        (size == SIZE_DEFAULT).then_some(whole)
    } else {
        bpf_ctx_narrow_access_ok(size, SIZE_DEFAULT).then_some(CtxAccess::Scalar {
            field_size: SIZE_DEFAULT,
        })
    }
}

// include/linux/filter.h: bpf_ctx_narrow_access_ok
fn bpf_ctx_narrow_access_ok(size: u32, size_default: u32) -> bool {
    size <= size_default && size.is_power_of_two()
}

// What the walk asks of the program type beyond field rules: the kernel's
// may_access_direct_pkt_data and may_access_skb.

/// `may_access_direct_pkt_data` for a write (XDP, TC classifiers and actions).
pub fn may_write_packet(prog_type: ProgType) -> bool {
    matches!(
        prog_type,
        ProgType::Xdp | ProgType::SchedCls | ProgType::SchedAct
    )
}

/// `may_access_skb`: LD_ABS/LD_IND (socket filters and TC).
pub fn may_access_skb(prog_type: ProgType) -> bool {
    matches!(prog_type, ProgType::SchedCls | ProgType::SchedAct)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XDP: ProgType = ProgType::Xdp;
    const TC: ProgType = ProgType::SchedCls;

    fn read(t: ProgType, off: i64, size: u32) -> Result<CtxAccess, String> {
        ctx_access(t, off, size, false)
    }

    fn write(t: ProgType, off: i64, size: u32) -> Result<CtxAccess, String> {
        ctx_access(t, off, size, true)
    }

    fn refused(off: i64, size: u32) -> Result<CtxAccess, String> {
        Err(format!("invalid bpf_context access off={off} size={size}"))
    }

    #[test]
    fn xdp_md_fields() {
        assert_eq!(read(XDP, 0, 4), Ok(CtxAccess::PtrToPacket));
        assert_eq!(read(XDP, 4, 4), Ok(CtxAccess::PtrToPacketEnd));
        assert_eq!(read(XDP, 8, 4), Ok(CtxAccess::PtrToPacketMeta));
        assert_eq!(read(XDP, 12, 4), Ok(CtxAccess::Scalar { field_size: 4 }));
        assert_eq!(read(XDP, 16, 4), Ok(CtxAccess::Scalar { field_size: 4 }));
        assert_eq!(ctx_size(XDP), 24);
    }

    #[test]
    fn xdp_md_refusals() {
        // KERNEL-NOTES: a store to a read-only xdp_md field.
        assert_eq!(write(XDP, 12, 4), refused(12, 4));
        assert_eq!(write(XDP, 0, 4), refused(0, 4));
        // __is_valid_xdp_access: only whole u32 loads, no narrow ones.
        assert_eq!(read(XDP, 0, 8), refused(0, 8));
        assert_eq!(read(XDP, 12, 2), refused(12, 2));
        assert_eq!(read(XDP, 13, 1), refused(13, 1));
        assert_eq!(read(XDP, 24, 4), refused(24, 4));
        assert_eq!(read(XDP, -4, 4), refused(-4, 4));
        // egress_ifindex: BPF_XDP_DEVMAP programs only.
        assert_eq!(read(XDP, 20, 4), refused(20, 4));
        let devmap = CtxQuery {
            off: 20,
            size: 4,
            write: false,
            is_ldsx: false,
            xdp_devmap: true,
        };
        assert_eq!(
            check_ctx_access(XDP, &devmap),
            Ok(CtxAccess::Scalar { field_size: 4 })
        );
        // Sign-extending loads: scalars only.
        let ldsx = |off| CtxQuery {
            off,
            size: 4,
            write: false,
            is_ldsx: true,
            xdp_devmap: false,
        };
        assert_eq!(check_ctx_access(XDP, &ldsx(0)), refused(0, 4));
        assert_eq!(check_ctx_access(XDP, &ldsx(4)), refused(4, 4));
        assert_eq!(
            check_ctx_access(XDP, &ldsx(12)),
            Ok(CtxAccess::Scalar { field_size: 4 })
        );
    }

    #[test]
    fn sk_buff_pointers() {
        assert_eq!(read(TC, 76, 4), Ok(CtxAccess::PtrToPacket));
        assert_eq!(read(TC, 80, 4), Ok(CtxAccess::PtrToPacketEnd));
        assert_eq!(read(TC, 140, 4), Ok(CtxAccess::PtrToPacketMeta));
        assert_eq!(read(TC, 168, 8), Ok(CtxAccess::PtrToSockCommonOrNull));
        assert_eq!(read(TC, 76, 2), refused(76, 2));
        assert_eq!(read(TC, 76, 8), refused(76, 8));
        assert_eq!(write(TC, 76, 4), refused(76, 4));
        assert_eq!(read(TC, 168, 4), refused(168, 4));
        // Nothing inside the pointer but the whole u64 (checked against 6.18).
        assert_eq!(read(TC, 172, 4), refused(172, 4));
        assert_eq!(read(TC, 169, 1), refused(169, 1));
        assert_eq!(write(TC, 168, 8), refused(168, 8));
        // flow_keys is the flow dissector's.
        assert_eq!(read(TC, 144, 8), refused(144, 8));
        let ldsx = CtxQuery {
            off: 76,
            size: 4,
            write: false,
            is_ldsx: true,
            xdp_devmap: false,
        };
        assert_eq!(check_ctx_access(TC, &ldsx), refused(76, 4));
        assert_eq!(ctx_size(TC), 192);
        assert_eq!(ctx_size(ProgType::SchedAct), 192);
    }

    #[test]
    fn sk_buff_narrow_loads() {
        let narrow = Ok(CtxAccess::Scalar { field_size: 4 });
        // len, protocol, mark: 1, 2 and 4 byte loads at aligned offsets.
        assert_eq!(read(TC, 0, 4), narrow);
        assert_eq!(read(TC, 16, 2), narrow);
        assert_eq!(read(TC, 18, 2), narrow);
        assert_eq!(read(TC, 11, 1), narrow);
        assert_eq!(read(TC, 17, 2), refused(17, 2));
        assert_eq!(read(TC, 16, 8), refused(16, 8));
        // wire_len, gso_segs, gso_size, napi_id.
        assert_eq!(read(TC, 160, 4), narrow);
        assert_eq!(read(TC, 176, 4), narrow);
        assert_eq!(read(TC, 84, 4), narrow);
        // tstamp and hwtstamp: u64 only.
        assert_eq!(read(TC, 152, 8), Ok(CtxAccess::Scalar { field_size: 8 }));
        assert_eq!(read(TC, 152, 4), refused(152, 4));
        assert_eq!(read(TC, 184, 8), Ok(CtxAccess::Scalar { field_size: 8 }));
        assert_eq!(write(TC, 184, 8), refused(184, 8));
        // tstamp_type: one byte, read only; the padding after it refused.
        assert_eq!(read(TC, 180, 1), Ok(CtxAccess::Scalar { field_size: 1 }));
        assert_eq!(read(TC, 180, 4), refused(180, 4));
        assert_eq!(write(TC, 180, 1), refused(180, 1));
        assert_eq!(read(TC, 181, 1), refused(181, 1));
        assert_eq!(read(TC, 192, 4), refused(192, 4));
        assert_eq!(read(TC, -8, 8), refused(-8, 8));
    }

    #[test]
    fn sk_buff_socket_fields_are_sk_skb_only() {
        for off in [88, 92, 96, 100, 116, 132, 136] {
            assert_eq!(read(TC, off, 4), refused(off, 4), "off {off}");
        }
    }

    #[test]
    fn sk_buff_writable_fields() {
        let word = Ok(CtxAccess::Scalar { field_size: 4 });
        // mark, queue_mapping, priority, tc_index, tc_classid.
        for off in [8, 12, 32, 44, 72] {
            assert_eq!(write(TC, off, 4), word, "off {off}");
            assert_eq!(write(TC, off, 2), refused(off, 2), "off {off}");
        }
        assert_eq!(write(TC, 152, 8), Ok(CtxAccess::Scalar { field_size: 8 }));
        assert_eq!(write(TC, 152, 4), refused(152, 4));
        // Read-only fields.
        for off in [0, 4, 16, 20, 24, 28, 36, 40, 68, 84, 160, 164, 176] {
            assert_eq!(write(TC, off, 4), refused(off, 4), "off {off}");
        }
    }

    #[test]
    fn sk_buff_cb_any_size_inside() {
        assert_eq!(write(TC, 48, 8), Ok(CtxAccess::Scalar { field_size: 8 }));
        assert_eq!(read(TC, 64, 4), Ok(CtxAccess::Scalar { field_size: 4 }));
        assert_eq!(write(TC, 67, 1), Ok(CtxAccess::Scalar { field_size: 1 }));
        assert_eq!(read(TC, 56, 8), Ok(CtxAccess::Scalar { field_size: 8 }));
        // cb[4] is the last: an 8-byte access at cb[4] runs past it.
        assert_eq!(write(TC, 64, 8), refused(64, 8));
        assert_eq!(read(TC, 50, 4), refused(50, 4));
    }
}
