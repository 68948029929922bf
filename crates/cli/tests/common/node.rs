//! examples/k8s-node-kube-proxy's node on both sides, for the netfilter
//! differential tests (netfilter_kernel.rs with iptables, nft_kernel.rs with
//! nft): in the kernel, network namespaces laid out as the example's node
//! (host with the outside veth = eth0, one veth per pod), frames sent from
//! the outside and captured where they arrive; in skiff, `skiff run` of the
//! topology with the same frames in a pcap and the same places captured.
//! Every wait is bounded; the namespaces go when [`Nets`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_kernel::testpkt::{eth, icmp_echo, ipv4, tcp, udp};

pub const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
pub const NODE_ADDR: &str = "192.168.1.10";

/// The namespace roles a node case makes (not all of them in every case).
const ROLES: [&str; 4] = ["host", "out", "pod1", "pod2"];

/// examples/k8s-node-kube-proxy/`file`.
pub fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/k8s-node-kube-proxy")
        .join(file)
}

/// The namespaces and scratch directory of one case; deleted when the test
/// ends, passed or failed.
pub struct Nets {
    /// `skiff-` and a letter or two that tell the test files apart.
    prefix: &'static str,
    pid: u32,
    /// Tells apart the tests of one process (they run in parallel).
    case: &'static str,
}

impl Nets {
    /// The case's names and its scratch directory (made), or None where
    /// the test cannot run: `skip`, the reason why not, is printed.
    pub fn unless(skip: Option<String>, prefix: &'static str, case: &'static str) -> Option<Nets> {
        if let Some(why) = skip {
            eprintln!("skipping: {why}");
            return None;
        }
        let n = Nets {
            prefix,
            pid: std::process::id(),
            case,
        };
        std::fs::create_dir_all(n.dir()).expect("temp dir");
        Some(n)
    }

    /// The scratch directory (nft files, skiff's topology and pcaps).
    pub fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(self.ns("run"))
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}{}-{}-{role}", self.prefix, self.pid, self.case)
    }
}

impl Drop for Nets {
    fn drop(&mut self) {
        for role in ROLES {
            // not every case makes every role: a failure says nothing
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .output();
        }
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

pub fn sh(args: &[&str]) -> String {
    skiff_kernel::netns::run(args[0], &args[1..]).unwrap_or_else(|e| panic!("{e}"))
}

pub fn in_ns(ns: &str, args: &[&str]) -> String {
    skiff_kernel::netns::run_netns(ns, args).unwrap_or_else(|e| panic!("{e}"))
}

/// `in_ns` of a command line whose words have no blanks in them.
pub fn in_ns_line(ns: &str, line: &str) -> String {
    in_ns(ns, &line.split_whitespace().collect::<Vec<_>>())
}

/// A veth pair from namespace `a` (device `da`, MAC `ma`) to `b` (`db`, `mb`).
pub fn veth(a: &str, da: &str, ma: &str, b: &str, db: &str, mb: &str) {
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

/// Namespace `role` made, its loopback up.
fn add_ns(n: &Nets, role: &str) -> String {
    let ns = n.ns(role);
    sh(&["ip", "netns", "add", &ns]);
    in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
    ns
}

/// The namespaces `host` and `out` with the example's eth0 between them
/// (`skh-eth` in host, `sko-eth` in out, the gateway's end); their names.
pub fn host_and_out(n: &Nets) -> (String, String) {
    let (h, o) = (add_ns(n, "host"), add_ns(n, "out"));
    veth(
        &h,
        "skh-eth",
        "02:00:00:00:00:01",
        &o,
        "sko-eth",
        "02:00:00:00:00:fe",
    );
    (h, o)
}

/// The example's node in the kernel: [`host_and_out`], `skh-p1`/`skh-p2`
/// from host to the pods; addresses, routes and neighbours as the
/// topology's. `pod_drop` is called with each pod's namespace: it makes the
/// pod drop what it receives (after the capture taps it), since skiff's pod
/// stacks do not answer a SYN to a closed port with a RST nor a datagram
/// with port unreachable, the kernel's do, and those answers would cross
/// the node.
pub fn kernel_node(n: &Nets, pod_drop: impl Fn(&str)) {
    let (h, o) = host_and_out(n);
    in_ns_line(&h, "ip addr add 192.168.1.10/24 dev skh-eth");
    in_ns_line(&o, "ip addr add 192.168.1.1/24 dev sko-eth");
    in_ns_line(&h, "ip route add default via 192.168.1.1 dev skh-eth");
    in_ns_line(
        &h,
        "ip neigh replace 192.168.1.1 lladdr 02:00:00:00:00:fe dev skh-eth nud permanent",
    );
    in_ns_line(&h, "sysctl -qw net.ipv4.ip_forward=1");
    for (i, addr) in [(1, "10.0.1.11"), (2, "10.0.1.12")] {
        let p = add_ns(n, &format!("pod{i}"));
        let (hd, pd) = (format!("skh-p{i}"), format!("skp{i}"));
        let pmac = format!("02:00:00:00:01:0{i}");
        veth(&h, &hd, &format!("02:00:00:00:02:0{i}"), &p, &pd, &pmac);
        in_ns_line(&p, &format!("ip addr add {addr}/32 dev {pd}"));
        in_ns_line(&p, &format!("ip route add default dev {pd}"));
        pod_drop(&p);
        in_ns_line(&h, &format!("ip route add {addr}/32 dev {hd}"));
        in_ns_line(
            &h,
            &format!("ip neigh replace {addr} lladdr {pmac} dev {hd} nud permanent"),
        );
    }
}

/// Prints (hex, one a line, without the Ethernet header) the frames of
/// ethertype argv[2] that device argv[1] receives until 1.5 s pass with
/// none; at most 64.
const CAPTURE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(int(sys.argv[2])))
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

/// Sends the frames argv[2..] (hex) out of device argv[1], 50 ms apart.
const SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h)); time.sleep(0.05)
"#;

