//! The host stack: exact bytes of what it sends (ARP reply, echo replies, NA,
//! forwarded frames, ICMP errors, solicitations), neighbour queueing, rules and
//! longest-prefix match, and no panic on malformed frames.

use std::net::{IpAddr, Ipv6Addr};

use proptest::prelude::*;
use skiff_net::stack::*;
use skiff_net::DropReason;
use skiff_wire::{
    checksum, icmpv4, EthernetRepr, Icmpv6Packet, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    UdpPacket, IPPROTO_ICMPV6, IPPROTO_UDP,
};

const A0: u32 = 10;
const B0: u32 = 12;
const MAC_A0: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B0: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xbb];

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}

fn csum(data: &[u8], acc: u32) -> u16 {
    checksum::fold(checksum::sum(data, u64::from(acc)))
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn stack() -> HostStack {
    let mut s = HostStack::new();
    let dev = |i, n: &str, mac, mtu| StackDevice {
        ifindex: i,
        name: n.into(),
        mac,
        mtu,
        up: true,
        arp: true,
        loopback: false,
    };
    s.add_device(dev(A0, "a0", MAC_A0, 1500)).unwrap();
    s.add_device(dev(B0, "b0", MAC_B0, 1400)).unwrap();
    s.add_address(A0, v4("10.1.0.1"), 24).unwrap();
    s.add_address(B0, v4("10.2.0.1"), 24).unwrap();
    s.add_address(A0, v6("2001:db8:1::1"), 64).unwrap();
    s.add_address(B0, v6("2001:db8:2::1"), 64).unwrap();
    s
}

fn meta(pkt_type: u8) -> RxMeta {
    RxMeta {
        mark: 0,
        pkt_type,
        now_ns: 0,
    }
}

fn eth(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: ty,
    };
    let mut f = repr.to_frame(payload.len());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, df: bool, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; skiff_wire::ipv4::HEADER_LEN];
    let repr = Ipv4Repr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        protocol: proto,
        tos: 0,
        ttl,
        ident: 0x7777,
        dont_frag: df,
        payload_len: payload.len(),
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(payload);
    h
}

fn echo(t: u8, payload: &[u8]) -> Vec<u8> {
    icmpv4::message(t, 0, 0x1234_0001, payload)
}

fn udp4(src: [u8; 4], dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = skiff_wire::udp::HEADER_LEN + payload.len();
    let mut u = vec![0u8; skiff_wire::udp::HEADER_LEN];
    u.extend_from_slice(payload);
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(12345);
    p.set_dst_port(dport);
    p.set_length(len as u16);
    // The plain checksum (a computed 0 stays 0 here).
    let pseudo = checksum::pseudo_header_v4(src.into(), dst.into(), IPPROTO_UDP, len);
    let c = checksum::fold(checksum::sum(&u, pseudo));
    UdpPacket::new_unchecked(&mut u[..]).set_checksum(c);
    ipv4(src, dst, IPPROTO_UDP, 64, true, &u)
}

#[test]
fn arp_reply_exact_bytes_and_neighbour_learned() {
    let mut s = stack();
    let req = hex("ffffffffffff 0200000000aa 0806 0001 0800 06 04 0001 0200000000aa 0a010005 000000000000 0a010001");
    let mut out = Vec::new();
    let f = s.receive(A0, &req, meta(PACKET_BROADCAST), 1, &mut out);
    assert_eq!(f, Fate::Delivered(Delivery::Arp));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ifindex, A0);
    assert_eq!(out[0].origin, Origin::Reply);
    assert_eq!(out[0].tag, None);
    assert_eq!(
        out[0].frame,
        hex("0200000000aa 02000000000a 0806 0001 0800 06 04 0002 02000000000a 0a010001 0200000000aa 0a010005")
    );
    assert_eq!(
        s.neighbour(A0, v4("10.1.0.5")),
        Some((NeighState::Stale, PEER))
    );
    // A request for an address of another device is answered too (arp_ignore 0).
    let req2 = hex("ffffffffffff 0200000000aa 0806 0001 0800 06 04 0001 0200000000aa 0a010005 000000000000 0a020001");
    out.clear();
    s.receive(A0, &req2, meta(PACKET_BROADCAST), 2, &mut out);
    assert_eq!(&out[0].frame[28..32], &[10, 2, 0, 1]);
    // Not ours: no reply.
    let req3 = hex("ffffffffffff 0200000000aa 0806 0001 0800 06 04 0001 0200000000aa 0a010005 000000000000 0a010009");
    out.clear();
    assert_eq!(
        s.receive(A0, &req3, meta(PACKET_BROADCAST), 3, &mut out),
        Fate::Delivered(Delivery::Arp)
    );
    assert!(out.is_empty());
    assert_eq!(s.sinks().arp_requests, 3);
    assert_eq!(s.sinks().arp_replies_sent, 2);
}

