//! Building the datapath: namespaces, devices (pairs with their peers), each
//! namespace's stack configuration, the objects, then the attachments in file
//! order.

use std::collections::HashMap;

use skiff_net::datapath::{
    Datapath, DatapathError, DatapathOptions, DevId, DeviceKind, DeviceSpec, MprogOrder, NsId,
    TcAttach,
};
use skiff_net::stack;

use crate::error::TopologyError;
use crate::load::LoadedObject;
use crate::model::{Attach, Device, Hook, Netns, RuleAction, Topology};

/// A built topology: the datapath with every device, address, route and
/// program in place, and the loaded objects (their maps, for inspection).
pub struct Built {
    pub dp: Datapath,
    pub objects: Vec<LoadedObject>,
    /// What the topology asks for that the datapath cannot do yet (also
    /// printed by `skiff run`).
    pub warnings: Vec<String>,
}

/// The programs attached so far to each (netns, dev, hook name), with their
/// ids: what `before` / `after` refer to.
type Chains = HashMap<(String, String, String), Vec<(String, u32)>>;

/// The ifindexes a namespace's addresses, routes (dev), rules (iif, oif) and
/// neighbours name, in their order.
struct StackIfindexes {
    addresses: Vec<u32>,
    routes: Vec<Option<u32>>,
    rules: Vec<(Option<u32>, Option<u32>)>,
    neighbours: Vec<u32>,
}

impl Topology {
    /// Builds the datapath: namespaces, devices (pairs with their peers),
    /// stack configuration, objects loaded with shared pinned maps and initial
    /// entries, programs attached in file order.
    pub fn build(&self, opts: DatapathOptions) -> Result<Built, TopologyError> {
        self.build_with(opts, &skiff_net::load_options())
    }

    /// As `build`, loading the programs with `load` (verification, kernel); the
    /// maps get the datapath's possible CPUs whatever `load` says.
    pub fn build_with(
        &self,
        opts: DatapathOptions,
        load: &skiff_vm::LoadOptions,
    ) -> Result<Built, TopologyError> {
        let possible_cpus = opts.possible_cpus.max(1);
        let load = skiff_vm::LoadOptions {
            possible_cpus,
            ..load.clone()
        };
        let mut dp = Datapath::new(opts).map_err(|e| self.ferr(e.to_string()))?;
        let mut ns_ids = HashMap::new();
        for ns in &self.namespaces {
            let id = dp
                .add_netns(&ns.name)
                .map_err(|e| self.ferr(format!("netns {}: {e}", ns.name)))?;
            ns_ids.insert(ns.name.clone(), id);
        }
        for ns in &self.namespaces {
            let host = self.ns_id(&ns_ids, &ns.name)?;
            for d in &ns.devices {
                self.add_device(&mut dp, &ns_ids, host, d)?;
            }
        }
        for ns in &self.namespaces {
            let id = self.ns_id(&ns_ids, &ns.name)?;
            self.configure_stack(&mut dp, id, ns)?;
            self.apply_sysctls(&mut dp, id, ns)?;
        }
        let objects = {
            let dpr = &dp;
            self.load_objects_with(&load, &|ns, dev| ifindex_of(dpr, ns, dev))?
        };
        for o in &objects {
            dp.register_programs(&o.programs);
        }
        for ns in &self.namespaces {
            self.run_tc(&mut dp, self.ns_id(&ns_ids, &ns.name)?, ns)?;
            self.run_iptables(&mut dp, self.ns_id(&ns_ids, &ns.name)?, ns)?;
            self.run_nft(&mut dp, self.ns_id(&ns_ids, &ns.name)?, ns)?;
        }
        let mut chains = Chains::new();
        for (o, lo) in self.objects.iter().zip(&objects) {
            for a in &o.attach {
                self.attach(&mut dp, &mut chains, lo, a)?;
            }
        }
        // Tracing programs beside the packet programs are left out, said once.
        let warnings = self
            .objects
            .iter()
            .flat_map(|o| {
                o.object
                    .skipped
                    .iter()
                    .map(move |s| format!("{}: {}", o.path.display(), s.note()))
            })
            .collect();
        Ok(Built {
            dp,
            objects,
            warnings,
        })
    }

    /// The namespace's `tc` lines, in order, as `ip netns exec NS tc ...`.
    fn run_tc(&self, dp: &mut Datapath, ns: NsId, n: &Netns) -> Result<(), TopologyError> {
        for l in &n.tc {
            let mut t = crate::tc::TcTarget { ns, dp: &mut *dp };
            crate::tc::apply(&mut t, &l.cmd).map_err(|e| {
                l.loc
                    .error(&self.file, format!("tc {:?}: {}", l.text, e.msg))
            })?;
        }
        Ok(())
    }

