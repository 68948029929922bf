//! ICMP for IPv4 (include/uapi/linux/icmp.h `struct icmphdr`, RFC 792).

use crate::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::checksum::checksum;
use crate::{need, Error};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const UN: usize = 4;
    pub const ECHO_ID: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// The ICMP header's length.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// ICMP_ECHOREPLY.
pub const ICMP_ECHOREPLY: u8 = 0;
/// ICMP_DEST_UNREACH.
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP_SOURCE_QUENCH.
pub const ICMP_SOURCE_QUENCH: u8 = 4;
/// ICMP_REDIRECT.
pub const ICMP_REDIRECT: u8 = 5;
/// ICMP_ECHO.
pub const ICMP_ECHO: u8 = 8;
/// ICMP_TIME_EXCEEDED.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMP_PARAMETERPROB.
pub const ICMP_PARAMETERPROB: u8 = 12;
/// ICMP_TIMESTAMP.
pub const ICMP_TIMESTAMP: u8 = 13;
/// NR_ICMP_TYPES - 1: the highest type the kernel knows (ICMP_ADDRESSREPLY).
pub const NR_ICMP_TYPES: u8 = 18;

/// net/ipv4/icmp.c icmp_pointers[].error: the types that are errors.
#[inline]
pub fn is_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        ICMP_DEST_UNREACH
            | ICMP_SOURCE_QUENCH
            | ICMP_REDIRECT
            | ICMP_TIME_EXCEEDED
            | ICMP_PARAMETERPROB
    )
}

/// A view of an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// A view without checks (getters panic on a buffer under 8 bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// A view of a buffer holding at least the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        need("icmp", buffer.as_ref().len(), HEADER_LEN)?;
        Ok(Icmpv4Packet { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The 4 bytes after the checksum (`un`: echo id/sequence, gateway, MTU).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::UN)
    }
    /// un.echo.id.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_ID)
    }
    /// un.echo.sequence.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_SEQ)
    }
    /// What follows the header (echo data, or the quoted packet of an error).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
    /// True when the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    /// Sets code.
    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }
    /// Sets checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    /// Sets the 4 bytes after the checksum.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::UN, v);
    }
    /// Sets un.echo.id.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_ID, v);
    }
    /// Sets un.echo.sequence.
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, v);
    }
    /// What follows the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
    /// The checksum over the whole message recomputed.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A new ICMP message: `msg_type`, `code`, the 4 header bytes `rest`, then
/// `payload`, checksum set.
pub fn message(msg_type: u8, code: u8, rest: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN];
    v.extend_from_slice(payload);
    let mut p = Icmpv4Packet::new_unchecked(&mut v[..]);
    p.set_msg_type(msg_type);
    p.set_msg_code(code);
    p.set_rest_of_header(rest);
    p.fill_checksum();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let m = message(ICMP_ECHO, 0, 0x1234_0007, b"hi");
        assert_eq!(m, [8, 0, 0x7d, 0x5b, 0x12, 0x34, 0, 7, b'h', b'i']);
        let p = Icmpv4Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), ICMP_ECHO);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 7);
        assert_eq!(p.payload(), b"hi");
        assert!(p.verify_checksum());
        let mut m2 = m.clone();
        let mut q = Icmpv4Packet::new_unchecked(&mut m2[..]);
        q.set_msg_type(ICMP_ECHOREPLY);
        q.fill_checksum();
        assert_eq!(m2, message(ICMP_ECHOREPLY, 0, 0x1234_0007, b"hi"));
        assert!(is_error(ICMP_TIME_EXCEEDED) && !is_error(ICMP_ECHO));
    }

    #[test]
    fn refuses_short() {
        assert_eq!(
            Icmpv4Packet::new_checked(&[8u8, 0, 0, 0, 0, 0, 0][..]),
            Err(Error::Truncated {
                format: "icmp",
                have: 7,
                need: 8
            })
        );
    }
}
