//! net/sched/sch_prio.c: prio — `bands` child qdiscs (pfifo by default),
//! a packet's band picked by the filters at the qdisc, else by
//! skb->priority (its minor when its major is the qdisc's handle, else
//! through the priomap); band 0 is dequeued first.

use super::dump::handle_str;
use super::pfifo_fast::{priomap_dump, PRIO2BAND, TC_PRIO_MAX};
use super::{
    default_leaf, tc_h_maj, tc_h_make, tc_h_min, ClassOps, ClassOptions, ClassShow, Classified,
    Dump, EnqueueCtx, Qdisc, QdiscDev, QdiscOptions, QdiscStats, Refused, Sch,
};
use crate::core::{errno, DatapathError, Pkt, EINVAL, ENOENT, EOPNOTSUPP};

/// include/uapi/linux/pkt_sched.h: TCQ_PRIO_BANDS / TCQ_MIN_PRIO_BANDS.
pub const TCQ_PRIO_BANDS: u32 = 16;
pub const TCQ_MIN_PRIO_BANDS: u32 = 2;

/// struct tc_prio_qopt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrioOptions {
    pub bands: u32,
    pub priomap: [u8; 16],
}

impl Default for PrioOptions {
    /// tc's defaults (q_prio.c): 3 bands, pfifo_fast's priomap.
    fn default() -> Self {
        let mut priomap = [0u8; 16];
        for (m, b) in priomap.iter_mut().zip(PRIO2BAND) {
            *m = b as u8;
        }
        PrioOptions { bands: 3, priomap }
    }
}

pub(crate) struct Prio {
    handle: u32,
    prio2band: [usize; 16],
    queues: Vec<Sch>,
    stats: QdiscStats,
    dev: QdiscDev,
}

impl Prio {
    pub fn create(opts: &QdiscOptions, dev: &QdiscDev) -> Result<Box<dyn Qdisc>, DatapathError> {
        let QdiscOptions::Prio(o) = opts else {
            return Err(errno(EINVAL, "prio: wrong options"));
        };
        let mut p = Prio {
            handle: 0,
            prio2band: [0; 16],
            queues: Vec::new(),
            stats: QdiscStats::default(),
            dev: *dev,
        };
        p.tune(o)?;
        Ok(Box::new(p))
    }

    /// prio_tune: bands 2..=16, every priomap entry below bands; bands
    /// beyond the new count go, new ones get a default pfifo.
    fn tune(&mut self, o: &PrioOptions) -> Result<(), DatapathError> {
        if !(TCQ_MIN_PRIO_BANDS..=TCQ_PRIO_BANDS).contains(&o.bands) {
            return Err(errno(
                EINVAL,
                format!("prio: bands {} outside 2..16", o.bands),
            ));
        }
        if let Some(b) = o.priomap.iter().find(|&&b| b as u32 >= o.bands) {
            return Err(errno(
                EINVAL,
                format!("prio: priomap band {b} >= bands {}", o.bands),
            ));
        }
        for (m, b) in self.prio2band.iter_mut().zip(o.priomap) {
            *m = b as usize;
        }
        let bands = o.bands as usize;
        self.queues.truncate(bands);
        while self.queues.len() < bands {
            let classid = tc_h_make(self.handle, self.queues.len() as u32 + 1);
            self.queues.push(default_leaf(&self.dev, 0, classid));
        }
        Ok(())
    }

    /// prio_classify: the band of a packet, None when an action took it.
    fn classify(&mut self, pkt: &mut Pkt, cx: &mut EnqueueCtx) -> Result<usize, Classified> {
        let mut band = pkt.skb.priority;
        if tc_h_maj(pkt.skb.priority) != self.handle {
            match (cx.classify)(self.handle, pkt) {
                r @ (Classified::Shot | Classified::Stolen) => return Err(r),
                Classified::NoMatch => {
                    if tc_h_maj(band) != 0 {
                        band = 0;
                    }
                    return Ok(self.prio2band[(band & TC_PRIO_MAX) as usize]);
                }
                Classified::Class(c) => band = c,
            }
        }
        let b = tc_h_min(band).wrapping_sub(1) as usize;
        if b >= self.queues.len() {
            return Ok(self.prio2band[0]);
        }
        Ok(b)
    }

