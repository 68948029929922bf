//! Internet checksum arithmetic exactly as the x86_64 kernel computes it
//! (arch/x86/lib/csum-partial_64.c, arch/x86/include/asm/checksum_64.h,
//! include/net/checksum.h). Values are `__wsum`/`__sum16` as the kernel holds
//! them: 16-bit fields are read from memory little-endian (a native x86 load of
//! the network-order bytes), so results are bit-identical to the kernel's.

/// 64-bit add with end-around carry (an `adcq $0` chain).
#[inline]
fn add64_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + c as u64
}

// arch/x86/lib/csum-partial_64.c: csum_finalize_sum
#[inline]
fn finalize(t: u64) -> u32 {
    (t.wrapping_add(t.rotate_right(32)) >> 32) as u32
}

/// arch/x86/lib/csum-partial_64.c: csum_partial. The 32-bit unfolded sum of
/// `buf` (little-endian 64-bit words, trailing bytes zero-padded) plus `sum`.
pub fn csum_partial(buf: &[u8], sum: u32) -> u32 {
    let mut t = sum as u64;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        t = add64_carry(t, u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        t = add64_carry(t, u64::from_le_bytes(w));
    }
    finalize(t)
}

/// arch/x86/include/asm/checksum_64.h: csum_add (add32_with_carry).
pub fn csum_add(a: u32, b: u32) -> u32 {
    let (s, c) = a.overflowing_add(b);
    s.wrapping_add(c as u32)
}

/// include/net/checksum.h: csum_sub.
pub fn csum_sub(a: u32, b: u32) -> u32 {
    csum_add(a, !b)
}

/// arch/x86/include/asm/checksum_64.h: csum_fold (complemented 16-bit fold).
pub fn csum_fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// include/net/checksum.h: csum_from32to16 (uncomplemented fold).
pub fn csum_from32to16(sum: u32) -> u16 {
    let s = sum.wrapping_add(sum.rotate_right(16));
    (s >> 16) as u16
}

/// include/net/checksum.h: csum16_add.
pub fn csum16_add(csum: u16, addend: u16) -> u16 {
    let (r, c) = csum.overflowing_add(addend);
    r.wrapping_add(c as u16)
}

/// include/net/checksum.h: csum_replace_by_diff.
pub fn csum_replace_by_diff(sum: u16, diff: u32) -> u16 {
    csum_fold(csum_add(diff, !(sum as u32)))
}

/// include/net/checksum.h: csum_replace4.
pub fn csum_replace4(sum: u16, from: u32, to: u32) -> u16 {
    let tmp = csum_sub(!(sum as u32), from);
    csum_fold(csum_add(tmp, to))
}

/// include/net/checksum.h: csum_replace2 (RFC 1624: HC' = ~(~HC + ~m + m')).
pub fn csum_replace2(sum: u16, old: u16, new: u16) -> u16 {
    !csum16_add(csum16_add(!sum, !old), new)
}

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

    // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums (big-endian words)
    // to 0xddf2; in the kernel's little-endian view the folded sum is 0xf2dd.
    #[test]
    fn rfc1071_example() {
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let folded = !csum_fold(csum_partial(&b, 0));
        assert_eq!(folded, 0xf2dd);
        assert_eq!(folded.swap_bytes(), 0xddf2);
    }

    // A real IPv4 header (Wikipedia's example) checksums to b861.
    #[test]
    fn ipv4_header() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = csum_fold(csum_partial(&h, 0));
        assert_eq!(c.to_le_bytes(), [0xb8, 0x61]);
        h[10..12].copy_from_slice(&c.to_le_bytes());
        assert_eq!(csum_fold(csum_partial(&h, 0)), 0);
    }

    // Incremental update agrees with recomputation: change the source address.
    #[test]
    fn replace4_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = u32::from_le_bytes([0xc0, 0xa8, 0x00, 0x01]);
        let new = u32::from_le_bytes([0x0a, 0x00, 0x00, 0x63]);
        let sum = u16::from_le_bytes([h[10], h[11]]);
        let upd = csum_replace4(sum, old, new);
        h[12..16].copy_from_slice(&new.to_le_bytes());
        h[10] = 0;
        h[11] = 0;
        assert_eq!(upd, csum_fold(csum_partial(&h, 0)));
    }

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

    #[test]
    fn fold_forms() {
        assert_eq!(csum_from32to16(0), 0);
        assert_eq!(csum_from32to16(0xffff_0000), 0xffff);
        assert_eq!(csum_from32to16(0x0001_ffff), 0x0001);
        assert_eq!(csum_fold(0xffff_ffff), 0);
        assert_eq!(csum_add(0xffff_ffff, 1), 1);
    }
}
