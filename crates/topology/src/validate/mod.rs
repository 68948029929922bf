//! Validation: the serde structs into the plain `Topology`, one function per
//! section. Devices come first (routes and attachments may name devices created
//! as peers by other namespaces), then each namespace's addresses, routes,
//! rules and neighbours, then objects with their maps and attachments.

mod address;
mod attach;
mod device;
mod map;
mod neighbour;
mod netfilter;
mod object;
mod route;
mod rule;
mod tc;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use toml::Spanned;

use crate::error::{At, Ctx, TopologyError};
use crate::model::{Device, Netns, SysctlSetting, Topology};
use crate::parse::Cidr;
use crate::raw::{RawNetns, RawTopology};
use skiff_net::stack::{Sysctl, IPPROTO_TCP, IPPROTO_UDP};

/// What validation knows of a device, by name: declared in its namespace, or
/// created there as the peer of a pair declared elsewhere.
pub(crate) struct DevInfo {
    pub kind: &'static str,
    /// netkit: is this the primary
    pub primary: bool,
    /// native XDP support (nic, veth)
    pub native_xdp: bool,
}

/// The namespaces and the devices and ifindexes claimed in each so far.
pub(crate) struct Names {
    pub ns: Vec<String>,
    devs: HashMap<String, BTreeMap<String, DevInfo>>,
    ifindexes: HashMap<String, HashMap<u32, String>>,
}

impl Names {
    /// Every namespace starts with its loopback `lo` at ifindex 1.
    fn new(ns: Vec<String>) -> Names {
        let lo = || DevInfo {
            kind: "loopback",
            primary: false,
            native_xdp: false,
        };
        let devs = ns
            .iter()
            .map(|n| (n.clone(), BTreeMap::from([("lo".to_string(), lo())])))
            .collect();
        let ifindexes = ns
            .iter()
            .map(|n| (n.clone(), HashMap::from([(1u32, "lo".to_string())])))
            .collect();
        Names {
            ns,
            devs,
            ifindexes,
        }
    }

    /// Adds a device to a namespace (EEXIST for a name already there).
    pub fn claim(
        &mut self,
        cx: &Ctx,
        (ns, name): (&str, &str),
        loc: &Spanned<String>,
        field: &str,
        info: DevInfo,
    ) -> Result<(), TopologyError> {
        let m = self
            .devs
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
    }

    /// Takes a fixed ifindex for a device (EBUSY for one already taken).
    pub fn take_ifindex(
        &mut self,
        cx: &Ctx,
        (ns, dev): (&str, &str),
        v: &Option<Spanned<u32>>,
        field: &str,
    ) -> Result<Option<u32>, TopologyError> {
        let Some(v) = v else { return Ok(None) };
        let n = *v.get_ref();
        if n == 0 || n > i32::MAX as u32 {
            return Err(cx.err(v, field, format!("ifindex {n} is not 1..=2147483647")));
        }
        let m = self.ifindexes.entry(ns.to_string()).or_default();
        if let Some(other) = m.get(&n) {
            return Err(cx.err(
                v,
                field,
                format!("duplicate ifindex {n} in netns {ns:?}: {other:?} has it (EBUSY)"),
            ));
        }
        m.insert(n, dev.to_string());
        Ok(Some(n))
    }

    pub fn info(&self, ns: &str, dev: &str) -> Option<&DevInfo> {
        self.devs.get(ns).and_then(|m| m.get(dev))
    }

    pub fn exists(&self, ns: &str, dev: &str) -> bool {
        self.info(ns, dev).is_some()
    }

    /// The device named by `v`, which must exist in `ns`.
    pub fn check_dev(
        &self,
        cx: &Ctx,
        ns: &str,
        v: &Spanned<String>,
        field: &str,
    ) -> Result<String, TopologyError> {
        if self.exists(ns, v.get_ref()) {
            return Ok(v.get_ref().clone());
        }
        let known: Vec<&str> = self
            .devs
            .get(ns)
            .map(|m| m.keys().map(|s| s.as_str()).collect())
            .unwrap_or_default();
        Err(cx.err(
            v,
            field,
            format!(
                "unknown device {:?} in netns {ns:?} (it has: {})",
                v.get_ref(),
                known.join(", ")
            ),
        ))
    }

