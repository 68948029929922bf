//! Branches of the section validators the crate's integration tests
//! (tests/topology.rs) do not reach: each error with its line, column, field
//! and text.

use std::path::{Path, PathBuf};

use crate::Topology;

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/k8s-node")
}

fn err(src: &str) -> String {
    match Topology::parse(src, Path::new("t.toml"), &example_dir()) {
        Ok(_) => format!("accepted:\n{src}"),
        Err(e) => e.to_string(),
    }
}

/// `[netns.host]` with one device (lines 1-4) and `extra` from line 5.
fn dev(kind: &str, extra: &str) -> String {
    format!("[netns.host]\n[[netns.host.device]]\nname = \"d0\"\nkind = \"{kind}\"\n{extra}")
}

/// A host with eth0 (10.0.0.1/24) and `extra` from line 8.
fn host(extra: &str) -> String {
    format!("[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n[[netns.host.address]]\ndev = \"eth0\"\ncidr = \"10.0.0.1/24\"\n{extra}")
}

/// `host("")` plus object `obj` (path on line 9) with one attachment (its
/// fields from line 11).
fn attach(obj: &str, body: &str) -> String {
    host(&format!(
        "[[object]]\npath = \"{obj}\"\n[[object.attach]]\n{body}"
    ))
}

#[test]
fn namespace_names() {
    assert_eq!(
        err("[netns.\"a/b\"]\n"),
        "t.toml:1:8: netns: bad namespace name \"a/b\" (non-empty, no '/')"
    );
}

#[test]
fn device_fields() {
    assert_eq!(
        err(&dev("nic", "ifindex = 0\n")),
        "t.toml:5:11: netns.host.device[0].ifindex: ifindex 0 is not 1..=2147483647"
    );
    assert_eq!(
        err(&dev("nic", "rx_queues = 257\n")),
        "t.toml:5:13: netns.host.device[0].rx_queues: 257 rx queues: want 1..=256"
    );
    assert_eq!(
        err(&dev("nic", "mtu = 67\n")),
        "t.toml:5:7: netns.host.device[0].mtu: MTU 67 is outside 68..=65535 (EINVAL)"
    );
    assert_eq!(
        err(&dev("veth", "")),
        "t.toml:4:8: netns.host.device[0].peer: a veth pair needs `peer` (the other end's name)"
    );
    assert_eq!(
        err(&dev("veth", "peer = \"d1\"\nmode = \"l2\"\n")),
        "t.toml:6:8: netns.host.device[0].mode: field `mode` does not apply to a veth device"
    );
    assert_eq!(
        err(&dev("netkit", "peer = \"d1\"\nscrub = \"all\"\n")),
        "t.toml:6:9: netns.host.device[0].scrub: \"all\" is not one of default, none"
    );
    assert_eq!(
        err(&dev(
            "netkit",
            "peer = \"d1\"\npeer_policy = \"redirect\"\n"
        )),
        "t.toml:6:15: netns.host.device[0].peer_policy: \"redirect\" is not one of pass, drop"
    );
}

#[test]
fn addresses_routes_rules() {
    assert_eq!(
        err(&host(
            "[[netns.host.address]]\ndev = \"eth0\"\ncidr = \"10.0.0.1/16\"\n"
        )),
        "t.toml:10:8: netns.host.address[1].cidr: address 10.0.0.1 is already on eth0 (EEXIST)"
    );
    assert_eq!(
        err(&host(
            "[[netns.host.route]]\ndst = \"10.1.0.0/16\"\nvia = \"fe80::1\"\n"
        )),
        "t.toml:10:7: netns.host.route[0].via: gateway fe80::1 is not of the family of 10.1.0.0/16"
    );
    assert_eq!(
        err(&host("[[netns.host.route]]\ndst = \"10.1.0.0/16\"\n")),
        "t.toml:9:7: netns.host.route[0].dev: a unicast route needs `dev`, `via` or both"
    );
    assert_eq!(
        err(&host("[[netns.host.route]]\ndst = \"10.1.0.0/16\"\ndev = \"eth0\"\n[[netns.host.route]]\ndst = \"10.1.0.0/16\"\nvia = \"10.0.0.2\"\n")),
        "t.toml:12:7: netns.host.route[1].dst: duplicate route to 10.1.0.0/16 in table 254 metric 0 (EEXIST)"
    );
    assert_eq!(
        err(&host("[[netns.host.route]]\ndst = \"10.1.0.0/16\"\ntype = \"nat\"\n")),
        "t.toml:10:8: netns.host.route[0].type: \"nat\" is not one of unicast, blackhole, unreachable, prohibit, local"
    );
    assert_eq!(
        err(&host("[[netns.host.rule]]\ntable = 10\nfwmask = 255\n")),
        "t.toml:10:10: netns.host.rule[0].fwmask: fwmask without fwmark"
    );
    assert_eq!(
        err(&host("[[netns.host.rule]]\ntable = 10\niif = \"eth1\"\n")),
        "t.toml:10:7: netns.host.rule[0].iif: unknown device \"eth1\" in netns \"host\" (it has: eth0, lo)"
    );
}

