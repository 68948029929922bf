//! LPM_TRIE: longest-prefix-match map keyed by `struct bpf_lpm_trie_key_u8` (host-order
//! u32 prefixlen, then data bytes compared most significant bit first). Entries are
//! indexed by (prefixlen, masked data); values live in a preallocated slab.
//!
//! Lookups are lock-free and allocation-free: the entries are published through the
//! same lock-free hash index as the hash maps (index.rs; element `i` is value slot
//! `i`), and the prefix lengths in use through a bitmap of atomic words, so a lookup
//! probes the lengths present, longest first, with a masked key built on its stack.
//! This replaces the kernel's RCU-walked trie (kernel/bpf/lpm_trie.c) with at most
//! one hash probe per prefix length in use (IPv4: 33, IPv6: 129) and needs no
//! reclamation, since slots are preallocated. Updates and deletes take the map's
//! update lock, as trie_update_elem takes trie->lock.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering as Mem;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::errno::*;
use crate::index::Index;
use crate::storage::Block;
use crate::{key_u32, round_up8, Errno, MapAttr, MapValue, BPF_EXIST, BPF_NOEXIST};

struct LpmEntry {
    /// The data bytes as last written (bits past prefixlen included, as the kernel keeps
    /// them in node->data and returns them from get_next_key).
    data: Vec<u8>,
    slot: usize,
}

struct State {
    /// By `entry_id`: the prefix length (big endian) then the masked data.
    entries: FxHashMap<Vec<u8>, LpmEntry>,
    /// prefixlen -> number of entries with it (lookups only probe lengths present).
    plens: BTreeMap<u32, usize>,
    free: Vec<usize>,
    fresh: usize,
}

pub(crate) struct LpmTrie {
    data_size: usize,
    max_prefixlen: u32,
    value_size: usize,
    elem: usize,
    max: usize,
    capacity: usize,
    block: Block,
    index: Index,
    /// Bit `p` set while some entry has prefix length `p` (u64 words).
    plen_bits: Block,
    state: Mutex<State>,
}

/// Keep the first `plen` bits of `data`, zero the rest.
/// An entry's identity: the prefix length, then the data masked to it.
fn entry_id(plen: u32, data: &[u8]) -> Vec<u8> {
    let mut id = plen.to_be_bytes().to_vec();
    id.extend_from_slice(&masked(data, plen));
    id
}

fn split_id(id: &[u8]) -> (u32, &[u8]) {
    let (p, m) = id.split_at(4);
    (u32::from_be_bytes([p[0], p[1], p[2], p[3]]), m)
}

/// LPM_DATA_SIZE_MAX: lookups build probe keys on the stack up to this size.
const DATA_MAX: usize = 256;

fn masked(data: &[u8], plen: u32) -> Vec<u8> {
    let mut out = data.to_vec();
    let full = (plen / 8) as usize;
    let rem = plen % 8;
    for (i, b) in out.iter_mut().enumerate() {
        if i < full {
            continue;
        }
        if i == full && rem != 0 {
            *b &= 0xffu8 << (8 - rem);
        } else {
            *b = 0;
        }
    }
    out
}

/// kernel/bpf/lpm_trie.c: extract_bit
fn bit(data: &[u8], index: u32) -> u8 {
    data.get((index / 8) as usize)
        .map_or(0, |b| (b >> (7 - (index % 8))) & 1)
}

/// The order of trie_get_next_key: a post-order walk of the trie (child 0 before child
/// 1, children before their parent): more specific prefixes come first.
fn postorder(a: (u32, &[u8]), b: (u32, &[u8])) -> Ordering {
    let m = a.0.min(b.0);
    for i in 0..m {
        let (x, y) = (bit(a.1, i), bit(b.1, i));
        if x != y {
            return x.cmp(&y);
        }
    }
    b.0.cmp(&a.0)
}

impl LpmTrie {
    pub(crate) fn new(attr: &MapAttr) -> Option<LpmTrie> {
        let data_size = (attr.key_size as usize).checked_sub(4)?;
        let elem = round_up8(attr.value_size as usize)?;
        let max = attr.max_entries as usize;
        let capacity = max.checked_add(1)?;
        Some(LpmTrie {
            data_size,
            max_prefixlen: (data_size * 8) as u32,
            value_size: attr.value_size as usize,
            elem,
            max,
            capacity,
            block: Block::new(capacity.checked_mul(elem)?)?,
            index: Index::new(4 + data_size, capacity, max)?,
            plen_bits: Block::new((data_size * 8 + 1).div_ceil(64) * 8)?,
            state: Mutex::new(State {
                entries: FxHashMap::default(),
                plens: BTreeMap::new(),
                free: Vec::new(),
                fresh: 0,
            }),
        })
    }

