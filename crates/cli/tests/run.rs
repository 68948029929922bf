//! `skiff run` end to end on the k8s-node example: the pcap goes in, the
//! expected packets come out of the expected hooks byte for byte (checksums
//! recomputed from scratch and compared), counters and drops match, packets are
//! conserved; the committed objects and pcap match a fresh build; CLI errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skiff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("skiff-run-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, f: &str) -> String {
        self.0.join(f).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

const TOPO: &str = "examples/k8s-node/topology.toml";
const TRAFFIC: &str = "examples/k8s-node/traffic.pcap";

// ---- checksums, from scratch

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        acc += u32::from(w);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header and TCP/UDP/ICMP checksums of an Ethernet+IPv4 frame.
fn fix_checksums(f: &mut [u8]) {
    assert_eq!(&f[12..14], &[8, 0]);
    let ihl = usize::from(f[14] & 15) * 4;
    f[24] = 0;
    f[25] = 0;
    let c = fold(sum16(&f[14..14 + ihl], 0));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let l4 = 14 + ihl;
    let proto = f[23];
    let (src, dst) = ([f[26], f[27], f[28], f[29]], [f[30], f[31], f[32], f[33]]);
    let len = f.len() - l4;
    let off = match proto {
        6 => 16,
        17 => 6,
        1 => 2,
        _ => return,
    };
    f[l4 + off] = 0;
    f[l4 + off + 1] = 0;
    let mut acc = 0;
    if proto != 1 {
        acc = sum16(&src, acc);
        acc = sum16(&dst, acc);
        acc += u32::from(proto) + len as u32;
    }
    let mut c = fold(sum16(&f[l4..], acc));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[l4 + off..l4 + off + 2].copy_from_slice(&c.to_be_bytes());
}

fn checksums_valid(f: &[u8]) -> bool {
    let mut g = f.to_vec();
    fix_checksums(&mut g);
    g == f
}

