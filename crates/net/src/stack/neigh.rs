//! Neighbours: the ARP/NDP table, the per-neighbour queue of packets waiting for
//! resolution (net/core/neighbour.c __neigh_event_send, neigh_timer_handler,
//! neigh_update) and ip_finish_output2 / neigh_output, which fills the Ethernet
//! header or queues the packet and solicits.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use skiff_wire::arp::{self, ArpPacket, ArpRepr};
use skiff_wire::icmpv6::NdiscRepr;
use skiff_wire::{
    ipv4, ipv6, EthernetFrame, Ipv4Packet, Ipv6Packet, Ipv6Repr, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6,
    IPPROTO_ICMPV6,
};

use super::frame::{self, ETH_HLEN};
use super::{HostStack, Origin, StackOutput};
use crate::drop::DropReason;

/// NEIGH_VAR(RETRANS_TIME): 1 s between solicitations.
pub const RETRANS_NS: u64 = 1_000_000_000;
/// ucast_probes (3) + app_probes (0) + mcast_probes (3) with probes starting at
/// ucast_probes: three solicitations, then NUD_FAILED.
pub const MAX_SOLICITS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    Incomplete,
    Reachable,
    Stale,
    Permanent,
    /// NUD_NOARP: devices without ARP (the address is the device's own).
    NoArp,
    Failed,
}

impl NeighState {
    /// NUD_VALID
    pub fn valid(self) -> bool {
        !matches!(self, NeighState::Incomplete | NeighState::Failed)
    }
}

/// A packet waiting for its neighbour (a frame with an unfilled Ethernet header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedPacket {
    pub ifindex: u32,
    pub frame: Vec<u8>,
    pub origin: Origin,
    pub tag: Option<u64>,
}

/// What `neigh_output` did with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighOutput {
    /// Pushed into `out` with its Ethernet header filled.
    Sent,
    /// Queued until the neighbour answers (a solicitation went into `out`).
    Queued,
}

#[derive(Clone, Debug)]
pub(crate) struct Neigh {
    pub state: NeighState,
    pub mac: [u8; 6],
    pub solicits: u32,
    pub next_probe_ns: u64,
    pub queue: VecDeque<QueuedPacket>,
    pub queue_bytes: usize,
}

/// An estimate of skb->truesize for a frame of `len` bytes: the kmalloc'ed data
/// area (NET_SKB_PAD + data + skb_shared_info, rounded up to the slab size) plus
/// struct sk_buff, as SKB_TRUESIZE counts them.
pub fn truesize(len: usize) -> usize {
    use crate::buff::{kmalloc_size_roundup, NET_SKB_PAD, SKB_SHARED_INFO_SIZE};
    kmalloc_size_roundup(len + NET_SKB_PAD + SKB_SHARED_INFO_SIZE) + 256
}

/// The (source, destination) addresses of an IPv4 or IPv6 frame whose fixed
/// network header is all there (its version and lengths unchecked, as the
/// kernel reads ip_hdr/ipv6_hdr of an skb it built).
fn frame_addrs(frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.payload();
    match eth.ethertype() {
        ETH_P_IP if l3.len() >= ipv4::HEADER_LEN => {
            let ip = Ipv4Packet::new_unchecked(l3);
            Some((IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr())))
        }
        ETH_P_IPV6 if l3.len() >= ipv6::HEADER_LEN => {
            let ip = Ipv6Packet::new_unchecked(l3);
            Some((IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr())))
        }
        _ => None,
    }
}

/// Multicast/broadcast next hops map to a MAC without resolution
/// (arp_mc_map / ndisc_mc_map).
fn mc_map(nh: IpAddr) -> Option<[u8; 6]> {
    match nh {
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => Some([0xff; 6]),
        IpAddr::V4(a) if a.is_multicast() => Some(ipv4::eth_mc_map(a)),
        IpAddr::V6(a) if a.is_multicast() => Some(ipv6::eth_mc_map(a)),
        _ => None,
    }
}

impl HostStack {
    /// ip_finish_output2 / neigh_output for a frame leaving by `ifindex` towards
    /// `nexthop` (the frame's destination IP when None): fills the Ethernet
    /// header from the neighbour table, or queues the frame and solicits
    /// (bpf_redirect_neigh uses this too). Err when it cannot: no such device or
    /// device down (DEV_READY), a frame under 14 bytes (PKT_TOO_SMALL), no IP
    /// destination to resolve (NEIGH_FAILED).
    pub fn neigh_output(
        &mut self,
        ifindex: u32,
        frame: &mut Vec<u8>,
        nexthop: Option<IpAddr>,
        tag: u64,
        out: &mut Vec<StackOutput>,
    ) -> Result<NeighOutput, DropReason> {
        if frame.len() < ETH_HLEN {
            return Err(DropReason::PktTooSmall);
        }
        let nh = match nexthop.or_else(|| frame_addrs(frame).map(|a| a.1)) {
            Some(nh) => nh,
            None => return Err(DropReason::NeighFailed),
        };
        let f = std::mem::take(frame);
        self.neigh_xmit(ifindex, f, nh, Origin::Forwarded, Some(tag), out)
    }

