//! What the kernel differential tests of the datapath (tests/datapath_kernel*.rs)
//! share: the topology's names and addresses, the frames they send, the
//! kernel side (namespaces, packet sockets, programs' maps through bpftool),
//! the skiff side, the per-program objects. tests/datapath_kernel.rs describes
//! the topology.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use skiff_kernel::mask::icmp6_of;
use skiff_kernel::netns::{self, CollectLimits, Netns, PacketSocket, PACKET_OUTGOING};
use skiff_maps::MapValue;
use skiff_net::datapath::*;
use skiff_vm::Collection;
use skiff_wire::checksum::pseudo_header_v4;
use skiff_wire::icmpv6::{NdiscRepr, ICMPV6_ECHO_REQUEST, NDISC_NEIGHBOUR_ADVERTISEMENT};
use skiff_wire::{
    icmpv4, ipv6, ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv6Packet, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_UDP,
};

pub const MAC_A0: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
pub const MAC_R0: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
pub const MAC_R1: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
pub const MAC_B0: [u8; 6] = [2, 0, 0, 0, 0, 0x0d];
/// The permanent neighbour 10.2.0.9 behind b0 (not b0: B drops what goes there).
pub const MAC_NEXT: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
pub const IFX_A0: u32 = 10;
pub const IFX_R1: u32 = 12;

pub const A0_IP: [u8; 4] = [10, 1, 0, 2];
pub const R0_IP: [u8; 4] = [10, 1, 0, 1];
pub const R1_IP: [u8; 4] = [10, 2, 0, 1];
pub const NEXT_IP: [u8; 4] = [10, 2, 0, 9];
pub const NO_NEIGH_IP: [u8; 4] = [10, 2, 0, 77];
/// A permanent neighbour on r0's side (A's subnet): forwarding there goes
/// back out of r0.
pub const SIDE_IP: [u8; 4] = [10, 1, 0, 3];
pub const MAC_SIDE: [u8; 6] = [2, 0, 0, 0, 0, 0x33];

pub const MARKER: &[u8] = b"skiff-dp-";
/// How long the kernel side waits for more frames after the last one.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest it collects, and how many frames per device at most.
pub const COLLECT_MAX: Duration = Duration::from_secs(3);
pub const FRAMES_MAX: usize = 64;

pub const PROGS: [&str; 6] = [
    "TC_REWRITE_REDIRECT",
    "XDP_BLOCKLIST",
    "XDP_REFLECT",
    "XDP_PASS",
    "TC_REDIRECT_PEER",
    "TC_COUNT",
];

// ---- frames -------------------------------------------------------------------

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    };
    let mut f = repr.to_frame(payload.len());
    f.extend_from_slice(payload);
    f
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; skiff_wire::ipv4::HEADER_LEN];
    let repr = Ipv4Repr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        protocol: proto,
        tos: 0,
        ttl,
        ident: 0x1234,
        dont_frag: true,
        payload_len: payload.len(),
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(payload);
    h
}

pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let len = skiff_wire::udp::HEADER_LEN + payload.len();
    let mut u = vec![0u8; skiff_wire::udp::HEADER_LEN];
    u.extend_from_slice(payload);
    let mut p = UdpPacket::new_unchecked(&mut u[..]);
    p.set_src_port(sport);
    p.set_dst_port(dport);
    p.set_length(len as u16);
    p.fill_checksum(pseudo_header_v4(src.into(), dst.into(), IPPROTO_UDP, len));
    eth(
        MAC_R0,
        MAC_A0,
        ETH_P_IP,
        &ipv4(src, dst, IPPROTO_UDP, ttl, &u),
    )
}

pub fn icmp_echo(dst: [u8; 4], id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let rest = (u32::from(id) << 16) | u32::from(seq);
    let m = icmpv4::message(icmpv4::ICMP_ECHO, 0, rest, payload);
    eth(
        MAC_R0,
        MAC_A0,
        ETH_P_IP,
        &ipv4(A0_IP, dst, IPPROTO_ICMP, 64, &m),
    )
}