#[test]
fn icmp_echo_reply_exact_bytes() {
    let mut s = stack();
    s.add_neighbour(A0, v4("10.1.0.5"), PEER).unwrap();
    let req = eth(
        MAC_A0,
        PEER,
        0x0800,
        &ipv4([10, 1, 0, 5], [10, 1, 0, 1], 1, 64, true, &echo(8, b"abcd")),
    );
    let mut out = Vec::new();
    let f = s.receive(A0, &req, meta(PACKET_HOST), 7, &mut out);
    assert_eq!(f, Fate::Delivered(Delivery::IcmpEcho));
    assert_eq!(out.len(), 1);
    // IPv4: tos copied, id 1 (skiff counts; the kernel's is random), no DF, TTL 64.
    let mut ip = hex("4500 0020 0001 0000 40 01 0000 0a010001 0a010005");
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let expect = eth(PEER, MAC_A0, 0x0800, &[ip, echo(0, b"abcd")].concat());
    assert_eq!(out[0].frame, expect);
    assert_eq!(out[0].origin, Origin::Reply);
    assert_eq!(csum(&out[0].frame[34..], 0), 0);
    assert_eq!(s.sinks().icmp_echo_requests, 1);
    assert_eq!(s.sinks().echo_replies_sent, 1);
    // A bad ICMP checksum is ICMP_CSUM.
    let mut bad = req.clone();
    bad[40] ^= 1;
    assert_eq!(
        s.receive(A0, &bad, meta(PACKET_HOST), 8, &mut out),
        Fate::Dropped(DropReason::IcmpCsum)
    );
}

#[test]
fn forwarding_decrements_ttl_and_fills_macs() {
    let mut s = stack();
    s.add_neighbour(B0, v4("10.2.0.9"), GW).unwrap();
    let pkt = udp4([10, 1, 0, 5], [10, 2, 0, 9], 53, b"hello");
    let frame = eth(MAC_A0, PEER, 0x0800, &pkt);
    let mut out = Vec::new();
    // Forwarding off (the default): IP_INADDRERRORS.
    assert_eq!(
        s.receive(A0, &frame, meta(PACKET_HOST), 1, &mut out),
        Fate::Dropped(DropReason::IpInaddrerrors)
    );
    s.set_forwarding(true, true);
    assert_eq!(
        s.receive(A0, &frame, meta(PACKET_HOST), 2, &mut out),
        Fate::Forwarded
    );
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(
        (o.ifindex, o.origin, o.tag),
        (B0, Origin::Forwarded, Some(2))
    );
    let mut expect_ip = pkt.clone();
    expect_ip[8] = 63;
    expect_ip[10..12].fill(0);
    let c = csum(&expect_ip[..20], 0);
    expect_ip[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(o.frame, eth(GW, MAC_B0, 0x0800, &expect_ip));
    // Ethernet padding is trimmed to tot_len.
    let mut padded = frame.clone();
    padded.extend_from_slice(&[0; 9]);
    out.clear();
    s.receive(A0, &padded, meta(PACKET_HOST), 3, &mut out);
    assert_eq!(out[0].frame.len(), 14 + pkt.len());
}

#[test]
fn ttl_one_gives_time_exceeded() {
    let mut s = stack();
    s.set_forwarding(true, true);
    s.add_neighbour(A0, v4("10.1.0.5"), PEER).unwrap();
    let mut pkt = udp4([10, 1, 0, 5], [10, 2, 0, 9], 53, b"x");
    pkt[8] = 1;
    pkt[10..12].fill(0);
    let c = csum(&pkt[..20], 0);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::new();
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x0800, &pkt),
        meta(PACKET_HOST),
        1,
        &mut out,
    );
    assert_eq!(f, Fate::Dropped(DropReason::IpInhdr));
    assert_eq!(out.len(), 1);
    let e = &out[0].frame;
    assert_eq!(out[0].origin, Origin::Error);
    assert_eq!(&e[0..6], &PEER);
    let ip = &e[14..];
    assert_eq!(ip[1], 0xc0);
    assert_eq!(&ip[12..16], &[10, 1, 0, 1]); // prefsrc of the route back
    assert_eq!(&ip[16..20], &[10, 1, 0, 5]);
    assert_eq!(csum(&ip[..20], 0), 0);
    assert_eq!((ip[20], ip[21]), (11, 0));
    assert_eq!(csum(&ip[20..], 0), 0);
    assert_eq!(&ip[28..], &pkt[..]);
}

