//! Conntrack and NAT through their hook functions, as the netfilter hooks
//! call them: exact entries (`conntrack -L` text), ctinfo, counters, and
//! NATed packets whose checksums are verified by recomputation.

use std::net::{IpAddr, Ipv4Addr};

use skiff_net::netfilter::conntrack::xt::{self, ConnmarkMode};
use skiff_net::netfilter::conntrack::{
    nf_conntrack_confirm, nf_conntrack_in, Conntrack, IpConntrackInfo, NfCt,
};
use skiff_net::netfilter::nat::{
    nf_nat_fn, nf_nat_fn_dev, NatDevices, NatTarget, NfNatManipType, NfNatRange2,
    NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED,
};
use skiff_net::netfilter::{NfHook, NfHookState, NfProto, NfSkb, NfVerdict};
use skiff_wire::checksum::{checksum, fold, pseudo_header_v4, sum};

const SEC: u64 = 1_000_000_000;
const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// An IPv4 packet with a TCP or UDP header (or `l4` as given for ICMP),
/// every checksum filled.
fn ipv4(src: &str, dst: &str, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&ip4(src).octets());
    p[16..20].copy_from_slice(&ip4(dst).octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut l4 = l4;
    let (off, pseudo) = match proto {
        TCP => (16, pseudo_header_v4(ip4(src), ip4(dst), proto, l4.len())),
        UDP => (6, pseudo_header_v4(ip4(src), ip4(dst), proto, l4.len())),
        _ => (2, 0),
    };
    l4[off..off + 2].copy_from_slice(&[0, 0]);
    let c = fold(sum(&l4, pseudo));
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&l4);
    p
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    ipv4(src, dst, TCP, h)
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&12u16.to_be_bytes());
    h[8..12].copy_from_slice(b"data");
    ipv4(src, dst, UDP, h)
}

fn state(hook: NfHook, now_ns: u64) -> NfHookState {
    NfHookState {
        hook,
        pf: NfProto::Ipv4,
        in_ifindex: Some(2),
        out_ifindex: Some(3),
        in_name: None,
        out_name: None,
        masq_addr: None,
        redirect_addr: None,
        addr_types: (0, 0),
        now_ns,
    }
}

/// One packet through PREROUTING conntrack and the confirm hook (INPUT);
/// returns what the packet carried.
fn rx(ct: &mut Conntrack, pkt: &mut Vec<u8>, now: u64) -> Option<NfCt> {
    let (mut mark, mut nfct) = (0u32, None);
    let mut skb = NfSkb {
        pkt,
        mark: &mut mark,
        nfct: &mut nfct,
    };
    assert_eq!(
        nf_conntrack_in(ct, &mut skb, &state(NfHook::PreRouting, now)),
        NfVerdict::Accept
    );
    assert_eq!(
        nf_conntrack_confirm(ct, &mut skb, &state(NfHook::LocalIn, now)),
        NfVerdict::Accept
    );
    nfct
}

#[test]
fn tcp_handshake_entries_and_ctinfo() {
    let mut ct = Conntrack::default();
    let mut syn = tcp("10.0.0.1", 40000, "10.0.0.2", 80, SYN, 1000, 0);
    let n = rx(&mut ct, &mut syn, 0).unwrap();
    assert_eq!(n.info, IpConntrackInfo::New);
    assert_eq!(
        ct.dump(SEC),
        ["tcp      6 119 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=80 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=40000 mark=0 use=1"]
    );
    let mut synack = tcp("10.0.0.2", 80, "10.0.0.1", 40000, SYN | ACK, 5000, 1001);
    let r = rx(&mut ct, &mut synack, 2 * SEC).unwrap();
    assert_eq!((r.id, r.info), (n.id, IpConntrackInfo::EstablishedReply));
    let mut ack = tcp("10.0.0.1", 40000, "10.0.0.2", 80, ACK, 1001, 5001);
    let a = rx(&mut ct, &mut ack, 3 * SEC).unwrap();
    assert_eq!(a.info, IpConntrackInfo::Established);
    assert_eq!(xt::ctstate(&ct, &Some(a)), 2);
    assert_eq!(
        ct.dump(3 * SEC),
        ["tcp      6 432000 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 use=1"]
    );
    assert_eq!(ct.stats.invalid, 0);
}