pub const A0_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const R0_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Ethernet/IPv6/ICMPv6 from a0's address to `dst` (hop limit `hl`), the
/// message's checksum set.
pub fn icmp6(dmac: [u8; 6], dst: [u8; 16], hl: u8, mut m: Vec<u8>) -> Vec<u8> {
    Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(A0_IP6.into(), dst.into());
    let mut h = vec![0u8; ipv6::HEADER_LEN];
    let repr = Ipv6Repr {
        src_addr: A0_IP6.into(),
        dst_addr: dst.into(),
        next_header: IPPROTO_ICMPV6,
        hop_limit: hl,
        traffic_class: 0,
        payload_len: m.len(),
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut h[..]));
    h.extend_from_slice(&m);
    eth(dmac, MAC_A0, ETH_P_IPV6, &h)
}

pub fn icmp6_echo(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; skiff_wire::icmpv6::HEADER_LEN];
    let mut p = Icmpv6Packet::new_unchecked(&mut m[..]);
    p.set_msg_type(ICMPV6_ECHO_REQUEST);
    p.set_data_word(0x4242_0000 | u32::from(seq));
    m.extend_from_slice(payload);
    icmp6(MAC_R0, R0_IP6, 64, m)
}

/// A neighbour solicitation for r0's address to its solicited-node group,
/// with a0's link-layer address.
pub fn neigh_solicit() -> Vec<u8> {
    let snm = ipv6::solicited_node(R0_IP6.into());
    let ns = NdiscRepr::NeighborSolicit {
        target: R0_IP6.into(),
        lladdr: Some(MAC_A0),
    };
    let m = ns.to_message(A0_IP6.into(), snm);
    icmp6(ipv6::eth_mc_map(snm), snm.octets(), 255, m)
}

pub fn arp_request(tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0u8; skiff_wire::arp::PACKET_LEN];
    let repr = ArpRepr {
        operation: skiff_wire::arp::ARPOP_REQUEST,
        source_hardware_addr: MAC_A0,
        source_protocol_addr: A0_IP.into(),
        target_hardware_addr: [0; 6],
        target_protocol_addr: tpa.into(),
    };
    repr.emit(&mut ArpPacket::new_unchecked(&mut a[..]));
    eth([0xff; 6], MAC_A0, ETH_P_ARP, &a)
}

/// The IPv4 header of an Ethernet frame.
pub fn ip_of(f: &mut [u8]) -> Ipv4Packet<&mut [u8]> {
    Ipv4Packet::new_unchecked(&mut f[skiff_wire::ethernet::HEADER_LEN..])
}

/// The frame with its IPv4 header edited (the header checksum fixed after).
pub fn edit_ip(mut f: Vec<u8>, edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) -> Vec<u8> {
    let mut ip = ip_of(&mut f);
    edit(&mut ip);
    ip.fill_checksum();
    f
}

pub fn with_dmac(mut f: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    EthernetFrame::new_unchecked(&mut f[..]).set_dst_addr(mac);
    f
}

/// The frame with 4 bytes of IPv4 options (NOPs) after the header.
pub fn with_nop_options(f: Vec<u8>) -> Vec<u8> {
    let at = skiff_wire::ethernet::HEADER_LEN + skiff_wire::ipv4::HEADER_LEN;
    let mut v = f[..at].to_vec();
    v.extend_from_slice(&[1, 1, 1, 1]);
    v.extend_from_slice(&f[at..]);
    edit_ip(v, |h| {
        h.set_header_len(24);
        h.set_total_len(h.total_len() + 4);
    })
}

/// A payload of `len` bytes with the marker at both ends (so every fragment
/// of it carries one).
pub fn long_marker(scenario: &str, n: usize, len: usize) -> Vec<u8> {
    let m = marker(scenario, n);
    let mut v = m.clone();
    v.resize(len - m.len(), 0xab);
    v.extend_from_slice(&m);
    v
}

pub fn marker(scenario: &str, n: usize) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(format!("{scenario}-{n}-{:08}", std::process::id()).as_bytes());
    m
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A frame for a message: its length and its first 80 bytes in hex.
pub fn show(f: &[u8]) -> String {
    let head: String = f.iter().take(80).map(|b| format!("{b:02x}")).collect();
    format!(
        "[{} bytes] {head}{}",
        f.len(),
        if f.len() > 80 { "..." } else { "" }
    )
}

