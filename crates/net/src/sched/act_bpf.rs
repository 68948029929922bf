//! act_bpf (net/sched/act_bpf.c): a BPF_PROG_TYPE_SCHED_ACT (or SCHED_CLS)
//! program as an action; its return value may override the action's verdict.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use skiff_vm::Program;

use super::act_api::{
    control_name, ActOps, TcfCommon, TC_ACT_OK, TC_ACT_PIPE, TC_ACT_RECLASSIFY, TC_ACT_REDIRECT,
    TC_ACT_SHOT, TC_ACT_UNSPEC,
};
use super::cls_api::{qdisc_pkt_len, TcfEnv, TcfResult};
use crate::buff::SkBuff;

pub struct ActBpf {
    pub prog: Arc<Program>,
    /// How tc names it ("act.o:[action]").
    pub name: String,
}

/// net/sched/act_bpf.c: tcf_bpf_act's mapping of the program's return value:
/// PIPE, RECLASSIFY, OK, REDIRECT and SHOT replace the verdict, -1 (UNSPEC)
/// keeps the configured one, anything else is UNSPEC.
pub fn act_bpf_verdict(filter_res: i64, configured: i64) -> i64 {
    match filter_res {
        TC_ACT_PIPE | TC_ACT_RECLASSIFY | TC_ACT_OK | TC_ACT_REDIRECT | TC_ACT_SHOT => filter_res,
        TC_ACT_UNSPEC => configured,
        _ => TC_ACT_UNSPEC,
    }
}

impl ActOps for ActBpf {
    fn kind(&self) -> &'static str {
        "bpf"
    }

    /// net/sched/act_bpf.c: tcf_bpf_act.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        let r = env.run_bpf(&self.prog, skb);
        let action = act_bpf_verdict(r, common.control);
        if r == TC_ACT_SHOT {
            common.stats.drop_inc();
        }
        action
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        out.insert("bpf_name".into(), json!(self.name));
        out.insert(
            "prog".into(),
            json!({"id": self.prog.id, "name": self.prog.name}),
        );
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        format!(
            "{} id {} name {} default-action {}",
            self.name,
            self.prog.id,
            self.prog.name,
            control_name(common.control)
        )
    }
}
