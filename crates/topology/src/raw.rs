//! The file as written: serde structs with every value's span, so that
//! validation can name the line, column and field of what it refuses.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopology {
    #[serde(default)]
    pub netns: BTreeMap<Spanned<String>, Spanned<RawNetns>>,
    #[serde(default)]
    pub object: Vec<Spanned<RawObject>>,
    /// Where a live run keeps its pinned maps across restarts.
    pub pin_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetns {
    pub forwarding: Option<Spanned<bool>>,
    pub ipv6_forwarding: Option<Spanned<bool>>,
    #[serde(default)]
    pub device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    pub address: Vec<Spanned<RawAddress>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    pub neighbour: Vec<Spanned<RawNeighbour>>,
    /// tc command lines, run in order as `ip netns exec NAME tc ...`.
    #[serde(default)]
    pub tc: Vec<Spanned<String>>,
    /// The ports with a listening socket (`["tcp/80", "udp/53"]`); absent:
    /// every port is a sink.
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    /// `sysctl -w` settings: `"net.ipv4.conf.eth0.rp_filter" = 1`.
    #[serde(default)]
    pub sysctl: BTreeMap<Spanned<String>, Spanned<i64>>,

    /// iptables command lines (without `iptables`), run in order.
    #[serde(default)]
    pub iptables: Vec<Spanned<String>>,
    /// ip6tables command lines.
    #[serde(default)]
    pub ip6tables: Vec<Spanned<String>>,
    /// An nft -f rule set (the text `nft -f` reads), applied after the
    /// iptables lines.
    pub nft: Option<Spanned<String>>,
    /// iptables-save text, loaded as iptables-restore loads it (before the
    /// `iptables` lines).
    pub iptables_save: Option<Spanned<String>>,
    /// ip6tables-save text.
    pub ip6tables_save: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub mac: Option<Spanned<String>>,
    pub mtu: Option<Spanned<u32>>,
    pub ifindex: Option<Spanned<u32>>,
    pub up: Option<Spanned<bool>>,
    pub rx_queues: Option<Spanned<u32>>,
    pub peer: Option<Spanned<String>>,
    pub peer_netns: Option<Spanned<String>>,
    pub peer_mac: Option<Spanned<String>>,
    pub peer_ifindex: Option<Spanned<u32>>,
    pub mode: Option<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    pub peer_policy: Option<Spanned<String>>,
    pub scrub: Option<Spanned<String>>,
    pub peer_scrub: Option<Spanned<String>>,
    /// A NIC whose wire is a real interface: tap, af_packet or af_xdp.
    pub backend: Option<Spanned<String>>,
    pub host_ifname: Option<Spanned<String>>,
    pub host_netns: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAddress {
    pub dev: Spanned<String>,
    pub cidr: Spanned<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum RawTable {
    Num(u32),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub dst: Spanned<String>,
    pub via: Option<Spanned<String>>,
    pub dev: Option<Spanned<String>>,
    pub table: Option<Spanned<RawTable>>,
    pub metric: Option<Spanned<u32>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub src: Option<Spanned<String>>,
    pub onlink: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub priority: Option<Spanned<u32>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub iif: Option<Spanned<String>>,
    pub oif: Option<Spanned<String>>,
    pub fwmark: Option<Spanned<u32>>,
    pub fwmask: Option<Spanned<u32>>,
    pub table: Option<Spanned<RawTable>>,
    pub action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbour {
    pub dev: Spanned<String>,
    pub ip: Spanned<String>,
    pub mac: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObject {
    pub path: Spanned<String>,
    #[serde(default)]
    pub map: Vec<Spanned<RawMap>>,
    #[serde(default)]
    pub attach: Vec<Spanned<RawAttach>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMap {
    pub name: Spanned<String>,
    pub pin: Option<Spanned<String>>,
    /// libbpf's pinning attribute: "by_name" (LIBBPF_PIN_BY_NAME) or "none".
    pub pinning: Option<Spanned<String>>,
    #[serde(default)]
    pub entries: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawBytes {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntry {
    pub key: Spanned<RawBytes>,
    pub value: Spanned<RawBytes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttach {
    pub program: Option<Spanned<String>>,
    pub section: Option<Spanned<String>>,
    pub netns: Option<Spanned<String>>,
    pub dev: Spanned<String>,
    pub hook: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub prio: Option<Spanned<u32>>,
    pub handle: Option<Spanned<u32>>,
    pub before: Option<Spanned<String>>,
    pub after: Option<Spanned<String>>,
}
