//! net/core/dev.c: __netif_receive_skb_core (VLAN, generic XDP, tc ingress,
//! then the host stack), GRO on the way in, and on the way out
//! __dev_queue_xmit (tc egress, the qdisc or straight to the driver),
//! net_tx_action's qdisc run and dev_hard_start_xmit.

use super::cpu::{at, Cpu, Where};
use super::gro;
use super::skb::{skb_vlan_push_inline, skb_vlan_untag};
use super::tc::{Ingress, TcDirection};
use super::*;
use crate::buff::PACKET_HOST;
use crate::drop::DropReason;
use crate::netfilter::NfHook;
use crate::sched::{EnqueueCtx, Refused};
use crate::stack::{Fate, Origin, RxMeta, StackOutput};
use flow::{ETH_P_8021AD, ETH_P_8021Q};
use std::sync::atomic::Ordering;

impl Cpu<'_> {
    /// __netif_receive_skb: a received skb enters the stack's receive path.
    pub(crate) fn netif_receive_skb(&mut self, dev: DevId, pkt: Pkt) {
        self.netif_receive_skb_core(dev, pkt, false)
    }

    /// net/core/dev.c: __netif_receive_skb_core — VLAN untag, generic XDP,
    /// tc ingress (another_round after bpf_redirect_peer), then the host stack.
    pub(crate) fn netif_receive_skb_core(&mut self, dev: DevId, mut pkt: Pkt, skip_generic: bool) {
        let mut dev = dev;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let d = self.dev(dev);
            pkt.skb.ifindex = d.ifindex;
            pkt.skb.ingress_ifindex = d.ifindex;
            pkt.skb.mtu = d.mtu;
            if matches!(pkt.skb.protocol, ETH_P_8021Q | ETH_P_8021AD) {
                skb_vlan_untag(&mut pkt.skb);
            }
            if !skip_generic {
                if let Some(prog) = &d.xdp_generic {
                    match self.do_xdp_generic(dev, pkt, prog) {
                        Some(p) => pkt = p,
                        None => return,
                    }
                }
            }
            // ptype_all taps (tcpdump): after XDP, before tc ingress
            self.capture_tap(dev, Tap::Rx, &pkt);
            match self.sch_handle_ingress(dev, pkt) {
                Ingress::Continue(p) => pkt = p,
                Ingress::Done => return,
                Ingress::Another(peer, p) => {
                    pkt = p;
                    dev = peer;
                    if rounds > XMIT_RECURSION_LIMIT {
                        let w = at(dev, Hook::TcIngress);
                        return self.drop_skb(pkt, DropReason::RecursionLimit, w);
                    }
                    continue;
                }
            }
            // nf_ingress, after tc ingress.
            if self.dev(dev).nf_ingress {
                match self.nf_netdev_hook(dev, pkt, NfHook::NetdevIngress) {
                    Some(p) => pkt = p,
                    None => return,
                }
            }
            return self.stack_receive(dev, pkt);
        }
    }

    // ---- the host stack ------------------------------------------------------

    /// ip_rcv and up: the namespace's HostStack decides; what it sends goes
    /// through dev_queue_xmit of its device.
    fn stack_receive(&mut self, dev: DevId, mut pkt: Pkt) {
        let d = self.dev(dev);
        if pkt.skb.vlan_present {
            skb_vlan_push_inline(&mut pkt.skb);
        }
        let meta = RxMeta {
            mark: pkt.skb.mark,
            pkt_type: pkt.skb.pkt_type,
            now_ns: pkt.ts,
        };
        let mut out = Vec::new();
        let (fate, nf_trace) = {
            let mut stack = self.sh.namespaces[d.ns.0].shared.stack_write();
            stack.netfilter_mut().trace = self.sh.trace_on;
            let fate = stack.receive(d.ifindex, pkt.skb.data(), meta, pkt.id, &mut out);
            let t = if self.sh.trace_on {
                stack.netfilter_mut().take_trace()
            } else {
                Vec::new()
            };
            (fate, t)
        };
        if !nf_trace.is_empty() {
            self.nf_trace(dev, pkt.id, pkt.ts, pkt.skb.data(), nf_trace);
        }
        let code = match &fate {
            Fate::Delivered(_) => 0,
            Fate::Forwarded => 1,
            Fate::Queued => 2,
            Fate::Dropped(_) => 3,
            Fate::Stolen => 4,
        };
        self.hook_done(
            dev,
            Hook::Stack,
            None,
            code,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            None,
        );
        let ts = pkt.ts;
        match fate {
            Fate::Delivered(_) => self.deliver(dev, pkt, "stack"),
            Fate::Forwarded => self.free_skb(pkt.skb),
            Fate::Queued => {
                self.sh.stack_queued.insert(pkt.id);
                self.free_skb(pkt.skb);
            }
            Fate::Dropped(r @ DropReason::NetfilterDrop) => {
                self.drop_skb(pkt, r, at(dev, Hook::Netfilter))
            }
            Fate::Dropped(r) => self.drop_skb(pkt, r, at(dev, Hook::Stack)),
            Fate::Stolen => self.deliver(dev, pkt, "netfilter"),
        }
        if !out.is_empty() {
            self.stack_outputs(d.ns, out, ts);
        }
    }

    /// What a stack sends: forwarded packets keep their id, replies, errors and
    /// solicits are new (originated); each goes to dev_queue_xmit.
    pub(crate) fn stack_outputs(&mut self, ns: NsId, out: Vec<StackOutput>, ts: u64) {
        for o in out {
            let id = match (o.origin, o.tag) {
                (Origin::Forwarded, Some(t)) => {
                    self.sh.stack_queued.remove(t);
                    t
                }
                (_, Some(t)) if self.sh.stack_queued.remove(t) => t,
                _ => self.originate(),
            };
            let Some(t) = self.sh.dev_by_ifindex(ns, o.ifindex) else {
                let lo = self.sh.namespaces[ns.0].lo;
                self.record_drop(id, DropReason::IpOutnoroutes, at(lo, Hook::Stack));
                continue;
            };
            let mtu = self.dev(t).mtu;
            let mut skb = SkBuff::new(&o.frame, crate::buff::NET_SKB_PAD, o.ifindex, mtu);
            skb.protocol = skiff_wire::EthernetFrame::new_checked(&o.frame[..])
                .map(|e| e.ethertype())
                .unwrap_or(0);
            skb.pkt_type = PACKET_HOST;
            let skb = self.alloc_skb(skb);
            self.dev_queue_xmit(t, Pkt { id, ts, skb });
        }
    }

    // ---- egress -----------------------------------------------------------------

    /// net/core/dev.c: __dev_queue_xmit — tc egress (sch_handle_egress), the
    /// qdisc, else the driver directly (noqueue devices).
    pub(crate) fn dev_queue_xmit(&mut self, dev: DevId, mut pkt: Pkt) {
        if self.st.xmit_depth >= XMIT_RECURSION_LIMIT {
            self.stats(dev).tx_dropped += 1;
            return self.drop_skb(pkt, DropReason::RecursionLimit, at(dev, Hook::Xmit));
        }
        let d = self.dev(dev);
        if !d.up {
            self.stats(dev).tx_dropped += 1;
            return self.drop_skb(pkt, DropReason::DevReady, at(dev, Hook::Xmit));
        }
        self.st.xmit_depth += 1;
        pkt.skb.ifindex = d.ifindex;
        pkt.skb.mtu = d.mtu;
        // nf_hook_egress, before tc egress.
        if d.nf_egress {
            match self.nf_netdev_hook(dev, pkt, NfHook::NetdevEgress) {
                Some(p) => pkt = p,
                None => {
                    self.st.xmit_depth -= 1;
                    return;
                }
            }
        }
        if let Some(pkt) = self.sch_handle_egress(dev, pkt) {
            self.xmit_queue(dev, pkt);
        }
        self.st.xmit_depth -= 1;
    }

    /// net/core/dev.c: sch_handle_egress. Returns the packet when it goes on.
    fn sch_handle_egress(&mut self, dev: DevId, mut pkt: Pkt) -> Option<Pkt> {
        if self.dev(dev).tc_egress.is_empty() {
            return Some(pkt);
        }
        let res = self.tc_hook(dev, TcDirection::Egress, &mut pkt);
        if let Some(m) = res.mirred {
            self.mirred_forward(dev, pkt, m, true);
            return None;
        }
        match res.action {
            TcAction::Redirect => {
                let r = pkt.skb.redirect.take();
                self.skb_do_redirect(dev, pkt, r, false, res.prog_name());
                None
            }
            TcAction::Shot => {
                let w = Where {
                    dev,
                    hook: Hook::TcEgress,
                    prog: res.prog_name(),
                    exc: res.exc.as_ref(),
                };
                self.drop_skb(pkt, res.shot_reason(TcDirection::Egress), w);
                None
            }
            TcAction::Stolen | TcAction::Queued | TcAction::Trap => {
                self.deliver(dev, pkt, "tc-egress");
                None
            }
            _ => Some(pkt),
        }
    }

    /// __dev_xmit_skb: into the root qdisc; a noqueue device goes straight
    /// to the driver. A shaper (a qdisc that is not work-conserving) runs at
    /// once at the packet's time, as the kernel's __qdisc_run there, so its
    /// rate is exact; a work-conserving one runs at the end of the poll (as
    /// net_tx_action does for a busy device), which keeps a poll's packets
    /// together. The qdisc's clock is the packet's time.
    fn xmit_queue(&mut self, dev: DevId, pkt: Pkt) {
        let sh = self.sh;
        let Some(q) = sh.devices.get(dev.0).and_then(|d| d.qdisc.as_ref()) else {
            return self.dev_hard_start_xmit(dev, pkt);
        };
        let ts = pkt.ts;
        let mut next = Some((pkt, false));
        let mut shaper = false;
        let mut now = ts;
        // mirred's copies go once the qdisc lock is released.
        let mut mirred = Vec::new();
        // netem's copies go in again at the root (once: not duplicated).
        for _ in 0..XMIT_RECURSION_LIMIT {
            let Some((pkt, no_dup)) = next.take() else {
                break;
            };
            // The filters of classful qdiscs (tcf_classify at a qdisc or class).
            let mut classify =
                |parent: u32, p: &mut Pkt| self.qdisc_classify(dev, parent, p, &mut mirred);
            let (res, cx_out) = {
                let mut g = q.lock();
                now = g.tick(ts);
                shaper = !g.conserving;
                let mut cx = EnqueueCtx::new(&mut classify);
                cx.now = now;
                cx.no_duplicate = no_dup;
                let r = g.enqueue_at(pkt, &mut cx);
                (r, (cx.dropped, cx.stolen, cx.duplicates))
            };
            let (dropped, stolen, dups) = cx_out;
            match res {
                Ok(()) => {}
                Err(Refused::Drop(p)) => {
                    self.stats(dev).tx_dropped += 1;
                    self.drop_skb(p, DropReason::QdiscDrop, at(dev, Hook::Xmit));
                }
                Err(Refused::Stolen(p)) => self.deliver(dev, p, "qdisc-filter"),
            }
            for p in dropped {
                let p = self.with_id(p);
                self.drop_skb(p, DropReason::QdiscDrop, at(dev, Hook::Xmit));
            }
            for p in stolen {
                self.deliver(dev, p, "qdisc-filter");
            }
            if let Some(d) = dups.into_iter().next() {
                next = Some((self.with_id(d), true));
            }
        }
        for (p, to) in mirred {
            self.mirred_forward(dev, p, to, false);
        }
        if shaper {
            self.qdisc_run(dev, now);
        } else {
            self.st.tx_scheduled = true;
        }
    }

    /// A packet a qdisc made (netem's copy, id 0) gets its id here.
    fn with_id(&mut self, mut p: Pkt) -> Pkt {
        if p.id == 0 {
            p.id = self.originate();
            p.skb = self.alloc_skb(*p.skb);
        }
        p
    }

    /// __qdisc_run: dequeue at `now` (at least the qdisc's own clock) while
    /// the qdisc gives packets, each to the driver; a shaper that holds
    /// packets leaves its watchdog time.
    pub(crate) fn qdisc_run(&mut self, dev: DevId, now: u64) {
        let sh = self.sh;
        let Some(q) = sh.devices.get(dev.0).and_then(|d| d.qdisc.as_ref()) else {
            return;
        };
        loop {
            let p = {
                let mut g = q.lock();
                let now = g.tick(now);
                g.dequeue_at(now).map(|p| (p, now))
            };
            let Some((mut p, now)) = p else { break };
            // It leaves now (a shaper held it until its time came).
            p.ts = p.ts.max(now);
            self.dev_hard_start_xmit(dev, p);
        }
        let (w, dropped) = {
            let mut g = q.lock();
            let mut dropped = Vec::new();
            g.take_dropped(&mut dropped);
            // Only shapers set watchdogs.
            let w = if g.conserving {
                None
            } else {
                g.next_watchdog()
            };
            (w, dropped)
        };
        for p in dropped {
            self.drop_skb(p, DropReason::QdiscDrop, at(dev, Hook::Xmit));
        }
        if let Some(w) = w {
            sh.next_watchdog.fetch_min(w, Ordering::AcqRel);
        }
    }

    /// net_tx_action / __qdisc_run: at the end of a poll every qdisc this
    /// CPU queued into drains to its driver; and every qdisc whose watchdog
    /// time has come at this CPU's clock runs.
    pub(crate) fn qdisc_run_all(&mut self) {
        let sh = self.sh;
        let scheduled = std::mem::take(&mut self.st.tx_scheduled);
        let now = self.st.now;
        let due = sh.next_watchdog.load(Ordering::Acquire) <= now;
        if !scheduled && !due {
            return;
        }
        if due {
            sh.next_watchdog.store(u64::MAX, Ordering::Release);
        }
        for i in 0..sh.devices.len() {
            let dev = DevId(i);
            let Some(q) = sh.devices[i].qdisc.as_ref() else {
                continue;
            };
            let w = {
                let g = q.lock();
                if g.conserving {
                    None
                } else {
                    g.next_watchdog()
                }
            };
            match w {
                Some(w) if due && w <= now => self.qdisc_run(dev, now),
                Some(w) => {
                    sh.next_watchdog.fetch_min(w, Ordering::AcqRel);
                    if scheduled {
                        self.qdisc_run(dev, 0);
                    }
                }
                None if scheduled => self.qdisc_run(dev, 0),
                None => {}
            }
        }
    }

    /// dev_hard_start_xmit / xmit_one: the taps (dev_queue_xmit_nit), the
    /// offloaded VLAN tag back in, then the driver's ndo_start_xmit.
    pub(crate) fn dev_hard_start_xmit(&mut self, dev: DevId, mut pkt: Pkt) {
        self.capture_tap(dev, Tap::Tx, &pkt);
        if pkt.skb.vlan_present {
            skb_vlan_push_inline(&mut pkt.skb);
        }
        self.dev(dev).ops.start_xmit(self, dev, pkt);
    }

    // ---- GRO ----------------------------------------------------------------------

    pub(crate) fn gro_receive(&mut self, dev: DevId, pkt: Pkt) {
        if !self.sh.opts.gro {
            return self.netif_receive_skb(dev, pkt);
        }
        match self.st.gro.receive(dev, pkt) {
            gro::GroResult::Pass(p) => self.netif_receive_skb(dev, p),
            gro::GroResult::Held => {}
            gro::GroResult::Merged {
                into,
                merged,
                flush,
            } => {
                self.st.cnt.cons.delivered += 1;
                self.st.cnt.consumed += 1;
                if self.sh.trace_on {
                    let v = format!("merged into #{into}");
                    let ev = self.event(merged.id, dev, "gro", None, v, None, merged.ts);
                    self.rec.trace.push(ev);
                }
                self.free_skb(merged.skb);
                if let Some(p) = flush {
                    self.netif_receive_skb(dev, p);
                }
            }
        }
    }

    pub(crate) fn gro_flush(&mut self) {
        if self.st.gro.len() == 0 {
            return;
        }
        for (dev, p) in self.st.gro.flush() {
            self.netif_receive_skb(dev, p);
        }
    }
}

