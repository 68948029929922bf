//! Topology files (TOML): namespaces, devices, links, addresses, routes and the
//! programs attached to each hook, validated with errors naming line and field,
//! and built into a `datapath::Datapath`.
//!
//! [`Topology::parse`] / [`Topology::load`] give plain validated structs (object
//! files are parsed then, so a missing file, a missing program or a program whose
//! type does not fit its hook is a validation error with the line of the field).
//! [`Topology::load_objects`] loads every object with pinned maps shared across
//! objects as libbpf does with bpffs pins. The format is documented in
//! `docs/topology.md`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use skiff_maps::{Map, MapAttr, MapType};
use skiff_object::{AttachType, MapSpec, Object, ProgType, SlotInit};
use skiff_vm::Program;
use toml::Spanned;

// ---------------------------------------------------------------------------
// errors

/// A topology error. `At` names the file, the line and column (1-based) and the
/// field (a path such as `netns.host.device[1].mac`).
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{}:{line}:{col}: {field}: {msg}", file.display())]
    At {
        file: PathBuf,
        line: usize,
        col: usize,
        field: String,
        msg: String,
    },
    #[error("{}: {msg}", file.display())]
    File { file: PathBuf, msg: String },
}

impl TopologyError {
    /// The line of an `At` error.
    pub fn line(&self) -> Option<usize> {
        match self {
            TopologyError::At { line, .. } => Some(*line),
            TopologyError::File { .. } => None,
        }
    }

    /// The field of an `At` error.
    pub fn field(&self) -> Option<&str> {
        match self {
            TopologyError::At { field, .. } => Some(field),
            TopologyError::File { .. } => None,
        }
    }
}

/// Where a field is in the topology file: for errors found later (building).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
    pub field: String,
}

impl Loc {
    pub fn error(&self, file: &Path, msg: impl Into<String>) -> TopologyError {
        TopologyError::At {
            file: file.to_path_buf(),
            line: self.line,
            col: self.col,
            field: self.field.clone(),
            msg: msg.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

struct Ctx<'a> {
    src: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn loc<T>(&self, s: &Spanned<T>, field: &str) -> Loc {
        let (line, col) = line_col(self.src, s.span().start);
        Loc {
            line,
            col,
            field: field.to_string(),
        }
    }

    fn err<T>(&self, s: &Spanned<T>, field: &str, msg: impl Into<String>) -> TopologyError {
        self.loc(s, field).error(self.file, msg)
    }
}

// ---------------------------------------------------------------------------
// the file as written (serde)

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    netns: BTreeMap<Spanned<String>, Spanned<RawNetns>>,
    #[serde(default)]
    object: Vec<Spanned<RawObject>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetns {
    forwarding: Option<Spanned<bool>>,
    ipv6_forwarding: Option<Spanned<bool>>,
    #[serde(default)]
    device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    address: Vec<Spanned<RawAddress>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    neighbour: Vec<Spanned<RawNeighbour>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: Spanned<String>,
    kind: Spanned<String>,
    mac: Option<Spanned<String>>,
    mtu: Option<Spanned<u32>>,
    ifindex: Option<Spanned<u32>>,
    up: Option<Spanned<bool>>,
    rx_queues: Option<Spanned<u32>>,
    peer: Option<Spanned<String>>,
    peer_netns: Option<Spanned<String>>,
    peer_mac: Option<Spanned<String>>,
    peer_ifindex: Option<Spanned<u32>>,
    mode: Option<Spanned<String>>,
    policy: Option<Spanned<String>>,
    peer_policy: Option<Spanned<String>>,
    scrub: Option<Spanned<String>>,
    peer_scrub: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddress {
    dev: Spanned<String>,
    cidr: Spanned<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawTable {
    Num(u32),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    dst: Spanned<String>,
    via: Option<Spanned<String>>,
    dev: Option<Spanned<String>>,
    table: Option<Spanned<RawTable>>,
    metric: Option<Spanned<u32>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    src: Option<Spanned<String>>,
    onlink: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    priority: Option<Spanned<u32>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    iif: Option<Spanned<String>>,
    oif: Option<Spanned<String>>,
    fwmark: Option<Spanned<u32>>,
    fwmask: Option<Spanned<u32>>,
    table: Option<Spanned<RawTable>>,
    action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbour {
    dev: Spanned<String>,
    ip: Spanned<String>,
    mac: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    path: Spanned<String>,
    #[serde(default)]
    map: Vec<Spanned<RawMap>>,
    #[serde(default)]
    attach: Vec<Spanned<RawAttach>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    name: Spanned<String>,
    pin: Option<Spanned<String>>,
    #[serde(default)]
    entries: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawBytes {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: Spanned<RawBytes>,
    value: Spanned<RawBytes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttach {
    program: Option<Spanned<String>>,
    section: Option<Spanned<String>>,
    netns: Option<Spanned<String>>,
    dev: Spanned<String>,
    hook: Spanned<String>,
    mode: Option<Spanned<String>>,
    prio: Option<Spanned<u32>>,
    handle: Option<Spanned<u32>>,
    before: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// the validated topology

/// A validated topology. Paths are absolute or relative to the working directory
/// (object paths in the file are relative to the file's directory).
#[derive(Debug)]
pub struct Topology {
    /// The topology file (for error messages).
    pub file: PathBuf,
    /// Namespaces in name order.
    pub namespaces: Vec<Netns>,
    pub objects: Vec<ObjectDecl>,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetkitMode {
    L3,
    L2,
}

/// netkit default policy (`enum netkit_action`: NETKIT_PASS 0, NETKIT_DROP 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetkitPolicy {
    Pass,
    Drop,
}

/// `enum netkit_scrub`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetkitScrub {
    /// NETKIT_SCRUB_DEFAULT: mark and priority cleared crossing namespaces.
    Default,
    /// NETKIT_SCRUB_NONE.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Nic {
        rx_queues: u32,
    },
    Veth {
        peer: String,
        peer_netns: String,
        peer_mac: Option<[u8; 6]>,
        peer_ifindex: Option<u32>,
    },
    Netkit {
        peer: String,
        peer_netns: String,
        mode: NetkitMode,
        policy: NetkitPolicy,
        peer_policy: NetkitPolicy,
        scrub: NetkitScrub,
        peer_scrub: NetkitScrub,
        peer_ifindex: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub kind: DeviceKind,
    /// None: the datapath picks one (random-like but deterministic), or none for
    /// netkit L3 (IFF_NOARP, no MAC).
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub ifindex: Option<u32>,
    pub up: bool,
    pub loc: Loc,
}

/// An IPv4 or IPv6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or an address alone (a host prefix).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("bad CIDR {s:?}: {a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len =
            match p {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    format!("bad CIDR {s:?}: prefix length {p:?} is not 0..={max}")
                })?,
            };
        Ok(Cidr { addr, prefix_len })
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask32(self.prefix_len);
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask128(self.prefix_len);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }

    /// Whether bits past the prefix are set (a route's `ip route add 10.0.0.1/24`).
    pub fn has_host_bits(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => u32::from(a) & !mask32(self.prefix_len) != 0,
            IpAddr::V6(a) => u128::from(a) & !mask128(self.prefix_len) != 0,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn mask32(p: u8) -> u32 {
    if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p.min(32)))
    }
}

fn mask128(p: u8) -> u128 {
    if p == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(p.min(128)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub dev: String,
    pub cidr: Cidr,
}

/// `ip route` route types skiff models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Cidr,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// RT_TABLE_MAIN (254) by default; `local` 255, `default` 253.
    pub table: u32,
    pub metric: u32,
    pub kind: RouteType,
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
    fn len(&self) -> usize {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Primary,
    Peer,
}

/// Where a bpf_mprog chain (tcx, netkit) puts a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    Append,
    /// BPF_F_BEFORE relative to the program of this name on the same hook.
    Before(String),
    /// BPF_F_AFTER relative to the program of this name on the same hook.
    After(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp(XdpMode),
    /// clsact + cls_bpf direct-action filter.
    Tc {
        dir: Direction,
        prio: u32,
        handle: u32,
    },
    Tcx {
        dir: Direction,
        order: Order,
    },
    /// Attached through the primary device for either side.
    Netkit {
        side: Side,
        order: Order,
    },
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

// ---------------------------------------------------------------------------
// parsing helpers

/// `02:00:00:00:00:01` (or with dashes).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || format!("bad MAC {s:?}: want six hex bytes like 02:00:00:00:00:01");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// A device's own MAC must be unicast and non-zero (is_valid_ether_addr; the
/// kernel refuses others with EADDRNOTAVAIL).
fn device_mac(s: &str) -> Result<[u8; 6], String> {
    let mac = parse_mac(s)?;
    if mac[0] & 1 != 0 {
        return Err(format!(
            "bad MAC {s:?}: a multicast address cannot be a device's (is_valid_ether_addr: EADDRNOTAVAIL)"
        ));
    }
    if mac == [0; 6] {
        return Err(format!(
            "bad MAC {s:?}: the zero address cannot be a device's (is_valid_ether_addr: EADDRNOTAVAIL)"
        ));
    }
    Ok(mac)
}

/// net/core/dev.c: dev_valid_name.
fn valid_dev_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("a device name cannot be empty".into());
    }
    if n.len() >= 16 {
        return Err(format!(
            "device name {n:?} is {} bytes; IFNAMSIZ allows 15",
            n.len()
        ));
    }
    if n == "." || n == ".." {
        return Err(format!("device name {n:?} is not allowed"));
    }
    if n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "device name {n:?} contains '/', ':' or whitespace (dev_valid_name)"
        ));
    }
    Ok(())
}

