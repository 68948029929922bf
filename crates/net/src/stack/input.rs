//! Receive: net/ipv4/ip_input.c (ip_rcv_core, ip_rcv_finish), net/ipv4/route.c
//! (ip_route_input_slow, ip_error), net/ipv4/ip_forward.c ip_forward,
//! net/ipv4/arp.c arp_process, net/ipv4/icmp.c (icmp_rcv, icmp_echo, icmp_send),
//! UDP/TCP sinks, and their IPv6 counterparts (net/ipv6/ip6_input.c,
//! ip6_output.c ip6_forward, route.c ip6_pkt_drop, icmp.c, ndisc.c).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use skiff_wire::arp::{ARPOP_REPLY, ARPOP_REQUEST};
use skiff_wire::checksum::{pseudo_header_v4, pseudo_header_v6};
use skiff_wire::icmpv4::{
    self, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHOREPLY, ICMP_REDIRECT, ICMP_TIMESTAMP,
    ICMP_TIME_EXCEEDED, NR_ICMP_TYPES,
};
use skiff_wire::icmpv6::{
    self, NdiscRepr, ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_PARAMPROB,
    ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, NA_SOLICITED, NDISC_NEIGHBOUR_ADVERTISEMENT,
    NDISC_NEIGHBOUR_SOLICITATION, NDISC_REDIRECT, NDISC_ROUTER_SOLICITATION,
};
use skiff_wire::ipv4::{IP_MF, IP_OFFSET};
use skiff_wire::{
    ipv6, ArpPacket, ArpRepr, Error as WireError, EthernetFrame, Icmpv4Packet, Icmpv6Packet,
    Ipv4Packet, Ipv4Repr, Ipv6ExtHeader, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket, ETH_P_ARP,
    ETH_P_IP, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_NONE, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
};

use super::frame::{eth_frame, ipv4_frame, ipv6_frame, ETH_HLEN};
use super::neigh::{arp_frame, NeighOutput, NeighState};
use super::route::{mask128, rt6_need_strict, FibErr, Flow, LOOPBACK_IFINDEX};
use super::{
    Delivery, Fate, HostStack, Origin, RouteKind, RxMeta, StackOutput, PACKET_HOST,
    PACKET_OTHERHOST,
};
use crate::drop::DropReason;

type D = DropReason;

