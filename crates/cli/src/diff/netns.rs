//! The kernel side of a diff: the topology built in real network namespaces
//! (`skiff-d<pid>-<name>`) with `ip` and `tc`, each NIC a veth whose other end
//! sits in an injector namespace of skiff's own, frames sent there with their
//! pcap timing (AF_PACKET) and what the NICs transmit read there. Everything
//! is removed on drop, also when a step fails or SIGINT/SIGTERM arrives.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use skiff_kernel::netns::{collect, CollectLimits, Netns, PacketSocket, PACKET_OUTGOING};
use skiff_net::netfilter::NfProto;
use skiff_topology::netfilter::ShellWords;
use skiff_topology::{Device, DeviceKind, NetkitMode, RouteKind, RuleAction, Topology};

use super::attach::{namespace, t_dir, Attached, Namespaces};
use super::inputs::Frame;
use super::side::{DevInfo, SideResult};
use super::CannotRun;

/// How long the NICs' output is read after the last frame was sent and
/// nothing more came.
const QUIET: Duration = Duration::from_millis(500);
/// Frames a NIC transmits later than this after the last frame was sent are
/// not compared (a shaper's backlog leaves for as long as it lasts: skiff's
/// frames are cut at the same time, `SkiffRun::trim`): they are counted in a
/// note.
pub(super) const GRACE: Duration = Duration::from_millis(2);
/// The most frames read per NIC.
const FRAMES_MAX: usize = 200_000;

/// A NIC of the topology: its veth's other end in the injector namespace.
struct Nic {
    /// `NETNS/NAME`.
    dev: String,
    wire_dev: String,
    socket: Option<PacketSocket>,
}

pub struct KernelTopology {
    /// Declared before the namespaces: links and pins go first.
    attached: Option<Attached>,
    nics: Vec<Nic>,
    namespaces: Namespaces,
    wire: Option<Netns>,
    ipv6: bool,
    pub notes: Vec<String>,
}

/// The kernel's name of a namespace of this run.
fn ns_name(name: &str) -> String {
    format!("skiff-d{}-{name}", std::process::id())
}

impl KernelTopology {
    /// Namespaces, devices, addresses, routes, rules, neighbours, tc lines,
    /// objects: as the topology says, with the ifindexes and MACs skiff gave.
    pub fn build(t: &Topology, devs: &[DevInfo]) -> Result<KernelTopology, CannotRun> {
        let mut k = KernelTopology {
            attached: None,
            nics: Vec::new(),
            namespaces: BTreeMap::new(),
            wire: None,
            ipv6: uses_ipv6(t),
            notes: Vec::new(),
        };
        let mut wire = "wire".to_string();
        while t.namespaces.iter().any(|n| n.name == wire) {
            wire.push('_');
        }
        k.wire = Some(Netns::add(&ns_name(&wire))?);
        for n in &t.namespaces {
            k.namespaces
                .insert(n.name.clone(), Netns::add(&ns_name(&n.name))?);
        }
        if !k.ipv6 {
            k.notes.push("IPv6 disabled in every namespace (the topology has no IPv6 address or route): no router solicitations, MLD or DAD on the wire".into());
        }
        for ns in k.namespaces.values().chain(k.wire.as_ref()) {
            k.prepare(ns)?;
        }
        for n in &t.namespaces {
            for d in &n.devices {
                k.add_device(&n.name, d, devs)?;
            }
        }
        for n in &t.namespaces {
            k.configure(n)?;
        }
        for n in &t.namespaces {
            let ns = namespace(&k.namespaces, &n.name)?;
            for l in &n.tc {
                let args: Vec<&str> = l.text.split_whitespace().collect();
                ns.tc(&args, &t_dir(t)).map_err(|e| {
                    CannotRun(format!(
                        "kernel: netns {}: the tc line {:?} cannot be built in this kernel: {e}",
                        n.name, l.text
                    ))
                })?;
            }
        }
        for n in &t.namespaces {
            k.apply_iptables(n)?;
        }
        let mut attached = Attached::new(format!("/sys/fs/bpf/{}", ns_name("pins")).into())?;
        let mut notes = Vec::new();
        attached.load_all(t, &k.namespaces, &mut notes)?;
        k.notes.extend(notes);
        k.attached = Some(attached);
        k.open_sockets()?;
        Ok(k)
    }