fn parse_table(t: &RawTable) -> Result<u32, String> {
    match t {
        RawTable::Num(0) => Err("table 0 is RT_TABLE_UNSPEC, not a table".into()),
        RawTable::Num(n) => Ok(*n),
        RawTable::Name(n) => match n.as_str() {
            "main" => Ok(254),
            "local" => Ok(255),
            "default" => Ok(253),
            other => Err(format!(
                "unknown table {other:?}: use a number or main, local, default"
            )),
        },
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

fn parse_int(s: &str) -> Option<u128> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x") {
        u128::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// One piece of a key or value: `hex:..` / bare hex bytes, `u8:`..`u64:` (host
/// order, little-endian here as on x86-64), `be16:`..`be64:` (network order),
/// `ipv4:`, `ipv6:`, `mac:`, `ifindex:[NETNS/]DEV`, `prog:NAME`, `zero:N`.
pub fn parse_piece(s: &str) -> Result<Piece, String> {
    let Some((ty, v)) = s.split_once(':') else {
        return parse_hex(s).map(Piece::Bytes).ok_or_else(|| {
            format!("{s:?} is neither hex bytes nor TYPE:VALUE (u8, u16, u32, u64, be16, be32, be64, ipv4, ipv6, mac, ifindex, prog, zero, hex)")
        });
    };
    let int = |bits: u32, be: bool| -> Result<Piece, String> {
        let n = parse_int(v)
            .filter(|n| bits == 128 || *n < (1u128 << bits))
            .ok_or_else(|| format!("{s:?}: {v:?} is not a {bits}-bit unsigned integer"))?;
        let bytes = (bits / 8) as usize;
        let le = n.to_le_bytes();
        let mut out: Vec<u8> = le.get(..bytes).unwrap_or(&[]).to_vec();
        if be {
            out.reverse();
        }
        Ok(Piece::Bytes(out))
    };
    match ty {
        "hex" => parse_hex(v)
            .map(Piece::Bytes)
            .ok_or_else(|| format!("{s:?}: {v:?} is not an even number of hex digits")),
        "u8" => int(8, false),
        "u16" => int(16, false),
        "u32" => int(32, false),
        "u64" => int(64, false),
        "be16" => int(16, true),
        "be32" => int(32, true),
        "be64" => int(64, true),
        "ipv4" => v
            .parse::<Ipv4Addr>()
            .map(|a| Piece::Bytes(a.octets().to_vec()))
            .map_err(|_| format!("{s:?}: {v:?} is not an IPv4 address")),
        "ipv6" => v
            .parse::<Ipv6Addr>()
            .map(|a| Piece::Bytes(a.octets().to_vec()))
            .map_err(|_| format!("{s:?}: {v:?} is not an IPv6 address")),
        "mac" => parse_mac(v).map(|m| Piece::Bytes(m.to_vec())),
        "zero" => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1 << 20)
            .map(|n| Piece::Bytes(vec![0; n]))
            .ok_or_else(|| format!("{s:?}: {v:?} is not a byte count")),
        "ifindex" => {
            let (netns, dev) = match v.split_once('/') {
                Some((n, d)) => (n.to_string(), d.to_string()),
                None => ("host".to_string(), v.to_string()),
            };
            Ok(Piece::Ifindex { netns, dev })
        }
        "prog" => Ok(Piece::Prog(v.to_string())),
        _ => Err(format!(
            "{s:?}: unknown type {ty:?} (u8, u16, u32, u64, be16, be32, be64, ipv4, ipv6, mac, ifindex, prog, zero, hex)"
        )),
    }
}

fn parse_bytes(b: &RawBytes) -> Result<Vec<Piece>, String> {
    match b {
        RawBytes::One(s) => Ok(vec![parse_piece(s)?]),
        RawBytes::Many(v) => v.iter().map(|s| parse_piece(s)).collect(),
    }
}

fn one_of<'a>(
    cx: &Ctx,
    v: &Spanned<String>,
    field: &str,
    choices: &[&'a str],
) -> Result<&'a str, TopologyError> {
    choices
        .iter()
        .find(|c| **c == v.get_ref().as_str())
        .copied()
        .ok_or_else(|| {
            cx.err(
                v,
                field,
                format!("{:?} is not one of {}", v.get_ref(), choices.join(", ")),
            )
        })
}

// ---------------------------------------------------------------------------
// parse + validate

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let src = std::fs::read_to_string(path).map_err(|e| TopologyError::File {
            file: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Topology::parse(&src, path, dir)
    }

    /// Validates topology text; `file` names it in errors, `dir` is where object
    /// paths are relative to.
    pub fn parse(src: &str, file: &Path, dir: &Path) -> Result<Topology, TopologyError> {
        let cx = Ctx { src, file };
        let raw: RawTopology = toml::from_str(src).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(src, s.start)).unwrap_or((1, 1));
            TopologyError::At {
                file: file.to_path_buf(),
                line,
                col,
                field: field_of(src, e.span()),
                msg: e.message().trim().to_string(),
            }
        })?;
        validate(&cx, raw, dir)
    }
}

