//! A rule's matches (`-m NAME ...`), one kernel match per variant; each
//! match's logic is in its own file named as the kernel names it.

use super::conntrack::xt;
use super::ip_tables::XtPkt;
use super::xt_addrtype::XtAddrtype;
use super::xt_mark::XtMarkMatch;
use super::xt_multiport::XtMultiport;
use super::xt_statistic::XtStatistic;
use super::xt_tcpudp::{XtTcp, XtUdp};
use super::{NfHookState, NfSkb, XtEnv};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XtMatch {
    Tcp(XtTcp),
    Udp(XtUdp),
    Multiport(XtMultiport),
    Mark(XtMarkMatch),
    /// xt_comment: matches always.
    Comment(String),
    Statistic(XtStatistic),
    Addrtype(XtAddrtype),
    /// `-m conntrack --ctstate S` (xt_conntrack's state bits).
    Conntrack {
        statemask: u32,
        invert: bool,
    },
    /// `-m state --state S`.
    State {
        statemask: u32,
        invert: bool,
    },
    /// `-m connmark --mark V[/M]`.
    Connmark {
        mark: u32,
        mask: u32,
        invert: bool,
    },
}

impl XtMatch {
    /// The match's name (`-m NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            XtMatch::Tcp(_) => "tcp",
            XtMatch::Udp(_) => "udp",
            XtMatch::Multiport(_) => "multiport",
            XtMatch::Mark(_) => "mark",
            XtMatch::Comment(_) => "comment",
            XtMatch::Statistic(_) => "statistic",
            XtMatch::Addrtype(_) => "addrtype",
            XtMatch::Conntrack { .. } => "conntrack",
            XtMatch::State { .. } => "state",
            XtMatch::Connmark { .. } => "connmark",
        }
    }

    /// The match function (xt_match->match).
    pub fn matches(&mut self, p: &XtPkt, skb: &NfSkb, st: &NfHookState, env: &mut XtEnv) -> bool {
        match self {
            XtMatch::Tcp(m) => p.proto == skiff_wire::IPPROTO_TCP && m.matches(p, skb.pkt),
            XtMatch::Udp(m) => p.proto == skiff_wire::IPPROTO_UDP && m.matches(p, skb.pkt),
            XtMatch::Multiport(m) => m.matches(p, skb.pkt),
            XtMatch::Mark(m) => m.matches(*skb.mark),
            XtMatch::Comment(_) => true,
            XtMatch::Statistic(m) => m.matches(|| env.prandom_u32()),
            XtMatch::Addrtype(m) => m.matches(st.addr_types.0, st.addr_types.1),
            // conntrack_mt / state_mt / connmark_mt on nf-ct's table (no table:
            // no entry, INVALID).
            XtMatch::Conntrack { statemask, invert } => {
                let bits = match env.ct.as_deref() {
                    Some(ct) => xt::ctstate(ct, skb.nfct),
                    None => xt::XT_CONNTRACK_STATE_INVALID,
                };
                (bits & *statemask != 0) ^ *invert
            }
            XtMatch::State { statemask, invert } => {
                let bits = match env.ct.as_deref() {
                    Some(ct) => xt::state(ct, skb.nfct),
                    None => xt::XT_CONNTRACK_STATE_INVALID,
                };
                (bits & *statemask != 0) ^ *invert
            }
            XtMatch::Connmark { mark, mask, invert } => {
                let m = env.ct.as_deref().and_then(|ct| xt::connmark(ct, skb.nfct));
                m.is_some_and(|m| ((m & *mask) == *mark) ^ *invert)
            }
        }
    }
}
