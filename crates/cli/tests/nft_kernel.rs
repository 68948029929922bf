//! nf_tables against the kernel: the same `nft -f` rule set loaded by the
//! real `nft` in network namespaces laid out as examples/k8s-node-kube-proxy's
//! node (outside veth = eth0, one veth per pod) and by `skiff run` from the
//! topology's `nft = '''...'''`; the same frames in. Compared: the frames
//! each pod and the outside receive (IPv4 id and checksums masked; for
//! masqueraded packets the source port and L4 checksum, which `masquerade
//! fully-random` draws), every `counter` of `nft list ruleset` (by table,
//! chain and rule), and `conntrack -L` (timeouts and masqueraded ports
//! masked).
//!
//! `numgen random` cannot match the kernel's draw, so both sides run the
//! kube-proxy rule set with `numgen inc` (the endpoint choice must then
//! match). The pods drop what they receive (an nft chain at prerouting, after
//! the capture taps it), as in crates/cli/tests/netfilter_kernel.rs.
//!
//! Needs root, `ip`, `nft`, `conntrack`, `ethtool`, python3; skips with a
//! printed reason otherwise. Namespaces are `skiff-n<pid>-*`, removed also
//! on failure; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_kernel::testpkt::{eth, icmp_echo, ipv4, tcp, udp};

const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const NODE_ADDR: &str = "192.168.1.10";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/k8s-node-kube-proxy/topology-nft.toml")
}

/// The namespaces and scratch directory of one case; deleted when the test
/// ends, passed or failed.
struct Nets {
    pid: u32,
    case: &'static str,
}

impl Nets {
    fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(self.ns("run"))
    }

    fn ns(&self, role: &str) -> String {
        format!("skiff-n{}-{}-{role}", self.pid, self.case)
    }
}

impl Drop for Nets {
    fn drop(&mut self) {
        for role in ["host", "out", "pod1", "pod2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .status();
        }
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

fn sh(args: &[&str]) -> String {
    skiff_kernel::netns::run(args[0], &args[1..]).unwrap_or_else(|e| panic!("{e}"))
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    skiff_kernel::netns::run_netns(ns, args).unwrap_or_else(|e| panic!("{e}"))
}

fn skip_reason() -> Option<String> {
    skiff_kernel::netns::missing(
        &["ip", "nft", "conntrack", "ethtool", "python3"],
        "apt-get install nftables conntrack ethtool",
    )
}

/// `nft -f` of `text` in `ns` (through a file in the case's directory).
fn nft_f(n: &Nets, ns: &str, text: &str) {
    let f = n.dir().join(format!("{ns}.nft"));
    std::fs::write(&f, text).expect("write nft file");
    in_ns(ns, &["nft", "-f", &f.to_string_lossy()]);
}

fn veth(a: &str, da: &str, ma: &str, b: &str, db: &str, mb: &str) {
    sh(&[
        "ip", "link", "add", da, "netns", a, "address", ma, "type", "veth", "peer", "name", db,
        "netns", b, "address", mb,
    ]);
    for (ns, d) in [(a, da), (b, db)] {
        in_ns(ns, &["ip", "link", "set", d, "up"]);
        // Full checksums on the wire (no CHECKSUM_PARTIAL), as skiff makes.
        in_ns(ns, &["ethtool", "-K", d, "tx", "off"]);
    }
}

const POD_DROP: &str = "table ip pod {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy drop;\n\t}\n}\n";

/// The example's node in the kernel (host `skh-eth` = eth0 to `out`,
/// `skh-p1`/`skh-p2` to the pods), addresses, routes and neighbours as the
/// topology's; the pods drop what they receive.
fn kernel_node(n: &Nets) {
    for role in ["host", "out", "pod1", "pod2"] {
        sh(&["ip", "netns", "add", &n.ns(role)]);
        in_ns(&n.ns(role), &["ip", "link", "set", "lo", "up"]);
    }
    let (h, o) = (n.ns("host"), n.ns("out"));
    veth(
        &h,
        "skh-eth",
        "02:00:00:00:00:01",
        &o,
        "sko-eth",
        "02:00:00:00:00:fe",
    );
    in_ns(
        &h,
        &["ip", "addr", "add", "192.168.1.10/24", "dev", "skh-eth"],
    );
    in_ns(
        &o,
        &["ip", "addr", "add", "192.168.1.1/24", "dev", "sko-eth"],
    );
    in_ns(
        &h,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "192.168.1.1",
            "dev",
            "skh-eth",
        ],
    );
    in_ns(
        &h,
        &[
            "ip",
            "neigh",
            "replace",
            "192.168.1.1",
            "lladdr",
            "02:00:00:00:00:fe",
            "dev",
            "skh-eth",
            "nud",
            "permanent",
        ],
    );
    in_ns(&h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (i, addr) in [(1, "10.0.1.11"), (2, "10.0.1.12")] {
        let p = n.ns(&format!("pod{i}"));
        let (hd, pd) = (format!("skh-p{i}"), format!("skp{i}"));
        let pmac = format!("02:00:00:00:01:0{i}");
        veth(&h, &hd, &format!("02:00:00:00:02:0{i}"), &p, &pd, &pmac);
        in_ns(
            &p,
            &["ip", "addr", "add", &format!("{addr}/32"), "dev", &pd],
        );
        in_ns(&p, &["ip", "route", "add", "default", "dev", &pd]);
        nft_f(n, &p, POD_DROP);
        in_ns(
            &h,
            &["ip", "route", "add", &format!("{addr}/32"), "dev", &hd],
        );
        in_ns(
            &h,
            &[
                "ip",
                "neigh",
                "replace",
                addr,
                "lladdr",
                &pmac,
                "dev",
                &hd,
                "nud",
                "permanent",
            ],
        );
    }
}

/// Prints (hex, one a line) the IPv4 packets `dev` receives until 1.5 s
/// pass with none; at most 64.
const CAPTURE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((sys.argv[1], 0))
s.settimeout(1.5)
for _ in range(64):
    try:
        f, a = s.recvfrom(2048)
    except socket.timeout:
        break
    if a[2] != socket.PACKET_OUTGOING:
        print(f[14:].hex()); sys.stdout.flush()
"#;

const SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h)); time.sleep(0.05)
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// What a run gives: the IPv4 packets pod1, pod2 and the outside received,
/// the `nft list ruleset` text, the host's `conntrack -L` lines.
#[derive(Debug)]
struct Side {
    seen: Vec<Vec<Vec<u8>>>,
    ruleset: String,
    ct: Vec<String>,
}