/// The key a toml error points at, for the `field` part of the message.
fn field_of(src: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return "(file)".into();
    };
    let line_start = src
        .get(..span.start.min(src.len()))
        .and_then(|b| b.rfind('\n'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = src.get(line_start..).unwrap_or("");
    let line = line.split('\n').next().unwrap_or("").trim();
    if line.starts_with('[') {
        return line.trim_matches(|c| c == '[' || c == ']').to_string();
    }
    match line.split_once('=') {
        Some((k, _)) => k.trim().to_string(),
        None => line.to_string(),
    }
}

/// Every device of a namespace, by name: (declared here, or created as a peer of a
/// pair declared elsewhere).
struct DevInfo {
    kind: &'static str,
    /// netkit: is this the primary
    primary: bool,
    /// native XDP support (nic, veth)
    native_xdp: bool,
}

fn validate(cx: &Ctx, raw: RawTopology, dir: &Path) -> Result<Topology, TopologyError> {
    let ns_names: Vec<String> = raw.netns.keys().map(|k| k.get_ref().clone()).collect();
    for k in raw.netns.keys() {
        if k.get_ref().is_empty() || k.get_ref().contains('/') {
            return Err(cx.err(
                k,
                "netns",
                format!("bad namespace name {:?} (non-empty, no '/')", k.get_ref()),
            ));
        }
    }
    // ns -> dev name -> info; ns -> ifindex -> device name
    let mut devs: HashMap<String, BTreeMap<String, DevInfo>> = HashMap::new();
    let mut ifindexes: HashMap<String, HashMap<u32, String>> = HashMap::new();
    for n in &ns_names {
        let mut m = BTreeMap::new();
        m.insert(
            "lo".to_string(),
            DevInfo {
                kind: "loopback",
                primary: false,
                native_xdp: false,
            },
        );
        devs.insert(n.clone(), m);
        let mut i = HashMap::new();
        i.insert(1u32, "lo".to_string());
        ifindexes.insert(n.clone(), i);
    }
    let mut namespaces = Vec::new();

    // devices first (routes may name devices created as peers by other namespaces)
    let mut all_devices: Vec<(String, Vec<Device>)> = Vec::new();
    for (name, ns) in &raw.netns {
        let ns_name = name.get_ref().clone();
        let mut out = Vec::new();
        for (i, d) in ns.get_ref().device.iter().enumerate() {
            let f = |field: &str| format!("netns.{ns_name}.device[{i}].{field}");
            let d = d.get_ref();
            let dev_name = d.name.get_ref().clone();
            valid_dev_name(&dev_name).map_err(|m| cx.err(&d.name, &f("name"), m))?;
            let kind = one_of(
                cx,
                &d.kind,
                &f("kind"),
                &["nic", "veth", "netkit", "loopback"],
            )?;
            if kind == "loopback" {
                return Err(cx.err(
                    &d.kind,
                    &f("kind"),
                    "every namespace has its loopback `lo` already (ifindex 1); do not declare it",
                ));
            }
            // which optional fields this kind takes
            let allowed: &[&str] = match kind {
                "nic" => &["rx_queues"],
                "veth" => &["peer", "peer_netns", "peer_mac", "peer_ifindex"],
                _ => &[
                    "peer",
                    "peer_netns",
                    "peer_ifindex",
                    "mode",
                    "policy",
                    "peer_policy",
                    "scrub",
                    "peer_scrub",
                ],
            };
            macro_rules! only {
                ($($fld:ident),*) => {$(
                    if let Some(v) = &d.$fld {
                        if !allowed.contains(&stringify!($fld)) {
                            return Err(cx.err(v, &f(stringify!($fld)),
                                format!("field `{}` does not apply to a {kind} device", stringify!($fld))));
                        }
                    }
                )*};
            }
            only!(
                rx_queues,
                peer,
                peer_netns,
                peer_mac,
                peer_ifindex,
                mode,
                policy,
                peer_policy,
                scrub,
                peer_scrub
            );

            let mtu = match &d.mtu {
                // dev_validate_mtu: min 68 (ETH_MIN_MTU) for Ethernet-like devices
                Some(m) if *m.get_ref() < 68 || *m.get_ref() > 65535 => {
                    return Err(cx.err(
                        m,
                        &f("mtu"),
                        format!("MTU {} is outside 68..=65535 (EINVAL)", m.get_ref()),
                    ))
                }
                Some(m) => *m.get_ref(),
                None => 1500,
            };
            let netkit_l3 =
                kind == "netkit" && d.mode.as_ref().map(|m| m.get_ref().as_str()) != Some("l2");
            let mac = match &d.mac {
                Some(m) if netkit_l3 => {
                    return Err(cx.err(
                        m,
                        &f("mac"),
                        "a netkit device in l3 mode has no MAC (the kernel refuses to set one: EOPNOTSUPP); use mode = \"l2\"",
                    ))
                }
                Some(m) => Some(device_mac(m.get_ref()).map_err(|e| cx.err(m, &f("mac"), e))?),
                None => None,
            };
            let mut claim = |ns: &str,
                             name: &str,
                             loc: &Spanned<String>,
                             field: &str,
                             info: DevInfo|
             -> Result<(), TopologyError> {
                let m = devs
                    .get_mut(ns)
                    .ok_or_else(|| cx.err(loc, field, format!("unknown netns {ns:?}")))?;
                if m.contains_key(name) {
                    return Err(cx.err(
                        loc,
                        field,
                        format!("duplicate device name {name:?} in netns {ns:?} (EEXIST)"),
                    ));
                }
                m.insert(name.to_string(), info);
                Ok(())
            };
            claim(
                &ns_name,
                &dev_name,
                &d.name,
                &f("name"),
                DevInfo {
                    kind,
                    primary: kind == "netkit",
                    native_xdp: kind != "netkit",
                },
            )?;
            let mut take_ifindex = |ns: &str,
                                    v: &Option<Spanned<u32>>,
                                    field: &str,
                                    dev: &str|
             -> Result<Option<u32>, TopologyError> {
                let Some(v) = v else { return Ok(None) };
                let n = *v.get_ref();
                if n == 0 || n > i32::MAX as u32 {
                    return Err(cx.err(v, field, format!("ifindex {n} is not 1..=2147483647")));
                }
                let m = ifindexes.entry(ns.to_string()).or_default();
                if let Some(other) = m.get(&n) {
                    return Err(cx.err(
                        v,
                        field,
                        format!("duplicate ifindex {n} in netns {ns:?}: {other:?} has it (EBUSY)"),
                    ));
                }
                m.insert(n, dev.to_string());
                Ok(Some(n))
            };
            let ifindex = take_ifindex(&ns_name, &d.ifindex, &f("ifindex"), &dev_name)?;
            let up = d.up.as_ref().map(|u| *u.get_ref()).unwrap_or(true);
            let dkind = match kind {
                "nic" => {
                    let q = d.rx_queues.as_ref().map(|q| *q.get_ref()).unwrap_or(1);
                    if q == 0 || q > 256 {
                        let s = d.rx_queues.as_ref();
                        return Err(match s {
                            Some(s) => {
                                cx.err(s, &f("rx_queues"), format!("{q} rx queues: want 1..=256"))
                            }
                            None => cx.err(&d.kind, &f("rx_queues"), "bad rx_queues"),
                        });
                    }
                    DeviceKind::Nic { rx_queues: q }
                }
                _ => {
                    let peer = d.peer.as_ref().ok_or_else(|| {
                        cx.err(
                            &d.kind,
                            &f("peer"),
                            format!("a {kind} pair needs `peer` (the other end's name)"),
                        )
                    })?;
                    valid_dev_name(peer.get_ref()).map_err(|m| cx.err(peer, &f("peer"), m))?;
                    let peer_ns = match &d.peer_netns {
                        Some(p) => {
                            if !ns_names.contains(p.get_ref()) {
                                return Err(cx.err(
                                    p,
                                    &f("peer_netns"),
                                    format!("unknown netns {:?}", p.get_ref()),
                                ));
                            }
                            p.get_ref().clone()
                        }
                        None => ns_name.clone(),
                    };
                    let peer_loc = d.peer_netns.as_ref().unwrap_or(peer);
                    claim(
                        &peer_ns,
                        peer.get_ref(),
                        peer,
                        &f("peer"),
                        DevInfo {
                            kind,
                            primary: false,
                            native_xdp: kind == "veth",
                        },
                    )?;
                    let _ = peer_loc;
                    let peer_ifindex = take_ifindex(
                        &peer_ns,
                        &d.peer_ifindex,
                        &f("peer_ifindex"),
                        peer.get_ref(),
                    )?;
                    if kind == "veth" {
                        let peer_mac = match &d.peer_mac {
                            Some(m) => Some(
                                device_mac(m.get_ref())
                                    .map_err(|e| cx.err(m, &f("peer_mac"), e))?,
                            ),
                            None => None,
                        };
                        DeviceKind::Veth {
                            peer: peer.get_ref().clone(),
                            peer_netns: peer_ns,
                            peer_mac,
                            peer_ifindex,
                        }
                    } else {
                        let policy =
                            |v: &Option<Spanned<String>>,
                             fl: &str|
                             -> Result<NetkitPolicy, TopologyError> {
                                Ok(match v {
                                    None => NetkitPolicy::Pass,
                                    Some(v) => match one_of(cx, v, &f(fl), &["pass", "drop"])? {
                                        "pass" => NetkitPolicy::Pass,
                                        _ => NetkitPolicy::Drop,
                                    },
                                })
                            };
                        let scrub = |v: &Option<Spanned<String>>,
                                     fl: &str|
                         -> Result<NetkitScrub, TopologyError> {
                            Ok(match v {
                                None => NetkitScrub::Default,
                                Some(v) => match one_of(cx, v, &f(fl), &["default", "none"])? {
                                    "default" => NetkitScrub::Default,
                                    _ => NetkitScrub::None,
                                },
                            })
                        };
                        let mode = match &d.mode {
                            None => NetkitMode::L3,
                            Some(m) => match one_of(cx, m, &f("mode"), &["l3", "l2"])? {
                                "l3" => NetkitMode::L3,
                                _ => NetkitMode::L2,
                            },
                        };
                        DeviceKind::Netkit {
                            peer: peer.get_ref().clone(),
                            peer_netns: peer_ns,
                            mode,
                            policy: policy(&d.policy, "policy")?,
                            peer_policy: policy(&d.peer_policy, "peer_policy")?,
                            scrub: scrub(&d.scrub, "scrub")?,
                            peer_scrub: scrub(&d.peer_scrub, "peer_scrub")?,
                            peer_ifindex,
                        }
                    }
                }
            };
            out.push(Device {
                name: dev_name,
                kind: dkind,
                mac,
                mtu,
                ifindex,
                up,
                loc: cx.loc(&d.name, &f("name")),
            });
        }
        all_devices.push((ns_name, out));
    }

    let dev_exists = |ns: &str, d: &str| devs.get(ns).is_some_and(|m| m.contains_key(d));
    let check_dev = |ns: &str, v: &Spanned<String>, field: &str| -> Result<String, TopologyError> {
        if dev_exists(ns, v.get_ref()) {
            Ok(v.get_ref().clone())
        } else {
            let known: Vec<&String> = devs.get(ns).map(|m| m.keys().collect()).unwrap_or_default();
            Err(cx.err(
                v,
                field,
                format!(
                    "unknown device {:?} in netns {ns:?} (it has: {})",
                    v.get_ref(),
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        }
    };
    let cidr = |v: &Spanned<String>, field: &str| -> Result<Cidr, TopologyError> {
        Cidr::parse(v.get_ref()).map_err(|m| cx.err(v, field, m))
    };
    let ip = |v: &Spanned<String>, field: &str| -> Result<IpAddr, TopologyError> {
        v.get_ref().parse::<IpAddr>().map_err(|_| {
            cx.err(
                v,
                field,
                format!("{:?} is not an IPv4 or IPv6 address", v.get_ref()),
            )
        })
    };

    for ((name, ns), (_, devices)) in raw.netns.iter().zip(all_devices) {
        let ns_name = name.get_ref().clone();
        let ns = ns.get_ref();
        let mut addresses = Vec::new();
        for (i, a) in ns.address.iter().enumerate() {
            let f = |field: &str| format!("netns.{ns_name}.address[{i}].{field}");
            let a = a.get_ref();
            let dev = check_dev(&ns_name, &a.dev, &f("dev"))?;
            let c = cidr(&a.cidr, &f("cidr"))?;
            if addresses
                .iter()
                .any(|x: &Address| x.dev == dev && x.cidr.addr == c.addr)
            {
                return Err(cx.err(
                    &a.cidr,
                    &f("cidr"),
                    format!("address {} is already on {dev} (EEXIST)", c.addr),
                ));
            }
            addresses.push(Address { dev, cidr: c });
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in ns.route.iter().enumerate() {
            let f = |field: &str| format!("netns.{ns_name}.route[{i}].{field}");
            let r = r.get_ref();
            let dst = if r.dst.get_ref() == "default" {
                let v6 = r.via.as_ref().is_some_and(|v| v.get_ref().contains(':'));
                Cidr {
                    addr: if v6 {
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    },
                    prefix_len: 0,
                }
            } else {
                cidr(&r.dst, &f("dst"))?
            };
            if dst.has_host_bits() {
                // net/ipv4/fib_trie.c: fib_table_insert
                return Err(cx.err(&r.dst, &f("dst"), format!("bad CIDR {:?}: invalid prefix for given prefix length (host bits set; EINVAL)", r.dst.get_ref())));
            }
            let kind = match &r.kind {
                None => RouteType::Unicast,
                Some(k) => match one_of(
                    cx,
                    k,
                    &f("type"),
                    &["unicast", "blackhole", "unreachable", "prohibit", "local"],
                )? {
                    "unicast" => RouteType::Unicast,
                    "blackhole" => RouteType::Blackhole,
                    "unreachable" => RouteType::Unreachable,
                    "prohibit" => RouteType::Prohibit,
                    _ => RouteType::Local,
                },
            };
            let dev = match &r.dev {
                Some(d) => Some(check_dev(&ns_name, d, &f("dev"))?),
                None => None,
            };
            let via = match &r.via {
                Some(v) => {
                    let a = ip(v, &f("via"))?;
                    if a.is_ipv4() != dst.addr.is_ipv4() {
                        return Err(cx.err(
                            v,
                            &f("via"),
                            format!("gateway {a} is not of the family of {dst}"),
                        ));
                    }
                    Some(a)
                }
                None => None,
            };
            let onlink = r.onlink.as_ref().is_some_and(|o| *o.get_ref());
            if matches!(kind, RouteType::Unicast | RouteType::Local)
                && dev.is_none()
                && via.is_none()
            {
                return Err(cx.err(
                    &r.dst,
                    &f("dev"),
                    "a unicast route needs `dev`, `via` or both",
                ));
            }
            if let (Some(g), Some(v)) = (via, &r.via) {
                if !onlink {
                    // net/ipv4/fib_semantics.c: fib_check_nh_v4_gw: the gateway must
                    // be reachable on a link-scope route (a connected prefix or a
                    // device route without gateway)
                    let on = |d: &str| {
                        addresses.iter().any(|a| a.dev == d && a.cidr.contains(g))
                            || routes.iter().any(|x| {
                                x.via.is_none() && x.dev.as_deref() == Some(d) && x.dst.contains(g)
                            })
                    };
                    let ok = match &dev {
                        Some(d) => on(d),
                        None => {
                            addresses.iter().any(|a| a.cidr.contains(g))
                                || routes.iter().any(|x| {
                                    x.via.is_none() && x.dev.is_some() && x.dst.contains(g)
                                })
                        }
                    };
                    if !ok {
                        return Err(cx.err(v, &f("via"), format!("gateway {g} is not reachable: no address or device route covers it{} (ENETUNREACH: Nexthop has invalid gateway); add one or set onlink = true", dev.as_ref().map(|d| format!(" on {d}")).unwrap_or_default())));
                    }
                }
            }
            let table = match &r.table {
                Some(t) => parse_table(t.get_ref()).map_err(|m| cx.err(t, &f("table"), m))?,
                None => 254,
            };
            let src = match &r.src {
                Some(s) => Some(ip(s, &f("src"))?),
                None => None,
            };
            let route = Route {
                dst,
                via,
                dev,
                table,
                metric: r.metric.as_ref().map(|m| *m.get_ref()).unwrap_or(0),
                kind,
                src,
                onlink,
            };
            if routes
                .iter()
                .any(|x| x.dst == route.dst && x.table == route.table && x.metric == route.metric)
            {
                return Err(cx.err(
                    &r.dst,
                    &f("dst"),
                    format!(
                        "duplicate route to {} in table {} metric {} (EEXIST)",
                        route.dst, route.table, route.metric
                    ),
                ));
            }
            routes.push(route);
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, r) in ns.rule.iter().enumerate() {
            let f = |field: &str| format!("netns.{ns_name}.rule[{i}].{field}");
            let rs = r;
            let r = r.get_ref();
            let act = match &r.action {
                Some(a) => one_of(
                    cx,
                    a,
                    &f("action"),
                    &["table", "blackhole", "unreachable", "prohibit"],
                )?,
                None => "table",
            };
            let action = match act {
                "table" => {
                    let t = r.table.as_ref().ok_or_else(|| {
                        cx.err(
                            rs,
                            &f("table"),
                            "a rule needs `table` (or action = blackhole, unreachable, prohibit)",
                        )
                    })?;
                    RuleAction::Table(
                        parse_table(t.get_ref()).map_err(|m| cx.err(t, &f("table"), m))?,
                    )
                }
                "blackhole" => RuleAction::Blackhole,
                "unreachable" => RuleAction::Unreachable,
                _ => RuleAction::Prohibit,
            };
            // net/core/fib_rules.c: fib_default_rule_pref: one below the first
            // non-zero preference (local 0, main 32766, default 32767)
            let priority = match &r.priority {
                Some(p) => *p.get_ref(),
                None => {
                    let mut prefs: Vec<u32> = rules
                        .iter()
                        .map(|r| r.priority)
                        .chain([32766, 32767])
                        .filter(|p| *p > 0)
                        .collect();
                    prefs.sort_unstable();
                    prefs.first().copied().unwrap_or(32766).saturating_sub(1)
                }
            };
            let iif = match &r.iif {
                Some(d) => Some(check_dev(&ns_name, d, &f("iif"))?),
                None => None,
            };
            let oif = match &r.oif {
                Some(d) => Some(check_dev(&ns_name, d, &f("oif"))?),
                None => None,
            };
            let from = match &r.from {
                Some(c) => Some(cidr(c, &f("from"))?),
                None => None,
            };
            let to = match &r.to {
                Some(c) => Some(cidr(c, &f("to"))?),
                None => None,
            };
            let fwmark = match (&r.fwmark, &r.fwmask) {
                (Some(m), k) => Some((
                    *m.get_ref(),
                    k.as_ref().map(|k| *k.get_ref()).unwrap_or(u32::MAX),
                )),
                (None, Some(k)) => return Err(cx.err(k, &f("fwmask"), "fwmask without fwmark")),
                (None, None) => None,
            };
            rules.push(Rule {
                priority,
                from,
                to,
                iif,
                oif,
                fwmark,
                action,
            });
        }
        let mut neighbours = Vec::new();
        for (i, n) in ns.neighbour.iter().enumerate() {
            let f = |field: &str| format!("netns.{ns_name}.neighbour[{i}].{field}");
            let n = n.get_ref();
            let dev = check_dev(&ns_name, &n.dev, &f("dev"))?;
            let a = ip(&n.ip, &f("ip"))?;
            let mac = parse_mac(n.mac.get_ref()).map_err(|e| cx.err(&n.mac, &f("mac"), e))?;
            neighbours.push(Neighbour { dev, ip: a, mac });
        }
        namespaces.push(Netns {
            name: ns_name,
            forwarding: ns.forwarding.as_ref().is_some_and(|v| *v.get_ref()),
            ipv6_forwarding: ns.ipv6_forwarding.as_ref().is_some_and(|v| *v.get_ref()),
            devices,
            addresses,
            routes,
            rules,
            neighbours,
        });
    }

    // objects, maps, attachments
    let mut objects = Vec::new();
    // (ns, dev, "xdp") -> mode, for the one-program-per-device-and-mode rules
    let mut xdp_taken: HashMap<(String, String), (XdpMode, usize)> = HashMap::new();
    let mut tc_taken: HashMap<(String, String, bool, u32, u32), usize> = HashMap::new();
    let mut auto_prio: HashMap<(String, String, bool), u32> = HashMap::new();
    // (ns, dev, hook name) -> program names attached so far (for before/after)
    let mut chains: HashMap<(String, String, String), Vec<String>> = HashMap::new();
    // pin name -> (map spec of its first declarer, line)
    let mut pins: HashMap<String, (MapSpec, usize)> = HashMap::new();
    for (oi, o) in raw.object.iter().enumerate() {
        let of = |field: &str| format!("object[{oi}].{field}");
        let o = o.get_ref();
        let path = dir.join(o.path.get_ref());
        let bytes = std::fs::read(&path).map_err(|e| {
            cx.err(
                &o.path,
                &of("path"),
                format!("missing object file {}: {e}", path.display()),
            )
        })?;
        let object = Object::parse(&bytes)
            .map_err(|e| cx.err(&o.path, &of("path"), format!("{}: {e}", path.display())))?;
        let mut maps = Vec::new();
        for (mi, m) in o.map.iter().enumerate() {
            let f = |field: &str| format!("object[{oi}].map[{mi}].{field}");
            let m = m.get_ref();
            let name = m.name.get_ref();
            let spec = object
                .maps
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| {
                    cx.err(
                        &m.name,
                        &f("name"),
                        format!(
                            "{} has no map {name:?} (it has: {})",
                            path.display(),
                            object
                                .maps
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            if maps.iter().any(|d: &MapDecl| &d.name == name) {
                return Err(cx.err(
                    &m.name,
                    &f("name"),
                    format!("map {name:?} is declared twice for this object"),
                ));
            }
            let pin = match &m.pin {
                Some(p) if p.get_ref().is_empty() || p.get_ref().contains('/') => {
                    return Err(cx.err(p, &f("pin"), "a pin name is non-empty and has no '/'"))
                }
                Some(p) => Some(p.get_ref().clone()),
                None if spec.pinning == 1 => Some(spec.name.clone()),
                None => None,
            };
            let mut entries = Vec::new();
            for (ei, e) in m.entries.iter().enumerate() {
                let ef = |field: &str| format!("object[{oi}].map[{mi}].entries[{ei}].{field}");
                let e = e.get_ref();
                let key =
                    parse_bytes(e.key.get_ref()).map_err(|m| cx.err(&e.key, &ef("key"), m))?;
                let value = parse_bytes(e.value.get_ref())
                    .map_err(|m| cx.err(&e.value, &ef("value"), m))?;
                let klen: usize = key.iter().map(Piece::len).sum();
                let vlen: usize = value.iter().map(Piece::len).sum();
                if klen != spec.key_size as usize && !(spec.key_size == 0 && klen == 0) {
                    return Err(cx.err(
                        &e.key,
                        &ef("key"),
                        format!(
                            "{klen} bytes, but map {name:?} has {}-byte keys",
                            spec.key_size
                        ),
                    ));
                }
                if vlen != spec.value_size as usize {
                    return Err(cx.err(
                        &e.value,
                        &ef("value"),
                        format!(
                            "{vlen} bytes, but map {name:?} has {}-byte values",
                            spec.value_size
                        ),
                    ));
                }
                for p in key.iter().chain(&value) {
                    match p {
                        Piece::Ifindex { netns, dev } if !dev_exists(netns, dev) => {
                            return Err(cx.err(
                                &e.value,
                                &ef("value"),
                                format!("ifindex: unknown device {dev:?} in netns {netns:?}"),
                            ));
                        }
                        Piece::Prog(p) if object.program(p).is_none() => {
                            return Err(cx.err(
                                &e.value,
                                &ef("value"),
                                format!("prog: {} has no program {p:?}", path.display()),
                            ));
                        }
                        _ => {}
                    }
                }
                entries.push(MapEntry {
                    key,
                    value,
                    loc: cx.loc(&e.key, &ef("key")),
                });
            }
            maps.push(MapDecl {
                name: name.clone(),
                pin,
                entries,
                loc: cx.loc(&m.name, &f("name")),
            });
        }
        // maps pinned by name in the object (LIBBPF_PIN_BY_NAME) share even when
        // the file does not mention them
        for spec in &object.maps {
            if spec.pinning == 1 && !maps.iter().any(|d| d.name == spec.name) {
                maps.push(MapDecl {
                    name: spec.name.clone(),
                    pin: Some(spec.name.clone()),
                    entries: vec![],
                    loc: cx.loc(&o.path, &of("path")),
                });
            }
        }
        for d in &maps {
            let (Some(pin), Some(spec)) = (&d.pin, object.maps.iter().find(|s| s.name == d.name))
            else {
                continue;
            };
            match pins.get(pin) {
                // libbpf.c: map_is_reuse_compat
                Some((first, line)) => {
                    if first.map_type != spec.map_type
                        || first.key_size != spec.key_size
                        || first.value_size != spec.value_size
                        || first.max_entries != spec.max_entries
                        || first.map_flags != spec.map_flags
                        || first.map_extra != spec.map_extra
                    {
                        return Err(d.loc.error(cx.file, format!(
                            "couldn't reuse pinned map {pin:?}: parameter mismatch with the map pinned at line {line} (type {}/{}, key {}/{}, value {}/{}, max_entries {}/{}, flags {:#x}/{:#x}) (EINVAL, as libbpf)",
                            first.map_type, spec.map_type, first.key_size, spec.key_size, first.value_size, spec.value_size, first.max_entries, spec.max_entries, first.map_flags, spec.map_flags
                        )));
                    }
                }
                None => {
                    pins.insert(pin.clone(), (spec.clone(), d.loc.line));
                }
            }
        }

        let mut attach = Vec::new();
        for (ai, a) in o.attach.iter().enumerate() {
            let f = |field: &str| format!("object[{oi}].attach[{ai}].{field}");
            let a = a.get_ref();
            let prog = match (&a.program, &a.section) {
                (Some(p), None) => object.program(p.get_ref()).ok_or_else(|| {
                    cx.err(
                        p,
                        &f("program"),
                        format!(
                            "program {:?} not found in {} (it has: {})",
                            p.get_ref(),
                            path.display(),
                            object
                                .programs
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?,
                (None, Some(s)) => {
                    let mut found = object.programs.iter().filter(|p| &p.section == s.get_ref());
                    let first = found.next().ok_or_else(|| {
                        cx.err(
                            s,
                            &f("section"),
                            format!(
                                "section {:?} not found in {} (it has: {})",
                                s.get_ref(),
                                path.display(),
                                object
                                    .programs
                                    .iter()
                                    .map(|p| p.section.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                    if found.next().is_some() {
                        return Err(cx.err(
                            s,
                            &f("section"),
                            format!(
                                "section {:?} holds several programs: name one with `program`",
                                s.get_ref()
                            ),
                        ));
                    }
                    first
                }
                (Some(p), Some(_)) => {
                    return Err(cx.err(p, &f("program"), "give `program` or `section`, not both"))
                }
                (None, None) => {
                    return Err(cx.err(
                        &a.hook,
                        &f("program"),
                        "which program? give `program` (function name) or `section`",
                    ))
                }
            };
            let netns = match &a.netns {
                Some(n) if !ns_names.contains(n.get_ref()) => {
                    return Err(cx.err(n, &f("netns"), format!("unknown netns {:?}", n.get_ref())))
                }
                Some(n) => n.get_ref().clone(),
                None => "host".to_string(),
            };
            if !ns_names.contains(&netns) {
                return Err(cx.err(
                    &a.dev,
                    &f("netns"),
                    "no netns \"host\": say which namespace the device is in with `netns`",
                ));
            }
            let dev = check_dev(&netns, &a.dev, &f("dev"))?;
            let info = devs
                .get(&netns)
                .and_then(|m| m.get(&dev))
                .ok_or_else(|| cx.err(&a.dev, &f("dev"), "unknown device"))?;
            let hook_name = one_of(
                cx,
                &a.hook,
                &f("hook"),
                &[
                    "xdp",
                    "tc/ingress",
                    "tc/egress",
                    "tcx/ingress",
                    "tcx/egress",
                    "netkit/primary",
                    "netkit/peer",
                ],
            )?;
            let want = if hook_name == "xdp" {
                ProgType::Xdp
            } else {
                ProgType::SchedCls
            };
            if prog.prog_type != want {
                let (have, need) = (type_name(prog.prog_type), type_name(want));
                return Err(cx.err(&a.hook, &f("hook"), format!(
                    "program {:?} (section {:?}) is a {have} program; hook {hook_name} takes {need} programs (EINVAL)",
                    prog.name, prog.section
                )));
            }
            if hook_name == "xdp" {
                if let Some(t @ (AttachType::XdpDevmap | AttachType::XdpCpumap)) =
                    prog.expected_attach_type
                {
                    // net/core/dev.c: dev_xdp_attach
                    return Err(cx.err(&a.hook, &f("hook"), format!(
                        "program {:?} is a {} program (section {:?}); it runs from a map entry and cannot be attached to a device (EINVAL)",
                        prog.name, if t == AttachType::XdpDevmap { "BPF_XDP_DEVMAP" } else { "BPF_XDP_CPUMAP" }, prog.section
                    )));
                }
            }
            // fields that only fit some hooks
            let only = |v: Option<&Spanned<String>>,
                        v2: Option<&Spanned<u32>>,
                        name: &str,
                        fits: &[&str]|
             -> Result<(), TopologyError> {
                if fits.contains(&hook_name) {
                    return Ok(());
                }
                let e = |m: String| match (v, v2) {
                    (Some(s), _) => Err(cx.err(s, &f(name), m)),
                    (_, Some(s)) => Err(cx.err(s, &f(name), m)),
                    _ => Ok(()),
                };
                e(format!(
                    "field `{name}` does not apply to hook {hook_name} (only {})",
                    fits.join(", ")
                ))
            };
            only(a.mode.as_ref(), None, "mode", &["xdp"])?;
            only(None, a.prio.as_ref(), "prio", &["tc/ingress", "tc/egress"])?;
            only(
                None,
                a.handle.as_ref(),
                "handle",
                &["tc/ingress", "tc/egress"],
            )?;
            let chained = ["tcx/ingress", "tcx/egress", "netkit/primary", "netkit/peer"];
            only(a.before.as_ref(), None, "before", &chained)?;
            only(a.after.as_ref(), None, "after", &chained)?;
            let key = (netns.clone(), dev.clone(), hook_name.to_string());
            let order = match (&a.before, &a.after) {
                (Some(b), Some(_)) => {
                    return Err(cx.err(b, &f("before"), "give `before` or `after`, not both"))
                }
                (Some(r), None) | (None, Some(r)) => {
                    if !chains.get(&key).is_some_and(|c| c.contains(r.get_ref())) {
                        let fl = if a.before.is_some() {
                            "before"
                        } else {
                            "after"
                        };
                        return Err(cx.err(r, &f(fl), format!(
                            "no program {:?} is attached earlier in the file to {hook_name} of {dev} (ENOENT)",
                            r.get_ref()
                        )));
                    }
                    if a.before.is_some() {
                        Order::Before(r.get_ref().clone())
                    } else {
                        Order::After(r.get_ref().clone())
                    }
                }
                (None, None) => Order::Append,
            };
            let dir = |s: &str| {
                if s.ends_with("ingress") {
                    Direction::Ingress
                } else {
                    Direction::Egress
                }
            };
            let hook = match hook_name {
                "xdp" => {
                    let mode = match &a.mode {
                        Some(m) => match one_of(cx, m, &f("mode"), &["native", "generic"])? {
                            "native" => XdpMode::Native,
                            _ => XdpMode::Generic,
                        },
                        None if info.native_xdp => XdpMode::Native,
                        None => XdpMode::Generic,
                    };
                    if mode == XdpMode::Native && !info.native_xdp {
                        let m = a.mode.as_ref().map(|m| m as &dyn SpanOf).unwrap_or(&a.hook);
                        return Err(m.err_at(cx, &f("mode"), format!(
                            "{dev} is a {} device: its driver has no native XDP (EOPNOTSUPP); use mode = \"generic\"",
                            info.kind
                        )));
                    }
                    let k = (netns.clone(), dev.clone());
                    if let Some((other, line)) = xdp_taken.get(&k) {
                        let msg = if *other == mode {
                            format!("{dev} already has an XDP program in {} mode (line {line}); one per device and mode (EBUSY)", if mode == XdpMode::Native { "native" } else { "generic" })
                        } else {
                            format!("{dev} has an XDP program in the other mode (line {line}): native and generic XDP can't be active at the same time (EEXIST)")
                        };
                        return Err(cx.err(&a.hook, &f("hook"), msg));
                    }
                    xdp_taken.insert(k, (mode, cx.loc(&a.hook, "").line));
                    Hook::Xdp(mode)
                }
                "tc/ingress" | "tc/egress" => {
                    let d = dir(hook_name);
                    let ak = (netns.clone(), dev.clone(), d == Direction::Ingress);
                    // net/sched/cls_api.c: tcf_auto_prio (0xC000, then one below the lowest)
                    let prio = match &a.prio {
                        Some(p) if *p.get_ref() == 0 || *p.get_ref() > 0xffff => {
                            return Err(cx.err(
                                p,
                                &f("prio"),
                                format!("prio {} is not 1..=65535", p.get_ref()),
                            ))
                        }
                        Some(p) => *p.get_ref(),
                        None => auto_prio
                            .get(&ak)
                            .map(|p| p.saturating_sub(1))
                            .unwrap_or(0xC000),
                    };
                    let lowest = auto_prio.entry(ak).or_insert(prio);
                    *lowest = (*lowest).min(prio);
                    let handle = match &a.handle {
                        Some(h) if *h.get_ref() == 0 => {
                            return Err(cx.err(h, &f("handle"), "handle 0 is not a handle"))
                        }
                        Some(h) => *h.get_ref(),
                        None => 1,
                    };
                    let tk = (
                        netns.clone(),
                        dev.clone(),
                        d == Direction::Ingress,
                        prio,
                        handle,
                    );
                    if let Some(line) = tc_taken.get(&tk) {
                        let s = a
                            .handle
                            .as_ref()
                            .or(a.prio.as_ref())
                            .map(|s| s as &dyn SpanOf)
                            .unwrap_or(&a.hook);
                        return Err(s.err_at(cx, &f(if a.handle.is_some() { "handle" } else { "prio" }), format!(
                            "{hook_name} of {dev} already has a filter with prio {prio} handle {handle} (line {line}; EEXIST)"
                        )));
                    }
                    tc_taken.insert(tk, cx.loc(&a.hook, "").line);
                    Hook::Tc {
                        dir: d,
                        prio,
                        handle,
                    }
                }
                "tcx/ingress" | "tcx/egress" => Hook::Tcx {
                    dir: dir(hook_name),
                    order,
                },
                _ => {
                    if info.kind != "netkit" {
                        // drivers/net/netkit.c: netkit_dev_fetch
                        return Err(cx.err(
                            &a.dev,
                            &f("dev"),
                            format!("{dev} is a {} device, not netkit (ENXIO)", info.kind),
                        ));
                    }
                    if !info.primary {
                        return Err(cx.err(&a.dev, &f("dev"), format!(
                            "{dev} is a netkit peer: netkit programs attach only through the primary device, for either side (the kernel refuses the peer with EACCES in netkit_dev_fetch)"
                        )));
                    }
                    Hook::Netkit {
                        side: if hook_name == "netkit/primary" {
                            Side::Primary
                        } else {
                            Side::Peer
                        },
                        order,
                    }
                }
            };
            chains.entry(key).or_default().push(prog.name.clone());
            attach.push(Attach {
                program: prog.name.clone(),
                netns,
                dev,
                hook,
                loc: cx.loc(&a.hook, &f("hook")),
            });
        }
        objects.push(ObjectDecl {
            path,
            object,
            maps,
            attach,
            loc: cx.loc(&o.path, &of("path")),
        });
    }
    Ok(Topology {
        file: cx.file.to_path_buf(),
        namespaces,
        objects,
    })
}

fn type_name(t: ProgType) -> &'static str {
    match t {
        ProgType::Xdp => "XDP",
        ProgType::SchedCls => "SCHED_CLS (tc)",
        ProgType::SchedAct => "SCHED_ACT (tc action)",
    }
}

/// Anything with a span, for errors that point at one of several fields.
trait SpanOf {
    fn start(&self) -> usize;
    fn err_at(&self, cx: &Ctx, field: &str, msg: String) -> TopologyError {
        let (line, col) = line_col(cx.src, self.start());
        TopologyError::At {
            file: cx.file.to_path_buf(),
            line,
            col,
            field: field.to_string(),
            msg,
        }
    }
}
impl<T> SpanOf for Spanned<T> {
    fn start(&self) -> usize {
        self.span().start
    }
}

// ---------------------------------------------------------------------------
// loading objects with shared pinned maps

/// One object as loaded: its maps by name (shared ones are the same `Arc` in
/// every object that pins them) and its programs.
pub struct LoadedObject {
    pub path: PathBuf,
    pub maps: Vec<(String, Arc<Map>)>,
    pub programs: Vec<Arc<Program>>,
}

impl LoadedObject {
    pub fn map(&self, name: &str) -> Option<&Arc<Map>> {
        self.maps.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
    pub fn program(&self, name: &str) -> Option<&Arc<Program>> {
        self.programs.iter().find(|p| p.name == name)
    }
}

fn map_attr(spec: &MapSpec) -> Result<MapAttr, String> {
    let map_type = MapType::from_kernel(spec.map_type)
        .ok_or_else(|| format!("not supported: map type {}", spec.map_type))?;
    let inner = match &spec.inner {
        Some(i) => Some(Box::new(map_attr(i)?)),
        None => None,
    };
    Ok(MapAttr {
        map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.map_flags,
        name: spec.name.clone(),
        inner,
    })
}

impl Topology {
    /// Loads every object as `skiff_vm::Collection::load` does (maps created, global
    /// data initialised and .rodata frozen, programs linked, PROG_ARRAY / map-in-map
    /// slots from `.values`), except that a map with a pin name is created once and
    /// handed to every later object pinning the same name (libbpf's
    /// bpf_object__reuse_map). Then writes the file's initial map entries.
    /// `ifindex` resolves `ifindex:NETNS/DEV` pieces.
    pub fn load_objects(
        &self,
        possible_cpus: usize,
        ifindex: &dyn Fn(&str, &str) -> Option<u32>,
    ) -> Result<Vec<LoadedObject>, TopologyError> {
        let mut pinned: HashMap<String, Arc<Map>> = HashMap::new();
        let mut out = Vec::new();
        for o in &self.objects {
            let oerr = |msg: String| {
                o.loc
                    .error(&self.file, format!("{}: {msg}", o.path.display()))
            };
            let mut maps: Vec<(String, Arc<Map>)> = Vec::new();
            // maps this object took from an earlier pin (libbpf: map->reused)
            let mut reused: Vec<&str> = Vec::new();
            for spec in &o.object.maps {
                let decl = o.maps.iter().find(|d| d.name == spec.name);
                let pin = decl.and_then(|d| d.pin.clone());
                if let Some(m) = pin.as_ref().and_then(|p| pinned.get(p)) {
                    maps.push((spec.name.clone(), m.clone()));
                    reused.push(&spec.name);
                    continue;
                }
                let attr = map_attr(spec).map_err(|m| oerr(format!("map {}: {m}", spec.name)))?;
                let map = Map::create(attr, possible_cpus)
                    .map_err(|e| oerr(format!("map {}: {e}", spec.name)))?;
                if let Some(data) = &spec.initial_data {
                    map.sys_update(&0u32.to_le_bytes(), data, 0).map_err(|e| {
                        oerr(format!(
                            "map {}: initialising global data: errno {e}",
                            spec.name
                        ))
                    })?;
                }
                if let skiff_object::MapOrigin::GlobalData { readonly: true, .. } = spec.origin {
                    map.freeze()
                        .map_err(|e| oerr(format!("map {}: freeze: errno {e}", spec.name)))?;
                }
                if let Some(p) = pin {
                    pinned.insert(p, map.clone());
                }
                maps.push((spec.name.clone(), map));
            }
            let refs: Vec<Arc<Map>> = maps.iter().map(|(_, m)| m.clone()).collect();
            let mut programs = Vec::new();
            for p in &o.object.programs {
                let prog = Program::load(&p.name, p.prog_type, p.insns.clone(), &refs)
                    .map_err(|e| oerr(e.to_string()))?;
                programs.push(Arc::new(prog));
            }
            let loaded = LoadedObject {
                path: o.path.clone(),
                maps,
                programs,
            };
            for spec in &o.object.maps {
                // libbpf.c: bpf_object_create_maps fills map-in-map slots only of
                // the maps it created; PROG_ARRAY slots (init_prog_array_slots)
                // of every map
                let is_reused = reused.contains(&spec.name.as_str());
                for (index, init) in &spec.slots {
                    if is_reused && matches!(init, SlotInit::Map(_)) {
                        continue;
                    }
                    let key = index.to_le_bytes();
                    let map = loaded
                        .map(&spec.name)
                        .ok_or_else(|| oerr(format!("no map {}", spec.name)))?;
                    let r = match init {
                        SlotInit::Prog(name) => {
                            let p = loaded.program(name).ok_or_else(|| {
                                oerr(format!(
                                    "map {}: slot {index}: no program {name}",
                                    spec.name
                                ))
                            })?;
                            map.sys_update_prog(&key, p.id, 0)
                        }
                        SlotInit::Map(name) => {
                            let m = loaded.map(name).ok_or_else(|| {
                                oerr(format!("map {}: slot {index}: no map {name}", spec.name))
                            })?;
                            map.sys_update_map(&key, m.clone(), 0)
                        }
                    };
                    r.map_err(|e| {
                        oerr(format!(
                            "map {}: initialising slot {index}: errno {e}",
                            spec.name
                        ))
                    })?;
                }
            }
            for d in &o.maps {
                let map = loaded
                    .map(&d.name)
                    .ok_or_else(|| d.loc.error(&self.file, format!("no map {}", d.name)))?;
                for e in &d.entries {
                    let resolve = |pieces: &[Piece]| -> Result<Vec<u8>, TopologyError> {
                        let mut v = Vec::new();
                        for p in pieces {
                            match p {
                                Piece::Bytes(b) => v.extend_from_slice(b),
                                Piece::Ifindex { netns, dev } => {
                                    let i = ifindex(netns, dev).ok_or_else(|| {
                                        e.loc.error(
                                            &self.file,
                                            format!(
                                                "ifindex: no device {dev:?} in netns {netns:?}"
                                            ),
                                        )
                                    })?;
                                    v.extend_from_slice(&i.to_ne_bytes());
                                }
                                Piece::Prog(name) => {
                                    let p = loaded.program(name).ok_or_else(|| {
                                        e.loc
                                            .error(&self.file, format!("prog: no program {name:?}"))
                                    })?;
                                    v.extend_from_slice(&p.id.to_ne_bytes());
                                }
                            }
                        }
                        Ok(v)
                    };
                    let key = resolve(&e.key)?;
                    let mut value = resolve(&e.value)?;
                    // one value for a per-CPU map: every CPU gets it (8-byte slots)
                    let want = map.sys_value_len();
                    if want != value.len() && map.attr().map_type.is_percpu() {
                        let slot = value.len().div_ceil(8) * 8;
                        let mut all = Vec::with_capacity(want);
                        while all.len() + slot <= want {
                            all.extend_from_slice(&value);
                            all.resize(all.len() + slot - value.len(), 0);
                        }
                        value = all;
                    }
                    let r = match map.attr().map_type {
                        MapType::ProgArray => map.sys_update_prog(
                            &key,
                            u32::from_ne_bytes(
                                value
                                    .get(..4)
                                    .and_then(|b| b.try_into().ok())
                                    .unwrap_or([0; 4]),
                            ),
                            0,
                        ),
                        _ => map.sys_update(&key, &value, 0),
                    };
                    r.map_err(|errno| {
                        e.loc.error(
                            &self.file,
                            format!("map {}: update refused: errno {errno}", d.name),
                        )
                    })?;
                }
            }
            out.push(loaded);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// building the datapath

use skiff_net::datapath::{
    self as dpm, Datapath, DatapathError, DatapathOptions, DeviceSpec, MprogOrder, NetkitSide,
    TcAttach, TcDirection,
};

/// A built topology: the datapath with every device, address, route and
/// program in place, and the loaded objects (their maps, for inspection).
pub struct Built {
    pub dp: Datapath,
    pub objects: Vec<LoadedObject>,
    /// What the topology asks for that the datapath cannot do yet (also
    /// printed by `skiff run`).
    pub warnings: Vec<String>,
}

impl Topology {
    /// Builds the datapath: namespaces, devices (pairs with their peers),
    /// stack configuration, objects loaded with shared pinned maps and initial
    /// entries, programs attached in file order.
    pub fn build(&self, opts: DatapathOptions) -> Result<Built, TopologyError> {
        let possible_cpus = opts.possible_cpus.max(1);
        let ferr = |msg: String| TopologyError::File {
            file: self.file.clone(),
            msg,
        };
        let mut dp = Datapath::new(opts).map_err(|e| ferr(e.to_string()))?;
        let mut ns_ids = HashMap::new();
        for ns in &self.namespaces {
            let id = dp
                .add_netns(&ns.name)
                .map_err(|e| ferr(format!("netns {}: {e}", ns.name)))?;
            ns_ids.insert(ns.name.clone(), id);
        }
        let ns_id = |n: &str| ns_ids.get(n).copied();
        for ns in &self.namespaces {
            let host = ns_id(&ns.name).ok_or_else(|| ferr(format!("netns {}", ns.name)))?;
            for d in &ns.devices {
                let derr =
                    |e: DatapathError| d.loc.error(&self.file, format!("device {}: {e}", d.name));
                let (kind, peer_ifindex) = match &d.kind {
                    DeviceKind::Nic { rx_queues } => (
                        dpm::DeviceKind::Nic {
                            rx_queues: *rx_queues,
                        },
                        None,
                    ),
                    DeviceKind::Veth {
                        peer,
                        peer_netns,
                        peer_mac,
                        peer_ifindex,
                    } => (
                        dpm::DeviceKind::Veth {
                            peer_name: peer.clone(),
                            peer_ns: ns_id(peer_netns),
                            peer_mac: *peer_mac,
                        },
                        peer_ifindex.map(|i| (i, peer_netns.clone(), peer.clone())),
                    ),
                    DeviceKind::Netkit {
                        peer,
                        peer_netns,
                        mode,
                        policy,
                        peer_policy,
                        scrub,
                        peer_scrub,
                        peer_ifindex,
                    } => {
                        let pol = |p: &NetkitPolicy| match p {
                            NetkitPolicy::Pass => dpm::NetkitPolicy::Pass,
                            NetkitPolicy::Drop => dpm::NetkitPolicy::Drop,
                        };
                        let scr = |s: &NetkitScrub| match s {
                            NetkitScrub::Default => dpm::NetkitScrub::Default,
                            NetkitScrub::None => dpm::NetkitScrub::None,
                        };
                        (
                            dpm::DeviceKind::Netkit {
                                peer_name: peer.clone(),
                                peer_ns: ns_id(peer_netns),
                                mode: match mode {
                                    NetkitMode::L3 => dpm::NetkitMode::L3,
                                    NetkitMode::L2 => dpm::NetkitMode::L2,
                                },
                                policy: pol(policy),
                                peer_policy: pol(peer_policy),
                                scrub: scr(scrub),
                                peer_scrub: scr(peer_scrub),
                                peer_mac: None,
                            },
                            peer_ifindex.map(|i| (i, peer_netns.clone(), peer.clone())),
                        )
                    }
                };
                let spec = DeviceSpec {
                    name: d.name.clone(),
                    kind,
                    mac: d.mac,
                    mtu: d.mtu,
                    up: d.up,
                    ifindex: d.ifindex,
                    txqueuelen: 1000,
                };
                let dev = dp.add_device(host, spec).map_err(derr)?;
                if let Some((want, pns, pname)) = peer_ifindex {
                    let got = dp.peer(dev).and_then(|p| dp.ifindex(p));
                    if got != Some(want) {
                        return Err(d.loc.error(&self.file, format!(
                            "not supported: peer_ifindex {want} for {pns}/{pname} (the datapath gave it {}; it takes no peer ifindex yet)",
                            got.map(|g| g.to_string()).unwrap_or_else(|| "none".into())
                        )));
                    }
                }
            }
        }
        let ifindex_of = |dp: &Datapath, ns: &str, dev: &str| -> Option<u32> {
            let n = dp.netns(ns)?;
            dp.device(n, dev).and_then(|d| dp.ifindex(d))
        };
        // stack configuration
        let warnings = Vec::new();
        for ns in &self.namespaces {
            let id = ns_id(&ns.name).ok_or_else(|| ferr(format!("netns {}", ns.name)))?;
            let dev_ifindex = |d: &str| {
                ifindex_of(&dp, &ns.name, d)
                    .ok_or_else(|| ferr(format!("netns {}: no device {d}", ns.name)))
            };
            let mut addrs = Vec::new();
            for a in &ns.addresses {
                addrs.push((dev_ifindex(&a.dev)?, a));
            }
            let mut routes = Vec::new();
            for r in &ns.routes {
                let i = match &r.dev {
                    Some(d) => Some(dev_ifindex(d)?),
                    None => None,
                };
                routes.push((i, r));
            }
            let mut rules = Vec::new();
            for r in &ns.rules {
                let iif = match &r.iif {
                    Some(d) => Some(dev_ifindex(d)?),
                    None => None,
                };
                let oif = match &r.oif {
                    Some(d) => Some(dev_ifindex(d)?),
                    None => None,
                };
                rules.push((iif, oif, r));
            }
            let mut neighs = Vec::new();
            for n in &ns.neighbours {
                neighs.push((dev_ifindex(&n.dev)?, n));
            }
            let serr = |what: String, e: &dyn std::fmt::Display| {
                ferr(format!("netns {}: {what}: {e}", ns.name))
            };
            let mut st = dp.stack_mut(id).map_err(|e| ferr(e.to_string()))?;
            st.set_forwarding(ns.forwarding, ns.ipv6_forwarding);
            for (i, a) in addrs {
                st.add_address(i, a.cidr.addr, a.cidr.prefix_len)
                    .map_err(|e| serr(format!("address {} on {}", a.cidr, a.dev), &e))?;
            }
            for (i, r) in routes {
                let kind = match r.kind {
                    RouteType::Unicast => skiff_net::stack::RouteKind::Unicast,
                    RouteType::Local => skiff_net::stack::RouteKind::Local,
                    RouteType::Blackhole => skiff_net::stack::RouteKind::Blackhole,
                    RouteType::Unreachable => skiff_net::stack::RouteKind::Unreachable,
                    RouteType::Prohibit => skiff_net::stack::RouteKind::Prohibit,
                };
                st.add_route(skiff_net::stack::Route {
                    table: r.table,
                    dst: r.dst.addr,
                    prefix_len: r.dst.prefix_len,
                    gateway: r.via,
                    ifindex: i,
                    src: r.src,
                    metric: r.metric,
                    kind,
                    mtu: None,
                })
                .map_err(|e| serr(format!("route {}", r.dst), &e))?;
            }
            for (iif, oif, r) in rules {
                let table = match r.action {
                    RuleAction::Table(t) => t,
                    other => return Err(ferr(format!("netns {}: rule {}: not supported: action {other:?} (the host stack has table rules only)", ns.name, r.priority))),
                };
                st.add_rule(skiff_net::stack::Rule {
                    priority: r.priority,
                    from: r.from.map(|c| (c.addr, c.prefix_len)),
                    to: r.to.map(|c| (c.addr, c.prefix_len)),
                    fwmark: r.fwmark,
                    iif,
                    oif,
                    table,
                })
                .map_err(|e| serr(format!("rule {}", r.priority), &e))?;
            }
            for (i, n) in neighs {
                st.add_neighbour(i, n.ip, n.mac)
                    .map_err(|e| serr(format!("neighbour {}", n.ip), &e))?;
            }
        }
        // objects and their maps
        let objects = {
            let dpr = &dp;
            self.load_objects(possible_cpus, &|ns, dev| ifindex_of(dpr, ns, dev))?
        };
        for o in &objects {
            dp.register_programs(&o.programs);
        }
        // attachments, in file order
        let mut chain_ids: HashMap<(String, String, String), Vec<(String, u32)>> = HashMap::new();
        for (o, lo) in self.objects.iter().zip(&objects) {
            for a in &o.attach {
                let aerr = |e: DatapathError| {
                    a.loc.error(
                        &self.file,
                        format!("attaching {} to {}/{}: {e}", a.program, a.netns, a.dev),
                    )
                };
                let prog = lo
                    .program(&a.program)
                    .cloned()
                    .ok_or_else(|| a.loc.error(&self.file, format!("no program {}", a.program)))?;
                let ns = dp
                    .netns(&a.netns)
                    .ok_or_else(|| a.loc.error(&self.file, format!("no netns {}", a.netns)))?;
                let dev = dp
                    .device(ns, &a.dev)
                    .ok_or_else(|| a.loc.error(&self.file, format!("no device {}", a.dev)))?;
                let hook_key = |h: &str| (a.netns.clone(), a.dev.clone(), h.to_string());
                let order = |o: &Order,
                             key: &(String, String, String)|
                 -> Result<MprogOrder, TopologyError> {
                    let id = |n: &str| {
                        chain_ids
                            .get(key)
                            .and_then(|c| c.iter().find(|(p, _)| p == n).map(|(_, i)| *i))
                            .ok_or_else(|| {
                                a.loc
                                    .error(&self.file, format!("no program {n} on this hook"))
                            })
                    };
                    Ok(match o {
                        Order::Append => MprogOrder::Append,
                        Order::Before(n) => MprogOrder::Before(id(n)?),
                        Order::After(n) => MprogOrder::After(id(n)?),
                    })
                };
                let key = match &a.hook {
                    Hook::Xdp(mode) => {
                        let m = match mode {
                            XdpMode::Native => dpm::XdpMode::Native,
                            XdpMode::Generic => dpm::XdpMode::Generic,
                        };
                        dp.attach_xdp(dev, prog.clone(), m).map_err(aerr)?;
                        hook_key("xdp")
                    }
                    Hook::Tc { dir, prio, handle } => {
                        let d = if *dir == Direction::Ingress {
                            TcDirection::Ingress
                        } else {
                            TcDirection::Egress
                        };
                        let prio = u16::try_from(*prio)
                            .map_err(|_| a.loc.error(&self.file, "prio above 65535"))?;
                        dp.attach_tc(
                            dev,
                            d,
                            TcAttach::ClsBpf {
                                prio,
                                handle: *handle,
                                classid: 0,
                            },
                            prog.clone(),
                        )
                        .map_err(aerr)?;
                        hook_key(if *dir == Direction::Ingress {
                            "tc/ingress"
                        } else {
                            "tc/egress"
                        })
                    }
                    Hook::Tcx { dir, order: o } => {
                        let k = hook_key(if *dir == Direction::Ingress {
                            "tcx/ingress"
                        } else {
                            "tcx/egress"
                        });
                        let d = if *dir == Direction::Ingress {
                            TcDirection::Ingress
                        } else {
                            TcDirection::Egress
                        };
                        dp.attach_tc(dev, d, TcAttach::Tcx(order(o, &k)?), prog.clone())
                            .map_err(aerr)?;
                        k
                    }
                    Hook::Netkit { side, order: o } => {
                        let k = hook_key(if *side == Side::Primary {
                            "netkit/primary"
                        } else {
                            "netkit/peer"
                        });
                        let s = if *side == Side::Primary {
                            NetkitSide::Primary
                        } else {
                            NetkitSide::Peer
                        };
                        dp.attach_netkit(dev, s, order(o, &k)?, prog.clone())
                            .map_err(aerr)?;
                        k
                    }
                };
                chain_ids
                    .entry(key)
                    .or_default()
                    .push((a.program.clone(), prog.id));
            }
        }
        Ok(Built {
            dp,
            objects,
            warnings,
        })
    }
}
