//! The checksum helpers' arithmetic exactly as the x86_64 kernel computes it:
//! the csum_* primitives live in skiff-wire's `checksum` module (values are
//! `__wsum`/`__sum16` as the kernel holds them, 16-bit fields read from memory
//! little-endian); here the skb-aware updates (inet_proto_csum_replace*) and
//! bpf_csum_diff.

pub use skiff_wire::checksum::{
    csum16_add, csum_add, csum_fold, csum_from32to16, csum_partial, csum_replace2, csum_replace4,
    csum_replace_by_diff, csum_sub,
};

/// What `ip_summed` says about an skb's checksum (include/linux/skbuff.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpSummed {
    None,
    Unnecessary,
    Complete,
    Partial,
}

/// net/core/utils.c: inet_proto_csum_replace4. `skb_csum` is skb->csum, updated
/// for CHECKSUM_COMPLETE pseudo-header changes.
pub fn inet_proto_csum_replace4(
    sum: u16,
    ip_summed: IpSummed,
    skb_csum: &mut u32,
    from: u32,
    to: u32,
    pseudohdr: bool,
) -> u16 {
    if ip_summed != IpSummed::Partial {
        let r = csum_replace4(sum, from, to);
        if ip_summed == IpSummed::Complete && pseudohdr {
            *skb_csum = !csum_add(csum_sub(!*skb_csum, from), to);
        }
        r
    } else if pseudohdr {
        !csum_fold(csum_add(csum_sub(sum as u32, from), to))
    } else {
        sum
    }
}

/// include/net/checksum.h: inet_proto_csum_replace2 (the 16-bit values widened
/// as the kernel does: `(__force __be32)(__force u16)`).
pub fn inet_proto_csum_replace2(
    sum: u16,
    ip_summed: IpSummed,
    skb_csum: &mut u32,
    from: u16,
    to: u16,
    pseudohdr: bool,
) -> u16 {
    inet_proto_csum_replace4(sum, ip_summed, skb_csum, from as u32, to as u32, pseudohdr)
}

/// net/core/utils.c: inet_proto_csum_replace_by_diff.
pub fn inet_proto_csum_replace_by_diff(
    sum: u16,
    ip_summed: IpSummed,
    skb_csum: &mut u32,
    diff: u32,
    pseudohdr: bool,
    ipv6: bool,
) -> u16 {
    if ip_summed != IpSummed::Partial {
        let r = csum_replace_by_diff(sum, diff);
        if ip_summed == IpSummed::Complete && pseudohdr && !ipv6 {
            *skb_csum = !csum_sub(diff, *skb_csum);
        }
        r
    } else if pseudohdr {
        !csum_fold(csum_add(diff, sum as u32))
    } else {
        sum
    }
}

/// net/core/filter.c: bpf_csum_diff (6.18: no size limits; the result is folded
/// with csum_from32to16).
pub fn csum_diff(from: &[u8], to: &[u8], seed: u32) -> u16 {
    let ret = if !from.is_empty() && !to.is_empty() {
        csum_sub(csum_partial(to, seed), csum_partial(from, 0))
    } else if !to.is_empty() {
        csum_partial(to, seed)
    } else if !from.is_empty() {
        !csum_partial(from, !seed)
    } else {
        seed
    };
    csum_from32to16(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values the 6.18 kernel returned for bpf_csum_diff (tests/bpf/helpers_tc.c).
    #[test]
    fn csum_diff_kernel_values() {
        let a: Vec<u8> = [0x01020304u32, 0xa0b0c0d0, 0xffffffff, 0x00000001]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let b: Vec<u8> = (0..104u32).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(csum_diff(&[], &a[..4], 0), 0x406);
        assert_eq!(csum_diff(&a[..8], &a[8..16], 0), 0x9a79);
        assert_eq!(csum_diff(&a[..4], &[], 0x1234), 0xe2e);
        assert_eq!(csum_diff(&[], &b[..6], 0), 0x6f00);
        assert_eq!(csum_diff(&[], &a[..16], 0xffff_ffff), 0x6588);
        assert_eq!(csum_diff(&[], &b[..40], 0), 0xb5d1);
        assert_eq!(csum_diff(&[], &b[..104], 7), 0x25a9);
        assert_eq!(csum_diff(&b[..100], &a[..12], 0xabcd_ef01), 0x6dfe);
        assert_eq!(csum_diff(&[], &a[8..12], 0), 0xffff);
        assert_eq!(csum_diff(&[], &b[..3], 0), 0x3060);
    }
}
