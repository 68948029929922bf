//! The datapath core, split the way net/core splits it: receive and NAPI
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
mod napi;
pub(crate) mod skb;
pub mod tc;
pub mod trace;
mod xdp;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use parking_lot::Mutex;
use skiff_vm::{ProgType, Program};

use crate::buff::{SkBuff, XdpBuff};
use crate::drivers::{self, DeviceSpec, NetDevice, NetkitSide};
use crate::helpers::{fib, NetNs, NsDevice, FIB_LOOKUP_SIZE};
use crate::sched::{self, Qdisc, QdiscStats};
use crate::stack::{HostStack, StackDevice};

pub use action::{NetkitAction, TcAction, XdpAction};
pub use counters::{
    Conservation, CountersReport, DevStats, DeviceReport, DropRecord, Hook, PktBytes,
};
pub use tc::{MprogOrder, TcAttach, TcDirection};
pub use trace::{CapturePoint, CaptureRecord, TraceEvent};

use counters::HookCounters;
use cpu::{CpuState, Records};

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const ENXIO: i32 = 6;
pub const EACCES: i32 = 13;
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

/// What `push_device` needs of a new device besides its driver.
struct DevConfig {
    name: String,
    mtu: u32,
    up: bool,
    txqueuelen: u32,
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
    pub(crate) qdisc: Option<Mutex<Box<dyn Qdisc>>>,
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
    pub stack_queued: Mutex<HashSet<PacketId>>,
    pub trace_on: bool,
    pub record_drops: bool,
    pub capture_on: HashSet<(DevId, Hook)>,
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
    next_ifindex: u32,
    /// The newest timestamp injected (the virtual clock's now).
    now: u64,
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
                stack_queued: Mutex::new(HashSet::new()),
                trace_on: false,
                record_drops: false,
                capture_on: HashSet::new(),
            },
            cpus: states,
            rec: Records::new(1, 1),
            next_ifindex: 2,
            now: 0,
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

    /// `ip netns add`: a namespace with its own `lo` (ifindex 1, up) and host stack.
    pub fn add_netns(&mut self, name: &str) -> Result<NsId, DatapathError> {
        if self.sh.namespaces.iter().any(|n| n.name == name) {
            return Err(errno(EEXIST, format!("namespace {name} exists")));
        }
        let ns = NsId(self.sh.namespaces.len());
        let lo = DevId(self.sh.devices.len());
        let shared = Arc::new(NsShared {
            devices: RwLock::new(Vec::new()),
            stack: RwLock::new(HostStack::new()),
        });
        self.sh.namespaces.push(Namespace {
            name: name.to_string(),
            shared: shared.clone(),
            lo,
        });
        for c in &mut self.cpus {
            c.add_netns(shared.clone());
        }
        let lo_ops = Box::new(drivers::loopback::Loopback);
        let lo_cfg = DevConfig {
            name: "lo".into(),
            mtu: 65536,
            up: true,
            txqueuelen: 0,
        };
        self.push_device(ns, &lo_cfg, LOOPBACK_IFINDEX, [0; 6], lo_ops);
        Ok(ns)
    }

    pub fn netns(&self, name: &str) -> Option<NsId> {
        self.sh
            .namespaces
            .iter()
            .position(|n| n.name == name)
            .map(NsId)
    }

    pub fn netns_name(&self, ns: NsId) -> Option<&str> {
        self.sh.namespaces.get(ns.0).map(|n| n.name.as_str())
    }

    /// The namespace's loopback device.
    pub fn loopback(&self, ns: NsId) -> Option<DevId> {
        self.sh.namespaces.get(ns.0).map(|n| n.lo)
    }

    fn ns_ok(&self, ns: NsId) -> Result<(), DatapathError> {
        if ns.0 < self.sh.namespaces.len() {
            Ok(())
        } else {
            Err(DatapathError::NoNetns(format!("#{}", ns.0)))
        }
    }

    /// register_netdevice: index it, tell the namespace's helpers and stack,
    /// give it its default qdisc (attach_default_qdiscs).
    fn push_device(
        &mut self,
        ns: NsId,
        spec: &DevConfig,
        ifindex: u32,
        mac: [u8; 6],
        ops: Box<dyn NetDevice>,
    ) -> DevId {
        let id = DevId(self.sh.devices.len());
        let f = ops.features();
        if let Some(n) = self.sh.namespaces.get(ns.0) {
            n.shared
                .devices
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(NsDevice {
                    ifindex,
                    mtu: spec.mtu,
                    up: spec.up,
                });
            let _ = n.shared.stack_write().add_device(StackDevice {
                ifindex,
                name: spec.name.clone(),
                mac,
                mtu: spec.mtu,
                up: spec.up,
                arp: f.arp,
                loopback: f.loopback,
            });
        }
        let qdisc = sched::default_qdisc(ops.as_ref(), spec.txqueuelen, spec.mtu).map(Mutex::new);
        self.sh.index_device(ns, ifindex, id);
        self.sh.devices.push(NetDev {
            name: spec.name.clone(),
            ifindex,
            ns,
            mac,
            mtu: spec.mtu,
            up: spec.up,
            txqueuelen: spec.txqueuelen,
            xdp_native: None,
            xdp_generic: None,
            tc_ingress: Default::default(),
            tc_egress: Default::default(),
            qdisc,
            ops,
        });
        for c in &mut self.cpus {
            c.add_device();
        }
        id
    }

    fn alloc_ifindex(&mut self, ns: NsId, want: Option<u32>) -> Result<u32, DatapathError> {
        match want {
            Some(i) => {
                if i == 0 || i == LOOPBACK_IFINDEX || self.sh.by_ifindex.contains_key(&(ns, i)) {
                    return Err(errno(
                        EEXIST,
                        format!("ifindex {i} is taken in namespace {}", self.sh.ns_name(ns)),
                    ));
                }
                if i > i32::MAX as u32 {
                    return Err(errno(EINVAL, format!("ifindex {i} above INT_MAX")));
                }
                self.next_ifindex = self.next_ifindex.max(i + 1);
                Ok(i)
            }
            None => {
                while self
                    .sh
                    .by_ifindex
                    .keys()
                    .any(|&(_, i)| i == self.next_ifindex)
                {
                    self.next_ifindex += 1;
                }
                let i = self.next_ifindex;
                self.next_ifindex += 1;
                Ok(i)
            }
        }
    }

    fn check_name(&self, ns: NsId, name: &str) -> Result<(), DatapathError> {
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(' ') {
            return Err(errno(
                EINVAL,
                format!("invalid device name {name:?} (1-15 characters, no '/' or space)"),
            ));
        }
        if self.device(ns, name).is_some() {
            return Err(errno(
                EEXIST,
                format!("device {name} exists in namespace {}", self.sh.ns_name(ns)),
            ));
        }
        Ok(())
    }

    /// `ip link add`. Pairs (veth, netkit) create both ends and return the
    /// first (netkit: the primary); `peer()` gives the other end.
    pub fn add_device(&mut self, ns: NsId, spec: DeviceSpec) -> Result<DevId, DatapathError> {
        self.ns_ok(ns)?;
        self.check_name(ns, &spec.name)?;
        // ETH_MIN_MTU .. ETH_MAX_MTU (dev_validate_mtu).
        if spec.mtu < 68 || spec.mtu > 65535 {
            return Err(errno(
                EINVAL,
                format!("device {}: MTU {} outside 68..65535", spec.name, spec.mtu),
            ));
        }
        let first = DevId(self.sh.devices.len());
        let ends = drivers::pair_ends(&spec, ns);
        for (pns, _) in &ends[1..] {
            self.ns_ok(*pns)?;
        }
        let ops = drivers::create(&spec, first, self.sh.cpu_queues.len())?;
        for (pns, pname) in &ends[1..] {
            if *pns == ns && *pname == spec.name {
                return Err(errno(
                    EEXIST,
                    format!("{} {}: peer has the same name", spec.kind.name(), spec.name),
                ));
            }
            self.check_name(*pns, pname)?;
        }
        let mut ifindexes = Vec::new();
        for (i, (pns, _)) in ends.iter().enumerate() {
            ifindexes.push(self.alloc_ifindex(*pns, if i == 0 { spec.ifindex } else { None })?);
        }
        for (i, op) in ops.into_iter().enumerate() {
            let (pns, pname) = &ends[i];
            let ifindex = ifindexes[i];
            let mac = drivers::end_mac(&spec, i, ifindex);
            let cfg = DevConfig {
                name: pname.clone(),
                mtu: spec.mtu,
                up: spec.up,
                txqueuelen: spec.txqueuelen,
            };
            self.push_device(*pns, &cfg, ifindex, mac, op);
        }
        Ok(first)
    }

    /// The device named `name` in `ns`.
    pub fn device(&self, ns: NsId, name: &str) -> Option<DevId> {
        self.sh
            .devices
            .iter()
            .position(|d| d.ns == ns && d.name == name)
            .map(DevId)
    }

    pub fn dev_by_ifindex(&self, ns: NsId, ifindex: u32) -> Option<DevId> {
        self.sh.dev_by_ifindex(ns, ifindex)
    }

    pub fn ifindex(&self, dev: DevId) -> Option<u32> {
        self.sh.devices.get(dev.0).map(|d| d.ifindex)
    }

    pub fn dev_name(&self, dev: DevId) -> Option<&str> {
        self.sh.devices.get(dev.0).map(|d| d.name.as_str())
    }

    pub fn dev_netns(&self, dev: DevId) -> Option<NsId> {
        self.sh.devices.get(dev.0).map(|d| d.ns)
    }

    pub fn mac(&self, dev: DevId) -> Option<[u8; 6]> {
        self.sh.devices.get(dev.0).map(|d| d.mac)
    }

    /// The other end of a veth or netkit pair.
    pub fn peer(&self, dev: DevId) -> Option<DevId> {
        self.sh.devices.get(dev.0).and_then(|d| d.peer())
    }

    /// Every device: (id, namespace, name, ifindex, kind).
    pub fn devices(&self) -> Vec<(DevId, NsId, String, u32, &'static str)> {
        self.sh
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (DevId(i), d.ns, d.name.clone(), d.ifindex, d.kind()))
            .collect()
    }

    fn dev_mut(&mut self, dev: DevId) -> Result<&mut NetDev, DatapathError> {
        self.sh
            .devices
            .get_mut(dev.0)
            .ok_or_else(|| DatapathError::NoDevice(format!("#{}", dev.0)))
    }

    fn dev(&self, dev: DevId) -> Result<&NetDev, DatapathError> {
        self.sh
            .devices
            .get(dev.0)
            .ok_or_else(|| DatapathError::NoDevice(format!("#{}", dev.0)))
    }

    fn sync_ns_device(&mut self, dev: DevId) {
        let Some(d) = self.sh.devices.get(dev.0) else {
            return;
        };
        let (ifindex, mtu, up) = (d.ifindex, d.mtu, d.up);
        if let Some(n) = self.sh.namespaces.get(d.ns.0) {
            let mut v = n.shared.devices.write().unwrap_or_else(|e| e.into_inner());
            if let Some(x) = v.iter_mut().find(|x| x.ifindex == ifindex) {
                x.mtu = mtu;
                x.up = up;
            }
            let mut s = n.shared.stack_write();
            s.set_device_mtu(ifindex, mtu);
            s.set_device_up(ifindex, up);
        }
    }

    /// `ip link set dev X up|down`.
    pub fn set_up(&mut self, dev: DevId, up: bool) -> Result<(), DatapathError> {
        self.dev_mut(dev)?.up = up;
        self.sync_ns_device(dev);
        Ok(())
    }

    /// `ip link set dev X mtu N`.
    pub fn set_mtu(&mut self, dev: DevId, mtu: u32) -> Result<(), DatapathError> {
        if !(68..=65535).contains(&mtu) {
            return Err(errno(EINVAL, format!("MTU {mtu} outside 68..65535")));
        }
        self.dev_mut(dev)?.mtu = mtu;
        self.sync_ns_device(dev);
        Ok(())
    }

    /// `tc qdisc replace dev X root KIND`: a new root qdisc from the registry
    /// (`sched::QDISCS`), or none for "noqueue"; what the old one held is
    /// dropped (qdisc_reset, counted as QDISC_DROP).
    pub fn set_qdisc(&mut self, dev: DevId, kind: &str) -> Result<(), DatapathError> {
        let d = self.dev(dev)?;
        let new = sched::create(kind, d.ops.as_ref(), d.txqueuelen, d.mtu)?;
        let old = std::mem::replace(&mut self.dev_mut(dev)?.qdisc, new.map(Mutex::new));
        if let Some(q) = old {
            let mut held = Vec::new();
            q.into_inner().reset(&mut |p| held.push(p));
            let mut c = self.cpu_ctx(0);
            for p in held {
                c.drop_skb(
                    p,
                    crate::drop::DropReason::QdiscDrop,
                    cpu::at(dev, Hook::Xmit),
                );
            }
        }
        Ok(())
    }

    /// `tc -s qdisc show dev X`: the root qdisc's kind and statistics.
    pub fn qdisc_stats(&self, dev: DevId) -> Option<(&'static str, QdiscStats)> {
        let d = self.sh.devices.get(dev.0)?;
        match &d.qdisc {
            Some(q) => {
                let q = q.lock();
                Some((q.kind(), q.stats()))
            }
            None => Some(("noqueue", QdiscStats::default())),
        }
    }

    /// The namespace's host stack (addresses, routes, neighbours), locked for writing.
    pub fn stack_mut(
        &mut self,
        ns: NsId,
    ) -> Result<RwLockWriteGuard<'_, HostStack>, DatapathError> {
        self.ns_ok(ns)?;
        Ok(self.sh.namespaces[ns.0].shared.stack_write())
    }

    /// Programs tail calls and DEVMAP/CPUMAP entries may name (by `Program::id`).
    pub fn register_programs(&mut self, progs: &[Arc<Program>]) {
        for p in progs {
            if !self.sh.programs.iter().any(|q| q.id == p.id) {
                self.sh.programs.push(p.clone());
            }
        }
        for c in &mut self.cpus {
            c.vm.env.programs = self.sh.programs.clone();
        }
    }

    /// `ip link set dev X xdp|xdpgeneric obj ...` (dev_xdp_attach): one program
    /// per device and mode, replacing the previous one; native only on NIC and
    /// veth (EOPNOTSUPP), not both modes at once (EEXIST).
    pub fn attach_xdp(
        &mut self,
        dev: DevId,
        prog: Arc<Program>,
        mode: XdpMode,
    ) -> Result<(), DatapathError> {
        if prog.prog_type != ProgType::Xdp {
            return Err(errno(
                EINVAL,
                format!("program {} is {:?}, not XDP", prog.name, prog.prog_type),
            ));
        }
        self.register_programs(std::slice::from_ref(&prog));
        let d = self.dev_mut(dev)?;
        let both = || {
            errno(
                EEXIST,
                format!(
                    "device {}: native and generic XDP can't be active at the same time",
                    d.name
                ),
            )
        };
        match mode {
            XdpMode::Native => {
                if !d.ops.features().native_xdp {
                    return Err(errno(
                        EOPNOTSUPP,
                        format!(
                            "device {} ({}) has no native XDP; use generic mode",
                            d.name,
                            d.kind()
                        ),
                    ));
                }
                if d.xdp_generic.is_some() {
                    return Err(both());
                }
                d.xdp_native = Some(prog);
            }
            XdpMode::Generic => {
                if d.xdp_native.is_some() {
                    return Err(both());
                }
                d.xdp_generic = Some(prog);
            }
        }
        Ok(())
    }

    pub fn detach_xdp(&mut self, dev: DevId, mode: XdpMode) -> Result<(), DatapathError> {
        let d = self.dev_mut(dev)?;
        match mode {
            XdpMode::Native => d.xdp_native = None,
            XdpMode::Generic => d.xdp_generic = None,
        }
        Ok(())
    }

    /// A TC program on the device's clsact ingress or egress: a cls_bpf
    /// direct-action filter (prio/handle) or a tcx chain member.
    pub fn attach_tc(
        &mut self,
        dev: DevId,
        dir: TcDirection,
        attach: TcAttach,
        prog: Arc<Program>,
    ) -> Result<(), DatapathError> {
        let ok_type = match attach {
            TcAttach::Tcx(_) => prog.prog_type == ProgType::SchedCls,
            TcAttach::ClsBpf { .. } => {
                matches!(prog.prog_type, ProgType::SchedCls | ProgType::SchedAct)
            }
        };
        if !ok_type {
            return Err(errno(
                EINVAL,
                format!(
                    "program {} is {:?}, not a TC classifier",
                    prog.name, prog.prog_type
                ),
            ));
        }
        self.register_programs(std::slice::from_ref(&prog));
        let d = self.dev_mut(dev)?;
        let name = d.name.clone();
        let hook = match dir {
            TcDirection::Ingress => &mut d.tc_ingress,
            TcDirection::Egress => &mut d.tc_egress,
        };
        hook.attach(attach, prog)
            .map_err(|(e, what)| errno(e, format!("device {name}: {what}")))
    }

    /// BPF_NETKIT_PRIMARY / BPF_NETKIT_PEER attach through the primary's
    /// device (netkit_dev_fetch): ENXIO if not netkit, EACCES through the peer.
    pub fn attach_netkit(
        &mut self,
        primary: DevId,
        side: NetkitSide,
        order: MprogOrder,
        prog: Arc<Program>,
    ) -> Result<(), DatapathError> {
        if prog.prog_type != ProgType::SchedCls {
            return Err(errno(
                EINVAL,
                format!(
                    "program {} is {:?}; netkit takes SCHED_CLS programs",
                    prog.name, prog.prog_type
                ),
            ));
        }
        let d = self.dev(primary)?;
        let name = d.name.clone();
        let target = match d.ops.as_netkit() {
            Some(nk) if nk.primary => match side {
                NetkitSide::Primary => primary,
                NetkitSide::Peer => nk.peer,
            },
            Some(_) => {
                return Err(errno(
                    EACCES,
                    format!("{name} is a netkit peer: programs attach through the primary"),
                ))
            }
            None => return Err(errno(ENXIO, format!("{name} is not a netkit device"))),
        };
        self.register_programs(std::slice::from_ref(&prog));
        if let Some(nk) = self.dev_mut(target)?.ops.as_netkit_mut() {
            tc::mprog_attach(&mut nk.progs, prog, order)
                .map_err(|e| errno(e, format!("netkit {name}: attach ({order:?})")))?;
        }
        Ok(())
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

    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.rec.trace)
    }

    /// Record what enters and leaves `hook` on `dev`.
    pub fn capture(&mut self, dev: DevId, hook: Hook) {
        self.sh.capture_on.insert((dev, hook));
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

    /// The conservation totals; in_flight counts what waits in a queue.
    pub fn conservation(&self) -> Conservation {
        let mut c = Conservation::default();
        let mut n = 0usize;
        for s in &self.cpus {
            c.add(&s.cnt.cons);
            n += s.in_flight();
        }
        n += self.sh.stack_queued.lock().len();
        n += self
            .sh
            .cpu_queues
            .iter()
            .map(|q| q.lock().len())
            .sum::<usize>();
        for d in &self.sh.devices {
            n += d.qdisc.as_ref().map(|q| q.lock().qlen()).unwrap_or(0);
            n += d.ops.rx_pending();
        }
        c.in_flight = n as u64;
        c
    }

    /// Every counter, as a serialisable snapshot (per-CPU counters summed).
    pub fn counters(&self) -> CountersReport {
        let devices = (0..self.sh.devices.len())
            .map(|i| self.device_report(DevId(i)))
            .collect();
        let mut drops = BTreeMap::new();
        for s in &self.cpus {
            for (r, n) in s.cnt.drop_counts() {
                *drops.entry(r.name().to_string()).or_insert(0) += n;
            }
        }
        CountersReport {
            conservation: self.conservation(),
            devices,
            drops,
            consumed: self.cpus.iter().map(|s| s.cnt.consumed).sum(),
            cpu_polled: self.cpus.iter().map(|s| s.cnt.polled).collect(),
        }
    }

    fn device_report(&self, dev: DevId) -> DeviceReport {
        let d = &self.sh.devices[dev.0];
        let mut hooks = BTreeMap::new();
        for h in counters::ALL_HOOKS {
            let mut m = BTreeMap::new();
            for slot in 0..counters::N_VERDICTS {
                let pb = self.hook_slot(dev, h, slot);
                if pb.packets > 0 {
                    m.insert(counters::verdict_name(h, counters::slot_code(slot)), pb);
                }
            }
            if !m.is_empty() {
                hooks.insert(h.name(), m);
            }
        }
        DeviceReport {
            name: d.name.clone(),
            ifindex: d.ifindex,
            netns: self.sh.ns_name(d.ns).to_string(),
            stats: self.stats(dev).unwrap_or_default(),
            hooks,
        }
    }

    fn hook_slot(&self, dev: DevId, hook: Hook, slot: usize) -> PktBytes {
        let mut pb = PktBytes::default();
        for s in &self.cpus {
            if let Some(h) = s.cnt.hooks.get(dev.0) {
                let x = h.slots[hook.index()][slot];
                pb.packets += x.packets;
                pb.bytes += x.bytes;
            }
        }
        pb
    }

    /// Per CPU: packets it took from a queue (see `CountersReport::cpu_polled`).
    pub fn cpu_polled(&self) -> Vec<u64> {
        self.cpus.iter().map(|s| s.cnt.polled).collect()
    }

    /// Device statistics (`ip -s link`), summed over the CPUs (the kernel's
    /// per-CPU dev->lstats / tstats).
    pub fn stats(&self, dev: DevId) -> Option<DevStats> {
        self.sh.devices.get(dev.0)?;
        let mut t = DevStats::default();
        for s in &self.cpus {
            if let Some(x) = s.cnt.dev.get(dev.0) {
                t.add(x);
            }
        }
        Some(t)
    }

    /// Packets and bytes `hook` on `dev` gave verdict `code` (XDP 0-4, TC -1..8, netkit -1/0/2/7).
    pub fn hook_count(&self, dev: DevId, hook: Hook, code: i64) -> PktBytes {
        self.hook_slot(dev, hook, counters::verdict_slot(code))
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
