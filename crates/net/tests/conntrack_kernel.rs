//! Conntrack and NAT against the kernel: the same packets through a real
//! namespace with the same iptables NAT rules give the same conntrack table
//! (`conntrack -L`, timeouts masked) and the same frame out (IPv4 id
//! masked). Needs root, `ip`, `iptables`, `conntrack`, `ethtool`, python3;
//! skips with a printed reason otherwise. Namespaces are `skiff-ct*`,
//! removed also on failure.

use std::net::IpAddr;
use std::process::{Command, Stdio};

use skiff_net::netfilter::conntrack::{nf_conntrack_confirm, nf_conntrack_in, Conntrack};
use skiff_net::netfilter::nat::{
    nf_nat_fn, NatTarget, NfNatManipType, NfNatRange2, NF_NAT_RANGE_MAP_IPS,
    NF_NAT_RANGE_PROTO_SPECIFIED,
};
use skiff_net::netfilter::{NfHook, NfHookState, NfProto, NfSkb, NfVerdict};
use skiff_wire::checksum::{checksum, fold, pseudo_header_v4, sum};

const C: &str = "skiff-ctk-c";
const R: &str = "skiff-ctk-r";

/// Deletes the namespaces when the test ends, passed or failed.
struct Netns;
impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [C, R] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) -> String {
    skiff_kernel::netns::run(args[0], &args[1..]).unwrap_or_else(|e| panic!("{e}"))
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    skiff_kernel::netns::run_netns(ns, args).unwrap_or_else(|e| panic!("{e}"))
}

fn tools_missing() -> Option<String> {
    skiff_kernel::netns::missing(
        &["ip", "iptables", "conntrack", "ethtool", "python3"],
        "apt-get install conntrack iptables ethtool",
    )
}

fn setup() -> Netns {
    let g = Netns;
    for ns in [C, R] {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
        sh(&["ip", "netns", "add", ns]);
    }
    sh(&[
        "ip",
        "link",
        "add",
        "skiff-ctk0",
        "netns",
        C,
        "type",
        "veth",
        "peer",
        "name",
        "skiff-ctk1",
        "netns",
        R,
    ]);
    in_ns(
        C,
        &["ip", "addr", "add", "10.77.0.1/24", "dev", "skiff-ctk0"],
    );
    in_ns(
        R,
        &["ip", "addr", "add", "10.77.0.2/24", "dev", "skiff-ctk1"],
    );
    for (ns, dev) in [(C, "skiff-ctk0"), (R, "skiff-ctk1")] {
        in_ns(ns, &["ip", "link", "set", dev, "up"]);
        in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        // Full checksums on the wire (no CHECKSUM_PARTIAL), as skiff makes.
        in_ns(ns, &["ethtool", "-K", dev, "tx", "off"]);
    }
    g
}

/// `conntrack -L` lines with the timeout (third field) masked, sorted.
fn mask_timeouts(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = lines
        .into_iter()
        .filter(|l| !l.is_empty() && !l.starts_with("conntrack v"))
        .map(|l| {
            let mut f: Vec<&str> = l.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(t) = f.get_mut(2) {
                *t = "T";
            }
            f.join(" ")
        })
        .collect();
    v.sort();
    v
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, id: u16) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&32u16.to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40; // DF, as a UDP socket sends
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(b"data");
    let ps = pseudo_header_v4(src.into(), dst.into(), 17, 12);
    let c = fold(sum(&u, ps));
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&u);
    p
}

fn range(a: &str, port: u16) -> NfNatRange2 {
    let a: IpAddr = a.parse().unwrap();
    NfNatRange2 {
        flags: NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED,
        min_addr: a,
        max_addr: a,
        min_proto: port,
        max_proto: port,
        base_proto: 0,
    }
}

fn st(hook: NfHook) -> NfHookState {
    NfHookState {
        hook,
        pf: NfProto::Ipv4,
        in_ifindex: None,
        out_ifindex: None,
        in_name: None,
        out_name: None,
        masq_addr: None,
        redirect_addr: None,
        addr_types: (0, 0),
        now_ns: 0,
    }
}