    /// lo up; IPv6 off unless the topology uses it (set before any device
    /// exists, so the devices inherit it).
    fn prepare(&self, ns: &Netns) -> Result<(), CannotRun> {
        ns.ip(&["link", "set", "lo", "up"])?;
        if !self.ipv6 {
            ns.sysctl("net.ipv6.conf.all.disable_ipv6=1")?;
            ns.sysctl("net.ipv6.conf.default.disable_ipv6=1")?;
        }
        Ok(())
    }

    /// The namespace's `iptables`/`ip6tables` lines, run in order with the
    /// x_tables front ends (iptables-legacy where installed: skiff's tables
    /// are x_tables'). `statistic --mode random` draws the kernel's random
    /// numbers, skiff's a seeded generator's: said in a note.
    fn apply_iptables(&mut self, n: &skiff_topology::Netns) -> Result<(), CannotRun> {
        if n.iptables.is_empty() {
            return Ok(());
        }
        let ns = namespace(&self.namespaces, &n.name)?.name().to_string();
        for l in &n.iptables {
            let tool = match l.cmd.family {
                NfProto::Ipv6 => "ip6tables",
                _ => "iptables",
            };
            let words = ShellWords::new(&l.text).map_err(|at| {
                CannotRun(format!(
                    "netns {}: the {tool} line {:?}: unterminated quote at {at}",
                    n.name, l.text
                ))
            })?;
            let legacy = format!("{tool}-legacy");
            let bin = match std::process::Command::new(&legacy).arg("-V").output() {
                Ok(_) => legacy.as_str(),
                Err(_) => tool,
            };
            let mut args = vec![bin];
            args.extend(words.words.iter().map(|(_, w)| w.as_str()));
            skiff_kernel::netns::run_netns(&ns, &args).map_err(|e| {
                CannotRun(format!(
                    "kernel: netns {}: the {tool} line {:?} cannot be applied: {e}",
                    n.name, l.text
                ))
            })?;
        }
        if n.iptables.iter().any(|l| l.text.contains("random")) {
            self.notes.push(format!(
                "netns {}: `-m statistic --mode random` (or --random/--random-fully) draws the kernel's random numbers, skiff's a seeded generator's: which rule or port a connection gets can differ",
                n.name
            ));
        }
        Ok(())
    }

    fn wire(&self) -> Result<&Netns, CannotRun> {
        self.wire
            .as_ref()
            .ok_or_else(|| CannotRun("kernel: no injector namespace".into()))
    }

