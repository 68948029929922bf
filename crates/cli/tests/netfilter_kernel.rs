//! The kube-proxy example against the kernel: examples/k8s-node-kube-proxy's
//! `iptables` lines, run with the real `iptables` in a network namespace
//! laid out as the example's node (outside veth = eth0, one veth per pod),
//! and through `skiff run` on the example's topology; the same frames in.
//! Compared: the frames each pod receives (IPv4 checksum masked; for
//! masqueraded packets the source port and L4 checksum, which MASQUERADE
//! --random-fully draws), `iptables -t TABLE -L -v -n -x` of every table,
//! and `conntrack -L` (timeouts and masqueraded ports masked).
//!
//! `--mode random` cannot match the kernel's draw, so both sides run the
//! example with its statistic rule as `--mode nth --every 2 --packet 0`
//! (the backend choice must then match). The pods drop what they receive
//! in their raw table (after the capture taps it): skiff's pod stacks do
//! not answer a SYN to a closed port with a RST nor a datagram with port
//! unreachable, the kernel's do, and those answers would cross the node.
//!
//! Needs root, `ip`, `iptables`, `conntrack`, python3; skips with a printed
//! reason otherwise. Namespaces are `skiff-nf<pid>-*`, removed also on
//! failure; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_kernel::testpkt::{eth, icmp_echo, ipv4, ipv6, tcp, udp};
use skiff_topology::netfilter::ShellWords;
use skiff_topology::Topology;

/// The x_tables front end: the nf_tables one (iptables-nft 1.8.9) keeps
/// no policy counters in the base chains and prints protocols as numbers.
const IPTABLES: &str = "iptables-legacy";
const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const NODE_ADDR: &str = "192.168.1.10";
const RANDOM: &str = "--mode random --probability 0.50000000000";
const NTH: &str = "--mode nth --every 2 --packet 0";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/k8s-node-kube-proxy/topology.toml")
}

/// The namespaces and scratch directory of this run; deleted when the test
/// ends, passed or failed.
struct Nets {
    pid: u32,
    /// Tells apart the tests of one process (they run in parallel).
    case: &'static str,
}

impl Nets {
    /// The scratch directory of skiff's side (topology, pcaps).
    fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(self.ns("run"))
    }

    fn ns(&self, role: &str) -> String {
        format!("skiff-nf{}-{}-{role}", self.pid, self.case)
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
        &["ip", IPTABLES, "conntrack", "ethtool", "python3"],
        "apt-get install iptables conntrack",
    )
}

/// A veth pair from namespace `a` (device `da`, MAC `ma`) to `b` (`db`, `mb`).
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

/// The example's node in the kernel: host with `skh-eth` (the example's
/// eth0) to `out`, `skh-p1`/`skh-p2` to the pods; addresses, routes and
/// neighbours as the topology's; the pods drop what they receive.
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
        in_ns(
            &p,
            &[IPTABLES, "-t", "raw", "-A", "PREROUTING", "-j", "DROP"],
        );
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

/// The example's topology for skiff's side, its pods' `listen = []` left
/// out: the kernel's pods here drop what they receive (raw table) instead of
/// answering, so skiff's pods take every port (they answer nothing either).
fn example_src() -> String {
    std::fs::read_to_string(example())
        .expect("example")
        .replace("listen = []\n", "")
}

/// The example's iptables lines, the statistic rule made nth.
fn rules(topo: &Topology) -> Vec<String> {
    let host = topo
        .namespaces
        .iter()
        .find(|n| n.name == "host")
        .expect("host netns");
    host.iptables
        .iter()
        .map(|l| l.text.replace(RANDOM, NTH))
        .collect()
}

fn apply_rules(n: &Nets, lines: &[String]) {
    for line in lines {
        let w = ShellWords::new(line).unwrap_or_else(|at| panic!("{line}: quote at {at}"));
        let mut args = vec![IPTABLES];
        args.extend(w.words.iter().map(|(_, s)| s.as_str()));
        in_ns(&n.ns("host"), &args);
    }
}

