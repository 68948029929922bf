//! Lookups on some threads while others update and delete the same keys.
//!
//! What a reader may see (as with the kernel's preallocated maps): a HASH or LPM value
//! is replaced by linking a new element and freeing the old one at once, and a freed
//! element is reused by the next insert, so a pointer a reader got may show the zeroes
//! of a reused element being initialised or another key's value. Every 8-byte word a
//! reader sees is therefore 0 or a word some writer wrote, never anything else (no
//! freed memory, no torn index). What it may not see: a miss for a key that is present
//! throughout, a value other than the one of a key that is never changed, or a torn
//! DEVMAP entry. At the end every map holds exactly what the writers' last successful
//! operations left.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use skiff_maps::*;

const ITER: u64 = 20_000;

/// A value word: the key in the high half, a generation in the low half.
fn pat(key: u32, gen: u64) -> u64 {
    (u64::from(key) << 32) | gen
}

fn word(p: *mut u8, i: usize) -> u64 {
    // SAFETY: test-only: `p` comes from a lookup of a live map whose values are at
    // least 8 * (i + 1) bytes and 8-byte aligned; a volatile read because writers may
    // change the value concurrently (as programs see map memory).
    unsafe { std::ptr::read_volatile(p.cast::<u64>().add(i)) }
}

/// 0 (an element being initialised) or a word a writer wrote (key < keys, gen <= ITER).
fn valid(w: u64, keys: u32) -> bool {
    w == 0 || ((w >> 32) < u64::from(keys) && (w & 0xffff_ffff) <= ITER)
}

fn value(key: u32, gen: u64) -> Vec<u8> {
    [pat(key, gen).to_ne_bytes(), pat(key, gen).to_ne_bytes()].concat()
}

/// Run `readers` threads of `read(id, i)` while `writers` threads run `write()`, all
/// started together; readers go on until every writer is done (at least ITER and at
/// most 100 * ITER iterations each). Returns what the writers return.
fn race<W: Send + 'static>(
    readers: usize,
    read: impl Fn(usize, u64) + Send + Sync + 'static,
    writers: Vec<Box<dyn FnOnce() -> W + Send>>,
) -> Vec<W> {
    let read = Arc::new(read);
    let start = Arc::new(Barrier::new(readers + writers.len()));
    let running = Arc::new(AtomicUsize::new(writers.len()));
    let r: Vec<_> = (0..readers)
        .map(|id| {
            let (read, start, running) = (read.clone(), start.clone(), running.clone());
            thread::spawn(move || {
                start.wait();
                let mut i = 0;
                while (i < ITER || running.load(Ordering::Acquire) > 0) && i < 100 * ITER {
                    read(id, i);
                    i += 1;
                }
            })
        })
        .collect();
    let w: Vec<_> = writers
        .into_iter()
        .map(|f| {
            let (start, running) = (start.clone(), running.clone());
            thread::spawn(move || {
                start.wait();
                let out = f();
                running.fetch_sub(1, Ordering::Release);
                out
            })
        })
        .collect();
    r.into_iter()
        .for_each(|h| h.join().expect("reader panicked"));
    w.into_iter()
        .map(|h| h.join().expect("writer panicked"))
        .collect()
}

#[test]
fn hash_lookups_during_updates_and_deletes() {
    const KEYS: u32 = 24;
    const PINNED: u32 = 100;
    let m = Map::create(MapAttr::new(MapType::Hash, 4, 16, 16), 2).unwrap();
    m.sys_update(&PINNED.to_ne_bytes(), &value(PINNED, 0), BPF_ANY)
        .unwrap();
    let reader = {
        let m = m.clone();
        move |cpu: usize, i: u64| {
            let p = m
                .lookup(&PINNED.to_ne_bytes(), cpu)
                .expect("a key present throughout is always found");
            assert_eq!((word(p, 0), word(p, 1)), (pat(PINNED, 0), pat(PINNED, 0)));
            let k = (i % u64::from(KEYS)) as u32;
            if let Some(p) = m.lookup(&k.to_ne_bytes(), cpu) {
                let (a, b) = (word(p, 0), word(p, 1));
                assert!(valid(a, KEYS) && valid(b, KEYS), "{a:#x} {b:#x}");
            }
        }
    };
    // writer w owns the keys k with k % 2 == w; it returns each key's final generation
    let writers = (0..2u32)
        .map(|w| {
            let m = m.clone();
            Box::new(move || {
                let mut last = vec![None; KEYS as usize];
                for i in 1..=ITER {
                    let k = (i as u32 * 2 + w) % KEYS;
                    let key = k.to_ne_bytes();
                    let ok = match i % 3 {
                        0 => m.sys_update(&key, &value(k, i), BPF_ANY).is_ok(),
                        1 => m.update(&key, &value(k, i), BPF_ANY, w as usize).is_ok(),
                        _ => {
                            let _ = m.delete(&key);
                            last[k as usize] = None;
                            false
                        }
                    };
                    if ok {
                        last[k as usize] = Some(i);
                    }
                }
                last
            }) as Box<dyn FnOnce() -> Vec<Option<u64>> + Send>
        })
        .collect();
    let lasts = race(2, reader, writers);
    let mut live = 1;
    for k in 0..KEYS {
        let gen = lasts[(k % 2) as usize][k as usize];
        let got = m.sys_lookup(&k.to_ne_bytes());
        match gen {
            Some(g) => {
                live += 1;
                assert_eq!(got, Ok(MapValue::Single(value(k, g))), "key {k}");
            }
            None => assert_eq!(got, Err(errno::ENOENT), "key {k}"),
        }
    }
    assert_eq!(m.dump().len(), live);
}

