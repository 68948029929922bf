//! `skiff bench --datapath`: packets per second through a whole topology (by
//! default the k8s-node example), the way `skiff run` carries them: the topology
//! built by `skiff_topology` with `skiff run`'s options (deterministic mode,
//! one worker), a pcap read once into memory and replayed many times into its
//! device, each replay with fresh timestamps (the virtual clock keeps moving),
//! `Datapath::run_batch` packets (a NAPI poll's worth; more with threads) injected per `run`, what NICs transmit handed back
//! to the frame pool. No pcap is written and nothing is traced.
//!
//! A round times `replays` replays; the figure is the median over the rounds of
//! nanoseconds per injected packet, on-CPU (the thread's run-queue waits, from
//! /proc/thread-self/schedstat, left out as in the corpus bench), and the wall
//! time beside it. Every packet's end is counted (the datapath's conservation
//! totals), so the figure says what kind of traffic it is: what was transmitted
//! out of a NIC, delivered to a stack, dropped (and why), and what the host
//! stack originated (ARP and echo replies) on the way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use skiff_net::datapath::{Conservation, Datapath, DatapathOptions, DevId};
use skiff_topology::Topology;

use super::{median, on_cpu_ns, run_delay_ns, BenchArgs, SkiffEngine};

/// The options of `skiff bench --datapath` (flattened into [`BenchArgs`]).
#[derive(clap::Args, Clone, Debug)]
pub struct DatapathArgs {
    /// Instead of the corpus: packets per second through a topology's whole
    /// datapath (default: the k8s-node example), single worker, deterministic
    /// mode, from a memory-resident pcap replayed --replays times per round
    /// (--runs rounds, median reported).
    #[arg(long, conflicts_with_all = ["repeat", "filter", "bpf_dir"])]
    pub datapath: bool,
    /// With --datapath: the topology file.
    #[arg(
        long,
        default_value = "examples/k8s-node/topology.toml",
        requires = "datapath"
    )]
    pub topology: PathBuf,
    /// With --datapath: the traffic, DEV=FILE (a pcap or pcapng, every packet
    /// into DEV; NAME or NETNS/NAME).
    #[arg(
        long = "pcap-in",
        value_name = "DEV=FILE",
        default_value = "eth0=examples/k8s-node/traffic.pcap",
        requires = "datapath"
    )]
    pub pcap_in: String,
    /// With --datapath: replays of the pcap per round.
    #[arg(long, default_value_t = 20_000, requires = "datapath")]
    pub replays: u32,
    /// With --datapath: the rows of examples/bench-datapath (XDP_DROP, XDP_TX,
    /// XDP_REDIRECT, tc bpf_redirect_peer; k8s-node and k8s-node-kube-proxy side by
    /// side; 1 -> 2 threads) in skiff
    /// and, as root, in the kernel (BPF_PROG_TEST_RUN, live frames), rounds
    /// interleaved, with skiff/kernel.
    #[arg(long, requires = "datapath", conflicts_with_all = ["topology", "pcap_in"])]
    pub suite: bool,
}

impl Default for DatapathArgs {
    fn default() -> Self {
        DatapathArgs {
            datapath: false,
            topology: PathBuf::from("examples/k8s-node/topology.toml"),
            pcap_in: "eth0=examples/k8s-node/traffic.pcap".into(),
            replays: 20_000,
            suite: false,
        }
    }
}

/// The traffic, read once: (offset from the first packet's timestamp, frame).
pub struct Traffic {
    pub dev: String,
    pub file: PathBuf,
    pub packets: Vec<(u64, Vec<u8>)>,
    /// Timestamp step between replays: the pcap's span plus 1 ms.
    pub period_ns: u64,
}

