//! skiff's classifiers and mirred against the kernel's (this machine has
//! cls_u32, cls_bpf and act_mirred built in): the same tc lines on the
//! ingress of a veth in a skiff-named namespace (frames sent from its peer
//! by a packet socket) and of a NIC in skiff, mirred sending to a second
//! veth / NIC. Compared: which frames come out of the mirred target, in
//! order, and every filter action's packet and byte counters from
//! `tc -s -j filter show`.
//!
//! Needs root and tc (clang-19 for the cls_bpf cases); skips with a
//! reason without.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_kernel::netns::Netns;
use std::time::{Duration, Instant};

use skiff_net::datapath::DatapathOptions;
use skiff_topology::Topology;

fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tc = Command::new("tc").arg("-V").output().is_ok();
    if !root || !tc {
        eprintln!("skipped: needs root and tc (root {root}, tc {tc})");
    }
    root && tc
}

fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A UDP frame from 10.0.0.2 to 10.1.0.`dst` with IP id `id`, UDP
/// destination port `dport`, TTL `ttl`, 100 bytes.
fn frame(id: u16, dport: u16, dst: u8, ttl: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x10, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 86];
    ip.extend_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&[0, 0, ttl, 17, 0, 0, 10, 0, 0, 2, 10, 1, 0, dst]);
    let mut s: u32 = ip
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 66, 0, 0]);
    f.resize(100, 0xab);
    f
}

fn id_of(f: &[u8]) -> Option<u16> {
    (f.len() >= 34 && f[12..14] == [8, 0] && f[23] == 17)
        .then(|| u16::from_be_bytes([f[18], f[19]]))
}

/// The frames: every mix of port, destination and TTL, ids from 1.
fn frames() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut id = 1;
    for dport in [5001, 5002, 5003, 5004, 6000] {
        for dst in [2, 3] {
            for ttl in [64, 63] {
                v.push(frame(id, dport, dst, ttl));
                id += 1;
            }
        }
    }
    v
}

/// A packet socket bound to `ifname` in the calling thread's namespace.
fn packet_socket(ifname: &str) -> i32 {
    // SAFETY: plain socket calls with checked results; sll is zeroed.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        );
        assert!(fd >= 0, "socket");
        let name = std::ffi::CString::new(ifname).unwrap();
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert!(ifindex > 0, "no {ifname}");
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        let r = libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(r, 0, "bind {ifname}");
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        fd
    }
}

/// What one side did: the ids out of the mirred target, and per filter
/// action (pref, kind, index, packets, bytes).
#[derive(Debug, PartialEq)]
struct Side {
    out: Vec<u16>,
    actions: Vec<(u64, String, u64, u64, u64)>,
}

fn actions_of(filters: &serde_json::Value) -> Vec<(u64, String, u64, u64, u64)> {
    let mut v = Vec::new();
    for f in filters.as_array().into_iter().flatten() {
        for a in f["options"]["actions"].as_array().into_iter().flatten() {
            v.push((
                f["pref"].as_u64().unwrap_or(0),
                a["kind"].as_str().unwrap_or("").to_string(),
                a["index"].as_u64().unwrap_or(0),
                a["stats"]["packets"].as_u64().unwrap_or(u64::MAX),
                a["stats"]["bytes"].as_u64().unwrap_or(u64::MAX),
            ));
        }
    }
    v.sort();
    v
}

/// The kernel: veth a0/a1 and b0/b1; the lines on a0 (mirred to b0); the
/// frames sent on a1, what reaches b1 read there.
fn kernel(tag: &str, tc: &[String]) -> Side {
    // deleted when dropped, also when the test fails
    let ns = Netns::add(&format!("skiffc-{tag}-{}", std::process::id()))
        .unwrap_or_else(|e| panic!("{e}"));
    let n = ns.name().to_string();
    for s in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        sh(&["ip", "netns", "exec", &n, "sysctl", "-qw", s]);
    }
    for (x, y) in [("a0", "a1"), ("b0", "b1")] {
        sh(&[
            "ip", "-n", &n, "link", "add", x, "type", "veth", "peer", "name", y,
        ]);
        sh(&["ip", "-n", &n, "link", "set", x, "up"]);
        sh(&["ip", "-n", &n, "link", "set", y, "up"]);
    }
    for l in tc {
        let mut args = vec!["ip", "netns", "exec", &n, "tc"];
        args.extend(l.split_whitespace().map(|w| match w {
            "eth0" => "a0",
            "eth1" => "b0",
            w => w,
        }));
        sh(&args);
    }
    let path = format!("/var/run/netns/{n}");
    let rx = {
        let path = path.clone();
        std::thread::spawn(move || {
            skiff_kernel::live::enter_netns(&path).unwrap();
            let fd = packet_socket("b1");
            let mut out = Vec::new();
            let mut buf = vec![0u8; 2048];
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(800) {
                // SAFETY: buf is a valid writable buffer of its length.
                let r =
                    unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
                if r > 0 {
                    out.extend(id_of(&buf[..r as usize]));
                }
            }
            // SAFETY: fd is ours.
            unsafe { libc::close(fd) };
            out
        })
    };
    std::thread::spawn(move || {
        skiff_kernel::live::enter_netns(&path).unwrap();
        let fd = packet_socket("a1");
        std::thread::sleep(Duration::from_millis(100));
        for f in frames() {
            // SAFETY: f is a valid buffer of its length.
            unsafe { libc::send(fd, f.as_ptr() as *const libc::c_void, f.len(), 0) };
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    })
    .join()
    .unwrap();
    let out = rx.join().unwrap();
    let j = sh(&[
        "ip", "netns", "exec", &n, "tc", "-s", "-j", "filter", "show", "dev", "a0", "ingress",
    ]);
    // iproute2 6.1 prints a u32 `offset` as a bare string in its JSON
    // (`"    offset ",`): dropped before parsing.
    let j = j.replace("\"    offset \",", "");
    Side {
        out,
        actions: actions_of(&serde_json::from_str(&j).unwrap()),
    }
}