#[test]
fn df_too_big_gives_frag_needed() {
    let mut s = stack();
    s.set_forwarding(true, true);
    s.add_neighbour(A0, v4("10.1.0.5"), PEER).unwrap();
    s.add_neighbour(B0, v4("10.2.0.9"), GW).unwrap();
    let pkt = udp4([10, 1, 0, 5], [10, 2, 0, 9], 53, &[7u8; 1450]);
    let mut out = Vec::new();
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x0800, &pkt),
        meta(PACKET_HOST),
        1,
        &mut out,
    );
    assert_eq!(f, Fate::Dropped(DropReason::PktTooBig));
    let ip = &out[0].frame[14..];
    assert_eq!((ip[20], ip[21]), (3, 4));
    assert_eq!(&ip[26..28], &1400u16.to_be_bytes());
    assert_eq!(ip.len(), 576);
    // Without DF the packet is fragmented (ip_do_fragment).
    let mut nodf = pkt.clone();
    nodf[6] = 0;
    nodf[10..12].fill(0);
    let c = csum(&nodf[..20], 0);
    nodf[10..12].copy_from_slice(&c.to_be_bytes());
    out.clear();
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x0800, &nodf),
        meta(PACKET_HOST),
        2,
        &mut out,
    );
    assert_eq!(f, Fate::Forwarded);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].frame.len(), 14 + 20 + 1376);
    assert_eq!(&out[0].frame[14 + 6..14 + 8], &[0x20, 0]);
    assert_eq!(&out[1].frame[14 + 6..14 + 8], &(1376u16 / 8).to_be_bytes());
    for o in &out {
        assert_eq!(csum(&o.frame[14..34], 0), 0);
        assert_eq!(o.frame[14 + 8], 63);
    }
}

#[test]
fn unknown_neighbour_queues_solicits_and_flushes() {
    let mut s = stack();
    s.set_forwarding(true, true);
    let pkt = udp4([10, 1, 0, 5], [10, 2, 0, 9], 53, b"q");
    let frame = eth(MAC_A0, PEER, 0x0800, &pkt);
    let mut out = Vec::new();
    assert_eq!(
        s.receive(A0, &frame, meta(PACKET_HOST), 41, &mut out),
        Fate::Queued
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].origin, Origin::Solicit);
    assert_eq!(
        out[0].frame,
        hex("ffffffffffff 02000000000c 0806 0001 0800 06 04 0001 02000000000c 0a020001 000000000000 0a020009")
    );
    assert_eq!(
        s.neighbour(B0, v4("10.2.0.9")).unwrap().0,
        NeighState::Incomplete
    );
    // A second packet joins the queue without another solicitation.
    out.clear();
    assert_eq!(
        s.receive(A0, &frame, meta(PACKET_HOST), 42, &mut out),
        Fate::Queued
    );
    assert!(out.is_empty());
    // The reply flushes both, in order, with their tags.
    let reply = hex("02000000000c 0200000000bb 0806 0001 0800 06 04 0002 0200000000bb 0a020009 02000000000c 0a020001");
    assert_eq!(
        s.receive(B0, &reply, meta(PACKET_HOST), 43, &mut out),
        Fate::Delivered(Delivery::Arp)
    );
    assert_eq!(
        out.iter()
            .map(|o| (o.tag, o.origin, o.ifindex))
            .collect::<Vec<_>>(),
        vec![
            (Some(41), Origin::Forwarded, B0),
            (Some(42), Origin::Forwarded, B0)
        ]
    );
    assert_eq!(&out[0].frame[..12], &[GW, MAC_B0].concat()[..]);
    assert_eq!(
        s.neighbour(B0, v4("10.2.0.9")),
        Some((NeighState::Reachable, GW))
    );
}

