//! The lock-free key index of the hash-family maps and the LPM trie: what lets
//! `bpf_map_lookup_elem` run without a lock while the control plane and other workers
//! update the map (kernel/bpf/hashtab.c: __htab_map_lookup_elem, lookup_nulls_elem_raw).
//!
//! # Mechanism, and why this one
//! The kernel's preallocated htab keeps every element in an array allocated at map
//! creation, chains them into buckets with `hlist_nulls` lists, and lets a deleted
//! element be reused at once: a reader walking a chain may find itself moved into
//! another bucket's chain, which it notices because the chain ends in the "nulls"
//! marker of a different bucket, and then restarts. skiff does the same, because
//! the maps already preallocate their values at stable addresses (programs hold real
//! pointers into them), so nothing here is ever freed while the map lives and no
//! epoch or hazard-pointer reclamation (crossbeam-epoch) is needed:
//! - elements are numbered 0..capacity; element `i` is the map's value slot `i`;
//! - every bucket head and every element's `next` is an `AtomicU32` link: `i + 1` for
//!   element `i`, `END | bucket` for the end of that bucket's chain, 0 for an empty
//!   head (all links live in zeroed `Block`s, so a large map costs no up-front writes);
//! - keys are stored as `AtomicU64` words, so a reader never races with a non-atomic
//!   write, and each element has a sequence counter (a seqlock): a writer makes it odd
//!   while it rewrites the key of a reused element and even again afterwards; a reader
//!   accepts a key match only if the counter was even and unchanged around the
//!   comparison, so it never returns an element for a torn key;
//! - writers (update, delete, from programs or from bpf(2)) hold the map's update lock
//!   (one per map, as the kernel's bucket lock serialises writers of one bucket):
//!   they link a new element at its bucket's head with a release store after filling
//!   it, and unlink by making the predecessor skip the element, leaving the element's
//!   own `next` untouched (hlist_nulls_del_rcu), so a reader standing on it goes on;
//! - a reader restarts when its walk ends at another bucket's end marker, when the key
//!   it matched changed under it, or after `capacity` steps (a chain can only seem that
//!   long while writers move elements under it); after `MAX_RESTARTS` restarts it gives
//!   up and the caller repeats the lookup under the update lock. A lookup therefore
//!   always terminates, and it takes no lock unless writers keep moving elements under
//!   it 64 times in a row.
//!
//! Lookups touch only atomics and the caller's stack: they do not allocate.
//!
//! What a reader may see (as in the kernel's preallocated htab): an element deleted
//! while it was being looked up may still be returned, and a pointer a program holds
//! into a value may see that value change when the element is reused for another key.
//! A sequence counter is 32 bits: a reader would accept a torn key only if exactly 2^31
//! reuses of one element happened during one key comparison.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::storage::Block;

/// FxHasher's multiplier (rustc-hash).
const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Marks a link as the end of the chain of the bucket in its low bits (the "nulls").
const END: u32 = 1 << 31;

/// Restarts a lock-free lookup allows itself before the caller takes the update lock.
const MAX_RESTARTS: usize = 64;

/// Size of one element's links: `next` (u32) then the sequence counter (u32).
const LINKS: usize = 8;

enum Walk {
    Found(usize),
    Missing,
    Restart,
}

/// Key `chunk` (up to 8 bytes) as one zero-padded word. The short last chunk is put
/// together in a register: copying it into a zeroed array and reading that back as a
/// u64 costs a memcpy call or a store-forwarding stall on every lookup.
fn word(chunk: &[u8]) -> u64 {
    if let Ok(full) = <[u8; 8]>::try_from(chunk) {
        return u64::from_ne_bytes(full);
    }
    let (mut v, mut shift, rest) = match chunk.split_first_chunk::<4>() {
        Some((head, rest)) => (u64::from(u32::from_le_bytes(*head)), 32, rest),
        None => (0, 0, chunk),
    };
    for b in rest {
        v |= u64::from(*b) << shift;
        shift += 8;
    }
    // `v` holds the bytes in little-endian order; from_ne_bytes would read them natively
    u64::from_le(v)
}

/// A key as a lookup holds it: its bucket hash (the key's words folded as
/// FxHasher folds integers, rotate, xor, multiply; keys have the map's fixed
/// length, mostly one or two words: a multiply or two where hashing them as
/// a byte string cost half of each lookup) and its comparison with an
/// element's key words.
trait Probe: Copy {
    fn hash(self) -> u64;
    fn matches(self, words: &[AtomicU64]) -> bool;
}

