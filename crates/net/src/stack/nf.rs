//! The netfilter hooks at the host stack's places: ip_rcv / ipv6_rcv ->
//! PRE_ROUTING, ip_local_deliver / ip6_input -> LOCAL_IN, ip_forward /
//! ip6_forward -> FORWARD, __ip_local_out / __ip6_local_out -> LOCAL_OUT,
//! ip_output / ip6_output -> POST_ROUTING. A hook with no entries costs a
//! check and no copy (nf_hook's `if (hook_head)`); with entries the packet is
//! copied into a buffer the hooks may change (NAT) and the stack goes on with
//! it. REJECT's replies are sent here after the hook (nf_reject_ipv4.c,
//! nf_reject_ipv6.c).

use std::net::{IpAddr, Ipv6Addr};

use skiff_wire::checksum::{pseudo_header_v4, pseudo_header_v6};
use skiff_wire::icmpv4::ICMP_DEST_UNREACH;
use skiff_wire::icmpv6::ICMPV6_DEST_UNREACH;
use skiff_wire::{checksum, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, IPPROTO_TCP, IPPROTO_UDP};

use crate::drop::DropReason;
use crate::netfilter::conntrack::NfCt;
use crate::netfilter::ip_tables::XtPkt;
use crate::netfilter::ipt_reject::RejectWith;
use crate::netfilter::xt_addrtype::*;
use crate::netfilter::{nf_hook, IfName, NfHook, NfHookState, NfProto, NfReply, NfSkb, NfVerdict};

use super::frame::{ipv4_frame, ipv6_frame, ETH_HLEN};
use super::{Fate, HostStack, Origin, RouteKind, RxMeta, StackOutput, PACKET_HOST, RT_TABLE_LOCAL};

/// What the stack does with a hook's final verdict: NF_DROP is
/// SKB_DROP_REASON_NETFILTER_DROP; a queue without a listener (no bypass) is
/// nf_queue's kfree_skb; NF_STOLEN: a hook took the packet.
fn verdict_fate(v: NfVerdict) -> Option<Fate> {
    match v {
        NfVerdict::Accept => None,
        NfVerdict::Drop | NfVerdict::Repeat => Some(Fate::Dropped(DropReason::NetfilterDrop)),
        NfVerdict::Queue { .. } => Some(Fate::Dropped(DropReason::NotSpecified)),
        NfVerdict::Stolen => Some(Fate::Stolen),
    }
}

/// Where a hook runs and on what.
struct NfAt {
    pf: NfProto,
    hook: NfHook,
    in_if: Option<u32>,
    out_if: Option<u32>,
}

impl HostStack {
    fn nf_ifname(&self, ifindex: Option<u32>) -> Option<IfName> {
        ifindex
            .and_then(|i| self.dev(i))
            .map(|d| IfName::new(&d.cfg.name))
    }

    /// net/ipv4/fib_frontend.c inet_addr_type (the route in table local;
    /// UNICAST when there is none) and, for IPv6, the address's kind and
    /// whether it is ours; as XT_ADDRTYPE_* bits.
    fn nf_addr_type(&self, a: IpAddr) -> u16 {
        match a {
            IpAddr::V4(v) if v.is_unspecified() || v.is_broadcast() => XT_ADDRTYPE_BROADCAST,
            IpAddr::V4(v) if v.is_multicast() => XT_ADDRTYPE_MULTICAST,
            IpAddr::V6(v) if v.is_unspecified() => XT_ADDRTYPE_UNSPEC,
            IpAddr::V6(v) if v.is_multicast() => XT_ADDRTYPE_MULTICAST,
            _ => {
                let best = self
                    .routes
                    .iter()
                    .filter(|e| {
                        e.r.table == RT_TABLE_LOCAL
                            && e.r.dst.is_ipv4() == a.is_ipv4()
                            && super::route::prefix_match(a, e.r.dst, e.r.prefix_len)
                    })
                    .max_by_key(|e| e.r.prefix_len);
                match best.map(|e| e.r.kind) {
                    Some(RouteKind::Local) => XT_ADDRTYPE_LOCAL,
                    Some(RouteKind::Broadcast) => XT_ADDRTYPE_BROADCAST,
                    Some(RouteKind::Anycast) => XT_ADDRTYPE_ANYCAST,
                    _ => XT_ADDRTYPE_UNICAST,
                }
            }
        }
    }

