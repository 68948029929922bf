//! net/sched/sch_fq_codel.c: fq_codel — packets hashed into `flows`
//! queues, served by deficit round robin (`quantum`), new flows before old
//! ones, each flow under CoDel (target, interval, ECN marks instead of
//! drops); when the qdisc is over `limit` packets or `memory_limit` bytes
//! it drops up to `drop_batch` packets from the head of the fattest flow.

use std::collections::VecDeque;

use super::codel::{
    codel_dequeue, codel_time, CodelParams, CodelQueue, CodelStats, CodelVars, CODEL_SHIFT,
};
use super::dump::{size_str, time_us_str};
use super::{
    tc_h_maj, tc_h_min, Classified, Dump, EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats,
    Refused,
};
use crate::buff::{SkBuff, NET_SKB_PAD, SKB_SHARED_INFO_SIZE};
use crate::core::{errno, DatapathError, Pkt, EINVAL};
use crate::helpers::skb_get_hash;

/// The attributes q_fq_codel.c sends (None: the kernel's default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FqCodelOptions {
    pub limit: Option<u32>,
    pub flows: Option<u32>,
    pub quantum: Option<u32>,
    /// us
    pub target_us: Option<u32>,
    pub interval_us: Option<u32>,
    pub ce_threshold_us: Option<u32>,
    pub memory_limit: Option<u32>,
    pub ecn: Option<bool>,
    pub drop_batch: Option<u32>,
}

/// sizeof(struct sk_buff) rounded as SKB_TRUESIZE counts it.
const SKB_HEAD_SIZE: usize = 256;

/// skb->truesize of a linear skb of `len` bytes (SKB_TRUESIZE of its
/// aligned data): what memory_limit counts.
fn truesize(len: usize) -> u32 {
    let data = crate::buff::skb_data_align(len + NET_SKB_PAD);
    (data + SKB_HEAD_SIZE + SKB_SHARED_INFO_SIZE) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    None,
    New,
    Old,
}

/// struct fq_codel_flow; packets with their enqueue time and truesize.
struct Flow {
    q: VecDeque<(Pkt, u32, u32)>,
    deficit: i32,
    cvars: CodelVars,
    chain: Chain,
}

pub(crate) struct FqCodel {
    handle: u32,
    flows: Vec<Flow>,
    backlogs: Vec<u32>,
    new_flows: VecDeque<usize>,
    old_flows: VecDeque<usize>,
    limit: u32,
    quantum: u32,
    drop_batch: u32,
    memory_limit: u32,
    memory_usage: u32,
    params: CodelParams,
    cstats: CodelStats,
    drop_overlimit: u32,
    drop_overmemory: u32,
    new_flow_count: u32,
    stats: QdiscStats,
    /// Dropped at dequeue (CoDel), for the caller.
    dropped: Vec<Pkt>,
}

impl FqCodel {
    /// fq_codel_init: limit 10240, 1024 flows, quantum psched_mtu, target
    /// 5 ms, interval 100 ms, ECN on, memory_limit 32 MB, drop_batch 64.
    pub fn create(opts: &QdiscOptions, dev: &QdiscDev) -> Result<Box<dyn Qdisc>, DatapathError> {
        let QdiscOptions::FqCodel(o) = opts else {
            return Err(errno(EINVAL, "fq_codel: wrong options"));
        };
        let mtu = dev.mtu + crate::buff::ETH_HLEN as u32;
        let flows_cnt = o.flows.unwrap_or(1024);
        if flows_cnt == 0 || flows_cnt > 65536 {
            return Err(errno(
                EINVAL,
                format!("fq_codel: flows {flows_cnt} outside 1..65536"),
            ));
        }
        let mut q = FqCodel {
            handle: 0,
            flows: (0..flows_cnt)
                .map(|_| Flow {
                    q: VecDeque::new(),
                    deficit: 0,
                    cvars: CodelVars::default(),
                    chain: Chain::None,
                })
                .collect(),
            backlogs: vec![0; flows_cnt as usize],
            new_flows: VecDeque::new(),
            old_flows: VecDeque::new(),
            limit: 10 * 1024,
            quantum: mtu,
            drop_batch: 64,
            memory_limit: 32 << 20,
            memory_usage: 0,
            params: CodelParams {
                target: codel_time(5_000_000),
                interval: codel_time(100_000_000),
                ce_threshold: u32::MAX,
                mtu,
                ecn: true,
            },
            cstats: CodelStats::default(),
            drop_overlimit: 0,
            drop_overmemory: 0,
            new_flow_count: 0,
            stats: QdiscStats::default(),
            dropped: Vec::new(),
        };
        q.tune(o);
        Ok(Box::new(q))
    }