impl Probe for &[u8] {
    fn hash(self) -> u64 {
        self.chunks(8).fold(0u64, |h, c| {
            (h.rotate_left(5) ^ word(c)).wrapping_mul(FX_SEED)
        })
    }

    fn matches(self, words: &[AtomicU64]) -> bool {
        self.chunks(8)
            .zip(words)
            .all(|(c, a)| a.load(Ordering::Relaxed) == word(c))
    }
}

/// A one-word key (`word` of its bytes): hashed and compared as the bytes are.
#[derive(Clone, Copy)]
struct OneWord(u64);

impl Probe for OneWord {
    fn hash(self) -> u64 {
        self.0.wrapping_mul(FX_SEED)
    }

    fn matches(self, words: &[AtomicU64]) -> bool {
        words
            .first()
            .is_some_and(|a| a.load(Ordering::Relaxed) == self.0)
    }
}

pub(crate) struct Index {
    key_len: usize,
    /// Key words (8 bytes each) per element.
    words: usize,
    capacity: usize,
    /// Number of buckets - 1 (a power of two, as the kernel's roundup_pow_of_two).
    mask: usize,
    heads: Block,
    links: Block,
    keys: Block,
}

impl Index {
    /// An index of `capacity` elements with keys of `key_len` bytes and
    /// roundup_pow_of_two(`buckets`) buckets. None when a table is over skiff's size
    /// limit or `capacity` does not fit a link.
    pub(crate) fn new(key_len: usize, capacity: usize, buckets: usize) -> Option<Index> {
        if capacity >= (END - 1) as usize {
            return None;
        }
        let nbuckets = buckets.max(1).checked_next_power_of_two()?;
        let words = key_len.div_ceil(8).max(1);
        Some(Index {
            key_len,
            words,
            capacity,
            mask: nbuckets - 1,
            heads: Block::new(nbuckets.checked_mul(4)?)?,
            links: Block::new(capacity.checked_mul(LINKS)?)?,
            keys: Block::new(capacity.checked_mul(words)?.checked_mul(8)?)?,
        })
    }

    fn bucket(&self, key: &[u8]) -> usize {
        self.bucket_of(key.hash())
    }

    /// The high half of the hash folded into the low bits the mask keeps (a
    /// multiply leaves them weakest).
    fn bucket_of(&self, h: u64) -> usize {
        ((h ^ (h >> 32)) as usize) & self.mask
    }

    // The tables as slices of atomics, indexed: an element number comes from
    // a u32 link, so `2 * elem + 1` and `elem * words + w` fit a usize, and
    // `get` bounds each access.

    fn head(&self, bucket: usize) -> Option<&AtomicU32> {
        self.heads.atomic_u32s().get(bucket)
    }

    fn next(&self, elem: usize) -> Option<&AtomicU32> {
        self.links.atomic_u32s().get(elem.wrapping_mul(LINKS / 4))
    }

    fn seq(&self, elem: usize) -> Option<&AtomicU32> {
        self.links
            .atomic_u32s()
            .get(elem.wrapping_mul(LINKS / 4).wrapping_add(1))
    }

    fn key_word(&self, elem: usize, w: usize) -> Option<&AtomicU64> {
        self.keys
            .atomic_u64s()
            .get(elem.wrapping_mul(self.words).wrapping_add(w))
    }

    /// Element `elem`'s key words.
    fn key_words(&self, elem: usize) -> Option<&[AtomicU64]> {
        let first = elem.wrapping_mul(self.words);
        self.keys
            .atomic_u64s()
            .get(first..first.wrapping_add(self.words))
    }

    /// One walk of `bucket`'s chain (kernel/bpf/hashtab.c: lookup_nulls_elem_raw).
    #[inline]
    fn walk<K: Probe>(&self, bucket: usize, key: K) -> Walk {
        let Some(head) = self.head(bucket) else {
            return Walk::Missing;
        };
        match head.load(Ordering::Acquire) {
            0 => Walk::Missing,
            link => self.walk_from(bucket, link, key),
        }
    }