#[test]
fn invalid_packets_carry_no_ct_and_are_counted() {
    let mut ct = Conntrack::default();
    // A SYN/ACK out of nowhere cannot start a connection.
    let mut synack = tcp("10.0.0.2", 80, "10.0.0.1", 40000, SYN | ACK, 5000, 1001);
    let n = rx(&mut ct, &mut synack, 0);
    assert_eq!(n, None);
    assert_eq!(xt::ctstate(&ct, &n), xt::XT_CONNTRACK_STATE_INVALID);
    // A bad TCP checksum at PREROUTING.
    let mut bad = tcp("10.0.0.1", 40000, "10.0.0.2", 80, SYN, 1, 0);
    bad[36] ^= 0xff;
    assert_eq!(rx(&mut ct, &mut bad, 0), None);
    assert_eq!((ct.stats.invalid, ct.count()), (2, 0));
}

#[test]
fn rst_before_reply_removes_the_entry() {
    let mut ct = Conntrack::default();
    let mut syn = tcp("10.0.0.1", 40000, "10.0.0.2", 80, SYN, 1000, 0);
    rx(&mut ct, &mut syn, 0);
    let mut rst = tcp("10.0.0.2", 80, "10.0.0.1", 40000, RST | ACK, 0, 1001);
    assert!(rx(&mut ct, &mut rst, SEC).is_some());
    assert_eq!(ct.dump(SEC), Vec::<String>::new());
    assert_eq!(ct.count(), 0);
}

#[test]
fn udp_timeouts_on_the_engine_clock() {
    let mut ct = Conntrack::default();
    let mut q = udp("10.0.0.1", 5000, "10.0.0.2", 53);
    rx(&mut ct, &mut q, 0);
    assert_eq!(
        ct.dump(10 * SEC)[0]
            .split(' ')
            .filter(|s| !s.is_empty())
            .nth(2),
        Some("20")
    );
    // Expired at 30 s: gone from the dump, and the next packet is NEW.
    assert_eq!(ct.dump(30 * SEC).len(), 0);
    let n = rx(
        &mut ct,
        &mut udp("10.0.0.1", 5000, "10.0.0.2", 53),
        31 * SEC,
    )
    .unwrap();
    assert_eq!(n.info, IpConntrackInfo::New);
    rx(
        &mut ct,
        &mut udp("10.0.0.2", 53, "10.0.0.1", 5000),
        32 * SEC,
    );
    rx(
        &mut ct,
        &mut udp("10.0.0.1", 5000, "10.0.0.2", 53),
        34 * SEC,
    );
    assert_eq!(
        ct.dump(34 * SEC),
        ["udp      17 120 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 src=10.0.0.2 dst=10.0.0.1 sport=53 dport=5000 [ASSURED] mark=0 use=1"]
    );
}

#[test]
fn table_full_early_drops_unassured_then_drops() {
    let mut ct = Conntrack::new(1);
    rx(&mut ct, &mut udp("10.0.0.1", 1, "10.0.0.2", 53), 0);
    // The first (unreplied) entry makes room for the second.
    let n = rx(&mut ct, &mut udp("10.0.0.1", 2, "10.0.0.2", 53), 0).unwrap();
    assert_eq!((ct.count(), ct.stats.early_drop), (1, 1));
    // Make it ASSURED: nothing may be evicted, the next new flow is dropped.
    rx(&mut ct, &mut udp("10.0.0.2", 53, "10.0.0.1", 2), SEC);
    rx(&mut ct, &mut udp("10.0.0.1", 2, "10.0.0.2", 53), 4 * SEC);
    assert!(ct.get(n.id).unwrap().status & 4 != 0);
    let (mut mark, mut nfct) = (0, None);
    let mut pkt = udp("10.0.0.1", 3, "10.0.0.2", 53);
    let mut skb = NfSkb {
        pkt: &mut pkt,
        mark: &mut mark,
        nfct: &mut nfct,
    };
    assert_eq!(
        nf_conntrack_in(&mut ct, &mut skb, &state(NfHook::PreRouting, 5 * SEC)),
        NfVerdict::Drop
    );
    assert_eq!((ct.stats.drop, ct.stats.early_drop), (1, 1));
}