    /// MASQUERADE's address (nf_nat_masquerade_ipv4: inet_select_addr on the
    /// out device towards the destination; IPv6: source address selection)
    /// and REDIRECT's (nf_nat_redirect_ipv4/6: the in device's first address).
    fn nf_nat_addrs(&self, at: &NfAt, dst: IpAddr) -> (Option<IpAddr>, Option<IpAddr>) {
        let masq = at.out_if.and_then(|o| match dst {
            IpAddr::V4(d) => self.inet_select_addr(o, Some(d), 0).map(IpAddr::V4),
            IpAddr::V6(d) => self.ipv6_dev_get_saddr(o, d).map(IpAddr::V6),
        });
        let redirect = at.in_if.and_then(|i| self.dev(i)).and_then(|d| match dst {
            IpAddr::V4(_) => d.v4.first().map(|a| IpAddr::V4(a.addr)),
            IpAddr::V6(_) => d.v6.first().map(|a| IpAddr::V6(a.0)),
        });
        (masq, redirect)
    }

    /// NF_HOOK for one hook on an L3 packet, then the REJECT replies.
    fn nf_run(
        &mut self,
        at: NfAt,
        pkt: &mut Vec<u8>,
        mark: &mut u32,
        nfct: &mut Option<NfCt>,
        out: &mut Vec<StackOutput>,
    ) -> NfVerdict {
        let parsed = XtPkt::parse(at.pf, pkt);
        let addr_types = match &parsed {
            Some(p) => (self.nf_addr_type(p.src), self.nf_addr_type(p.dst)),
            None => (0, 0),
        };
        let (masq_addr, redirect_addr) = match &parsed {
            Some(p) => self.nf_nat_addrs(&at, p.dst),
            None => (None, None),
        };
        let state = NfHookState {
            hook: at.hook,
            pf: at.pf,
            in_ifindex: at.in_if,
            out_ifindex: at.out_if,
            in_name: self.nf_ifname(at.in_if),
            out_name: self.nf_ifname(at.out_if),
            masq_addr,
            redirect_addr,
            now_ns: self.now_ns,
            addr_types,
        };
        let mut skb = NfSkb { pkt, mark, nfct };
        let v = nf_hook(&mut self.nf, &mut skb, &state);
        if !self.nf.replies.is_empty() {
            for r in self.nf.take_replies() {
                self.nf_send_reject(r, out);
            }
        }
        v
    }

    /// A receive-side hook (PRE_ROUTING, LOCAL_IN) on the L3 packet `l3`
    /// that arrived on `ifindex`. PRE_ROUTING starts the packet's conntrack
    /// reference; LOCAL_IN carries it on. Ok(false): no entry ran, go on with
    /// `l3`; Ok(true): the hooks accepted what `buf` now holds (maybe changed);
    /// Err: they dropped or kept it.
    fn nf_rx_hook(
        &mut self,
        at: NfAt,
        l3: &[u8],
        meta: &mut RxMeta,
        buf: &mut Vec<u8>,
        out: &mut Vec<StackOutput>,
    ) -> Result<bool, Fate> {
        if at.hook == NfHook::PreRouting {
            self.nf_rx_ct = None;
        }
        if !self.nf.hook_active(at.pf, at.hook, None) {
            return Ok(false);
        }
        buf.clear();
        buf.extend_from_slice(l3);
        let mut nfct = self.nf_rx_ct;
        let v = self.nf_run(at, buf, &mut meta.mark, &mut nfct, out);
        self.nf_rx_ct = nfct;
        match verdict_fate(v) {
            Some(f) => Err(f),
            None => Ok(true),
        }
    }

