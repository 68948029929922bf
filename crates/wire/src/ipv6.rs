//! IPv6 (include/uapi/linux/ipv6.h `struct ipv6hdr`, RFC 8200) and its
//! extension headers: hop-by-hop and destination options and the routing
//! header (`struct ipv6_opt_hdr`, `struct ipv6_rt_hdr`), the fragment header
//! (`struct frag_hdr`), and the kernel's walk over them, ipv6_skip_exthdr.

use std::net::Ipv6Addr;

use crate::bytes::{ipv6_at, set_u16, set_u32, u16_at, u32_at};
use crate::{
    malformed, need, Error, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
    IPPROTO_NONE, IPPROTO_ROUTING,
};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXTHDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SADDR: usize = 8;
    pub const DADDR: usize = 24;
    pub const PAYLOAD: usize = 40;
}

/// The fixed IPv6 header's length.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The offset of the next-header byte in the fixed header (what an ICMPv6
/// parameter problem points at when the first next header is unknown).
pub const NEXTHDR_OFFSET: usize = field::NEXTHDR;

/// A view of an IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks (getters panic on a buffer under 40 bytes,
    /// `payload` when payload_len runs past the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// A view that passed [`check_header`](Self::check_header) and
    /// [`check_payload_len`](Self::check_payload_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Ipv6Packet { buffer };
        p.check_header()?;
        p.check_payload_len()?;
        Ok(p)
    }

    /// ip6_rcv_core's header checks: 40 bytes present (`Truncated`), version 6
    /// (`Malformed`).
    #[inline]
    pub fn check_header(&self) -> Result<(), Error> {
        need("ipv6", self.buffer.as_ref().len(), HEADER_LEN)?;
        if self.version() != 6 {
            return Err(malformed("ipv6", "version", self.version().into()));
        }
        Ok(())
    }

    /// The buffer holds the payload_len bytes after the header.
    #[inline]
    pub fn check_payload_len(&self) -> Result<(), Error> {
        let want = HEADER_LEN + usize::from(self.payload_len());
        need("ipv6", self.buffer.as_ref().len(), want)
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// version.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }
    /// The traffic class (priority and flow_lbl's high nibble).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) & 0xff) as u8
    }
    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }
    /// payload_len.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }
    /// nexthdr.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXTHDR]
    }
    /// hop_limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    /// saddr.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::SADDR)
    }
    /// daddr.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::DADDR)
    }
    /// The payload_len bytes after the fixed header (extension headers included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version, traffic class and flow label at once.
    #[inline]
    pub fn set_version_tc_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let w = (u32::from(version) << 28)
            | (u32::from(traffic_class) << 20)
            | (flow_label & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, w);
    }
    /// Sets payload_len.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }
    /// Sets nexthdr.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXTHDR] = v;
    }
    /// Sets hop_limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }
    /// Sets saddr.
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SADDR..field::DADDR].copy_from_slice(&a.octets());
    }
    /// Sets daddr.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DADDR..field::PAYLOAD].copy_from_slice(&a.octets());
    }
    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fields of an IPv6 header the stack writes (flow label 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// saddr.
    pub src_addr: Ipv6Addr,
    /// daddr.
    pub dst_addr: Ipv6Addr,
    /// nexthdr.
    pub next_header: u8,
    /// hop_limit.
    pub hop_limit: u8,
    /// The traffic class.
    pub traffic_class: u8,
    /// payload_len (capped at 0xffff when emitted).
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// The fields of a checked packet (its flow label ignored).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Self {
        Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            payload_len: usize::from(p.payload_len()),
        }
    }

    /// Writes the 40-byte header into `p`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv6Packet<T>) {
        p.set_version_tc_flow(6, self.traffic_class, 0);
        p.set_payload_len(self.payload_len.min(0xffff) as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

/// include/net/addrconf.h addrconf_addr_solict_mult: the solicited-node
/// multicast group of `a`, ff02::1:ff00:0/104 with the low 24 bits of `a`
/// (RFC 4291 2.7.1).
#[inline]
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// include/net/if_inet6.h ipv6_eth_mc_map: the Ethernet address of an IPv6
/// multicast group, 33:33 and the group's low 32 bits (RFC 2464 7).
#[inline]
pub fn eth_mc_map(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

mod ext_field {
    pub const NEXTHDR: usize = 0;
    pub const HDRLEN: usize = 1;
    pub const RT_TYPE: usize = 2;
    pub const RT_SEGMENTS_LEFT: usize = 3;
    pub const FRAG_OFF: usize = 2;
    pub const FRAG_ID: usize = 4;
    pub const FRAG_END: usize = 8;
}

/// include/net/ipv6.h ipv6_ext_hdr: the next-header values that are IPv6
/// extension headers (or "no next header").
#[inline]
pub fn is_ext_header(nexthdr: u8) -> bool {
    matches!(
        nexthdr,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_FRAGMENT
            | IPPROTO_AH
            | IPPROTO_NONE
            | IPPROTO_DSTOPTS
    )
}

/// A view of a hop-by-hop options, routing or destination options header
/// (`struct ipv6_opt_hdr`: next header, length in 8-byte units after the first 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// A view without checks (getters panic on a buffer too short).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6ExtHeader { buffer }
    }

    /// A view of a buffer holding the whole header (ipv6_optlen bytes).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let len = buffer.as_ref().len();
        need("ipv6 extension header", len, 2)?;
        let h = Ipv6ExtHeader { buffer };
        need("ipv6 extension header", len, h.header_len())?;
        Ok(h)
    }

    /// nexthdr.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NEXTHDR]
    }
    /// hdrlen as the header holds it.
    #[inline]
    pub fn hdrlen(&self) -> u8 {
        self.buffer.as_ref()[ext_field::HDRLEN]
    }
    /// include/net/ipv6.h ipv6_optlen: the header's length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.hdrlen()) + 1) * 8
    }
    /// A routing header's type (`ipv6_rt_hdr.type`).
    #[inline]
    pub fn routing_type(&self) -> u8 {
        self.buffer.as_ref()[ext_field::RT_TYPE]
    }
    /// A routing header's segments_left.
    #[inline]
    pub fn segments_left(&self) -> u8 {
        self.buffer.as_ref()[ext_field::RT_SEGMENTS_LEFT]
    }
    /// The options or routing data after the first two bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

