//! Receive: net/ipv4/ip_input.c (ip_rcv_core, ip_rcv_finish), net/ipv4/route.c
//! (ip_route_input_slow, ip_error), net/ipv4/ip_forward.c ip_forward,
//! net/ipv4/arp.c arp_process, net/ipv4/icmp.c (icmp_rcv, icmp_echo, icmp_send),
//! UDP/TCP sinks, and their IPv6 counterparts (net/ipv6/ip6_input.c,
//! ip6_output.c ip6_forward, route.c ip6_pkt_drop, icmp.c, ndisc.c).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::neigh::{arp_frame, NeighOutput, NeighState};
use super::route::{rt6_need_strict, FibErr, Flow, LOOPBACK_IFINDEX};
use super::wire::{self, *};
use super::{
    Delivery, Fate, HostStack, Origin, RouteKind, RxMeta, StackOutput, PACKET_HOST,
    PACKET_OTHERHOST,
};
use crate::drop::DropReason;

type D = DropReason;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_REDIRECT: u8 = 5;
const ICMP_REDIR_HOST: u8 = 1;
/// net/ipv4/route.c: ip_rt_redirect_number, ip_rt_redirect_load (HZ/50),
/// ip_rt_redirect_silence ((HZ/50) << (9 + 1)).
const REDIRECT_NUMBER: u32 = 9;
const REDIRECT_LOAD_NS: u64 = 20_000_000;
const REDIRECT_SILENCE_NS: u64 = REDIRECT_LOAD_NS << (REDIRECT_NUMBER + 1);

/// RFC 1812 / icmp_pointers[].error: the ICMP types that are errors.
fn icmp_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

fn dropped(r: DropReason) -> Fate {
    Fate::Dropped(r)
}

fn fate_of(r: Result<NeighOutput, DropReason>) -> Fate {
    match r {
        Ok(NeighOutput::Sent) => Fate::Forwarded,
        Ok(NeighOutput::Queued) => Fate::Queued,
        Err(e) => Fate::Dropped(e),
    }
}

impl HostStack {
    /// The stack receives `frame` (from the Ethernet header; for an L3 device
    /// still an Ethernet frame whose MAC header it ignores) on `ifindex` after
    /// TC ingress let it through. Pushes every frame the stack transmits as a
    /// result into `out` and says what became of the received packet. `tag` is
    /// the packet's id, returned with it if it is forwarded or queued.
    pub fn receive(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        meta: RxMeta,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        self.now_ns = self.now_ns.max(meta.now_ns);
        let Some(dev) = self.dev(ifindex) else {
            return dropped(D::NotSpecified);
        };
        if !dev.cfg.up {
            return dropped(D::DevReady);
        }
        let Some(ethertype) = be16(frame, 12) else {
            return dropped(D::PktTooSmall);
        };
        let pkt = frame.get(ETH_HLEN..).unwrap_or(&[]);
        match ethertype {
            ETH_P_IP => self.ip_rcv(ifindex, pkt, meta, tag, out),
            ETH_P_IPV6 => self.ipv6_rcv(ifindex, pkt, meta, tag, out),
            ETH_P_ARP => self.arp_rcv(ifindex, pkt, meta, out),
            _ => dropped(D::UnhandledProto),
        }
    }

    // ---------------------------------------------------------------- ARP

    /// net/ipv4/arp.c arp_rcv + arp_process (arp_ignore 0, arp_accept 0, no proxy).
    fn arp_rcv(
        &mut self,
        ifindex: u32,
        a: &[u8],
        meta: RxMeta,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let Some(dev) = self.dev(ifindex) else {
            return dropped(D::NotSpecified);
        };
        let (noarp, mac) = (!dev.cfg.arp || dev.cfg.loopback, dev.cfg.mac);
        // arp_rcv: IFF_NOARP devices and other hosts' frames are consumed unseen.
        if noarp || meta.pkt_type == PACKET_OTHERHOST {
            return Fate::Delivered(Delivery::Arp);
        }
        if a.len() < 28 || a[4] != 6 || a[5] != 4 {
            return dropped(D::NotSpecified);
        }
        let hrd = be16(a, 0).unwrap_or(0);
        let pro = be16(a, 2).unwrap_or(0);
        let op = be16(a, 6).unwrap_or(0);
        if (hrd != 1 && hrd != 6) || pro != ETH_P_IP || (op != 1 && op != 2) {
            return dropped(D::NotSpecified);
        }
        let (Some(sha), Some(sip), Some(tip)) = (wire::mac(a, 8), ip4(a, 14), ip4(a, 24)) else {
            return dropped(D::NotSpecified);
        };
        if tip.is_multicast() || tip.is_loopback() {
            return dropped(D::NotSpecified);
        }
        if op == 1 {
            self.sinks.arp_requests += 1;
        }
        let tip_local = || {
            self.fib_lookup4(&Flow {
                dst: IpAddr::V4(tip),
                src: IpAddr::V4(sip),
                iif: ifindex,
                oif: 0,
                mark: meta.mark,
                has_saddr: false,
                iface: false,
            })
            .is_ok_and(|r| r.kind == RouteKind::Local)
        };
        if sip.is_unspecified() {
            // Duplicate address detection probe.
            if op == 1 && tip_local() {
                out.push(StackOutput {
                    ifindex,
                    frame: arp_frame(2, sha, mac, tip, sha, sip),
                    origin: Origin::Reply,
                    tag: None,
                });
                self.sinks.arp_replies_sent += 1;
            }
            return Fate::Delivered(Delivery::Arp);
        }
        if op == 1 && !sip.is_multicast() && sip != Ipv4Addr::BROADCAST && tip_local() {
            // neigh_event_ns: the requester becomes a STALE neighbour.
            self.neigh_update(ifindex, IpAddr::V4(sip), sha, NeighState::Stale, out);
            out.push(StackOutput {
                ifindex,
                frame: arp_frame(2, sha, mac, tip, sha, sip),
                origin: Origin::Reply,
                tag: None,
            });
            self.sinks.arp_replies_sent += 1;
            return Fate::Delivered(Delivery::Arp);
        }
        // Update an existing entry (no creation with arp_accept 0).
        if self.neigh.contains_key(&(ifindex, IpAddr::V4(sip))) {
            let state = if op == 2 && meta.pkt_type == PACKET_HOST {
                NeighState::Reachable
            } else {
                NeighState::Stale
            };
            self.neigh_update(ifindex, IpAddr::V4(sip), sha, state, out);
        }
        Fate::Delivered(Delivery::Arp)
    }

