//! ARP for Ethernet and IPv4 (include/uapi/linux/if_arp.h `struct arphdr` plus
//! the Ethernet/IPv4 address block, RFC 826).

use std::net::Ipv4Addr;

use crate::bytes::{ipv4_at, mac_at, set_u16, u16_at};
use crate::{malformed, need, Error, ETH_P_IP};

mod field {
    pub const HRD: usize = 0;
    pub const PRO: usize = 2;
    pub const HLN: usize = 4;
    pub const PLN: usize = 5;
    pub const OP: usize = 6;
    pub const SHA: usize = 8;
    pub const SIP: usize = 14;
    pub const THA: usize = 18;
    pub const TIP: usize = 24;
    pub const END: usize = 28;
}

/// The fixed part of `struct arphdr` (before the addresses).
pub const FIXED_LEN: usize = field::SHA;
/// An Ethernet/IPv4 ARP packet's length.
pub const PACKET_LEN: usize = field::END;
/// ARPHRD_ETHER.
pub const ARPHRD_ETHER: u16 = 1;
/// ARPHRD_IEEE802.
pub const ARPHRD_IEEE802: u16 = 6;
/// ARPOP_REQUEST.
pub const ARPOP_REQUEST: u16 = 1;
/// ARPOP_REPLY.
pub const ARPOP_REPLY: u16 = 2;

/// A view of an ARP packet with 6-byte hardware and 4-byte protocol addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// A view without checks (getters panic on a buffer under 28 bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// A view of an ARP packet whose address lengths are Ethernet's (6) and
    /// IPv4's (4), with all 28 bytes present.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let len = buffer.as_ref().len();
        need("arp", len, FIXED_LEN)?;
        let p = ArpPacket { buffer };
        if p.hardware_len() != 6 {
            return Err(malformed("arp", "ar_hln", p.hardware_len().into()));
        }
        if p.protocol_len() != 4 {
            return Err(malformed("arp", "ar_pln", p.protocol_len().into()));
        }
        need("arp", len, PACKET_LEN)?;
        Ok(p)
    }

    /// ar_hrd.
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::HRD)
    }
    /// ar_pro.
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PRO)
    }
    /// ar_hln.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLN]
    }
    /// ar_pln.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLN]
    }
    /// ar_op.
    #[inline]
    pub fn operation(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::OP)
    }
    /// ar_sha.
    #[inline]
    pub fn source_hardware_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::SHA)
    }
    /// ar_sip.
    #[inline]
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SIP)
    }
    /// ar_tha.
    #[inline]
    pub fn target_hardware_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::THA)
    }
    /// ar_tip.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TIP)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets ar_hrd.
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::HRD, v);
    }
    /// Sets ar_pro.
    #[inline]
    pub fn set_protocol_type(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::PRO, v);
    }
    /// Sets ar_hln.
    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLN] = v;
    }
    /// Sets ar_pln.
    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLN] = v;
    }
    /// Sets ar_op.
    #[inline]
    pub fn set_operation(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::OP, v);
    }
    /// Sets ar_sha.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SHA..field::SIP].copy_from_slice(&a);
    }
    /// Sets ar_sip.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SIP..field::THA].copy_from_slice(&a.octets());
    }
    /// Sets ar_tha.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::THA..field::TIP].copy_from_slice(&a);
    }
    /// Sets ar_tip.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TIP..field::END].copy_from_slice(&a.octets());
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// ar_op (ARPOP_REQUEST, ARPOP_REPLY).
    pub operation: u16,
    /// ar_sha.
    pub source_hardware_addr: [u8; 6],
    /// ar_sip.
    pub source_protocol_addr: Ipv4Addr,
    /// ar_tha.
    pub target_hardware_addr: [u8; 6],
    /// ar_tip.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// The message of a checked packet; `Err` unless the hardware type is
    /// Ethernet (or IEEE 802, as arp_process accepts) and the protocol IPv4.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self, Error> {
        let hrd = p.hardware_type();
        if hrd != ARPHRD_ETHER && hrd != ARPHRD_IEEE802 {
            return Err(malformed("arp", "ar_hrd", hrd.into()));
        }
        if p.protocol_type() != ETH_P_IP {
            return Err(malformed("arp", "ar_pro", p.protocol_type().into()));
        }
        Ok(ArpRepr {
            operation: p.operation(),
            source_hardware_addr: p.source_hardware_addr(),
            source_protocol_addr: p.source_protocol_addr(),
            target_hardware_addr: p.target_hardware_addr(),
            target_protocol_addr: p.target_protocol_addr(),
        })
    }

    /// Writes the 28-byte packet (hardware type Ethernet) into `p`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_hardware_type(ARPHRD_ETHER);
        p.set_protocol_type(ETH_P_IP);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(self.operation);
        p.set_source_hardware_addr(self.source_hardware_addr);
        p.set_source_protocol_addr(self.source_protocol_addr);
        p.set_target_hardware_addr(self.target_hardware_addr);
        p.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];

    #[test]
    fn parses_fields() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            ArpRepr {
                operation: ARPOP_REQUEST,
                source_hardware_addr: [2, 0, 0, 0, 0, 1],
                source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
                target_hardware_addr: [0; 6],
                target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
            }
        );
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]),
            Err(Error::Truncated {
                format: "arp",
                have: 27,
                need: 28
            })
        );
        let mut b = REQUEST;
        b[4] = 8;
        assert_eq!(
            ArpPacket::new_checked(&b[..]),
            Err(malformed("arp", "ar_hln", 8))
        );
        let mut b = REQUEST;
        b[2] = 0x86;
        b[3] = 0xdd;
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Err(malformed("arp", "ar_pro", 0x86dd)));
    }

    #[test]
    fn round_trip() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        let mut b = [0xaau8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        assert_eq!(b, REQUEST);
    }
}
