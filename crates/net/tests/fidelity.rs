//! Fidelity of the host stack and the device registry against what the
//! kernel (6.18) was seen to do on this machine: per-namespace ifindexes, the
//! RST and port unreachable a closed port gets, the ICMP rate limits, and the
//! sysctls (echo ignore, rp_filter, forwarding). `fidelity_kernel.rs` checks
//! the ifindexes against the running kernel itself.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use skiff_net::datapath::{Datapath, DatapathOptions, DevId, DeviceSpec, XdpMode};
use skiff_net::stack::*;
use skiff_net::DropReason;
use skiff_vm::{Collection, LoadOptions, Program};
use skiff_wire::{
    checksum, EthernetRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket,
    IPPROTO_TCP, IPPROTO_UDP,
};

const A0: u32 = 2;
const B0: u32 = 3;
const MAC_A0: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B0: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// a0 10.1.0.1/24 + 2001:db8:1::1/64, b0 10.2.0.1/24; only UDP 53 and TCP 80
/// listen; the peers' MACs are known.
fn stack() -> HostStack {
    let mut s = HostStack::new();
    let dev = |i, n: &str, mac| StackDevice {
        ifindex: i,
        name: n.into(),
        mac,
        mtu: 1500,
        up: true,
        arp: true,
        loopback: false,
    };
    s.add_device(dev(A0, "a0", MAC_A0)).unwrap();
    s.add_device(dev(B0, "b0", MAC_B0)).unwrap();
    s.add_address(A0, ip("10.1.0.1"), 24).unwrap();
    s.add_address(B0, ip("10.2.0.1"), 24).unwrap();
    s.add_address(A0, ip("2001:db8:1::1"), 64).unwrap();
    s.add_neighbour(A0, ip("10.1.0.5"), PEER).unwrap();
    s.add_neighbour(A0, ip("2001:db8:1::5"), PEER).unwrap();
    s.set_listening(Some(BTreeSet::from([(IPPROTO_UDP, 53), (IPPROTO_TCP, 80)])));
    s
}

fn meta(now_ns: u64) -> RxMeta {
    RxMeta {
        mark: 0,
        pkt_type: PACKET_HOST,
        now_ns,
    }
}

fn eth(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = EthernetRepr {
        src_addr: PEER,
        dst_addr: MAC_A0,
        ethertype: ty,
    }
    .to_frame(payload.len());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, tos: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    Ipv4Repr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        protocol: proto,
        tos,
        ttl: 64,
        ident: 0x4242,
        dont_frag: true,
        payload_len: payload.len(),
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(payload);
    eth(0x0800, &h)
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t.extend_from_slice(payload);
    let mut p = TcpPacket::new_unchecked(&mut t[..]);
    p.set_src_port(sport);
    p.set_dst_port(dport);
    p.set_seq_number(seq);
    p.set_ack_number(ack);
    p.set_header_len(20);
    p.set_flags(flags);
    p.set_window_len(64240);
    t
}

fn tcp4(seg: &[u8], tos: u8) -> Vec<u8> {
    let (src, dst) = ([10, 1, 0, 5], [10, 1, 0, 1]);
    let mut seg = seg.to_vec();
    let pseudo = checksum::pseudo_header_v4(src.into(), dst.into(), IPPROTO_TCP, seg.len());
    TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(pseudo);
    ipv4(src, dst, IPPROTO_TCP, tos, &seg)
}

fn udp4(dport: u16) -> Vec<u8> {
    let (src, dst) = ([10, 1, 0, 5], [10, 1, 0, 1]);
    let mut u = vec![0u8; 8];
    u.extend_from_slice(b"x");
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(40000);
    p.set_dst_port(dport);
    p.set_length(9);
    ipv4(src, dst, IPPROTO_UDP, 0, &u)
}

fn v6(next: u8, tclass: u8, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (
        "2001:db8:1::5".parse().unwrap(),
        "2001:db8:1::1".parse().unwrap(),
    );
    let mut l4 = payload.to_vec();
    let pseudo = checksum::pseudo_header_v6(src, dst, next, l4.len());
    if next == IPPROTO_TCP {
        TcpPacket::new_unchecked(&mut l4[..]).fill_checksum(pseudo);
    } else {
        let c = checksum::fold(checksum::sum(&l4, pseudo));
        UdpPacket::new_unchecked(&mut l4[..]).set_checksum(c);
    }
    let mut h = vec![0u8; 40];
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: next,
        hop_limit: 64,
        traffic_class: tclass,
        payload_len: l4.len(),
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(&l4);
    eth(0x86dd, &h)
}

