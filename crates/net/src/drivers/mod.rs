//! Device drivers, one file each, as drivers/net/*.c: every kind implements
//! `NetDevice` (the kernel's `net_device_ops`: ndo_start_xmit, ndo_xdp_xmit,
//! and its NAPI rings). What every device has (name, ifindex, MTU, hooks,
//! qdisc) is `core::NetDev`; what a kind adds lives in its driver.
//!
//! A new kind is one file here and one line in `create`.

pub mod loopback;
pub mod netkit;
pub mod nic;
pub mod rss;
pub mod veth;

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

use crate::core::cpu::Cpu;
use crate::core::{errno, DatapathError, DevId, NsId, Pkt, RxItem, XPkt, EOPNOTSUPP};

pub use netkit::Netkit;

/// NETKIT_L2 / NETKIT_L3 (include/uapi/linux/if_link.h: enum netkit_mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum NetkitMode {
    L2,
    #[default]
    L3,
}

/// As `ip link add type netkit mode l2|l3` spells it.
impl std::fmt::Display for NetkitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetkitMode::L2 => "l2",
            NetkitMode::L3 => "l3",
        })
    }
}

/// enum netkit_action: the default policies (only PASS and DROP may be set,
/// netkit_check_policy) and the program verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum NetkitPolicy {
    #[default]
    Pass,
    Drop,
}

/// As `ip link add type netkit policy pass|drop` spells it.
impl std::fmt::Display for NetkitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetkitPolicy::Pass => "pass",
            NetkitPolicy::Drop => "drop",
        })
    }
}

/// enum netkit_scrub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum NetkitScrub {
    None,
    #[default]
    Default,
}

/// As `ip link add type netkit scrub default|none` spells it.
impl std::fmt::Display for NetkitScrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetkitScrub::None => "none",
            NetkitScrub::Default => "default",
        })
    }
}

pub const NETKIT_NEXT: i64 = -1;
pub const NETKIT_PASS: i64 = 0;
pub const NETKIT_DROP: i64 = 2;
pub const NETKIT_REDIRECT: i64 = 7;

/// BPF_NETKIT_PRIMARY / BPF_NETKIT_PEER: which side's chain a program joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetkitSide {
    Primary,
    Peer,
}

/// As bpftool spells the attach point (`netkit_primary`, `netkit_peer`).
impl std::fmt::Display for NetkitSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetkitSide::Primary => "primary",
            NetkitSide::Peer => "peer",
        })
    }
}

/// The kind of device to create. `Ns` names the peer's namespace: an `NsId`
/// for the datapath, a namespace name in a topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind<Ns = NsId> {
    /// A physical NIC with `rx_queues` receive queues (RSS spreads flows).
    Nic { rx_queues: u32 },
    /// A veth pair; the peer is created in `peer_ns` (None: the same namespace).
    Veth {
        peer_name: String,
        peer_ns: Option<Ns>,
        peer_mac: Option<[u8; 6]>,
    },
    /// A netkit pair; this device is the primary, the peer goes to `peer_ns`.
    Netkit {
        peer_name: String,
        peer_ns: Option<Ns>,
        mode: NetkitMode,
        policy: NetkitPolicy,
        peer_policy: NetkitPolicy,
        scrub: NetkitScrub,
        peer_scrub: NetkitScrub,
        peer_mac: Option<[u8; 6]>,
    },
}

/// A device to create (`ip link add`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub name: String,
    pub kind: DeviceKind,
    /// None: a locally administered address derived from a datapath-wide serial (NIC, veth,
    /// netkit L2); netkit L3 devices have none (all zero) and refuse one (EOPNOTSUPP).
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Both ends of a pair are brought up together with this.
    pub up: bool,
    /// A fixed ifindex (must be free in the namespace, and not 1).
    pub ifindex: Option<u32>,
    /// A pair's fixed peer ifindex, free in the peer's namespace (ignored
    /// for a NIC).
    pub peer_ifindex: Option<u32>,
    /// txqueuelen: the egress qdisc's limit (NICs; veth and netkit are noqueue).
    pub txqueuelen: u32,
}

