//! ICMPv6 (include/uapi/linux/icmpv6.h `struct icmp6hdr`, RFC 4443) and the
//! neighbour discovery messages the stack uses (include/net/ndisc.h
//! `struct nd_msg`, RFC 4861): neighbour solicitation and advertisement with
//! their link-layer address options.

use std::net::Ipv6Addr;

use crate::bytes::{ipv6_at, mac_at, set_u16, set_u32, u16_at, u32_at};
use crate::checksum::{fold, pseudo_header_v6, sum};
use crate::{malformed, need, Error, IPPROTO_ICMPV6};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const DATA: usize = 4;
    pub const PAYLOAD: usize = 8;
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: usize = 8;
    pub const ND_OPTIONS: usize = 24;
}

/// The ICMPv6 header's length.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// sizeof(struct nd_msg): an NS or NA before its options.
pub const NDISC_LEN: usize = field::ND_OPTIONS;
/// ICMPV6_DEST_UNREACH.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPV6_PKT_TOOBIG.
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMPV6_TIME_EXCEED.
pub const ICMPV6_TIME_EXCEED: u8 = 3;
/// ICMPV6_PARAMPROB.
pub const ICMPV6_PARAMPROB: u8 = 4;
/// ICMPV6_ECHO_REQUEST.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPV6_ECHO_REPLY.
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// NDISC_ROUTER_SOLICITATION.
pub const NDISC_ROUTER_SOLICITATION: u8 = 133;
/// NDISC_NEIGHBOUR_SOLICITATION.
pub const NDISC_NEIGHBOUR_SOLICITATION: u8 = 135;
/// NDISC_NEIGHBOUR_ADVERTISEMENT.
pub const NDISC_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// NDISC_REDIRECT.
pub const NDISC_REDIRECT: u8 = 137;
/// ND_OPT_SOURCE_LL_ADDR.
pub const ND_OPT_SOURCE_LL_ADDR: u8 = 1;
/// ND_OPT_TARGET_LL_ADDR.
pub const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// The router flag of an NA's flag byte.
pub const NA_ROUTER: u8 = 0x80;
/// The solicited flag.
pub const NA_SOLICITED: u8 = 0x40;
/// The override flag.
pub const NA_OVERRIDE: u8 = 0x20;

/// A view of an ICMPv6 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// A view without checks (getters panic on a buffer too short for them).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// A view of a buffer holding at least type, code and checksum (4 bytes:
    /// icmpv6_rcv's minimum; the 4 data bytes are checked by the messages that
    /// use them).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        need("icmpv6", buffer.as_ref().len(), field::DATA)?;
        Ok(Icmpv6Packet { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// The whole message.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// icmp6_type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// icmp6_code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    /// icmp6_cksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// icmp6_dataun: the 4 bytes after the checksum (MTU, pointer, echo id/seq).
    #[inline]
    pub fn data_word(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::DATA)
    }
    /// An NA's flag byte (NA_ROUTER, NA_SOLICITED, NA_OVERRIDE).
    #[inline]
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[field::ND_FLAGS]
    }
    /// An NS's or NA's target address.
    #[inline]
    pub fn nd_target(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::ND_TARGET)
    }
    /// An NS's or NA's options.
    #[inline]
    pub fn nd_options(&self) -> NdiscOptions<'_> {
        NdiscOptions {
            rest: &self.buffer.as_ref()[field::ND_OPTIONS..],
        }
    }
    /// What follows the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
    /// True when the checksum (with the IPv6 pseudo-header) is correct.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let m = self.buffer.as_ref();
        fold(sum(m, pseudo_header_v6(src, dst, IPPROTO_ICMPV6, m.len()))) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets icmp6_type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    /// Sets icmp6_code.
    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }
    /// Sets icmp6_cksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    /// Sets the 4 data bytes.
    #[inline]
    pub fn set_data_word(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::DATA, v);
    }
    /// What follows the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
    /// The checksum recomputed for a message from `src` to `dst`.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let m = self.buffer.as_ref();
        let c = fold(sum(m, pseudo_header_v6(src, dst, IPPROTO_ICMPV6, m.len())));
        self.set_checksum(c);
    }
}

