//! `skiff bench --datapath --suite`: skiff's datapath against the kernel's, the
//! same `.o` on both sides (examples/bench-datapath), 64-byte UDP frames.
//!
//! Rows: `xdp_drop`, `xdp_tx` (on a NIC), `xdp_redirect` (DEVMAP to a veth
//! whose peer runs XDP), `tc_redirect_peer` (XDP_PASS, tc ingress
//! bpf_redirect_peer into a veth's peer in another namespace, tc there),
//! `k8s_node` (examples/k8s-node, skiff only: the kernel here has no netkit)
//! and `k8s_node_kube_proxy` beside it (the same node with kube-proxy's
//! iptables rules, skiff only)
//! and a 1 -> 2 thread scaling row on xdp_drop (skiff only).
//!
//! skiff's side is [`SkiffSide`]: the row's topology from memory, `--replays`
//! replays of 64 frames a round, on-CPU ns per injected packet. The kernel's
//! side loads the row's objects with skiff-kernel (raw bpf(2)) inside a network
//! namespace this bench creates (`skiff-bench-<pid>` and `skiff-bench-<pid>-peer`,
//! removed afterwards, also on an error or SIGINT/SIGTERM) and runs the row's
//! entry program with BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES
//! (`bpf_test_run_xdp_live`): frames received on `eth0`, batches of 64, XDP_TX
//! and XDP_REDIRECT frames really transmitted (`xdp_do_redirect_frame`),
//! XDP_PASS frames up `eth0`'s stack (`xdp_recv_frames`: tc ingress and the
//! redirect into the peer's namespace), all inside the kernel's timer. Its
//! figure is the kernel's reported duration: ns per frame from the first
//! batch to the last, which, like skiff's on-CPU figure, leaves out the
//! syscall's setup (the page pool) and time the thread was not running.
//!
//! Rounds are interleaved: per round, each row's skiff side then its kernel
//! side; the medians over `--runs` rounds are reported with skiff/kernel.

use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use skiff_kernel::live::{self, LinkAttach};
use skiff_kernel::KernelObject;
use skiff_net::datapath::{Datapath, DatapathOptions};
use skiff_topology::Topology;

use super::datapath::{read_traffic, row_json, DpRow, SkiffSide, Traffic};
use super::{median, BenchArgs, SkiffEngine};

/// Where the suite's objects and topologies are (relative to the working
/// directory, as the k8s-node defaults are).
const DIR: &str = "examples/bench-datapath";
/// The rows skiff alone runs, side by side: the k8s-node example
/// (XDP/TC/netkit) and the same node with kube-proxy's iptables rules (seed
/// 003's two receive paths), each on its own 9-packet pcap.
struct NodeRow {
    name: &'static str,
    topology: &'static str,
    traffic: &'static str,
    what: &'static str,
    no_kernel: &'static str,
}

const NODE_ROWS: [NodeRow; 2] = [
    NodeRow {
        name: "k8s_node",
        topology: "examples/k8s-node/topology.toml",
        traffic: "eth0=examples/k8s-node/traffic.pcap",
        what: "examples/k8s-node (9-packet pcap)",
        no_kernel: "not supported: the k8s-node topology needs netkit, which this machine's kernel lacks",
    },
    NodeRow {
        name: "k8s_node_kube_proxy",
        topology: "examples/k8s-node-kube-proxy/topology.toml",
        traffic: "eth0=examples/k8s-node-kube-proxy/traffic.pcap",
        what: "examples/k8s-node-kube-proxy (iptables, 9-packet pcap)",
        no_kernel: "not supported: timing the kernel's iptables node (its frames, counters and conntrack are compared in crates/cli/tests/netfilter_kernel.rs)",
    },
];
/// Frames a replay: one NAPI batch.
const FRAMES: usize = 64;
/// Bytes a frame (Ethernet header to the end of the UDP payload, no FCS).
const FRAME_LEN: usize = 64;
/// BPF_PROG_TEST_RUN's batch_size (NAPI_POLL_WEIGHT).
const BATCH: u32 = 64;
/// `eth0` and `veth0`, the same ifindex in both namespaces and in skiff.
const ETH0: u32 = 2;
const VETH0: u32 = 3;
const ETH0_MAC: &str = "02:00:00:00:00:01";

