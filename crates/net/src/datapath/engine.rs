//! The engine: NAPI polls, the XDP hook and its redirects, sk_buff building,
//! __netif_receive_skb_core (generic XDP, tc ingress, the host stack),
//! dev_queue_xmit (tc egress, qdisc) and each driver's xmit. Every packet ends
//! exactly once: transmitted, delivered or dropped (see `end_*`).

use std::collections::VecDeque;
use std::sync::Arc;

use skiff_maps::{MapType, MapValue};
use skiff_vm::{Clock, Context, Exception, Program, Vm};

use super::counters::{verdict_name, verdict_slot, Hook};
use super::device::{
    Driver, NetkitPolicy, NetkitScrub, NETKIT_DROP, NETKIT_NEXT, NETKIT_PASS, NETKIT_REDIRECT,
};
use super::flow::{ETH_P_8021AD, ETH_P_8021Q};
use super::nic::rss;
use super::stack_port::{Fate, NeighOutput, Origin, QueuedPacket, RxMeta, StackOutput};
use super::tc::*;
use super::trace::{CapturePoint, CaptureRecord, TraceEvent};
use super::*;
use crate::buff::{
    Redirect, ETH_HLEN, PACKET_BROADCAST, PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST,
    PAGE_SIZE, SKB_SHARED_INFO_SIZE, XDP_PACKET_HEADROOM,
};
use crate::drop::DropReason;

const XDP_ABORTED: i64 = 0;
const XDP_DROP: i64 = 1;
const XDP_PASS: i64 = 2;
const XDP_TX: i64 = 3;
const XDP_REDIRECT: i64 = 4;

/// Where a drop happened, for the record.
struct Where<'a> {
    dev: DevId,
    hook: Hook,
    prog: Option<&'a str>,
    exc: Option<&'a Exception>,
}

fn at(dev: DevId, hook: Hook) -> Where<'static> {
    Where {
        dev,
        hook,
        prog: None,
        exc: None,
    }
}

/// Run one program with the clock at `ts` (deterministic mode). Exceptions give
/// `abort` (XDP_ABORTED / TC_ACT_SHOT), as trace_xdp_exception / test_run.
fn run_prog<C: Context>(
    vm: &mut Vm,
    prog: &Arc<Program>,
    ctx: &mut C,
    ts: u64,
    det: bool,
    abort: i64,
) -> (i64, Option<Exception>) {
    if det {
        vm.env.clock = Clock::Virtual(ts);
    }
    match vm.run(prog, ctx) {
        Ok(r) => (r as u32 as i32 as i64, None),
        Err(e) => (abort, Some(e)),
    }
}

/// net/ethernet/eth.c: eth_type_trans — pkt_type from the destination MAC
/// against the device's address, protocol from the EtherType (802.3/802.2 below 0x600).
pub(crate) fn eth_type_trans(frame: &[u8], dev_mac: &[u8; 6]) -> (u16, u8) {
    let Some(dst) = frame.get(..6) else {
        return (0, PACKET_HOST);
    };
    let pkt_type = if dst[0] & 1 != 0 {
        if dst == [0xff; 6] {
            PACKET_BROADCAST
        } else {
            PACKET_MULTICAST
        }
    } else if dst != dev_mac {
        PACKET_OTHERHOST
    } else {
        PACKET_HOST
    };
    let proto = super::flow::be16(frame, 12).unwrap_or(0);
    let protocol = if proto >= 0x0600 {
        proto
    } else if frame.get(14..16) == Some(&[0xff, 0xff]) {
        0x0001
    } else {
        0x0004
    };
    (protocol, pkt_type)
}

/// net/core/filter.c: __bpf_redirect_common's check that a link-layer header is carried.
fn has_mac_header(skb: &SkBuff) -> bool {
    !(skb.mac_header >= skb.network_header || skb.is_empty())
}

impl Datapath {
    fn new_id(&mut self) -> PacketId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn page(&mut self) -> Box<[u8]> {
        self.pool
            .pop()
            .unwrap_or_else(|| vec![0u8; PAGE_SIZE].into_boxed_slice())
    }

    fn recycle_buf(&mut self, buf: Vec<u8>) {
        if buf.len() == PAGE_SIZE && buf.capacity() == PAGE_SIZE && self.pool.len() < 4096 {
            self.pool.push(buf.into_boxed_slice());
        }
    }

    fn recycle_page(&mut self, page: Box<[u8]>) {
        if page.len() == PAGE_SIZE && self.pool.len() < 4096 {
            self.pool.push(page);
        }
    }

    /// A frame in a pooled page at XDP_PACKET_HEADROOM; frames too large for
    /// a page get a buffer of their own.
    fn xdp_frame(&mut self, frame: &[u8], ifindex: u32) -> XdpBuff {
        let page = if XDP_PACKET_HEADROOM + frame.len() + SKB_SHARED_INFO_SIZE <= PAGE_SIZE {
            self.page()
        } else {
            vec![0u8; XDP_PACKET_HEADROOM + frame.len() + SKB_SHARED_INFO_SIZE].into_boxed_slice()
        };
        match XdpBuff::from_page(page, frame, XDP_PACKET_HEADROOM, ifindex) {
            Ok(x) => x,
            Err(_) => {
                let big = vec![0u8; XDP_PACKET_HEADROOM + frame.len() + SKB_SHARED_INFO_SIZE]
                    .into_boxed_slice();
                // Sized for the frame: cannot fail.
                XdpBuff::from_page(big, frame, XDP_PACKET_HEADROOM, ifindex).unwrap_or_else(|p| {
                    XdpBuff::from_page(p, &[], 0, ifindex).unwrap_or_else(|_| unreachable_buff())
                })
            }
        }
    }

    fn netns_of(&self, dev: DevId) -> Option<Arc<dyn crate::helpers::NetNs>> {
        let d = self.devices.get(dev.0)?;
        let n = self.namespaces.get(d.ns.0)?;
        Some(n.shared.clone() as Arc<dyn crate::helpers::NetNs>)
    }

    // ---- ends -------------------------------------------------------------

    fn record_drop(&mut self, id: PacketId, reason: DropReason, w: Where) {
        self.cons.dropped += 1;
        *self.drop_counts.entry(reason.name()).or_insert(0) += 1;
        let (iface, ifindex) = self
            .devices
            .get(w.dev.0)
            .map(|d| (d.name.clone(), d.ifindex))
            .unwrap_or_default();
        if self.drop_log.len() >= DROP_LOG {
            self.drop_log.pop_front();
        }
        self.drop_log.push_back(DropRecord {
            id,
            reason: reason.name(),
            iface: iface.clone(),
            ifindex,
            hook: w.hook.name(),
            prog: w.exc.map(|e| e.prog.clone()).or(w.prog.map(String::from)),
            insn: w.exc.map(|e| e.pc),
            error: w.exc.map(|e| e.error.to_string()),
        });
        if self.trace_on {
            let mut ev = self.event(
                id,
                w.dev,
                "kfree_skb",
                w.exc.map(|e| e.prog.clone()).or(w.prog.map(String::from)),
                reason.name().to_string(),
                None,
                0,
            );
            ev.len = 0;
            self.trace.push(ev);
        }
    }

    fn drop_skb(&mut self, pkt: Pkt, reason: DropReason, w: Where) {
        self.record_drop(pkt.id, reason, w);
        self.recycle_buf(pkt.skb.buf);
    }

    fn drop_xdp(&mut self, pkt: XPkt, reason: DropReason, w: Where) {
        self.record_drop(pkt.id, reason, w);
        self.recycle_page(pkt.xdp.buf);
    }

    fn deliver(&mut self, dev: DevId, pkt: Pkt, by: &'static str) {
        self.cons.delivered += 1;
        if by != "stack" {
            self.consumed += 1;
        }
        let ifindex = self.devices.get(dev.0).map(|d| d.ifindex).unwrap_or(0);
        let frame = take_frame(pkt.skb);
        self.delivered.push(Delivered {
            dev,
            ifindex,
            id: pkt.id,
            ts_ns: pkt.ts,
            by,
            frame,
        });
    }

