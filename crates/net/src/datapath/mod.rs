//! The datapath: devices (NIC, veth, netkit, loopback) in namespaces, their XDP
//! and TC hooks, redirects, sk_buff building and GRO, and the engine that carries
//! every packet to exactly one end (transmitted, delivered or dropped with a reason).
//!
//! # API (for the CLI and the topology builder)
//!
//! ```text
//! let mut dp = Datapath::new(DatapathOptions { deterministic: true, workers: 1, possible_cpus, napi_budget: 64, gro: true })?;
//!     // workers: 1..=possible_cpus (more: NotSupported("multi-worker mode ..."); 0: EINVAL)
//! let host: NsId = dp.add_netns("host")?;          // every namespace gets `lo` (ifindex 1 in it)
//! let pod:  NsId = dp.add_netns("pod1")?;
//! let eth0: DevId = dp.add_device(host, DeviceSpec::nic("eth0", mac, 4 /* rx queues */))?;
//! let nk:   DevId = dp.add_device(host, DeviceSpec::netkit("nk0", Some(pod), "eth0" /* peer name */))?;
//! let veth: DevId = dp.add_device(host, DeviceSpec::veth("veth0", Some(pod), "eth1"))?;
//!     // pairs return the first end (netkit: the primary); dp.peer(dev) is the other.
//!     // DeviceSpec { name, kind, mac, mtu, up, ifindex, txqueuelen } is public; DeviceKind::
//!     // Nic{rx_queues} | Veth{peer_name, peer_ns, peer_mac} |
//!     // Netkit{peer_name, peer_ns, mode, policy, peer_policy, scrub, peer_scrub, peer_mac}
//! dp.device(ns, "eth0") -> Option<DevId>;  dp.dev_by_ifindex(ns, ifindex);  dp.ifindex(dev);
//! dp.dev_name(dev); dp.dev_netns(dev); dp.mac(dev); dp.loopback(ns); dp.devices()
//! dp.set_up(dev, bool)?; dp.set_mtu(dev, mtu)?;
//! dp.stack_mut(ns)? -> RwLockWriteGuard<HostStack>   // addresses, routes, rules, neighbours
//! dp.register_programs(&collection.programs);        // tail-call and DEVMAP/CPUMAP-entry targets
//! dp.attach_xdp(dev, prog, XdpMode::Native | XdpMode::Generic)?;  dp.detach_xdp(dev, mode)?
//! dp.attach_tc(dev, TcDirection::Ingress | Egress, TcAttach::ClsBpf { prio, handle, classid }, prog)?;
//! dp.attach_tc(dev, dir, TcAttach::Tcx(MprogOrder::Append | Prepend | Before(id) | After(id) | Replace(id)), prog)?;
//! dp.attach_netkit(primary, NetkitSide::Primary | NetkitSide::Peer, MprogOrder::Append, prog)?;
//!     // through the peer: Err(DatapathError::Errno { errno: EACCES, .. }) as netkit_dev_fetch;
//!     // on a non-netkit device ENXIO.
//! let id: PacketId = dp.inject(dev, &frame, ts_ns)?;  // NIC: from the wire (RSS picks the
//!                                                     // queue); others: received on that device
//!                                                     // (a veth with native XDP: through its ring,
//!                                                     // as from its peer's xmit, so its XDP runs)
//! dp.run();                                           // until every queue is empty
//! dp.finish();                                        // end of input: unresolved neighbours -> NEIGH_FAILED
//! dp.take_transmitted() -> Vec<Transmitted { dev, ifindex, id, ts_ns, frame }>   // out of NICs
//! dp.recycle(frame)                                   // give a written-out buffer back to the pool
//! dp.xsk_queues() -> Vec<(DevId, rxq)>;  dp.take_xsk(dev, rxq) -> Vec<XskFrame { id, slot, ts_ns, frame }>
//! dp.take_delivered() -> Vec<Delivered { dev, ifindex, id, ts_ns, by: "stack" | "tc-ingress" | .., frame }>
//! dp.counters() -> CountersReport   // serde: conservation {in, originated, transmitted, delivered,
//!                                   // dropped, in_flight}, per device stats (ip -s link) and
//!                                   // hook -> verdict name -> {packets, bytes}, drops per reason
//! dp.conservation(); dp.stats(dev); dp.hook_count(dev, Hook::Xdp, verdict_code)
//! dp.cpu_polled() -> &[u64]         // per CPU: packets taken from its queues (also counters().cpu_polled)
//! dp.drops() -> impl Iterator<&DropRecord { id, reason, iface, ifindex, hook, prog, insn, error }>
//! dp.set_trace(true); dp.take_trace() -> Vec<TraceEvent>  // .to_text(), .to_json() (pwru keys:
//!                                   // skb, cpu, iface, func, proto, len, tuple; plus prog, verdict, target)
//! dp.capture(dev, Hook::Xdp | TcIngress | TcEgress | Netkit | Xmit | ...);
//! dp.take_captures() -> Vec<CaptureRecord { ifindex, iface, hook, point: Entry | Exit, id, verdict, ts_ns, bytes }>
//! ```
//!
//! Run to completion per NAPI poll (budget 64): each poll ends with
//! xdp_do_flush (the XDP bulk queue), the GRO flush and the qdiscs' run.
//!
//! Workers: worker i is CPU i — its own `Vm` with `env.cpu = i`, so
//! `bpf_get_smp_processor_id()` is i and per-CPU map values are slot i — and
//! serves NIC rx queue q when q % workers == i (one worker per rx queue when
//! workers = rx queues). Every CPU below `possible_cpus` has a context (VM,
//! backlog, veth rings, CPUMAP queue); CPUs without a worker only run what
//! CPUMAP sends them. A packet stays on the CPU it came in on (netif_rx puts it
//! on that CPU's backlog, veth_xmit in the peer's ring of that CPU, netkit runs
//! in the sender's context) until a CPUMAP redirect moves it to the target
//! CPU. Frames injected on non-NIC devices arrive on CPU 0. The workers run in
//! turn on the calling thread (CPU 0's polls, then CPU 1's, ...), so a run is
//! deterministic and its trace (`cpu` field) reproducible; they are not OS
//! threads.
//!
//! In deterministic mode the programs' clock (`bpf_ktime_get_ns`) is the
//! timestamp of the packet being processed. Every packet ends once:
//! `in + originated == transmitted + delivered + dropped` (+ `in_flight` while
//! queues are not empty).