/// Where a row's packets must end, checked on skiff's counters.
#[derive(Clone, Copy)]
enum End {
    /// Every packet dropped where it came in (`eth0`'s XDP).
    Dropped,
    /// Every packet transmitted (out of `eth0`).
    Transmitted,
    /// Every packet run through `hook` of `peer/veth0`.
    PeerHook(&'static str),
}

impl End {
    fn describe(self) -> String {
        match self {
            End::Dropped => "dropped".into(),
            End::Transmitted => "transmitted".into(),
            End::PeerHook(h) => format!("peer/veth0 {h} hook"),
        }
    }

    /// Packets that ended here, over the datapath's whole life (warm-up too).
    fn count(self, dp: &Datapath) -> u64 {
        let c = dp.conservation();
        match self {
            End::Dropped => c.dropped,
            End::Transmitted => c.transmitted,
            End::PeerHook(hook) => dp
                .counters()
                .devices
                .iter()
                .filter(|d| d.netns == "peer" && d.name == "veth0")
                .filter_map(|d| d.hooks.get(hook))
                .flat_map(|v| v.values())
                .map(|pb| pb.packets)
                .sum(),
        }
    }
}

/// A row comparing skiff and the kernel on one topology.
struct RowSpec {
    name: &'static str,
    what: &'static str,
    /// `examples/bench-datapath/<topology>.toml`.
    topology: &'static str,
    /// The kernel side: object stem and the XDP program test-run on `eth0`.
    kernel: (&'static str, &'static str),
    end: End,
    /// The kernel side's end: the slot of bench_dp_peer's `seen` its frames
    /// count in (0 the peers' XDP, 1 the peer's tc), if they reach a peer.
    kernel_seen: Option<usize>,
}

const ROWS: [RowSpec; 4] = [
    RowSpec {
        name: "xdp_drop",
        kernel_seen: None,
        what: "XDP_DROP on a NIC",
        topology: "xdp_drop",
        kernel: ("bench_dp_drop", "bench_dp_drop"),
        end: End::Dropped,
    },
    RowSpec {
        name: "xdp_tx",
        kernel_seen: Some(0),
        what: "XDP_TX on a NIC (MACs swapped)",
        topology: "xdp_tx",
        kernel: ("bench_dp_tx", "bench_dp_tx"),
        end: End::Transmitted,
    },
    RowSpec {
        name: "xdp_redirect",
        kernel_seen: Some(0),
        what: "XDP_REDIRECT devmap -> veth -> peer XDP",
        topology: "xdp_redirect",
        kernel: ("bench_dp_redirect", "bench_dp_redirect"),
        end: End::PeerHook("xdp"),
    },
    RowSpec {
        name: "tc_redirect_peer",
        kernel_seen: Some(1),
        what: "XDP_PASS -> tc ingress bpf_redirect_peer -> peer tc",
        topology: "tc_redirect_peer",
        kernel: ("bench_dp_tc", "bench_dp_pass"),
        end: End::PeerHook("tc-ingress"),
    },
];

/// The options of the scaling row's second side: two workers on two OS
/// threads (`--workers 2 --threads`).
fn two_threads() -> Result<DatapathOptions, String> {
    Ok(DatapathOptions {
        workers: 2,
        possible_cpus: 2,
        threads: true,
        ..DatapathOptions::default()
    })
}

/// Runs `f` with the calling thread free to run on every CPU (the worker
/// threads a threaded datapath starts inherit its affinity, and the datapath
/// counts the CPUs it may use), then pins it to CPU 0 again.
fn unpinned<R>(f: impl FnOnce() -> R) -> R {
    if let Err(e) = skiff_kernel::unpin_current_thread() {
        eprintln!("skiff bench: warning: cannot unpin: {e}");
    }
    let r = f();
    if let Err(e) = skiff_kernel::pin_current_thread(0) {
        eprintln!("skiff bench: warning: cannot pin to CPU 0: {e}");
    }
    r
}

/// The 64 frames of a replay: 64-byte IPv4/UDP frames to `eth0`'s MAC, source
/// ports 10000..10063 (64 flows, so RSS spreads them over the rx queues).
fn traffic() -> Result<Traffic, String> {
    let mac = |s: &str| -> [u8; 6] {
        let mut m = [0u8; 6];
        for (o, h) in m.iter_mut().zip(s.split(':')) {
            *o = u8::from_str_radix(h, 16).unwrap_or(0);
        }
        m
    };
    let payload = [0u8; FRAME_LEN - 14 - 20 - 8];
    let packets = (0..FRAMES as u16)
        .map(|i| {
            let src = [10, 0, 0, 1];
            let dst = [10, 0, 0, 2];
            let udp = skiff_kernel::testpkt::udp(&src, &dst, 10_000 + i, 9, &payload);
            let l3 = skiff_kernel::testpkt::ipv4(src, dst, 17, 0, &[], &udp);
            let f = skiff_kernel::testpkt::eth(
                mac(ETH0_MAC),
                mac("02:00:00:00:00:fe"),
                skiff_kernel::testpkt::ETH_P_IP,
                &l3,
            );
            (u64::from(i) * 1_000, f)
        })
        .collect::<Vec<_>>();
    if packets.iter().any(|(_, f)| f.len() != FRAME_LEN) {
        return Err(format!("the bench's frames are not {FRAME_LEN} bytes"));
    }
    Ok(Traffic {
        dev: "eth0".into(),
        file: format!("(in memory: {FRAMES} frames of {FRAME_LEN} bytes, IPv4 UDP)").into(),
        period_ns: FRAMES as u64 * 1_000 + 1_000_000,
        packets,
    })
}

// ---------------------------------------------------------------------------
// The kernel's side

/// Runs `ip ARGS`, its stderr as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The namespaces, the loaded objects and their links. Dropping it closes the
/// links, takes the thread back to its namespace and deletes the namespaces.
struct KernelEnv {
    ns: String,
    peer_ns: String,
    home: Option<std::os::fd::OwnedFd>,
    objs: Vec<(&'static str, KernelObject)>,
    links: Vec<std::os::fd::OwnedFd>,
    frame: Vec<u8>,
}

impl Drop for KernelEnv {
    fn drop(&mut self) {
        self.links.clear();
        self.objs.clear();
        if let Some(home) = &self.home {
            if let Err(e) = live::return_to_netns(home) {
                eprintln!("skiff bench: {e}");
            }
        }
        for n in [&self.ns, &self.peer_ns]
            .into_iter()
            .filter(|n| !n.is_empty())
        {
            if let Err(e) = ip(&["netns", "del", n]) {
                eprintln!("skiff bench: removing namespace {n}: {e}");
            }
        }
    }
}

impl KernelEnv {
    /// The namespaces and devices: `eth0` (ifindex 2, the frames' ingress) and
    /// `veth0` (3) in `skiff-bench-<pid>`, veth pairs whose peers (`eth0`,
    /// `veth0`, ifindex 2 and 3) are in `skiff-bench-<pid>-peer`; the objects
    /// loaded, the maps filled as the topologies fill them, the programs of the
    /// far ends attached. The thread stays in the first namespace (its test
    /// runs name `eth0` there).
    fn new(frame: &[u8]) -> Result<KernelEnv, String> {
        skiff_kernel::available()?;
        live::catch_interrupts().map_err(|e| e.to_string())?;
        let ns = format!("skiff-bench-{}", std::process::id());
        let peer_ns = format!("{ns}-peer");
        ip(&["netns", "add", &ns])?;
        let mut env = KernelEnv {
            ns: ns.clone(),
            peer_ns: String::new(),
            home: None,
            objs: Vec::new(),
            links: Vec::new(),
            frame: frame.to_vec(),
        };
        ip(&["netns", "add", &peer_ns])?;
        env.peer_ns = peer_ns.clone();
        // no IPv6 on the bench's devices: their own router and multicast
        // listener reports would reach the peers' programs and be counted
        for n in [&ns, &peer_ns] {
            for conf in ["all", "default"] {
                let kv = format!("net.ipv6.conf.{conf}.disable_ipv6=1");
                ip(&["netns", "exec", n, "sysctl", "-qw", &kv])?;
            }
        }
        for (dev, idx, mac) in [("eth0", ETH0, Some(ETH0_MAC)), ("veth0", VETH0, None)] {
            let idx = idx.to_string();
            let mut args = vec!["-n", &ns, "link", "add", dev, "index", &idx];
            if let Some(m) = mac {
                args.extend(["address", m]);
            }
            args.extend(["type", "veth", "peer", "name", dev, "index", &idx]);
            args.extend(["netns", &peer_ns]);
            ip(&args)?;
            ip(&["-n", &ns, "link", "set", dev, "up"])?;
            ip(&["-n", &peer_ns, "link", "set", dev, "up"])?;
        }
        env.home = Some(live::current_netns().map_err(|e| e.to_string())?);
        // into the bench's namespace before anything names a device: a DEVMAP
        // update resolves its ifindex in the caller's namespace
        // (dev_map_update_elem), as do links and test runs
        live::enter_netns(&format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
        env.load()?;
        env.attach(
            &peer_ns,
            &[
                ("bench_dp_peer", "bench_dp_peer_xdp", ETH0, LinkAttach::Xdp),
                ("bench_dp_peer", "bench_dp_peer_xdp", VETH0, LinkAttach::Xdp),
                (
                    "bench_dp_peer",
                    "bench_dp_peer_tc",
                    VETH0,
                    LinkAttach::TcxIngress,
                ),
            ],
        )?;
        env.attach(
            &ns,
            &[(
                "bench_dp_tc",
                "bench_dp_redirect_peer",
                ETH0,
                LinkAttach::TcxIngress,
            )],
        )?;
        Ok(env)
    }

    /// Loads every object of the suite and fills the maps the topologies fill
    /// (`tx_port[0]`, `target[0]`: veth0).
    fn load(&mut self) -> Result<(), String> {
        for stem in [
            "bench_dp_drop",
            "bench_dp_tx",
            "bench_dp_redirect",
            "bench_dp_tc",
            "bench_dp_peer",
        ] {
            let path = format!("{DIR}/{stem}.o");
            let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
            let obj = skiff_object::Object::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
            let k = KernelObject::load(&obj).map_err(|e| format!("{path}: {e}"))?;
            self.objs.push((stem, k));
        }
        let key = 0u32.to_ne_bytes();
        let veth0 = VETH0.to_ne_bytes();
        for (stem, map) in [("bench_dp_redirect", "tx_port"), ("bench_dp_tc", "target")] {
            self.obj(stem)?
                .map_update(map, &key, &veth0, 0)
                .map_err(|e| format!("{stem}: {e}"))?;
        }
        Ok(())
    }

    fn obj(&self, stem: &str) -> Result<&KernelObject, String> {
        self.objs
            .iter()
            .find(|(s, _)| *s == stem)
            .map(|(_, k)| k)
            .ok_or_else(|| format!("object {stem} not loaded"))
    }

    /// Attaches (object, program, ifindex, hook) in namespace `ns`, then
    /// enters `self.ns` (where the test runs happen).
    fn attach(&mut self, ns: &str, what: &[(&str, &str, u32, LinkAttach)]) -> Result<(), String> {
        live::enter_netns(&format!("/run/netns/{ns}")).map_err(|e| e.to_string())?;
        for (stem, prog, ifindex, hook) in what {
            let link = self
                .obj(stem)?
                .link_create(prog, *ifindex, *hook)
                .map_err(|e| format!("{stem}: {e}"))?;
            self.links.push(link);
        }
        live::enter_netns(&format!("/run/netns/{}", self.ns)).map_err(|e| e.to_string())
    }

    /// bench_dp_peer's `seen` counters (per-CPU values summed): frames the
    /// peers' XDP (slot 0) and tc (slot 1) programs ran on.
    fn seen(&self) -> Result<[u64; 2], String> {
        let mut out = [0u64; 2];
        let dump = self
            .obj("bench_dp_peer")?
            .map_dump("seen")
            .map_err(|e| format!("bench_dp_peer: {e}"))?;
        for (k, v) in dump {
            let slot = k.first().map(|b| usize::from(*b)).unwrap_or(usize::MAX);
            let sum = v
                .chunks_exact(8)
                .map(|c| c.try_into().map(u64::from_ne_bytes).unwrap_or(0))
                .sum::<u64>();
            if let Some(o) = out.get_mut(slot) {
                *o = sum;
            }
        }
        Ok(out)
    }

    /// One live test run of `frames` frames: (the kernel's ns per frame, wall
    /// ns per frame, frames that reached the row's peer program).
    fn round(&self, row: &RowSpec, frames: u32) -> Result<(f64, f64, u64), String> {
        if live::interrupted() {
            return Err("interrupted".into());
        }
        let (stem, prog) = row.kernel;
        let seen0 = self.seen()?;
        let t0 = Instant::now();
        let r = self
            .obj(stem)?
            .test_run_xdp_live(prog, &self.frame, ETH0, frames, BATCH)
            .map_err(|e| format!("{stem}: {e}"))?;
        let wall = t0.elapsed().as_nanos() as f64 / f64::from(frames.max(1));
        let seen1 = self.seen()?;
        let reached = row
            .kernel_seen
            .map(|i| seen1[i].saturating_sub(seen0[i]))
            .unwrap_or(0);
        Ok((f64::from(r.duration_ns), wall, reached))
    }
}

// ---------------------------------------------------------------------------
// The rows

/// One row's results.
struct SuiteRow {
    name: &'static str,
    what: String,
    skiff: DpRow,
    /// Where its packets must end, and how many did (whole run).
    end: Option<(String, u64, u64)>,
    kernel_rounds: Vec<f64>,
    kernel_walls: Vec<f64>,
    /// Frames the kernel ran and how many reached the row's peer program
    /// (None: the row ends at `eth0`).
    kernel_end: Option<(u64, u64)>,
    kernel_error: Option<String>,
}

impl SuiteRow {
    fn kernel_ns(&self) -> Option<f64> {
        median(&self.kernel_rounds)
    }

