//! Receive: frames arriving on a device (`inject`), and the NAPI polls that
//! take them — each NIC rx queue by its CPU, each veth ring by the CPU that
//! filled it, the CPUMAP queues, the backlog (process_backlog) — up to the
//! budget, each poll ending with xdp_do_flush, the GRO flush and the qdiscs'
//! run (net_rx_action / net_tx_action). `run` drives the CPUs: in turn on
//! this thread, or on OS threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::cpu::{at, Cpu, CpuState, Records};
use super::skb::eth_type_trans;
use super::*;
use crate::drivers::{rss, Napi};
use crate::drop::DropReason;
use crate::stack::QueuedPacket;

impl Datapath {
    pub(super) fn cpu_ctx(&mut self, cpu: usize) -> Cpu<'_> {
        Cpu {
            sh: &self.sh,
            st: &mut self.cpus[cpu],
            rec: &mut self.rec,
        }
    }

    /// A frame arrives on `dev` at `ts_ns`: from the wire for a NIC (RSS picks
    /// the rx queue, whose CPU's page pool gives the buffer), else as a
    /// receive on that device (netif_rx on CPU 0; a veth with native XDP
    /// takes it through its NAPI ring, as from its peer's veth_xmit).
    pub fn inject(
        &mut self,
        dev: DevId,
        frame: &[u8],
        ts_ns: u64,
    ) -> Result<PacketId, DatapathError> {
        let napi = self.dev(dev)?.ops.features().napi;
        let workers = self.sh.opts.workers.max(1);
        self.qdisc_watchdogs(ts_ns);
        self.now = self.now.max(ts_ns);
        let (cpu, q, hash) = match napi {
            Napi::Queues(n) => {
                let (q, hash) = rss_queue(frame, n);
                (q % workers, q, hash)
            }
            _ => (0, 0, None),
        };
        self.cpu_ctx(cpu).receive(dev, frame, ts_ns, q, hash)
    }

    /// `dev` sends a frame at `ts_ns` as its namespace's stack would (an
    /// AF_PACKET socket's packet_snd: dev_queue_xmit on CPU 0, so through
    /// the device's tc egress, its qdisc and its xmit).
    pub fn send(
        &mut self,
        dev: DevId,
        frame: &[u8],
        ts_ns: u64,
    ) -> Result<PacketId, DatapathError> {
        self.dev(dev)?;
        if frame.len() < crate::buff::ETH_HLEN {
            return Err(errno(
                EINVAL,
                format!(
                    "a frame of {} bytes: shorter than an Ethernet header",
                    frame.len()
                ),
            ));
        }
        self.qdisc_watchdogs(ts_ns);
        self.now = self.now.max(ts_ns);
        Ok(self.cpu_ctx(0).send(dev, frame, ts_ns))
    }

    /// With threads: NIC `dev` receives `frames` (frame, timestamp) while the
    /// workers run, each worker taking the frames of its own rx queues (as
    /// the NIC fills each queue's ring without the CPUs: hashing and the
    /// buffer copy are the worker's own work, in parallel), polling as they
    /// come; then `run` until every queue is empty. Without threads, or on a
    /// device without rx queues, the frames are injected in order with a
    /// `run` per `run_batch`.
    pub fn receive_parallel(
        &mut self,
        dev: DevId,
        frames: &[(&[u8], u64)],
    ) -> Result<(), DatapathError> {
        let napi = self.dev(dev)?.ops.features().napi;
        let parallel = self.sh.opts.threads && self.sh.opts.workers > 1;
        let Napi::Queues(nq) = napi else {
            return self.receive_in_turn(dev, frames);
        };
        if !parallel {
            return self.receive_in_turn(dev, frames);
        }
        if let Some(ts) = frames.iter().map(|f| f.1).max() {
            self.now = self.now.max(ts);
        }
        let now = self.now;
        for c in &mut self.cpus {
            c.now = now;
        }
        self.run_threads(Some(Input { dev, nq, frames }));
        for c in &mut self.cpus {
            c.steps = 0;
            c.budget_pkts = 0;
        }
        Ok(())
    }

    fn receive_in_turn(
        &mut self,
        dev: DevId,
        frames: &[(&[u8], u64)],
    ) -> Result<(), DatapathError> {
        for chunk in frames.chunks(self.run_batch()) {
            for (f, ts) in chunk {
                self.inject(dev, f, *ts)?;
            }
            self.run();
        }
        Ok(())
    }

    /// Run until every queue is empty: the CPUs in turn (0, 1, ...), each
    /// doing its NAPI polls — its NIC rx queues (q % workers == cpu), its veth
    /// rings, its CPUMAP queue, its backlog; each poll ends with xdp_do_flush,
    /// the GRO flush and the qdiscs' run (of what that CPU queued). With
    /// `threads`, each worker on its own OS thread.
    pub fn run(&mut self) {
        let now = self.now;
        for c in &mut self.cpus {
            c.now = now;
        }
        if self.sh.opts.threads && self.sh.opts.workers > 1 {
            self.run_threads(None);
        } else {
            self.run_in_turn();
        }
        for c in &mut self.cpus {
            c.steps = 0;
            c.budget_pkts = 0;
        }
    }

    fn run_in_turn(&mut self) {
        let workers = self.sh.opts.workers.max(1);
        let budget: u64 = self.cpus.iter().map(|c| c.budget_pkts).sum();
        loop {
            let mut progress = false;
            for cpu in 0..self.cpus.len() {
                progress |= self.cpu_ctx(cpu).poll_measured(workers);
            }
            if !progress {
                break;
            }
            let steps: u64 = self.cpus.iter().map(|c| c.steps).sum();
            if steps > LOOP_STEPS_PER_PACKET * budget.max(1) {
                for cpu in 0..self.cpus.len() {
                    self.cpu_ctx(cpu).drain_loop(cpu == 0);
                }
                break;
            }
        }
    }

    /// The workers on OS threads: thread t runs the CPUs c with c % workers
    /// == t. Each polls until its queues are empty, then all meet at a
    /// barrier; they stop when a round passed in which none did any work
    /// (what one CPU sends another, a CPUMAP redirect, is seen next round).
    fn run_threads(&mut self, input: Option<Input>) {
        let workers = self.sh.opts.workers;
        let budget: u64 = self.cpus.iter().map(|c| c.budget_pkts).sum();
        let base = self.rec.next_id;
        let barrier = RoundBarrier::new(workers);
        let mut groups: Vec<Vec<&mut CpuState>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, st) in self.cpus.iter_mut().enumerate() {
            groups[i % workers].push(st);
        }
        let sh = &self.sh;
        let mut first = groups.remove(0);
        let recs: Vec<Records> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .into_iter()
                .enumerate()
                .map(|(t, mut group)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let mut rec = Records::new(base + t as u64 + 1, workers as u64);
                        if let Some(i) = input {
                            receive_share(sh, &mut group, &mut rec, i, t + 1);
                        }
                        thread_loop(sh, &mut group, &mut rec, barrier, budget);
                        rec
                    })
                })
                .collect();
            // The calling thread is worker 0.
            let mut rec = Records::new(base, workers as u64);
            if let Some(i) = input {
                receive_share(sh, &mut first, &mut rec, i, 0);
            }
            thread_loop(sh, &mut first, &mut rec, &barrier, budget);
            let mut recs = vec![rec];
            recs.extend(handles.into_iter().filter_map(|h| h.join().ok()));
            recs
        });
        let mut next = base;
        for r in recs {
            next = next.max(r.next_id);
            self.rec.absorb(r);
        }
        // The next id after every thread's last (ids stay unique).
        self.rec.next_id = next;
    }

    /// End of input: packets still waiting for a neighbour end NEIGH_FAILED.
    pub fn finish(&mut self) {
        self.run();
        // What the shapers may send by the last packet's time goes; the
        // rest stays queued (their backlog), as the kernel would hold it.
        self.qdisc_watchdogs(self.now);
        let mut failed = Vec::new();
        for n in &self.sh.namespaces {
            let mut s = n.shared.stack_write();
            failed.extend(s.flush_unresolved().into_iter().map(|q| (n.lo, q)));
        }
        let mut c = self.cpu_ctx(0);
        for (lo, q) in failed {
            c.queued_dropped(lo, q, DropReason::NeighFailed);
        }
    }
}

