//! `skiff run --live` with real namespaces (examples/live-pair): ping and a
//! TCP transfer through skiff's XDP and TC programs with the AF_PACKET,
//! AF_XDP and TAP backends (AF_XDP: the redirect program gone from the
//! interfaces once skiff exits), and a device removed and brought back while
//! running. Each test makes its own namespaces `skiff-l<pid>-<tag>-{a,b,x}`,
//! removed also when it fails; every wait is bounded. Skipped (with the
//! reason printed) when not root, or for AF_XDP when the kernel has no
//! AF_XDP sockets.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use common::live::{is_root, sh, Net, Running};

/// A running `skiff run --live --json` of a topology; killed on drop if
/// still running.
struct Skiff(Running);

impl Skiff {
    fn start(topology: &std::path::Path) -> Skiff {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["run", "--live", "--json", "--maps", "flows"])
            .arg(topology)
            .stdout(Stdio::piped());
        Skiff(Running::start(cmd, Duration::from_secs(120)))
    }

    fn wait_for(&mut self, what: &str, limit: Duration) {
        self.0.wait_for(what, limit);
    }

    /// SIGTERM, then the summary (bounded wait).
    fn stop(mut self) -> serde_json::Value {
        let status = self.0.end(libc::SIGTERM, Duration::from_secs(60));
        let status = status.expect("skiff did not end within 60 s of SIGTERM");
        let out = self.0.stdout();
        assert_eq!(status.code(), Some(0), "{out}\n{}", self.0.seen);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

/// The `flows` map's packet count for IPv4 `src` -> `dst` (0 when absent):
/// `--json`'s "maps" gives keys and values as hex strings.
fn flow(v: &serde_json::Value, src: [u8; 4], dst: [u8; 4]) -> u64 {
    let key: String = src.iter().chain(&dst).map(|b| format!("{b:02x}")).collect();
    let entries = v["maps"]["live_pair/flows"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .find(|e| e["key"] == key.as_str())
        .and_then(|e| {
            let hex = e["value"].as_str()?;
            let b: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Option<_>>()?;
            Some(u64::from_le_bytes(b.try_into().ok()?))
        })
        .unwrap_or(0)
}

/// Whether the kernel makes AF_XDP sockets (CONFIG_XDP_SOCKETS); says why
/// the test is skipped when not.
fn has_af_xdp() -> bool {
    // SAFETY: plain socket(2); the descriptor is closed right after.
    let fd = unsafe { libc::socket(44, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        eprintln!(
            "skipped: no AF_XDP sockets here: {}",
            std::io::Error::last_os_error()
        );
        return false;
    }
    // SAFETY: closing the descriptor just made.
    unsafe { libc::close(fd) };
    true
}

/// What `ip -d link show` says about `dev` in namespace `ns`.
fn link_show(ns: &str, dev: &str) -> String {
    let o = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", dev])
        .output()
        .expect("run ip link show");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn usable(backend: &str) -> bool {
    is_root() && (backend != "af_xdp" || has_af_xdp())
}

fn ping_through(backend: &str, tag: &str) {
    if !usable(backend) {
        return;
    }
    let net = Net::new("skiff-l", tag);
    match backend {
        "tap" => net.add_a_b(),
        _ => net.setup(backend),
    }
    let skiff = Skiff::start(&net.topology(backend));
    if backend == "af_xdp" {
        for dev in ["skiff-xa", "skiff-xb"] {
            let l = link_show(&net.ns("x"), dev);
            assert!(
                l.contains("prog/xdp") && l.contains("name skiff_xsk"),
                "{l}"
            );
        }
    }
    if backend == "tap" {
        net.address_taps();
    }
    assert!(net.ping("3"), "ping through skiff ({backend})");
    let v = skiff.stop();
    assert_eq!(v["balanced"], true, "{v}");
    // 3 echo requests through XDP (eth0), 3 replies through tc (eth1)
    assert_eq!(flow(&v, [10, 9, 0, 1], [10, 9, 0, 2]), 3, "{}", v["maps"]);
    assert_eq!(flow(&v, [10, 9, 0, 2], [10, 9, 0, 1]), 3, "{}", v["maps"]);
    let live = v["live"].as_array().expect("live");
    assert_eq!(live.len(), 2);
    assert_eq!(live[0]["backend"], backend);
    assert_eq!(live[0]["down"], 0);
    if backend == "af_xdp" {
        // the XDP link's descriptor closed with skiff: nothing left behind
        for dev in ["skiff-xa", "skiff-xb"] {
            let l = link_show(&net.ns("x"), dev);
            assert!(l.contains(dev) && !l.contains("xdp"), "{l}");
        }
    }
}

#[test]
fn ping_through_af_packet() {
    ping_through("af_packet", "p");
}

#[test]
fn ping_through_af_xdp() {
    ping_through("af_xdp", "x");
}

#[test]
fn ping_through_tap() {
    ping_through("tap", "t");
}

/// 8 MiB over TCP from skiff-a to skiff-b through skiff (AF_PACKET:
/// checksum offload on, skiff finishes the partial checksums), every byte
/// checked.
#[test]
fn tcp_through_af_packet() {
    tcp_through("af_packet", "c");
}

/// The same through AF_XDP (setup.sh turns tx checksum offload off: the
/// kernel's XDP path loses the partial-checksum mark).
#[test]
fn tcp_through_af_xdp() {
    tcp_through("af_xdp", "cx");
}

fn tcp_through(backend: &str, tag: &str) {
    if !usable(backend) {
        return;
    }
    let net = Net::new("skiff-l", tag);
    net.setup(backend);
    let skiff = Skiff::start(&net.topology(backend));
    const LEN: usize = 8 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let (bns, ans) = (net.ns("b"), net.ns("a"));
    let (ready_tx, ready) = channel();
    let server = std::thread::spawn(move || -> Result<usize, String> {
        skiff_kernel::live::enter_netns(&format!("/run/netns/{bns}")).map_err(|e| e.to_string())?;
        let l = std::net::TcpListener::bind("10.9.0.2:5201").map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let (mut got, mut buf) = (0usize, vec![0u8; 1 << 16]);
        loop {
            let n = s
                .read(&mut buf)
                .map_err(|e| format!("after {got} bytes: {e}"))?;
            if n == 0 {
                return Ok(got);
            }
            if let Some((i, _)) = buf[..n]
                .iter()
                .enumerate()
                .find(|(i, b)| **b != pattern(got + i))
            {
                return Err(format!("byte {} differs", got + i));
            }
            got += n;
        }
    });
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("server listening");
    let client = std::thread::spawn(move || -> Result<(), String> {
        skiff_kernel::live::enter_netns(&format!("/run/netns/{ans}")).map_err(|e| e.to_string())?;
        let addr = "10.9.0.2:5201"
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let data: Vec<u8> = (0..LEN).map(pattern).collect();
        s.write_all(&data).map_err(|e| e.to_string())?;
        Ok(())
    });
    assert_eq!(client.join().expect("client"), Ok(()));
    assert_eq!(server.join().expect("server"), Ok(LEN));
    let v = skiff.stop();
    assert_eq!(v["balanced"], true, "{v}");
    // the data went a -> b through XDP, the ACKs b -> a through tc
    assert!(
        flow(&v, [10, 9, 0, 1], [10, 9, 0, 2]) >= (LEN / 1448) as u64,
        "{}",
        v["maps"]
    );
    let finished = v["live"][0]["rx_csum_completed"].as_u64().unwrap_or(0);
    match backend {
        "af_packet" => assert!(finished > 0, "{}", v["live"]),
        // every frame came with its checksum complete (offload off)
        _ => assert_eq!(finished, 0, "{}", v["live"]),
    }
}

/// skiff-b's veth is deleted while skiff runs, then made again: counted once
/// down and once reopened, and ping works again.
#[test]
fn device_removed_and_back() {
    removed_and_back("af_packet", "r");
}

/// The same with AF_XDP: the socket learns of the removal from its pending
/// error (ENETDOWN, xsk_notifier), checked a few times a second.
#[test]
fn device_removed_and_back_af_xdp() {
    removed_and_back("af_xdp", "rx");
}

fn removed_and_back(backend: &str, tag: &str) {
    if !usable(backend) {
        return;
    }
    let net = Net::new("skiff-l", tag);
    net.setup(backend);
    // b0 comes back with the same MAC, so that skiff-a's neighbour entry holds
    const B0_MAC: &str = "02:00:00:00:0b:00";
    assert!(sh(
        "ip",
        &["-n", &net.ns("b"), "link", "set", "b0", "address", B0_MAC]
    ));
    let mut skiff = Skiff::start(&net.topology(backend));
    assert!(net.ping("1"), "ping before the removal");
    let (b, x) = (net.ns("b"), net.ns("x"));
    assert!(sh("ip", &["-n", &x, "link", "del", "skiff-xb"]));
    skiff.wait_for("closed, retrying", Duration::from_secs(20));
    assert!(sh(
        "ip",
        &["-n", &b, "link", "add", "b0", "type", "veth", "peer", "name", "skiff-xb", "netns", &x]
    ));
    assert!(sh(
        "ip",
        &["-n", &b, "link", "set", "b0", "address", B0_MAC]
    ));
    assert!(sh(
        "ip",
        &["-n", &b, "addr", "add", "10.9.0.2/24", "dev", "b0"]
    ));
    assert!(sh("ip", &["-n", &b, "link", "set", "b0", "up"]));
    assert!(sh("ip", &["-n", &x, "link", "set", "skiff-xb", "up"]));
    skiff.wait_for("skiff-xb is back", Duration::from_secs(20));
    assert!(net.ping("3"), "ping after the device came back");
    let v = skiff.stop();
    assert_eq!(v["balanced"], true, "{v}");
    assert_eq!(v["live"][1]["down"], 1, "{}", v["live"]);
    assert_eq!(v["live"][1]["reopened"], 1, "{}", v["live"]);
    assert_eq!(v["live"][0]["down"], 0, "{}", v["live"]);
}
