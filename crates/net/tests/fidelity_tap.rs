//! The AF_PACKET tap points (`Datapath::capture_tap`, `skiff run --capture
//! DEV:rx|tx`): what tcpdump on a device sees. rx: in __netif_receive_skb_core
//! after XDP passed the frame and before tc ingress; tx: dev_queue_xmit_nit,
//! after tc egress and the qdisc. Needs clang-19; skips with a message without it.

mod common;

use std::sync::Arc;

use skiff_net::datapath::*;
use skiff_vm::{Collection, Program};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn load() -> Option<Collection> {
    let obj = common::bpf_object("fidelity_tap")?;
    let o = skiff_object::Object::parse(&obj).expect("parse");
    Some(Collection::load(&o, &skiff_net::load_options()).expect("load"))
}

fn prog(c: &Collection, name: &str) -> Arc<Program> {
    c.program(name).expect(name).clone()
}

fn cls() -> TcAttach {
    TcAttach::ClsBpf {
        prio: 1,
        handle: 1,
        classid: 0,
    }
}

/// An IPv4/UDP frame from MAC_A to MAC_B (60 bytes).
fn frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0, 8, 0, 0]);
    f.resize(60, 0);
    f
}

fn taps(dp: &mut Datapath) -> Vec<(String, Hook, CapturePoint, Vec<u8>)> {
    dp.take_captures()
        .into_iter()
        .map(|c| (format!("{}/{}", c.netns, c.iface), c.hook, c.point, c.bytes))
        .collect()
}

/// veth a0 (netns a) <-> b0 (netns b); a0's tc egress sets the source MAC's
/// last byte to 0xee, b0's tc ingress the destination's first byte to 0x0a.
/// a0's tx tap sees the egress rewrite; b0's rx tap sees the frame as a0 sent
/// it, before b0's ingress rewrite.
#[test]
fn veth_taps_see_after_egress_and_before_ingress() {
    let Some(c) = load() else { return };
    let mut dp = Datapath::new(DatapathOptions::default()).unwrap();
    let a = dp.add_netns("a").unwrap();
    let b = dp.add_netns("b").unwrap();
    let a0 = dp
        .add_device(a, DeviceSpec::veth("a0", Some(b), "b0"))
        .unwrap();
    let b0 = dp.device(b, "b0").unwrap();
    dp.attach_tc(a0, TcDirection::Egress, cls(), prog(&c, "tc_src_ee"))
        .unwrap();
    dp.attach_tc(b0, TcDirection::Ingress, cls(), prog(&c, "tc_dst_0a"))
        .unwrap();
    dp.capture_tap(a0, Tap::Tx);
    dp.capture_tap(a0, Tap::Rx);
    dp.capture_tap(b0, Tap::Rx);
    dp.capture_tap(b0, Tap::Tx);
    dp.send(a0, &frame(), 1000).unwrap();
    dp.run();
    let mut sent = frame();
    sent[11] = 0xee;
    assert_eq!(
        taps(&mut dp),
        vec![
            (
                "a/a0".to_string(),
                Hook::Xmit,
                CapturePoint::Tap,
                sent.clone()
            ),
            ("b/b0".to_string(), Hook::Rx, CapturePoint::Tap, sent),
        ]
    );
}

/// A NIC's rx tap sees what native XDP passed and nothing it dropped; its tx
/// tap does not see XDP_TX-like frames (none here) and sees what its stack sends.
#[test]
fn nic_rx_tap_is_after_native_xdp() {
    let Some(c) = load() else { return };
    let mut dp = Datapath::new(DatapathOptions::default()).unwrap();
    let host = dp.add_netns("host").unwrap();
    let e0 = dp
        .add_device(host, DeviceSpec::nic("eth0", MAC_B, 1))
        .unwrap();
    dp.capture_tap(e0, Tap::Rx);
    dp.attach_xdp(e0, prog(&c, "xdp_drop"), XdpMode::Native)
        .unwrap();
    dp.inject(e0, &frame(), 1000).unwrap();
    dp.run();
    assert_eq!(taps(&mut dp), vec![]);
    dp.attach_xdp(e0, prog(&c, "xdp_pass"), XdpMode::Native)
        .unwrap();
    dp.attach_tc(e0, TcDirection::Ingress, cls(), prog(&c, "tc_dst_0a"))
        .unwrap();
    dp.inject(e0, &frame(), 2000).unwrap();
    dp.run();
    assert_eq!(
        taps(&mut dp),
        vec![(
            "host/eth0".to_string(),
            Hook::Rx,
            CapturePoint::Tap,
            frame()
        )]
    );
}