    /// An optional device field that must name a device of `ns`.
    pub fn check_opt_dev(
        &self,
        cx: &Ctx,
        ns: &str,
        v: &Option<Spanned<String>>,
        field: &str,
    ) -> Result<Option<String>, TopologyError> {
        v.as_ref()
            .map(|v| self.check_dev(cx, ns, v, field))
            .transpose()
    }
}

/// `v` must be one of `choices`.
pub(crate) fn one_of<'a>(
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

/// `v` must be the name (`Display`) of one of `choices`.
pub(crate) fn choose<T: Copy + std::fmt::Display>(
    cx: &Ctx,
    v: &Spanned<String>,
    field: &str,
    choices: &[T],
) -> Result<T, TopologyError> {
    choices
        .iter()
        .find(|c| c.to_string() == *v.get_ref())
        .copied()
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(T::to_string).collect();
            cx.err(
                v,
                field,
                format!("{:?} is not one of {}", v.get_ref(), names.join(", ")),
            )
        })
}

/// An optional choice, `default` when absent.
pub(crate) fn choose_or<T: Copy + std::fmt::Display>(
    cx: &Ctx,
    v: &Option<Spanned<String>>,
    field: &str,
    choices: &[T],
    default: T,
) -> Result<T, TopologyError> {
    match v {
        Some(v) => choose(cx, v, field, choices),
        None => Ok(default),
    }
}

pub(crate) fn cidr(cx: &Ctx, v: &Spanned<String>, field: &str) -> Result<Cidr, TopologyError> {
    Cidr::parse(v.get_ref()).map_err(|m| cx.err(v, field, m))
}

pub(crate) fn ip(cx: &Ctx, v: &Spanned<String>, field: &str) -> Result<IpAddr, TopologyError> {
    v.get_ref().parse::<IpAddr>().map_err(|_| {
        cx.err(
            v,
            field,
            format!("{:?} is not an IPv4 or IPv6 address", v.get_ref()),
        )
    })
}

/// The whole file: namespaces (devices first), then objects.
pub(crate) fn validate(cx: &Ctx, raw: RawTopology, dir: &Path) -> Result<Topology, TopologyError> {
    for k in raw.netns.keys() {
        if k.get_ref().is_empty() || k.get_ref().contains('/') {
            return Err(cx.err(
                k,
                "netns",
                format!("bad namespace name {:?} (non-empty, no '/')", k.get_ref()),
            ));
        }
    }
    let mut names = Names::new(raw.netns.keys().map(|k| k.get_ref().clone()).collect());
    let mut all_devices = Vec::new();
    for (name, ns) in &raw.netns {
        all_devices.push(device::devices(
            cx,
            &mut names,
            name.get_ref(),
            ns.get_ref(),
        )?);
    }
    let mut namespaces = Vec::new();
    for ((name, ns), devices) in raw.netns.iter().zip(all_devices) {
        namespaces.push(netns(
            cx,
            &names,
            name.get_ref(),
            ns.get_ref(),
            devices,
            dir,
        )?);
    }
    let objects = object::objects(cx, &names, &raw.object, dir)?;
    let pin_dir = match &raw.pin_dir {
        Some(p) if p.get_ref().is_empty() => {
            return Err(cx.err(p, "pin_dir", "pin_dir is a directory path, not empty"))
        }
        Some(p) => Some(dir.join(p.get_ref())),
        None => None,
    };
    Ok(Topology {
        file: cx.file.to_path_buf(),
        namespaces,
        objects,
        pin_dir,
    })
}

