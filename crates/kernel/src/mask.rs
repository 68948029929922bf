//! What of a frame the kernel randomises, masked so frames from skiff and from
//! the kernel compare byte for byte: the IPv4 id (and so the header checksum)
//! of ICMP packets, which the kernel draws at random for the packets it makes
//! (echo replies, errors), and the flow label of ICMPv6 packets (a hash with a
//! per-boot key, `auto_flowlabels`). What can be checked on the frame itself
//! (checksums) is checked first and reported.

use skiff_wire::checksum::{checksum, fold, pseudo_header_v6, sum};
use skiff_wire::{
    EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv6Packet, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP,
    IPPROTO_ICMPV6,
};

const ETH_HLEN: usize = skiff_wire::ethernet::HEADER_LEN;

/// The IPv6 header and ICMPv6 message (to the end of the frame) of an
/// Ethernet/IPv6/ICMPv6 frame.
pub fn icmp6_of(f: &[u8]) -> Option<(Ipv6Packet<&[u8]>, &[u8])> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    let l3 = f.get(ETH_HLEN..)?;
    if eth.ethertype() != ETH_P_IPV6 || l3.len() < skiff_wire::ipv6::HEADER_LEN {
        return None;
    }
    let ip = Ipv6Packet::new_unchecked(l3);
    let msg = l3.get(skiff_wire::ipv6::HEADER_LEN..)?;
    (ip.next_header() == IPPROTO_ICMPV6).then_some((ip, msg))
}

/// The ICMPv6 checksum over the pseudo-header of an Ethernet/IPv6 frame
/// (0 when valid and the frame is whole).
fn icmp6_csum(f: &[u8]) -> Option<u16> {
    let ip = Ipv6Packet::new_checked(f.get(ETH_HLEN..)?).ok()?;
    let m = ip.payload();
    let pseudo = pseudo_header_v6(ip.src_addr(), ip.dst_addr(), IPPROTO_ICMPV6, m.len());
    Some(fold(sum(m, pseudo)))
}

/// The frame with what the kernel randomises zeroed, and the problems found
/// on it (bad IPv4 header, ICMP or ICMPv6 checksums).
pub fn normalise(f: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut v = f.to_vec();
    let mut bad = Vec::new();
    let ethertype = EthernetFrame::new_checked(f).ok().map(|e| e.ethertype());
    let l3 = f.get(ETH_HLEN..).unwrap_or(&[]);
    if ethertype == Some(ETH_P_IP) && l3.len() >= skiff_wire::ipv4::HEADER_LEN {
        let ip = Ipv4Packet::new_unchecked(l3);
        let ihl = ip.header_len();
        if l3.get(..ihl).is_some_and(|h| checksum(h) != 0) {
            bad.push("bad IPv4 header checksum".to_string());
        }
        if ip.protocol() == IPPROTO_ICMP {
            if let Some(m) = l3.get(ihl..usize::from(ip.total_len())) {
                if !Icmpv4Packet::new_unchecked(m).verify_checksum() {
                    bad.push("bad ICMP checksum".to_string());
                }
            }
            if let Some(l3) = v.get_mut(ETH_HLEN..) {
                let mut vip = Ipv4Packet::new_unchecked(l3);
                vip.set_ident(0);
                vip.set_checksum(0);
            }
        }
    }
    if icmp6_of(f).is_some() {
        if icmp6_csum(f) != Some(0) {
            bad.push("bad ICMPv6 checksum".to_string());
        }
        if let Some(l3) = v.get_mut(ETH_HLEN..) {
            let mut ip = Ipv6Packet::new_unchecked(l3);
            let (version, tc) = (ip.version(), ip.traffic_class());
            ip.set_version_tc_flow(version, tc, 0);
        }
    }
    (v, bad)
}
