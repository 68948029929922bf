//! Kernel semantics of each map type: creation checks, update flags, errno values,
//! iteration order, per-CPU layout, LRU eviction, LPM matching, queue/stack order,
//! ring buffer records, map-in-map compatibility.

use std::sync::Arc;

use skiff_maps::errno::*;
use skiff_maps::*;

fn attr(t: MapType, k: u32, v: u32, n: u32, flags: u32) -> MapAttr {
    MapAttr {
        map_flags: flags,
        ..MapAttr::new(t, k, v, n)
    }
}

fn mk(t: MapType, k: u32, v: u32, n: u32, flags: u32) -> Arc<Map> {
    Map::create(attr(t, k, v, n, flags), 2).unwrap()
}

fn create_errno(t: MapType, k: u32, v: u32, n: u32, flags: u32) -> Errno {
    Map::create(attr(t, k, v, n, flags), 2).unwrap_err().errno
}

fn k4(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

fn read(p: *mut u8, len: usize) -> Vec<u8> {
    // SAFETY: test-only: `p` comes from a lookup of a live map, valid for `len` bytes.
    unsafe { std::slice::from_raw_parts(p, len).to_vec() }
}

fn write(p: *mut u8, data: &[u8]) {
    // SAFETY: test-only: `p` comes from a lookup of a live map, valid for data.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
}

#[test]
fn map_types_round_trip() {
    for id in 0..40 {
        if let Some(t) = MapType::from_kernel(id) {
            assert_eq!(t.kernel_id(), id);
            assert_eq!(MapType::from_name(t.name()), Some(t));
        }
    }
    assert_eq!(MapType::from_kernel(27), Some(MapType::Ringbuf));
    assert_eq!(MapType::from_kernel(7), None);
    assert_eq!(MapType::LruPercpuHash.name(), "lru_percpu_hash");
    assert!(MapType::PercpuArray.is_percpu());
    assert!(!MapType::LruHash.is_percpu());
}

#[test]
fn creation_checks() {
    use MapType::*;
    assert_eq!(create_errno(Array, 4, 4, 0, 0), EINVAL);
    assert_eq!(create_errno(Array, 8, 4, 1, 0), EINVAL);
    assert_eq!(create_errno(Array, 4, 0, 1, 0), EINVAL);
    assert_eq!(create_errno(Array, 4, 4, 1, 1 << 20), EINVAL);
    assert_eq!(
        create_errno(Array, 4, 4, 1, BPF_F_RDONLY | BPF_F_WRONLY),
        EINVAL
    );
    assert_eq!(
        create_errno(Array, 4, 4, 1, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG),
        EINVAL
    );
    assert_eq!(create_errno(PercpuArray, 4, 4, 1, BPF_F_MMAPABLE), EINVAL);
    assert_eq!(create_errno(PercpuArray, 4, 4, 1, BPF_F_NUMA_NODE), EINVAL);
    assert_eq!(create_errno(PercpuArray, 4, 32769, 1, 0), E2BIG);
    assert!(Map::create(attr(PercpuArray, 4, 32768, 1, 0), 2).is_ok());
    assert_eq!(create_errno(Hash, 0, 4, 1, 0), EINVAL);
    assert_eq!(create_errno(Hash, 4, 0, 1, 0), EINVAL);
    assert_eq!(create_errno(Hash, 4, 4, 0, 0), EINVAL);
    assert_eq!(create_errno(Hash, 4, 4, 1, BPF_F_NO_COMMON_LRU), EINVAL);
    assert_eq!(create_errno(Hash, 4, 4, 268_435_456, 0), E2BIG);
    assert_eq!(create_errno(LruHash, 4, 4, 4, BPF_F_NO_PREALLOC), ENOTSUPP);
    assert_eq!(create_errno(Hash, 4, 4, 1, BPF_F_MMAPABLE), EINVAL);
    assert_eq!(create_errno(LpmTrie, 8, 4, 2, 0), EINVAL);
    assert_eq!(create_errno(LpmTrie, 4, 4, 2, BPF_F_NO_PREALLOC), EINVAL);
    assert_eq!(create_errno(LpmTrie, 261, 4, 2, BPF_F_NO_PREALLOC), EINVAL);
    assert!(Map::create(attr(LpmTrie, 8, 4, 2, BPF_F_NO_PREALLOC), 2).is_ok());
    assert_eq!(create_errno(Queue, 4, 4, 2, 0), EINVAL);
    assert_eq!(create_errno(Stack, 0, 0, 2, 0), EINVAL);
    assert_eq!(create_errno(Ringbuf, 0, 0, 4095, 0), EINVAL);
    assert_eq!(create_errno(Ringbuf, 0, 0, 2048, 0), EINVAL);
    assert_eq!(create_errno(Ringbuf, 0, 0, 4096 * 3, 0), EINVAL);
    assert_eq!(create_errno(Ringbuf, 0, 0, 4096, BPF_F_RDONLY), EINVAL);
    assert_eq!(create_errno(Ringbuf, 4, 0, 4096, 0), EINVAL);
    assert_eq!(create_errno(Devmap, 4, 12, 2, 0), EINVAL);
    assert_eq!(create_errno(Devmap, 4, 4, 2, BPF_F_RDONLY_PROG), EINVAL);
    assert_eq!(create_errno(Cpumap, 4, 4, NR_CPUS + 1, 0), E2BIG);
    assert_eq!(create_errno(Cpumap, 4, 16, 2, 0), EINVAL);
    assert_eq!(create_errno(Xskmap, 4, 8, 2, 0), EINVAL);
    assert_eq!(create_errno(ProgArray, 4, 8, 2, 0), EINVAL);
    assert_eq!(
        create_errno(ProgArray, 4, 4, 2, BPF_F_PRESERVE_ELEMS),
        EINVAL
    );
    assert!(Map::create(attr(PerfEventArray, 4, 4, 2, BPF_F_PRESERVE_ELEMS), 2).is_ok());
    // map-in-map without a template: the kernel's bad inner_map_fd
    assert_eq!(create_errno(ArrayOfMaps, 4, 4, 2, 0), EBADF);
    // a template on a map that is not map-in-map
    let mut a = attr(Array, 4, 4, 2, 0);
    a.inner = Some(Box::new(attr(Array, 4, 4, 2, 0)));
    assert_eq!(Map::create(a, 2).unwrap_err().errno, EINVAL);
    // names: [A-Za-z0-9_.], cut to 15 bytes like libbpf
    let mut a = attr(Hash, 4, 4, 2, 0);
    a.name = "ab-c".into();
    assert_eq!(Map::create(a, 2).unwrap_err().errno, EINVAL);
    let mut a = attr(Hash, 4, 4, 2, 0);
    a.name = "abcdefghijklmnopq".into();
    assert_eq!(Map::create(a, 2).unwrap().attr().name, "abcdefghijklmno");
    // every error says where it comes from
    let e = Map::create(attr(Hash, 0, 4, 1, 0), 2).unwrap_err();
    assert!(e.msg.contains("htab_map_alloc_check"), "{}", e.msg);
}

#[test]
fn ids_are_unique_and_resolvable() {
    let a = mk(MapType::Array, 4, 4, 1, 0);
    let b = mk(MapType::Array, 4, 4, 1, 0);
    assert!(a.id() >= 1);
    assert_ne!(a.id(), b.id());
    assert_eq!(Map::by_id(b.id()).map(|m| m.id()), Some(b.id()));
    let id = a.id();
    drop(a);
    assert!(Map::by_id(id).is_none());
}

#[test]
fn devmap_gets_rdonly_prog_and_read_only_regions() {
    let d = mk(MapType::Devmap, 4, 8, 4, 0);
    assert_eq!(d.attr().map_flags, BPF_F_RDONLY_PROG);
    let r = d.regions();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].len, 32);
    assert!(!r[0].writable);
    let a = mk(MapType::Array, 4, 4, 3, BPF_F_RDONLY_PROG);
    assert!(!a.regions()[0].writable);
    assert_eq!(a.update(&k4(0), &[1; 4], BPF_ANY, 0), Err(EACCES));
    let a = mk(MapType::Array, 4, 5, 3, 0);
    assert_eq!(a.regions()[0].len, 24);
    assert!(a.regions()[0].writable);
}

