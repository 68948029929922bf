//! `Map::dev_entry` and `Map::for_each_dev_entry`: the datapath's lock-free,
//! allocation-free reads of redirect targets (DEVMAP, DEVMAP_HASH, CPUMAP).

use std::sync::Arc;

use skiff_maps::*;

fn mk(t: MapType, v: u32, n: u32) -> Arc<Map> {
    Map::create(MapAttr::new(t, 4, v, n), 2).unwrap()
}

fn val(first: u32, prog: u32) -> Vec<u8> {
    [first.to_ne_bytes(), prog.to_ne_bytes()].concat()
}

fn all(m: &Map) -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    m.for_each_dev_entry(|k, ifindex, prog| out.push((k, ifindex, prog)));
    out
}

#[test]
fn devmap_entries() {
    let d = mk(MapType::Devmap, 8, 130);
    assert_eq!(d.dev_entry(0), None);
    d.sys_update(&5u32.to_ne_bytes(), &val(7, 42), BPF_ANY)
        .unwrap();
    d.sys_update(&129u32.to_ne_bytes(), &val(9, u32::MAX), BPF_ANY)
        .unwrap(); // fd -1: none
    d.sys_update(&64u32.to_ne_bytes(), &val(8, 0), BPF_ANY)
        .unwrap();
    assert_eq!(d.dev_entry(5), Some((7, 42)));
    assert_eq!(d.dev_entry(129), Some((9, 0)));
    assert_eq!(d.dev_entry(6), None);
    assert_eq!(d.dev_entry(130), None);
    assert_eq!(d.dev_entry(u32::MAX), None);
    assert_eq!(all(&d), vec![(5, 7, 42), (64, 8, 0), (129, 9, 0)]);
    d.sys_update(&5u32.to_ne_bytes(), &val(0, 0), BPF_ANY)
        .unwrap(); // ifindex 0 clears
    d.sys_delete(&64u32.to_ne_bytes()).unwrap();
    assert_eq!(d.dev_entry(5), None);
    assert_eq!(all(&d), vec![(129, 9, 0)]);

    let short = mk(MapType::Devmap, 4, 4);
    short
        .sys_update(&1u32.to_ne_bytes(), &3u32.to_ne_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(short.dev_entry(1), Some((3, 0)));
    assert_eq!(all(&short), vec![(1, 3, 0)]);
}

#[test]
fn devmap_hash_entries() {
    let dh = mk(MapType::DevmapHash, 8, 4);
    dh.sys_update(&300u32.to_ne_bytes(), &val(2, 11), BPF_ANY)
        .unwrap();
    dh.sys_update(&0u32.to_ne_bytes(), &val(1, 0), BPF_ANY)
        .unwrap();
    dh.sys_update(&7u32.to_ne_bytes(), &val(3, 12), BPF_ANY)
        .unwrap();
    assert_eq!(dh.dev_entry(300), Some((2, 11)));
    assert_eq!(dh.dev_entry(0), Some((1, 0)));
    assert_eq!(dh.dev_entry(8), None);
    // numeric key order, as sys_get_next_key walks it
    assert_eq!(all(&dh), vec![(0, 1, 0), (7, 3, 12), (300, 2, 11)]);
    dh.sys_update(&7u32.to_ne_bytes(), &val(4, 13), BPF_ANY)
        .unwrap();
    dh.sys_delete(&0u32.to_ne_bytes()).unwrap();
    assert_eq!(dh.dev_entry(7), Some((4, 13)));
    assert_eq!(dh.dev_entry(0), None);
    assert_eq!(all(&dh), vec![(7, 4, 13), (300, 2, 11)]);
    // the program-side lookup sees the same entry
    let p = dh.lookup(&7u32.to_ne_bytes(), 0).unwrap();
    // SAFETY: test-only: `p` comes from a lookup of a live map, valid for 8 bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, 8).to_vec() };
    assert_eq!(bytes, val(4, 13));

    let short = mk(MapType::DevmapHash, 4, 2);
    short
        .sys_update(&9u32.to_ne_bytes(), &5u32.to_ne_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(short.dev_entry(9), Some((5, 0)));
    assert_eq!(all(&short), vec![(9, 5, 0)]);
}

#[test]
fn cpumap_entries_and_other_types() {
    let c = mk(MapType::Cpumap, 8, 4);
    c.sys_update(&1u32.to_ne_bytes(), &val(256, 17), BPF_ANY)
        .unwrap();
    assert_eq!(c.dev_entry(1), Some((256, 17)));
    assert_eq!(c.dev_entry(0), None);
    assert_eq!(all(&c), vec![], "broadcast walks only devmaps");

    let x = mk(MapType::Xskmap, 4, 4);
    x.sys_update(&1u32.to_ne_bytes(), &5u32.to_ne_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(x.dev_entry(1), None);
    let h = mk(MapType::Hash, 8, 4);
    h.sys_update(&1u32.to_ne_bytes(), &val(1, 1), BPF_ANY)
        .unwrap();
    assert_eq!(h.dev_entry(1), None);
    assert_eq!(all(&h), vec![]);
}

#[test]
fn redirect_targets_are_the_present_slots_and_elements() {
    let d = mk(MapType::Devmap, 8, 130);
    d.sys_update(&129u32.to_ne_bytes(), &val(9, 0), BPF_ANY)
        .unwrap();
    let dh = mk(MapType::DevmapHash, 4, 4);
    dh.sys_update(&300u32.to_ne_bytes(), &2u32.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let c = mk(MapType::Cpumap, 8, 4);
    c.sys_update(&1u32.to_ne_bytes(), &val(256, 0), BPF_ANY)
        .unwrap();
    let x = mk(MapType::Xskmap, 4, 4);
    x.sys_update(&3u32.to_ne_bytes(), &5u32.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let h = mk(MapType::Hash, 4, 4);
    h.sys_update(&1u32.to_ne_bytes(), &1u32.to_ne_bytes(), BPF_ANY)
        .unwrap();
    for (m, hit, misses) in [
        (&d, 129, [128, 130, u32::MAX]),
        (&dh, 300, [0, 301, u32::MAX]),
        (&c, 1, [0, 4, u32::MAX]),
        (&x, 3, [2, 4, u32::MAX]),
    ] {
        let t = m.attr().map_type.name();
        assert!(m.has_redirect_target(hit), "{t} {hit}");
        for k in misses {
            assert!(!m.has_redirect_target(k), "{t} {k}");
        }
    }
    assert!(!h.has_redirect_target(1), "a hash map is no redirect map");
    dh.sys_delete(&300u32.to_ne_bytes()).unwrap();
    d.sys_delete(&129u32.to_ne_bytes()).unwrap();
    assert!(!dh.has_redirect_target(300) && !d.has_redirect_target(129));
}