fn udp6(dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 9];
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(40000);
    p.set_dst_port(dport);
    p.set_length(9);
    v6(IPPROTO_UDP, 0, &u)
}

#[test]
fn syn_to_a_closed_port_gets_the_kernels_rst() {
    let mut s = stack();
    let mut out = Vec::new();
    // SYN seq 1000 to port 81, TOS 0x2b (DSCP 10 + ECN 3).
    let syn = tcp4(&tcp(40000, 81, 1000, 0, 0x02, b""), 0x2b);
    let f = s.receive(A0, &syn, meta(0), 1, &mut out);
    assert_eq!(f, Fate::Dropped(DropReason::NoSocket));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].origin, Origin::Reply);
    // IPv4: TOS without ECN, id 0, DF, TTL 64; TCP: RST|ACK, seq 0, ack 1001,
    // doff 5, window 0.
    let mut expect = hex("0200000000aa 02000000000a 0800
         4528 0028 0000 4000 40 06 0000 0a010001 0a010005
         0051 9c40 00000000 000003e9 5014 0000 0000 0000");
    let c = checksum::fold(checksum::sum(&expect[14..34], 0));
    expect[24..26].copy_from_slice(&c.to_be_bytes());
    let pseudo = checksum::pseudo_header_v4([10, 1, 0, 1].into(), [10, 1, 0, 5].into(), 6, 20);
    let c = checksum::fold(checksum::sum(&expect[34..], pseudo));
    expect[50..52].copy_from_slice(&c.to_be_bytes());
    assert_eq!(out[0].frame, expect);

    // An ACK segment: RST with its ack as seq, no ACK flag.
    out.clear();
    let ack = tcp4(&tcp(40000, 81, 5, 0x0102_0304, 0x10, b"abc"), 0);
    s.receive(A0, &ack, meta(0), 2, &mut out);
    let t = TcpPacket::new_unchecked(&out[0].frame[34..]);
    assert_eq!(
        (t.seq_number(), t.ack_number(), t.flags()),
        (0x0102_0304, 0, 0x04)
    );
    // A RST is never answered; an open port is a sink.
    out.clear();
    let rst = tcp4(&tcp(40000, 81, 5, 0, 0x04, b""), 0);
    assert_eq!(
        s.receive(A0, &rst, meta(0), 3, &mut out),
        Fate::Dropped(DropReason::NoSocket)
    );
    let open = tcp4(&tcp(40000, 80, 5, 0, 0x02, b""), 0);
    assert_eq!(
        s.receive(A0, &open, meta(0), 4, &mut out),
        Fate::Delivered(Delivery::Tcp { port: 80 })
    );
    assert!(out.is_empty());
}

#[test]
fn syn_to_a_closed_ipv6_port_gets_a_rst() {
    let mut s = stack();
    let mut out = Vec::new();
    let syn = v6(IPPROTO_TCP, 0x2b, &tcp(40000, 81, 7, 0, 0x02, b""));
    assert_eq!(
        s.receive(A0, &syn, meta(0), 1, &mut out),
        Fate::Dropped(DropReason::NoSocket)
    );
    assert_eq!(out.len(), 1);
    let ip6 = Ipv6Packet::new_unchecked(&out[0].frame[14..]);
    assert_eq!(
        ip6.src_addr(),
        "2001:db8:1::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(
        (ip6.hop_limit(), ip6.traffic_class(), ip6.payload_len()),
        (64, 0x28, 20)
    );
    let t = TcpPacket::new_unchecked(&out[0].frame[54..]);
    assert_eq!(
        (
            t.src_port(),
            t.dst_port(),
            t.seq_number(),
            t.ack_number(),
            t.flags()
        ),
        (81, 40000, 0, 8, 0x14)
    );
    let pseudo = checksum::pseudo_header_v6(ip6.src_addr(), ip6.dst_addr(), 6, 20);
    assert_eq!(
        checksum::fold(checksum::sum(&out[0].frame[54..], pseudo)),
        0
    );
}

