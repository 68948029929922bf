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
use crate::buff::{Redirect, SkBuff, ETH_HLEN};
use crate::drop::DropReason;
use crate::sched::cls_api::{
    tcf_classify, tcf_classify_direct, ClsError, DirectBpf, FilterKey, FilterSpec, MirredTarget,
    TcfBlock, TcfEnv, ETH_P_ALL,
};
use crate::sched::cls_bpf::BpfSpec;
use crate::stack::NeighOutput;
use skiff_vm::ProgType;

pub use crate::sched::act_api::{
    TC_ACT_CONSUMED, TC_ACT_OK, TC_ACT_PIPE, TC_ACT_QUEUED, TC_ACT_RECLASSIFY, TC_ACT_REDIRECT,
    TC_ACT_REPEAT, TC_ACT_SHOT, TC_ACT_STOLEN, TC_ACT_TRAP, TC_ACT_UNSPEC,
};
pub use crate::sched::cls_api::MAX_RECLASSIFY_LOOP;
pub use crate::sched::cls_bpf::cls_bpf_exec_opcode;
/// TCX_NEXT / TCX_PASS / TCX_DROP / TCX_REDIRECT (include/uapi/linux/bpf.h).
pub const TCX_NEXT: i64 = -1;
pub const TCX_PASS: i64 = 0;
pub const TCX_DROP: i64 = 2;
pub const TCX_REDIRECT: i64 = 7;
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

/// A clsact hook: the tcx chain, then the filter block (chains of filters
/// of every classifier kind, net/sched/cls_api.c).
#[derive(Default)]
pub(crate) struct TcHook {
    pub tcx: Vec<Arc<Program>>,
    pub block: TcfBlock,
    /// On the egress hook: the blocks of the classful qdiscs and classes
    /// (`tc filter add ... parent 1:10`), by handle, for their enqueue.
    pub qdisc_blocks: Vec<(u32, TcfBlock)>,
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
                let key = FilterKey {
                    chain: 0,
                    prio,
                    protocol: ETH_P_ALL,
                    handle,
                };
                let spec = FilterSpec::Bpf(BpfSpec {
                    name: prog.name.clone(),
                    prog,
                    direct_action: true,
                    classid,
                    exts: Default::default(),
                });
                self.block
                    .add_filter(key, spec, false)
                    .map(|_| ())
                    .map_err(|e| (cls_errno(&e), e.to_string()))
            }
            TcAttach::Tcx(order) => mprog_attach(&mut self.tcx, prog, order)
                .map_err(|e| (e, format!("tcx attach ({order:?})"))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tcx.is_empty() && self.block.is_empty()
    }

    /// The block of a qdisc or class handle, made when missing.
    pub fn qdisc_block(&mut self, handle: u32) -> &mut TcfBlock {
        let i = match self.qdisc_blocks.iter().position(|(h, _)| *h == handle) {
            Some(i) => i,
            None => {
                self.qdisc_blocks.push((handle, TcfBlock::default()));
                self.qdisc_blocks.len() - 1
            }
        };
        &mut self.qdisc_blocks[i].1
    }

    /// The block filters attached at a qdisc or class handle, if any.
    pub fn qdisc_block_of(&self, handle: u32) -> Option<&TcfBlock> {
        self.qdisc_blocks
            .iter()
            .find(|(h, b)| *h == handle && !b.is_empty())
            .map(|(_, b)| b)
    }
}

