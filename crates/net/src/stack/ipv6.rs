//! IPv6 receive: net/ipv6/ip6_input.c (ip6_rcv_core, ip6_rcv_finish,
//! ip6_input_finish), ip6_output.c ip6_forward, route.c ip6_pkt_drop,
//! icmp.c (icmpv6_rcv, icmp6_send) and ndisc.c (ndisc_rcv, neighbour
//! solicitation and advertisement) of a namespace's host stack.

use std::net::{IpAddr, Ipv6Addr};

use skiff_wire::checksum::pseudo_header_v6;
use skiff_wire::icmpv6::{
    self, NdiscRepr, ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_PARAMPROB,
    ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, NA_SOLICITED, NDISC_NEIGHBOUR_ADVERTISEMENT,
    NDISC_NEIGHBOUR_SOLICITATION, NDISC_REDIRECT, NDISC_ROUTER_SOLICITATION,
};
use skiff_wire::{
    ipv6, Error as WireError, Icmpv6Packet, Ipv6ExtHeader, Ipv6Packet, Ipv6Repr, ETH_P_IPV6,
    IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMPV6, IPPROTO_NONE,
    IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
};

use super::frame::{eth_frame, ipv6_frame, ETH_HLEN};
use super::neigh::NeighState;
use super::route::{mask128, rt6_need_strict, Flow, LOOPBACK_IFINDEX};
use super::{
    Delivery, Fate, HostStack, Origin, RouteKind, RxMeta, StackOutput, PACKET_HOST,
    PACKET_OTHERHOST,
};

use super::input::{dropped, fate_of, udp_check, D};
use crate::netfilter::{NfHook, NfProto};

impl HostStack {
    /// net/ipv6/ip6_input.c ip6_rcv_core + ip6_rcv_finish (ip6_route_input).
    pub(super) fn ipv6_rcv(
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
        let mut nf_buf = Vec::new();
        let ip = match self.nf_rx6(NfHook::PreRouting, ifindex, ip, &mut meta, &mut nf_buf, out) {
            Ok(ip) => ip,
            Err(fate) => return fate,
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
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
    pub(super) fn mc_joined6(&self, ifindex: u32, g: Ipv6Addr) -> bool {
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
    pub(super) fn ip6_forward(
        &mut self,
        ifindex: u32,
        ip: Ipv6Packet<&[u8]>,
        mut meta: RxMeta,
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
        if let Some(fate) = self.nf_forward(
            NfProto::Ipv6,
            ifindex,
            res.ifindex,
            &mut frame,
            &mut meta,
            out,
        ) {
            return fate;
        }
        fate_of(self.neigh_xmit(res.ifindex, frame, nh, Origin::Forwarded, Some(tag), out))
    }

    /// ip6_input_finish / ip6_protocol_deliver_rcu: extension headers, then the
    /// upper layer.
    pub(super) fn ip6_local_deliver(
        &mut self,
        ifindex: u32,
        ip: Ipv6Packet<&[u8]>,
        mut meta: RxMeta,
        mcast: bool,
        out: &mut Vec<StackOutput>,
    ) -> Fate {
        let mut nf_buf = Vec::new();
        let ip = match self.nf_rx6(NfHook::LocalIn, ifindex, ip, &mut meta, &mut nf_buf, out) {
            Ok(ip) => ip,
            Err(fate) => return fate,
        };
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
                    Ok((port, _)) if !self.port_open(IPPROTO_TCP, port) => {
                        self.tcp_v6_send_reset(ip, l4, out);
                        dropped(D::NoSocket)
                    }
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
    pub(super) fn icmpv6_rcv(
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
                if self.sysctl.icmpv6_echo_ignore_all {
                    return Fate::Delivered(Delivery::Icmpv6Echo);
                }
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
                let mut frame = ipv6_frame(&icmpv6_header(saddr, src, 64, tclass), &reply);
                if self
                    .nf_local_out(NfProto::Ipv6, r.ifindex, &mut frame, out)
                    .is_some()
                {
                    return Fate::Delivered(Delivery::Icmpv6Echo);
                }
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
    pub(super) fn ndisc_rcv(
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
    pub(super) fn ndisc_send_na(
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
        let mut frame = ipv6_frame(&icmpv6_header(saddr, daddr, 255, 0), &msg);
        if self
            .nf_local_out(NfProto::Ipv6, ifindex, &mut frame, out)
            .is_some()
        {
            return;
        }
        if self
            .neigh_xmit(ifindex, frame, IpAddr::V6(daddr), Origin::Reply, None, out)
            .is_ok()
        {
            self.sinks.neighbour_advertisements_sent += 1;
        }
    }

    pub(super) fn output_route6(
        &self,
        dst: Ipv6Addr,
        src: Option<Ipv6Addr>,
    ) -> Option<super::route::FibRes> {
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
    /// selection; quotes at most 1280 - 48 bytes; hop limit 64; rate limited
    /// as icmpv6_global_allow and icmpv6_xrlim_allow (`ratelimit`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp6_send(
        &mut self,
        ifindex: u32,
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
        let limited = !self.icmp_limits.mask_allow_v6(t);
        let Some(apply) = self.icmp_global_gate(ifindex, limited) else {
            return;
        };
        let Some(r) = self.output_route6(src, None) else {
            return;
        };
        let saddr = if self.is_local(IpAddr::V6(dst)) {
            Some(dst)
        } else {
            self.ipv6_dev_get_saddr(r.ifindex, src)
        };
        let Some(saddr) = saddr else { return };
        // icmpv6_xrlim_allow: packet too big is never limited per peer.
        let timeout = self.icmp_limits.v6_ratelimit_ms;
        let apply = apply && t != ICMPV6_PKT_TOOBIG;
        if !self.icmp_peer_gate(apply, r.ifindex, IpAddr::V6(src), timeout) {
            return;
        }
        let b = ip.as_bytes();
        let quote = &b[..b.len().min(1280 - 48)];
        let msg = icmpv6::message(t, code, info, quote, saddr, src);
        let mut frame = ipv6_frame(&icmpv6_header(saddr, src, 64, 0), &msg);
        if self
            .nf_local_out(NfProto::Ipv6, r.ifindex, &mut frame, out)
            .is_some()
        {
            return;
        }
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
