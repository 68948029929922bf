//! The kernel side's objects: loaded with bpf(2) (a pinned map created once
//! and shared, as libbpf does), their map entries written, their programs
//! attached with the kernel's own means: BPF_LINK_CREATE for XDP and tcx,
//! `tc filter ... bpf da object-pinned` for clsact, and for netkit (absent in
//! this kernel) tcx on the veth end standing in for it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use skiff_kernel::live::{pin_fd, LinkAttach};
use skiff_kernel::netns::Netns;
use skiff_kernel::KernelObject;
use skiff_topology::{
    Attach, DeviceKind, Hook, MapDecl, MprogOrder, NetkitMode, NetkitSide, Piece, TcDirection,
    Topology, XdpMode,
};

use super::side::MapDump;
use super::CannotRun;
use crate::harness::network::map_report_name;

/// `BPF_MAP_TYPE_PROG_ARRAY`: its values are programs (fds in, ids out).
const PROG_ARRAY: u32 = 3;

/// The loaded objects and what keeps their programs attached.
pub struct Attached {
    /// With the index of their declaration in the topology.
    objects: Vec<(usize, KernelObject)>,
    links: Vec<OwnedFd>,
    /// Where programs attached by `tc` are pinned; removed on drop.
    pin_dir: PathBuf,
    kept: bool,
    /// The stand-in program setting netkit L3's pkt_type.
    l3_pkt_type: Option<KernelObject>,
    /// Devices it is attached to.
    l3_fixed: Vec<(String, String)>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}

/// The stand-in for what a netkit L3 device does to a frame before its
/// programs run (drivers/net/netkit.c: netkit_xmit, eth_skb_pkt_type against
/// the all-zero address of an L3 device): a frame to 00:00:00:00:00:00 is
/// PACKET_HOST (bpf_skb_change_type, helper 32); then TCX_NEXT, so the
/// topology's program runs next.
const L3_PKT_TYPE: &str = "
mov %r6, %r1
ldxw %r2, [%r1+76]
ldxw %r3, [%r1+80]
mov %r4, %r2
add %r4, 6
jgt %r4, %r3, out
ldxw %r5, [%r2]
jne %r5, 0, out
ldxh %r5, [%r2+4]
jne %r5, 0, out
mov %r1, %r6
mov %r2, 0
call 32
out:
mov %r0, -1
exit
";
const L3_PKT_TYPE_NAME: &str = "skiff_l3_pkttype";

/// The namespaces by the topology's names.
pub type Namespaces = BTreeMap<String, Netns>;

impl Attached {
    pub fn new(pin_dir: PathBuf) -> Result<Attached, CannotRun> {
        std::fs::create_dir_all(&pin_dir).map_err(|e| {
            CannotRun(format!(
                "{}: {e} (is a bpffs mounted on /sys/fs/bpf?)",
                pin_dir.display()
            ))
        })?;
        Ok(Attached {
            objects: Vec::new(),
            links: Vec::new(),
            pin_dir,
            kept: false,
            l3_pkt_type: None,
            l3_fixed: Vec::new(),
        })
    }

