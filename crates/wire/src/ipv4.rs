//! IPv4 (include/uapi/linux/ip.h `struct iphdr`, RFC 791), with options and
//! fragments.

use std::net::Ipv4Addr;

use crate::bytes::{ipv4_at, set_u16, u16_at};
use crate::checksum::checksum;
use crate::{malformed, need, Error};

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOT_LEN: usize = 2;
    pub const ID: usize = 4;
    pub const FRAG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECK: usize = 10;
    pub const SADDR: usize = 12;
    pub const DADDR: usize = 16;
    pub const OPTIONS: usize = 20;
}

/// The header length without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// IP_CE: the reserved "congestion" flag bit of frag_off.
pub const IP_CE: u16 = 0x8000;
/// IP_DF: don't fragment.
pub const IP_DF: u16 = 0x4000;
/// IP_MF: more fragments.
pub const IP_MF: u16 = 0x2000;
/// IP_OFFSET: the fragment offset bits (8-byte units).
pub const IP_OFFSET: u16 = 0x1fff;
/// IPOPT_END: end of the option list.
pub const IPOPT_END: u8 = 0;
/// IPOPT_NOOP: one padding byte.
pub const IPOPT_NOOP: u8 = 1;
/// IPOPT_COPY: the option is copied into every fragment.
pub const IPOPT_COPY: u8 = 0x80;

/// include/net/ip.h ip_eth_mc_map: the Ethernet address of an IPv4 multicast
/// group, 01:00:5e and the group's low 23 bits (RFC 1112 6.4).
#[inline]
pub fn eth_mc_map(a: Ipv4Addr) -> [u8; 6] {
    let o = a.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// A view of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks (getters panic on a buffer under 20 bytes,
    /// `options`/`payload` when the lengths do not fit the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// A view that passed [`check_header`](Self::check_header) and
    /// [`check_total_len`](Self::check_total_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Ipv4Packet { buffer };
        p.check_header()?;
        p.check_total_len()?;
        Ok(p)
    }

    /// ip_rcv_core's header checks: 20 bytes present, version 4, IHL at least
    /// 5 words and the whole header (with options) present.
    #[inline]
    pub fn check_header(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        need("ipv4", len, HEADER_LEN)?;
        if self.version() != 4 {
            return Err(malformed("ipv4", "version", self.version().into()));
        }
        let ihl = self.header_len();
        if ihl < HEADER_LEN {
            return Err(malformed("ipv4", "ihl", (ihl / 4) as u32));
        }
        need("ipv4", len, ihl)
    }

    /// ip_rcv_core's length checks (after `check_header`): the buffer holds
    /// tot_len bytes (`Truncated`) and tot_len covers the header (`Malformed`).
    #[inline]
    pub fn check_total_len(&self) -> Result<(), Error> {
        let tot = usize::from(self.total_len());
        need("ipv4", self.buffer.as_ref().len(), tot)?;
        if tot < self.header_len() {
            return Err(malformed("ipv4", "tot_len", tot as u32));
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer (header, payload and anything after tot_len).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// version.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// ihl, in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    /// tos (DSCP and ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }
    /// tot_len.
    #[inline]
    pub fn total_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::TOT_LEN)
    }
    /// id.
    #[inline]
    pub fn ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ID)
    }
    /// frag_off as the header holds it: flags (IP_CE, IP_DF, IP_MF) and offset.
    #[inline]
    pub fn frag_off(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::FRAG_OFF)
    }
    /// IP_DF.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.frag_off() & IP_DF != 0
    }
    /// IP_MF.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.frag_off() & IP_MF != 0
    }
    /// The fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> usize {
        usize::from(self.frag_off() & IP_OFFSET) * 8
    }
    /// include/net/ip.h ip_is_fragment: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag_off() & (IP_MF | IP_OFFSET) != 0
    }
    /// ttl.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    /// protocol.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    /// check.
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECK)
    }
    /// saddr.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SADDR)
    }
    /// daddr.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::DADDR)
    }
    /// The header (with options).
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }
    /// The options (between byte 20 and the IHL).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }
    /// The payload: from the IHL to tot_len.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
    /// True when the header checksum is correct (ip_fast_csum is 0).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version (4 bits).
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }
    /// Sets ihl from a length in bytes (a multiple of 4, at most 60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }
    /// Sets tos.
    #[inline]
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }
    /// Sets tot_len.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::TOT_LEN, v);
    }
    /// Sets id.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ID, v);
    }
    /// Sets frag_off (flags and offset, as the header holds them).
    #[inline]
    pub fn set_frag_off(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::FRAG_OFF, v);
    }
    /// Sets ttl.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    /// Sets protocol.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }
    /// Sets check.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECK, v);
    }
    /// Sets saddr.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SADDR..field::DADDR].copy_from_slice(&a.octets());
    }
    /// Sets daddr.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DADDR..field::OPTIONS].copy_from_slice(&a.octets());
    }
    /// The options, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let ihl = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..ihl]
    }
    /// The payload (IHL to tot_len), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (ihl, tot) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[ihl..tot]
    }
    /// include/net/ip.h ip_send_check: the header checksum recomputed.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.header());
        self.set_checksum(c);
    }

    /// include/net/ip.h ip_decrease_ttl: the TTL less one and the checksum
    /// updated incrementally, writing the exact bytes the kernel writes (it adds
    /// htons(0x0100) to the raw field as a host-order u32 with end-around carry).
    #[inline]
    pub fn decrease_ttl(&mut self) {
        let b = self.buffer.as_mut();
        let raw = u32::from(u16::from_ne_bytes([b[field::CHECK], b[field::CHECK + 1]]));
        let mut c = raw + u32::from(u16::from_ne_bytes(0x0100u16.to_be_bytes()));
        c += u32::from(c >= 0xffff);
        b[field::CHECK..field::CHECK + 2].copy_from_slice(&(c as u16).to_ne_bytes());
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
    }

    /// net/ipv4/ip_options.c ip_options_fragment: the options a fragment after
    /// the first carries: those without IPOPT_COPY become IPOPT_NOOP. Stops at
    /// IPOPT_END or at an option whose length is under 2 or runs past the header;
    /// `Err` when an option's length byte is missing.
    pub fn options_fragment(&mut self) -> Result<(), Error> {
        let opts = self.options_mut();
        let mut o = 0;
        while o < opts.len() {
            match opts[o] {
                IPOPT_END => break,
                IPOPT_NOOP => o += 1,
                t => {
                    let Some(&l) = opts.get(o + 1) else {
                        return Err(Error::Truncated {
                            format: "ipv4 option",
                            have: opts.len() - o,
                            need: 2,
                        });
                    };
                    let l = usize::from(l);
                    if l < 2 || o + l > opts.len() {
                        break;
                    }
                    if t & IPOPT_COPY == 0 {
                        opts[o..o + l].fill(IPOPT_NOOP);
                    }
                    o += l;
                }
            }
        }
        Ok(())
    }
}

