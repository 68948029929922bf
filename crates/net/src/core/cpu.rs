//! What a worker (CPU) owns — its VM, backlog, GRO table, XDP bulk queue,
//! page pool and counters (the kernel's softnet_data and per-CPU stats) —
//! and `Cpu`, the running CPU's view of the datapath that every stage and
//! driver works through: where packets end (drop, deliver, transmit), the
//! counters, traces and captures.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use skiff_maps::Map;
use skiff_vm::{Clock, Context, Exception, Program, Vm};

use super::counters::{verdict_name, verdict_slot, Conservation, DevStats, Hook, HookCounters};
use super::gro::GroTable;
use super::trace::{CapturePoint, CaptureRecord, Tap, TraceEvent};
use super::*;
use crate::buff::{Redirect, PAGE_SIZE, SKB_SHARED_INFO_SIZE, XDP_PACKET_HEADROOM};
use crate::drop::DropReason;
use crate::helpers::NetNs;

/// Pages a CPU's pool keeps (page_pool's ring size).
const POOL_PAGES: usize = 4096;
/// sk_buff heads a CPU keeps for reuse (skbuff_head_cache's per-CPU cache).
const SKB_CACHE: usize = POOL_PAGES;

/// Per-CPU counters, summed when read.
pub(crate) struct CpuCounters {
    pub cons: Conservation,
    pub consumed: u64,
    /// Packets this CPU took from a queue.
    pub polled: u64,
    /// Nanoseconds in NAPI polls that did work (when measured).
    pub busy_ns: u64,
    /// Per device (DevId index).
    pub dev: Vec<DevStats>,
    pub hooks: Vec<HookCounters>,
    drops: [u64; DropReason::ALL.len()],
}

impl CpuCounters {
    #[inline]
    pub fn drop_reason(&mut self, r: DropReason, n: u64) {
        self.drops[r.index()] += n;
    }

    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .zip(self.drops.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (*r, *n))
    }
}

/// One CPU's state, cache-line aligned: two workers must not share a line.
#[repr(align(128))]
pub(crate) struct CpuState {
    pub cpu: usize,
    pub vm: Vm,
    /// softnet_data's input_pkt_queue (netif_rx; no RPS: the receiving CPU).
    pub backlog: VecDeque<(DevId, Pkt)>,
    pub bulk: Vec<BulkItem>,
    pub gro: GroTable,
    pool: Vec<Box<[u8]>>,
    /// Freed sk_buff heads (their buffers went back to the page pool). The
    /// boxes are what is recycled: a packet holds its head by pointer.
    #[allow(clippy::vec_box)]
    skb_cache: Vec<Box<SkBuff>>,
    /// Freed xdp_buff descriptors (without their pages).
    #[allow(clippy::vec_box)]
    xdp_cache: Vec<Box<XdpBuff>>,
    pub cnt: CpuCounters,
    pub xmit_depth: u32,
    /// Hook passes since the queues were last empty, and the packets that
    /// came in meanwhile: the loop guard (see `LOOP_STEPS_PER_PACKET`).
    pub steps: u64,
    pub budget_pkts: u64,
    /// Each namespace's helper view, moved into a context for a run (no
    /// refcount traffic per packet).
    netns: Vec<Option<Arc<dyn NetNs>>>,
    /// Maps by id, for redirects (no global registry lookup per packet).
    maps: Vec<Option<Arc<Map>>>,
    /// The NAPI poll's batch, reused.
    pub batch: VecDeque<RxItem>,
    /// The clock: the newest packet timestamp seen (deterministic mode).
    pub now: u64,
    /// When the neighbour timers last ran.
    pub timers_at: Option<u64>,
    /// This CPU queued into a qdisc since its last net_tx_action (the
    /// kernel's __netif_schedule puts the qdisc on this CPU's output_queue).
    pub tx_scheduled: bool,
}

