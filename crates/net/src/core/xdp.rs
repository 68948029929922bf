//! The XDP hook: native XDP in the driver's poll and its verdicts (the
//! driver's switch, e.g. mlx5e_xdp_handle), xdp_do_redirect into the bulk
//! queue, devmap broadcast, xdp_do_flush with devmap entry programs, the
//! CPUMAP kthread's work, and generic (skb) XDP (net/core/filter.c,
//! net/core/dev.c, kernel/bpf/{devmap,cpumap}.c).

use std::sync::Arc;

use skiff_maps::{Map, MapType};
use skiff_vm::{Exception, Program};

use super::cpu::{at, Cpu, Where};
use super::skb::{copy_skb_meta, eth_type_trans};
use super::*;
use crate::buff::{Redirect, ETH_HLEN};
use crate::drop::DropReason;

const XDP_ABORTED: i64 = 0;

/// Where an XDP redirect goes: bpf_redirect_info resolved against the
/// namespace and the map (xdp_do_redirect / xdp_do_generic_redirect share it).
enum XdpTarget {
    /// A device; a DEVMAP entry's program (an index in `Shared::programs`).
    Dev(DevId, Option<usize>),
    /// DEVMAP broadcast (dev_map_enqueue_multi): every target that takes it.
    Broadcast(Vec<(DevId, Option<usize>)>),
    /// A CPUMAP slot's CPU and its entry program.
    Cpu(usize, Option<usize>),
    /// An XSKMAP slot (an AF_XDP socket).
    Xsk(u32),
    /// Nowhere: the redirect fails.
    Fail,
}