impl DeviceSpec {
    pub fn nic(name: &str, mac: [u8; 6], rx_queues: u32) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            kind: DeviceKind::Nic { rx_queues },
            mac: Some(mac),
            mtu: 1500,
            up: true,
            ifindex: None,
            peer_ifindex: None,
            txqueuelen: 1000,
        }
    }

    pub fn veth(name: &str, peer_ns: Option<NsId>, peer_name: &str) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            kind: DeviceKind::Veth {
                peer_name: peer_name.into(),
                peer_ns,
                peer_mac: None,
            },
            mac: None,
            mtu: 1500,
            up: true,
            ifindex: None,
            peer_ifindex: None,
            txqueuelen: 1000,
        }
    }

    /// A netkit pair, L3 mode, default policy pass on both sides, scrub default.
    pub fn netkit(name: &str, peer_ns: Option<NsId>, peer_name: &str) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            kind: DeviceKind::Netkit {
                peer_name: peer_name.into(),
                peer_ns,
                mode: NetkitMode::L3,
                policy: NetkitPolicy::Pass,
                peer_policy: NetkitPolicy::Pass,
                scrub: NetkitScrub::Default,
                peer_scrub: NetkitScrub::Default,
                peer_mac: None,
            },
            mac: None,
            mtu: 1500,
            up: true,
            ifindex: None,
            peer_ifindex: None,
            txqueuelen: 1000,
        }
    }
}

/// How a device's receive side is polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Napi {
    /// No NAPI: what it receives goes through netif_rx (the CPU's backlog).
    None,
    /// Hardware rx queues (a NIC): worker q % workers polls queue q.
    Queues(usize),
    /// One ring per CPU, polled by that CPU (veth_rq picked by the sending CPU).
    PerCpu,
}

/// What the core needs to know of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// ndo_bpf with XDP_SETUP_PROG: native XDP in the driver.
    pub native_xdp: bool,
    /// IFF_NO_QUEUE: no qdisc by default (noqueue).
    pub no_queue: bool,
    /// The stack resolves neighbours on it (not IFF_NOARP).
    pub arp: bool,
    pub loopback: bool,
    pub napi: Napi,
    /// Transmit queues (mq gives each its own qdisc).
    pub tx_queues: usize,
}

/// struct net_device_ops, the part skiff models. `&self`: devices are shared
/// by the workers; what a driver changes per packet (rings) is behind its
/// own lock, like the kernel's ptr_ring. The core hands the running CPU (`Cpu`)
/// to the driver, as the kernel's drivers call back into net/core.
pub(crate) trait NetDevice: Send + Sync {
    /// `ip -d link` kind ("nic", "veth", "netkit", "loopback").
    fn kind(&self) -> &'static str;
    fn features(&self) -> Features;
    /// The other end of a pair.
    fn peer(&self) -> Option<DevId> {
        None
    }
    /// Its receive rings, if it has any (a NIC's rx queues, veth's per-CPU
    /// ptr_rings): `Features::napi` says how they are polled.
    fn rings(&self) -> Option<&Rings> {
        None
    }
    /// Put a received frame on rx ring `q` (the wire side of a NIC, veth_xmit
    /// into the peer's ptr_ring). Err: the ring is full or there is none.
    fn rx_enqueue(&self, q: usize, item: RxItem) -> Result<(), RxItem> {
        match self.rings().and_then(|r| r.0.get(q)) {
            Some(r) => r.push(item),
            None => Err(item),
        }
    }
    /// The NAPI poll's take: up to `budget` items of ring `q` into `out`.
    fn rx_poll(&self, q: usize, budget: usize, out: &mut VecDeque<RxItem>) {
        if let Some(r) = self.rings().and_then(|r| r.0.get(q)) {
            r.poll(budget, out);
        }
    }
    /// Items waiting in its rings.
    fn rx_pending(&self) -> usize {
        self.rings().map_or(0, |r| r.0.iter().map(Ring::len).sum())
    }
    /// Everything in its rings (the loop guard drops them).
    fn rx_drain(&self, out: &mut Vec<RxItem>) {
        for r in self.rings().map_or(&[][..], |r| &r.0[..]) {
            r.drain(out);
        }
    }
    /// ndo_start_xmit: the skb leaves through this device.
    fn start_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, pkt: Pkt);
    /// ndo_xdp_xmit: an XDP frame (XDP_TX, a redirect) leaves through it.
    fn xdp_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, pkt: XPkt);
    fn as_netkit(&self) -> Option<&Netkit> {
        None
    }
    fn as_netkit_mut(&mut self) -> Option<&mut Netkit> {
        None
    }
}