fn kernel_run(n: &Nets, rules: &str, frames: &[Vec<u8>]) -> Side {
    std::fs::create_dir_all(n.dir()).expect("temp dir");
    kernel_node(n);
    let h = n.ns("host");
    nft_f(n, &h, rules);
    let taps = [("pod1", "skp1"), ("pod2", "skp2"), ("out", "sko-eth")];
    let caps: Vec<_> = taps
        .iter()
        .map(|(ns, dev)| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &n.ns(ns),
                    "timeout",
                    "20",
                    "python3",
                    "-c",
                    CAPTURE,
                    dev,
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("capture")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let hexes: Vec<String> = frames.iter().map(|f| hex(f)).collect();
    let mut args = vec!["timeout", "20", "python3", "-c", SEND, "sko-eth"];
    args.extend(hexes.iter().map(String::as_str));
    in_ns(&n.ns("out"), &args);
    let seen = caps
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("capture output");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(unhex)
                .collect()
        })
        .collect();
    let ruleset = in_ns(&h, &["nft", "list", "ruleset"]);
    let ct = in_ns(&h, &["conntrack", "-L"])
        .lines()
        .map(String::from)
        .collect();
    Side { seen, ruleset, ct }
}

/// skiff's run of topology `src` with the frames into eth0.
fn skiff_run(dir: &Path, src: &str, frames: &[Vec<u8>]) -> Side {
    std::fs::create_dir_all(dir).expect("temp dir");
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, src).expect("write topology");
    let pin = dir.join("in.pcap");
    let mut w =
        skiff_io::Writer::create(&pin, skiff_io::Format::Pcap, &[("eth0", 1)]).expect("pcap");
    for (i, f) in frames.iter().enumerate() {
        w.write(0, 1_000_000 * (i as u64 + 1), f, None)
            .expect("pcap write");
    }
    w.finish().expect("pcap finish");
    let caps: Vec<PathBuf> = ["pod1", "pod2", "out"]
        .iter()
        .map(|c| dir.join(format!("{c}.pcap")))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("run")
        .arg(&topo)
        .arg(format!("--pcap-in=eth0={}", pin.display()))
        .arg(format!("--capture=nk-pod1:netkit={}", caps[0].display()))
        .arg(format!("--capture=nk-pod2:netkit={}", caps[1].display()))
        .arg(format!("--pcap-out=eth0={}", caps[2].display()))
        .args(["--nf-stats", "--conntrack"])
        .output()
        .expect("skiff run");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = caps
        .iter()
        .map(|p| {
            let c = skiff_io::read(p).expect("capture");
            c.packets.into_iter().map(|p| ipv4_of(p.data)).collect()
        })
        .collect();
    let ruleset = so
        .split_once("# ip netns exec host nft list ruleset\n")
        .map_or("", |(_, r)| r)
        .split("\nconntrack -L")
        .next()
        .unwrap_or("")
        .to_string();
    let rest = so.split_once("conntrack -L (host):").map_or("", |(_, r)| r);
    let ct = rest
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(String::from)
        .collect();
    Side { seen, ruleset, ct }
}