const TOPOLOGY: &str = r#"
[netns.host]
tc = [TC]
[[netns.host.device]]
name = "eth0"
kind = "nic"
mac = "02:00:00:00:00:01"
[[netns.host.device]]
name = "eth1"
kind = "nic"
mac = "02:00:00:00:00:02"
"#;

/// skiff: the lines on NIC eth0's ingress, mirred to NIC eth1.
fn skiff(tc: &[String], dir: &Path) -> Side {
    let lines: Vec<String> = tc.iter().map(|l| format!("{l:?}")).collect();
    let src = TOPOLOGY.replace("TC", &lines.join(", "));
    let t = Topology::parse(&src, Path::new("t.toml"), dir).unwrap();
    let mut b = t.build(DatapathOptions::default()).unwrap();
    let host = b.dp.netns("host").unwrap();
    let eth0 = b.dp.device(host, "eth0").unwrap();
    for (i, f) in frames().iter().enumerate() {
        b.dp.inject(eth0, f, 1_000_000 * i as u64).unwrap();
        b.dp.run();
    }
    let out =
        b.dp.take_transmitted()
            .iter()
            .filter_map(|t| id_of(&t.frame))
            .collect();
    let filters: Vec<serde_json::Value> =
        b.dp.tc_filter_show(eth0)
            .unwrap()
            .into_iter()
            .map(|f| f.json)
            .collect();
    Side {
        out,
        actions: actions_of(&serde_json::Value::Array(filters)),
    }
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn compare(tag: &str, tc: &[&str], dir: &Path) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tc: Vec<String> = tc.iter().map(|s| s.to_string()).collect();
    let k = kernel(tag, &tc);
    let s = skiff(&tc, dir);
    eprintln!("{tag}: kernel {k:?}\n{tag}: skiff  {s:?}");
    assert!(
        !k.out.is_empty(),
        "{tag}: the kernel sent nothing through mirred"
    );
    assert_eq!(s, k, "{tag}");
}

#[test]
fn u32_match_forms_hash_tables_and_mirred() {
    if !root_or_skip() {
        return;
    }
    compare(
        "u32",
        &[
            "qdisc add dev eth0 clsact",
            // match ip dport: redirect.
            "filter add dev eth0 ingress prio 1 u32 match ip dport 5001 0xffff action mirred egress redirect dev eth1",
            // Several keys (one merged into the word at 20): mirror, then pipe on.
            "filter add dev eth0 ingress prio 2 u32 match ip dport 5002 0xffff match u8 64 0xff at 8 match ip src 10.0.0.2/32 action mirred egress mirror dev eth1",
            // A hash table of 256 buckets on the destination's last byte.
            "filter add dev eth0 ingress prio 3 handle 2: u32 divisor 256",
            "filter add dev eth0 ingress prio 3 u32 ht 2:3: match ip dport 5003 0xffff action mirred egress redirect dev eth1",
            "filter add dev eth0 ingress prio 3 u32 match ip protocol 17 0xff hashkey mask 0x000000ff at 16 link 2:",
            // The next header by the IHL (offset at 0 mask 0x0f00 shift 6), nexthdr+ keys.
            "filter add dev eth0 ingress prio 4 handle 4: u32 divisor 1",
            "filter add dev eth0 ingress prio 4 u32 ht 4: match udp dst 5004 0xffff action mirred egress redirect dev eth1",
            "filter add dev eth0 ingress prio 4 u32 match ip protocol 17 0xff offset at 0 mask 0x0f00 shift 6 link 4:",
            // Everything else with TTL 63: mirror.
            "filter add dev eth0 ingress prio 5 u32 match u8 63 0xff at 8 action mirred egress mirror dev eth1",
        ],
        Path::new("."),
    );
}

/// Compiles tests/bpf/tc_cls_da.c into a scratch directory; None (skip)
/// without clang.
fn bpf_object() -> Option<PathBuf> {
    let Ok(_) = skiff_kernel::clang::available() else {
        eprintln!("skipped: needs clang");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("skiff-tc-cls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/tc_cls_da.c");
    // clang is there: a program that does not build is a failure, not a skip.
    Some(skiff_kernel::clang::compile(&src, &dir).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn cls_bpf_direct_action_and_classic_with_classid() {
    if !root_or_skip() {
        return;
    }
    let Some(obj) = bpf_object() else { return };
    // An absolute path: tc reads it as given, skiff joins it to the
    // topology's directory (which leaves it as it is).
    let file = obj.display().to_string();
    let dir = Path::new(".");
    compare(
        "bpf",
        &[
            "qdisc add dev eth0 clsact",
            // da: 5001 continues to prio 2, 5002 is shot, the rest stop here.
            &format!("filter add dev eth0 ingress prio 1 bpf da obj {file} sec tc"),
            "filter add dev eth0 ingress prio 2 u32 match u32 0 0 action mirred egress redirect dev eth1",
        ],
        dir,
    );
    compare(
        "bpfc",
        &[
            "qdisc add dev eth0 clsact",
            // classic: 5002 (classid 1:5) and others (0x10007) match and run
            // the redirect; 5001 does not match and meets prio 2's mirror.
            &format!("filter add dev eth0 ingress prio 1 bpf obj {file} sec classic classid 1:5 action mirred egress redirect dev eth1"),
            "filter add dev eth0 ingress prio 2 u32 match u32 0 0 action mirred egress mirror dev eth1",
        ],
        dir,
    );
}
