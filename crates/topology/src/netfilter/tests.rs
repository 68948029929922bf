use super::*;
use skiff_net::netfilter::ip_tables::{IfMatch, IptIp, IPT_INV_SRCIP};
use skiff_net::netfilter::nat::{
    NatTarget, NfNatRange2, NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_RANDOM_FULLY,
    NF_NAT_RANGE_PROTO_SPECIFIED,
};
use skiff_net::netfilter::targets::XtTarget;
use skiff_net::netfilter::xt_mark::{XtMarkMatch, XtMarkTarget};
use skiff_net::netfilter::xt_match::XtMatch;
use skiff_net::netfilter::xt_statistic::{StatisticMode, XtStatistic};
use skiff_net::netfilter::xt_tcpudp::XtTcp;
use skiff_net::netfilter::NfHook;

fn v4(line: &str) -> IptCommand {
    parse_line(line, NfProto::Ipv4).unwrap()
}

fn rule(c: &IptCommand) -> &RuleSpec {
    match &c.op {
        IptOp::Append { rule, .. } | IptOp::Insert { rule, .. } => rule,
        o => panic!("not a rule: {o:?}"),
    }
}

#[test]
fn kube_proxy_service_rule() {
    let c = v4("-t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-ABC");
    assert_eq!(c.table, "nat");
    let r = rule(&c);
    assert_eq!(r.ip.dst, Some(("10.96.0.10".parse().unwrap(), 32)));
    assert_eq!(r.ip.proto, 6);
    assert_eq!(
        r.matches,
        vec![
            XtMatch::Comment("default/web:http cluster IP".into()),
            XtMatch::Tcp(XtTcp {
                spts: (0, 0xffff),
                dpts: (80, 80),
                flg_mask: 0,
                flg_cmp: 0,
                invflags: 0
            })
        ]
    );
    assert_eq!(r.target, TargetSpec::Jump("KUBE-SVC-ABC".into()));
}

#[test]
fn statistic_mark_masquerade_and_dnat() {
    let c = v4("-t nat -A KUBE-SVC-ABC -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1");
    assert_eq!(
        rule(&c).matches,
        vec![XtMatch::Statistic(XtStatistic {
            mode: StatisticMode::Random {
                probability: 715827883
            },
            invert: false
        })]
    );
    let c = v4("-t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN");
    assert_eq!(
        rule(&c).matches,
        vec![XtMatch::Mark(XtMarkMatch {
            mark: 0x4000,
            mask: 0x4000,
            invert: true
        })]
    );
    let c = v4("-t nat -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000");
    assert_eq!(
        rule(&c).target,
        TargetSpec::Builtin(XtTarget::Mark(XtMarkTarget {
            mark: 0x4000,
            mask: 0x4000
        }))
    );
    let c = v4("-t nat -A KUBE-POSTROUTING -j MASQUERADE --random-fully");
    let zero = IpAddr::from([0u8; 4]);
    assert_eq!(
        rule(&c).target,
        TargetSpec::Builtin(XtTarget::Nat(NatTarget::Masquerade(NfNatRange2 {
            flags: NF_NAT_RANGE_PROTO_RANDOM_FULLY,
            min_addr: zero,
            max_addr: zero,
            min_proto: 0,
            max_proto: 0,
            base_proto: 0
        })))
    );
    let c = v4("-t nat -A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080");
    let a: IpAddr = "10.244.1.5".parse().unwrap();
    assert_eq!(
        rule(&c).target,
        TargetSpec::Builtin(XtTarget::Nat(NatTarget::Dnat(NfNatRange2 {
            flags: NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED,
            min_addr: a,
            max_addr: a,
            min_proto: 8080,
            max_proto: 8080,
            base_proto: 0
        })))
    );
}

use std::net::IpAddr;

#[test]
fn addresses_interfaces_and_inversions() {
    let c = v4("-A FORWARD ! -s 10.0.0.0/255.255.0.0 -i veth+ -o eth0 -j DROP");
    let r = rule(&c);
    assert_eq!(
        r.ip,
        IptIp {
            src: Some(("10.0.0.0".parse().unwrap(), 16)),
            iniface: Some(IfMatch::parse("veth+")),
            outiface: Some(IfMatch::parse("eth0")),
            invflags: IPT_INV_SRCIP,
            ..IptIp::default()
        }
    );
    assert_eq!(IfMatch::parse("veth+").to_text(), "veth+");
    assert_eq!(IfMatch::parse("eth0").to_text(), "eth0");
    assert_eq!(r.target, TargetSpec::Builtin(XtTarget::Drop));
}

#[test]
fn errors_name_the_word() {
    let e = parse_line("-A INPUT -m hashlimit --hashlimit 5 -j DROP", NfProto::Ipv4).unwrap_err();
    assert_eq!(e.word, Some(3));
    assert!(
        e.msg.starts_with("not supported: the match `hashlimit'"),
        "{}",
        e.msg
    );
    let e = parse_line("-A INPUT -j TPROXY", NfProto::Ipv4).unwrap_err();
    assert_eq!(
        (e.word, e.msg.as_str()),
        (Some(3), "not supported: the target `TPROXY'")
    );
    let e = parse_line("-A INPUT -s 10.0.0.300 -j DROP", NfProto::Ipv4).unwrap_err();
    assert_eq!(
        (e.word, e.msg.as_str()),
        (Some(3), "host/network `10.0.0.300' not found")
    );
    let e = parse_line("-A INPUT -p udp --dport 53 --syn -j DROP", NfProto::Ipv4).unwrap_err();
    assert_eq!(e.word, Some(6));
}

#[test]
fn apply_chains_and_errors() {
    let mut nf = Netfilter::new();
    let lines = [
        "-t nat -N KUBE-SERVICES",
        "-t nat -A PREROUTING -j KUBE-SERVICES",
        "-t nat -A KUBE-SERVICES -d 10.96.0.1 -j RETURN",
        "-P FORWARD DROP",
    ];
    for l in lines {
        apply(&mut nf, &v4(l)).unwrap();
    }
    let nat = nf.find_table(NfProto::Ipv4, "nat").unwrap();
    let pre = nat.chain_index("PREROUTING").unwrap();
    assert_eq!(
        nat.chains[pre].rules[0].target,
        XtTarget::Jump(nat.chain_index("KUBE-SERVICES").unwrap())
    );
    let filter = nf.find_table(NfProto::Ipv4, "filter").unwrap();
    assert_eq!(
        filter.chains[filter.hook_chain[NfHook::Forward.index()].unwrap()].policy,
        Some(Policy::Drop)
    );
    assert_eq!(
        apply(&mut nf, &v4("-t nat -A KUBE-SERVICES -j KUBE-SERVICES")),
        Err("chain `KUBE-SERVICES' would jump to itself: Too many levels of symbolic links".into())
    );
    assert_eq!(
        apply(&mut nf, &v4("-A INPUT -j NOPE")),
        Err("`NOPE': No chain/target/match by that name".into())
    );
    assert_eq!(
        apply(&mut nf, &v4("-t bogus -A INPUT -j DROP")),
        Err("can't initialize iptables table `bogus': Table does not exist".into())
    );
}