    // ---------------------------------------------------------------- IPv4

    /// net/ipv4/ip_input.c ip_rcv_core + ip_rcv_finish (ip_route_input_slow).
    fn ip_rcv(
        &mut self,
        ifindex: u32,
        pkt: &[u8],
        meta: RxMeta,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if meta.pkt_type == PACKET_OTHERHOST {
            return dropped(D::OtherHost);
        }
        let Some(&vihl) = pkt.first() else {
            return dropped(D::IpInhdr);
        };
        if pkt.len() < 20 {
            return dropped(D::IpInhdr);
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return dropped(D::IpInhdr);
        }
        let Some(hdr) = pkt.get(..ihl) else {
            return dropped(D::IpInhdr);
        };
        if checksum(hdr) != 0 {
            return dropped(D::IpCsum);
        }
        let tot = usize::from(be16(pkt, 2).unwrap_or(0));
        if pkt.len() < tot {
            return dropped(D::PktTooSmall);
        }
        if tot < ihl {
            return dropped(D::IpInhdr);
        }
        let ip = &pkt[..tot];
        let (Some(src), Some(dst)) = (ip4(ip, 12), ip4(ip, 16)) else {
            return dropped(D::IpInhdr);
        };
        let is_lo = self.dev(ifindex).is_some_and(|d| d.cfg.loopback);

        // ip_route_input_slow: martians.
        if src.is_multicast() || src == Ipv4Addr::BROADCAST {
            return dropped(D::IpInvalidSource);
        }
        if dst == Ipv4Addr::BROADCAST || (src.is_unspecified() && dst.is_unspecified()) {
            return self.ip_local_deliver(ifindex, ip, ihl, meta, true, out);
        }
        if src.octets()[0] == 0 {
            return dropped(D::IpInvalidSource);
        }
        if dst.octets()[0] == 0 {
            return dropped(D::IpInvalidDest);
        }
        if !is_lo && dst.is_loopback() {
            return dropped(D::IpInvalidDest);
        }
        if !is_lo && src.is_loopback() {
            return dropped(D::IpInvalidSource);
        }
        if dst.is_multicast() {
            // Only the all-hosts group is joined.
            if dst == Ipv4Addr::new(224, 0, 0, 1) {
                return self.ip_local_deliver(ifindex, ip, ihl, meta, true, out);
            }
            return dropped(D::NotSpecified);
        }
        let fl = Flow {
            dst: IpAddr::V4(dst),
            src: IpAddr::V4(src),
            iif: ifindex,
            oif: 0,
            mark: meta.mark,
            has_saddr: false,
            iface: false,
        };
        let fwd = self.dev(ifindex).is_some_and(|d| d.fwd4);
        let res = match self.fib_lookup4(&fl) {
            Ok(r) => r,
            Err(e) => {
                if !fwd {
                    return dropped(D::IpInaddrerrors);
                }
                return self.ip_error(ifindex, ip, meta, e, out);
            }
        };
        match res.kind {
            RouteKind::Broadcast => self.ip_local_deliver(ifindex, ip, ihl, meta, true, out),
            RouteKind::Local => {
                // fib_validate_source: a source that is one of our addresses.
                if !is_lo && self.is_local(IpAddr::V4(src)) {
                    return dropped(D::IpLocalSource);
                }
                self.ip_local_deliver(ifindex, ip, ihl, meta, false, out)
            }
            RouteKind::Unicast => {
                if !fwd {
                    return dropped(D::IpInaddrerrors);
                }
                if self.is_local(IpAddr::V4(src)) {
                    return dropped(D::IpLocalSource);
                }
                self.ip_forward(ifindex, ip, ihl, meta, res, tag, out)
            }
            _ => dropped(D::IpInvalidDest),
        }
    }

    /// net/ipv4/route.c ip_error (forwarding on).
    fn ip_error(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        meta: RxMeta,
        e: FibErr,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let (code, reason) = match e {
            FibErr::Blackhole => return dropped(D::NotSpecified),
            FibErr::NotFound => (0, D::IpInnoroutes),
            FibErr::Unreachable => (1, D::NotSpecified),
            FibErr::Prohibit => (13, D::NotSpecified),
        };
        self.icmp_send(ifindex, ip, meta, ICMP_DEST_UNREACH, code, 0, false, out);
        dropped(reason)
    }