pub fn read_traffic(spec: &str) -> Result<Traffic, String> {
    let (dev, file) = spec
        .split_once('=')
        .filter(|(d, f)| !d.is_empty() && !f.is_empty())
        .ok_or_else(|| format!("--pcap-in {spec:?}: want DEV=FILE"))?;
    let file = PathBuf::from(file);
    let cap = skiff_io::read(&file).map_err(|e| e.to_string())?;
    if let Some(i) = cap
        .interfaces
        .iter()
        .find(|i| i.linktype != skiff_io::LINKTYPE_ETHERNET)
    {
        return Err(format!(
            "{}: link type {} is not supported (skiff's devices are Ethernet, link type 1)",
            file.display(),
            i.linktype
        ));
    }
    let first = cap.packets.iter().map(|p| p.ts_ns).min().unwrap_or(0);
    let mut packets: Vec<(u64, Vec<u8>)> = cap
        .packets
        .into_iter()
        .map(|p| (p.ts_ns.saturating_sub(first), p.data))
        .collect();
    packets.sort_by_key(|(ts, _)| *ts);
    if packets.is_empty() {
        return Err(format!("{}: no packets", file.display()));
    }
    let span = packets.last().map(|(ts, _)| *ts).unwrap_or(0);
    Ok(Traffic {
        dev: dev.to_string(),
        file,
        packets,
        period_ns: span.saturating_add(1_000_000),
    })
}

/// One engine's result.
pub struct DpRow {
    pub engine: SkiffEngine,
    /// Median on-CPU ns per injected packet, and the rounds' values.
    pub ns_per_packet: Option<f64>,
    pub rounds_ns: Vec<f64>,
    /// Median wall-clock ns per injected packet.
    pub wall_ns_per_packet: Option<f64>,
    /// Totals over the timed rounds.
    pub totals: Conservation,
    /// Drops per reason over the timed rounds.
    pub drops: BTreeMap<String, u64>,
    /// Program hook runs (XDP, TC, netkit) over the timed rounds.
    pub hook_runs: u64,
    pub error: Option<String>,
}

impl DpRow {
    pub fn failed(engine: SkiffEngine, msg: String) -> DpRow {
        DpRow {
            engine,
            ns_per_packet: None,
            rounds_ns: Vec::new(),
            wall_ns_per_packet: None,
            totals: Conservation::default(),
            drops: BTreeMap::new(),
            hook_runs: 0,
            error: Some(msg),
        }
    }

    pub fn pps(&self) -> Option<f64> {
        self.ns_per_packet.filter(|ns| *ns > 0.0).map(|ns| 1e9 / ns)
    }
}

/// The topology built as `skiff run` builds it, for `engine`, with `opts`.
fn build(topo: &Topology, engine: SkiffEngine, opts: DatapathOptions) -> Result<Datapath, String> {
    if engine == SkiffEngine::Interp {
        // Topology::build loads every program with Program::load (compiled for
        // the JIT) and the datapath's Vm keeps the default engine: there is no
        // way to ask for the interpreter from here.
        return Err("not supported: choosing the interpreter for a topology (skiff_topology::Topology::build loads programs for the JIT; the datapath's Vm engine is not settable)".into());
    }
    // delivered frames are not looked at: freed at once (as `skiff run` does
    // without --pcap-delivered)
    let opts = DatapathOptions {
        keep_delivered: false,
        ..opts
    };
    let built = topo.build(opts).map_err(|e| e.to_string())?;
    Ok(built.dp)
}

/// Hands back what the datapath produced (the frame pool gets the buffers).
fn drain(dp: &mut Datapath) {
    dp.drain_transmitted(|_| {});
}

// a base far from 0 so that timestamps look like pcap ones
const BASE_NS: u64 = 1_700_000_000_000_000_000;