#[test]
fn lru_lookups_during_evictions() {
    const KEYS: u32 = 64;
    const MAX: u32 = 8;
    let m = Map::create(MapAttr::new(MapType::LruHash, 4, 8, MAX), 2).unwrap();
    let reader = {
        let m = m.clone();
        move |cpu: usize, i: u64| {
            let k = ((i * 7) % u64::from(KEYS)) as u32;
            if let Some(p) = m.lookup(&k.to_ne_bytes(), cpu) {
                let w = word(p, 0);
                assert!(valid(w, KEYS), "{w:#x}");
            }
        }
    };
    let writers = (0..2u32)
        .map(|w| {
            let m = m.clone();
            Box::new(move || {
                let mut last = vec![0; KEYS as usize];
                for i in 1..=ITER {
                    let k = (i as u32 * 2 + w) % KEYS;
                    let v = pat(k, i).to_ne_bytes();
                    m.sys_update(&k.to_ne_bytes(), &v, BPF_ANY).unwrap();
                    last[k as usize] = i;
                }
                last
            }) as Box<dyn FnOnce() -> Vec<u64> + Send>
        })
        .collect();
    let lasts = race(2, reader, writers);
    let all = m.dump();
    assert_eq!(all.len(), MAX as usize, "a full LRU map stays full");
    for (key, v) in all {
        let k = u32::from_ne_bytes(key.try_into().unwrap());
        let want = pat(k, lasts[(k % 2) as usize][k as usize]);
        assert_eq!(v, MapValue::Single(want.to_ne_bytes().to_vec()), "key {k}");
    }
}

fn lpm_key(plen: u32, addr: [u8; 4]) -> Vec<u8> {
    [plen.to_ne_bytes(), addr].concat()
}

#[test]
fn lpm_lookups_during_updates() {
    let t = Map::create(
        MapAttr {
            map_flags: BPF_F_NO_PREALLOC,
            ..MapAttr::new(MapType::LpmTrie, 8, 8, 4)
        },
        2,
    )
    .unwrap();
    t.sys_update(
        &lpm_key(8, [10, 0, 0, 0]),
        &pat(8, 0).to_ne_bytes(),
        BPF_ANY,
    )
    .unwrap();
    let reader = {
        let t = t.clone();
        move |cpu: usize, _: u64| {
            let p = t
                .lookup(&lpm_key(32, [10, 1, 2, 3]), cpu)
                .expect("10.0.0.0/8 is present throughout");
            let plen = word(p, 0) >> 32;
            assert!([8, 16, 24].contains(&plen), "prefix length {plen}");
        }
    };
    let writer = {
        let t = t.clone();
        Box::new(move || {
            for i in 1..=ITER {
                let (plen, addr) = if i % 2 == 0 {
                    (16, [10, 1, 0, 0])
                } else {
                    (24, [10, 1, 2, 0])
                };
                let key = lpm_key(plen, addr);
                if i % 5 == 0 {
                    let _ = t.delete(&key);
                } else {
                    t.update(&key, &pat(plen, i).to_ne_bytes(), BPF_ANY, 0)
                        .unwrap();
                }
            }
        }) as Box<dyn FnOnce() + Send>
    };
    race(2, reader, vec![writer]);
    // the last operations: i = ITER (even, a multiple of 5: delete /16), ITER - 1
    // (odd: update /24)
    let lookup = |plen, addr| t.sys_lookup(&lpm_key(plen, addr));
    let single = |v: u64| Ok(MapValue::Single(v.to_ne_bytes().to_vec()));
    assert_eq!(lookup(32, [10, 1, 2, 3]), single(pat(24, ITER - 1)));
    assert_eq!(lookup(32, [10, 1, 3, 3]), single(pat(8, 0)));
    assert_eq!(lookup(16, [10, 1, 0, 0]), single(pat(8, 0)));
    assert_eq!(t.dump().len(), 2);
}