/// The frames sent into the node's eth0: a blocked SYN (raw DROP), the DNS
/// service (DNAT + masquerade), two SYNs to the web service (nth: one per
/// backend), a ping to the node (INPUT, OUTPUT, addrtype LOCAL).
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

/// The kernel run: rules, frames in, then what each pod got, every table's
/// listing and the conntrack table.
fn kernel_run(n: &Nets, lines: &[String], frames: &[Vec<u8>], tables: &[&str]) -> Side {
    kernel_node(n);
    apply_rules(n, lines);
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
    let h = n.ns("host");
    let tables = tables
        .iter()
        .map(|t| in_ns(&h, &[IPTABLES, "-t", t, "-L", "-v", "-n", "-x"]))
        .collect();
    let ct = in_ns(&h, &["conntrack", "-L"])
        .lines()
        .map(String::from)
        .collect();
    Side { seen, tables, ct }
}

/// What a run gives: the IPv4 packets pod1, pod2 and the outside (the
/// node's eth0 sent) received, the tables' listings, the host's
/// `conntrack -L` lines.
#[derive(Debug)]
struct Side {
    seen: Vec<Vec<Vec<u8>>>,
    tables: Vec<String>,
    ct: Vec<String>,
}

/// skiff's run of topology `src` with the frames into eth0.
fn skiff_run(dir: &Path, src: &str, frames: &[Vec<u8>], tables: &[&str]) -> Side {
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
    Side {
        seen,
        tables: skiff_tables(&so, tables),
        ct: skiff_ct(&so),
    }
}

/// The IPv4 packet of a captured frame (with or without an Ethernet header).
fn ipv4_of(f: Vec<u8>) -> Vec<u8> {
    match f.get(12..14) {
        Some([8, 0]) => f.get(14..).map(<[u8]>::to_vec).unwrap_or_default(),
        _ => f,
    }
}

