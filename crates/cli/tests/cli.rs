//! The `skiff` command-line contract: `prog run` output (text and --json), map
//! updates, refusals with their messages, `prog show`/`dump`, the conformance
//! plugin. Uses the bundled example object (no clang or root needed).

use std::path::PathBuf;
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

/// A corpus or test C source compiled with clang-19 into a temporary directory
/// (removed on drop); None, with the reason printed, when clang-19 is missing.
struct Compiled {
    obj: PathBuf,
    dir: PathBuf,
}

impl Drop for Compiled {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn compile(src: PathBuf, tag: &str) -> Option<Compiled> {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("skiff-cli-{tag}-{}", std::process::id()));
    let obj = skiff_kernel::clang::compile(&src, &dir).expect("compile");
    Some(Compiled { obj, dir })
}

const OBJ: &str = "examples/xdp_fw/xdp_fw.o";

fn json(args: &[&str]) -> (i32, serde_json::Value) {
    let (code, out, err) = skiff(args);
    let v =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out} {err}"));
    (code, v)
}

#[test]
fn run_drops_blocked_prefix_and_reports_maps() {
    let (code, out, _) = skiff(&[
        "prog",
        "run",
        OBJ,
        "--prog",
        "xdp_fw",
        "--data-in",
        "examples/xdp_fw/blocked.bin",
        "--map-update",
        "blocked",
        "18000000c0a80100",
        "01",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("retval: XDP_DROP (1)   duration: "),
        "{out}"
    );
    assert!(out.trim_end().ends_with("data_out: 75 bytes"), "{out}");

    let (code, v) = json(&[
        "prog",
        "run",
        OBJ,
        "--data-in",
        "examples/xdp_fw/blocked.bin",
        "--map-update",
        "blocked",
        "18000000c0a80100",
        "01",
        "--repeat",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["retval"], 1);
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["ctx_out"], serde_json::Value::Null);
    let pkt = std::fs::read(root().join("examples/xdp_fw/blocked.bin")).unwrap();
    assert_eq!(v["data_out"], hex::encode(&pkt));
    let blocked = &v["maps"]["blocked"];
    assert_eq!(blocked["type"], "lpm_trie");
    assert_eq!(blocked["key_size"], 8);
    assert_eq!(blocked["value_size"], 1);
    assert_eq!(blocked["entries"][0]["key"], "18000000c0a80100");
    assert_eq!(blocked["entries"][0]["value"], "01");
    // three runs, three drops counted
    assert_eq!(
        v["maps"]["drop_count"]["entries"][0]["value"],
        "0300000000000000"
    );
}

#[test]
fn run_passes_other_traffic() {
    let (code, v) = json(&[
        "prog",
        "run",
        OBJ,
        "--data-in",
        "examples/xdp_fw/allowed.bin",
        "--map-update",
        "blocked",
        "18000000c0a80100",
        "01",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(v["retval"], 2);
    assert_eq!(
        v["maps"]["drop_count"]["entries"][0]["value"],
        "0000000000000000"
    );
}

#[test]
fn runt_frame_is_refused_like_the_kernel() {
    let dir = std::env::temp_dir().join(format!("skiff-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runt = dir.join("runt.bin");
    std::fs::write(&runt, [0u8; 10]).unwrap();
    let (code, v) = json(&[
        "prog",
        "run",
        OBJ,
        "--data-in",
        runt.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("10 bytes") && err.contains("errno 22"),
        "{err}"
    );
    let (code, _, err) = skiff(&["prog", "run", OBJ, "--data-in", runt.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.starts_with("skiff: the test run was refused"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_map_updates_name_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["nosuch", "00", "00"], "no map named \"nosuch\""),
        (
            &["blocked", "1800", "01"],
            "key has 2 bytes, the map's key_size is 8",
        ),
        (
            &["blocked", "18000000c0a80100", "0102"],
            "value has 2 bytes, the map's value_size is 1",
        ),
        (&["blocked", "zz", "01"], "is not hex bytes"),
        (&["blocked", "21000000c0a80100", "01"], "EINVAL (22)"),
    ];
    for (upd, want) in cases {
        let mut args = vec![
            "prog",
            "run",
            OBJ,
            "--data-in",
            "examples/xdp_fw/allowed.bin",
            "--map-update",
        ];
        args.extend_from_slice(upd);
        let (code, _, err) = skiff(&args);
        assert_eq!(code, 1, "{upd:?}");
        assert!(err.contains(want), "{upd:?}: {err}");
    }
}

#[test]
fn bad_object_is_an_error_not_a_panic() {
    let (code, _, err) = skiff(&["prog", "show", "examples/xdp_fw/blocked.bin"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("examples/xdp_fw/blocked.bin") && err.contains("not a loadable eBPF object"),
        "{err}"
    );
    let (code, _, err) = skiff(&[
        "prog",
        "run",
        OBJ,
        "--prog",
        "nope",
        "--data-in",
        "examples/xdp_fw/allowed.bin",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no program named \"nope\"") && err.contains("xdp_fw"),
        "{err}"
    );
    // Both engines give the same verdict; the JIT reports its compile on stderr.
    for (engine, jit_line) in [("jit", true), ("interp", false)] {
        let (code, out, err) = skiff(&[
            "prog",
            "run",
            OBJ,
            "--data-in",
            "examples/xdp_fw/allowed.bin",
            "--engine",
            engine,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("retval: XDP_PASS (2)"), "{engine}: {out}");
        assert_eq!(
            err.contains("jit: ") && err.contains("bytes of native code"),
            jit_line,
            "{engine}: {err}"
        );
    }
    let (code, _, err) = skiff(&[
        "prog",
        "run",
        OBJ,
        "--data-in",
        "examples/xdp_fw/allowed.bin",
        "--engine",
        "wasm",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn show_and_dump() {
    let (code, v) = json(&["prog", "show", OBJ, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(v["license"], "GPL");
    assert_eq!(v["programs"][0]["name"], "xdp_fw");
    assert_eq!(v["programs"][0]["type"], "xdp");
    assert_eq!(v["maps"][0]["name"], "blocked");
    assert_eq!(v["maps"][0]["type"], "lpm_trie");
    let (code, out, _) = skiff(&["prog", "dump", OBJ]);
    assert_eq!(code, 0);
    assert!(out.contains("(18) r1 = map[blocked]"), "{out}");
    assert!(out.contains("(85) call bpf_map_lookup_elem#1"), "{out}");
    assert!(
        out.starts_with("   0: (61) r2 = *(u32 *)(r1 +4)\n"),
        "{out}"
    );
}

#[test]
fn conformance_plugin_protocol() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["conformance-plugin", "aa bb 11 22"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // ldxh r0, [r1+2]; exit
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"6910020000000000 9500000000000000")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2211");
}

/// Ring buffer records reach `--json` in order (needs clang-19 for the corpus).
#[test]
fn ringbuf_records_are_reported() {
    let Some(c) = compile(root().join("bpf/xdp_ringbuf.c"), "rb") else {
        return;
    };
    let obj = &c.obj;
    let (code, v) = json(&[
        "prog",
        "run",
        obj.to_str().unwrap(),
        "--data-in",
        "examples/xdp_fw/allowed.bin",
        "--repeat",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0);
    let rb = &v["maps"]["events"];
    assert_eq!(rb["type"], "ringbuf");
    let records = rb["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{rb}");
    // the summary starts with the frame length (75) and holds the IPv4 addresses
    let r = records[0].as_str().unwrap();
    assert!(
        r.starts_with("4b000000") && r.ends_with("0a0000010a000002"),
        "{r}"
    );
}

/// bpf_spin_lock/unlock around a read-modify-write of map values (not compared
/// with the kernel: skiff-kernel creates maps without the BTF the verifier needs).
#[test]
fn spin_lock_protected_counters() {
    let Some(c) = compile(root().join("bpf/xdp_spinlock.c"), "lk") else {
        return;
    };
    let obj = &c.obj;
    let (code, v) = json(&[
        "prog",
        "run",
        obj.to_str().unwrap(),
        "--data-in",
        "examples/xdp_fw/allowed.bin",
        "--repeat",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["retval"], 2);
    // struct locked { lock (0 after unlock), last = 75, packets = 3, bytes = 225 }
    let want = "000000004b0000000300000000000000e100000000000000";
    assert_eq!(v["maps"]["lk_arr"]["entries"][0]["value"], want, "{v}");
    // the UDP packet's protocol (17) keys the hash entry
    assert_eq!(v["maps"]["lk_hash"]["entries"][0]["key"], "11000000");
    assert_eq!(v["maps"]["lk_hash"]["entries"][0]["value"], want);
}

/// A buggy program never crashes skiff: the run ends with XDP_ABORTED / TC_ACT_SHOT
/// and `exception` names the program, instruction and address. The kernel's
/// verifier refuses both programs: they run with --no-verify.
#[test]
fn faulty_programs_end_the_run_not_the_process() {
    let Some(c) = compile(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/faulty.c"),
        "faulty",
    ) else {
        return;
    };
    let obj = c.obj.to_str().unwrap();
    let (code, v) = json(&[
        "prog",
        "run",
        obj,
        "--prog",
        "oob_read",
        "--data-in",
        "examples/xdp_fw/allowed.bin",
        "--repeat",
        "3",
        "--json",
        "--no-verify",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["retval"], 0, "XDP_ABORTED");
    let e = &v["exception"];
    assert_eq!(e["prog"], "oob_read");
    assert_eq!(e["count"], 3);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.starts_with("out-of-bounds read of 4 bytes at 0x"),
        "{msg}"
    );
    // the faulting load is the program's third instruction (data, then data+100000)
    assert!(e["insn"].as_u64().unwrap() <= 3, "{e}");

    let (code, v) = json(&[
        "prog",
        "run",
        obj,
        "--prog",
        "spin_forever",
        "--data-in",
        "examples/xdp_fw/allowed.bin",
        "--json",
        "--no-verify",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["retval"], 2, "TC_ACT_SHOT");
    assert!(
        v["exception"]["message"]
            .as_str()
            .unwrap()
            .starts_with("instruction budget of 67108864 exhausted"),
        "{v}"
    );
}