    pub(crate) fn neigh_xmit(
        &mut self,
        ifindex: u32,
        mut frame: Vec<u8>,
        nh: IpAddr,
        origin: Origin,
        tag: Option<u64>,
        out: &mut Vec<StackOutput>,
    ) -> Result<NeighOutput, DropReason> {
        let Some(dev) = self.dev(ifindex) else {
            return Err(DropReason::DevReady);
        };
        if !dev.cfg.up {
            return Err(DropReason::DevReady);
        }
        if frame.len() < ETH_HLEN {
            return Err(DropReason::PktTooSmall);
        }
        let dmac = dev.cfg.mac;
        if !dev.cfg.arp || dev.cfg.loopback {
            // arp_constructor / ndisc_constructor: NUD_NOARP, ha = dev_addr.
            self.neigh.entry((ifindex, nh)).or_insert(Neigh {
                state: NeighState::NoArp,
                mac: dmac,
                solicits: 0,
                next_probe_ns: 0,
                queue: VecDeque::new(),
                queue_bytes: 0,
            });
            frame::set_eth(&mut frame, dmac, dmac);
            out.push(StackOutput {
                ifindex,
                frame,
                origin,
                tag,
            });
            return Ok(NeighOutput::Sent);
        }
        if let Some(m) = mc_map(nh) {
            frame::set_eth(&mut frame, m, dmac);
            out.push(StackOutput {
                ifindex,
                frame,
                origin,
                tag,
            });
            return Ok(NeighOutput::Sent);
        }
        let now = self.now_ns;
        let limit = self.unres_qlen_bytes;
        let n = self.neigh.entry((ifindex, nh)).or_insert(Neigh {
            state: NeighState::Failed,
            mac: [0; 6],
            solicits: 0,
            next_probe_ns: 0,
            queue: VecDeque::new(),
            queue_bytes: 0,
        });
        if n.state.valid() {
            frame::set_eth(&mut frame, n.mac, dmac);
            out.push(StackOutput {
                ifindex,
                frame,
                origin,
                tag,
            });
            return Ok(NeighOutput::Sent);
        }
        let start = n.state == NeighState::Failed;
        if start {
            n.state = NeighState::Incomplete;
            n.solicits = 0;
            n.next_probe_ns = now;
        }
        // __neigh_event_send: over unres_qlen_bytes the oldest packets go.
        let ts = truesize(frame.len());
        while n.queue_bytes + ts > limit {
            let Some(old) = n.queue.pop_front() else {
                break;
            };
            n.queue_bytes = n.queue_bytes.saturating_sub(truesize(old.frame.len()));
            self.pending_drops.push((old, DropReason::NeighQueuefull));
        }
        n.queue_bytes += ts;
        n.queue.push_back(QueuedPacket {
            ifindex,
            frame,
            origin,
            tag,
        });
        if start {
            self.solicit(ifindex, nh, out);
        }
        Ok(NeighOutput::Queued)
    }

    /// arp_solicit / ndisc_solicit for the entry (ifindex, target).
    fn solicit(&mut self, ifindex: u32, target: IpAddr, out: &mut Vec<StackOutput>) {
        let now = self.now_ns;
        let queued_src = self
            .neigh
            .get(&(ifindex, target))
            .and_then(|n| n.queue.front())
            .and_then(|p| frame_addrs(&p.frame).map(|a| a.0));
        if let Some(n) = self.neigh.get_mut(&(ifindex, target)) {
            n.solicits += 1;
            n.next_probe_ns = now.saturating_add(RETRANS_NS);
        }
        let Some(dev) = self.dev(ifindex) else { return };
        let mac = dev.cfg.mac;
        match target {
            IpAddr::V4(t) => {
                // arp_announce 0: the queued packet's source if it is ours, else
                // inet_select_addr(dev, target, RT_SCOPE_LINK).
                let sip = match queued_src {
                    Some(IpAddr::V4(s)) if self.is_local(IpAddr::V4(s)) => s,
                    _ => self
                        .inet_select_addr(ifindex, Some(t), 253)
                        .unwrap_or(Ipv4Addr::UNSPECIFIED),
                };
                let frame = arp_frame(1, [0xff; 6], mac, sip, [0; 6], t);
                out.push(StackOutput {
                    ifindex,
                    frame,
                    origin: Origin::Solicit,
                    tag: None,
                });
            }
            IpAddr::V6(t) => {
                // ndisc_solicit: the queued packet's source if it is an address of
                // this device, else its link-local address. skiff falls back to any
                // address of the device (the kernel sends nothing without one).
                let d = self.dev(ifindex);
                let on_dev = |a: Ipv6Addr| d.is_some_and(|d| d.v6.iter().any(|x| x.0 == a));
                let saddr = match queued_src {
                    Some(IpAddr::V6(s)) if on_dev(s) => Some(s),
                    _ => d.and_then(|d| {
                        d.v6.iter()
                            .find(|x| super::route::v6_scope(x.0) == 2)
                            .or_else(|| d.v6.first())
                            .map(|x| x.0)
                    }),
                };
                let Some(saddr) = saddr else { return };
                let dst = ipv6::solicited_node(t);
                let msg = NdiscRepr::NeighborSolicit {
                    target: t,
                    lladdr: Some(mac),
                }
                .to_message(saddr, dst);
                let h = Ipv6Repr {
                    src_addr: saddr,
                    dst_addr: dst,
                    next_header: IPPROTO_ICMPV6,
                    hop_limit: 255,
                    traffic_class: 0,
                    payload_len: msg.len(),
                };
                let mut frame = frame::ipv6_frame(&h, &msg);
                frame::set_eth(&mut frame, ipv6::eth_mc_map(dst), mac);
                out.push(StackOutput {
                    ifindex,
                    frame,
                    origin: Origin::Solicit,
                    tag: None,
                });
            }
        }
    }