    /// ip_forward's FORWARD hook, then ip_output's POST_ROUTING, on `frame`
    /// (an Ethernet frame whose L3 packet the hooks see).
    pub(super) fn nf_forward(
        &mut self,
        pf: NfProto,
        in_if: u32,
        out_if: u32,
        frame: &mut Vec<u8>,
        meta: &mut RxMeta,
        out: &mut Vec<StackOutput>,
    ) -> Option<Fate> {
        let mut nfct = self.nf_rx_ct;
        for hook in [NfHook::Forward, NfHook::PostRouting] {
            let at = NfAt {
                pf,
                hook,
                in_if: (hook == NfHook::Forward).then_some(in_if),
                out_if: Some(out_if),
            };
            if let Some(f) = self.nf_frame(at, frame, &mut meta.mark, &mut nfct, out) {
                return Some(f);
            }
        }
        self.nf_rx_ct = nfct;
        None
    }

    /// A packet the stack makes (a reply, an ICMP error): __ip_local_out's
    /// LOCAL_OUT, then ip_output's POST_ROUTING. None when it goes on.
    pub(super) fn nf_local_out(
        &mut self,
        pf: NfProto,
        out_if: u32,
        frame: &mut Vec<u8>,
        out: &mut Vec<StackOutput>,
    ) -> Option<Fate> {
        let (mut mark, mut nfct) = (0, None);
        for hook in [NfHook::LocalOut, NfHook::PostRouting] {
            let at = NfAt {
                pf,
                hook,
                in_if: None,
                out_if: Some(out_if),
            };
            if let Some(f) = self.nf_frame(at, frame, &mut mark, &mut nfct, out) {
                return Some(f);
            }
        }
        None
    }

    /// One hook on the L3 packet of an Ethernet frame: the packet is moved out
    /// of the frame for the hook and back after it.
    fn nf_frame(
        &mut self,
        at: NfAt,
        frame: &mut Vec<u8>,
        mark: &mut u32,
        nfct: &mut Option<NfCt>,
        out: &mut Vec<StackOutput>,
    ) -> Option<Fate> {
        if !self.nf.hook_active(at.pf, at.hook, None) || frame.len() < ETH_HLEN {
            return None;
        }
        let mut pkt = frame.split_off(ETH_HLEN);
        let v = self.nf_run(at, &mut pkt, mark, nfct, out);
        frame.extend_from_slice(&pkt);
        verdict_fate(v)
    }

