//! Devices: what `ip link` shows (name, ifindex, MAC, MTU, up, namespace,
//! stats) plus each kind's driver state (NIC rx queues, veth and netkit peers,
//! netkit program chains and policies) and the hooks attached to it.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use skiff_vm::Program;

use super::counters::{DevStats, HookCounters};
use super::tc::TcHook;
use super::{DevId, NsId, RxItem};

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
    /// None: a locally administered address derived from the ifindex (NIC, veth,
    /// netkit L2); netkit L3 devices have none (all zero) and refuse one (EOPNOTSUPP).
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Both ends of a pair are brought up together with this.
    pub up: bool,
    /// A fixed ifindex (must be free in the namespace, and not 1).
    pub ifindex: Option<u32>,
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
            txqueuelen: 1000,
        }
    }
}

/// Driver state per kind.
pub(crate) enum Driver {
    Nic {
        rx: Vec<VecDeque<RxItem>>,
    },
    Veth {
        peer: DevId,
        /// veth_rq's ptr_ring: what veth_xmit / ndo_xdp_xmit hand to this end
        /// when it has an XDP program (NAPI mode); one per CPU (veth_select_rxq
        /// picks the rq by the sending CPU, whose NAPI then polls it).
        ring: Vec<VecDeque<RxItem>>,
    },
    Netkit {
        peer: DevId,
        primary: bool,
        mode: NetkitMode,
        policy: NetkitPolicy,
        scrub: NetkitScrub,
        /// This device's program chain (nk->active), run when it transmits.
        progs: Vec<Arc<Program>>,
    },
    Loopback,
}

pub(crate) struct Device {
    pub name: String,
    pub ifindex: u32,
    pub ns: NsId,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub driver: Driver,
    pub stats: DevStats,
    pub xdp_native: Option<Arc<Program>>,
    pub xdp_generic: Option<Arc<Program>>,
    pub tc_ingress: TcHook,
    pub tc_egress: TcHook,
    /// pfifo_fast-like egress queue (NICs): frames wait here until the end of
    /// the poll (net_tx_action); `txqueuelen` bounds it.
    pub qdisc: VecDeque<super::Pkt>,
    pub txqueuelen: u32,
    pub hooks: HookCounters,
}

impl Device {
    pub fn peer(&self) -> Option<DevId> {
        match &self.driver {
            Driver::Veth { peer, .. } | Driver::Netkit { peer, .. } => Some(*peer),
            _ => None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.driver {
            Driver::Nic { .. } => "nic",
            Driver::Veth { .. } => "veth",
            Driver::Netkit { .. } => "netkit",
            Driver::Loopback => "loopback",
        }
    }

    /// Whether the device queues on egress (NICs have a qdisc; veth, netkit and
    /// lo are IFF_NO_QUEUE / noqueue).
    pub fn has_qdisc(&self) -> bool {
        matches!(self.driver, Driver::Nic { .. })
    }

    /// Whether it can run XDP in the driver (ndo_bpf): NIC and veth.
    pub fn native_xdp(&self) -> bool {
        matches!(self.driver, Driver::Nic { .. } | Driver::Veth { .. })
    }
}