fn ipv4_of(f: Vec<u8>) -> Vec<u8> {
    match f.get(12..14) {
        Some([8, 0]) => f.get(14..).map(<[u8]>::to_vec).unwrap_or_default(),
        _ => f,
    }
}

/// Every counter of an `nft list ruleset` text as (table, chain, rule
/// number in the chain, packets, bytes).
fn counters(text: &str) -> Vec<(String, String, usize, u64, u64)> {
    let (mut table, mut chain, mut rule) = (String::new(), String::new(), 0usize);
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if let Some(t) = l.strip_prefix("table ") {
            table = t.trim_end_matches(" {").to_string();
        } else if let Some(c) = l.strip_prefix("chain ") {
            chain = c.trim_end_matches(" {").to_string();
            rule = 0;
        } else if l.is_empty() || l == "}" || l.starts_with("type ") && l.contains(" hook ") {
            continue;
        } else if !chain.is_empty() {
            rule += 1;
            let w: Vec<&str> = l.split_whitespace().collect();
            for i in 0..w.len() {
                if w[i] == "counter" && w.get(i + 1) == Some(&"packets") {
                    let num = |k: usize| w.get(k).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                    out.push((table.clone(), chain.clone(), rule, num(i + 2), num(i + 4)));
                }
            }
        }
    }
    out
}

/// `conntrack -L` lines, timeouts masked, the reply's port masked where the
/// node masqueraded (reply dst = the node), sorted.
fn mask_ct(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with("conntrack v"))
        .map(|l| {
            let mut f: Vec<String> = l.split_whitespace().map(String::from).collect();
            if let Some(t) = f.get_mut(2) {
                *t = "T".into();
            }
            let reply = f
                .iter()
                .enumerate()
                .filter(|(_, w)| w.starts_with("src="))
                .nth(1)
                .map(|(i, _)| i);
            if let Some(r) = reply {
                let masq = f
                    .get(r + 1)
                    .is_some_and(|w| *w == format!("dst={NODE_ADDR}"));
                if let Some(w) = f.iter_mut().skip(r).find(|w| w.starts_with("dport=")) {
                    if masq {
                        *w = "dport=P".into();
                    }
                }
            }
            f.join(" ")
        })
        .collect();
    v.sort();
    v
}

/// IPv4 id and checksum zeroed; for packets from the node (masqueraded)
/// the source port and the TCP/UDP checksum zeroed too.
fn mask_pkt(mut p: Vec<u8>) -> Vec<u8> {
    if p.len() < 20 {
        return p;
    }
    p[4..6].copy_from_slice(&[0, 0]);
    p[10..12].copy_from_slice(&[0, 0]);
    let hl = usize::from(p[0] & 0xf) * 4;
    let from_node = p[12..16] == [192, 168, 1, 10];
    let csum = match p[9] {
        6 => Some(hl + 16),
        17 => Some(hl + 6),
        _ => None,
    };
    if let (true, Some(c)) = (from_node, csum) {
        for i in [hl, hl + 1, c, c + 1] {
            if let Some(b) = p.get_mut(i) {
                *b = 0;
            }
        }
    }
    p
}

fn assert_same(k: &Side, s: &Side) {
    for (who, (kp, sp)) in ["pod1", "pod2", "eth0 out"]
        .iter()
        .zip(k.seen.iter().zip(&s.seen))
    {
        let kp: Vec<String> = kp.iter().map(|p| hex(&mask_pkt(p.clone()))).collect();
        let sp: Vec<String> = sp.iter().map(|p| hex(&mask_pkt(p.clone()))).collect();
        assert_eq!(sp, kp, "{who} received");
    }
    assert_eq!(
        counters(&s.ruleset),
        counters(&k.ruleset),
        "counters\nkernel:\n{}\nskiff:\n{}",
        k.ruleset,
        s.ruleset
    );
    assert_eq!(mask_ct(&s.ct), mask_ct(&k.ct));
}

/// The example's nft text, and the example with `text` in its place.
fn nft_text(src: &str) -> (&str, &str, &str) {
    let (head, rest) = src.split_once("nft = '''\n").expect("nft block");
    let (text, tail) = rest.split_once("'''\n").expect("nft block end");
    (head, text, tail)
}