#[test]
fn array_flags_and_errno() {
    let a = mk(MapType::Array, 4, 4, 2, 0);
    assert_eq!(a.sys_update(&k4(2), &[1; 4], BPF_ANY), Err(E2BIG));
    assert_eq!(a.sys_update(&k4(1), &[1; 4], BPF_NOEXIST), Err(EEXIST));
    assert_eq!(a.sys_update(&k4(1), &[1; 4], 3), Err(EINVAL));
    assert_eq!(a.sys_update(&k4(1), &[1; 4], 8), Err(EINVAL));
    assert_eq!(a.sys_update(&k4(1), &[7; 4], BPF_EXIST), Ok(()));
    assert_eq!(a.sys_update(&k4(0), &[5; 4], BPF_F_LOCK), Err(EINVAL)); // no bpf_spin_lock in the value
    assert_eq!(a.sys_delete(&k4(1)), Err(EINVAL));
    assert_eq!(a.delete(&k4(1)), Err(EINVAL));
    assert_eq!(a.sys_lookup(&k4(1)), Ok(MapValue::Single(vec![7; 4])));
    assert_eq!(a.sys_lookup(&k4(2)), Err(ENOENT));
    assert_eq!(a.sys_lookup(&[0; 3]), Err(EINVAL));
    assert_eq!(a.sys_update(&k4(0), &[1; 5], BPF_ANY), Err(EINVAL));
    // program side: the pointer is the value, writes through it are seen by the syscall
    let p = a.lookup(&k4(1), 0).unwrap();
    assert_eq!(read(p, 4), vec![7; 4]);
    write(p, &[9, 9, 9, 9]);
    assert_eq!(a.sys_lookup(&k4(1)), Ok(MapValue::Single(vec![9; 4])));
    assert!(a.lookup(&k4(2), 0).is_none());
    assert_eq!(a.lookup(&k4(1), 0), Some(p), "array values never move");
    // iteration
    assert_eq!(a.sys_get_next_key(None), Ok(k4(0).to_vec()));
    assert_eq!(a.sys_get_next_key(Some(&k4(0))), Ok(k4(1).to_vec()));
    assert_eq!(a.sys_get_next_key(Some(&k4(1))), Err(ENOENT));
    assert_eq!(a.sys_get_next_key(Some(&k4(77))), Ok(k4(0).to_vec()));
    assert_eq!(
        a.dump(),
        vec![
            (k4(0).to_vec(), MapValue::Single(vec![0; 4])),
            (k4(1).to_vec(), MapValue::Single(vec![9; 4]))
        ]
    );
}

#[test]
fn percpu_array_layout() {
    let a = mk(MapType::PercpuArray, 4, 4, 2, 0);
    assert_eq!(a.sys_value_len(), 16);
    // the syscall takes possible_cpus values, each padded to 8 bytes
    let v = [1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0, 0, 0];
    assert_eq!(a.sys_update(&k4(1), &v[..8], BPF_ANY), Err(EINVAL));
    assert_eq!(a.sys_update(&k4(1), &v, BPF_F_LOCK), Err(EINVAL));
    assert_eq!(a.sys_update(&k4(1), &v, BPF_NOEXIST), Err(EEXIST));
    assert_eq!(a.sys_update(&k4(2), &v, BPF_ANY), Err(E2BIG));
    a.sys_update(&k4(1), &v, BPF_ANY).unwrap();
    assert_eq!(
        a.sys_lookup(&k4(1)),
        Ok(MapValue::PerCpu(vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]))
    );
    assert_eq!(a.sys_lookup_raw(&k4(1)), Ok(v.to_vec()));
    // programs see and write their own CPU's copy only
    assert_eq!(read(a.lookup(&k4(1), 1).unwrap(), 4), vec![5, 6, 7, 8]);
    a.update(&k4(1), &[9; 4], BPF_ANY, 0).unwrap();
    assert_eq!(
        a.sys_lookup(&k4(1)),
        Ok(MapValue::PerCpu(vec![vec![9; 4], vec![5, 6, 7, 8]]))
    );
    assert!(a.lookup(&k4(1), 2).is_none());
    assert_eq!(a.update(&k4(1), &[9; 4], BPF_ANY, 2), Err(EINVAL));
}