impl CpuState {
    pub fn new(cpu: usize, opts: &DatapathOptions, start: std::time::Instant) -> CpuState {
        let mut vm = Vm::new(crate::helper_table());
        vm.env.cpu = cpu as u32;
        // Each CPU its own prandom state (CPU 0 keeps the default seed).
        vm.env.prandom ^= (cpu as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        vm.env.clock = if opts.deterministic {
            Clock::Virtual(0)
        } else {
            Clock::Monotonic(start)
        };
        CpuState {
            cpu,
            vm,
            backlog: VecDeque::new(),
            bulk: Vec::new(),
            gro: GroTable::default(),
            pool: Vec::new(),
            skb_cache: Vec::new(),
            xdp_cache: Vec::new(),
            cnt: CpuCounters {
                cons: Conservation::default(),
                consumed: 0,
                polled: 0,
                busy_ns: 0,
                dev: Vec::new(),
                hooks: Vec::new(),
                drops: [0; DropReason::ALL.len()],
            },
            xmit_depth: 0,
            steps: 0,
            budget_pkts: 0,
            netns: Vec::new(),
            maps: Vec::new(),
            batch: VecDeque::new(),
            now: 0,
            timers_at: None,
            tx_scheduled: false,
        }
    }

    pub fn add_device(&mut self) {
        self.cnt.dev.push(DevStats::default());
        self.cnt.hooks.push(HookCounters::default());
    }

    pub fn add_netns(&mut self, ns: Arc<NsShared>) {
        self.netns.push(Some(ns as Arc<dyn NetNs>));
    }

    /// Packets waiting in this CPU's own queues.
    pub fn in_flight(&self) -> usize {
        self.backlog.len() + self.bulk.len() + self.gro.len()
    }

    pub fn page(&mut self) -> Box<[u8]> {
        self.pool
            .pop()
            .unwrap_or_else(|| vec![0u8; PAGE_SIZE].into_boxed_slice())
    }

    pub fn recycle_page(&mut self, page: Box<[u8]>) {
        if page.len() == PAGE_SIZE && self.pool.len() < POOL_PAGES {
            self.pool.push(page);
        }
    }

    /// A buffer back to the pool when it is a whole page (an skb's buffer
    /// still is one unless it grew).
    pub fn recycle_vec(&mut self, mut buf: Vec<u8>) {
        if buf.len() == PAGE_SIZE {
            return self.recycle_page(buf.into_boxed_slice());
        }
        if buf.capacity() == PAGE_SIZE && self.pool.len() < POOL_PAGES {
            // A page that left as a shorter frame: its bytes are all
            // initialised; only the cut tail needs filling to be a page again.
            buf.resize(PAGE_SIZE, 0);
            self.pool.push(buf.into_boxed_slice());
        }
    }
}

/// What a run records for its caller: the sinks (transmitted, delivered,
/// AF_XDP) and, when asked, traces, captures and drop records. Ids come
/// from here (`next_id`, stepping by `id_step` so threads never collide).
pub(crate) struct Records {
    pub next_id: u64,
    pub id_step: u64,
    pub trace: Vec<TraceEvent>,
    pub captures: Vec<CaptureRecord>,
    pub drop_log: VecDeque<DropRecord>,
    pub transmitted: Vec<TxFrame>,
    pub delivered: Vec<Delivered>,
    pub xsk: BTreeMap<(DevId, u32), Vec<XskFrame>>,
}

/// A transmitted frame as the sink holds it: still in its buffer (a pooled
/// page), `buf[start..end]`, so handing it on needs no copy and giving the
/// page back no clearing.
pub(crate) struct TxFrame {
    pub dev: DevId,
    pub ifindex: u32,
    pub id: PacketId,
    pub ts: u64,
    pub buf: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl TxFrame {
    pub fn frame(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }
}

impl Records {
    pub fn new(next_id: u64, id_step: u64) -> Records {
        Records {
            next_id,
            id_step,
            trace: Vec::new(),
            captures: Vec::new(),
            drop_log: VecDeque::new(),
            transmitted: Vec::new(),
            delivered: Vec::new(),
            xsk: BTreeMap::new(),
        }
    }

    /// Fold a thread's records in (sinks in order of the thread's work).
    pub fn absorb(&mut self, o: Records) {
        self.next_id = self.next_id.max(o.next_id);
        self.trace.extend(o.trace);
        self.captures.extend(o.captures);
        for d in o.drop_log {
            if self.drop_log.len() >= DROP_LOG {
                self.drop_log.pop_front();
            }
            self.drop_log.push_back(d);
        }
        self.transmitted.extend(o.transmitted);
        self.delivered.extend(o.delivered);
        for (k, v) in o.xsk {
            self.xsk.entry(k).or_default().extend(v);
        }
    }
}

/// Where a drop happened, for the record.
pub(crate) struct Where<'a> {
    pub dev: DevId,
    pub hook: Hook,
    pub prog: Option<&'a str>,
    pub exc: Option<&'a Exception>,
}

pub(crate) fn at(dev: DevId, hook: Hook) -> Where<'static> {
    Where {
        dev,
        hook,
        prog: None,
        exc: None,
    }
}

