//! TC: the clsact ingress/egress hooks of a device — a tcx program chain
//! (bpf_mprog ordering) run first, then cls_bpf direct-action filters by
//! priority — the action codes as sch_handle_ingress/egress read them, and
//! what the actions do: skb_do_redirect (bpf_redirect, _peer, _neigh) and
//! bpf_clone_redirect's clones (net/core/dev.c, net/core/filter.c).

use std::sync::Arc;

use skiff_vm::{Exception, Program};

use super::cpu::{at, Cpu, Where};
use super::skb::{eth_type_trans, has_mac_header, skb_scrub_packet};
use super::{errno, Datapath, DatapathError, DevId, Hook, Pkt, TcAction, EINVAL};
use crate::buff::{Redirect, ETH_HLEN};
use crate::drop::DropReason;
use crate::stack::NeighOutput;
use skiff_vm::ProgType;

pub const TC_ACT_UNSPEC: i64 = -1;
pub const TC_ACT_OK: i64 = 0;
pub const TC_ACT_RECLASSIFY: i64 = 1;
pub const TC_ACT_SHOT: i64 = 2;
pub const TC_ACT_PIPE: i64 = 3;
pub const TC_ACT_STOLEN: i64 = 4;
pub const TC_ACT_QUEUED: i64 = 5;
pub const TC_ACT_REPEAT: i64 = 6;
pub const TC_ACT_REDIRECT: i64 = 7;
pub const TC_ACT_TRAP: i64 = 8;
/// TCX_NEXT / TCX_PASS / TCX_DROP / TCX_REDIRECT (include/uapi/linux/bpf.h).
pub const TCX_NEXT: i64 = -1;
pub const TCX_PASS: i64 = 0;
pub const TCX_DROP: i64 = 2;
pub const TCX_REDIRECT: i64 = 7;
/// net/sched/cls_api.c: max_reclassify_loop.
pub const MAX_RECLASSIFY_LOOP: u32 = 16;
/// include/linux/bpf_mprog.h: BPF_MPROG_MAX.
pub const BPF_MPROG_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcDirection {
    Ingress,
    Egress,
}

/// As `tc filter add dev X ingress|egress` spells it.
impl std::fmt::Display for TcDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcDirection::Ingress => "ingress",
            TcDirection::Egress => "egress",
        })
    }
}

/// Where a program joins a bpf_mprog chain (tcx, netkit): BPF_F_BEFORE /
/// BPF_F_AFTER relative to a program id or to the whole chain, BPF_F_REPLACE.
/// `Id` is the program's id for the datapath, its name in a topology file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MprogOrder<Id = u32> {
    /// BPF_F_AFTER with no relative program: last (the default attach).
    Append,
    /// BPF_F_BEFORE with no relative program: first.
    Prepend,
    Before(Id),
    After(Id),
    /// BPF_F_REPLACE of the program with this id.
    Replace(Id),
}

/// How a TC program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttach {
    /// `tc filter add dev X ingress|egress prio P handle H bpf da obj ...`;
    /// `classid` is the filter's classid option (0 if none).
    ClsBpf {
        prio: u16,
        handle: u32,
        classid: u32,
    },
    /// tcx (BPF_TCX_INGRESS / BPF_TCX_EGRESS) with mprog ordering.
    Tcx(MprogOrder),
}

pub(crate) struct ClsFilter {
    pub prio: u16,
    pub handle: u32,
    pub classid: u32,
    pub prog: Arc<Program>,
}

#[derive(Default)]
pub(crate) struct TcHook {
    pub tcx: Vec<Arc<Program>>,
    pub cls: Vec<ClsFilter>,
}

