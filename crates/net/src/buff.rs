//! Packet buffers: `XdpBuff` (include/net/xdp.h: struct xdp_buff) and `SkBuff`
//! (include/linux/skbuff.h: the struct sk_buff fields that `__sk_buff` exposes).
//! Offsets are kept relative to the start of the buffer so the buffer may move
//! when it grows; the program sees real addresses (`Context::packet`).

/// XDP_PACKET_HEADROOM.
pub const XDP_PACKET_HEADROOM: usize = 256;
/// SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) on x86_64.
pub const SKB_SHARED_INFO_SIZE: usize = 320;
/// sizeof(struct xdp_frame): adjust_head/adjust_meta keep it free at the start.
pub const XDP_FRAME_SIZE: usize = 40;
pub const PAGE_SIZE: usize = 4096;
pub const ETH_HLEN: usize = 14;
/// NET_SKB_PAD + NET_IP_ALIGN on x86_64: the headroom test_run gives an skb.
pub const NET_SKB_PAD: usize = 64;

/// SKB_DATA_ALIGN: SMP_CACHE_BYTES on x86_64.
pub const fn skb_data_align(n: usize) -> usize {
    n.next_multiple_of(64)
}

/// include/linux/slab.h: kmalloc_size_roundup under SLUB on x86_64: the
/// object size of the kmalloc cache a request of `size` bytes is served
/// from (8 to 8,192 bytes, KMALLOC_MAX_CACHE_SIZE), above that whole pages
/// of a power-of-two order. An skb head ends where its object ends
/// (`SKB_WITH_OVERHEAD(ksize)`), so the rounding is the tailroom a grown
/// packet finds free, as in the kernel.
pub fn kmalloc_size_roundup(size: usize) -> usize {
    const CACHES: [usize; 13] = [
        8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
    ];
    match CACHES.iter().find(|&&c| c >= size) {
        Some(&c) => c,
        None => size.div_ceil(PAGE_SIZE).next_power_of_two() * PAGE_SIZE,
    }
}

/// The bytes of a kmalloc'ed skb head with `size` bytes before its end:
/// kmalloc_reserve's SKB_HEAD_ALIGN and rounding (the small-head cache of
/// heads under about 640 bytes is not modelled: it differs in tailroom only).
fn skb_head_size(size: usize) -> usize {
    kmalloc_size_roundup(skb_data_align(size) + SKB_SHARED_INFO_SIZE)
}

/// include/net/xdp.h: xdp_metalen_invalid (6.18): metadata is 4-byte aligned and
/// fits skb_shared_info's u8 meta_len.
pub fn xdp_metalen_invalid(metalen: usize) -> bool {
    !metalen.is_multiple_of(4) || metalen > 255
}

/// Where a redirect helper asked the packet to go (struct bpf_redirect_info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// bpf_redirect(ifindex, flags); `ingress` is BPF_F_INGRESS (TC only).
    Ifindex { ifindex: u32, ingress: bool },
    /// bpf_redirect_map: the map (id, type name; `skiff_maps::Map::by_id` names it)
    /// and the key; `broadcast`/
    /// `exclude_ingress` are BPF_F_BROADCAST / BPF_F_EXCLUDE_INGRESS.
    Map {
        map_id: u32,
        map_type: &'static str,
        key: u32,
        broadcast: bool,
        exclude_ingress: bool,
    },
    /// bpf_redirect_peer(ifindex, 0).
    Peer { ifindex: u32 },
    /// bpf_redirect_neigh(ifindex, params, plen, 0): `nexthop` is the family and
    /// address when params were given.
    Neigh {
        ifindex: u32,
        nexthop: Option<(u8, [u8; 16])>,
    },
}