/// The running CPU: the shared configuration, its own state, the records.
pub(crate) struct Cpu<'a> {
    pub sh: &'a Shared,
    pub st: &'a mut CpuState,
    pub rec: &'a mut Records,
}

impl<'a> Cpu<'a> {
    /// A device of the shared configuration (outlives the borrow of self, so
    /// a driver can be called with `self`).
    #[inline]
    pub fn dev(&self, dev: DevId) -> &'a NetDev {
        let sh: &'a Shared = self.sh;
        &sh.devices[dev.0]
    }

    pub fn new_id(&mut self) -> PacketId {
        let id = self.rec.next_id;
        self.rec.next_id += self.rec.id_step;
        id
    }

    /// A new packet the datapath made (clone, reply, segment).
    pub fn originate(&mut self) -> PacketId {
        self.st.cnt.cons.originated += 1;
        self.new_id()
    }

    /// An sk_buff head for `skb` (from the cache: no allocation once warm).
    #[inline]
    pub fn alloc_skb(&mut self, skb: SkBuff) -> Box<SkBuff> {
        match self.st.skb_cache.pop() {
            Some(mut b) => {
                *b = skb;
                b
            }
            None => Box::new(skb),
        }
    }

    /// kfree_skb's memory side: the buffer to the page pool, the head to the
    /// cache.
    #[inline]
    pub fn free_skb(&mut self, mut skb: Box<SkBuff>) {
        let buf = std::mem::take(&mut skb.buf);
        self.recycle_buf(buf);
        if self.st.skb_cache.len() < SKB_CACHE {
            skb.redirect = None;
            skb.clones = Vec::new();
            skb.netns = None;
            skb.tunnel = None;
            self.st.skb_cache.push(skb);
        }
    }

    pub fn recycle_buf(&mut self, buf: Vec<u8>) {
        if buf.len() == PAGE_SIZE && buf.capacity() == PAGE_SIZE {
            self.st.recycle_page(buf.into_boxed_slice());
        }
    }

    /// A frame in a pooled page at XDP_PACKET_HEADROOM; frames too large for
    /// a page get a buffer of their own.
    pub fn xdp_frame(&mut self, frame: &[u8], ifindex: u32) -> Box<XdpBuff> {
        let need = XDP_PACKET_HEADROOM + frame.len() + SKB_SHARED_INFO_SIZE;
        let mut page = if need <= PAGE_SIZE {
            self.st.page()
        } else {
            vec![0u8; need].into_boxed_slice()
        };
        let (start, end) = (XDP_PACKET_HEADROOM, XDP_PACKET_HEADROOM + frame.len());
        // Sized for the frame above: the copy always fits.
        if let Some(dst) = page.get_mut(start..end) {
            dst.copy_from_slice(frame);
        }
        let mut x = self
            .st
            .xdp_cache
            .pop()
            .unwrap_or_else(|| Box::new(empty_buff()));
        x.buf = page;
        x.data_meta = start;
        x.data = start;
        x.data_end = end;
        x.meta_valid = true;
        x.ingress_ifindex = ifindex;
        x.rx_queue_index = 0;
        x.egress_ifindex = None;
        x.mtu = 1500;
        x.redirect = None;
        x.netns = None;
        x.rx_hash = None;
        x
    }

    /// Make map `id` available to `cached_map` (a CPU-local cache in front
    /// of the global registry, filled the first time a map is named).
    pub fn cache_map(&mut self, id: u32) -> bool {
        let i = id as usize;
        if self.st.maps.get(i).is_some_and(|m| m.is_some()) {
            return true;
        }
        let Some(m) = Map::by_id(id) else {
            return false;
        };
        if self.st.maps.len() <= i {
            self.st.maps.resize(i + 1, None);
        }
        self.st.maps[i] = Some(m);
        true
    }

    /// Map `id` if `cache_map` put it in the cache.
    pub fn cached_map(&self, id: u32) -> Option<&Arc<Map>> {
        self.st.maps.get(id as usize).and_then(|m| m.as_ref())
    }

    /// Run one program with the clock at `ts` (deterministic mode) and the
    /// namespace of `dev` for its helpers. Exceptions give `abort`
    /// (XDP_ABORTED / TC_ACT_SHOT), as trace_xdp_exception / test_run.
    pub fn run_prog<C: Context + NsContext>(
        &mut self,
        prog: &Arc<Program>,
        ctx: &mut C,
        ns: NsId,
        ts: u64,
        abort: i64,
    ) -> (i64, Option<Exception>) {
        if self.sh.opts.deterministic {
            self.st.vm.env.clock = Clock::Virtual(ts);
        }
        let slot = self.st.netns.get_mut(ns.0).and_then(|s| s.take());
        ctx.set_netns(slot);
        let r = match self.st.vm.run(prog, ctx) {
            Ok(r) => (r as u32 as i32 as i64, None),
            Err(e) => (abort, Some(e)),
        };
        if let Some(s) = self.st.netns.get_mut(ns.0) {
            *s = ctx.set_netns(None);
        }
        r
    }

    // ---- ends -------------------------------------------------------------

    pub fn record_drop(&mut self, id: PacketId, reason: DropReason, w: Where) {
        self.st.cnt.cons.dropped += 1;
        self.st.cnt.drop_reason(reason, 1);
        if self.sh.record_drops || self.sh.trace_on {
            self.drop_record(id, reason, &w);
        }
    }

    #[cold]
    fn drop_record(&mut self, id: PacketId, reason: DropReason, w: &Where) {
        let (iface, ifindex, netns) = self
            .sh
            .devices
            .get(w.dev.0)
            .map(|d| (d.name.clone(), d.ifindex, self.sh.ns_name(d.ns).to_string()))
            .unwrap_or_default();
        let prog = w.exc.map(|e| e.prog.clone()).or(w.prog.map(String::from));
        if self.rec.drop_log.len() >= DROP_LOG {
            self.rec.drop_log.pop_front();
        }
        self.rec.drop_log.push_back(DropRecord {
            id,
            reason: reason.name(),
            iface,
            ifindex,
            netns,
            hook: w.hook.name(),
            prog: prog.clone(),
            insn: w.exc.map(|e| e.pc),
            error: w.exc.map(|e| e.error.to_string()),
        });
        if self.sh.trace_on {
            let mut ev = self.event(
                id,
                w.dev,
                "kfree_skb",
                prog,
                reason.name().to_string(),
                None,
                0,
            );
            ev.len = 0;
            self.rec.trace.push(ev);
        }
    }

    pub fn drop_skb(&mut self, pkt: Pkt, reason: DropReason, w: Where) {
        self.record_drop(pkt.id, reason, w);
        self.free_skb(pkt.skb);
    }

    pub fn drop_xdp(&mut self, pkt: XPkt, reason: DropReason, w: Where) {
        self.record_drop(pkt.id, reason, w);
        self.free_xdp(pkt.xdp);
    }

    /// The page to the pool, the descriptor to the cache.
    #[inline]
    pub fn free_xdp(&mut self, mut x: Box<XdpBuff>) {
        let page = std::mem::take(&mut x.buf);
        self.st.recycle_page(page);
        self.cache_xdp(x);
    }

    /// The descriptor (its page already taken) to the cache.
    #[inline]
    pub fn cache_xdp(&mut self, mut x: Box<XdpBuff>) {
        if self.st.xdp_cache.len() < SKB_CACHE {
            x.redirect = None;
            x.netns = None;
            self.st.xdp_cache.push(x);
        }
    }

    pub fn drop_item(&mut self, item: RxItem, reason: DropReason, w: Where) {
        match item {
            RxItem::Xdp(p) => self.drop_xdp(p, reason, w),
            RxItem::Skb(p) => self.drop_skb(p, reason, w),
        }
    }

    pub fn deliver(&mut self, dev: DevId, pkt: Pkt, by: &'static str) {
        self.st.cnt.cons.delivered += 1;
        if by != "stack" {
            self.st.cnt.consumed += 1;
        }
        if !self.sh.opts.keep_delivered {
            return self.free_skb(pkt.skb);
        }
        let ifindex = self.dev(dev).ifindex;
        let mut skb = pkt.skb;
        let frame = skb::take_frame(&mut skb);
        self.free_skb(skb);
        self.rec.delivered.push(Delivered {
            dev,
            ifindex,
            id: pkt.id,
            ts_ns: pkt.ts,
            by,
            frame,
        });
    }

    /// Out of a NIC: `buf[start..end]` to the device's sink.
    #[allow(clippy::too_many_arguments)]
    pub fn transmit(
        &mut self,
        dev: DevId,
        id: PacketId,
        ts: u64,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    ) {
        self.st.cnt.cons.transmitted += 1;
        let ifindex = self.dev(dev).ifindex;
        self.rec.transmitted.push(TxFrame {
            dev,
            ifindex,
            id,
            ts,
            buf,
            start,
            end,
        });
    }

    /// An skb out of a NIC.
    pub fn transmit_skb(&mut self, dev: DevId, mut pkt: Pkt) {
        let (start, end) = (pkt.skb.data, pkt.skb.tail);
        let buf = std::mem::take(&mut pkt.skb.buf);
        self.free_skb(pkt.skb);
        self.transmit(dev, pkt.id, pkt.ts, buf, start, end);
    }

    /// An XDP frame out of a NIC (its page leaves as it is).
    pub fn transmit_xdp(&mut self, dev: DevId, mut pkt: XPkt) {
        let (start, end) = (pkt.xdp.data, pkt.xdp.data_end);
        let page = std::mem::take(&mut pkt.xdp.buf);
        self.cache_xdp(pkt.xdp);
        self.transmit(dev, pkt.id, pkt.ts, page.into_vec(), start, end);
    }

    /// An AF_XDP socket's rx ring took it (__xsk_map_redirect).
    pub fn xsk_rcv(&mut self, dev: DevId, q: u32, slot: u32, id: PacketId, ts: u64, frame: &[u8]) {
        self.st.cnt.cons.transmitted += 1;
        self.rec.xsk.entry((dev, q)).or_default().push(XskFrame {
            id,
            slot,
            ts_ns: ts,
            frame: frame.to_vec(),
        });
    }

    // ---- device counters ------------------------------------------------------

    #[inline]
    pub fn stats(&mut self, dev: DevId) -> &mut DevStats {
        &mut self.st.cnt.dev[dev.0]
    }

    /// A frame the device sent (its `ip -s link` tx counters).
    #[inline]
    pub fn count_tx(&mut self, dev: DevId, len: usize) {
        let s = self.stats(dev);
        s.tx_packets += 1;
        s.tx_bytes += len as u64;
    }

    #[inline]
    pub fn count_rx(&mut self, dev: DevId, len: usize) {
        let s = self.stats(dev);
        s.rx_packets += 1;
        s.rx_bytes += len as u64;
    }

    pub fn count_polled(&mut self, n: usize) {
        self.st.cnt.polled += n as u64;
    }

    // ---- trace, hook counters, captures ---------------------------------------

    #[allow(clippy::too_many_arguments)]
    /// The program's `bpf_trace_printk` lines of this run as trace events
    /// of packet `id` (func "bpf_trace_printk", the message as trace_pipe
    /// prints it), ahead of the hook's own event.
    fn printk_events(&mut self, dev: DevId, prog: Option<&str>, id: PacketId, ts: u64) {
        let lines: Vec<String> = self.st.vm.env.trace.drain(..).collect();
        for msg in lines {
            let msg = super::trace::printk_message(&msg);
            let ev = self.event(
                id,
                dev,
                "bpf_trace_printk",
                prog.map(String::from),
                msg,
                None,
                ts,
            );
            self.rec.trace.push(ev);
        }
    }

    pub fn event(
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
            .sh
            .devices
            .get(dev.0)
            .map(|d| (d.name.clone(), d.ifindex, self.sh.ns_name(d.ns).to_string()))
            .unwrap_or_default();
        TraceEvent {
            skb: id,
            cpu: self.st.cpu as u32,
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
            five_tuple: None,
            frame: Vec::new(),
        }
    }

    /// Count a hook's verdict; trace and capture it when asked.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn hook_done(
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
        self.st.steps += 1;
        self.st.cnt.hooks[dev.0].slots[hook.index()][verdict_slot(code)].add(frame.len());
        if self.sh.trace_on || !self.sh.capture_on.is_empty() {
            self.hook_record(dev, hook, prog, code, id, ts, frame, target);
        }
    }

    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn hook_record(
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
        if self.sh.trace_on {
            self.printk_events(dev, prog, id, ts);
            let verdict = verdict_name(hook, code).to_string();
            let mut ev = self.event(
                id,
                dev,
                hook.name(),
                prog.map(String::from),
                verdict,
                target,
                ts,
            );
            ev.fill_frame(frame);
            self.rec.trace.push(ev);
        }
        if self.sh.capture_on.contains(&(dev, hook)) {
            let v = Some(verdict_name(hook, code).to_string());
            self.capture_rec(dev, hook, CapturePoint::Exit, id, v, ts, frame);
        }
    }

    #[inline]
    pub fn capture_entry(&mut self, dev: DevId, hook: Hook, id: PacketId, ts: u64, frame: &[u8]) {
        if !self.sh.capture_on.is_empty() && self.sh.capture_on.contains(&(dev, hook)) {
            self.capture_rec(dev, hook, CapturePoint::Entry, id, None, ts, frame);
        }
    }

    /// An AF_PACKET tap (ptype_all's deliver_skb / dev_queue_xmit_nit) when
    /// asked for on `dev`. An offloaded VLAN tag is shown in the frame, as
    /// libpcap puts it back from PACKET_AUXDATA.
    #[inline]
    pub fn capture_tap(&mut self, dev: DevId, tap: Tap, pkt: &Pkt) {
        if !self.sh.tap_on.is_empty() && self.sh.tap_on.contains(&(dev, tap)) {
            self.capture_tap_rec(dev, tap, pkt);
        }
    }

    #[cold]
    fn capture_tap_rec(&mut self, dev: DevId, tap: Tap, pkt: &Pkt) {
        let data = pkt.skb.data();
        let frame = match (pkt.skb.vlan_present, data.get(..12), data.get(12..)) {
            (true, Some(macs), Some(rest)) => {
                let mut f = Vec::with_capacity(data.len() + 4);
                f.extend_from_slice(macs);
                f.extend_from_slice(&pkt.skb.vlan_proto.to_be_bytes());
                f.extend_from_slice(&pkt.skb.vlan_tci.to_be_bytes());
                f.extend_from_slice(rest);
                f
            }
            _ => data.to_vec(),
        };
        let (id, ts) = (pkt.id, pkt.ts);
        self.capture_rec(dev, tap.hook(), CapturePoint::Tap, id, None, ts, &frame);
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
        let d = self.dev(dev);
        self.rec.captures.push(CaptureRecord {
            ifindex: d.ifindex,
            iface: d.name.clone(),
            netns: self.sh.ns_name(d.ns).to_string(),
            hook,
            point,
            id,
            verdict,
            ts_ns: ts,
            bytes: frame.to_vec(),
        });
    }

    /// `name(ifindex)` for traces.
    pub fn target_name(&self, dev: DevId) -> String {
        self.sh
            .devices
            .get(dev.0)
            .map(|d| format!("{}({})", d.name, d.ifindex))
            .unwrap_or_default()
    }

    /// A redirect's target as traces print it.
    pub fn redirect_desc(&mut self, r: &Redirect) -> String {
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
                self.cache_map(*map_id);
                let name = self
                    .cached_map(*map_id)
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
}

/// A program context that carries the namespace its helpers look into.
pub(crate) trait NsContext {
    /// Put `ns` in, give back what was there.
    fn set_netns(&mut self, ns: Option<Arc<dyn NetNs>>) -> Option<Arc<dyn NetNs>>;
}

impl NsContext for XdpBuff {
    #[inline]
    fn set_netns(&mut self, ns: Option<Arc<dyn NetNs>>) -> Option<Arc<dyn NetNs>> {
        std::mem::replace(&mut self.netns, ns)
    }
}

impl NsContext for SkBuff {
    #[inline]
    fn set_netns(&mut self, ns: Option<Arc<dyn NetNs>>) -> Option<Arc<dyn NetNs>> {
        std::mem::replace(&mut self.netns, ns)
    }
}

fn empty_buff() -> XdpBuff {
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
        rx_hash: None,
    }
}