    // ---- trace, counters, captures ------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        id: PacketId,
        dev: DevId,
        func: &'static str,
        prog: Option<String>,
        verdict: String,
        target: Option<String>,
        ts: u64,
    ) -> TraceEvent {
        let (iface, ifindex, ns) = self
            .devices
            .get(dev.0)
            .map(|d| (d.name.clone(), d.ifindex, self.ns_name(d.ns).to_string()))
            .unwrap_or_default();
        TraceEvent {
            skb: id,
            cpu: self.vm.env.cpu,
            iface,
            ifindex,
            netns: ns,
            func,
            prog,
            verdict,
            target,
            len: 0,
            proto: 0,
            tuple: String::new(),
            ts_ns: ts,
        }
    }

    /// Count a hook's verdict and trace it.
    #[allow(clippy::too_many_arguments)]
    fn hook_done(
        &mut self,
        dev: DevId,
        hook: Hook,
        prog: Option<&str>,
        code: i64,
        id: PacketId,
        ts: u64,
        frame: &[u8],
        target: Option<String>,
    ) {
        self.steps += 1;
        if let Some(d) = self.devices.get_mut(dev.0) {
            d.hooks.slots[hook.index()][verdict_slot(code)].add(frame.len());
        }
        if self.trace_on {
            let mut ev = self.event(
                id,
                dev,
                hook.name(),
                prog.map(String::from),
                verdict_name(hook, code).to_string(),
                target,
                ts,
            );
            ev.fill_frame(frame);
            self.trace.push(ev);
        }
        if !self.capture_on.is_empty() && self.capture_on.contains(&(dev, hook)) {
            self.capture_rec(
                dev,
                hook,
                CapturePoint::Exit,
                id,
                Some(verdict_name(hook, code).to_string()),
                ts,
                frame,
            );
        }
    }

    fn capture_entry(&mut self, dev: DevId, hook: Hook, id: PacketId, ts: u64, frame: &[u8]) {
        if !self.capture_on.is_empty() && self.capture_on.contains(&(dev, hook)) {
            self.capture_rec(dev, hook, CapturePoint::Entry, id, None, ts, frame);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn capture_rec(
        &mut self,
        dev: DevId,
        hook: Hook,
        point: CapturePoint,
        id: PacketId,
        verdict: Option<String>,
        ts: u64,
        frame: &[u8],
    ) {
        let (iface, ifindex) = self
            .devices
            .get(dev.0)
            .map(|d| (d.name.clone(), d.ifindex))
            .unwrap_or_default();
        self.captures.push(CaptureRecord {
            ifindex,
            iface,
            hook,
            point,
            id,
            verdict,
            ts_ns: ts,
            bytes: frame.to_vec(),
        });
    }

    fn target_name(&self, dev: DevId) -> String {
        self.devices
            .get(dev.0)
            .map(|d| format!("{}({})", d.name, d.ifindex))
            .unwrap_or_default()
    }

    // ---- input ------------------------------------------------------------------

    /// A frame arrives on `dev` at `ts_ns`: from the wire for a NIC (RSS picks
    /// the rx queue), else as a receive on that device (netif_rx).
    pub fn inject(
        &mut self,
        dev: DevId,
        frame: &[u8],
        ts_ns: u64,
    ) -> Result<PacketId, DatapathError> {
        let d = self.dev(dev)?;
        let (ifindex, mtu, mac, up) = (d.ifindex, d.mtu, d.mac, d.up);
        let nic_queues = match &d.driver {
            Driver::Nic { rx } => Some(rx.len() as u32),
            _ => None,
        };
        // drivers/net/veth.c: veth_xmit — a veth receives what its peer sends;
        // with an XDP program it takes it through its NAPI ring (veth_poll),
        // so the native program sees injected frames too.
        let veth_xdp = matches!(d.driver, Driver::Veth { .. }) && d.xdp_native.is_some();
        let id = self.new_id();
        self.cons.input += 1;
        self.budget_pkts += 1;
        self.now = self.now.max(ts_ns);
        if !up {
            // No carrier: nothing is received.
            if let Some(d) = self.devices.get_mut(dev.0) {
                d.stats.rx_dropped += 1;
            }
            self.record_drop(id, DropReason::DevReady, at(dev, Hook::Rx));
            return Ok(id);
        }
        match nic_queues {
            Some(n) => {
                let hash = rss::rss_hash(frame);
                let q = hash.map(|(h, _)| rss::queue_for(h, n)).unwrap_or(0);
                let mut xdp = self.xdp_frame(frame, ifindex);
                xdp.rx_queue_index = q;
                xdp.mtu = mtu;
                if let Driver::Nic { rx } = &mut self.devices[dev.0].driver {
                    if let Some(ring) = rx.get_mut(q as usize) {
                        ring.push_back(RxItem::Xdp(XPkt { id, ts: ts_ns, xdp }));
                    }
                }
            }
            // Frames injected on other devices arrive on CPU 0.
            None if veth_xdp => {
                let xdp = self.xdp_frame(frame, ifindex);
                if let Driver::Veth { ring, .. } = &mut self.devices[dev.0].driver {
                    if let Some(r) = ring.first_mut() {
                        r.push_back(RxItem::Xdp(XPkt { id, ts: ts_ns, xdp }));
                    }
                }
            }
            None => {
                let xdp = self.xdp_frame(frame, ifindex);
                let mut skb = self.skb_from_xdp(xdp, dev);
                let (p, t) = eth_type_trans(skb.data(), &mac);
                skb.protocol = p;
                skb.pkt_type = t;
                if let Some(b) = self.backlog.first_mut() {
                    b.push_back((dev, Pkt { id, ts: ts_ns, skb }));
                }
            }
        }
        Ok(id)
    }

    /// Run until every queue is empty: the CPUs in turn (0, 1, ...), each
    /// doing its NAPI polls — its NIC rx queues (q % workers == cpu), its veth
    /// rings, its CPUMAP queue, its backlog; each poll ends with xdp_do_flush,
    /// the GRO flush and the qdiscs' run (of what that CPU queued).
    pub fn run(&mut self) {
        let workers = self.opts.workers.max(1);
        loop {
            let mut progress = false;
            for cpu in 0..self.cpu_queues.len() {
                self.switch_cpu(cpu);
                for i in 0..self.devices.len() {
                    let dev = DevId(i);
                    let nq = match &self.devices[i].driver {
                        Driver::Nic { rx } => rx.len(),
                        _ => 0,
                    };
                    for q in (cpu..nq).step_by(workers) {
                        if cpu < workers && self.nic_poll(dev, q) {
                            progress = true;
                        }
                    }
                    if self.veth_poll(dev) {
                        progress = true;
                    }
                }
                if self.cpumap_run() {
                    progress = true;
                }
                if self.process_backlog() {
                    progress = true;
                }
            }
            self.switch_cpu(0);
            if !progress {
                break;
            }
            if self.steps > LOOP_STEPS_PER_PACKET * self.budget_pkts.max(1) {
                self.drain_loop();
                break;
            }
        }
        self.steps = 0;
        self.budget_pkts = 0;
    }

    /// The loop guard fired: everything queued ends SKIFF_LOOP.
    fn drain_loop(&mut self) {
        let mut skbs: Vec<(DevId, Pkt)> =
            self.backlog.iter_mut().flat_map(|q| q.drain(..)).collect();
        let mut frames: Vec<(DevId, XPkt)> = Vec::new();
        for b in std::mem::take(&mut self.bulk) {
            frames.push((b.target, b.pkt));
        }
        for q in std::mem::take(&mut self.cpu_queues).iter_mut() {
            for item in q.drain(..) {
                match item {
                    CpuItem::Xdp { from, pkt, .. } => frames.push((from, pkt)),
                    CpuItem::Skb { from, pkt } => skbs.push((from, pkt)),
                }
            }
        }
        self.cpu_queues = (0..self.opts.possible_cpus.max(1))
            .map(|_| VecDeque::new())
            .collect();
        skbs.extend(self.gro.flush());
        for i in 0..self.devices.len() {
            let dev = DevId(i);
            let d = &mut self.devices[i];
            skbs.extend(d.qdisc.drain(..).map(|p| (dev, p)));
            let items: Vec<RxItem> = match &mut d.driver {
                Driver::Nic { rx } => rx.iter_mut().flat_map(|q| q.drain(..)).collect(),
                Driver::Veth { ring, .. } => ring.iter_mut().flat_map(|q| q.drain(..)).collect(),
                _ => Vec::new(),
            };
            for it in items {
                match it {
                    RxItem::Xdp(p) => frames.push((dev, p)),
                    RxItem::Skb(p) => skbs.push((dev, p)),
                }
            }
        }
        for (dev, p) in skbs {
            self.drop_skb(p, DropReason::SkiffLoop, at(dev, Hook::Rx));
        }
        for (dev, p) in frames {
            self.drop_xdp(p, DropReason::SkiffLoop, at(dev, Hook::Rx));
        }
    }

    /// End of input: packets still waiting for a neighbour end NEIGH_FAILED.
    pub fn finish(&mut self) {
        self.run();
        let mut failed = Vec::new();
        for n in &self.namespaces {
            let mut s = n.shared.stack.write().unwrap_or_else(|e| e.into_inner());
            failed.extend(
                s.flush_unresolved()
                    .into_iter()
                    .map(|q| (n.lo, q, DropReason::NeighFailed)),
            );
        }
        for (lo, q, r) in failed {
            self.queued_dropped(lo, q, r);
        }
    }

    /// A packet the stack held for a neighbour ends: the datapath's own (tagged)
    /// packets leave in-flight; the stack's own (replies) were never seen, so
    /// they count as originated here.
    fn queued_dropped(&mut self, lo: DevId, q: QueuedPacket, r: DropReason) {
        let id = match q.tag {
            Some(t) if self.stack_queued.remove(&t) => t,
            _ => {
                self.cons.originated += 1;
                self.new_id()
            }
        };
        self.record_drop(id, r, at(lo, Hook::Stack));
    }

    fn poll_end(&mut self) {
        self.xdp_do_flush();
        self.gro_flush();
        self.qdisc_run_all();
        self.neigh_timers();
    }

    fn neigh_timers(&mut self) {
        let now = self.now;
        for i in 0..self.namespaces.len() {
            let (mut out, mut dropped) = (Vec::new(), Vec::new());
            {
                let n = &self.namespaces[i];
                let mut s = n.shared.stack.write().unwrap_or_else(|e| e.into_inner());
                s.neigh_timeout(now, &mut out, &mut dropped);
            }
            let lo = self.namespaces[i].lo;
            for (q, r) in dropped {
                self.queued_dropped(lo, q, r);
            }
            if !out.is_empty() {
                self.stack_outputs(NsId(i), out, now);
            }
        }
    }

    // ---- NAPI ---------------------------------------------------------------

    /// The driver's NAPI poll of one rx queue, up to the budget.
    fn nic_poll(&mut self, dev: DevId, q: usize) -> bool {
        let mut n = 0;
        while n < self.opts.napi_budget {
            let item = match &mut self.devices[dev.0].driver {
                Driver::Nic { rx } => rx.get_mut(q).and_then(|r| r.pop_front()),
                _ => None,
            };
            let Some(item) = item else { break };
            n += 1;
            match item {
                RxItem::Xdp(p) => self.driver_rx(dev, p),
                RxItem::Skb(p) => self.netif_receive_skb(dev, p),
            }
        }
        if n > 0 {
            self.count_polled(n);
            self.poll_end();
        }
        n > 0
    }

    /// Make `cpu` the running CPU: its VM (env.cpu = cpu) runs the programs,
    /// its backlog and veth rings take what netif_rx / veth_xmit queue.
    pub(crate) fn switch_cpu(&mut self, cpu: usize) {
        if cpu == self.cpu || cpu >= self.vms.len() {
            return;
        }
        if let Some(slot) = self.vms.get_mut(self.cpu) {
            std::mem::swap(&mut self.vm, slot);
        }
        if let Some(slot) = self.vms.get_mut(cpu) {
            std::mem::swap(&mut self.vm, slot);
        }
        self.cpu = cpu;
    }

    fn count_polled(&mut self, n: usize) {
        if let Some(c) = self.cpu_packets.get_mut(self.cpu) {
            *c += n as u64;
        }
    }

    /// netif_rx / enqueue_to_backlog: the running CPU's backlog (no RPS).
    pub(crate) fn netif_rx(&mut self, dev: DevId, pkt: Pkt) {
        let cpu = self.cpu;
        match self.backlog.get_mut(cpu) {
            Some(b) => b.push_back((dev, pkt)),
            None => self.drop_skb(pkt, DropReason::NotSpecified, at(dev, Hook::Rx)),
        }
    }

    /// veth_xmit / veth_xdp_xmit into `peer`'s ring of the running CPU
    /// (veth_select_rxq; its NAPI is scheduled on this CPU).
    fn veth_ring_push(&mut self, peer: DevId, item: RxItem) {
        let cpu = self.cpu;
        if let Some(Driver::Veth { ring, .. }) = self.devices.get_mut(peer.0).map(|d| &mut d.driver)
        {
            if let Some(r) = ring.get_mut(cpu) {
                r.push_back(item);
                return;
            }
        }
        match item {
            RxItem::Xdp(p) => self.drop_xdp(p, DropReason::NotSpecified, at(peer, Hook::Rx)),
            RxItem::Skb(p) => self.drop_skb(p, DropReason::NotSpecified, at(peer, Hook::Rx)),
        }
    }

    /// veth_poll: the frames and skbs veth_xmit / veth_xdp_xmit put in this end's ring.
    fn veth_poll(&mut self, dev: DevId) -> bool {
        let mut n = 0;
        while n < self.opts.napi_budget {
            let item = match &mut self.devices[dev.0].driver {
                Driver::Veth { ring, .. } => ring.get_mut(self.cpu).and_then(|r| r.pop_front()),
                _ => None,
            };
            let Some(item) = item else { break };
            n += 1;
            match item {
                // veth_xdp_rcv_one: a frame from ndo_xdp_xmit.
                RxItem::Xdp(p) => self.driver_rx(dev, p),
                // veth_xdp_rcv_skb: the skb's bytes run as an XDP frame.
                RxItem::Skb(p) => {
                    let ifindex = self.devices[dev.0].ifindex;
                    let mut xdp = self.xdp_frame(p.skb.data(), ifindex);
                    xdp.mtu = self.devices[dev.0].mtu;
                    let Pkt { id, ts, skb } = p;
                    self.recycle_buf(skb.buf);
                    self.driver_rx(dev, XPkt { id, ts, xdp });
                }
            }
        }
        if n > 0 {
            self.count_polled(n);
            self.poll_end();
        }
        n > 0
    }

    /// process_backlog: netif_rx'd skbs, up to the budget.
    fn process_backlog(&mut self) -> bool {
        let mut n = 0;
        while n < self.opts.napi_budget {
            let Some((dev, pkt)) = self.backlog.get_mut(self.cpu).and_then(|b| b.pop_front())
            else {
                break;
            };
            n += 1;
            self.netif_receive_skb(dev, pkt);
        }
        if n > 0 {
            self.count_polled(n);
            self.poll_end();
        }
        n > 0
    }

    // ---- native XDP ---------------------------------------------------------------

    /// A frame the driver received (NIC rx ring, veth ring): native XDP, then
    /// the sk_buff (GRO).
    fn driver_rx(&mut self, dev: DevId, mut p: XPkt) {
        let len = p.xdp.data_end - p.xdp.data;
        let (ifindex, mtu, prog) = {
            let d = &mut self.devices[dev.0];
            d.stats.rx_packets += 1;
            d.stats.rx_bytes += len as u64;
            (d.ifindex, d.mtu, d.xdp_native.clone())
        };
        let Some(prog) = prog else {
            let skb = self.skb_from_xdp(p.xdp, dev);
            return self.gro_receive(
                dev,
                Pkt {
                    id: p.id,
                    ts: p.ts,
                    skb,
                },
            );
        };
        self.capture_entry(dev, Hook::Xdp, p.id, p.ts, p.xdp.data());
        p.xdp.ingress_ifindex = ifindex;
        p.xdp.mtu = mtu;
        p.xdp.egress_ifindex = None;
        p.xdp.redirect = None;
        p.xdp.netns = self.netns_of(dev);
        let (code, exc) = run_prog(
            &mut self.vm,
            &prog,
            &mut p.xdp,
            p.ts,
            self.opts.deterministic,
            XDP_ABORTED,
        );
        p.xdp.netns = None;
        self.xdp_verdict(dev, Hook::Xdp, &prog, code, exc, p);
    }

    /// The driver's switch on an XDP verdict (e.g. mlx5e_xdp_handle).
    fn xdp_verdict(
        &mut self,
        dev: DevId,
        hook: Hook,
        prog: &Arc<Program>,
        code: i64,
        exc: Option<Exception>,
        p: XPkt,
    ) {
        let target = if self.trace_on && code == XDP_REDIRECT {
            p.xdp.redirect.as_ref().map(|r| self.redirect_desc(r))
        } else {
            None
        };
        self.hook_done(
            dev,
            hook,
            Some(&prog.name),
            code,
            p.id,
            p.ts,
            p.xdp.data(),
            target,
        );
        match code {
            XDP_PASS => {
                let skb = self.skb_from_xdp(p.xdp, dev);
                let pkt = Pkt {
                    id: p.id,
                    ts: p.ts,
                    skb,
                };
                if hook == Hook::XdpCpumap {
                    self.netif_receive_skb(dev, pkt);
                } else {
                    self.gro_receive(dev, pkt);
                }
            }
            XDP_TX => self.bulk.push(BulkItem {
                target: dev,
                pkt: p,
                devmap_prog: None,
            }),
            XDP_REDIRECT => self.xdp_do_redirect(dev, p, &prog.name),
            XDP_DROP => self.drop_xdp(
                p,
                DropReason::SkiffXdpDrop,
                Where {
                    dev,
                    hook,
                    prog: Some(&prog.name),
                    exc: None,
                },
            ),
            // XDP_ABORTED, an exception, or an unknown action (bpf_warn_invalid_xdp_action).
            _ => self.drop_xdp(
                p,
                DropReason::SkiffXdpAborted,
                Where {
                    dev,
                    hook,
                    prog: Some(&prog.name),
                    exc: exc.as_ref(),
                },
            ),
        }
    }

    fn redirect_desc(&self, r: &Redirect) -> String {
        match r {
            Redirect::Ifindex { ifindex, ingress } => format!(
                "ifindex {ifindex}{}",
                if *ingress { " ingress" } else { "" }
            ),
            Redirect::Map {
                map_id,
                map_type,
                key,
                broadcast,
                ..
            } => {
                let name = skiff_maps::Map::by_id(*map_id)
                    .map(|m| m.attr().name.clone())
                    .unwrap_or_default();
                if *broadcast {
                    format!("{map_type} {name} broadcast")
                } else {
                    format!("{map_type} {name}[{key}]")
                }
            }
            Redirect::Peer { ifindex } => format!("peer of ifindex {ifindex}"),
            Redirect::Neigh { ifindex, .. } => format!("neigh ifindex {ifindex}"),
        }
    }

    /// Read a DEVMAP/CPUMAP entry: (ifindex or qsize, program id).
    fn dev_entry(map: &skiff_maps::Map, key: u32) -> Option<(u32, u32)> {
        match map.sys_lookup(&key.to_le_bytes()) {
            Ok(MapValue::Single(v)) => {
                let a = u32::from_le_bytes(v.get(0..4)?.try_into().ok()?);
                let b = v
                    .get(4..8)
                    .and_then(|s| s.try_into().ok())
                    .map(u32::from_le_bytes)
                    .unwrap_or(0);
                Some((a, b))
            }
            _ => None,
        }
    }

    /// net/core/filter.c: xdp_do_redirect — resolve the target and queue the
    /// frame for the end of the poll (dev_xdp_enqueue, dev_map_enqueue[_multi],
    /// cpu_map_enqueue, __xsk_map_redirect).
    fn xdp_do_redirect(&mut self, dev: DevId, mut p: XPkt, prog: &str) {
        let w = |exc| Where {
            dev,
            hook: Hook::Xdp,
            prog: Some(prog),
            exc,
        };
        let ns = self.devices[dev.0].ns;
        let Some(r) = p.xdp.redirect.take() else {
            return self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None));
        };
        match r {
            Redirect::Ifindex { ifindex, .. } => match self.dev_by_ifindex(ns, ifindex) {
                Some(t) if self.xdp_ok_fwd_dev(t, p.xdp.data_end - p.xdp.data) => {
                    self.bulk.push(BulkItem {
                        target: t,
                        pkt: p,
                        devmap_prog: None,
                    })
                }
                _ => self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None)),
            },
            Redirect::Map {
                map_id,
                key,
                broadcast,
                exclude_ingress,
                ..
            } => {
                let Some(map) = skiff_maps::Map::by_id(map_id) else {
                    return self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None));
                };
                match map.attr().map_type {
                    MapType::Devmap | MapType::DevmapHash if broadcast => {
                        self.devmap_broadcast(dev, p, &map, exclude_ingress, prog)
                    }
                    MapType::Devmap | MapType::DevmapHash => {
                        let target = Self::dev_entry(&map, key)
                            .and_then(|(ifi, pid)| self.dev_by_ifindex(ns, ifi).map(|t| (t, pid)));
                        match target {
                            Some((t, pid))
                                if self.xdp_ok_fwd_dev(t, p.xdp.data_end - p.xdp.data) =>
                            {
                                let devmap_prog = if pid != 0 {
                                    self.program_by_id(pid)
                                } else {
                                    None
                                };
                                self.bulk.push(BulkItem {
                                    target: t,
                                    pkt: p,
                                    devmap_prog,
                                })
                            }
                            _ => self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None)),
                        }
                    }
                    MapType::Cpumap => match Self::dev_entry(&map, key) {
                        Some((_qsize, pid)) if (key as usize) < self.cpu_queues.len() => {
                            let prog = if pid != 0 {
                                self.program_by_id(pid)
                            } else {
                                None
                            };
                            self.cpu_queues[key as usize].push_back(CpuItem::Xdp {
                                from: dev,
                                pkt: p,
                                prog,
                            });
                        }
                        _ => self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None)),
                    },
                    MapType::Xskmap => {
                        if map.lookup(&key.to_le_bytes(), 0).is_some() {
                            let q = p.xdp.rx_queue_index;
                            self.xsk_rcv(dev, q, key, p);
                        } else {
                            self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None))
                        }
                    }
                    _ => self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None)),
                }
            }
            Redirect::Peer { .. } | Redirect::Neigh { .. } => {
                self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w(None))
            }
        }
    }

    fn xsk_rcv(&mut self, dev: DevId, q: u32, slot: u32, p: XPkt) {
        self.cons.transmitted += 1;
        let frame = p.xdp.data().to_vec();
        self.recycle_page(p.xdp.buf);
        self.xsk.entry((dev, q)).or_default().push(XskFrame {
            id: p.id,
            slot,
            ts_ns: p.ts,
            frame,
        });
    }

    /// include/linux/netdevice.h: xdp_ok_fwd_dev — up and the frame fits the MTU.
    fn xdp_ok_fwd_dev(&self, t: DevId, len: usize) -> bool {
        self.devices
            .get(t.0)
            .is_some_and(|d| d.up && len <= d.mtu as usize + ETH_HLEN)
    }

    /// kernel/bpf/devmap.c: dev_map_enqueue_multi — every entry but the
    /// excluded ingress device gets the frame: clones (new ids) for all but the
    /// last, which gets the original.
    fn devmap_broadcast(
        &mut self,
        dev: DevId,
        p: XPkt,
        map: &skiff_maps::Map,
        exclude_ingress: bool,
        prog: &str,
    ) {
        let ns = self.devices[dev.0].ns;
        let ingress_ifindex = self.devices[dev.0].ifindex;
        let len = p.xdp.data_end - p.xdp.data;
        let mut targets = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        while let Ok(k) = map.sys_get_next_key(key.as_deref()) {
            if let Some(kk) = k
                .get(0..4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
            {
                if let Some((ifi, pid)) = Self::dev_entry(map, kk) {
                    if !(exclude_ingress && ifi == ingress_ifindex) {
                        if let Some(t) = self.dev_by_ifindex(ns, ifi) {
                            if self.xdp_ok_fwd_dev(t, len) {
                                targets.push((t, pid));
                            }
                        }
                    }
                }
            }
            key = Some(k);
        }
        let Some((&last, rest)) = targets.split_last() else {
            return self.drop_xdp(
                p,
                DropReason::SkiffXdpRedirectError,
                Where {
                    dev,
                    hook: Hook::Xdp,
                    prog: Some(prog),
                    exc: None,
                },
            );
        };
        for &(t, pid) in rest {
            let id = self.new_id();
            self.cons.originated += 1;
            let ifindex = self.devices[dev.0].ifindex;
            let mut x = self.xdp_frame(p.xdp.data(), ifindex);
            x.rx_queue_index = p.xdp.rx_queue_index;
            let devmap_prog = if pid != 0 {
                self.program_by_id(pid)
            } else {
                None
            };
            self.bulk.push(BulkItem {
                target: t,
                pkt: XPkt {
                    id,
                    ts: p.ts,
                    xdp: x,
                },
                devmap_prog,
            });
        }
        let devmap_prog = if last.1 != 0 {
            self.program_by_id(last.1)
        } else {
            None
        };
        self.bulk.push(BulkItem {
            target: last.0,
            pkt: p,
            devmap_prog,
        });
    }

    /// net/core/filter.c: xdp_do_flush — the bulk queues go out: devmap entry
    /// programs (dev_map_bpf_prog_run), then each target's ndo_xdp_xmit.
    fn xdp_do_flush(&mut self) {
        while !self.bulk.is_empty() {
            let items = std::mem::take(&mut self.bulk);
            for b in items {
                self.xdp_xmit_one(b);
            }
        }
    }

    fn xdp_xmit_one(&mut self, b: BulkItem) {
        let BulkItem {
            target,
            mut pkt,
            devmap_prog,
        } = b;
        if let Some(prog) = devmap_prog {
            let t_ifindex = self.devices[target.0].ifindex;
            self.capture_entry(target, Hook::XdpDevmap, pkt.id, pkt.ts, pkt.xdp.data());
            pkt.xdp.egress_ifindex = Some(t_ifindex);
            pkt.xdp.redirect = None;
            pkt.xdp.netns = self.netns_of(target);
            let (code, exc) = run_prog(
                &mut self.vm,
                &prog,
                &mut pkt.xdp,
                pkt.ts,
                self.opts.deterministic,
                XDP_ABORTED,
            );
            pkt.xdp.netns = None;
            pkt.xdp.egress_ifindex = None;
            self.hook_done(
                target,
                Hook::XdpDevmap,
                Some(&prog.name),
                code,
                pkt.id,
                pkt.ts,
                pkt.xdp.data(),
                None,
            );
            match code {
                XDP_PASS => {}
                XDP_DROP => {
                    return self.drop_xdp(
                        pkt,
                        DropReason::SkiffXdpDrop,
                        Where {
                            dev: target,
                            hook: Hook::XdpDevmap,
                            prog: Some(&prog.name),
                            exc: None,
                        },
                    )
                }
                _ => {
                    return self.drop_xdp(
                        pkt,
                        DropReason::SkiffXdpAborted,
                        Where {
                            dev: target,
                            hook: Hook::XdpDevmap,
                            prog: Some(&prog.name),
                            exc: exc.as_ref(),
                        },
                    )
                }
            }
        }
        self.ndo_xdp_xmit(target, pkt);
    }

    /// The target driver's ndo_xdp_xmit: NIC out; veth into the peer's ring
    /// (veth_xdp_xmit, only when the peer runs XDP); others have none.
    fn ndo_xdp_xmit(&mut self, target: DevId, pkt: XPkt) {
        let len = pkt.xdp.data_end - pkt.xdp.data;
        let (up, driver_peer, is_nic) = {
            let d = &self.devices[target.0];
            let peer = match &d.driver {
                Driver::Veth { peer, .. } => Some(*peer),
                _ => None,
            };
            (d.up, peer, matches!(d.driver, Driver::Nic { .. }))
        };
        if !up {
            self.devices[target.0].stats.tx_dropped += 1;
            return self.drop_xdp(
                pkt,
                DropReason::SkiffXdpRedirectError,
                at(target, Hook::Xmit),
            );
        }
        if is_nic {
            self.hook_done(
                target,
                Hook::Xmit,
                None,
                0,
                pkt.id,
                pkt.ts,
                pkt.xdp.data(),
                None,
            );
            self.count_tx(target, len);
            // The frame's buffer leaves as it is (no copy).
            let (d, e) = (pkt.xdp.data, pkt.xdp.data_end);
            let mut frame = pkt.xdp.buf.into_vec();
            frame.truncate(e);
            frame.drain(..d);
            return self.transmit(target, pkt.id, pkt.ts, frame);
        }
        match driver_peer {
            Some(peer) => {
                let ok = {
                    let pd = &self.devices[peer.0];
                    pd.up && pd.xdp_native.is_some() && len <= pd.mtu as usize + ETH_HLEN
                };
                if !ok {
                    // veth_xdp_xmit: -ENXIO without an XDP program on the peer.
                    self.devices[target.0].stats.tx_dropped += 1;
                    return self.drop_xdp(
                        pkt,
                        DropReason::SkiffXdpRedirectError,
                        at(target, Hook::Xmit),
                    );
                }
                self.hook_done(
                    target,
                    Hook::Xmit,
                    None,
                    0,
                    pkt.id,
                    pkt.ts,
                    pkt.xdp.data(),
                    self.trace_on.then(|| self.target_name(peer)),
                );
                self.count_tx(target, len);
                let mut pkt = pkt;
                pkt.xdp.rx_queue_index = 0;
                self.veth_ring_push(peer, RxItem::Xdp(pkt));
            }
            None => {
                self.devices[target.0].stats.tx_dropped += 1;
                self.drop_xdp(
                    pkt,
                    DropReason::SkiffXdpRedirectError,
                    at(target, Hook::Xmit),
                )
            }
        }
    }

    fn transmit(&mut self, dev: DevId, id: PacketId, ts: u64, frame: Vec<u8>) {
        self.cons.transmitted += 1;
        let ifindex = self.devices[dev.0].ifindex;
        self.transmitted.push(Transmitted {
            dev,
            ifindex,
            id,
            ts_ns: ts,
            frame,
        });
    }

    /// kernel/bpf/cpumap.c: cpu_map_kthread_run — the running CPU's queue: the
    /// entry program (cpu_map_bpf_prog_run_xdp) on this CPU, then the stack.
    fn cpumap_run(&mut self) -> bool {
        let mut any = false;
        let cpu = self.cpu;
        {
            let mut n = 0;
            while let Some(item) = self.cpu_queues.get_mut(cpu).and_then(|q| q.pop_front()) {
                any = true;
                n += 1;
                self.count_polled(1);
                match item {
                    CpuItem::Xdp {
                        from,
                        mut pkt,
                        prog,
                    } => match prog {
                        Some(prog) => {
                            self.capture_entry(
                                from,
                                Hook::XdpCpumap,
                                pkt.id,
                                pkt.ts,
                                pkt.xdp.data(),
                            );
                            pkt.xdp.redirect = None;
                            pkt.xdp.netns = self.netns_of(from);
                            let (code, exc) = run_prog(
                                &mut self.vm,
                                &prog,
                                &mut pkt.xdp,
                                pkt.ts,
                                self.opts.deterministic,
                                XDP_ABORTED,
                            );
                            pkt.xdp.netns = None;
                            if code == XDP_TX {
                                // cpumap programs may not XDP_TX (bpf_warn_invalid_xdp_action).
                                self.hook_done(
                                    from,
                                    Hook::XdpCpumap,
                                    Some(&prog.name),
                                    code,
                                    pkt.id,
                                    pkt.ts,
                                    pkt.xdp.data(),
                                    None,
                                );
                                self.drop_xdp(
                                    pkt,
                                    DropReason::SkiffXdpAborted,
                                    Where {
                                        dev: from,
                                        hook: Hook::XdpCpumap,
                                        prog: Some(&prog.name),
                                        exc: None,
                                    },
                                );
                            } else {
                                self.xdp_verdict(from, Hook::XdpCpumap, &prog, code, exc, pkt);
                            }
                        }
                        None => {
                            let skb = self.skb_from_xdp(pkt.xdp, from);
                            self.netif_receive_skb(
                                from,
                                Pkt {
                                    id: pkt.id,
                                    ts: pkt.ts,
                                    skb,
                                },
                            );
                        }
                    },
                    CpuItem::Skb { from, pkt } => self.netif_receive_skb_core(from, pkt, true),
                }
                if n % self.opts.napi_budget == 0 {
                    self.poll_end();
                }
            }
            if n > 0 {
                self.poll_end();
            }
        }
        any
    }

    // ---- sk_buff --------------------------------------------------------------

    /// build_skb around the XDP frame's buffer: data at the Ethernet header,
    /// XDP metadata kept (skb_metadata_set), protocol and pkt_type from
    /// eth_type_trans, the RSS hash and rx queue (skb_record_rx_queue).
    pub(crate) fn skb_from_xdp(&mut self, xdp: XdpBuff, dev: DevId) -> SkBuff {
        let (ifindex, mtu, mac) = {
            let d = &self.devices[dev.0];
            (d.ifindex, d.mtu, d.mac)
        };
        let metalen = xdp.metalen();
        let rxq = xdp.rx_queue_index;
        let (data, end) = (xdp.data, xdp.data_end);
        let buf = xdp.buf.into_vec();
        let mut skb = SkBuff::from_buf(buf, data, end, ifindex, mtu);
        skb.meta_len = metalen;
        let (p, t) = eth_type_trans(skb.data(), &mac);
        skb.protocol = p;
        skb.pkt_type = t;
        if matches!(self.devices[dev.0].driver, Driver::Nic { .. }) {
            if let Some((h, l4)) = rss::rss_hash(skb.data()) {
                skb.hash = h;
                skb.l4_hash = l4;
            }
            skb.queue_mapping = (rxq + 1) as u16;
        }
        skb
    }

    /// __netif_receive_skb: a received skb enters the stack's receive path.
    fn netif_receive_skb(&mut self, dev: DevId, pkt: Pkt) {
        self.netif_receive_skb_core(dev, pkt, false)
    }

    /// net/core/dev.c: __netif_receive_skb_core — VLAN untag, generic XDP,
    /// tc ingress (another_round after bpf_redirect_peer), then the host stack.
    fn netif_receive_skb_core(&mut self, dev: DevId, mut pkt: Pkt, skip_generic: bool) {
        let mut dev = dev;
        let mut rounds = 0;
        loop {
            rounds += 1;
            let (ifindex, mtu) = (self.devices[dev.0].ifindex, self.devices[dev.0].mtu);
            pkt.skb.ifindex = ifindex;
            pkt.skb.ingress_ifindex = ifindex;
            pkt.skb.mtu = mtu;
            if matches!(pkt.skb.protocol, ETH_P_8021Q | ETH_P_8021AD) {
                skb_vlan_untag(&mut pkt.skb);
            }
            if !skip_generic {
                if let Some(prog) = self.devices[dev.0].xdp_generic.clone() {
                    match self.do_xdp_generic(dev, pkt, &prog) {
                        Some(p) => pkt = p,
                        None => return,
                    }
                }
            }
            match self.sch_handle_ingress(dev, pkt) {
                Ingress::Continue(p) => pkt = p,
                Ingress::Done => return,
                Ingress::Another(peer, p) => {
                    pkt = p;
                    dev = peer;
                    if rounds > XMIT_RECURSION_LIMIT {
                        return self.drop_skb(
                            pkt,
                            DropReason::RecursionLimit,
                            at(dev, Hook::TcIngress),
                        );
                    }
                    continue;
                }
            }
            return self.stack_receive(dev, pkt);
        }
    }

    /// net/core/dev.c: do_xdp_generic / netif_receive_generic_xdp — the skb's
    /// frame runs as an xdp_buff; the skb follows what the program did.
    fn do_xdp_generic(&mut self, dev: DevId, pkt: Pkt, prog: &Arc<Program>) -> Option<Pkt> {
        let Pkt { id, ts, skb } = pkt;
        let ifindex = self.devices[dev.0].ifindex;
        self.capture_entry(dev, Hook::XdpGeneric, id, ts, skb.data());
        let mut xdp = self.xdp_frame(skb.data(), ifindex);
        xdp.mtu = skb.mtu;
        xdp.rx_queue_index = (skb.queue_mapping as u32).saturating_sub(1);
        xdp.netns = self.netns_of(dev);
        let old_eth: Vec<u8> = skb
            .data()
            .get(..ETH_HLEN)
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let (code, exc) = run_prog(
            &mut self.vm,
            prog,
            &mut xdp,
            ts,
            self.opts.deterministic,
            XDP_ABORTED,
        );
        xdp.netns = None;
        let target = if self.trace_on && code == XDP_REDIRECT {
            xdp.redirect.as_ref().map(|r| self.redirect_desc(r))
        } else {
            None
        };
        self.hook_done(
            dev,
            Hook::XdpGeneric,
            Some(&prog.name),
            code,
            id,
            ts,
            xdp.data(),
            target,
        );
        // The skb takes the frame's new bounds.
        let metalen = xdp.metalen();
        let redirect = xdp.redirect.take();
        let mut nskb = {
            let (d, e) = (xdp.data, xdp.data_end);
            SkBuff::from_buf(xdp.buf.into_vec(), d, e, ifindex, skb.mtu)
        };
        copy_skb_meta(&skb, &mut nskb);
        nskb.meta_len = metalen;
        if nskb.data().get(..ETH_HLEN) != Some(&old_eth[..]) {
            let mac = self.devices[dev.0].mac;
            let (p, t) = eth_type_trans(nskb.data(), &mac);
            nskb.protocol = p;
            nskb.pkt_type = t;
        }
        self.recycle_buf(skb.buf);
        let pkt = Pkt { id, ts, skb: nskb };
        let w = |exc| Where {
            dev,
            hook: Hook::XdpGeneric,
            prog: Some(&prog.name),
            exc,
        };
        match code {
            XDP_PASS => Some(pkt),
            XDP_TX => {
                self.generic_xdp_tx(dev, pkt);
                None
            }
            XDP_REDIRECT => {
                self.xdp_do_generic_redirect(dev, pkt, redirect, &prog.name);
                None
            }
            XDP_DROP => {
                self.drop_skb(pkt, DropReason::Xdp, w(None));
                None
            }
            _ => {
                self.drop_skb(pkt, DropReason::Xdp, w(exc.as_ref()));
                None
            }
        }
    }

    /// net/core/dev.c: generic_xdp_tx — straight to the driver, no qdisc, no tc.
    fn generic_xdp_tx(&mut self, dev: DevId, pkt: Pkt) {
        self.dev_hard_start_xmit(dev, pkt);
    }

    /// net/core/filter.c: xdp_do_generic_redirect.
    fn xdp_do_generic_redirect(&mut self, dev: DevId, pkt: Pkt, r: Option<Redirect>, prog: &str) {
        let ns = self.devices[dev.0].ns;
        let w = Where {
            dev,
            hook: Hook::XdpGeneric,
            prog: Some(prog),
            exc: None,
        };
        let len = pkt.skb.len();
        let target = match r {
            Some(Redirect::Ifindex { ifindex, .. }) => self.dev_by_ifindex(ns, ifindex),
            Some(Redirect::Map {
                map_id,
                key,
                broadcast,
                exclude_ingress,
                ..
            }) => {
                let Some(map) = skiff_maps::Map::by_id(map_id) else {
                    return self.drop_skb(pkt, DropReason::Xdp, w);
                };
                match map.attr().map_type {
                    MapType::Devmap | MapType::DevmapHash if broadcast => {
                        // dev_map_redirect_multi: skb clones to every entry.
                        let ingress = self.devices[dev.0].ifindex;
                        let mut targets = Vec::new();
                        let mut k: Option<Vec<u8>> = None;
                        while let Ok(nk) = map.sys_get_next_key(k.as_deref()) {
                            if let Some(kk) = nk
                                .get(0..4)
                                .and_then(|s| s.try_into().ok())
                                .map(u32::from_le_bytes)
                            {
                                if let Some((ifi, _)) = Self::dev_entry(&map, kk) {
                                    if !(exclude_ingress && ifi == ingress) {
                                        if let Some(t) = self.dev_by_ifindex(ns, ifi) {
                                            if self.xdp_ok_fwd_dev(t, len) {
                                                targets.push(t);
                                            }
                                        }
                                    }
                                }
                            }
                            k = Some(nk);
                        }
                        let Some((&last, rest)) = targets.split_last() else {
                            return self.drop_skb(pkt, DropReason::Xdp, w);
                        };
                        for &t in rest {
                            let c = self.clone_pkt(&pkt);
                            self.generic_xdp_tx(t, c);
                        }
                        return self.generic_xdp_tx(last, pkt);
                    }
                    MapType::Devmap | MapType::DevmapHash => {
                        Self::dev_entry(&map, key).and_then(|(ifi, _)| self.dev_by_ifindex(ns, ifi))
                    }
                    MapType::Cpumap => {
                        if Self::dev_entry(&map, key).is_some()
                            && (key as usize) < self.cpu_queues.len()
                        {
                            self.cpu_queues[key as usize]
                                .push_back(CpuItem::Skb { from: dev, pkt });
                            return;
                        }
                        None
                    }
                    MapType::Xskmap => {
                        if map.lookup(&key.to_le_bytes(), 0).is_some() {
                            let q = (pkt.skb.queue_mapping as u32).saturating_sub(1);
                            self.cons.transmitted += 1;
                            let frame = pkt.skb.data().to_vec();
                            self.xsk.entry((dev, q)).or_default().push(XskFrame {
                                id: pkt.id,
                                slot: key,
                                ts_ns: pkt.ts,
                                frame,
                            });
                            self.recycle_buf(pkt.skb.buf);
                            return;
                        }
                        None
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match target {
            Some(t) if self.xdp_ok_fwd_dev(t, len) => self.generic_xdp_tx(t, pkt),
            _ => self.drop_skb(pkt, DropReason::Xdp, w),
        }
    }

    fn clone_pkt(&mut self, pkt: &Pkt) -> Pkt {
        let id = self.new_id();
        self.cons.originated += 1;
        let mut skb = SkBuff::new(
            pkt.skb.data(),
            crate::buff::NET_SKB_PAD,
            pkt.skb.ifindex,
            pkt.skb.mtu,
        );
        copy_skb_meta(&pkt.skb, &mut skb);
        skb.protocol = pkt.skb.protocol;
        skb.pkt_type = pkt.skb.pkt_type;
        Pkt {
            id,
            ts: pkt.ts,
            skb,
        }
    }

    // ---- TC ---------------------------------------------------------------------

    /// Run a hook's tcx chain then its cls_bpf filters (tcx_run, tc_run,
    /// tcf_classify in direct-action mode). Returns the final action code, the
    /// program that gave it, and an exception if one ended a run.
    fn tc_classify(
        &mut self,
        dev: DevId,
        dir: TcDirection,
        pkt: &mut Pkt,
    ) -> (i64, Option<Arc<Program>>, Option<Exception>) {
        // The hook's programs are taken out for the run (no copy per packet) and
        // put back before anything else can reach this device.
        let hook = {
            let d = &mut self.devices[dev.0];
            std::mem::take(match dir {
                TcDirection::Ingress => &mut d.tc_ingress,
                TcDirection::Egress => &mut d.tc_egress,
            })
        };
        let r = self.tc_classify_with(&hook, dir, dev, pkt);
        let d = &mut self.devices[dev.0];
        *match dir {
            TcDirection::Ingress => &mut d.tc_ingress,
            TcDirection::Egress => &mut d.tc_egress,
        } = hook;
        r
    }

    /// A TC hook as the trace and captures see it: entry capture, the
    /// classification, the hook's record (with the redirect target when
    /// tracing) and the clones bpf_clone_redirect made. Returns the action code,
    /// whether RECLASSIFY looped out, the deciding program and any exception.
    fn tc_hook(
        &mut self,
        dev: DevId,
        dir: TcDirection,
        pkt: &mut Pkt,
    ) -> (i64, bool, Option<Arc<Program>>, Option<Exception>) {
        let hook = match dir {
            TcDirection::Ingress => Hook::TcIngress,
            TcDirection::Egress => Hook::TcEgress,
        };
        self.capture_entry(dev, hook, pkt.id, pkt.ts, pkt.skb.data());
        let (code, prog, exc) = self.tc_classify(dev, dir, pkt);
        let reclassify_loop = code & RECLASSIFY_LOOP_FLAG != 0;
        let code = code & !RECLASSIFY_LOOP_FLAG;
        let target = if self.trace_on && code == TC_ACT_REDIRECT {
            pkt.skb.redirect.as_ref().map(|r| self.redirect_desc(r))
        } else {
            None
        };
        self.hook_done(
            dev,
            hook,
            prog.as_ref().map(|p| p.name.as_str()),
            code,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            target,
        );
        let clones = std::mem::take(&mut pkt.skb.clones);
        self.clone_redirects(dev, pkt, clones);
        (code, reclassify_loop, prog, exc)
    }

    fn tc_classify_with(
        &mut self,
        hook: &TcHook,
        dir: TcDirection,
        dev: DevId,
        pkt: &mut Pkt,
    ) -> (i64, Option<Arc<Program>>, Option<Exception>) {
        let tcx = &hook.tcx;
        let cls = &hook.cls;
        let det = self.opts.deterministic;
        pkt.skb.netns = self.netns_of(dev);
        pkt.skb.tc_at_ingress = dir == TcDirection::Ingress;
        let mut last_prog = None;
        let mut exc = None;
        // tcx_run: the chain until a verdict other than TCX_NEXT.
        if !tcx.is_empty() {
            let mut ret = TCX_NEXT;
            for p in tcx {
                pkt.skb.redirect = None;
                let (r, e) = run_prog(&mut self.vm, p, &mut pkt.skb, pkt.ts, det, TC_ACT_SHOT);
                last_prog = Some(p.clone());
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
                pkt.skb.netns = None;
                return (code, last_prog, exc);
            }
        }
        // tcf_classify over the cls_bpf filters by prio; RECLASSIFY restarts
        // (at most max_reclassify_loop times).
        let mut limit = 0;
        let mut ret;
        'reclassify: loop {
            ret = TC_ACT_UNSPEC;
            for f in cls {
                let (p, classid) = (&f.prog, f.classid);
                pkt.skb.redirect = None;
                let (r, e) = run_prog(&mut self.vm, p, &mut pkt.skb, pkt.ts, det, TC_ACT_SHOT);
                last_prog = Some(p.clone());
                exc = e;
                let code = cls_bpf_exec_opcode(r);
                // res->classid = TC_H_MAJ(prog->res.classid) | qdisc_skb_cb(skb)->tc_classid
                let res_classid = (classid & 0xffff_0000) | pkt.skb.tc_classid as u32;
                if code == TC_ACT_UNSPEC {
                    continue;
                }
                if code == TC_ACT_RECLASSIFY {
                    if limit >= MAX_RECLASSIFY_LOOP {
                        pkt.skb.netns = None;
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
        pkt.skb.netns = None;
        (ret, last_prog, exc)
    }

    /// net/core/dev.c: sch_handle_ingress.
    /// A frame the device sent (its `ip -s link` tx counters).
    fn count_tx(&mut self, dev: DevId, len: usize) {
        let d = &mut self.devices[dev.0];
        d.stats.tx_packets += 1;
        d.stats.tx_bytes += len as u64;
    }

    fn sch_handle_ingress(&mut self, dev: DevId, mut pkt: Pkt) -> Ingress {
        if self.devices[dev.0].tc_ingress.is_empty() {
            return Ingress::Continue(pkt);
        }
        let (code, reclassify_loop, prog, exc) = self.tc_hook(dev, TcDirection::Ingress, &mut pkt);
        let w = Where {
            dev,
            hook: Hook::TcIngress,
            prog: prog.as_ref().map(|p| p.name.as_str()),
            exc: exc.as_ref(),
        };
        match code {
            TC_ACT_REDIRECT => {
                let r = pkt.skb.redirect.take();
                match self.skb_do_redirect(
                    dev,
                    pkt,
                    r,
                    true,
                    prog.as_ref().map(|p| p.name.as_str()),
                ) {
                    Some((peer, p)) => Ingress::Another(peer, p),
                    None => Ingress::Done,
                }
            }
            TC_ACT_SHOT => {
                let reason = if reclassify_loop {
                    DropReason::TcReclassifyLoop
                } else {
                    DropReason::TcIngress
                };
                self.drop_skb(pkt, reason, w);
                Ingress::Done
            }
            TC_ACT_STOLEN | TC_ACT_QUEUED | TC_ACT_TRAP => {
                self.deliver(dev, pkt, "tc-ingress");
                Ingress::Done
            }
            _ => Ingress::Continue(pkt),
        }
    }

    /// bpf_clone_redirect's packets: each a new packet sent as __bpf_redirect.
    fn clone_redirects(&mut self, dev: DevId, pkt: &Pkt, clones: Vec<(u32, bool, Vec<u8>)>) {
        for (ifindex, ingress, frame) in clones {
            let id = self.new_id();
            self.cons.originated += 1;
            let mut skb = SkBuff::new(
                &frame,
                crate::buff::NET_SKB_PAD,
                pkt.skb.ifindex,
                pkt.skb.mtu,
            );
            copy_skb_meta(&pkt.skb, &mut skb);
            skb.protocol = pkt.skb.protocol;
            skb.pkt_type = pkt.skb.pkt_type;
            let c = Pkt {
                id,
                ts: pkt.ts,
                skb,
            };
            self.skb_do_redirect(
                dev,
                c,
                Some(Redirect::Ifindex { ifindex, ingress }),
                false,
                None,
            );
        }
    }

    /// net/core/filter.c: skb_do_redirect. Returns the peer device for a
    /// bpf_redirect_peer (the caller goes another round there).
    fn skb_do_redirect(
        &mut self,
        dev: DevId,
        mut pkt: Pkt,
        r: Option<Redirect>,
        at_ingress: bool,
        prog: Option<&str>,
    ) -> Option<(DevId, Pkt)> {
        let ns = self.devices[dev.0].ns;
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
        let Some(r) = r else {
            // TC_ACT_REDIRECT without a redirect helper: ri->tgt_index is 0.
            self.drop_skb(pkt, DropReason::NotSpecified, w);
            return None;
        };
        match r {
            Redirect::Ifindex { ifindex, ingress } => {
                let Some(t) = self.dev_by_ifindex(ns, ifindex) else {
                    self.drop_skb(pkt, DropReason::NotSpecified, w);
                    return None;
                };
                if !has_mac_header(&pkt.skb) {
                    self.drop_skb(pkt, DropReason::NotSpecified, w);
                    return None;
                }
                if ingress {
                    self.dev_forward_skb(dev, t, pkt);
                } else {
                    pkt.skb.tstamp = 0;
                    self.dev_queue_xmit(t, pkt);
                }
                None
            }
            Redirect::Peer { ifindex } => {
                let peer = self
                    .dev_by_ifindex(ns, ifindex)
                    .and_then(|t| self.devices[t.0].peer());
                let ok = at_ingress
                    && peer.is_some_and(|p| self.devices[p.0].up && self.devices[p.0].ns != ns);
                match peer {
                    Some(p) if ok => {
                        let d = &mut self.devices[p.0];
                        d.stats.rx_packets += 1;
                        d.stats.rx_bytes += pkt.skb.len() as u64;
                        skb_scrub_packet(&mut pkt.skb, false);
                        Some((p, pkt))
                    }
                    _ => {
                        self.drop_skb(pkt, DropReason::NotSpecified, w);
                        None
                    }
                }
            }
            Redirect::Neigh { ifindex, nexthop } => {
                let Some(t) = self.dev_by_ifindex(ns, ifindex) else {
                    self.drop_skb(pkt, DropReason::NotSpecified, w);
                    return None;
                };
                self.redirect_neigh(t, pkt, nexthop);
                None
            }
            Redirect::Map { .. } => {
                self.drop_skb(pkt, DropReason::NotSpecified, w);
                None
            }
        }
    }

    /// net/core/filter.c: __bpf_redirect_neigh — the target device's
    /// neighbour output (HostStack::neigh_output), then dev_queue_xmit.
    fn redirect_neigh(&mut self, t: DevId, pkt: Pkt, nexthop: Option<(u8, [u8; 16])>) {
        let ns = self.devices[t.0].ns;
        let ifindex = self.devices[t.0].ifindex;
        let nh = nexthop.and_then(|(family, a)| match family {
            2 => Some(std::net::IpAddr::from([a[0], a[1], a[2], a[3]])),
            10 => Some(std::net::IpAddr::from(a)),
            _ => None,
        });
        let Pkt { id, ts, skb } = pkt;
        let mut frame = skb.data().to_vec();
        self.recycle_buf(skb.buf);
        let mut out = Vec::new();
        let res = {
            let mut s = self.namespaces[ns.0]
                .shared
                .stack
                .write()
                .unwrap_or_else(|e| e.into_inner());
            s.neigh_output(ifindex, &mut frame, nh, id, &mut out)
        };
        match res {
            Err(reason) => self.record_drop(id, reason, at(t, Hook::TcEgress)),
            Ok(r) => {
                if r == NeighOutput::Queued {
                    self.stack_queued.insert(id);
                }
                self.stack_outputs(ns, out, ts);
            }
        }
    }

    /// net/core/dev.c: __dev_forward_skb + netif_rx (bpf_redirect with BPF_F_INGRESS).
    fn dev_forward_skb(&mut self, from: DevId, t: DevId, mut pkt: Pkt) {
        let (up, mtu, mac, tns) = {
            let d = &self.devices[t.0];
            (d.up, d.mtu, d.mac, d.ns)
        };
        // __is_skb_forwardable: up, and len <= mtu + hard_header_len + VLAN_HLEN.
        if !up || pkt.skb.len() > mtu as usize + ETH_HLEN + 4 {
            self.devices[t.0].stats.rx_dropped += 1;
            return self.drop_skb(pkt, DropReason::NotSpecified, at(t, Hook::Rx));
        }
        let xnet = self.devices[from.0].ns != tns;
        skb_scrub_packet(&mut pkt.skb, xnet);
        let (p, ty) = eth_type_trans(pkt.skb.data(), &mac);
        pkt.skb.protocol = p;
        pkt.skb.pkt_type = ty;
        pkt.skb.ifindex = self.devices[t.0].ifindex;
        let d = &mut self.devices[t.0];
        d.stats.rx_packets += 1;
        d.stats.rx_bytes += pkt.skb.len() as u64;
        self.netif_rx(t, pkt);
    }

    // ---- the host stack ----------------------------------------------------------

    /// ip_rcv and up: the namespace's HostStack decides; what it sends goes
    /// through dev_queue_xmit of its device.
    fn stack_receive(&mut self, dev: DevId, mut pkt: Pkt) {
        let (ns, ifindex) = (self.devices[dev.0].ns, self.devices[dev.0].ifindex);
        if pkt.skb.vlan_present {
            skb_vlan_push_inline(&mut pkt.skb);
        }
        let meta = RxMeta {
            mark: pkt.skb.mark,
            pkt_type: pkt.skb.pkt_type,
            now_ns: pkt.ts,
        };
        let mut out = Vec::new();
        let fate = {
            let mut s = self.namespaces[ns.0]
                .shared
                .stack
                .write()
                .unwrap_or_else(|e| e.into_inner());
            s.receive(ifindex, pkt.skb.data(), meta, pkt.id, &mut out)
        };
        let code = match &fate {
            Fate::Delivered(_) => 0,
            Fate::Forwarded => 1,
            Fate::Queued => 2,
            Fate::Dropped(_) => 3,
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
            Fate::Forwarded => self.recycle_buf(pkt.skb.buf),
            Fate::Queued => {
                self.stack_queued.insert(pkt.id);
                self.recycle_buf(pkt.skb.buf);
            }
            Fate::Dropped(r) => self.drop_skb(pkt, r, at(dev, Hook::Stack)),
        }
        self.stack_outputs(ns, out, ts);
    }

    /// What a stack sends: forwarded packets keep their id, replies, errors and
    /// solicits are new (originated); each goes to dev_queue_xmit.
    fn stack_outputs(&mut self, ns: NsId, out: Vec<StackOutput>, ts: u64) {
        for o in out {
            let id = match (o.origin, o.tag) {
                (Origin::Forwarded, Some(t)) => {
                    self.stack_queued.remove(&t);
                    t
                }
                (_, Some(t)) if self.stack_queued.remove(&t) => t,
                _ => {
                    self.cons.originated += 1;
                    self.new_id()
                }
            };
            let Some(t) = self.dev_by_ifindex(ns, o.ifindex) else {
                let lo = self.namespaces[ns.0].lo;
                self.record_drop(id, DropReason::IpOutnoroutes, at(lo, Hook::Stack));
                continue;
            };
            let mac = self.devices[t.0].mac;
            let mut skb = SkBuff::new(
                &o.frame,
                crate::buff::NET_SKB_PAD,
                o.ifindex,
                self.devices[t.0].mtu,
            );
            skb.protocol = super::flow::be16(&o.frame, 12).unwrap_or(0);
            skb.pkt_type = PACKET_HOST;
            let _ = mac;
            self.dev_queue_xmit(t, Pkt { id, ts, skb });
        }
    }

    // ---- egress ---------------------------------------------------------------------

    /// net/core/dev.c: __dev_queue_xmit — tc egress (sch_handle_egress), the
    /// qdisc (NICs), else the driver directly (noqueue devices).
    pub(crate) fn dev_queue_xmit(&mut self, dev: DevId, mut pkt: Pkt) {
        if self.xmit_depth >= XMIT_RECURSION_LIMIT {
            self.devices[dev.0].stats.tx_dropped += 1;
            return self.drop_skb(pkt, DropReason::RecursionLimit, at(dev, Hook::Xmit));
        }
        if !self.devices[dev.0].up {
            self.devices[dev.0].stats.tx_dropped += 1;
            return self.drop_skb(pkt, DropReason::DevReady, at(dev, Hook::Xmit));
        }
        self.xmit_depth += 1;
        pkt.skb.ifindex = self.devices[dev.0].ifindex;
        pkt.skb.mtu = self.devices[dev.0].mtu;
        if !self.devices[dev.0].tc_egress.is_empty() {
            let (code, reclassify_loop, prog, exc) =
                self.tc_hook(dev, TcDirection::Egress, &mut pkt);
            match code {
                TC_ACT_REDIRECT => {
                    let r = pkt.skb.redirect.take();
                    self.skb_do_redirect(
                        dev,
                        pkt,
                        r,
                        false,
                        prog.as_ref().map(|p| p.name.as_str()),
                    );
                    self.xmit_depth -= 1;
                    return;
                }
                TC_ACT_SHOT => {
                    let reason = if reclassify_loop {
                        DropReason::TcReclassifyLoop
                    } else {
                        DropReason::TcEgress
                    };
                    self.drop_skb(
                        pkt,
                        reason,
                        Where {
                            dev,
                            hook: Hook::TcEgress,
                            prog: prog.as_ref().map(|p| p.name.as_str()),
                            exc: exc.as_ref(),
                        },
                    );
                    self.xmit_depth -= 1;
                    return;
                }
                TC_ACT_STOLEN | TC_ACT_QUEUED | TC_ACT_TRAP => {
                    self.deliver(dev, pkt, "tc-egress");
                    self.xmit_depth -= 1;
                    return;
                }
                _ => {}
            }
        }
        if self.devices[dev.0].has_qdisc() {
            let d = &mut self.devices[dev.0];
            if d.qdisc.len() >= d.txqueuelen as usize {
                d.stats.tx_dropped += 1;
                self.drop_skb(pkt, DropReason::QdiscDrop, at(dev, Hook::Xmit));
            } else {
                d.qdisc.push_back(pkt);
            }
        } else {
            self.dev_hard_start_xmit(dev, pkt);
        }
        self.xmit_depth -= 1;
    }

    /// net_tx_action / __qdisc_run: every qdisc drains to its driver.
    fn qdisc_run_all(&mut self) {
        for i in 0..self.devices.len() {
            while let Some(p) = self.devices[i].qdisc.pop_front() {
                self.dev_hard_start_xmit(DevId(i), p);
            }
        }
    }

    /// The driver's ndo_start_xmit.
    fn dev_hard_start_xmit(&mut self, dev: DevId, mut pkt: Pkt) {
        if pkt.skb.vlan_present {
            skb_vlan_push_inline(&mut pkt.skb);
        }
        let kind = match &self.devices[dev.0].driver {
            Driver::Nic { .. } => 0,
            Driver::Veth { .. } => 1,
            Driver::Netkit { .. } => 2,
            Driver::Loopback => 3,
        };
        match kind {
            0 => {
                self.hook_done(
                    dev,
                    Hook::Xmit,
                    None,
                    0,
                    pkt.id,
                    pkt.ts,
                    pkt.skb.data(),
                    None,
                );
                let segs = if pkt.skb.gso_segs > 1 {
                    super::gro::gso_segment(&pkt.skb)
                } else {
                    None
                };
                match segs {
                    Some(segs) => {
                        let Pkt { id, ts, skb } = pkt;
                        self.recycle_buf(skb.buf);
                        for (i, s) in segs.into_iter().enumerate() {
                            let sid = if i == 0 {
                                id
                            } else {
                                self.cons.originated += 1;
                                self.new_id()
                            };
                            self.count_tx(dev, s.len());
                            self.transmit(dev, sid, ts, s);
                        }
                    }
                    None => {
                        self.count_tx(dev, pkt.skb.len());
                        let frame = take_frame(pkt.skb);
                        self.transmit(dev, pkt.id, pkt.ts, frame);
                    }
                }
            }
            1 => self.veth_xmit(dev, pkt),
            2 => self.netkit_xmit(dev, pkt),
            _ => {
                // loopback_xmit: back in through netif_rx on lo.
                self.hook_done(
                    dev,
                    Hook::Xmit,
                    None,
                    0,
                    pkt.id,
                    pkt.ts,
                    pkt.skb.data(),
                    None,
                );
                let d = &mut self.devices[dev.0];
                let len = pkt.skb.len() as u64;
                d.stats.tx_packets += 1;
                d.stats.tx_bytes += len;
                d.stats.rx_packets += 1;
                d.stats.rx_bytes += len;
                let mac = d.mac;
                let (p, t) = eth_type_trans(pkt.skb.data(), &mac);
                pkt.skb.protocol = p;
                pkt.skb.pkt_type = t;
                self.netif_rx(dev, pkt);
            }
        }
    }

    /// drivers/net/veth.c: veth_xmit — the peer receives it (__dev_forward_skb:
    /// scrub, eth_type_trans), in its NAPI ring when it runs XDP, else netif_rx.
    fn veth_xmit(&mut self, dev: DevId, mut pkt: Pkt) {
        let Some(peer) = self.devices[dev.0].peer() else {
            return self.drop_skb(pkt, DropReason::NotSpecified, at(dev, Hook::Xmit));
        };
        let (pup, pmtu, pmac, pns, pxdp, pifindex) = {
            let p = &self.devices[peer.0];
            (p.up, p.mtu, p.mac, p.ns, p.xdp_native.is_some(), p.ifindex)
        };
        let len = pkt.skb.len();
        if !pup || len > pmtu as usize + ETH_HLEN + 4 {
            self.devices[dev.0].stats.tx_dropped += 1;
            return self.drop_skb(pkt, DropReason::NotSpecified, at(dev, Hook::Xmit));
        }
        self.hook_done(
            dev,
            Hook::Xmit,
            None,
            0,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            self.trace_on.then(|| self.target_name(peer)),
        );
        self.count_tx(dev, len);
        let xnet = self.devices[dev.0].ns != pns;
        skb_scrub_packet(&mut pkt.skb, xnet);
        let (p, t) = eth_type_trans(pkt.skb.data(), &pmac);
        pkt.skb.protocol = p;
        pkt.skb.pkt_type = t;
        pkt.skb.ifindex = pifindex;
        if pxdp {
            // Counted as received when veth_poll takes it.
            self.veth_ring_push(peer, RxItem::Skb(pkt));
        } else {
            let d = &mut self.devices[peer.0];
            d.stats.rx_packets += 1;
            d.stats.rx_bytes += len as u64;
            self.netif_rx(peer, pkt);
        }
    }

    /// drivers/net/netkit.c: netkit_xmit — the sending device's program chain
    /// from its default policy, with skb->dev already the peer.
    fn netkit_xmit(&mut self, dev: DevId, mut pkt: Pkt) {
        let (peer, policy, scrub) = match &self.devices[dev.0].driver {
            Driver::Netkit {
                peer,
                policy,
                scrub,
                ..
            } => (*peer, *policy, *scrub),
            _ => return self.drop_skb(pkt, DropReason::NotSpecified, at(dev, Hook::Netkit)),
        };
        let len = pkt.skb.len();
        let (pup, pmac, pns, pifindex, pmtu) = {
            let p = &self.devices[peer.0];
            (p.up, p.mac, p.ns, p.ifindex, p.mtu)
        };
        if !pup || len < ETH_HLEN {
            self.devices[dev.0].stats.tx_dropped += 1;
            return self.drop_skb(pkt, DropReason::NotSpecified, at(dev, Hook::Netkit));
        }
        // netkit_prep_forward
        let xnet = self.devices[dev.0].ns != pns;
        skb_scrub_packet(&mut pkt.skb, false);
        if xnet {
            pkt.skb.tstamp = 0;
            if scrub == NetkitScrub::Default {
                pkt.skb.priority = 0;
                pkt.skb.mark = 0;
            }
        }
        // eth_skb_pkt_type(skb, peer)
        let (_, t) = eth_type_trans(pkt.skb.data(), &pmac);
        pkt.skb.pkt_type = t;
        pkt.skb.ifindex = pifindex;
        pkt.skb.mtu = pmtu;
        pkt.skb.tc_at_ingress = false;
        let mut ret = match policy {
            NetkitPolicy::Pass => NETKIT_PASS,
            NetkitPolicy::Drop => NETKIT_DROP,
        };
        let mut last_prog: Option<Arc<Program>> = None;
        let mut exc = None;
        // Taken out for the run (no copy per packet), put back right after.
        let progs = match &mut self.devices[dev.0].driver {
            Driver::Netkit { progs, .. } => std::mem::take(progs),
            _ => Vec::new(),
        };
        if !progs.is_empty() {
            self.capture_entry(dev, Hook::Netkit, pkt.id, pkt.ts, pkt.skb.data());
            pkt.skb.netns = self.netns_of(peer);
            for p in &progs {
                pkt.skb.redirect = None;
                let (r, e) = run_prog(
                    &mut self.vm,
                    p,
                    &mut pkt.skb,
                    pkt.ts,
                    self.opts.deterministic,
                    TC_ACT_SHOT,
                );
                last_prog = Some(p.clone());
                exc = e;
                ret = r;
                if ret != NETKIT_NEXT {
                    break;
                }
            }
            pkt.skb.netns = None;
        }
        if let Driver::Netkit { progs: p, .. } = &mut self.devices[dev.0].driver {
            *p = progs;
        }
        let target = if !self.trace_on {
            None
        } else if ret == NETKIT_REDIRECT {
            pkt.skb.redirect.as_ref().map(|r| self.redirect_desc(r))
        } else if matches!(ret, NETKIT_NEXT | NETKIT_PASS) {
            self.trace_on.then(|| self.target_name(peer))
        } else {
            None
        };
        self.hook_done(
            dev,
            Hook::Netkit,
            last_prog.as_ref().map(|p| p.name.as_str()),
            ret,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            target,
        );
        let clones = std::mem::take(&mut pkt.skb.clones);
        self.clone_redirects(peer, &pkt, clones);
        match ret {
            NETKIT_NEXT | NETKIT_PASS => {
                self.count_tx(dev, len);
                let p = &mut self.devices[peer.0];
                p.stats.rx_packets += 1;
                p.stats.rx_bytes += len as u64;
                // The protocol the sender set stays (no eth_type_trans on this path).
                self.netif_rx(peer, pkt);
            }
            NETKIT_REDIRECT => {
                self.count_tx(dev, len);
                let r = pkt.skb.redirect.take();
                // skb->dev is the peer: ifindexes resolve in the peer's namespace.
                self.skb_do_redirect(
                    peer,
                    pkt,
                    r,
                    false,
                    last_prog.as_ref().map(|p| p.name.as_str()),
                );
            }
            _ => {
                self.devices[dev.0].stats.tx_dropped += 1;
                self.drop_skb(
                    pkt,
                    DropReason::NotSpecified,
                    Where {
                        dev,
                        hook: Hook::Netkit,
                        prog: last_prog.as_ref().map(|p| p.name.as_str()),
                        exc: exc.as_ref(),
                    },
                );
            }
        }
    }

    // ---- GRO ------------------------------------------------------------------------

    fn gro_receive(&mut self, dev: DevId, pkt: Pkt) {
        if !self.opts.gro {
            return self.netif_receive_skb(dev, pkt);
        }
        match self.gro.receive(dev, pkt) {
            gro::GroResult::Pass(p) => self.netif_receive_skb(dev, p),
            gro::GroResult::Held => {}
            gro::GroResult::Merged {
                into,
                merged,
                flush,
            } => {
                self.cons.delivered += 1;
                self.consumed += 1;
                if self.trace_on {
                    let ev = self.event(
                        merged.id,
                        dev,
                        "gro",
                        None,
                        format!("merged into #{into}"),
                        None,
                        merged.ts,
                    );
                    self.trace.push(ev);
                }
                self.recycle_buf(merged.skb.buf);
                if let Some(p) = flush {
                    self.netif_receive_skb(dev, p);
                }
            }
        }
    }

    fn gro_flush(&mut self) {
        for (dev, p) in self.gro.flush() {
            self.netif_receive_skb(dev, p);
        }
    }
}

const RECLASSIFY_LOOP_FLAG: i64 = 1 << 40;

pub(crate) enum Ingress {
    Continue(Pkt),
    Done,
    Another(DevId, Pkt),
}

/// The skb's bytes as a Vec without copying (the buffer moves out).
fn take_frame(skb: SkBuff) -> Vec<u8> {
    let (d, t) = (skb.data, skb.tail);
    let mut v = skb.buf;
    v.truncate(t);
    v.drain(..d);
    v
}

fn unreachable_buff() -> XdpBuff {
    XdpBuff {
        buf: vec![0u8; PAGE_SIZE].into_boxed_slice(),
        data_meta: XDP_PACKET_HEADROOM,
        data: XDP_PACKET_HEADROOM,
        data_end: XDP_PACKET_HEADROOM,
        meta_valid: true,
        ingress_ifindex: 0,
        rx_queue_index: 0,
        egress_ifindex: None,
        mtu: 1500,
        redirect: None,
        netns: None,
    }
}

/// The sk_buff fields that survive a rebuilt buffer.
fn copy_skb_meta(from: &SkBuff, to: &mut SkBuff) {
    to.protocol = from.protocol;
    to.pkt_type = from.pkt_type;
    to.mark = from.mark;
    to.priority = from.priority;
    to.queue_mapping = from.queue_mapping;
    to.vlan_proto = from.vlan_proto;
    to.vlan_tci = from.vlan_tci;
    to.vlan_present = from.vlan_present;
    to.hash = from.hash;
    to.l4_hash = from.l4_hash;
    to.sw_hash = from.sw_hash;
    to.tc_index = from.tc_index;
    to.tstamp = from.tstamp;
    to.ingress_ifindex = from.ingress_ifindex;
}

/// net/core/skbuff.c: skb_scrub_packet.
fn skb_scrub_packet(skb: &mut SkBuff, xnet: bool) {
    skb.pkt_type = PACKET_HOST;
    skb.ingress_ifindex = 0;
    if xnet {
        skb.mark = 0;
        skb.tstamp = 0;
    }
}

/// net/core/skbuff.c: skb_vlan_untag — the outer tag moves to skb->vlan_*.
fn skb_vlan_untag(skb: &mut SkBuff) {
    if skb.vlan_present || skb.len() < ETH_HLEN + 4 {
        return;
    }
    let d = skb.data;
    let Some(tci) = super::flow::be16(&skb.buf, d + 14) else {
        return;
    };
    let Some(inner) = super::flow::be16(&skb.buf, d + 16) else {
        return;
    };
    skb.vlan_proto = skb.protocol;
    skb.vlan_tci = tci;
    skb.vlan_present = true;
    skb.buf.copy_within(d..d + 12, d + 4);
    skb.data += 4;
    skb.mac_header = skb.data;
    skb.network_header = skb.data + ETH_HLEN;
    skb.protocol = inner;
}

/// __vlan_hwaccel_push_inside: the offloaded tag goes back into the frame.
fn skb_vlan_push_inline(skb: &mut SkBuff) {
    if !skb.vlan_present || skb.len() < 12 {
        return;
    }
    if skb.data < 4 {
        skb.expand_head(64, 0);
    }
    let d = skb.data;
    skb.buf.copy_within(d..d + 12, d - 4);
    skb.data -= 4;
    let d = skb.data;
    let proto = skb.vlan_proto.to_be_bytes();
    let tci = skb.vlan_tci.to_be_bytes();
    skb.buf[d + 12..d + 14].copy_from_slice(&proto);
    skb.buf[d + 14..d + 16].copy_from_slice(&tci);
    skb.mac_header = skb.data;
    skb.vlan_present = false;
    skb.vlan_tci = 0;
    skb.vlan_proto = 0;
}