    /// The namespace's iptables/ip6tables lines, in order, as `ip netns exec
    /// NS iptables ...`.
    fn run_iptables(&self, dp: &mut Datapath, ns: NsId, n: &Netns) -> Result<(), TopologyError> {
        for l in &n.iptables {
            let tool = match l.cmd.family {
                skiff_net::netfilter::NfProto::Ipv6 => "ip6tables",
                _ => "iptables",
            };
            dp.netfilter_update(ns, |nf| crate::netfilter::apply(nf, &l.cmd))
                .map_err(|e| self.ferr(e.to_string()))?
                .map_err(|e| l.loc.error(&self.file, format!("{tool} {:?}: {e}", l.text)))?;
        }
        Ok(())
    }

    /// The namespace's nft rule set, as `ip netns exec NS nft -f FILE`.
    fn run_nft(&self, dp: &mut Datapath, ns: NsId, n: &Netns) -> Result<(), TopologyError> {
        let Some(s) = &n.nft else { return Ok(()) };
        dp.netfilter_update(ns, |nf| crate::nft::apply(nf, &s.cmds))
            .map_err(|e| self.ferr(e.to_string()))?
            .map_err(|e| crate::nft::loc_in_file(&s.loc, &e).error(&self.file, e.to_string()))
    }

    fn ferr(&self, msg: String) -> TopologyError {
        TopologyError::File {
            file: self.file.clone(),
            msg,
        }
    }

    fn ns_id(&self, ns_ids: &HashMap<String, NsId>, name: &str) -> Result<NsId, TopologyError> {
        ns_ids
            .get(name)
            .copied()
            .ok_or_else(|| self.ferr(format!("netns {name}")))
    }

    /// `ip link add`, with the fixed ifindexes the file gives.
    fn add_device(
        &self,
        dp: &mut Datapath,
        ns_ids: &HashMap<String, NsId>,
        host: NsId,
        d: &Device,
    ) -> Result<(), TopologyError> {
        let kind = device_kind(&d.kind, |n| ns_ids.get(n).copied());
        let spec = DeviceSpec {
            name: d.name.clone(),
            kind,
            mac: d.mac,
            mtu: d.mtu,
            up: d.up,
            ifindex: d.ifindex,
            peer_ifindex: d.peer_ifindex,
            txqueuelen: 1000,
        };
        dp.add_device(host, spec).map_err(|e: DatapathError| {
            d.loc.error(&self.file, format!("device {}: {e}", d.name))
        })?;
        Ok(())
    }