/// The fields of an option-less IPv4 header the stack writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// saddr.
    pub src_addr: Ipv4Addr,
    /// daddr.
    pub dst_addr: Ipv4Addr,
    /// protocol.
    pub protocol: u8,
    /// tos.
    pub tos: u8,
    /// ttl.
    pub ttl: u8,
    /// id.
    pub ident: u16,
    /// IP_DF (no other flags, offset 0).
    pub dont_frag: bool,
    /// Bytes after the header (tot_len - 20, capped so tot_len fits 16 bits).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// The fields of a checked packet (its options and MF/offset ignored).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Self {
        Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            tos: p.tos(),
            ttl: p.ttl(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            payload_len: usize::from(p.total_len()).saturating_sub(p.header_len()),
        }
    }

    /// Writes a 20-byte header with its checksum into `p`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.set_version(4);
        p.set_header_len(HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len((HEADER_LEN + self.payload_len).min(0xffff) as u16);
        p.set_ident(self.ident);
        p.set_frag_off(if self.dont_frag { IP_DF } else { 0 });
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IPPROTO_UDP;

    // Wikipedia's example header (checksum b861) with 4 bytes of payload
    // after tot_len 0x18 and 2 bytes of trailing padding.
    fn packet() -> Vec<u8> {
        let mut v = vec![
            0x45, 0x00, 0x00, 0x18, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7, 1, 2, 3, 4, 0, 0,
        ];
        let c = checksum(&v[..20]);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v
    }

    #[test]
    fn parses_fields() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IPPROTO_UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.options().is_empty());
        assert!(p.verify_checksum());
    }

    #[test]
    fn fragments_and_options() {
        let mut b = [0u8; 28];
        b[0] = 0x46;
        b[3] = 28;
        b[6] = 0x20;
        b[7] = 0x03; // MF, offset 3 * 8
        b[20..24].copy_from_slice(&[0x07, 3, 4, 0]); // record route (not copied), END
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
        assert_eq!(p.options(), &[0x07, 3, 4, 0]);
        p.options_fragment().unwrap();
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        // A copied option (0x83, loose source route) stays.
        p.options_mut().copy_from_slice(&[0x83, 3, 9, 1]);
        p.options_fragment().unwrap();
        assert_eq!(p.options(), &[0x83, 3, 9, 1]);
        p.options_mut().copy_from_slice(&[1, 1, 1, 0x44]);
        assert!(p.options_fragment().is_err());
    }

    #[test]
    fn refuses_malformed() {
        let b = packet();
        assert_eq!(
            Ipv4Packet::new_checked(&b[..19]),
            Err(Error::Truncated {
                format: "ipv4",
                have: 19,
                need: 20
            })
        );
        let mut v = b.clone();
        v[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(malformed("ipv4", "version", 6))
        );
        v[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(malformed("ipv4", "ihl", 4))
        );
        v[0] = 0x47;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..26]),
            Err(Error::Truncated {
                format: "ipv4",
                have: 26,
                need: 28
            })
        );
        let mut v = b.clone();
        v[3] = 30;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(Error::Truncated {
                format: "ipv4",
                have: 26,
                need: 30
            })
        );
        v[3] = 16;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(malformed("ipv4", "tot_len", 16))
        );
    }

    #[test]
    fn round_trip() {
        let b = packet();
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap());
        assert_eq!(r.payload_len, 4);
        let mut out = [0xffu8; 20];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &b[..20]);
    }

    #[test]
    fn multicast_mac() {
        assert_eq!(
            eth_mc_map(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]
        );
    }

    #[test]
    fn decrease_ttl_matches_full_recompute() {
        let mut b = packet();
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.decrease_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c);
    }
}