    /// neigh_update: a Permanent entry keeps its address; a valid address
    /// flushes the queue into `out`.
    pub(crate) fn neigh_update(
        &mut self,
        ifindex: u32,
        ip: IpAddr,
        mac: [u8; 6],
        state: NeighState,
        out: &mut Vec<StackOutput>,
    ) {
        let n = self.neigh.entry((ifindex, ip)).or_insert(Neigh {
            state,
            mac,
            solicits: 0,
            next_probe_ns: 0,
            queue: VecDeque::new(),
            queue_bytes: 0,
        });
        if n.state == NeighState::Permanent && state != NeighState::Permanent {
            return;
        }
        n.state = state;
        n.mac = mac;
        n.solicits = 0;
        let q: Vec<QueuedPacket> = n.queue.drain(..).collect();
        n.queue_bytes = 0;
        let src = self.dev(ifindex).map(|d| d.cfg.mac).unwrap_or([0; 6]);
        for mut p in q {
            frame::set_eth(&mut p.frame, mac, src);
            out.push(StackOutput {
                ifindex: p.ifindex,
                frame: p.frame,
                origin: p.origin,
                tag: p.tag,
            });
        }
    }

    /// The neighbour timer (neigh_timer_handler) up to `now_ns`: an incomplete
    /// entry re-solicits every second; after three solicitations it fails and
    /// its queued packets end NEIGH_FAILED.
    pub fn neigh_timeout(
        &mut self,
        now_ns: u64,
        out: &mut Vec<StackOutput>,
        dropped: &mut Vec<(QueuedPacket, DropReason)>,
    ) {
        self.now_ns = self.now_ns.max(now_ns);
        dropped.append(&mut self.pending_drops);
        let mut keys: Vec<(u32, IpAddr)> = self
            .neigh
            .iter()
            .filter(|(_, n)| n.state == NeighState::Incomplete && n.next_probe_ns <= now_ns)
            .map(|(k, _)| *k)
            .collect();
        keys.sort();
        for k in keys {
            loop {
                let Some(n) = self.neigh.get(&k) else { break };
                if n.state != NeighState::Incomplete || n.next_probe_ns > now_ns {
                    break;
                }
                if n.solicits >= MAX_SOLICITS {
                    if let Some(mut n) = self.neigh.remove(&k) {
                        for p in n.queue.drain(..) {
                            dropped.push((p, DropReason::NeighFailed));
                        }
                    }
                    break;
                }
                let at = n.next_probe_ns;
                let saved = self.now_ns;
                self.now_ns = at;
                self.solicit(k.0, k.1, out);
                self.now_ns = saved;
            }
        }
    }

    /// End of a replay: every unresolved entry goes, its packets returned (each
    /// ends NEIGH_FAILED).
    pub fn flush_unresolved(&mut self) -> Vec<QueuedPacket> {
        let mut v = Vec::new();
        let mut keys: Vec<(u32, IpAddr)> = self
            .neigh
            .iter()
            .filter(|(_, n)| !n.state.valid())
            .map(|(k, _)| *k)
            .collect();
        keys.sort();
        for k in keys {
            if let Some(mut n) = self.neigh.remove(&k) {
                v.extend(n.queue.drain(..));
            }
        }
        v
    }
}

/// net/ipv4/arp.c arp_create: Ethernet + ARP, 42 bytes (no padding).
pub(crate) fn arp_frame(
    op: u16,
    eth_dst: [u8; 6],
    sha: [u8; 6],
    sip: Ipv4Addr,
    tha: [u8; 6],
    tip: Ipv4Addr,
) -> Vec<u8> {
    let mut f = frame::eth_frame(ETH_P_ARP, arp::PACKET_LEN);
    frame::set_eth(&mut f, eth_dst, sha);
    f.resize(ETH_HLEN + arp::PACKET_LEN, 0);
    let r = ArpRepr {
        operation: op,
        source_hardware_addr: sha,
        source_protocol_addr: sip,
        target_hardware_addr: tha,
        target_protocol_addr: tip,
    };
    r.emit(&mut ArpPacket::new_unchecked(&mut f[ETH_HLEN..]));
    f
}