fn range(addr: &str, port: u16) -> NfNatRange2 {
    let a: IpAddr = addr.parse().unwrap();
    NfNatRange2 {
        flags: NF_NAT_RANGE_MAP_IPS
            | if port != 0 {
                NF_NAT_RANGE_PROTO_SPECIFIED
            } else {
                0
            },
        min_addr: a,
        max_addr: a,
        min_proto: port,
        max_proto: port,
        base_proto: 0,
    }
}

/// A forwarded packet: PREROUTING (conntrack, DNAT), POSTROUTING (SNAT,
/// confirm), with `pre`/`post` the nat table's choices.
fn forward(
    ct: &mut Conntrack,
    pkt: &mut Vec<u8>,
    now: u64,
    pre: Option<NatTarget>,
    post: Option<NatTarget>,
    devs: &dyn NatDevices,
) -> Option<NfCt> {
    let (mut mark, mut nfct) = (0u32, None);
    let mut skb = NfSkb {
        pkt,
        mark: &mut mark,
        nfct: &mut nfct,
    };
    let st = state(NfHook::PreRouting, now);
    assert_eq!(nf_conntrack_in(ct, &mut skb, &st), NfVerdict::Accept);
    let v = nf_nat_fn(ct, &mut skb, &st, NfNatManipType::Dst, &mut |_, _| {
        (NfVerdict::Accept, pre)
    });
    assert_eq!(v, NfVerdict::Accept);
    let st = state(NfHook::PostRouting, now);
    let v = nf_nat_fn_dev(ct, &mut skb, &st, NfNatManipType::Src, devs, &mut |_, _| {
        (NfVerdict::Accept, post)
    });
    assert_eq!(v, NfVerdict::Accept);
    assert_eq!(nf_conntrack_confirm(ct, &mut skb, &st), NfVerdict::Accept);
    nfct
}

struct Devs;
impl NatDevices for Devs {
    fn masquerade_addr(&self, out: u32, _: IpAddr) -> Option<IpAddr> {
        (out == 3).then(|| "192.168.0.1".parse().unwrap())
    }
    fn primary_addr(&self, _: u32, _: NfProto) -> Option<IpAddr> {
        None
    }
}

#[test]
fn dnat_to_a_backend_and_the_reply_back() {
    let mut ct = Conntrack::default();
    let mut q = udp("10.0.0.1", 40000, "10.96.0.10", 53);
    let n = forward(
        &mut ct,
        &mut q,
        0,
        Some(NatTarget::Dnat(range("10.244.1.5", 5353))),
        None,
        &Devs,
    )
    .unwrap();
    // The packet as built for the backend, checksums included.
    assert_eq!(q, udp("10.0.0.1", 40000, "10.244.1.5", 5353));
    assert_eq!(xt::ctstate(&ct, &Some(n)), 8 | xt::XT_CONNTRACK_STATE_DNAT);
    let mut r = udp("10.244.1.5", 5353, "10.0.0.1", 40000);
    let rn = forward(&mut ct, &mut r, SEC, None, None, &Devs).unwrap();
    assert_eq!(rn.info, IpConntrackInfo::EstablishedReply);
    assert_eq!(r, udp("10.96.0.10", 53, "10.0.0.1", 40000));
    assert_eq!(
        ct.dump(SEC),
        ["udp      17 30 src=10.0.0.1 dst=10.96.0.10 sport=40000 dport=53 src=10.244.1.5 dst=10.0.0.1 sport=5353 dport=40000 mark=0 use=1"]
    );
}

