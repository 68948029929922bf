//! The datapath core, split the way net/core splits it: configuration
//! (`rtnl`: namespaces, devices, qdiscs), receive and NAPI
//! (`napi`), the XDP hook and its redirects (`xdp`), sk_buff building
//! (`skb`), GRO (`gro`), TC (`tc`), __netif_receive_skb_core and
//! dev_queue_xmit (`dev`), and what a worker (CPU) owns (`cpu`). Devices are
//! `drivers::NetDevice`s, egress queues `sched::Qdisc`s.
//!
//! # API (for the CLI and the topology builder)
//!
//! ```text
//! let mut dp = Datapath::new(DatapathOptions { possible_cpus, ..Default::default() })?;
//!     // workers: 1..=possible_cpus (more: NotSupported; 0: EINVAL); threads: run them on OS threads
//! let host: NsId = dp.add_netns("host")?;          // every namespace gets `lo` (ifindex 1 in it)
//! let eth0: DevId = dp.add_device(host, DeviceSpec::nic("eth0", mac, 4 /* rx queues */))?;
//! let nk:   DevId = dp.add_device(host, DeviceSpec::netkit("nk0", Some(pod), "eth0"))?;
//!     // pairs return the first end (netkit: the primary); dp.peer(dev) is the other.
//! dp.set_qdisc(eth0, "pfifo")?;                     // the root qdisc (sched::QDISCS); defaults per kind
//! dp.attach_xdp(dev, prog, XdpMode::Native | XdpMode::Generic)?;
//! dp.attach_tc(dev, TcDirection::Ingress | Egress, TcAttach::ClsBpf { .. } | TcAttach::Tcx(order), prog)?;
//! dp.attach_netkit(primary, NetkitSide::Primary | Peer, MprogOrder::Append, prog)?;
//! let id: PacketId = dp.inject(dev, &frame, ts_ns)?;  // NIC: from the wire (RSS picks the queue)
//! dp.run();                                           // until every queue is empty
//! dp.finish();                                        // end of input: unresolved neighbours -> NEIGH_FAILED
//! dp.take_transmitted(); dp.take_delivered(); dp.take_xsk(dev, q); dp.counters(); dp.drops()
//! dp.set_trace(true); dp.set_record_drops(true); dp.capture(dev, hook)
//! ```
//!
//! Workers: worker i is CPU i — its own `Vm` (`bpf_get_smp_processor_id()`
//! is i, per-CPU map values slot i), its backlog, GRO table, XDP bulk queue,
//! page pool and counters — and polls NIC rx queue q when q % workers == i.
//! A packet stays on the CPU it came in on until a CPUMAP redirect moves it.
//! Without `threads` the workers run in turn on the calling thread (CPU 0's
//! polls, then CPU 1's, ...), so a run is deterministic; with `threads` each
//! runs on its own OS thread.
//!
//! In deterministic mode the programs' clock is the timestamp of the packet
//! being processed. Every packet ends once:
//! `in + originated == transmitted + delivered + dropped` (+ `in_flight`).

pub mod action;
pub mod counters;
pub(crate) mod cpu;
mod dev;
pub mod flow;
pub mod gro;
mod links;
mod napi;
mod nf;
mod rtnl;
mod rtnl_cls;
mod rtnl_tc;
pub(crate) mod skb;
pub mod tc;
pub mod trace;
mod xdp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use parking_lot::Mutex;
use skiff_vm::{ProgType, Program};

use crate::buff::{SkBuff, XdpBuff};
use crate::drivers::NetDevice;
use crate::helpers::{fib, NetNs, NsDevice, FIB_LOOKUP_SIZE};
use crate::sched::ingress::IngressQdisc;
use crate::sched::Sch;
use crate::stack::HostStack;

pub use action::{NetkitAction, TcAction, XdpAction};
pub use counters::{
    Conservation, CountersReport, DevStats, DeviceReport, DropRecord, Hook, PktBytes,
};
pub use links::{AttachedProg, QueueDepth};
pub use rtnl_cls::{FilterCmd, FilterParent, FilterShow};
pub use rtnl_tc::{ClassCmd, QdiscCmd, TcParent};
pub use tc::{MprogOrder, TcAttach, TcDirection};
pub use trace::{CapturePoint, CaptureRecord, Tap, TraceEvent};

