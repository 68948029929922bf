//! Topology files: the k8s-node example parses into the expected structs, every
//! validation error names its line, column and field, and objects load with their
//! pinned maps shared.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_topology::*;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/k8s-node")
}

fn parse(src: &str) -> Result<Topology, TopologyError> {
    Topology::parse(src, Path::new("t.toml"), &example_dir())
}

fn err(src: &str) -> String {
    match parse(src) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.to_string(),
    }
}

const HOST: &str = r#"
[netns.host]
[[netns.host.device]]
name = "eth0"
kind = "nic"
mac = "02:00:00:00:00:01"
"#;

#[test]
fn k8s_example_parses() {
    let t = Topology::load(&example_dir().join("topology.toml")).unwrap();
    let names: Vec<&str> = t.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["host", "pod1", "pod2"]);
    let host = &t.namespaces[0];
    assert!(host.forwarding);
    assert_eq!(host.devices.len(), 3);
    assert_eq!(host.devices[0].name, "eth0");
    assert_eq!(host.devices[0].kind, DeviceKind::Nic { rx_queues: 2 });
    assert_eq!(host.devices[0].mac, Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(host.devices[0].ifindex, Some(2));
    assert_eq!(host.devices[0].mtu, 1500);
    assert_eq!(
        host.devices[1].kind,
        DeviceKind::Netkit {
            peer_name: "eth0".into(),
            peer_ns: Some("pod1".into()),
            mode: NetkitMode::L3,
            policy: NetkitPolicy::Pass,
            peer_policy: NetkitPolicy::Drop,
            scrub: NetkitScrub::Default,
            peer_scrub: NetkitScrub::Default,
            peer_mac: None,
        }
    );
    assert_eq!(host.devices[1].peer_ifindex, None);
    assert_eq!(host.devices[1].mac, None);
    assert_eq!(
        host.routes[0],
        Route {
            dst: Cidr::parse("0.0.0.0/0").unwrap(),
            via: Some("192.168.1.1".parse().unwrap()),
            dev: Some("eth0".into()),
            table: 254,
            metric: 0,
            kind: RouteKind::Unicast,
            src: None,
            onlink: false,
        }
    );
    assert_eq!(host.neighbours[0].mac, [2, 0, 0, 0, 0, 0xfe]);
    assert_eq!(t.objects.len(), 3);
    assert_eq!(t.objects[0].attach[0].hook, Hook::Xdp(XdpMode::Native));
    assert_eq!(
        t.objects[1].attach[0].hook,
        Hook::Tc {
            dir: TcDirection::Ingress,
            prio: 0xC000,
            handle: 1
        }
    );
    assert_eq!(
        t.objects[2].attach[1],
        Attach {
            program: "k8s_from_pod".into(),
            netns: "host".into(),
            dev: "nk-pod1".into(),
            hook: Hook::Netkit {
                side: NetkitSide::Peer,
                order: MprogOrder::Append
            },
            loc: t.objects[2].attach[1].loc.clone(),
        }
    );
    // the blocked prefix entry: LPM key (prefixlen host order, address network order)
    assert_eq!(
        t.objects[0].maps[0].entries[0].key,
        vec![
            Piece::Bytes(vec![24, 0, 0, 0]),
            Piece::Bytes(vec![198, 51, 100, 0])
        ]
    );
    // endpoints is pinned by name in both objects that declare it
    assert_eq!(t.objects[1].maps[0].pin.as_deref(), Some("endpoints"));
    assert!(t.objects[2]
        .maps
        .iter()
        .any(|m| m.name == "endpoints" && m.pin.as_deref() == Some("endpoints")));
}