/// A new ICMPv6 message from `src` to `dst`: type, code, the 4 data bytes,
/// then `payload`, checksum set.
pub fn message(
    msg_type: u8,
    code: u8,
    data: u32,
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN];
    v.extend_from_slice(payload);
    let mut p = Icmpv6Packet::new_unchecked(&mut v[..]);
    p.set_msg_type(msg_type);
    p.set_msg_code(code);
    p.set_data_word(data);
    p.fill_checksum(src, dst);
    v
}

/// One neighbour discovery option (`struct nd_opt_hdr` and its data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdiscOption<'a> {
    /// nd_opt_type.
    pub kind: u8,
    /// nd_opt_len: the length in units of 8 bytes.
    pub len: u8,
    /// The whole option, header included.
    pub bytes: &'a [u8],
}

impl NdiscOption<'_> {
    /// The link-layer address of a source/target link-layer address option on
    /// Ethernet: None unless the option is exactly one unit (8 bytes) long.
    #[inline]
    pub fn lladdr(&self) -> Option<[u8; 6]> {
        (self.len == 1).then(|| mac_at(self.bytes, 2))
    }
}

/// net/ipv6/ndisc.c ndisc_parse_options' walk: options one after another;
/// an option of length 0 or running past the message is an error (and ends it).
#[derive(Clone, Debug)]
pub struct NdiscOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdiscOptions<'a> {
    /// The options in `buf` (the bytes after an ND message's fixed part).
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        NdiscOptions { rest: buf }
    }
}

impl<'a> Iterator for NdiscOptions<'a> {
    type Item = Result<NdiscOption<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        if r.len() < 2 {
            self.rest = &[];
            return Some(Err(Error::Truncated {
                format: "ndisc option",
                have: r.len(),
                need: 2,
            }));
        }
        let l = usize::from(r[1]) * 8;
        if l == 0 || l > r.len() {
            self.rest = &[];
            return Some(Err(malformed("ndisc option", "nd_opt_len", r[1].into())));
        }
        self.rest = &r[l..];
        Some(Ok(NdiscOption {
            kind: r[0],
            len: r[1],
            bytes: &r[..l],
        }))
    }
}

/// A neighbour solicitation or advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdiscRepr {
    /// NDISC_NEIGHBOUR_SOLICITATION with its source link-layer address option.
    NeighborSolicit {
        /// The address being resolved.
        target: Ipv6Addr,
        /// ND_OPT_SOURCE_LL_ADDR.
        lladdr: Option<[u8; 6]>,
    },
    /// NDISC_NEIGHBOUR_ADVERTISEMENT with its target link-layer address option.
    NeighborAdvert {
        /// NA_ROUTER | NA_SOLICITED | NA_OVERRIDE.
        flags: u8,
        /// The address advertised.
        target: Ipv6Addr,
        /// ND_OPT_TARGET_LL_ADDR.
        lladdr: Option<[u8; 6]>,
    },
}