#[test]
fn neighbour_timeout_and_queue_overflow() {
    let mut s = stack();
    s.set_forwarding(true, true);
    s.set_unres_qlen_bytes(2 * 768);
    let frame = eth(
        MAC_A0,
        PEER,
        0x0800,
        &udp4([10, 1, 0, 5], [10, 2, 0, 9], 53, b"q"),
    );
    let mut out = Vec::new();
    for tag in 1..=3 {
        assert_eq!(
            s.receive(A0, &frame, meta(PACKET_HOST), tag, &mut out),
            Fate::Queued
        );
    }
    // unres_qlen_bytes holds two of these: the oldest went NEIGH_QUEUEFULL.
    let mut dropped = Vec::new();
    s.take_dropped(&mut dropped);
    assert_eq!(
        dropped.iter().map(|(p, r)| (p.tag, *r)).collect::<Vec<_>>(),
        vec![(Some(1), DropReason::NeighQueuefull)]
    );
    out.clear();
    dropped.clear();
    s.neigh_timeout(999_999_999, &mut out, &mut dropped);
    assert!(out.is_empty() && dropped.is_empty());
    s.neigh_timeout(2_000_000_000, &mut out, &mut dropped);
    assert_eq!(
        out.iter().filter(|o| o.origin == Origin::Solicit).count(),
        2
    );
    assert!(dropped.is_empty());
    s.neigh_timeout(3_000_000_000, &mut out, &mut dropped);
    assert_eq!(
        dropped.iter().map(|(p, r)| (p.tag, *r)).collect::<Vec<_>>(),
        vec![
            (Some(2), DropReason::NeighFailed),
            (Some(3), DropReason::NeighFailed)
        ]
    );
    assert_eq!(s.neighbour(B0, v4("10.2.0.9")), None);
    // flush_unresolved hands back what is still waiting.
    s.receive(A0, &frame, meta(PACKET_HOST), 9, &mut out);
    let left = s.flush_unresolved();
    assert_eq!(
        left.iter().map(|p| p.tag).collect::<Vec<_>>(),
        vec![Some(9)]
    );
}

#[test]
fn fwmark_rule_picks_table_and_lpm_picks_longest() {
    let mut s = stack();
    s.set_forwarding(true, true);
    // 10.9.0.1 leaves through a0, where it came in from an on-link source: the
    // kernel would send an ICMP redirect first (its ARP for 10.1.0.5 would then
    // hold the net unreachable below). Not what this test is about.
    s.set_send_redirects(false);
    s.add_neighbour(A0, v4("10.1.0.254"), PEER).unwrap();
    s.add_neighbour(B0, v4("10.2.0.254"), GW).unwrap();
    s.add_route(Route::unicast(
        v4("10.9.0.0"),
        16,
        Some(v4("10.1.0.254")),
        A0,
    ))
    .unwrap();
    s.add_route(Route::unicast(
        v4("10.9.1.0"),
        24,
        Some(v4("10.2.0.254")),
        B0,
    ))
    .unwrap();
    let mut t100 = Route::unicast(v4("0.0.0.0"), 0, Some(v4("10.2.0.254")), B0);
    t100.table = 100;
    s.add_route(t100).unwrap();
    let mut r = Rule::table(100, 100);
    r.fwmark = Some((0x10, 0xff));
    s.add_rule(r).unwrap();
    let send = |s: &mut HostStack, dst: [u8; 4], mark: u32| {
        let mut out = Vec::new();
        let f = eth(MAC_A0, PEER, 0x0800, &udp4([10, 1, 0, 5], dst, 53, b"r"));
        let fate = s.receive(
            A0,
            &f,
            RxMeta {
                mark,
                pkt_type: PACKET_HOST,
                now_ns: 0,
            },
            1,
            &mut out,
        );
        (fate, out.first().map(|o| o.ifindex))
    };
    assert_eq!(send(&mut s, [10, 9, 0, 1], 0), (Fate::Forwarded, Some(A0)));
    assert_eq!(send(&mut s, [10, 9, 1, 1], 0), (Fate::Forwarded, Some(B0)));
    assert_eq!(
        send(&mut s, [10, 9, 0, 1], 0x110),
        (Fate::Forwarded, Some(B0))
    );
    assert_eq!(
        send(&mut s, [10, 9, 0, 1], 0x11),
        (Fate::Forwarded, Some(A0))
    );
    // No route at all: IP_INNOROUTES, and ICMP net unreachable goes back on a0.
    assert_eq!(
        send(&mut s, [192, 0, 2, 1], 0),
        (Fate::Dropped(DropReason::IpInnoroutes), Some(A0))
    );
}

fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, mut m: Vec<u8>) -> Vec<u8> {
    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(src, dst);
    m
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; skiff_wire::ipv6::HEADER_LEN];
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IPPROTO_ICMPV6,
        hop_limit: hop,
        traffic_class: 0,
        payload_len: payload.len(),
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(payload);
    h
}

#[test]
fn ipv6_ns_gets_na_and_echo_is_answered() {
    let mut s = stack();
    let peer: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
    let me: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let sn: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&me.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&PEER);
    let frame = eth(
        [0x33, 0x33, 0xff, 0, 0, 1],
        PEER,
        0x86dd,
        &ipv6(peer, sn, 255, &icmp6(peer, sn, ns)),
    );
    let mut out = Vec::new();
    assert_eq!(
        s.receive(A0, &frame, meta(PACKET_MULTICAST), 1, &mut out),
        Fate::Delivered(Delivery::Ndisc)
    );
    let mut na = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    na.extend_from_slice(&me.octets());
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&MAC_A0);
    let expect = eth(
        PEER,
        MAC_A0,
        0x86dd,
        &ipv6(me, peer, 255, &icmp6(me, peer, na)),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].frame, expect);
    assert_eq!(
        s.neighbour(A0, IpAddr::V6(peer)),
        Some((NeighState::Stale, PEER))
    );
    // Hop limit other than 255: IPV6_NDISC_HOP_LIMIT.
    let mut bad = frame.clone();
    bad[14 + 7] = 64;
    assert_eq!(
        s.receive(A0, &bad, meta(PACKET_MULTICAST), 2, &mut out),
        Fate::Dropped(DropReason::Ipv6NdiscHopLimit)
    );
    // Echo.
    out.clear();
    let req = icmp6(peer, me, vec![128, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i']);
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x86dd, &ipv6(peer, me, 64, &req)),
        meta(PACKET_HOST),
        3,
        &mut out,
    );
    assert_eq!(f, Fate::Delivered(Delivery::Icmpv6Echo));
    let rep = icmp6(me, peer, vec![129, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i']);
    assert_eq!(
        out[0].frame,
        eth(PEER, MAC_A0, 0x86dd, &ipv6(me, peer, 64, &rep))
    );
}

#[test]
fn ipv6_forward_hop_limit_and_too_big() {
    let mut s = stack();
    s.set_forwarding(true, true);
    let peer: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
    let far: Ipv6Addr = "2001:db8:2::9".parse().unwrap();
    s.add_neighbour(A0, IpAddr::V6(peer), PEER).unwrap();
    s.add_neighbour(B0, IpAddr::V6(far), GW).unwrap();
    let req = icmp6(peer, far, vec![128, 0, 0, 0, 0, 1, 0, 1]);
    let mut out = Vec::new();
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x86dd, &ipv6(peer, far, 9, &req)),
        meta(PACKET_HOST),
        5,
        &mut out,
    );
    assert_eq!(f, Fate::Forwarded);
    assert_eq!(
        out[0].frame,
        eth(GW, MAC_B0, 0x86dd, &ipv6(peer, far, 8, &req))
    );
    out.clear();
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x86dd, &ipv6(peer, far, 1, &req)),
        meta(PACKET_HOST),
        6,
        &mut out,
    );
    assert_eq!(f, Fate::Dropped(DropReason::IpInhdr));
    let e = &out[0].frame[14..];
    assert_eq!((e[40], e[41]), (3, 0));
    assert_eq!(
        &e[8..24],
        &"2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets()
    );
    out.clear();
    let big = icmp6(
        peer,
        far,
        [vec![128, 0, 0, 0, 0, 1, 0, 1], vec![0u8; 1400]].concat(),
    );
    let f = s.receive(
        A0,
        &eth(MAC_A0, PEER, 0x86dd, &ipv6(peer, far, 9, &big)),
        meta(PACKET_HOST),
        7,
        &mut out,
    );
    assert_eq!(f, Fate::Dropped(DropReason::PktTooBig));
    let e = &out[0].frame[14..];
    assert_eq!((e[40], e[41]), (2, 0));
    assert_eq!(&e[44..48], &1400u32.to_be_bytes());
}

