//! What the `skiff run --live` tests share (live.rs, live_obs.rs,
//! live_k8s.rs): the repository root, the root check, a running skiff with
//! its stderr read on a thread (every wait bounded, killed on drop), and the
//! namespaces of examples/live-pair (`PREFIX-{a,b,x}`, removed on drop).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The line skiff prints on stderr once a live run forwards.
const RUNNING: &str = "running; SIGINT or SIGTERM ends it";

/// The repository's root (examples/ are there).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this is root; says why the test is skipped when not.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        eprintln!("skipped: live tests need root (network namespaces, AF_PACKET, /dev/net/tun)");
    }
    uid == 0
}

/// Runs `cmd args`: whether it succeeded (its output on stderr, the test's
/// log, if not).
pub fn sh(cmd: &str, args: &[&str]) -> bool {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "{cmd} {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("{cmd}: {e}");
            false
        }
    }
}

/// A running `skiff run --live`, its stderr lines on a channel (and those
/// read so far in `seen`); killed on drop if still running.
pub struct Running {
    child: Child,
    err: Receiver<String>,
    pub seen: String,
}

impl Running {
    /// Spawns `cmd` (stderr piped here) and waits up to `limit` for it to
    /// say it runs.
    pub fn start(mut cmd: Command, limit: Duration) -> Running {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start skiff");
        let (tx, err) = channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut r = Running {
            child,
            err,
            seen: String::new(),
        };
        r.wait_for(RUNNING, limit);
        r
    }

    /// Waits (bounded) for a stderr line containing `what`; the line.
    pub fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.err.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push_str(&l);
                    self.seen.push('\n');
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no {what:?} from skiff within {limit:?}; stderr so far:\n{}",
            self.seen
        );
    }

    /// Sends `signal` and waits up to `limit` for the end: the exit status,
    /// None if it still runs.
    pub fn end(&mut self, signal: i32, limit: Duration) -> Option<ExitStatus> {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The rest of skiff's stdout (when piped), after it ended.
    pub fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out).expect("read the summary");
        }
        out
    }

    /// The stderr lines still coming (up to 2 s apart) added to `seen`.
    pub fn drain(&mut self) {
        while let Ok(l) = self.err.recv_timeout(Duration::from_secs(2)) {
            self.seen.push_str(&l);
            self.seen.push('\n');
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namespaces of one examples/live-pair test, `PREFIX-{a,b,x}`, and its
/// topology file; removed on drop.
pub struct Net {
    pub prefix: String,
}

impl Net {
    /// `prefix` with this process's id and `tag` (tests run in parallel).
    pub fn new(prefix: &str, tag: &str) -> Net {
        Net {
            prefix: format!("{prefix}{}-{tag}", std::process::id()),
        }
    }

    pub fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// Empty namespaces a and b (for skiff's taps).
    pub fn add_a_b(&self) {
        for w in ["a", "b"] {
            assert!(sh("ip", &["netns", "add", &self.ns(w)]));
        }
    }

    /// examples/live-pair/setup.sh with this prefix, for `backend`.
    pub fn setup(&self, backend: &str) {
        let ok = Command::new(root().join("examples/live-pair/setup.sh"))
            .env("PREFIX", &self.prefix)
            .env("BACKEND", backend)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "setup.sh for {}", self.prefix);
    }

    fn topology_file(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}.toml", self.prefix))
    }

    /// The example's topology with this test's namespaces and `backend`;
    /// with tap, skiff's taps are a0 in -a and b0 in -b themselves.
    pub fn topology(&self, backend: &str) -> PathBuf {
        let obj = root().join("examples/live-pair/live_pair.o");
        let mut t = std::fs::read_to_string(root().join("examples/live-pair/topology.toml"))
            .expect("read the example")
            .replace(
                "\"live_pair.o\"",
                &format!("{:?}", obj.display().to_string()),
            )
            .replace("\"af_packet\"", &format!("{backend:?}"));
        if backend == "tap" {
            for w in ["a", "b"] {
                t = t.replace(
                    &format!("host_ifname = \"skiff-x{w}\"\nhost_netns = \"skiff-x\""),
                    &format!("host_ifname = \"{w}0\"\nhost_netns = \"{}\"", self.ns(w)),
                );
            }
        } else {
            t = t.replace("\"skiff-x\"", &format!("{:?}", self.ns("x")));
        }
        let p = self.topology_file();
        std::fs::write(&p, t).expect("write the topology");
        p
    }

    /// Addresses and link up on skiff's taps a0 and b0 (they are new after
    /// each start).
    pub fn address_taps(&self) {
        for (w, dev, ip) in [("a", "a0", "10.9.0.1/24"), ("b", "b0", "10.9.0.2/24")] {
            assert!(sh(
                "ip",
                &["-n", &self.ns(w), "addr", "add", ip, "dev", dev]
            ));
            assert!(sh("ip", &["-n", &self.ns(w), "link", "set", dev, "up"]));
        }
    }

    /// `count` pings from a to b through skiff; whether all were answered.
    pub fn ping(&self, count: &str) -> bool {
        let a = self.ns("a");
        let ping = ["ping", "-c", count, "-i", "0.2", "-W", "2", "10.9.0.2"];
        sh(
            "ip",
            &[&["netns", "exec", a.as_str()][..], &ping[..]].concat(),
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for w in ["a", "b", "x"] {
            // not every test makes x (nor a and b): a failure says nothing
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(w)])
                .output();
        }
        let _ = std::fs::remove_file(self.topology_file());
    }
}