/// A view of the 8-byte fragment header (`struct frag_hdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragHeader<T> {
    /// A view without checks (getters panic on a buffer under 8 bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6FragHeader { buffer }
    }
    /// A view of a buffer holding the 8 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        need(
            "ipv6 fragment header",
            buffer.as_ref().len(),
            ext_field::FRAG_END,
        )?;
        Ok(Ipv6FragHeader { buffer })
    }
    /// nexthdr.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NEXTHDR]
    }
    /// frag_off as the header holds it (offset in the high 13 bits, M flag bit 0).
    #[inline]
    pub fn frag_off(&self) -> u16 {
        u16_at(self.buffer.as_ref(), ext_field::FRAG_OFF)
    }
    /// The fragment offset in bytes (IP6_OFFSET).
    #[inline]
    pub fn frag_offset(&self) -> usize {
        usize::from(self.frag_off() & 0xfff8)
    }
    /// IP6_MF.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.frag_off() & 1 != 0
    }
    /// identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        u32_at(self.buffer.as_ref(), ext_field::FRAG_ID)
    }
}

/// Where [`ipv6_skip_exthdr`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkipExthdr {
    /// The first next header that is not an extension header (or
    /// IPPROTO_FRAGMENT when the walk stopped at a non-first fragment).
    pub nexthdr: u8,
    /// Its offset in the buffer.
    pub offset: usize,
    /// The last fragment header's frag_off (host order), 0 without one.
    pub frag_off: u16,
}

