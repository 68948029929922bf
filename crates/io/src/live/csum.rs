//! Finishing a CHECKSUM_PARTIAL frame as the kernel does before handing it to
//! something that reads the bytes (net/core/dev.c: skb_checksum_help).

use skiff_wire::checksum::{fold, sum};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Why a partial checksum could not be finished: the frame is dropped with
/// the kernel's reason for a packet whose headers do not hold what its
/// metadata says (SKB_DROP_REASON_HDR_TRUNC / not a TCP or UDP packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsumError {
    /// The checksum's place lies outside the frame (csum_start past the end,
    /// or headers cut short): HDR_TRUNC.
    Truncated,
    /// Partial, but not TCP or UDP over IPv4/IPv6 without extension headers:
    /// the place cannot be found from the headers.
    UnknownProtocol,
}

/// Finishes the checksum of a CHECKSUM_PARTIAL frame in place: `at` is
/// (csum_start, csum_offset) from the frame's start when the backend knows it
/// (virtio_net_hdr), else found from the Ethernet, IP and TCP/UDP headers (the
/// partial packets the stack makes). The field holds the pseudo-header sum;
/// the sum from csum_start to the end, folded and complemented, replaces it,
/// 0 becoming 0xffff.
// net/core/dev.c: skb_checksum_help
pub fn complete(frame: &mut [u8], at: Option<(usize, usize)>) -> Result<(), CsumError> {
    let (start, offset) = match at {
        Some(a) => a,
        None => locate(frame)?,
    };
    let field = start.checked_add(offset).ok_or(CsumError::Truncated)?;
    if field.checked_add(2).is_none_or(|end| end > frame.len()) {
        return Err(CsumError::Truncated);
    }
    let covered = frame.get(start..).ok_or(CsumError::Truncated)?;
    let mut c = fold(sum(covered, 0));
    if c == 0 {
        c = 0xffff; // CSUM_MANGLED_0
    }
    frame
        .get_mut(field..field + 2)
        .ok_or(CsumError::Truncated)?
        .copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// (csum_start, csum_offset) of a partial TCP or UDP frame, from its headers
/// (as skb_partial_csum_set would be called with by the stack that built it).
fn locate(frame: &[u8]) -> Result<(usize, usize), CsumError> {
    let be16 = |o: usize| -> Result<u16, CsumError> {
        let b = frame.get(o..o + 2).ok_or(CsumError::Truncated)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    };
    let mut l3 = ETH_HLEN;
    let mut proto = be16(12)?;
    // at most two VLAN tags (802.1ad outer, 802.1Q inner)
    for _ in 0..2 {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        proto = be16(l3 + 2)?;
        l3 += 4;
    }
    let (l4, ipproto) = match proto {
        ETH_P_IP => {
            let vihl = *frame.get(l3).ok_or(CsumError::Truncated)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if ihl < 20 {
                return Err(CsumError::Truncated);
            }
            (l3 + ihl, *frame.get(l3 + 9).ok_or(CsumError::Truncated)?)
        }
        ETH_P_IPV6 => (l3 + 40, *frame.get(l3 + 6).ok_or(CsumError::Truncated)?),
        _ => return Err(CsumError::UnknownProtocol),
    };
    match ipproto {
        IPPROTO_TCP => Ok((l4, 16)),
        IPPROTO_UDP => Ok((l4, 6)),
        _ => Err(CsumError::UnknownProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP/IPv4 frame 10.0.0.1:1000 -> 10.0.0.2:2000, payload "hi", with its
    /// checksum field holding the pseudo-header sum (as the stack leaves it).
    fn partial_udp() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 2];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1000u16.to_be_bytes());
        f[36..38].copy_from_slice(&2000u16.to_be_bytes());
        f[38..40].copy_from_slice(&10u16.to_be_bytes());
        f[42..44].copy_from_slice(b"hi");
        // pseudo-header: 10.0.0.1 + 10.0.0.2 + 17 + 10, folded, not complemented
        let p: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 10;
        f[40..42].copy_from_slice(&(p as u16).to_be_bytes());
        f
    }

    #[test]
    fn udp_from_headers_and_from_vnet_hdr_agree() {
        let mut a = partial_udp();
        let mut b = partial_udp();
        complete(&mut a, None).unwrap();
        complete(&mut b, Some((34, 6))).unwrap();
        assert_eq!(a, b);
        // the whole UDP checksum over pseudo-header + datagram verifies to 0
        let pseudo = skiff_wire::checksum::pseudo_header_v4(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            17,
            10,
        );
        assert_eq!(fold(sum(&a[34..], pseudo)), 0);
        assert_eq!(&a[40..42], &[0x77, 0xb6]);
    }

    #[test]
    fn out_of_frame_places_are_truncated() {
        let mut f = partial_udp();
        assert_eq!(complete(&mut f, Some((43, 0))), Err(CsumError::Truncated));
        assert_eq!(
            complete(&mut f, Some((usize::MAX, 6))),
            Err(CsumError::Truncated)
        );
        assert_eq!(complete(&mut f[..20], None), Err(CsumError::Truncated));
        f[23] = 1; // ICMP
        assert_eq!(complete(&mut f, None), Err(CsumError::UnknownProtocol));
    }
}