#[test]
fn pinned_maps_are_shared_across_objects() {
    let t = Topology::load(&example_dir().join("topology.toml")).unwrap();
    let ifindex = |ns: &str, dev: &str| match (ns, dev) {
        ("host", "nk-pod1") => Some(3),
        ("host", "nk-pod2") => Some(4),
        _ => None,
    };
    let objs = t.load_objects(1, &ifindex).unwrap();
    let tc = objs[1].map("endpoints").unwrap();
    let pod = objs[2].map("endpoints").unwrap();
    assert!(Arc::ptr_eq(tc, pod));
    // not pinned: each object has its own
    assert!(objs[0].map("services").is_some());
    let v = tc.sys_lookup_raw(&[10, 0, 1, 12]).unwrap();
    assert_eq!(v, vec![4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1]);
    let b = objs[0]
        .map("backends")
        .unwrap()
        .sys_lookup_raw(&2u32.to_le_bytes())
        .unwrap();
    assert_eq!(b, vec![10, 0, 1, 12, 0x14, 0xe9, 0, 0]);
    // the programs reference the shared map
    let from_pod = objs[2].program("k8s_from_pod").unwrap();
    assert!(from_pod.maps.iter().any(|m| Arc::ptr_eq(m, tc)));
}

#[test]
fn explicit_pin_and_mismatch() {
    // the same object twice, its `services` pinned under one name: shared
    let src = format!(
        "{HOST}\n[[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\nname = \"services\"\npin = \"svc\"\n\
         [[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\nname = \"services\"\npin = \"svc\"\n"
    );
    let t = parse(&src).unwrap();
    let objs = t.load_objects(1, &|_, _| None).unwrap();
    assert!(Arc::ptr_eq(
        objs[0].map("services").unwrap(),
        objs[1].map("services").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        objs[0].map("backends").unwrap(),
        objs[1].map("backends").unwrap()
    ));
    // two different maps under one pin name: libbpf's parameter mismatch
    let src = format!(
        "{HOST}\n[[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\nname = \"services\"\npin = \"x\"\n\
         [[object.map]]\nname = \"backends\"\npin = \"x\"\n"
    );
    let e = err(&src);
    assert!(
        e.starts_with("t.toml:14:8: object[0].map[1].name: couldn't reuse pinned map \"x\": parameter mismatch with the map pinned at line 11 (type 1/2, key 8/4, value 8/8, max_entries 256/64"),
        "{e}"
    );
}

#[test]
fn syntax_and_unknown_fields_name_the_line() {
    assert_eq!(
        err("[netns.host]\nforwarding = yes\n"),
        "t.toml:2:14: forwarding: string values must be quoted, expected literal string"
    );
    let e = err(
        "[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\ncolour = \"red\"\n",
    );
    assert!(
        e.starts_with("t.toml:5:1: colour: unknown field `colour`"),
        "{e}"
    );
    let e = err("[netns.host]\n[[netns.host.device]]\nkind = \"nic\"\n");
    assert!(
        e.starts_with("t.toml:2:1: netns.host.device: missing field `name`"),
        "{e}"
    );
}