/// Where the worker threads meet after each round: a spinning barrier (the
/// threads are busy polling, as NAPI is; a futex sleep per round would cost
/// more than the round) that also tells whether any of them did work.
struct RoundBarrier {
    n: usize,
    arrived: AtomicUsize,
    work: AtomicBool,
    round: AtomicUsize,
    any: AtomicBool,
}

impl RoundBarrier {
    fn new(n: usize) -> RoundBarrier {
        RoundBarrier {
            n,
            arrived: AtomicUsize::new(0),
            work: AtomicBool::new(false),
            round: AtomicUsize::new(0),
            any: AtomicBool::new(false),
        }
    }

    /// Wait for every thread; true when any of them did work this round.
    fn wait(&self, worked: bool) -> bool {
        if worked {
            self.work.store(true, Ordering::Release);
        }
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            // The last to arrive closes the round. Nobody starts the next
            // round (and writes `work` or `any` again) before `round` moves.
            let any = self.work.swap(false, Ordering::AcqRel);
            self.any.store(any, Ordering::Release);
            self.arrived.store(0, Ordering::Release);
            self.round.store(round + 1, Ordering::Release);
            return any;
        }
        let mut spins = 0u32;
        while self.round.load(Ordering::Acquire) == round {
            spins = spins.saturating_add(1);
            if spins < 4096 {
                std::hint::spin_loop();
            } else {
                // More threads than free CPUs: let the others run.
                std::thread::yield_now();
            }
        }
        self.any.load(Ordering::Acquire)
    }
}

