//! What `ip netns`, `ip link` and `tc qdisc` configure: namespaces, devices
//! (rtnl_newlink -> the kind's newlink, register_netdevice with its default
//! qdisc), their state and lookups (net/core/rtnetlink.c, net/core/dev.c).

use std::sync::{Arc, RwLock, RwLockWriteGuard};

use parking_lot::Mutex;

use super::*;
use crate::drivers::{self, DeviceSpec, NetDevice};
use crate::helpers::NsDevice;
use crate::sched::{self, QdiscStats};
use crate::stack::{HostStack, StackDevice};

/// What `push_device` needs of a new device besides its driver.
struct DevConfig {
    name: String,
    mtu: u32,
    up: bool,
    txqueuelen: u32,
}

impl Datapath {
    /// `ip netns add`: a namespace with its own `lo` (ifindex 1, up) and host stack.
    pub fn add_netns(&mut self, name: &str) -> Result<NsId, DatapathError> {
        if self.sh.namespaces.iter().any(|n| n.name == name) {
            return Err(errno(EEXIST, format!("namespace {name} exists")));
        }
        let ns = NsId(self.sh.namespaces.len());
        let lo = DevId(self.sh.devices.len());
        let shared = Arc::new(NsShared {
            devices: RwLock::new(Vec::new()),
            stack: RwLock::new(HostStack::new()),
        });
        self.sh.namespaces.push(Namespace {
            name: name.to_string(),
            shared: shared.clone(),
            lo,
            next_ifindex: LOOPBACK_IFINDEX + 1,
        });
        for c in &mut self.cpus {
            c.add_netns(shared.clone());
        }
        let lo_ops = Box::new(drivers::loopback::Loopback);
        let lo_cfg = DevConfig {
            name: "lo".into(),
            mtu: 65536,
            up: true,
            txqueuelen: 0,
        };
        self.push_device(ns, &lo_cfg, LOOPBACK_IFINDEX, [0; 6], lo_ops);
        Ok(ns)
    }

    pub fn netns(&self, name: &str) -> Option<NsId> {
        self.sh
            .namespaces
            .iter()
            .position(|n| n.name == name)
            .map(NsId)
    }

    pub fn netns_name(&self, ns: NsId) -> Option<&str> {
        self.sh.namespaces.get(ns.0).map(|n| n.name.as_str())
    }

    /// The namespace's loopback device.
    pub fn loopback(&self, ns: NsId) -> Option<DevId> {
        self.sh.namespaces.get(ns.0).map(|n| n.lo)
    }

    fn ns_ok(&self, ns: NsId) -> Result<(), DatapathError> {
        if ns.0 < self.sh.namespaces.len() {
            Ok(())
        } else {
            Err(DatapathError::NoNetns(format!("#{}", ns.0)))
        }
    }

    /// register_netdevice: index it, tell the namespace's helpers and stack,
    /// give it its default qdisc (attach_default_qdiscs).
    fn push_device(
        &mut self,
        ns: NsId,
        spec: &DevConfig,
        ifindex: u32,
        mac: [u8; 6],
        ops: Box<dyn NetDevice>,
    ) -> DevId {
        let id = DevId(self.sh.devices.len());
        let f = ops.features();
        if let Some(n) = self.sh.namespaces.get(ns.0) {
            n.shared
                .devices
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(NsDevice {
                    ifindex,
                    mtu: spec.mtu,
                    up: spec.up,
                });
            let _ = n.shared.stack_write().add_device(StackDevice {
                ifindex,
                name: spec.name.clone(),
                mac,
                mtu: spec.mtu,
                up: spec.up,
                arp: f.arp,
                loopback: f.loopback,
            });
        }
        let qdisc = sched::default_qdisc(ops.as_ref(), spec.txqueuelen, spec.mtu)
            .map(|q| Mutex::new(sched::Sch::root(0, q)));
        self.sh.index_device(ns, ifindex, id);
        self.sh.devices.push(NetDev {
            name: spec.name.clone(),
            ifindex,
            ns,
            mac,
            mtu: spec.mtu,
            up: spec.up,
            txqueuelen: spec.txqueuelen,
            xdp_native: None,
            xdp_generic: None,
            tc_ingress: Default::default(),
            tc_egress: Default::default(),
            qdisc,
            ingress_qdisc: None,
            nf_ingress: false,
            nf_egress: false,
            ops,
        });
        for c in &mut self.cpus {
            c.add_device();
        }
        id
    }