    fn ratio(&self) -> Option<f64> {
        match (self.skiff.ns_per_packet, self.kernel_ns()) {
            (Some(s), Some(k)) if k > 0.0 => Some(s / k),
            _ => None,
        }
    }

    fn json(&self) -> Value {
        let mut v = row_json(&self.skiff);
        if let Value::Object(m) = &mut v {
            m.insert("row".into(), json!(self.name));
            m.insert("what".into(), json!(self.what));
            m.insert(
                "end".into(),
                match &self.end {
                    Some((w, n, of)) => json!({"where": w, "packets": n, "of": of}),
                    None => Value::Null,
                },
            );
            m.insert("kernel_ns_per_packet".into(), json!(self.kernel_ns()));
            m.insert(
                "kernel_wall_ns_per_packet".into(),
                json!(median(&self.kernel_walls)),
            );
            m.insert(
                "kernel_rounds_ns_per_packet".into(),
                json!(self.kernel_rounds),
            );
            m.insert(
                "kernel_end".into(),
                match self.kernel_end {
                    Some((n, of)) => json!({"packets": n, "of": of}),
                    None => Value::Null,
                },
            );
            m.insert("kernel_error".into(), json!(self.kernel_error));
            m.insert("ratio".into(), json!(self.ratio()));
        }
        v
    }
}

/// A skiff side being measured, or the row it failed with.
enum Side {
    Running(Box<SkiffSide>),
    Failed(DpRow),
}

impl Side {
    fn new(
        topo: Result<Topology, String>,
        t: &Traffic,
        opts: Result<DatapathOptions, String>,
        warmup: u64,
    ) -> Side {
        let built = topo.and_then(|topo| opts.map(|o| (topo, o)));
        match built {
            Err(e) => Side::Failed(DpRow::failed(SkiffEngine::Jit, e)),
            Ok((topo, o)) => match SkiffSide::new(&topo, t, SkiffEngine::Jit, o, warmup) {
                Ok(s) => Side::Running(Box::new(s)),
                Err(e) => Side::Failed(DpRow::failed(SkiffEngine::Jit, e)),
            },
        }
    }