impl TcHook {
    /// `tc filter add ... bpf da` or a tcx attach. Err: errno and what failed.
    pub fn attach(&mut self, attach: TcAttach, prog: Arc<Program>) -> Result<(), (i32, String)> {
        match attach {
            TcAttach::ClsBpf {
                prio,
                handle,
                classid,
            } => {
                // tc picks prio 49152 / handle 1 when none are given; 0 means that here.
                let prio = if prio == 0 { 49152 } else { prio };
                let handle = if handle == 0 { 1 } else { handle };
                self.add_cls(ClsFilter {
                    prio,
                    handle,
                    classid,
                    prog,
                })
                .map_err(|e| (e, format!("filter prio {prio} handle {handle} exists")))
            }
            TcAttach::Tcx(order) => mprog_attach(&mut self.tcx, prog, order)
                .map_err(|e| (e, format!("tcx attach ({order:?})"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tcx.is_empty() && self.cls.is_empty()
    }

    /// `tc filter add`: EEXIST for a taken prio/handle, then kept in prio order.
    pub fn add_cls(&mut self, f: ClsFilter) -> Result<(), i32> {
        if self
            .cls
            .iter()
            .any(|c| c.prio == f.prio && c.handle == f.handle)
        {
            return Err(super::EEXIST);
        }
        let pos = self
            .cls
            .iter()
            .position(|c| (c.prio, c.handle) > (f.prio, f.handle))
            .unwrap_or(self.cls.len());
        self.cls.insert(pos, f);
        Ok(())
    }
}

/// kernel/bpf/mprog.c: bpf_mprog_attach (programs, not links): EEXIST if the
/// program is already in the chain, ENOENT for an unknown relative program,
/// ERANGE past BPF_MPROG_MAX.
pub(crate) fn mprog_attach(
    chain: &mut Vec<Arc<Program>>,
    prog: Arc<Program>,
    order: MprogOrder,
) -> Result<(), i32> {
    let find = |chain: &Vec<Arc<Program>>, id: u32| chain.iter().position(|p| p.id == id);
    if let MprogOrder::Replace(id) = order {
        let i = find(chain, id).ok_or(super::ENOENT)?;
        if chain.iter().any(|p| p.id == prog.id) && chain[i].id != prog.id {
            return Err(super::EEXIST);
        }
        chain[i] = prog;
        return Ok(());
    }
    if chain.iter().any(|p| p.id == prog.id) {
        return Err(super::EEXIST);
    }
    if chain.len() >= BPF_MPROG_MAX {
        return Err(super::ERANGE);
    }
    let pos = match order {
        MprogOrder::Append => chain.len(),
        MprogOrder::Prepend => 0,
        MprogOrder::Before(id) => find(chain, id).ok_or(super::ENOENT)?,
        MprogOrder::After(id) => find(chain, id).ok_or(super::ENOENT)? + 1,
        MprogOrder::Replace(_) => chain.len(),
    };
    chain.insert(pos, prog);
    Ok(())
}

/// net/sched/cls_bpf.c: cls_bpf_exec_opcode — in direct-action mode only these
/// codes are actions; anything else (PIPE, QUEUED, out of range) is UNSPEC.
pub fn cls_bpf_exec_opcode(code: i64) -> i64 {
    match code {
        TC_ACT_OK | TC_ACT_SHOT | TC_ACT_STOLEN | TC_ACT_TRAP | TC_ACT_REDIRECT
        | TC_ACT_RECLASSIFY => code,
        _ => TC_ACT_UNSPEC,
    }
}

/// include/net/tcx.h: tcx_action_code.
pub fn tcx_action_code(code: i64) -> i64 {
    match code {
        TCX_PASS | TCX_DROP | TCX_REDIRECT => code,
        _ => TCX_NEXT,
    }
}

const RECLASSIFY_LOOP_FLAG: i64 = 1 << 40;

/// What sch_handle_ingress leaves for __netif_receive_skb_core.
pub(crate) enum Ingress {
    Continue(Pkt),
    Done,
    /// bpf_redirect_peer: another round on the peer device.
    Another(DevId, Pkt),
}

/// A hook's outcome: the action, whether RECLASSIFY looped out, the
/// deciding program and any exception.
pub(crate) struct TcResult<'a> {
    pub action: TcAction,
    pub reclassify_loop: bool,
    /// Borrowed from the device's hook: no refcount per packet.
    pub prog: Option<&'a Arc<Program>>,
    pub exc: Option<Exception>,
}

impl TcResult<'_> {
    pub fn prog_name(&self) -> Option<&str> {
        self.prog.as_ref().map(|p| p.name.as_str())
    }

    /// Why a SHOT dropped the packet.
    pub fn shot_reason(&self, dir: TcDirection) -> DropReason {
        match (self.reclassify_loop, dir) {
            (true, _) => DropReason::TcReclassifyLoop,
            (false, TcDirection::Ingress) => DropReason::TcIngress,
            (false, TcDirection::Egress) => DropReason::TcEgress,
        }
    }
}

impl<'a> Cpu<'a> {
    /// Run a hook's tcx chain then its cls_bpf filters (tcx_run, tc_run,
    /// tcf_classify in direct-action mode). Returns the final action code, the
    /// program that gave it, and an exception if one ended a run.
    fn tc_classify(
        &mut self,
        dev: DevId,
        dir: TcDirection,
        pkt: &mut Pkt,
    ) -> (i64, Option<&'a Arc<Program>>, Option<Exception>) {
        let d = self.dev(dev);
        let hook = match dir {
            TcDirection::Ingress => &d.tc_ingress,
            TcDirection::Egress => &d.tc_egress,
        };
        pkt.skb.tc_at_ingress = dir == TcDirection::Ingress;
        let mut last_prog = None;
        let mut exc = None;
        // tcx_run: the chain until a verdict other than TCX_NEXT.
        if !hook.tcx.is_empty() {
            let mut ret = TCX_NEXT;
            for p in &hook.tcx {
                pkt.skb.redirect = None;
                let (r, e) = self.run_prog(p, &mut *pkt.skb, d.ns, pkt.ts, TC_ACT_SHOT);
                last_prog = Some(p);
                exc = e;
                ret = r;
                if ret != TCX_NEXT {
                    break;
                }
            }
            let code = tcx_action_code(ret);
            if code == TCX_PASS {
                pkt.skb.tc_index = pkt.skb.tc_classid;
            }
            if code != TCX_NEXT {
                return (code, last_prog, exc);
            }
        }
        // tcf_classify over the cls_bpf filters by prio; RECLASSIFY restarts
        // (at most max_reclassify_loop times).
        let mut limit = 0;
        let mut ret;
        'reclassify: loop {
            ret = TC_ACT_UNSPEC;
            for f in &hook.cls {
                pkt.skb.redirect = None;
                let (r, e) = self.run_prog(&f.prog, &mut *pkt.skb, d.ns, pkt.ts, TC_ACT_SHOT);
                last_prog = Some(&f.prog);
                exc = e;
                let code = cls_bpf_exec_opcode(r);
                // res->classid = TC_H_MAJ(prog->res.classid) | qdisc_skb_cb(skb)->tc_classid
                let res_classid = (f.classid & 0xffff_0000) | pkt.skb.tc_classid as u32;
                if code == TC_ACT_UNSPEC {
                    continue;
                }
                if code == TC_ACT_RECLASSIFY {
                    if limit >= MAX_RECLASSIFY_LOOP {
                        return (TC_ACT_SHOT | RECLASSIFY_LOOP_FLAG, last_prog, exc);
                    }
                    limit += 1;
                    continue 'reclassify;
                }
                if code == TC_ACT_OK {
                    pkt.skb.tc_index = (res_classid & 0xffff) as u16;
                }
                ret = code;
                break 'reclassify;
            }
            break;
        }
        (ret, last_prog, exc)
    }

    /// A TC hook as the trace and captures see it: entry capture, the
    /// classification, the hook's record (with the redirect target when
    /// tracing) and the clones bpf_clone_redirect made.
    pub(crate) fn tc_hook(&mut self, dev: DevId, dir: TcDirection, pkt: &mut Pkt) -> TcResult<'a> {
        let hook = match dir {
            TcDirection::Ingress => Hook::TcIngress,
            TcDirection::Egress => Hook::TcEgress,
        };
        self.capture_entry(dev, hook, pkt.id, pkt.ts, pkt.skb.data());
        let (code, prog, exc) = self.tc_classify(dev, dir, pkt);
        // only SHOT carries the flag: TC_ACT_UNSPEC (-1) has every high bit set
        let reclassify_loop = code == TC_ACT_SHOT | RECLASSIFY_LOOP_FLAG;
        let code = if reclassify_loop { TC_ACT_SHOT } else { code };
        let target = match (
            &pkt.skb.redirect,
            self.sh.trace_on && code == TC_ACT_REDIRECT,
        ) {
            (Some(r), true) => Some(self.redirect_desc(r)),
            _ => None,
        };
        let name = prog.as_ref().map(|p| p.name.as_str());
        self.hook_done(
            dev,
            hook,
            name,
            code,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            target,
        );
        let clones = std::mem::take(&mut pkt.skb.clones);
        self.clone_redirects(dev, pkt, clones);
        TcResult {
            action: TcAction::from_code(code),
            reclassify_loop,
            prog,
            exc,
        }
    }

