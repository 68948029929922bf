//! `skiff run` in memory constant in the number of frames: a million frames
//! (the k8s-node example's traffic over and over) replayed with its peak RSS,
//! from wait4's rusage, under 64 MB. Reading the whole pcap and keeping every
//! delivered packet took 3.4 GB here. A memory bound, not a timing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("skiff-mem-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Runs `cmd` to its end: exit code and peak resident set in KiB (ru_maxrss).
// wait4 reaps the child (std's `wait` has no rusage)
#[allow(clippy::zombie_processes)]
fn run_with_peak_rss(cmd: &mut Command) -> (i32, i64) {
    let child = cmd.spawn().expect("spawn skiff");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `ru` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = match libc::WIFEXITED(status) {
        true => libc::WEXITSTATUS(status),
        false => -1,
    };
    (code, ru.ru_maxrss)
}

/// `n` frames: the example's traffic repeated, 1 µs apart.
fn write_replay(path: &Path, n: usize) {
    let traffic = skiff_io::read(&root().join("examples/k8s-node/traffic.pcap")).unwrap();
    let mut w = skiff_io::Writer::create(path, skiff_io::Format::Pcap, &[("eth0", 1)]).unwrap();
    for (i, p) in traffic.packets.iter().cycle().take(n).enumerate() {
        w.write(0, 1_000_000_000 + i as u64 * 1000, &p.data, None)
            .unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn a_million_frames_replay_in_bounded_memory() {
    let t = TempDir::new("replay");
    let input = t.path("in.pcap");
    let output = t.path("out.pcap");
    let summary = t.path("summary.txt");
    write_replay(&input, 1_000_000);
    let (code, peak_kib) = run_with_peak_rss(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .current_dir(root())
            .args(["run", "examples/k8s-node/topology.toml", "--pcap-in"])
            .arg(format!("eth0={}", input.display()))
            .arg("--pcap-out")
            .arg(format!("eth0={}", output.display()))
            .stdout(File::create(&summary).unwrap())
            .stderr(Stdio::null()),
    );
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.ends_with("\nconservation: in 1000000 + originated 666673 = transmitted 555562 + delivered 555555 + dropped 555556 + in flight 0\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("wrote 555562 packets to {}\n", output.display())),
        "{text}"
    );
    // every transmitted frame was written: the 24-byte header, then a 16-byte
    // record header and the frame (each round: two 54-byte RSTs from the pods,
    // which have no sockets, two 74-byte ping replies, one 42-byte ARP reply;
    // the last, cut round one RST; and the 82-byte ICMP port unreachables the
    // rate limit lets through in the replay's second: its burst of 6)
    let out_len = std::fs::metadata(&output).unwrap().len();
    assert_eq!(
        out_len,
        24 + 222_223 * (16 + 54) + 222_222 * (16 + 74) + 111_111 * (16 + 42) + 6 * (16 + 82)
    );
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB for a million frames"
    );
}

/// `prog run --json` on a legal 10M-entry array lists only its non-zero
/// entries (`"sparse": true`), in memory bounded by the map itself: the full
/// dump took 7.8 GB. Needs clang-19 (skips and says so without it).
#[test]
fn a_ten_million_entry_array_is_listed_sparse_in_bounded_memory() {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let t = TempDir::new("bigarray");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/big_array.c");
    let obj = skiff_kernel::clang::compile(&src, &t.0).expect("compile big_array.c");
    let out = t.path("out.json");
    let (code, peak_kib) = run_with_peak_rss(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .current_dir(root())
            .args(["prog", "run"])
            .arg(&obj)
            .args(["--data-in", "examples/xdp_fw/allowed.bin", "--json"])
            .stdout(File::create(&out).unwrap())
            .stderr(Stdio::null()),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["retval"], 2);
    assert_eq!(
        v["maps"]["big"],
        serde_json::json!({
            "type": "array", "key_size": 4, "value_size": 8, "max_entries": 10_000_000,
            "sparse": true,
            "entries": [
                {"key": "92100000", "value": "0700000000000000"},
                {"key": "7f969800", "value": "0100000000000000"},
            ],
        })
    );
    // the map's 80 MB of values, the process and the JIT: well under the
    // gigabytes a full dump takes
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
}
