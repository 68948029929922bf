//! The netfilter hooks at the host stack's places: ip_rcv / ipv6_rcv ->
//! PRE_ROUTING, ip_local_deliver / ip6_input -> LOCAL_IN, ip_forward /
//! ip6_forward -> FORWARD, __ip_local_out / __ip6_local_out -> LOCAL_OUT,
//! ip_output / ip6_output -> POST_ROUTING. A hook with no entries costs a
//! check and no copy (nf_hook's `if (hook_head)`); with entries the packet is
//! copied into a buffer the hooks may change (NAT) and the stack goes on with it.

use crate::drop::DropReason;
use crate::netfilter::conntrack::NfCt;
use crate::netfilter::{nf_hook, IfName, NfHook, NfHookState, NfProto, NfSkb, NfVerdict};

use skiff_wire::{Ipv4Packet, Ipv6Packet};

use super::frame::ETH_HLEN;
use super::{Fate, HostStack, RxMeta};

/// What a receive-side hook did with the packet.
pub(super) enum NfRx {
    /// No entries ran: go on with the packet as it was.
    Same,
    /// The hooks accepted it: go on with this packet (maybe changed).
    Changed(Vec<u8>),
    /// The hooks dropped or kept it.
    Done(Fate),
}

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

impl HostStack {
    fn nf_ifname(&self, ifindex: Option<u32>) -> Option<IfName> {
        ifindex
            .and_then(|i| self.dev(i))
            .map(|d| IfName::new(&d.cfg.name))
    }

    /// NF_HOOK for one hook on an L3 packet: Accept when the packet goes on.
    #[allow(clippy::too_many_arguments)]
    fn nf_run(
        &mut self,
        pf: NfProto,
        hook: NfHook,
        in_if: Option<u32>,
        out_if: Option<u32>,
        pkt: &mut Vec<u8>,
        mark: &mut u32,
        nfct: &mut Option<NfCt>,
    ) -> NfVerdict {
        let state = NfHookState {
            hook,
            pf,
            in_ifindex: in_if,
            out_ifindex: out_if,
            in_name: self.nf_ifname(in_if),
            out_name: self.nf_ifname(out_if),
            now_ns: self.now_ns,
        };
        let mut skb = NfSkb { pkt, mark, nfct };
        nf_hook(&mut self.nf, &mut skb, &state)
    }

    /// A receive-side hook (PRE_ROUTING, LOCAL_IN) on the L3 packet `l3`
    /// that arrived on `ifindex`. PRE_ROUTING starts the packet's conntrack
    /// reference; LOCAL_IN carries it on.
    pub(super) fn nf_rx_hook(
        &mut self,
        pf: NfProto,
        hook: NfHook,
        ifindex: u32,
        l3: &[u8],
        meta: &mut RxMeta,
    ) -> NfRx {
        if hook == NfHook::PreRouting {
            self.nf_rx_ct = None;
        }
        if !self.nf.hook_active(pf, hook, None) {
            return NfRx::Same;
        }
        let mut pkt = l3.to_vec();
        let mut nfct = self.nf_rx_ct;
        let v = self.nf_run(
            pf,
            hook,
            Some(ifindex),
            None,
            &mut pkt,
            &mut meta.mark,
            &mut nfct,
        );
        self.nf_rx_ct = nfct;
        match verdict_fate(v) {
            Some(f) => NfRx::Done(f),
            None => NfRx::Changed(pkt),
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
    ) -> Option<Fate> {
        let mut nfct = self.nf_rx_ct;
        for hook in [NfHook::Forward, NfHook::PostRouting] {
            let in_if = (hook == NfHook::Forward).then_some(in_if);
            if let Some(f) =
                self.nf_frame(pf, hook, in_if, out_if, frame, &mut meta.mark, &mut nfct)
            {
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
    ) -> Option<Fate> {
        let (mut mark, mut nfct) = (0, None);
        for hook in [NfHook::LocalOut, NfHook::PostRouting] {
            if let Some(f) = self.nf_frame(pf, hook, None, out_if, frame, &mut mark, &mut nfct) {
                return Some(f);
            }
        }
        None
    }

    /// One hook on the L3 packet of an Ethernet frame: the packet is moved out
    /// of the frame for the hook and back after it.
    #[allow(clippy::too_many_arguments)]
    fn nf_frame(
        &mut self,
        pf: NfProto,
        hook: NfHook,
        in_if: Option<u32>,
        out_if: u32,
        frame: &mut Vec<u8>,
        mark: &mut u32,
        nfct: &mut Option<NfCt>,
    ) -> Option<Fate> {
        if !self.nf.hook_active(pf, hook, None) || frame.len() < ETH_HLEN {
            return None;
        }
        let mut pkt = frame.split_off(ETH_HLEN);
        let v = self.nf_run(pf, hook, in_if, Some(out_if), &mut pkt, mark, nfct);
        frame.extend_from_slice(&pkt);
        verdict_fate(v)
    }
}

impl HostStack {
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
    ) -> Result<Ipv4Packet<&'b [u8]>, Fate> {
        match self.nf_rx_hook(NfProto::Ipv4, hook, ifindex, ip.as_bytes(), meta) {
            NfRx::Same => Ok(ip),
            NfRx::Done(f) => Err(f),
            NfRx::Changed(p) => {
                *buf = p;
                let ip = Ipv4Packet::new_unchecked(&buf[..]);
                // A hook that broke the header (it cannot, but a packet is
                // never read unchecked): ip_rcv_core's verdict.
                if ip.check_header().is_err() || ip.check_total_len().is_err() {
                    return Err(Fate::Dropped(DropReason::IpInhdr));
                }
                Ok(ip)
            }
        }
    }

    /// [`HostStack::nf_rx4`] for IPv6.
    pub(super) fn nf_rx6<'b>(
        &mut self,
        hook: NfHook,
        ifindex: u32,
        ip: Ipv6Packet<&'b [u8]>,
        meta: &mut RxMeta,
        buf: &'b mut Vec<u8>,
    ) -> Result<Ipv6Packet<&'b [u8]>, Fate> {
        match self.nf_rx_hook(NfProto::Ipv6, hook, ifindex, ip.as_bytes(), meta) {
            NfRx::Same => Ok(ip),
            NfRx::Done(f) => Err(f),
            NfRx::Changed(p) => {
                *buf = p;
                let ip = Ipv6Packet::new_unchecked(&buf[..]);
                if ip.check_header().is_err() || ip.check_payload_len().is_err() {
                    return Err(Fate::Dropped(DropReason::IpInhdr));
                }
                Ok(ip)
            }
        }
    }
}