    /// A receive-side hook on an IPv4 packet: the packet to go on with (the
    /// same view, or one over `buf` holding what the hooks made of it), or
    /// what became of it.
    pub(super) fn nf_rx4<'b>(
        &mut self,
        hook: NfHook,
        ifindex: u32,
        ip: Ipv4Packet<&'b [u8]>,
        meta: &mut RxMeta,
        buf: &'b mut Vec<u8>,
        out: &mut Vec<StackOutput>,
    ) -> Result<Ipv4Packet<&'b [u8]>, Fate> {
        let at = NfAt {
            pf: NfProto::Ipv4,
            hook,
            in_if: Some(ifindex),
            out_if: None,
        };
        if !self.nf_rx_hook(at, ip.as_bytes(), meta, buf, out)? {
            return Ok(ip);
        }
        let ip = Ipv4Packet::new_unchecked(&buf[..]);
        // A hook that broke the header (it cannot, but a packet is never
        // read unchecked): ip_rcv_core's verdict.
        if ip.check_header().is_err() || ip.check_total_len().is_err() {
            return Err(Fate::Dropped(DropReason::IpInhdr));
        }
        Ok(ip)
    }

    /// [`HostStack::nf_rx4`] for IPv6.
    pub(super) fn nf_rx6<'b>(
        &mut self,
        hook: NfHook,
        ifindex: u32,
        ip: Ipv6Packet<&'b [u8]>,
        meta: &mut RxMeta,
        buf: &'b mut Vec<u8>,
        out: &mut Vec<StackOutput>,
    ) -> Result<Ipv6Packet<&'b [u8]>, Fate> {
        let at = NfAt {
            pf: NfProto::Ipv6,
            hook,
            in_if: Some(ifindex),
            out_if: None,
        };
        if !self.nf_rx_hook(at, ip.as_bytes(), meta, buf, out)? {
            return Ok(ip);
        }
        let ip = Ipv6Packet::new_unchecked(&buf[..]);
        if ip.check_header().is_err() || ip.check_payload_len().is_err() {
            return Err(Fate::Dropped(DropReason::IpInhdr));
        }
        Ok(ip)
    }

    /// REJECT's reply: nf_send_unreach / nf_send_unreach6 (icmp_send, only
    /// for a first fragment whose transport checksum is right) and
    /// nf_send_reset (IPv4).
    fn nf_send_reject(&mut self, r: NfReply, out: &mut Vec<StackOutput>) {
        let Some(p) = XtPkt::parse(r.pf, &r.pkt) else {
            return;
        };
        if p.fragoff != 0 || !reject_csum_ok(&p, &r.pkt) {
            return;
        }
        let ifindex = r.in_ifindex.unwrap_or(super::route::LOOPBACK_IFINDEX);
        let meta = RxMeta {
            mark: 0,
            pkt_type: PACKET_HOST,
            now_ns: self.now_ns,
        };
        match (r.with, r.pf) {
            (RejectWith::IcmpUnreach(code), NfProto::Ipv4) => {
                let ip = Ipv4Packet::new_unchecked(&r.pkt[..]);
                self.icmp_send(ifindex, ip, meta, ICMP_DEST_UNREACH, code, 0, false, out);
            }
            (RejectWith::IcmpUnreach(code), NfProto::Ipv6) => {
                let ip = Ipv6Packet::new_unchecked(&r.pkt[..]);
                self.icmp6_send(ifindex, ip, meta, ICMPV6_DEST_UNREACH, code, 0, out);
            }
            (RejectWith::TcpReset, NfProto::Ipv4) if p.proto == IPPROTO_TCP => {
                self.nf_send_reset4(&p, &r.pkt, out)
            }
            (RejectWith::TcpReset, NfProto::Ipv6) if p.proto == IPPROTO_TCP => {
                self.nf_send_reset6(&p, &r.pkt, out)
            }
            _ => {}
        }
    }

    /// net/ipv4/netfilter/nf_reject_ipv4.c nf_send_reset: the RST
    /// (nf_reject_ip_tcphdr_put) in an IPv4 header with id 0, DF, TTL 64
    /// (ip4_dst_hoplimit), sent by ip_local_out.
    fn nf_send_reset4(&mut self, p: &XtPkt, pkt: &[u8], out: &mut Vec<StackOutput>) {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else {
            return;
        };
        let Some(mut t) = reset_tcphdr(p.l4(pkt)) else {
            return;
        };
        let c = checksum::fold(checksum::sum(
            &t,
            pseudo_header_v4(dst, src, IPPROTO_TCP, t.len()),
        ));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        let h = Ipv4Repr {
            src_addr: dst,
            dst_addr: src,
            protocol: IPPROTO_TCP,
            tos: 0,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            payload_len: t.len(),
        };
        let frame = ipv4_frame(&h, &t);
        let _ = self.ip_output4(frame, Some(dst), src, Origin::Reply, out);
    }

    /// net/ipv6/netfilter/nf_reject_ipv6.c nf_send_reset6: only between
    /// unicast addresses (ipv6_addr_type & IPV6_ADDR_UNICAST: not
    /// multicast, unspecified or v4-mapped); the RST (nf_reject_ip6_tcphdr_put)
    /// in an IPv6 header with traffic class 0, flow label 0, hop limit 64
    /// (ip6_dst_hoplimit), routed from the original destination back to the
    /// source (ip6_route_output) and sent by ip6_local_out (LOCAL_OUT,
    /// POST_ROUTING).
    fn nf_send_reset6(&mut self, p: &XtPkt, pkt: &[u8], out: &mut Vec<StackOutput>) {
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (p.src, p.dst) else {
            return;
        };
        let unicast =
            |a: Ipv6Addr| !a.is_multicast() && !a.is_unspecified() && a.to_ipv4_mapped().is_none();
        if !unicast(src) || !unicast(dst) {
            return;
        }
        let Some(mut t) = reset_tcphdr(p.l4(pkt)) else {
            return;
        };
        let c = checksum::fold(checksum::sum(
            &t,
            pseudo_header_v6(dst, src, IPPROTO_TCP, t.len()),
        ));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        let Some(r) = self.output_route6(src, Some(dst)) else {
            return;
        };
        let h = Ipv6Repr {
            src_addr: dst,
            dst_addr: src,
            next_header: IPPROTO_TCP,
            hop_limit: 64,
            traffic_class: 0,
            payload_len: t.len(),
        };
        let mut frame = ipv6_frame(&h, &t);
        if self
            .nf_local_out(NfProto::Ipv6, r.ifindex, &mut frame, out)
            .is_some()
        {
            return;
        }
        let nh = r.gateway.unwrap_or(IpAddr::V6(src));
        let _ = self.neigh_xmit(r.ifindex, frame, nh, Origin::Reply, None, out);
    }
}