    /// Every object loaded, filled and attached, in file order.
    pub fn load_all(
        &mut self,
        t: &Topology,
        nss: &Namespaces,
        notes: &mut Vec<String>,
    ) -> Result<(), CannotRun> {
        let mut pinned: BTreeMap<String, OwnedFd> = BTreeMap::new();
        for (i, decl) in t.objects.iter().enumerate() {
            let at = |e: &dyn std::fmt::Display| {
                CannotRun(format!("kernel: {}: {e}", decl.path.display()))
            };
            let mut shared = BTreeMap::new();
            for d in &decl.maps {
                if let Some(fd) = d.pin.as_ref().and_then(|p| pinned.get(p)) {
                    shared.insert(d.name.clone(), fd.try_clone().map_err(|e| at(&e))?);
                }
            }
            let ko = KernelObject::load_sharing(&decl.object, &shared).map_err(|e| at(&e))?;
            for d in &decl.maps {
                if let Some(p) = &d.pin {
                    if !pinned.contains_key(p) {
                        pinned.insert(p.clone(), ko.map_fd(&d.name).map_err(|e| at(&e))?);
                    }
                }
            }
            // a DEVMAP's ifindexes resolve in the writer's namespace: the
            // namespace the object's programs are attached in
            let ns = decl.attach.first().map_or("host", |a| a.netns.as_str());
            let writer = namespace(nss, ns)?;
            writer
                .within(|| {
                    for d in &decl.maps {
                        write_entries(&ko, d, nss)
                            .map_err(|e| skiff_kernel::KernelError::Io(e.0))?;
                    }
                    Ok(())
                })
                .map_err(|e| at(&e))?;
            for a in &decl.attach {
                self.attach(t, &ko, a, nss, notes)?;
            }
            self.objects.push((i, ko));
        }
        Ok(())
    }

    fn attach(
        &mut self,
        t: &Topology,
        ko: &KernelObject,
        a: &Attach,
        nss: &Namespaces,
        notes: &mut Vec<String>,
    ) -> Result<(), CannotRun> {
        let place = format!("{} on {}/{} ({})", a.program, a.netns, a.dev, a.hook);
        let err = |e: &dyn std::fmt::Display| CannotRun(format!("kernel: attaching {place}: {e}"));
        match &a.hook {
            Hook::Xdp(mode) => {
                let how = match mode {
                    XdpMode::Native => LinkAttach::Xdp,
                    XdpMode::Generic => LinkAttach::XdpGeneric,
                };
                self.link(ko, &a.program, namespace(nss, &a.netns)?, &a.dev, how)
                    .map_err(|e| err(&e))
            }
            Hook::Tcx { dir, order } => {
                if *order != MprogOrder::Append {
                    notes.push(format!(
                        "{place}: attached last (the order {order:?} is not rebuilt in the kernel)"
                    ));
                }
                self.link(ko, &a.program, namespace(nss, &a.netns)?, &a.dev, tcx(*dir))
                    .map_err(|e| err(&e))
            }
            Hook::Tc { dir, prio, handle } => {
                let path = self.pin_dir.join(format!(
                    "prog-{}-{}",
                    self.links.len() + self.objects.len(),
                    a.program
                ));
                let path = path.to_string_lossy().into_owned();
                ko.pin_prog(&a.program, &path).map_err(|e| err(&e))?;
                let ns = namespace(nss, &a.netns)?;
                let qdiscs = ns
                    .tc(&["qdisc", "show", "dev", &a.dev], &t_dir(t))
                    .map_err(|e| err(&e))?;
                if !qdiscs.contains("clsact") {
                    ns.tc(&["qdisc", "add", "dev", &a.dev, "clsact"], &t_dir(t))
                        .map_err(|e| err(&e))?;
                }
                let (prio, handle) = (prio.to_string(), format!("{handle:#x}"));
                let mut args = vec![
                    "filter",
                    "add",
                    "dev",
                    &a.dev,
                    if *dir == TcDirection::Ingress {
                        "ingress"
                    } else {
                        "egress"
                    },
                ];
                if prio != "0" {
                    args.extend(["prio", prio.as_str()]);
                }
                if handle != "0x0" {
                    args.extend(["handle", handle.as_str()]);
                }
                args.extend(["bpf", "da", "object-pinned", path.as_str()]);
                ns.tc(&args, &t_dir(t)).map_err(|e| err(&e))?;
                Ok(())
            }
            Hook::Netkit { side, .. } => {
                let (ns, dev, l3) = netkit_stand_in(t, a, *side)?;
                notes.push(format!(
                    "{place}: no netkit in this kernel: {} attached at tcx/ingress of {ns}/{dev}, the veth end whose receive follows that netkit xmit (skb->dev the same device)",
                    a.program
                ));
                let key = (ns.clone(), dev.clone());
                if l3 && !self.l3_fixed.contains(&key) {
                    self.attach_l3_pkt_type(namespace(nss, &ns)?, &dev)
                        .map_err(|e| err(&e))?;
                    self.l3_fixed.push(key);
                    notes.push(format!(
                        "{ns}/{dev}: a stand-in program first at its tcx/ingress makes frames to the all-zero MAC PACKET_HOST, as netkit L3's MAC-less device takes them (eth_skb_pkt_type)"
                    ));
                }
                self.link(
                    ko,
                    &a.program,
                    namespace(nss, &ns)?,
                    &dev,
                    LinkAttach::TcxIngress,
                )
                .map_err(|e| err(&e))
            }
        }
    }