#[test]
fn device_errors() {
    assert_eq!(
        err(&format!("{HOST}[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n")),
        "t.toml:8:8: netns.host.device[1].name: duplicate device name \"eth0\" in netns \"host\" (EEXIST)"
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\nmac = \"02:00:00:00:00\"\n"),
        "t.toml:5:7: netns.host.device[0].mac: bad MAC \"02:00:00:00:00\": want six hex bytes like 02:00:00:00:00:01"
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\nmac = \"01:00:5e:00:00:01\"\n"),
        "t.toml:5:7: netns.host.device[0].mac: bad MAC \"01:00:5e:00:00:01\": a multicast address cannot be a device's (is_valid_ether_addr: EADDRNOTAVAIL)"
    );
    assert_eq!(
        err(&format!("{HOST}ifindex = 1\n")),
        "t.toml:7:11: netns.host.device[0].ifindex: duplicate ifindex 1 in netns \"host\": \"lo\" has it (EBUSY)"
    );
    assert_eq!(
        err(&format!("{HOST}ifindex = 5\n[[netns.host.device]]\nname = \"eth1\"\nkind = \"nic\"\nifindex = 5\n")),
        "t.toml:11:11: netns.host.device[1].ifindex: duplicate ifindex 5 in netns \"host\": \"eth0\" has it (EBUSY)"
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"bridge\"\n"),
        "t.toml:4:8: netns.host.device[0].kind: \"bridge\" is not one of nic, veth, netkit, loopback"
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\npeer = \"x\"\n"),
        "t.toml:5:8: netns.host.device[0].peer: field `peer` does not apply to a nic device"
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"nk0\"\nkind = \"netkit\"\npeer = \"eth0\"\npeer_netns = \"pod9\"\n"),
        "t.toml:6:14: netns.host.device[0].peer_netns: unknown netns \"pod9\""
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"nk0\"\nkind = \"netkit\"\npeer = \"nk1\"\nmac = \"02:00:00:00:00:01\"\n"),
        "t.toml:6:7: netns.host.device[0].mac: a netkit device in l3 mode has no MAC (the kernel refuses to set one: EOPNOTSUPP); use mode = \"l2\""
    );
    assert_eq!(
        err("[netns.host]\n[[netns.host.device]]\nname = \"a-very-long-name0\"\nkind = \"nic\"\n"),
        "t.toml:3:8: netns.host.device[0].name: device name \"a-very-long-name0\" is 17 bytes; IFNAMSIZ allows 15"
    );
    // a veth peer that collides with a device of its namespace
    assert_eq!(
        err(&format!("{HOST}[[netns.host.device]]\nname = \"v0\"\nkind = \"veth\"\npeer = \"eth0\"\n")),
        "t.toml:10:8: netns.host.device[1].peer: duplicate device name \"eth0\" in netns \"host\" (EEXIST)"
    );
}

#[test]
fn address_route_rule_neighbour_errors() {
    assert_eq!(
        err(&format!("{HOST}[[netns.host.address]]\ndev = \"eth9\"\ncidr = \"10.0.0.1/24\"\n")),
        "t.toml:8:7: netns.host.address[0].dev: unknown device \"eth9\" in netns \"host\" (it has: eth0, lo)"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.address]]\ndev = \"eth0\"\ncidr = \"10.0.0.1/33\"\n")),
        "t.toml:9:8: netns.host.address[0].cidr: bad CIDR \"10.0.0.1/33\": prefix length \"33\" is not 0..=32"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.address]]\ndev = \"eth0\"\ncidr = \"10.0.0.300/24\"\n")),
        "t.toml:9:8: netns.host.address[0].cidr: bad CIDR \"10.0.0.300/24\": \"10.0.0.300\" is not an IPv4 or IPv6 address"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.route]]\ndst = \"10.1.0.1/24\"\ndev = \"eth0\"\n")),
        "t.toml:8:7: netns.host.route[0].dst: bad CIDR \"10.1.0.1/24\": invalid prefix for given prefix length (host bits set; EINVAL)"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.route]]\ndst = \"default\"\nvia = \"10.9.9.9\"\n")),
        "t.toml:9:7: netns.host.route[0].via: gateway 10.9.9.9 is not reachable: no address or device route covers it (ENETUNREACH: Nexthop has invalid gateway); add one or set onlink = true"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.route]]\ndst = \"10.1.0.0/16\"\ndev = \"eth0\"\ntable = \"mine\"\n")),
        "t.toml:10:9: netns.host.route[0].table: unknown table \"mine\": use a number or main, local, default"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.rule]]\nfrom = \"10.0.0.0/8\"\n")),
        "t.toml:7:1: netns.host.rule[0].table: a rule needs `table` (or action = blackhole, unreachable, prohibit)"
    );
    assert_eq!(
        err(&format!("{HOST}[[netns.host.neighbour]]\ndev = \"eth0\"\nip = \"10.0.0.1\"\nmac = \"zz:00:00:00:00:01\"\n")),
        "t.toml:10:7: netns.host.neighbour[0].mac: bad MAC \"zz:00:00:00:00:01\": want six hex bytes like 02:00:00:00:00:01"
    );
    // a default rule priority is one below the first existing one (32765, 32764 ...)
    let t = parse(&format!(
        "{HOST}[[netns.host.rule]]\ntable = 100\n[[netns.host.rule]]\ntable = 101\n[[netns.host.rule]]\npriority = 10\ntable = \"main\"\n"
    ))
    .unwrap();
    let p: Vec<u32> = t.namespaces[0].rules.iter().map(|r| r.priority).collect();
    assert_eq!(p, [32765, 32764, 10]);
}

