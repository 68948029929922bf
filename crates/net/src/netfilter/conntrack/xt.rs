//! What the conntrack matches and targets read and write
//! (net/netfilter/xt_conntrack.c, xt_state.c, xt_connmark.c, xt_CT.c): nf-hooks
//! parses the rules and calls these.

use super::{Conntrack, IpConntrackInfo, NfConn, NfCt, IPS_DST_NAT, IPS_SRC_NAT};

/// XT_CONNTRACK_STATE_INVALID.
pub const XT_CONNTRACK_STATE_INVALID: u32 = 1 << 0;
/// XT_CONNTRACK_STATE_SNAT.
pub const XT_CONNTRACK_STATE_SNAT: u32 = 1 << 8;
/// XT_CONNTRACK_STATE_DNAT.
pub const XT_CONNTRACK_STATE_DNAT: u32 = 1 << 9;
/// XT_CONNTRACK_STATE_UNTRACKED.
pub const XT_CONNTRACK_STATE_UNTRACKED: u32 = 1 << 10;
/// XT_STATE_UNTRACKED (xt_state's own bit for it).
pub const XT_STATE_UNTRACKED: u32 = 1 << 4;

/// XT_CONNTRACK_STATE_BIT / XT_STATE_BIT: ESTABLISHED 2, RELATED 4, NEW 8.
pub fn state_bit(info: IpConntrackInfo) -> u32 {
    1 << ((info as u32) % 3 + 1)
}

/// nf_ct_get: the packet's entry and ctinfo (None for no ct and untracked).
pub fn nf_ct_get<'a>(
    ct: &'a Conntrack,
    nfct: &Option<NfCt>,
) -> Option<(&'a NfConn, IpConntrackInfo)> {
    let n = (*nfct)?;
    if n.info == IpConntrackInfo::Untracked {
        return None;
    }
    ct.get(n.id).map(|c| (c, n.info))
}

/// conntrack_mt's state bits for `-m conntrack --ctstate`: the ctinfo bit,
/// INVALID without a ct, UNTRACKED for notrack, plus SNAT/DNAT from the
/// status.
pub fn ctstate(ct: &Conntrack, nfct: &Option<NfCt>) -> u32 {
    match nf_ct_get(ct, nfct) {
        Some((c, info)) => {
            let mut bits = state_bit(info);
            if c.status & IPS_SRC_NAT != 0 {
                bits |= XT_CONNTRACK_STATE_SNAT;
            }
            if c.status & IPS_DST_NAT != 0 {
                bits |= XT_CONNTRACK_STATE_DNAT;
            }
            bits
        }
        None if is_untracked(nfct) => XT_CONNTRACK_STATE_UNTRACKED,
        None => XT_CONNTRACK_STATE_INVALID,
    }
}

/// state_mt's bits for `-m state --state`.
pub fn state(ct: &Conntrack, nfct: &Option<NfCt>) -> u32 {
    match nf_ct_get(ct, nfct) {
        Some((_, info)) => state_bit(info),
        None if is_untracked(nfct) => XT_STATE_UNTRACKED,
        None => XT_CONNTRACK_STATE_INVALID,
    }
}

fn is_untracked(nfct: &Option<NfCt>) -> bool {
    nfct.is_some_and(|n| n.info == IpConntrackInfo::Untracked)
}

/// `--ctstatus`: the entry's status bits (None without a ct: no match).
pub fn ctstatus(ct: &Conntrack, nfct: &Option<NfCt>) -> Option<u32> {
    nf_ct_get(ct, nfct).map(|(c, _)| c.status)
}

/// `-m connmark --mark`: the entry's mark (None without a ct: no match).
pub fn connmark(ct: &Conntrack, nfct: &Option<NfCt>) -> Option<u32> {
    nf_ct_get(ct, nfct).map(|(c, _)| c.mark)
}

/// The CONNMARK target's modes (XT_CONNMARK_SET, _SAVE, _RESTORE), with the
/// revision-2 shifts left at zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnmarkMode {
    /// ct->mark = (ct->mark & ~ctmask) ^ ctmark.
    Set { ctmark: u32, ctmask: u32 },
    /// ct->mark = (ct->mark & ~ctmask) ^ (skb->mark & nfmask).
    Save { ctmask: u32, nfmask: u32 },
    /// skb->mark = (skb->mark & ~nfmask) ^ (ct->mark & ctmask).
    Restore { ctmask: u32, nfmask: u32 },
}

/// connmark_tg_shift: applies a CONNMARK rule (always XT_CONTINUE).
pub fn connmark_target(
    ct: &mut Conntrack,
    nfct: &Option<NfCt>,
    skb_mark: &mut u32,
    mode: ConnmarkMode,
) {
    let Some(n) = *nfct else { return };
    if n.info == IpConntrackInfo::Untracked {
        return;
    }
    let Some(c) = ct.get_mut(n.id) else { return };
    match mode {
        ConnmarkMode::Set { ctmark, ctmask } => c.mark = (c.mark & !ctmask) ^ ctmark,
        ConnmarkMode::Save { ctmask, nfmask } => c.mark = (c.mark & !ctmask) ^ (*skb_mark & nfmask),
        ConnmarkMode::Restore { ctmask, nfmask } => {
            *skb_mark = (*skb_mark & !nfmask) ^ (c.mark & ctmask)
        }
    }
}

/// `-j CT --notrack` (xt_ct_target with XT_CT_NOTRACK): the packet is
/// untracked unless it already has a ct.
pub fn notrack(nfct: &mut Option<NfCt>) {
    if nfct.is_none() {
        *nfct = Some(NfCt {
            id: 0,
            info: IpConntrackInfo::Untracked,
        });
    }
}

/// `-j CT --zone N`: attaches the rule's template (Conntrack::template_alloc
/// at rule load) so nf_conntrack_in tracks the packet in that zone.
pub fn ct_template(nfct: &mut Option<NfCt>, template_id: u32) {
    if nfct.is_none() {
        *nfct = Some(NfCt {
            id: template_id,
            info: IpConntrackInfo::New,
        });
    }
}