/// Port unreachables answered for `n` datagrams to a closed port at `at`.
fn unreachables(s: &mut HostStack, frame: &[u8], n: usize, at: u64) -> usize {
    let mut answered = 0;
    for i in 0..n {
        let mut out = Vec::new();
        let f = s.receive(A0, frame, meta(at), i as u64, &mut out);
        assert_eq!(f, Fate::Dropped(DropReason::NoSocket));
        answered += out.len();
    }
    answered
}

#[test]
fn port_unreachable_is_rate_limited_per_destination() {
    // Seen on the kernel: 20 datagrams at once get 6 answers (IPv4 and IPv6);
    // IPv6 refills one per 100 ms (7 more 300 ms later: 3, 500 ms later: 5).
    let mut s = stack();
    assert_eq!(unreachables(&mut s, &udp4(9999), 20, 10 * SEC), 6);
    assert_eq!(unreachables(&mut s, &udp4(9999), 20, 10 * SEC + SEC / 2), 0);
    assert_eq!(unreachables(&mut s, &udp4(9999), 20, 11 * SEC), 1);
    assert_eq!(unreachables(&mut s, &udp6(9999), 7, 20 * SEC), 6);
    assert_eq!(
        unreachables(&mut s, &udp6(9999), 7, 20 * SEC + 300_000_000),
        3
    );
    // The limit is a sysctl: 0 turns the per-destination bucket off (the
    // namespace's 50-message burst then applies).
    let mut s = stack();
    s.set_sysctl("net.ipv4.icmp_ratelimit", &Sysctl::IcmpRatelimit, 0)
        .unwrap();
    assert_eq!(unreachables(&mut s, &udp4(9999), 60, 10 * SEC), 50);
}

#[test]
fn echo_ignore_all_answers_nothing() {
    let mut s = stack();
    let echo = ipv4(
        [10, 1, 0, 5],
        [10, 1, 0, 1],
        1,
        0,
        &skiff_wire::icmpv4::message(8, 0, 0x0001_0001, b"hi"),
    );
    let mut out = Vec::new();
    s.receive(A0, &echo, meta(0), 1, &mut out);
    assert_eq!(out.len(), 1);
    s.set_sysctl(
        "net.ipv4.icmp_echo_ignore_all",
        &Sysctl::IcmpEchoIgnoreAll,
        1,
    )
    .unwrap();
    out.clear();
    assert_eq!(
        s.receive(A0, &echo, meta(0), 2, &mut out),
        Fate::Delivered(Delivery::IcmpEcho)
    );
    assert!(out.is_empty());
    assert_eq!(s.sinks().icmp_echo_requests, 2);
    assert_eq!(s.sinks().echo_replies_sent, 1);
}

/// `sysctl -w NAME=V` on `s`, the device resolved as a0/b0.
fn sysctl(s: &mut HostStack, name: &str, v: i64) {
    let p = Sysctl::parse(name).unwrap();
    let r = p
        .resolve(|d| match d {
            "a0" => Some(A0),
            "b0" => Some(B0),
            _ => None,
        })
        .unwrap();
    s.set_sysctl(name, &r, v).unwrap();
}

#[test]
fn rp_filter_strict_and_loose() {
    // 10.2.0.7 is reachable through b0: arriving on a0 it fails strict
    // mode (IP_RPFILTER) and passes loose mode; 192.0.2.1 has no route back
    // and fails both.
    let from = |src: [u8; 4]| udp_from(src);
    let mut s = stack();
    let mut out = Vec::new();
    assert_eq!(
        s.receive(A0, &from([10, 2, 0, 7]), meta(0), 1, &mut out),
        Fate::Delivered(Delivery::Udp { port: 53 })
    );
    sysctl(&mut s, "net.ipv4.conf.a0.rp_filter", 1);
    assert_eq!(
        s.receive(A0, &from([10, 2, 0, 7]), meta(0), 2, &mut out),
        Fate::Dropped(DropReason::IpRpfilter)
    );
    assert_eq!(
        s.receive(A0, &from([10, 1, 0, 7]), meta(0), 3, &mut out),
        Fate::Delivered(Delivery::Udp { port: 53 })
    );
    // conf.all = 2 and the device's 1: the larger, 2 (loose), applies.
    sysctl(&mut s, "net.ipv4.conf.all.rp_filter", 2);
    assert_eq!(
        s.receive(A0, &from([10, 2, 0, 7]), meta(0), 4, &mut out),
        Fate::Delivered(Delivery::Udp { port: 53 })
    );
    assert_eq!(
        s.receive(A0, &from([192, 0, 2, 1]), meta(0), 5, &mut out),
        Fate::Dropped(DropReason::IpRpfilter)
    );
    assert!(out.is_empty());
}