    pub(crate) fn block(&self) -> &Block {
        &self.block
    }

    fn parse<'k>(&self, key: &'k [u8]) -> Option<(u32, &'k [u8])> {
        let plen = key_u32(key.get(0..4)?)?;
        let data = key.get(4..)?;
        (data.len() == self.data_size).then_some((plen, data))
    }

    /// The longest prefix length in use that is at most `upto`.
    fn plen_at_most(&self, upto: u32) -> Option<u32> {
        let mut w = upto / 64;
        let mut mask = u64::MAX >> (63 - upto % 64);
        loop {
            let bits = self
                .plen_bits
                .atomic_u64(w as usize * 8)?
                .load(Mem::Acquire)
                & mask;
            if bits != 0 {
                return Some(w * 64 + 63 - bits.leading_zeros());
            }
            w = w.checked_sub(1)?;
            mask = u64::MAX;
        }
    }

    fn set_plen_bit(&self, plen: u32, on: bool) {
        if let Some(a) = self.plen_bits.atomic_u64((plen / 64) as usize * 8) {
            let bit = 1u64 << (plen % 64);
            if on {
                a.fetch_or(bit, Mem::Release);
            } else {
                a.fetch_and(!bit, Mem::Release);
            }
        }
    }

    /// kernel/bpf/lpm_trie.c: trie_lookup_elem — the longest stored prefix that is no
    /// longer than the key's prefixlen and matches its bits. Lock-free unless writers
    /// keep moving entries under it (index.rs), then under the update lock.
    fn longest(&self, key: &[u8]) -> Option<usize> {
        let (plen, data) = self.parse(key)?;
        if plen > self.max_prefixlen {
            return None;
        }
        let mut buf = [0u8; 4 + DATA_MAX];
        let probe = buf.get_mut(..4 + data.len())?;
        let mut next = self.plen_at_most(plen);
        while let Some(p) = next {
            fill_probe(probe, p, data);
            let found = match self.index.find(probe) {
                Some(found) => found,
                None => {
                    let _writers = self.state.lock();
                    self.index.find_locked(probe)
                }
            };
            if found.is_some() {
                return found;
            }
            next = p.checked_sub(1).and_then(|q| self.plen_at_most(q));
        }
        None
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Option<*mut u8> {
        let slot = self.longest(key)?;
        self.block.ptr(slot.checked_mul(self.elem)?, self.elem)
    }

    pub(crate) fn sys_lookup(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read(self.longest(key)?)
    }

    fn read(&self, slot: usize) -> Option<Vec<u8>> {
        let mut v = vec![0u8; self.value_size];
        self.block
            .read(slot.checked_mul(self.elem)?, &mut v)
            .then_some(v)
    }

    /// kernel/bpf/lpm_trie.c: trie_update_elem (with trie_check_add_elem: a full trie
    /// refuses new prefixes with ENOSPC but replaces existing ones).
    pub(crate) fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), Errno> {
        if flags > BPF_EXIST {
            return Err(EINVAL);
        }
        let (plen, data) = self.parse(key).ok_or(EINVAL)?;
        if plen > self.max_prefixlen {
            return Err(EINVAL);
        }
        let value = value.get(..self.value_size).ok_or(EINVAL)?;
        let mut st = self.state.lock();
        let id = entry_id(plen, data);
        let old = st.entries.get(&id).map(|e| e.slot);
        match old {
            Some(_) if flags == BPF_NOEXIST => return Err(EEXIST),
            None if flags == BPF_EXIST => return Err(ENOENT),
            None if st.entries.len() >= self.max => return Err(ENOSPC),
            _ => {}
        }
        let slot = match st.free.pop() {
            Some(s) => s,
            None if st.fresh < self.capacity => {
                st.fresh += 1;
                st.fresh - 1
            }
            None => return Err(ENOMEM),
        };
        let off = slot.checked_mul(self.elem).ok_or(EINVAL)?;
        self.block.zero(off, self.elem);
        self.block.write(off, value);
        let entry = LpmEntry {
            data: data.to_vec(),
            slot,
        };
        if old.is_none() {
            let n = st.plens.entry(plen).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.set_plen_bit(plen, true);
            }
        }
        // the new node is linked before the one it replaces goes: readers always find
        // the prefix
        self.index.link(slot, &id);
        if let Some(prev) = st.entries.insert(id.clone(), entry) {
            // the replaced node is freed (kernel: after an RCU grace period)
            self.index.unlink(prev.slot, &id);
            st.free.push(prev.slot);
        }
        Ok(())
    }

    /// kernel/bpf/lpm_trie.c: trie_delete_elem — exact prefix only.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), Errno> {
        let (plen, data) = self.parse(key).ok_or(EINVAL)?;
        if plen > self.max_prefixlen {
            return Err(EINVAL);
        }
        let mut st = self.state.lock();
        let id = entry_id(plen, data);
        let e = st.entries.remove(&id).ok_or(ENOENT)?;
        self.index.unlink(e.slot, &id);
        st.free.push(e.slot);
        if let Some(n) = st.plens.get_mut(&plen) {
            *n -= 1;
            if *n == 0 {
                st.plens.remove(&plen);
                self.set_plen_bit(plen, false);
            }
        }
        Ok(())
    }

    fn ordered(&self) -> Vec<(u32, Vec<u8>, Vec<u8>, usize)> {
        let st = self.state.lock();
        let mut v: Vec<(u32, Vec<u8>, Vec<u8>, usize)> = st
            .entries
            .iter()
            .map(|(id, e)| {
                let (p, m) = split_id(id);
                (p, m.to_vec(), e.data.clone(), e.slot)
            })
            .collect();
        v.sort_by(|a, b| postorder((a.0, &a.1), (b.0, &b.1)));
        v
    }

    fn key_bytes(plen: u32, data: &[u8]) -> Vec<u8> {
        let mut k = plen.to_ne_bytes().to_vec();
        k.extend_from_slice(data);
        k
    }

    /// kernel/bpf/lpm_trie.c: trie_get_next_key — post-order; a missing or invalid key
    /// restarts at the leftmost node; the last node gives ENOENT.
    pub(crate) fn next_key(&self, key: Option<&[u8]>) -> Result<Vec<u8>, Errno> {
        let order = self.ordered();
        if order.is_empty() {
            return Err(ENOENT);
        }
        let pos = key
            .and_then(|k| self.parse(k))
            .filter(|(p, _)| *p <= self.max_prefixlen)
            .and_then(|(p, d)| {
                let m = masked(d, p);
                order.iter().position(|e| e.0 == p && e.1 == m)
            });
        let next = match pos {
            Some(i) => order.get(i + 1).ok_or(ENOENT)?,
            None => order.first().ok_or(ENOENT)?,
        };
        Ok(Self::key_bytes(next.0, &next.2))
    }

    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        self.ordered()
            .into_iter()
            .filter_map(|(p, _, data, slot)| {
                self.read(slot)
                    .map(|v| (Self::key_bytes(p, &data), MapValue::Single(v)))
            })
            .collect()
    }
}