/// net/ipv6/exthdrs_core.c ipv6_skip_exthdr: walks the extension headers of
/// `buf` from `start`, where a header of type `nexthdr` begins, to the upper
/// layer. Stops at a non-first fragment's header. `Err` at "no next header"
/// (IPPROTO_NONE) or when a header is cut short. As the kernel, the last
/// header's length is not checked against the buffer.
pub fn ipv6_skip_exthdr(
    buf: &[u8],
    mut start: usize,
    mut nexthdr: u8,
) -> Result<SkipExthdr, Error> {
    let mut frag_off = 0;
    while is_ext_header(nexthdr) {
        if nexthdr == IPPROTO_NONE {
            return Err(malformed(
                "ipv6 extension header",
                "nexthdr",
                nexthdr.into(),
            ));
        }
        let rest = buf.get(start..).unwrap_or(&[]);
        need("ipv6 extension header", rest.len(), 2)?;
        let h = Ipv6ExtHeader::new_unchecked(rest);
        let hdrlen = match nexthdr {
            IPPROTO_FRAGMENT => {
                need("ipv6 fragment header", rest.len(), ext_field::FRAG_ID)?;
                frag_off = u16_at(rest, ext_field::FRAG_OFF);
                if frag_off & !7 != 0 {
                    break;
                }
                ext_field::FRAG_END
            }
            // include/net/ipv6.h ipv6_authlen.
            IPPROTO_AH => (usize::from(h.hdrlen()) + 2) << 2,
            _ => h.header_len(),
        };
        nexthdr = h.next_header();
        start += hdrlen;
    }
    Ok(SkipExthdr {
        nexthdr,
        offset: start,
        frag_off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x6a, 0xb1, 0x23, 0x45];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(&[next, 64]);
        v.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
        v.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_fields() {
        let b = packet(IPPROTO_UDP, &[1, 2, 3]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xab);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 3);
        assert_eq!(p.next_header(), IPPROTO_UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn refuses_malformed() {
        let b = packet(IPPROTO_UDP, &[1, 2, 3]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..39]),
            Err(Error::Truncated {
                format: "ipv6",
                have: 39,
                need: 40
            })
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..42]),
            Err(Error::Truncated {
                format: "ipv6",
                have: 42,
                need: 43
            })
        );
        let mut v = b.clone();
        v[0] = 0x4a;
        assert_eq!(
            Ipv6Packet::new_checked(&v[..]),
            Err(malformed("ipv6", "version", 4))
        );
    }

    #[test]
    fn round_trip() {
        let mut b = packet(IPPROTO_TCP, &[]);
        b[1] &= 0xf0; // flow label 0: Ipv6Repr writes none
        b[2] = 0;
        b[3] = 0;
        let r = Ipv6Repr::parse(&Ipv6Packet::new_checked(&b[..]).unwrap());
        let mut out = [0xffu8; 40];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn multicast_addresses() {
        let a = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0x1234, 0x5678, 0x9abc);
        assert_eq!(
            solicited_node(a),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff78, 0x9abc)
        );
        assert_eq!(
            eth_mc_map(solicited_node(a)),
            [0x33, 0x33, 0xff, 0x78, 0x9a, 0xbc]
        );
    }

    #[test]
    fn extension_headers() {
        // hop-by-hop (8) -> routing (16, segments left 2) -> fragment
        // (first, M) -> dest opts (8) -> ICMPv6.
        let mut ext = vec![IPPROTO_ROUTING, 0, 5, 4, 1, 0, 0, 0];
        ext.extend_from_slice(&[IPPROTO_FRAGMENT, 1, 4, 2, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 8]);
        ext.extend_from_slice(&[IPPROTO_DSTOPTS, 0, 0x00, 0x01, 0, 0, 0, 9]);
        ext.extend_from_slice(&[IPPROTO_ICMPV6, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[128, 0, 0, 0]);
        let b = packet(IPPROTO_HOPOPTS, &ext);
        let r = Ipv6ExtHeader::new_checked(&b[48..]).unwrap();
        assert_eq!(r.next_header(), IPPROTO_FRAGMENT);
        assert_eq!(r.header_len(), 16);
        assert_eq!(r.routing_type(), 4);
        assert_eq!(r.segments_left(), 2);
        let f = Ipv6FragHeader::new_checked(&b[64..]).unwrap();
        assert_eq!(f.next_header(), IPPROTO_DSTOPTS);
        assert!(f.more_frags());
        assert_eq!(f.frag_offset(), 0);
        assert_eq!(f.ident(), 9);
        assert_eq!(
            ipv6_skip_exthdr(&b, 40, IPPROTO_HOPOPTS),
            Ok(SkipExthdr {
                nexthdr: IPPROTO_ICMPV6,
                offset: 80,
                frag_off: 1
            })
        );
        // A non-first fragment stops the walk at its header.
        let mut nf = b.clone();
        nf[67] = 0x09; // offset 8 bytes, M
        assert_eq!(
            ipv6_skip_exthdr(&nf, 40, IPPROTO_HOPOPTS),
            Ok(SkipExthdr {
                nexthdr: IPPROTO_FRAGMENT,
                offset: 64,
                frag_off: 9
            })
        );
        // Cut short, or no next header.
        assert!(ipv6_skip_exthdr(&b[..80], 40, IPPROTO_HOPOPTS).is_ok());
        assert!(matches!(
            ipv6_skip_exthdr(&b[..49], 40, IPPROTO_HOPOPTS),
            Err(Error::Truncated { .. })
        ));
        assert!(ipv6_skip_exthdr(&b, 40, IPPROTO_NONE).is_err());
        assert_eq!(
            Ipv6ExtHeader::new_checked(&b[48..60]),
            Err(Error::Truncated {
                format: "ipv6 extension header",
                have: 12,
                need: 16
            })
        );
        // AH: (hdrlen + 2) * 4 bytes.
        let mut ah = packet(IPPROTO_AH, &[IPPROTO_UDP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ah.extend_from_slice(&[0; 8]);
        assert_eq!(
            ipv6_skip_exthdr(&ah, 40, IPPROTO_AH).map(|s| (s.nexthdr, s.offset)),
            Ok((IPPROTO_UDP, 52))
        );
    }
}