    fn round(&mut self, t: &Traffic, replays: u64) {
        if let Side::Running(s) = self {
            if let Err(e) = s.round(t, replays) {
                *self = Side::Failed(DpRow::failed(SkiffEngine::Jit, e));
            }
        }
    }

    /// The row, with the `end` check: a packet that ended elsewhere is an error.
    fn finish(self, end: Option<End>) -> (DpRow, Option<(String, u64, u64)>) {
        let s = match self {
            Side::Failed(row) => return (row, None),
            Side::Running(s) => s,
        };
        let got = end.map(|e| {
            let input = s.dp().conservation().input;
            (e.describe(), e.count(s.dp()), input)
        });
        let mut row = s.finish();
        if let Some((w, n, of)) = &got {
            if n != of && row.error.is_none() {
                row.error = Some(format!(
                    "{n} of {of} packets ended at: {w} (want every one)"
                ));
            }
        }
        (row, got)
    }
}

fn load_topology(path: &str) -> Result<Topology, String> {
    Topology::load(std::path::Path::new(path)).map_err(|e| e.to_string())
}

/// `lscpu`'s "Model name", or why not.
fn cpu_model() -> String {
    Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown (lscpu gave no Model name)".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown (/proc/loadavg: {e})"))
}

/// A row's kernel rounds.
#[derive(Default)]
struct KernelRounds {
    ns: Vec<f64>,
    wall: Vec<f64>,
    frames: u64,
    reached: u64,
    error: Option<String>,
}

/// What the suite measured.
struct Suite {
    rows: Vec<SuiteRow>,
    /// The scaling row: one worker's and two threads' wall ns/packet.
    scaling: (DpRow, Option<f64>),
    kernel_skipped: Option<String>,
}

/// Runs every row, rounds interleaved.
fn measure(a: &BenchArgs) -> Result<Suite, String> {
    let d = &a.datapath;
    let replays = u64::from(d.replays.max(1));
    let warmup = replays.clamp(1, 1000);
    let t = traffic()?;
    let node_t = NODE_ROWS
        .iter()
        .map(|r| read_traffic(r.traffic))
        .collect::<Result<Vec<_>, _>>()?;
    let frames = u32::try_from(replays.saturating_mul(FRAMES as u64))
        .map_err(|_| format!("--replays {replays}: more than 2^32 frames a kernel round"))?;
    let (mut kernel, kernel_skipped) = match KernelEnv::new(&t.packets[0].1) {
        Ok(k) => (Some(k), None),
        Err(e) => (None, Some(e)),
    };
    let mut sides: Vec<Side> = ROWS
        .iter()
        .map(|r| {
            let topo = load_topology(&format!("{DIR}/{}.toml", r.topology));
            Side::new(topo, &t, Ok(DatapathOptions::default()), warmup)
        })
        .collect();
    let mut nodes: Vec<Side> = NODE_ROWS
        .iter()
        .zip(&node_t)
        .map(|(r, t)| {
            Side::new(
                load_topology(r.topology),
                t,
                Ok(DatapathOptions::default()),
                warmup,
            )
        })
        .collect();
    let mut threads = unpinned(|| {
        Side::new(
            load_topology(&format!("{DIR}/xdp_drop.toml")),
            &t,
            two_threads(),
            warmup,
        )
    });
    let mut kernel_rounds: Vec<KernelRounds> =
        ROWS.iter().map(|_| KernelRounds::default()).collect();
    for _ in 0..a.runs.max(1) {
        for ((row, side), kr) in ROWS
            .iter()
            .zip(sides.iter_mut())
            .zip(kernel_rounds.iter_mut())
        {
            side.round(&t, replays);
            if let (Some(k), None) = (&kernel, &kr.error) {
                match k.round(row, frames) {
                    Ok((ns, wall, reached)) => {
                        kr.ns.push(ns);
                        kr.wall.push(wall);
                        kr.frames += u64::from(frames);
                        kr.reached += reached;
                    }
                    Err(e) => kr.error = Some(e),
                }
            }
        }
        for (side, t) in nodes.iter_mut().zip(&node_t) {
            side.round(t, replays);
        }
        unpinned(|| threads.round(&t, replays));
        if live::interrupted() {
            return Err("interrupted (SIGINT/SIGTERM): namespaces removed".into());
        }
    }
    kernel.take();
    let mut rows: Vec<SuiteRow> = Vec::new();
    for ((spec, side), kr) in ROWS.iter().zip(sides).zip(kernel_rounds) {
        let (skiff, end) = side.finish(Some(spec.end));
        let kernel_end = spec
            .kernel_seen
            .filter(|_| kr.frames > 0)
            .map(|_| (kr.reached, kr.frames));
        let mut error = kr.error.or_else(|| kernel_skipped.clone());
        if let Some((n, of)) = kernel_end.filter(|(n, of)| n != of) {
            error.get_or_insert(format!(
                "{n} of {of} frames reached the peer's program (want every one)"
            ));
        }
        rows.push(SuiteRow {
            name: spec.name,
            what: spec.what.into(),
            skiff,
            end,
            kernel_rounds: kr.ns,
            kernel_walls: kr.wall,
            kernel_end,
            kernel_error: error,
        });
    }
    for (spec, side) in NODE_ROWS.iter().zip(nodes) {
        let (skiff, _) = side.finish(None);
        rows.push(SuiteRow {
            name: spec.name,
            what: spec.what.into(),
            skiff,
            end: None,
            kernel_rounds: Vec::new(),
            kernel_walls: Vec::new(),
            kernel_end: None,
            kernel_error: Some(spec.no_kernel.into()),
        });
    }
    let one = rows.first().and_then(|r| r.skiff.wall_ns_per_packet);
    let (two, _) = threads.finish(None);
    let speedup = match (one, two.wall_ns_per_packet) {
        (Some(o), Some(t)) if t > 0.0 => Some(o / t),
        _ => None,
    };
    Ok(Suite {
        rows,
        scaling: (two, speedup),
        kernel_skipped,
    })
}

// ---------------------------------------------------------------------------
// Output

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

const COLS: [&str; 7] = [
    "row",
    "workload",
    "skiff ns/pkt",
    "kernel ns/pkt",
    "skiff/kernel",
    "skiff wall ns/pkt",
    "kernel wall ns/pkt",
];

fn cells(r: &SuiteRow) -> Vec<String> {
    vec![
        r.name.to_string(),
        r.what.clone(),
        fmt(r.skiff.ns_per_packet, 1),
        fmt(r.kernel_ns(), 1),
        r.ratio()
            .map(|x| format!("{x:.2}x"))
            .unwrap_or_else(|| "-".into()),
        fmt(r.skiff.wall_ns_per_packet, 1),
        fmt(median(&r.kernel_walls), 1),
    ]
}

fn scaling_cells(s: &(DpRow, Option<f64>)) -> Vec<String> {
    vec![
        "xdp_drop_threads".into(),
        "xdp_drop, 1 -> 2 workers on threads (wall; skiff only)".into(),
        fmt(s.0.wall_ns_per_packet, 1),
        "-".into(),
        s.1.map(|x| format!("speedup {x:.2}x"))
            .unwrap_or_else(|| "-".into()),
        fmt(s.0.wall_ns_per_packet, 1),
        "-".into(),
    ]
}

fn notes(s: &Suite) -> Vec<String> {
    let mut v = vec![
        "skiff ns/pkt: on-CPU time per injected packet (run-queue waits left out), one worker, deterministic; wall: the same with them".to_string(),
        "kernel ns/pkt: BPF_PROG_TEST_RUN's duration with BPF_F_TEST_XDP_LIVE_FRAMES (batch 64): ns per frame timed by the kernel over the batches (program, redirect/xmit flush, stack receive); wall: the syscall's wall time / frames".to_string(),
    ];
    if let Some(why) = &s.kernel_skipped {
        v.push(format!("kernel column skipped: {why}"));
    }
    for r in &s.rows {
        if let Some((w, n, of)) = &r.end {
            v.push(format!("{}: {n} of {of} packets ended at: {w}", r.name));
        }
        if let Some(e) = &r.skiff.error {
            v.push(format!("{} (skiff): {e}", r.name));
        }
        if let Some((n, of)) = r.kernel_end {
            v.push(format!(
                "{} (kernel): {n} of {of} frames reached the peer's program",
                r.name
            ));
        }
        if let Some(e) = r
            .kernel_error
            .as_ref()
            .filter(|_| s.kernel_skipped.is_none() || NODE_ROWS.iter().any(|n| n.name == r.name))
        {
            v.push(format!("{} (kernel): {e}", r.name));
        }
    }
    if let Some(e) = &s.scaling.0.error {
        v.push(format!("xdp_drop_threads: {e}"));
    }
    v
}

fn print_json(s: &Suite, replays: u32, runs: u32, cpu: &str, load: &str) {
    let mut rows: Vec<Value> = s.rows.iter().map(SuiteRow::json).collect();
    let mut th = row_json(&s.scaling.0);
    if let Value::Object(m) = &mut th {
        m.insert("row".into(), json!("xdp_drop_threads"));
        m.insert("speedup".into(), json!(s.scaling.1));
    }
    rows.push(th);
    println!(
        "{}",
        json!({
            "suite": true,
            "frame_len": FRAME_LEN,
            "packets_per_replay": FRAMES,
            "replays": replays,
            "runs": runs,
            "batch_size": BATCH,
            "cpu_model": cpu,
            "loadavg": load,
            "kernel_skipped": s.kernel_skipped,
            "rows": rows,
        })
    );
}

/// The table (text or Markdown, the corpus bench's style) and its notes.
fn print_table(s: &Suite, head: &str, markdown: bool) {
    let mut lines: Vec<Vec<String>> = s.rows.iter().map(cells).collect();
    lines.push(scaling_cells(&s.scaling));
    if markdown {
        println!("{head}\n");
        println!("| {} |", COLS.join(" | "));
        println!("|{}", "---|".repeat(COLS.len()));
        for l in &lines {
            println!("| {} |", l.join(" | "));
        }
    } else {
        println!("{head}");
        let w = [17, 52, 13, 14, 13, 18, 18];
        let line = |v: &[String]| {
            v.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = w.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end()
                .to_string()
        };
        println!("{}", line(&COLS.map(String::from)));
        for l in &lines {
            println!("{}", line(l));
        }
    }
    println!();
    for n in notes(s) {
        println!("- {n}");
    }
}

/// Exit 1 when a row failed for a reason other than "not supported: " (a
/// kernel row counts only when the kernel column ran).
fn exit_code(s: &Suite) -> i32 {
    let failed = |e: &Option<String>| {
        e.as_deref()
            .is_some_and(|e| !e.starts_with("not supported: "))
    };
    let kernel_failed =
        s.kernel_skipped.is_none() && s.rows.iter().any(|r| failed(&r.kernel_error));
    let skiff_failed = s.rows.iter().any(|r| failed(&r.skiff.error)) || failed(&s.scaling.0.error);
    i32::from(kernel_failed || skiff_failed)
}

/// Runs the suite and prints it as `a` asks; returns the exit code.
pub fn main(a: &BenchArgs) -> i32 {
    if let Err(e) = skiff_kernel::pin_current_thread(0) {
        eprintln!("skiff bench: warning: cannot pin to CPU 0: {e}");
    }
    let s = match measure(a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skiff bench --datapath --suite: {e}");
            return 1;
        }
    };
    let (cpu, load) = (cpu_model(), loadavg());
    let replays = a.datapath.replays.max(1);
    let runs = a.runs.max(1);
    if a.json {
        print_json(&s, replays, runs, &cpu, &load);
    } else {
        let head = format!(
            "datapath against the kernel: {FRAMES} frames of {FRAME_LEN} bytes a replay (k8s_node: its 9-packet pcap), {replays} replays a round, {runs} rounds interleaved, median; CPU {cpu}; load {load}"
        );
        print_table(&s, &head, a.markdown);
    }
    exit_code(&s)
}
