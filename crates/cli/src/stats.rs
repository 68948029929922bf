//! The counters a run reports — per device and hook, packets and bytes per
//! verdict, drops by reason and where, the conservation line — as a replay's
//! summary prints them and as `skiff stats --run` and `--metrics` give them
//! while a live run goes on.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use skiff_net::datapath::{CountersReport, DropRecord};

/// Where drops happened: reason, device, hook and the program (with the
/// instruction of an exception), counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropSites {
    /// (reason, "iface(ifindex)" or "netns/iface(ifindex)", hook, program or "-", netns) -> drops;
    /// ordered as the summary lists them.
    pub sites: BTreeMap<(String, String, String, String, String), u64>,
}

impl DropSites {
    /// Counts `records` (the datapath's drop log) in.
    pub fn add<'a>(&mut self, records: impl IntoIterator<Item = &'a DropRecord>) {
        for d in records {
            let at = match d.insn {
                Some(i) => format!("{} insn {i}", d.prog.as_deref().unwrap_or("-")),
                None => d.prog.clone().unwrap_or_else(|| "-".into()),
            };
            *self
                .sites
                .entry((
                    d.reason.to_string(),
                    dev_label(&d.netns, &d.iface, d.ifindex),
                    d.hook.to_string(),
                    at,
                    d.netns.clone(),
                ))
                .or_default() += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The summary's "drop_sites" array.
    pub fn json(&self) -> Value {
        Value::Array(
            self.sites
                .iter()
                .map(|((r, dev, hook, prog, _), n)| {
                    json!({ "reason": r, "iface": dev, "hook": hook, "prog": prog, "packets": n })
                })
                .collect(),
        )
    }
}

/// The per-device table: `ip -s link`'s counters, then each hook's verdicts.
pub fn write_devices(so: &mut impl Write, report: &CountersReport) -> std::io::Result<()> {
    writeln!(
        so,
        "{:<16} {:>7}  {:<12} {:<16} {:>8} {:>10}",
        "device", "ifindex", "hook", "verdict", "packets", "bytes"
    )?;
    for d in &report.devices {
        let name = format!("{}/{}", d.netns, d.name);
        let s = &d.stats;
        writeln!(
            so,
            "{:<16} {:>7}  {:<12} rx {} pkts {} bytes ({} dropped), tx {} pkts {} bytes ({} dropped)",
            name, d.ifindex, "stats", s.rx_packets, s.rx_bytes, s.rx_dropped, s.tx_packets,
            s.tx_bytes, s.tx_dropped
        )?;
        for (hook, verdicts) in &d.hooks {
            for (verdict, pb) in verdicts {
                writeln!(
                    so,
                    "{:<16} {:>7}  {:<12} {:<16} {:>8} {:>10}",
                    name, d.ifindex, hook, verdict, pb.packets, pb.bytes
                )?;
            }
        }
    }
    Ok(())
}

/// "drops (reason, where):" and one line per site (nothing without drops).
pub fn write_drop_sites(so: &mut impl Write, sites: &DropSites) -> std::io::Result<()> {
    if sites.is_empty() {
        return Ok(());
    }
    writeln!(so, "\ndrops (reason, where):")?;
    for ((r, dev, hook, prog, _), n) in &sites.sites {
        writeln!(so, "  {n:>6}  {r:<28} {dev} {hook} {prog}")?;
    }
    Ok(())
}

/// The packet-conservation line.
pub fn write_conservation(so: &mut impl Write, report: &CountersReport) -> std::io::Result<()> {
    let c = &report.conservation;
    writeln!(
        so,
        "\nconservation: in {} + originated {} = transmitted {} + delivered {} + dropped {} + in flight {}{}",
        c.input,
        c.originated,
        c.transmitted,
        c.delivered,
        c.dropped,
        c.in_flight,
        if c.balanced() { "" } else { "  NOT BALANCED" }
    )
}

/// The counters of the summary's JSON object: conservation, balanced,
/// devices, drops (by reason), drop_sites, workers.
pub fn json_fields(report: &CountersReport, sites: &DropSites) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("conservation".into(), json!(report.conservation));
    o.insert("balanced".into(), json!(report.conservation.balanced()));
    o.insert("devices".into(), json!(report.devices));
    o.insert("drops".into(), json!(report.drops));
    o.insert("drop_sites".into(), sites.json());
    let workers = report
        .cpu_polled
        .iter()
        .enumerate()
        .map(|(cpu, n)| json!({ "cpu": cpu, "polled": n }))
        .collect();
    o.insert("workers".into(), Value::Array(workers));
    o
}