fn udp_from(src: [u8; 4]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(40000);
    p.set_dst_port(53);
    p.set_length(8);
    ipv4(src, [10, 1, 0, 1], IPPROTO_UDP, 0, &u)
}

#[test]
fn forwarding_sysctls_per_device() {
    let mut s = stack();
    let mut out = Vec::new();
    s.add_neighbour(B0, ip("10.2.0.9"), PEER).unwrap();
    let fwd = ipv4([10, 1, 0, 5], [10, 2, 0, 9], IPPROTO_UDP, 0, &[0; 8]);
    sysctl(&mut s, "net.ipv4.ip_forward", 1);
    assert_eq!(s.receive(A0, &fwd, meta(0), 1, &mut out), Fate::Forwarded);
    // ip_forward reads the incoming device's conf.
    sysctl(&mut s, "net.ipv4.conf.a0.forwarding", 0);
    assert_eq!(
        s.receive(A0, &fwd, meta(0), 2, &mut out),
        Fate::Dropped(DropReason::IpInaddrerrors)
    );
    sysctl(&mut s, "net.ipv4.conf.all.forwarding", 1);
    assert_eq!(s.receive(A0, &fwd, meta(0), 3, &mut out), Fate::Forwarded);
    let e = s
        .set_sysctl("net.ipv4.ip_forward", &Sysctl::IpForward, 2)
        .unwrap_err();
    assert_eq!(e.to_string(), "net.ipv4.ip_forward = 2: takes 0 or 1");
}

#[test]
fn ifindexes_are_per_namespace_peer_first() {
    // As the kernel gave them: `ip -n a link add v0 type veth peer name v1
    // netns b` -> a/v0 2, b/v1 2; `ip -n a link add x0 type veth peer name
    // x1` -> x1 3, x0 4; `... y0 index 9 ... peer y1` -> y1 5, y0 9; then
    // w1 6 and w0 7 (the cursor moved past 5 only; 9 is skipped later).
    let mut dp = Datapath::new(DatapathOptions::default()).unwrap();
    let a = dp.add_netns("a").unwrap();
    let b = dp.add_netns("b").unwrap();
    let ifx = |dp: &Datapath, d| dp.ifindex(d).unwrap();
    let v0 = dp
        .add_device(a, DeviceSpec::veth("v0", Some(b), "v1"))
        .unwrap();
    let v1 = dp.peer(v0).unwrap();
    assert_eq!((ifx(&dp, v0), ifx(&dp, v1)), (2, 2));
    assert_ne!(dp.mac(v0), dp.mac(v1));
    let x0 = dp
        .add_device(a, DeviceSpec::veth("x0", None, "x1"))
        .unwrap();
    assert_eq!((ifx(&dp, x0), ifx(&dp, dp.peer(x0).unwrap())), (4, 3));
    let y0 = dp
        .add_device(
            a,
            DeviceSpec {
                ifindex: Some(9),
                ..DeviceSpec::veth("y0", None, "y1")
            },
        )
        .unwrap();
    assert_eq!((ifx(&dp, y0), ifx(&dp, dp.peer(y0).unwrap())), (9, 5));
    let w0 = dp
        .add_device(a, DeviceSpec::veth("w0", None, "w1"))
        .unwrap();
    assert_eq!((ifx(&dp, w0), ifx(&dp, dp.peer(w0).unwrap())), (7, 6));
    // A fixed peer ifindex, in the peer's namespace.
    let z0 = dp
        .add_device(
            a,
            DeviceSpec {
                peer_ifindex: Some(20),
                ..DeviceSpec::veth("z0", Some(b), "z1")
            },
        )
        .unwrap();
    assert_eq!((ifx(&dp, z0), ifx(&dp, dp.peer(z0).unwrap())), (8, 20));
    assert_eq!(dp.dev_by_ifindex(b, 20), dp.peer(z0));
    let taken = dp.add_device(
        a,
        DeviceSpec {
            peer_ifindex: Some(2),
            ..DeviceSpec::veth("t0", Some(b), "t1")
        },
    );
    assert_eq!(
        taken.unwrap_err().to_string(),
        "ifindex 2 is taken in namespace b (errno 17)"
    );
}