#[test]
fn maps() {
    let map = |m: &str| {
        host(&format!(
            "[[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\n{m}"
        ))
    };
    assert_eq!(
        err(&map(
            "name = \"backends\"\n[[object.map]]\nname = \"backends\"\n"
        )),
        "t.toml:13:8: object[0].map[1].name: map \"backends\" is declared twice for this object"
    );
    assert_eq!(
        err(&map("name = \"backends\"\npin = \"a/b\"\n")),
        "t.toml:12:7: object[0].map[0].pin: a pin name is non-empty and has no '/'"
    );
    assert_eq!(
        err(&map("name = \"backends\"\nentries = [{ key = \"u32:0\", value = [\"prog:nope\", \"u32:0\"] }]\n")),
        format!(
            "t.toml:12:37: object[0].map[0].entries[0].value: prog: {} has no program \"nope\"",
            example_dir().join("k8s_xdp.o").display()
        )
    );
}

#[test]
fn attach_fields() {
    assert_eq!(
        err(&attach(
            "k8s_xdp.o",
            "program = \"k8s_xdp\"\nsection = \"xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\n"
        )),
        "t.toml:11:11: object[0].attach[0].program: give `program` or `section`, not both"
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "dev = \"eth0\"\nhook = \"xdp\"\n")),
        "t.toml:12:8: object[0].attach[0].program: which program? give `program` (function name) or `section`"
    );
    assert_eq!(
        err(&attach(
            "k8s_tc.o",
            "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\nhandle = 0\n"
        )),
        "t.toml:14:10: object[0].attach[0].handle: handle 0 is not a handle"
    );
    assert_eq!(
        err(&attach(
            "k8s_tc.o",
            "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\nprio = 65536\n"
        )),
        "t.toml:14:8: object[0].attach[0].prio: prio 65536 is not 1..=65535"
    );
    assert_eq!(
        err(&attach("k8s_tc.o", "program = \"k8s_tc_ingress\"\ndev = \"eth0\"\nhook = \"tcx/ingress\"\nbefore = \"a\"\nafter = \"b\"\n")),
        "t.toml:14:10: object[0].attach[0].before: give `before` or `after`, not both"
    );
    assert_eq!(
        err(&attach("k8s_xdp.o", "program = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\n[[object.attach]]\nprogram = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\n")),
        "t.toml:17:8: object[0].attach[1].hook: eth0 already has an XDP program in native mode (line 13); one per device and mode (EBUSY)"
    );
    assert_eq!(
        err(&attach(
            "k8s_xdp.o",
            "program = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\nmode = \"skb\"\n"
        )),
        "t.toml:14:8: object[0].attach[0].mode: \"skb\" is not one of native, generic"
    );
}