/// struct xdp_buff: one frame of `frame_sz` bytes; data_hard_start is its start.
pub struct XdpBuff {
    pub buf: Box<[u8]>,
    pub data_meta: usize,
    pub data: usize,
    pub data_end: usize,
    /// Whether the driver supports metadata (xdp_data_meta_unsupported otherwise).
    pub meta_valid: bool,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    /// Set for programs run from a DEVMAP entry (xdp_txq_info).
    pub egress_ifindex: Option<u32>,
    /// MTU of the receiving device (xdp->rxq->dev->mtu); `lo`'s 65536 by default.
    pub mtu: u32,
    pub redirect: Option<Redirect>,
    /// The namespace the frame is in (device list, FIB) when it runs in the
    /// datapath; None in a test run (the `lo`-only model).
    pub netns: Option<std::sync::Arc<dyn crate::helpers::NetNs>>,
    /// The RSS hash the NIC computed on the wire frame and whether it covers
    /// L4 ports (the rx descriptor's hash: skb_set_hash after XDP).
    pub rx_hash: Option<(u32, bool)>,
}

impl XdpBuff {
    /// A frame as the kernel's test_run and drivers lay it out: `headroom` bytes
    /// before the data, frame_sz = PAGE_SIZE. Err if the packet does not fit.
    pub fn new(packet: &[u8], headroom: usize, ingress_ifindex: u32) -> Option<XdpBuff> {
        let frame_sz = PAGE_SIZE;
        if headroom + packet.len() + SKB_SHARED_INFO_SIZE > frame_sz {
            return None;
        }
        let mut buf = vec![0u8; frame_sz].into_boxed_slice();
        buf[headroom..headroom + packet.len()].copy_from_slice(packet);
        Some(XdpBuff {
            buf,
            data_meta: headroom,
            data: headroom,
            data_end: headroom + packet.len(),
            meta_valid: true,
            ingress_ifindex,
            rx_queue_index: 0,
            egress_ifindex: None,
            mtu: 65536,
            redirect: None,
            netns: None,
            rx_hash: None,
        })
    }

    /// A frame in a page the datapath's pool hands out (`page.len()` is the
    /// frame size): the packet is copied to `headroom`. None if it does not fit.
    pub fn from_page(
        mut page: Box<[u8]>,
        packet: &[u8],
        headroom: usize,
        ingress_ifindex: u32,
    ) -> Result<XdpBuff, Box<[u8]>> {
        let end = headroom + packet.len();
        if end + SKB_SHARED_INFO_SIZE > page.len() {
            return Err(page);
        }
        page[headroom..end].copy_from_slice(packet);
        Ok(XdpBuff {
            buf: page,
            data_meta: headroom,
            data: headroom,
            data_end: end,
            meta_valid: true,
            ingress_ifindex,
            rx_queue_index: 0,
            egress_ifindex: None,
            mtu: 1500,
            redirect: None,
            netns: None,
            rx_hash: None,
        })
    }

    pub fn frame_sz(&self) -> usize {
        self.buf.len()
    }

    /// xdp_data_hard_end(): the tailroom for skb_shared_info is not usable.
    pub fn data_hard_end(&self) -> usize {
        self.buf.len() - SKB_SHARED_INFO_SIZE
    }

    pub fn metalen(&self) -> usize {
        if self.meta_valid {
            self.data - self.data_meta
        } else {
            0
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.data..self.data_end]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.data..self.data_end]
    }

    /// From data_meta to data_end (what test_run's data_out holds).
    pub fn meta_and_data(&self) -> &[u8] {
        &self.buf[self.data_meta..self.data_end]
    }

    pub fn addr(&self, off: usize) -> u64 {
        self.buf.as_ptr() as usize as u64 + off as u64
    }
}

