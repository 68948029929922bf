//! The control plane against a built datapath: the test is the run loop
//! (service between injected batches), the requests come from a client
//! thread over a real socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_net::datapath::DatapathOptions;
use skiff_topology::{Built, Topology};

use super::{client, Control, Request};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("skiff-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fw_object() -> PathBuf {
    root().join("examples/xdp_fw/xdp_fw.o")
}

/// One NIC with the XDP firewall; `blocked` and `drop_count` pinned.
fn topology(dir: &Path) -> (Topology, Built) {
    let toml = format!(
        r#"[netns.host]

[[netns.host.device]]
name = "eth0"
kind = "nic"
ifindex = 2
mac = "02:00:00:00:00:02"

[[object]]
path = "{}"

[[object.map]]
name = "blocked"
pin = "blocked"

[[object.map]]
name = "drop_count"
pin = "drop_count"

[[object.attach]]
program = "xdp_fw"
dev = "eth0"
hook = "xdp"
"#,
        fw_object().display()
    );
    let file = dir.join("fw.toml");
    std::fs::write(&file, toml).expect("write topology");
    let topo = Topology::load(&file).expect("topology");
    let built = topo.build(DatapathOptions::default()).expect("build");
    (topo, built)
}

/// The run loop while `f` runs on a client thread: service every 2 ms.
fn with_loop<T: Send + 'static>(
    ctl: &mut Control,
    built: &mut Built,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let t = std::thread::spawn(f);
    let end = Instant::now() + Duration::from_secs(20);
    while !t.is_finished() && Instant::now() < end {
        ctl.service(built);
        std::thread::sleep(Duration::from_millis(2));
    }
    t.join().expect("client thread")
}

fn call(ctl: &mut Control, built: &mut Built, req: Request) -> Result<(String, i32), String> {
    let sock = ctl.path().display().to_string();
    with_loop(ctl, built, move || {
        client::call(&sock, &req).map_err(|e| format!("{e:#}"))
    })
}

fn map(verb: &str, words: &[&str], json: bool) -> Request {
    Request::Map {
        verb: verb.into(),
        words: words.iter().map(|w| w.to_string()).collect(),
        json,
    }
}

fn inject(built: &mut Built, frame: &str) {
    let bytes = std::fs::read(root().join("examples/xdp_fw").join(frame)).expect("frame");
    let dp = &mut built.dp;
    let ns = dp.netns("host").expect("host");
    let dev = dp.device(ns, "eth0").expect("eth0");
    dp.inject(dev, &bytes, 0).expect("inject");
    dp.run();
}

const BLOCKED_KEY: &str = "18000000c0a80100";