/// `frames` sent from out's `sko-eth` while each (role, device) of `taps`
/// captures: per tap, the packets of `ethertype` it received (without the
/// Ethernet header).
pub fn send_and_capture(
    n: &Nets,
    taps: &[(&str, &str)],
    ethertype: u16,
    frames: &[Vec<u8>],
) -> Vec<Vec<Vec<u8>>> {
    let ethertype = ethertype.to_string();
    let caps: Vec<_> = taps
        .iter()
        .map(|(role, dev)| {
            Command::new("ip")
                .args(["netns", "exec", &n.ns(role), "timeout", "20", "python3"])
                .args(["-c", CAPTURE, dev, &ethertype])
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
    caps.into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("capture output");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(unhex)
                .collect()
        })
        .collect()
}

/// The IPv4 packets pod1, pod2 and the outside (what the node's eth0 sent)
/// receive of `frames`.
pub fn kernel_node_seen(n: &Nets, frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let taps = [("pod1", "skp1"), ("pod2", "skp2"), ("out", "sko-eth")];
    send_and_capture(n, &taps, 0x0800, frames)
}

/// The host's `conntrack -L` lines.
pub fn kernel_ct(n: &Nets) -> Vec<String> {
    in_ns(&n.ns("host"), &["conntrack", "-L"])
        .lines()
        .map(String::from)
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// An IPv4 frame (DF, no options) from the gateway to the node's eth0.
pub fn to_node(s: [u8; 4], d: [u8; 4], proto: u8, l4: Vec<u8>) -> Vec<u8> {
    eth(
        NODE_MAC,
        GW_MAC,
        0x0800,
        &ipv4(s, d, proto, 0x4000, &[], &l4),
    )
}

/// The kube-proxy frames: a blocked SYN (the raw table's drop), the DNS
/// service (DNAT + masquerade), two SYNs to the web service (the rule set's
/// choice made to alternate: one per endpoint), a ping to the node (input,
/// output, addrtype LOCAL).
pub fn kube_proxy_frames() -> Vec<Vec<u8>> {
    let syn = |s: [u8; 4], d: [u8; 4], sport: u16, dport: u16| {
        to_node(s, d, 6, tcp(&s, &d, sport, dport, 0x02, &[]))
    };
    let vip = [10, 96, 0, 10];
    let (c1, c2) = ([203, 0, 113, 5], [203, 0, 113, 6]);
    vec![
        syn([198, 51, 100, 7], vip, 40002, 80),
        to_node(c1, vip, 17, udp(&c1, &vip, 5000, 53, &[0, 1, 2, 3])),
        syn(c1, vip, 40000, 80),
        syn(c2, vip, 40000, 80),
        to_node(c1, [192, 168, 1, 10], 1, icmp_echo(0x1234, 1, b"ping")),
    ]
}

/// The firewall cases' frames: ssh and port 9 to the node (rejected),
/// a ping from the blocked source, pod1:8080 (let through) and pod1:9999
/// (forward policy drop).
pub fn firewall_frames() -> Vec<Vec<u8>> {
    let node = [192, 168, 1, 10];
    let (c1, c2, pod1) = ([203, 0, 113, 5], [203, 0, 113, 6], [10, 0, 1, 11]);
    vec![
        to_node(c1, node, 6, tcp(&c1, &node, 40000, 22, 0x02, &[])),
        to_node(c1, node, 17, udp(&c1, &node, 5000, 9, &[0, 1, 2, 3])),
        to_node(c2, node, 1, icmp_echo(0x1234, 1, b"ping")),
        to_node(c1, pod1, 6, tcp(&c1, &pod1, 40001, 8080, 0x02, &[])),
        to_node(c1, pod1, 6, tcp(&c1, &pod1, 40002, 9999, 0x02, &[])),
    ]
}

/// `frames` as a pcap for `--pcap-in`, one a millisecond.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w =
        skiff_io::Writer::create(path, skiff_io::Format::Pcap, &[("eth0", 1)]).expect("pcap");
    for (i, f) in frames.iter().enumerate() {
        w.write(0, 1_000_000 * (i as u64 + 1), f, None)
            .expect("pcap write");
    }
    w.finish().expect("pcap finish");
}