    fn band_of(&self, classid: u32) -> Result<usize, DatapathError> {
        let b = tc_h_min(classid) as usize;
        if tc_h_maj(classid) != self.handle || b == 0 || b > self.queues.len() {
            return Err(errno(
                ENOENT,
                format!("prio: no class {}", handle_str(classid)),
            ));
        }
        Ok(b - 1)
    }
}

impl Qdisc for Prio {
    fn kind(&self) -> &'static str {
        "prio"
    }

    /// prio_enqueue.
    fn enqueue_at(&mut self, mut pkt: Pkt, cx: &mut EnqueueCtx) -> Result<(), Refused> {
        let band = match self.classify(&mut pkt, cx) {
            Ok(b) => b,
            Err(Classified::Stolen) => return Err(Refused::Stolen(pkt)),
            Err(_) => {
                self.stats.drops += 1;
                return Err(Refused::Drop(pkt));
            }
        };
        let Some(q) = self.queues.get_mut(band) else {
            self.stats.drops += 1;
            return Err(Refused::Drop(pkt));
        };
        self.stats.enqueue_child(&mut **q, pkt, cx)
    }

    /// prio_dequeue: the first band with a packet.
    fn dequeue_at(&mut self, now: u64) -> Option<Pkt> {
        let p = self.queues.iter_mut().find_map(|q| q.dequeue_at(now))?;
        self.stats.sent(p.skb.len());
        Some(p)
    }

    fn peek(&self) -> Option<&Pkt> {
        self.queues.iter().find_map(|q| q.peek())
    }

    fn reset(&mut self, drop: &mut dyn FnMut(Pkt)) {
        for q in &mut self.queues {
            q.reset(drop);
        }
        self.stats.backlog = 0;
        self.stats.qlen = 0;
    }

    fn qlen(&self) -> usize {
        self.queues.iter().map(|q| q.qlen()).sum()
    }

    fn stats(&self) -> QdiscStats {
        self.stats
    }

    fn tree_reduce_backlog(&mut self, n: usize, bytes: u64) {
        self.stats.qlen = self.stats.qlen.saturating_sub(n as u64);
        self.stats.backlog = self.stats.backlog.saturating_sub(bytes);
    }

    fn watchdog(&self) -> Option<u64> {
        None
    }

    fn dump(&self) -> Dump {
        let mut map = [0usize; 16];
        map.copy_from_slice(&self.prio2band);
        priomap_dump(self.queues.len(), &map)
    }

    fn change(&mut self, opts: &QdiscOptions, _dev: &QdiscDev) -> Result<(), DatapathError> {
        match opts {
            QdiscOptions::Prio(o) => self.tune(o),
            _ => Err(errno(EINVAL, "prio: wrong options")),
        }
    }

    fn set_handle(&mut self, handle: u32) {
        self.handle = handle;
        for (i, q) in self.queues.iter_mut().enumerate() {
            q.parent = tc_h_make(handle, i as u32 + 1);
        }
    }

    fn classes(&mut self) -> Option<&mut dyn ClassOps> {
        Some(self)
    }

    fn children(&self) -> Vec<&Sch> {
        self.queues.iter().collect()
    }

    fn children_mut(&mut self) -> Vec<&mut Sch> {
        self.queues.iter_mut().collect()
    }

    /// prio_dump_class / prio_dump_class_stats: a class per band.
    fn class_dumps(&self) -> Vec<ClassShow> {
        self.queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let classid = tc_h_make(self.handle, i as u32 + 1);
                let mut c =
                    ClassShow::new("prio", classid, self.handle, q.stats(), Dump::default());
                c.leaf = (q.handle != 0).then(|| handle_str(q.handle));
                c
            })
            .collect()
    }
}

