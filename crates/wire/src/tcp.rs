//! TCP (include/uapi/linux/tcp.h `struct tcphdr`, RFC 9293).

use crate::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::checksum::{fold, sum};
use crate::{malformed, need, Error};

mod field {
    pub const SOURCE: usize = 0;
    pub const DEST: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK_SEQ: usize = 8;
    pub const DOFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECK: usize = 16;
    pub const URG_PTR: usize = 18;
    pub const OPTIONS: usize = 20;
}

/// The TCP header's length without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// TCPHDR_FIN.
pub const TCPHDR_FIN: u8 = 0x01;
/// TCPHDR_SYN.
pub const TCPHDR_SYN: u8 = 0x02;
/// TCPHDR_RST.
pub const TCPHDR_RST: u8 = 0x04;
/// TCPHDR_PSH.
pub const TCPHDR_PSH: u8 = 0x08;
/// TCPHDR_ACK.
pub const TCPHDR_ACK: u8 = 0x10;
/// TCPHDR_URG.
pub const TCPHDR_URG: u8 = 0x20;
/// TCPHDR_ECE.
pub const TCPHDR_ECE: u8 = 0x40;
/// TCPHDR_CWR.
pub const TCPHDR_CWR: u8 = 0x80;

/// A view of a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without checks (getters panic on a buffer under 20 bytes,
    /// `options`/`payload` when the data offset runs past the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// tcp_v4_rcv's header checks: 20 bytes present (`Truncated`), a data
    /// offset of at least 5 words (`Malformed`), the whole header with its
    /// options present (`Truncated`).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let len = buffer.as_ref().len();
        need("tcp", len, HEADER_LEN)?;
        let p = TcpPacket { buffer };
        let doff = p.header_len();
        if doff < HEADER_LEN {
            return Err(malformed("tcp", "doff", (doff / 4) as u32));
        }
        need("tcp", len, doff)?;
        Ok(p)
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
    /// seq.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ)
    }
    /// ack_seq.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::ACK_SEQ)
    }
    /// doff, in bytes: the header with its options.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DOFF] >> 4) * 4
    }
    /// The flag byte (TCPHDR_*).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & TCPHDR_FIN != 0
    }
    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & TCPHDR_SYN != 0
    }
    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & TCPHDR_RST != 0
    }
    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & TCPHDR_PSH != 0
    }
    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & TCPHDR_ACK != 0
    }
    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & TCPHDR_URG != 0
    }
    /// window.
    #[inline]
    pub fn window_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::WINDOW)
    }
    /// check.
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECK)
    }
    /// urg_ptr.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::URG_PTR)
    }
    /// The options (bytes 20 to the data offset).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }
    /// The payload (after the options, to the end of the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// True when the checksum over the whole buffer plus the pseudo-header sum
    /// `pseudo` is correct.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        fold(sum(self.buffer.as_ref(), pseudo)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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
    /// Sets seq.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, v);
    }
    /// Sets ack_seq.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_SEQ, v);
    }
    /// Sets doff from a length in bytes (a multiple of 4), clearing the
    /// reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DOFF] = ((len / 4) as u8) << 4;
    }
    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }
    /// Sets window.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, v);
    }
    /// Sets check.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECK, v);
    }
    /// Sets urg_ptr.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::URG_PTR, v);
    }
    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
    /// The checksum over the whole buffer with the pseudo-header sum `pseudo`.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let c = fold(sum(self.buffer.as_ref(), pseudo));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> Vec<u8> {
        let mut v = vec![0u8; 24];
        let mut t = TcpPacket::new_unchecked(&mut v[..]);
        t.set_src_port(40000);
        t.set_dst_port(80);
        t.set_seq_number(1000);
        t.set_ack_number(7);
        t.set_header_len(24);
        t.set_flags(TCPHDR_ACK | TCPHDR_PSH);
        t.set_window_len(65535);
        t.set_urgent_at(0);
        v[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
        v.extend_from_slice(b"data");
        TcpPacket::new_unchecked(&mut v[..]).fill_checksum(0x1234);
        v
    }

    #[test]
    fn parses_fields() {
        let v = segment();
        let t = TcpPacket::new_checked(&v[..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq_number(), 1000);
        assert_eq!(t.ack_number(), 7);
        assert_eq!(t.header_len(), 24);
        assert!(t.ack() && t.psh() && !t.syn() && !t.fin() && !t.rst() && !t.urg());
        assert_eq!(t.window_len(), 65535);
        assert_eq!(t.options(), &[2, 4, 0x05, 0xb4]);
        assert_eq!(t.payload(), b"data");
        assert!(t.verify_checksum(0x1234));
        assert!(!t.verify_checksum(0x1235));
        assert_eq!(
            &v[..14],
            &[0x9c, 0x40, 0, 80, 0, 0, 0x03, 0xe8, 0, 0, 0, 7, 0x60, 0x18]
        );
    }

    #[test]
    fn refuses_malformed() {
        let v = segment();
        assert_eq!(
            TcpPacket::new_checked(&v[..19]),
            Err(Error::Truncated {
                format: "tcp",
                have: 19,
                need: 20
            })
        );
        assert_eq!(
            TcpPacket::new_checked(&v[..22]),
            Err(Error::Truncated {
                format: "tcp",
                have: 22,
                need: 24
            })
        );
        let mut w = v.clone();
        w[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&w[..]),
            Err(malformed("tcp", "doff", 4))
        );
    }
}