fn attach(obj: &str, body: &str) -> String {
    // eth0 is in host and (the netkit peer) in pod: an attachment that names
    // no netns says host/eth0, as an ambiguous name is an error.
    let body = match body.contains("netns") {
        true => body.to_string(),
        false => body.replace("dev = \"eth0\"", "dev = \"host/eth0\""),
    };
    format!(
        "{HOST}[[netns.host.device]]\nname = \"nk0\"\nkind = \"netkit\"\npeer = \"eth0\"\npeer_netns = \"pod\"\n\
         [netns.pod]\n[[object]]\npath = \"{obj}\"\n[[object.attach]]\n{body}"
    )
}

#[test]
fn attach_errors() {
    // line of `[[object]]` path is 14, attach body starts on line 16
    assert_eq!(
        err(&attach("nope.o", "program = \"x\"\ndev = \"eth0\"\nhook = \"xdp\"\n")),
        format!(
            "t.toml:14:8: object[0].path: missing object file {}: No such file or directory (os error 2)",
            example_dir().join("nope.o").display()
        )
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "program = \"xdp_nat\"\ndev = \"eth0\"\nhook = \"xdp\"\n")),
        format!(
            "t.toml:16:11: object[0].attach[0].program: program \"xdp_nat\" not found in {} (it has: k8s_xdp)",
            example_dir().join("k8s_xdp.o").display()
        )
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "section = \"tc\"\ndev = \"eth0\"\nhook = \"xdp\"\n")),
        format!(
            "t.toml:16:11: object[0].attach[0].section: section \"tc\" not found in {} (it has: xdp)",
            example_dir().join("k8s_xdp.o").display()
        )
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "program = \"k8s_xdp\"\ndev = \"eth9\"\nhook = \"xdp\"\n")),
        "t.toml:17:7: object[0].attach[0].dev: unknown device \"eth9\" in netns \"host\" (it has: eth0, lo, nk0)"
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "program = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\n")),
        "t.toml:18:8: object[0].attach[0].hook: program \"k8s_xdp\" (section \"xdp\") is a XDP program; hook tc/ingress takes SCHED_CLS (tc) programs (EINVAL)"
    );
    assert_eq!(
        err(&attach("k8s_tc.o", "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"xdp\"\n")),
        "t.toml:18:8: object[0].attach[0].hook: program \"k8s_tc_ingress\" (section \"tc\") is a SCHED_CLS (tc) program; hook xdp takes XDP programs (EINVAL)"
    );
    assert_eq!(
        err(&attach("k8s_pod.o", "program = \"k8s_to_pod\"\nnetns = \"pod\"\ndev = \"eth0\"\nhook = \"netkit/primary\"\n")),
        "t.toml:18:7: object[0].attach[0].dev: eth0 is a netkit peer: netkit programs attach only through the primary device, for either side (the kernel refuses the peer with EACCES in netkit_dev_fetch)"
    );
    assert_eq!(
        err(&attach(
            "k8s_pod.o",
            "program = \"k8s_to_pod\"\ndev = \"eth0\"\nhook = \"netkit/peer\"\n"
        )),
        "t.toml:17:7: object[0].attach[0].dev: eth0 is a nic device, not netkit (ENXIO)"
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "program = \"k8s_xdp\"\ndev = \"nk0\"\nhook = \"xdp\"\nmode = \"native\"\n")),
        "t.toml:19:8: object[0].attach[0].mode: nk0 is a netkit device: its driver has no native XDP (EOPNOTSUPP); use mode = \"generic\""
    );
    assert_eq!(
        err(&attach(
            "k8s_xdp.o",
            "program = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\n[[object.attach]]\nprogram = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\nmode = \"generic\"\n"
        )),
        "t.toml:22:8: object[0].attach[1].hook: eth0 has an XDP program in the other mode (line 18): native and generic XDP can't be active at the same time (EEXIST)"
    );
    assert_eq!(
        err(&attach("k8s_tc.o", "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\nmode = \"native\"\n")),
        "t.toml:19:8: object[0].attach[0].mode: field `mode` does not apply to hook tc/ingress (only xdp)"
    );
    assert_eq!(
        err(&attach(
            "k8s_tc.o",
            "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\nprio = 5\n[[object.attach]]\nprogram = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\nprio = 5\n"
        )),
        "t.toml:24:8: object[0].attach[1].prio: tc/ingress of eth0 already has a filter with prio 5 handle 1 (line 18; EEXIST)"
    );
    assert_eq!(
        err(&attach("k8s_tc.o", "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tcx/ingress\"\nafter = \"other\"\n")),
        "t.toml:19:9: object[0].attach[0].after: no program \"other\" is attached earlier in the file to tcx/ingress of eth0 (ENOENT)"
    );
    // tcx ordering relative to a program attached before it
    let t = parse(&attach(
        "k8s_tc.o",
        "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tcx/ingress\"\n[[object.attach]]\nprogram = \"k8s_tc_ingress\"\ndev = \"nk0\"\nhook = \"tcx/egress\"\n[[object.attach]]\nprogram = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tcx/ingress\"\nbefore = \"k8s_tc_ingress\"\n",
    ))
    .unwrap();
    assert_eq!(
        t.objects[0].attach[2].hook,
        Hook::Tcx {
            dir: TcDirection::Ingress,
            order: MprogOrder::Before("k8s_tc_ingress".into())
        }
    );
}

