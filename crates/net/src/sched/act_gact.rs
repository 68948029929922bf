//! act_gact (net/sched/act_gact.c): the generic actions — a control code
//! as the verdict (pass/ok, drop, pipe, continue, reclassify, trap,
//! goto chain, jump), optionally replaced by another with a probability
//! (`random netrand|determ ACTION VAL`).

use serde_json::{json, Map, Value};

use super::act_api::{control_json, control_name, ActOps, TcfCommon, TC_ACT_SHOT};
use super::cls_api::{qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;

/// include/uapi/linux/tc_act/tc_gact.h: PGACT_NETRAND / PGACT_DETERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GactProb {
    /// get_random_u32_below(pval) != 0 keeps the action (1 in pval switches).
    Netrand,
    /// Every pval-th packet takes the other action.
    Determ,
}

/// struct tcf_gact's probability part (tcfg_ptype, tcfg_pval, tcfg_paction).
#[derive(Debug)]
pub struct GactRandom {
    pub ptype: GactProb,
    pub pval: u32,
    pub paction: i64,
    /// gact->packets (gact_determ's atomic counter).
    packets: std::sync::atomic::AtomicU32,
}

impl GactRandom {
    pub fn new(ptype: GactProb, pval: u32, paction: i64) -> GactRandom {
        GactRandom {
            ptype,
            pval,
            paction,
            packets: Default::default(),
        }
    }
}

/// The gact action (its verdict is `TcfCommon::control`).
#[derive(Debug, Default)]
pub struct Gact {
    pub random: Option<GactRandom>,
}

/// include/linux/random.h: get_random_u32_below — `(u64)r * ceil >> 32`.
pub fn random_u32_below(r: u32, ceil: u32) -> u32 {
    ((r as u64 * ceil as u64) >> 32) as u32
}

impl ActOps for Gact {
    fn kind(&self) -> &'static str {
        "gact"
    }

    /// net/sched/act_gact.c: tcf_gact_act (gact_net_rand, gact_determ).
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> i64 {
        let mut action = common.control;
        if let Some(r) = &self.random {
            let keep = match r.ptype {
                GactProb::Netrand => random_u32_below(env.prandom_u32(), r.pval) != 0,
                GactProb::Determ => {
                    let pack = r
                        .packets
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        .wrapping_add(1);
                    r.pval == 0 || pack % r.pval != 0
                }
            };
            if !keep {
                action = r.paction;
            }
        }
        common.stats.bstats_update(qdisc_pkt_len(skb));
        if action == TC_ACT_SHOT {
            common.stats.drop_inc();
        }
        action
    }

    fn dump(&self, common: &TcfCommon, out: &mut Map<String, Value>) {
        out.insert("control_action".into(), control_json(common.control));
        if let Some(r) = &self.random {
            let t = match r.ptype {
                GactProb::Netrand => "netrand",
                GactProb::Determ => "determ",
            };
            out.insert(
                "prob".into(),
                json!({"random_type": t, "control_action": control_json(r.paction), "val": r.pval}),
            );
        }
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        let mut s = control_name(common.control);
        if let Some(r) = &self.random {
            let t = match r.ptype {
                GactProb::Netrand => "netrand",
                GactProb::Determ => "determ",
            };
            s.push_str(&format!(
                "\n\t random type {t} {} val {}",
                control_name(r.paction),
                r.pval
            ));
        }
        s
    }
}
