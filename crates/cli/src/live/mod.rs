//! `skiff run --live`: the topology's NICs that name a `backend` take their
//! frames from real interfaces (AF_PACKET, TAP, AF_XDP; skiff_io::live) and
//! send what the datapath transmits on them back out, on the monotonic clock,
//! until SIGINT/SIGTERM; then the same summary and conservation line as a replay.
//!
//! One loop: poll the live devices (at most [`TICK_MS`] asleep), take up to a
//! NAPI budget from each into its NIC's rx queues (RSS picks the queue, the
//! workers poll them: on OS threads with --threads), inject what --pcap-in
//! files hold, run the datapath, hand what each NIC transmitted to its wire
//! in one batch, and let the [`LiveService`] (the control socket) act while
//! nothing is in flight. A device that goes down or away is closed, counted
//! and reopened when it comes back.

pub mod pins;
mod port;
mod record;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use skiff_io::live::Poller;
use skiff_net::datapath::Datapath;
use skiff_topology::{Built, Topology};

use crate::run::{Extra, Input, RunArgs};
use port::{Port, WireDrop};

/// Called by the live loop at least every 10 ms (also when idle), between
/// batches, with the datapath quiescent (no packet in flight inside a
/// batch): map updates and program replaces done here are seen by the next
/// packet and lose none.
pub trait LiveService {
    fn service(&mut self, built: &mut Built);
    /// The run starts now: the service may show worker times since `start`
    /// and what `records` counts.
    fn observe(
        &mut self,
        _built: &mut Built,
        _start: Instant,
        _records: std::sync::Arc<skiff::stats::RecordCounters>,
    ) {
    }
    /// The drops the service counted from the drop log it drained, for the
    /// summary (the log's remaining records are added to them).
    fn drop_sites(&self) -> skiff::stats::DropSites {
        Default::default()
    }
}

/// The longest the loop sleeps in poll(): the service's period.
const TICK_MS: i32 = 10;
/// How often a device found down or gone is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// Runs `built` live until SIGINT/SIGTERM (see the module doc); the exit
/// code as `skiff run` gives it.
pub fn run_live(
    args: &RunArgs,
    topo: &Topology,
    built: &mut Built,
    service: &mut dyn LiveService,
) -> Result<i32> {
    refuse_replay_only(args)?;
    skiff_kernel::live::catch_interrupts()?;
    let maps =
        crate::run::chosen_maps(skiff::harness::network::named_maps(topo, built), &args.maps)?;
    let mut ports = port::open_all(topo, &built.dp)?;
    let mut inputs = Vec::with_capacity(args.pcap_in.len());
    let mut total = 0;
    for spec in &args.pcap_in {
        let input = Input::open("--pcap-in", spec, |name| {
            crate::run::dev_of(&built.dp, &args.topology, "--pcap-in", name)
        })?;
        total += input.packets;
        inputs.push(input);
    }
    for p in &ports {
        eprintln!("skiff run --live: {}", p.describe());
    }
    let recorder = record::Recorder::start(args, &mut built.dp)?;
    let started = Instant::now();
    service.observe(built, started, recorder.counters());
    eprintln!("skiff run --live: running; SIGINT or SIGTERM ends it");
    let mut lp = Loop {
        poller: Poller::default(),
        fds: Vec::new(),
        owner: Vec::new(),
        received: 0,
        busy: false,
        epoch: Instant::now(),
    };
    while !skiff_kernel::live::interrupted() {
        lp.step(&mut built.dp, &mut ports, &mut inputs)?;
        recorder.drain(&mut built.dp);
        service.service(built);
    }
    built.dp.finish();
    let dp = &mut built.dp;
    transmit(dp, &mut ports);
    discard_records(dp);
    recorder.drain(dp);
    let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let counters = recorder.counters();
    if let Err(e) = recorder.finish() {
        eprintln!("skiff run --live: {e:#}");
    }
    let mut extra = report(&ports);
    extra.drop_sites = service.drop_sites();
    extra.live = Some(skiff::stats::LiveStats::read(elapsed, &counters));
    let stdout = std::io::stdout();
    let mut so = stdout.lock();
    let ran = crate::run::Ran {
        maps: &maps,
        total: total + lp.received as usize,
        transmitted_out: &BTreeMap::new(),
        fates: &BTreeMap::new(),
    };
    crate::run::summary(args, dp, ran, &mut so, extra)
}

/// The options that only make sense for a replay (or are not done live yet).
fn refuse_replay_only(a: &RunArgs) -> Result<()> {
    let given = [
        ("--pcap-out", !a.pcap_out.is_empty()),
        ("--pcap-delivered", a.pcap_delivered.is_some()),
        ("--trace", a.trace),
        ("--send", !a.send.is_empty()),
        ("--coverage", a.coverage.is_some()),
    ];
    if let Some((opt, _)) = given.iter().find(|(_, on)| *on) {
        bail!("{opt} with --live: not supported (see docs/differences.md)");
    }
    Ok(())
}