    /// net/core/dev.c: sch_handle_ingress.
    pub(crate) fn sch_handle_ingress(&mut self, dev: DevId, mut pkt: Pkt) -> Ingress {
        if self.dev(dev).tc_ingress.is_empty() {
            return Ingress::Continue(pkt);
        }
        let res = self.tc_hook(dev, TcDirection::Ingress, &mut pkt);
        let w = Where {
            dev,
            hook: Hook::TcIngress,
            prog: res.prog_name(),
            exc: res.exc.as_ref(),
        };
        match res.action {
            TcAction::Redirect => {
                let r = pkt.skb.redirect.take();
                match self.skb_do_redirect(dev, pkt, r, true, res.prog_name()) {
                    Some((peer, p)) => Ingress::Another(peer, p),
                    None => Ingress::Done,
                }
            }
            TcAction::Shot => {
                self.drop_skb(pkt, res.shot_reason(TcDirection::Ingress), w);
                Ingress::Done
            }
            TcAction::Stolen | TcAction::Queued | TcAction::Trap => {
                self.deliver(dev, pkt, "tc-ingress");
                Ingress::Done
            }
            _ => Ingress::Continue(pkt),
        }
    }

    /// bpf_clone_redirect's packets: each a new packet sent as __bpf_redirect.
    pub(crate) fn clone_redirects(
        &mut self,
        dev: DevId,
        pkt: &Pkt,
        clones: Vec<(u32, bool, Vec<u8>)>,
    ) {
        for (ifindex, ingress, frame) in clones {
            let id = self.originate();
            let c = self.copy_pkt(id, pkt, &frame);
            let r = Some(Redirect::Ifindex { ifindex, ingress });
            self.skb_do_redirect(dev, c, r, false, None);
        }
    }

