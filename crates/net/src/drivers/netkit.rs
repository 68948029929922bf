//! drivers/net/netkit.c: a netkit end. Its transmit runs its own program
//! chain (nk->active) in the sender's context with skb->dev already the
//! peer, from the end's default policy: NEXT/PASS hand the skb to the peer
//! (netif_rx), REDIRECT sends it on from there, anything else drops. No
//! qdisc, no XDP, no NAPI.

use std::sync::Arc;

use skiff_vm::Program;

use super::{
    DeviceKind, DeviceSpec, Features, Napi, NetDevice, NetkitMode, NetkitPolicy, NetkitScrub,
    NetkitSide,
};
use crate::buff::ETH_HLEN;
use crate::core::cpu::{Cpu, Where};
use crate::core::skb::{eth_type_trans, skb_scrub_packet};
use crate::core::tc::{self, MprogOrder, TC_ACT_SHOT};
use skiff_vm::ProgType;

use crate::core::{
    errno, DatapathError, DevId, Hook, NetkitAction, Pkt, XPkt, EACCES, EINVAL, ENXIO, EOPNOTSUPP,
};
use crate::drop::DropReason;

pub struct Netkit {
    pub peer: DevId,
    pub primary: bool,
    pub mode: NetkitMode,
    pub policy: NetkitPolicy,
    pub scrub: NetkitScrub,
    /// This end's program chain, run when it transmits.
    pub progs: Vec<Arc<Program>>,
}

impl Netkit {
    pub fn new(
        peer: DevId,
        primary: bool,
        mode: NetkitMode,
        policy: NetkitPolicy,
        scrub: NetkitScrub,
    ) -> Netkit {
        Netkit {
            peer,
            primary,
            mode,
            policy,
            scrub,
            progs: Vec::new(),
        }
    }

    /// netkit_prep_forward and eth_skb_pkt_type(skb, peer).
    fn prep_forward(&self, cpu: &Cpu<'_>, dev: DevId, pkt: &mut Pkt) {
        let p = cpu.dev(self.peer);
        let xnet = cpu.dev(dev).ns != p.ns;
        skb_scrub_packet(&mut pkt.skb, false);
        if xnet {
            pkt.skb.tstamp = 0;
            if self.scrub == NetkitScrub::Default {
                pkt.skb.priority = 0;
                pkt.skb.mark = 0;
            }
        }
        let (_, t) = eth_type_trans(pkt.skb.data(), &p.mac);
        pkt.skb.pkt_type = t;
        pkt.skb.ifindex = p.ifindex;
        pkt.skb.mtu = p.mtu;
        pkt.skb.tc_at_ingress = false;
    }

    /// netkit_run: the chain until a verdict other than NEXT.
    fn run(
        &self,
        cpu: &mut Cpu<'_>,
        dev: DevId,
        pkt: &mut Pkt,
    ) -> (i64, Option<&Arc<Program>>, Option<skiff_vm::Exception>) {
        let mut ret = match self.policy {
            NetkitPolicy::Pass => NetkitAction::Pass.code(),
            NetkitPolicy::Drop => NetkitAction::Drop.code(),
        };
        let (mut last, mut exc) = (None, None);
        if self.progs.is_empty() {
            return (ret, last, exc);
        }
        cpu.capture_entry(dev, Hook::Netkit, pkt.id, pkt.ts, pkt.skb.data());
        let ns = cpu.dev(self.peer).ns;
        for p in &self.progs {
            pkt.skb.redirect = None;
            let (r, e) = cpu.run_prog(p, &mut *pkt.skb, ns, pkt.ts, TC_ACT_SHOT);
            last = Some(p);
            exc = e;
            ret = r;
            if NetkitAction::from_ret(ret) != NetkitAction::Next {
                break;
            }
        }
        (ret, last, exc)
    }
}

/// netkit_new_link: the primary and its peer; addresses only in L2 mode.
pub(crate) fn newlink(
    spec: &DeviceSpec,
    first: DevId,
    _cpus: usize,
) -> Result<Vec<Box<dyn NetDevice>>, DatapathError> {
    let DeviceKind::Netkit {
        mode,
        policy,
        peer_policy,
        scrub,
        peer_scrub,
        peer_mac,
        ..
    } = &spec.kind
    else {
        return Err(errno(EINVAL, format!("device {}: not netkit", spec.name)));
    };
    if *mode != NetkitMode::L2 && (spec.mac.is_some() || peer_mac.is_some()) {
        return Err(errno(
            EOPNOTSUPP,
            format!("netkit {}: a MAC address needs L2 mode", spec.name),
        ));
    }
    let second = DevId(first.0 + 1);
    Ok(vec![
        Box::new(Netkit::new(second, true, *mode, *policy, *scrub)),
        Box::new(Netkit::new(first, false, *mode, *peer_policy, *peer_scrub)),
    ])
}