/// One packet through conntrack, the nat hook of `hook` (the table chose
/// `target`), and the confirm hook: the packet as it leaves.
fn through(
    ct: &mut Conntrack,
    mut pkt: Vec<u8>,
    first: NfHook,
    last: NfHook,
    dnat: Option<NatTarget>,
    snat: Option<NatTarget>,
) -> Vec<u8> {
    let (mut mark, mut nfct) = (0u32, None);
    let mut skb = NfSkb {
        pkt: &mut pkt,
        mark: &mut mark,
        nfct: &mut nfct,
    };
    assert_eq!(nf_conntrack_in(ct, &mut skb, &st(first)), NfVerdict::Accept);
    let v = nf_nat_fn(
        ct,
        &mut skb,
        &st(first),
        NfNatManipType::Dst,
        &mut |_, _| (NfVerdict::Accept, dnat),
    );
    assert_eq!(v, NfVerdict::Accept);
    let v = nf_nat_fn(ct, &mut skb, &st(last), NfNatManipType::Src, &mut |_, _| {
        (NfVerdict::Accept, snat)
    });
    assert_eq!(v, NfVerdict::Accept);
    assert_eq!(
        nf_conntrack_confirm(ct, &mut skb, &st(last)),
        NfVerdict::Accept
    );
    pkt
}

/// Prints (hex) the first IPv4 UDP frame to port 9 seen on the device.
const CAPTURE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("skiff-ctk0", 0))
s.settimeout(3)
for _ in range(20):
    f = s.recv(2048)
    ip = f[14:]
    if ip[9] == 17 and ip[22:24] == b"\x00\x09":
        print(ip[:(ip[2] << 8) | ip[3]].hex()); sys.stdout.flush(); break
"#;

fn mask_ip_id(mut p: Vec<u8>) -> Vec<u8> {
    if p.len() >= 20 {
        p[4..6].copy_from_slice(&[0, 0]);
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[test]
fn dnat_and_snat_tables_and_frames_match_the_kernel() {
    if let Some(why) = tools_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    let _g = setup();
    in_ns(
        R,
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "-d",
            "10.77.0.2",
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to-destination",
            "10.77.0.2:5353",
        ],
    );
    in_ns(
        R,
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-p",
            "udp",
            "-d",
            "10.77.0.1",
            "--dport",
            "9",
            "-j",
            "SNAT",
            "--to-source",
            "10.77.0.2:7000",
        ],
    );
    // The capture in C runs while R sends.
    let cap = Command::new("ip")
        .args(["netns", "exec", C, "python3", "-c", CAPTURE])
        .stdout(Stdio::piped())
        .spawn()
        .expect("capture");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let send = |ns: &str, src: &str, sport: u16, dst: &str, dport: u16| {
        in_ns(ns, &["python3", "-c", &format!(
            "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('{src}',{sport})); s.sendto(b'data',('{dst}',{dport}))"
        )]);
    };
    send(C, "10.77.0.1", 40000, "10.77.0.2", 53);
    send(R, "10.77.0.2", 6000, "10.77.0.1", 9);
    let out = cap.wait_with_output().expect("capture output");
    let kernel_frame = hex(String::from_utf8_lossy(&out.stdout).trim());
    let kernel = mask_timeouts(in_ns(R, &["conntrack", "-L"]).lines().map(String::from));

    let mut ct = Conntrack::default();
    // C's datagram arrives at R (PREROUTING .. INPUT), R's leaves (OUTPUT .. POSTROUTING).
    let dnat = Some(NatTarget::Dnat(range("10.77.0.2", 5353)));
    through(
        &mut ct,
        udp([10, 77, 0, 1], 40000, [10, 77, 0, 2], 53, 1),
        NfHook::PreRouting,
        NfHook::LocalIn,
        dnat,
        None,
    );
    let snat = Some(NatTarget::Snat(range("10.77.0.2", 7000)));
    let frame = through(
        &mut ct,
        udp([10, 77, 0, 2], 6000, [10, 77, 0, 1], 9, 2),
        NfHook::LocalOut,
        NfHook::PostRouting,
        None,
        snat,
    );
    assert_eq!(mask_timeouts(ct.dump(0)), kernel);
    assert_eq!(kernel.len(), 2, "{kernel:?}");
    assert_eq!(mask_ip_id(frame), mask_ip_id(kernel_frame));
}