/// The errno a classifier error is (what tc prints).
pub(crate) fn cls_errno(e: &ClsError) -> i32 {
    match e {
        ClsError::Exists { .. } => super::EEXIST,
        ClsError::NotFound { .. } => super::ENOENT,
        ClsError::Invalid(_) => EINVAL,
        ClsError::NotSupported(_) => super::EOPNOTSUPP,
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

/// include/net/tcx.h: tcx_action_code.
pub fn tcx_action_code(code: i64) -> i64 {
    match code {
        TCX_PASS | TCX_DROP | TCX_REDIRECT => code,
        _ => TCX_NEXT,
    }
}

/// What sch_handle_ingress leaves for __netif_receive_skb_core.
pub(crate) enum Ingress {
    Continue(Pkt),
    Done,
    /// bpf_redirect_peer: another round on the peer device.
    Another(DevId, Pkt),
}

/// A hook's outcome: the action, whether RECLASSIFY looped out, the
/// deciding program, any exception, and a mirred redirect that took the packet.
pub(crate) struct TcResult<'a> {
    pub action: TcAction,
    pub reclassify_loop: bool,
    /// Borrowed from the device's hook: no refcount per packet.
    pub prog: Option<&'a Arc<Program>>,
    pub exc: Option<Exception>,
    pub mirred: Option<MirredTarget>,
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

/// What tcf_classify needs from the CPU running a hook or a qdisc's
/// classification: the packet's device, namespace and time, the programs'
/// VM, and sends for act_mirred. Remembers the last program run (its id) and
/// the exception that ended a run, for traces and drop records.
pub(crate) struct CpuTcfEnv<'c, 'a> {
    pub cpu: &'c mut Cpu<'a>,
    pub dev: DevId,
    pub ts: u64,
    pub last_prog: Option<u32>,
    pub exc: Option<Exception>,
    /// Inside a qdisc's lock: mirred's clones wait here until it is released.
    pub deferred: Option<Vec<(Pkt, MirredTarget)>>,
}

impl<'a> Cpu<'a> {
    /// The classification environment for a packet of `ts` on `dev`.
    pub(crate) fn tcf_env<'c>(&'c mut self, dev: DevId, ts: u64) -> CpuTcfEnv<'c, 'a> {
        CpuTcfEnv {
            cpu: self,
            dev,
            ts,
            last_prog: None,
            exc: None,
            deferred: None,
        }
    }

    /// tcf_classify for a classful qdisc's enqueue (htb_classify,
    /// prio_classify): the filters attached at `parent` of `dev`, mirred's
    /// sends kept in `deferred` until the qdisc lock is released.
    pub(crate) fn qdisc_classify(
        &mut self,
        dev: DevId,
        parent: u32,
        pkt: &mut Pkt,
        deferred: &mut Vec<(Pkt, MirredTarget)>,
    ) -> crate::sched::Classified {
        use crate::sched::Classified;
        let Some(block) = self.dev(dev).tc_egress.qdisc_block_of(parent) else {
            return Classified::NoMatch;
        };
        pkt.skb.tc_at_ingress = false;
        let mut env = self.tcf_env(dev, pkt.ts);
        env.deferred = Some(std::mem::take(deferred));
        let res = tcf_classify(block, &mut pkt.skb, &mut env);
        *deferred = env.deferred.take().unwrap_or_default();
        match res.action {
            a if a < 0 => Classified::NoMatch,
            TC_ACT_SHOT => Classified::Shot,
            TC_ACT_STOLEN | TC_ACT_QUEUED | TC_ACT_TRAP | TC_ACT_CONSUMED => Classified::Stolen,
            _ => Classified::Class(res.classid),
        }
    }

    /// A registered program by id (only for traces and drop records).
    fn program_by_id(&self, id: Option<u32>) -> Option<&'a Arc<Program>> {
        let sh: &'a super::Shared = self.sh;
        id.and_then(|id| sh.program_index(id))
            .and_then(|i| sh.programs.get(i))
    }
}

impl TcfEnv for CpuTcfEnv<'_, '_> {
    fn run_bpf(&mut self, prog: &Arc<Program>, skb: &mut SkBuff) -> i64 {
        skb.redirect = None;
        let ns = self.cpu.dev(self.dev).ns;
        let (r, e) = self.cpu.run_prog(prog, skb, ns, self.ts, TC_ACT_SHOT);
        self.last_prog = Some(prog.id);
        self.exc = e;
        r
    }

    /// The packet's time on the virtual clock, else the monotonic clock.
    fn now_ns(&mut self) -> u64 {
        if self.cpu.sh.opts.deterministic {
            self.ts
        } else {
            self.cpu.st.vm.env.clock.now_ns()
        }
    }

    /// The same per-CPU xorshift64* stream bpf_get_prandom_u32 reads.
    fn prandom_u32(&mut self) -> u32 {
        self.cpu.st.vm.env.prandom_u32()
    }

    fn dev_up(&self, dev: DevId) -> bool {
        self.cpu.sh.devices.get(dev.0).is_some_and(|d| d.up)
    }

    /// act_mirred on a clone: a new packet with the skb's bytes and metadata.
    fn mirred_clone(&mut self, skb: &SkBuff, to: MirredTarget) -> bool {
        let id = self.cpu.originate();
        let mut n = SkBuff::new(skb.data(), crate::buff::NET_SKB_PAD, skb.ifindex, skb.mtu);
        super::skb::copy_skb_meta(skb, &mut n);
        n.tc_at_ingress = skb.tc_at_ingress;
        let skb = self.cpu.alloc_skb(n);
        let pkt = Pkt {
            id,
            ts: self.ts,
            skb,
        };
        match &mut self.deferred {
            Some(d) => d.push((pkt, to)),
            None => self.cpu.mirred_forward(self.dev, pkt, to, false),
        }
        true
    }
}

