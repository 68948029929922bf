//! The control socket: a listener thread takes one client at a time and
//! queues its requests; `Control::service`, called by the run loop between
//! batches, executes them and answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use skiff_topology::{Built, Topology};

use super::exec::State;
use super::metrics::{Metrics, Snapshot};
use super::{Reply, Request, MAX_LINE};
use crate::map::MapSet;

/// A request waiting for the loop, and where its answer goes.
struct Job {
    req: Request,
    reply: SyncSender<Reply>,
}

/// How often the listener looks at its stop flag while no client comes.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// How long a second client waits for the first to finish before it is
/// told the run is busy.
const TURN_WAIT: Duration = Duration::from_millis(500);
/// How long a client's request may wait for the loop (it serves within
/// 10 ms unless the datapath is stuck).
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests queued at most; a client waits for each answer, so one suffices.
const QUEUE: usize = 16;
/// How often `service` refreshes the metrics snapshot.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);

/// The control plane of a running datapath.
pub struct Control {
    path: PathBuf,
    /// The socket file as bound (device, inode): removed at exit only if it
    /// is still ours.
    ident: (u64, u64),
    jobs: Receiver<Job>,
    stop: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    state: State,
    metrics: Option<Metrics>,
    snapshot_at: Option<Instant>,
}

impl Control {
    /// Binds the socket `path` (mode 0600, its directory made if missing;
    /// a stale one replaced, a live one refused), serves `--metrics` on
    /// `metrics` if given, and starts listening.
    pub fn start(
        path: &Path,
        topo: &Topology,
        built: &Built,
        load: skiff_vm::LoadOptions,
        metrics: Option<&str>,
    ) -> Result<Control> {
        let listener = bind(path)?;
        let meta = std::fs::metadata(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, jobs) = sync_channel(QUEUE);
        let metrics = match metrics {
            Some(addr) => Some(Metrics::start(addr)?),
            None => None,
        };
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("skiff-control".into())
            .spawn(move || listen(listener, tx, s))
            .context("starting the control thread")?;
        Ok(Control {
            path: path.to_path_buf(),
            ident: (meta.dev(), meta.ino()),
            jobs,
            stop,
            listener: Some(thread),
            state: State {
                maps: map_set(topo, built),
                pins: pinned_maps(topo, built),
                attached: Vec::new(),
                load,
                drops: Default::default(),
                live: None,
            },
            metrics,
            snapshot_at: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `--metrics` address as bound (a port 0 made concrete).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr())
    }

    /// Between batches: the queued requests executed and answered, the drop
    /// log counted, the metrics snapshot refreshed every 100 ms.
    pub fn service(&mut self, built: &mut Built) {
        // drops by site come from the drop records (kept from now on)
        built.dp.set_record_drops(true);
        while let Ok(job) = self.jobs.try_recv() {
            let reply = self.state.execute(built, &job.req);
            // the client may have gone: nothing to answer then
            let _ = job.reply.try_send(reply);
        }
        self.state.drain_drops(built);
        let due = self
            .snapshot_at
            .is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY);
        if let (Some(m), true) = (&self.metrics, due) {
            let live = self.state.live_stats();
            m.publish(Snapshot::take(&built.dp, &self.state.drops, live));
            self.snapshot_at = Some(Instant::now());
        }
    }

    /// A live run: from now on stats and metrics show each worker's busy
    /// and idle time since `start` (the datapath measures its polls) and
    /// what `records` counts.
    pub fn observe(
        &mut self,
        built: &mut Built,
        start: Instant,
        records: Arc<crate::stats::RecordCounters>,
    ) {
        built.dp.set_measure_busy(true);
        self.state.live = Some((start, records));
    }

    /// The live run's measures now, for the summary at exit.
    pub fn live_stats(&self) -> Option<crate::stats::LiveStats> {
        self.state.live_stats()
    }

