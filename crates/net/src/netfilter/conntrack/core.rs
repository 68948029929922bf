//! The conntrack hook functions (net/netfilter/nf_conntrack_core.c):
//! nf_conntrack_in at PREROUTING/OUTPUT (priority CONNTRACK) and
//! nf_conntrack_confirm at INPUT/POSTROUTING (priority CONNTRACK_CONFIRM).

use super::proto_icmp::{self, IcmpError};
use super::proto_tcp::{self, TcpCtx};
use super::proto_udp;
use super::tuple::{self, L4Info, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use super::{
    Conntrack, Dir, IpConntrackInfo, NfCt, PacketVerdict, ProtoState, IPS_DYING, IPS_EXPECTED,
    IPS_SEEN_REPLY, IPS_TEMPLATE,
};
use crate::netfilter::{NfHook, NfHookState, NfSkb, NfVerdict};

const SEC: u64 = 1_000_000_000;
/// nf_conntrack_generic_timeout.
const GENERIC_TIMEOUT: u64 = 600 * SEC;

/// nf_conntrack_in: attaches the packet's connection (creating an
/// unconfirmed one for a new flow) and runs the protocol's state machine.
pub fn nf_conntrack_in(ct: &mut Conntrack, skb: &mut NfSkb, st: &NfHookState) -> NfVerdict {
    ct.now_ns = ct.now_ns.max(st.now_ns);
    let mut zone = 0u16;
    if let Some(nfct) = *skb.nfct {
        let tmpl = ct.get(nfct.id).filter(|c| c.status & IPS_TEMPLATE != 0);
        match tmpl {
            // A CT target's template: its zone, then track normally.
            Some(t) => zone = t.zone,
            // Already tracked (loopback) or untracked (notrack): leave it.
            None => return NfVerdict::Accept,
        }
        *skb.nfct = None;
    }
    let Some(l4) = tuple::get_l4proto(skb.pkt, st.pf) else {
        ct.stats.invalid += 1;
        return NfVerdict::Accept;
    };
    if (l4.protonum == IPPROTO_ICMP || l4.protonum == IPPROTO_ICMPV6)
        && handle_icmp(ct, skb, st, &l4, zone)
    {
        return NfVerdict::Accept;
    }
    // Bounded: a TCP reopen kills the entry it found, so the second lookup
    // creates a new one, which cannot ask to repeat.
    for _ in 0..2 {
        match resolve_normal_ct(ct, skb, st, &l4, zone) {
            Resolved::NoCt => {
                ct.stats.invalid += 1;
                return NfVerdict::Accept;
            }
            Resolved::Full => {
                ct.stats.drop += 1;
                return NfVerdict::Drop;
            }
            Resolved::Ct(nfct) => match handle_packet(ct, skb, st, &l4, nfct) {
                PacketVerdict::Accept => {
                    if nfct.info == IpConntrackInfo::EstablishedReply {
                        if let Some(c) = ct.get_mut(nfct.id) {
                            c.status |= IPS_SEEN_REPLY;
                        }
                    }
                    return NfVerdict::Accept;
                }
                PacketVerdict::Invalid => {
                    nf_ct_put(ct, skb.nfct);
                    ct.stats.invalid += 1;
                    return NfVerdict::Accept;
                }
                PacketVerdict::Repeat => nf_ct_put(ct, skb.nfct),
            },
        }
    }
    ct.stats.invalid += 1;
    NfVerdict::Accept
}

/// nf_conntrack_handle_icmp: errors find the flow they quote (RELATED).
/// True when the packet is done with (related, untracked or a bad error).
fn handle_icmp(
    ct: &mut Conntrack,
    skb: &mut NfSkb,
    st: &NfHookState,
    l4: &L4Info,
    zone: u16,
) -> bool {
    let verify = ct.checksum && st.hook == NfHook::PreRouting;
    match proto_icmp::icmp_error(skb.pkt, l4, st.pf, verify) {
        IcmpError::NotError => false,
        IcmpError::Untracked => {
            *skb.nfct = Some(NfCt {
                id: 0,
                info: IpConntrackInfo::Untracked,
            });
            true
        }
        IcmpError::Invalid => {
            ct.stats.error += 1;
            true
        }
        IcmpError::Quotes { inner, outer_daddr } => {
            // nf_conntrack_inet_error: conntrack[dir].dst must be the outer
            // destination, or the error is bogus.
            let found = ct.find(zone, &inner, st.now_ns).filter(|&(id, dir)| {
                ct.get(id)
                    .is_some_and(|c| c.tuplehash[dir as usize].dst == outer_daddr)
            });
            match found {
                Some((id, dir)) => {
                    let info = match dir {
                        Dir::Original => IpConntrackInfo::Related,
                        Dir::Reply => IpConntrackInfo::RelatedReply,
                    };
                    *skb.nfct = Some(NfCt { id, info });
                }
                None => ct.stats.error += 1,
            }
            true
        }
    }
}

enum Resolved {
    /// No conntrack (a tuple that does not parse or cannot be inverted).
    NoCt,
    /// The table is full (-ENOMEM from __nf_conntrack_alloc).
    Full,
    Ct(NfCt),
}

/// resolve_normal_ct: find the entry or make a new unconfirmed one
/// (init_conntrack), and say what the packet is to it.
fn resolve_normal_ct(
    ct: &mut Conntrack,
    skb: &mut NfSkb,
    st: &NfHookState,
    l4: &L4Info,
    zone: u16,
) -> Resolved {
    let Some(t) = tuple::pkt_to_tuple(skb.pkt, l4) else {
        return Resolved::NoCt;
    };
    let (id, dir) = match ct.find(zone, &t, st.now_ns) {
        Some(found) => found,
        None => {
            let Some(reply) = tuple::invert_tuple(&t) else {
                return Resolved::NoCt;
            };
            match ct.alloc(t, reply, zone, st.now_ns) {
                Some(id) => (id, Dir::Original),
                None => return Resolved::Full,
            }
        }
    };
    let status = ct.get(id).map_or(0, |c| c.status);
    let info = if dir == Dir::Reply {
        IpConntrackInfo::EstablishedReply
    } else if status & IPS_SEEN_REPLY != 0 {
        IpConntrackInfo::Established
    } else if status & IPS_EXPECTED != 0 {
        IpConntrackInfo::Related
    } else {
        IpConntrackInfo::New
    };
    let nfct = NfCt { id, info };
    *skb.nfct = Some(nfct);
    Resolved::Ct(nfct)
}

/// nf_conntrack_handle_packet: the protocol's tracker.
fn handle_packet(
    ct: &mut Conntrack,
    skb: &NfSkb,
    st: &NfHookState,
    l4: &L4Info,
    nfct: NfCt,
) -> PacketVerdict {
    let seg = l4.l4(skb.pkt);
    let verify = ct.checksum && st.hook == NfHook::PreRouting;
    match l4.protonum {
        IPPROTO_TCP => tcp_packet(ct, skb, l4, nfct, verify, st.now_ns),
        IPPROTO_UDP => {
            let zero_csum_v4 = st.pf == crate::netfilter::NfProto::Ipv4
                && seg.get(6..8).is_some_and(|c| c == [0, 0]);
            if proto_udp::udp_error(seg)
                || (verify && !zero_csum_v4 && !tuple::l4_checksum_ok(skb.pkt, l4))
            {
                return PacketVerdict::Invalid;
            }
            let Some(c) = ct.get_mut(nfct.id) else {
                return PacketVerdict::Invalid;
            };
            let mut u = match c.proto {
                ProtoState::Udp(u) => u,
                _ => proto_udp::NfCtUdp::default(),
            };
            let (timeout, assure) = proto_udp::udp_packet(&mut u, c.status, st.now_ns);
            c.proto = ProtoState::Udp(u);
            if assure {
                c.status |= super::IPS_ASSURED;
            }
            ct.refresh(nfct.id, timeout, st.now_ns);
            PacketVerdict::Accept
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let orig_type = ct.get(nfct.id).map_or(0, |c| c.tuplehash[0].icmp_type());
            if !proto_icmp::valid_new(l4.protonum, orig_type) {
                return PacketVerdict::Invalid;
            }
            ct.refresh(nfct.id, proto_icmp::ICMP_TIMEOUT, st.now_ns);
            PacketVerdict::Accept
        }
        _ => {
            ct.refresh(nfct.id, GENERIC_TIMEOUT, st.now_ns);
            PacketVerdict::Accept
        }
    }
}

/// nf_conntrack_tcp_packet with tcp_error and tcp_new in front.
fn tcp_packet(
    ct: &mut Conntrack,
    skb: &NfSkb,
    l4: &L4Info,
    nfct: NfCt,
    verify: bool,
    now: u64,
) -> PacketVerdict {
    let Some(seg) = proto_tcp::tcp_parse(l4.l4(skb.pkt)) else {
        return PacketVerdict::Invalid;
    };
    if verify && !tuple::l4_checksum_ok(skb.pkt, l4) {
        return PacketVerdict::Invalid;
    }
    let Some(c) = ct.get_mut(nfct.id) else {
        return PacketVerdict::Invalid;
    };
    let mut state = match c.proto {
        ProtoState::Tcp(t) if c.is_confirmed() => t,
        _ => match proto_tcp::tcp_new(&seg) {
            Some(t) => t,
            None => return PacketVerdict::Invalid,
        },
    };
    let cx = TcpCtx {
        dir: nfct.info.dir(),
        status: c.status,
    };
    let out = proto_tcp::tcp_packet(&mut state, &seg, &cx);
    c.proto = ProtoState::Tcp(state);
    if out.assure {
        c.status |= super::IPS_ASSURED;
    }
    if out.kill {
        ct.kill(nfct.id);
    } else if let Some(t) = out.timeout {
        ct.refresh(nfct.id, t, now);
    }
    out.verdict
}

/// nf_ct_put for a packet leaving conntrack's hands without being
/// confirmed (dropped, or found invalid): an unconfirmed or dying entry it
/// held is freed; the packet carries no ct any more.
pub fn nf_ct_put(ct: &mut Conntrack, nfct: &mut Option<NfCt>) {
    if let Some(n) = nfct.take() {
        let free = ct.get(n.id).is_some_and(|c| {
            c.status & IPS_TEMPLATE == 0 && (!c.is_confirmed() || c.status & IPS_DYING != 0)
        });
        if free {
            ct.delete(n.id);
        }
    }
}

/// nf_confirm / __nf_conntrack_confirm: a new connection's first packet has
/// passed every hook; the entry goes into the table. A clash with an entry
/// already there (which NAT could cause) drops the packet: the kernel's
/// nf_ct_resolve_clash merges some UDP clashes, skiff does not.
pub fn nf_conntrack_confirm(ct: &mut Conntrack, skb: &mut NfSkb, st: &NfHookState) -> NfVerdict {
    let Some(nfct) = *skb.nfct else {
        return NfVerdict::Accept;
    };
    let Some(c) = ct.get(nfct.id) else {
        return NfVerdict::Accept;
    };
    if c.status & IPS_TEMPLATE != 0 {
        return NfVerdict::Accept;
    }
    if c.status & IPS_DYING != 0 {
        // Killed while this packet held it (an RST before any reply).
        ct.delete(nfct.id);
        return NfVerdict::Accept;
    }
    if c.is_confirmed() || nfct.info.dir() != Dir::Original {
        return NfVerdict::Accept;
    }
    if ct.insert_confirmed(nfct.id, st.now_ns) {
        NfVerdict::Accept
    } else {
        ct.stats.insert_failed += 1;
        ct.stats.drop += 1;
        ct.delete(nfct.id);
        *skb.nfct = None;
        NfVerdict::Drop
    }
}
