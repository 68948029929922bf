//! The frames the stack builds: every one starts with a 14-byte Ethernet header
//! that `neigh_output` fills in, then a header emitted from a skiff-wire `Repr`.

use skiff_wire::ethernet::{self, EthernetFrame, EthernetRepr};
use skiff_wire::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, ETH_P_IP, ETH_P_IPV6};

pub use skiff_wire::ethernet::HEADER_LEN as ETH_HLEN;

/// An Ethernet frame with an unfilled (zero) MAC header and `ethertype`, room
/// reserved for `payload_len` more bytes.
pub fn eth_frame(ethertype: u16, payload_len: usize) -> Vec<u8> {
    EthernetRepr {
        src_addr: [0; 6],
        dst_addr: [0; 6],
        ethertype,
    }
    .to_frame(payload_len)
}

/// Fills the MAC addresses of `frame` (a frame under 14 bytes is left alone).
pub fn set_eth(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    if let Ok(mut e) = EthernetFrame::new_checked(frame) {
        e.set_dst_addr(dst);
        e.set_src_addr(src);
    }
}

/// Ethernet (unfilled) + the IPv4 header of `h` (its payload_len set to
/// `payload`'s) with its checksum + `payload`.
pub fn ipv4_frame(h: &Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let h = Ipv4Repr {
        payload_len: payload.len(),
        ..*h
    };
    let mut f = eth_frame(ETH_P_IP, skiff_wire::ipv4::HEADER_LEN + payload.len());
    f.resize(ethernet::HEADER_LEN + skiff_wire::ipv4::HEADER_LEN, 0);
    h.emit(&mut Ipv4Packet::new_unchecked(
        &mut f[ethernet::HEADER_LEN..],
    ));
    f.extend_from_slice(payload);
    f
}

/// Ethernet (unfilled) + the IPv6 header of `h` (its payload_len set to
/// `payload`'s) + `payload` (whose transport checksum the caller has set).
pub fn ipv6_frame(h: &Ipv6Repr, payload: &[u8]) -> Vec<u8> {
    let h = Ipv6Repr {
        payload_len: payload.len(),
        ..*h
    };
    let mut f = eth_frame(ETH_P_IPV6, skiff_wire::ipv6::HEADER_LEN + payload.len());
    f.resize(ethernet::HEADER_LEN + skiff_wire::ipv6::HEADER_LEN, 0);
    h.emit(&mut Ipv6Packet::new_unchecked(
        &mut f[ethernet::HEADER_LEN..],
    ));
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ipv4_frame_bytes() {
        let h = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 1, 0, 2),
            protocol: 17,
            tos: 0,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
            payload_len: 0,
        };
        let f = ipv4_frame(&h, &[1, 2, 3, 4]);
        assert_eq!(
            f,
            [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0, 0, 24, 0x12, 0x34, 0x40,
                0, 64, 17, 0x14, 0x9e, 10, 0, 0, 1, 10, 1, 0, 2, 1, 2, 3, 4
            ]
        );
        let mut ip = f[14..34].to_vec();
        Ipv4Packet::new_unchecked(&mut ip[..]).decrease_ttl();
        let h2 = Ipv4Repr { ttl: 63, ..h };
        assert_eq!(&ipv4_frame(&h2, &[1, 2, 3, 4])[14..34], &ip[..]);
    }
}