/// The sk_buff fields skiff models. The linear buffer is `buf[head..end]`;
/// `data..tail` is the packet; `end` leaves SKB_SHARED_INFO_SIZE of tailroom out.
pub struct SkBuff {
    pub buf: Vec<u8>,
    pub data: usize,
    pub tail: usize,
    /// Offsets into buf (skb->mac_header, network_header, transport_header).
    pub mac_header: usize,
    pub network_header: usize,
    pub transport_header: Option<usize>,
    /// skb->protocol in host order (ETH_P_IP = 0x0800).
    pub protocol: u16,
    /// PACKET_HOST (0), BROADCAST (1), MULTICAST (2), OTHERHOST (3), OUTGOING (4).
    pub pkt_type: u8,
    pub mark: u32,
    pub priority: u32,
    pub queue_mapping: u16,
    /// Offloaded VLAN tag (skb->vlan_proto host order, vlan_tci), 0 when absent.
    pub vlan_proto: u16,
    pub vlan_tci: u16,
    pub vlan_present: bool,
    pub hash: u32,
    pub l4_hash: bool,
    pub sw_hash: bool,
    pub tc_index: u16,
    /// qdisc_skb_cb: data[20] (__sk_buff cb[5]), tc_classid (16 bits), pkt_len.
    pub cb: [u8; 20],
    pub tc_classid: u16,
    pub wire_len: u32,
    /// skb->dev->ifindex and skb->skb_iif.
    pub ifindex: u32,
    pub ingress_ifindex: u32,
    pub napi_id: u32,
    pub tstamp: u64,
    pub tstamp_type: u8,
    pub hwtstamp: u64,
    pub gso_segs: u32,
    pub gso_size: u32,
    /// skb_metadata_len(): bytes of XDP metadata right before data.
    pub meta_len: usize,
    /// skb->encapsulation: set by bpf_skb_adjust_room's encap flags.
    pub encapsulation: bool,
    /// The device's MTU and whether the skb is at tc ingress (tc_at_ingress).
    pub mtu: u32,
    pub tc_at_ingress: bool,
    pub redirect: Option<Redirect>,
    /// Packets produced by bpf_clone_redirect: (ifindex, ingress, frame).
    pub clones: Vec<(u32, bool, Vec<u8>)>,
    /// The namespace of skb->dev in the datapath; None in a test run.
    pub netns: Option<std::sync::Arc<dyn crate::helpers::NetNs>>,
    /// Tunnel metadata (the kernel's metadata_dst as skb->dst) set by
    /// bpf_skb_set_tunnel_key; None when the skb has none.
    pub tunnel: Option<Box<crate::helpers::tunnel::TunnelInfo>>,
}

pub const PACKET_HOST: u8 = 0;
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;
pub const PACKET_OTHERHOST: u8 = 3;

impl SkBuff {
    /// An skb holding `frame` (starting at the Ethernet header) with `headroom`
    /// bytes before it, data at the Ethernet header (as TC sees it), in a
    /// kmalloc'ed head (its tailroom: what the cache's rounding leaves, as
    /// bpf_test_init's and alloc_skb's heads).
    pub fn new(frame: &[u8], headroom: usize, ifindex: u32, mtu: u32) -> SkBuff {
        let mut buf = vec![0u8; skb_head_size(headroom + frame.len())];
        buf[headroom..headroom + frame.len()].copy_from_slice(frame);
        SkBuff::from_buf(buf, headroom, headroom + frame.len(), ifindex, mtu)
    }

    /// An skb over an existing buffer (build_skb around a page): the frame is
    /// `buf[data..tail]`, starting at the Ethernet header; `tail` must leave
    /// SKB_SHARED_INFO_SIZE bytes of the buffer (the caller guarantees it).
    pub fn from_buf(buf: Vec<u8>, data: usize, tail: usize, ifindex: u32, mtu: u32) -> SkBuff {
        SkBuff {
            buf,
            data,
            tail,
            mac_header: data,
            network_header: data + ETH_HLEN.min(tail - data),
            transport_header: None,
            protocol: 0,
            pkt_type: PACKET_HOST,
            mark: 0,
            priority: 0,
            queue_mapping: 0,
            vlan_proto: 0,
            vlan_tci: 0,
            vlan_present: false,
            hash: 0,
            l4_hash: false,
            sw_hash: false,
            tc_index: 0,
            cb: [0; 20],
            tc_classid: 0,
            wire_len: (tail - data) as u32,
            ifindex,
            ingress_ifindex: 0,
            napi_id: 0,
            tstamp: 0,
            tstamp_type: 0,
            hwtstamp: 0,
            gso_segs: 0,
            gso_size: 0,
            meta_len: 0,
            encapsulation: false,
            mtu,
            tc_at_ingress: true,
            redirect: None,
            clones: Vec::new(),
            netns: None,
            tunnel: None,
        }
    }