/// A bound on watchdog rounds between two packets (each round sends a
/// packet or moves the clock on; a shaper never asks for "now" twice).
const WATCHDOG_ROUNDS_MAX: usize = 1 << 20;

impl Datapath {
    /// The clock moves on to `ts` with nothing arriving: what the qdiscs'
    /// watchdogs release by then goes out (a replay's idle tail, a test
    /// waiting for its shapers to drain).
    pub fn run_until(&mut self, ts: u64) {
        self.run();
        self.qdisc_watchdogs(ts);
        self.now = self.now.max(ts);
    }

    /// The qdisc watchdogs due by `until` fire in time order, each at its
    /// own time, after what was injected before has run (the kernel's
    /// hrtimer -> __netif_schedule -> net_tx_action, on the virtual clock).
    pub(crate) fn qdisc_watchdogs(&mut self, until: u64) {
        if self.sh.next_watchdog.load(Ordering::Acquire) > until {
            return;
        }
        self.run();
        for _ in 0..WATCHDOG_ROUNDS_MAX {
            let w = self.sh.next_watchdog.load(Ordering::Acquire);
            if w > until {
                return;
            }
            self.now = self.now.max(w);
            let now = self.now;
            if let Some(c) = self.cpus.first_mut() {
                c.now = now;
            }
            self.cpu_ctx(0).qdisc_run_all();
            self.run();
        }
    }
}