/// ICMP_REDIR_HOST: the code of a host redirect.
const ICMP_REDIR_HOST: u8 = 1;
/// net/ipv4/route.c: ip_rt_redirect_number, ip_rt_redirect_load (HZ/50),
/// ip_rt_redirect_silence ((HZ/50) << (9 + 1)).
const REDIRECT_NUMBER: u32 = 9;
const REDIRECT_LOAD_NS: u64 = 20_000_000;
const REDIRECT_SILENCE_NS: u64 = REDIRECT_LOAD_NS << (REDIRECT_NUMBER + 1);

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
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return dropped(D::PktTooSmall);
        };
        let pkt = eth.payload();
        match eth.ethertype() {
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
        let Ok(arp) = ArpPacket::new_checked(a).and_then(|p| ArpRepr::parse(&p)) else {
            return dropped(D::NotSpecified);
        };
        let op = arp.operation;
        if op != ARPOP_REQUEST && op != ARPOP_REPLY {
            return dropped(D::NotSpecified);
        }
        let (sha, sip, tip) = (
            arp.source_hardware_addr,
            arp.source_protocol_addr,
            arp.target_protocol_addr,
        );
        if tip.is_multicast() || tip.is_loopback() {
            return dropped(D::NotSpecified);
        }
        if op == ARPOP_REQUEST {
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
            if op == ARPOP_REQUEST && tip_local() {
                out.push(StackOutput {
                    ifindex,
                    frame: arp_frame(ARPOP_REPLY, sha, mac, tip, sha, sip),
                    origin: Origin::Reply,
                    tag: None,
                });
                self.sinks.arp_replies_sent += 1;
            }
            return Fate::Delivered(Delivery::Arp);
        }
        if op == ARPOP_REQUEST && !sip.is_multicast() && sip != Ipv4Addr::BROADCAST && tip_local() {
            // neigh_event_ns: the requester becomes a STALE neighbour.
            self.neigh_update(ifindex, IpAddr::V4(sip), sha, NeighState::Stale, out);
            out.push(StackOutput {
                ifindex,
                frame: arp_frame(ARPOP_REPLY, sha, mac, tip, sha, sip),
                origin: Origin::Reply,
                tag: None,
            });
            self.sinks.arp_replies_sent += 1;
            return Fate::Delivered(Delivery::Arp);
        }
        // Update an existing entry (no creation with arp_accept 0).
        if self.neigh.contains_key(&(ifindex, IpAddr::V4(sip))) {
            let state = if op == ARPOP_REPLY && meta.pkt_type == PACKET_HOST {
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
        let ip = Ipv4Packet::new_unchecked(pkt);
        if ip.check_header().is_err() {
            return dropped(D::IpInhdr);
        }
        if !ip.verify_checksum() {
            return dropped(D::IpCsum);
        }
        match ip.check_total_len() {
            Ok(()) => {}
            Err(WireError::Truncated { .. }) => return dropped(D::PktTooSmall),
            Err(_) => return dropped(D::IpInhdr),
        }
        let ip = Ipv4Packet::new_unchecked(&pkt[..usize::from(ip.total_len())]);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let is_lo = self.dev(ifindex).is_some_and(|d| d.cfg.loopback);

        // ip_route_input_slow: martians.
        if src.is_multicast() || src == Ipv4Addr::BROADCAST {
            return dropped(D::IpInvalidSource);
        }
        if dst == Ipv4Addr::BROADCAST || (src.is_unspecified() && dst.is_unspecified()) {
            return self.ip_local_deliver(ifindex, ip, meta, true, out);
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
                return self.ip_local_deliver(ifindex, ip, meta, true, out);
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
            RouteKind::Broadcast => self.ip_local_deliver(ifindex, ip, meta, true, out),
            RouteKind::Local => {
                // fib_validate_source: a source that is one of our addresses.
                if !is_lo && self.is_local(IpAddr::V4(src)) {
                    return dropped(D::IpLocalSource);
                }
                self.ip_local_deliver(ifindex, ip, meta, false, out)
            }
            RouteKind::Unicast => {
                if !fwd {
                    return dropped(D::IpInaddrerrors);
                }
                if self.is_local(IpAddr::V4(src)) {
                    return dropped(D::IpLocalSource);
                }
                self.ip_forward(ifindex, ip, meta, res, tag, out)
            }
            _ => dropped(D::IpInvalidDest),
        }
    }

    /// net/ipv4/route.c ip_error (forwarding on).
    fn ip_error(
        &mut self,
        ifindex: u32,
        ip: Ipv4Packet<&[u8]>,
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
    fn ip_forward(
        &mut self,
        ifindex: u32,
        ip: Ipv4Packet<&[u8]>,
        meta: RxMeta,
        res: super::route::FibRes,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if meta.pkt_type != PACKET_HOST {
            return dropped(D::NotSpecified);
        }
        if ip.ttl() <= 1 {
            self.icmp_send(ifindex, ip, meta, ICMP_TIME_EXCEEDED, 0, 0, false, out);
            return dropped(D::IpInhdr);
        }
        let Some(odev) = self.dev(res.ifindex) else {
            return dropped(D::NotSpecified);
        };
        // ip_dst_mtu_maybe_forward: the route's MTU metric, else the device's.
        let mtu = res.mtu.unwrap_or(odev.cfg.mtu).min(0xffff) as usize;
        let len = ip.as_bytes().len();
        if len > mtu && ip.dont_frag() {
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
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let nh = res.gateway.unwrap_or(IpAddr::V4(dst));
        let mut frame = eth_frame(ETH_P_IP, len);
        frame.extend_from_slice(ip.as_bytes());
        Ipv4Packet::new_unchecked(&mut frame[ETH_HLEN..]).decrease_ttl();
        // IPSKB_DOREDIRECT (__mkroute_input: out device == in device,
        // send_redirects, fib_validate_source found the source behind this
        // device; shared_media is on by default), then ip_rt_send_redirect,
        // quoting the header with the TTL already decreased. Source-routed
        // packets (opt->srr) get none in the kernel; skiff does not parse
        // IPv4 options.
        if res.ifindex == ifindex
            && self.send_redirects
            && self.source_behind(ifindex, src, dst)
            && self.redirect_allowed(src, meta.now_ns)
        {
            let gw = match res.gateway {
                Some(IpAddr::V4(g)) => g,
                _ => dst,
            };
            let quoted = frame[ETH_HLEN..].to_vec();
            self.icmp_send(
                ifindex,
                Ipv4Packet::new_unchecked(&quoted),
                meta,
                ICMP_REDIRECT,
                ICMP_REDIR_HOST,
                u32::from(gw),
                false,
                out,
            );
        }
        if len <= mtu {
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
        let frags = fragment4(&frame[ETH_HLEN..], mtu);
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
        ip: Ipv4Packet<&[u8]>,
        meta: RxMeta,
        bcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let proto = ip.protocol();
        if ip.is_fragment() {
            // skiff does not reassemble (ip_defrag).
            return Fate::Delivered(Delivery::Other { protocol: proto });
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let l4 = ip.payload();
        match proto {
            IPPROTO_ICMP => self.icmp_rcv(ifindex, ip, l4, meta, bcast, out),
            IPPROTO_UDP => {
                // A zero checksum means none over IPv4.
                let (port, ulen) =
                    match udp_check(l4, |n| pseudo_header_v4(src, dst, IPPROTO_UDP, n), true) {
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
                match self.tcp_check(l4, pseudo_header_v4(src, dst, IPPROTO_TCP, l4.len())) {
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

    /// tcp_v4_rcv / tcp_v6_rcv's header and checksum checks: (port, payload length).
    fn tcp_check(&self, t: &[u8], pseudo: u64) -> Result<(u16, usize), DropReason> {
        let th = match TcpPacket::new_checked(t) {
            Ok(th) => th,
            Err(WireError::Malformed { .. }) => return Err(D::PktTooSmall),
            Err(WireError::Truncated { .. }) => return Err(D::NotSpecified),
        };
        if !th.verify_checksum(pseudo) {
            return Err(D::TcpCsum);
        }
        Ok((th.dst_port(), th.payload().len()))
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
        ip: Ipv4Packet<&[u8]>,
        icmp: &[u8],
        _meta: RxMeta,
        bcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if !Icmpv4Packet::new_unchecked(icmp).verify_checksum() {
            return dropped(D::IcmpCsum);
        }
        let Ok(msg) = Icmpv4Packet::new_checked(icmp) else {
            return dropped(D::NotSpecified);
        };
        let t = msg.msg_type();
        if bcast && (t == ICMP_ECHO || t == ICMP_TIMESTAMP) {
            // icmp_echo_ignore_broadcasts = 1
            return dropped(D::InvalidProto);
        }
        if t > NR_ICMP_TYPES {
            return dropped(D::UnhandledProto);
        }
        if t != ICMP_ECHO {
            return Fate::Delivered(Delivery::Other {
                protocol: IPPROTO_ICMP,
            });
        }
        self.sinks.icmp_echo_requests += 1;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut msg = icmp.to_vec();
        let mut reply = Icmpv4Packet::new_unchecked(&mut msg[..]);
        reply.set_msg_type(ICMP_ECHOREPLY);
        reply.fill_checksum();
        let h = Ipv4Repr {
            src_addr: dst,
            dst_addr: src,
            protocol: IPPROTO_ICMP,
            tos: ip.tos(),
            ttl: 64,
            ident: self.next_ip_id(),
            dont_frag: false,
            payload_len: msg.len(),
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
        ip: Ipv4Packet<&[u8]>,
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
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if dst.is_multicast() || dst == Ipv4Addr::BROADCAST {
            return;
        }
        if src.is_unspecified() || src.is_multicast() || src == Ipv4Addr::BROADCAST {
            return;
        }
        if ip.frag_offset() != 0 {
            return;
        }
        if ip.protocol() == IPPROTO_ICMP {
            // The quoted message's type: its first byte (it may be shorter
            // than an ICMP header).
            match ip.payload().first() {
                Some(&it) if it <= NR_ICMP_TYPES && !icmpv4::is_error(it) => {}
                _ => return,
            }
        }
        let Some(r) = self.output_route4(src, None) else {
            return;
        };
        let Some(saddr) = self.prefsrc4(&r) else {
            return;
        };
        let b = ip.as_bytes();
        let quote = &b[..b.len().min(576 - 28)];
        let msg = icmpv4::message(t, code, info, quote);
        let h = Ipv4Repr {
            src_addr: saddr,
            dst_addr: src,
            protocol: IPPROTO_ICMP,
            tos: (ip.tos() & 0x1e) | 0xc0,
            ttl: 64,
            ident: self.next_ip_id(),
            dont_frag: false,
            payload_len: msg.len(),
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
        let ip = Ipv6Packet::new_unchecked(pkt);
        match ip.check_header() {
            Ok(()) => {}
            Err(WireError::Truncated { .. }) => return dropped(D::IpInhdr),
            Err(_) => return dropped(D::UnhandledProto),
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
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
        if ip.check_payload_len().is_err() {
            return dropped(D::PktTooSmall);
        }
        let ip =
            Ipv6Packet::new_unchecked(&pkt[..ipv6::HEADER_LEN + usize::from(ip.payload_len())]);
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
            self.icmp6_send(ifindex, ip, meta, ICMPV6_DEST_UNREACH, 0, 0, out);
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
                self.icmp6_send(ifindex, ip, meta, ICMPV6_DEST_UNREACH, 1, 0, out);
                dropped(D::IpInnoroutes)
            }
            _ => {
                self.icmp6_send(ifindex, ip, meta, ICMPV6_DEST_UNREACH, 0, 0, out);
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
            || d.v6.iter().any(|x| ipv6::solicited_node(x.0) == g)
    }

    /// net/ipv6/ip6_output.c ip6_forward.
    fn ip6_forward(
        &mut self,
        ifindex: u32,
        ip: Ipv6Packet<&[u8]>,
        meta: RxMeta,
        res: super::route::FibRes,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if meta.pkt_type != PACKET_HOST {
            return dropped(D::NotSpecified);
        }
        let hop = ip.hop_limit();
        if hop <= 1 {
            self.icmp6_send(ifindex, ip, meta, ICMPV6_TIME_EXCEED, 0, 0, out);
            return dropped(D::IpInhdr);
        }
        let src = ip.src_addr();
        if res.ifindex != ifindex {
            if src.is_unspecified() || src.is_multicast() || src.is_loopback() {
                return dropped(D::IpInaddrerrors);
            }
            if super::route::v6_scope(src) == 2 {
                self.icmp6_send(ifindex, ip, meta, ICMPV6_DEST_UNREACH, 2, 0, out);
                return dropped(D::IpInaddrerrors);
            }
        }
        let Some(odev) = self.dev(res.ifindex) else {
            return dropped(D::NotSpecified);
        };
        let mtu = res.mtu.unwrap_or(odev.cfg.mtu).max(1280) as usize;
        let len = ip.as_bytes().len();
        if len > mtu {
            self.icmp6_send(ifindex, ip, meta, ICMPV6_PKT_TOOBIG, 0, mtu as u32, out);
            return dropped(D::PktTooBig);
        }
        let nh = res.gateway.unwrap_or(IpAddr::V6(ip.dst_addr()));
        let mut frame = eth_frame(ETH_P_IPV6, len);
        frame.extend_from_slice(ip.as_bytes());
        Ipv6Packet::new_unchecked(&mut frame[ETH_HLEN..]).set_hop_limit(hop - 1);
        fate_of(self.neigh_xmit(res.ifindex, frame, nh, Origin::Forwarded, Some(tag), out))
    }

    /// ip6_input_finish / ip6_protocol_deliver_rcu: extension headers, then the
    /// upper layer.
    fn ip6_local_deliver(
        &mut self,
        ifindex: u32,
        ip: Ipv6Packet<&[u8]>,
        meta: RxMeta,
        mcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let b = ip.as_bytes();
        let mut nh = ip.next_header();
        let mut nh_off = ipv6::NEXTHDR_OFFSET;
        let mut off = ipv6::HEADER_LEN;
        loop {
            match nh {
                IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                    // ipv6_parse_hopopts / ipv6_rthdr_rcv / ipv6_destopt_rcv:
                    // the whole header must be there (INHDRERRORS).
                    let Ok(h) = Ipv6ExtHeader::new_checked(&b[off..]) else {
                        return dropped(D::IpInhdr);
                    };
                    if nh == IPPROTO_ROUTING && h.segments_left() != 0 {
                        // Segments left: skiff does not route source-routed packets.
                        return dropped(D::NotSpecified);
                    }
                    nh_off = off;
                    nh = h.next_header();
                    off += h.header_len();
                }
                IPPROTO_FRAGMENT | IPPROTO_NONE => {
                    return Fate::Delivered(Delivery::Other { protocol: nh })
                }
                _ => break,
            }
        }
        let l4 = &b[off..];
        let pseudo = |p: u8| pseudo_header_v6(src, dst, p, l4.len());
        match nh {
            IPPROTO_ICMPV6 => self.icmpv6_rcv(ifindex, ip, l4, meta, mcast, out),
            IPPROTO_UDP => {
                // IPv6 requires the checksum (a zero one is invalid).
                let (port, ulen) =
                    match udp_check(l4, |n| pseudo_header_v6(src, dst, IPPROTO_UDP, n), false) {
                        Ok(v) => v,
                        Err(r) => return dropped(r),
                    };
                if !self.port_open(IPPROTO_UDP, port) {
                    if !mcast {
                        self.icmp6_send(ifindex, ip, meta, ICMPV6_DEST_UNREACH, 4, 0, out);
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
                self.icmp6_send(ifindex, ip, meta, ICMPV6_PARAMPROB, 1, nh_off as u32, out);
                dropped(D::IpNoproto)
            }
        }
    }

    /// net/ipv6/icmp.c icmpv6_rcv (echo) and net/ipv6/ndisc.c ndisc_rcv.
    fn icmpv6_rcv(
        &mut self,
        ifindex: u32,
        ip: Ipv6Packet<&[u8]>,
        msg: &[u8],
        _meta: RxMeta,
        mcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if !Icmpv6Packet::new_unchecked(msg).verify_checksum(src, dst) {
            return dropped(D::IcmpCsum);
        }
        let Ok(icmp) = Icmpv6Packet::new_checked(msg) else {
            return dropped(D::NotSpecified);
        };
        match icmp.msg_type() {
            ICMPV6_ECHO_REQUEST => {
                if msg.len() < icmpv6::HEADER_LEN {
                    return dropped(D::NotSpecified);
                }
                self.sinks.icmpv6_echo_requests += 1;
                let mut reply = msg.to_vec();
                Icmpv6Packet::new_unchecked(&mut reply[..]).set_msg_type(ICMPV6_ECHO_REPLY);
                let tclass = ip.traffic_class();
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
                Icmpv6Packet::new_unchecked(&mut reply[..]).fill_checksum(saddr, src);
                let frame = ipv6_frame(&icmpv6_header(saddr, src, 64, tclass), &reply);
                let nh = r.gateway.unwrap_or(IpAddr::V6(src));
                if self
                    .neigh_xmit(r.ifindex, frame, nh, Origin::Reply, None, out)
                    .is_ok()
                {
                    self.sinks.echo_replies_sent += 1;
                }
                Fate::Delivered(Delivery::Icmpv6Echo)
            }
            NDISC_ROUTER_SOLICITATION..=NDISC_REDIRECT => self.ndisc_rcv(ifindex, ip, icmp, out),
            _ => Fate::Delivered(Delivery::Other {
                protocol: IPPROTO_ICMPV6,
            }),
        }
    }

    /// net/ipv6/ndisc.c ndisc_rcv, ndisc_recv_ns, ndisc_recv_na.
    fn ndisc_rcv(
        &mut self,
        ifindex: u32,
        ip: Ipv6Packet<&[u8]>,
        msg: Icmpv6Packet<&[u8]>,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        if ip.hop_limit() != 255 {
            return dropped(D::Ipv6NdiscHopLimit);
        }
        if msg.msg_code() != 0 {
            return dropped(D::Ipv6NdiscBadCode);
        }
        let t = msg.msg_type();
        if t != NDISC_NEIGHBOUR_SOLICITATION && t != NDISC_NEIGHBOUR_ADVERTISEMENT {
            return Fate::Delivered(Delivery::Ndisc);
        }
        if msg.as_bytes().len() < icmpv6::NDISC_LEN {
            return dropped(D::PktTooSmall);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        // ndisc_parse_options: (type, len*8) records; link-layer address options
        // on Ethernet must be 8 bytes.
        let Ok(nd) = NdiscRepr::parse(&msg) else {
            return dropped(D::Ipv6NdiscBadOptions);
        };
        let (target, lladdr, na_flags) = match nd {
            NdiscRepr::NeighborSolicit { target, lladdr } => (target, lladdr, None),
            NdiscRepr::NeighborAdvert {
                flags,
                target,
                lladdr,
            } => (target, lladdr, Some(flags)),
        };
        if target.is_multicast() {
            return dropped(if na_flags.is_none() {
                D::Ipv6NdiscNsOtherhost
            } else {
                D::NotSpecified
            });
        }
        if self.dev(ifindex).is_none() {
            return dropped(D::NotSpecified);
        }
        if let Some(flags) = na_flags {
            if dst.is_multicast() && flags & NA_SOLICITED != 0 {
                return dropped(D::NotSpecified);
            }
            if let Some(n) = self.neigh.get(&(ifindex, IpAddr::V6(target))) {
                let mac = lladdr.unwrap_or(n.mac);
                let state = if flags & NA_SOLICITED != 0 {
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
        if dad && (ipv6::solicited_node(target) != dst || lladdr.is_some()) {
            return dropped(D::Ipv6NdiscBadOptions);
        }
        let ours = dev.v6.iter().any(|x| x.0 == target);
        let anycast = dev.fwd6
            && dev
                .v6
                .iter()
                .any(|&(a, p)| p < 127 && Ipv6Addr::from(u128::from(a) & mask128(p)) == target);
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
        let flags = (u8::from(router) * icmpv6::NA_ROUTER)
            | (u8::from(solicited) * NA_SOLICITED)
            | (u8::from(override_) * icmpv6::NA_OVERRIDE);
        let msg = NdiscRepr::NeighborAdvert {
            flags,
            target,
            lladdr: tllao.then_some(mac),
        }
        .to_message(saddr, daddr);
        let frame = ipv6_frame(&icmpv6_header(saddr, daddr, 255, 0), &msg);
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
        ip: Ipv6Packet<&[u8]>,
        meta: RxMeta,
        t: u8,
        code: u8,
        info: u32,
        out: &mut Vec<StackOutput>,
    ) {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if (dst.is_multicast() || meta.pkt_type != PACKET_HOST) && t != ICMPV6_PKT_TOOBIG {
            return;
        }
        if src.is_unspecified() || src.is_multicast() {
            return;
        }
        // is_ineligible: an ICMPv6 error (type < 128) is never answered; the
        // type is the payload's first byte (the message may be shorter).
        if ip.next_header() == IPPROTO_ICMPV6
            && ip
                .payload()
                .first()
                .is_none_or(|&it| it < ICMPV6_ECHO_REQUEST)
        {
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
        let b = ip.as_bytes();
        let quote = &b[..b.len().min(1280 - 48)];
        let msg = icmpv6::message(t, code, info, quote, saddr, src);
        let frame = ipv6_frame(&icmpv6_header(saddr, src, 64, 0), &msg);
        let nh = r.gateway.unwrap_or(IpAddr::V6(src));
        let _ = self.neigh_xmit(r.ifindex, frame, nh, Origin::Error, None, out);
    }
}

/// The IPv6 header of an ICMPv6 message the stack sends.
fn icmpv6_header(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, tclass: u8) -> Ipv6Repr {
    Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IPPROTO_ICMPV6,
        hop_limit,
        traffic_class: tclass,
        payload_len: 0,
    }
}

/// net/ipv4/ip_output.c ip_do_fragment (slow path): fragments of at most `mtu`
/// bytes, payload in multiples of 8, options not marked "copied" replaced by
/// NOPs after the first (ip_options_fragment). `ip` is the whole packet, its
/// header checked.
fn fragment4(ip: &[u8], mtu: usize) -> Option<Vec<Vec<u8>>> {
    let p = Ipv4Packet::new_unchecked(ip);
    let ihl = p.header_len();
    let (hdr, data) = (p.header(), p.payload());
    let per = (mtu.checked_sub(ihl)?) & !7;
    if per == 0 {
        return None;
    }
    let base = p.frag_offset();
    let more = p.more_frags();
    let mut later_hdr = hdr.to_vec();
    Ipv4Packet::new_unchecked(&mut later_hdr[..])
        .options_fragment()
        .ok()?;
    let mut v = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let n = per.min(data.len() - off);
        let last = off + n == data.len();
        let mut f = eth_frame(ETH_P_IP, ihl + n);
        f.extend_from_slice(if off == 0 { hdr } else { &later_hdr });
        f.extend_from_slice(&data[off..off + n]);
        let mut h = Ipv4Packet::new_unchecked(&mut f[ETH_HLEN..]);
        h.set_total_len((ihl + n) as u16);
        let mf = if !last || more { IP_MF } else { 0 };
        h.set_frag_off((((base + off) / 8) as u16 & IP_OFFSET) | mf);
        h.fill_checksum();
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
    let u = UdpPacket::new_unchecked(l4);
    if u.check_header().is_err() {
        return Err(D::NotSpecified);
    }
    if u.check_len().is_err() {
        return Err(D::PktTooSmall);
    }
    let ulen = usize::from(u.length());
    let none = u.checksum() == 0;
    if (none && !zero_ok) || (!none && !u.verify_checksum(pseudo(ulen))) {
        return Err(D::UdpCsum);
    }
    Ok((u.dst_port(), ulen))
}