/// The index key of prefix length `p` for `data` (`probe`: 4 + data bytes):
/// p big-endian, then `data` with the bits past p cleared. Written a word at
/// a time: the index reads the key back as words, and a word read after
/// byte stores stalls on store forwarding (half of each lookup's time).
fn fill_probe(probe: &mut [u8], p: u32, data: &[u8]) {
    let (full, rest) = ((p / 8) as usize, p % 8);
    let plen = p.to_be_bytes();
    let byte = |i: usize| -> u8 {
        match i.checked_sub(4) {
            None => plen[i],
            Some(d) if d < full => data[d],
            Some(d) if d == full && rest != 0 => data[d] & (0xffu8 << (8 - rest)),
            Some(_) => 0,
        }
    };
    for (w, chunk) in probe.chunks_mut(8).enumerate() {
        let v = (0..chunk.len()).fold(0u64, |v, j| v | u64::from(byte(w * 8 + j)) << (8 * j));
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_and_order() {
        assert_eq!(masked(&[0xff, 0xff], 9), vec![0xff, 0x80]);
        assert_eq!(masked(&[0xff, 0xff], 0), vec![0, 0]);
        // 192.168.0.0/24, 192.168.1.0/24, 192.168.128.0/24, then 192.168.0.0/16
        let a: (u32, &[u8]) = (24, &[192, 168, 0, 0]);
        let b: (u32, &[u8]) = (24, &[192, 168, 1, 0]);
        let c: (u32, &[u8]) = (24, &[192, 168, 128, 0]);
        let d: (u32, &[u8]) = (16, &[192, 168, 0, 0]);
        assert_eq!(postorder(a, b), Ordering::Less);
        assert_eq!(postorder(b, c), Ordering::Less);
        assert_eq!(postorder(c, d), Ordering::Less);
        assert_eq!(postorder(d, a), Ordering::Greater);
    }
}