    /// Forwarding, addresses, routes, rules and neighbours of one namespace.
    fn configure_stack(
        &self,
        dp: &mut Datapath,
        id: NsId,
        ns: &Netns,
    ) -> Result<(), TopologyError> {
        let ifx = self.stack_ifindexes(dp, ns)?;
        let serr = |what: String, e: &dyn std::fmt::Display| {
            self.ferr(format!("netns {}: {what}: {e}", ns.name))
        };
        let mut st = dp.stack_mut(id).map_err(|e| self.ferr(e.to_string()))?;
        st.set_forwarding(ns.forwarding, ns.ipv6_forwarding);
        st.set_listening(ns.listen.clone());
        for (&i, a) in ifx.addresses.iter().zip(&ns.addresses) {
            st.add_address(i, a.cidr.addr, a.cidr.prefix_len)
                .map_err(|e| serr(format!("address {} on {}", a.cidr, a.dev), &e))?;
        }
        for (&i, r) in ifx.routes.iter().zip(&ns.routes) {
            st.add_route(stack::Route {
                table: r.table,
                dst: r.dst.addr,
                prefix_len: r.dst.prefix_len,
                gateway: r.via,
                ifindex: i,
                src: r.src,
                metric: r.metric,
                kind: r.kind,
                mtu: None,
            })
            .map_err(|e| serr(format!("route {}", r.dst), &e))?;
        }
        for (&(iif, oif), r) in ifx.rules.iter().zip(&ns.rules) {
            let table = match r.action {
                RuleAction::Table(t) => t,
                other => return Err(self.ferr(format!("netns {}: rule {}: not supported: action {other:?} (the host stack has table rules only)", ns.name, r.priority))),
            };
            st.add_rule(stack::Rule {
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
        for (&i, n) in ifx.neighbours.iter().zip(&ns.neighbours) {
            st.add_neighbour(i, n.ip, n.mac)
                .map_err(|e| serr(format!("neighbour {}", n.ip), &e))?;
        }
        Ok(())
    }

    /// The namespace's `sysctl` settings, in order (`sysctl -w` in it).
    fn apply_sysctls(&self, dp: &mut Datapath, id: NsId, ns: &Netns) -> Result<(), TopologyError> {
        for s in &ns.sysctls {
            let resolved = s
                .sysctl
                .resolve(|d| ifindex_of(dp, &ns.name, d))
                .ok_or_else(|| {
                    s.loc
                        .error(&self.file, format!("{}: no such device", s.name))
                })?;
            let mut st = dp.stack_mut(id).map_err(|e| self.ferr(e.to_string()))?;
            st.set_sysctl(&s.name, &resolved, s.value)
                .map_err(|e| s.loc.error(&self.file, e.to_string()))?;
        }
        Ok(())
    }

    /// The ifindexes of the devices a namespace's configuration names (all
    /// resolved before the stack is locked for writing).
    fn stack_ifindexes(&self, dp: &Datapath, ns: &Netns) -> Result<StackIfindexes, TopologyError> {
        let dev = |d: &str| {
            ifindex_of(dp, &ns.name, d)
                .ok_or_else(|| self.ferr(format!("netns {}: no device {d}", ns.name)))
        };
        let opt = |d: &Option<String>| d.as_deref().map(dev).transpose();
        Ok(StackIfindexes {
            addresses: ns
                .addresses
                .iter()
                .map(|a| dev(&a.dev))
                .collect::<Result<_, _>>()?,
            routes: ns
                .routes
                .iter()
                .map(|r| opt(&r.dev))
                .collect::<Result<_, _>>()?,
            rules: ns
                .rules
                .iter()
                .map(|r| Ok((opt(&r.iif)?, opt(&r.oif)?)))
                .collect::<Result<_, TopologyError>>()?,
            neighbours: ns
                .neighbours
                .iter()
                .map(|n| dev(&n.dev))
                .collect::<Result<_, _>>()?,
        })
    }

    /// One attachment; its program joins `chains` for later `before` / `after`.
    fn attach(
        &self,
        dp: &mut Datapath,
        chains: &mut Chains,
        lo: &LoadedObject,
        a: &Attach,
    ) -> Result<(), TopologyError> {
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
        let dev = self.attach_dev(dp, a)?;
        let key = (a.netns.clone(), a.dev.clone(), a.hook.to_string());
        let order = |o: &MprogOrder<String>| self.mprog_order(chains.get(&key), a, o);
        match &a.hook {
            Hook::Xdp(mode) => dp.attach_xdp(dev, prog.clone(), *mode),
            Hook::Tc { dir, prio, handle } => {
                let cls = TcAttach::ClsBpf {
                    prio: *prio,
                    handle: *handle,
                    classid: 0,
                };
                dp.attach_tc(dev, *dir, cls, prog.clone())
            }
            Hook::Tcx { dir, order: o } => {
                dp.attach_tc(dev, *dir, TcAttach::Tcx(order(o)?), prog.clone())
            }
            Hook::Netkit { side, order: o } => {
                dp.attach_netkit(dev, *side, order(o)?, prog.clone())
            }
        }
        .map_err(aerr)?;
        chains
            .entry(key)
            .or_default()
            .push((a.program.clone(), prog.id));
        Ok(())
    }

    /// `before` / `after` by name, as the datapath's program ids.
    fn mprog_order(
        &self,
        chain: Option<&Vec<(String, u32)>>,
        a: &Attach,
        o: &MprogOrder<String>,
    ) -> Result<MprogOrder, TopologyError> {
        let id = |n: &str| {
            chain
                .and_then(|c| c.iter().find(|(p, _)| p == n).map(|(_, i)| *i))
                .ok_or_else(|| {
                    a.loc
                        .error(&self.file, format!("no program {n} on this hook"))
                })
        };
        Ok(match o {
            MprogOrder::Append => MprogOrder::Append,
            MprogOrder::Prepend => MprogOrder::Prepend,
            MprogOrder::Before(n) => MprogOrder::Before(id(n)?),
            MprogOrder::After(n) => MprogOrder::After(id(n)?),
            MprogOrder::Replace(n) => MprogOrder::Replace(id(n)?),
        })
    }

    fn attach_dev(&self, dp: &Datapath, a: &Attach) -> Result<DevId, TopologyError> {
        let ns = dp
            .netns(&a.netns)
            .ok_or_else(|| a.loc.error(&self.file, format!("no netns {}", a.netns)))?;
        dp.device(ns, &a.dev)
            .ok_or_else(|| a.loc.error(&self.file, format!("no device {}", a.dev)))
    }
}

fn ifindex_of(dp: &Datapath, ns: &str, dev: &str) -> Option<u32> {
    let n = dp.netns(ns)?;
    dp.device(n, dev).and_then(|d| dp.ifindex(d))
}

/// The datapath's device kind: the peer's namespace by id.
fn device_kind(k: &DeviceKind<String>, ns_id: impl Fn(&str) -> Option<NsId>) -> DeviceKind {
    match k {
        DeviceKind::Nic { rx_queues } => DeviceKind::Nic {
            rx_queues: *rx_queues,
        },
        DeviceKind::Veth {
            peer_name,
            peer_ns,
            peer_mac,
        } => DeviceKind::Veth {
            peer_name: peer_name.clone(),
            peer_ns: peer_ns.as_deref().and_then(&ns_id),
            peer_mac: *peer_mac,
        },
        DeviceKind::Netkit {
            peer_name,
            peer_ns,
            mode,
            policy,
            peer_policy,
            scrub,
            peer_scrub,
            peer_mac,
        } => DeviceKind::Netkit {
            peer_name: peer_name.clone(),
            peer_ns: peer_ns.as_deref().and_then(&ns_id),
            mode: *mode,
            policy: *policy,
            peer_policy: *peer_policy,
            scrub: *scrub,
            peer_scrub: *peer_scrub,
            peer_mac: *peer_mac,
        },
    }
}