    /// `ip link add`: a NIC becomes a veth with its other end in the injector
    /// namespace, a netkit pair a veth pair (ARP off on both ends in L3 mode,
    /// as netkit's IFF_NOARP).
    fn add_device(&mut self, ns: &str, d: &Device, devs: &[DevInfo]) -> Result<(), CannotRun> {
        let mut args = vec!["link".to_string(), "add".to_string()];
        let me = info(devs, ns, &d.name)?;
        args.extend(link_args(&d.name, me, d.mtu));
        args.extend(["type", "veth", "peer"].map(String::from));
        let wire_name = self.wire()?.name().to_string();
        let mut ends = vec![(ns.to_string(), d.name.clone(), d.up)];
        let mut arp_off = false;
        match &d.kind {
            DeviceKind::Nic { .. } => {
                let wire_dev = format!("nic{}", self.nics.len());
                args.extend(["name", &wire_dev, "netns", &wire_name].map(String::from));
                self.notes.push(format!(
                    "NIC {ns}/{}: a veth whose other end ({wire_dev}) is in {wire_name}, where frames are sent and what the NIC transmits is read",
                    d.name
                ));
                self.nics.push(Nic {
                    dev: format!("{ns}/{}", d.name),
                    wire_dev,
                    socket: None,
                });
            }
            DeviceKind::Veth {
                peer_name, peer_ns, ..
            }
            | DeviceKind::Netkit {
                peer_name, peer_ns, ..
            } => {
                let pns = peer_ns.clone().unwrap_or_else(|| ns.to_string());
                args.extend(link_args(peer_name, info(devs, &pns, peer_name)?, d.mtu));
                args.extend(["netns".to_string(), ns_name(&pns)]);
                if let DeviceKind::Netkit { mode, .. } = &d.kind {
                    arp_off = *mode == NetkitMode::L3;
                    self.notes.push(format!(
                        "netkit {ns}/{} <-> {pns}/{peer_name}: this kernel has no netkit: a veth pair stands in{} (netkit's default policies are not modelled: a veth passes)",
                        d.name,
                        if arp_off { format!(", for L3 mode ARP off and one MAC on both ends ({}), so that each end takes what the other sends as PACKET_HOST, as netkit's MAC-less L3 frames are", mac_s(l3_mac(me.ifindex))) } else { String::new() }
                    ));
                }
                ends.push((pns, peer_name.clone(), true));
            }
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        namespace(&self.namespaces, ns)?.ip(&argv)?;
        for (ens, dev, up) in &ends {
            let n = namespace(&self.namespaces, ens)?;
            if arp_off {
                // IFF_NOARP: a neighbour's address is the device's own
                // (arp_constructor), which the other end must take as its own
                let mac = mac_s(l3_mac(me.ifindex));
                n.ip(&["link", "set", "dev", dev, "arp", "off", "address", &mac])?;
            }
            if *up {
                n.ip(&["link", "set", "dev", dev, "up"])?;
            }
        }
        if let Some(nic) = self
            .nics
            .last()
            .filter(|_| matches!(d.kind, DeviceKind::Nic { .. }))
        {
            self.wire()?
                .ip(&["link", "set", "dev", &nic.wire_dev, "up"])?;
        }
        Ok(())
    }

    /// Forwarding, addresses, routes, rules and neighbours of one namespace.
    fn configure(&self, n: &skiff_topology::Netns) -> Result<(), CannotRun> {
        let ns = namespace(&self.namespaces, &n.name)?;
        ns.sysctl(&format!("net.ipv4.ip_forward={}", u8::from(n.forwarding)))?;
        if self.ipv6 {
            ns.sysctl(&format!(
                "net.ipv6.conf.all.forwarding={}",
                u8::from(n.ipv6_forwarding)
            ))?;
        }
        for a in &n.addresses {
            let cidr = a.cidr.to_string();
            let mut args = vec!["addr", "add", cidr.as_str(), "dev", a.dev.as_str()];
            if a.cidr.addr.is_ipv6() {
                // DAD would hold the address tentative for a second
                args.push("nodad");
            }
            ns.ip(&args)?;
        }
        for r in &n.routes {
            ns.ip(&strs(&route_args(r)))?;
        }
        for r in &n.rules {
            ns.ip(&strs(&rule_args(r)))?;
        }
        for nb in &n.neighbours {
            let (ip, mac) = (nb.ip.to_string(), mac_s(nb.mac));
            ns.ip(&[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                &nb.dev,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    fn open_sockets(&mut self) -> Result<(), CannotRun> {
        let wire = self
            .wire
            .as_ref()
            .ok_or_else(|| CannotRun("kernel: no injector namespace".into()))?;
        for nic in &mut self.nics {
            let ifindex = wire.ifindex(&nic.wire_dev)?;
            nic.socket = Some(PacketSocket::open(wire, ifindex)?);
        }
        Ok(())
    }

    /// Sends the frames with their pcap timing, reads what the NICs transmit,
    /// then dumps the maps; also the window compared (from the first frame's
    /// sending to GRACE after the last's).
    pub fn run(
        &mut self,
        t: &Topology,
        frames: &[Frame],
    ) -> Result<(SideResult, Duration), CannotRun> {
        let mut idx = Vec::with_capacity(frames.len());
        for f in frames {
            let i = self.nics.iter().position(|n| n.dev == f.dev).ok_or_else(|| {
                CannotRun(format!("--pcap-in {}: not a NIC of the topology: the kernel side sends frames only into NICs (from the wire)", f.dev))
            })?;
            idx.push(i);
        }
        let socks: Vec<&PacketSocket> =
            self.nics.iter().filter_map(|n| n.socket.as_ref()).collect();
        for s in &socks {
            s.drain(FRAMES_MAX);
        }
        let span = match (frames.first(), frames.last()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.ts_ns.saturating_sub(a.ts_ns)),
            _ => Duration::ZERO,
        };
        let limits = CollectLimits {
            quiet: QUIET,
            max_time: span + Duration::from_secs(10),
            max_frames: FRAMES_MAX,
        };
        let ipv6 = self.ipv6;
        let sending = AtomicBool::new(true);
        let (got, sent, end) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                collect(&socks, limits, Some(&sending), |_, t, f| {
                    t != PACKET_OUTGOING && !(ipv6 && is_ipv6_noise(f))
                })
            });
            let start = Instant::now();
            let sent = send_all(&socks, frames, &idx);
            let end = start.elapsed();
            sending.store(false, Ordering::SeqCst);
            (h.join(), sent, end)
        });
        sent?;
        let got = got.map_err(|_| CannotRun("kernel: the reading thread panicked".into()))?;
        let mut out = SideResult::default();
        for (nic, frames) in self.nics.iter().zip(got) {
            let (kept, late): (Vec<_>, Vec<_>) =
                frames.into_iter().partition(|(at, _)| *at <= end + GRACE);
            if !late.is_empty() {
                self.notes.push(format!(
                    "kernel: {} frame(s) out of {} came more than {} ms after the last frame was sent: not compared (skiff's frames are cut at the same time)",
                    late.len(), nic.dev, GRACE.as_millis()
                ));
            }
            out.frames
                .insert(nic.dev.clone(), kept.into_iter().map(|(_, f)| f).collect());
        }
        if let Some(a) = &self.attached {
            out.maps = a.dump_maps(t)?;
        }
        Ok((out, end + GRACE))
    }