    /// [`L3_PKT_TYPE`] loaded once and linked at the device's tcx ingress.
    fn attach_l3_pkt_type(
        &mut self,
        ns: &Netns,
        dev: &str,
    ) -> Result<(), skiff_kernel::KernelError> {
        if self.l3_pkt_type.is_none() {
            let insns = skiff_isa::asm::assemble(L3_PKT_TYPE).map_err(|e| {
                skiff_kernel::KernelError::Io(format!("the L3 pkt_type program: {e}"))
            })?;
            let obj = skiff_object::Object {
                license: "GPL".into(),
                programs: vec![skiff_object::Program {
                    name: L3_PKT_TYPE_NAME.into(),
                    section: "tcx/ingress".into(),
                    prog_type: skiff_object::ProgType::SchedCls,
                    expected_attach_type: Some(skiff_object::AttachType::TcxIngress),
                    frags: false,
                    insns,
                    lines: Vec::new(),
                }],
                maps: Vec::new(),
            };
            self.l3_pkt_type = Some(KernelObject::load(&obj)?);
        }
        let ifindex = ns.ifindex(dev)?;
        let Some(ko) = &self.l3_pkt_type else {
            return Ok(());
        };
        let fd = ns.within(|| ko.link_create(L3_PKT_TYPE_NAME, ifindex, LinkAttach::TcxIngress))?;
        self.links.push(fd);
        Ok(())
    }

    /// BPF_LINK_CREATE in the device's namespace; the link is kept.
    fn link(
        &mut self,
        ko: &KernelObject,
        prog: &str,
        ns: &Netns,
        dev: &str,
        how: LinkAttach,
    ) -> Result<(), skiff_kernel::KernelError> {
        let ifindex = ns.ifindex(dev)?;
        let fd = ns.within(|| ko.link_create(prog, ifindex, how))?;
        self.links.push(fd);
        Ok(())
    }

    /// Every map after the run, by report name (a shared map once).
    pub fn dump_maps(&self, t: &Topology) -> Result<BTreeMap<String, MapDump>, CannotRun> {
        let mut out = BTreeMap::new();
        for (i, ko) in &self.objects {
            let Some(decl) = t.objects.get(*i) else {
                continue;
            };
            let dumps = ko.dump_all().map_err(|e| {
                CannotRun(format!(
                    "kernel: dumping maps of {}: {e}",
                    decl.path.display()
                ))
            })?;
            for (name, entries) in dumps {
                out.entry(map_report_name(decl, &name)).or_insert(entries);
            }
        }
        Ok(out)
    }

    /// Leaves the pinned programs and pins every link, so that the programs
    /// stay attached after this process ends; where they are.
    pub fn keep(&mut self) -> String {
        self.kept = true;
        for (i, l) in self.links.iter().enumerate() {
            let path = self.pin_dir.join(format!("link-{i}"));
            let _ = pin_fd(l.as_raw_fd(), &path.to_string_lossy());
        }
        self.pin_dir.display().to_string()
    }
}

fn tcx(dir: TcDirection) -> LinkAttach {
    match dir {
        TcDirection::Ingress => LinkAttach::TcxIngress,
        TcDirection::Egress => LinkAttach::TcxEgress,
    }
}

