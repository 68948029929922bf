//! A rule's target (`-j NAME ...` / `-g CHAIN`): the standard verdicts and
//! jumps, and the extension targets; each extension's logic is in its own
//! file named as the kernel names it (xt_mark, ipt_REJECT, xt_LOG).

use super::conntrack::xt::{self, ConnmarkMode};
use super::ip_tables::XtPkt;
use super::ipt_reject::RejectWith;
use super::nat::NatTarget;
use super::xt_log::XtLog;
use super::xt_mark::XtMarkTarget;
use super::{NfHookState, NfReply, NfSkb, NfVerdict, XtEnv};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XtTarget {
    /// No target: the rule only counts (XT_CONTINUE).
    None,
    Accept,
    Drop,
    Return,
    /// `-j QUEUE` (queue 0) and `-j NFQUEUE --queue-num N [--queue-bypass]`.
    Queue {
        num: u16,
        bypass: bool,
    },
    /// `-j CHAIN`: an index in the table's chains.
    Jump(usize),
    /// `-g CHAIN`.
    Goto(usize),
    Reject(RejectWith),
    Mark(XtMarkTarget),
    Log(XtLog),
    /// DNAT, SNAT, MASQUERADE, REDIRECT: the nat hook binds the connection
    /// (nf-ct's nf_nat_setup_info); the verdict is NF_ACCEPT.
    Nat(NatTarget),
    /// CONNMARK --set-xmark / --save-mark / --restore-mark.
    Connmark(ConnmarkMode),
    /// CT --notrack.
    Notrack,
}

impl XtTarget {
    /// The chain a jump or goto leads to.
    pub fn chain(&self) -> Option<usize> {
        match self {
            XtTarget::Jump(c) | XtTarget::Goto(c) => Some(*c),
            _ => None,
        }
    }

    /// The target function (xt_target->target, or the standard target's
    /// verdict). None is XT_CONTINUE. Jumps, gotos and RETURN are the
    /// traversal's.
    pub fn run(
        &self,
        p: &XtPkt,
        skb: &mut NfSkb,
        st: &NfHookState,
        env: &mut XtEnv,
    ) -> Option<NfVerdict> {
        match self {
            XtTarget::None | XtTarget::Jump(_) | XtTarget::Goto(_) | XtTarget::Return => None,
            XtTarget::Accept => Some(NfVerdict::Accept),
            XtTarget::Drop => Some(NfVerdict::Drop),
            XtTarget::Queue { num, bypass } => Some(NfVerdict::Queue {
                num: *num,
                bypass: *bypass,
            }),
            XtTarget::Reject(with) => {
                // reject_tg / reject_tg6: the reply is sent by the stack after
                // the hook (nf_send_unreach, nf_send_reset), the packet dropped.
                env.replies.push(NfReply {
                    with: *with,
                    pf: st.pf,
                    hook: st.hook,
                    in_ifindex: st.in_ifindex,
                    pkt: skb.pkt.clone(),
                });
                Some(NfVerdict::Drop)
            }
            XtTarget::Mark(m) => {
                m.apply(skb.mark);
                None
            }
            XtTarget::Log(l) => {
                env.log_line(l.line(p, skb, st));
                None
            }
            XtTarget::Nat(_) => Some(NfVerdict::Accept),
            XtTarget::Connmark(mode) => {
                if let Some(ct) = env.ct.as_deref_mut() {
                    xt::connmark_target(ct, skb.nfct, skb.mark, *mode);
                }
                None
            }
            XtTarget::Notrack => {
                xt::notrack(skb.nfct);
                None
            }
        }
    }
}