/// skiff's run of the node topology `src` (in `dir`) with `frames` into
/// eth0, with `--nf-stats --conntrack`: its stdout, and the IPv4 packets
/// pod1, pod2 and the outside received (as [`kernel_node_seen`]).
pub fn skiff_node_run(dir: &Path, src: &str, frames: &[Vec<u8>]) -> (String, Vec<Vec<Vec<u8>>>) {
    std::fs::create_dir_all(dir).expect("temp dir");
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, src).expect("write topology");
    let pin = dir.join("in.pcap");
    write_pcap(&pin, frames);
    let caps: Vec<PathBuf> = ["pod1", "pod2", "out"]
        .iter()
        .map(|c| dir.join(format!("{c}.pcap")))
        .collect();
    let so = skiff_run(&[
        topo.display().to_string(),
        format!("--pcap-in=eth0={}", pin.display()),
        format!("--capture=nk-pod1:netkit={}", caps[0].display()),
        format!("--capture=nk-pod2:netkit={}", caps[1].display()),
        format!("--pcap-out=eth0={}", caps[2].display()),
        "--nf-stats".into(),
        "--conntrack".into(),
    ]);
    let seen = caps
        .iter()
        .map(|p| {
            let c = skiff_io::read(p).expect("capture");
            c.packets.into_iter().map(|p| ipv4_of(p.data)).collect()
        })
        .collect();
    (so, seen)
}

/// `skiff run ARGS`, which must succeed: its stdout.
pub fn skiff_run(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("run")
        .args(args)
        .output()
        .expect("skiff run");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// The host's `conntrack -L` lines out of `--conntrack`.
pub fn skiff_ct(so: &str) -> Vec<String> {
    let rest = so.split_once("conntrack -L (host):").map_or("", |(_, r)| r);
    rest.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The IPv4 packet of a captured frame (with or without an Ethernet header).
fn ipv4_of(f: Vec<u8>) -> Vec<u8> {
    match f.get(12..14) {
        Some([8, 0]) => f.get(14..).map(<[u8]>::to_vec).unwrap_or_default(),
        _ => f,
    }
}

/// `conntrack -L` lines, timeouts masked, the reply's port masked where the
/// node masqueraded (reply dst = the node), sorted.
pub fn mask_ct(lines: &[String]) -> Vec<String> {
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

/// The same packets (masked) into pod1, pod2 and out of eth0 on both sides.
pub fn assert_same_seen(kernel: &[Vec<Vec<u8>>], skiff: &[Vec<Vec<u8>>]) {
    for (who, (kp, sp)) in ["pod1", "pod2", "eth0 out"]
        .iter()
        .zip(kernel.iter().zip(skiff))
    {
        let kp: Vec<String> = kp.iter().map(|p| hex(&mask_pkt(p.clone()))).collect();
        let sp: Vec<String> = sp.iter().map(|p| hex(&mask_pkt(p.clone()))).collect();
        assert_eq!(sp, kp, "{who} received");
    }
}
