//! `skiff run --live` operated while it forwards real traffic (docs/control.md):
//! the live-pair example between two namespaces, its maps read and written
//! with `--run`, programs replaced and detached, `stats --json`, GET /metrics,
//! and 100 map updates and 10 program replaces under a ping flood with no
//! packet lost. Needs root (namespaces, AF_PACKET) and `ip`; skips with a
//! printed reason otherwise. The namespaces (prefix `skiffctl`) are removed
//! also on failure.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const PREFIX: &str = "skiffctl";

fn skip_reason() -> Option<&'static str> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(String::from))
        });
    if uid.as_deref() != Some("0") {
        return Some("not root (namespaces and AF_PACKET need it)");
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.is_ok_and(|o| o.status.success()) {
        return Some("no `ip` command");
    }
    None
}

/// The namespaces of examples/live-pair/setup.sh, removed on drop.
struct Namespaces;

impl Namespaces {
    fn up() -> Namespaces {
        Namespaces::down();
        let ok = Command::new("sh")
            .arg(root().join("examples/live-pair/setup.sh"))
            .env("PREFIX", PREFIX)
            .status()
            .expect("setup.sh");
        assert!(ok.success(), "setup.sh failed");
        Namespaces
    }

    fn down() {
        let _ = Command::new("sh")
            .arg(root().join("examples/live-pair/setup.sh"))
            .arg("down")
            .env("PREFIX", PREFIX)
            .status();
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        Namespaces::down();
    }
}

/// The run's directory (topology, socket) and the run itself, ended on drop.
struct Live {
    dir: PathBuf,
    child: Option<Child>,
}

