//! IPv4 receive: net/ipv4/ip_input.c (ip_rcv_core, ip_rcv_finish), net/ipv4/route.c
//! (ip_route_input_slow, ip_error), net/ipv4/ip_forward.c ip_forward,
//! net/ipv4/arp.c arp_process, net/ipv4/icmp.c (icmp_rcv, icmp_echo, icmp_send),
//! the UDP/TCP sinks, and the entry (`receive`) that hands IPv6 to `ipv6`.

use std::net::{IpAddr, Ipv4Addr};

use skiff_wire::arp::{ARPOP_REPLY, ARPOP_REQUEST};
use skiff_wire::checksum::pseudo_header_v4;
use skiff_wire::icmpv4::{
    self, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHOREPLY, ICMP_REDIRECT, ICMP_TIMESTAMP,
    ICMP_TIME_EXCEEDED, NR_ICMP_TYPES,
};
use skiff_wire::ipv4::{IP_MF, IP_OFFSET};
use skiff_wire::{
    ArpPacket, ArpRepr, Error as WireError, EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv4Repr,
    TcpPacket, UdpPacket, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};

use super::frame::{eth_frame, ipv4_frame, ETH_HLEN};
use super::neigh::{arp_frame, NeighOutput, NeighState};
use super::route::{FibErr, Flow, LOOPBACK_IFINDEX};
use super::{
    Delivery, Fate, HostStack, Origin, RouteKind, RxMeta, StackOutput, PACKET_HOST,
    PACKET_OTHERHOST,
};
use crate::drop::DropReason;
use crate::netfilter::{NfHook, NfProto};

pub(super) type D = DropReason;

/// ICMP_REDIR_HOST: the code of a host redirect.
const ICMP_REDIR_HOST: u8 = 1;
/// net/ipv4/route.c: ip_rt_redirect_number, ip_rt_redirect_load (HZ/50),
/// ip_rt_redirect_silence ((HZ/50) << (9 + 1)).
const REDIRECT_NUMBER: u32 = 9;
const REDIRECT_LOAD_NS: u64 = 20_000_000;
const REDIRECT_SILENCE_NS: u64 = REDIRECT_LOAD_NS << (REDIRECT_NUMBER + 1);

pub(super) fn dropped(r: DropReason) -> Fate {
    Fate::Dropped(r)
}

