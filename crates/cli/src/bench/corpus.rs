//! The corpus `skiff bench` times: each program with its packet, the map
//! contents and context it needs, and the large fills (64k flows, 10k
//! prefixes) of the heavier entries.

use skiff_kernel::testpkt;

/// A map update made before the runs (flags BPF_ANY).
pub enum Val {
    Bytes(Vec<u8>),
    /// A PROG_ARRAY slot: this program of the same object.
    Prog(&'static str),
}

/// Map updates generated when the entry is loaded (large fills: 64k flows, 10k
/// prefixes), as (map, key, value).
pub type Fill = fn() -> Vec<(&'static str, Vec<u8>, Vec<u8>)>;

pub struct Entry {
    pub object: &'static str,
    pub prog: &'static str,
    /// A name of `testpkt::packets()`, or one built here ([`packet`]).
    pub packet: &'static str,
    pub updates: Vec<(&'static str, Vec<u8>, Val)>,
    pub fill: Option<Fill>,
    pub ctx_in: Option<Vec<u8>>,
    /// 0: one test run of `repeat` runs; else test runs of `batch` runs each.
    pub batch: u32,
}

pub(super) fn e(object: &'static str, prog: &'static str, packet: &'static str) -> Entry {
    Entry {
        object,
        prog,
        packet,
        updates: Vec::new(),
        fill: None,
        ctx_in: None,
        batch: 0,
    }
}

impl Entry {
    fn set(mut self, map: &'static str, key: Vec<u8>, val: Vec<u8>) -> Self {
        self.updates.push((map, key, Val::Bytes(val)));
        self
    }
    fn prog_slot(mut self, map: &'static str, key: u32, prog: &'static str) -> Self {
        self.updates.push((map, u32k(key), Val::Prog(prog)));
        self
    }
    fn fill(mut self, f: Fill) -> Self {
        self.fill = Some(f);
        self
    }
    fn ctx(mut self, c: Vec<u8>) -> Self {
        self.ctx_in = Some(c);
        self
    }
    fn batch(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }
    pub fn label(&self) -> String {
        format!("{}/{}", self.object, self.prog)
    }
    /// Every update, the generated fill included, in the order they are made.
    pub(super) fn all_updates(&self) -> Vec<(&'static str, Vec<u8>, Val)> {
        let mut v: Vec<(&'static str, Vec<u8>, Val)> = self
            .fill
            .map(|f| {
                f().into_iter()
                    .map(|(m, k, v)| (m, k, Val::Bytes(v)))
                    .collect()
            })
            .unwrap_or_default();
        for (m, k, val) in &self.updates {
            v.push((
                m,
                k.clone(),
                match val {
                    Val::Bytes(b) => Val::Bytes(b.clone()),
                    Val::Prog(p) => Val::Prog(p),
                },
            ));
        }
        v
    }
}

pub(super) fn u32k(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

pub(super) fn u64v(v: u64) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// (daddr, port, proto, pad) as xdp_lb's `svc_key` and tc_nat's `nat_key`.
pub(super) fn svc_key(ip: [u8; 4], port: u16, proto: u8) -> Vec<u8> {
    let mut k = ip.to_vec();
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[proto, 0]);
    k
}

/// (daddr, dport, pad) as tc_nat's `nat_val`.
pub(super) fn addr_port(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = ip.to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v
}

/// xdp_lb's `struct backend`: ip, mac, pad.
pub(super) fn backend(ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut v = ip.to_vec();
    v.extend_from_slice(&mac);
    v.extend_from_slice(&[0, 0]);
    v
}

/// `struct __sk_buff` (192 bytes) with mark, priority and cb[0..5].
pub(super) fn skb_ctx(mark: u32, priority: u32, cb: [u32; 5]) -> Vec<u8> {
    let mut c = vec![0u8; 192];
    c[8..12].copy_from_slice(&mark.to_ne_bytes());
    c[32..36].copy_from_slice(&priority.to_ne_bytes());
    for (i, v) in cb.iter().enumerate() {
        c[48 + 4 * i..52 + 4 * i].copy_from_slice(&v.to_ne_bytes());
    }
    c
}

/// `struct xdp_md` (24 bytes) with data_end (the linear part: the whole frame; a
/// shorter one makes a multi-buffer frame, which skiff refuses) and ingress_ifindex.
pub(super) fn xdp_ctx(data_end: usize, ingress_ifindex: u32) -> Vec<u8> {
    let mut c = vec![0u8; 24];
    let end = u32::try_from(data_end).unwrap_or(u32::MAX);
    c[4..8].copy_from_slice(&end.to_ne_bytes());
    c[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    c
}

/// Depth of the IPIP nesting of the `ipip_x12` packet: xdp_ipip_decap strips one
/// outer header per run, so a test run of 12 runs decapsulates every time.
pub(super) const IPIP_DEPTH: usize = 12;

/// UDP payload of the `ipv4_udp_1500` frame: 14 + 20 + 8 + 1472 = 1514 bytes, a
/// full-MTU Ethernet frame.
pub(super) const FULL_MTU_PAYLOAD: usize = 1472;

/// The frame called `name`: `ipip_x12` (an IPv4/UDP datagram inside 12 IPIP
/// headers), `ipv4_udp_1500` (a 1514-byte IPv4/UDP frame), else `testpkt::packet`.
pub fn packet(name: &str) -> Option<Vec<u8>> {
    if name == "ipip_x12" {
        let mut ip = testpkt::ipv4(
            testpkt::IP_SRC,
            testpkt::IP_DST,
            17,
            0,
            &[],
            &testpkt::udp(&testpkt::IP_SRC, &testpkt::IP_DST, 1000, 2000, b"inner"),
        );
        for _ in 0..IPIP_DEPTH {
            ip = testpkt::ipv4([10, 99, 0, 1], [10, 99, 0, 2], 4, 0, &[], &ip);
        }
        return Some(testpkt::eth(
            testpkt::MAC_DST,
            testpkt::MAC_SRC,
            testpkt::ETH_P_IP,
            &ip,
        ));
    }
    if name == "ipv4_udp_1500" {
        let payload: Vec<u8> = (0..FULL_MTU_PAYLOAD)
            .map(|i| (i.wrapping_mul(31).wrapping_add(7) % 251) as u8)
            .collect();
        return Some(testpkt::ipv4_udp(
            testpkt::IP_SRC,
            testpkt::IP_DST,
            5000,
            6000,
            &payload,
        ));
    }
    testpkt::packet(name)
}

/// A small deterministic generator (xorshift64*) for the fills: the same keys every
/// run, on both sides.
pub(super) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// bench_l4lb's `flows` (65536 entries = max_entries): 65535 other TCP flows to the
/// same VIP and the packet's own (ipv4_tcp_syn: 10.0.0.1:40000 -> 10.0.0.2:443) to
/// backend 5; backends 0..64 enabled; the VIP in `vips` with 64 backends.
pub(super) fn l4lb_fill() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let flow = |saddr: [u8; 4], sport: u16| {
        let mut k = saddr.to_vec();
        k.extend_from_slice(&testpkt::IP_DST);
        k.extend_from_slice(&sport.to_be_bytes());
        k.extend_from_slice(&443u16.to_be_bytes());
        k.extend_from_slice(&[6, 0, 0, 0]);
        k
    };
    let mut v = Vec::with_capacity(65536 + 70);
    for i in 0..65535u32 {
        // 172.16.0.0/12 clients, two flows each: never the packet's 10.0.0.1.
        let client = 0xac10_0000 | (i >> 1);
        let sport = 1024 + (i & 1) as u16;
        v.push(("flows", flow(client.to_be_bytes(), sport), u32k(i % 64)));
    }
    v.push(("flows", flow(testpkt::IP_SRC, 40000), u32k(5)));
    for i in 0..64u32 {
        let mut be = vec![2, 0, 0, 0, 1, i as u8];
        be.extend_from_slice(&1u16.to_ne_bytes()); // flags: enabled
        be.extend_from_slice(&[0; 16]); // packets, bytes
        v.push(("backends", u32k(i), be));
    }
    v.push(("vips", svc_key(testpkt::IP_DST, 443, 6), u32k(64)));
    v
}

/// bench_lpm_fw's `rules`: 10000 prefixes: nested ones over the packet's source
/// (10.0.0.1: /8, /16, /20, /24, /28 allow, /30 drop, rule ids 1..6) and 9994
/// distinct random /16../32 prefixes outside 10.0.0.0/8 (ids from 100).
pub(super) fn lpm_fill() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let key = |len: u32, addr: u32| {
        let masked = if len == 0 {
            0
        } else {
            addr & (u32::MAX << (32 - len))
        };
        let mut k = len.to_ne_bytes().to_vec();
        k.extend_from_slice(&masked.to_be_bytes());
        k
    };
    let rule = |action: u32, id: u32| {
        let mut r = action.to_ne_bytes().to_vec();
        r.extend_from_slice(&id.to_ne_bytes());
        r
    };
    let src = u32::from_be_bytes(testpkt::IP_SRC);
    let mut v = Vec::with_capacity(10_000);
    let mut seen = std::collections::HashSet::new();
    for (id, (len, action)) in [(8, 0), (16, 0), (20, 0), (24, 0), (28, 0), (30, 1)]
        .into_iter()
        .enumerate()
    {
        let k = key(len, src);
        seen.insert(k.clone());
        v.push(("rules", k, rule(action, id as u32 + 1)));
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut id = 100;
    while v.len() < 10_000 {
        let r = rng.next();
        let addr = (r >> 32) as u32;
        if addr >> 24 == 10 {
            continue;
        }
        let len = 16 + (r % 17) as u32;
        let k = key(len, addr);
        if seen.insert(k.clone()) {
            v.push(("rules", k, rule((r >> 8) as u32 & 1, id)));
            id += 1;
        }
    }
    v
}

/// Every corpus program on a packet and map contents that take its main path.
pub fn entries() -> Vec<Entry> {
    let vip = testpkt::LB_VIP;
    let be_ip = [10, 0, 1, 1];
    let nat_to = [10, 0, 0, 3];
    let mut police = u64v(4_000_000_000); // 4 bytes/ns: the bucket refills faster than runs
    police.extend_from_slice(&u64v(1 << 20));
    let syn_len = packet("ipv4_tcp_syn").map_or(0, |p| p.len());
    let mut chain = e("bench_tailchain", "stage0", "ipv4_tcp_syn");
    for (i, p) in [
        "stage0", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7",
    ]
    .into_iter()
    .enumerate()
    {
        chain = chain.prog_slot("stages", i as u32, p);
    }
    vec![
        // The fixed cost of a run: `return XDP_PASS`.
        e("bench_empty", "xdp_empty", "ipv4_tcp_syn"),
        // Parse and compare, no maps, no helpers.
        e("bench_parse", "xdp_parse", "ipv4_tcp_syn"),
        e("xdp_count", "xdp_count", "ipv4_tcp_syn"),
        e("xdp_fw", "xdp_fw", "ipv4_blocked_src").set(
            "blocked",
            vec![0x18, 0, 0, 0, 192, 168, 1, 0],
            vec![1],
        ),
        // VIP -> backend 0 (10.0.1.1) and 10.0.1.1 -> backend 1 (the VIP): every run
        // translates the destination, XDP_TX.
        e("xdp_lb", "xdp_lb", "ipv4_lb_vip")
            .set("services", svc_key(vip, testpkt::LB_PORT, 6), u32k(0))
            .set("services", svc_key(be_ip, testpkt::LB_PORT, 6), u32k(1))
            .set("backends", u32k(0), backend(be_ip, [2, 0, 0, 0, 1, 1]))
            .set("backends", u32k(1), backend(vip, [2, 0, 0, 0, 0, 2])),
        e("xdp_redirect", "xdp_redirect_devmap", "ipv4_tcp_syn").set("tx_port", u32k(0), u32k(1)),
        e("xdp_redirect", "xdp_redirect_devhash", "ipv4_tcp_syn")
            .set("tx_hash", u32k(1), u32k(1))
            .ctx(xdp_ctx(syn_len, 1)),
        e("xdp_redirect", "xdp_redirect_ifindex", "ipv4_tcp_syn").set(
            "redirect_cfg",
            u32k(0),
            u32k(1),
        ),
        // 20 bytes per run of the 216 the 256-byte headroom leaves above the
        // xdp_frame (bpf_xdp_adjust_head): 10 runs per test run succeed.
        e("xdp_encap", "xdp_ipip_encap", "ipv4_udp").batch(10),
        e("xdp_encap", "xdp_ipip_decap", "ipip_x12").batch(IPIP_DEPTH as u32),
        // 4 bytes of the 32 allowed metadata per run.
        e("xdp_encap", "xdp_meta", "ipv4_udp").batch(8),
        // cut to 60, then grow by 4 and cut again: alternates, both paths adjust.
        e("xdp_encap", "xdp_trim", "ipv4_tcp_payload"),
        e("tc_classify", "cls_main", "ipv4_tcp_syn"),
        e("tc_classify", "cls_fields", "ipv4_tcp_syn").ctx(skb_ctx(7, 3, [41, 1, 2, 3, 4])),
        e("tc_police", "tc_police", "ipv4_udp").set("police_cfg", u32k(0), police),
        // 10.0.0.2:443 <-> 10.0.0.3:8443: every run rewrites address, port and sums.
        e("tc_nat", "tc_nat", "ipv4_tcp_syn")
            .set(
                "nat_rules",
                svc_key(testpkt::IP_DST, 443, 6),
                addr_port(nat_to, 8443),
            )
            .set(
                "nat_rules",
                svc_key(nat_to, 8443, 6),
                addr_port(testpkt::IP_DST, 443),
            ),
        e("tail_call", "xdp_dispatch", "ipv4_icmp_echo").prog_slot("jmp_table", 1, "handle_icmp"),
        e("tail_call", "xdp_dispatch", "ipv4_udp"),
        e("calls_loops", "xdp_calls_loops", "ipv4_tcp_payload"),
        e("global_data", "xdp_global", "ipv4_udp"),
        e("xdp_csum", "xdp_csum", "ipv4_udp"),
        e("xdp_maps", "xdp_maps", "ipv4_udp"),
        e("xdp_queue", "xdp_queue", "ipv4_udp"),
        e("xdp_ringbuf", "xdp_ringbuf", "ipv4_udp"),
        // push/adjust_room grow the packet each run
        e("tc_vlan", "tc_vlan_push", "ipv4_udp").batch(8),
        e("tc_vlan", "tc_vlan_pop", "ipv4_udp"),
        e("tc_vlan", "tc_adjust_room", "ipv4_udp").batch(8),
        // change_tail(+8) and change_head(+14) each run
        e("tc_helpers", "tc_helpers", "ipv4_tcp_syn").batch(8),
        e("tc_helpers", "tc_redirects", "ipv4_tcp_syn")
            .set("redir_cfg", u32k(0), u32k(0))
            .set("redir_cfg", u32k(1), u32k(1)),
        // The heavier programs: a 64k-flow connection table, 10k LPM prefixes, an
        // 8-program tail-call pipeline, a loop over a full-MTU frame.
        e("bench_l4lb", "xdp_l4lb", "ipv4_tcp_syn").fill(l4lb_fill),
        e("bench_lpm_fw", "xdp_lpm_fw", "ipv4_tcp_syn").fill(lpm_fill),
        chain,
        e("bench_pktloop", "xdp_pktloop", "ipv4_udp_1500"),
    ]
}