    /// The kernel's names of this run's namespaces.
    pub fn namespace_names(&self) -> Vec<String> {
        self.wire
            .iter()
            .chain(self.namespaces.values())
            .map(|n| n.name().to_string())
            .collect()
    }

    /// Leaves namespaces and programs in place; what to remove afterwards.
    pub fn keep(&mut self) -> String {
        let pins = self.attached.as_mut().map(|a| a.keep()).unwrap_or_default();
        let names: Vec<String> = std::mem::take(&mut self.namespaces)
            .into_values()
            .chain(self.wire.take())
            .map(Netns::keep)
            .collect();
        let del: Vec<String> = names.iter().map(|n| format!("ip netns del {n}")).collect();
        format!(
            "--keep: namespaces {} and the programs (pinned in {pins}) left in place; remove them with: {}; rm -r {pins}",
            names.join(", "),
            del.join("; ")
        )
    }
}

/// Sends each frame when its time comes (pcap timestamps relative to the first).
fn send_all(socks: &[&PacketSocket], frames: &[Frame], idx: &[usize]) -> Result<(), CannotRun> {
    let start = Instant::now();
    let ts0 = frames.first().map_or(0, |f| f.ts_ns);
    for (f, &i) in frames.iter().zip(idx) {
        if skiff_kernel::live::interrupted() {
            return Err(CannotRun("interrupted (SIGINT/SIGTERM)".into()));
        }
        let due = Duration::from_nanos(f.ts_ns.saturating_sub(ts0));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let s = socks
            .get(i)
            .ok_or_else(|| CannotRun(format!("kernel: no socket for {}", f.dev)))?;
        s.send(&f.data)
            .map_err(|e| CannotRun(format!("kernel: sending into {}: {e}", f.dev)))?;
    }
    Ok(())
}

/// What a namespace with IPv6 on sends by itself: router solicitations, MLD
/// reports, DAD neighbour solicitations.
fn is_ipv6_noise(f: &[u8]) -> bool {
    skiff_kernel::mask::icmp6_of(f).is_some_and(|(ip, m)| match m.first() {
        Some(133 | 131 | 143) => true,
        Some(135) => ip.src_addr().is_unspecified(),
        _ => false,
    })
}