    /// net/ipv4/ip_forward.c ip_forward (+ ip_finish_output's ip_fragment).
    #[allow(clippy::too_many_arguments)]
    fn ip_forward(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        ihl: usize,
        meta: RxMeta,
        res: super::route::FibRes,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if meta.pkt_type != PACKET_HOST {
            return dropped(D::NotSpecified);
        }
        let ttl = u8_at(ip, 8).unwrap_or(0);
        if ttl <= 1 {
            self.icmp_send(ifindex, ip, meta, ICMP_TIME_EXCEEDED, 0, 0, false, out);
            return dropped(D::IpInhdr);
        }
        let Some(odev) = self.dev(res.ifindex) else {
            return dropped(D::NotSpecified);
        };
        // ip_dst_mtu_maybe_forward: the route's MTU metric, else the device's.
        let mtu = res.mtu.unwrap_or(odev.cfg.mtu).min(0xffff) as usize;
        let frag_off = be16(ip, 6).unwrap_or(0);
        let df = frag_off & 0x4000 != 0;
        if ip.len() > mtu && df {
            self.icmp_send(
                ifindex,
                ip,
                meta,
                ICMP_DEST_UNREACH,
                4,
                mtu as u32,
                false,
                out,
            );
            return dropped(D::PktTooBig);
        }
        let nh = res
            .gateway
            .unwrap_or(IpAddr::V4(ip4(ip, 16).unwrap_or(Ipv4Addr::UNSPECIFIED)));
        let mut frame = wire::eth_frame(ETH_P_IP, ip.len());
        frame.extend_from_slice(ip);
        if let Some(h) = frame.get_mut(ETH_HLEN..) {
            ip_decrease_ttl(h);
        }
        // IPSKB_DOREDIRECT (__mkroute_input: out device == in device,
        // send_redirects, fib_validate_source found the source behind this
        // device; shared_media is on by default), then ip_rt_send_redirect,
        // quoting the header with the TTL already decreased. Source-routed
        // packets (opt->srr) get none in the kernel; skiff does not parse
        // IPv4 options.
        if res.ifindex == ifindex && self.send_redirects {
            if let (Some(src), Some(dst)) = (ip4(ip, 12), ip4(ip, 16)) {
                if self.source_behind(ifindex, src, dst) && self.redirect_allowed(src, meta.now_ns)
                {
                    let gw = match res.gateway {
                        Some(IpAddr::V4(g)) => g,
                        _ => dst,
                    };
                    let quoted = frame.get(ETH_HLEN..).unwrap_or(&[]).to_vec();
                    self.icmp_send(
                        ifindex,
                        &quoted,
                        meta,
                        ICMP_REDIRECT,
                        ICMP_REDIR_HOST,
                        u32::from(gw),
                        false,
                        out,
                    );
                }
            }
        }
        if ip.len() <= mtu {
            return fate_of(self.neigh_xmit(
                res.ifindex,
                frame,
                nh,
                Origin::Forwarded,
                Some(tag),
                out,
            ));
        }
        // ip_do_fragment (no DF, too big).
        let frags = fragment4(frame.get(ETH_HLEN..).unwrap_or(&[]), ihl, mtu);
        let Some(frags) = frags else {
            return dropped(D::PktTooBig);
        };
        let mut fate = Fate::Forwarded;
        for f in frags {
            match self.neigh_xmit(res.ifindex, f, nh, Origin::Forwarded, Some(tag), out) {
                Ok(NeighOutput::Queued) => fate = Fate::Queued,
                Ok(NeighOutput::Sent) => {}
                Err(e) => return Fate::Dropped(e),
            }
        }
        fate
    }

    /// net/ipv4/fib_frontend.c __fib_validate_source, as far as the redirect
    /// decision reads it: the route back to `src` (iif: the output device,
    /// no mark) is unicast through `ifindex`.
    fn source_behind(&self, ifindex: u32, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let fl = Flow {
            dst: IpAddr::V4(src),
            src: IpAddr::V4(dst),
            iif: ifindex,
            oif: 0,
            mark: 0,
            has_saddr: false,
            iface: false,
        };
        matches!(self.fib_lookup4(&fl), Ok(r) if r.kind == RouteKind::Unicast && r.ifindex == ifindex)
    }

    /// net/ipv4/route.c ip_rt_send_redirect: per source, the first redirect
    /// goes at once, the next only after ip_rt_redirect_load << n_redirects,
    /// none after ip_rt_redirect_number until ip_rt_redirect_silence passed.
    fn redirect_allowed(&mut self, src: Ipv4Addr, now: u64) -> bool {
        let (last, n) = self.redirect_peers.entry(src).or_insert((now, 0));
        if now > last.saturating_add(REDIRECT_SILENCE_NS) {
            *n = 0;
        }
        if *n >= REDIRECT_NUMBER {
            *last = now;
            return false;
        }
        if *n == 0 || now > last.saturating_add(REDIRECT_LOAD_NS << *n) {
            *last = now;
            *n += 1;
            return true;
        }
        false
    }

    /// ip_local_deliver + ip_protocol_deliver_rcu.
    fn ip_local_deliver(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        ihl: usize,
        meta: RxMeta,
        bcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let proto = u8_at(ip, 9).unwrap_or(0);
        let frag = be16(ip, 6).unwrap_or(0);
        if frag & 0x3fff != 0 {
            // skiff does not reassemble (ip_defrag).
            return Fate::Delivered(Delivery::Other { protocol: proto });
        }
        let (src, dst) = (
            ip4(ip, 12).unwrap_or(Ipv4Addr::UNSPECIFIED),
            ip4(ip, 16).unwrap_or(Ipv4Addr::UNSPECIFIED),
        );
        let l4 = ip.get(ihl..).unwrap_or(&[]);
        match proto {
            IPPROTO_ICMP => self.icmp_rcv(ifindex, ip, l4, meta, bcast, out),
            IPPROTO_UDP => {
                // A zero checksum means none over IPv4.
                let (port, ulen) = match udp_check(l4, |n| pseudo4(src, dst, IPPROTO_UDP, n), true)
                {
                    Ok(v) => v,
                    Err(r) => return dropped(r),
                };
                if !self.port_open(IPPROTO_UDP, port) {
                    if !bcast {
                        self.icmp_send(ifindex, ip, meta, ICMP_DEST_UNREACH, 3, 0, bcast, out);
                    }
                    return dropped(D::NoSocket);
                }
                self.sink(IPPROTO_UDP, port, ulen - 8);
                Fate::Delivered(Delivery::Udp { port })
            }
            IPPROTO_TCP => {
                if meta.pkt_type != PACKET_HOST || bcast {
                    return dropped(D::NotSpecified);
                }
                match self.tcp_check(l4, pseudo4(src, dst, IPPROTO_TCP, l4.len())) {
                    Ok((port, payload)) => self.tcp_sink(port, payload),
                    Err(r) => dropped(r),
                }
            }
            _ => {
                self.icmp_send(ifindex, ip, meta, ICMP_DEST_UNREACH, 2, 0, bcast, out);
                dropped(D::IpNoproto)
            }
        }
    }