/// The kube-proxy frames: a blocked SYN (raw drop), the DNS service (DNAT +
/// masquerade), two SYNs to the web service (numgen inc: one per endpoint),
/// a ping to the node.
fn frames() -> Vec<Vec<u8>> {
    let ip = |s: [u8; 4], d: [u8; 4], proto: u8, l4: Vec<u8>| {
        eth(
            NODE_MAC,
            GW_MAC,
            0x0800,
            &ipv4(s, d, proto, 0x4000, &[], &l4),
        )
    };
    let syn = |s: [u8; 4], d: [u8; 4], sport: u16, dport: u16| {
        ip(s, d, 6, tcp(&s, &d, sport, dport, 0x02, &[]))
    };
    let vip = [10, 96, 0, 10];
    let (c1, c2) = ([203, 0, 113, 5], [203, 0, 113, 6]);
    vec![
        syn([198, 51, 100, 7], vip, 40002, 80),
        ip(c1, vip, 17, udp(&c1, &vip, 5000, 53, &[0, 1, 2, 3])),
        syn(c1, vip, 40000, 80),
        syn(c2, vip, 40000, 80),
        ip(c1, [192, 168, 1, 10], 1, icmp_echo(0x1234, 1, b"ping")),
    ]
}

#[test]
fn kube_proxy_nft_frames_counters_and_conntrack_match_the_kernel() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let n = Nets {
        pid: std::process::id(),
        case: "kp",
    };
    let src = std::fs::read_to_string(example())
        .expect("example")
        .replace("numgen random", "numgen inc");
    let (_, text, _) = nft_text(&src);
    let frames = frames();
    let k = kernel_run(&n, text, &frames);
    let s = skiff_run(&n.dir().join("skiff"), &src, &frames);
    assert_same(&k, &s);
    assert_eq!(k.seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2, 1]);
    assert_eq!(k.ct.len(), 4, "{:?}", k.ct);
    let c = counters(&k.ruleset);
    assert_eq!(c.len(), 8, "{c:?}");
    assert!(c.iter().all(|x| x.3 <= 3), "{c:?}");
}

/// A firewall: a named set of blocked sources, ssh rejected with a RST, a
/// port set rejected with icmpx port unreachable, forward policy drop with
/// `ct state` and one allowed service.
const FILTER: &str = "table inet filter {
	set blocked {
		type ipv4_addr
		elements = { 203.0.113.6 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked counter drop
		tcp dport 22 counter reject with tcp reset
		udp dport { 9, 19 } counter reject
		meta l4proto icmp counter accept
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related counter accept
		ip daddr 10.0.1.11 tcp dport 8080 counter accept
		ct state new counter
	}
}
";

fn filter_frames() -> Vec<Vec<u8>> {
    let node = [192, 168, 1, 10];
    let (c1, c2, pod1) = ([203, 0, 113, 5], [203, 0, 113, 6], [10, 0, 1, 11]);
    let ip = |s: [u8; 4], d: [u8; 4], proto: u8, l4: Vec<u8>| {
        eth(
            NODE_MAC,
            GW_MAC,
            0x0800,
            &ipv4(s, d, proto, 0x4000, &[], &l4),
        )
    };
    vec![
        ip(c1, node, 6, tcp(&c1, &node, 40000, 22, 0x02, &[])),
        ip(c1, node, 17, udp(&c1, &node, 5000, 9, &[0, 1, 2, 3])),
        ip(c2, node, 1, icmp_echo(0x1234, 1, b"ping")),
        ip(c1, node, 1, icmp_echo(0x1234, 2, b"ping")),
        ip(c1, pod1, 6, tcp(&c1, &pod1, 40001, 8080, 0x02, &[])),
        ip(c1, pod1, 6, tcp(&c1, &pod1, 40002, 9999, 0x02, &[])),
    ]
}

#[test]
fn nft_filter_table_reject_sets_and_policies_match_the_kernel() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let n = Nets {
        pid: std::process::id(),
        case: "f",
    };
    let src = std::fs::read_to_string(example()).expect("example");
    let (head, _, tail) = nft_text(&src);
    let topo = format!("{head}nft = '''\n{FILTER}'''\n{tail}");
    let frames = filter_frames();
    let k = kernel_run(&n, FILTER, &frames);
    let s = skiff_run(&n.dir().join("skiff"), &topo, &frames);
    assert_same(&k, &s);
    // pod1: the allowed SYN; out: the RST, the port unreachable, the echo reply.
    assert_eq!(k.seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 3]);
    let c = counters(&k.ruleset);
    let hits: Vec<u64> = c.iter().map(|x| x.3).collect();
    assert_eq!(hits, [1, 1, 1, 1, 0, 1, 1], "{c:?}");
}