/// The topology file's directory (objects named by tc lines are relative to it).
pub fn t_dir(t: &Topology) -> PathBuf {
    t.file
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn namespace<'a>(nss: &'a Namespaces, name: &str) -> Result<&'a Netns, CannotRun> {
    nss.get(name)
        .ok_or_else(|| CannotRun(format!("kernel: no namespace {name}")))
}

/// Where a netkit program runs on the veth pair standing in for the netkit
/// pair, and whether the pair is L3: a primary-side program runs at the
/// primary's xmit with skb->dev the peer (drivers/net/netkit.c: netkit_xmit),
/// so on the peer's tc ingress; a peer-side program on the primary's.
fn netkit_stand_in(
    t: &Topology,
    a: &Attach,
    side: NetkitSide,
) -> Result<(String, String, bool), CannotRun> {
    let dev = t
        .namespaces
        .iter()
        .find(|n| n.name == a.netns)
        .and_then(|n| n.devices.iter().find(|d| d.name == a.dev))
        .ok_or_else(|| CannotRun(format!("kernel: no device {}/{}", a.netns, a.dev)))?;
    let DeviceKind::Netkit {
        peer_name,
        peer_ns,
        mode,
        ..
    } = &dev.kind
    else {
        return Err(CannotRun(format!(
            "kernel: {}/{} is not a netkit primary",
            a.netns, a.dev
        )));
    };
    let l3 = *mode == NetkitMode::L3;
    Ok(match side {
        NetkitSide::Primary => (
            peer_ns.clone().unwrap_or_else(|| a.netns.clone()),
            peer_name.clone(),
            l3,
        ),
        NetkitSide::Peer => (a.netns.clone(), a.dev.clone(), l3),
    })
}

/// A map's initial entries, as the topology gives them: ifindexes of the
/// kernel's devices, program fds for a PROG_ARRAY, a per-CPU value on every CPU.
fn write_entries(ko: &KernelObject, d: &MapDecl, nss: &Namespaces) -> Result<(), CannotRun> {
    let err = |e: &dyn std::fmt::Display| CannotRun(format!("kernel: map {}: {e}", d.name));
    let map_type = ko.map_type(&d.name).map_err(|e| err(&e))?;
    for e in &d.entries {
        let key = resolve(ko, &e.key, nss)?;
        if let (PROG_ARRAY, [Piece::Prog(p)]) = (map_type, e.value.as_slice()) {
            ko.map_update_prog(&d.name, &key, p).map_err(|e| err(&e))?;
            continue;
        }
        let mut value = resolve(ko, &e.value, nss)?;
        if skiff_kernel::map_type::is_percpu(map_type) {
            value = percpu(&value)?;
        }
        ko.map_update(&d.name, &key, &value, 0)
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// One value for each possible CPU, in 8-byte slots (the syscall's layout).
fn percpu(v: &[u8]) -> Result<Vec<u8>, CannotRun> {
    let cpus = skiff_kernel::possible_cpus()?;
    let slot = v.len().div_ceil(8) * 8;
    let mut all = Vec::with_capacity(slot.saturating_mul(cpus));
    for _ in 0..cpus {
        all.extend_from_slice(v);
        all.resize(all.len() + slot - v.len(), 0);
    }
    Ok(all)
}

fn resolve(ko: &KernelObject, pieces: &[Piece], nss: &Namespaces) -> Result<Vec<u8>, CannotRun> {
    let mut v = Vec::new();
    for p in pieces {
        match p {
            Piece::Bytes(b) => v.extend_from_slice(b),
            Piece::Ifindex { netns, dev } => {
                let i = namespace(nss, netns)?.ifindex(dev)?;
                v.extend_from_slice(&i.to_ne_bytes());
            }
            Piece::Prog(name) => v.extend_from_slice(&ko.prog_id(name)?.to_ne_bytes()),
        }
    }
    Ok(v)
}