    /// fq_codel_change (flows only at creation).
    fn tune(&mut self, o: &FqCodelOptions) {
        let us = |v: u32| ((v as u64 * 1000) >> CODEL_SHIFT) as u32;
        if let Some(t) = o.target_us {
            self.params.target = us(t);
        }
        if let Some(t) = o.interval_us {
            self.params.interval = us(t);
        }
        if let Some(t) = o.ce_threshold_us {
            self.params.ce_threshold = us(t);
        }
        if let Some(l) = o.limit {
            self.limit = l;
        }
        if let Some(e) = o.ecn {
            self.params.ecn = e;
        }
        if let Some(q) = o.quantum {
            self.quantum = q.max(256);
        }
        if let Some(d) = o.drop_batch {
            self.drop_batch = d.max(1);
        }
        if let Some(m) = o.memory_limit {
            self.memory_limit = m.min(1 << 31);
        }
    }

    /// fq_codel_classify: skb->priority naming a flow of this qdisc, the
    /// filters' classid, else the flow hash (reciprocal_scale); 0: dropped.
    fn classify(&mut self, pkt: &mut Pkt, cx: &mut EnqueueCtx) -> Result<usize, Classified> {
        let n = self.flows.len() as u32;
        let prio = pkt.skb.priority;
        if tc_h_maj(prio) == self.handle && tc_h_min(prio) > 0 && tc_h_min(prio) <= n {
            return Ok(tc_h_min(prio) as usize);
        }
        match (cx.classify)(self.handle, pkt) {
            Classified::NoMatch => {
                let h = skb_get_hash(&mut pkt.skb);
                Ok((((h as u64) * n as u64) >> 32) as usize + 1)
            }
            Classified::Class(c) if tc_h_min(c) > 0 && tc_h_min(c) <= n => Ok(tc_h_min(c) as usize),
            Classified::Class(_) => Err(Classified::Shot),
            r => Err(r),
        }
    }

    /// fq_codel_drop: half the fattest flow's backlog, at most `max` packets,
    /// from its head. Returns the flow.
    fn drop_fat(&mut self, max: u32) -> usize {
        let mut idx = 0;
        let mut maxbacklog = 0;
        for (i, &b) in self.backlogs.iter().enumerate() {
            if b > maxbacklog {
                maxbacklog = b;
                idx = i;
            }
        }
        let threshold = maxbacklog >> 1;
        let (mut len, mut mem, mut i) = (0u32, 0u32, 0u32);
        while let Some((p, _, m)) = self.flows.get_mut(idx).and_then(|f| f.q.pop_front()) {
            len += p.skb.len() as u32;
            mem += m;
            self.stats.unqueued(p.skb.len());
            self.dropped.push(p);
            i += 1;
            if i >= max || len >= threshold {
                break;
            }
        }
        if let Some(f) = self.flows.get_mut(idx) {
            f.cvars.count = f.cvars.count.wrapping_add(i);
        }
        if let Some(b) = self.backlogs.get_mut(idx) {
            *b = b.saturating_sub(len);
        }
        self.memory_usage = self.memory_usage.saturating_sub(mem);
        self.stats.drops += i as u64;
        idx
    }
}

/// One flow as CoDel sees it (dequeue_func / drop_func of fq_codel).
struct FlowQueue<'a> {
    flow: &'a mut Flow,
    backlog: &'a mut u32,
    memory_usage: &'a mut u32,
    stats: &'a mut QdiscStats,
    dropped: &'a mut Vec<Pkt>,
    enq: u32,
}

