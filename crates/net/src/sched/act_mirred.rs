//! act_mirred (net/sched/act_mirred.c): send the packet or a copy of it to
//! another device's egress or ingress (redirect / mirror).

use serde_json::{json, Map, Value};

use super::act_api::{
    control_name, ActOps, TcfCommon, TC_ACT_CONSUMED, TC_ACT_QUEUED, TC_ACT_SHOT, TC_ACT_STOLEN,
    TC_ACT_TRAP,
};
use super::cls_api::{qdisc_pkt_len, MirredTarget, TcfEnv, TcfResult};
use crate::buff::SkBuff;

/// include/uapi/linux/tc_act/tc_mirred.h: TCA_{EGRESS,INGRESS}_{REDIR,MIRROR}.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirredAction {
    EgressRedir,
    EgressMirror,
    IngressRedir,
    IngressMirror,
}

impl MirredAction {
    /// tcf_mirred_is_act_redirect.
    pub fn is_redirect(self) -> bool {
        matches!(self, MirredAction::EgressRedir | MirredAction::IngressRedir)
    }

    /// tcf_mirred_act_wants_ingress.
    pub fn wants_ingress(self) -> bool {
        matches!(
            self,
            MirredAction::IngressRedir | MirredAction::IngressMirror
        )
    }

    /// The control action tc gives it when none is named: STOLEN for a
    /// redirect, PIPE for a mirror (m_mirred.c).
    pub fn default_control(self) -> i64 {
        if self.is_redirect() {
            TC_ACT_STOLEN
        } else {
            super::act_api::TC_ACT_PIPE
        }
    }
}

/// The mirred action: what to do and the device (resolved when configured,
/// as tcf_mirred_init holds the net_device).
#[derive(Debug)]
pub struct Mirred {
    pub eaction: MirredAction,
    pub dev: crate::core::DevId,
    pub dev_name: String,
}

/// net/sched/act_mirred.c: tcf_mirred_can_reinsert — a verdict after which
/// the caller no longer needs the skb, so a redirect may send it itself.
fn can_reinsert(action: i64) -> bool {
    matches!(
        action,
        TC_ACT_SHOT | TC_ACT_STOLEN | TC_ACT_QUEUED | TC_ACT_TRAP
    )
}

impl ActOps for Mirred {
    fn kind(&self) -> &'static str {
        "mirred"
    }

    /// net/sched/act_mirred.c: tcf_mirred_act / tcf_mirred_to_dev. At tc
    /// ingress a redirect whose verdict frees the skb sends the skb itself
    /// (TC_ACT_CONSUMED; the caller moves it to `res.redirect`); otherwise
    /// a clone goes and the verdict is the action's. A target that is down
    /// fails the send: an overlimit, and a redirect's verdict becomes SHOT.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> i64 {
        common.stats.bstats_update(qdisc_pkt_len(skb));
        let mut retval = common.control;
        let is_redirect = self.eaction.is_redirect();
        let to = MirredTarget {
            dev: self.dev,
            ingress: self.eaction.wants_ingress(),
        };
        if !env.dev_up(self.dev) {
            common.stats.overlimit_inc();
            if is_redirect {
                retval = TC_ACT_SHOT;
            }
            return retval;
        }
        if skb.tc_at_ingress && is_redirect && can_reinsert(retval) {
            res.redirect = Some(to);
            return TC_ACT_CONSUMED;
        }
        if !env.mirred_clone(skb, to) {
            common.stats.overlimit_inc();
        }
        retval
    }

    fn dump(&self, _common: &TcfCommon, out: &mut Map<String, Value>) {
        let (what, dir) = self.names();
        out.insert("mirred_action".into(), json!(what));
        out.insert("direction".into(), json!(dir));
        out.insert("to_dev".into(), json!(self.dev_name));
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        let (what, dir) = self.names();
        let cap = |s: &str| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        };
        format!(
            "({} {} to device {}) {}",
            cap(dir),
            cap(what),
            self.dev_name,
            control_name(common.control)
        )
    }
}

impl Mirred {
    fn names(&self) -> (&'static str, &'static str) {
        let what = if self.eaction.is_redirect() {
            "redirect"
        } else {
            "mirror"
        };
        let dir = if self.eaction.wants_ingress() {
            "ingress"
        } else {
            "egress"
        };
        (what, dir)
    }
}