/// What the datapath should deliver to a pod: the input frame DNATed (when
/// `to` is given), TTL decremented, MACs rewritten (destination the pod's L3
/// netkit zero MAC, source the node's), checksums correct.
fn delivered(input: &[u8], to: Option<([u8; 4], u16)>) -> Vec<u8> {
    let mut f = input.to_vec();
    if let Some((ip, port)) = to {
        f[30..34].copy_from_slice(&ip);
        f[36..38].copy_from_slice(&port.to_be_bytes());
    }
    f[22] -= 1;
    f[0..6].copy_from_slice(&[0; 6]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    fix_checksums(&mut f);
    f
}

/// The echo reply a Linux stack makes for `request`: same ICMP id, sequence and
/// data, type 0, a fresh IPv4 header (no DF) with this id and TTL.
fn echo_reply(src: [u8; 4], dst: [u8; 4], ip_id: u16, ttl: u8, request: &[u8]) -> Vec<u8> {
    let icmp = &request[34..];
    let mut f = vec![0u8; 14];
    f[12] = 8;
    let len = (20 + icmp.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&ip_id.to_be_bytes());
    f.extend_from_slice(&[0, 0, ttl, 1, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(icmp);
    f[34] = 0;
    fix_checksums(&mut f);
    f
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

fn read_cap(path: &str) -> skiff_io::Capture {
    let p = Path::new(path);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root().join(p)
    };
    skiff_io::read(&p).unwrap()
}

/// (comment, bytes) of a capture's packets.
fn records(path: &str) -> Vec<(String, Vec<u8>)> {
    read_cap(path)
        .packets
        .into_iter()
        .map(|p| (p.comment.unwrap_or_default(), p.data))
        .collect()
}

fn exits(recs: &[(String, Vec<u8>)], verdict: &str) -> Vec<Vec<u8>> {
    recs.iter()
        .filter(|(c, _)| c.ends_with(&format!(" verdict={verdict}")))
        .map(|(_, b)| b.clone())
        .collect()
}

#[test]
fn k8s_node_end_to_end() {
    let t = TempDir::new("e2e");
    let (out, nk1, nk2, xdp, tj) = (
        t.path("out.pcap"),
        t.path("nk1.pcapng"),
        t.path("nk2.pcapng"),
        t.path("xdp.pcapng"),
        t.path("trace.json"),
    );
    let (code, stdout, stderr) = skiff(&[
        "run",
        TOPO,
        "--pcap-in",
        &format!("eth0={TRAFFIC}"),
        "--pcap-out",
        &format!("eth0={out}"),
        "--capture",
        &format!("nk-pod1:netkit={nk1}"),
        "--capture",
        &format!("host/nk-pod2:netkit={nk2}"),
        "--capture",
        &format!("eth0:xdp={xdp}"),
        "--trace-json",
        &tj,
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // the input, checked too
    let input: Vec<Vec<u8>> = read_cap(TRAFFIC)
        .packets
        .into_iter()
        .map(|p| p.data)
        .collect();
    assert_eq!(input.len(), 9);
    for (i, f) in input.iter().enumerate() {
        if f[12..14] == [8, 0] {
            assert!(checksums_valid(f), "input packet {i} has a bad checksum");
        }
    }

    // conservation
    let c = &v["conservation"];
    assert_eq!(c["in"], 9);
    // made here: the pods' two RSTs and ICMP port unreachable (no sockets:
    // the topology's `listen = []`, as the kernel's pods in `skiff diff`),
    // the ARP reply, the node's echo reply, pod1's two echo replies
    assert_eq!(c["originated"], 7);
    // out of eth0: the RSTs, the port unreachable, the ARP reply, the node's
    // echo reply, pod1's reply to 203.0.113.5
    assert_eq!(c["transmitted"], 6);
    // pod1's two pings, ARP and ping at the node, pod1's reply to pod2 in pod2
    assert_eq!(c["delivered"], 5);
    // the blocked prefix, port 22, the two SYNs and the datagram (NO_SOCKET)
    assert_eq!(c["dropped"], 5);
    assert_eq!(c["in_flight"], 0);
    assert_eq!(v["balanced"], true);
    assert_eq!(v["packets"], 9);

    // counters per device and hook
    let dev = |ns: &str, name: &str| -> serde_json::Value {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["netns"] == ns && d["name"] == name)
            .unwrap_or_else(|| panic!("no device {ns}/{name}"))
            .clone()
    };
    let eth0 = dev("host", "eth0");
    assert_eq!(eth0["ifindex"], 2);
    assert_eq!(eth0["stats"]["rx_packets"], 9);
    assert_eq!(eth0["stats"]["rx_bytes"], 534);
    assert_eq!(eth0["hooks"]["xdp"]["XDP_PASS"]["packets"], 8);
    assert_eq!(eth0["hooks"]["xdp"]["XDP_DROP"]["packets"], 1);
    assert_eq!(eth0["hooks"]["xdp"]["XDP_DROP"]["bytes"], 54);
    assert_eq!(eth0["hooks"]["tc-ingress"]["TC_ACT_REDIRECT"]["packets"], 6);
    assert_eq!(eth0["hooks"]["tc-ingress"]["TC_ACT_OK"]["packets"], 2);
    let nkp1 = dev("host", "nk-pod1");
    assert_eq!(nkp1["hooks"]["netkit"]["NETKIT_PASS"]["packets"], 3);
    assert_eq!(nkp1["hooks"]["netkit"]["NETKIT_DROP"]["packets"], 1);
    assert_eq!(nkp1["stats"]["tx_packets"], 3);
    assert_eq!(nkp1["stats"]["tx_dropped"], 1);
    let nkp2 = dev("host", "nk-pod2");
    assert_eq!(nkp2["hooks"]["netkit"]["NETKIT_PASS"]["packets"], 3);
    // pod1's RST and its echo reply to the outside, forwarded by the host
    assert_eq!(nkp1["hooks"]["stack"]["FORWARDED"]["packets"], 2);
    let pod1 = dev("pod1", "eth0");
    assert_eq!(pod1["stats"]["rx_packets"], 3);
    assert_eq!(pod1["stats"]["tx_packets"], 3);
    // pod1's peer-side chain: its reply to pod2 goes straight across, the
    // RST and the other reply to the host
    assert_eq!(pod1["hooks"]["netkit"]["NETKIT_REDIRECT"]["packets"], 1);
    assert_eq!(pod1["hooks"]["netkit"]["NETKIT_PASS"]["packets"], 2);
    assert_eq!(dev("pod2", "eth0")["stats"]["rx_packets"], 3);
    assert_eq!(eth0["stats"]["tx_packets"], 6);
    assert_eq!(eth0["hooks"]["xmit"]["OK"]["packets"], 6);

    // drops: reason and where
    let sites: Vec<(String, String, String, String, u64)> = v["drop_sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["reason"].as_str().unwrap().to_string(),
                s["iface"].as_str().unwrap().to_string(),
                s["hook"].as_str().unwrap().to_string(),
                s["prog"].as_str().unwrap().to_string(),
                s["packets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sites,
        vec![
            (
                "NOT_SPECIFIED".into(),
                "nk-pod1(3)".into(),
                "netkit".into(),
                "k8s_to_pod".into(),
                1
            ),
            (
                "NO_SOCKET".into(),
                "pod1/eth0(2)".into(),
                "stack".into(),
                "-".into(),
                1
            ),
            (
                "NO_SOCKET".into(),
                "pod2/eth0(2)".into(),
                "stack".into(),
                "-".into(),
                2
            ),
            (
                "SKIFF_XDP_DROP".into(),
                "eth0(2)".into(),
                "xdp".into(),
                "k8s_xdp".into(),
                1
            ),
        ]
    );

    // what reached the pods, byte for byte
    let svc_pod2 = delivered(&input[0], Some(([10, 0, 1, 12], 8080)));
    let svc_pod1 = delivered(&input[1], Some(([10, 0, 1, 11], 8080)));
    let udp_pod2 = delivered(&input[2], Some(([10, 0, 1, 12], 5353)));
    let ping_pod1 = delivered(&input[7], None);
    let ping_pod1_from_pod2 = delivered(&input[8], None);
    let to_22 = delivered(&input[4], None);
    let r1 = records(&nk1);
    let r2 = records(&nk2);
    // pod1's echo reply to pod2's address (id 2: pod1's second packet; its
    // first answers the earlier ping from outside, frames completing one by
    // one in time order as on a wire), after k8s_from_pod: TTL 63, MACs rewritten
    let reply = delivered(
        &echo_reply([10, 0, 1, 11], [10, 0, 1, 12], 2, 64, &input[8]),
        None,
    );
    assert_eq!(exits(&r2, "NETKIT_PASS"), vec![svc_pod2, udp_pod2, reply]);
    let mut p1 = exits(&r1, "NETKIT_PASS");
    p1.sort();
    let mut want1 = vec![svc_pod1, ping_pod1, ping_pod1_from_pod2];
    want1.sort();
    assert_eq!(p1, want1);
    assert_eq!(exits(&r1, "NETKIT_DROP"), vec![to_22]);
    for (_, b) in r1.iter().chain(&r2) {
        assert!(checksums_valid(b));
    }
    // entry and exit of every program run, entry before exit, one id each
    assert_eq!(r1.len(), 8);
    assert_eq!(r2.len(), 6);
    for pair in r1.chunks(2) {
        let id = pair[0].0.strip_suffix(" entry").unwrap().to_string();
        assert!(pair[1].0.starts_with(&format!("{id} verdict=")), "{pair:?}");
    }
    let ng = read_cap(&nk1);
    assert_eq!(ng.format, skiff_io::Format::Pcapng);
    assert_eq!(ng.interfaces[0].name.as_deref(), Some("nk-pod1"));
    // XDP saw all 9; its exit copy of the blocked packet is unchanged and dropped
    let rx = records(&xdp);
    assert_eq!(rx.len(), 18);
    assert_eq!(exits(&rx, "XDP_DROP"), vec![input[3].clone()]);

    // NIC output: the host stack's answers, byte for byte
    let gw = [2, 0, 0, 0, 0, 0xfe];
    let node = [2, 0, 0, 0, 0, 1];
    let mut arp = Vec::new();
    arp.extend_from_slice(&gw);
    arp.extend_from_slice(&node);
    arp.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
    arp.extend_from_slice(&node);
    arp.extend_from_slice(&[192, 168, 1, 10]);
    arp.extend_from_slice(&gw);
    arp.extend_from_slice(&[192, 168, 1, 1]);
    let mut node_reply = echo_reply([192, 168, 1, 10], [203, 0, 113, 5], 1, 64, &input[6]);
    node_reply[0..6].copy_from_slice(&gw);
    node_reply[6..12].copy_from_slice(&node);
    // pod1's reply (id 1: its first packet), forwarded by the host (TTL 63)
    // to the gateway
    let mut pod_reply = echo_reply([10, 0, 1, 11], [203, 0, 113, 5], 1, 63, &input[7]);
    pod_reply[0..6].copy_from_slice(&gw);
    pod_reply[6..12].copy_from_slice(&node);
    // first the pods' answers to the service packets, as the kernel's pods
    // send them (`skiff diff`): pod2's RST (tcp_v4_send_reset: id 0, DF, seq
    // 0, ack 1001, RST|ACK, window 0) from 10.0.1.12:8080, pod1's from
    // 10.0.1.11:8080, pod2's ICMP port unreachable for 5353 quoting the
    // datagram (TOS 0xc0, its first IPv4 id); all forwarded by the host, TTL 63
    let rst2 = unhex("0200000000fe020000000001080045000028000040003f06f4be0a00010ccb0071051f909c4000000000000003e950140000a9050000");
    let rst1 = unhex("0200000000fe020000000001080045000028000040003f06f4be0a00010bcb0071061f909c4000000000000003e950140000a9050000");
    let unreach = unhex("0200000000fe020000000001080045c00044000100003f0133e70a00010ccb007105030344340000000045000028000340003f11f4b0cb0071050a00010c138814e90014fd3a736b6966662d717565727921");
    let sent: Vec<Vec<u8>> = read_cap(&out).packets.into_iter().map(|p| p.data).collect();
    assert_eq!(sent, vec![rst2, rst1, unreach, arp, node_reply, pod_reply]);
    for f in sent.iter().filter(|f| f[12..14] == [8, 0]) {
        assert!(checksums_valid(f));
    }

    // the JSON trace: pwru's key names
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&tj)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 25, "{}", lines.len());
    let blocked = lines
        .iter()
        .find(|l| l["func"] == "xdp" && l["verdict"] == "XDP_DROP")
        .unwrap();
    assert_eq!(blocked["iface"], "eth0");
    assert_eq!(blocked["cpu"], 0);
    assert_eq!(blocked["proto"], 0x0800);
    assert_eq!(blocked["len"], 54);
    assert_eq!(blocked["tuple"], "198.51.100.7:40002->10.96.0.10:80(tcp)");
    assert_eq!(blocked["prog"], "k8s_xdp");
    // one id through XDP, tc and netkit: the first service packet
    let id = lines
        .iter()
        .find(|l| l["func"] == "xdp" && l["tuple"] == "203.0.113.5:40000->10.0.1.12:8080(tcp)")
        .unwrap()["skb"]
        .clone();
    let path: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l["skb"] == id)
        .map(|l| {
            (
                l["iface"].as_str().unwrap().to_string(),
                l["func"].as_str().unwrap().to_string(),
                l["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        path,
        vec![
            ("eth0".into(), "xdp".into(), "XDP_PASS".into()),
            ("eth0".into(), "tc-ingress".into(), "TC_ACT_REDIRECT".into()),
            ("nk-pod2".into(), "netkit".into(), "NETKIT_PASS".into()),
            ("eth0".into(), "stack".into(), "DROPPED".into()),
            ("eth0".into(), "kfree_skb".into(), "NO_SOCKET".into()),
        ]
    );
}

#[test]
fn k8s_node_text_output() {
    let (code, stdout, stderr) = skiff(&[
        "run",
        TOPO,
        "--pcap-in",
        &format!("eth0={TRAFFIC}"),
        "--trace",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // one trace line per hook: id, cpu, device(ifindex), hook, program, verdict, target
    let redirect = stdout
        .lines()
        .find(|l| l.contains("tc-ingress") && l.contains("203.0.113.6:40000->10.0.1.11:8080(tcp)"))
        .unwrap();
    assert!(
        redirect.contains("eth0(2  )")
            && redirect.contains("k8s_tc_ingress")
            && redirect.contains("TC_ACT_REDIRECT")
            && redirect.contains("-> ifindex 3"),
        "{redirect}"
    );
    assert!(
        stdout.contains(
            "host/eth0              2  xdp          XDP_DROP                1         54"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("     1  SKIFF_XDP_DROP               eth0(2) xdp k8s_xdp"),
        "{stdout}"
    );
    assert!(stdout.contains("conservation: in 9 + originated 7 = transmitted 6 + delivered 5 + dropped 5 + in flight 0\n"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    // where every packet went
    for line in [
        "  #1      host/eth0        -> dropped NO_SOCKET at pod2/eth0 stack\n",
        "  #2      pod2/eth0        -> transmitted by host/eth0\n",
        "  #7      host/eth0        -> dropped SKIFF_XDP_DROP at host/eth0 xdp (k8s_xdp)\n",
        "  #8      host/eth0        -> dropped NOT_SPECIFIED at host/nk-pod1 netkit (k8s_to_pod)\n",
        "  #14     pod1/eth0        -> transmitted by host/eth0\n",
        "  #16     pod1/eth0        -> delivered to pod2's stack (eth0)\n",
    ] {
        assert!(stdout.contains(line), "{line}{stdout}");
    }
    let fates = stdout
        .split("where every packet went (first seen -> end):\n")
        .nth(1)
        .unwrap();
    let n = fates.lines().take_while(|l| l.starts_with("  #")).count();
    assert_eq!(n, 16, "{fates}");
}

#[test]
fn run_errors() {
    let t = TempDir::new("err");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--pcap-in".into(), TRAFFIC.into()], "--pcap-in examples/k8s-node/traffic.pcap: interface 0 of examples/k8s-node/traffic.pcap has no name (a pcap file never has one): give DEV=FILE"),
        (vec!["--pcap-in".into(), format!("eth9={TRAFFIC}")], "--pcap-in eth9: no device \"eth9\" in netns \"host\""),
        (vec!["--pcap-in".into(), format!("pod7/eth0={TRAFFIC}")], "--pcap-in pod7/eth0: no network namespace \"pod7\""),
        (vec!["--pcap-in".into(), "eth0=/nonexistent.pcap".into()], "/nonexistent.pcap: No such file or directory"),
        (vec!["--pcap-in".into(), format!("eth0={TOPO}")], "examples/k8s-node/topology.toml: not a pcap or pcapng file (magic 23 20 54 68 at byte 0)"),
        (vec!["--pcap-out".into(), format!("nk-pod1={}", t.path("x.pcap"))], "--pcap-out nk-pod1=") ,
        (vec!["--capture".into(), format!("eth0:bogus={}", t.path("x.pcapng"))], "unknown hook \"bogus\""),
    ];
    for (extra, want) in cases {
        let mut args = vec!["run".to_string(), TOPO.to_string()];
        args.extend(extra);
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (code, _, err) = skiff(&a);
        assert_eq!(code, 1, "{a:?}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
    let (_, _, err) = skiff(&[
        "run",
        TOPO,
        "--pcap-out",
        &format!("nk-pod1={}", t.path("x.pcap")),
    ]);
    assert!(
        err.contains(
            "not supported: nk-pod1 is a netkit device; only NICs transmit out of the datapath"
        ),
        "{err}"
    );
    // a topology error keeps its line and field
    let bad = t.path("bad.toml");
    std::fs::write(&bad, "[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\nmac = \"02:00:00:00:00\"\n").unwrap();
    let (code, _, err) = skiff(&["run", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml:5:7: netns.host.device[0].mac: bad MAC \"02:00:00:00:00\""),
        "{err}"
    );
}

/// The committed objects are what clang-19 makes of bpf/k8s_*.c today (same
/// program bytes), so `skiff run` works without clang.
#[test]
fn k8s_objects_match_fresh_compile() {
    objects_match_fresh_compile("examples/k8s-node", &["k8s_xdp", "k8s_tc", "k8s_pod"]);
}

/// The same for `skiff bench --datapath --suite`'s objects (bpf/bench_dp_*.c).
#[test]
fn bench_datapath_objects_match_fresh_compile() {
    objects_match_fresh_compile(
        "examples/bench-datapath",
        &[
            "bench_dp_drop",
            "bench_dp_tx",
            "bench_dp_redirect",
            "bench_dp_tc",
            "bench_dp_peer",
        ],
    );
}

/// `dir/<stem>.o` has the programs (name, section, instructions) and maps of a
/// fresh compile of `bpf/<stem>.c`.
fn objects_match_fresh_compile(dir: &str, stems: &[&str]) {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    // a directory of its own: the tests run in parallel in one process
    let t = TempDir::new(&format!("cc-{}", dir.replace('/', "-")));
    for stem in stems {
        let fresh =
            skiff_kernel::clang::compile(&root().join(format!("bpf/{stem}.c")), &t.0).unwrap();
        let a = skiff_object::Object::parse(&std::fs::read(&fresh).unwrap()).unwrap();
        let b = skiff_object::Object::parse(
            &std::fs::read(root().join(format!("{dir}/{stem}.o"))).unwrap(),
        )
        .unwrap();
        assert_eq!(a.programs.len(), b.programs.len(), "{stem}");
        for (x, y) in a.programs.iter().zip(&b.programs) {
            assert_eq!(x.name, y.name, "{stem}");
            assert_eq!(x.section, y.section, "{stem}");
            assert!(
                x.insns == y.insns,
                "{stem}: program {} differs from a fresh compile: rebuild {dir}/{stem}.o",
                x.name
            );
        }
        let names = |o: &skiff_object::Object| {
            o.maps
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.key_size,
                        m.value_size,
                        m.max_entries,
                        m.pinning,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b), "{stem}");
    }
}

/// The committed traffic.pcap is what gen_traffic.py writes.
#[test]
fn k8s_traffic_matches_generator() {
    let t = TempDir::new("gen");
    let out = t.path("traffic.pcap");
    let r = Command::new("python3")
        .arg(root().join("examples/k8s-node/gen_traffic.py"))
        .arg(&out)
        .output();
    match r {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "gen_traffic.py failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            eprintln!("SKIPPED: python3 not available ({e})");
            return;
        }
    }
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(root().join(TRAFFIC)).unwrap()
    );
}

/// A pcapng alone: each packet goes to the device its interface names.
#[test]
fn pcapng_in_by_interface_name() {
    let t = TempDir::new("ng");
    let ng = t.path("in.pcapng");
    let cap = read_cap(TRAFFIC);
    let mut w = skiff_io::Writer::create(
        Path::new(&ng),
        skiff_io::Format::Pcapng,
        &[("eth0", 1), ("host/eth0", 1)],
    )
    .unwrap();
    for (i, p) in cap.packets.iter().enumerate() {
        w.write((i % 2) as u32, p.ts_ns, &p.data, None).unwrap();
    }
    w.finish().unwrap();
    let (code, stdout, stderr) = skiff(&["run", TOPO, "--pcap-in", &ng, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["conservation"]["in"], 9);
    assert_eq!(v["conservation"]["transmitted"], 6);
    assert_eq!(v["conservation"]["delivered"], 5);
    assert_eq!(v["conservation"]["dropped"], 5);

    let bad = t.path("bad.pcapng");
    let w = skiff_io::Writer::create(
        Path::new(&bad),
        skiff_io::Format::Pcapng,
        &[("pod9/eth0", 1)],
    )
    .unwrap();
    w.finish().unwrap();
    let (code, _, err) = skiff(&["run", TOPO, "--pcap-in", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--pcap-in pod9/eth0: no network namespace \"pod9\""),
        "{err}"
    );
}

/// With --json, stdout is one JSON object and the --trace lines go to stderr.
#[test]
fn json_with_trace_keeps_stdout_one_object() {
    let (code, stdout, stderr) = skiff(&[
        "run",
        TOPO,
        "--pcap-in",
        &format!("eth0={TRAFFIC}"),
        "--trace",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["conservation"]["in"], 9);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains(" xdp ") && l.contains("k8s_xdp"))
            .count(),
        9,
        "{stderr}"
    );
}

/// Several NICs into one pcapng: one interface description block per device;
/// a pcap holds one device only.
#[test]
fn pcap_out_several_devices_in_one_pcapng() {
    let t = TempDir::new("multi");
    let topo = t.path("two.toml");
    std::fs::write(
        &topo,
        "[netns.host]\nforwarding = true\n\
         [[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\nmac = \"02:00:00:00:00:01\"\n\
         [[netns.host.device]]\nname = \"eth1\"\nkind = \"nic\"\nmac = \"02:00:00:00:01:01\"\n\
         [[netns.host.address]]\ndev = \"eth0\"\ncidr = \"192.168.1.10/24\"\n\
         [[netns.host.address]]\ndev = \"eth1\"\ncidr = \"192.168.2.10/24\"\n\
         [[netns.host.neighbour]]\ndev = \"eth0\"\nip = \"192.168.1.1\"\nmac = \"02:00:00:00:00:fe\"\n\
         [[netns.host.route]]\ndst = \"default\"\nvia = \"192.168.1.1\"\ndev = \"eth0\"\n",
    )
    .unwrap();
    // the ARP request (answered out of eth0) and the ping for the node (answered
    // through the gateway on eth0), replayed on eth0; nothing leaves eth1
    let cap = read_cap(TRAFFIC);
    let input = t.path("in.pcap");
    let mut w = skiff_io::Writer::create(Path::new(&input), skiff_io::Format::Pcap, &[("eth0", 1)])
        .unwrap();
    for p in &cap.packets[5..7] {
        w.write(0, p.ts_ns, &p.data, None).unwrap();
    }
    w.finish().unwrap();
    let out = t.path("out.pcapng");
    let (code, _, stderr) = skiff(&[
        "run",
        &topo,
        "--pcap-in",
        &format!("eth0={input}"),
        "--pcap-out",
        &format!("eth0={out}"),
        "--pcap-out",
        &format!("eth1={out}"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let ng = read_cap(&out);
    let names: Vec<Option<&str>> = ng.interfaces.iter().map(|i| i.name.as_deref()).collect();
    assert_eq!(names, [Some("eth0"), Some("eth1")]);
    assert_eq!(ng.packets.len(), 2);
    assert!(ng.packets.iter().all(|p| p.interface == 0));
    assert_eq!(&ng.packets[0].data[12..14], &[8, 6]);

    let (code, _, err) = skiff(&[
        "run",
        &topo,
        "--pcap-out",
        &format!("eth0={}", t.path("a.pcap")),
        "--pcap-out",
        &format!("eth1={}", t.path("a.pcap")),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("a pcap file holds one device (eth0 already); name it .pcapng for several"),
        "{err}"
    );
}

/// --pcap-delivered: what the stacks took, one interface per device
/// (NETNS/NAME), each packet's id and taker in its comment; replayable.
#[test]
fn pcap_delivered_holds_what_the_stacks_took() {
    let t = TempDir::new("delivered");
    let out = t.path("delivered.pcapng");
    let (code, stdout, stderr) = skiff(&[
        "run",
        TOPO,
        "--pcap-in",
        &format!("eth0={TRAFFIC}"),
        "--pcap-delivered",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("= transmitted 6 + delivered 5 + dropped 5 + in flight 0"),
        "{stdout}"
    );
    let cap = read_cap(&out);
    let names: Vec<String> = cap
        .interfaces
        .iter()
        .map(|i| i.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "host/lo",
            "pod1/lo",
            "pod2/lo",
            "host/eth0",
            "host/nk-pod1",
            "pod1/eth0",
            "host/nk-pod2",
            "pod2/eth0"
        ]
    );
    let got: Vec<(&str, String, usize)> = cap
        .packets
        .iter()
        .map(|p| {
            (
                names[p.interface as usize].as_str(),
                p.comment.clone().unwrap_or_default(),
                p.data.len(),
            )
        })
        .collect();
    let want = [
        // in time order: each frame completes before the next arrives (the
        // SYNs and the datagram the pods answer are not taken: no socket)
        ("host/eth0", "id=9 by=stack", 42),
        ("host/eth0", "id=11 by=stack", 74),
        ("pod1/eth0", "id=13 by=stack", 74),
        ("pod1/eth0", "id=15 by=stack", 74),
        ("pod2/eth0", "id=16 by=stack", 74),
    ];
    let want: Vec<(&str, String, usize)> = want
        .iter()
        .map(|(n, c, l)| (*n, c.to_string(), *l))
        .collect();
    assert_eq!(got, want);
    // the interface names lead each packet back to its device
    let (code, stdout, stderr) = skiff(&["run", TOPO, "--pcap-in", &out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\nconservation: in 5 + "), "{stdout}");

    // a pcap holds one device
    let (code, _, stderr) = skiff(&["run", TOPO, "--pcap-delivered", &t.path("d.pcap")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("d.pcap: not supported: a pcap file holds one device; name it .pcapng"),
        "{stderr}"
    );
}
