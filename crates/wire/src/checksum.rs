//! The Internet checksum (RFC 1071) in two forms.
//!
//! - Big-endian arithmetic for building and verifying headers: [`sum`] adds
//!   16-bit network-order words into an unfolded `u64`, [`fold`] folds and
//!   complements it into the value a checksum field holds, and the
//!   pseudo-header sums ([`pseudo_header_v4`], [`pseudo_header_v6`]) start an
//!   upper-layer checksum.
//! - The x86_64 kernel's own arithmetic for the eBPF checksum helpers, whose
//!   results must be bit-identical to the kernel's: `__wsum`/`__sum16` values as
//!   the kernel holds them, 16-bit fields read from memory little-endian
//!   (arch/x86/lib/csum-partial_64.c, arch/x86/include/asm/checksum_64.h,
//!   include/net/checksum.h), including the RFC 1624 incremental updates
//!   [`csum_replace2`] and [`csum_replace4`].

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's-complement sum of `data` as big-endian 16-bit words (a trailing odd
/// byte is the high byte of a zero-padded word), added to `acc`, not folded.
#[inline]
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds an unfolded sum to 16 bits with end-around carry and complements it:
/// the value a checksum field holds (0 when verifying a correct packet).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone (an IPv4 header, an ICMP message).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum(data, 0))
}

/// The IPv4 pseudo-header sum (RFC 768/793): addresses, protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u64 {
    let acc = sum(&dst.octets(), sum(&src.octets(), 0));
    acc + u64::from(protocol) + len as u64
}

/// The IPv6 pseudo-header sum (RFC 8200 8.1): addresses, upper-layer length,
/// next header.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: usize) -> u64 {
    let acc = sum(&dst.octets(), sum(&src.octets(), 0));
    acc + u64::from(next_header) + len as u64
}

/// 64-bit add with end-around carry (an `adcq $0` chain).
#[inline]
fn add64_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + c as u64
}

/// arch/x86/lib/csum-partial_64.c: csum_finalize_sum.
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
        // The zero-padded little-endian word, built in a register (a copy
        // into a stack word and an 8-byte load of it stalled store
        // forwarding: most of bpf_csum_diff's time on a 20-byte header).
        let w = rest.iter().rev().fold(0u64, |w, &b| (w << 8) | b as u64);
        t = add64_carry(t, w);
    }
    finalize(t)
}

/// arch/x86/include/asm/checksum_64.h: csum_add (add32_with_carry).
#[inline]
pub fn csum_add(a: u32, b: u32) -> u32 {
    let (s, c) = a.overflowing_add(b);
    s.wrapping_add(c as u32)
}

/// include/net/checksum.h: csum_sub.
#[inline]
pub fn csum_sub(a: u32, b: u32) -> u32 {
    csum_add(a, !b)
}

/// arch/x86/include/asm/checksum_64.h: csum_fold (complemented 16-bit fold).
#[inline]
pub fn csum_fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// include/net/checksum.h: csum_from32to16 (uncomplemented fold).
#[inline]
pub fn csum_from32to16(sum: u32) -> u16 {
    let s = sum.wrapping_add(sum.rotate_right(16));
    (s >> 16) as u16
}

/// include/net/checksum.h: csum16_add.
#[inline]
pub fn csum16_add(csum: u16, addend: u16) -> u16 {
    let (r, c) = csum.overflowing_add(addend);
    r.wrapping_add(c as u16)
}

/// include/net/checksum.h: csum_replace_by_diff.
#[inline]
pub fn csum_replace_by_diff(sum: u16, diff: u32) -> u16 {
    csum_fold(csum_add(diff, !(sum as u32)))
}

/// include/net/checksum.h: csum_replace4 (RFC 1624 for a 32-bit field).
#[inline]
pub fn csum_replace4(sum: u16, from: u32, to: u32) -> u16 {
    let tmp = csum_sub(!(sum as u32), from);
    csum_fold(csum_add(tmp, to))
}

/// include/net/checksum.h: csum_replace2 (RFC 1624: HC' = ~(~HC + ~m + m')).
#[inline]
pub fn csum_replace2(sum: u16, old: u16, new: u16) -> u16 {
    !csum16_add(csum16_add(!sum, !old), new)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&b, 0), 0x2_ddf0);
        assert_eq!(checksum(&b), !0xddf2);
        // The kernel's little-endian view of the same sum is byte-swapped.
        assert_eq!(!csum_fold(csum_partial(&b, 0)), 0xf2dd);
    }

    #[test]
    fn odd_length_pads_the_last_byte_high() {
        assert_eq!(sum(&[0x12, 0x34, 0x56], 0), 0x1234 + 0x5600);
        assert_eq!(checksum(&[]), 0xffff);
    }

    // Wikipedia's IPv4 header example checksums to b861 in both forms.
    #[test]
    fn ipv4_header_both_forms() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        let c = csum_fold(csum_partial(&h, 0));
        assert_eq!(c.to_le_bytes(), [0xb8, 0x61]);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        assert_eq!(csum_fold(csum_partial(&h, 0)), 0);
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            12,
        );
        assert_eq!(v4, 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 12);
        let a = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let b = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
        assert_eq!(pseudo_header_v6(a, b, 58, 8), 0xfd00 * 2 + 3 + 58 + 8);
    }

    // Incremental updates agree with recomputation (kernel little-endian view).
    #[test]
    fn replace_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = u32::from_le_bytes([0xc0, 0xa8, 0x00, 0x01]);
        let new = u32::from_le_bytes([0x0a, 0x00, 0x00, 0x63]);
        let sum = u16::from_le_bytes([h[10], h[11]]);
        let upd = csum_replace4(sum, old, new);
        h[12..16].copy_from_slice(&new.to_le_bytes());
        h[10..12].fill(0);
        assert_eq!(upd, csum_fold(csum_partial(&h, 0)));
        // TTL 64 -> 63 in the word (ttl, protocol).
        let sum = u16::from_le_bytes(upd.to_le_bytes());
        let old = u16::from_le_bytes([0x40, 0x11]);
        let new = u16::from_le_bytes([0x3f, 0x11]);
        let upd2 = csum_replace2(sum, old, new);
        h[8] = 0x3f;
        assert_eq!(upd2, csum_fold(csum_partial(&h, 0)));
    }

    #[test]
    fn fold_forms() {
        assert_eq!(csum_from32to16(0), 0);
        assert_eq!(csum_from32to16(0xffff_0000), 0xffff);
        assert_eq!(csum_from32to16(0x0001_ffff), 0x0001);
        assert_eq!(csum_fold(0xffff_ffff), 0);
        assert_eq!(csum_add(0xffff_ffff, 1), 1);
        assert_eq!(fold(0x1_fffe), 0);
    }
}