/// The loop's reusable state.
struct Loop {
    poller: Poller,
    fds: Vec<std::os::fd::RawFd>,
    /// The port each polled descriptor belongs to.
    owner: Vec<usize>,
    /// Frames taken from live devices.
    received: u64,
    /// The last round took frames from a device: the next one looks at every
    /// device without poll() (under load a frame is almost always waiting,
    /// and the poll syscall with its sleep and wakeup costs more than a look
    /// at an empty ring).
    busy: bool,
    /// Time zero of the frames' timestamps (the programs' clock counts from
    /// the datapath's start, a moment before).
    epoch: Instant,
}

impl Loop {
    /// One round: wait, receive, run, transmit.
    fn step(&mut self, dp: &mut Datapath, ports: &mut [Port], inputs: &mut [Input]) -> Result<()> {
        let now = Instant::now();
        self.fds.clear();
        self.owner.clear();
        for (i, p) in ports.iter_mut().enumerate() {
            p.retry_if_due(now, RETRY);
            if let Some(fd) = p.fd() {
                self.fds.push(fd);
                self.owner.push(i);
            }
        }
        let pending = inputs.iter().any(|i| i.head().is_some());
        let timeout = if pending { 0 } else { TICK_MS };
        if !self.busy {
            self.poller.wait(&self.fds, timeout)?;
        }
        let budget = dp.run_batch();
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let mut n = 0;
        for (k, &i) in self.owner.iter().enumerate() {
            if !self.busy && !self.poller.ready(k) {
                continue;
            }
            if let Some(p) = ports.get_mut(i) {
                n += p.receive(dp, budget, now_ns);
            }
        }
        self.busy = n > 0;
        self.received += n as u64;
        n += inject_pcap(dp, inputs, budget, now_ns)?;
        if n > 0 {
            dp.run();
        }
        transmit(dp, ports);
        discard_records(dp);
        Ok(())
    }
}

/// Up to `budget` frames of the --pcap-in files, at the monotonic now (the
/// files' own times would move the clock).
fn inject_pcap(dp: &mut Datapath, inputs: &mut [Input], budget: usize, now: u64) -> Result<usize> {
    let mut n = 0;
    for input in inputs.iter_mut() {
        while n < budget {
            let Some((_, dev, frame)) = input.head() else {
                break;
            };
            dp.inject(dev, frame, now)?;
            input.advance()?;
            n += 1;
        }
    }
    Ok(n)
}

/// What the NICs transmitted goes out on their wires, one batch per device.
fn transmit(dp: &mut Datapath, ports: &mut [Port]) {
    dp.drain_transmitted(|t| {
        if let Some(p) = ports.iter_mut().find(|p| p.dev == t.dev) {
            p.send(t.frame);
        }
    });
    for p in ports.iter_mut() {
        p.flush();
    }
}

/// What the stacks took and the AF_XDP queues hold has no reader live:
/// freed, so memory stays constant.
fn discard_records(dp: &mut Datapath) {
    for d in dp.take_delivered() {
        dp.recycle(d.frame);
    }
    for (dev, q) in dp.xsk_queues() {
        for f in dp.take_xsk(dev, q) {
            dp.recycle(f.frame);
        }
    }
}

/// The live devices' own counters for the summary: JSON member "live" and
/// text lines.
fn report(ports: &[Port]) -> Extra {
    let mut text = String::new();
    let mut json = Vec::new();
    for p in ports {
        let c = p.counters();
        text.push_str(&format!(
            "live {:<22} rx {} pkts {} bytes ({} ring full), tx {} pkts {} bytes ({} dropped), {} checksums finished, down {} reopened {}\n",
            p.label, c.rx_packets, c.rx_bytes, c.rx_ring_full, c.tx_packets, c.tx_bytes,
            c.tx_dropped, c.rx_csum_completed, c.down, c.reopened
        ));
        for (WireDrop(reason), n) in p.wire_drops() {
            text.push_str(&format!(
                "live {:<22} dropped from the wire: {n} {reason}\n",
                p.label
            ));
        }
        json.push(serde_json::json!({
            "device": p.label,
            "backend": p.spec.backend.name(),
            "host_ifname": p.spec.host_ifname,
            "host_netns": p.spec.host_netns,
            "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "rx_ring_full": c.rx_ring_full,
            "rx_csum_completed": c.rx_csum_completed,
            "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "tx_dropped": c.tx_dropped,
            "down": c.down, "reopened": c.reopened,
            "wire_drops": p.wire_drops().map(|(WireDrop(r), n)| (r.to_string(), n)).collect::<BTreeMap<_, _>>(),
        }));
    }
    Extra {
        json: Some(("live", serde_json::Value::Array(json))),
        text,
        ..Default::default()
    }
}
