//! UDP (include/uapi/linux/udp.h `struct udphdr`, RFC 768).

use crate::bytes::{set_u16, u16_at};
use crate::checksum::{fold, sum};
use crate::{malformed, need, Error};

mod field {
    pub const SOURCE: usize = 0;
    pub const DEST: usize = 2;
    pub const LEN: usize = 4;
    pub const CHECK: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// The UDP header's length.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view without checks (getters panic on a buffer under 8 bytes,
    /// `payload` when len runs past the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// A view that passed [`check_header`](Self::check_header) and
    /// [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = UdpPacket { buffer };
        p.check_header()?;
        p.check_len()?;
        Ok(p)
    }

    /// The 8-byte header is present.
    #[inline]
    pub fn check_header(&self) -> Result<(), Error> {
        need("udp", self.buffer.as_ref().len(), HEADER_LEN)
    }

    /// __udp4_lib_rcv's length checks: len covers the header (`Malformed`) and
    /// the buffer holds len bytes (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<(), Error> {
        let l = usize::from(self.length());
        if l < HEADER_LEN {
            return Err(malformed("udp", "len", l as u32));
        }
        need("udp", self.buffer.as_ref().len(), l)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// source.
    #[inline]
    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SOURCE)
    }
    /// dest.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DEST)
    }
    /// len: header plus payload.
    #[inline]
    pub fn length(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LEN)
    }
    /// check (0: none, allowed over IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECK)
    }
    /// The payload (to len).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.length())]
    }
    /// True when the checksum over the datagram (to len) plus the pseudo-header
    /// sum `pseudo` is correct.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        fold(sum(
            &self.buffer.as_ref()[..usize::from(self.length())],
            pseudo,
        )) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets source.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SOURCE, v);
    }
    /// Sets dest.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DEST, v);
    }
    /// Sets len.
    #[inline]
    pub fn set_length(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LEN, v);
    }
    /// Sets check.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECK, v);
    }
    /// The payload (to len), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.length());
        &mut self.buffer.as_mut()[field::PAYLOAD..l]
    }
    /// The checksum over the datagram (to len) with the pseudo-header sum
    /// `pseudo`; a computed 0 is sent as 0xffff (RFC 768: CSUM_MANGLED_0).
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let l = usize::from(self.length());
        let c = fold(sum(&self.buffer.as_ref()[..l], pseudo));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::pseudo_header_v4;
    use crate::IPPROTO_UDP;
    use std::net::Ipv4Addr;

    fn datagram() -> Vec<u8> {
        let mut v = vec![0x04, 0xd2, 0x00, 0x35, 0x00, 0x0a, 0, 0, b'h', b'i', 0xee];
        let pseudo = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IPPROTO_UDP,
            10,
        );
        UdpPacket::new_unchecked(&mut v[..]).fill_checksum(pseudo);
        v
    }

    #[test]
    fn parses_fields() {
        let v = datagram();
        let p = UdpPacket::new_checked(&v[..]).unwrap();
        assert_eq!(p.src_port(), 1234);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.length(), 10);
        assert_eq!(p.payload(), b"hi");
        let pseudo = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            IPPROTO_UDP,
            10,
        );
        // 0x04d2 + 0x35 + 0x0a + 0x6869 + 0x0a00 * 2 + 3 + 17 + 10.
        assert_eq!(p.checksum(), !0x8198);
        assert!(p.verify_checksum(pseudo));
        assert!(!p.verify_checksum(pseudo + 1));
    }

    #[test]
    fn refuses_malformed() {
        let v = datagram();
        assert_eq!(
            UdpPacket::new_checked(&v[..7]),
            Err(Error::Truncated {
                format: "udp",
                have: 7,
                need: 8
            })
        );
        assert_eq!(
            UdpPacket::new_checked(&v[..9]),
            Err(Error::Truncated {
                format: "udp",
                have: 9,
                need: 10
            })
        );
        let mut w = v.clone();
        w[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&w[..]),
            Err(malformed("udp", "len", 7))
        );
    }

    #[test]
    fn round_trip_setters() {
        let v = datagram();
        let mut w = vec![0u8; 11];
        let mut p = UdpPacket::new_unchecked(&mut w[..]);
        p.set_src_port(1234);
        p.set_dst_port(53);
        p.set_length(10);
        p.payload_mut().copy_from_slice(b"hi");
        p.set_checksum(UdpPacket::new_unchecked(&v[..]).checksum());
        w[10] = 0xee;
        assert_eq!(w, v);
    }
}
