//! Observing and restarting `skiff run --live`: --trace-json and --capture
//! of a live run (the same records as a replay of the same frames), worker
//! busy/idle time and the record counters in `skiff stats` and the metrics,
//! pinned maps kept across a restart (and a mismatch refused), and a run
//! with TAP devices stopped and started again cleanly. Runs without live
//! devices feed --pcap-in and need no root; the TAP test needs root and
//! skips with a printed reason otherwise (namespaces `skiff-o<pid>-*`,
//! removed also on failure). Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::live::{is_root, root, Net, Running};
use serde_json::Value;

/// A scratch directory (the run dir, topology, outputs), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("skiff-obs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Scratch(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `skiff run --live --json --name NAME` with its run directory;
/// killed on drop if still running.
struct Live {
    run: Running,
    run_dir: PathBuf,
    name: String,
}

impl Live {
    fn start(run_dir: &Path, name: &str, args: &[&str]) -> Live {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["run", "--live", "--json", "--name", name])
            .args(args)
            .env("SKIFF_RUN_DIR", run_dir)
            .stdout(std::process::Stdio::piped());
        Live {
            run: Running::start(cmd, Duration::from_secs(60)),
            run_dir: run_dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// `skiff ARGS --run NAME`: exit code and stdout.
    fn ctl(&self, args: &[&str]) -> (i32, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .args(["--run", &self.name])
            .env("SKIFF_RUN_DIR", &self.run_dir)
            .output()
            .expect("skiff");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    }

    fn stats(&self) -> Value {
        let (code, out) = self.ctl(&["stats", "--json"]);
        assert_eq!(code, 0, "{out}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Waits (bounded) until `stats` shows `n` packets in.
    fn wait_input(&self, n: u64) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.stats();
            if s["conservation"]["in"] == n || Instant::now() > end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, then the exit code, the summary and the rest of stderr.
    fn stop(mut self) -> (i32, Value, String) {
        let status = self.run.end(libc::SIGINT, Duration::from_secs(30));
        let status = status.expect("skiff did not end within 30 s of SIGINT");
        let out = self.run.stdout();
        self.run.drain();
        let v = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
        (
            status.code().unwrap_or(-1),
            v,
            std::mem::take(&mut self.run.seen),
        )
    }
}

/// The k8s-node example with its object paths made absolute.
fn k8s_topology(dir: &Scratch) -> PathBuf {
    let ex = root().join("examples/k8s-node");
    let mut t = std::fs::read_to_string(ex.join("topology.toml")).expect("read the example");
    for o in ["k8s_xdp.o", "k8s_tc.o", "k8s_pod.o"] {
        t = t.replace(
            &format!("path = \"{o}\""),
            &format!("path = {:?}", ex.join(o).display().to_string()),
        );
    }
    let p = dir.path("k8s.toml");
    std::fs::write(&p, t).expect("write the topology");
    p
}

/// Each packet's trace events, in order, without the time and the packet
/// id (a live run's clock differs, and it polls its 9 frames in one batch
/// where a replay polls each at its own time, so the packets the stacks
/// send are numbered in another order); sorted.
fn trace_by_packet(file: &Path) -> Vec<Vec<Value>> {
    let mut by_id: std::collections::BTreeMap<u64, Vec<Value>> = Default::default();
    let text = std::fs::read_to_string(file).expect("read the trace");
    for l in text.lines() {
        let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let id = v["skb"].as_u64().expect("skb");
        if let Some(o) = v.as_object_mut() {
            o.remove("ts_ns");
            o.remove("skb");
        }
        by_id.entry(id).or_default().push(v);
    }
    let mut out: Vec<Vec<Value>> = by_id.into_values().collect();
    out.sort_by_key(|evs| serde_json::to_string(evs).unwrap_or_default());
    out
}

/// A capture file's (comment without the packet id, frame) records, sorted
/// (see `trace_by_packet`).
fn capture_records(file: &Path) -> Vec<(String, Vec<u8>)> {
    let cap = skiff_io::read(file).expect("read the capture");
    let mut v: Vec<(String, Vec<u8>)> = cap
        .packets
        .into_iter()
        .map(|p| {
            let c = p.comment.unwrap_or_default();
            let rest = c.split_once(' ').map(|(_, r)| r.to_string());
            (rest.unwrap_or_default(), p.data)
        })
        .collect();
    v.sort();
    v
}

/// The k8s-node traffic through a live run and through a replay, both with
/// --trace-json and --capture: the same events per packet, the same
/// captured frames and comments; the live counters say all were written
/// and none dropped, in the summary and in `skiff stats`.
#[test]
fn trace_json_and_capture_live_match_the_replay() {
    let dir = Scratch::new("trace");
    let topo = k8s_topology(&dir);
    let pcap = root().join("examples/k8s-node/traffic.pcap");
    let pcap_in = format!("eth0={}", pcap.display());
    let records = |tag: &str| {
        let (t, x, tx) = (
            dir.path(&format!("{tag}.trace.json")),
            dir.path(&format!("{tag}.xdp.pcapng")),
            dir.path(&format!("{tag}.tx.pcapng")),
        );
        let args: Vec<String> = vec![
            "--pcap-in".into(),
            pcap_in.clone(),
            "--trace-json".into(),
            t.display().to_string(),
            "--capture".into(),
            format!("host/eth0:xdp={}", x.display()),
            "--capture".into(),
            format!("pod1/eth0:rx={}", tx.display()),
        ];
        (args, t, x, tx)
    };
    let (rargs, rt, rx, rtx) = records("replay");
    let replay = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("run")
        .arg(&topo)
        .args(&rargs)
        .args(["--json"])
        .output()
        .expect("replay");
    assert!(replay.status.success(), "{replay:?}");
    let rsum: Value = serde_json::from_slice(&replay.stdout).expect("replay summary");
    let packets = rsum["packets"].as_u64().expect("packets");

    let (largs, lt, lx, ltx) = records("live");
    let mut args: Vec<&str> = largs.iter().map(String::as_str).collect();
    let t = topo.display().to_string();
    args.push(&t);
    let live = Live::start(&dir.path("run"), "obs", &args);
    let s = live.wait_input(packets);
    assert_eq!(s["conservation"]["in"], packets, "{s}");
    let (code, sum, err) = live.stop();
    assert_eq!(code, 0, "{err}");

    let (rtrace, ltrace) = (trace_by_packet(&rt), trace_by_packet(&lt));
    assert_eq!(ltrace, rtrace);
    let events: usize = ltrace.iter().map(Vec::len).sum();
    assert!(events > packets as usize, "{events} events");
    assert_eq!(capture_records(&lx), capture_records(&rx));
    assert_eq!(capture_records(&ltx), capture_records(&rtx));
    let xdp = capture_records(&lx).len();
    let tap = capture_records(&ltx).len();
    assert!(xdp > 0 && tap > 0, "{xdp} {tap}");
    let rec = &sum["records"];
    assert_eq!(rec["trace_json"]["written"], events as u64, "{sum}");
    assert_eq!(rec["trace_json"]["dropped"], 0, "{sum}");
    assert_eq!(rec["capture"]["written"], (xdp + tap) as u64, "{sum}");
    assert_eq!(rec["capture"]["dropped"], 0, "{sum}");
    assert_eq!(sum["balanced"], true, "{sum}");
}

/// The live-pair objects on a topology without live devices, `flows`
/// pinned by name, `pin_dir` in the scratch directory.
fn pinned_topology(dir: &Scratch) -> PathBuf {
    let obj = root().join("examples/live-pair/live_pair.o");
    let t = format!(
        "pin_dir = \"pins\"\n\n[netns.host]\n\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\nifindex = 2\n\n\
         [[object]]\npath = {:?}\n\n[[object.map]]\nname = \"flows\"\npinning = \"by_name\"\n\n\
         [[object.map]]\nname = \"tc_port\"\nentries = [{{ key = \"u32:0\", value = \"u32:7\" }}]\n",
        obj.display().to_string()
    );
    let p = dir.path("pinned.toml");
    std::fs::write(&p, t).expect("write the topology");
    p
}

const KEY: &str = "0a0900010a090002";

/// A `flows` entry written over the control socket is there after a stop
/// and a start; an unpinned map starts again from the topology's entries.
#[test]
fn pinned_map_kept_across_a_restart() {
    let dir = Scratch::new("pins");
    let topo = pinned_topology(&dir);
    let t = topo.display().to_string();
    let run = dir.path("run");
    let live = Live::start(&run, "pins", &[&t]);
    let up = ["map", "update", "name", "flows", "key", KEY, "value"];
    assert_eq!(
        live.ctl(&[&up[..], &["2a00000000000000"]].concat()),
        (0, String::new())
    );
    let up = [
        "map",
        "update",
        "name",
        "live_pair/tc_port",
        "key",
        "00000000",
    ];
    assert_eq!(
        live.ctl(&[&up[..], &["value", "09000000"]].concat()),
        (0, String::new())
    );
    let (code, _, err) = live.stop();
    assert_eq!(code, 0, "{err}");
    let note = format!("1 pinned maps saved in {}", dir.path("pins").display());
    assert!(err.contains(&note), "{err}");
    let saved = std::fs::read_to_string(dir.path("pins/flows")).expect("pin file");
    let v: Value = serde_json::from_str(&saved).expect("pin json");
    assert_eq!(v["map_type"], "hash");
    assert_eq!(v["max_entries"], 1024);
    assert_eq!(v["entries"], serde_json::json!([[KEY, "2a00000000000000"]]));

    let live = Live::start(&run, "pins", &[&t]);
    assert!(
        live.run
            .seen
            .contains("pinned map \"flows\": 1 entries restored from"),
        "{}",
        live.run.seen
    );
    assert_eq!(
        live.ctl(&["map", "lookup", "name", "flows", "key", KEY]),
        (
            0,
            "key: 0a 09 00 01 0a 09 00 02  value: 2a 00 00 00 00 00 00 00\n".into()
        )
    );
    assert_eq!(
        live.ctl(&[
            "map",
            "lookup",
            "name",
            "live_pair/tc_port",
            "key",
            "00000000"
        ]),
        (0, "key: 00 00 00 00  value: 07 00 00 00\n".into())
    );
    let (code, _, err) = live.stop();
    assert_eq!(code, 0, "{err}");
}

/// A saved map whose parameters differ from the object's is refused at
/// start, naming the map and what differs (libbpf's map_is_reuse_compat).
#[test]
fn pinned_map_mismatch_refused() {
    let dir = Scratch::new("mismatch");
    let topo = pinned_topology(&dir);
    std::fs::create_dir_all(dir.path("pins")).expect("pins dir");
    let saved = r#"{"map_type":"hash","key_size":8,"value_size":8,"max_entries":16,"map_flags":0,"possible_cpus":1,"entries":[]}"#;
    std::fs::write(dir.path("pins/flows"), saved).expect("write pin");
    let o = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["run", "--live", "--name", "mm"])
        .arg(&topo)
        .env("SKIFF_RUN_DIR", dir.path("run"))
        .output()
        .expect("skiff");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "skiff run: couldn't reuse pinned map \"flows\" saved in {}: parameter mismatch: max_entries 16 / 1024 (saved / now) (as libbpf's map_is_reuse_compat; remove the file to start from the topology's entries)",
            dir.path("pins/flows").display()
        )
    );
    assert!(!dir.path("run/mm.sock").exists());
}