use counters::HookCounters;
use cpu::{CpuState, Records};

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const ENXIO: i32 = 6;
pub const EACCES: i32 = 13;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;
pub const EINVAL: i32 = 22;
pub const ERANGE: i32 = 34;
pub const EOPNOTSUPP: i32 = 95;

/// include/linux/netdevice.h: XMIT_RECURSION_LIMIT.
pub const XMIT_RECURSION_LIMIT: u32 = 8;
/// The NAPI weight (NAPI_POLL_WEIGHT).
pub const NAPI_POLL_WEIGHT: usize = 64;
/// net.core.netdev_max_backlog: a CPU's backlog (netif_rx) holds at most this
/// many skbs; more are dropped with CPU_BACKLOG (enqueue_to_backlog).
pub const NETDEV_MAX_BACKLOG: usize = 1000;
/// include/linux/cpumask.h: NR_CPUS as distributions build it (CONFIG_NR_CPUS
/// 8192): the most CPUs (workers) a datapath may model.
pub const NR_CPUS: usize = 8192;
/// LOOPBACK_IFINDEX.
pub const LOOPBACK_IFINDEX: u32 = 1;
/// The loop guard: a run may pass this many hooks per packet that came in
/// before skiff calls it a forwarding loop (an XDP_TX ping-pong between veth
/// peers, a redirect cycle through backlogs) and drops what is queued with
/// SKIFF_LOOP. The kernel has no such bound: such a loop runs forever there.
pub const LOOP_STEPS_PER_PACKET: u64 = 4096;
/// How many drop records `drops()` keeps (the newest); counters count all.
pub const DROP_LOG: usize = 65536;

/// A network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId(pub usize);

/// A device (unique across namespaces, unlike ifindexes: every namespace has
/// its own `lo` with ifindex 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevId(pub usize);

/// A packet's id: kept through rewrites, redirects and tail calls; clones and
/// packets the datapath makes get new ones.
pub type PacketId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (NIC, veth): before any sk_buff exists.
    Native,
    /// In __netif_receive_skb_core on an sk_buff (any device).
    Generic,
}

/// The mode's name: native (XDP_FLAGS_DRV_MODE) or generic (XDP_FLAGS_SKB_MODE).
impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

#[derive(Clone, Debug)]
pub struct DatapathOptions {
    /// Virtual clock from packet timestamps (reproducible runs).
    pub deterministic: bool,
    /// Workers (CPUs running NAPI polls), 1..=possible_cpus: worker i is CPU i
    /// (`bpf_get_smp_processor_id() == i`, per-CPU map values slot i) and
    /// serves the NIC rx queues q with q % workers == i.
    pub workers: usize,
    /// Run the workers on `workers` OS threads (else in turn on the calling
    /// thread, deterministically).
    pub threads: bool,
    /// Values per per-CPU map element the programs were loaded with
    /// (LoadOptions::possible_cpus); CPUMAP entries name CPUs below it.
    pub possible_cpus: usize,
    /// NAPI budget per poll.
    pub napi_budget: usize,
    /// GRO on NIC and veth (NAPI) receive.
    pub gro: bool,
    /// Keep what the host stacks and hooks took (`take_delivered`); without
    /// it they are counted and freed at once.
    pub keep_delivered: bool,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        DatapathOptions {
            deterministic: true,
            workers: 1,
            threads: false,
            possible_cpus: 1,
            napi_budget: NAPI_POLL_WEIGHT,
            gro: true,
            keep_delivered: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatapathError {
    #[error("not supported: {0}")]
    NotSupported(String),
    /// What the kernel would refuse, with its errno.
    #[error("{msg} (errno {errno})")]
    Errno { errno: i32, msg: String },
    #[error("no network namespace {0}")]
    NoNetns(String),
    #[error("no device {0}")]
    NoDevice(String),
}

pub(crate) fn errno(errno: i32, msg: impl Into<String>) -> DatapathError {
    DatapathError::Errno {
        errno,
        msg: msg.into(),
    }
}

/// A frame that left the datapath through a NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmitted {
    pub dev: DevId,
    pub ifindex: u32,
    pub id: PacketId,
    pub ts_ns: u64,
    pub frame: Vec<u8>,
}

/// A transmitted frame lent to `Datapath::drain_transmitted`'s callback.
#[derive(Clone, Copy, Debug)]
pub struct TransmittedRef<'a> {
    pub dev: DevId,
    pub ifindex: u32,
    pub id: PacketId,
    pub ts_ns: u64,
    pub frame: &'a [u8],
}

