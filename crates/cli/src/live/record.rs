//! `--trace-json` and `--capture` of a live run. The records the datapath
//! makes go to a bounded queue per kind that a writer thread drains into the
//! files, so that a slow disk never holds the datapath up: a record that
//! finds its queue full is dropped and counted (`skiff_trace_dropped_total`,
//! `skiff_capture_dropped_total`). At the end the queues are closed and the
//! writers finish their files (pcapng complete, JSON lines flushed).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context as _, Result};
use skiff::stats::RecordCounters;
use skiff_net::core::trace::{CaptureRecord, TraceEvent};
use skiff_net::datapath::Datapath;

use crate::run::{CaptureAt, CaptureKey, Output, RunArgs, TraceFormat};

/// Records a queue holds before the next one is dropped: about a second of
/// a busy datapath's trace, bounded memory when the writer stalls.
const QUEUE: usize = 65_536;

/// One kind of record: its queue and the thread writing it out.
struct Sink<T> {
    tx: Option<SyncSender<T>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl<T: Send + 'static> Sink<T> {
    fn start(
        name: &str,
        capacity: usize,
        write: impl FnOnce(Receiver<T>) -> Result<()> + Send + 'static,
    ) -> Result<Sink<T>> {
        let (tx, rx) = sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name(format!("skiff-{name}"))
            .spawn(move || write(rx))
            .with_context(|| format!("starting the {name} writer thread"))?;
        Ok(Sink {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `recs` without waiting: those that find the queue full (or the
    /// writer gone after an error) are counted in `dropped`.
    fn offer(&self, recs: Vec<T>, dropped: &AtomicU64) {
        let Some(tx) = &self.tx else { return };
        let mut lost = 0;
        for r in recs {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(r) {
                lost += 1;
            }
        }
        if lost > 0 {
            dropped.fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Closes the queue and waits for the writer to finish its file.
    fn finish(&mut self) -> Result<()> {
        drop(self.tx.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow!("a record writer thread panicked")),
            None => Ok(()),
        }
    }
}

/// The live run's record writers (none when neither option is given).
pub struct Recorder {
    trace: Option<Sink<TraceEvent>>,
    capture: Option<Sink<CaptureRecord>>,
    counters: Arc<RecordCounters>,
}

impl Recorder {
    /// Opens the files `--trace-json` and `--capture` name, turns the
    /// datapath's records on for them and starts the writers.
    pub fn start(a: &RunArgs, dp: &mut Datapath) -> Result<Recorder> {
        let counters = Arc::new(RecordCounters::default());
        if let Some(e) = &a.filter {
            // compiled here so that a bad expression stops the start; each
            // writer compiles its own (a filter runs on one thread)
            skiff::filter::Filter::new(e).map_err(|e| anyhow!(e))?;
        }
        let trace = match &a.trace_json {
            Some(path) => {
                dp.set_trace(true);
                let file = std::fs::File::create(path)
                    .with_context(|| format!("--trace-json {}", path.display()))?;
                let w = TraceWriter {
                    path: path.clone(),
                    out: BufWriter::new(file),
                    format: a.trace_format,
                    filter: a.filter.clone(),
                    written: counters.clone(),
                };
                Some(Sink::start("trace-json", QUEUE, move |rx| w.run(rx))?)
            }
            None => None,
        };
        let capture = match a.capture.is_empty() {
            true => None,
            false => {
                let w = CaptureWriter {
                    files: crate::run::capture_outputs(a, dp)?,
                    filter: a.filter.clone(),
                    written: counters.clone(),
                };
                Some(Sink::start("capture", QUEUE, move |rx| w.run(rx))?)
            }
        };
        Ok(Recorder {
            trace,
            capture,
            counters,
        })
    }

    pub fn counters(&self) -> Arc<RecordCounters> {
        self.counters.clone()
    }

    /// Hands what the datapath recorded since the last call to the writers.
    pub fn drain(&self, dp: &mut Datapath) {
        if let Some(t) = &self.trace {
            t.offer(dp.take_trace(), &self.counters.trace_dropped);
        }
        if let Some(c) = &self.capture {
            c.offer(dp.take_captures(), &self.counters.capture_dropped);
        }
    }

    /// Closes the queues and waits for the files to be complete; the first
    /// writer error, if any.
    pub fn finish(mut self) -> Result<()> {
        let t = self.trace.as_mut().map_or(Ok(()), Sink::finish);
        let c = self.capture.as_mut().map_or(Ok(()), Sink::finish);
        t.and(c)
    }
}

/// `--trace-json`'s writer: one JSON line per event that passes `--filter`.
struct TraceWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    format: TraceFormat,
    filter: Option<String>,
    written: Arc<RecordCounters>,
}

impl TraceWriter {
    fn run(mut self, rx: Receiver<TraceEvent>) -> Result<()> {
        let mut filter = compile(self.filter.as_deref())?;
        let mut matched = HashSet::new();
        let at = |e: std::io::Error| anyhow!("--trace-json {}: {e}", self.path.display());
        for ev in rx {
            if let Some(f) = filter.as_mut() {
                if !crate::run::trace_passes(f, &mut matched, &ev) {
                    continue;
                }
            }
            let line = match self.format {
                TraceFormat::Skiff => ev.to_json(),
                TraceFormat::Pwru => ev.to_pwru_json(),
            };
            writeln!(self.out, "{line}").map_err(at)?;
            self.written.trace_written.fetch_add(1, Ordering::Relaxed);
        }
        self.out.flush().map_err(at)
    }
}

/// `--capture`'s writer: each record into the file of its device and point.
struct CaptureWriter {
    files: BTreeMap<CaptureKey, Output>,
    filter: Option<String>,
    written: Arc<RecordCounters>,
}

impl CaptureWriter {
    fn run(mut self, rx: Receiver<CaptureRecord>) -> Result<()> {
        let mut filter = compile(self.filter.as_deref())?;
        for c in rx {
            if !filter.as_mut().is_none_or(|f| f.matches(&c.bytes)) {
                continue;
            }
            let key = (
                c.ifindex,
                format!("{}/{}", c.netns, c.iface),
                CaptureAt::of(c.point, c.hook),
            );
            let Some(o) = self.files.get_mut(&key) else {
                continue;
            };
            o.writer
                .write(0, c.ts_ns, &c.bytes, Some(&crate::run::capture_comment(&c)))
                .with_context(|| format!("--capture {}", o.path.display()))?;
            self.written.capture_written.fetch_add(1, Ordering::Relaxed);
        }
        for (_, o) in self.files {
            o.writer
                .finish()
                .with_context(|| format!("--capture {}", o.path.display()))?;
        }
        Ok(())
    }
}

fn compile(expr: Option<&str>) -> Result<Option<skiff::filter::Filter>> {
    expr.map(|e| skiff::filter::Filter::new(e).map_err(|e| anyhow!(e)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that has not started reading: what exceeds the queue is
    /// dropped and counted, the rest written when it reads.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (go_tx, go) = std::sync::mpsc::channel::<()>();
        let got = Arc::new(AtomicU64::new(0));
        let g = got.clone();
        let mut sink = Sink::start("test", 4, move |rx: Receiver<u32>| {
            let _ = go.recv();
            g.store(rx.iter().count() as u64, Ordering::Relaxed);
            Ok(())
        })
        .expect("start");
        let dropped = AtomicU64::new(0);
        sink.offer((0..10).collect(), &dropped);
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        go_tx.send(()).expect("go");
        sink.finish().expect("finish");
        assert_eq!(got.load(Ordering::Relaxed), 4);
    }
}