/// `skiff stats --run`: the summary's counters, as text or one JSON object;
/// a live run adds its workers' busy and idle time and its records.
pub fn render(
    report: &CountersReport,
    sites: &DropSites,
    live: Option<&LiveStats>,
    as_json: bool,
) -> String {
    if as_json {
        let mut o = json_fields(report, sites);
        if let Some(l) = live {
            live_fields(&mut o, report, l);
        }
        return format!("{}\n", Value::Object(o));
    }
    let mut out = Vec::new();
    // writing into a Vec cannot fail
    let _ = write_devices(&mut out, report)
        .and_then(|_| write_drop_sites(&mut out, sites))
        .and_then(|_| match live {
            Some(l) => write_live(&mut out, report, l),
            None => Ok(()),
        })
        .and_then(|_| write_conservation(&mut out, report));
    String::from_utf8_lossy(&out).into_owned()
}

/// What `--trace-json` and `--capture` of a live run wrote and what their
/// bounded queues dropped (the writer thread too slow), counted by the run
/// loop and read by `skiff stats`, the metrics and the summary.
#[derive(Debug, Default)]
pub struct RecordCounters {
    pub trace_written: AtomicU64,
    pub trace_dropped: AtomicU64,
    pub capture_written: AtomicU64,
    pub capture_dropped: AtomicU64,
}

/// A live run's measures at one moment (see [`RecordCounters`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Nanoseconds since the run started: each worker's busy plus idle time.
    pub elapsed_ns: u64,
    pub trace_written: u64,
    pub trace_dropped: u64,
    pub capture_written: u64,
    pub capture_dropped: u64,
}

impl LiveStats {
    pub fn read(elapsed_ns: u64, r: &RecordCounters) -> LiveStats {
        LiveStats {
            elapsed_ns,
            trace_written: r.trace_written.load(Ordering::Relaxed),
            trace_dropped: r.trace_dropped.load(Ordering::Relaxed),
            capture_written: r.capture_written.load(Ordering::Relaxed),
            capture_dropped: r.capture_dropped.load(Ordering::Relaxed),
        }
    }

    /// Per worker: (busy, idle) nanoseconds; busy is the time in NAPI polls
    /// that took something, idle the rest of the run.
    pub fn workers(&self, report: &CountersReport) -> Vec<(u64, u64)> {
        report
            .cpu_busy_ns
            .iter()
            .map(|b| (*b, self.elapsed_ns.saturating_sub(*b)))
            .collect()
    }
}

/// A live run's JSON members: "workers" with busy_ns and idle_ns, and
/// "records" (trace_json, capture: written and dropped).
pub fn live_fields(o: &mut Map<String, Value>, report: &CountersReport, l: &LiveStats) {
    let workers = report
        .cpu_polled
        .iter()
        .zip(l.workers(report))
        .enumerate()
        .map(|(cpu, (n, (busy, idle)))| {
            json!({ "cpu": cpu, "polled": n, "busy_ns": busy, "idle_ns": idle })
        })
        .collect();
    o.insert("workers".into(), Value::Array(workers));
    o.insert(
        "records".into(),
        json!({
            "trace_json": { "written": l.trace_written, "dropped": l.trace_dropped },
            "capture": { "written": l.capture_written, "dropped": l.capture_dropped },
        }),
    );
}

/// A live run's text lines: each worker's busy and idle time, the records.
pub fn write_live(
    so: &mut impl Write,
    report: &CountersReport,
    l: &LiveStats,
) -> std::io::Result<()> {
    writeln!(so)?;
    for (cpu, (busy, idle)) in l.workers(report).into_iter().enumerate() {
        let share = match l.elapsed_ns {
            0 => 0.0,
            t => 100.0 * busy as f64 / t as f64,
        };
        writeln!(
            so,
            "worker {cpu}: busy {:.3} s, idle {:.3} s ({share:.1}% busy)",
            busy as f64 / 1e9,
            idle as f64 / 1e9
        )?;
    }
    writeln!(
        so,
        "records: trace-json {} written, {} dropped (queue full); capture {} written, {} dropped (queue full)",
        l.trace_written, l.trace_dropped, l.capture_written, l.capture_dropped
    )
}

/// A device in the drop summary: `NAME(IFINDEX)` in `host`, as the topology
/// file names it, else `NETNS/NAME(IFINDEX)` (ifindexes are per namespace).
fn dev_label(netns: &str, iface: &str, ifindex: u32) -> String {
    match netns {
        "host" => format!("{iface}({ifindex})"),
        ns => format!("{ns}/{iface}({ifindex})"),
    }
}