    /// net/core/filter.c: skb_do_redirect. Returns the peer device for a
    /// bpf_redirect_peer (the caller goes another round there).
    pub(crate) fn skb_do_redirect(
        &mut self,
        dev: DevId,
        mut pkt: Pkt,
        r: Option<Redirect>,
        at_ingress: bool,
        prog: Option<&str>,
    ) -> Option<(DevId, Pkt)> {
        let ns = self.dev(dev).ns;
        let hook = if at_ingress {
            Hook::TcIngress
        } else {
            Hook::TcEgress
        };
        let w = Where {
            dev,
            hook,
            prog,
            exc: None,
        };
        let target = match &r {
            Some(Redirect::Ifindex { ifindex, .. })
            | Some(Redirect::Peer { ifindex })
            | Some(Redirect::Neigh { ifindex, .. }) => self.sh.dev_by_ifindex(ns, *ifindex),
            // TC_ACT_REDIRECT without a redirect helper: ri->tgt_index is 0.
            _ => None,
        };
        let Some(t) = target else {
            self.drop_skb(pkt, DropReason::NotSpecified, w);
            return None;
        };
        match r {
            Some(Redirect::Ifindex { ingress, .. }) => {
                if !has_mac_header(&pkt.skb) {
                    self.drop_skb(pkt, DropReason::NotSpecified, w);
                } else if ingress {
                    self.dev_forward_skb(dev, t, pkt);
                } else {
                    pkt.skb.tstamp = 0;
                    self.dev_queue_xmit(t, pkt);
                }
                None
            }
            Some(Redirect::Peer { .. }) => {
                let peer = self.dev(t).peer();
                let ok = at_ingress && peer.is_some_and(|p| self.dev(p).up && self.dev(p).ns != ns);
                match peer {
                    Some(p) if ok => {
                        self.count_rx(p, pkt.skb.len());
                        skb_scrub_packet(&mut pkt.skb, false);
                        Some((p, pkt))
                    }
                    _ => {
                        self.drop_skb(pkt, DropReason::NotSpecified, w);
                        None
                    }
                }
            }
            Some(Redirect::Neigh { nexthop, .. }) => {
                self.redirect_neigh(t, pkt, nexthop);
                None
            }
            _ => {
                self.drop_skb(pkt, DropReason::NotSpecified, w);
                None
            }
        }
    }