/// The `xdp_pass` program of tests/bpf/datapath.c with its collection, or
/// None (skip, the reason printed) without clang-19.
fn xdp_pass() -> Option<(Collection, Arc<Program>)> {
    let obj = common::bpf_object("datapath")?;
    let o = skiff_object::Object::parse(&obj).expect("parse");
    let opts = LoadOptions {
        verify: false,
        ..skiff_net::load_options()
    };
    let c = Collection::load(&o, &opts).expect("load");
    let p = c.program("xdp_pass").expect("xdp_pass").clone();
    Some((c, p))
}

/// 10 UDP frames of 142 bytes sent by a veth end `va` to its peer `vb` in
/// another namespace (`xdp`: with a program on vb), all delivered to vb's
/// stack: the datapath, va and vb.
fn send_over_veth(xdp: Option<Arc<Program>>) -> (Datapath, DevId, DevId) {
    let mut dp = Datapath::new(DatapathOptions {
        keep_delivered: true,
        ..Default::default()
    })
    .unwrap();
    let a = dp.add_netns("a").unwrap();
    let b = dp.add_netns("b").unwrap();
    let va = dp
        .add_device(a, DeviceSpec::veth("va", Some(b), "vb"))
        .unwrap();
    let vb = dp.peer(va).unwrap();
    let ifb = dp.ifindex(vb).unwrap();
    dp.stack_mut(b)
        .unwrap()
        .add_address(ifb, ip("10.9.0.2"), 24)
        .unwrap();
    let mut u = vec![0u8; 108];
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(40000);
    p.set_dst_port(7777);
    p.set_length(108);
    let mut frame = ipv4([10, 9, 0, 1], [10, 9, 0, 2], IPPROTO_UDP, 0, &u);
    frame[..6].copy_from_slice(&dp.mac(vb).unwrap());
    frame[6..12].copy_from_slice(&dp.mac(va).unwrap());
    assert_eq!(frame.len(), 142);
    if let Some(p) = xdp {
        dp.attach_xdp(vb, p, XdpMode::Native).unwrap();
    }
    for i in 0..10 {
        dp.send(va, &frame, i * 1000).unwrap();
    }
    dp.run();
    let delivered = dp.take_delivered();
    assert_eq!(delivered.len(), 10);
    assert!(delivered.iter().all(|d| d.dev == vb));
    (dp, va, vb)
}

#[test]
fn send_goes_out_through_the_device_and_veth_counts_as_the_kernel() {
    // Seen with `ip -s link` on the kernel: 10 UDP frames of 142 bytes sent
    // over a veth whose peer runs no XDP: the sender's tx and the peer's rx
    // are both 10 packets, 1420 bytes (the whole frame).
    let (dp, va, vb) = send_over_veth(None);
    let (sa, sb) = (dp.stats(va).unwrap(), dp.stats(vb).unwrap());
    assert_eq!((sa.tx_packets, sa.tx_bytes, sa.rx_packets), (10, 1420, 0));
    assert_eq!((sb.rx_packets, sb.rx_bytes, sb.tx_packets), (10, 1420, 0));
    // A frame shorter than an Ethernet header cannot be sent.
    let mut dp = dp;
    let frame = [0u8; 10];
    assert_eq!(
        dp.send(va, &frame, 20_000).unwrap_err().to_string(),
        "a frame of 10 bytes: shorter than an Ethernet header (errno 22)"
    );
}

#[test]
fn veth_counts_14_bytes_less_when_the_peer_runs_xdp() {
    // Seen on the kernel with an XDP_PASS program on the peer: each frame
    // counts skb->len after eth_type_trans (142 - 14), on the peer's rx and
    // on the sender's tx alike.
    let Some((_c, p)) = xdp_pass() else { return };
    let (dp, va, vb) = send_over_veth(Some(p));
    let (sa, sb) = (dp.stats(va).unwrap(), dp.stats(vb).unwrap());
    assert_eq!((sa.tx_packets, sa.tx_bytes), (10, 1280));
    assert_eq!((sb.rx_packets, sb.rx_bytes), (10, 1280));
}