    fn tcp_check(&self, t: &[u8], pseudo: u64) -> Result<(u16, usize), DropReason> {
        if t.len() < 20 {
            return Err(D::NotSpecified);
        }
        let doff = usize::from(t[12] >> 4) * 4;
        if doff < 20 {
            return Err(D::PktTooSmall);
        }
        if t.len() < doff {
            return Err(D::NotSpecified);
        }
        if fold(sum(t, pseudo)) != 0 {
            return Err(D::TcpCsum);
        }
        Ok((be16(t, 2).unwrap_or(0), t.len() - doff))
    }

    fn tcp_sink(&mut self, port: u16, payload: usize) -> Fate {
        if !self.port_open(IPPROTO_TCP, port) {
            return dropped(D::NoSocket);
        }
        self.sink(IPPROTO_TCP, port, payload);
        Fate::Delivered(Delivery::Tcp { port })
    }

    fn port_open(&self, proto: u8, port: u16) -> bool {
        self.listening
            .as_ref()
            .is_none_or(|s| s.contains(&(proto, port)))
    }

    fn sink(&mut self, proto: u8, port: u16, bytes: usize) {
        let m = if proto == IPPROTO_UDP {
            &mut self.sinks.udp
        } else {
            &mut self.sinks.tcp
        };
        let c = m.entry(port).or_default();
        c.packets += 1;
        c.bytes += bytes as u64;
    }

    /// net/ipv4/icmp.c icmp_rcv / icmp_echo.
    fn icmp_rcv(
        &mut self,
        _ifindex: u32,
        ip: &[u8],
        icmp: &[u8],
        _meta: RxMeta,
        bcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if checksum(icmp) != 0 {
            return dropped(D::IcmpCsum);
        }
        if icmp.len() < 8 {
            return dropped(D::NotSpecified);
        }
        let t = icmp[0];
        if bcast && (t == 8 || t == 13) {
            // icmp_echo_ignore_broadcasts = 1
            return dropped(D::InvalidProto);
        }
        if t > 18 {
            return dropped(D::UnhandledProto);
        }
        if t != 8 {
            return Fate::Delivered(Delivery::Other {
                protocol: IPPROTO_ICMP,
            });
        }
        self.sinks.icmp_echo_requests += 1;
        let (src, dst) = (
            ip4(ip, 12).unwrap_or(Ipv4Addr::UNSPECIFIED),
            ip4(ip, 16).unwrap_or(Ipv4Addr::UNSPECIFIED),
        );
        let mut msg = icmp.to_vec();
        msg[0] = 0;
        icmp_csum(&mut msg);
        let h = Ipv4Out {
            src: dst,
            dst: src,
            proto: IPPROTO_ICMP,
            tos: u8_at(ip, 1).unwrap_or(0),
            ttl: 64,
            id: self.next_ip_id(),
            df: false,
        };
        let frame = ipv4_frame(&h, &msg);
        if self.ip_output4(frame, Some(dst), src, Origin::Reply, out) {
            self.sinks.echo_replies_sent += 1;
        }
        Fate::Delivered(Delivery::IcmpEcho)
    }