/// One namespace's stack configuration, its devices already validated.
fn netns(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    ns: &RawNetns,
    devices: Vec<Device>,
    dir: &Path,
) -> Result<Netns, TopologyError> {
    let at = |section: &str, i: usize| At(format!("netns.{ns_name}.{section}[{i}]"));
    let mut addresses = Vec::new();
    for (i, a) in ns.address.iter().enumerate() {
        let a = address::address(
            cx,
            names,
            ns_name,
            &at("address", i),
            a.get_ref(),
            &addresses,
        )?;
        addresses.push(a);
    }
    let mut routes = Vec::new();
    for (i, r) in ns.route.iter().enumerate() {
        let r = route::route(
            cx,
            names,
            ns_name,
            &at("route", i),
            r.get_ref(),
            (&addresses, &routes),
        )?;
        routes.push(r);
    }
    let mut rules = Vec::new();
    for (i, r) in ns.rule.iter().enumerate() {
        let r = rule::rule(cx, names, ns_name, &at("rule", i), r, &rules)?;
        rules.push(r);
    }
    let mut neighbours = Vec::new();
    for (i, n) in ns.neighbour.iter().enumerate() {
        neighbours.push(neighbour::neighbour(
            cx,
            names,
            ns_name,
            &at("neighbour", i),
            n.get_ref(),
        )?);
    }
    let tc = tc::lines(cx, names, ns_name, &ns.tc, dir)?;
    let sysctls = sysctls(cx, names, ns_name, ns)?;
    let listen = listen(cx, ns_name, ns)?;

    let mut iptables = netfilter::save(cx, ns_name, ns)?;
    iptables.extend(netfilter::lines(
        cx,
        ns_name,
        "iptables",
        &ns.iptables,
        skiff_net::netfilter::NfProto::Ipv4,
    )?);
    iptables.extend(netfilter::lines(
        cx,
        ns_name,
        "ip6tables",
        &ns.ip6tables,
        skiff_net::netfilter::NfProto::Ipv6,
    )?);
    Ok(Netns {
        name: ns_name.to_string(),
        forwarding: ns.forwarding.as_ref().is_some_and(|v| *v.get_ref()),
        ipv6_forwarding: ns.ipv6_forwarding.as_ref().is_some_and(|v| *v.get_ref()),
        devices,
        addresses,
        routes,
        rules,
        neighbours,
        tc,
        listen,
        sysctls,
        iptables,
        nft: ns
            .nft
            .as_ref()
            .map(|n| netfilter::nft(cx, ns_name, n))
            .transpose()?,
    })
}

/// The namespace's `listen` list: `tcp/PORT` or `udp/PORT`.
fn listen(
    cx: &Ctx,
    ns_name: &str,
    ns: &RawNetns,
) -> Result<Option<BTreeSet<(u8, u16)>>, TopologyError> {
    let Some(list) = &ns.listen else {
        return Ok(None);
    };
    let mut out = BTreeSet::new();
    for (i, p) in list.get_ref().iter().enumerate() {
        let field = format!("netns.{ns_name}.listen[{i}]");
        let bad = || {
            cx.err(
                p,
                &field,
                format!(
                    "{:?}: want tcp/PORT or udp/PORT (PORT 1-65535)",
                    p.get_ref()
                ),
            )
        };
        let (proto, port) = p.get_ref().split_once('/').ok_or_else(bad)?;
        let proto = match proto {
            "tcp" => IPPROTO_TCP,
            "udp" => IPPROTO_UDP,
            _ => return Err(bad()),
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        out.insert((proto, port));
    }
    Ok(Some(out))
}

/// The namespace's `sysctl` table: every name one skiff implements, every
/// `conf.DEV.` device one of the namespace's.
fn sysctls(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    ns: &RawNetns,
) -> Result<Vec<SysctlSetting>, TopologyError> {
    let mut out = Vec::new();
    for (k, v) in &ns.sysctl {
        let field = format!("netns.{ns_name}.sysctl.{:?}", k.get_ref());
        let sysctl = Sysctl::parse(k.get_ref()).map_err(|e| cx.err(k, &field, e.to_string()))?;
        if let Some(d) = sysctl.device() {
            if !names.exists(ns_name, d) {
                return Err(cx.err(
                    k,
                    &field,
                    format!("unknown device {d:?} in netns {ns_name:?}"),
                ));
            }
        }
        out.push(SysctlSetting {
            name: k.get_ref().clone(),
            sysctl,
            value: *v.get_ref(),
            loc: cx.loc(v, &field),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
