//! `skiff bench --datapath` on the k8s-node example: every replay of the
//! 9-packet pcap ends the same way as in `skiff run` (in 9 + originated 4 =
//! transmitted 3 + delivered 8 + dropped 2), the counts scale exactly with the
//! replays, and the option errors.

use std::path::PathBuf;
use std::process::Command;

fn skiff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn datapath_bench_json_counts_every_packet() {
    let (code, stdout, stderr) = skiff(&[
        "bench",
        "--datapath",
        "--replays",
        "50",
        "--runs",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["topology"], "examples/k8s-node/topology.toml");
    assert_eq!(v["pcap_in"], "eth0=examples/k8s-node/traffic.pcap");
    assert_eq!(v["packets_per_replay"], 9);
    assert_eq!(v["replays"], 50);
    assert_eq!(v["runs"], 2);
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let jit = &rows[0];
    assert_eq!(jit["engine"], "skiff-jit");
    assert_eq!(jit["error"], serde_json::Value::Null);
    // 2 rounds of 50 replays of 9 packets, each replay as `skiff run` reports
    // it: the pods have no sockets (the example's `listen = []`), so each
    // replay's two SYNs get RSTs and its datagram ICMP port unreachable, which
    // the ICMP rate limit (a burst of 6 per destination, on the replays'
    // repeated clock, spent before the timed rounds) lets through once
    assert_eq!(
        jit["conservation"],
        serde_json::json!({"in": 900, "originated": 601, "transmitted": 501,
                           "delivered": 500, "dropped": 500, "in_flight": 0})
    );
    assert_eq!(
        jit["drops"],
        serde_json::json!({"NOT_SPECIFIED": 100, "NO_SOCKET": 300, "SKIFF_XDP_DROP": 100})
    );
    // XDP 9 + tc ingress 8 + netkit 11 hook runs a replay (the pods' RSTs and
    // replies through k8s_from_pod), and the one port unreachable's
    assert_eq!(jit["hook_runs"], 2801);
    let rounds = jit["rounds_ns_per_packet"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    let ns = jit["ns_per_packet"].as_f64().expect("ns_per_packet");
    let pps = jit["pps"].as_f64().expect("pps");
    assert!(ns > 0.0 && (pps * ns - 1e9).abs() < 1.0, "{ns} {pps}");
    let interp = &rows[1];
    assert_eq!(interp["engine"], "skiff-interp");
    assert_eq!(interp["pps"], serde_json::Value::Null);
    assert!(
        interp["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not supported: ")),
        "{interp}"
    );
}

#[test]
fn datapath_bench_text() {
    let (code, stdout, stderr) = skiff(&["bench", "--datapath", "--replays", "10", "--runs", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("datapath bench: examples/k8s-node/topology.toml: eth0 <- examples/k8s-node/traffic.pcap (9 packets a replay; 10 replays a round, 1 rounds, median); single worker, deterministic\n"), "{stdout}");
    let jit = stdout
        .lines()
        .find(|l| l.starts_with("skiff-jit "))
        .expect("jit row");
    let cells: Vec<&str> = jit.split_whitespace().collect();
    assert_eq!(
        cells.get(4..).map(|c| c.join(" ")).as_deref(),
        Some("90 50 (0.56) 50 (0.56) 50 (0.56) 60 (0.67) 280 (3.11)"),
        "{jit}"
    );
    assert!(
        stdout.contains(
            "- skiff-jit drops by reason: NOT_SPECIFIED 10 (0.11), NO_SOCKET 30 (0.33), SKIFF_XDP_DROP 10 (0.11)\n"
        ),
        "{stdout}"
    );
}

#[test]
fn datapath_bench_errors() {
    // corpus options do not go with --datapath, nor datapath options without it
    let (code, _, stderr) = skiff(&["bench", "--datapath", "--filter", "x"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("'--datapath' cannot be used with '--filter <FILTER>'"),
        "{stderr}"
    );
    let (code, _, stderr) = skiff(&["bench", "--replays", "5"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--datapath"), "{stderr}");
    // a device the topology does not have
    let (code, stdout, stderr) = skiff(&[
        "bench",
        "--datapath",
        "--pcap-in",
        "eth9=examples/k8s-node/traffic.pcap",
        "--replays",
        "1",
        "--runs",
        "1",
        "--json",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(
        v["rows"][0]["error"],
        "--pcap-in: no device \"eth9\" in netns \"host\" of examples/k8s-node/topology.toml"
    );
    let (code, _, stderr) = skiff(&["bench", "--datapath", "--pcap-in", "eth0", "--replays", "1"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "skiff bench --datapath: --pcap-in \"eth0\": want DEV=FILE\n"
    );
}

/// `skiff bench --datapath --suite`: every row's packets end where the row says
/// (skiff's counters, exact), and as root the kernel column is there: each row
/// with a kernel figure, every frame at the peer's program where it has one.
#[test]
fn datapath_suite_json() {
    let (code, stdout, stderr) = skiff(&[
        "bench",
        "--datapath",
        "--suite",
        "--replays",
        "2",
        "--runs",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["suite"], true);
    assert_eq!(v["frame_len"], 64);
    assert_eq!(v["packets_per_replay"], 64);
    assert_eq!(v["replays"], 2);
    assert_eq!(v["runs"], 1);
    assert_eq!(v["batch_size"], 64);
    assert!(
        v["cpu_model"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert_eq!(
        v["loadavg"].as_str().map(|s| s.split_whitespace().count()),
        Some(5),
        "{v}"
    );
    let rows = v["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["row"].as_str()).collect();
    assert_eq!(
        names,
        [
            "xdp_drop",
            "xdp_tx",
            "xdp_redirect",
            "tc_redirect_peer",
            "k8s_node",
            "k8s_node_kube_proxy",
            "xdp_drop_threads"
        ]
    );
    // one timed round of 2 replays of 64 frames: 128 packets; `end` counts the
    // 2 warm-up replays too (256)
    let cons = |transmitted: u64, dropped: u64| {
        serde_json::json!({"in": 128, "originated": 0, "transmitted": transmitted,
                           "delivered": 0, "dropped": dropped, "in_flight": 0})
    };
    let want = [
        (
            cons(0, 128),
            serde_json::json!({"SKIFF_XDP_DROP": 128}),
            128,
            "dropped",
        ),
        (cons(128, 0), serde_json::json!({}), 128, "transmitted"),
        (
            cons(0, 128),
            serde_json::json!({"SKIFF_XDP_DROP": 128}),
            256,
            "peer/veth0 xdp hook",
        ),
        (
            cons(0, 128),
            serde_json::json!({"TC_INGRESS": 128}),
            384,
            "peer/veth0 tc-ingress hook",
        ),
    ];
    for (r, (c, drops, hooks, end)) in rows.iter().zip(want) {
        assert_eq!(r["engine"], "skiff-jit", "{r}");
        assert_eq!(r["error"], serde_json::Value::Null, "{r}");
        assert_eq!(r["conservation"], c, "{r}");
        assert_eq!(r["drops"], drops, "{r}");
        assert_eq!(r["hook_runs"], hooks, "{r}");
        assert_eq!(
            r["end"],
            serde_json::json!({"where": end, "packets": 256, "of": 256}),
            "{r}"
        );
        assert!(
            r["ns_per_packet"].as_f64().is_some_and(|ns| ns > 0.0),
            "{r}"
        );
    }
    // the k8s-node example's pods have no sockets (`listen = []`): per replay
    // two RSTs and a port unreachable more out, three NO_SOCKET drops
    let k8s = &rows[4];
    assert_eq!(
        k8s["conservation"],
        serde_json::json!({"in": 18, "originated": 14, "transmitted": 12,
                           "delivered": 10, "dropped": 10, "in_flight": 0})
    );
    assert_eq!(k8s["kernel_ns_per_packet"], serde_json::Value::Null);
    assert_eq!(
        k8s["kernel_error"],
        "not supported: the k8s-node topology needs netkit, which this machine's kernel lacks"
    );
    // the same node with kube-proxy's iptables rules, beside it: its 9-packet
    // pcap twice, every packet accounted for, no kernel column
    let kp = &rows[5];
    assert_eq!(kp["error"], serde_json::Value::Null, "{kp}");
    let c = &kp["conservation"];
    assert_eq!(c["in"], 18, "{kp}");
    assert_eq!(c["in_flight"], 0, "{kp}");
    let n = |k: &str| c[k].as_u64().expect("a count");
    assert_eq!(
        n("in") + n("originated"),
        n("transmitted") + n("delivered") + n("dropped"),
        "{kp}"
    );
    assert!(
        kp["ns_per_packet"].as_f64().is_some_and(|ns| ns > 0.0),
        "{kp}"
    );
    assert!(
        kp["kernel_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not supported: timing the kernel")),
        "{kp}"
    );
    // xdp_drop on two worker threads: the same ends, and a speed-up figure
    let th = &rows[6];
    assert_eq!(th["error"], serde_json::Value::Null, "{th}");
    assert_eq!(th["conservation"], cons(0, 128), "{th}");
    assert_eq!(
        th["drops"],
        serde_json::json!({"SKIFF_XDP_DROP": 128}),
        "{th}"
    );
    assert_eq!(th["hook_runs"], 128, "{th}");
    assert!(th["speedup"].as_f64().is_some_and(|x| x > 0.0), "{th}");
    if let Err(why) = skiff_kernel::available() {
        eprintln!("SKIPPED the kernel column: {why}");
        assert!(v["kernel_skipped"].as_str().is_some(), "{v}");
        return;
    }
    assert_eq!(v["kernel_skipped"], serde_json::Value::Null);
    for (i, r) in rows.iter().take(4).enumerate() {
        assert_eq!(r["kernel_error"], serde_json::Value::Null, "{r}");
        let k = r["kernel_ns_per_packet"].as_f64().expect("kernel figure");
        assert!(k > 0.0, "{r}");
        assert!(r["ratio"].as_f64().is_some_and(|x| x > 0.0), "{r}");
        // xdp_drop ends at eth0; the others at a peer's program
        let end = if i == 0 {
            serde_json::Value::Null
        } else {
            serde_json::json!({"packets": 128, "of": 128})
        };
        assert_eq!(r["kernel_end"], end, "{r}");
    }
    // the bench's namespaces are gone
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&ns.stdout).contains("skiff-bench-"),
        "left behind: {}",
        String::from_utf8_lossy(&ns.stdout)
    );
}

#[test]
fn datapath_suite_options() {
    let (code, _, stderr) = skiff(&[
        "bench",
        "--datapath",
        "--suite",
        "--topology",
        "examples/k8s-node/topology.toml",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("'--suite' cannot be used with '--topology <TOPOLOGY>'"),
        "{stderr}"
    );
    let (code, _, stderr) = skiff(&["bench", "--suite"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--datapath"), "{stderr}");
}