impl NdiscRepr {
    /// An NS or NA: `Err` for other types, a message under 24 bytes, malformed
    /// options, or a link-layer address option of the message's own kind that is
    /// not 8 bytes (ndisc_parse_options; the last such option wins).
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>) -> Result<Self, Error> {
        let t = p.msg_type();
        let want = match t {
            NDISC_NEIGHBOUR_SOLICITATION => ND_OPT_SOURCE_LL_ADDR,
            NDISC_NEIGHBOUR_ADVERTISEMENT => ND_OPT_TARGET_LL_ADDR,
            _ => return Err(malformed("ndisc", "icmp6_type", t.into())),
        };
        need("ndisc", p.as_bytes().len(), NDISC_LEN)?;
        let mut lladdr = None;
        for o in p.nd_options() {
            let o = o?;
            if o.kind == want {
                lladdr = Some(o.lladdr().ok_or(malformed(
                    "ndisc option",
                    "lladdr nd_opt_len",
                    o.len.into(),
                ))?);
            }
        }
        let target = p.nd_target();
        Ok(if t == NDISC_NEIGHBOUR_SOLICITATION {
            NdiscRepr::NeighborSolicit { target, lladdr }
        } else {
            NdiscRepr::NeighborAdvert {
                flags: p.na_flags(),
                target,
                lladdr,
            }
        })
    }

    /// The message from `src` to `dst` with its checksum (code 0).
    pub fn to_message(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let (t, flags, target, opt, lladdr) = match *self {
            NdiscRepr::NeighborSolicit { target, lladdr } => (
                NDISC_NEIGHBOUR_SOLICITATION,
                0,
                target,
                ND_OPT_SOURCE_LL_ADDR,
                lladdr,
            ),
            NdiscRepr::NeighborAdvert {
                flags,
                target,
                lladdr,
            } => (
                NDISC_NEIGHBOUR_ADVERTISEMENT,
                flags,
                target,
                ND_OPT_TARGET_LL_ADDR,
                lladdr,
            ),
        };
        let mut body = Vec::with_capacity(24);
        body.extend_from_slice(&target.octets());
        if let Some(mac) = lladdr {
            body.extend_from_slice(&[opt, 1]);
            body.extend_from_slice(&mac);
        }
        message(t, 0, u32::from(flags) << 24, &body, src, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n)
    }

    #[test]
    fn echo_fields_and_checksum() {
        let m = message(ICMPV6_ECHO_REQUEST, 0, 0x0001_0002, b"ab", a(1), a(2));
        let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), ICMPV6_ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.data_word(), 0x0001_0002);
        assert_eq!(p.payload(), b"ab");
        assert!(p.verify_checksum(a(1), a(2)));
        assert!(!p.verify_checksum(a(1), a(3)));
        // 0x8000 + 0x0001 + 0x0002 + 0x6162 + pseudo (0xfd00 * 2 + 3 + 58 + 10), folded.
        assert_eq!(p.checksum(), !0xdbae_u16);
    }

    #[test]
    fn refuses_short() {
        assert_eq!(
            Icmpv6Packet::new_checked(&[128u8, 0, 0][..]),
            Err(Error::Truncated {
                format: "icmpv6",
                have: 3,
                need: 4
            })
        );
        let short = message(NDISC_NEIGHBOUR_SOLICITATION, 0, 0, &[0; 15], a(1), a(2));
        assert_eq!(
            NdiscRepr::parse(&Icmpv6Packet::new_checked(&short[..]).unwrap()),
            Err(Error::Truncated {
                format: "ndisc",
                have: 23,
                need: 24
            })
        );
    }

    #[test]
    fn ndisc_round_trip() {
        let ns = NdiscRepr::NeighborSolicit {
            target: a(2),
            lladdr: Some([2, 0, 0, 0, 0, 1]),
        };
        let m = ns.to_message(a(1), a(2));
        assert_eq!(m.len(), 32);
        assert_eq!(&m[24..26], &[ND_OPT_SOURCE_LL_ADDR, 1]);
        let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
        assert!(p.verify_checksum(a(1), a(2)));
        assert_eq!(NdiscRepr::parse(&p), Ok(ns));
        let na = NdiscRepr::NeighborAdvert {
            flags: NA_SOLICITED | NA_OVERRIDE,
            target: a(2),
            lladdr: None,
        };
        let m = na.to_message(a(2), a(1));
        assert_eq!(m.len(), 24);
        assert_eq!(m[4], 0x60);
        assert_eq!(
            NdiscRepr::parse(&Icmpv6Packet::new_checked(&m[..]).unwrap()),
            Ok(na)
        );
    }

    #[test]
    fn ndisc_bad_options() {
        let ns = NdiscRepr::NeighborSolicit {
            target: a(2),
            lladdr: Some([2, 0, 0, 0, 0, 1]),
        };
        let good = ns.to_message(a(1), a(2));
        let parse = |m: &[u8]| NdiscRepr::parse(&Icmpv6Packet::new_unchecked(m));
        let mut m = good.clone();
        m[25] = 0; // zero length
        assert_eq!(parse(&m), Err(malformed("ndisc option", "nd_opt_len", 0)));
        m[25] = 2; // past the end
        assert_eq!(parse(&m), Err(malformed("ndisc option", "nd_opt_len", 2)));
        let mut m = good.clone();
        m.extend_from_slice(&[0; 8]);
        m[25] = 2; // a 16-byte SLLAO
        assert_eq!(
            parse(&m),
            Err(malformed("ndisc option", "lladdr nd_opt_len", 2))
        );
        m[24] = ND_OPT_TARGET_LL_ADDR; // not the NS's kind: ignored
        assert_eq!(
            parse(&m),
            Ok(NdiscRepr::NeighborSolicit {
                target: a(2),
                lladdr: None
            })
        );
        let opts: Vec<_> = NdiscOptions::new(&good[24..]).collect();
        assert_eq!(
            opts,
            [Ok(NdiscOption {
                kind: 1,
                len: 1,
                bytes: &good[24..32]
            })]
        );
    }
}
