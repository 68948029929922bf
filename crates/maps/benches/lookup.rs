//! ns per program-side `Map::lookup` (bpf_map_lookup_elem) on a HASH, an LRU_HASH and an
//! LPM_TRIE map, on one thread and on two threads reading the same map while a third
//! thread updates it; then a DEVMAP redirect target read through `sys_lookup` (what the
//! datapath did) and through `dev_entry`, and a 16-entry broadcast walk through
//! `sys_get_next_key` + `sys_lookup` and through `for_each_dev_entry`. A plain timing loop (no criterion: one figure per case is what the
//! issue asks for). Run: `cargo bench -p skiff-maps --bench lookup`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use skiff_maps::{Map, MapAttr, MapType, BPF_ANY, BPF_F_NO_PREALLOC};

const KEYS: u32 = 1024;
const ROUNDS: u32 = 2_000;

fn filled(t: MapType) -> Arc<Map> {
    let attr = match t {
        MapType::LpmTrie => MapAttr {
            map_flags: BPF_F_NO_PREALLOC,
            ..MapAttr::new(t, 8, 8, KEYS)
        },
        _ => MapAttr::new(t, 4, 8, KEYS),
    };
    let m = Map::create(attr, 2).expect("create");
    for i in 0..KEYS {
        m.sys_update(&key_of(t, i), &u64::from(i).to_ne_bytes(), BPF_ANY)
            .expect("fill");
    }
    m
}

fn key_of(t: MapType, i: u32) -> Vec<u8> {
    match t {
        MapType::LpmTrie => [32u32.to_ne_bytes(), (i << 8).to_be_bytes()].concat(),
        _ => i.to_ne_bytes().to_vec(),
    }
}

/// ns per lookup over ROUNDS passes through every key.
fn reader(m: &Map, t: MapType, cpu: usize) -> f64 {
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| key_of(t, i)).collect();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for k in &keys {
            black_box(m.lookup(black_box(k), cpu));
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(ROUNDS * KEYS)
}

fn per_op(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn devmap() {
    let d = Map::create(MapAttr::new(MapType::Devmap, 4, 8, 16), 1).expect("create");
    for i in 0..16u32 {
        let v = [(i + 1).to_ne_bytes(), 0u32.to_ne_bytes()].concat();
        d.sys_update(&i.to_ne_bytes(), &v, BPF_ANY).expect("fill");
    }
    let n = 1_000_000;
    let sys = per_op(n, |i| {
        black_box(d.sys_lookup(&(i % 16).to_ne_bytes()).ok());
    });
    let entry = per_op(n, |i| {
        black_box(d.dev_entry(black_box(i % 16)));
    });
    let walk_sys = per_op(n / 16, |_| {
        let mut key: Option<Vec<u8>> = None;
        while let Ok(k) = d.sys_get_next_key(key.as_deref()) {
            black_box(d.sys_lookup(&k).ok());
            key = Some(k);
        }
    });
    let walk = per_op(n / 16, |_| {
        d.for_each_dev_entry(|k, ifindex, prog| {
            black_box((k, ifindex, prog));
        })
    });
    println!("devmap   target: sys_lookup {sys:6.1} ns, dev_entry {entry:6.1} ns; 16-entry broadcast walk: get_next_key+sys_lookup {walk_sys:7.1} ns, for_each_dev_entry {walk:6.1} ns");
}

fn main() {
    for t in [MapType::Hash, MapType::LruHash, MapType::LpmTrie] {
        let m = filled(t);
        let one = reader(&m, t, 0);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (m, stop) = (m.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                // SKIFF_BENCH_NO_UPDATER=1: two readers alone
                let idle = std::env::var_os("SKIFF_BENCH_NO_UPDATER").is_some();
                while !stop.load(Ordering::Relaxed) && !idle {
                    let k = key_of(t, i % KEYS);
                    let _ = m.sys_update(&k, &u64::from(i).to_ne_bytes(), BPF_ANY);
                    i = i.wrapping_add(1);
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|cpu| {
                let m = m.clone();
                std::thread::spawn(move || reader(&m, t, cpu))
            })
            .collect();
        let two: Vec<f64> = readers
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        let with = if std::env::var_os("SKIFF_BENCH_NO_UPDATER").is_some() {
            "alone"
        } else {
            "+1 updater"
        };
        println!(
            "{:8} 1 thread: {one:6.1} ns/lookup; 2 threads ({with}): {:6.1} / {:6.1} ns/lookup",
            t.name(),
            two[0],
            two[1]
        );
    }
    devmap();
}