/// With threads: the replays handed to the workers 65,536 frames at a time
/// (`Datapath::receive_parallel`: each worker receives its own rx queues'
/// frames, as a NIC fills them), so that starting the threads is paid per
/// tens of thousands of frames.
fn replay_parallel(
    dp: &mut Datapath,
    dev: DevId,
    t: &Traffic,
    replays: u64,
    next: &mut u64,
) -> Result<(), String> {
    const CHUNK: usize = 65536;
    let mut frames: Vec<(&[u8], u64)> = Vec::with_capacity(CHUNK);
    for r in 0..replays {
        let base = BASE_NS.saturating_add(next.saturating_mul(t.period_ns));
        *next += 1;
        for (off, frame) in &t.packets {
            frames.push((frame, base.saturating_add(*off)));
        }
        if frames.len() >= CHUNK || r + 1 == replays {
            dp.receive_parallel(dev, &frames)
                .map_err(|e| format!("inject into {}: {e}", t.dev))?;
            drain(dp);
            frames.clear();
        }
    }
    dp.finish();
    drain(dp);
    Ok(())
}

/// Replays the traffic `replays` times starting at replay number `*next`.
fn replay(
    dp: &mut Datapath,
    dev: DevId,
    t: &Traffic,
    replays: u64,
    next: &mut u64,
) -> Result<(), String> {
    if dp.options().threads {
        return replay_parallel(dp, dev, t, replays, next);
    }
    let mut batch = 0usize;
    let per_run = dp.run_batch();
    for _ in 0..replays {
        let base = BASE_NS.saturating_add(next.saturating_mul(t.period_ns));
        *next += 1;
        for (off, frame) in &t.packets {
            dp.inject(dev, frame, base.saturating_add(*off))
                .map_err(|e| format!("inject into {}: {e}", t.dev))?;
            batch += 1;
            if batch == per_run {
                dp.run();
                drain(dp);
                batch = 0;
            }
        }
    }
    dp.finish();
    drain(dp);
    Ok(())
}

/// One engine on one topology, measured round by round (so that a caller can
/// interleave its rounds with another side's): built and warmed up by `new`,
/// timed by `round`, summed up by `finish`.
pub struct SkiffSide {
    engine: SkiffEngine,
    dp: Datapath,
    dev: DevId,
    /// The next replay number (its timestamps).
    next: u64,
    /// Counters when the timed rounds began.
    c0: Conservation,
    drops0: BTreeMap<String, u64>,
    h0: u64,
    rounds: Vec<f64>,
    walls: Vec<f64>,
}

impl SkiffSide {
    /// Builds `topo` with `opts`, finds the traffic's device and replays the
    /// traffic `warmup` times (caches, frame pool, neighbour entries), not
    /// timed.
    pub fn new(
        topo: &Topology,
        t: &Traffic,
        engine: SkiffEngine,
        opts: DatapathOptions,
        warmup: u64,
    ) -> Result<SkiffSide, String> {
        let mut dp = build(topo, engine, opts)?;
        let (ns, name) = match t.dev.split_once('/') {
            Some((ns, d)) => (ns, d),
            None => ("host", t.dev.as_str()),
        };
        let Some(dev) = dp.netns(ns).and_then(|n| dp.device(n, name)) else {
            return Err(format!(
                "--pcap-in: no device {name:?} in netns {ns:?} of {}",
                topo.file.display()
            ));
        };
        let mut next = 0u64;
        replay(&mut dp, dev, t, warmup, &mut next)?;
        Ok(SkiffSide {
            engine,
            c0: dp.conservation(),
            drops0: dp.counters().drops,
            h0: hook_runs(&dp),
            dp,
            dev,
            next,
            rounds: Vec::new(),
            walls: Vec::new(),
        })
    }

    /// One timed round of `replays` replays: on-CPU and wall ns per injected
    /// packet recorded.
    pub fn round(&mut self, t: &Traffic, replays: u64) -> Result<(), String> {
        let before = self.dp.conservation().input;
        let d0 = run_delay_ns();
        let t0 = Instant::now();
        replay(&mut self.dp, self.dev, t, replays, &mut self.next)?;
        let wall = t0.elapsed().as_nanos() as f64;
        let cpu = on_cpu_ns(wall, d0, run_delay_ns());
        let n = self.dp.conservation().input.saturating_sub(before).max(1) as f64;
        self.rounds.push(cpu / n);
        self.walls.push(wall / n);
        Ok(())
    }

