//! Conntrack and NAT inside the host stack: a forwarding namespace with a
//! nat table MASQUERADE rule rewrites the client's datagram on the way out,
//! undoes it for the reply, and its table shows the connection as the
//! kernel's `conntrack -L` would.

use std::net::IpAddr;

use skiff_net::netfilter::nat::{NatTarget, NfNatRange2, NF_NAT_RANGE_MAP_IPS};
use skiff_net::netfilter::targets::XtTarget;
use skiff_net::netfilter::x_tables::{table_template, XtRule};
use skiff_net::netfilter::{NfHook, NfProto};
use skiff_net::stack::*;
use skiff_wire::{checksum, EthernetRepr, Ipv4Packet, Ipv4Repr, UdpPacket, IPPROTO_UDP};

const A0: u32 = 10;
const B0: u32 = 12;
const MAC_A0: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B0: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
const SERVER: [u8; 6] = [2, 0, 0, 0, 0, 0x5e];

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

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
    s.add_address(A0, v4("10.1.0.1"), 24).unwrap();
    s.add_address(B0, v4("10.2.0.1"), 24).unwrap();
    s.add_neighbour(A0, v4("10.1.0.5"), CLIENT).unwrap();
    s.add_neighbour(B0, v4("10.2.0.5"), SERVER).unwrap();
    s.set_forwarding(true, true);
    s
}

/// The L3 part: IPv4 + UDP with 4 payload bytes, checksums filled.
fn udp_ip(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ttl: u8) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u.extend_from_slice(b"abcd");
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(sport);
    p.set_dst_port(dport);
    p.set_length(12);
    let pseudo = checksum::pseudo_header_v4(src.into(), dst.into(), IPPROTO_UDP, 12);
    let c = checksum::fold(checksum::sum(&u, pseudo));
    UdpPacket::new_unchecked(&mut u[..]).set_checksum(c);
    let mut ip = vec![0u8; 20];
    Ipv4Repr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        protocol: IPPROTO_UDP,
        tos: 0,
        ttl,
        ident: 7,
        dont_frag: true,
        payload_len: u.len(),
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]));
    ip.extend_from_slice(&u);
    ip
}

fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: skiff_wire::ETH_P_IP,
    }
    .to_frame(ip.len());
    f.extend_from_slice(ip);
    f
}

fn meta(now_ns: u64) -> RxMeta {
    RxMeta {
        mark: 0,
        pkt_type: PACKET_HOST,
        now_ns,
    }
}

#[test]
fn masquerade_out_and_back_through_the_stack() {
    let mut s = stack();
    let nf = s.netfilter_mut();
    let nat = nf
        .table(NfProto::Ipv4, table_template("nat").unwrap())
        .unwrap();
    let t = &mut nf.tables[nat.0];
    let post = t.hook_chain[NfHook::PostRouting.index()].unwrap();
    let any: IpAddr = v4("0.0.0.0");
    t.chains[post].rules.push(XtRule {
        ip: Default::default(),
        matches: vec![],
        target: XtTarget::Nat(NatTarget::Masquerade(NfNatRange2 {
            flags: NF_NAT_RANGE_MAP_IPS,
            min_addr: any,
            max_addr: any,
            min_proto: 0,
            max_proto: 0,
            base_proto: 0,
        })),
        counters: Default::default(),
    });
    let mut out = Vec::new();
    let q = frame(
        CLIENT,
        MAC_A0,
        &udp_ip([10, 1, 0, 5], 4000, [10, 2, 0, 5], 53, 64),
    );
    assert_eq!(s.receive(A0, &q, meta(0), 1, &mut out), Fate::Forwarded);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ifindex, B0);
    // Masqueraded to b0's address, TTL one less, checksums as built fresh.
    let want = udp_ip([10, 2, 0, 1], 4000, [10, 2, 0, 5], 53, 63);
    assert_eq!(&out[0].frame[14..], &want[..]);
    let r = frame(
        SERVER,
        MAC_B0,
        &udp_ip([10, 2, 0, 5], 53, [10, 2, 0, 1], 4000, 64),
    );
    out.clear();
    assert_eq!(
        s.receive(B0, &r, meta(1_000_000_000), 2, &mut out),
        Fate::Forwarded
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ifindex, A0);
    let want = udp_ip([10, 2, 0, 5], 53, [10, 1, 0, 5], 4000, 63);
    assert_eq!(&out[0].frame[14..], &want[..]);
    let ct = &mut s.netfilter_mut().conntrack;
    assert_eq!(
        ct.dump(1_000_000_000),
        ["udp      17 30 src=10.1.0.5 dst=10.2.0.5 sport=4000 dport=53 src=10.2.0.5 dst=10.2.0.1 sport=53 dport=4000 mark=0 use=1"]
    );
}