impl CodelQueue<Pkt> for FlowQueue<'_> {
    fn dequeue(&mut self) -> Option<Pkt> {
        let (p, t, m) = self.flow.q.pop_front()?;
        let len = p.skb.len();
        *self.backlog = self.backlog.saturating_sub(len as u32);
        *self.memory_usage = self.memory_usage.saturating_sub(m);
        self.stats.unqueued(len);
        self.enq = t;
        Some(p)
    }

    fn backlog(&self) -> u32 {
        self.stats.backlog.min(u32::MAX as u64) as u32
    }

    fn drop(&mut self, p: Pkt) {
        self.stats.drops += 1;
        self.dropped.push(p);
    }

    fn skb<'b>(&self, p: &'b mut Pkt) -> &'b mut SkBuff {
        &mut p.skb
    }

    fn enqueue_time(&self, _p: &Pkt) -> u32 {
        self.enq
    }
}

impl Qdisc for FqCodel {
    fn kind(&self) -> &'static str {
        "fq_codel"
    }

    /// fq_codel_enqueue.
    fn enqueue_at(&mut self, mut pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let idx = match self.classify(&mut pkt, cx) {
            Ok(i) => i - 1,
            Err(Classified::Stolen) => return Err(Refused::Stolen(pkt)),
            Err(_) => {
                self.stats.drops += 1;
                return Err(Refused::Drop(pkt));
            }
        };
        let len = pkt.skb.len();
        let mem = truesize(len);
        let Some(flow) = self.flows.get_mut(idx) else {
            self.stats.drops += 1;
            return Err(Refused::Drop(pkt));
        };
        flow.q.push_back((pkt, codel_time(cx.now), mem));
        if flow.chain == Chain::None {
            flow.chain = Chain::New;
            flow.deficit = self.quantum as i32;
            self.new_flows.push_back(idx);
            self.new_flow_count += 1;
        }
        if let Some(b) = self.backlogs.get_mut(idx) {
            *b += len as u32;
        }
        self.stats.queued(len);
        self.memory_usage = self.memory_usage.saturating_add(mem);
        let memory_limited = self.memory_usage > self.memory_limit;
        if self.stats.qlen <= self.limit as u64 && !memory_limited {
            return Ok(());
        }
        let before = self.stats.qlen;
        self.drop_fat(self.drop_batch);
        let n = before.saturating_sub(self.stats.qlen) as u32;
        self.drop_overlimit += n;
        if memory_limited {
            self.drop_overmemory += n;
        }
        cx.dropped.append(&mut self.dropped);
        Ok(())
    }

    /// fq_codel_dequeue: new flows first; a flow out of deficit goes to
    /// the old list with a quantum more; CoDel on the flow's head.
    fn dequeue_at(&mut self, now: u64) -> Option<Pkt> {
        let now = codel_time(now);
        for _ in 0..(2 * self.flows.len() + 2) {
            let (idx, from_new) = match self.new_flows.front() {
                Some(&i) => (i, true),
                None => (*self.old_flows.front()?, false),
            };
            let flow = self.flows.get_mut(idx)?;
            let list = if from_new {
                &mut self.new_flows
            } else {
                &mut self.old_flows
            };
            if flow.deficit <= 0 {
                flow.deficit += self.quantum as i32;
                list.pop_front();
                flow.chain = Chain::Old;
                self.old_flows.push_back(idx);
                continue;
            }
            let mut cvars = flow.cvars;
            let mut fq = FlowQueue {
                flow,
                backlog: self.backlogs.get_mut(idx)?,
                memory_usage: &mut self.memory_usage,
                stats: &mut self.stats,
                dropped: &mut self.dropped,
                enq: 0,
            };
            let p = codel_dequeue(&mut fq, &self.params, &mut cvars, &mut self.cstats, now);
            let flow = self.flows.get_mut(idx)?;
            flow.cvars = cvars;
            let Some(p) = p else {
                // Force a pass through old flows (no starvation).
                let list = if from_new {
                    &mut self.new_flows
                } else {
                    &mut self.old_flows
                };
                list.pop_front();
                if from_new && !self.old_flows.is_empty() {
                    flow.chain = Chain::Old;
                    self.old_flows.push_back(idx);
                } else {
                    flow.chain = Chain::None;
                }
                continue;
            };
            flow.deficit -= p.skb.len() as i32;
            self.stats.bytes += p.skb.len() as u64;
            self.stats.packets += 1;
            self.cstats.drop_count = 0;
            self.cstats.drop_len = 0;
            return Some(p);
        }
        None
    }

    fn peek(&self) -> Option<&Pkt> {
        let idx = self.new_flows.front().or(self.old_flows.front())?;
        self.flows.get(*idx)?.q.front().map(|e| &e.0)
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for f in &mut self.flows {
            for (p, _, _) in f.q.drain(..) {
                drop(p);
            }
            f.chain = Chain::None;
            f.cvars = CodelVars::default();
        }
        for p in self.dropped.drain(..) {
            drop(p);
        }
        self.backlogs.iter_mut().for_each(|b| *b = 0);
        self.new_flows.clear();
        self.old_flows.clear();
        self.memory_usage = 0;
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn qlen(&self) -> usize {
        self.stats.qlen as usize
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }

    fn drops_on_dequeue(&self) -> bool {
        true
    }

    fn take_dropped(&mut self, out: &mut Vec<Pkt>) {
        out.append(&mut self.dropped);
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
    }

    /// fq_codel_dump / fq_codel_dump_stats as q_fq_codel.c prints them.
    fn dump(&self) -> Dump {
        let mut d = Dump::default();
        let us = |t: u32| ((t as u64) << CODEL_SHIFT) / 1000;
        d.opt("limit", self.limit, format!("limit {}p", self.limit));
        d.opt(
            "flows",
            self.flows.len(),
            format!("flows {}", self.flows.len()),
        );
        d.opt("quantum", self.quantum, format!("quantum {}", self.quantum));
        let (t, i) = (us(self.params.target), us(self.params.interval));
        d.opt("target", t, format!("target {}", time_us_str(t)));
        d.opt("interval", i, format!("interval {}", time_us_str(i)));
        d.opt(
            "memory_limit",
            self.memory_limit,
            format!("memory_limit {}", size_str(self.memory_limit as u64)),
        );
        d.opt(
            "ecn",
            self.params.ecn,
            if self.params.ecn { "ecn" } else { "" },
        );
        d.opt(
            "drop_batch",
            self.drop_batch,
            format!("drop_batch {}", self.drop_batch),
        );
        let c = &self.cstats;
        d.xstat("maxpacket", c.maxpacket, "");
        d.xstat("drop_overlimit", self.drop_overlimit, "");
        d.xstat("new_flow_count", self.new_flow_count, "");
        d.xstat("ecn_mark", c.ecn_mark, "");
        d.xstat("new_flows_len", self.new_flows.len(), "");
        d.xstat("old_flows_len", self.old_flows.len(), "");
        d.xstat("memory_used", self.memory_usage, "");
        d.xstat("drop_overmemory", self.drop_overmemory, "");
        d.xstats_text.push(format!(
            "maxpacket {} drop_overlimit {} new_flow_count {} ecn_mark {}",
            c.maxpacket, self.drop_overlimit, self.new_flow_count, c.ecn_mark
        ));
        d.xstats_text.push(format!(
            "new_flows_len {} old_flows_len {}",
            self.new_flows.len(),
            self.old_flows.len()
        ));
        d
    }

    fn change(&mut self, opts: &QdiscOptions, _dev: &QdiscDev) -> Result<(), DatapathError> {
        match opts {
            QdiscOptions::FqCodel(o) if o.flows.is_none_or(|f| f as usize == self.flows.len()) => {
                self.tune(o);
                Ok(())
            }
            QdiscOptions::FqCodel(_) => Err(errno(EINVAL, "fq_codel: flows cannot change")),
            _ => Err(errno(EINVAL, "fq_codel: wrong options")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T: u64 = 1_000_000_000_000;

    fn dev() -> QdiscDev {
        QdiscDev {
            txqueuelen: 1000,
            mtu: 1500,
            tx_queues: 1,
        }
    }

    fn q(o: FqCodelOptions) -> Box<dyn Qdisc> {
        let mut q = FqCodel::create(&QdiscOptions::FqCodel(o), &dev()).unwrap();
        q.set_handle(0x1_0000);
        q
    }

    /// A packet for flow `flow` of this qdisc (skb->priority 1:flow).
    fn pkt(id: u64, flow: u32, len: usize) -> Pkt {
        let mut skb = SkBuff::new(&vec![0u8; len], 64, 2, 1500);
        skb.priority = 0x1_0000 | flow;
        Pkt {
            id,
            ts: 0,
            skb: Box::new(skb),
        }
    }

    fn put(q: &mut Box<dyn Qdisc>, p: Pkt, now: u64) -> Vec<u64> {
        let mut none = |_: u32, _: &mut Pkt| Classified::NoMatch;
        let mut cx = EnqueueCtx::new(&mut none);
        cx.now = now;
        assert!(q.enqueue_at(p, &mut cx).is_ok());
        cx.dropped.iter().map(|p| p.id).collect()
    }

    /// The defaults as the seed's `tc qdisc show` prints them.
    #[test]
    fn defaults_as_the_seed_shows_them() {
        let d = q(FqCodelOptions::default()).dump();
        assert_eq!(
            d.options_text.join(" "),
            "limit 10240p flows 1024 quantum 1514 target 5ms interval 100ms memory_limit 32Mb ecn drop_batch 64"
        );
        assert_eq!(d.options.get("target"), Some(&4999.into()));
    }

    /// Deficit round robin with quantum 1514 over two flows of 1000-byte
    /// packets: a new flow starts with one quantum; a flow whose deficit
    /// is spent gets another and goes to the tail of the old flows.
    #[test]
    fn flows_take_turns_by_deficit() {
        let mut q = q(FqCodelOptions::default());
        for i in 0..6 {
            put(&mut q, pkt(10 + i, 1, 1000), T);
        }
        for i in 0..6 {
            put(&mut q, pkt(20 + i, 2, 1000), T);
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue_at(T).map(|p| p.id)).collect();
        assert_eq!(order, vec![10, 11, 20, 21, 12, 13, 22, 23, 14, 24, 15, 25]);
        assert_eq!(q.dump().xstats.get("new_flow_count"), Some(&2.into()));
    }

    /// CoDel: above target (5 ms) for an interval (100 ms) drops one and
    /// enters the dropping state; the next drop comes interval/sqrt(2)
    /// after the first's drop_next (control law).
    #[test]
    fn codel_drops_after_an_interval_above_target() {
        let mut q = q(FqCodelOptions::default());
        for i in 0..20 {
            put(&mut q, pkt(i, 1, 1514), T);
        }
        let mut out = Vec::new();
        // 10 ms of sojourn: first_above_time = now + 100 ms, no drop.
        assert_eq!(q.dequeue_at(T + 10 * MS).map(|p| p.id), Some(0));
        q.take_dropped(&mut out);
        assert!(out.is_empty());
        // Past first_above_time: packet 1 dropped, 2 sent; drop_next is
        // now + 100 ms.
        assert_eq!(q.dequeue_at(T + 120 * MS).map(|p| p.id), Some(2));
        assert_eq!(q.dequeue_at(T + 200 * MS).map(|p| p.id), Some(3));
        // At drop_next (220 ms): count 2, packet 4 dropped, 5 sent.
        assert_eq!(q.dequeue_at(T + 221 * MS).map(|p| p.id), Some(5));
        q.take_dropped(&mut out);
        assert_eq!(out.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 4]);
        let s = q.stats();
        assert_eq!((s.drops, s.packets, s.qlen), (2, 4, 14));
        assert_eq!(q.dump().xstats.get("maxpacket"), Some(&1514.into()));
    }

    /// Over `limit`: half the fattest flow's backlog goes from its head,
    /// at most drop_batch packets (fq_codel_drop).
    #[test]
    fn over_limit_drops_from_the_fattest_flow() {
        let mut q = q(FqCodelOptions {
            limit: Some(10),
            ..Default::default()
        });
        for i in 0..8 {
            assert!(put(&mut q, pkt(i, 1, 1000), T).is_empty());
        }
        for i in 0..2 {
            assert!(put(&mut q, pkt(100 + i, 2, 1000), T).is_empty());
        }
        // The 11th: flow 1 (9000 bytes) loses half, 5 packets (>= 4500).
        assert_eq!(put(&mut q, pkt(8, 1, 1000), T), vec![0, 1, 2, 3, 4]);
        let s = q.stats();
        assert_eq!((s.qlen, s.drops), (6, 5));
        assert_eq!(q.dump().xstats.get("drop_overlimit"), Some(&5.into()));
    }
}