/// nf_reject_ip_tcphdr_get + nf_reject_ip_tcphdr_put (IPv4) and their
/// IPv6 twins: no reply to a RST or to a segment shorter than a TCP header;
/// the RST has the ports swapped, seq = the segment's ack_seq when it had
/// ACK, else ACK with ack_seq = seq + SYN + FIN + payload; doff 5, window 0;
/// the checksum left to the caller.
fn reset_tcphdr(th: &[u8]) -> Option<[u8; 20]> {
    let h: &[u8; 20] = th.get(..20)?.try_into().ok()?;
    let (doff, flags) = (h[12], h[13]);
    if flags & 0x04 != 0 {
        return None;
    }
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let ack_seq = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    let payload = th.len().saturating_sub(usize::from(doff >> 4) * 4) as u32;
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&h[2..4]);
    t[2..4].copy_from_slice(&h[0..2]);
    t[12] = 5 << 4;
    if flags & 0x10 != 0 {
        t[4..8].copy_from_slice(&ack_seq.to_be_bytes());
        t[13] = 0x04;
    } else {
        let syn_fin = u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
        let ack = seq.wrapping_add(syn_fin).wrapping_add(payload);
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[13] = 0x14;
    }
    Some(t)
}

/// nf_reject_verify_csum + nf_ip_checksum / nf_ip6_checksum: TCP, UDP (a
/// zero UDP checksum over IPv4 is none) and ICMP must carry a right
/// checksum; other protocols are not checked.
fn reject_csum_ok(p: &XtPkt, pkt: &[u8]) -> bool {
    let l4 = p.l4(pkt);
    let pseudo = |proto| match (p.src, p.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, proto, l4.len()),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, proto, l4.len()),
        _ => 0,
    };
    let sum = match p.proto {
        IPPROTO_TCP => checksum::sum(l4, pseudo(IPPROTO_TCP)),
        IPPROTO_UDP => {
            if p.src.is_ipv4() && l4.get(6..8) == Some(&[0, 0]) {
                return true;
            }
            checksum::sum(l4, pseudo(IPPROTO_UDP))
        }
        1 => checksum::sum(l4, 0),
        58 => checksum::sum(l4, pseudo(58)),
        _ => return true,
    };
    checksum::fold(sum) == 0
}