#[test]
fn attach_finds_the_namespace_or_asks() {
    // One namespace: `netns` may be left out.
    let one = "[netns.a]\n[[netns.a.device]]\nname = \"eth0\"\nkind = \"nic\"\n[[object]]\npath = \"k8s_xdp.o\"\n[[object.attach]]\nprogram = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\n";
    assert!(err(one).starts_with("accepted:"), "{}", err(one));
    // Two namespaces with an eth0: which one must be said.
    let two = "[netns.a]\n[[netns.a.device]]\nname = \"eth0\"\nkind = \"nic\"\n[netns.b]\n[[netns.b.device]]\nname = \"eth0\"\nkind = \"nic\"\n[[object]]\npath = \"k8s_xdp.o\"\n[[object.attach]]\nprogram = \"k8s_xdp\"\ndev = \"eth0\"\nhook = \"xdp\"\n";
    assert_eq!(
        err(two),
        "t.toml:13:7: object[0].attach[0].netns: device \"eth0\" is in netns \"a\", \"b\": say which with `netns = \"NAME\"` or `dev = \"NAME/eth0\"`"
    );
    let with = |d: &str| two.replace("dev = \"eth0\"\nhook", d);
    let b = with("dev = \"b/eth0\"\nhook");
    assert!(err(&b).starts_with("accepted:"), "{}", err(&b));
    let b = with("netns = \"b\"\ndev = \"eth0\"\nhook");
    assert!(err(&b).starts_with("accepted:"), "{}", err(&b));
    assert_eq!(
        err(&with("netns = \"a\"\ndev = \"b/eth0\"\nhook")),
        "t.toml:13:9: object[0].attach[0].netns: netns \"a\" but dev \"b/eth0\" names netns \"b\""
    );
    assert_eq!(
        err(&with("dev = \"c/eth0\"\nhook")),
        "t.toml:13:7: object[0].attach[0].dev: unknown netns \"c\""
    );
    assert_eq!(
        err(&with("dev = \"b/eth9\"\nhook")),
        "t.toml:13:7: object[0].attach[0].dev: unknown device \"eth9\" in netns \"b\""
    );
}

#[test]
fn sysctl_names_and_devices() {
    let src = |body: &str| {
        format!("[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n[netns.host.sysctl]\n{body}")
    };
    let ok = src("\"net.ipv4.conf.eth0.rp_filter\" = 1\n");
    assert!(err(&ok).starts_with("accepted:"), "{}", err(&ok));
    assert_eq!(
        err(&src("\"net.ipv4.conf.eth1.rp_filter\" = 1\n")),
        "t.toml:6:1: netns.host.sysctl.\"net.ipv4.conf.eth1.rp_filter\": unknown device \"eth1\" in netns \"host\""
    );
    assert!(err(&src("\"net.ipv4.tcp_syncookies\" = 1\n")).starts_with(
        "t.toml:6:1: netns.host.sysctl.\"net.ipv4.tcp_syncookies\": unknown sysctl \"net.ipv4.tcp_syncookies\" (skiff implements: net.ipv4.icmp_echo_ignore_all,"
    ));
}

#[test]
fn listen_ports() {
    let src = |l: &str| format!("[netns.host]\nlisten = {l}\n");
    let t = Topology::parse(
        &src("[\"tcp/80\", \"udp/53\"]"),
        Path::new("t.toml"),
        &example_dir(),
    )
    .unwrap();
    assert_eq!(
        t.namespaces[0].listen,
        Some([(6u8, 80u16), (17, 53)].into_iter().collect())
    );
    assert_eq!(
        err(&src("[\"tcp/80\", \"sctp/9\"]")),
        "t.toml:2:21: netns.host.listen[1]: \"sctp/9\": want tcp/PORT or udp/PORT (PORT 1-65535)"
    );
    assert_eq!(
        err(&src("[\"udp/0\"]")),
        "t.toml:2:11: netns.host.listen[0]: \"udp/0\": want tcp/PORT or udp/PORT (PORT 1-65535)"
    );
}