impl ClassOps for Prio {
    /// prio_change_class... there is none: the bands are the classes.
    fn change(
        &mut self,
        classid: u32,
        _parent: u32,
        _opts: &ClassOptions,
        _dev: &QdiscDev,
        _now: u64,
    ) -> Result<Vec<Pkt>, DatapathError> {
        Err(errno(
            EOPNOTSUPP,
            format!(
                "prio: classes are its bands ({}); they cannot be added",
                handle_str(classid)
            ),
        ))
    }

    fn delete(&mut self, classid: u32) -> Result<Vec<Pkt>, DatapathError> {
        Err(errno(
            EOPNOTSUPP,
            format!(
                "prio: class {} is a band; it cannot be deleted",
                handle_str(classid)
            ),
        ))
    }

    /// prio_graft: a new qdisc for a band (what it held is dropped).
    fn graft(&mut self, classid: u32, new: Sch) -> Result<Sch, DatapathError> {
        let b = self.band_of(classid)?;
        let old_q = std::mem::replace(&mut self.queues[b], new);
        self.stats.qlen = self.stats.qlen.saturating_sub(old_q.qlen() as u64);
        self.stats.backlog = self.stats.backlog.saturating_sub(old_q.stats().backlog);
        Ok(old_q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buff::SkBuff;

    fn pkt(id: u64, priority: u32, mark: u32) -> Pkt {
        let mut skb = SkBuff::new(&[0u8; 100], 64, 2, 1500);
        skb.priority = priority;
        skb.mark = mark;
        Pkt {
            id,
            ts: 0,
            skb: Box::new(skb),
        }
    }

    /// prio_classify: skb->priority through the priomap (6 -> band 0,
    /// 0 -> 1, 2 -> 2); a priority 1:N picks band N-1; a filter's classid
    /// likewise, out of range -> prio2band[0]; SHOT drops (counted).
    #[test]
    fn bands_as_prio_classify_picks_them() {
        let dev = QdiscDev {
            txqueuelen: 1000,
            mtu: 1500,
            tx_queues: 1,
        };
        let mut q = Prio::create(&QdiscOptions::Prio(PrioOptions::default()), &dev).unwrap();
        q.set_handle(0x1_0000);
        let mut filters = |_: u32, p: &mut Pkt| match p.skb.mark {
            1 => Classified::Class(0x1_0003),
            2 => Classified::Class(0x1_0009),
            3 => Classified::Shot,
            _ => Classified::NoMatch,
        };
        let mut send = |q: &mut Box<dyn Qdisc>, p: Pkt| {
            let mut cx = EnqueueCtx::new(&mut filters);
            q.enqueue_at(p, &mut cx).is_ok()
        };
        assert!(send(&mut q, pkt(1, 0, 0))); // band 1
        assert!(send(&mut q, pkt(2, 2, 0))); // band 2
        assert!(send(&mut q, pkt(3, 6, 0))); // band 0
        assert!(send(&mut q, pkt(4, 0x1_0001, 0))); // 1:1 -> band 0
        assert!(send(&mut q, pkt(5, 0, 1))); // filter 1:3 -> band 2
        assert!(send(&mut q, pkt(6, 0, 2))); // filter 1:9 -> prio2band[0] = 1
        assert!(!send(&mut q, pkt(7, 0, 3))); // SHOT
        let order: Vec<u64> = std::iter::from_fn(|| q.dequeue_at(0).map(|p| p.id)).collect();
        assert_eq!(order, vec![3, 4, 1, 6, 2, 5]);
        let s = q.stats();
        assert_eq!((s.packets, s.drops, s.qlen), (6, 1, 0));
        let c = q.class_dumps();
        let sent: Vec<(String, u64)> = c.iter().map(|c| (c.handle.clone(), c.packets)).collect();
        assert_eq!(
            sent,
            vec![("1:1".into(), 2), ("1:2".into(), 2), ("1:3".into(), 2)]
        );
    }
}
