//! Raw map storage: one zeroed block allocated at map creation, never moved or resized,
//! so pointers handed to running programs stay valid for the map's whole life (as the
//! kernel's preallocated map memory). The only `unsafe` code of the crate lives here.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Alignment of every block: a cache line, so 8-byte aligned values stay aligned.
const BLOCK_ALIGN: usize = 64;

/// Most bytes one map may allocate (an allocation limit of skiff, reported as ENOMEM
/// like a failed `bpf_map_area_alloc`).
pub(crate) const MAX_BLOCK_BYTES: usize = 1 << 30;

/// A fixed block of bytes shared between the control plane and running programs.
///
/// Programs read and write these bytes through raw pointers while the control plane
/// copies values in and out, exactly as with kernel map memory: there is no lock around
/// value bytes, so concurrent writers of the same value may interleave (the kernel has
/// the same behaviour without BPF_F_LOCK).
pub(crate) struct Block {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: `Block` owns a plain heap allocation of bytes with no thread affinity; every
// access goes through bounds-checked raw-pointer copies (no references to the bytes
// are ever created), so sharing it across threads is as sound as sharing kernel map
// memory between CPUs: byte races are possible only when programs race on one value.
unsafe impl Send for Block {}
// SAFETY: see `Send` above; `&Block` only exposes raw-pointer copies and atomics.
unsafe impl Sync for Block {}

impl Block {
    /// A zeroed block of `len` bytes (at least one byte is allocated so the address
    /// is real). `None` when the size is over the limit or allocation fails.
    pub(crate) fn new(len: usize) -> Option<Block> {
        if len > MAX_BLOCK_BYTES {
            return None;
        }
        let layout = Layout::from_size_align(len.max(1), BLOCK_ALIGN).ok()?;
        // SAFETY: layout has a non-zero size (len.max(1)) and a valid power-of-two alignment.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw)?;
        Some(Block { ptr, len, layout })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn base(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// Pointer to `len` bytes at `offset`, if they lie inside the block.
    pub(crate) fn ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        if !self.in_bounds(offset, len) {
            return None;
        }
        // SAFETY: offset <= self.len, so the result stays inside (or one past) the allocation.
        Some(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Offset of `p` inside the block, if it points into it.
    pub(crate) fn offset_of(&self, p: *const u8) -> Option<usize> {
        let off = (p as usize).checked_sub(self.base())?;
        (off < self.len).then_some(off)
    }

    /// Copy bytes out; false (and nothing copied) when out of bounds.
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(src) = self.ptr(offset, out.len()) else {
            return false;
        };
        // SAFETY: `src..src+out.len()` is inside the allocation (checked by `ptr`), `out` is
        // a distinct Rust buffer, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copy bytes in; false (and nothing written) when out of bounds.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> bool {
        let Some(dst) = self.ptr(offset, data.len()) else {
            return false;
        };
        // SAFETY: destination range checked by `ptr`; `data` is a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        true
    }

    /// Zero `len` bytes at `offset`; false when out of bounds.
    pub(crate) fn zero(&self, offset: usize, len: usize) -> bool {
        let Some(dst) = self.ptr(offset, len) else {
            return false;
        };
        // SAFETY: destination range checked by `ptr`.
        unsafe { std::ptr::write_bytes(dst, 0, len) };
        true
    }

    /// The 4 bytes at `offset` as an atomic (None when unaligned or out of bounds).
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) {
            return None;
        }
        let p = self.ptr(offset, 4)?;
        // SAFETY: `p` is 4-byte aligned (block is 64-aligned, offset % 4 == 0), points to 4
        // bytes inside the allocation that live as long as `&self`. Ring buffer headers,
        // the hash index (index.rs) and DEVMAP entries are accessed atomically by every
        // party; value bytes that programs also reach through raw pointers are racy only
        // as kernel map memory is (see the type's documentation).
        Some(unsafe { AtomicU32::from_ptr(p.cast::<u32>()) })
    }

    /// The 8 bytes at `offset` as an atomic (None when unaligned or out of bounds).
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) {
            return None;
        }
        let p = self.ptr(offset, 8)?;
        // SAFETY: as `atomic_u32`: 8-byte aligned (block 64-aligned, offset % 8 == 0),
        // inside the allocation, living as long as `&self`.
        Some(unsafe { AtomicU64::from_ptr(p.cast::<u64>()) })
    }

    /// The whole block as 4-byte atomics (its last len % 4 bytes left out):
    /// for a table of links read in a loop, one bounds check per access by
    /// index instead of an offset's alignment, overflow and bounds checks.
    pub(crate) fn atomic_u32s(&self) -> &[AtomicU32] {
        // SAFETY: as `atomic_u32`, for every 4-byte-aligned word inside the
        // allocation (the block is 64-aligned): len / 4 of them, living as
        // long as `&self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), self.len / 4) }
    }

    /// The whole block as 8-byte atomics (as `atomic_u32s`).
    pub(crate) fn atomic_u64s(&self) -> &[AtomicU64] {
        // SAFETY: as `atomic_u32s`, 8-byte words.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.len / 8) }
    }

    pub(crate) fn load_u32_acquire(&self, offset: usize) -> Option<u32> {
        self.atomic_u32(offset).map(|a| a.load(Ordering::Acquire))
    }

    pub(crate) fn store_u32_release(&self, offset: usize, value: u32) -> bool {
        self.atomic_u32(offset)
            .map(|a| a.store(value, Ordering::Release))
            .is_some()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed(self.layout)` and is freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let b = Block::new(16).unwrap();
        assert!(b.write(8, &[1; 8]));
        assert!(!b.write(9, &[1; 8]));
        let mut out = [0u8; 8];
        assert!(b.read(8, &mut out));
        assert_eq!(out, [1; 8]);
        assert!(!b.read(usize::MAX, &mut out));
        assert_eq!(b.base() % BLOCK_ALIGN, 0);
        assert!(b.load_u32_acquire(2).is_none());
        assert!(b.store_u32_release(12, 7));
        assert_eq!(b.load_u32_acquire(12), Some(7));
        assert!(Block::new(MAX_BLOCK_BYTES + 1).is_none());
        assert!(b.atomic_u64(4).is_none());
        assert!(b.atomic_u64(16).is_none());
        b.atomic_u64(8).unwrap().store(u64::MAX, Ordering::Relaxed);
        assert!(b.read(8, &mut out));
        assert_eq!(out, [0xff; 8]);
    }
}