#[test]
fn hash_flags_and_errno() {
    let h = mk(MapType::Hash, 4, 4, 2, 0);
    assert_eq!(h.sys_update(&k4(1), &[1; 4], BPF_EXIST), Err(ENOENT));
    h.sys_update(&k4(1), &[1; 4], BPF_NOEXIST).unwrap();
    assert_eq!(h.sys_update(&k4(1), &[1; 4], BPF_NOEXIST), Err(EEXIST));
    h.sys_update(&k4(2), &[2; 4], BPF_ANY).unwrap();
    // full: new keys E2BIG, EXIST on a missing key ENOENT first, replacing works
    assert_eq!(h.sys_update(&k4(3), &[3; 4], BPF_ANY), Err(E2BIG));
    assert_eq!(h.sys_update(&k4(3), &[3; 4], BPF_NOEXIST), Err(E2BIG));
    assert_eq!(h.sys_update(&k4(3), &[3; 4], BPF_EXIST), Err(ENOENT));
    assert_eq!(h.sys_update(&k4(2), &[9; 4], BPF_ANY), Ok(()));
    assert_eq!(h.sys_update(&k4(2), &[8; 4], BPF_EXIST), Ok(()));
    assert_eq!(h.sys_update(&k4(2), &[8; 4], 3), Err(EINVAL));
    // no bpf_spin_lock in the value: BPF_F_LOCK is EINVAL
    assert_eq!(
        h.sys_update(&k4(2), &[7; 4], BPF_F_LOCK | BPF_EXIST),
        Err(EINVAL)
    );
    assert_eq!(h.sys_lookup(&k4(2)), Ok(MapValue::Single(vec![8; 4])));
    assert_eq!(h.sys_delete(&k4(5)), Err(ENOENT));
    assert_eq!(h.delete(&k4(5)), Err(ENOENT));
    assert_eq!(h.sys_lookup(&k4(5)), Err(ENOENT));
    assert_eq!(h.sys_delete(&k4(1)), Ok(()));
    assert_eq!(h.sys_update(&k4(3), &[3; 4], BPF_NOEXIST), Ok(()));
    // program side
    let p = h.lookup(&k4(3), 1).unwrap();
    assert_eq!(read(p, 4), vec![3; 4]);
    write(p, &[4; 4]);
    assert_eq!(h.sys_lookup(&k4(3)), Ok(MapValue::Single(vec![4; 4])));
    assert_eq!(h.update(&k4(4), &[1; 4], BPF_ANY, 0), Err(E2BIG));
    h.delete(&k4(3)).unwrap();
    assert!(h.lookup(&k4(3), 0).is_none());
    // the pointer still points into the slab (as the kernel's preallocated elements)
    let r = h.regions()[0];
    assert!((p as usize) >= r.start && (p as usize) + 4 <= r.start + r.len);
    // iteration: key-byte order, a missing key restarts
    h.sys_update(&[0, 0, 0, 1], &[1; 4], BPF_ANY).unwrap();
    assert_eq!(h.sys_get_next_key(None), Ok(vec![0, 0, 0, 1]));
    assert_eq!(h.sys_get_next_key(Some(&[0, 0, 0, 1])), Ok(k4(2).to_vec()));
    assert_eq!(h.sys_get_next_key(Some(&k4(2))), Err(ENOENT));
    assert_eq!(h.sys_get_next_key(Some(&k4(99))), Ok(vec![0, 0, 0, 1]));
    let d = h.dump();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].0, vec![0, 0, 0, 1]);
    let empty = mk(MapType::Hash, 4, 4, 2, 0);
    assert_eq!(empty.sys_get_next_key(None), Err(ENOENT));
}

#[test]
fn hash_replace_keeps_old_pointer_readable() {
    // kernel: replacing a key in a preallocated htab installs a new element; a program
    // still holding the old one reads the old value.
    let h = mk(MapType::Hash, 4, 8, 1, 0);
    h.sys_update(&k4(1), &[1; 8], BPF_ANY).unwrap();
    let old = h.lookup(&k4(1), 0).unwrap();
    h.sys_update(&k4(1), &[2; 8], BPF_ANY).unwrap();
    let new = h.lookup(&k4(1), 0).unwrap();
    assert_ne!(old, new);
    assert_eq!(read(old, 8), vec![1; 8]);
    assert_eq!(read(new, 8), vec![2; 8]);
}

#[test]
fn percpu_hash_layout_and_init() {
    let h = mk(MapType::PercpuHash, 4, 4, 2, 0);
    assert_eq!(h.sys_value_len(), 16);
    // program-side insert: this CPU's value, other CPUs zeroed (pcpu_init_value)
    h.update(&k4(1), &[7; 4], BPF_ANY, 1).unwrap();
    assert_eq!(
        h.sys_lookup(&k4(1)),
        Ok(MapValue::PerCpu(vec![vec![0; 4], vec![7; 4]]))
    );
    // program-side update of an existing element: only that CPU
    h.update(&k4(1), &[3; 4], BPF_EXIST, 0).unwrap();
    assert_eq!(
        h.sys_lookup(&k4(1)),
        Ok(MapValue::PerCpu(vec![vec![3; 4], vec![7; 4]]))
    );
    let mut v = vec![1u8; 8];
    v.extend_from_slice(&[2u8; 8]);
    h.sys_update(&k4(2), &v, BPF_NOEXIST).unwrap();
    assert_eq!(h.sys_lookup_raw(&k4(2)), Ok(v.clone()));
    assert_eq!(read(h.lookup(&k4(2), 1).unwrap(), 4), vec![2; 4]);
    assert_eq!(h.sys_update(&k4(3), &v, BPF_ANY), Err(E2BIG));
    assert_eq!(h.sys_update(&k4(2), &v, BPF_F_LOCK), Err(EINVAL));
    assert_eq!(h.sys_update(&k4(2), &v[..8], BPF_ANY), Err(EINVAL));
}