#[test]
fn malformed_ipv4_drop_reasons() {
    let mut s = stack();
    let good = udp4([10, 1, 0, 5], [10, 1, 0, 1], 53, b"abc");
    let mut out = Vec::new();
    let mut rx = |s: &mut HostStack, ip: &[u8]| {
        s.receive(
            A0,
            &eth(MAC_A0, PEER, 0x0800, ip),
            meta(PACKET_HOST),
            0,
            &mut out,
        )
    };
    assert_eq!(
        rx(&mut s, &good),
        Fate::Delivered(Delivery::Udp { port: 53 })
    );
    assert_eq!(
        s.sinks().udp.get(&53),
        Some(&SinkCount {
            packets: 1,
            bytes: 3
        })
    );
    assert_eq!(rx(&mut s, &good[..10]), Fate::Dropped(DropReason::IpInhdr));
    let mut c = good.clone();
    c[12] ^= 1;
    assert_eq!(rx(&mut s, &c), Fate::Dropped(DropReason::IpCsum));
    assert_eq!(
        rx(&mut s, &good[..good.len() - 1]),
        Fate::Dropped(DropReason::PktTooSmall)
    );
    let mut u = good.clone();
    u[30] ^= 0xff;
    assert_eq!(rx(&mut s, &u), Fate::Dropped(DropReason::UdpCsum));
    assert_eq!(
        s.receive(A0, &[1, 2, 3], meta(PACKET_HOST), 0, &mut Vec::new()),
        Fate::Dropped(DropReason::PktTooSmall)
    );
    assert_eq!(
        s.receive(
            A0,
            &eth([2, 0, 0, 0, 0, 0x99], PEER, 0x0800, &good),
            meta(PACKET_OTHERHOST),
            0,
            &mut Vec::new()
        ),
        Fate::Dropped(DropReason::OtherHost)
    );
    assert_eq!(
        pkt_type_for(MAC_A0, &eth([2, 0, 0, 0, 0, 0x99], PEER, 0x0800, &good)),
        PACKET_OTHERHOST
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn receive_never_panics(
        base in 0usize..6,
        cut in 0usize..200,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6),
        pkt_type in 0u8..4,
        random in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut s = stack();
        s.set_forwarding(true, true);
        let peer: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
        let me: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let frames = [
            eth(MAC_A0, PEER, 0x0800, &udp4([10, 1, 0, 5], [10, 1, 0, 1], 53, b"abc")),
            eth(MAC_A0, PEER, 0x0800, &udp4([10, 1, 0, 5], [10, 2, 0, 9], 53, b"abc")),
            eth(MAC_A0, PEER, 0x0800, &ipv4([10, 1, 0, 5], [10, 1, 0, 1], 1, 64, false, &echo(8, b"x"))),
            hex("ffffffffffff 0200000000aa 0806 0001 0800 06 04 0001 0200000000aa 0a010005 000000000000 0a010001"),
            eth(MAC_A0, PEER, 0x86dd, &ipv6(peer, me, 64, &icmp6(peer, me, vec![128, 0, 0, 0, 0, 1, 0, 1]))),
            [eth(MAC_A0, PEER, 0x0800, &[]), random.clone()].concat(),
        ];
        let mut f = frames[base].clone();
        for (i, b) in flips {
            if let Some(x) = f.get_mut(i) { *x ^= b; }
        }
        f.truncate(cut.max(random.len().min(1)));
        let mut out = Vec::new();
        let _ = s.receive(A0, &f, RxMeta { mark: 0, pkt_type, now_ns: 0 }, 1, &mut out);
        let _ = s.receive(B0, &random, RxMeta { mark: 0, pkt_type, now_ns: 0 }, 2, &mut out);
        let mut dropped = Vec::new();
        s.neigh_timeout(5_000_000_000, &mut out, &mut dropped);
        let mut fr = random.clone();
        let _ = s.neigh_output(A0, &mut fr, None, 3, &mut out);
        for o in &out {
            prop_assert!(o.frame.len() >= 14);
        }
    }
}