/// GET /metrics from the address the run printed.
fn scrape(line: &str) -> String {
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .expect("metrics address");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// The value of the sample `name` in a scrape.
fn sample(m: &str, name: &str) -> f64 {
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{m}"))
}

/// A run with TAP devices stopped and started again with the same topology:
/// the taps and the control socket are gone after the stop, the second run
/// forwards as the first did; worker busy/idle time in the metrics and in
/// `skiff stats`.
#[test]
fn restart_comes_back_clean() {
    if !is_root() {
        return;
    }
    let dir = Scratch::new("restart");
    let net = Net::new("skiff-o", "t");
    net.add_a_b();
    let topo = net.topology("tap");
    let t = topo.display().to_string();
    let run = dir.path("run");
    for round in 0..2 {
        let live = Live::start(&run, "pair", &["--metrics", "127.0.0.1:0", &t]);
        let at = live
            .run
            .seen
            .lines()
            .find(|l| l.contains("metrics on http://"))
            .expect("the metrics address printed")
            .to_string();
        net.address_taps();
        assert!(net.ping("3"), "ping through skiff, run {round}");
        let s = live.stats();
        let w = &s["workers"][0];
        let (busy, idle) = (w["busy_ns"].as_u64(), w["idle_ns"].as_u64());
        assert!(
            busy.is_some_and(|b| b > 0) && idle.is_some_and(|i| i > 0),
            "{s}"
        );
        assert_eq!(s["records"]["trace_json"]["dropped"], 0, "{s}");
        // a snapshot is taken at most every 100 ms
        std::thread::sleep(Duration::from_millis(250));
        let m = scrape(&at);
        assert!(
            sample(&m, "skiff_worker_busy_seconds_total{worker=\"0\"}") > 0.0,
            "{m}"
        );
        assert!(
            sample(&m, "skiff_worker_idle_seconds_total{worker=\"0\"}") > 0.0,
            "{m}"
        );
        assert_eq!(sample(&m, "skiff_trace_dropped_total"), 0.0, "{m}");
        assert_eq!(sample(&m, "skiff_capture_dropped_total"), 0.0, "{m}");
        let (code, v, err) = live.stop();
        assert_eq!(code, 0, "{err}");
        assert_eq!(v["balanced"], true, "{v}");
        assert_eq!(v["live"][0]["backend"], "tap", "{v}");
        assert!(!run.join("pair.sock").exists(), "socket left behind");
        for (w, dev) in [("a", "a0"), ("b", "b0")] {
            let o = Command::new("ip")
                .args(["-n", &net.ns(w), "link", "show", dev])
                .output()
                .expect("ip link show");
            assert!(
                !o.status.success(),
                "tap {dev} left behind after run {round}"
            );
        }
    }
}
