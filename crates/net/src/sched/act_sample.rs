//! act_sample (net/sched/act_sample.c): one packet in `rate` (at random) is
//! sampled to a psample group. skiff has no psample netlink listeners: it
//! counts the packets it would send.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::act_api::{control_name, ActOps, TcfCommon};
use super::act_gact::random_u32_below;
use super::cls_api::{qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;

#[derive(Debug)]
pub struct Sample {
    pub rate: u32,
    pub group: u32,
    /// `trunc SIZE` (0: the whole packet).
    pub trunc: u32,
    /// Packets sampled (psample_sample_packet calls).
    pub sampled: AtomicU64,
}

impl ActOps for Sample {
    fn kind(&self) -> &'static str {
        "sample"
    }

    /// net/sched/act_sample.c: tcf_sample_act — sampled when
    /// get_random_u32_below(rate) == 0.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        if random_u32_below(env.prandom_u32(), self.rate) == 0 {
            self.sampled.fetch_add(1, Ordering::Relaxed);
        }
        common.control
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        out.insert("rate".into(), json!(self.rate));
        if self.trunc != 0 {
            out.insert("trunc".into(), json!(self.trunc));
        }
        out.insert("group".into(), json!(self.group));
        out.insert(
            "sampled".into(),
            json!(self.sampled.load(Ordering::Relaxed)),
        );
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        let mut s = format!("rate 1/{} group {}", self.rate, self.group);
        if self.trunc != 0 {
            s.push_str(&format!(" trunc_size {}", self.trunc));
        }
        s.push(' ');
        s.push_str(&control_name(common.control));
        s
    }
}