    /// net/core/dev.c: dev_index_reserve. ifindexes are per namespace: a
    /// fixed one must be free there (xa_insert); otherwise the first free one
    /// from the namespace's cursor up (xa_alloc_cyclic), which then moves past
    /// it. `pending` holds indexes this `ip link add` reserved already.
    fn alloc_ifindex(
        &mut self,
        ns: NsId,
        want: Option<u32>,
        pending: &[(NsId, u32)],
    ) -> Result<u32, DatapathError> {
        let taken = |sh: &Shared, i: u32| {
            sh.by_ifindex.contains_key(&(ns, i)) || pending.contains(&(ns, i))
        };
        if let Some(i) = want {
            if i == 0 || taken(&self.sh, i) {
                return Err(errno(
                    EEXIST,
                    format!("ifindex {i} is taken in namespace {}", self.sh.ns_name(ns)),
                ));
            }
            if i > i32::MAX as u32 {
                return Err(errno(EINVAL, format!("ifindex {i} above INT_MAX")));
            }
            return Ok(i);
        }
        let start = self.sh.namespaces.get(ns.0).map_or(1, |n| n.next_ifindex);
        // Every device of the namespace and every pending index can push the
        // search one step; one more is always free (or the range is full).
        let bound = self.sh.by_ifindex.len() + pending.len() + 1;
        let mut i = start.clamp(1, i32::MAX as u32);
        for _ in 0..=bound {
            if !taken(&self.sh, i) {
                if let Some(n) = self.sh.namespaces.get_mut(ns.0) {
                    n.next_ifindex = if i == i32::MAX as u32 { 1 } else { i + 1 };
                }
                return Ok(i);
            }
            i = if i == i32::MAX as u32 { 1 } else { i + 1 };
        }
        Err(errno(
            EBUSY,
            format!("no free ifindex in namespace {}", self.sh.ns_name(ns)),
        ))
    }

    /// A datapath-wide serial for a new device (its derived MAC): the fixed
    /// ifindex when it has one and the serial is free, else the next free.
    fn alloc_serial(&mut self, fixed: Option<u32>) -> u32 {
        let s = match fixed {
            Some(i) if !self.serials.contains(&i) => {
                self.next_serial = self.next_serial.max(i.saturating_add(1));
                i
            }
            _ => {
                while self.serials.contains(&self.next_serial) {
                    self.next_serial = self.next_serial.saturating_add(1);
                }
                let s = self.next_serial;
                self.next_serial = self.next_serial.saturating_add(1);
                s
            }
        };
        self.serials.insert(s);
        s
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
                format!("device {name} exists in namespace {}", self.sh.ns_name(ns)),
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
        let first = DevId(self.sh.devices.len());
        let ends = drivers::pair_ends(&spec, ns);
        for (pns, _) in &ends[1..] {
            self.ns_ok(*pns)?;
        }
        let ops = drivers::create(&spec, first, self.sh.cpu_queues.len())?;
        for (pns, pname) in &ends[1..] {
            if *pns == ns && *pname == spec.name {
                return Err(errno(
                    EEXIST,
                    format!("{} {}: peer has the same name", spec.kind.name(), spec.name),
                ));
            }
            self.check_name(*pns, pname)?;
        }
        let ifindexes = self.pair_ifindexes(&spec, &ends)?;
        for ((i, op), ifindex) in ops.into_iter().enumerate().zip(ifindexes) {
            let Some((pns, pname)) = ends.get(i) else {
                break;
            };
            let serial = self.alloc_serial(if i == 0 {
                spec.ifindex
            } else {
                spec.peer_ifindex
            });
            let mac = drivers::end_mac(&spec, i, serial);
            let cfg = DevConfig {
                name: pname.clone(),
                mtu: spec.mtu,
                up: spec.up,
                txqueuelen: spec.txqueuelen,
            };
            self.push_device(*pns, &cfg, ifindex, mac, op);
        }
        Ok(first)
    }

    /// The ifindex of each end, in `ends` order. A pair's peer is registered
    /// first, as veth_newlink and netkit_new_link do: in one namespace the
    /// peer takes the lower index.
    fn pair_ifindexes(
        &mut self,
        spec: &DeviceSpec,
        ends: &[(NsId, String)],
    ) -> Result<Vec<u32>, DatapathError> {
        let mut pending: Vec<(NsId, u32)> = Vec::new();
        for (i, (pns, _)) in ends.iter().enumerate().rev() {
            let want = if i == 0 {
                spec.ifindex
            } else {
                spec.peer_ifindex
            };
            let ifindex = self.alloc_ifindex(*pns, want, &pending)?;
            pending.push((*pns, ifindex));
        }
        Ok(pending.into_iter().rev().map(|(_, i)| i).collect())
    }

    /// The device named `name` in `ns`.
    pub fn device(&self, ns: NsId, name: &str) -> Option<DevId> {
        self.sh
            .devices
            .iter()
            .position(|d| d.ns == ns && d.name == name)
            .map(DevId)
    }