fn info<'a>(devs: &'a [DevInfo], ns: &str, name: &str) -> Result<&'a DevInfo, CannotRun> {
    devs.iter()
        .find(|d| d.ns == ns && d.name == name)
        .ok_or_else(|| CannotRun(format!("skiff built no device {ns}/{name}")))
}

/// `name N index I [address M] mtu U`: the MAC only where skiff gave one.
fn link_args(name: &str, d: &DevInfo, mtu: u32) -> Vec<String> {
    let mut v = vec![
        "name".into(),
        name.into(),
        "index".into(),
        d.ifindex.to_string(),
    ];
    if let Some(m) = d.mac.filter(|m| *m != [0; 6]) {
        v.extend(["address".into(), mac_s(m)]);
    }
    v.extend(["mtu".into(), mtu.to_string()]);
    v
}

fn route_args(r: &skiff_topology::Route) -> Vec<String> {
    let mut v: Vec<String> = vec!["route".into(), "add".into()];
    let kind = match r.kind {
        RouteKind::Unicast => None,
        RouteKind::Local => Some("local"),
        RouteKind::Blackhole => Some("blackhole"),
        RouteKind::Unreachable => Some("unreachable"),
        RouteKind::Prohibit => Some("prohibit"),
        RouteKind::Broadcast => Some("broadcast"),
        RouteKind::Anycast => Some("anycast"),
        RouteKind::Throw => Some("throw"),
    };
    v.extend(kind.map(String::from));
    v.push(r.dst.to_string());
    if let Some(g) = r.via {
        v.extend(["via".into(), g.to_string()]);
    }
    if let Some(d) = &r.dev {
        v.extend(["dev".into(), d.clone()]);
    }
    if r.table != 254 {
        v.extend(["table".into(), r.table.to_string()]);
    }
    if r.metric != 0 {
        v.extend(["metric".into(), r.metric.to_string()]);
    }
    if let Some(s) = r.src {
        v.extend(["src".into(), s.to_string()]);
    }
    if r.onlink {
        v.push("onlink".into());
    }
    v
}

fn rule_args(r: &skiff_topology::Rule) -> Vec<String> {
    let v6 = [r.from, r.to].iter().flatten().any(|c| c.addr.is_ipv6());
    let mut v: Vec<String> = Vec::new();
    if v6 {
        v.push("-6".into());
    }
    v.extend([
        "rule".into(),
        "add".into(),
        "priority".into(),
        r.priority.to_string(),
    ]);
    if let Some(c) = r.from {
        v.extend(["from".into(), c.to_string()]);
    }
    if let Some(c) = r.to {
        v.extend(["to".into(), c.to_string()]);
    }
    if let Some(d) = &r.iif {
        v.extend(["iif".into(), d.clone()]);
    }
    if let Some(d) = &r.oif {
        v.extend(["oif".into(), d.clone()]);
    }
    if let Some((m, mask)) = r.fwmark {
        v.extend(["fwmark".into(), format!("{m:#x}/{mask:#x}")]);
    }
    match r.action {
        RuleAction::Table(t) => v.extend(["table".into(), t.to_string()]),
        RuleAction::Blackhole => v.push("blackhole".into()),
        RuleAction::Unreachable => v.push("unreachable".into()),
        RuleAction::Prohibit => v.push("prohibit".into()),
    }
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The one MAC both veth ends standing in for a netkit L3 pair get: locally
/// administered, `02:6e:6b` ("nk") and the primary's ifindex.
fn l3_mac(primary_ifindex: u32) -> [u8; 6] {
    let i = primary_ifindex.to_be_bytes();
    [0x02, 0x6e, 0x6b, i[1], i[2], i[3]]
}

fn mac_s(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// True when any address or route of the topology is IPv6.
fn uses_ipv6(t: &Topology) -> bool {
    t.namespaces.iter().any(|n| {
        n.addresses.iter().any(|a| a.cidr.addr.is_ipv6())
            || n.routes.iter().any(|r| matches!(r.dst.addr, IpAddr::V6(_)))
    })
}