pub(super) fn fate_of(r: Result<NeighOutput, DropReason>) -> Fate {
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
    pub(super) fn arp_rcv(
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
    pub(super) fn ip_rcv(
        &mut self,
        ifindex: u32,
        pkt: &[u8],
        mut meta: RxMeta,
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
        let mut nf_buf = Vec::new();
        let ip = match self.nf_rx4(NfHook::PreRouting, ifindex, ip, &mut meta, &mut nf_buf, out) {
            Ok(ip) => ip,
            Err(fate) => return fate,
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let is_lo = self.dev(ifindex).is_some_and(|d| d.cfg.loopback);

        // ip_route_input_slow: martians.
        if src.is_multicast() || src == Ipv4Addr::BROADCAST {
            return dropped(D::IpInvalidSource);
        }
        if dst == Ipv4Addr::BROADCAST || (src.is_unspecified() && dst.is_unspecified()) {
            if let Err(r) = self.rp_filter_input(ifindex, src, dst) {
                return dropped(r);
            }
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
        if res.kind != RouteKind::Unicast || fwd {
            if let Err(r) = self.rp_filter_input(ifindex, src, dst) {
                return dropped(r);
            }
        }
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
    pub(super) fn ip_error(
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
    pub(super) fn ip_forward(
        &mut self,
        ifindex: u32,
        ip: Ipv4Packet<&[u8]>,
        mut meta: RxMeta,
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
        if let Some(fate) = self.nf_forward(
            NfProto::Ipv4,
            ifindex,
            res.ifindex,
            &mut frame,
            &mut meta,
            out,
        ) {
            return fate;
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
    pub(super) fn source_behind(&self, ifindex: u32, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
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
    pub(super) fn redirect_allowed(&mut self, src: Ipv4Addr, now: u64) -> bool {
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
    pub(super) fn ip_local_deliver(
        &mut self,
        ifindex: u32,
        ip: Ipv4Packet<&[u8]>,
        mut meta: RxMeta,
        bcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let mut nf_buf = Vec::new();
        let ip = match self.nf_rx4(NfHook::LocalIn, ifindex, ip, &mut meta, &mut nf_buf, out) {
            Ok(ip) => ip,
            Err(fate) => return fate,
        };
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
                    Ok((port, _)) if !self.port_open(IPPROTO_TCP, port) => {
                        self.tcp_v4_send_reset(ip, l4, out);
                        dropped(D::NoSocket)
                    }
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
    pub(super) fn tcp_check(&self, t: &[u8], pseudo: u64) -> Result<(u16, usize), DropReason> {
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

    pub(super) fn tcp_sink(&mut self, port: u16, payload: usize) -> Fate {
        if !self.port_open(IPPROTO_TCP, port) {
            return dropped(D::NoSocket);
        }
        self.sink(IPPROTO_TCP, port, payload);
        Fate::Delivered(Delivery::Tcp { port })
    }

    pub(super) fn port_open(&self, proto: u8, port: u16) -> bool {
        self.listening
            .as_ref()
            .is_none_or(|s| s.contains(&(proto, port)))
    }

    pub(super) fn sink(&mut self, proto: u8, port: u16, bytes: usize) {
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
    pub(super) fn icmp_rcv(
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
        if bcast
            && (t == ICMP_ECHO || t == ICMP_TIMESTAMP)
            && self.sysctl.icmp_echo_ignore_broadcasts
        {
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
        if self.sysctl.icmp_echo_ignore_all {
            // icmp_echo: consumed without an answer.
            return Fate::Delivered(Delivery::IcmpEcho);
        }
        let Some((src, dst)) = self.echo_addresses(ip, bcast) else {
            return Fate::Delivered(Delivery::IcmpEcho);
        };
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

    /// (the requester, the reply's source): icmp_reply's fib_compute_spec_dst
    /// answers a broadcast or multicast echo from the address the route back
    /// selects, a unicast one from the address asked.
    fn echo_addresses(&self, ip: Ipv4Packet<&[u8]>, bcast: bool) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if !bcast {
            return Some((src, dst));
        }
        let r = self.output_route4(src, None)?;
        Some((src, self.prefsrc4(&r)?))
    }

    /// Output route (ip_route_output_key: iif lo, oif 0).
    pub(super) fn output_route4(
        &self,
        dst: Ipv4Addr,
        src: Option<Ipv4Addr>,
    ) -> Option<super::route::FibRes> {
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
    pub(super) fn ip_output4(
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
        let mut frame = frame;
        if self
            .nf_local_out(NfProto::Ipv4, r.ifindex, &mut frame, out)
            .is_some()
        {
            return false;
        }
        self.neigh_xmit(r.ifindex, frame, nh, origin, None, out)
            .is_ok()
    }

    /// net/ipv4/icmp.c __icmp_send: not for non-host frames, broadcast or
    /// multicast destinations, non-first fragments or ICMP errors; the source is
    /// the prefsrc of the route back; quotes at most 576 - 28 bytes; TOS
    /// 0xc0|tos, TTL 64, no DF; rate limited as icmpv4_global_allow and
    /// icmpv4_xrlim_allow (`ratelimit`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp_send(
        &mut self,
        ifindex: u32,
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
        let limited = !self.icmp_limits.mask_allow_v4(t, code);
        let Some(apply) = self.icmp_global_gate(ifindex, limited) else {
            return;
        };
        let Some(r) = self.output_route4(src, None) else {
            return;
        };
        let Some(saddr) = self.prefsrc4(&r) else {
            return;
        };
        let timeout = self.icmp_limits.ratelimit_ms;
        if !self.icmp_peer_gate(apply, r.ifindex, IpAddr::V4(src), timeout) {
            return;
        }
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
        let mut frame = ipv4_frame(&h, &msg);
        if self
            .nf_local_out(NfProto::Ipv4, r.ifindex, &mut frame, out)
            .is_some()
        {
            return;
        }
        let nh = r.gateway.unwrap_or(IpAddr::V4(src));
        let _ = self.neigh_xmit(r.ifindex, frame, nh, Origin::Error, None, out);
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
pub(super) fn udp_check(
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