    /// The datapath, for checks on its counters.
    pub fn dp(&self) -> &Datapath {
        &self.dp
    }

    /// The row: medians of the rounds, totals and drops over the timed
    /// rounds, and a conservation violation as its error.
    pub fn finish(self) -> DpRow {
        let c1 = self.dp.conservation();
        let mut drops = self.dp.counters().drops;
        for (r, n) in drops.iter_mut() {
            *n = n.saturating_sub(self.drops0.get(r).copied().unwrap_or(0));
        }
        drops.retain(|_, n| *n > 0);
        let error = (!c1.balanced() || c1.in_flight != 0)
            .then(|| format!("packet conservation violated (a datapath bug): {c1:?}"));
        DpRow {
            engine: self.engine,
            ns_per_packet: median(&self.rounds),
            wall_ns_per_packet: median(&self.walls),
            rounds_ns: self.rounds,
            totals: sub(c1, self.c0),
            drops,
            hook_runs: hook_runs(&self.dp).saturating_sub(self.h0),
            error,
        }
    }
}

fn sub(a: Conservation, b: Conservation) -> Conservation {
    Conservation {
        input: a.input.saturating_sub(b.input),
        originated: a.originated.saturating_sub(b.originated),
        transmitted: a.transmitted.saturating_sub(b.transmitted),
        delivered: a.delivered.saturating_sub(b.delivered),
        dropped: a.dropped.saturating_sub(b.dropped),
        in_flight: a.in_flight,
    }
}

/// Program hook runs so far (XDP, TC, netkit hooks; every verdict).
fn hook_runs(dp: &Datapath) -> u64 {
    const PROG_HOOKS: [&str; 7] = [
        "xdp",
        "xdp-generic",
        "xdp-devmap",
        "xdp-cpumap",
        "tc-ingress",
        "tc-egress",
        "netkit",
    ];
    dp.counters()
        .devices
        .iter()
        .flat_map(|d| d.hooks.iter())
        .filter(|(h, _)| PROG_HOOKS.contains(h))
        .flat_map(|(_, v)| v.values())
        .map(|pb| pb.packets)
        .sum()
}

