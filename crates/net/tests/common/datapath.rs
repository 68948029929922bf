//! What the datapath tests (tests/datapath*.rs) share: the test object
//! (tests/bpf/datapath.c) loaded and its maps set and read, the frames they
//! send, the two-NIC host they start from, the checks they repeat.

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use skiff_maps::MapValue;
use skiff_net::datapath::*;
use skiff_vm::{Collection, LoadOptions, Program};
use skiff_wire::{
    ethernet, ipv4, udp, EthernetRepr, Ipv4Packet, Ipv4Repr, UdpPacket, ETH_P_IP, IPPROTO_UDP,
};

pub const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const MAC3: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

pub fn object() -> Option<&'static [u8]> {
    static OBJ: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    OBJ.get_or_init(|| super::bpf_object("datapath")).as_deref()
}

/// A fresh load of the test object (its own maps), or None (skip) without clang.
pub fn load() -> Option<Collection> {
    let Some(obj) = object() else {
        eprintln!("skipping: clang-19 not available or failed for tests/bpf/datapath.c");
        return None;
    };
    let o = skiff_object::Object::parse(obj).expect("parse");
    Some(
        Collection::load(
            &o,
            &LoadOptions {
                possible_cpus: 2,
                // datapath.c holds programs the verifier refuses (xdp_oob, for
                // the run-time exception paths): loaded as with --no-verify
                verify: false,
                ..skiff_net::load_options()
            },
        )
        .expect("load"),
    )
}

pub fn prog(c: &Collection, name: &str) -> Arc<Program> {
    c.program(name).expect(name).clone()
}

pub fn set(c: &Collection, map: &str, key: u32, value: &[u8]) {
    c.map(map)
        .unwrap()
        .sys_update(&key.to_le_bytes(), value, 0)
        .expect("map update");
}

pub fn cfg(c: &Collection, v: u32) {
    set(c, "cfg", 0, &v.to_le_bytes());
}

pub fn res(c: &Collection, k: u32) -> u64 {
    match c.map("res").unwrap().sys_lookup(&k.to_le_bytes()) {
        Ok(MapValue::Single(v)) => u64::from_le_bytes(v[..8].try_into().unwrap()),
        _ => panic!("res[{k}]"),
    }
}

/// Ethernet + IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:2000 with 18 bytes of payload.
/// Ethernet + an option-less IPv4 header (10.0.0.1 -> 10.0.0.2, DF, TTL 64,
/// checksum set) for `payload_len` more bytes.
pub fn eth_ipv4(
    dst: [u8; 6],
    src: [u8; 6],
    protocol: u8,
    ident: u16,
    payload_len: usize,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: ETH_P_IP,
    };
    let mut f = eth.to_frame(ipv4::HEADER_LEN + payload_len);
    f.resize(ethernet::HEADER_LEN + ipv4::HEADER_LEN, 0);
    let ip = Ipv4Repr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        protocol,
        tos: 0,
        ttl: 64,
        ident,
        dont_frag: true,
        payload_len,
    };
    ip.emit(&mut Ipv4Packet::new_unchecked(
        &mut f[ethernet::HEADER_LEN..],
    ));
    f
}

pub fn udp(dst: [u8; 6], src: [u8; 6], sport: u16) -> Vec<u8> {
    let payload = b"skiff-datapath-123";
    let len = udp::HEADER_LEN + payload.len();
    let mut f = eth_ipv4(dst, src, IPPROTO_UDP, 1, len);
    let at = f.len();
    f.resize(at + udp::HEADER_LEN, 0);
    let mut u = UdpPacket::new_unchecked(&mut f[at..]);
    u.set_src_port(sport);
    u.set_dst_port(2000);
    u.set_length(len as u16);
    f.extend_from_slice(payload);
    f
}

pub struct Net {
    pub dp: Datapath,
    pub host: NsId,
    pub nic1: DevId,
    pub nic2: DevId,
}

pub fn net() -> Net {
    let mut dp = Datapath::new(DatapathOptions {
        possible_cpus: 2,
        ..Default::default()
    })
    .unwrap();
    dp.set_record_drops(true);
    let host = dp.add_netns("host").unwrap();
    let nic1 = dp
        .add_device(host, DeviceSpec::nic("eth0", MAC1, 2))
        .unwrap();
    let nic2 = dp
        .add_device(host, DeviceSpec::nic("eth1", MAC2, 1))
        .unwrap();
    addr(&mut dp, nic1);
    Net {
        dp,
        host,
        nic1,
        nic2,
    }
}

impl Net {
    /// `frame` in on `dev` at time 0, then a poll: the packet's id.
    pub fn send(&mut self, dev: DevId, frame: &[u8]) -> PacketId {
        let id = self.dp.inject(dev, frame, 0).unwrap();
        self.dp.run();
        id
    }

    /// Program `name` of `c` as cls_bpf prio 1 on `dev`'s `dir` hook.
    pub fn tc(&mut self, dev: DevId, dir: TcDirection, c: &Collection, name: &str) {
        attach_cls(&mut self.dp, dev, dir, c, name);
    }

    /// Program `name` of `c` appended to `dev`'s tcx `dir` chain.
    pub fn tcx(&mut self, dev: DevId, dir: TcDirection, c: &Collection, name: &str) {
        let at = TcAttach::Tcx(MprogOrder::Append);
        self.dp.attach_tc(dev, dir, at, prog(c, name)).unwrap();
    }