#[test]
fn maps_over_the_socket() {
    let dir = Dir::new("maps");
    let (topo, mut built) = topology(&dir.0);
    let sock = dir.0.join("run/fw.sock");
    let mut ctl =
        Control::start(&sock, &topo, &built, skiff_net::load_options(), None).expect("control");
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (out, code) = call(&mut ctl, &mut built, map("show", &[], true)).expect("show");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["blocked", "drop_count", "drops_by_val"]);

    let up = map(
        "update",
        &["name", "blocked", "key", BLOCKED_KEY, "value", "07"],
        false,
    );
    assert_eq!(call(&mut ctl, &mut built, up), Ok((String::new(), 0)));
    // the next packet sees the entry
    inject(&mut built, "blocked.bin");
    let look = map("lookup", &["name", "drop_count", "key", "00000000"], false);
    assert_eq!(
        call(&mut ctl, &mut built, look),
        Ok((
            "key: 00 00 00 00  value: 01 00 00 00 00 00 00 00\n".into(),
            0
        ))
    );
    let dump = map("dump", &["name", "xdp_fw/drops_by_val"], false);
    assert_eq!(
        call(&mut ctl, &mut built, dump),
        Ok((
            "key: 07  value: 01 00 00 00 00 00 00 00\nFound 1 element\n".into(),
            0
        ))
    );
    let dump = map("dump", &["name", "drops_by_val"], true);
    assert_eq!(
        call(&mut ctl, &mut built, dump),
        Ok((
            "[{\"formatted\":{\"key\":7,\"value\":1},\"key\":[\"0x07\"],\"value\":[\"0x01\",\"0x00\",\"0x00\",\"0x00\",\"0x00\",\"0x00\",\"0x00\",\"0x00\"]}]\n".into(),
            0
        ))
    );
    let missing = map("lookup", &["name", "drops_by_val", "key", "09"], true);
    assert_eq!(
        call(&mut ctl, &mut built, missing),
        Ok(("null\n".into(), 1))
    );
    let del = map("delete", &["name", "blocked", "key", BLOCKED_KEY], true);
    assert_eq!(call(&mut ctl, &mut built, del), Ok(("null\n".into(), 0)));
    inject(&mut built, "blocked.bin");
    let look = map("lookup", &["name", "drop_count", "key", "00000000"], false);
    assert_eq!(
        call(&mut ctl, &mut built, look),
        Ok((
            "key: 00 00 00 00  value: 01 00 00 00 00 00 00 00\n".into(),
            0
        ))
    );

    let unknown = map("dump", &["name", "nope"], false);
    assert_eq!(
        call(&mut ctl, &mut built, unknown),
        Err("no map named \"nope\" (maps: blocked, drop_count, xdp_fw/drops_by_val)".into())
    );
    let short = map("update", &["name", "blocked", "key", "00"], false);
    assert_eq!(
        call(&mut ctl, &mut built, short),
        Err("update wants value HEX".into())
    );
    drop(ctl);
    assert!(!sock.exists(), "the socket is removed at exit");
}

/// Sends raw lines, returns the reply lines.
fn raw(sock: &Path, lines: &[&str]) -> Vec<String> {
    let s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut out = Vec::new();
    for l in lines {
        (&s).write_all(format!("{l}\n").as_bytes()).expect("write");
        let mut back = String::new();
        r.read_line(&mut back).expect("read");
        out.push(back.trim_end().to_string());
    }
    out
}