    /// net/core/filter.c: __bpf_redirect_neigh — the target device's
    /// neighbour output (HostStack::neigh_output), then dev_queue_xmit.
    fn redirect_neigh(&mut self, t: DevId, pkt: Pkt, nexthop: Option<(u8, [u8; 16])>) {
        let d = self.dev(t);
        let nh = nexthop.and_then(|(family, a)| match family {
            2 => Some(std::net::IpAddr::from([a[0], a[1], a[2], a[3]])),
            10 => Some(std::net::IpAddr::from(a)),
            _ => None,
        });
        let (id, ts) = (pkt.id, pkt.ts);
        let mut frame = pkt.skb.data().to_vec();
        self.free_skb(pkt.skb);
        let mut out = Vec::new();
        let res = self.sh.namespaces[d.ns.0]
            .shared
            .stack_write()
            .neigh_output(d.ifindex, &mut frame, nh, id, &mut out);
        match res {
            Err(reason) => self.record_drop(id, reason, at(t, Hook::TcEgress)),
            Ok(r) => {
                if r == NeighOutput::Queued {
                    self.sh.stack_queued.insert(id);
                }
                self.stack_outputs(d.ns, out, ts);
            }
        }
    }

    /// net/core/dev.c: __dev_forward_skb + netif_rx (bpf_redirect with BPF_F_INGRESS).
    pub(crate) fn dev_forward_skb(&mut self, from: DevId, t: DevId, mut pkt: Pkt) {
        let d = self.dev(t);
        // __is_skb_forwardable: up, and len <= mtu + hard_header_len + VLAN_HLEN.
        if !d.up || pkt.skb.len() > d.mtu as usize + ETH_HLEN + 4 {
            self.stats(t).rx_dropped += 1;
            return self.drop_skb(pkt, DropReason::NotSpecified, at(t, Hook::Rx));
        }
        let xnet = self.dev(from).ns != d.ns;
        skb_scrub_packet(&mut pkt.skb, xnet);
        let (p, ty) = eth_type_trans(pkt.skb.data(), &d.mac);
        pkt.skb.protocol = p;
        pkt.skb.pkt_type = ty;
        pkt.skb.ifindex = d.ifindex;
        self.count_rx(t, pkt.skb.len());
        self.netif_rx(t, pkt);
    }
}

/// `tc filter add ... bpf da` / tcx: programs on a device's clsact hooks.
impl Datapath {
    /// A TC program on the device's clsact ingress or egress: a cls_bpf
    /// direct-action filter (prio/handle) or a tcx chain member.
    pub fn attach_tc(
        &mut self,
        dev: DevId,
        dir: TcDirection,
        attach: TcAttach,
        prog: Arc<Program>,
    ) -> Result<(), DatapathError> {
        let ok_type = match attach {
            TcAttach::Tcx(_) => prog.prog_type == ProgType::SchedCls,
            TcAttach::ClsBpf { .. } => {
                matches!(prog.prog_type, ProgType::SchedCls | ProgType::SchedAct)
            }
        };
        if !ok_type {
            return Err(errno(
                EINVAL,
                format!(
                    "program {} is {:?}, not a TC classifier",
                    prog.name, prog.prog_type
                ),
            ));
        }
        self.register_programs(std::slice::from_ref(&prog));
        let d = self.dev_mut(dev)?;
        let name = d.name.clone();
        let hook = match dir {
            TcDirection::Ingress => &mut d.tc_ingress,
            TcDirection::Egress => &mut d.tc_egress,
        };
        hook.attach(attach, prog)
            .map_err(|(e, what)| errno(e, format!("device {name}: {what}")))
    }
}