#[test]
fn map_entry_errors() {
    let m = |entries: &str| {
        format!("{HOST}[[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\nname = \"backends\"\nentries = [{entries}]\n")
    };
    assert_eq!(
        err(&m("{ key = \"u32:0\", value = \"ipv4:10.0.0.1\" }")),
        "t.toml:11:37: object[0].map[0].entries[0].value: 4 bytes, but map \"backends\" has 8-byte values"
    );
    assert_eq!(
        err(&m("{ key = \"u16:0\", value = \"0000000000000000\" }")),
        "t.toml:11:20: object[0].map[0].entries[0].key: 2 bytes, but map \"backends\" has 4-byte keys"
    );
    assert_eq!(
        err(&m("{ key = \"u32:4294967296\", value = \"0000000000000000\" }")),
        "t.toml:11:20: object[0].map[0].entries[0].key: \"u32:4294967296\": \"4294967296\" is not a 32-bit unsigned integer"
    );
    assert_eq!(
        err(&m("{ key = \"u32:0\", value = [\"ifindex:eth7\", \"u32:0\"] }")),
        "t.toml:11:37: object[0].map[0].entries[0].value: ifindex: unknown device \"eth7\" in netns \"host\""
    );
    assert_eq!(
        err(&format!("{HOST}[[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\nname = \"nosuch\"\n")),
        format!(
            "t.toml:10:8: object[0].map[0].name: {} has no map \"nosuch\" (it has: blocked, services, backends, xdp_stats)",
            example_dir().join("k8s_xdp.o").display()
        )
    );
}

#[test]
fn pieces() {
    assert_eq!(
        parse_piece("be16:8080").unwrap(),
        Piece::Bytes(vec![0x1f, 0x90])
    );
    assert_eq!(
        parse_piece("u16:8080").unwrap(),
        Piece::Bytes(vec![0x90, 0x1f])
    );
    assert_eq!(
        parse_piece("u64:0x0102").unwrap(),
        Piece::Bytes(vec![2, 1, 0, 0, 0, 0, 0, 0])
    );
    assert_eq!(parse_piece("0a 0b").unwrap(), Piece::Bytes(vec![10, 11]));
    assert_eq!(
        parse_piece("mac:02:00:00:00:00:01").unwrap(),
        Piece::Bytes(vec![2, 0, 0, 0, 0, 1])
    );
    assert_eq!(
        parse_piece("ipv6:::1").unwrap(),
        Piece::Bytes([0u8; 15].iter().copied().chain([1]).collect())
    );
    assert_eq!(
        parse_piece("ifindex:pod1/eth0").unwrap(),
        Piece::Ifindex {
            netns: "pod1".into(),
            dev: "eth0".into()
        }
    );
    assert_eq!(parse_piece("zero:3").unwrap(), Piece::Bytes(vec![0; 3]));
    assert!(parse_piece("abc").is_err());
    assert!(parse_piece("u8:256").is_err());
}