pub fn bench_engine(
    topo: &Topology,
    t: &Traffic,
    engine: SkiffEngine,
    replays: u32,
    runs: u32,
) -> DpRow {
    let warmup = u64::from(replays.clamp(1, 1000));
    let mut side = match SkiffSide::new(topo, t, engine, DatapathOptions::default(), warmup) {
        Ok(s) => s,
        Err(e) => return DpRow::failed(engine, e),
    };
    for _ in 0..runs.max(1) {
        if let Err(e) = side.round(t, u64::from(replays.max(1))) {
            return DpRow::failed(engine, e);
        }
    }
    side.finish()
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

/// Per injected packet, two decimals.
fn per(n: u64, input: u64) -> String {
    if input == 0 {
        return "-".into();
    }
    format!("{:.2}", n as f64 / input as f64)
}

pub fn row_json(r: &DpRow) -> Value {
    json!({
        "engine": r.engine.name(),
        "pps": r.pps(),
        "ns_per_packet": r.ns_per_packet,
        "wall_ns_per_packet": r.wall_ns_per_packet,
        "rounds_ns_per_packet": r.rounds_ns,
        "conservation": r.totals,
        "drops": r.drops,
        "hook_runs": r.hook_runs,
        "error": r.error,
    })
}

/// Runs the datapath bench and prints it as `a` asks; returns the rows.
pub fn run(a: &BenchArgs) -> Result<Vec<DpRow>, String> {
    let d = &a.datapath;
    let topo = Topology::load(&d.topology).map_err(|e| e.to_string())?;
    let t = read_traffic(&d.pcap_in)?;
    if let Err(e) = skiff_kernel::pin_current_thread(0) {
        eprintln!("skiff bench: warning: cannot pin to CPU 0: {e}");
    }
    let rows: Vec<DpRow> = [SkiffEngine::Jit, SkiffEngine::Interp]
        .into_iter()
        .map(|e| bench_engine(&topo, &t, e, d.replays, a.runs))
        .collect();
    let head = format!(
        "{} <- {} ({} packets a replay; {} replays a round, {} rounds, median); single worker, deterministic",
        t.dev,
        t.file.display(),
        t.packets.len(),
        d.replays.max(1),
        a.runs.max(1)
    );
    if a.json {
        println!(
            "{}",
            json!({
                "topology": d.topology.display().to_string(),
                "pcap_in": d.pcap_in,
                "packets_per_replay": t.packets.len(),
                "replays": d.replays.max(1),
                "runs": a.runs.max(1),
                "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
            })
        );
        return Ok(rows);
    }
    let cols = [
        "engine",
        "packets/s",
        "ns/packet",
        "wall ns/packet",
        "in",
        "transmitted",
        "delivered",
        "dropped",
        "originated",
        "hook runs",
    ];
    let cells = |r: &DpRow| -> Vec<String> {
        let c = &r.totals;
        match &r.error {
            Some(_) if r.ns_per_packet.is_none() => {
                let mut v = vec![r.engine.name().to_string()];
                v.extend(std::iter::repeat_n("-".to_string(), cols.len() - 1));
                v
            }
            _ => vec![
                r.engine.name().to_string(),
                fmt_opt(r.pps(), 0),
                fmt_opt(r.ns_per_packet, 1),
                fmt_opt(r.wall_ns_per_packet, 1),
                c.input.to_string(),
                format!("{} ({})", c.transmitted, per(c.transmitted, c.input)),
                format!("{} ({})", c.delivered, per(c.delivered, c.input)),
                format!("{} ({})", c.dropped, per(c.dropped, c.input)),
                format!("{} ({})", c.originated, per(c.originated, c.input)),
                format!("{} ({})", r.hook_runs, per(r.hook_runs, c.input)),
            ],
        }
    };
    if a.markdown {
        println!("{}: {head}\n", d.topology.display());
        println!("| {} |", cols.join(" | "));
        println!("|{}", "---|".repeat(cols.len()));
        for r in &rows {
            println!("| {} |", cells(r).join(" | "));
        }
    } else {
        println!("datapath bench: {}: {head}", d.topology.display());
        let w = [13, 11, 10, 15, 9, 18, 18, 18, 18, 18];
        let line = |v: &[String]| {
            v.iter()
                .enumerate()
                .map(|(i, s)| format!("{s:<w$}", w = w.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" ")
                .trim_end()
                .to_string()
        };
        println!(
            "{}",
            line(&cols.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        );
        for r in &rows {
            println!("{}", line(&cells(r)));
        }
    }
    println!();
    println!("- ns/packet: on-CPU time per injected packet (run-queue waits left out); wall ns/packet: the same with them");
    println!("- in/transmitted/delivered/dropped/originated: totals over the timed rounds (per injected packet in brackets); in + originated = transmitted + delivered + dropped");
    println!("- hook runs: XDP, TC and netkit hook runs (each runs its eBPF program)");
    for r in &rows {
        if !r.drops.is_empty() {
            let d: Vec<String> = r
                .drops
                .iter()
                .map(|(k, n)| format!("{k} {n} ({})", per(*n, r.totals.input)))
                .collect();
            println!("- {} drops by reason: {}", r.engine.name(), d.join(", "));
        }
        if let Some(e) = &r.error {
            println!("- {}: {e}", r.engine.name());
        }
    }
    Ok(rows)
}

pub fn main(a: &BenchArgs) -> i32 {
    if a.datapath.suite {
        return super::suite::main(a);
    }
    match run(a) {
        Ok(rows) => {
            // a failure other than an engine skiff cannot select here (a bad
            // device, a conservation violation: a bug) exits 1
            if rows.iter().any(|r| {
                r.error
                    .as_deref()
                    .is_some_and(|e| !e.starts_with("not supported: "))
            }) {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("skiff bench --datapath: {e}");
            1
        }
    }
}