pub mod counters;
pub mod device;
mod engine;
pub mod flow;
pub mod gro;
pub mod nic;
pub mod stack_port;
pub mod tc;
pub mod trace;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use skiff_vm::{Clock, ProgType, Program, Vm};

use crate::buff::{SkBuff, XdpBuff};
use crate::helpers::{fib, NetNs, NsDevice, FIB_LOOKUP_SIZE};

pub use counters::{
    Conservation, CountersReport, DevStats, DeviceReport, DropRecord, Hook, PktBytes,
};
pub use device::{
    DeviceKind, DeviceSpec, NetkitMode, NetkitPolicy, NetkitScrub, NetkitSide, NETKIT_DROP,
    NETKIT_NEXT, NETKIT_PASS, NETKIT_REDIRECT,
};
pub use stack_port::HostStack;
pub use tc::{MprogOrder, TcAttach, TcDirection};
pub use trace::{CapturePoint, CaptureRecord, TraceEvent};

use counters::HookCounters;
use device::{Device, Driver};
use stack_port::StackDevice;

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
    /// serves the NIC rx queues q with q % workers == i. They run in turn on
    /// the calling thread (see the module doc).
    pub workers: usize,
    /// Values per per-CPU map element the programs were loaded with
    /// (LoadOptions::possible_cpus); CPUMAP entries name CPUs below it.
    pub possible_cpus: usize,
    /// NAPI budget per poll.
    pub napi_budget: usize,
    /// GRO on NIC and veth (NAPI) receive.
    pub gro: bool,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        DatapathOptions {
            deterministic: true,
            workers: 1,
            possible_cpus: 1,
            napi_budget: NAPI_POLL_WEIGHT,
            gro: true,
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

fn errno(errno: i32, msg: impl Into<String>) -> DatapathError {
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

/// A packet on its way: its id, the timestamp it came in with, its sk_buff.
pub(crate) struct Pkt {
    pub id: PacketId,
    pub ts: u64,
    pub skb: SkBuff,
}

/// An XDP frame on its way (no sk_buff yet).
pub(crate) struct XPkt {
    pub id: PacketId,
    pub ts: u64,
    pub xdp: XdpBuff,
}

pub(crate) enum RxItem {
    Xdp(XPkt),
    Skb(Pkt),
}

/// One namespace's state helpers may read while a program runs.
pub struct NsShared {
    devices: RwLock<Vec<NsDevice>>,
    stack: RwLock<HostStack>,
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

struct Namespace {
    name: String,
    shared: Arc<NsShared>,
    lo: DevId,
}

/// A frame the XDP bulk queue holds until the end of the poll (xdp_do_flush).
pub(crate) struct BulkItem {
    pub target: DevId,
    pub pkt: XPkt,
    pub devmap_prog: Option<Arc<Program>>,
}

pub(crate) enum CpuItem {
    Xdp {
        from: DevId,
        pkt: XPkt,
        prog: Option<Arc<Program>>,
    },
    Skb {
        from: DevId,
        pkt: Pkt,
    },
}

/// The whole datapath: namespaces, devices, queues, the CPUs' VMs, counters.
pub struct Datapath {
    opts: DatapathOptions,
    /// The VM of the CPU running now (`cpu`).
    vm: Vm,
    /// One VM per CPU (env.cpu = its index); slot `cpu` holds a placeholder
    /// while that CPU's VM is `vm` (see `switch_cpu`).
    vms: Vec<Vm>,
    /// The CPU (worker) running now.
    cpu: usize,
    /// Packets each CPU took from a queue (NIC rx, veth ring, CPUMAP, backlog).
    cpu_packets: Vec<u64>,
    namespaces: Vec<Namespace>,
    devices: Vec<Device>,
    by_ifindex: HashMap<(NsId, u32), DevId>,
    next_ifindex: u32,
    next_id: u64,
    programs: Vec<Arc<Program>>,
    /// Per CPU: the softnet_data input_pkt_queue netif_rx fills (no RPS: the
    /// CPU that receives).
    backlog: Vec<VecDeque<(DevId, Pkt)>>,
    cpu_queues: Vec<VecDeque<CpuItem>>,
    bulk: Vec<BulkItem>,
    gro: gro::GroTable,
    pool: Vec<Box<[u8]>>,
    transmitted: Vec<Transmitted>,
    delivered: Vec<Delivered>,
    xsk: BTreeMap<(DevId, u32), Vec<XskFrame>>,
    cons: Conservation,
    consumed: u64,
    drop_counts: BTreeMap<&'static str, u64>,
    drop_log: VecDeque<DropRecord>,
    stack_queued: HashSet<PacketId>,
    trace_on: bool,
    trace: Vec<TraceEvent>,
    capture_on: HashSet<(DevId, Hook)>,
    captures: Vec<CaptureRecord>,
    xmit_depth: u32,
    now: u64,
    /// Hook passes since the queues were last empty, and the packets that came
    /// in meanwhile: the loop guard of `run` (see `LOOP_STEPS_PER_PACKET`).
    steps: u64,
    budget_pkts: u64,
}

impl Datapath {
    pub fn new(opts: DatapathOptions) -> Result<Datapath, DatapathError> {
        let cpus = opts.possible_cpus.max(1);
        if opts.workers == 0 {
            return Err(errno(EINVAL, "workers must be at least 1"));
        }
        if opts.workers > cpus {
            return Err(DatapathError::NotSupported(format!(
                "multi-worker mode with {} workers on {} possible CPUs: a worker is a CPU \
                 (its per-CPU map values); load the programs with possible_cpus >= workers",
                opts.workers, cpus
            )));
        }
        if opts.napi_budget == 0 {
            return Err(errno(EINVAL, "napi_budget must be at least 1"));
        }
        let start = std::time::Instant::now();
        let mut vms: Vec<Vm> = (0..cpus)
            .map(|cpu| {
                let mut vm = Vm::new(crate::helper_table());
                vm.env.cpu = cpu as u32;
                // Each CPU its own prandom state (CPU 0 keeps the default seed).
                vm.env.prandom ^= (cpu as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                vm.env.clock = if opts.deterministic {
                    Clock::Virtual(0)
                } else {
                    Clock::Monotonic(start)
                };
                vm
            })
            .collect();
        // CPU 0 runs first; its slot keeps a placeholder.
        let vm = std::mem::replace(&mut vms[0], Vm::new(crate::helper_table()));
        Ok(Datapath {
            opts,
            vm,
            vms,
            cpu: 0,
            cpu_packets: vec![0; cpus],
            namespaces: Vec::new(),
            devices: Vec::new(),
            by_ifindex: HashMap::new(),
            next_ifindex: 2,
            next_id: 1,
            programs: Vec::new(),
            backlog: (0..cpus).map(|_| VecDeque::new()).collect(),
            cpu_queues: (0..cpus).map(|_| VecDeque::new()).collect(),
            bulk: Vec::new(),
            gro: gro::GroTable::default(),
            pool: Vec::new(),
            transmitted: Vec::new(),
            delivered: Vec::new(),
            xsk: BTreeMap::new(),
            cons: Conservation::default(),
            consumed: 0,
            drop_counts: BTreeMap::new(),
            drop_log: VecDeque::new(),
            stack_queued: HashSet::new(),
            trace_on: false,
            trace: Vec::new(),
            capture_on: HashSet::new(),
            captures: Vec::new(),
            xmit_depth: 0,
            now: 0,
            steps: 0,
            budget_pkts: 0,
        })
    }

    pub fn options(&self) -> &DatapathOptions {
        &self.opts
    }

    /// `ip netns add`: a namespace with its own `lo` (ifindex 1, up) and host stack.
    pub fn add_netns(&mut self, name: &str) -> Result<NsId, DatapathError> {
        if self.namespaces.iter().any(|n| n.name == name) {
            return Err(errno(EEXIST, format!("namespace {name} exists")));
        }
        let ns = NsId(self.namespaces.len());
        let lo = DevId(self.devices.len());
        self.namespaces.push(Namespace {
            name: name.to_string(),
            shared: Arc::new(NsShared {
                devices: RwLock::new(Vec::new()),
                stack: RwLock::new(HostStack::new()),
            }),
            lo,
        });
        self.push_device(Device {
            name: "lo".into(),
            ifindex: LOOPBACK_IFINDEX,
            ns,
            mac: [0; 6],
            mtu: 65536,
            up: true,
            driver: Driver::Loopback,
            stats: DevStats::default(),
            xdp_native: None,
            xdp_generic: None,
            tc_ingress: Default::default(),
            tc_egress: Default::default(),
            qdisc: VecDeque::new(),
            txqueuelen: 0,
            hooks: HookCounters::default(),
        });
        Ok(ns)
    }

    pub fn netns(&self, name: &str) -> Option<NsId> {
        self.namespaces
            .iter()
            .position(|n| n.name == name)
            .map(NsId)
    }

    pub fn netns_name(&self, ns: NsId) -> Option<&str> {
        self.namespaces.get(ns.0).map(|n| n.name.as_str())
    }

    /// The namespace's loopback device.
    pub fn loopback(&self, ns: NsId) -> Option<DevId> {
        self.namespaces.get(ns.0).map(|n| n.lo)
    }

    fn ns_ok(&self, ns: NsId) -> Result<(), DatapathError> {
        if ns.0 < self.namespaces.len() {
            Ok(())
        } else {
            Err(DatapathError::NoNetns(format!("#{}", ns.0)))
        }
    }

    fn push_device(&mut self, d: Device) -> DevId {
        let id = DevId(self.devices.len());
        let ns = d.ns;
        self.by_ifindex.insert((ns, d.ifindex), id);
        let (arp, loopback) = match &d.driver {
            Driver::Netkit { mode, .. } => (*mode == NetkitMode::L2, false),
            Driver::Loopback => (false, true),
            _ => (true, false),
        };
        if let Some(n) = self.namespaces.get(ns.0) {
            n.shared
                .devices
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(NsDevice {
                    ifindex: d.ifindex,
                    mtu: d.mtu,
                    up: d.up,
                });
            let _ = n
                .shared
                .stack
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .add_device(StackDevice {
                    ifindex: d.ifindex,
                    name: d.name.clone(),
                    mac: d.mac,
                    mtu: d.mtu,
                    up: d.up,
                    arp,
                    loopback,
                });
        }
        self.devices.push(d);
        id
    }

    fn alloc_ifindex(&mut self, ns: NsId, want: Option<u32>) -> Result<u32, DatapathError> {
        match want {
            Some(i) => {
                if i == 0 || i == LOOPBACK_IFINDEX || self.by_ifindex.contains_key(&(ns, i)) {
                    return Err(errno(
                        EEXIST,
                        format!("ifindex {i} is taken in namespace {}", self.ns_name(ns)),
                    ));
                }
                self.next_ifindex = self.next_ifindex.max(i + 1);
                Ok(i)
            }
            None => {
                while self.by_ifindex.keys().any(|&(_, i)| i == self.next_ifindex) {
                    self.next_ifindex += 1;
                }
                let i = self.next_ifindex;
                self.next_ifindex += 1;
                Ok(i)
            }
        }
    }

    fn ns_name(&self, ns: NsId) -> &str {
        self.namespaces
            .get(ns.0)
            .map(|n| n.name.as_str())
            .unwrap_or("?")
    }

    fn new_device(
        &self,
        name: &str,
        ifindex: u32,
        ns: NsId,
        mac: [u8; 6],
        spec: &DeviceSpec,
        driver: Driver,
    ) -> Device {
        Device {
            name: name.to_string(),
            ifindex,
            ns,
            mac,
            mtu: spec.mtu,
            up: spec.up,
            driver,
            stats: DevStats::default(),
            xdp_native: None,
            xdp_generic: None,
            tc_ingress: Default::default(),
            tc_egress: Default::default(),
            qdisc: VecDeque::new(),
            txqueuelen: spec.txqueuelen,
            hooks: HookCounters::default(),
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
                format!("device {name} exists in namespace {}", self.ns_name(ns)),
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
        let local_mac = |ifindex: u32| {
            let b = ifindex.to_be_bytes();
            [0x02, 0x00, b[0], b[1], b[2], b[3]]
        };
        match spec.kind.clone() {
            DeviceKind::Nic { rx_queues } => {
                if rx_queues == 0 || rx_queues > 1024 {
                    return Err(errno(
                        EINVAL,
                        format!("device {}: {rx_queues} rx queues (1..1024)", spec.name),
                    ));
                }
                let ifindex = self.alloc_ifindex(ns, spec.ifindex)?;
                let mac = spec.mac.unwrap_or(local_mac(ifindex));
                let drv = Driver::Nic {
                    rx: (0..rx_queues).map(|_| VecDeque::new()).collect(),
                };
                let d = self.new_device(&spec.name, ifindex, ns, mac, &spec, drv);
                Ok(self.push_device(d))
            }
            DeviceKind::Veth {
                peer_name,
                peer_ns,
                peer_mac,
            } => {
                let pns = peer_ns.unwrap_or(ns);
                self.ns_ok(pns)?;
                if pns == ns && peer_name == spec.name {
                    return Err(errno(
                        EEXIST,
                        format!("veth {}: peer has the same name", spec.name),
                    ));
                }
                self.check_name(pns, &peer_name)?;
                let ifindex = self.alloc_ifindex(ns, spec.ifindex)?;
                let pifindex = self.alloc_ifindex(pns, None)?;
                let a = DevId(self.devices.len());
                let b = DevId(a.0 + 1);
                let da = self.new_device(
                    &spec.name,
                    ifindex,
                    ns,
                    spec.mac.unwrap_or(local_mac(ifindex)),
                    &spec,
                    Driver::Veth {
                        peer: b,
                        ring: (0..self.cpu_queues.len())
                            .map(|_| VecDeque::new())
                            .collect(),
                    },
                );
                let db = self.new_device(
                    &peer_name,
                    pifindex,
                    pns,
                    peer_mac.unwrap_or(local_mac(pifindex)),
                    &spec,
                    Driver::Veth {
                        peer: a,
                        ring: (0..self.cpu_queues.len())
                            .map(|_| VecDeque::new())
                            .collect(),
                    },
                );
                self.push_device(da);
                self.push_device(db);
                Ok(a)
            }
            DeviceKind::Netkit {
                peer_name,
                peer_ns,
                mode,
                policy,
                peer_policy,
                scrub,
                peer_scrub,
                peer_mac,
            } => {
                let pns = peer_ns.unwrap_or(ns);
                self.ns_ok(pns)?;
                // netkit_new_link: addresses only in L2 mode.
                if mode != NetkitMode::L2 && (spec.mac.is_some() || peer_mac.is_some()) {
                    return Err(errno(
                        EOPNOTSUPP,
                        format!("netkit {}: a MAC address needs L2 mode", spec.name),
                    ));
                }
                if pns == ns && peer_name == spec.name {
                    return Err(errno(
                        EEXIST,
                        format!("netkit {}: peer has the same name", spec.name),
                    ));
                }
                self.check_name(pns, &peer_name)?;
                let ifindex = self.alloc_ifindex(ns, spec.ifindex)?;
                let pifindex = self.alloc_ifindex(pns, None)?;
                // L2: eth_hw_addr_random (skiff: locally administered, from the ifindex).
                let (ma, mb) = if mode == NetkitMode::L2 {
                    (
                        spec.mac.unwrap_or(local_mac(ifindex)),
                        peer_mac.unwrap_or(local_mac(pifindex)),
                    )
                } else {
                    ([0; 6], [0; 6])
                };
                let a = DevId(self.devices.len());
                let b = DevId(a.0 + 1);
                let da = self.new_device(
                    &spec.name,
                    ifindex,
                    ns,
                    ma,
                    &spec,
                    Driver::Netkit {
                        peer: b,
                        primary: true,
                        mode,
                        policy,
                        scrub,
                        progs: Vec::new(),
                    },
                );
                let db = self.new_device(
                    &peer_name,
                    pifindex,
                    pns,
                    mb,
                    &spec,
                    Driver::Netkit {
                        peer: a,
                        primary: false,
                        mode,
                        policy: peer_policy,
                        scrub: peer_scrub,
                        progs: Vec::new(),
                    },
                );
                self.push_device(da);
                self.push_device(db);
                Ok(a)
            }
        }
    }

    /// The device named `name` in `ns`.
    pub fn device(&self, ns: NsId, name: &str) -> Option<DevId> {
        self.devices
            .iter()
            .position(|d| d.ns == ns && d.name == name)
            .map(DevId)
    }

    pub fn dev_by_ifindex(&self, ns: NsId, ifindex: u32) -> Option<DevId> {
        self.by_ifindex.get(&(ns, ifindex)).copied()
    }

    pub fn ifindex(&self, dev: DevId) -> Option<u32> {
        self.devices.get(dev.0).map(|d| d.ifindex)
    }

    pub fn dev_name(&self, dev: DevId) -> Option<&str> {
        self.devices.get(dev.0).map(|d| d.name.as_str())
    }

    pub fn dev_netns(&self, dev: DevId) -> Option<NsId> {
        self.devices.get(dev.0).map(|d| d.ns)
    }

    pub fn mac(&self, dev: DevId) -> Option<[u8; 6]> {
        self.devices.get(dev.0).map(|d| d.mac)
    }

    /// The other end of a veth or netkit pair.
    pub fn peer(&self, dev: DevId) -> Option<DevId> {
        self.devices.get(dev.0).and_then(|d| d.peer())
    }

    /// Every device: (id, namespace, name, ifindex, kind).
    pub fn devices(&self) -> Vec<(DevId, NsId, String, u32, &'static str)> {
        self.devices
            .iter()
            .enumerate()
            .map(|(i, d)| (DevId(i), d.ns, d.name.clone(), d.ifindex, d.kind_name()))
            .collect()
    }

    fn dev(&self, dev: DevId) -> Result<&Device, DatapathError> {
        self.devices
            .get(dev.0)
            .ok_or_else(|| DatapathError::NoDevice(format!("#{}", dev.0)))
    }

    fn dev_mut(&mut self, dev: DevId) -> Result<&mut Device, DatapathError> {
        self.devices
            .get_mut(dev.0)
            .ok_or_else(|| DatapathError::NoDevice(format!("#{}", dev.0)))
    }

    fn sync_ns_device(&mut self, dev: DevId) {
        let Some(d) = self.devices.get(dev.0) else {
            return;
        };
        let (ifindex, mtu, up) = (d.ifindex, d.mtu, d.up);
        if let Some(n) = self.namespaces.get(d.ns.0) {
            let mut v = n.shared.devices.write().unwrap_or_else(|e| e.into_inner());
            if let Some(x) = v.iter_mut().find(|x| x.ifindex == ifindex) {
                x.mtu = mtu;
                x.up = up;
            }
            let mut s = n.shared.stack.write().unwrap_or_else(|e| e.into_inner());
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

    /// The namespace's host stack (addresses, routes, neighbours), locked for writing.
    pub fn stack_mut(
        &mut self,
        ns: NsId,
    ) -> Result<RwLockWriteGuard<'_, HostStack>, DatapathError> {
        self.ns_ok(ns)?;
        Ok(self.namespaces[ns.0]
            .shared
            .stack
            .write()
            .unwrap_or_else(|e| e.into_inner()))
    }

    /// Programs tail calls and DEVMAP/CPUMAP entries may name (by `Program::id`).
    pub fn register_programs(&mut self, progs: &[Arc<Program>]) {
        for p in progs {
            if !self.programs.iter().any(|q| q.id == p.id) {
                self.programs.push(p.clone());
            }
        }
        self.vm.env.programs = self.programs.clone();
        for vm in &mut self.vms {
            vm.env.programs = self.programs.clone();
        }
    }

    fn program_by_id(&self, id: u32) -> Option<Arc<Program>> {
        self.programs.iter().find(|p| p.id == id).cloned()
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
        match mode {
            XdpMode::Native => {
                if !d.native_xdp() {
                    return Err(errno(
                        EOPNOTSUPP,
                        format!(
                            "device {} ({}) has no native XDP; use generic mode",
                            d.name,
                            d.kind_name()
                        ),
                    ));
                }
                if d.xdp_generic.is_some() {
                    return Err(errno(
                        EEXIST,
                        format!(
                            "device {}: native and generic XDP can't be active at the same time",
                            d.name
                        ),
                    ));
                }
                d.xdp_native = Some(prog);
            }
            XdpMode::Generic => {
                if d.xdp_native.is_some() {
                    return Err(errno(
                        EEXIST,
                        format!(
                            "device {}: native and generic XDP can't be active at the same time",
                            d.name
                        ),
                    ));
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
        match attach {
            TcAttach::ClsBpf {
                prio,
                handle,
                classid,
            } => {
                // tc picks prio 49152 / handle 1 when none are given; 0 means that here.
                let prio = if prio == 0 { 49152 } else { prio };
                let handle = if handle == 0 { 1 } else { handle };
                hook.add_cls(tc::ClsFilter {
                    prio,
                    handle,
                    classid,
                    prog,
                })
                .map_err(|e| {
                    errno(
                        e,
                        format!("device {name}: filter prio {prio} handle {handle} exists"),
                    )
                })
            }
            TcAttach::Tcx(order) => tc::mprog_attach(&mut hook.tcx, prog, order)
                .map_err(|e| errno(e, format!("device {name}: tcx attach ({order:?})"))),
        }
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
        let (target, name) = match &d.driver {
            Driver::Netkit {
                primary: true,
                peer,
                ..
            } => (
                match side {
                    NetkitSide::Primary => primary,
                    NetkitSide::Peer => *peer,
                },
                d.name.clone(),
            ),
            Driver::Netkit { primary: false, .. } => {
                return Err(errno(
                    EACCES,
                    format!(
                        "{} is a netkit peer: programs attach through the primary",
                        d.name
                    ),
                ))
            }
            _ => return Err(errno(ENXIO, format!("{} is not a netkit device", d.name))),
        };
        self.register_programs(std::slice::from_ref(&prog));
        if let Driver::Netkit { progs, .. } = &mut self.dev_mut(target)?.driver {
            tc::mprog_attach(progs, prog, order)
                .map_err(|e| errno(e, format!("netkit {name}: attach ({order:?})")))?;
        }
        Ok(())
    }

    /// Record trace events (one per hook a packet passes).
    pub fn set_trace(&mut self, on: bool) {
        self.trace_on = on;
    }

    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.trace)
    }

    /// Record what enters and leaves `hook` on `dev`.
    pub fn capture(&mut self, dev: DevId, hook: Hook) {
        self.capture_on.insert((dev, hook));
    }

    pub fn take_captures(&mut self) -> Vec<CaptureRecord> {
        std::mem::take(&mut self.captures)
    }

    pub fn take_transmitted(&mut self) -> Vec<Transmitted> {
        std::mem::take(&mut self.transmitted)
    }

    pub fn take_delivered(&mut self) -> Vec<Delivered> {
        std::mem::take(&mut self.delivered)
    }

    /// Frames in the AF_XDP queue of `dev`'s rx queue `queue`.
    pub fn take_xsk(&mut self, dev: DevId, queue: u32) -> Vec<XskFrame> {
        self.xsk.remove(&(dev, queue)).unwrap_or_default()
    }

    /// Every non-empty AF_XDP queue: (device, rx queue).
    pub fn xsk_queues(&self) -> Vec<(DevId, u32)> {
        self.xsk.keys().copied().collect()
    }

    /// Give a buffer back to the frame pool (e.g. a transmitted frame written out).
    pub fn recycle(&mut self, mut frame: Vec<u8>) {
        if frame.capacity() >= crate::buff::PAGE_SIZE && self.pool.len() < 4096 {
            frame.clear();
            frame.resize(crate::buff::PAGE_SIZE, 0);
            self.pool.push(frame.into_boxed_slice());
        }
    }

    /// The newest drop records (reason and where).
    pub fn drops(&self) -> impl Iterator<Item = &DropRecord> {
        self.drop_log.iter()
    }

    /// The conservation totals; in_flight counts what waits in a queue.
    pub fn conservation(&self) -> Conservation {
        let mut c = self.cons;
        let mut n = self.backlog.iter().map(|q| q.len()).sum::<usize>()
            + self.bulk.len()
            + self.gro.len()
            + self.stack_queued.len();
        n += self.cpu_queues.iter().map(|q| q.len()).sum::<usize>();
        for d in &self.devices {
            n += d.qdisc.len();
            match &d.driver {
                Driver::Nic { rx } => n += rx.iter().map(|q| q.len()).sum::<usize>(),
                Driver::Veth { ring, .. } => n += ring.iter().map(|q| q.len()).sum::<usize>(),
                _ => {}
            }
        }
        c.in_flight = n as u64;
        c
    }

    /// Every counter, as a serialisable snapshot.
    pub fn counters(&self) -> CountersReport {
        let devices = self
            .devices
            .iter()
            .map(|d| {
                let mut hooks = BTreeMap::new();
                for h in counters::ALL_HOOKS {
                    let mut m = BTreeMap::new();
                    for (slot, pb) in d.hooks.slots[h.index()].iter().enumerate() {
                        if pb.packets > 0 {
                            m.insert(counters::verdict_name(h, counters::slot_code(slot)), *pb);
                        }
                    }
                    if !m.is_empty() {
                        hooks.insert(h.name(), m);
                    }
                }
                DeviceReport {
                    name: d.name.clone(),
                    ifindex: d.ifindex,
                    netns: self.ns_name(d.ns).to_string(),
                    stats: d.stats,
                    hooks,
                }
            })
            .collect();
        CountersReport {
            conservation: self.conservation(),
            devices,
            drops: self
                .drop_counts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            consumed: self.consumed,
            cpu_polled: self.cpu_packets.clone(),
        }
    }

    /// Per CPU: packets it took from a queue (see `CountersReport::cpu_polled`).
    pub fn cpu_polled(&self) -> &[u64] {
        &self.cpu_packets
    }

    /// Device statistics (`ip -s link`).
    pub fn stats(&self, dev: DevId) -> Option<DevStats> {
        self.devices.get(dev.0).map(|d| d.stats)
    }

    /// Packets and bytes `hook` on `dev` gave verdict `code` (XDP 0-4, TC -1..8, netkit -1/0/2/7).
    pub fn hook_count(&self, dev: DevId, hook: Hook, code: i64) -> PktBytes {
        self.devices
            .get(dev.0)
            .map(|d| d.hooks.slots[hook.index()][counters::verdict_slot(code)])
            .unwrap_or_default()
    }
}