#[test]
fn masquerade_keeps_the_port_until_it_clashes() {
    let mut ct = Conntrack::default();
    let masq = Some(NatTarget::Masquerade(range("0.0.0.0", 0)));
    let mut a = tcp("10.1.0.1", 40000, "1.1.1.1", 80, SYN, 1, 0);
    forward(&mut ct, &mut a, 0, None, masq, &Devs);
    assert_eq!(a, tcp("192.168.0.1", 40000, "1.1.1.1", 80, SYN, 1, 0));
    // Another client with the same source port: the tuple is taken, a new
    // port is searched from a random offset in 1024-65535.
    let mut b = tcp("10.1.0.2", 40000, "1.1.1.1", 80, SYN, 1, 0);
    let n = forward(&mut ct, &mut b, 0, None, masq, &Devs).unwrap();
    let port = u16::from_be_bytes([b[20], b[21]]);
    assert!(port >= 1024 && port != 40000, "port {port}");
    assert_eq!(b, tcp("192.168.0.1", port, "1.1.1.1", 80, SYN, 1, 0));
    assert_eq!(ct.stats.found, 1);
    let reply = ct.get(n.id).unwrap().tuplehash[1];
    assert_eq!(
        (reply.dst, reply.dst_u),
        ("192.168.0.1".parse().unwrap(), port)
    );
    assert_eq!(xt::ctstate(&ct, &Some(n)), 8 | xt::XT_CONNTRACK_STATE_SNAT);
}

#[test]
fn icmp_error_is_related_and_translated() {
    let mut ct = Conntrack::default();
    let mut q = udp("10.0.0.1", 40000, "10.96.0.10", 53);
    forward(
        &mut ct,
        &mut q,
        0,
        Some(NatTarget::Dnat(range("10.244.1.5", 5353))),
        None,
        &Devs,
    );
    // The backend answers with port unreachable, quoting the DNATed packet.
    let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&q);
    let mut err = ipv4("10.244.1.5", "10.0.0.1", 1, icmp);
    let n = forward(&mut ct, &mut err, SEC, None, None, &Devs).unwrap();
    assert_eq!(n.info, IpConntrackInfo::RelatedReply);
    assert_eq!(xt::ctstate(&ct, &Some(n)) & 0xff, 4);
    // What the client sees: an error from the VIP about its own packet.
    let mut want_icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    want_icmp.extend_from_slice(&udp("10.0.0.1", 40000, "10.96.0.10", 53));
    assert_eq!(err, ipv4("10.96.0.10", "10.0.0.1", 1, want_icmp));
}

#[test]
fn connmark_save_restore_and_notrack() {
    let mut ct = Conntrack::default();
    let n = rx(&mut ct, &mut udp("10.0.0.1", 1, "10.0.0.2", 2), 0);
    let mut mark = 0x55;
    xt::connmark_target(
        &mut ct,
        &n,
        &mut mark,
        ConnmarkMode::Save {
            ctmask: !0,
            nfmask: !0,
        },
    );
    assert_eq!(xt::connmark(&ct, &n), Some(0x55));
    let mut other = 0xff00;
    xt::connmark_target(
        &mut ct,
        &n,
        &mut other,
        ConnmarkMode::Restore {
            ctmask: 0xf,
            nfmask: 0xff,
        },
    );
    assert_eq!(other, 0xff05);
    assert_eq!(
        ct.dump(0),
        ["udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 mark=85 use=1"]
    );
    let mut u = None;
    xt::notrack(&mut u);
    let (mut m, mut pkt) = (0, udp("10.0.0.1", 9, "10.0.0.2", 9));
    let mut skb = NfSkb {
        pkt: &mut pkt,
        mark: &mut m,
        nfct: &mut u,
    };
    nf_conntrack_in(&mut ct, &mut skb, &state(NfHook::PreRouting, 0));
    assert_eq!(xt::ctstate(&ct, &u), xt::XT_CONNTRACK_STATE_UNTRACKED);
    assert_eq!(ct.count(), 1);
}

