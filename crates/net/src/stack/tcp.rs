//! TCP without sockets: the reset a segment to a closed port gets
//! (net/ipv4/tcp_ipv4.c: tcp_v4_send_reset, net/ipv6/tcp_ipv6.c:
//! tcp_v6_send_reset). skiff's sinks accept segments on open ports; nothing
//! else of TCP is modelled.

use std::net::IpAddr;

use skiff_wire::checksum::{pseudo_header_v4, pseudo_header_v6};
use skiff_wire::tcp::{TCPHDR_ACK, TCPHDR_FIN, TCPHDR_RST, TCPHDR_SYN};
use skiff_wire::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, IPPROTO_TCP};

use super::frame::{ipv4_frame, ipv6_frame};
use super::{HostStack, Origin, StackOutput};

/// A reset carries a bare 20-byte header (doff 5, no options).
const RST_LEN: usize = 20;
/// INET_ECN_MASK: the reply keeps the DSCP, not the ECN bits.
const INET_ECN_MASK: u8 = 3;

/// The RST segment answering `th` (pseudo header not yet summed): None when
/// `th` is itself a reset. With ACK set the reset takes the segment's ack as
/// its sequence; otherwise it acknowledges everything the segment occupied.
fn reset_segment(th: &TcpPacket<&[u8]>) -> Option<[u8; RST_LEN]> {
    if th.rst() {
        return None;
    }
    let mut seg = [0u8; RST_LEN];
    let mut r = TcpPacket::new_unchecked(&mut seg[..]);
    r.set_src_port(th.dst_port());
    r.set_dst_port(th.src_port());
    r.set_header_len(RST_LEN);
    if th.ack() {
        r.set_seq_number(th.ack_number());
        r.set_flags(TCPHDR_RST);
    } else {
        let len = u32::try_from(th.payload().len()).unwrap_or(u32::MAX);
        let ack = th
            .seq_number()
            .wrapping_add(u32::from(th.flags() & TCPHDR_SYN != 0))
            .wrapping_add(u32::from(th.flags() & TCPHDR_FIN != 0))
            .wrapping_add(len);
        r.set_ack_number(ack);
        r.set_flags(TCPHDR_RST | TCPHDR_ACK);
    }
    Some(seg)
}

impl HostStack {
    /// tcp_v4_send_reset (no socket): ip_send_unicast_reply from the
    /// namespace's control socket, so DF set and IPv4 id 0, TTL 64, the
    /// segment's TOS without ECN; routed back with no output device.
    pub(super) fn tcp_v4_send_reset(
        &mut self,
        ip: Ipv4Packet<&[u8]>,
        l4: &[u8],
        out: &mut Vec<StackOutput>,
    ) {
        let Ok(th) = TcpPacket::new_checked(l4) else {
            return;
        };
        let Some(mut seg) = reset_segment(&th) else {
            return;
        };
        let (src, dst) = (ip.dst_addr(), ip.src_addr());
        TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(pseudo_header_v4(
            src,
            dst,
            IPPROTO_TCP,
            RST_LEN,
        ));
        let h = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: IPPROTO_TCP,
            tos: ip.tos() & !INET_ECN_MASK,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            payload_len: RST_LEN,
        };
        let frame = ipv4_frame(&h, &seg);
        let _ = self.ip_output4(frame, Some(src), dst, Origin::Reply, out);
    }

    /// tcp_v6_send_reset (no socket): tcp_v6_send_response from the control
    /// socket, hop limit 64, the segment's traffic class without ECN, flow
    /// label 0 (see docs/differences.md on flow labels).
    pub(super) fn tcp_v6_send_reset(
        &mut self,
        ip: Ipv6Packet<&[u8]>,
        l4: &[u8],
        out: &mut Vec<StackOutput>,
    ) {
        let Ok(th) = TcpPacket::new_checked(l4) else {
            return;
        };
        let Some(mut seg) = reset_segment(&th) else {
            return;
        };
        let (src, dst) = (ip.dst_addr(), ip.src_addr());
        TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(pseudo_header_v6(
            src,
            dst,
            IPPROTO_TCP,
            RST_LEN,
        ));
        let Some(r) = self.output_route6(dst, Some(src)) else {
            return;
        };
        let h = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IPPROTO_TCP,
            hop_limit: 64,
            traffic_class: ip.traffic_class() & !INET_ECN_MASK,
            payload_len: RST_LEN,
        };
        let frame = ipv6_frame(&h, &seg);
        let nh = r.gateway.unwrap_or(IpAddr::V6(dst));
        let _ = self.neigh_xmit(r.ifindex, frame, nh, Origin::Reply, None, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
        let mut v = vec![0u8; 20 + payload];
        let mut t = TcpPacket::new_unchecked(&mut v[..]);
        t.set_src_port(40000);
        t.set_dst_port(80);
        t.set_seq_number(seq);
        t.set_ack_number(ack);
        t.set_header_len(20);
        t.set_flags(flags);
        t.set_window_len(512);
        v
    }

    #[test]
    fn syn_gets_rst_ack_of_seq_plus_one() {
        let s = segment(TCPHDR_SYN, 1000, 0, 0);
        let r = reset_segment(&TcpPacket::new_unchecked(&s[..])).unwrap();
        let t = TcpPacket::new_unchecked(&r[..]);
        assert_eq!((t.src_port(), t.dst_port()), (80, 40000));
        assert_eq!((t.seq_number(), t.ack_number()), (0, 1001));
        assert_eq!(t.flags(), TCPHDR_RST | TCPHDR_ACK);
        assert_eq!((t.header_len(), t.window_len()), (20, 0));
    }

    #[test]
    fn ack_segment_gets_rst_with_its_ack_as_seq() {
        let s = segment(TCPHDR_ACK | TCPHDR_FIN, 7, 0xdead_beef, 5);
        let r = reset_segment(&TcpPacket::new_unchecked(&s[..])).unwrap();
        let t = TcpPacket::new_unchecked(&r[..]);
        assert_eq!((t.seq_number(), t.ack_number()), (0xdead_beef, 0));
        assert_eq!(t.flags(), TCPHDR_RST);
    }

    #[test]
    fn data_without_ack_is_acknowledged_whole_and_rst_is_not_answered() {
        let s = segment(TCPHDR_FIN, u32::MAX, 0, 3);
        let r = reset_segment(&TcpPacket::new_unchecked(&s[..])).unwrap();
        assert_eq!(TcpPacket::new_unchecked(&r[..]).ack_number(), 3);
        let s = segment(TCPHDR_RST, 1, 0, 0);
        assert_eq!(reset_segment(&TcpPacket::new_unchecked(&s[..])), None);
    }
}