    pub fn len(&self) -> usize {
        self.tail - self.data
    }

    pub fn is_empty(&self) -> bool {
        self.tail == self.data
    }

    pub fn headroom(&self) -> usize {
        self.data
    }

    /// skb->end: tailroom stops before the shared info.
    pub fn end(&self) -> usize {
        self.buf.len() - SKB_SHARED_INFO_SIZE
    }

    pub fn tailroom(&self) -> usize {
        self.end() - self.tail
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.data..self.tail]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        let (d, t) = (self.data, self.tail);
        &mut self.buf[d..t]
    }

    pub fn addr(&self, off: usize) -> u64 {
        self.buf.as_ptr() as usize as u64 + off as u64
    }

    /// pskb_expand_head(): make room for `nhead` more bytes of headroom and
    /// at least `ntail` more of tailroom (the new head is rounded up as
    /// kmalloc_reserve rounds it, so a packet grown a little at a time is
    /// copied once in a while, not at every step). Offsets move by nhead;
    /// addresses change.
    pub fn expand_head(&mut self, nhead: usize, ntail: usize) {
        let mut nb = vec![0u8; skb_head_size(self.end() + nhead + ntail)];
        nb[nhead..nhead + self.end()].copy_from_slice(&self.buf[..self.end()]);
        self.buf = nb;
        self.data += nhead;
        self.tail += nhead;
        self.mac_header += nhead;
        self.network_header += nhead;
        if let Some(t) = &mut self.transport_header {
            *t += nhead;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmalloc_rounds_to_its_caches_then_to_page_orders() {
        let cases = [
            (1, 8),
            (9, 16),
            (65, 96),
            (97, 128),
            (129, 192),
            (193, 256),
            (257, 512),
            (4097, 8192),
            (8192, 8192),
            (8193, 16384),
            (16385, 32768),
        ];
        for (size, want) in cases {
            assert_eq!(kmalloc_size_roundup(size), want, "{size}");
        }
    }

    #[test]
    fn skb_heads_end_where_their_kmalloc_object_ends() {
        // bpf_test_init: 54 + 64 of headroom + the shared info in kmalloc-512,
        // so the head ends at 512 - 320 = 192, 74 bytes after the frame.
        let frame: Vec<u8> = (0..54).collect();
        let skb = SkBuff::new(&frame, NET_SKB_PAD, 1, 1500);
        assert_eq!((skb.end(), skb.tailroom()), (192, 74));
        // Growing by 8 bytes at a time copies the head only when the room
        // left by the rounding is used up (pskb_expand_head's kmalloc_reserve).
        let mut skb = skb;
        let mut copies = 0;
        for _ in 0..40 {
            if skb.tailroom() < 8 {
                let before = skb.buf.as_ptr();
                skb.expand_head(0, 8 - skb.tailroom());
                copies += usize::from(before != skb.buf.as_ptr());
                assert!(skb.tailroom() >= 8);
            }
            skb.tail += 8;
        }
        assert_eq!(skb.len(), 54 + 320);
        // kmalloc-512 (end 192) -> kmalloc-1024 (end 704): one copy.
        assert_eq!((copies, skb.end()), (1, 704));
        assert_eq!(skb.data()[..54], frame[..]);
    }
}