pub fn show_all(v: &[Vec<u8>]) -> String {
    v.iter().map(|f| format!("\n    {}", show(f))).collect()
}

/// Frames the test caused: ARP, or anything that carries the marker.
pub fn relevant(f: &[u8]) -> bool {
    f.get(12..14) == Some(&[0x08, 0x06][..]) || contains(f, MARKER) || is_na(f)
}

/// An ICMPv6 neighbour advertisement (the answer to the test's solicitation;
/// MLD reports and the like are not the test's).
pub fn is_na(f: &[u8]) -> bool {
    icmp6_of(f).is_some_and(|(_, m)| m.first() == Some(&NDISC_NEIGHBOUR_ADVERTISEMENT))
}

// ---- the kernel side -----------------------------------------------------------

pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn must(cmd: &str, args: &[&str]) -> String {
    run(cmd, args).unwrap_or_else(|e| panic!("{e}"))
}

pub fn ip(ns: &str, args: &str) {
    let mut v = vec!["-n", ns];
    v.extend(args.split_whitespace());
    must("ip", &v);
}

pub fn tc(ns: &str, args: &str) {
    let mut v = vec!["-n", ns];
    v.extend(args.split_whitespace());
    must("tc", &v);
}

pub fn sysctl(ns: &str, kv: &str) {
    must("ip", &["netns", "exec", ns, "sysctl", "-qw", kv]);
}

pub fn mac_s(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn ip_s(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// The namespaces; deleted on drop (their devices and programs go with them).
pub struct Namespaces {
    pub list: Vec<Netns>,
}

impl Namespaces {
    pub fn add(&mut self, name: String) -> String {
        let ns = Netns::add(&name).unwrap_or_else(|e| panic!("{e}"));
        self.list.push(ns);
        name
    }
}

/// The compiled objects' directory; removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Kernel {
    pub a: String,
    pub r: String,
    pub b: String,
}

pub fn build_kernel(nss: &mut Namespaces, ifx: &Ifindexes) -> Kernel {
    let pid = std::process::id();
    let a = nss.add(format!("skiff-dp-{pid}-a"));
    let r = nss.add(format!("skiff-dp-{pid}-r"));
    let b = nss.add(format!("skiff-dp-{pid}-b"));
    for ns in [&a, &r, &b] {
        sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1");
        sysctl(ns, "net.ipv6.conf.default.disable_ipv6=1");
        ip(ns, "link set lo up");
    }
    ip(
        &a,
        &format!(
            "link add a0 index {} address {} type veth peer name r0 index {} address {} netns {r}",
            ifx.a0,
            mac_s(MAC_A0),
            ifx.r0,
            mac_s(MAC_R0)
        ),
    );
    ip(
        &r,
        &format!(
            "link add r1 index {} address {} type veth peer name b0 index {} address {} netns {b}",
            ifx.r1,
            mac_s(MAC_R1),
            ifx.b0,
            mac_s(MAC_B0)
        ),
    );
    for (ns, d) in [(&a, "a0"), (&r, "r0"), (&r, "r1"), (&b, "b0")] {
        ip(ns, &format!("link set {d} up"));
    }
    ip(&a, "addr add 10.1.0.2/24 dev a0");
    ip(&r, "addr add 10.1.0.1/24 dev r0");
    ip(&r, "addr add 10.2.0.1/24 dev r1");
    ip(&b, "addr add 10.2.0.2/24 dev b0");
    sysctl(&r, "net.ipv4.ip_forward=1");
    ip(
        &r,
        &format!(
            "neigh add {} lladdr {} dev r0 nud permanent",
            ip_s(A0_IP),
            mac_s(MAC_A0)
        ),
    );
    ip(
        &r,
        &format!(
            "neigh add {} lladdr {} dev r1 nud permanent",
            ip_s(NEXT_IP),
            mac_s(MAC_NEXT)
        ),
    );
    ip(
        &r,
        &format!(
            "neigh add {} lladdr {} dev r0 nud permanent",
            ip_s(SIDE_IP),
            mac_s(MAC_SIDE)
        ),
    );
    Kernel { a, r, b }
}

/// An AF_PACKET socket bound to `ifindex` in namespace `ns`, non-blocking.
pub fn packet_socket(ns: &str, ifindex: u32) -> PacketSocket {
    PacketSocket::open_in(&format!("/run/netns/{ns}"), ifindex).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything waiting now, thrown away.
pub fn drain(socks: &[(&str, &PacketSocket)]) {
    for (_, s) in socks {
        s.drain(10_000);
    }
}

/// Incoming frames on each socket until none came for QUIET (at most
/// COLLECT_MAX, FRAMES_MAX per device), the relevant ones only.
pub fn collect(socks: &[(&str, &PacketSocket)]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let limits = CollectLimits {
        quiet: QUIET,
        max_time: COLLECT_MAX,
        max_frames: FRAMES_MAX,
    };
    let only: Vec<&PacketSocket> = socks.iter().map(|(_, s)| *s).collect();
    let got = netns::collect(&only, limits, None, |_, t, f| {
        t != PACKET_OUTGOING && relevant(f)
    });
    socks
        .iter()
        .zip(got)
        .map(|((n, _), v)| (n.to_string(), v.into_iter().map(|(_, f)| f).collect()))
        .collect()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON ({e}): {s}"))
}

/// The id of the program attached at (device, hook) in namespace `ns`.
pub fn kernel_prog_id(ns: &str, dev: &str, hook: Hook4) -> u64 {
    match hook {
        Hook4::XdpNative | Hook4::XdpGeneric => {
            let v = json(&must("ip", &["-n", ns, "-j", "link", "show", "dev", dev]));
            v[0]["xdp"]["prog"]["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("no XDP program on {dev}: {v}"))
        }
        Hook4::TcIngress | Hook4::TcEgress => {
            let dir = if hook == Hook4::TcIngress {
                "ingress"
            } else {
                "egress"
            };
            let v = json(&must(
                "tc",
                &["-n", ns, "-j", "filter", "show", "dev", dev, dir],
            ));
            v.as_array()
                .into_iter()
                .flatten()
                .find_map(|f| f["options"]["prog"]["id"].as_u64())
                .unwrap_or_else(|| panic!("no tc program on {dev}: {v}"))
        }
    }
}

pub type MapDump = Vec<(Vec<u8>, Vec<u8>)>;

pub fn hex_bytes(v: &serde_json::Value) -> Vec<u8> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let s = b.as_str().unwrap_or("");
            u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{b}"))
        })
        .collect()
}