impl<'a> Cpu<'a> {
    /// Run a hook's tcx chain then its filter block (tcx_run, tc_run,
    /// tcf_classify). Returns the result with the program that gave it.
    fn tc_classify(&mut self, dev: DevId, dir: TcDirection, pkt: &mut Pkt) -> TcResult<'a> {
        let d = self.dev(dev);
        let hook = match dir {
            TcDirection::Ingress => &d.tc_ingress,
            TcDirection::Egress => &d.tc_egress,
        };
        pkt.skb.tc_at_ingress = dir == TcDirection::Ingress;
        let mut out = TcResult {
            action: TcAction::Unspec,
            reclassify_loop: false,
            prog: None,
            exc: None,
            mirred: None,
        };
        // tcx_run: the chain until a verdict other than TCX_NEXT.
        if !hook.tcx.is_empty() {
            let mut ret = TCX_NEXT;
            for p in &hook.tcx {
                pkt.skb.redirect = None;
                let (r, e) = self.run_prog(p, &mut *pkt.skb, d.ns, pkt.ts, TC_ACT_SHOT);
                out.prog = Some(p);
                out.exc = e;
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
                out.action = TcAction::from_code(code);
                return out;
            }
        }
        if hook.block.is_empty() {
            return out;
        }
        if let Some(f) = hook.block.direct_bpf() {
            return self.tc_direct(f, d.ns, pkt, out);
        }
        // tc_run: tcf_classify over the block; OK/RECLASSIFY copy the
        // class's minor to tc_index.
        let mut env = self.tcf_env(dev, pkt.ts);
        let res = tcf_classify(&hook.block, &mut pkt.skb, &mut env);
        let (last, exc) = (env.last_prog, env.exc.take());
        if res.action == TC_ACT_OK || res.action == TC_ACT_RECLASSIFY {
            pkt.skb.tc_index = (res.classid & 0xffff) as u16;
        }
        if last.is_some()
            && (self.sh.trace_on || self.sh.record_drops || !self.sh.capture_on.is_empty())
        {
            out.prog = self.program_by_id(last);
        }
        if exc.is_some() {
            out.exc = exc;
        }
        out.action = TcAction::from_code(res.action);
        out.reclassify_loop = res.reclassify_loop;
        out.mirred = res.redirect;
        out
    }

    /// tc_run over a block whose only filter is one direct-action cls_bpf
    /// (`tc filter add ... bpf da`): the program run straight from here, as
    /// tcx's is (the same verdicts as `tcf_classify`).
    fn tc_direct(
        &mut self,
        f: &'a DirectBpf,
        ns: super::NsId,
        pkt: &mut Pkt,
        mut out: TcResult<'a>,
    ) -> TcResult<'a> {
        let ts = pkt.ts;
        let mut exc = None;
        let res = tcf_classify_direct(f, &mut pkt.skb, |p, skb| {
            skb.redirect = None;
            let (r, e) = self.run_prog(p, skb, ns, ts, TC_ACT_SHOT);
            exc = e;
            r
        });
        if res.action == TC_ACT_OK || res.action == TC_ACT_RECLASSIFY {
            pkt.skb.tc_index = (res.classid & 0xffff) as u16;
        }
        out.prog = Some(&f.prog);
        out.exc = exc;
        out.action = TcAction::from_code(res.action);
        out.reclassify_loop = res.reclassify_loop;
        out
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
        let res = self.tc_classify(dev, dir, pkt);
        // TC_ACT_CONSUMED (mirred took the skb) is recorded as the STOLEN
        // it stands for: the packet left this hook.
        let code = match res.action.code() {
            TC_ACT_CONSUMED => TC_ACT_STOLEN,
            c => c,
        };
        let target = match (
            &pkt.skb.redirect,
            self.sh.trace_on && code == TC_ACT_REDIRECT,
        ) {
            (Some(r), true) => Some(self.redirect_desc(r)),
            _ => None,
        };
        let target = match res.mirred {
            Some(m) if self.sh.trace_on => Some(self.mirred_desc(m)),
            _ => target,
        };
        let name = res.prog_name();
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
        res
    }

    /// "mirred egress dev X" for a trace.
    #[cold]
    fn mirred_desc(&self, m: MirredTarget) -> String {
        let dir = if m.ingress { "ingress" } else { "egress" };
        let name = self
            .sh
            .devices
            .get(m.dev.0)
            .map(|d| d.name.as_str())
            .unwrap_or("?");
        format!("mirred {dir} {name}")
    }

    /// net/sched/act_mirred.c: tcf_mirred_forward — to the target's egress
    /// (dev_queue_xmit) or its ingress. skiff takes the ingress way through
    /// the backlog (netif_rx) also at tc ingress, where the kernel calls
    /// netif_receive_skb: a mirred loop then meets the loop guard instead of
    /// recursing. A redirect (skb_set_redirected) from ingress clears tstamp.
    pub(crate) fn mirred_forward(
        &mut self,
        from: DevId,
        mut pkt: Pkt,
        to: MirredTarget,
        redirect: bool,
    ) {
        let d = self.dev(to.dev);
        if redirect && pkt.skb.tc_at_ingress {
            pkt.skb.tstamp = 0;
        }
        pkt.skb.ingress_ifindex = self.dev(from).ifindex;
        pkt.skb.ifindex = d.ifindex;
        if to.ingress {
            self.count_rx(to.dev, pkt.skb.len());
            self.netif_rx(to.dev, pkt);
        } else {
            self.dev_queue_xmit(to.dev, pkt);
        }
    }

    /// net/core/dev.c: sch_handle_ingress.
    pub(crate) fn sch_handle_ingress(&mut self, dev: DevId, mut pkt: Pkt) -> Ingress {
        if self.dev(dev).tc_ingress.is_empty() {
            return Ingress::Continue(pkt);
        }
        let res = self.tc_hook(dev, TcDirection::Ingress, &mut pkt);
        if let Some(m) = res.mirred {
            // TC_ACT_CONSUMED: mirred took the skb itself.
            self.mirred_forward(dev, pkt, m, true);
            return Ingress::Done;
        }
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