#[test]
fn bad_requests_busy_stale_and_live_sockets() {
    let dir = Dir::new("errors");
    let (topo, mut built) = topology(&dir.0);
    let sock = dir.0.join("fw.sock");
    // a crashed run's socket: nobody listens on it
    drop(UnixListener::bind(&sock).expect("stale"));
    assert!(sock.exists());
    let mut ctl = Control::start(&sock, &topo, &built, skiff_net::load_options(), None)
        .expect("the stale socket is replaced");
    let second = Control::start(&sock, &topo, &built, skiff_net::load_options(), None);
    let e = format!("{:#}", second.err().expect("a live socket is refused"));
    assert_eq!(
        e,
        format!(
            "{} is in use: another skiff run serves it (give this one another --name)",
            sock.display()
        )
    );
    let file = dir.0.join("plain");
    std::fs::write(&file, b"x").expect("file");
    let e = Control::start(&file, &topo, &built, skiff_net::load_options(), None)
        .err()
        .expect("not a socket");
    assert_eq!(
        format!("{e:#}"),
        format!(
            "{} exists and is not a socket: not replacing it",
            file.display()
        )
    );

    // the probe of the live socket above was a client for a moment
    std::thread::sleep(Duration::from_millis(100));
    let s = sock.clone();
    let replies = with_loop(&mut ctl, &mut built, move || {
        raw(
            &s,
            &[
                "hello",
                r#"{"request":"launch"}"#,
                r#"{"request":"stats","json":true,"extra":1}"#,
                r#"{"request":"map","verb":"frobnicate","words":[]}"#,
            ],
        )
    });
    assert_eq!(
        replies[0],
        r#"{"code":1,"error":"bad request (docs/control.md): expected value at line 1 column 1"}"#
    );
    assert!(
        replies[1].starts_with(
            r#"{"code":1,"error":"bad request (docs/control.md): unknown variant `launch`"#
        ),
        "{}",
        replies[1]
    );
    assert!(
        replies[2].starts_with(
            r#"{"code":1,"error":"bad request (docs/control.md): unknown field `extra`"#
        ),
        "{}",
        replies[2]
    );
    assert_eq!(
        replies[3],
        r#"{"code":1,"error":"unknown map verb \"frobnicate\" (show, dump, lookup, update, delete)"}"#
    );

    // a second client while one is connected
    let s = sock.clone();
    let (first_ok, second) = with_loop(&mut ctl, &mut built, move || {
        let hold = UnixStream::connect(&s).expect("first");
        std::thread::sleep(Duration::from_millis(200));
        let second = client::call(&s.display().to_string(), &Request::Stats { json: false })
            .map_err(|e| format!("{e:#}"));
        drop(hold);
        std::thread::sleep(Duration::from_millis(200));
        let again = client::call(&s.display().to_string(), &Request::Stats { json: false });
        (again.is_ok(), second)
    });
    assert_eq!(
        second,
        Err("busy: another client is connected to this run (one at a time); try again".into())
    );
    assert!(
        first_ok,
        "the next client is served once the first has gone"
    );
    let mut long = vec![b'x'; 1 << 16];
    long.push(b'\n');
    let s = sock.clone();
    let r = with_loop(&mut ctl, &mut built, move || {
        let mut c = UnixStream::connect(&s).expect("connect");
        c.write_all(&long).expect("write");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut back = String::new();
        c.read_to_string(&mut back).ok();
        back
    });
    assert!(r.starts_with(r#"{"code":1,"error":"bad request"#), "{r}");
}

fn attach(replace: bool) -> Request {
    Request::ProgAttach {
        object: fw_object(),
        prog: "xdp_fw".into(),
        dev: "host/eth0".into(),
        hook: "xdp".into(),
        replace,
    }
}

/// The id the topology gave the firewall.
fn fw_id(built: &Built) -> u32 {
    built.objects[0].programs[0].id
}

fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn programs_stats_and_metrics() {
    let dir = Dir::new("progs");
    let (topo, mut built) = topology(&dir.0);
    let sock = dir.0.join("fw.sock");
    let mut ctl = Control::start(
        &sock,
        &topo,
        &built,
        skiff_net::load_options(),
        Some("127.0.0.1:0"),
    )
    .expect("control");
    let old = fw_id(&built);
    let show = Request::ProgShow { json: false };
    assert_eq!(
        call(&mut ctl, &mut built, show.clone()),
        Ok((format!("host/eth0(2) xdp id {old} name xdp_fw\n"), 0))
    );
    assert_eq!(
        call(&mut ctl, &mut built, attach(false)),
        Err(format!("attaching xdp_fw to host/eth0 xdp: the device has XDP program xdp_fw (id {old}): use --replace"))
    );
    let up = map(
        "update",
        &["name", "blocked", "key", BLOCKED_KEY, "value", "07"],
        false,
    );
    assert_eq!(call(&mut ctl, &mut built, up), Ok((String::new(), 0)));
    inject(&mut built, "blocked.bin");

    let (out, code) = call(&mut ctl, &mut built, attach(true)).expect("replace");
    assert_eq!(code, 0);
    let new: u32 = out
        .strip_prefix("attached xdp_fw (id ")
        .and_then(|r| r.strip_suffix(") to host/eth0 xdp\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_ne!(new, old);
    assert_eq!(
        call(&mut ctl, &mut built, show.clone()),
        Ok((format!("host/eth0(2) xdp id {new} name xdp_fw\n"), 0))
    );
    // the new program shares the pinned maps: the entry blocks, the count goes on
    inject(&mut built, "blocked.bin");
    inject(&mut built, "allowed.bin");
    let look = map("lookup", &["name", "drop_count", "key", "00000000"], false);
    assert_eq!(
        call(&mut ctl, &mut built, look),
        Ok((
            "key: 00 00 00 00  value: 02 00 00 00 00 00 00 00\n".into(),
            0
        ))
    );
    // its unpinned map is a new one, named apart from the first object's
    let dump = map("dump", &["name", "xdp_fw.2/drops_by_val"], false);
    assert_eq!(
        call(&mut ctl, &mut built, dump),
        Ok((
            "key: 07  value: 01 00 00 00 00 00 00 00\nFound 1 element\n".into(),
            0
        ))
    );

    let detach = Request::ProgDetach {
        dev: "eth0".into(),
        hook: "xdp".into(),
        prog: None,
    };
    assert_eq!(
        call(&mut ctl, &mut built, detach.clone()),
        Ok((format!("detached xdp_fw (id {new}) from eth0 xdp\n"), 0))
    );
    assert_eq!(call(&mut ctl, &mut built, show), Ok((String::new(), 0)));
    assert_eq!(
        call(&mut ctl, &mut built, detach),
        Err("eth0 xdp: no program attached".into())
    );
    inject(&mut built, "blocked.bin");

    let (out, code) = call(&mut ctl, &mut built, Request::Stats { json: true }).expect("stats");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["balanced"], true);
    assert_eq!(v["conservation"]["in"], 4);
    // devices[0] is lo
    let xdp = &v["devices"][1]["hooks"]["xdp"];
    assert_eq!(xdp["XDP_DROP"]["packets"], 2);
    assert_eq!(xdp["XDP_PASS"]["packets"], 1);
    let sites = v["drop_sites"].as_array().expect("sites");
    let xdp_drops: Vec<_> = sites.iter().filter(|s| s["hook"] == "xdp").collect();
    assert_eq!(xdp_drops.len(), 1, "{sites:?}");
    assert_eq!(xdp_drops[0]["reason"], "SKIFF_XDP_DROP");
    assert_eq!(xdp_drops[0]["packets"], 2);
    assert_eq!(xdp_drops[0]["iface"], "eth0(2)");

    let (text, _) = call(&mut ctl, &mut built, Request::Stats { json: false }).expect("stats");
    let want = "\
device           ifindex  hook         verdict           packets      bytes
host/lo                1  stats        rx 0 pkts 0 bytes (0 dropped), tx 0 pkts 0 bytes (0 dropped)
host/eth0              2  stats        rx 4 pkts 300 bytes (0 dropped), tx 0 pkts 0 bytes (0 dropped)
host/eth0              2  stack        DROPPED                 2        150
host/eth0              2  xdp          XDP_DROP                2        150
host/eth0              2  xdp          XDP_PASS                1         75

drops (reason, where):
       2  IP_INADDRERRORS              eth0(2) stack -
       2  SKIFF_XDP_DROP               eth0(2) xdp xdp_fw

conservation: in 4 + originated 0 = transmitted 0 + delivered 0 + dropped 4 + in flight 0
";
    assert_eq!(text, want);

    // a snapshot is due on the next service call after 100 ms
    std::thread::sleep(Duration::from_millis(120));
    ctl.service(&mut built);
    let addr = ctl.metrics_addr().expect("metrics");
    let m = scrape(addr, "/metrics");
    assert!(
        m.starts_with(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        ),
        "{m}"
    );
    for line in [
        "# HELP skiff_packets_total Packets per device, hook and verdict.",
        "# TYPE skiff_packets_total counter",
        "skiff_packets_total{netns=\"host\",device=\"eth0\",hook=\"xdp\",verdict=\"XDP_DROP\"} 2",
        "skiff_packets_total{netns=\"host\",device=\"eth0\",hook=\"xdp\",verdict=\"XDP_PASS\"} 1",
        "skiff_bytes_total{netns=\"host\",device=\"eth0\",hook=\"xdp\",verdict=\"XDP_DROP\"} 150",
        "# TYPE skiff_drop_count_total counter",
        "skiff_drop_count_total{reason=\"SKIFF_XDP_DROP\",netns=\"host\",device=\"eth0\",hook=\"xdp\"} 2",
        "# TYPE skiff_rx_queue_depth gauge",
        "skiff_rx_queue_depth{netns=\"host\",device=\"eth0\"} 0",
        "skiff_worker_polled_packets_total{worker=\"0\"} 4",
        "skiff_conservation_packets_total{end=\"in\"} 4",
        "skiff_in_flight_packets 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    assert!(scrape(addr, "/").starts_with("HTTP/1.1 404 Not Found\r\n"));
}