impl Cpu<'_> {
    /// A frame the driver received (NIC rx ring, veth ring): native XDP, then
    /// the sk_buff (GRO).
    pub(crate) fn driver_rx(&mut self, dev: DevId, p: XPkt) {
        let len = p.xdp.data_end - p.xdp.data;
        self.count_rx(dev, len);
        self.xdp_receive(dev, p);
    }

    /// A received frame, counted by its driver: native XDP, then the sk_buff.
    pub(crate) fn xdp_receive(&mut self, dev: DevId, mut p: XPkt) {
        let d = self.dev(dev);
        let Some(prog) = &d.xdp_native else {
            let skb = self.skb_from_xdp(p.xdp, dev);
            return self.gro_receive(
                dev,
                Pkt {
                    id: p.id,
                    ts: p.ts,
                    skb,
                },
            );
        };
        self.capture_entry(dev, Hook::Xdp, p.id, p.ts, p.xdp.data());
        p.xdp.ingress_ifindex = d.ifindex;
        p.xdp.mtu = d.mtu;
        p.xdp.egress_ifindex = None;
        p.xdp.redirect = None;
        let (code, exc) = self.run_prog(prog, &mut *p.xdp, d.ns, p.ts, XDP_ABORTED);
        self.xdp_verdict(dev, Hook::Xdp, prog, code, exc, p);
    }

    /// The driver's switch on an XDP verdict (e.g. mlx5e_xdp_handle).
    pub(crate) fn xdp_verdict(
        &mut self,
        dev: DevId,
        hook: Hook,
        prog: &Arc<Program>,
        code: i64,
        exc: Option<Exception>,
        p: XPkt,
    ) {
        let action = XdpAction::from_ret(code);
        let target = match (&p.xdp.redirect, self.sh.trace_on, action) {
            (Some(r), true, XdpAction::Redirect) => Some(self.redirect_desc(r)),
            _ => None,
        };
        self.hook_done(
            dev,
            hook,
            Some(&prog.name),
            code,
            p.id,
            p.ts,
            p.xdp.data(),
            target,
        );
        let w = |exc| Where {
            dev,
            hook,
            prog: Some(&prog.name),
            exc,
        };
        match action {
            XdpAction::Pass => {
                let skb = self.skb_from_xdp(p.xdp, dev);
                let pkt = Pkt {
                    id: p.id,
                    ts: p.ts,
                    skb,
                };
                if hook == Hook::XdpCpumap {
                    self.netif_receive_skb(dev, pkt);
                } else {
                    self.gro_receive(dev, pkt);
                }
            }
            XdpAction::Tx => self.st.bulk.push(BulkItem {
                target: dev,
                pkt: p,
                devmap_prog: None,
            }),
            XdpAction::Redirect => self.xdp_do_redirect(dev, p, &prog.name),
            XdpAction::Drop => self.drop_xdp(p, DropReason::SkiffXdpDrop, w(None)),
            // XDP_ABORTED, an exception, or an unknown action (bpf_warn_invalid_xdp_action).
            XdpAction::Aborted | XdpAction::Invalid(_) => {
                self.drop_xdp(p, DropReason::SkiffXdpAborted, w(exc.as_ref()))
            }
        }
    }

    fn bulk_push(&mut self, target: DevId, pkt: XPkt, devmap_prog: Option<usize>) {
        self.st.bulk.push(BulkItem {
            target,
            pkt,
            devmap_prog,
        });
    }

    /// Resolve a redirect (the target must be up and take `len` bytes):
    /// bpf_redirect's ifindex, or the map slot bpf_redirect_map named.
    fn resolve_redirect(&mut self, dev: DevId, r: Option<Redirect>, len: usize) -> XdpTarget {
        let ns = self.dev(dev).ns;
        let fits = |c: &Self, t: DevId| c.xdp_ok_fwd_dev(t, len);
        let (map_id, key, broadcast, exclude_ingress) = match r {
            Some(Redirect::Ifindex { ifindex, .. }) => {
                return match self.sh.dev_by_ifindex(ns, ifindex) {
                    Some(t) if fits(self, t) => XdpTarget::Dev(t, None),
                    _ => XdpTarget::Fail,
                }
            }
            Some(Redirect::Map {
                map_id,
                key,
                broadcast,
                exclude_ingress,
                ..
            }) => (map_id, key, broadcast, exclude_ingress),
            _ => return XdpTarget::Fail,
        };
        if !self.cache_map(map_id) {
            return XdpTarget::Fail;
        }
        let Some(map) = self.cached_map(map_id) else {
            return XdpTarget::Fail;
        };
        match map.attr().map_type {
            MapType::Devmap | MapType::DevmapHash if broadcast => {
                XdpTarget::Broadcast(self.broadcast_targets(dev, map, exclude_ingress, len))
            }
            MapType::Devmap | MapType::DevmapHash => match map.dev_entry(key) {
                Some((ifi, pid)) => match self.sh.dev_by_ifindex(ns, ifi) {
                    Some(t) if fits(self, t) => XdpTarget::Dev(t, self.sh.program_index(pid)),
                    _ => XdpTarget::Fail,
                },
                None => XdpTarget::Fail,
            },
            MapType::Cpumap => match map.dev_entry(key) {
                Some((_qsize, pid)) if (key as usize) < self.sh.cpu_queues.len() => {
                    XdpTarget::Cpu(key as usize, self.sh.program_index(pid))
                }
                _ => XdpTarget::Fail,
            },
            MapType::Xskmap if map.lookup(&key.to_le_bytes(), 0).is_some() => XdpTarget::Xsk(key),
            _ => XdpTarget::Fail,
        }
    }

    /// net/core/filter.c: xdp_do_redirect — resolve the target and queue the
    /// frame for the end of the poll (dev_xdp_enqueue, dev_map_enqueue[_multi],
    /// cpu_map_enqueue, __xsk_map_redirect).
    fn xdp_do_redirect(&mut self, dev: DevId, mut p: XPkt, prog: &str) {
        let r = p.xdp.redirect.take();
        match self.resolve_redirect(dev, r, p.xdp.data_end - p.xdp.data) {
            XdpTarget::Dev(t, devmap_prog) => self.bulk_push(t, p, devmap_prog),
            XdpTarget::Broadcast(targets) => self.devmap_broadcast(dev, p, &targets, prog),
            XdpTarget::Cpu(cpu, prog) => {
                let item = CpuItem::Xdp {
                    from: dev,
                    pkt: p,
                    prog,
                };
                self.sh.cpu_queues[cpu].lock().push_back(item);
            }
            XdpTarget::Xsk(slot) => {
                let q = p.xdp.rx_queue_index;
                self.xsk_rcv(dev, q, slot, p.id, p.ts, p.xdp.data());
                self.free_xdp(p.xdp);
            }
            XdpTarget::Fail => {
                let w = Where {
                    dev,
                    hook: Hook::Xdp,
                    prog: Some(prog),
                    exc: None,
                };
                self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w);
            }
        }
    }

    /// include/linux/netdevice.h: xdp_ok_fwd_dev — up and the frame fits the MTU.
    pub(crate) fn xdp_ok_fwd_dev(&self, t: DevId, len: usize) -> bool {
        self.sh
            .devices
            .get(t.0)
            .is_some_and(|d| d.up && len <= d.mtu as usize + ETH_HLEN)
    }

    /// The devices a DEVMAP broadcast reaches: every entry but the excluded
    /// ingress device, up and fitting.
    fn broadcast_targets(
        &self,
        dev: DevId,
        map: &Map,
        exclude_ingress: bool,
        len: usize,
    ) -> Vec<(DevId, Option<usize>)> {
        let d = self.dev(dev);
        let mut v = Vec::new();
        map.for_each_dev_entry(|_key, ifi, pid| {
            if exclude_ingress && ifi == d.ifindex {
                return;
            }
            if let Some(t) = self.sh.dev_by_ifindex(d.ns, ifi) {
                if self.xdp_ok_fwd_dev(t, len) {
                    v.push((t, self.sh.program_index(pid)));
                }
            }
        });
        v
    }

    /// kernel/bpf/devmap.c: dev_map_enqueue_multi — every entry but the
    /// excluded ingress device gets the frame: clones (new ids) for all but the
    /// last, which gets the original.
    fn devmap_broadcast(
        &mut self,
        dev: DevId,
        p: XPkt,
        targets: &[(DevId, Option<usize>)],
        prog: &str,
    ) {
        let Some((&last, rest)) = targets.split_last() else {
            let w = Where {
                dev,
                hook: Hook::Xdp,
                prog: Some(prog),
                exc: None,
            };
            return self.drop_xdp(p, DropReason::SkiffXdpRedirectError, w);
        };
        for &(t, devmap_prog) in rest {
            let id = self.originate();
            let ifindex = self.dev(dev).ifindex;
            let mut x = self.xdp_frame(p.xdp.data(), ifindex);
            x.rx_queue_index = p.xdp.rx_queue_index;
            self.bulk_push(
                t,
                XPkt {
                    id,
                    ts: p.ts,
                    xdp: x,
                },
                devmap_prog,
            );
        }
        self.bulk_push(last.0, p, last.1);
    }

    /// net/core/filter.c: xdp_do_flush — the bulk queues go out: devmap entry
    /// programs (dev_map_bpf_prog_run), then each target's ndo_xdp_xmit.
    pub(crate) fn xdp_do_flush(&mut self) {
        while !self.st.bulk.is_empty() {
            let items = std::mem::take(&mut self.st.bulk);
            for b in items {
                self.xdp_xmit_one(b);
            }
        }
    }

    fn xdp_xmit_one(&mut self, b: BulkItem) {
        let BulkItem {
            target,
            mut pkt,
            devmap_prog,
        } = b;
        if let Some(i) = devmap_prog {
            let sh = self.sh;
            let prog = &sh.programs[i];
            let t = self.dev(target);
            self.capture_entry(target, Hook::XdpDevmap, pkt.id, pkt.ts, pkt.xdp.data());
            pkt.xdp.egress_ifindex = Some(t.ifindex);
            pkt.xdp.redirect = None;
            let (code, exc) = self.run_prog(prog, &mut *pkt.xdp, t.ns, pkt.ts, XDP_ABORTED);
            pkt.xdp.egress_ifindex = None;
            let data = pkt.xdp.data();
            self.hook_done(
                target,
                Hook::XdpDevmap,
                Some(&prog.name),
                code,
                pkt.id,
                pkt.ts,
                data,
                None,
            );
            let w = |exc| Where {
                dev: target,
                hook: Hook::XdpDevmap,
                prog: Some(&prog.name),
                exc,
            };
            match XdpAction::from_ret(code) {
                XdpAction::Pass => {}
                XdpAction::Drop => return self.drop_xdp(pkt, DropReason::SkiffXdpDrop, w(None)),
                _ => return self.drop_xdp(pkt, DropReason::SkiffXdpAborted, w(exc.as_ref())),
            }
        }
        self.ndo_xdp_xmit(target, pkt);
    }

    /// The target's ndo_xdp_xmit; a device that is down takes nothing.
    pub(crate) fn ndo_xdp_xmit(&mut self, target: DevId, pkt: XPkt) {
        let d = self.dev(target);
        if !d.up {
            self.stats(target).tx_dropped += 1;
            let w = at(target, Hook::Xmit);
            return self.drop_xdp(pkt, DropReason::SkiffXdpRedirectError, w);
        }
        d.ops.xdp_xmit(self, target, pkt);
    }

    /// A driver without ndo_xdp_xmit (or one that refused the frame).
    pub(crate) fn xdp_xmit_refused(&mut self, dev: DevId, pkt: XPkt) {
        self.stats(dev).tx_dropped += 1;
        let w = at(dev, Hook::Xmit);
        self.drop_xdp(pkt, DropReason::SkiffXdpRedirectError, w);
    }

    /// kernel/bpf/cpumap.c: cpu_map_kthread_run — the running CPU's queue: the
    /// entry program (cpu_map_bpf_prog_run_xdp) on this CPU, then the stack.
    pub(crate) fn cpumap_run(&mut self) -> bool {
        let cpu = self.st.cpu;
        let budget = self.sh.opts.napi_budget;
        let mut n = 0;
        loop {
            let Some(item) = self
                .sh
                .cpu_queues
                .get(cpu)
                .and_then(|q| q.lock().pop_front())
            else {
                break;
            };
            n += 1;
            self.count_polled(1);
            match item {
                CpuItem::Xdp { from, pkt, prog } => self.cpumap_xdp(from, pkt, prog),
                CpuItem::Skb { from, pkt } => self.netif_receive_skb_core(from, pkt, true),
            }
            if n % budget == 0 {
                self.poll_end();
            }
        }
        if n > 0 {
            self.poll_end();
        }
        n > 0
    }

    fn cpumap_xdp(&mut self, from: DevId, mut pkt: XPkt, prog: Option<usize>) {
        let sh = self.sh;
        let Some(prog) = prog.map(|i| &sh.programs[i]) else {
            let skb = self.skb_from_xdp(pkt.xdp, from);
            return self.netif_receive_skb(
                from,
                Pkt {
                    id: pkt.id,
                    ts: pkt.ts,
                    skb,
                },
            );
        };
        self.capture_entry(from, Hook::XdpCpumap, pkt.id, pkt.ts, pkt.xdp.data());
        pkt.xdp.redirect = None;
        let ns = self.dev(from).ns;
        let (code, exc) = self.run_prog(prog, &mut *pkt.xdp, ns, pkt.ts, XDP_ABORTED);
        if XdpAction::from_ret(code) != XdpAction::Tx {
            return self.xdp_verdict(from, Hook::XdpCpumap, prog, code, exc, pkt);
        }
        // cpumap programs may not XDP_TX (bpf_warn_invalid_xdp_action).
        let data = pkt.xdp.data();
        self.hook_done(
            from,
            Hook::XdpCpumap,
            Some(&prog.name),
            code,
            pkt.id,
            pkt.ts,
            data,
            None,
        );
        let w = Where {
            dev: from,
            hook: Hook::XdpCpumap,
            prog: Some(&prog.name),
            exc: None,
        };
        self.drop_xdp(pkt, DropReason::SkiffXdpAborted, w);
    }

    /// net/core/dev.c: do_xdp_generic / netif_receive_generic_xdp — the skb's
    /// frame runs as an xdp_buff; the skb follows what the program did.
    pub(crate) fn do_xdp_generic(
        &mut self,
        dev: DevId,
        pkt: Pkt,
        prog: &Arc<Program>,
    ) -> Option<Pkt> {
        let Pkt { id, ts, mut skb } = pkt;
        let d = self.dev(dev);
        self.capture_entry(dev, Hook::XdpGeneric, id, ts, skb.data());
        let mut xdp = self.xdp_frame(skb.data(), d.ifindex);
        xdp.mtu = skb.mtu;
        xdp.rx_queue_index = (skb.queue_mapping as u32).saturating_sub(1);
        let mut old_eth = [0u8; ETH_HLEN];
        let had_eth = skb.data().len() >= ETH_HLEN;
        if had_eth {
            old_eth.copy_from_slice(&skb.data()[..ETH_HLEN]);
        }
        let (code, exc) = self.run_prog(prog, &mut *xdp, d.ns, ts, XDP_ABORTED);
        let action = XdpAction::from_ret(code);
        let target = match (&xdp.redirect, self.sh.trace_on, action) {
            (Some(r), true, XdpAction::Redirect) => Some(self.redirect_desc(r)),
            _ => None,
        };
        self.hook_done(
            dev,
            Hook::XdpGeneric,
            Some(&prog.name),
            code,
            id,
            ts,
            xdp.data(),
            target,
        );
        // The skb takes the frame's new bounds.
        let metalen = xdp.metalen();
        let redirect = xdp.redirect.take();
        let (s, e) = (xdp.data, xdp.data_end);
        let page = std::mem::take(&mut xdp.buf);
        self.cache_xdp(xdp);
        let mut nskb = SkBuff::from_buf(page.into_vec(), s, e, d.ifindex, skb.mtu);
        copy_skb_meta(&skb, &mut nskb);
        nskb.meta_len = metalen;
        let same_eth = had_eth && nskb.data().get(..ETH_HLEN) == Some(&old_eth[..]);
        if !same_eth {
            let (p, t) = eth_type_trans(nskb.data(), &d.mac);
            nskb.protocol = p;
            nskb.pkt_type = t;
        }
        let old = std::mem::replace(&mut *skb, nskb);
        self.recycle_buf(old.buf);
        let pkt = Pkt { id, ts, skb };
        let w = |exc| Where {
            dev,
            hook: Hook::XdpGeneric,
            prog: Some(&prog.name),
            exc,
        };
        match action {
            XdpAction::Pass => return Some(pkt),
            XdpAction::Tx => self.generic_xdp_tx(dev, pkt),
            XdpAction::Redirect => self.xdp_do_generic_redirect(dev, pkt, redirect, &prog.name),
            XdpAction::Drop => self.drop_skb(pkt, DropReason::Xdp, w(None)),
            _ => self.drop_skb(pkt, DropReason::Xdp, w(exc.as_ref())),
        }
        None
    }

    /// net/core/dev.c: generic_xdp_tx — straight to the driver, no qdisc, no tc.
    fn generic_xdp_tx(&mut self, dev: DevId, pkt: Pkt) {
        self.dev_hard_start_xmit(dev, pkt);
    }

    /// net/core/filter.c: xdp_do_generic_redirect — the same resolution,
    /// the skb straight to the target's driver (generic_xdp_tx).
    fn xdp_do_generic_redirect(&mut self, dev: DevId, pkt: Pkt, r: Option<Redirect>, prog: &str) {
        match self.resolve_redirect(dev, r, pkt.skb.len()) {
            XdpTarget::Dev(t, _) => self.generic_xdp_tx(t, pkt),
            // dev_map_redirect_multi: skb clones to every entry but the last.
            XdpTarget::Broadcast(targets) if !targets.is_empty() => {
                let last = targets.len() - 1;
                for &(t, _) in &targets[..last] {
                    let c = self.clone_pkt(&pkt);
                    self.generic_xdp_tx(t, c);
                }
                self.generic_xdp_tx(targets[last].0, pkt)
            }
            XdpTarget::Cpu(cpu, _) => {
                let item = CpuItem::Skb { from: dev, pkt };
                self.sh.cpu_queues[cpu].lock().push_back(item);
            }
            XdpTarget::Xsk(slot) => {
                let q = (pkt.skb.queue_mapping as u32).saturating_sub(1);
                self.xsk_rcv(dev, q, slot, pkt.id, pkt.ts, pkt.skb.data());
                self.free_skb(pkt.skb);
            }
            XdpTarget::Broadcast(_) | XdpTarget::Fail => {
                let w = Where {
                    dev,
                    hook: Hook::XdpGeneric,
                    prog: Some(prog),
                    exc: None,
                };
                self.drop_skb(pkt, DropReason::Xdp, w);
            }
        }
    }
}