#[test]
fn build_k8s_example() {
    use skiff_net::datapath::{DatapathOptions, Hook as DHook};
    let t = Topology::load(&example_dir().join("topology.toml")).unwrap();
    let mut b = t.build(DatapathOptions::default()).unwrap();
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    let dp = &mut b.dp;
    let host = dp.netns("host").unwrap();
    let pod2 = dp.netns("pod2").unwrap();
    let eth0 = dp.device(host, "eth0").unwrap();
    let nk2 = dp.device(host, "nk-pod2").unwrap();
    assert_eq!(dp.ifindex(eth0), Some(2));
    assert_eq!(dp.ifindex(dp.device(host, "nk-pod1").unwrap()), Some(3));
    assert_eq!(dp.ifindex(nk2), Some(4));
    let peer = dp.peer(nk2).unwrap();
    assert_eq!(dp.device(pod2, "eth0"), Some(peer));
    assert_eq!(dp.mac(eth0), Some([2, 0, 0, 0, 0, 1]));
    // the endpoints entry names nk-pod2's ifindex
    let ep = b.objects[1]
        .map("endpoints")
        .unwrap()
        .sys_lookup_raw(&[10, 0, 1, 12])
        .unwrap();
    assert_eq!(ep[..4], 4u32.to_ne_bytes());
    // the first packet of traffic.pcap (nanosecond pcap: 24-byte header, 16-byte record)
    let pcap = std::fs::read(example_dir().join("traffic.pcap")).unwrap();
    let frame = &pcap[40..40 + 54];
    dp.inject(eth0, frame, 1).unwrap();
    dp.run();
    assert_eq!(dp.hook_count(eth0, DHook::Xdp, 2).packets, 1);
    assert_eq!(dp.hook_count(eth0, DHook::TcIngress, 7).packets, 1);
    assert_eq!(dp.hook_count(nk2, DHook::Netkit, 0).packets, 1);
    // pod2 has no socket (the example's `listen = []`): its stack drops the
    // SYN (NO_SOCKET) and answers with a RST, which leaves through eth0
    let c = dp.conservation();
    assert_eq!(
        (c.input, c.delivered, c.dropped, c.transmitted),
        (1, 0, 1, 1)
    );
}

#[test]
fn build_errors_and_mprog_order() {
    use skiff_net::datapath::DatapathOptions;
    let src = "[netns.host]\n[netns.pod]\n[[netns.host.device]]\nname = \"nk0\"\nkind = \"netkit\"\npeer = \"eth0\"\npeer_netns = \"pod\"\npeer_ifindex = 9\n";
    // peer_ifindex is taken in the peer's namespace (it was refused before
    // ifindexes were per namespace).
    let b = parse(src)
        .unwrap()
        .build(DatapathOptions::default())
        .unwrap();
    let pod = b.dp.netns("pod").unwrap();
    let eth0 = b.dp.device(pod, "eth0").unwrap();
    assert_eq!(b.dp.ifindex(eth0), Some(9));
    assert_eq!(b.dp.ifindex(b.dp.peer(eth0).unwrap()), Some(2));
    // One taken in that namespace (a's nic got 2 first) is the kernel's EEXIST.
    let taken = "[netns.a]\n[[netns.a.device]]\nname = \"x\"\nkind = \"nic\"\n[netns.host]\n[[netns.host.device]]\nname = \"nk0\"\nkind = \"netkit\"\npeer = \"eth0\"\npeer_netns = \"a\"\npeer_ifindex = 2\n";
    let e = parse(taken)
        .unwrap()
        .build(DatapathOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "t.toml:7:8: netns.host.device[0].name: device nk0: ifindex 2 is taken in namespace a (errno 17)"
    );
    // two tcx programs, the second before the first
    let src = format!(
        "{HOST}[[object]]\npath = \"k8s_tc.o\"\n[[object.attach]]\nprogram = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tcx/ingress\"\n\
         [[object]]\npath = \"k8s_pod.o\"\n[[object.attach]]\nprogram = \"k8s_to_pod\"\ndev = \"eth0\"\nhook = \"tcx/ingress\"\nbefore = \"k8s_tc_ingress\"\n"
    );
    let b = parse(&src)
        .unwrap()
        .build(DatapathOptions::default())
        .unwrap();
    assert!(b.warnings.is_empty());
    let mut b = b;
    let host = b.dp.netns("host").unwrap();
    let eth0 = b.dp.device(host, "eth0").unwrap();
    // an ARP frame: k8s_to_pod (first) drops what is not IPv4 with NETKIT_DROP (2),
    // which tcx reads as TCX_DROP: k8s_tc_ingress never runs
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 9, 8, 6]);
    arp.extend_from_slice(&[0; 28]);
    b.dp.inject(eth0, &arp, 1).unwrap();
    b.dp.run();
    use skiff_net::datapath::Hook as DHook;
    assert_eq!(b.dp.hook_count(eth0, DHook::TcIngress, 2).packets, 1);
    assert_eq!(b.dp.hook_count(eth0, DHook::TcIngress, 0).packets, 0);
}