fn udp6(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    use skiff_wire::checksum::pseudo_header_v6;
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&12u16.to_be_bytes());
    p[6] = UDP;
    p[7] = 64;
    p[8..24].copy_from_slice(&s.octets());
    p[24..40].copy_from_slice(&d.octets());
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(b"data");
    let c = fold(sum(&u, pseudo_header_v6(s, d, UDP, 12)));
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&u);
    p
}

#[test]
fn ipv6_dnat_checksum_matches_a_fresh_packet() {
    let mut ct = Conntrack::default();
    let mut pkt = udp6("fd00::1", 40000, "fd00:96::10", 53);
    let (mut mark, mut nfct) = (0u32, None);
    let mut skb = NfSkb {
        pkt: &mut pkt,
        mark: &mut mark,
        nfct: &mut nfct,
    };
    let st = NfHookState {
        pf: NfProto::Ipv6,
        ..state(NfHook::PreRouting, 0)
    };
    assert_eq!(nf_conntrack_in(&mut ct, &mut skb, &st), NfVerdict::Accept);
    let target = Some(NatTarget::Dnat(range("fd00:244::5", 5353)));
    let v = nf_nat_fn(&mut ct, &mut skb, &st, NfNatManipType::Dst, &mut |_, _| {
        (NfVerdict::Accept, target)
    });
    assert_eq!(v, NfVerdict::Accept);
    assert_eq!(pkt, udp6("fd00::1", 40000, "fd00:244::5", 5353));
}

#[test]
fn snat_of_an_echo_request_keeps_its_id_when_free() {
    let mut ct = Conntrack::default();
    let echo = |src: &str, id: u16| {
        let mut icmp = vec![8u8, 0, 0, 0, 0, 0, 0, 1];
        icmp[4..6].copy_from_slice(&id.to_be_bytes());
        ipv4(src, "1.1.1.1", 1, icmp)
    };
    let snat = Some(NatTarget::Snat(range("192.168.0.1", 0)));
    let mut a = echo("10.1.0.1", 0x1234);
    forward(&mut ct, &mut a, 0, None, snat, &Devs);
    assert_eq!(a, echo("192.168.0.1", 0x1234));
    // The same id from another host: the id moves (ICMP ids search 0-65535).
    let mut b = echo("10.1.0.2", 0x1234);
    forward(&mut ct, &mut b, 0, None, snat, &Devs);
    let id = u16::from_be_bytes([b[24], b[25]]);
    assert_ne!(id, 0x1234);
    assert_eq!(b, echo("192.168.0.1", id));
    assert_eq!(ct.dump(0).len(), 2);
}

#[test]
fn an_unconfirmed_entry_whose_packet_vanished_is_freed() {
    let mut ct = Conntrack::default();
    // PREROUTING only: the packet is dropped later without nf_ct_put.
    let (mut mark, mut nfct) = (0u32, None);
    let mut pkt = udp("10.0.0.1", 1, "10.0.0.2", 2);
    let mut skb = NfSkb {
        pkt: &mut pkt,
        mark: &mut mark,
        nfct: &mut nfct,
    };
    nf_conntrack_in(&mut ct, &mut skb, &state(NfHook::PreRouting, 0));
    assert_eq!(ct.count(), 1);
    // Within the grace time it stays; after it, the next allocation frees it.
    rx(
        &mut ct,
        &mut udp("10.0.0.1", 3, "10.0.0.2", 4),
        1_000_000_000,
    );
    assert_eq!(ct.count(), 2);
    rx(
        &mut ct,
        &mut udp("10.0.0.1", 5, "10.0.0.2", 6),
        1_000_000_001,
    );
    assert_eq!((ct.count(), ct.dump(1_000_000_001).len()), (2, 2));
}