/// The named maps of program `prog_id`, dumped with bpftool, sorted by key.
pub fn kernel_maps(prog_id: u64, names: &[&str]) -> BTreeMap<String, MapDump> {
    let p = json(&must(
        "bpftool",
        &["-j", "prog", "show", "id", &prog_id.to_string()],
    ));
    let mut out = BTreeMap::new();
    for id in p["map_ids"].as_array().into_iter().flatten() {
        let id = id.as_u64().unwrap_or(0).to_string();
        let m = json(&must("bpftool", &["-j", "map", "show", "id", &id]));
        let name = m["name"].as_str().unwrap_or("").to_string();
        if !names.contains(&name.as_str()) {
            continue;
        }
        let d = json(&must("bpftool", &["-j", "map", "dump", "id", &id]));
        let mut v: MapDump = d
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (hex_bytes(&e["key"]), hex_bytes(&e["value"])))
            .collect();
        v.sort();
        out.insert(name, v);
    }
    out
}

// ---- the skiff side ------------------------------------------------------------

pub struct Ifindexes {
    pub a0: u32,
    pub r0: u32,
    pub r1: u32,
    pub b0: u32,
}

pub struct Skiff {
    pub dp: Datapath,
    pub a0: DevId,
    pub r0: DevId,
    pub r1: DevId,
    pub b0: DevId,
}

pub fn veth(
    name: &str,
    ifindex: u32,
    mac: [u8; 6],
    peer_ns: NsId,
    peer: &str,
    pmac: [u8; 6],
) -> DeviceSpec {
    let mut s = DeviceSpec::veth(name, Some(peer_ns), peer);
    s.ifindex = Some(ifindex);
    s.mac = Some(mac);
    if let DeviceKind::Veth { peer_mac, .. } = &mut s.kind {
        *peer_mac = Some(pmac);
    }
    s
}

