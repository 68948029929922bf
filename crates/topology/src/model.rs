//! The validated topology: plain data, every name resolved and checked.

use std::net::IpAddr;
use std::path::PathBuf;

use skiff_net::datapath::{DeviceKind, MprogOrder, NetkitSide, TcDirection, XdpMode};
use skiff_net::stack::RouteKind;
use skiff_object::Object;

use crate::error::Loc;
use crate::parse::Cidr;

/// A validated topology. Paths are absolute or relative to the working directory
/// (object paths in the file are relative to the file's directory).
#[derive(Debug)]
pub struct Topology {
    /// The topology file (for error messages).
    pub file: PathBuf,
    /// Namespaces in name order.
    pub namespaces: Vec<Netns>,
    pub objects: Vec<ObjectDecl>,
    /// `pin_dir`: where a live run saves its pinned maps at exit and restores
    /// them from at start (relative paths from the file's directory); None:
    /// the run's default (`skiff run --live`: RUN_DIR/NAME/pins).
    pub pin_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    pub name: String,
    /// `net.ipv4.ip_forward` (default false, as a fresh namespace).
    pub forwarding: bool,
    /// `net.ipv6.conf.all.forwarding` (default false).
    pub ipv6_forwarding: bool,
    /// Devices created by this namespace's `[[device]]` entries (pair peers are
    /// listed under their primary, in the primary's namespace). `lo` is implicit.
    pub devices: Vec<Device>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
    pub neighbours: Vec<Neighbour>,
    /// The `tc = [...]` lines, parsed, in order.
    pub tc: Vec<TcLine>,
    /// `listen`: the (IP protocol, port) pairs with a listening socket; None:
    /// every port is a sink. Segments to other ports get the kernel's RST,
    /// datagrams ICMP port unreachable.
    pub listen: Option<std::collections::BTreeSet<(u8, u16)>>,
    /// The `sysctl = { ... }` settings, in name order, applied after
    /// `forwarding` / `ipv6_forwarding`.
    pub sysctls: Vec<SysctlSetting>,
    /// The `iptables = [...]` then `ip6tables = [...]` lines, parsed, in order.
    pub iptables: Vec<NfLine>,
    /// The `nft = '''...'''` rule set, parsed.
    pub nft: Option<NftScript>,
}

/// A namespace's `nft` text: the text, its commands, where it is (the
/// line of its first line in the file, and that line's column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftScript {
    pub text: String,
    pub cmds: Vec<crate::nft::Cmd>,
    pub loc: Loc,
}

/// One `sysctl` entry of a namespace: the name as written, what it sets, the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlSetting {
    pub name: String,
    pub sysctl: skiff_net::stack::Sysctl<String>,
    pub value: i64,
    pub loc: Loc,
}

/// One iptables/ip6tables line of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfLine {
    pub text: String,
    pub cmd: crate::netfilter::IptCommand,
    pub loc: Loc,
}

/// One `tc` line of a namespace: its text, what it parsed to, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcLine {
    pub text: String,
    pub cmd: crate::tc::TcCommand,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    /// The datapath's device kind, the peer's namespace by name (always given:
    /// the device's own when the file names none).
    pub kind: DeviceKind<String>,
    /// None: the datapath picks one (random-like but deterministic), or none for
    /// netkit L3 (IFF_NOARP, no MAC).
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub ifindex: Option<u32>,
    /// A pair's fixed peer ifindex (`peer_ifindex`).
    pub peer_ifindex: Option<u32>,
    pub up: bool,
    /// A NIC whose wire is a real interface (`backend`, `host_ifname`,
    /// `host_netns`): what `skiff run --live` opens.
    pub live: Option<skiff_io::live::LiveSpec>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub dev: String,
    pub cidr: Cidr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Cidr,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// RT_TABLE_MAIN (254) by default; `local` 255, `default` 253.
    pub table: u32,
    pub metric: u32,
    /// unicast, blackhole, unreachable, prohibit or local (the file's `type`).
    pub kind: RouteKind,
    pub src: Option<IpAddr>,
    pub onlink: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// FR_ACT_TO_TBL
    Table(u32),
    /// FR_ACT_BLACKHOLE
    Blackhole,
    /// FR_ACT_UNREACHABLE
    Unreachable,
    /// FR_ACT_PROHIBIT
    Prohibit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub from: Option<Cidr>,
    pub to: Option<Cidr>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// (mark, mask); mask 0xffffffff when only a mark is given.
    pub fwmark: Option<(u32, u32)>,
    pub action: RuleAction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub dev: String,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// One piece of a map key or value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Bytes(Vec<u8>),
    /// `ifindex:NETNS/DEV` or `ifindex:DEV` (host): the device's ifindex, u32 host order.
    Ifindex {
        netns: String,
        dev: String,
    },
    /// `prog:NAME`: the id of a program of the same object (PROG_ARRAY values).
    Prog(String),
}

impl Piece {
    pub(crate) fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Ifindex { .. } | Piece::Prog(_) => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub key: Vec<Piece>,
    pub value: Vec<Piece>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDecl {
    pub name: String,
    /// The pin name the map is shared by (the `pin` field, or the map's own name
    /// for a map declared with LIBBPF_PIN_BY_NAME).
    pub pin: Option<String>,
    pub entries: Vec<MapEntry>,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp(XdpMode),
    /// clsact + cls_bpf direct-action filter.
    Tc {
        dir: TcDirection,
        prio: u16,
        handle: u32,
    },
    /// bpf_mprog chains order by program name here (ids exist once loaded).
    Tcx {
        dir: TcDirection,
        order: MprogOrder<String>,
    },
    /// Attached through the primary device for either side.
    Netkit {
        side: NetkitSide,
        order: MprogOrder<String>,
    },
}

impl std::fmt::Display for Hook {
    /// The hook as the file names it: `xdp`, `tc/ingress`, `tcx/egress`,
    /// `netkit/peer`...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Xdp(_) => write!(f, "xdp"),
            Hook::Tc { dir, .. } => write!(f, "tc/{dir}"),
            Hook::Tcx { dir, .. } => write!(f, "tcx/{dir}"),
            Hook::Netkit { side, .. } => write!(f, "netkit/{side}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attach {
    /// The program's function name in the object.
    pub program: String,
    pub netns: String,
    pub dev: String,
    pub hook: Hook,
    pub loc: Loc,
}

#[derive(Debug)]
pub struct ObjectDecl {
    /// As resolved (relative to the topology file's directory).
    pub path: PathBuf,
    pub object: Object,
    pub maps: Vec<MapDecl>,
    pub attach: Vec<Attach>,
    pub loc: Loc,
}
