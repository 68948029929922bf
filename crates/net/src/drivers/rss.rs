//! Receive-side scaling as NICs do it: the Toeplitz hash over the flow's
//! addresses and ports with the Microsoft default key, then the default
//! indirection table (ethtool_rxfh_indir_default: entry i is queue i % n).

use crate::core::flow::{five_tuple, IPPROTO_TCP, IPPROTO_UDP};
use std::net::IpAddr;
use std::sync::OnceLock;

/// The Microsoft RSS default key (netdev_rss_key is random in the kernel;
/// drivers and the RSS specification's test vectors use this one).
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Indirection table size (ETH_RXFH_INDIR_DEFAULT-like, 128 entries as most NICs).
pub const INDIR_SIZE: u32 = 128;

/// The Toeplitz hash of `input` under `key` (include/linux/... toeplitz as in
/// the RSS specification): for every set input bit, XOR in the 32-bit key window
/// starting at that bit.
pub fn toeplitz(key: &[u8; 40], input: &[u8]) -> u32 {
    let mut result = 0u32;
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    let mut next = 4usize;
    for &byte in input {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= window;
            }
            let kb = key.get(next).copied().unwrap_or(0);
            window = (window << 1) | ((kb >> (7 - bit)) & 1) as u32;
        }
        next += 1;
    }
    result
}

/// The RSS hash of a frame and whether it covered ports (TCP/UDP 4-tuple):
/// IPv4/IPv6 addresses plus ports for TCP and UDP, addresses only otherwise;
/// None for non-IP frames (the NIC then gives no hash and queue 0).
pub fn rss_hash(frame: &[u8]) -> Option<(u32, bool)> {
    let t = five_tuple(frame)?;
    let mut input = [0u8; 36];
    let mut n = 0;
    for ip in [t.src, t.dst] {
        match ip {
            IpAddr::V4(v) => {
                input[n..n + 4].copy_from_slice(&v.octets());
                n += 4;
            }
            IpAddr::V6(v) => {
                input[n..n + 16].copy_from_slice(&v.octets());
                n += 16;
            }
        }
    }
    let l4 = t.has_ports && matches!(t.proto, IPPROTO_TCP | IPPROTO_UDP);
    if l4 {
        input[n..n + 2].copy_from_slice(&t.sport.to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&t.dport.to_be_bytes());
        n += 4;
    }
    Some((toeplitz_table(&input[..n]), l4))
}

/// The longest input: two IPv6 addresses and two ports.
const MAX_INPUT: usize = 36;

/// Per input byte position and byte value, what that byte XORs into the
/// hash under the default key: the hash of an input is then one lookup and
/// XOR per byte instead of 8 shifts and tests (as NICs and DPDK's
/// rte_thash do it).
fn table() -> &'static [[u32; 256]; MAX_INPUT] {
    static T: OnceLock<Box<[[u32; 256]; MAX_INPUT]>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Box::new([[0u32; 256]; MAX_INPUT]);
        for (pos, row) in t.iter_mut().enumerate() {
            for (v, slot) in row.iter_mut().enumerate() {
                let mut input = [0u8; MAX_INPUT];
                input[pos] = v as u8;
                *slot = toeplitz(&MICROSOFT_KEY, &input[..=pos]);
            }
        }
        t
    })
}

/// `toeplitz(&MICROSOFT_KEY, input)` through the table (input up to 36 bytes).
pub fn toeplitz_table(input: &[u8]) -> u32 {
    let t = table();
    input
        .iter()
        .zip(t.iter())
        .fold(0, |h, (&b, row)| h ^ row[b as usize])
}

/// The rx queue for a hash: the default indirection table.
pub fn queue_for(hash: u32, queues: u32) -> u32 {
    if queues == 0 {
        return 0;
    }
    (hash % INDIR_SIZE) % queues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_equals_bitwise() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for len in [8usize, 12, 32, 36] {
            for _ in 0..200 {
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                assert_eq!(toeplitz_table(&input), toeplitz(&MICROSOFT_KEY, &input));
            }
        }
    }

    // The RSS specification's verification suite (IPv4 with TCP).
    #[test]
    fn microsoft_vectors() {
        let v = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16| {
            let mut i = Vec::new();
            i.extend_from_slice(&s);
            i.extend_from_slice(&d);
            i.extend_from_slice(&sp.to_be_bytes());
            i.extend_from_slice(&dp.to_be_bytes());
            (
                toeplitz(&MICROSOFT_KEY, &i),
                toeplitz(&MICROSOFT_KEY, &i[..8]),
            )
        };
        assert_eq!(
            v([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766),
            (0x51ccc178, 0x323e8fc2)
        );
        assert_eq!(
            v([199, 92, 111, 2], [65, 69, 140, 83], 14230, 4739),
            (0xc626b0ea, 0xd718262a)
        );
        assert_eq!(
            v([24, 19, 198, 95], [12, 22, 207, 184], 12898, 38024),
            (0x5c2b394a, 0xd2d0a5de)
        );
    }
}
