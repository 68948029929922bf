//! Typed zero-copy packet views, in smoltcp's style: each format is a view
//! `Foo<T: AsRef<[u8]>>` over a byte buffer with named getters (and setters for
//! `T: AsMut<[u8]>`), a `new_checked` constructor that refuses buffers too short
//! or malformed for the format (saying what is wrong), and, where skiff builds
//! packets, a `Repr` with `parse`/`emit`. Field offsets live in one private
//! `mod field` per format, so no code outside this crate reads a header at a raw
//! byte offset.
//!
//! Getters are `#[inline]` fixed-offset loads: a view compiles to the same code
//! as indexing the buffer by hand. A view made with `new_unchecked` panics on a
//! buffer shorter than the header; `new_checked` views never do.
//!
//! ```
//! use skiff_wire::{Ipv4Packet, IPPROTO_UDP};
//! let bytes = [
//!     0x45, 0, 0, 20, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
//! ];
//! let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
//! assert_eq!(ip.protocol(), IPPROTO_UDP);
//! assert_eq!(ip.ttl(), 64);
//! assert!(ip.dont_frag());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpPacket, ArpRepr};
pub use ethernet::{EthernetFrame, EthernetRepr, VlanTag};
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::{Icmpv6Packet, NdiscOption, NdiscOptions, NdiscRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6ExtHeader, Ipv6FragHeader, Ipv6Packet, Ipv6Repr};
pub use tcp::TcpPacket;
pub use udp::UdpPacket;

/// include/uapi/linux/if_ether.h: ETH_P_IP.
pub const ETH_P_IP: u16 = 0x0800;
/// ETH_P_ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// ETH_P_IPV6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// ETH_P_8021Q: an 802.1Q VLAN tag follows.
pub const ETH_P_8021Q: u16 = 0x8100;
/// ETH_P_8021AD: an 802.1ad (QinQ service) VLAN tag follows.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// include/uapi/linux/in.h: IPPROTO_IP (also IPv6's hop-by-hop options, 0).
pub const IPPROTO_HOPOPTS: u8 = 0;
/// IPPROTO_ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IPPROTO_IPIP.
pub const IPPROTO_IPIP: u8 = 4;
/// IPPROTO_TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IPPROTO_UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPPROTO_IPV6.
pub const IPPROTO_IPV6: u8 = 41;
/// IPPROTO_ROUTING (IPv6 routing header).
pub const IPPROTO_ROUTING: u8 = 43;
/// IPPROTO_FRAGMENT (IPv6 fragment header).
pub const IPPROTO_FRAGMENT: u8 = 44;
/// IPPROTO_GRE.
pub const IPPROTO_GRE: u8 = 47;
/// IPPROTO_ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IPPROTO_AH.
pub const IPPROTO_AH: u8 = 51;
/// IPPROTO_ICMPV6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPPROTO_NONE (IPv6: no next header).
pub const IPPROTO_NONE: u8 = 59;
/// IPPROTO_DSTOPTS (IPv6 destination options).
pub const IPPROTO_DSTOPTS: u8 = 60;
/// IPPROTO_SCTP.
pub const IPPROTO_SCTP: u8 = 132;
/// IPPROTO_UDPLITE.
pub const IPPROTO_UDPLITE: u8 = 136;

/// Why a buffer is not a valid packet of a format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or the length a header field gives).
    #[error("{format}: truncated: {have} bytes, {need} needed")]
    Truncated {
        /// The format being read ("ipv4", "tcp", ...).
        format: &'static str,
        /// Bytes present.
        have: usize,
        /// Bytes the header or its length field requires.
        need: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{format}: bad {field}: {value}")]
    Malformed {
        /// The format being read.
        format: &'static str,
        /// The field name.
        field: &'static str,
        /// Its value.
        value: u32,
    },
}

/// net/core/flow_dissector.c skb_flow_get_ports: the source and destination
/// ports TCP, UDP, UDP-Lite, SCTP and DCCP all carry in their first 4 bytes
/// (`struct flow_ports`); None when `l4` is shorter.
#[inline]
pub fn flow_ports(l4: &[u8]) -> Option<(u16, u16)> {
    match l4 {
        [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
        _ => None,
    }
}

/// `Ok` when `have >= need`, else `Error::Truncated`.
#[inline]
pub(crate) fn need(format: &'static str, have: usize, need: usize) -> Result<(), Error> {
    if have < need {
        Err(Error::Truncated { format, have, need })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn malformed(format: &'static str, field: &'static str, value: u32) -> Error {
    Error::Malformed {
        format,
        field,
        value,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flow_ports() {
        assert_eq!(super::flow_ports(&[0x04, 0xd2, 0, 80, 9]), Some((1234, 80)));
        assert_eq!(super::flow_ports(&[0x04, 0xd2, 0]), None);
    }
}

/// Big-endian field loads and stores at fixed offsets.
pub(crate) mod bytes {
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[inline]
    pub fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_be_bytes([b[off], b[off + 1]])
    }
    #[inline]
    pub fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }
    #[inline]
    pub fn mac_at(b: &[u8], off: usize) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[off..off + 6]);
        m
    }
    #[inline]
    pub fn ipv4_at(b: &[u8], off: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32_at(b, off))
    }
    #[inline]
    pub fn ipv6_at(b: &[u8], off: usize) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[off..off + 16]);
        Ipv6Addr::from(a)
    }
    #[inline]
    pub fn set_u16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub fn set_u32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
}