/// A device's receive rings.
pub(crate) struct Rings(Vec<Ring>);

impl Rings {
    pub fn new(n: usize, cap: usize) -> Rings {
        Rings((0..n.max(1)).map(|_| Ring::new(cap)).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// A bounded receive ring (ptr_ring / a NIC's descriptor ring), on a cache
/// line of its own: two workers polling neighbouring rings must not share one
/// (____cacheline_aligned_in_smp).
#[repr(align(128))]
pub(crate) struct Ring {
    q: Mutex<VecDeque<RxItem>>,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            q: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    pub fn push(&self, item: RxItem) -> Result<(), RxItem> {
        let mut q = self.q.lock();
        if q.len() >= self.cap {
            return Err(item);
        }
        q.push_back(item);
        Ok(())
    }

    pub fn poll(&self, budget: usize, out: &mut VecDeque<RxItem>) {
        let mut q = self.q.lock();
        let n = budget.min(q.len());
        out.extend(q.drain(..n));
    }

    pub fn len(&self) -> usize {
        self.q.lock().len()
    }

    pub fn drain(&self, out: &mut Vec<RxItem>) {
        out.extend(self.q.lock().drain(..));
    }
}

impl DeviceKind {
    /// The kind as `ip link add ... type X` names it.
    pub fn name(&self) -> &'static str {
        match self {
            DeviceKind::Nic { .. } => "nic",
            DeviceKind::Veth { .. } => "veth",
            DeviceKind::Netkit { .. } => "netkit",
        }
    }
}

/// The namespace and name of each end a spec creates (pairs: two).
pub(crate) fn pair_ends(spec: &DeviceSpec, ns: NsId) -> Vec<(NsId, String)> {
    let mut v = vec![(ns, spec.name.clone())];
    match &spec.kind {
        DeviceKind::Veth {
            peer_name, peer_ns, ..
        }
        | DeviceKind::Netkit {
            peer_name, peer_ns, ..
        } => v.push((peer_ns.unwrap_or(ns), peer_name.clone())),
        DeviceKind::Nic { .. } => {}
    }
    v
}

/// A locally administered address derived from the device's datapath-wide
/// serial number (skiff's deterministic eth_hw_addr_random; ifindexes repeat
/// across namespaces, serials do not).
fn local_mac(serial: u32) -> [u8; 6] {
    let b = serial.to_be_bytes();
    [0x02, 0x00, b[0], b[1], b[2], b[3]]
}

/// The MAC of end `end` (0, or 1 for a pair's peer); `serial` is the
/// device's datapath-wide number.
pub(crate) fn end_mac(spec: &DeviceSpec, end: usize, serial: u32) -> [u8; 6] {
    let given = match (&spec.kind, end) {
        (_, 0) => spec.mac,
        (DeviceKind::Veth { peer_mac, .. }, _) | (DeviceKind::Netkit { peer_mac, .. }, _) => {
            *peer_mac
        }
        _ => None,
    };
    match &spec.kind {
        // netkit L3 devices have no link-layer address.
        DeviceKind::Netkit { mode, .. } if *mode != NetkitMode::L2 => [0; 6],
        _ => given.unwrap_or(local_mac(serial)),
    }
}

/// rtnl_link_ops->newlink: the driver state of each end a spec creates
/// (`first` is the first end's id, a pair's peer is `first + 1`), validated
/// as the driver does.
type NewLink = fn(&DeviceSpec, DevId, usize) -> Result<Vec<Box<dyn NetDevice>>, DatapathError>;

/// The device kinds `ip link add ... type KIND` knows (rtnl_link_register):
/// a new kind is its file and one line here (and its `DeviceKind` options).
const LINK_OPS: &[(&str, NewLink)] = &[
    ("nic", nic::newlink),
    ("veth", veth::newlink),
    ("netkit", netkit::newlink),
];

/// rtnl_newlink: the kind's ->newlink.
pub(crate) fn create(
    spec: &DeviceSpec,
    first: DevId,
    cpus: usize,
) -> Result<Vec<Box<dyn NetDevice>>, DatapathError> {
    let kind = spec.kind.name();
    match LINK_OPS.iter().find(|(k, _)| *k == kind) {
        Some((_, newlink)) => newlink(spec, first, cpus),
        None => Err(errno(
            EOPNOTSUPP,
            format!("not supported: device kind {kind}"),
        )),
    }
}
