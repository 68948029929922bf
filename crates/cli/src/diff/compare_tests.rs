use std::collections::BTreeMap;

use skiff_kernel::testpkt::{eth, icmp_echo, ipv4, ipv4_udp};

use super::*;
use crate::diff::report::to_text;

fn side(frames: &[(&str, Vec<Vec<u8>>)], maps: &[(&str, MapDump)]) -> SideResult {
    SideResult {
        frames: frames
            .iter()
            .map(|(d, f)| (d.to_string(), f.clone()))
            .collect(),
        maps: maps
            .iter()
            .map(|(n, m)| (n.to_string(), m.clone()))
            .collect(),
    }
}

fn udp(sport: u16) -> Vec<u8> {
    ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], sport, 53, b"x")
}

/// An echo reply with IPv4 id `id` (the kernel's is random).
fn reply(id: u16) -> Vec<u8> {
    let mut f = eth(
        [2; 6],
        [4; 6],
        0x0800,
        &ipv4(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            1,
            0,
            &[],
            &icmp_echo(1, 1, b"p"),
        ),
    );
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = skiff_wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn same_frames_and_maps_are_identical() {
    let a = side(
        &[("host/eth0", vec![udp(1), udp(2)])],
        &[("o/m", vec![(vec![0], vec![1])])],
    );
    let c = compare(&a, &a.clone(), &BTreeMap::new());
    assert!(c.identical());
    assert_eq!(c.devices[0].identical, 2);
    assert_eq!(c.maps[0].how, "bytes");
    assert!(c.maps[0].compared);
}

#[test]
fn a_random_icmp_id_is_masked() {
    let s = side(&[("host/eth0", vec![reply(1)])], &[]);
    let k = side(&[("host/eth0", vec![reply(0xbeef)])], &[]);
    assert!(compare(&s, &k, &BTreeMap::new()).identical());
}

#[test]
fn a_missing_frame_does_not_shift_the_rest() {
    let s = side(&[("host/eth0", vec![udp(1), udp(3)])], &[]);
    let k = side(&[("host/eth0", vec![udp(1), udp(2), udp(3)])], &[]);
    let c = compare(&s, &k, &BTreeMap::new());
    assert!(!c.identical());
    let d = &c.devices[0];
    assert_eq!((d.skiff_frames, d.kernel_frames, d.identical), (2, 3, 2));
    assert_eq!(
        d.diffs,
        vec![FrameDiff::OnlyKernel {
            index: 1,
            frame: udp(2)
        }]
    );
}

#[test]
fn a_changed_frame_names_its_first_differing_field() {
    let s = side(&[("host/eth0", vec![udp(1)])], &[]);
    let k = side(&[("host/eth0", vec![udp(7)])], &[]);
    let c = compare(&s, &k, &BTreeMap::new());
    let FrameDiff::Different {
        offset,
        field,
        skiff_index,
        kernel_index,
        ..
    } = &c.devices[0].diffs[0]
    else {
        panic!("{:?}", c.devices[0].diffs);
    };
    // 14 Ethernet + 20 IPv4: the UDP source port's second byte
    assert_eq!((*offset, field.as_str()), (Some(35), "UDP source port"));
    assert_eq!((*skiff_index, *kernel_index), (0, 0));
    let text = to_text(&c);
    assert!(text.starts_with("frames out of host/eth0: skiff 1, kernel 1, identical 0\n  skiff #0 / kernel #0 differ at byte 35: UDP source port\n"), "{text}");
    assert!(
        text.ends_with("result: different (1 frame difference(s), 0 map entry difference(s))\n"),
        "{text}"
    );
}

#[test]
fn maps_compare_by_key() {
    let s = side(
        &[],
        &[("o/m", vec![(vec![0], vec![1]), (vec![1], vec![5])])],
    );
    let k = side(
        &[],
        &[("o/m", vec![(vec![1], vec![6]), (vec![2], vec![7])])],
    );
    let c = compare(&s, &k, &BTreeMap::new());
    assert_eq!(
        c.maps[0].diffs,
        vec![
            EntryDiff::OnlySkiff {
                key: vec![0],
                value: vec![1]
            },
            EntryDiff::Different {
                key: vec![1],
                skiff: vec![5],
                kernel: vec![6]
            },
            EntryDiff::OnlyKernel {
                key: vec![2],
                value: vec![7]
            },
        ]
    );
}

#[test]
fn per_cpu_values_compare_as_sums_and_ids_by_key() {
    let one = |v: u64| v.to_ne_bytes().to_vec();
    // skiff: 1 worker counted 3; the kernel: 2 CPUs counted 1 and 2
    let s = side(
        &[],
        &[
            ("o/pc", vec![(vec![0], one(3))]),
            ("o/pa", vec![(vec![0], vec![9, 0, 0, 0])]),
        ],
    );
    let k = side(
        &[],
        &[
            ("o/pc", vec![(vec![0], [one(1), one(2)].concat())]),
            ("o/pa", vec![(vec![0], vec![4, 1, 0, 0])]),
        ],
    );
    let kinds = BTreeMap::from([
        ("o/pc".to_string(), MapKind::PerCpu { value_size: 8 }),
        ("o/pa".to_string(), MapKind::Ids),
    ]);
    let c = compare(&s, &k, &kinds);
    assert!(c.identical(), "{c:?}");
    let k2 = side(
        &[],
        &[
            ("o/pc", vec![(vec![0], [one(1), one(1)].concat())]),
            ("o/pa", vec![]),
        ],
    );
    let c = compare(&s, &k2, &kinds);
    assert_eq!(
        c.maps.iter().map(|m| m.diffs.len()).collect::<Vec<_>>(),
        vec![1, 1]
    );
}

#[test]
fn a_map_missing_on_one_side_is_not_compared() {
    let s = side(&[], &[("o/rb", vec![])]);
    let c = compare(&s, &SideResult::default(), &BTreeMap::new());
    assert!(c.identical());
    assert!(!c.maps[0].compared);
    assert!(
        c.maps[0]
            .how
            .starts_with("not compared: not dumped on the kernel side"),
        "{}",
        c.maps[0].how
    );
}