#[test]
fn hash_of_maps_lookups_during_updates() {
    let inner = MapAttr::new(MapType::Array, 4, 4, 1);
    let outer = Map::create(
        MapAttr {
            inner: Some(Box::new(inner.clone())),
            ..MapAttr::new(MapType::HashOfMaps, 4, 4, 4)
        },
        2,
    )
    .unwrap();
    let (a, b, c) = (
        Map::create(inner.clone(), 2).unwrap(),
        Map::create(inner.clone(), 2).unwrap(),
        Map::create(inner, 2).unwrap(),
    );
    let ids = [a.id(), b.id()];
    outer
        .sys_update_map(&1u32.to_ne_bytes(), c.clone(), BPF_ANY)
        .unwrap();
    outer
        .sys_update_map(&0u32.to_ne_bytes(), a.clone(), BPF_ANY)
        .unwrap();
    let c_id = c.id();
    let reader = {
        let outer = outer.clone();
        move |_: usize, _: u64| {
            let pinned = outer
                .lookup_map(&1u32.to_ne_bytes())
                .expect("present throughout");
            assert_eq!(pinned.id(), c_id);
            if let Some(m) = outer.lookup_map(&0u32.to_ne_bytes()) {
                assert!(ids.contains(&m.id()), "map {}", m.id());
            }
        }
    };
    let writer = {
        let outer = outer.clone();
        Box::new(move || {
            for i in 0..ITER {
                let key = 0u32.to_ne_bytes();
                match i % 3 {
                    0 => outer.sys_update_map(&key, a.clone(), BPF_ANY).unwrap(),
                    1 => outer.sys_update_map(&key, b.clone(), BPF_ANY).unwrap(),
                    _ => outer.sys_delete(&key).unwrap(),
                }
            }
        }) as Box<dyn FnOnce() + Send>
    };
    race(2, reader, vec![writer]);
    // the last operation is i = ITER - 1: 0 installs a, 1 installs b, 2 deletes
    let last = ids.get(((ITER - 1) % 3) as usize).copied();
    assert_eq!(last, Some(ids[1]), "ITER = 20_000 ends with b");
    assert_eq!(outer.lookup_map(&0u32.to_ne_bytes()).map(|m| m.id()), last);
    assert_eq!(outer.dump().len(), 2);
}

#[test]
fn devmap_entries_are_never_torn() {
    for t in [MapType::Devmap, MapType::DevmapHash] {
        let d = Map::create(MapAttr::new(t, 4, 8, 4), 2).unwrap();
        let val = |v: u32| [v.to_ne_bytes(), v.to_ne_bytes()].concat();
        d.sys_update(&1u32.to_ne_bytes(), &val(1), BPF_ANY).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let d = d.clone();
            move |_: usize, _: u64| {
                let (ifindex, prog) = d.dev_entry(1).expect("key 1 is present throughout");
                assert_eq!(ifindex, prog, "a torn entry");
                d.for_each_dev_entry(|k, ifindex, prog| {
                    assert!(k == 1 || k == 2, "key {k}");
                    assert_eq!(ifindex, prog, "a torn entry");
                });
            }
        };
        let writer = {
            let (d, done) = (d.clone(), done.clone());
            Box::new(move || {
                for v in 1..=ITER as u32 {
                    d.sys_update(&1u32.to_ne_bytes(), &val(v), BPF_ANY).unwrap();
                    if v % 2 == 0 {
                        d.sys_update(&2u32.to_ne_bytes(), &val(v), BPF_ANY).unwrap();
                    } else {
                        // key 2 is absent the first time (DEVMAP_HASH: ENOENT)
                        let r = d.sys_delete(&2u32.to_ne_bytes());
                        assert!(r.is_ok() || v == 1, "{r:?}");
                    }
                }
                done.store(true, Ordering::Release);
            }) as Box<dyn FnOnce() + Send>
        };
        race(2, reader, vec![writer]);
        assert!(done.load(Ordering::Acquire));
        let last = ITER as u32;
        assert_eq!(d.dev_entry(1), Some((last, last)), "{}", t.name());
        assert_eq!(d.dev_entry(2), Some((last, last)), "{}", t.name());
    }
}