/// A frame an XDP program redirected into an XSKMAP slot (an AF_XDP socket's
/// rx ring, keyed by the device and rx queue it arrived on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XskFrame {
    pub id: PacketId,
    pub slot: u32,
    pub ts_ns: u64,
    pub frame: Vec<u8>,
}

/// A packet the host stack took (local delivery), or a hook consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub dev: DevId,
    pub ifindex: u32,
    pub id: PacketId,
    pub ts_ns: u64,
    /// "stack", or the hook that consumed it ("tc-ingress" for TC_ACT_STOLEN, "gro").
    pub by: &'static str,
    pub frame: Vec<u8>,
}

/// A packet on its way: its id, the timestamp it came in with, its sk_buff
/// (boxed and recycled through the CPU's skb cache, so handing a packet on
/// moves a pointer, not the struct: the kernel's `struct sk_buff *`).
pub(crate) struct Pkt {
    pub id: PacketId,
    pub ts: u64,
    pub skb: Box<SkBuff>,
}

/// An XDP frame on its way (no sk_buff yet); the xdp_buff boxed and
/// recycled like the sk_buff, so queues and stages move a pointer.
pub(crate) struct XPkt {
    pub id: PacketId,
    pub ts: u64,
    pub xdp: Box<XdpBuff>,
}

/// What a receive ring holds: frames from the wire or ndo_xdp_xmit, skbs
/// from veth_xmit.
pub(crate) enum RxItem {
    Xdp(XPkt),
    Skb(Pkt),
}

/// One namespace's state helpers may read while a program runs.
pub struct NsShared {
    devices: RwLock<Vec<NsDevice>>,
    stack: RwLock<HostStack>,
}

impl NsShared {
    pub(crate) fn stack_write(&self) -> RwLockWriteGuard<'_, HostStack> {
        self.stack.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl NetNs for NsShared {
    fn device(&self, ifindex: u32) -> Option<NsDevice> {
        let d = self.devices.read().unwrap_or_else(|e| e.into_inner());
        d.iter().find(|d| d.ifindex == ifindex).copied()
    }

    fn fib_lookup(
        &self,
        params: &mut [u8; FIB_LOOKUP_SIZE],
        flags: u32,
        check_mtu: bool,
        own: u32,
        skb_len: usize,
    ) -> i64 {
        let s = self.stack.read().unwrap_or_else(|e| e.into_inner());
        fib::lookup(&*s, params, flags, check_mtu, own, skb_len)
    }
}

pub(crate) struct Namespace {
    pub name: String,
    pub shared: Arc<NsShared>,
    pub lo: DevId,
    /// net->ifindex: where the next automatic ifindex search starts
    /// (dev_index_reserve's xa_alloc_cyclic cursor).
    pub next_ifindex: u32,
}

/// A frame the XDP bulk queue holds until the end of the poll (xdp_do_flush).
pub(crate) struct BulkItem {
    pub target: DevId,
    pub pkt: XPkt,
    /// The DEVMAP entry's program (an index in `Shared::programs`).
    pub devmap_prog: Option<usize>,
}

/// What a CPUMAP queue (ptr_ring) carries to its CPU.
pub(crate) enum CpuItem {
    Xdp {
        from: DevId,
        pkt: XPkt,
        /// The CPUMAP entry's program (an index in `Shared::programs`).
        prog: Option<usize>,
    },
    Skb {
        from: DevId,
        pkt: Pkt,
    },
}

/// struct net_device: what every device has (name, ifindex, addresses, the
/// hooks attached, its qdisc), and its driver (`ops`, with the driver's own
/// state: rings, peers, program chains).
pub struct NetDev {
    pub name: String,
    pub ifindex: u32,
    pub ns: NsId,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub txqueuelen: u32,
    pub(crate) xdp_native: Option<Arc<Program>>,
    pub(crate) xdp_generic: Option<Arc<Program>>,
    pub(crate) tc_ingress: tc::TcHook,
    pub(crate) tc_egress: tc::TcHook,
    /// The root egress qdisc; None is noqueue (IFF_NO_QUEUE devices).
    pub(crate) qdisc: Option<Mutex<Sch>>,
    /// `tc qdisc add dev X ingress|clsact` (the filters' attachment point).
    pub(crate) ingress_qdisc: Option<IngressQdisc>,
    /// The namespace's netfilter has netdev-family entries on this device
    /// (dev->nf_hooks_ingress / nf_hooks_egress): the device path runs them.
    pub(crate) nf_ingress: bool,
    pub(crate) nf_egress: bool,
    pub(crate) ops: Box<dyn NetDevice>,
}

impl NetDev {
    pub fn kind(&self) -> &'static str {
        self.ops.kind()
    }

