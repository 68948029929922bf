//! Netfilter in the host stack: the hooks run at the kernel's places, in
//! priority order, and a hook's drop is NETFILTER_DROP.

use std::net::IpAddr;

use skiff_net::netfilter::x_tables::{Policy, TableTemplate, XtCounters};
use skiff_net::netfilter::{NfHook, NfProto, TableId};
use skiff_net::stack::*;
use skiff_net::DropReason;
use skiff_wire::{checksum, EthernetRepr, Ipv4Packet, Ipv4Repr, UdpPacket, IPPROTO_UDP};

const A0: u32 = 10;
const B0: u32 = 12;
const MAC_A0: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B0: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
const PEER: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
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
    s.add_neighbour(B0, v4("10.2.0.5"), PEER).unwrap();
    s.set_forwarding(true, true);
    s
}

/// Ethernet + IPv4 + UDP to `dst`:53 with 4 payload bytes (32 bytes of L3).
fn udp_frame(dst: [u8; 4]) -> Vec<u8> {
    let src = [10, 1, 0, 5];
    let mut u = vec![0u8; 8];
    u.extend_from_slice(b"abcd");
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(4000);
    p.set_dst_port(53);
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
        ttl: 64,
        ident: 1,
        dont_frag: true,
        payload_len: u.len(),
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]));
    ip.extend_from_slice(&u);
    let mut f = EthernetRepr {
        src_addr: PEER,
        dst_addr: MAC_A0,
        ethertype: skiff_wire::ETH_P_IP,
    }
    .to_frame(ip.len());
    f.extend_from_slice(&ip);
    f
}

fn meta() -> RxMeta {
    RxMeta {
        mark: 0,
        pkt_type: PACKET_HOST,
        now_ns: 0,
    }
}

/// A table on one hook whose built-in chain has `policy`, registered at `prio`.
fn add_table(s: &mut HostStack, name: &str, hook: NfHook, prio: i32, policy: Policy) -> usize {
    let hooks: &'static [NfHook] = std::slice::from_ref(Box::leak(Box::new(hook)));
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let t = TableTemplate {
        name,
        hooks,
        priority: prio,
    };
    let nf = s.netfilter_mut();
    let TableId(t) = nf.table(NfProto::Ipv4, &t).unwrap();
    nf.tables[t].chains[0].policy = Some(policy);
    t
}

fn policy_counters(s: &HostStack, t: usize) -> XtCounters {
    s.netfilter().tables[t].chains[0].policy_counters
}