    /// Program `name` of `c` as native XDP on `dev`.
    pub fn xdp(&mut self, dev: DevId, c: &Collection, name: &str) {
        attach_xdp(&mut self.dp, dev, c, name);
    }

    /// A namespace "pod" and a veth pair into it: the host's end, veth0
    /// (its peer is the pod's eth0).
    pub fn pod_veth(&mut self) -> DevId {
        let pod = self.dp.add_netns("pod").unwrap();
        let spec = DeviceSpec::veth("veth0", Some(pod), "eth0");
        self.dp.add_device(self.host, spec).unwrap()
    }

    /// [`Net::pod_veth`] with eth0's XDP redirecting to veth0
    /// (xdp_redirect_ifindex): veth0 and its peer.
    pub fn xdp_redirect_to_veth(&mut self, c: &Collection) -> (DevId, DevId) {
        let veth = self.pod_veth();
        let peer = self.dp.peer(veth).unwrap();
        cfg(c, ifx(self, veth));
        self.xdp(self.nic1, c, "xdp_redirect_ifindex");
        (veth, peer)
    }
}

/// Program `name` of `c` as cls_bpf prio 1 on `dev`'s `dir` hook.
pub fn attach_cls(dp: &mut Datapath, dev: DevId, dir: TcDirection, c: &Collection, name: &str) {
    dp.attach_tc(dev, dir, cls(1), prog(c, name)).unwrap();
}

/// Program `name` of `c` as native XDP on `dev`.
pub fn attach_xdp(dp: &mut Datapath, dev: DevId, c: &Collection, name: &str) {
    dp.attach_xdp(dev, prog(c, name), XdpMode::Native).unwrap();
}

/// 10.0.0.2/24 on `dev`: the stack delivers the test frames there.
pub fn addr(dp: &mut Datapath, dev: DevId) {
    let ns = dp.dev_netns(dev).unwrap();
    let i = dp.ifindex(dev).unwrap();
    dp.stack_mut(ns)
        .unwrap()
        .add_address(i, "10.0.0.2".parse().unwrap(), 24)
        .unwrap();
}

pub fn ifx(n: &Net, d: DevId) -> u32 {
    n.dp.ifindex(d).unwrap()
}

pub fn assert_balanced(dp: &Datapath) {
    let c = dp.conservation();
    assert_eq!(c.in_flight, 0, "{c:?}");
    assert!(c.balanced(), "{c:?}");
}

pub fn one_tx(n: &mut Net) -> Transmitted {
    let t = n.dp.take_transmitted();
    assert_eq!(t.len(), 1, "transmitted: {t:?}");
    t.into_iter().next().unwrap()
}

pub fn drops(dp: &Datapath) -> Vec<(String, &'static str, String)> {
    dp.drops()
        .map(|d| (d.iface.clone(), d.reason, d.hook.to_string()))
        .collect()
}

pub fn cls(prio: u16) -> TcAttach {
    TcAttach::ClsBpf {
        prio,
        handle: 1,
        classid: 0,
    }
}

/// The maps the redirecting programs read, pointed at the test's devices:
/// cfg at `target`, devmap slot 0 at `nic2`, devhash 1 and 2 at `nic1` and
/// `veth`, xsks queue 0 at socket 7.
pub fn point_redirects(
    c: &Collection,
    dp: &Datapath,
    target: DevId,
    [nic1, nic2, veth]: [DevId; 3],
) {
    let ifx = |d: DevId| dp.ifindex(d).unwrap();
    cfg(c, ifx(target));
    set(
        c,
        "devmap",
        0,
        &[&ifx(nic2).to_le_bytes()[..], &[0, 0, 0, 0]].concat(),
    );
    set(c, "devhash", 1, &ifx(nic1).to_le_bytes());
    set(c, "devhash", 2, &ifx(veth).to_le_bytes());
    set(c, "xsks", 0, &7u32.to_le_bytes());
}

/// A proptest's attachments: XDP as (device, program, generic), cls_bpf as
/// (device, ingress, program) at prio 1, 2, ...; indexes into `devs` and
/// the program lists. A refused attachment is part of what is tried: ignored.
pub fn attach_random(
    dp: &mut Datapath,
    c: &Collection,
    devs: &[DevId],
    (xdp, xdp_progs): (Vec<(usize, usize, bool)>, &[&str]),
    (tc, tc_progs): (Vec<(usize, bool, usize)>, &[&str]),
) {
    for (d, p, generic) in xdp {
        let mode = if generic {
            XdpMode::Generic
        } else {
            XdpMode::Native
        };
        let _ = dp.attach_xdp(devs[d], prog(c, xdp_progs[p]), mode);
    }
    for (i, (d, ingress, p)) in tc.into_iter().enumerate() {
        let dir = if ingress {
            TcDirection::Ingress
        } else {
            TcDirection::Egress
        };
        let _ = dp.attach_tc(devs[d], dir, cls(i as u16 + 1), prog(c, tc_progs[p]));
    }
}

/// Packet conservation after `input` packets, as a proptest checks it:
/// none in flight, each ended once, every drop counted by its reason.
pub fn prop_conserved(dp: &Datapath, input: usize) -> Result<(), TestCaseError> {
    let cons = dp.conservation();
    prop_assert_eq!(cons.in_flight, 0);
    prop_assert!(cons.balanced(), "{:?}", cons);
    prop_assert_eq!(cons.input, input as u64);
    let by_reason: u64 = dp.counters().drops.values().sum();
    prop_assert_eq!(by_reason, cons.dropped);
    Ok(())
}
