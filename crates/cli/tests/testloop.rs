//! The test loop's contracts: `skiff test` on the bundled fixtures (CI runs
//! them here), its diffs, exit codes, JUnit XML and --update; `skiff map`
//! verbs as bpftool prints them; `run --json`'s maps; `--trace-format pwru`;
//! `prog run --json`'s bpftool `duration`; TC_ACT_UNSPEC by name.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skiff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> (i32, serde_json::Value) {
    let (code, out, err) = skiff(args);
    let v =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out} {err}"));
    (code, v)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("skiff-testloop-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
    fn s(&self, f: &str) -> String {
        self.path(f).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A fixture for the bundled firewall object, written into `dir`.
fn fw_fixture(dir: &Path, body: &str) -> PathBuf {
    let obj = root().join("examples/xdp_fw/xdp_fw.o");
    let p = dir.join("fw.toml");
    let text = format!(
        "version = 1\nobject = \"{}\"\nprogram = \"xdp_fw\"\n{body}",
        obj.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_bundled_examples_fixtures_pass() {
    let (code, out, err) = skiff(&["test", "examples"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "examples/k8s-node/fixtures/k8s-node.toml
  ok       service VIP 10.96.0.10:80 is DNATed by XDP and redirected to pod2 by tc
  ok       the blocked prefix 198.51.100.0/24 is dropped in XDP
  ok       a prefix blocked by the fixture's own map entry is dropped too
  ok       pod1 port 22 is not in its allow list: k8s_to_pod drops it
  ok       the node answers ARP for 192.168.1.10
  ok       the node answers a ping through its gateway
  ok       the example's traffic.pcap, all nine frames
examples/k8s-node-kube-proxy/fixtures/k8s-node-kube-proxy.toml
  ok       the blocked prefix 198.51.100.0/24 is dropped by the raw table at PREROUTING
  ok       service VIP 10.96.0.10:53/udp is DNATed to 10.0.1.12:5353 and masqueraded to pod2
examples/xdp_fw/fixtures/xdp_fw.toml
  ok       a source in a blocked /24 is dropped and counted
  ok       a source outside the blocked prefixes passes unchanged
  ok       an ARP request is not IPv4: passes

12 cases: 12 passed, 0 failed, 0 could not run
"
    );
}

const FAILING: &str = r#"
[[case]]
name = "wrong on every count"

[[case.map]]
name = "blocked"
key = ["u32:24", "ipv4:192.168.1.0"]
value = "u8:7"

[[case.frame]]
hex = "0200000000020200000000010800450000281234000040060000c0a801070a0000029c400050000003e8000000005002ffff00000000"

[case.expect]
verdict = "XDP_PASS"
retval = 2

[[case.expect.frame]]
hex = "0200000000020200000000010800450000281234000041060000c0a801070a0000029c400050000003e8000000005002ffff0000xxxx"

[[case.expect.map]]
name = "drop_count"
key = "u32:0"
value = "u64:2"

[[case.expect.map]]
name = "drops_by_val"
key = "u8:8"
value = "u64:1"

[[case]]
name = "right"

[[case.frame]]
eth = { src = "02:00:00:00:00:01", dst = "02:00:00:00:00:02" }
ipv4 = { src = "10.1.1.1", dst = "10.0.0.2" }
udp = { sport = 1, dport = 2 }

[case.expect]
verdict = "XDP_PASS"
"#;

#[test]
fn a_failure_is_a_readable_diff_exit_1_and_junit() {
    let t = TempDir::new("fail");
    let f = fw_fixture(&t.0, FAILING);
    let junit = t.s("junit.xml");
    let (code, out, _) = skiff(&["test", f.to_str().unwrap(), "--junit", &junit]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "{}
  FAIL     wrong on every count
           verdict: expected XDP_PASS, got XDP_DROP
           retval: expected 2, got 1
           data_out: byte 22 (ipv4.ttl): expected 41, got 40
           map drop_count key 00000000: expected 0200000000000000, got 0100000000000000 (first difference at byte 0)
           map drops_by_val key 08: expected 0100000000000000, the key is absent
  ok       right

2 cases: 1 passed, 1 failed, 0 could not run
",
            f.display()
        )
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"skiff test\" tests=\"2\" failures=\"1\" errors=\"0\">\n"), "{xml}");
    assert!(xml.contains("<failure message=\"verdict: expected XDP_PASS, got XDP_DROP\">verdict: expected XDP_PASS, got XDP_DROP\nretval: expected 2, got 1\n"), "{xml}");
    assert!(xml.contains("<testcase name=\"right\" classname="), "{xml}");
    assert!(xml.ends_with("  </testsuite>\n</testsuites>\n"), "{xml}");
}

#[test]
fn update_writes_the_observed_expectation_keeping_comments() {
    let t = TempDir::new("update");
    let f = fw_fixture(&t.0, FAILING);
    let (code, out, _) = skiff(&["test", f.to_str().unwrap(), "--update"]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&f).unwrap();
    // the frame and map going in are kept as written; the expectation is what ran
    assert!(text.contains("[[case.map]]\nname = \"blocked\"\nkey = [\"u32:24\", \"ipv4:192.168.1.0\"]\nvalue = \"u8:7\"\n"), "{text}");
    assert!(
        text.contains("[case.expect]\nverdict = \"XDP_DROP\"\nretval = 1\n"),
        "{text}"
    );
    assert!(text.contains("value = \"0100000000000000\""), "{text}");
    assert!(text.contains("key = \"u8:8\"\nabsent = true\n"), "{text}");
    let (code, out, _) = skiff(&["test", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("2 cases: 2 passed, 0 failed, 0 could not run\n"),
        "{out}"
    );
}

#[test]
fn unreadable_and_malformed_files_exit_2() {
    let t = TempDir::new("bad");
    let (code, _, err) = skiff(&["test", &t.s("missing.toml")]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "skiff test: {}: No such file",
            t.s("missing.toml")
        )),
        "{err}"
    );
    std::fs::write(
        t.path("v.toml"),
        "object = \"x.o\"\nprogram = \"p\"\n[[case]]\nname = \"a\"\n",
    )
    .unwrap();
    let (code, _, err) = skiff(&["test", &t.s("v.toml")]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "skiff test: {}: version: missing (write `version = 1` first)\n",
            t.s("v.toml")
        )
    );
    let f = fw_fixture(&t.0, "[[case]]\nname = \"n\"\n[[case.frame]]\neth = { src = \"02:00:00:00:00:01\", dst = \"zz\" }\n");
    let (code, _, err) = skiff(&["test", f.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "skiff test: {}: case[0] \"n\": frame[0].eth.dst: bad MAC \"zz\": want six hex bytes like 02:00:00:00:00:01\n",
            f.display()
        )
    );
}

#[test]
fn map_verbs_print_as_bpftool() {
    let o = "examples/xdp_fw/xdp_fw.o";
    let (code, out, _) = skiff(&["map", "show", o]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "1: lpm_trie  name blocked  flags 0x1\n\tkey 8B  value 1B  max_entries 1024\n\
         2: array  name drop_count  flags 0x0\n\tkey 4B  value 8B  max_entries 1\n\
         3: hash  name drops_by_val  flags 0x0\n\tkey 1B  value 8B  max_entries 64\n"
    );
    let (code, v) = json(&["map", "show", o, "name", "drop_count", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        v,
        serde_json::json!({"id": 2, "type": "array", "name": "drop_count", "flags": 0,
            "bytes_key": 4, "bytes_value": 8, "max_entries": 1, "frozen": 0})
    );
    let (code, v) = json(&[
        "map",
        "dump",
        o,
        "name",
        "blocked",
        "--map-update",
        "blocked",
        "18000000c0a80100",
        "07",
        "--json",
    ]);
    assert_eq!(code, 0);
    // BTF: struct lpm_key { __u32 prefixlen; __u32 addr; } (addr in network order)
    assert_eq!(
        v,
        serde_json::json!([{
            "key": ["0x18", "0x00", "0x00", "0x00", "0xc0", "0xa8", "0x01", "0x00"],
            "value": ["0x07"],
            "formatted": {"key": {"prefixlen": 24, "addr": 108736}, "value": 7},
        }])
    );
    let (code, out, _) = skiff(&["map", "dump", o, "name", "drop_count"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "key: 00 00 00 00  value: 00 00 00 00 00 00 00 00\nFound 1 element\n"
    );
    let (code, out, _) = skiff(&["map", "lookup", o, "name", "drops_by_val", "key", "07"]);
    assert_eq!(code, 1);
    assert_eq!(out, "key:\n07\n\nNot found\n");
    let (code, out, _) = skiff(&[
        "map",
        "lookup",
        o,
        "name",
        "drops_by_val",
        "key",
        "07",
        "--json",
    ]);
    assert_eq!((code, out.as_str()), (1, "null\n"));
    let (code, out, _) = skiff(&[
        "map",
        "update",
        o,
        "name",
        "drops_by_val",
        "key",
        "07",
        "value",
        "0100000000000000",
        "--json",
    ]);
    assert_eq!((code, out.as_str()), (0, "null\n"));
    let (code, _, err) = skiff(&["map", "delete", o, "name", "drops_by_val", "key", "07"]);
    assert_eq!(code, 1);
    assert_eq!(err, "Error: delete failed: ENOENT (2)\n");
    let (code, v) = json(&[
        "map",
        "update",
        o,
        "name",
        "drop_count",
        "key",
        "00000000",
        "value",
        "01",
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        v,
        serde_json::json!({"error": "update failed: value has 1 bytes, the map's value_size is 8"})
    );
}

#[test]
fn run_json_reports_the_maps_after_the_run() {
    let (code, v) = json(&[
        "run",
        "examples/k8s-node/topology.toml",
        "--pcap-in",
        "eth0=examples/k8s-node/traffic.pcap",
        "--json",
        "--maps",
        "blocked,endpoints",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        v["maps"],
        serde_json::json!({
            "k8s_xdp/blocked": {"type": "lpm_trie", "key_size": 8, "value_size": 4, "max_entries": 1024,
                "entries": [{"key": "18000000c6336400", "value": "01000000"}]},
            "endpoints": {"type": "hash", "key_size": 4, "value_size": 16, "max_entries": 256,
                "entries": [
                    {"key": "0a00010b", "value": "03000000000000000000020000000001"},
                    {"key": "0a00010c", "value": "04000000000000000000020000000001"},
                ]},
        })
    );
    let (code, v) = json(&["run", "examples/k8s-node/topology.toml", "--json"]);
    assert_eq!(code, 0);
    let names: Vec<&String> = v["maps"].as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "endpoints",
            "k8s_pod/pod_allow",
            "k8s_tc/tc_stats",
            "k8s_xdp/backends",
            "k8s_xdp/blocked",
            "k8s_xdp/services",
            "k8s_xdp/xdp_stats"
        ]
    );
    // arrays without their all-zero entries: no traffic, no counters
    assert_eq!(
        v["maps"]["k8s_xdp/xdp_stats"]["entries"],
        serde_json::json!([])
    );
    let (code, _, err) = skiff(&[
        "run",
        "examples/k8s-node/topology.toml",
        "--json",
        "--maps",
        "nope",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("skiff run: --maps nope: no such map (maps: k8s_xdp/blocked, "),
        "{err}"
    );
}

#[test]
fn trace_format_pwru_writes_pwru_schema_and_trace_json_stays() {
    let t = TempDir::new("pwru");
    let pwru = t.s("pwru.json");
    let plain = t.s("plain.json");
    let (code, _, _) = skiff(&[
        "run",
        "examples/k8s-node/topology.toml",
        "--pcap-in",
        "eth0=examples/k8s-node/traffic.pcap",
        "--trace-json",
        &pwru,
        "--trace-format",
        "pwru",
    ]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&pwru).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"skb": "0x1", "func": "k8s_xdp(xdp)", "time": 1_700_000_000_000_000_000u64,
            "netns_name": "host", "iface": "eth0", "proto": 2048, "len": 54,
            "tuple": {"saddr": "203.0.113.5", "daddr": "10.0.1.12", "sport": 40000, "dport": 8080, "proto": 6}})
    );
    assert!(
        text.contains("\"func\":\"kfree_skb_reason(SKB_DROP_REASON_SKIFF_XDP_DROP)\""),
        "{text}"
    );
    let (code, _, _) = skiff(&[
        "run",
        "examples/k8s-node/topology.toml",
        "--pcap-in",
        "eth0=examples/k8s-node/traffic.pcap",
        "--trace-json",
        &plain,
    ]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&plain).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["skb"], 1);
    assert_eq!(first["tuple"], "203.0.113.5:40000->10.0.1.12:8080(tcp)");
    assert_eq!(first["ts_ns"], 1_700_000_000_000_000_000u64);
}

