//! Random operation sequences: a HASH map agrees with a HashMap model (respecting
//! max_entries and flags), and wrong-length keys/values give EINVAL without panicking on
//! every map type.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use skiff_maps::errno::*;
use skiff_maps::*;

#[derive(Debug, Clone)]
enum Op {
    Update(u8, u8, u64),
    Delete(u8),
    Lookup(u8),
    NextKey(Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, any::<u8>(), 0u64..6).prop_map(|(k, v, f)| Op::Update(k, v, f)),
        (0u8..12).prop_map(Op::Delete),
        (0u8..12).prop_map(Op::Lookup),
        proptest::option::of(0u8..12).prop_map(Op::NextKey),
    ]
}

fn key(k: u8) -> Vec<u8> {
    vec![k, 0, 0, 0]
}

proptest! {
    #[test]
    fn hash_agrees_with_model(ops in proptest::collection::vec(op(), 1..120), max in 1u32..8) {
        let m = Map::create(MapAttr::new(MapType::Hash, 4, 2, max), 2).unwrap();
        let mut model: HashMap<u8, u8> = HashMap::new();
        for o in ops {
            match o {
                Op::Update(k, v, flags) => {
                    let exists = model.contains_key(&k);
                    let expect = if (flags & !BPF_F_LOCK) > BPF_EXIST || flags & BPF_F_LOCK != 0 {
                        Err(EINVAL)
                    } else if exists && flags & !BPF_F_LOCK == BPF_NOEXIST {
                        Err(EEXIST)
                    } else if !exists && flags & !BPF_F_LOCK == BPF_EXIST {
                        Err(ENOENT)
                    } else if !exists && model.len() >= max as usize {
                        Err(E2BIG)
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(m.sys_update(&key(k), &[v, !v], flags), expect);
                    if expect.is_ok() {
                        model.insert(k, v);
                    }
                }
                Op::Delete(k) => {
                    let expect = if model.remove(&k).is_some() { Ok(()) } else { Err(ENOENT) };
                    prop_assert_eq!(m.sys_delete(&key(k)), expect);
                }
                Op::Lookup(k) => {
                    let expect = model.get(&k).map(|v| MapValue::Single(vec![*v, !*v])).ok_or(ENOENT);
                    prop_assert_eq!(m.sys_lookup(&key(k)), expect);
                    let p = m.lookup(&key(k), 1);
                    prop_assert_eq!(p.is_some(), model.contains_key(&k));
                }
                Op::NextKey(k) => {
                    let mut keys: Vec<u8> = model.keys().copied().collect();
                    keys.sort();
                    let expect = match k.filter(|k| model.contains_key(k)) {
                        Some(k) => keys.iter().find(|x| **x > k).map(|x| key(*x)).ok_or(ENOENT),
                        None => keys.first().map(|x| key(*x)).ok_or(ENOENT),
                    };
                    prop_assert_eq!(m.sys_get_next_key(k.map(key).as_deref()), expect);
                }
            }
            prop_assert!(m.dump().len() <= max as usize);
        }
        let mut dumped: Vec<(u8, u8)> = m.dump().into_iter().map(|(k, v)| match v {
            MapValue::Single(v) => (k[0], v[0]),
            _ => (255, 255),
        }).collect();
        let mut want: Vec<(u8, u8)> = model.into_iter().collect();
        dumped.sort();
        want.sort();
        prop_assert_eq!(dumped, want);
    }

    #[test]
    fn wrong_lengths_are_einval(klen in 0usize..12, vlen in 0usize..40, flags in 0u64..8, which in 0usize..18) {
        let attrs = [
            MapAttr::new(MapType::Hash, 4, 8, 4),
            MapAttr::new(MapType::Array, 4, 8, 4),
            MapAttr::new(MapType::PercpuHash, 4, 8, 4),
            MapAttr::new(MapType::PercpuArray, 4, 8, 4),
            MapAttr::new(MapType::LruHash, 4, 8, 4),
            MapAttr::new(MapType::LruPercpuHash, 4, 8, 4),
            MapAttr { map_flags: BPF_F_NO_PREALLOC, ..MapAttr::new(MapType::LpmTrie, 8, 8, 4) },
            MapAttr::new(MapType::Queue, 0, 8, 4),
            MapAttr::new(MapType::Stack, 0, 8, 4),
            MapAttr::new(MapType::Devmap, 4, 8, 4),
            MapAttr::new(MapType::DevmapHash, 4, 8, 4),
            MapAttr::new(MapType::Cpumap, 4, 8, 4),
            MapAttr::new(MapType::Xskmap, 4, 4, 4),
            MapAttr::new(MapType::ProgArray, 4, 4, 4),
            MapAttr::new(MapType::PerfEventArray, 4, 4, 4),
            MapAttr { inner: Some(Box::new(MapAttr::new(MapType::Array, 4, 4, 1))), ..MapAttr::new(MapType::ArrayOfMaps, 4, 4, 4) },
            MapAttr { inner: Some(Box::new(MapAttr::new(MapType::Array, 4, 4, 1))), ..MapAttr::new(MapType::HashOfMaps, 4, 4, 4) },
            MapAttr::new(MapType::Ringbuf, 0, 0, 4096),
        ];
        let m: Arc<Map> = Map::create(attrs[which].clone(), 2).unwrap();
        let key = vec![0x5au8; klen];
        let value = vec![0xa5u8; vlen];
        let key_ok = klen == m.attr().key_size as usize;
        let value_ok = vlen == m.sys_value_len();
        let r = m.sys_update(&key, &value, flags);
        if !key_ok || !value_ok {
            prop_assert_eq!(r, Err(EINVAL));
        }
        if !key_ok {
            prop_assert_eq!(m.sys_lookup(&key), Err(EINVAL));
            prop_assert_eq!(m.sys_delete(&key), Err(EINVAL));
            prop_assert_eq!(m.sys_get_next_key(Some(&key)), Err(EINVAL));
            prop_assert!(m.lookup(&key, 0).is_none());
        }
        if !key_ok || vlen != m.attr().value_size as usize {
            prop_assert!(m.update(&key, &value, flags, 0).is_err());
        }
        // whatever happened, these never panic
        let _ = m.sys_lookup(&key);
        let _ = m.sys_lookup_raw(&key);
        let _ = m.update(&key, &value, flags, 1);
        let _ = m.delete(&key);
        let _ = m.push(&value, flags);
        let _ = m.pop(&mut vec![0u8; vlen]);
        let _ = m.peek(&mut vec![0u8; vlen]);
        let _ = m.lookup_map(&key);
        let _ = m.ringbuf_reserve(vlen as u64, flags);
        let _ = m.ringbuf_output(&value, flags);
        let _ = m.ringbuf_submit(value.as_ptr() as *mut u8, false, 0);
        let _ = m.dump();
        let _ = m.sys_get_next_key(None);
    }
}