    pub fn peer(&self) -> Option<DevId> {
        self.ops.peer()
    }
}

/// The ids of the datapath's packets a host stack holds for a neighbour.
/// Most packets are never held: `remove` looks at the count first and takes
/// the lock only when something is held.
#[derive(Default)]
pub(crate) struct QueuedIds {
    held: std::sync::atomic::AtomicUsize,
    ids: Mutex<HashSet<PacketId>>,
}

impl QueuedIds {
    pub fn insert(&self, id: PacketId) {
        let mut ids = self.ids.lock();
        if ids.insert(id) {
            self.held.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }

    /// Whether `id` was held (and is no longer).
    pub fn remove(&self, id: PacketId) -> bool {
        if self.held.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return false;
        }
        let removed = self.ids.lock().remove(&id);
        if removed {
            self.held.fetch_sub(1, std::sync::atomic::Ordering::Release);
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A CPU's CPUMAP queue, on a cache line of its own.
#[repr(align(128))]
pub(crate) struct CpuQueue(pub Mutex<VecDeque<CpuItem>>);

impl std::ops::Deref for CpuQueue {
    type Target = Mutex<VecDeque<CpuItem>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What every worker reads while packets move: the configuration (devices,
/// namespaces, programs, options) and the queues between CPUs. Changed only
/// between runs (`&mut Datapath`).
pub(crate) struct Shared {
    pub opts: DatapathOptions,
    pub namespaces: Vec<Namespace>,
    pub devices: Vec<NetDev>,
    by_ifindex: HashMap<(NsId, u32), DevId>,
    /// Per namespace, ifindex -> device for small ifindexes (the hot path's
    /// dev_get_by_index without hashing).
    ifindex_table: Vec<Vec<Option<DevId>>>,
    pub programs: Vec<Arc<Program>>,
    /// Per CPU: the CPUMAP queue (cpu_map's ptr_ring), filled by any CPU.
    pub cpu_queues: Vec<CpuQueue>,
    /// Packets of the datapath's that a host stack holds for a neighbour.
    pub stack_queued: QueuedIds,
    pub trace_on: bool,
    pub record_drops: bool,
    /// Time each CPU's NAPI polls (`set_measure_busy`).
    pub measure_busy: bool,
    pub capture_on: HashSet<(DevId, Hook)>,
    /// AF_PACKET tap points recorded (`--capture DEV:rx|tx`).
    pub tap_on: HashSet<(DevId, Tap)>,
    /// The earliest time a qdisc asked to be run again at
    /// (qdisc_watchdog_schedule_ns); u64::MAX for none.
    pub next_watchdog: std::sync::atomic::AtomicU64,
}

const IFINDEX_TABLE_MAX: u32 = 4096;

impl Shared {
    #[inline]
    pub fn dev_by_ifindex(&self, ns: NsId, ifindex: u32) -> Option<DevId> {
        if ifindex < IFINDEX_TABLE_MAX {
            return self
                .ifindex_table
                .get(ns.0)
                .and_then(|t| t.get(ifindex as usize).copied().flatten());
        }
        self.by_ifindex.get(&(ns, ifindex)).copied()
    }

    pub fn ns_name(&self, ns: NsId) -> &str {
        self.namespaces
            .get(ns.0)
            .map(|n| n.name.as_str())
            .unwrap_or("?")
    }

    /// Where program `id` is in `programs` (0: none, as a DEVMAP/CPUMAP
    /// entry without a program says).
    pub fn program_index(&self, id: u32) -> Option<usize> {
        if id == 0 {
            return None;
        }
        self.programs.iter().position(|p| p.id == id)
    }

    fn index_device(&mut self, ns: NsId, ifindex: u32, id: DevId) {
        self.by_ifindex.insert((ns, ifindex), id);
        if ifindex < IFINDEX_TABLE_MAX {
            if self.ifindex_table.len() <= ns.0 {
                self.ifindex_table.resize(ns.0 + 1, Vec::new());
            }
            let t = &mut self.ifindex_table[ns.0];
            if t.len() <= ifindex as usize {
                t.resize(ifindex as usize + 1, None);
            }
            t[ifindex as usize] = Some(id);
        }
    }
}

/// The whole datapath: the shared configuration, one state per CPU, and the
/// records (sinks, traces) of the deterministic run.
pub struct Datapath {
    sh: Shared,
    cpus: Vec<CpuState>,
    rec: Records,
    /// Datapath-wide device serials (the source of derived MACs): the next
    /// free one, and those taken.
    next_serial: u32,
    serials: HashSet<u32>,
    /// The newest timestamp injected (the virtual clock's now).
    now: u64,
    /// qdisc_alloc_handle's counter (8001:, 8002:, ...).
    autohandle: u32,
    /// Each namespace's tc actions (`tc actions add`, filters' actions).
    tc_actions: HashMap<NsId, crate::sched::act_api::ActionTable>,
}

impl Datapath {
    pub fn new(opts: DatapathOptions) -> Result<Datapath, DatapathError> {
        let cpus = opts.possible_cpus.max(1);
        if opts.workers == 0 {
            return Err(errno(EINVAL, "workers must be at least 1"));
        }
        if cpus > NR_CPUS || opts.workers > NR_CPUS {
            return Err(errno(
                EINVAL,
                format!(
                    "{} possible CPUs / {} workers: at most NR_CPUS = {NR_CPUS}",
                    cpus, opts.workers
                ),
            ));
        }
        if opts.workers > cpus {
            return Err(DatapathError::NotSupported(format!(
                "multi-worker mode with {} workers on {} possible CPUs: a worker is a CPU \
                 (its per-CPU map values); load the programs with possible_cpus >= workers",
                opts.workers, cpus
            )));
        }
        if opts.threads {
            let online = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if opts.workers > online {
                return Err(errno(
                    EINVAL,
                    format!(
                        "--threads with {} workers on a machine with {online} CPUs: \
                         at most one worker thread per CPU",
                        opts.workers
                    ),
                ));
            }
        }
        if opts.napi_budget == 0 {
            return Err(errno(EINVAL, "napi_budget must be at least 1"));
        }
        let start = std::time::Instant::now();
        let states = (0..cpus)
            .map(|cpu| CpuState::new(cpu, &opts, start))
            .collect();
        Ok(Datapath {
            sh: Shared {
                cpu_queues: (0..cpus)
                    .map(|_| CpuQueue(Mutex::new(VecDeque::new())))
                    .collect(),
                opts,
                namespaces: Vec::new(),
                devices: Vec::new(),
                by_ifindex: HashMap::new(),
                ifindex_table: Vec::new(),
                programs: Vec::new(),
                stack_queued: QueuedIds::default(),
                trace_on: false,
                measure_busy: false,
                record_drops: false,
                capture_on: HashSet::new(),
                tap_on: HashSet::new(),
                next_watchdog: std::sync::atomic::AtomicU64::new(u64::MAX),
            },
            cpus: states,
            rec: Records::new(1, 1),
            next_serial: 2,
            serials: HashSet::new(),
            now: 0,
            autohandle: 0x8000_0000,
            tc_actions: HashMap::new(),
        })
    }

    pub fn options(&self) -> &DatapathOptions {
        &self.sh.opts
    }

    /// How many frames a replay should inject per `run()`: one NAPI poll's
    /// worth when the workers take turns (the order `skiff run` keeps); with
    /// threads, 16 polls per worker, so that starting and meeting the threads
    /// is paid per thousands of frames (still within the NIC rings).
    pub fn run_batch(&self) -> usize {
        if self.sh.opts.threads && self.sh.opts.workers > 1 {
            NAPI_POLL_WEIGHT * 16 * self.sh.opts.workers
        } else {
            NAPI_POLL_WEIGHT
        }
    }

    /// Programs tail calls and DEVMAP/CPUMAP entries may name (by `Program::id`).
    pub fn register_programs(&mut self, progs: &[Arc<Program>]) {
        for p in progs {
            if !self.sh.programs.iter().any(|q| q.id == p.id) {
                self.sh.programs.push(p.clone());
            }
        }
        for c in &mut self.cpus {
            c.vm.env.set_programs(self.sh.programs.clone());
        }
    }

    /// Record trace events (one per hook a packet passes).
    pub fn set_trace(&mut self, on: bool) {
        self.sh.trace_on = on;
    }

    /// Keep a record (reason and where) of every drop for `drops()`; drops
    /// are always counted by reason. Tracing records them too.
    pub fn set_record_drops(&mut self, on: bool) {
        self.sh.record_drops = on;
    }

    /// Count the time each CPU spends in NAPI polls that did work
    /// (`CountersReport::cpu_busy_ns`): two clock reads per poll, so only
    /// when asked (a live run's utilisation metrics).
    pub fn set_measure_busy(&mut self, on: bool) {
        self.sh.measure_busy = on;
    }

    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.rec.trace)
    }

    /// Record what enters and leaves `hook` on `dev`.
    pub fn capture(&mut self, dev: DevId, hook: Hook) {
        self.sh.capture_on.insert((dev, hook));
    }

    /// Record what an AF_PACKET socket on `dev` sees at `tap` (tcpdump -i
    /// DEV: both taps; `-Q in` / `-Q out`: one).
    pub fn capture_tap(&mut self, dev: DevId, tap: Tap) {
        self.sh.tap_on.insert((dev, tap));
    }

    pub fn take_captures(&mut self) -> Vec<CaptureRecord> {
        std::mem::take(&mut self.rec.captures)
    }

    /// What NICs transmitted since the last take, each frame in a Vec of its own.
    pub fn take_transmitted(&mut self) -> Vec<Transmitted> {
        let mut out = std::mem::take(&mut self.rec.transmitted);
        let v = out
            .drain(..)
            .map(|t| {
                let frame = t.frame().to_vec();
                self.cpus[0].recycle_vec(t.buf);
                Transmitted {
                    dev: t.dev,
                    ifindex: t.ifindex,
                    id: t.id,
                    ts_ns: t.ts,
                    frame,
                }
            })
            .collect();
        self.rec.transmitted = out;
        v
    }

    /// Hand every transmitted frame to `f` as it lies in its buffer and give
    /// the buffer back to the frame pool (no copy, no allocation): the sink
    /// of a live device, a pcap writer, a benchmark.
    pub fn drain_transmitted(&mut self, mut f: impl FnMut(TransmittedRef<'_>)) {
        let mut out = std::mem::take(&mut self.rec.transmitted);
        for t in out.drain(..) {
            f(TransmittedRef {
                dev: t.dev,
                ifindex: t.ifindex,
                id: t.id,
                ts_ns: t.ts,
                frame: t.frame(),
            });
            self.cpus[0].recycle_vec(t.buf);
        }
        self.rec.transmitted = out;
    }

    pub fn take_delivered(&mut self) -> Vec<Delivered> {
        std::mem::take(&mut self.rec.delivered)
    }

    /// Frames in the AF_XDP queue of `dev`'s rx queue `queue`.
    pub fn take_xsk(&mut self, dev: DevId, queue: u32) -> Vec<XskFrame> {
        self.rec.xsk.remove(&(dev, queue)).unwrap_or_default()
    }

    /// Every non-empty AF_XDP queue: (device, rx queue).
    pub fn xsk_queues(&self) -> Vec<(DevId, u32)> {
        self.rec.xsk.keys().copied().collect()
    }

    /// Give a buffer back to the frame pool (e.g. a transmitted frame written
    /// out). Only whole pages are kept: their bytes need no clearing (a frame
    /// is always written before it is read).
    pub fn recycle(&mut self, frame: Vec<u8>) {
        self.cpus[0].recycle_vec(frame);
    }

    /// The newest drop records (reason and where); kept when tracing or
    /// `set_record_drops(true)`.
    pub fn drops(&self) -> impl Iterator<Item = &DropRecord> {
        self.rec.drop_log.iter()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn shared<T: Sync>() {}
    fn send<T: Send>() {}
    shared::<Shared>();
    send::<CpuState>();
    send::<Records>();
    let _ = std::marker::PhantomData::<HookCounters>;
}