    /// The rest of a walk of `bucket`'s chain from `link`.
    #[inline]
    fn walk_from<K: Probe>(&self, bucket: usize, mut link: u32, key: K) -> Walk {
        for _ in 0..=self.capacity {
            if link & END != 0 {
                // ended in another bucket's chain: an element we passed was reused
                return if (link & !END) as usize == bucket {
                    Walk::Missing
                } else {
                    Walk::Restart
                };
            }
            let elem = (link - 1) as usize;
            let (Some(seq), Some(next)) = (self.seq(elem), self.next(elem)) else {
                return Walk::Restart;
            };
            let before = seq.load(Ordering::Acquire);
            if before & 1 == 0 && self.key_words(elem).is_some_and(|w| key.matches(w)) {
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == before {
                    return Walk::Found(elem);
                }
                return Walk::Restart;
            }
            link = next.load(Ordering::Acquire);
            if link == 0 {
                return Walk::Restart;
            }
        }
        Walk::Restart
    }

    /// Lock-free lookup: `Some(found element or None)`, or None when writers moved
    /// elements under this reader MAX_RESTARTS times (call `find_locked` under the
    /// update lock then).
    #[inline]
    pub(crate) fn find(&self, key: &[u8]) -> Option<Option<usize>> {
        // Keys of at most 8 bytes (an ifindex, an address, a port pair) are
        // read once into a register that the walk compares with one word
        // per element.
        if self.words == 1 && key.len() <= 8 {
            return self.find_probe(OneWord(word(key)));
        }
        self.find_probe(key)
    }

    #[inline]
    fn find_probe<K: Probe>(&self, key: K) -> Option<Option<usize>> {
        let bucket = self.bucket_of(key.hash());
        for _ in 0..MAX_RESTARTS {
            match self.walk(bucket, key) {
                Walk::Found(e) => return Some(Some(e)),
                Walk::Missing => return Some(None),
                Walk::Restart => {}
            }
        }
        None
    }

    /// Lookup by a caller holding the update lock: nothing moves, one walk is exact.
    pub(crate) fn find_locked(&self, key: &[u8]) -> Option<usize> {
        match self.walk(self.bucket(key), key) {
            Walk::Found(e) => Some(e),
            Walk::Missing | Walk::Restart => None,
        }
    }

