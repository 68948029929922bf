//! `skiff run --live` with the k8s-node example behind real pods
//! (examples/k8s-node/live.toml, live-setup.sh): an HTTP request from the
//! client namespace to the service VIP 10.96.0.10:80 is DNATed by k8s_xdp to
//! a backend pod's real server on 8080, and the pod's reply comes back as
//! VIP:80 through k8s_from_pod's reverse NAT (else the client's TCP would
//! reset it). The namespaces are `skiff-k<pid>-{client,node,pod1,pod2}`,
//! removed also when the test fails; every wait is bounded. Skipped (with the
//! reason printed) when not root or without curl, python3 or ethtool.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::live::{root, Running};

/// Root and the tools live-setup.sh and the request need; says why not.
fn can_run() -> bool {
    let why = skiff_kernel::netns::missing(
        &["curl", "python3", "ethtool"],
        "live-setup.sh and the request need it",
    );
    if let Some(why) = &why {
        eprintln!("skipped: {why}");
    }
    why.is_none()
}

/// The test's namespaces (live-setup.sh with PREFIX), removed on drop.
struct Net {
    prefix: String,
}

impl Net {
    fn up() -> Net {
        let net = Net {
            prefix: format!("skiff-k{}", std::process::id()),
        };
        let out = net.setup("up");
        assert!(out.status.success(), "live-setup.sh: {out:?}");
        net
    }

    fn setup(&self, arg: &str) -> std::process::Output {
        Command::new(root().join("examples/k8s-node/live-setup.sh"))
            .arg(arg)
            .env("PREFIX", &self.prefix)
            .output()
            .expect("run live-setup.sh")
    }

    /// live.toml with this test's namespaces and the objects' absolute paths.
    fn topology(&self) -> PathBuf {
        let dir = root().join("examples/k8s-node");
        let mut t = std::fs::read_to_string(dir.join("live.toml")).expect("read live.toml");
        for obj in ["k8s_xdp.o", "k8s_tc.o", "k8s_pod_revnat.o"] {
            let abs = dir.join(obj).display().to_string();
            t = t.replace(&format!("{obj:?}"), &format!("{abs:?}"));
        }
        for ns in ["node", "pod1", "pod2"] {
            t = t.replace(
                &format!("\"skiff-{ns}\""),
                &format!("\"{}-{ns}\"", self.prefix),
            );
        }
        let p = std::env::temp_dir().join(format!("{}.toml", self.prefix));
        std::fs::write(&p, t).expect("write the topology");
        p
    }

    /// `curl` from the client namespace to the VIP from local port `port`
    /// (one try, 5 s at most): the body, or None.
    fn get_vip(&self, port: u16) -> Option<String> {
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("{}-client", self.prefix)])
            .args(["curl", "-s", "-m", "5", "--local-port", &port.to_string()])
            .arg("http://10.96.0.10/")
            .output()
            .ok()?;
        if !o.status.success() {
            eprintln!("curl from port {port}: {:?}", o.status);
            return None;
        }
        Some(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let out = self.setup("down");
        if !out.status.success() {
            eprintln!("live-setup.sh down: {out:?}");
        }
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.toml", self.prefix)));
        // what skiff leaves when killed: its pins and control socket
        let _ = std::fs::remove_dir_all(format!("/run/skiff/{}", self.prefix));
        let _ = std::fs::remove_file(format!("/run/skiff/{}.sock", self.prefix));
    }
}

/// A running `skiff run --live`; on drop SIGTERM (skiff removes its
/// socket), SIGKILL after 10 s.
struct Skiff(Running);

impl Skiff {
    fn start(topology: &Path, name: &str) -> Skiff {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["run", "--live", "--name", name])
            .arg(topology)
            .stdout(Stdio::null());
        Skiff(Running::start(cmd, Duration::from_secs(120)))
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        // the kill, if it still runs, is Running's drop
        let _ = self.0.end(libc::SIGTERM, Duration::from_secs(10));
    }
}

/// The body for a request from local port `port`, up to 3 tries from ports
/// of the same parity (k8s_xdp picks the backend by source address + port).
fn get_with_retries(net: &Net, port: u16) -> String {
    for p in [port, port + 2, port + 4] {
        if let Some(body) = net.get_vip(p) {
            return body;
        }
    }
    panic!("no answer from 10.96.0.10:80 for local ports {port}, +2, +4");
}

#[test]
fn client_reaches_a_backend_pod_through_the_vip() {
    if !can_run() {
        return;
    }
    let net = Net::up();
    let topo = net.topology();
    let _skiff = Skiff::start(&topo, &net.prefix);
    // k8s_xdp: backend index (ntohl(saddr) + sport) % 2 from 192.168.1.100
    // (even): an even port gets backends[0] 10.0.1.11 (pod1), an odd one
    // backends[1] 10.0.1.12 (pod2); both are the service's 80/tcp backends.
    assert_eq!(get_with_retries(&net, 40010), "pod1\n");
    assert_eq!(get_with_retries(&net, 40011), "pod2\n");
}
