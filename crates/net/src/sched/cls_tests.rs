//! Classification and action tests against the kernel's source arithmetic
//! (net/sched/cls_*.c, act_*.c): a test environment with a settable clock.

use super::*;
use crate::buff::SkBuff;
use crate::sched::act_api::*;
use crate::sched::cls_u32::{U32Key, U32Sel, U32Spec, TC_U32_TERMINAL};

/// A TcfEnv with a clock the test sets and a record of mirred clones.
#[derive(Default)]
pub(crate) struct TestEnv {
    pub now: u64,
    pub rand: Vec<u32>,
    pub clones: Vec<(MirredTarget, Vec<u8>)>,
    pub down: Vec<DevId>,
}

impl TcfEnv for TestEnv {
    fn run_bpf(&mut self, _prog: &Arc<Program>, _skb: &mut SkBuff) -> i64 {
        TC_ACT_SHOT
    }
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn prandom_u32(&mut self) -> u32 {
        self.rand.pop().unwrap_or(0)
    }
    fn dev_up(&self, dev: DevId) -> bool {
        !self.down.contains(&dev)
    }
    fn mirred_clone(&mut self, skb: &SkBuff, to: MirredTarget) -> Result<(), ()> {
        self.clones.push((to, skb.data().to_vec()));
        Ok(())
    }
}

/// An Ethernet + IPv4 + UDP frame from 10.0.0.1:1000 to 10.0.0.2:80, at ingress.
pub(crate) fn udp_skb(payload: usize) -> SkBuff {
    let mut f = vec![0u8; 14 + 20 + 8 + payload];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[1] = 0x10;
    let tot = (20 + 8 + payload) as u16;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    let mut skb = SkBuff::new(&f, 64, 2, 1500);
    skb.protocol = 0x0800;
    skb.tc_at_ingress = true;
    skb
}

pub(crate) fn u32_spec(keys: &[(u32, u32, i32)], classid: u32) -> U32Spec {
    U32Spec {
        sel: U32Sel {
            flags: TC_U32_TERMINAL,
            keys: keys
                .iter()
                .map(|&(val, mask, off)| U32Key {
                    val,
                    mask,
                    off,
                    offmask: 0,
                })
                .collect(),
            ..Default::default()
        },
        classid: Some(classid),
        ..Default::default()
    }
}

fn key(prio: u16) -> FilterKey {
    FilterKey {
        chain: 0,
        prio,
        protocol: ETH_P_ALL,
        handle: 0,
    }
}

#[test]
fn u32_first_matching_prio_gives_its_classid() {
    let mut b = TcfBlock::default();
    // match ip src 10.0.0.9/32 flowid 1:9 (no match), then ip dport 80 flowid 1:5
    b.add_filter(
        key(1),
        FilterSpec::U32(u32_spec(&[(0x0a00_0009, !0, 12)], 0x10009)),
        false,
    )
    .unwrap();
    b.add_filter(
        key(2),
        FilterSpec::U32(u32_spec(&[(80, 0xffff, 20)], 0x10005)),
        false,
    )
    .unwrap();
    let mut skb = udp_skb(10);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!((r.action, r.classid), (TC_ACT_OK, 0x10005));
}

#[test]
fn u32_node_handles_and_auto_prio_follow_the_kernel() {
    let mut b = TcfBlock::default();
    let (p1, h1) = b
        .add_filter(key(0), FilterSpec::U32(u32_spec(&[], 1)), false)
        .unwrap();
    let (p2, h2) = b
        .add_filter(key(p1), FilterSpec::U32(u32_spec(&[], 2)), false)
        .unwrap();
    assert_eq!((p1, h1, p2, h2), (0xc000, 0x8000_0800, 0xc000, 0x8000_0801));
    let (p3, _) = b
        .add_filter(key(0), FilterSpec::U32(u32_spec(&[], 3)), false)
        .unwrap();
    assert_eq!(p3, 0xbfff);
}

#[test]
fn protocol_must_fit() {
    let mut b = TcfBlock::default();
    let mut k = key(1);
    k.protocol = 0x86dd;
    b.add_filter(k, FilterSpec::U32(u32_spec(&[], 0x10001)), false)
        .unwrap();
    let mut skb = udp_skb(0);
    let r = tcf_classify(&b, &mut skb, &mut TestEnv::default());
    assert_eq!(r.action, TC_ACT_UNSPEC);
}