    /// The key element `elem` was last linked under. Caller holds the update lock (the
    /// key cannot change under it).
    pub(crate) fn key_of(&self, elem: usize) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.words * 8);
        for w in 0..self.words {
            let v = self.key_word(elem, w)?.load(Ordering::Relaxed);
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.truncate(self.key_len);
        Some(out)
    }

    /// Publish element `elem` (not linked anywhere) under `key` at the head of its
    /// bucket (hlist_nulls_add_head_rcu). Caller holds the update lock.
    pub(crate) fn link(&self, elem: usize, key: &[u8]) -> bool {
        let bucket = self.bucket(key);
        let (Some(head), Some(next), Some(seq)) =
            (self.head(bucket), self.next(elem), self.seq(elem))
        else {
            return false;
        };
        if key.len() != self.key_len {
            return false;
        }
        // seqlock write side: odd while the key changes
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (w, c) in key.chunks(8).enumerate() {
            if let Some(a) = self.key_word(elem, w) {
                a.store(word(c), Ordering::Relaxed);
            }
        }
        let first = head.load(Ordering::Relaxed);
        let end = END | bucket as u32;
        next.store(if first == 0 { end } else { first }, Ordering::Relaxed);
        seq.store(s.wrapping_add(2), Ordering::Release);
        head.store(elem as u32 + 1, Ordering::Release);
        true
    }

    /// Unlink element `elem`, stored under `key`, from its bucket; its own `next` stays
    /// so that a reader standing on it can go on (hlist_nulls_del_rcu). Caller holds
    /// the update lock. False if it was not linked.
    pub(crate) fn unlink(&self, elem: usize, key: &[u8]) -> bool {
        let Some(mut prev) = self.head(self.bucket(key)) else {
            return false;
        };
        let target = elem as u32 + 1;
        for _ in 0..=self.capacity {
            let cur = prev.load(Ordering::Relaxed);
            if cur == 0 || cur & END != 0 {
                return false;
            }
            let Some(next) = self.next((cur - 1) as usize) else {
                return false;
            };
            if cur == target {
                prev.store(next.load(Ordering::Relaxed), Ordering::Release);
                return true;
            }
            prev = next;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_words() {
        for n in 0..=8 {
            let chunk: Vec<u8> = (1..=n as u8).collect();
            let mut want = [0u8; 8];
            want[..n].copy_from_slice(&chunk);
            assert_eq!(word(&chunk), u64::from_ne_bytes(want), "{n} bytes");
        }
    }

    #[test]
    fn link_find_unlink() {
        // 2 buckets for 4 elements: chains of several elements
        let ix = Index::new(12, 4, 2).unwrap();
        let keys: [&[u8]; 4] = [b"aaaaaaaaaaaa", b"aaaaaaaaaaab", b"b", b"c"];
        let keys: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| [*k, &[0; 12][k.len()..]].concat())
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(ix.link(i, k));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.find(k), Some(Some(i)));
            assert_eq!(ix.find_locked(k), Some(i));
        }
        assert_eq!(ix.find(&[9; 12]), Some(None));
        assert!(ix.unlink(1, &keys[1]));
        assert!(!ix.unlink(1, &keys[1]));
        assert_eq!(ix.find(&keys[1]), Some(None));
        assert_eq!(ix.find(&keys[0]), Some(Some(0)));
        // reuse element 1 for another key
        assert!(ix.link(1, &[7; 12]));
        assert_eq!(ix.key_of(1), Some(vec![7; 12]));
        assert!(!ix.link(2, &[7; 11]));
        assert_eq!(ix.find(&[7; 12]), Some(Some(1)));
        assert_eq!(ix.find(&keys[1]), Some(None));
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert!(ix.unlink(i, k));
            assert_eq!(ix.find(k), Some(None));
        }
        assert_eq!(ix.find(&[7; 12]), Some(Some(1)));
        assert!(Index::new(4, (END - 1) as usize, 1).is_none());
    }

    /// Two keys in different buckets of a 2-bucket index.
    fn two_buckets(ix: &Index) -> ([u8; 4], [u8; 4]) {
        let a = 0u32.to_ne_bytes();
        let b = (1..)
            .map(|i: u32| i.to_ne_bytes())
            .find(|k| ix.bucket(k) != ix.bucket(&a))
            .unwrap();
        (a, b)
    }

    #[test]
    fn a_reader_moved_to_another_bucket_restarts() {
        let ix = Index::new(4, 2, 2).unwrap();
        let (a, b) = two_buckets(&ix);
        assert!(ix.link(0, &a));
        // a reader of bucket(a) stands on element 0 ...
        let (bucket, standing) = (ix.bucket(&a), 1);
        // ... while element 0 is deleted and reused for a key of the other bucket
        assert!(ix.unlink(0, &a));
        assert!(ix.link(0, &b));
        assert!(matches!(
            ix.walk_from(bucket, standing, &a[..]),
            Walk::Restart
        ));
        // a reader standing on an element deleted but not reused may still return it
        // (as the kernel: the lookup raced with the delete)
        assert!(ix.unlink(0, &b));
        assert!(ix.link(1, &a));
        assert!(matches!(ix.walk_from(bucket, 2, &a[..]), Walk::Found(1)));
        assert!(ix.unlink(1, &a));
        assert!(matches!(ix.walk_from(bucket, 2, &a[..]), Walk::Found(1)));
        assert_eq!(ix.find(&a), Some(None));
        // an element whose key is being rewritten (odd sequence) is never matched
        assert!(ix.link(1, &a));
        ix.seq(1).unwrap().fetch_add(1, Ordering::Relaxed);
        assert!(matches!(ix.walk_from(bucket, 2, &a[..]), Walk::Missing));
    }

    /// Keys of 1 to 8 bytes are found through one word as through their
    /// bytes (same bucket, same comparison), and a key differing in any byte
    /// is not.
    #[test]
    fn one_word_keys_are_found_as_their_bytes() {
        for len in 1..=8usize {
            let ix = Index::new(len, 16, 4).unwrap();
            let keys: Vec<Vec<u8>> = (0..16u8)
                .map(|k| (0..len as u8).map(|b| k.wrapping_mul(37) ^ b).collect())
                .collect();
            for (e, k) in keys.iter().enumerate() {
                assert!(ix.link(e, k));
            }
            for (e, k) in keys.iter().enumerate() {
                assert_eq!(ix.find(k), Some(Some(e)), "len {len}");
                assert_eq!(ix.find_probe(&k[..]), Some(Some(e)), "len {len}");
                let mut other = k.clone();
                other[len - 1] ^= 0x80;
                if !keys.contains(&other) {
                    assert_eq!(ix.find(&other), Some(None), "len {len}");
                }
            }
        }
    }
}