    /// Output route (ip_route_output_key: iif lo, oif 0).
    fn output_route4(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Option<super::route::FibRes> {
        let fl = Flow {
            dst: IpAddr::V4(dst),
            src: IpAddr::V4(src.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            iif: LOOPBACK_IFINDEX,
            oif: 0,
            mark: 0,
            has_saddr: false,
            iface: false,
        };
        self.fib_lookup4(&fl)
            .ok()
            .filter(|r| r.kind == RouteKind::Unicast)
    }

    /// A packet the stack originates: route it and hand it to the neighbour
    /// layer. false when it has no route (the kernel's output path fails).
    fn ip_output4(
        &mut self,
        frame: Vec<u8>,
        src: Option<Ipv4Addr>,
        dst: Ipv4Addr,
        origin: Origin,
        out: &mut Vec<StackOutput>,
    ) -> bool {
        let Some(r) = self.output_route4(dst, src) else {
            return false;
        };
        let nh = r.gateway.unwrap_or(IpAddr::V4(dst));
        self.neigh_xmit(r.ifindex, frame, nh, origin, None, out)
            .is_ok()
    }

    /// net/ipv4/icmp.c __icmp_send: not for non-host frames, broadcast or
    /// multicast destinations, non-first fragments or ICMP errors; the source is
    /// the prefsrc of the route back; quotes at most 576 - 28 bytes; TOS
    /// 0xc0|tos, TTL 64, no DF. No rate limit in skiff.
    #[allow(clippy::too_many_arguments)]
    fn icmp_send(
        &mut self,
        _ifindex: u32,
        ip: &[u8],
        meta: RxMeta,
        t: u8,
        code: u8,
        info: u32,
        bcast: bool,
        out: &mut Vec<StackOutput>,
    ) {
        if meta.pkt_type != PACKET_HOST || bcast {
            return;
        }
        let (Some(src), Some(dst)) = (ip4(ip, 12), ip4(ip, 16)) else {
            return;
        };
        if dst.is_multicast() || dst == Ipv4Addr::BROADCAST {
            return;
        }
        if src.is_unspecified() || src.is_multicast() || src == Ipv4Addr::BROADCAST {
            return;
        }
        if be16(ip, 6).unwrap_or(0) & 0x1fff != 0 {
            return;
        }
        if u8_at(ip, 9) == Some(IPPROTO_ICMP) {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            match u8_at(ip, ihl) {
                Some(it) if it <= 18 && !icmp_is_error(it) => {}
                _ => return,
            }
        }
        let Some(r) = self.output_route4(src, None) else {
            return;
        };
        let Some(saddr) = self.prefsrc4(&r) else {
            return;
        };
        let quote = &ip[..ip.len().min(576 - 28)];
        let mut msg = Vec::with_capacity(8 + quote.len());
        msg.extend_from_slice(&[t, code, 0, 0]);
        msg.extend_from_slice(&info.to_be_bytes());
        msg.extend_from_slice(quote);
        icmp_csum(&mut msg);
        let h = Ipv4Out {
            src: saddr,
            dst: src,
            proto: IPPROTO_ICMP,
            tos: (u8_at(ip, 1).unwrap_or(0) & 0x1e) | 0xc0,
            ttl: 64,
            id: self.next_ip_id(),
            df: false,
        };
        let frame = ipv4_frame(&h, &msg);
        let nh = r.gateway.unwrap_or(IpAddr::V4(src));
        let _ = self.neigh_xmit(r.ifindex, frame, nh, Origin::Error, None, out);
    }

    // ---------------------------------------------------------------- IPv6

    /// net/ipv6/ip6_input.c ip6_rcv_core + ip6_rcv_finish (ip6_route_input).
    fn ipv6_rcv(
        &mut self,
        ifindex: u32,
        pkt: &[u8],
        meta: RxMeta,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if meta.pkt_type == PACKET_OTHERHOST {
            return dropped(D::OtherHost);
        }
        if pkt.len() < 40 {
            return dropped(D::IpInhdr);
        }
        if pkt[0] >> 4 != 6 {
            return dropped(D::UnhandledProto);
        }
        let (Some(src), Some(dst)) = (ip6(pkt, 8), ip6(pkt, 24)) else {
            return dropped(D::IpInhdr);
        };
        let is_lo = self.dev(ifindex).is_some_and(|d| d.cfg.loopback);
        let dm = dst.octets();
        if dm[0] == 0xff && dm[1] & 0x0f == 0 {
            return dropped(D::IpInhdr);
        }
        if !is_lo && dm[0] == 0xff && dm[1] & 0x0f == 1 {
            return dropped(D::IpInhdr);
        }
        if src.is_multicast() {
            return dropped(D::IpInhdr);
        }
        if !is_lo && (src.is_loopback() || dst.is_loopback()) {
            return dropped(D::IpInhdr);
        }
        let plen = usize::from(be16(pkt, 4).unwrap_or(0));
        if 40 + plen > pkt.len() {
            return dropped(D::PktTooSmall);
        }
        let ip = &pkt[..40 + plen];
        if dst.is_multicast() {
            if self.mc_joined6(ifindex, dst) {
                return self.ip6_local_deliver(ifindex, ip, meta, true, out);
            }
            return dropped(D::NotSpecified);
        }
        let fl = Flow {
            dst: IpAddr::V6(dst),
            src: IpAddr::V6(src),
            iif: ifindex,
            oif: ifindex,
            mark: meta.mark,
            has_saddr: !src.is_unspecified(),
            iface: rt6_need_strict(dst),
        };
        let Some(res) = self.fib_lookup6(&fl) else {
            self.icmp6_send(ifindex, ip, meta, 1, 0, 0, out);
            return dropped(D::IpInnoroutes);
        };
        match res.kind {
            RouteKind::Local | RouteKind::Anycast => {
                self.ip6_local_deliver(ifindex, ip, meta, false, out)
            }
            RouteKind::Unicast => {
                if !self.dev(ifindex).is_some_and(|d| d.fwd6) {
                    return dropped(D::IpInaddrerrors);
                }
                self.ip6_forward(ifindex, ip, meta, res, tag, out)
            }
            RouteKind::Blackhole => dropped(D::NotSpecified),
            RouteKind::Prohibit => {
                self.icmp6_send(ifindex, ip, meta, 1, 1, 0, out);
                dropped(D::IpInnoroutes)
            }
            _ => {
                self.icmp6_send(ifindex, ip, meta, 1, 0, 0, out);
                dropped(D::IpInnoroutes)
            }
        }
    }

    /// ipv6_chk_mcast_addr: all-nodes, all-routers (forwarding), and the
    /// solicited-node groups of the device's addresses.
    fn mc_joined6(&self, ifindex: u32, g: Ipv6Addr) -> bool {
        let Some(d) = self.dev(ifindex) else {
            return false;
        };
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
        g == all_nodes
            || (d.fwd6 && g == all_routers)
            || d.v6.iter().any(|x| solicited_node(x.0) == g)
    }

    /// net/ipv6/ip6_output.c ip6_forward.
    fn ip6_forward(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        meta: RxMeta,
        res: super::route::FibRes,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if meta.pkt_type != PACKET_HOST {
            return dropped(D::NotSpecified);
        }
        let hop = u8_at(ip, 7).unwrap_or(0);
        if hop <= 1 {
            self.icmp6_send(ifindex, ip, meta, 3, 0, 0, out);
            return dropped(D::IpInhdr);
        }
        let src = ip6(ip, 8).unwrap_or(Ipv6Addr::UNSPECIFIED);
        if res.ifindex != ifindex {
            if src.is_unspecified() || src.is_multicast() || src.is_loopback() {
                return dropped(D::IpInaddrerrors);
            }
            if super::route::v6_scope(src) == 2 {
                self.icmp6_send(ifindex, ip, meta, 1, 2, 0, out);
                return dropped(D::IpInaddrerrors);
            }
        }
        let Some(odev) = self.dev(res.ifindex) else {
            return dropped(D::NotSpecified);
        };
        let mtu = res.mtu.unwrap_or(odev.cfg.mtu).max(1280) as usize;
        if ip.len() > mtu {
            self.icmp6_send(ifindex, ip, meta, 2, 0, mtu as u32, out);
            return dropped(D::PktTooBig);
        }
        let dst = ip6(ip, 24).unwrap_or(Ipv6Addr::UNSPECIFIED);
        let nh = res.gateway.unwrap_or(IpAddr::V6(dst));
        let mut frame = wire::eth_frame(ETH_P_IPV6, ip.len());
        frame.extend_from_slice(ip);
        if let Some(h) = frame.get_mut(ETH_HLEN + 7) {
            *h = hop - 1;
        }
        fate_of(self.neigh_xmit(res.ifindex, frame, nh, Origin::Forwarded, Some(tag), out))
    }

    /// ip6_input_finish / ip6_protocol_deliver_rcu: extension headers, then the
    /// upper layer.
    fn ip6_local_deliver(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        meta: RxMeta,
        mcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let (src, dst) = (
            ip6(ip, 8).unwrap_or(Ipv6Addr::UNSPECIFIED),
            ip6(ip, 24).unwrap_or(Ipv6Addr::UNSPECIFIED),
        );
        let mut nh = u8_at(ip, 6).unwrap_or(59);
        let mut nh_off = 6usize;
        let mut off = 40usize;
        loop {
            match nh {
                0 | 43 | 60 => {
                    let (Some(next), Some(len)) = (u8_at(ip, off), u8_at(ip, off + 1)) else {
                        return dropped(D::IpInhdr);
                    };
                    if nh == 43 && u8_at(ip, off + 3).unwrap_or(0) != 0 {
                        // Segments left: skiff does not route source-routed packets.
                        return dropped(D::NotSpecified);
                    }
                    let l = (usize::from(len) + 1) * 8;
                    if off + l > ip.len() {
                        return dropped(D::IpInhdr);
                    }
                    nh_off = off;
                    nh = next;
                    off += l;
                }
                44 | 59 => return Fate::Delivered(Delivery::Other { protocol: nh }),
                _ => break,
            }
        }
        let l4 = ip.get(off..).unwrap_or(&[]);
        let pseudo = |p: u8| pseudo6(src, dst, p, l4.len());
        match nh {
            IPPROTO_ICMPV6 => self.icmpv6_rcv(ifindex, ip, l4, meta, mcast, out),
            IPPROTO_UDP => {
                // IPv6 requires the checksum (a zero one is invalid).
                let (port, ulen) = match udp_check(l4, |n| pseudo6(src, dst, IPPROTO_UDP, n), false)
                {
                    Ok(v) => v,
                    Err(r) => return dropped(r),
                };
                if !self.port_open(IPPROTO_UDP, port) {
                    if !mcast {
                        self.icmp6_send(ifindex, ip, meta, 1, 4, 0, out);
                    }
                    return dropped(D::NoSocket);
                }
                self.sink(IPPROTO_UDP, port, ulen - 8);
                Fate::Delivered(Delivery::Udp { port })
            }
            IPPROTO_TCP => {
                if mcast {
                    return dropped(D::NotSpecified);
                }
                match self.tcp_check(l4, pseudo(IPPROTO_TCP)) {
                    Ok((port, payload)) => self.tcp_sink(port, payload),
                    Err(r) => dropped(r),
                }
            }
            _ => {
                // ICMPV6_PARAMPROB / ICMPV6_UNK_NEXTHDR pointing at the next-header byte.
                self.icmp6_send(ifindex, ip, meta, 4, 1, nh_off as u32, out);
                dropped(D::IpNoproto)
            }
        }
    }

    /// net/ipv6/icmp.c icmpv6_rcv (echo) and net/ipv6/ndisc.c ndisc_rcv.
    fn icmpv6_rcv(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        msg: &[u8],
        meta: RxMeta,
        mcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let (src, dst) = (
            ip6(ip, 8).unwrap_or(Ipv6Addr::UNSPECIFIED),
            ip6(ip, 24).unwrap_or(Ipv6Addr::UNSPECIFIED),
        );
        if fold(sum(msg, pseudo6(src, dst, IPPROTO_ICMPV6, msg.len()))) != 0 {
            return dropped(D::IcmpCsum);
        }
        if msg.len() < 4 {
            return dropped(D::NotSpecified);
        }
        match msg[0] {
            128 => {
                if msg.len() < 8 {
                    return dropped(D::NotSpecified);
                }
                self.sinks.icmpv6_echo_requests += 1;
                let mut reply = msg.to_vec();
                reply[0] = 129;
                let tclass = ((be32(ip, 0).unwrap_or(0) >> 20) & 0xff) as u8;
                let Some(r) = self.output_route6(src, None) else {
                    return Fate::Delivered(Delivery::Icmpv6Echo);
                };
                let saddr = if mcast {
                    self.ipv6_dev_get_saddr(r.ifindex, src)
                } else {
                    Some(dst)
                };
                let Some(saddr) = saddr else {
                    return Fate::Delivered(Delivery::Icmpv6Echo);
                };
                icmp6_csum(saddr, src, &mut reply);
                let frame = ipv6_frame(saddr, src, IPPROTO_ICMPV6, 64, tclass, &reply);
                let nh = r.gateway.unwrap_or(IpAddr::V6(src));
                if self
                    .neigh_xmit(r.ifindex, frame, nh, Origin::Reply, None, out)
                    .is_ok()
                {
                    self.sinks.echo_replies_sent += 1;
                }
                Fate::Delivered(Delivery::Icmpv6Echo)
            }
            133..=137 => self.ndisc_rcv(ifindex, ip, msg, meta, out),
            _ => Fate::Delivered(Delivery::Other {
                protocol: IPPROTO_ICMPV6,
            }),
        }
    }

    /// net/ipv6/ndisc.c ndisc_rcv, ndisc_recv_ns, ndisc_recv_na.
    fn ndisc_rcv(
        &mut self,
        ifindex: u32,
        ip: &[u8],
        msg: &[u8],
        _meta: RxMeta,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if u8_at(ip, 7) != Some(255) {
            return dropped(D::Ipv6NdiscHopLimit);
        }
        if msg.get(1) != Some(&0) {
            return dropped(D::Ipv6NdiscBadCode);
        }
        let t = msg[0];
        if t != 135 && t != 136 {
            return Fate::Delivered(Delivery::Ndisc);
        }
        if msg.len() < 24 {
            return dropped(D::PktTooSmall);
        }
        let (src, dst) = (
            ip6(ip, 8).unwrap_or(Ipv6Addr::UNSPECIFIED),
            ip6(ip, 24).unwrap_or(Ipv6Addr::UNSPECIFIED),
        );
        let Some(target) = ip6(msg, 8) else {
            return dropped(D::PktTooSmall);
        };
        // ndisc_parse_options: (type, len*8) records; link-layer address options
        // on Ethernet must be 8 bytes.
        let mut lladdr = None;
        let mut o = 24usize;
        while o < msg.len() {
            let (Some(ot), Some(ol)) = (u8_at(msg, o), u8_at(msg, o + 1)) else {
                return dropped(D::Ipv6NdiscBadOptions);
            };
            let l = usize::from(ol) * 8;
            if l == 0 || o + l > msg.len() {
                return dropped(D::Ipv6NdiscBadOptions);
            }
            let want = if t == 135 { 1 } else { 2 };
            if ot == want {
                if ol != 1 {
                    return dropped(D::Ipv6NdiscBadOptions);
                }
                lladdr = wire::mac(msg, o + 2);
            }
            o += l;
        }
        if target.is_multicast() {
            return dropped(if t == 135 {
                D::Ipv6NdiscNsOtherhost
            } else {
                D::NotSpecified
            });
        }
        if self.dev(ifindex).is_none() {
            return dropped(D::NotSpecified);
        }
        if t == 136 {
            let flags = msg[4];
            if dst.is_multicast() && flags & 0x40 != 0 {
                return dropped(D::NotSpecified);
            }
            if let Some(n) = self.neigh.get(&(ifindex, IpAddr::V6(target))) {
                let mac = lladdr.unwrap_or(n.mac);
                let state = if flags & 0x40 != 0 {
                    NeighState::Reachable
                } else {
                    NeighState::Stale
                };
                self.neigh_update(ifindex, IpAddr::V6(target), mac, state, out);
            }
            return Fate::Delivered(Delivery::Ndisc);
        }
        self.sinks.neighbour_solicitations += 1;
        let Some(dev) = self.dev(ifindex) else {
            return dropped(D::NotSpecified);
        };
        let dad = src.is_unspecified();
        if dad && (solicited_node(target) != dst || lladdr.is_some()) {
            return dropped(D::Ipv6NdiscBadOptions);
        }
        let ours = dev.v6.iter().any(|x| x.0 == target);
        let anycast = dev.fwd6
            && dev.v6.iter().any(|&(a, p)| {
                p < 127 && Ipv6Addr::from(u128::from(a) & wire::mask128(p)) == target
            });
        if !ours && !anycast {
            return dropped(D::Ipv6NdiscNsOtherhost);
        }
        let router = dev.fwd6;
        let mac = dev.cfg.mac;
        let inc = dst.is_multicast();
        if dad {
            let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            self.ndisc_send_na(ifindex, all, target, router, false, ours, true, mac, out);
            return Fate::Delivered(Delivery::Ndisc);
        }
        if let Some(ll) = lladdr {
            self.neigh_update(ifindex, IpAddr::V6(src), ll, NeighState::Stale, out);
        }
        self.ndisc_send_na(
            ifindex,
            src,
            target,
            router,
            true,
            ours && inc,
            inc,
            mac,
            out,
        );
        Fate::Delivered(Delivery::Ndisc)
    }

    /// ndisc_send_na: from the target (ours), hop limit 255, on the NS's device.
    #[allow(clippy::too_many_arguments)]
    fn ndisc_send_na(
        &mut self,
        ifindex: u32,
        daddr: Ipv6Addr,
        target: Ipv6Addr,
        router: bool,
        solicited: bool,
        override_: bool,
        tllao: bool,
        mac: [u8; 6],
        out: &mut Vec<StackOutput>,
    ) {
        let ours = self
            .dev(ifindex)
            .is_some_and(|d| d.v6.iter().any(|x| x.0 == target));
        let saddr = if ours {
            Some(target)
        } else {
            self.ipv6_dev_get_saddr(ifindex, daddr)
        };
        let Some(saddr) = saddr else { return };
        let flags =
            (u8::from(router) << 7) | (u8::from(solicited) << 6) | (u8::from(override_) << 5);
        let mut msg = Vec::with_capacity(32);
        msg.extend_from_slice(&[136, 0, 0, 0, flags, 0, 0, 0]);
        msg.extend_from_slice(&target.octets());
        if tllao {
            msg.extend_from_slice(&[2, 1]);
            msg.extend_from_slice(&mac);
        }
        icmp6_csum(saddr, daddr, &mut msg);
        let frame = ipv6_frame(saddr, daddr, IPPROTO_ICMPV6, 255, 0, &msg);
        if self
            .neigh_xmit(ifindex, frame, IpAddr::V6(daddr), Origin::Reply, None, out)
            .is_ok()
        {
            self.sinks.neighbour_advertisements_sent += 1;
        }
    }

    fn output_route6(&self, dst: Ipv6Addr, src: Option<Ipv6Addr>) -> Option<super::route::FibRes> {
        let fl = Flow {
            dst: IpAddr::V6(dst),
            src: IpAddr::V6(src.unwrap_or(Ipv6Addr::UNSPECIFIED)),
            iif: LOOPBACK_IFINDEX,
            oif: 0,
            mark: 0,
            has_saddr: src.is_some(),
            iface: rt6_need_strict(dst),
        };
        self.fib_lookup6(&fl)
            .filter(|r| r.kind == RouteKind::Unicast)
    }

    /// net/ipv6/icmp.c icmp6_send: not about multicast destinations (except
    /// packet too big), unspecified/multicast sources or ICMPv6 errors; source =
    /// the original destination when it is ours, else source address
    /// selection; quotes at most 1280 - 48 bytes; hop limit 64.
    #[allow(clippy::too_many_arguments)]
    fn icmp6_send(
        &mut self,
        _ifindex: u32,
        ip: &[u8],
        meta: RxMeta,
        t: u8,
        code: u8,
        info: u32,
        out: &mut Vec<StackOutput>,
    ) {
        let (Some(src), Some(dst)) = (ip6(ip, 8), ip6(ip, 24)) else {
            return;
        };
        if (dst.is_multicast() || meta.pkt_type != PACKET_HOST) && t != 2 {
            return;
        }
        if src.is_unspecified() || src.is_multicast() {
            return;
        }
        // is_ineligible: an ICMPv6 error (type < 128) is never answered.
        if u8_at(ip, 6) == Some(IPPROTO_ICMPV6) && u8_at(ip, 40).is_none_or(|it| it < 128) {
            return;
        }
        let Some(r) = self.output_route6(src, None) else {
            return;
        };
        let saddr = if self.is_local(IpAddr::V6(dst)) {
            Some(dst)
        } else {
            self.ipv6_dev_get_saddr(r.ifindex, src)
        };
        let Some(saddr) = saddr else { return };
        let quote = &ip[..ip.len().min(1280 - 48)];
        let mut msg = Vec::with_capacity(8 + quote.len());
        msg.extend_from_slice(&[t, code, 0, 0]);
        msg.extend_from_slice(&info.to_be_bytes());
        msg.extend_from_slice(quote);
        icmp6_csum(saddr, src, &mut msg);
        let frame = ipv6_frame(saddr, src, IPPROTO_ICMPV6, 64, 0, &msg);
        let nh = r.gateway.unwrap_or(IpAddr::V6(src));
        let _ = self.neigh_xmit(r.ifindex, frame, nh, Origin::Error, None, out);
    }
}

/// net/ipv4/ip_output.c ip_do_fragment (slow path): fragments of at most `mtu`
/// bytes, payload in multiples of 8, options not marked "copied" replaced by
/// NOPs after the first (ip_options_fragment). `ip` is the whole packet.
fn fragment4(ip: &[u8], ihl: usize, mtu: usize) -> Option<Vec<Vec<u8>>> {
    let hdr = ip.get(..ihl)?;
    let data = ip.get(ihl..)?;
    let per = (mtu.checked_sub(ihl)?) & !7;
    if per == 0 {
        return None;
    }
    let orig = be16(ip, 6)?;
    let base = usize::from(orig & 0x1fff) * 8;
    let more = orig & 0x2000 != 0;
    let mut later_hdr = hdr.to_vec();
    let mut o = 20;
    while o < ihl {
        let t = later_hdr[o];
        if t == 0 {
            break;
        }
        if t == 1 {
            o += 1;
            continue;
        }
        let l = usize::from(*later_hdr.get(o + 1)?);
        if l < 2 || o + l > ihl {
            break;
        }
        if t & 0x80 == 0 {
            later_hdr[o..o + l].fill(1);
        }
        o += l;
    }
    let mut v = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let n = per.min(data.len() - off);
        let last = off + n == data.len();
        let mut f = wire::eth_frame(ETH_P_IP, ihl + n);
        f.extend_from_slice(if off == 0 { hdr } else { &later_hdr });
        f.extend_from_slice(&data[off..off + n]);
        let h = &mut f[ETH_HLEN..ETH_HLEN + ihl];
        h[2..4].copy_from_slice(&((ihl + n) as u16).to_be_bytes());
        let fo = (((base + off) / 8) as u16 & 0x1fff) | if !last || more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[10..12].fill(0);
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        v.push(f);
        off += n;
    }
    Some(v)
}

/// net/ipv4/udp.c __udp4_lib_rcv / net/ipv6/udp.c __udp6_lib_rcv: the header and
/// length checks and the checksum (`pseudo(len)` is the pseudo-header sum; a zero
/// checksum means "none" only where `zero_ok`). Returns (port, UDP length).
fn udp_check(
    l4: &[u8],
    pseudo: impl Fn(usize) -> u64,
    zero_ok: bool,
) -> Result<(u16, usize), DropReason> {
    if l4.len() < 8 {
        return Err(D::NotSpecified);
    }
    let ulen = usize::from(be16(l4, 4).unwrap_or(0));
    if ulen > l4.len() || ulen < 8 {
        return Err(D::PktTooSmall);
    }
    let u = &l4[..ulen];
    let none = be16(u, 6) == Some(0);
    if (none && !zero_ok) || (!none && fold(sum(u, pseudo(ulen))) != 0) {
        return Err(D::UdpCsum);
    }
    Ok((be16(u, 2).unwrap_or(0), ulen))
}