impl NetDevice for Netkit {
    fn kind(&self) -> &'static str {
        "netkit"
    }

    fn features(&self) -> Features {
        Features {
            native_xdp: false,
            no_queue: true,
            arp: self.mode == NetkitMode::L2,
            loopback: false,
            napi: Napi::None,
            tx_queues: 1,
        }
    }

    fn peer(&self) -> Option<DevId> {
        Some(self.peer)
    }

    /// netkit_xmit.
    fn start_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, mut pkt: Pkt) {
        let len = pkt.skb.len();
        if !cpu.dev(self.peer).up || len < ETH_HLEN {
            cpu.stats(dev).tx_dropped += 1;
            let w = crate::core::cpu::at(dev, Hook::Netkit);
            return cpu.drop_skb(pkt, DropReason::NotSpecified, w);
        }
        self.prep_forward(cpu, dev, &mut pkt);
        let (ret, last, exc) = self.run(cpu, dev, &mut pkt);
        let action = NetkitAction::from_ret(ret);
        let target = match action {
            _ if !cpu.sh.trace_on => None,
            NetkitAction::Redirect => pkt.skb.redirect.clone().map(|r| cpu.redirect_desc(&r)),
            NetkitAction::Next | NetkitAction::Pass => Some(cpu.target_name(self.peer)),
            _ => None,
        };
        let name = last.map(|p| p.name.as_str());
        cpu.hook_done(
            dev,
            Hook::Netkit,
            name,
            ret,
            pkt.id,
            pkt.ts,
            pkt.skb.data(),
            target,
        );
        let clones = std::mem::take(&mut pkt.skb.clones);
        cpu.clone_redirects(self.peer, &pkt, clones);
        match action {
            NetkitAction::Next | NetkitAction::Pass => {
                cpu.count_tx(dev, len);
                cpu.count_rx(self.peer, len);
                // The protocol the sender set stays (no eth_type_trans on this path).
                cpu.netif_rx(self.peer, pkt);
            }
            NetkitAction::Redirect => {
                cpu.count_tx(dev, len);
                let r = pkt.skb.redirect.take();
                // skb->dev is the peer: ifindexes resolve in the peer's namespace.
                cpu.skb_do_redirect(self.peer, pkt, r, false, name);
            }
            _ => {
                cpu.stats(dev).tx_dropped += 1;
                let w = Where {
                    dev,
                    hook: Hook::Netkit,
                    prog: name,
                    exc: exc.as_ref(),
                };
                cpu.drop_skb(pkt, DropReason::NotSpecified, w);
            }
        }
    }

    fn xdp_xmit(&self, cpu: &mut Cpu<'_>, dev: DevId, pkt: XPkt) {
        cpu.xdp_xmit_refused(dev, pkt);
    }

    fn as_netkit(&self) -> Option<&Netkit> {
        Some(self)
    }

    fn as_netkit_mut(&mut self) -> Option<&mut Netkit> {
        Some(self)
    }
}

/// netkit_link_attach / BPF_NETKIT_PRIMARY|PEER: programs on a netkit pair.
impl crate::core::Datapath {
    /// BPF_NETKIT_PRIMARY / BPF_NETKIT_PEER attach through the primary's
    /// device (netkit_dev_fetch): ENXIO if not netkit, EACCES through the peer.
    pub fn attach_netkit(
        &mut self,
        primary: DevId,
        side: NetkitSide,
        order: MprogOrder,
        prog: Arc<Program>,
    ) -> Result<(), DatapathError> {
        if prog.prog_type != ProgType::SchedCls {
            return Err(errno(
                EINVAL,
                format!(
                    "program {} is {:?}; netkit takes SCHED_CLS programs",
                    prog.name, prog.prog_type
                ),
            ));
        }
        let d = self.dev(primary)?;
        let name = d.name.clone();
        let target = match d.ops.as_netkit() {
            Some(nk) if nk.primary => match side {
                NetkitSide::Primary => primary,
                NetkitSide::Peer => nk.peer,
            },
            Some(_) => {
                return Err(errno(
                    EACCES,
                    format!("{name} is a netkit peer: programs attach through the primary"),
                ))
            }
            None => return Err(errno(ENXIO, format!("{name} is not a netkit device"))),
        };
        self.register_programs(std::slice::from_ref(&prog));
        if let Some(nk) = self.dev_mut(target)?.ops.as_netkit_mut() {
            tc::mprog_attach(&mut nk.progs, prog, order)
                .map_err(|e| errno(e, format!("netkit {name}: attach ({order:?})")))?;
        }
        Ok(())
    }
}