/// The rx queue and RSS hash of a frame on a NIC with `nq` queues.
fn rss_queue(frame: &[u8], nq: usize) -> (usize, Option<(u32, bool)>) {
    // The NIC hashes the wire frame once; the skb keeps it.
    let hash = rss::rss_hash(frame);
    let q = hash.map(|(h, _)| rss::queue_for(h, nq as u32)).unwrap_or(0) as usize;
    (q, hash)
}

/// Frames a NIC receives during a threaded run (`receive_parallel`).
#[derive(Clone, Copy)]
struct Input<'a> {
    dev: DevId,
    nq: usize,
    frames: &'a [(&'a [u8], u64)],
}

/// Worker `t`'s part of an `Input`: the frames of its rx queues, a NAPI
/// poll's worth at a time, each followed by a round of its polls.
fn receive_share(sh: &Shared, group: &mut [&mut CpuState], rec: &mut Records, i: Input, t: usize) {
    let workers = sh.opts.workers;
    let mut n = 0;
    for (f, ts) in i.frames {
        let (q, hash) = rss_queue(f, i.nq);
        if q % workers != t {
            continue;
        }
        let Some(st) = group.iter_mut().find(|s| s.cpu == q % workers) else {
            continue;
        };
        // Inject errors are device lookups: the device exists here.
        let _ = Cpu { sh, st, rec }.receive(i.dev, f, *ts, q, hash);
        n += 1;
        if n % NAPI_POLL_WEIGHT == 0 {
            for st in group.iter_mut() {
                Cpu { sh, st, rec }.poll_measured(workers);
            }
        }
    }
}