impl Live {
    fn start(metrics_port: u16) -> Live {
        let dir = std::env::temp_dir().join(format!("skiffctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let topo = std::fs::read_to_string(root().join("examples/live-pair/topology.toml"))
            .expect("topology")
            .replace(
                "host_netns = \"skiff-x\"",
                &format!("host_netns = \"{PREFIX}-x\""),
            )
            .replace(
                "path = \"live_pair.o\"",
                &format!(
                    "path = \"{}\"\n\n[[object.map]]\nname = \"flows\"\npin = \"flows\"",
                    object().display()
                ),
            )
            // pinned: the object attached by `prog attach --replace` shares them
            .replace(
                "name = \"tx_port\"",
                "name = \"tx_port\"\npin = \"tx_port\"",
            );
        std::fs::write(dir.join("pair.toml"), topo).expect("write topology");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["run", "pair.toml", "--live", "--name", "ctl", "--metrics"])
            .arg(format!("127.0.0.1:{metrics_port}"))
            .current_dir(&dir)
            .env("SKIFF_RUN_DIR", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("skiff run --live");
        let live = Live {
            dir,
            child: Some(child),
        };
        let end = Instant::now() + Duration::from_secs(20);
        while !live.socket().exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(live.socket().exists(), "no control socket after 20 s");
        live
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// `skiff ARGS --run ctl`, by name through SKIFF_RUN_DIR.
    fn skiff(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .args(["--run", "ctl"])
            .env("SKIFF_RUN_DIR", &self.dir)
            .output()
            .expect("skiff");
        text(out)
    }

    /// SIGINT, then the summary.
    fn stop(mut self) -> (i32, String, String) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        text(child.wait_with_output().expect("wait"))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn object() -> PathBuf {
    root().join("examples/live-pair/live_pair.o")
}

/// `ping` from the a side to the b side; ping's summary line.
fn ping(count: u32, interval: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}-a"), "ping", "-q", "-n"])
        .args([
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "2",
            "10.9.0.2",
        ])
        .output()
        .expect("ping");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.lines()
        .find(|l| l.contains("packets transmitted"))
        .map(|l| l.split(", time").next().unwrap_or(l).to_string())
        .unwrap_or(s)
}

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A free loopback port for --metrics.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// flows key (10.9.0.1, 10.9.0.2): what the XDP program counts a -> b.
const A_TO_B: &str = "0a0900010a090002";

#[test]
fn operate_a_live_run() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let _ns = Namespaces::up();
    let port = free_port();
    let live = Live::start(port);
    let mode = std::fs::metadata(live.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        ping(2, "0.2"),
        "2 packets transmitted, 2 received, 0% packet loss"
    );

    // a map update, then traffic: the program counts on from the new value
    let up = live.skiff(&[
        "map",
        "update",
        "name",
        "flows",
        "key",
        A_TO_B,
        "value",
        "e803000000000000",
    ]);
    assert_eq!(up, (0, String::new(), String::new()));
    assert_eq!(
        ping(1, "0.2"),
        "1 packets transmitted, 1 received, 0% packet loss"
    );
    let look = live.skiff(&["map", "lookup", "name", "flows", "key", A_TO_B]);
    assert_eq!(
        look,
        (
            0,
            "key: 0a 09 00 01 0a 09 00 02  value: e9 03 00 00 00 00 00 00\n".into(),
            String::new()
        )
    );
    let (code, dump, _) = live.skiff(&["map", "dump", "name", "tx_port", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        dump,
        "[{\"formatted\":{\"key\":0,\"value\":3},\"key\":[\"0x00\",\"0x00\",\"0x00\",\"0x00\"],\"value\":[\"0x03\",\"0x00\",\"0x00\",\"0x00\"]}]\n"
    );
    let (code, out, _) = live.skiff(&["map", "show"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("  name ").nth(1))
        .collect();
    assert_eq!(
        names,
        [
            "tx_port  flags 0x80",
            "tc_port  flags 0x0",
            "flows  flags 0x0"
        ]
    );
    let (code, out, err) = live.skiff(&["map", "dump", "name", "nope"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "Error: no map named \"nope\" (maps: tx_port, live_pair/tc_port, flows)\n"
    );

    // programs: replace the XDP forwarder, detach eth1's pass-through
    let (code, show, _) = live.skiff(&["prog", "show"]);
    assert_eq!(code, 0);
    assert!(show.starts_with("host/eth0(2) xdp id "), "{show}");
    let o = object().display().to_string();
    let (code, out, err) = live.skiff(&[
        "prog",
        "attach",
        &o,
        "--prog",
        "live_pair_xdp",
        "--dev",
        "host/eth0",
        "--hook",
        "xdp",
        "--replace",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("attached live_pair_xdp (id "), "{out}");
    let (_, out, _) = live.skiff(&["prog", "detach", "--dev", "eth1", "--hook", "xdp"]);
    assert!(out.starts_with("detached live_pair_pass (id "), "{out}");
    let (_, show, _) = live.skiff(&["prog", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).expect("json");
    let hooks: Vec<(String, String)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p["dev"].as_str().unwrap_or("").into(),
                p["name"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [("host/eth0".to_string(), "live_pair_xdp".to_string())]
    );
    assert_eq!(
        ping(2, "0.2"),
        "2 packets transmitted, 2 received, 0% packet loss"
    );

    // a second client while one is connected
    let hold = std::os::unix::net::UnixStream::connect(live.socket()).expect("hold");
    std::thread::sleep(Duration::from_millis(200));
    let (code, _, err) = live.skiff(&["stats"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error: busy: another client is connected to this run (one at a time); try again\n"
    );
    drop(hold);
    std::thread::sleep(Duration::from_millis(200));

    under_load(&live);
    metrics_match_stats(&live, port);

    let sock = live.socket();
    let (code, out, err) = live.stop();
    assert_eq!(code, 0, "{err}");
    let cons = out
        .lines()
        .find(|l| l.starts_with("conservation:"))
        .unwrap_or("");
    assert!(cons.ends_with("dropped 0 + in flight 0"), "{out}");
    assert!(!sock.exists(), "the socket is removed at exit");
}

/// 100 map updates and 10 program replaces while 400 pings cross: none lost,
/// none dropped inside skiff.
fn under_load(live: &Live) {
    let flood = std::thread::spawn(|| ping(400, "0.01"));
    let o = object().display().to_string();
    for i in 0..100 {
        let v = format!("{:02x}00000000000000", i);
        let (code, _, err) = live.skiff(&[
            "map",
            "update",
            "name",
            "flows",
            "key",
            "0101010102020202",
            "value",
            &v,
        ]);
        assert_eq!(code, 0, "{err}");
        if i % 10 == 0 {
            let (code, _, err) = live.skiff(&[
                "prog",
                "attach",
                &o,
                "--prog",
                "live_pair_xdp",
                "--dev",
                "eth0",
                "--hook",
                "xdp",
                "--replace",
            ]);
            assert_eq!(code, 0, "{err}");
        }
    }
    let summary = flood.join().expect("ping");
    assert_eq!(
        summary,
        "400 packets transmitted, 400 received, 0% packet loss"
    );
    let (_, stats, _) = live.skiff(&["stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).expect("json");
    assert_eq!(v["balanced"], true, "{stats}");
    assert_eq!(v["conservation"]["dropped"], 0, "{stats}");
}

/// GET /metrics against `stats --json` (retried while background traffic
/// moves the counters between the two reads).
fn metrics_match_stats(live: &Live, port: u16) {
    assert!(get(port, "/nothing").starts_with("HTTP/1.1 404 Not Found\r\n"));
    let mut last = String::new();
    for _ in 0..5 {
        let (_, stats, _) = live.skiff(&["stats", "--json"]);
        std::thread::sleep(Duration::from_millis(250));
        let m = get(port, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        for l in [
            "# HELP skiff_packets_total Packets per device, hook and verdict.",
            "# TYPE skiff_packets_total counter",
            "# TYPE skiff_bytes_total counter",
            "# TYPE skiff_drop_count_total counter",
            "# TYPE skiff_rx_queue_depth gauge",
            "# TYPE skiff_qdisc_backlog_packets gauge",
            "# TYPE skiff_worker_polled_packets_total counter",
        ] {
            assert!(m.lines().any(|x| x == l), "missing {l:?}:\n{m}");
        }
        let v: serde_json::Value = serde_json::from_str(&stats).expect("json");
        let eth0 = &v["devices"][1]["hooks"]["xdp"]["XDP_REDIRECT"];
        let want = format!(
            "skiff_packets_total{{netns=\"host\",device=\"eth0\",hook=\"xdp\",verdict=\"XDP_REDIRECT\"}} {}",
            eth0["packets"]
        );
        let bytes = format!(
            "skiff_bytes_total{{netns=\"host\",device=\"eth0\",hook=\"xdp\",verdict=\"XDP_REDIRECT\"}} {}",
            eth0["bytes"]
        );
        if m.lines().any(|x| x == want) && m.lines().any(|x| x == bytes) {
            return;
        }
        last = format!("want {want}\n{m}");
    }
    panic!("metrics never matched stats: {last}");
}