/// Truncations and byte changes of the example never panic the parser or
/// validator (they parse or give an error with a line).
#[test]
fn mangled_files_never_panic() {
    let src = std::fs::read_to_string(example_dir().join("topology.toml")).unwrap();
    let bytes = src.as_bytes();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut errors = 0;
    for n in (0..bytes.len()).step_by(7) {
        if let Ok(s) = std::str::from_utf8(&bytes[..n]) {
            if let Err(e) = parse(s) {
                errors += 1;
                assert!(e.line().is_some() || matches!(e, TopologyError::File { .. }));
            }
        }
    }
    let alphabet = b"[]=\"{},.:/0123456789abcxyz \n#-";
    for _ in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut m = bytes.to_vec();
        let at = (seed % m.len() as u64) as usize;
        m[at] = alphabet[((seed >> 40) % alphabet.len() as u64) as usize];
        if let Ok(s) = std::str::from_utf8(&m) {
            if parse(s).is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 1000, "{errors}");
}

#[test]
fn build_veth_pair_and_unsupported_rule_action() {
    use skiff_net::datapath::DatapathOptions;
    let src = "[netns.a]\n[netns.b]\n[[netns.a.device]]\nname = \"v0\"\nkind = \"veth\"\nmac = \"02:00:00:00:0a:01\"\npeer = \"v1\"\npeer_netns = \"b\"\npeer_mac = \"02:00:00:00:0b:01\"\nmtu = 9000\n\
               [[netns.a.address]]\ndev = \"v0\"\ncidr = \"10.9.0.1/24\"\n[[netns.b.address]]\ndev = \"v1\"\ncidr = \"10.9.0.2/24\"\n";
    let b = parse(src)
        .unwrap()
        .build(DatapathOptions::default())
        .unwrap();
    let a = b.dp.netns("a").unwrap();
    let bn = b.dp.netns("b").unwrap();
    let v0 = b.dp.device(a, "v0").unwrap();
    let v1 = b.dp.device(bn, "v1").unwrap();
    assert_eq!(b.dp.peer(v0), Some(v1));
    assert_eq!(b.dp.mac(v0), Some([2, 0, 0, 0, 0x0a, 1]));
    assert_eq!(b.dp.mac(v1), Some([2, 0, 0, 0, 0x0b, 1]));
    assert_eq!(b.dp.dev_netns(v1), Some(bn));
    // a rule action the host stack does not have
    let src = "[netns.host]\n[[netns.host.rule]]\npriority = 5\naction = \"blackhole\"\n";
    let e = parse(src)
        .unwrap()
        .build(DatapathOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "t.toml: netns host: rule 5: not supported: action Blackhole (the host stack has table rules only)"
    );
}
