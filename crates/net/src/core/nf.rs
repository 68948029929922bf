//! The netfilter netdev hooks in the device path (net/core/dev.c nf_ingress
//! after tc ingress, nf_hook_egress before tc egress) and the control-plane
//! entry to a namespace's netfilter.

use super::cpu::{at, Cpu};
use super::*;
use crate::drop::DropReason;
use crate::netfilter::{
    nf_hook, IfName, Netfilter, NfHook, NfHookState, NfProto, NfSkb, NfVerdict,
};

impl Cpu<'_> {
    /// nf_hook_ingress / nf_hook_egress: the device's netdev-family entries
    /// on the packet from its network header. Returns the packet when it
    /// goes on.
    pub(crate) fn nf_netdev_hook(&mut self, dev: DevId, mut pkt: Pkt, hook: NfHook) -> Option<Pkt> {
        let d = self.dev(dev);
        let Some((_, l3_off)) = flow::ethertype(pkt.skb.data()) else {
            return Some(pkt);
        };
        let Some(l3) = pkt.skb.data().get(l3_off..) else {
            return Some(pkt);
        };
        let mut l3 = l3.to_vec();
        let name = Some(IfName::new(&d.name));
        let ingress = hook == NfHook::NetdevIngress;
        let state = NfHookState {
            hook,
            pf: NfProto::Netdev,
            in_ifindex: ingress.then_some(d.ifindex),
            out_ifindex: (!ingress).then_some(d.ifindex),
            in_name: name.filter(|_| ingress),
            out_name: name.filter(|_| !ingress),
            now_ns: pkt.ts,
            // No route lookup at the device hooks.
            addr_types: (0, 0),
            masq_addr: None,
            redirect_addr: None,
        };
        let (mut mark, mut nfct) = (pkt.skb.mark, None);
        let v = {
            let mut stack = self.sh.namespaces[d.ns.0].shared.stack_write();
            let mut skb = NfSkb {
                pkt: &mut l3,
                mark: &mut mark,
                nfct: &mut nfct,
            };
            nf_hook(stack.netfilter_mut(), &mut skb, &state)
        };
        pkt.skb.mark = mark;
        let w = at(dev, Hook::Netfilter);
        match pkt.skb.data_mut().get_mut(l3_off..) {
            Some(dst) if dst.len() == l3.len() => dst.copy_from_slice(&l3),
            // The netdev hooks' statements never change a packet's length.
            _ => {
                self.drop_skb(pkt, DropReason::NotSpecified, w);
                return None;
            }
        }
        match v {
            NfVerdict::Accept => return Some(pkt),
            NfVerdict::Drop | NfVerdict::Repeat => self.drop_skb(pkt, DropReason::NetfilterDrop, w),
            // nf_queue with no listener: kfree_skb.
            NfVerdict::Queue { .. } => self.drop_skb(pkt, DropReason::NotSpecified, w),
            NfVerdict::Stolen => self.deliver(dev, pkt, "netfilter"),
        }
        None
    }
}

impl Cpu<'_> {
    /// The netfilter entries the stack ran on a packet: counted per verdict
    /// at the device's netfilter hook, traced as `nf-prerouting` with the
    /// table as the program.
    pub(crate) fn nf_trace(
        &mut self,
        dev: DevId,
        id: PacketId,
        ts: u64,
        frame: &[u8],
        entries: Vec<(NfHook, String, NfVerdict)>,
    ) {
        for (hook, what, v) in entries {
            let code = NfHook::verdict_code(v);
            self.st.cnt.hooks[dev.0].slots[Hook::Netfilter.index()]
                [super::counters::verdict_slot(code)]
            .add(frame.len());
            let verdict = super::counters::verdict_name(Hook::Netfilter, code).to_string();
            let mut ev = self.event(id, dev, hook.trace_name(), Some(what), verdict, None, ts);
            ev.fill_frame(frame);
            self.rec.trace.push(ev);
        }
    }
}

impl Datapath {
    /// Changes the namespace's netfilter (hooks, tables, conntrack) under its
    /// lock, then marks the devices that have netdev-family entries so the
    /// device path runs them.
    pub fn netfilter_update<R>(
        &mut self,
        ns: NsId,
        f: impl FnOnce(&mut Netfilter) -> R,
    ) -> Result<R, DatapathError> {
        let (r, ingress, egress) = {
            let mut stack = self.stack_mut(ns)?;
            let nf = stack.netfilter_mut();
            let r = f(nf);
            let ingress: Vec<u32> = nf.netdev_devices(NfHook::NetdevIngress).collect();
            let egress: Vec<u32> = nf.netdev_devices(NfHook::NetdevEgress).collect();
            (r, ingress, egress)
        };
        for d in self.sh.devices.iter_mut().filter(|d| d.ns == ns) {
            d.nf_ingress = ingress.contains(&d.ifindex);
            d.nf_egress = egress.contains(&d.ifindex);
        }
        Ok(r)
    }
}