/// The host's listings of `tables` out of `--nf-stats`.
fn skiff_tables(so: &str, tables: &[&str]) -> Vec<String> {
    tables
        .iter()
        .map(|t| {
            let head = format!("# ip netns exec host iptables -t {t} -L -v -n -x\n");
            let rest = so.split_once(&head).map_or("", |(_, r)| r);
            rest.split("\n# ")
                .next()
                .unwrap_or("")
                .split("\nconntrack -L")
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The host's `conntrack -L` lines out of `--conntrack`.
fn skiff_ct(so: &str) -> Vec<String> {
    let rest = so.split_once("conntrack -L (host):").map_or("", |(_, r)| r);
    rest.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Lines without trailing blanks, empty lines gone, the `prot` column as
/// iptables 1.8.9's `-n` prints it (a number: 0, 6, 17) where skiff prints
/// the names older iptables print (all, tcp, udp).
fn norm(t: &str) -> Vec<String> {
    t.lines()
        .map(|l| {
            let l = l.trim_end();
            [
                ("  all  ", "  0    "),
                ("  tcp  ", "  6    "),
                ("  udp  ", "  17   "),
            ]
            .iter()
            .fold(l.to_string(), |l, (name, num)| l.replacen(name, num, 1))
        })
        .filter(|l| !l.is_empty())
        .collect()
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

/// IPv4 id and checksum zeroed (as crates/net/tests/conntrack_kernel.rs
/// masks them); for packets from the node (masqueraded) the source
/// port and the TCP/UDP checksum zeroed too.
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

#[test]
fn kube_proxy_example_frames_counters_and_conntrack_match_the_kernel() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let n = Nets {
        pid: std::process::id(),
        case: "kp",
    };
    let dir = n.dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let topo = Topology::load(&example()).expect("example topology");
    let lines = rules(&topo);
    assert!(
        lines.iter().any(|l| l.contains(NTH)),
        "the example's statistic rule is gone"
    );
    let frames = frames();
    let tables = ["raw", "filter", "nat"];
    let k = kernel_run(&n, &lines, &frames, &tables);
    let s = skiff_run(&dir, &example_src().replace(RANDOM, NTH), &frames, &tables);
    assert_same(&k, &s, &tables);
    assert_eq!(
        k.seen.iter().take(2).map(Vec::len).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(k.ct.len(), 4, "{:?}", k.ct);
}

/// Same packets into pod1, pod2 and out of eth0 (masked), same listings.
fn assert_same(k: &Side, s: &Side, tables: &[&str]) {
    for (who, (kp, sp)) in ["pod1", "pod2", "eth0 out"]
        .iter()
        .zip(k.seen.iter().zip(&s.seen))
    {
        let kp: Vec<String> = kp.iter().map(|p| hex(&mask_pkt(p.clone()))).collect();
        let sp: Vec<String> = sp.iter().map(|p| hex(&mask_pkt(p.clone()))).collect();
        assert_eq!(sp, kp, "{who} received");
    }
    for (t, (kt, st)) in tables.iter().zip(k.tables.iter().zip(&s.tables)) {
        assert_eq!(norm(st), norm(kt), "iptables -t {t} -L -v -n -x");
    }
    assert_eq!(mask_ct(&s.ct), mask_ct(&k.ct));
}

/// The filter-table case's rules: INPUT rejects ssh with a RST and port 9
/// with port unreachable, drops a source; FORWARD (policy DROP) lets
/// established flows and pod1's 8080 through.
const FILTER_RULES: [&str; 6] = [
    "-P FORWARD DROP",
    "-A INPUT -s 203.0.113.6/32 -j DROP",
    "-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with tcp-reset",
    "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable",
    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -d 10.0.1.11/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
];

/// The example's node with the filter rules instead of kube-proxy's.
fn filter_topology() -> String {
    let src = example_src();
    let (head, rest) = src.split_once("\niptables = [").expect("iptables block");
    let (_, tail) = rest.split_once("\n]\n").expect("block end");
    let lines: Vec<String> = FILTER_RULES.iter().map(|r| format!("  {r:?},")).collect();
    format!("{head}\niptables = [\n{}\n]\n{tail}", lines.join("\n"))
}

/// Frames for the filter case: ssh (RST), port 9 (ICMP unreachable), the
/// dropped source, pod1:8080 (forwarded), pod1:9999 (policy DROP).
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
        ip(c1, pod1, 6, tcp(&c1, &pod1, 40001, 8080, 0x02, &[])),
        ip(c1, pod1, 6, tcp(&c1, &pod1, 40002, 9999, 0x02, &[])),
    ]
}

#[test]
fn filter_table_reject_and_policies_match_the_kernel() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let n = Nets {
        pid: std::process::id(),
        case: "f",
    };
    let dir = n.dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let lines: Vec<String> = FILTER_RULES.iter().map(|r| r.to_string()).collect();
    let frames = filter_frames();
    let tables = ["filter"];
    let k = kernel_run(&n, &lines, &frames, &tables);
    let s = skiff_run(&dir, &filter_topology(), &frames, &tables);
    assert_same(&k, &s, &tables);
    assert_eq!(k.seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 2]);
    let listing = norm(&k.tables[0]);
    for line in [
        "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
        "Chain FORWARD (policy DROP 1 packets, 40 bytes)",
        "Chain OUTPUT (policy ACCEPT 2 packets, 100 bytes)",
    ] {
        assert!(listing.iter().any(|l| l == line), "{line}: {listing:#?}");
    }
}

/// The IPv6 REJECT case's rules (ip6t_REJECT: a RST, port unreachable by
/// name and by default, administratively prohibited).
const REJECT6_RULES: [&str; 4] = [
    "-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with tcp-reset",
    "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp6-port-unreachable",
    "-A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with icmp6-adm-prohibited",
    "-A INPUT -p tcp -m tcp --dport 24 -j REJECT",
];
const NODE6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const GW6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The node with one IPv6 address on its eth0 and the REJECT rules.
fn reject6_topology() -> String {
    let rules: Vec<String> = REJECT6_RULES.iter().map(|r| format!("  {r:?},")).collect();
    format!(
        "[netns.host]\nip6tables = [\n{}\n]\n\n[[netns.host.device]]\nname = \"eth0\"\n\
         kind = \"nic\"\nifindex = 2\nmac = \"02:00:00:00:00:01\"\n\n[[netns.host.address]]\n\
         dev = \"eth0\"\ncidr = \"2001:db8::10/64\"\n\n[[netns.host.neighbour]]\ndev = \"eth0\"\n\
         ip = \"2001:db8::1\"\nmac = \"02:00:00:00:00:fe\"\n",
        rules.join("\n")
    )
}

/// From the gateway to the node: SYN to 22 (RST+ACK), ACK to 22 (RST with
/// the ACK's number), a datagram to 9, SYNs to 23 and 24 (ICMPv6 errors).
fn reject6_frames() -> Vec<Vec<u8>> {
    let ip = |next: u8, l4: Vec<u8>| eth(NODE_MAC, GW_MAC, 0x86dd, &ipv6(GW6, NODE6, next, &l4));
    vec![
        ip(6, tcp(&GW6, &NODE6, 40000, 22, 0x02, &[])),
        ip(6, tcp(&GW6, &NODE6, 40001, 22, 0x10, b"data")),
        ip(17, udp(&GW6, &NODE6, 5000, 9, &[0, 1, 2, 3])),
        ip(6, tcp(&GW6, &NODE6, 40002, 23, 0x02, &[])),
        ip(6, tcp(&GW6, &NODE6, 40003, 24, 0x02, &[])),
    ]
}

/// The IPv6 packets (from the node) a capture holds: TCP, and ICMPv6
/// destination unreachable, with the flow label masked (the kernel's
/// icmp6_send draws an automatic flow label, nf_send_reset6 sets 0).
fn replies6(frames: Vec<Vec<u8>>) -> Vec<String> {
    frames
        .into_iter()
        .filter_map(|f| {
            let mut p = match f.get(12..14) {
                Some([0x86, 0xdd]) => f.get(14..)?.to_vec(),
                _ => f,
            };
            let keep = matches!((p.get(6), p.get(40)), (Some(6), _) | (Some(58), Some(1)));
            if !keep {
                return None;
            }
            if let Some(b) = p.get_mut(1) {
                *b &= 0xf0;
            }
            p.get_mut(2..4)?.copy_from_slice(&[0, 0]);
            Some(hex(&p))
        })
        .collect()
}

/// The kernel's side: out -> host over a veth, ip6tables-legacy's rules,
/// what the node sends back and its INPUT listing.
fn reject6_kernel(n: &Nets, frames: &[Vec<u8>]) -> (Vec<String>, String) {
    for role in ["host", "out"] {
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
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8::10/64",
            "dev",
            "skh-eth",
            "nodad",
        ],
    );
    in_ns(
        &h,
        &[
            "ip",
            "-6",
            "neigh",
            "replace",
            "2001:db8::1",
            "lladdr",
            "02:00:00:00:00:fe",
            "dev",
            "skh-eth",
            "nud",
            "permanent",
        ],
    );
    for line in REJECT6_RULES {
        let w = ShellWords::new(line).unwrap_or_else(|at| panic!("{line}: quote at {at}"));
        let mut args = vec!["ip6tables-legacy"];
        args.extend(w.words.iter().map(|(_, s)| s.as_str()));
        in_ns(&h, &args);
    }
    let cap = CAPTURE.replace("htons(0x0800)", "htons(0x86dd)");
    let c = Command::new("ip")
        .args([
            "netns", "exec", &o, "timeout", "20", "python3", "-c", &cap, "sko-eth",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("capture");
    std::thread::sleep(Duration::from_millis(500));
    let hexes: Vec<String> = frames.iter().map(|f| hex(f)).collect();
    let mut args = vec!["timeout", "20", "python3", "-c", SEND, "sko-eth"];
    args.extend(hexes.iter().map(String::as_str));
    in_ns(&o, &args);
    let out = c.wait_with_output().expect("capture output");
    let seen = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(unhex)
        .collect();
    let listing = in_ns(&h, &["ip6tables-legacy", "-L", "INPUT", "-v", "-n", "-x"]);
    (replies6(seen), listing)
}

/// skiff's side: the topology run with the frames into eth0.
fn reject6_skiff(dir: &Path, frames: &[Vec<u8>]) -> (Vec<String>, String) {
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, reject6_topology()).expect("write topology");
    let (pin, pout) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let mut w =
        skiff_io::Writer::create(&pin, skiff_io::Format::Pcap, &[("eth0", 1)]).expect("pcap");
    for (i, f) in frames.iter().enumerate() {
        w.write(0, 1_000_000 * (i as u64 + 1), f, None)
            .expect("pcap write");
    }
    w.finish().expect("pcap finish");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("run")
        .arg(&topo)
        .arg(format!("--pcap-in=eth0={}", pin.display()))
        .arg(format!("--pcap-out=eth0={}", pout.display()))
        .arg("--nf-stats")
        .output()
        .expect("skiff run");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = skiff_io::read(&pout).expect("capture");
    let seen = replies6(c.packets.into_iter().map(|p| p.data).collect());
    let head = "# ip netns exec host ip6tables -t filter -L -v -n -x\n";
    let listing = so.split_once(head).map_or("", |(_, r)| r);
    let input = listing.split("\n\n").next().unwrap_or("").to_string();
    (seen, input)
}

#[test]
fn ip6tables_reject_replies_match_the_kernel() {
    if let Some(why) = skiff_kernel::netns::missing(
        &["ip", "ip6tables-legacy", "ethtool", "python3"],
        "apt-get install iptables",
    ) {
        eprintln!("skipping: {why}");
        return;
    }
    let n = Nets {
        pid: std::process::id(),
        case: "r6",
    };
    let dir = n.dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let frames = reject6_frames();
    let (k, kl) = reject6_kernel(&n, &frames);
    let (s, sl) = reject6_skiff(&dir, &frames);
    assert_eq!(s, k, "the node's replies (IPv6, flow label masked)");
    assert_eq!(k.len(), 5, "{k:#?}");
    assert_eq!(norm(&sl), norm(&kl), "ip6tables -L INPUT -v -n -x");
}

/// The example's topology for skiff's side (`example_src`) with its
/// `iptables` lines replaced by `iptables_save` text.
fn save_topology(save: &str) -> String {
    let src = example_src();
    let (head, rest) = src.split_once("\niptables = [").expect("iptables block");
    let (_, tail) = rest.split_once("\n]\n").expect("block end");
    format!("{head}\niptables_save = '''\n{save}'''\n{tail}")
}

#[test]
fn kube_proxy_example_loaded_from_the_kernels_iptables_save_matches_the_kernel() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let n = Nets {
        pid: std::process::id(),
        case: "ks",
    };
    let dir = n.dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let topo = Topology::load(&example()).expect("example topology");
    let lines = rules(&topo);
    let frames = frames();
    let tables = ["raw", "filter", "nat"];
    let k = kernel_run(&n, &lines, &frames, &tables);
    // What the kernel holds, as iptables-save prints it (with the counters
    // of the run, which a restore without -c does not load).
    let save = in_ns(&n.ns("host"), &["iptables-legacy-save", "-c"]);
    assert!(
        save.contains("*nat\n") && save.contains("--mode nth"),
        "{save}"
    );
    let s = skiff_run(&dir, &save_topology(&save), &frames, &tables);
    assert_same(&k, &s, &tables);
}
