//! act_police (net/sched/act_police.c): a token bucket in nanoseconds on
//! the engine's clock — `rate`/`burst`, an optional `peakrate` bucket of
//! `mtu` bytes — with a conform and an exceed verdict.

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::act_api::{control_json, control_name, ActOps, TcfCommon, TC_ACT_SHOT};
use super::cls_api::{qdisc_pkt_len, TcfEnv, TcfResult};
use super::rate::{psched_ns2ticks, psched_ticks2ns, PschedRate};
use crate::buff::SkBuff;

/// struct tc_police as tc sends it: rates in bytes/s, `burst` in psched
/// ticks (tc_calc_xmittime of the burst bytes at the rate), `mtu` in bytes
/// (0: 255 << cell_log with a rate, else unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoliceParams {
    pub rate: u64,
    pub peakrate: u64,
    pub burst_ticks: u32,
    pub mtu: u32,
    /// cell_log of tc's rate table (tc_calc_rtable: 3 for the default mtu 2047).
    pub cell_log: u8,
    /// tcfp_result: the verdict of a packet that conforms (TCA_POLICE_RESULT).
    pub conform: i64,
}

/// The bucket state (tcfp_toks, tcfp_ptoks, tcfp_t_c under tcfp_lock).
#[derive(Debug, Default)]
struct Bucket {
    toks: i64,
    ptoks: i64,
    t_c: i64,
}

/// The police action (its exceed verdict is `TcfCommon::control`).
#[derive(Debug)]
pub struct Police {
    pub params: PoliceParams,
    rate: Option<PschedRate>,
    peak: Option<PschedRate>,
    /// tcfp_burst and tcfp_mtu_ptoks in ns; tcfp_mtu in bytes.
    burst: i64,
    mtu: u32,
    mtu_ptoks: i64,
    bucket: Mutex<Bucket>,
}

impl Police {
    /// net/sched/act_police.c: tcf_police_init — the bucket starts full;
    /// t_c is 0 (the clock's start), so the first packet sees a full burst.
    pub fn new(p: PoliceParams) -> Police {
        let rate = (p.rate != 0).then(|| PschedRate::new(p.rate));
        let peak = match rate {
            Some(_) if p.peakrate != 0 => Some(PschedRate::new(p.peakrate)),
            _ => None,
        };
        let mtu = match (p.mtu, rate) {
            (0, Some(_)) => 255u32 << p.cell_log,
            (0, None) => u32::MAX,
            (m, _) => m,
        };
        let burst = psched_ticks2ns(p.burst_ticks as u64) as i64;
        let mtu_ptoks = peak.map(|r| r.l2t_ns(mtu) as i64).unwrap_or(0);
        Police {
            params: p,
            rate,
            peak,
            burst,
            mtu,
            mtu_ptoks,
            bucket: Mutex::new(Bucket {
                toks: burst,
                ptoks: mtu_ptoks,
                t_c: 0,
            }),
        }
    }
}

impl ActOps for Police {
    fn kind(&self) -> &'static str {
        "police"
    }

    /// net/sched/act_police.c: tcf_police_act.
    fn act(
        &self,
        common: &TcfCommon,
        skb: &mut SkBuff,
        _res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> i64 {
        let len = qdisc_pkt_len(skb);
        common.stats.bstats_update(len);
        let mut ret = common.control;
        let conformed = len <= self.mtu as usize && self.conforms(len as u32, env);
        if conformed {
            ret = self.params.conform;
        } else {
            common.stats.overlimit_inc();
        }
        if ret == TC_ACT_SHOT {
            common.stats.drop_inc();
        }
        ret
    }

    fn dump(&self, common: &TcfCommon, out: &mut Map<String, Value>) {
        out.insert("rate".into(), json!(rate_name(self.params.rate)));
        out.insert(
            "burst".into(),
            json!(burst_bytes(self.params.rate, self.burst)),
        );
        out.insert("mtu".into(), json!(self.mtu));
        if self.params.peakrate != 0 {
            out.insert("peakrate".into(), json!(rate_name(self.params.peakrate)));
        }
        out.insert("control_action".into(), control_json(common.control));
        out.insert("overhead".into(), json!(0));
        out.insert("conform_action".into(), control_json(self.params.conform));
    }

    fn dump_text(&self, common: &TcfCommon) -> String {
        format!(
            "rate {} burst {}b mtu {}b action {}/{} overhead 0b",
            rate_name(self.params.rate),
            burst_bytes(self.params.rate, self.burst),
            self.mtu,
            control_name(common.control),
            control_name(self.params.conform)
        )
    }
}

impl Police {
    /// The token arithmetic of tcf_police_act: credit the time since t_c
    /// (at most a burst), charge psched_l2t_ns of the length; both buckets
    /// must stay non-negative, then the new state is kept.
    fn conforms(&self, len: u32, env: &mut dyn TcfEnv) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let now = env.now_ns().min(i64::MAX as u64) as i64;
        let mut b = self.bucket.lock();
        let mut toks = now.saturating_sub(b.t_c).min(self.burst);
        let mut ptoks = 0;
        if let Some(peak) = self.peak {
            ptoks = toks.saturating_add(b.ptoks).min(self.mtu_ptoks);
            ptoks -= peak.l2t_ns(len) as i64;
        }
        toks = toks.saturating_add(b.toks).min(self.burst);
        toks -= rate.l2t_ns(len) as i64;
        if (toks | ptoks) >= 0 {
            b.t_c = now;
            b.toks = toks;
            b.ptoks = ptoks;
            return true;
        }
        false
    }
}

/// The burst in bytes as tc prints it back (tc_calc_xmitsize of the ticks).
fn burst_bytes(rate: u64, burst_ns: i64) -> u64 {
    let ticks = psched_ns2ticks(burst_ns.max(0) as u64);
    super::rate::xmitsize(rate, ticks)
}

fn rate_name(bytes_ps: u64) -> String {
    super::dump::rate_str(bytes_ps)
}