#[test]
fn lru_evicts_least_recently_used() {
    let h = mk(MapType::LruHash, 4, 4, 3, 0);
    for i in 1..=3 {
        h.sys_update(&k4(i), &[i as u8; 4], BPF_ANY).unwrap();
    }
    // use 1 and 3 from the program side: 2 is the least recently used
    assert!(h.lookup(&k4(1), 0).is_some());
    assert!(h.lookup(&k4(3), 0).is_some());
    h.sys_update(&k4(4), &[4; 4], BPF_ANY).unwrap();
    assert_eq!(h.sys_lookup(&k4(2)), Err(ENOENT));
    for i in [1, 3, 4] {
        assert_eq!(h.sys_lookup(&k4(i)), Ok(MapValue::Single(vec![i as u8; 4])));
    }
    // syscall lookups do not count as use (htab_lru_map_lookup_elem_sys): 1 is oldest now
    h.sys_lookup(&k4(1)).unwrap();
    h.update(&k4(5), &[5; 4], BPF_ANY, 0).unwrap();
    assert_eq!(h.sys_lookup(&k4(1)), Err(ENOENT));
    assert_eq!(h.dump().len(), 3);
    // flags: no BPF_F_LOCK; NOEXIST on existing is EEXIST
    assert_eq!(h.sys_update(&k4(5), &[5; 4], BPF_F_LOCK), Err(EINVAL));
    assert_eq!(h.sys_update(&k4(5), &[5; 4], BPF_NOEXIST), Err(EEXIST));
    assert_eq!(h.sys_delete(&k4(77)), Err(ENOENT));
}

#[test]
fn lru_percpu_and_no_common_lru() {
    let h = Map::create(
        attr(MapType::LruPercpuHash, 4, 4, 3, BPF_F_NO_COMMON_LRU),
        2,
    )
    .unwrap();
    // BPF_F_NO_COMMON_LRU rounds max_entries up to a multiple of the CPUs
    assert_eq!(h.attr().max_entries, 4);
    for i in 1..=5u32 {
        h.update(&k4(i), &[i as u8; 4], BPF_ANY, 1).unwrap();
    }
    assert_eq!(h.dump().len(), 4);
    assert_eq!(h.sys_lookup(&k4(1)), Err(ENOENT));
    assert_eq!(
        h.sys_lookup(&k4(5)),
        Ok(MapValue::PerCpu(vec![vec![0; 4], vec![5; 4]]))
    );
    assert_eq!(h.sys_update(&k4(9), &[0; 16], BPF_EXIST), Err(ENOENT));
}

fn lpm_key(plen: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut k = plen.to_ne_bytes().to_vec();
    k.extend_from_slice(&ip);
    k
}

