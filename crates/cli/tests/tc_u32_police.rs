//! `skiff run` on the tc-u32-police example (seed 002's tc lines): a u32
//! filter on eth0's ingress qdisc polices to 1 Mbit/s with a 100 KB burst
//! and pipes what exceeds to a mirred redirect to lo. Of 250 frames of 986
//! network bytes 4 ms apart (each costs 986 * 8000 ns of a 819.2 ms bucket,
//! act_police's arithmetic), 209 fit the burst, then one in two conforms:
//! 230 forwarded, 20 redirected.

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

const ARGS: [&str; 6] = [
    "run",
    "examples/tc-u32-police/topology.toml",
    "--pcap-in",
    "eth0=examples/tc-u32-police/traffic.pcap",
    "--pcap-out",
    "eth1=/dev/null",
];

#[test]
fn tc_stats_as_expected() {
    let mut args = ARGS.to_vec();
    args.push("--tc-stats");
    let (code, out) = skiff(&args);
    assert_eq!(code, 0, "{out}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let want = std::fs::read_to_string(root.join("examples/tc-u32-police/expected.txt")).unwrap();
    // The pcap-out line names the file (the README's /tmp/policed.pcap).
    assert_eq!(out.replace("/dev/null", "/tmp/policed.pcap"), want);
}

#[test]
fn json_police_and_mirred_counters() {
    let mut args = ARGS.to_vec();
    args.push("--json");
    let (code, out) = skiff(&args);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["conservation"]["transmitted"], 230);
    let f = &v["tc"]["host/eth0"]["filter"];
    let acts = &f[2]["options"]["actions"];
    let (p, m) = (&acts[0], &acts[1]);
    assert_eq!(
        (p["kind"].as_str(), m["kind"].as_str()),
        (Some("police"), Some("mirred"))
    );
    // police counts every packet from its network header: 250 x 986 bytes.
    assert_eq!(
        (
            p["stats"]["packets"].as_u64(),
            p["stats"]["bytes"].as_u64(),
            p["stats"]["overlimits"].as_u64()
        ),
        (Some(250), Some(246_500), Some(20))
    );
    assert_eq!(
        (m["stats"]["packets"].as_u64(), m["stats"]["bytes"].as_u64()),
        (Some(20), Some(19_720))
    );
    assert_eq!(f[2]["parent"], "ffff:");
}
