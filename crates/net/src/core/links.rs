//! The programs attached to each hook as a control plane sees them (bpftool
//! net show, bpf_prog_detach / bpf_link_detach of tcx and netkit programs),
//! and the queue depths and drop records a running datapath reports.

use std::sync::Arc;

use skiff_vm::Program;

use super::counters::DropRecord;
use super::{errno, Datapath, DatapathError, DevId, TcDirection, ENOENT, ENXIO};
use crate::drivers::NetkitSide;

/// One program on one hook: `hook` as bpftool names the attach point
/// (xdp, xdpgeneric, tcx_ingress, tcx_egress, netkit_primary, netkit_peer).
#[derive(Clone)]
pub struct AttachedProg {
    pub dev: DevId,
    pub hook: &'static str,
    pub prog: Arc<Program>,
}

/// What waits in a device's queues: frames in its receive rings, packets in
/// its root qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    pub dev: DevId,
    pub rx: usize,
    pub qdisc: usize,
}

impl Datapath {
    /// Every XDP, tcx and netkit program in device order, chains in run
    /// order (tools/bpf/bpftool/net.c: do_show). cls_bpf filters are `tc
    /// filter show`'s (`tc_filter_show`).
    pub fn attached_programs(&self) -> Vec<AttachedProg> {
        let mut out = Vec::new();
        for (i, d) in self.sh.devices.iter().enumerate() {
            let dev = DevId(i);
            let mut push = |hook, p: &Arc<Program>| {
                out.push(AttachedProg {
                    dev,
                    hook,
                    prog: p.clone(),
                })
            };
            d.xdp_native.iter().for_each(|p| push("xdp", p));
            d.xdp_generic.iter().for_each(|p| push("xdpgeneric", p));
            d.tc_ingress.tcx.iter().for_each(|p| push("tcx_ingress", p));
            d.tc_egress.tcx.iter().for_each(|p| push("tcx_egress", p));
            if let Some(nk) = d.ops.as_netkit() {
                let hook = match nk.primary {
                    true => "netkit_primary",
                    false => "netkit_peer",
                };
                nk.progs.iter().for_each(|p| push(hook, p));
            }
        }
        out
    }

    /// kernel/bpf/tcx.c: tcx_prog_detach: the program `prog_id` leaves the
    /// device's tcx chain (ENOENT if it is not there).
    pub fn detach_tcx(
        &mut self,
        dev: DevId,
        dir: TcDirection,
        prog_id: u32,
    ) -> Result<(), DatapathError> {
        let d = self.dev_mut(dev)?;
        let name = d.name.clone();
        let chain = match dir {
            TcDirection::Ingress => &mut d.tc_ingress.tcx,
            TcDirection::Egress => &mut d.tc_egress.tcx,
        };
        remove_prog(chain, prog_id).map_err(|e| {
            errno(
                e,
                format!("device {name}: tcx {dir}: no program id {prog_id}"),
            )
        })
    }

    /// drivers/net/netkit.c: netkit_prog_detach, through the primary as the
    /// attach is (ENXIO if not netkit).
    pub fn detach_netkit(
        &mut self,
        primary: DevId,
        side: NetkitSide,
        prog_id: u32,
    ) -> Result<(), DatapathError> {
        let d = self.dev(primary)?;
        let name = d.name.clone();
        let target = match d.ops.as_netkit() {
            Some(nk) if nk.primary => match side {
                NetkitSide::Primary => primary,
                NetkitSide::Peer => nk.peer,
            },
            _ => return Err(errno(ENXIO, format!("{name} is not a netkit primary"))),
        };
        let chain = match self.dev_mut(target)?.ops.as_netkit_mut() {
            Some(nk) => &mut nk.progs,
            None => return Err(errno(ENXIO, format!("{name}'s peer is not netkit"))),
        };
        remove_prog(chain, prog_id)
            .map_err(|e| errno(e, format!("netkit {name}: no program id {prog_id}")))
    }

    /// Per device: frames in its receive rings and packets in its root qdisc.
    pub fn queue_depths(&self) -> Vec<QueueDepth> {
        self.sh
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| QueueDepth {
                dev: DevId(i),
                rx: d.ops.rx_pending(),
                qdisc: d.qdisc.as_ref().map(|q| q.lock().qlen()).unwrap_or(0),
            })
            .collect()
    }

    /// The drop records kept so far (`set_record_drops`), oldest first, and
    /// the log emptied: a long-running datapath's reader counts each once.
    pub fn take_drops(&mut self) -> Vec<DropRecord> {
        std::mem::take(&mut self.rec.drop_log).into()
    }
}

/// kernel/bpf/mprog.c: bpf_mprog_detach of a program by id.
fn remove_prog(chain: &mut Vec<Arc<Program>>, prog_id: u32) -> Result<(), i32> {
    let i = chain.iter().position(|p| p.id == prog_id).ok_or(ENOENT)?;
    chain.remove(i);
    Ok(())
}