pub fn build_skiff() -> Skiff {
    let mut dp = Datapath::new(DatapathOptions::default()).unwrap();
    dp.set_record_drops(true);
    let a = dp.add_netns("a").unwrap();
    let r = dp.add_netns("r").unwrap();
    let b = dp.add_netns("b").unwrap();
    let a0 = dp
        .add_device(a, veth("a0", IFX_A0, MAC_A0, r, "r0", MAC_R0))
        .unwrap();
    let r0 = dp.peer(a0).unwrap();
    let r1 = dp
        .add_device(r, veth("r1", IFX_R1, MAC_R1, b, "b0", MAC_B0))
        .unwrap();
    let b0 = dp.peer(r1).unwrap();
    let v4 = |a: [u8; 4]| std::net::IpAddr::from(a);
    let i = |d: DevId| dp.ifindex(d).unwrap();
    let (ia0, ir0, ir1, ib0) = (i(a0), i(r0), i(r1), i(b0));
    // No sockets listen in the kernel's namespaces: UDP to a local port gets
    // ICMP port unreachable there, so the same here.
    for ns in [a, r, b] {
        dp.stack_mut(ns)
            .unwrap()
            .set_listening(Some(Default::default()));
    }
    dp.stack_mut(a)
        .unwrap()
        .add_address(ia0, v4(A0_IP), 24)
        .unwrap();
    {
        let mut s = dp.stack_mut(r).unwrap();
        s.add_address(ir0, v4(R0_IP), 24).unwrap();
        s.add_address(ir1, v4(R1_IP), 24).unwrap();
        s.set_forwarding(true, false);
        s.add_neighbour(ir0, v4(A0_IP), MAC_A0).unwrap();
        s.add_neighbour(ir1, v4(NEXT_IP), MAC_NEXT).unwrap();
        s.add_neighbour(ir0, v4(SIDE_IP), MAC_SIDE).unwrap();
    }
    dp.stack_mut(b)
        .unwrap()
        .add_address(ib0, v4([10, 2, 0, 2]), 24)
        .unwrap();
    dp.capture(r0, Hook::Xmit);
    dp.capture(r1, Hook::Xmit);
    Skiff { dp, a0, r0, r1, b0 }
}

pub fn skiff_maps(c: &Collection, names: &[&str]) -> BTreeMap<String, MapDump> {
    let mut out = BTreeMap::new();
    for name in names {
        let m = c.map(name).unwrap_or_else(|e| panic!("map {name}: {e}"));
        let mut v = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        for _ in 0..10_000 {
            let Ok(k) = m.sys_get_next_key(key.as_deref()) else {
                break;
            };
            match m.sys_lookup(&k) {
                Ok(MapValue::Single(val)) => v.push((k.clone(), val)),
                r => panic!("map {name}: lookup {k:?}: {r:?}"),
            }
            key = Some(k);
        }
        v.sort();
        out.insert(name.to_string(), v);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hook4 {
    XdpNative,
    XdpGeneric,
    TcIngress,
    TcEgress,
}

/// Where `compile` puts program `p`'s object (clang::compile_variant's name).
pub fn obj_path(dir: &Path, p: &str) -> std::path::PathBuf {
    dir.join(format!("datapath_kernel_{p}.o"))
}

/// One object per program (iproute2 picks a program by section name), each
/// with its `PROG_*` define.
pub fn compile(dir: &Path, r1_ifindex: u32) -> Option<BTreeMap<&'static str, Vec<u8>>> {
    let src = super::bpf_src("datapath_kernel");
    let mut out = BTreeMap::new();
    for p in PROGS {
        let defines = [format!("PROG_{p}"), format!("R1_IFINDEX={r1_ifindex}")];
        let o = skiff_kernel::clang::compile_variant(&src, dir, &format!("_{p}"), &defines)
            .map_err(|e| eprintln!("skipping: {e}"))
            .ok()?;
        debug_assert_eq!(o, obj_path(dir, p));
        out.insert(p, std::fs::read(o).ok()?);
    }
    Some(out)
}

pub const MAPS: [&str; 2] = ["dpk_ports", "dpk_verdicts"];