#[test]
fn live_backends() {
    let ok = dev(
        "nic",
        "backend = \"af_packet\"\nhost_ifname = \"veth-x\"\nhost_netns = \"skiff-x\"\n",
    );
    let t = Topology::parse(&ok, Path::new("t.toml"), &example_dir()).expect("accepted");
    let live = t.namespaces[0].devices[0].live.clone();
    assert_eq!(
        live,
        Some(skiff_io::live::LiveSpec {
            backend: skiff_io::live::Backend::AfPacket,
            host_ifname: "veth-x".into(),
            host_netns: Some("skiff-x".into()),
        })
    );
    assert_eq!(err(&dev("nic", "backend = \"tap\"\n")), "t.toml:5:11: netns.host.device[0].host_ifname: a device with a backend needs `host_ifname` (the real interface's name)");
    assert_eq!(err(&dev("nic", "host_ifname = \"x0\"\n")), "t.toml:5:15: netns.host.device[0].backend: host_ifname/host_netns need `backend` (tap, af_packet or af_xdp)");
    assert_eq!(
        err(&dev("nic", "backend = \"dpdk\"\nhost_ifname = \"x0\"\n")),
        "t.toml:5:11: netns.host.device[0].backend: \"dpdk\" is not one of tap, af_packet, af_xdp"
    );
    assert_eq!(err(&dev("veth", "peer = \"p0\"\nbackend = \"tap\"\n")), "t.toml:6:11: netns.host.device[0].backend: field `backend` does not apply to a veth device");
}

#[test]
fn map_pinning_and_pin_dir() {
    let map = |m: &str| {
        host(&format!(
            "[[object]]\npath = \"k8s_xdp.o\"\n[[object.map]]\nname = \"backends\"\n{m}"
        ))
    };
    assert_eq!(
        err(&map("pinning = \"always\"\n")),
        "t.toml:12:11: object[0].map[0].pinning: pinning \"always\": want \"by_name\" (LIBBPF_PIN_BY_NAME) or \"none\""
    );
    assert_eq!(
        err(&map("pin = \"x\"\npinning = \"by_name\"\n")),
        "t.toml:13:11: object[0].map[0].pinning: give `pin = NAME` or `pinning`, not both"
    );
    assert_eq!(
        err(&format!("pin_dir = \"\"\n{}", host(""))),
        "t.toml:1:11: pin_dir: pin_dir is a directory path, not empty"
    );
    let parse = |src: &str| Topology::parse(src, Path::new("t.toml"), &example_dir());
    let t = parse(&map("pinning = \"by_name\"\n")).expect("by_name");
    assert_eq!(t.objects[0].maps[0].pin.as_deref(), Some("backends"));
    assert_eq!(t.pin_dir, None);
    let t = parse(&format!(
        "pin_dir = \"pins\"\n{}",
        map("pinning = \"none\"\n")
    ))
    .expect("none");
    assert_eq!(t.objects[0].maps[0].pin, None);
    assert_eq!(t.pin_dir, Some(example_dir().join("pins")));
}

#[test]
fn netfilter_text_errors_are_placed_in_the_file() {
    // a '''literal''' nft text: its line 2 is the file's line 4, columns exact
    assert_eq!(
        err("[netns.host]\nnft = '''\nadd table ip t\nadd rule ip t c accept\n'''\n"),
        "t.toml:4:15: netns.host.nft: nft: line 2:15: Could not process rule: No such file or directory: chain `c' does not exist"
    );
    // a one-line nft string: columns count from after its quote
    assert_eq!(
        err("[netns.host]\nnft = \"add rule ip t c accept\"\n"),
        "t.toml:2:22: netns.host.nft: nft: line 1:15: Could not process rule: No such file or directory: table `ip t' does not exist"
    );
    // iptables_save: the failing command at its line and word of the text
    assert_eq!(
        err("[netns.host]\niptables_save = \"\"\"\n*filter\n:FORWARD REJECT [0:0]\nCOMMIT\n\"\"\"\n"),
        "t.toml:4:10: netns.host.iptables_save: iptables_save line 2: at \"REJECT\": Can't set policy `REJECT' on `FORWARD': Bad policy name"
    );
    // a one-line iptables_save string is pointed at as a whole
    assert_eq!(
        err("[netns.host]\niptables_save = \":FORWARD REJECT [0:0]\"\n"),
        "t.toml:2:17: netns.host.iptables_save: iptables_save line 1: at \":FORWARD\": not inside a table: a *TABLE line must come first"
    );
}