#[test]
fn lpm_longest_prefix_match() {
    let t = mk(MapType::LpmTrie, 8, 4, 8, BPF_F_NO_PREALLOC);
    t.sys_update(&lpm_key(8, [10, 0, 0, 0]), &k4(8), BPF_ANY)
        .unwrap();
    t.sys_update(&lpm_key(16, [10, 1, 0, 0]), &k4(16), BPF_ANY)
        .unwrap();
    t.sys_update(&lpm_key(24, [10, 1, 2, 0]), &k4(24), BPF_ANY)
        .unwrap();
    t.sys_update(&lpm_key(32, [10, 1, 2, 3]), &k4(32), BPF_ANY)
        .unwrap();
    let get = |plen: u32, ip: [u8; 4]| match t.sys_lookup(&lpm_key(plen, ip)) {
        Ok(MapValue::Single(v)) => Ok(u32::from_ne_bytes(v.try_into().unwrap())),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(get(32, [10, 1, 2, 3]), Ok(32));
    assert_eq!(get(32, [10, 1, 2, 4]), Ok(24));
    assert_eq!(get(32, [10, 1, 3, 3]), Ok(16));
    assert_eq!(get(32, [10, 2, 2, 3]), Ok(8));
    assert_eq!(get(32, [11, 1, 2, 3]), Err(ENOENT));
    // the key's prefixlen bounds the match
    assert_eq!(get(24, [10, 1, 2, 3]), Ok(24));
    assert_eq!(get(23, [10, 1, 2, 3]), Ok(16));
    assert_eq!(get(7, [10, 1, 2, 3]), Err(ENOENT));
    assert_eq!(get(33, [10, 1, 2, 3]), Err(ENOENT));
    // program side
    let p = t.lookup(&lpm_key(32, [10, 1, 9, 9]), 0).unwrap();
    assert_eq!(read(p, 4), k4(16).to_vec());
    // update/delete: exact prefix, flags, bad prefixlen
    assert_eq!(
        t.sys_update(&lpm_key(16, [10, 1, 0xff, 0xff]), &k4(1), BPF_NOEXIST),
        Err(EEXIST)
    );
    assert_eq!(
        t.sys_update(&lpm_key(20, [10, 1, 0, 0]), &k4(1), BPF_EXIST),
        Err(ENOENT)
    );
    assert_eq!(
        t.sys_update(&lpm_key(33, [10, 1, 0, 0]), &k4(1), BPF_ANY),
        Err(EINVAL)
    );
    assert_eq!(
        t.sys_update(&lpm_key(8, [10, 1, 0, 0]), &k4(1), BPF_F_LOCK),
        Err(EINVAL)
    );
    assert_eq!(t.sys_delete(&lpm_key(20, [10, 1, 0, 0])), Err(ENOENT));
    assert_eq!(t.sys_delete(&lpm_key(33, [10, 1, 0, 0])), Err(EINVAL));
    t.sys_delete(&lpm_key(24, [10, 1, 2, 77])).unwrap();
    assert_eq!(get(32, [10, 1, 2, 4]), Ok(16));
    assert_eq!(t.delete(&lpm_key(24, [10, 1, 2, 0])), Err(ENOENT));
}

#[test]
fn lpm_full_and_get_next_key_postorder() {
    let t = mk(MapType::LpmTrie, 8, 4, 4, BPF_F_NO_PREALLOC);
    // the example of kernel/bpf/lpm_trie.c: trie_get_next_key
    t.sys_update(&lpm_key(16, [192, 168, 0, 0]), &k4(1), BPF_ANY)
        .unwrap();
    t.sys_update(&lpm_key(24, [192, 168, 128, 0]), &k4(2), BPF_ANY)
        .unwrap();
    t.sys_update(&lpm_key(24, [192, 168, 1, 0]), &k4(3), BPF_ANY)
        .unwrap();
    t.sys_update(&lpm_key(24, [192, 168, 0, 0]), &k4(4), BPF_ANY)
        .unwrap();
    assert_eq!(
        t.sys_update(&lpm_key(8, [10, 0, 0, 0]), &k4(5), BPF_ANY),
        Err(ENOSPC)
    );
    // replacing in a full trie works
    t.sys_update(&lpm_key(16, [192, 168, 0, 0]), &k4(6), BPF_EXIST)
        .unwrap();
    let expected = [
        lpm_key(24, [192, 168, 0, 0]),
        lpm_key(24, [192, 168, 1, 0]),
        lpm_key(24, [192, 168, 128, 0]),
        lpm_key(16, [192, 168, 0, 0]),
    ];
    let mut got = Vec::new();
    let mut k = t.sys_get_next_key(None);
    while let Ok(key) = k {
        got.push(key.clone());
        k = t.sys_get_next_key(Some(&key));
    }
    assert_eq!(k, Err(ENOENT));
    assert_eq!(got, expected);
    // a key not in the trie restarts at the leftmost node
    assert_eq!(
        t.sys_get_next_key(Some(&lpm_key(8, [1, 0, 0, 0]))),
        Ok(expected[0].clone())
    );
    let dumped: Vec<Vec<u8>> = t.dump().into_iter().map(|(k, _)| k).collect();
    assert_eq!(dumped, expected);
}

#[test]
fn queue_and_stack_order_and_overwrite() {
    let q = mk(MapType::Queue, 0, 4, 2, 0);
    let mut out = [0u8; 4];
    assert_eq!(q.pop(&mut out), Err(ENOENT));
    assert_eq!(q.peek(&mut out), Err(ENOENT));
    assert_eq!(q.sys_lookup(&[]), Err(ENOENT));
    q.push(&k4(1), BPF_ANY).unwrap();
    q.sys_update(&[], &k4(2), BPF_ANY).unwrap();
    assert_eq!(q.push(&k4(3), BPF_ANY), Err(E2BIG));
    assert_eq!(q.push(&k4(3), BPF_NOEXIST), Err(EINVAL));
    assert_eq!(q.push(&k4(3), 4), Err(EINVAL));
    q.push(&k4(3), BPF_EXIST).unwrap(); // drops 1, the oldest
    assert_eq!(q.sys_lookup(&[]), Ok(MapValue::Single(k4(2).to_vec())));
    q.pop(&mut out).unwrap();
    assert_eq!(out, k4(2));
    q.pop(&mut out).unwrap();
    assert_eq!(out, k4(3));
    assert_eq!(q.sys_delete(&[]), Err(EINVAL));
    assert_eq!(q.sys_get_next_key(None), Err(EINVAL));
    assert_eq!(q.pop(&mut [0u8; 3]), Err(EINVAL));

    let s = mk(MapType::Stack, 0, 4, 2, 0);
    s.push(&k4(1), BPF_ANY).unwrap();
    s.push(&k4(2), BPF_ANY).unwrap();
    assert_eq!(s.push(&k4(3), BPF_ANY), Err(E2BIG));
    s.push(&k4(3), BPF_EXIST).unwrap(); // the oldest (1) is overwritten
    assert_eq!(
        s.dump(),
        vec![
            (vec![], MapValue::Single(k4(3).to_vec())),
            (vec![], MapValue::Single(k4(2).to_vec()))
        ]
    );
    s.peek(&mut out).unwrap();
    assert_eq!(out, k4(3));
    s.pop(&mut out).unwrap();
    assert_eq!(out, k4(3));
    s.pop(&mut out).unwrap();
    assert_eq!(out, k4(2));
    assert_eq!(s.pop(&mut out), Err(ENOENT));
}

#[test]
fn ringbuf_records() {
    let r = mk(MapType::Ringbuf, 0, 0, 4096, 0);
    assert_eq!(r.ringbuf_query(BPF_RB_RING_SIZE), 4096);
    assert_eq!(r.ringbuf_query(9), 0);
    assert!(r.ringbuf_reserve(8, 1).is_none());
    let a = r.ringbuf_reserve(5, 0).unwrap();
    write(a, b"hello");
    let b = r.ringbuf_reserve(3, 0).unwrap();
    write(b, b"bye");
    // header 8 bytes + 5 rounded to 8 -> 16 per record
    assert_eq!(b as usize - a as usize, 16);
    assert_eq!(r.ringbuf_query(BPF_RB_PROD_POS), 32);
    assert_eq!(r.ringbuf_query(BPF_RB_AVAIL_DATA), 32);
    // the first record is still busy: nothing can be read yet
    r.ringbuf_submit(b, false, 0).unwrap();
    assert_eq!(r.ringbuf_consume(), Vec::<Vec<u8>>::new());
    r.ringbuf_submit(a, false, 0).unwrap();
    assert_eq!(r.ringbuf_submit(a, false, 0), Err(EINVAL));
    assert_eq!(
        r.ringbuf_consume(),
        vec![b"hello".to_vec(), b"bye".to_vec()]
    );
    assert_eq!(r.ringbuf_query(BPF_RB_CONS_POS), 32);
    assert_eq!(r.ringbuf_query(BPF_RB_AVAIL_DATA), 0);
    // discard: skipped by the reader
    let d = r.ringbuf_reserve(4, 0).unwrap();
    r.ringbuf_submit(d, true, 0).unwrap();
    r.ringbuf_output(b"out", 0).unwrap();
    assert_eq!(r.ringbuf_output(b"x", 4), Err(EINVAL));
    assert_eq!(r.ringbuf_consume(), vec![b"out".to_vec()]);
    // the header layout is the kernel's: len | BUSY while reserved
    let e = r.ringbuf_reserve(12, 0).unwrap();
    // SAFETY: test-only: the header is the 8 bytes before a reserved sample.
    let hdr = unsafe { std::slice::from_raw_parts(e.sub(8), 4).to_vec() };
    assert_eq!(
        u32::from_ne_bytes(hdr.try_into().unwrap()),
        12 | BPF_RINGBUF_BUSY_BIT
    );
    r.ringbuf_submit(e, true, 0).unwrap();
    r.ringbuf_consume();
}

#[test]
fn ringbuf_full_and_wrap() {
    let r = mk(MapType::Ringbuf, 0, 0, 4096, 0);
    // a record may use at most ring_size - 8 bytes with its header
    assert!(r.ringbuf_reserve(4096 - 8, 0).is_none());
    assert!(r.ringbuf_reserve(u64::MAX, 0).is_none());
    let big = r.ringbuf_reserve(4096 - 16, 0).unwrap();
    assert!(r.ringbuf_reserve(1, 0).is_none());
    assert_eq!(r.ringbuf_output(b"x", 0), Err(EAGAIN));
    r.ringbuf_submit(big, false, 0).unwrap();
    assert_eq!(r.ringbuf_consume().len(), 1);
    // now records wrap around the end of the data area
    let mut seen = Vec::new();
    for round in 0u32..40 {
        let data = vec![round as u8; 300 + round as usize];
        r.ringbuf_output(&data, 0).unwrap();
        seen.push(data);
        if round % 5 == 4 {
            assert_eq!(r.ringbuf_consume(), seen);
            seen.clear();
        }
    }
    let region = r.regions()[0];
    assert_eq!(region.len, 8192);
    assert!(region.writable);
}

#[test]
fn fd_arrays() {
    let p = mk(MapType::ProgArray, 4, 4, 4, 0);
    assert_eq!(p.sys_lookup(&k4(1)), Err(ENOENT));
    assert_eq!(p.sys_delete(&k4(1)), Err(ENOENT));
    assert_eq!(p.sys_delete(&k4(9)), Err(E2BIG));
    assert_eq!(p.sys_update_prog(&k4(1), 42, BPF_NOEXIST), Err(EINVAL));
    assert_eq!(p.sys_update_prog(&k4(9), 42, BPF_ANY), Err(E2BIG));
    p.sys_update_prog(&k4(1), 42, BPF_ANY).unwrap();
    p.sys_update(&k4(3), &k4(43), BPF_ANY).unwrap();
    assert_eq!(p.lookup_prog(1), Some(42));
    assert_eq!(p.lookup_prog(0), None);
    assert_eq!(p.sys_lookup(&k4(1)), Ok(MapValue::Prog(42)));
    assert!(p.lookup(&k4(1), 0).is_none());
    assert_eq!(p.update(&k4(1), &k4(1), BPF_ANY, 0), Err(EINVAL));
    assert_eq!(
        p.dump(),
        vec![
            (k4(1).to_vec(), MapValue::Prog(42)),
            (k4(3).to_vec(), MapValue::Prog(43))
        ]
    );
    assert_eq!(p.sys_get_next_key(Some(&k4(1))), Ok(k4(2).to_vec()));
    p.sys_delete(&k4(1)).unwrap();
    assert_eq!(p.lookup_prog(1), None);

    let e = mk(MapType::PerfEventArray, 4, 4, 4, 0);
    assert!(!e.perf_event_slot(2));
    e.set_perf_event_slot(2, Some(7)).unwrap();
    assert!(e.perf_event_slot(2));
    assert_eq!(e.sys_lookup(&k4(2)), Err(ENOTSUPP));
    assert_eq!(e.set_perf_event_slot(9, Some(7)), Err(E2BIG));
    assert_eq!(e.sys_delete(&k4(1)), Err(ENOENT));
    e.sys_delete(&k4(2)).unwrap();
    assert!(!e.perf_event_slot(2));
}

#[test]
fn devmap_cpumap_xskmap() {
    let d = mk(MapType::Devmap, 4, 8, 4, 0);
    let val = |ifindex: u32, prog: u32| {
        let mut v = ifindex.to_ne_bytes().to_vec();
        v.extend_from_slice(&prog.to_ne_bytes());
        v
    };
    assert_eq!(d.sys_lookup(&k4(0)), Err(ENOENT));
    assert!(d.lookup(&k4(0), 0).is_none());
    assert_eq!(d.sys_update(&k4(0), &val(3, 0), BPF_NOEXIST), Err(EEXIST));
    assert_eq!(d.sys_update(&k4(4), &val(3, 0), BPF_ANY), Err(E2BIG));
    assert_eq!(d.sys_update(&k4(0), &val(0, 5), BPF_ANY), Err(EINVAL));
    d.sys_update(&k4(1), &val(3, u32::MAX), BPF_ANY).unwrap(); // fd -1: no program
    d.sys_update(&k4(2), &val(4, 9), BPF_EXIST).unwrap();
    assert_eq!(d.sys_lookup(&k4(1)), Ok(MapValue::Single(val(3, 0))));
    assert_eq!(read(d.lookup(&k4(2), 0).unwrap(), 8), val(4, 9));
    assert_eq!(d.update(&k4(2), &val(4, 9), BPF_ANY, 0), Err(EACCES));
    assert_eq!(
        d.sys_delete(&k4(0)),
        Ok(()),
        "deleting an empty slot is fine"
    );
    assert_eq!(d.sys_delete(&k4(4)), Err(EINVAL));
    d.sys_update(&k4(2), &val(0, 0), BPF_ANY).unwrap(); // ifindex 0 clears the slot
    assert_eq!(d.sys_lookup(&k4(2)), Err(ENOENT));
    assert_eq!(
        d.dump(),
        vec![(k4(1).to_vec(), MapValue::Single(val(3, 0)))]
    );
    assert_eq!(d.sys_get_next_key(Some(&k4(1))), Ok(k4(2).to_vec()));

    let dh = mk(MapType::DevmapHash, 4, 4, 2, 0);
    assert_eq!(dh.sys_update(&k4(0), &k4(0), BPF_ANY), Err(EINVAL));
    dh.sys_update(&k4(0), &k4(1), BPF_EXIST).unwrap(); // EXIST is not checked
    assert_eq!(dh.sys_update(&k4(0), &k4(1), BPF_NOEXIST), Err(EEXIST));
    dh.sys_update(&k4(300), &k4(2), BPF_ANY).unwrap();
    assert_eq!(dh.sys_update(&k4(2), &k4(2), BPF_ANY), Err(E2BIG));
    assert_eq!(dh.sys_delete(&k4(7)), Err(ENOENT));
    assert_eq!(read(dh.lookup(&k4(300), 0).unwrap(), 4), k4(2).to_vec());
    // numeric key order (300 = [44, 1, 0, 0] sorts after 0 numerically)
    assert_eq!(dh.sys_get_next_key(None), Ok(k4(0).to_vec()));
    assert_eq!(dh.sys_get_next_key(Some(&k4(0))), Ok(k4(300).to_vec()));
    assert!(!dh.regions()[0].writable);

    let c = mk(MapType::Cpumap, 4, 8, 4, 0);
    assert_eq!(
        c.sys_update(&k4(1), &val(16385, 0), BPF_ANY),
        Err(EOVERFLOW)
    );
    assert_eq!(c.sys_update(&k4(3), &val(256, 0), BPF_ANY), Err(ENODEV));
    assert_eq!(c.sys_update(&k4(4), &val(256, 0), BPF_ANY), Err(E2BIG));
    assert_eq!(c.sys_update(&k4(1), &val(256, 0), BPF_NOEXIST), Err(EEXIST));
    c.sys_update(&k4(1), &val(256, 0), BPF_ANY).unwrap();
    assert_eq!(c.sys_lookup(&k4(1)), Ok(MapValue::Single(val(256, 0))));
    assert!(
        c.lookup(&k4(1), 0).is_none(),
        "programs may only redirect to a cpumap"
    );
    c.sys_update(&k4(1), &val(0, 0), BPF_ANY).unwrap();
    assert_eq!(c.sys_lookup(&k4(1)), Err(ENOENT));
    assert_eq!(c.sys_delete(&k4(9)), Err(EINVAL));

    let x = mk(MapType::Xskmap, 4, 4, 4, 0);
    assert_eq!(x.sys_update(&k4(1), &k4(5), BPF_EXIST), Err(ENOENT));
    x.sys_update(&k4(1), &k4(5), BPF_NOEXIST).unwrap();
    assert_eq!(x.sys_update(&k4(1), &k4(6), BPF_NOEXIST), Err(EEXIST));
    assert_eq!(x.sys_lookup(&k4(1)), Err(EOPNOTSUPP));
    assert_eq!(read(x.lookup(&k4(1), 0).unwrap(), 4), k4(5).to_vec());
    assert_eq!(x.sys_delete(&k4(2)), Ok(()));
    assert_eq!(x.sys_delete(&k4(4)), Err(EINVAL));
}

#[test]
fn map_in_map_compatibility() {
    let tmpl = attr(MapType::Hash, 4, 8, 16, 0);
    let mut outer = attr(MapType::ArrayOfMaps, 4, 4, 4, 0);
    outer.inner = Some(Box::new(tmpl.clone()));
    let o = Map::create(outer, 2).unwrap();
    let good = Map::create(attr(MapType::Hash, 4, 8, 1000, 0), 2).unwrap(); // max_entries may differ
    let bad_type = mk(MapType::LruHash, 4, 8, 16, 0);
    let bad_key = mk(MapType::Hash, 8, 8, 16, 0);
    let bad_value = mk(MapType::Hash, 4, 4, 16, 0);
    let bad_flags = mk(MapType::Hash, 4, 8, 16, BPF_F_NO_PREALLOC);
    for b in [&bad_type, &bad_key, &bad_value, &bad_flags] {
        assert_eq!(
            o.sys_update_map(&k4(0), Arc::clone(b), BPF_ANY),
            Err(EINVAL)
        );
    }
    assert_eq!(
        o.sys_update_map(&k4(0), Arc::clone(&good), BPF_NOEXIST),
        Err(EINVAL)
    );
    assert_eq!(
        o.sys_update_map(&k4(4), Arc::clone(&good), BPF_ANY),
        Err(E2BIG)
    );
    o.sys_update_map(&k4(0), Arc::clone(&good), BPF_ANY)
        .unwrap();
    assert_eq!(o.lookup_map(&k4(0)).map(|m| m.id()), Some(good.id()));
    assert!(o.lookup_map(&k4(1)).is_none());
    assert_eq!(o.sys_lookup(&k4(0)), Ok(MapValue::Map(good.id())));
    assert_eq!(o.sys_lookup(&k4(1)), Err(ENOENT));
    // by id through the plain syscall path; unknown ids are bad fds
    o.sys_update(&k4(1), &good.id().to_ne_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(
        o.sys_update(&k4(2), &u32::MAX.to_ne_bytes(), BPF_ANY),
        Err(EBADF)
    );
    assert_eq!(o.sys_delete(&k4(1)), Ok(()));
    assert_eq!(o.sys_delete(&k4(1)), Err(ENOENT));

    // ARRAY templates also compare max_entries, unless BPF_F_INNER_MAP
    let mut outer = attr(MapType::HashOfMaps, 4, 4, 1, 0);
    outer.inner = Some(Box::new(attr(MapType::Array, 4, 4, 8, 0)));
    let h = Map::create(outer, 2).unwrap();
    let a9 = mk(MapType::Array, 4, 4, 9, 0);
    let a8 = mk(MapType::Array, 4, 4, 8, 0);
    assert_eq!(
        h.sys_update_map(&k4(0), Arc::clone(&a9), BPF_ANY),
        Err(EINVAL)
    );
    h.sys_update_map(&k4(0), Arc::clone(&a8), BPF_NOEXIST)
        .unwrap();
    assert_eq!(
        h.sys_update_map(&k4(0), Arc::clone(&a8), BPF_NOEXIST),
        Err(EEXIST)
    );
    assert_eq!(
        h.sys_update_map(&k4(1), Arc::clone(&a8), BPF_ANY),
        Err(E2BIG)
    );
    assert_eq!(
        h.sys_update_map(&k4(1), Arc::clone(&a8), BPF_EXIST),
        Err(ENOENT)
    );
    assert_eq!(h.dump(), vec![(k4(0).to_vec(), MapValue::Map(a8.id()))]);

    let mut outer = attr(MapType::ArrayOfMaps, 4, 4, 1, 0);
    outer.inner = Some(Box::new(attr(MapType::Array, 4, 4, 8, BPF_F_INNER_MAP)));
    let o = Map::create(outer, 2).unwrap();
    let a100 = mk(MapType::Array, 4, 4, 100, BPF_F_INNER_MAP);
    o.sys_update_map(&k4(0), a100, BPF_ANY).unwrap();

    // templates: no map-in-map in map-in-map, no prog_array, validated like a map
    let mut outer = attr(MapType::ArrayOfMaps, 4, 4, 1, 0);
    let mut inner = attr(MapType::ArrayOfMaps, 4, 4, 1, 0);
    inner.inner = Some(Box::new(attr(MapType::Array, 4, 4, 1, 0)));
    outer.inner = Some(Box::new(inner));
    assert_eq!(Map::create(outer, 2).unwrap_err().errno, EINVAL);
    let mut outer = attr(MapType::ArrayOfMaps, 4, 4, 1, 0);
    outer.inner = Some(Box::new(attr(MapType::ProgArray, 4, 4, 1, 0)));
    assert_eq!(Map::create(outer, 2).unwrap_err().errno, ENOTSUPP);
    let mut outer = attr(MapType::ArrayOfMaps, 4, 4, 1, 0);
    outer.inner = Some(Box::new(attr(MapType::Hash, 0, 4, 1, 0)));
    assert_eq!(Map::create(outer, 2).unwrap_err().errno, EINVAL);
    // a devmap template carries the kernel's implied BPF_F_RDONLY_PROG
    let mut outer = attr(MapType::ArrayOfMaps, 4, 4, 1, 0);
    outer.inner = Some(Box::new(attr(MapType::Devmap, 4, 4, 4, 0)));
    let o = Map::create(outer, 2).unwrap();
    o.sys_update_map(&k4(0), mk(MapType::Devmap, 4, 4, 4, 0), BPF_ANY)
        .unwrap();
}

#[test]
fn freeze_and_access_flags() {
    let a = mk(MapType::Array, 4, 4, 2, 0);
    a.sys_update(&k4(0), &[1; 4], BPF_ANY).unwrap();
    a.freeze().unwrap();
    assert_eq!(a.freeze(), Err(EPERM));
    assert_eq!(a.sys_update(&k4(0), &[2; 4], BPF_ANY), Err(EPERM));
    assert_eq!(a.sys_lookup(&k4(0)), Ok(MapValue::Single(vec![1; 4])));
    // programs may still write a frozen map (unless it is BPF_F_RDONLY_PROG)
    a.update(&k4(0), &[3; 4], BPF_ANY, 0).unwrap();
    let h = mk(MapType::Hash, 4, 4, 2, BPF_F_RDONLY);
    assert_eq!(h.sys_update(&k4(0), &[2; 4], BPF_ANY), Err(EPERM));
    assert_eq!(h.freeze(), Err(EPERM));
    let w = mk(MapType::Hash, 4, 4, 2, BPF_F_WRONLY);
    w.sys_update(&k4(0), &[2; 4], BPF_ANY).unwrap();
    assert_eq!(w.sys_lookup(&k4(0)), Err(EPERM));
    assert_eq!(w.sys_get_next_key(None), Err(EPERM));
    let q = mk(MapType::Queue, 0, 4, 2, 0);
    q.freeze().unwrap();
    assert_eq!(q.sys_update(&[], &[1; 4], BPF_ANY), Err(EPERM));
}

#[test]
fn concurrent_use_is_safe() {
    let h = mk(MapType::Hash, 4, 8, 64, 0);
    let a = mk(MapType::PercpuArray, 4, 8, 4, 0);
    let threads: Vec<_> = (0..2usize)
        .map(|cpu| {
            let h = Arc::clone(&h);
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let k = (i % 100).to_ne_bytes();
                    let _ = h.update(&k, &[cpu as u8; 8], BPF_ANY, cpu);
                    if i % 3 == 0 {
                        let _ = h.delete(&k);
                    }
                    a.update(
                        &(i % 4).to_ne_bytes(),
                        &(i as u64).to_ne_bytes(),
                        BPF_ANY,
                        cpu,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(h.dump().len() <= 64);
    match a.sys_lookup(&k4(3)).unwrap() {
        MapValue::PerCpu(v) => assert_eq!(v, vec![499u64.to_ne_bytes().to_vec(); 2]),
        other => panic!("{other:?}"),
    }
}
