//! `--metrics ADDR:PORT`: Prometheus text (exposition format 0.0.4) on GET
//! /metrics, from a snapshot of the datapath's counters that the run loop
//! publishes (per-worker counters summed when read), served by a small
//! HTTP/1.1 responder on a thread of its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use skiff_net::datapath::{CountersReport, Datapath};

use crate::stats::{DropSites, LiveStats};

/// What one scrape shows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub report: CountersReport,
    /// (reason, netns, device, hook) -> drops.
    pub drops: BTreeMap<(String, String, String, String), u64>,
    /// (netns, device) -> (frames in rx rings, packets in the root qdisc).
    pub queues: BTreeMap<(String, String), (usize, usize)>,
    /// A live run's worker times and record counters.
    pub live: Option<LiveStats>,
}

impl Snapshot {
    pub fn take(dp: &Datapath, sites: &DropSites, live: Option<LiveStats>) -> Snapshot {
        let mut drops = BTreeMap::new();
        for ((reason, dev, hook, _, netns), n) in &sites.sites {
            // "iface(ifindex)" -> iface
            let device = dev.rsplit_once('(').map(|(d, _)| d).unwrap_or(dev);
            *drops
                .entry((
                    reason.clone(),
                    netns.clone(),
                    device.to_string(),
                    hook.clone(),
                ))
                .or_default() += n;
        }
        let mut queues = BTreeMap::new();
        for q in dp.queue_depths() {
            let ns = dp
                .dev_netns(q.dev)
                .and_then(|n| dp.netns_name(n))
                .unwrap_or("?");
            let name = dp.dev_name(q.dev).unwrap_or("?");
            queues.insert((ns.to_string(), name.to_string()), (q.rx, q.qdisc));
        }
        Snapshot {
            report: dp.counters(),
            drops,
            queues,
            live,
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let per_hook = |o: &mut String, name: &str, help: &str, bytes: bool| {
            header(o, name, help, "counter");
            for d in &self.report.devices {
                for (hook, verdicts) in &d.hooks {
                    for (verdict, pb) in verdicts {
                        let v = if bytes { pb.bytes } else { pb.packets };
                        let l = [
                            ("netns", &*d.netns),
                            ("device", &d.name),
                            ("hook", hook),
                            ("verdict", verdict),
                        ];
                        sample(o, name, &l, v);
                    }
                }
            }
        };
        per_hook(
            &mut o,
            "skiff_packets_total",
            "Packets per device, hook and verdict.",
            false,
        );
        per_hook(
            &mut o,
            "skiff_bytes_total",
            "Bytes per device, hook and verdict.",
            true,
        );
        let name = "skiff_drop_count_total";
        header(
            &mut o,
            name,
            "Dropped packets by kernel drop reason and where.",
            "counter",
        );
        for ((reason, netns, device, hook), n) in &self.drops {
            let l = [
                ("reason", &**reason),
                ("netns", netns),
                ("device", device),
                ("hook", hook),
            ];
            sample(&mut o, name, &l, *n);
        }
        self.render_queues(&mut o);
        self.render_workers(&mut o);
        self.render_conservation(&mut o);
        o
    }

    fn render_queues(&self, o: &mut String) {
        for (name, help, rx) in [
            (
                "skiff_rx_queue_depth",
                "Frames waiting in a device's receive rings.",
                true,
            ),
            (
                "skiff_qdisc_backlog_packets",
                "Packets in a device's root qdisc.",
                false,
            ),
        ] {
            header(o, name, help, "gauge");
            for ((netns, device), (r, q)) in &self.queues {
                let v = if rx { *r } else { *q };
                sample(o, name, &[("netns", netns), ("device", device)], v as u64);
            }
        }
    }

    fn render_workers(&self, o: &mut String) {
        let name = "skiff_worker_polled_packets_total";
        header(
            o,
            name,
            "Packets a worker took from a queue (a packet counts once per queue it passes).",
            "counter",
        );
        for (w, n) in self.report.cpu_polled.iter().enumerate() {
            sample(o, name, &[("worker", &w.to_string())], *n);
        }
        let Some(l) = &self.live else { return };
        for (name, help, busy) in [
            (
                "skiff_worker_busy_seconds_total",
                "Time a worker spent in NAPI polls that took packets.",
                true,
            ),
            (
                "skiff_worker_idle_seconds_total",
                "Time of the run a worker was not busy.",
                false,
            ),
        ] {
            header(o, name, help, "counter");
            for (w, (b, i)) in l.workers(&self.report).iter().enumerate() {
                let secs = if busy { *b } else { *i } as f64 / 1e9;
                let _ = writeln!(o, "{name}{{worker=\"{w}\"}} {secs:.9}");
            }
        }
        for (name, help, v) in [
            (
                "skiff_trace_events_total",
                "Trace events written to --trace-json.",
                l.trace_written,
            ),
            (
                "skiff_trace_dropped_total",
                "Trace events dropped: the --trace-json writer fell behind (its queue was full).",
                l.trace_dropped,
            ),
            (
                "skiff_capture_packets_total",
                "Packets written to the --capture files.",
                l.capture_written,
            ),
            (
                "skiff_capture_dropped_total",
                "Packets not captured: the --capture writer fell behind (its queue was full).",
                l.capture_dropped,
            ),
        ] {
            header(o, name, help, "counter");
            let _ = writeln!(o, "{name} {v}");
        }
    }

    fn render_conservation(&self, o: &mut String) {
        let c = &self.report.conservation;
        let name = "skiff_conservation_packets_total";
        header(o, name, "Where packets began and ended (in + originated = transmitted + delivered + dropped + in flight).", "counter");
        for (end, v) in [
            ("in", c.input),
            ("originated", c.originated),
            ("transmitted", c.transmitted),
            ("delivered", c.delivered),
            ("dropped", c.dropped),
        ] {
            sample(o, name, &[("end", end)], v);
        }
        header(
            o,
            "skiff_in_flight_packets",
            "Packets waiting in a queue.",
            "gauge",
        );
        let _ = writeln!(o, "skiff_in_flight_packets {}", c.in_flight);
    }
}

fn header(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(o: &mut String, name: &str, labels: &[(&str, &str)], v: u64) {
    let l: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let _ = writeln!(o, "{name}{{{}}} {v}", l.join(","));
}

/// A label value as the text format escapes it: backslash, quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The endpoint: its thread, the snapshot it serves, its address.
pub struct Metrics {
    addr: SocketAddr,
    current: Arc<Mutex<Option<Snapshot>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the server looks at its stop flag while nobody scrapes.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// A request head larger than this is refused (431).
const MAX_HEAD: usize = 8192;

impl Metrics {
    pub fn start(addr: &str) -> Result<Metrics> {
        let l = TcpListener::bind(addr).with_context(|| format!("--metrics {addr}: binding"))?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let current = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (current.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("skiff-metrics".into())
            .spawn(move || serve(l, &c, &s))
            .context("starting the metrics thread")?;
        Ok(Metrics {
            addr,
            current,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The snapshot the next scrapes see.
    pub fn publish(&self, s: Snapshot) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some(s);
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(l: TcpListener, current: &Mutex<Option<Snapshot>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                // a client that misbehaves loses its answer, nothing else
                let _ = answer(s, current);
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// One request, one response, then close (HTTP/1.1 with Connection: close).
fn answer(mut s: TcpStream, current: &Mutex<Option<Snapshot>>) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        if head.len() > MAX_HEAD {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "request head too large\n",
            );
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut s, "405 Method Not Allowed", "only GET /metrics\n");
    }
    if target.split('?').next() != Some("/metrics") {
        return respond(&mut s, "404 Not Found", "the metrics are at /metrics\n");
    }
    let body = match current.lock() {
        Ok(c) => c.as_ref().map(Snapshot::render),
        Err(_) => None,
    };
    match body {
        Some(b) => respond(&mut s, "200 OK", &b),
        None => respond(&mut s, "503 Service Unavailable", "no snapshot yet\n"),
    }
}

fn respond(s: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}