/// `ip link set dev X xdp|xdpgeneric`: programs on a device's XDP hook.
impl Datapath {
    /// `ip link set dev X xdp|xdpgeneric obj ...` (dev_xdp_attach): one program
    /// per device and mode, replacing the previous one; native only on NIC and
    /// veth (EOPNOTSUPP), not both modes at once (EEXIST).
    pub fn attach_xdp(
        &mut self,
        dev: DevId,
        prog: Arc<Program>,
        mode: XdpMode,
    ) -> Result<(), DatapathError> {
        if prog.prog_type != ProgType::Xdp {
            return Err(errno(
                EINVAL,
                format!("program {} is {:?}, not XDP", prog.name, prog.prog_type),
            ));
        }
        self.register_programs(std::slice::from_ref(&prog));
        let d = self.dev_mut(dev)?;
        let both = || {
            errno(
                EEXIST,
                format!(
                    "device {}: native and generic XDP can't be active at the same time",
                    d.name
                ),
            )
        };
        match mode {
            XdpMode::Native => {
                if !d.ops.features().native_xdp {
                    return Err(errno(
                        EOPNOTSUPP,
                        format!(
                            "device {} ({}) has no native XDP; use generic mode",
                            d.name,
                            d.kind()
                        ),
                    ));
                }
                if d.xdp_generic.is_some() {
                    return Err(both());
                }
                d.xdp_native = Some(prog);
            }
            XdpMode::Generic => {
                if d.xdp_native.is_some() {
                    return Err(both());
                }
                d.xdp_generic = Some(prog);
            }
        }
        Ok(())
    }

    pub fn detach_xdp(&mut self, dev: DevId, mode: XdpMode) -> Result<(), DatapathError> {
        let d = self.dev_mut(dev)?;
        match mode {
            XdpMode::Native => d.xdp_native = None,
            XdpMode::Generic => d.xdp_generic = None,
        }
        Ok(())
    }
}