#[test]
fn input_policy_drop_is_netfilter_drop_in_priority_order() {
    let mut s = stack();
    // Registered out of order: nat (100) first, filter (0), mangle (-150).
    let late = add_table(&mut s, "late", NfHook::LocalIn, 100, Policy::Accept);
    let filter = add_table(&mut s, "filter", NfHook::LocalIn, 0, Policy::Drop);
    let mangle = add_table(&mut s, "mangle", NfHook::LocalIn, -150, Policy::Accept);
    let mut out = Vec::new();
    let fate = s.receive(A0, &udp_frame([10, 1, 0, 1]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Dropped(DropReason::NetfilterDrop));
    assert!(out.is_empty());
    assert_eq!(
        policy_counters(&s, mangle),
        XtCounters { pcnt: 1, bcnt: 32 }
    );
    assert_eq!(
        policy_counters(&s, filter),
        XtCounters { pcnt: 1, bcnt: 32 }
    );
    assert_eq!(policy_counters(&s, late), XtCounters { pcnt: 0, bcnt: 0 });
    assert_eq!(s.sinks().udp.get(&53), None);
}

#[test]
fn accepting_hooks_deliver_and_forward_as_without_them() {
    let mut s = stack();
    let pre = add_table(&mut s, "raw", NfHook::PreRouting, -300, Policy::Accept);
    let inp = add_table(&mut s, "filter", NfHook::LocalIn, 0, Policy::Accept);
    let fwd = add_table(&mut s, "filter", NfHook::Forward, 0, Policy::Accept);
    let post = add_table(&mut s, "nat", NfHook::PostRouting, 100, Policy::Accept);
    let mut out = Vec::new();
    let fate = s.receive(A0, &udp_frame([10, 1, 0, 1]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Delivered(Delivery::Udp { port: 53 }));
    let fate = s.receive(A0, &udp_frame([10, 2, 0, 5]), meta(), 2, &mut out);
    assert_eq!(fate, Fate::Forwarded);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ifindex, B0);
    assert_eq!(&out[0].frame[..6], &PEER);
    // TTL decreased before FORWARD (ip_forward), the rest unchanged.
    let mut want = udp_frame([10, 2, 0, 5])[14..].to_vec();
    Ipv4Packet::new_unchecked(&mut want[..]).decrease_ttl();
    assert_eq!(&out[0].frame[14..], &want[..]);
    assert_eq!(policy_counters(&s, pre), XtCounters { pcnt: 2, bcnt: 64 });
    assert_eq!(policy_counters(&s, inp), XtCounters { pcnt: 1, bcnt: 32 });
    assert_eq!(policy_counters(&s, fwd), XtCounters { pcnt: 1, bcnt: 32 });
    assert_eq!(policy_counters(&s, post), XtCounters { pcnt: 1, bcnt: 32 });
}

#[test]
fn forward_drop_sends_nothing_and_prerouting_drop_stops_before_routing() {
    let mut s = stack();
    add_table(&mut s, "filter", NfHook::Forward, 0, Policy::Drop);
    let mut out = Vec::new();
    let fate = s.receive(A0, &udp_frame([10, 2, 0, 5]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Dropped(DropReason::NetfilterDrop));
    assert!(out.is_empty());
    let mut s = stack();
    add_table(&mut s, "raw", NfHook::PreRouting, -300, Policy::Drop);
    // No route to 10.9.0.9: without the hook, ICMP unreachable would be sent.
    let fate = s.receive(A0, &udp_frame([10, 9, 0, 9]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Dropped(DropReason::NetfilterDrop));
    assert!(out.is_empty());
}

#[test]
fn local_out_drop_stops_the_stack_s_own_replies() {
    let mut s = stack();
    add_table(&mut s, "filter", NfHook::LocalOut, 0, Policy::Drop);
    s.set_listening(Some(Default::default()));
    let mut out = Vec::new();
    // UDP to a closed port: port unreachable would go out; LOCAL_OUT drops it.
    let fate = s.receive(A0, &udp_frame([10, 1, 0, 1]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Dropped(DropReason::NoSocket));
    assert!(out.is_empty());
}

// ---- the rule engine through the stack -----------------------------------

use skiff_net::netfilter::ip_tables::IptIp;
use skiff_net::netfilter::ipt_reject::RejectWith;
use skiff_net::netfilter::targets::XtTarget;
use skiff_net::netfilter::x_tables::{table_template, XtChain, XtRule};
use skiff_net::netfilter::xt_mark::{XtMarkMatch, XtMarkTarget};
use skiff_net::netfilter::xt_match::XtMatch;
use skiff_net::netfilter::xt_statistic::XtStatistic;
use skiff_net::netfilter::xt_tcpudp::XtUdp;

fn rule(ip: IptIp, matches: Vec<XtMatch>, target: XtTarget) -> XtRule {
    XtRule {
        ip,
        matches,
        target,
        counters: XtCounters::default(),
    }
}

/// The filter table of `s` with a user chain `name` added; (table, INPUT, user chain).
fn filter_with_chain(s: &mut HostStack, name: &str) -> (usize, usize, usize) {
    let nf = s.netfilter_mut();
    let TableId(t) = nf
        .table(NfProto::Ipv4, table_template("filter").unwrap())
        .unwrap();
    let table = &mut nf.tables[t];
    table.chains.push(XtChain::new(name, None));
    let input = table.chain_index("INPUT").unwrap();
    (t, input, table.chains.len() - 1)
}

#[test]
fn jump_return_goto_and_counters() {
    let mut s = stack();
    let (t, input, user) = filter_with_chain(&mut s, "USER");
    let udp53 = XtMatch::Udp(XtUdp {
        spts: (0, 0xffff),
        dpts: (53, 53),
        invflags: 0,
    });
    {
        let table = &mut s.netfilter_mut().tables[t];
        // INPUT: jump USER; then mark 7 (reached after USER returns); policy ACCEPT.
        table.chains[input].rules = vec![
            rule(IptIp::default(), vec![], XtTarget::Jump(user)),
            rule(
                IptIp::default(),
                vec![],
                XtTarget::Mark(XtMarkTarget {
                    mark: 7,
                    mask: u32::MAX,
                }),
            ),
            rule(
                IptIp::default(),
                vec![XtMatch::Mark(XtMarkMatch {
                    mark: 7,
                    mask: 0xff,
                    invert: false,
                })],
                XtTarget::Drop,
            ),
        ];
        // USER: udp dport 53 -> RETURN; anything else falls off the end.
        table.chains[user].rules = vec![rule(IptIp::default(), vec![udp53], XtTarget::Return)];
    }
    let mut out = Vec::new();
    let fate = s.receive(A0, &udp_frame([10, 1, 0, 1]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Dropped(DropReason::NetfilterDrop));
    let table = &s.netfilter().tables[t];
    let counts: Vec<u64> = table.chains[input]
        .rules
        .iter()
        .map(|r| r.counters.pcnt)
        .collect();
    assert_eq!(counts, vec![1, 1, 1]);
    assert_eq!(
        table.chains[user].rules[0].counters,
        XtCounters { pcnt: 1, bcnt: 32 }
    );
    assert_eq!(table.chains[input].policy_counters.pcnt, 0);

    // A goto to USER: its end (no RETURN match for port 54) goes to the
    // policy of INPUT, not back to INPUT's next rule.
    let mut s = stack();
    let (t, input, user) = filter_with_chain(&mut s, "USER");
    {
        let table = &mut s.netfilter_mut().tables[t];
        table.chains[input].rules = vec![
            rule(IptIp::default(), vec![], XtTarget::Goto(user)),
            rule(IptIp::default(), vec![], XtTarget::Drop),
        ];
    }
    let fate = s.receive(A0, &udp_frame([10, 1, 0, 1]), meta(), 1, &mut out);
    assert_eq!(fate, Fate::Delivered(Delivery::Udp { port: 53 }));
    let table = &s.netfilter().tables[t];
    assert_eq!(table.chains[input].rules[1].counters.pcnt, 0);
    assert_eq!(
        table.chains[input].policy_counters,
        XtCounters { pcnt: 1, bcnt: 32 }
    );
}

#[test]
fn statistic_nth_every_2_matches_the_first_and_third() {
    let mut s = stack();
    let (t, input, _) = filter_with_chain(&mut s, "USER");
    s.netfilter_mut().tables[t].chains[input].rules = vec![rule(
        IptIp::default(),
        vec![XtMatch::Statistic(XtStatistic::nth(2, 0, false))],
        XtTarget::Drop,
    )];
    let mut out = Vec::new();
    let fates: Vec<Fate> = (0..4)
        .map(|i| s.receive(A0, &udp_frame([10, 1, 0, 1]), meta(), i, &mut out))
        .collect();
    let drop = Fate::Dropped(DropReason::NetfilterDrop);
    let ok = Fate::Delivered(Delivery::Udp { port: 53 });
    assert_eq!(fates, vec![drop, ok, drop, ok]);
}

#[test]
fn reject_sends_port_unreachable_quoting_the_packet() {
    let mut s = stack();
    s.add_neighbour(A0, v4("10.1.0.5"), PEER).unwrap();
    let (t, input, _) = filter_with_chain(&mut s, "USER");
    s.netfilter_mut().tables[t].chains[input].rules = vec![rule(
        IptIp::default(),
        vec![],
        XtTarget::Reject(RejectWith::IcmpUnreach(3)),
    )];
    let mut out = Vec::new();
    let f = udp_frame([10, 1, 0, 1]);
    let fate = s.receive(A0, &f, meta(), 1, &mut out);
    assert_eq!(fate, Fate::Dropped(DropReason::NetfilterDrop));
    assert_eq!(out.len(), 1);
    let o = &out[0].frame;
    assert_eq!(out[0].ifindex, A0);
    assert_eq!(&o[..6], &PEER);
    let ip = Ipv4Packet::new_checked(&o[14..]).unwrap();
    assert_eq!(ip.src_addr(), std::net::Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(ip.dst_addr(), std::net::Ipv4Addr::new(10, 1, 0, 5));
    assert_eq!(ip.protocol(), 1);
    let icmp = ip.payload();
    assert_eq!(&icmp[..2], &[3, 3]);
    assert_eq!(&icmp[8..], &f[14..]);
}