    pub fn dev_by_ifindex(&self, ns: NsId, ifindex: u32) -> Option<DevId> {
        self.sh.dev_by_ifindex(ns, ifindex)
    }

    pub fn ifindex(&self, dev: DevId) -> Option<u32> {
        self.sh.devices.get(dev.0).map(|d| d.ifindex)
    }

    pub fn dev_name(&self, dev: DevId) -> Option<&str> {
        self.sh.devices.get(dev.0).map(|d| d.name.as_str())
    }

    pub fn dev_netns(&self, dev: DevId) -> Option<NsId> {
        self.sh.devices.get(dev.0).map(|d| d.ns)
    }

    pub fn mac(&self, dev: DevId) -> Option<[u8; 6]> {
        self.sh.devices.get(dev.0).map(|d| d.mac)
    }

    /// The other end of a veth or netkit pair.
    pub fn peer(&self, dev: DevId) -> Option<DevId> {
        self.sh.devices.get(dev.0).and_then(|d| d.peer())
    }

    /// Every device: (id, namespace, name, ifindex, kind).
    pub fn devices(&self) -> Vec<(DevId, NsId, String, u32, &'static str)> {
        self.sh
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (DevId(i), d.ns, d.name.clone(), d.ifindex, d.kind()))
            .collect()
    }

    pub(crate) fn dev_mut(&mut self, dev: DevId) -> Result<&mut NetDev, DatapathError> {
        self.sh
            .devices
            .get_mut(dev.0)
            .ok_or_else(|| DatapathError::NoDevice(format!("#{}", dev.0)))
    }

    pub(crate) fn dev(&self, dev: DevId) -> Result<&NetDev, DatapathError> {
        self.sh
            .devices
            .get(dev.0)
            .ok_or_else(|| DatapathError::NoDevice(format!("#{}", dev.0)))
    }

    fn sync_ns_device(&mut self, dev: DevId) {
        let Some(d) = self.sh.devices.get(dev.0) else {
            return;
        };
        let (ifindex, mtu, up) = (d.ifindex, d.mtu, d.up);
        if let Some(n) = self.sh.namespaces.get(d.ns.0) {
            let mut v = n.shared.devices.write().unwrap_or_else(|e| e.into_inner());
            if let Some(x) = v.iter_mut().find(|x| x.ifindex == ifindex) {
                x.mtu = mtu;
                x.up = up;
            }
            let mut s = n.shared.stack_write();
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

    /// `tc qdisc replace dev X root KIND` with the kind's defaults: a new
    /// root qdisc from the registry (`sched::QDISCS`), or none for
    /// "noqueue"; what the old one held is dropped (qdisc_reset, QDISC_DROP).
    pub fn set_qdisc(&mut self, dev: DevId, kind: &str) -> Result<(), DatapathError> {
        let d = self.dev(dev)?;
        let new = sched::create(kind, d.ops.as_ref(), d.txqueuelen, d.mtu)?;
        let old = std::mem::replace(
            &mut self.dev_mut(dev)?.qdisc,
            new.map(|q| Mutex::new(sched::Sch::root(0, q))),
        );
        if let Some(q) = old {
            let mut held = Vec::new();
            q.into_inner().reset(&mut |p| held.push(p));
            self.drop_qdisc_held(dev, held);
        }
        Ok(())
    }

    /// Packets a qdisc held when it was reset, replaced or purged: QDISC_DROP.
    pub(crate) fn drop_qdisc_held(&mut self, dev: DevId, held: Vec<Pkt>) {
        let mut c = self.cpu_ctx(0);
        for p in held {
            c.drop_skb(
                p,
                crate::drop::DropReason::QdiscDrop,
                cpu::at(dev, Hook::Xmit),
            );
        }
    }

    /// `tc -s qdisc show dev X`: the root qdisc's kind and statistics.
    pub fn qdisc_stats(&self, dev: DevId) -> Option<(&'static str, QdiscStats)> {
        let d = self.sh.devices.get(dev.0)?;
        match &d.qdisc {
            Some(q) => {
                let q = q.lock();
                Some((q.kind(), q.stats()))
            }
            None => Some(("noqueue", QdiscStats::default())),
        }
    }

    /// The namespace's host stack (addresses, routes, neighbours), locked for writing.
    pub fn stack_mut(
        &mut self,
        ns: NsId,
    ) -> Result<RwLockWriteGuard<'_, HostStack>, DatapathError> {
        self.ns_ok(ns)?;
        Ok(self.sh.namespaces[ns.0].shared.stack_write())
    }
}
