//! UDP connection tracking (net/netfilter/nf_conntrack_proto_udp.c): 30 s
//! until a reply, 120 s for a stream (traffic both ways for over 2 s), which
//! is then ASSURED.

use skiff_wire::udp::UdpPacket;

use super::{IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY};

const SEC: u64 = 1_000_000_000;
/// nf_conntrack_udp_timeout.
pub const UDP_TIMEOUT_UNREPLIED: u64 = 30 * SEC;
/// nf_conntrack_udp_timeout_stream.
pub const UDP_TIMEOUT_REPLIED: u64 = 120 * SEC;

/// struct nf_ct_udp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NfCtUdp {
    /// When the entry counts as a stream (2 s after its first packet).
    pub stream_ts: u64,
}

/// udp_error's length checks: the header fits and its length field covers
/// at least the header and at most what is there.
pub fn udp_error(l4: &[u8]) -> bool {
    let Ok(udp) = UdpPacket::new_checked(l4) else {
        return true;
    };
    let len = usize::from(udp.length());
    len > l4.len() || len < 8
}

/// nf_conntrack_udp_packet: (timeout from now, set ASSURED).
pub fn udp_packet(u: &mut NfCtUdp, status: u32, now_ns: u64) -> (u64, bool) {
    if status & IPS_CONFIRMED == 0 {
        u.stream_ts = now_ns.saturating_add(2 * SEC);
    }
    if status & IPS_SEEN_REPLY == 0 {
        return (UDP_TIMEOUT_UNREPLIED, false);
    }
    if now_ns > u.stream_ts {
        (UDP_TIMEOUT_REPLIED, status & IPS_ASSURED == 0)
    } else {
        (UDP_TIMEOUT_UNREPLIED, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_after_two_seconds() {
        let mut u = NfCtUdp::default();
        assert_eq!(udp_packet(&mut u, 0, 1000), (30 * SEC, false));
        assert_eq!(u.stream_ts, 1000 + 2 * SEC);
        let replied = IPS_CONFIRMED | IPS_SEEN_REPLY;
        assert_eq!(udp_packet(&mut u, replied, SEC), (30 * SEC, false));
        assert_eq!(udp_packet(&mut u, replied, 3 * SEC), (120 * SEC, true));
        assert_eq!(
            udp_packet(&mut u, replied | IPS_ASSURED, 4 * SEC),
            (120 * SEC, false)
        );
    }

    #[test]
    fn length_field_checked() {
        let mut b = [0u8; 12];
        b[4..6].copy_from_slice(&12u16.to_be_bytes());
        assert!(!udp_error(&b));
        b[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert!(udp_error(&b));
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(udp_error(&b));
    }
}