/// One thread's part of a threaded run (see `run_threads`).
fn thread_loop(
    sh: &Shared,
    group: &mut [&mut CpuState],
    rec: &mut Records,
    barrier: &RoundBarrier,
    budget: u64,
) {
    let workers = sh.opts.workers;
    loop {
        let mut worked = false;
        loop {
            let mut progress = false;
            for st in group.iter_mut() {
                progress |= Cpu { sh, st, rec }.poll_measured(workers);
            }
            if !progress {
                break;
            }
            worked = true;
            let steps: u64 = group.iter().map(|c| c.steps).sum();
            if steps > LOOP_STEPS_PER_PACKET * budget.max(1) {
                for st in group.iter_mut() {
                    let cpu = st.cpu;
                    Cpu { sh, st, rec }.drain_loop(cpu == 0);
                }
                break;
            }
        }
        if !barrier.wait(worked) {
            return;
        }
    }
}
impl Cpu<'_> {
    /// A frame arrives on `dev` (rx queue `q`, RSS `hash` for a NIC), this
    /// CPU's pool giving its buffer: into the device's ring (NIC, veth with
    /// XDP) or, for other devices, netif_rx.
    pub(crate) fn receive(
        &mut self,
        dev: DevId,
        frame: &[u8],
        ts_ns: u64,
        q: usize,
        hash: Option<(u32, bool)>,
    ) -> Result<PacketId, DatapathError> {
        let d = self.dev(dev);
        let napi = d.ops.features().napi;
        let veth_xdp = napi == Napi::PerCpu && d.xdp_native.is_some();
        let id = self.new_id();
        self.st.cnt.cons.input += 1;
        self.st.budget_pkts += 1;
        if !d.up {
            // No carrier: nothing is received.
            self.stats(dev).rx_dropped += 1;
            self.record_drop(id, DropReason::DevReady, at(dev, Hook::Rx));
            return Ok(id);
        }
        let mut xdp = self.xdp_frame(frame, d.ifindex);
        let item = match napi {
            Napi::Queues(_) => {
                xdp.rx_queue_index = q as u32;
                xdp.mtu = d.mtu;
                xdp.rx_hash = hash;
                RxItem::Xdp(XPkt { id, ts: ts_ns, xdp })
            }
            _ if veth_xdp => RxItem::Xdp(XPkt { id, ts: ts_ns, xdp }),
            _ => {
                let mut skb = self.skb_from_xdp(xdp, dev);
                let (p, t) = eth_type_trans(skb.data(), &d.mac);
                skb.protocol = p;
                skb.pkt_type = t;
                self.netif_rx(dev, Pkt { id, ts: ts_ns, skb });
                return Ok(id);
            }
        };
        if let Err(item) = d.ops.rx_enqueue(q, item) {
            // The ring is full: the NIC misses it (rx_missed_errors).
            self.stats(dev).rx_dropped += 1;
            self.drop_item(item, DropReason::FullRing, at(dev, Hook::Rx));
        }
        Ok(id)
    }

    /// packet_snd: an skb of `frame` leaves through dev_queue_xmit, its
    /// protocol the frame's EtherType (dev_parse_header_protocol), with none
    /// of a received skb's queue, hash or pkt_type.
    pub(crate) fn send(&mut self, dev: DevId, frame: &[u8], ts_ns: u64) -> PacketId {
        let id = self.new_id();
        self.st.cnt.cons.input += 1;
        self.st.budget_pkts += 1;
        let xdp = self.xdp_frame(frame, self.dev(dev).ifindex);
        let mut skb = self.skb_from_xdp(xdp, dev);
        skb.pkt_type = crate::stack::PACKET_HOST;
        skb.queue_mapping = 0;
        skb.hash = 0;
        skb.l4_hash = false;
        self.dev_queue_xmit(dev, Pkt { id, ts: ts_ns, skb });
        id
    }

    /// `poll_once`, its time added to the CPU's busy time when it took
    /// something and `Datapath::set_measure_busy` asked for it.
    pub(crate) fn poll_measured(&mut self, workers: usize) -> bool {
        if !self.sh.measure_busy {
            return self.poll_once(workers);
        }
        let start = std::time::Instant::now();
        let worked = self.poll_once(workers);
        if worked {
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.st.cnt.busy_ns = self.st.cnt.busy_ns.saturating_add(ns);
        }
        worked
    }

    /// One round of this CPU's polls. Returns whether it took anything.
    pub(crate) fn poll_once(&mut self, workers: usize) -> bool {
        let cpu = self.st.cpu;
        let mut progress = false;
        for i in 0..self.sh.devices.len() {
            let dev = DevId(i);
            match self.dev(dev).ops.features().napi {
                Napi::Queues(nq) if cpu < workers => {
                    for q in (cpu..nq).step_by(workers) {
                        progress |= self.napi_poll(dev, q, false);
                    }
                }
                Napi::PerCpu => progress |= self.napi_poll(dev, cpu, true),
                _ => {}
            }
        }
        progress |= self.cpumap_run();
        progress |= self.process_backlog();
        progress
    }

    /// A driver's NAPI poll of one ring, up to the budget: the frames run
    /// through native XDP back to back, then the poll ends.
    fn napi_poll(&mut self, dev: DevId, q: usize, veth: bool) -> bool {
        let budget = self.sh.opts.napi_budget;
        let mut batch = std::mem::take(&mut self.st.batch);
        self.dev(dev).ops.rx_poll(q, budget, &mut batch);
        let n = batch.len();
        while let Some(item) = batch.pop_front() {
            match item {
                RxItem::Xdp(p) if veth => self.veth_rcv_xdp(dev, p),
                RxItem::Xdp(p) => self.driver_rx(dev, p),
                // veth_xdp_rcv_skb: the skb's bytes run as an XDP frame.
                RxItem::Skb(p) if veth => self.veth_rcv_skb(dev, p),
                RxItem::Skb(p) => self.netif_receive_skb(dev, p),
            }
        }
        self.st.batch = batch;
        if n > 0 {
            self.count_polled(n);
            self.poll_end();
        }
        n > 0
    }

    /// veth_xdp_rcv_skb: an skb from veth_xmit, its bytes as an XDP frame.
    /// veth_xdp_rcv counts it (xdp_bytes) as skb->len after eth_type_trans
    /// pulled the Ethernet header, and the sending end's tx mirrors that
    /// (veth_get_stats64): 14 bytes fewer than on the path without XDP.
    fn veth_rcv_skb(&mut self, dev: DevId, p: Pkt) {
        let d = self.dev(dev);
        let mut xdp = self.xdp_frame(p.skb.data(), d.ifindex);
        xdp.mtu = d.mtu;
        let (id, ts) = (p.id, p.ts);
        let counted = p.skb.len().saturating_sub(crate::buff::ETH_HLEN);
        self.veth_count_polled(dev, counted);
        self.free_skb(p.skb);
        self.xdp_receive(dev, XPkt { id, ts, xdp });
    }

    /// veth_xdp_rcv of an ndo_xdp_xmit frame: counted whole, here and as the
    /// sending end's tx.
    fn veth_rcv_xdp(&mut self, dev: DevId, p: XPkt) {
        self.veth_count_polled(dev, p.xdp.data_end - p.xdp.data);
        self.xdp_receive(dev, p);
    }

    /// What veth_poll takes is this end's rx and its peer's tx.
    fn veth_count_polled(&mut self, dev: DevId, len: usize) {
        self.count_rx(dev, len);
        if let Some(peer) = self.dev(dev).ops.peer() {
            self.count_tx(peer, len);
        }
    }

    /// netif_rx / enqueue_to_backlog: the running CPU's backlog (no RPS),
    /// at most netdev_max_backlog.
    /// false when the backlog was full (NET_RX_DROP).
    pub(crate) fn netif_rx(&mut self, dev: DevId, pkt: Pkt) -> bool {
        if self.st.backlog.len() >= NETDEV_MAX_BACKLOG {
            self.stats(dev).rx_dropped += 1;
            self.drop_skb(pkt, DropReason::CpuBacklog, at(dev, Hook::Rx));
            return false;
        }
        self.st.backlog.push_back((dev, pkt));
        true
    }

    /// process_backlog: netif_rx'd skbs, up to the budget.
    fn process_backlog(&mut self) -> bool {
        let mut n = 0;
        while n < self.sh.opts.napi_budget {
            let Some((dev, pkt)) = self.st.backlog.pop_front() else {
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

    /// The end of a poll: xdp_do_flush, napi_gro_flush, net_tx_action, and
    /// the neighbour timers when the clock moved.
    pub(crate) fn poll_end(&mut self) {
        self.xdp_do_flush();
        self.gro_flush();
        self.qdisc_run_all();
        if self.st.timers_at != Some(self.st.now) {
            self.st.timers_at = Some(self.st.now);
            self.neigh_timers();
        }
    }

    fn neigh_timers(&mut self) {
        let now = self.st.now;
        for i in 0..self.sh.namespaces.len() {
            let (mut out, mut dropped) = (Vec::new(), Vec::new());
            self.sh.namespaces[i]
                .shared
                .stack_write()
                .neigh_timeout(now, &mut out, &mut dropped);
            let lo = self.sh.namespaces[i].lo;
            for (q, r) in dropped {
                self.queued_dropped(lo, q, r);
            }
            if !out.is_empty() {
                self.stack_outputs(NsId(i), out, now);
            }
        }
    }

    /// A packet the stack held for a neighbour ends: the datapath's own (tagged)
    /// packets leave in-flight; the stack's own (replies) were never seen, so
    /// they count as originated here.
    pub(crate) fn queued_dropped(&mut self, lo: DevId, q: QueuedPacket, r: DropReason) {
        let id = match q.tag {
            Some(t) if self.sh.stack_queued.remove(t) => t,
            _ => self.originate(),
        };
        self.record_drop(id, r, at(lo, Hook::Stack));
    }

    /// The loop guard fired: everything queued ends SKIFF_LOOP (the shared
    /// rings and queues by CPU 0's call).
    pub(crate) fn drain_loop(&mut self, shared_too: bool) {
        let mut skbs: Vec<(DevId, Pkt)> = self.st.backlog.drain(..).collect();
        let mut items: Vec<(DevId, RxItem)> = Vec::new();
        for b in std::mem::take(&mut self.st.bulk) {
            items.push((b.target, RxItem::Xdp(b.pkt)));
        }
        skbs.extend(self.st.gro.flush());
        if shared_too {
            for q in &self.sh.cpu_queues {
                for item in q.lock().drain(..) {
                    match item {
                        CpuItem::Xdp { from, pkt, .. } => items.push((from, RxItem::Xdp(pkt))),
                        CpuItem::Skb { from, pkt } => skbs.push((from, pkt)),
                    }
                }
            }
            for i in 0..self.sh.devices.len() {
                let dev = DevId(i);
                let d = self.dev(dev);
                if let Some(q) = &d.qdisc {
                    q.lock().reset(&mut |p| skbs.push((dev, p)));
                }
                let mut v = Vec::new();
                d.ops.rx_drain(&mut v);
                items.extend(v.into_iter().map(|it| (dev, it)));
            }
        }
        for (dev, p) in skbs {
            self.drop_skb(p, DropReason::SkiffLoop, at(dev, Hook::Rx));
        }
        for (dev, it) in items {
            self.drop_item(it, DropReason::SkiffLoop, at(dev, Hook::Rx));
        }
    }
}