    /// The drops counted so far (for the summary at exit).
    pub fn drop_sites(&self) -> &crate::stats::DropSites {
        &self.state.drops
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ident);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The maps as the summary's "maps" keys them, each with its object's BTF.
fn map_set(topo: &Topology, built: &Built) -> MapSet {
    let mut set = MapSet::default();
    let named = crate::harness::network::named_maps(topo, built);
    let elfs: Vec<Option<Vec<u8>>> = topo
        .objects
        .iter()
        .map(|o| std::fs::read(&o.path).ok())
        .collect();
    for (key, map) in named {
        let home = built.objects.iter().zip(&elfs).find_map(|(lo, elf)| {
            lo.maps
                .iter()
                .find(|(_, m)| Arc::ptr_eq(m, &map))
                .map(|(n, _)| (n.clone(), elf.as_deref()))
        });
        let (in_object, elf) = home.unwrap_or_default();
        set.add(key, map, elf, &in_object);
    }
    set
}

/// The topology's pinned maps by pin name.
pub fn pinned_maps(topo: &Topology, built: &Built) -> HashMap<String, Arc<skiff_maps::Map>> {
    let mut out = HashMap::new();
    for (decl, lo) in topo.objects.iter().zip(&built.objects) {
        for d in &decl.maps {
            if let (Some(pin), Some(m)) = (&d.pin, lo.map(&d.name)) {
                out.entry(pin.clone()).or_insert_with(|| m.clone());
            }
        }
    }
    out
}

/// The socket, with the checks `start` promises.
fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("making the control directory {}", dir.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            );
        }
        match UnixStream::connect(path) {
            Ok(_) => bail!(
                "{} is in use: another skiff run serves it (give this one another --name)",
                path.display()
            ),
            // nobody listens: a crashed run's socket
            Err(_) => std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?,
        }
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The listener thread: one client at a time on a thread of its own; another
/// that comes meanwhile is told so and closed.
fn listen(l: UnixListener, jobs: SyncSender<Job>, stop: Arc<AtomicBool>) {
    let busy = Arc::new(AtomicBool::new(false));
    while !stop.load(Ordering::Relaxed) {
        let stream = match l.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if !wait_turn(&busy) {
            let e = Reply::error(
                "busy: another client is connected to this run (one at a time); try again",
            );
            let _ = write_reply(&stream, &e);
            continue;
        }
        let (jobs, done, stop) = (jobs.clone(), busy.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("skiff-control-client".into())
            .spawn(move || {
                serve_client(stream, &jobs, &stop);
                done.store(false, Ordering::Release);
            });
        // no thread, no client: the next one may come
        if spawned.is_err() {
            busy.store(false, Ordering::Release);
        }
    }
}

/// Takes the one client slot, waiting up to `TURN_WAIT` for a client that is
/// finishing (its thread sees the close a moment after the next one connects).
fn wait_turn(busy: &AtomicBool) -> bool {
    let end = Instant::now() + TURN_WAIT;
    loop {
        if !busy.swap(true, Ordering::AcqRel) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One client: a request per line until it closes, each answered in turn.
fn serve_client(stream: UnixStream, jobs: &SyncSender<Job>, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(SERVE_TIMEOUT));
    let mut reader = BufReader::new((&stream).take(MAX_LINE));
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(req) => queue(jobs, req, stop),
            Err(e) => Reply::error(format!("bad request (docs/control.md): {e}")),
        };
        if write_reply(&stream, &reply).is_err() {
            return;
        }
    }
}

/// Hands `req` to the loop and waits for its answer.
fn queue(jobs: &SyncSender<Job>, req: Request, stop: &AtomicBool) -> Reply {
    let (tx, rx) = sync_channel(1);
    if jobs.send(Job { req, reply: tx }).is_err() || stop.load(Ordering::Relaxed) {
        return Reply::error("the run is stopping");
    }
    rx.recv_timeout(SERVE_TIMEOUT)
        .unwrap_or_else(|_| Reply::error("the run did not answer within 30 s"))
}

fn write_reply(mut s: &UnixStream, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())
}