#[test]
fn prog_run_json_has_bpftools_duration_beside_duration_ns() {
    let (code, v) = json(&[
        "prog",
        "run",
        "examples/xdp_fw/xdp_fw.o",
        "--data-in",
        "examples/xdp_fw/blocked.bin",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert!(v["duration_ns"].as_u64().is_some(), "{v}");
    assert_eq!(v["duration"], v["duration_ns"]);
    let (code, v) = json(&[
        "prog",
        "run",
        "examples/xdp_fw/missing.o",
        "--data-in",
        "x",
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(v["duration"], serde_json::Value::Null);
    assert_eq!(v["duration_ns"], serde_json::Value::Null);
}

/// A classifier returning -1 is TC_ACT_UNSPEC in `prog run`, in the trace and
/// in the counters (needs clang-19; skips and says so without it).
#[test]
fn tc_act_unspec_is_named_as_such() {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let t = TempDir::new("unspec");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/tc_unspec.c");
    let obj = skiff_kernel::clang::compile(&src, &t.0).expect("compile tc_unspec.c");
    let (code, out, _) = skiff(&[
        "prog",
        "run",
        obj.to_str().unwrap(),
        "--data-in",
        "examples/xdp_fw/allowed.bin",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("retval: TC_ACT_UNSPEC (-1)   duration: "),
        "{out}"
    );
    let topo = t.path("t.toml");
    std::fs::write(
        &topo,
        format!(
            "[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n\
             [[object]]\npath = \"{}\"\n[[object.attach]]\nprogram = \"tc_unspec\"\ndev = \"eth0\"\nhook = \"tc/ingress\"\n",
            obj.display()
        ),
    )
    .unwrap();
    let mut net = skiff::Network::load(&topo).unwrap();
    let frame = std::fs::read(root().join("examples/xdp_fw/allowed.bin")).unwrap();
    let o = net.send("eth0", &frame).unwrap();
    assert_eq!(o.verdict("eth0", "tc-ingress"), Some("TC_ACT_UNSPEC"));
    let c = net.counters();
    let eth0 = c.devices.iter().find(|d| d.name == "eth0").unwrap();
    assert_eq!(eth0.hooks["tc-ingress"]["TC_ACT_UNSPEC"].packets, 1);
}

/// `--update` on cases with no `[case.expect]` writes one into each case,
/// before the next `[[case]]`, and the file then passes as it stands.
#[test]
fn update_adds_an_expectation_to_each_case() {
    let t = TempDir::new("noexpect");
    let f = fw_fixture(
        &t.0,
        "[[case]]\nname = \"a\"\n[[case.frame]]\nhex = \"020000000002020000000001080045000014000000004006f9c7c0a801070a000002\"\n\
         [[case]]\nname = \"b\"\n[[case.frame]]\nhex = \"0200000000020200000000010806\"\n",
    );
    let (code, out, _) = skiff(&["test", f.to_str().unwrap(), "--update"]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&f).unwrap();
    let a = text.find("name = \"a\"").unwrap();
    let b = text.find("name = \"b\"").unwrap();
    let first = text[a..b].find("[case.expect]\nverdict = \"XDP_PASS\"\n");
    assert!(first.is_some(), "{text}");
    assert!(text[b..].contains("[case.expect]\nverdict = \"XDP_PASS\"\nframe = [{ hex = \"0200000000020200000000010806\" }]\n"), "{text}");
    let (code, out, _) = skiff(&["test", f.to_str().unwrap()]);
    assert_eq!(
        (
            code,
            out.ends_with("2 cases: 2 passed, 0 failed, 0 could not run\n")
        ),
        (0, true),
        "{out}"
    );
}
