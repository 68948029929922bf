//! `skiff run` on the tc-htb example: an htb tree whose classes a cls_bpf
//! program picks by skb->tc_classid shapes three 2 Mbit/s flows to 2 Mbit/s;
//! `--tc-stats` prints what examples/tc-htb/expected.txt holds and `--json`
//! gives the same numbers under `tc`.

use std::path::PathBuf;
use std::process::Command;

fn skiff(args: &[&str]) -> (i32, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(&root)
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const ARGS: [&str; 4] = [
    "run",
    "examples/tc-htb/topology.toml",
    "--pcap-in",
    "eth0=examples/tc-htb/traffic.pcap",
];

#[test]
fn tc_stats_as_expected() {
    let mut args = ARGS.to_vec();
    args.push("--tc-stats");
    let (code, out) = skiff(&args);
    assert_eq!(code, 0, "{out}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let want = std::fs::read_to_string(root.join("examples/tc-htb/expected.txt")).unwrap();
    assert_eq!(out, want);
}

#[test]
fn json_tc_key() {
    let mut args = ARGS.to_vec();
    args.push("--json");
    let (code, out) = skiff(&args);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let eth1 = &v["tc"]["host/eth1"];
    let q = &eth1["qdisc"][0];
    assert_eq!(
        (
            q["kind"].as_str(),
            q["handle"].as_str(),
            q["root"].as_bool()
        ),
        (Some("htb"), Some("1:"), Some(true))
    );
    // 2 Mbit/s for ~1 s plus the leaves' bursts; the rest is still queued.
    assert_eq!(
        (
            q["packets"].as_u64(),
            q["backlog"].as_u64(),
            q["qlen"].as_u64()
        ),
        (Some(255), Some(495_000), Some(495))
    );
    assert_eq!(q["options"]["default"], "0x30");
    let sent: Vec<(String, u64, u64)> = eth1["class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let h = c["handle"].as_str().unwrap_or("").to_string();
            (
                h,
                c["packets"].as_u64().unwrap_or(0),
                c["xstats"]["lended"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // Each leaf at its rate (1 Mbit/s, 500, 500 kbit/s): the root's rate is
    // all theirs, nothing left to lend.
    assert_eq!(
        sent,
        vec![
            ("1:1".into(), 255, 0),
            ("1:10".into(), 127, 127),
            ("1:20".into(), 64, 64),
            ("1:30".into(), 64, 64)
        ]
    );
}
