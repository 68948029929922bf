//! The memory AF_XDP shares with the kernel: the UMEM (frames skiff owns,
//! mapped anonymous and registered with XDP_UMEM_REG) and the four rings
//! (fill, completion, rx, tx), each mapped from the socket at its page offset
//! with the layout XDP_MMAP_OFFSETS gives. A ring is single-producer,
//! single-consumer: the producer writes entries, then publishes its index
//! with a release store; the consumer reads the index with an acquire load,
//! then the entries (net/xdp/xsk_queue.h: the same protocol, kernel side).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::live::mapping::Mapping;

/// struct xdp_ring_offset (include/uapi/linux/if_xdp.h), bytes from the
/// start of a ring's mapping.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RingOffsets {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// XDP_RING_NEED_WAKEUP: the kernel waits for a syscall to go on.
const XDP_RING_NEED_WAKEUP: u32 = 1;

// SAFETY: the index pointers point into the Ring's own mapping, which moves
// with it; nothing else in the process uses them.
unsafe impl Send for Ring {}

/// One ring: `size` entries of `entry` bytes (8: a UMEM address, fill and
/// completion; 16: struct xdp_desc, rx and tx).
pub(super) struct Ring {
    map: Mapping,
    /// The producer and consumer indices and the flags word, inside `map`
    /// (checked in-bounds and aligned when mapped; live as long as `map`).
    prod: *const AtomicU32,
    cons: *const AtomicU32,
    flags: *const AtomicU32,
    desc: u64,
    size: u32,
    entry: usize,
    /// Our side's index (the producer's for fill/tx, the consumer's for
    /// rx/completion), ahead of the shared one until published.
    local: u32,
    /// The other side's index as last read (saves a shared-cache-line load
    /// per entry).
    other: u32,
}

impl Ring {
    /// Maps the ring of `size` entries (a power of two) at `pgoff` of `fd`.
    pub fn map(
        fd: RawFd,
        pgoff: u64,
        off: RingOffsets,
        size: u32,
        entry: usize,
    ) -> Result<Ring, std::io::Error> {
        let bytes = (size as usize)
            .checked_mul(entry)
            .and_then(|b| usize::try_from(off.desc).ok()?.checked_add(b))
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let map = Mapping::new(Some(fd), bytes, pgoff, 0)?;
        let word = |o: u64| {
            map.word(o)
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        Ok(Ring {
            prod: word(off.producer)?,
            cons: word(off.consumer)?,
            flags: word(off.flags)?,
            desc: off.desc,
            map,
            size,
            entry,
            local: 0,
            other: 0,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: in bounds and aligned (Ring::map); `map` lives as long as
        // self; the kernel writes the word concurrently, so it is accessed
        // atomically only.
        unsafe { &*self.prod }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.cons }
    }

    /// Entry `i`'s bytes (i taken modulo the ring's size).
    fn entry_mut(&mut self, i: u32) -> Option<&mut [u8]> {
        let at = self.desc + u64::from(i & (self.size - 1)) * self.entry as u64;
        self.map.slice_mut(at, self.entry)
    }

    /// Whether the kernel asks for a syscall (XDP_USE_NEED_WAKEUP).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        let flags = unsafe { &*self.flags };
        flags.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, tx) ----

    /// Free entries, reading the consumer's index again only when the cached
    /// one says full.
    fn free(&mut self) -> u32 {
        let used = self.local.wrapping_sub(self.other);
        if used < self.size {
            return self.size - used;
        }
        self.other = self.consumer().load(Ordering::Acquire);
        self.size - self.local.wrapping_sub(self.other).min(self.size)
    }

    /// Writes one entry (`bytes`: the entry's fields, native endian) at the
    /// producer's place, unpublished; false when the ring is full.
    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.free() == 0 {
            return false;
        }
        let i = self.local;
        let Some(e) = self.entry_mut(i) else {
            return false;
        };
        let n = e.len().min(bytes.len());
        e[..n].copy_from_slice(&bytes[..n]);
        self.local = i.wrapping_add(1);
        true
    }

    /// A UMEM address into the fill ring.
    pub fn push_addr(&mut self, addr: u64) -> bool {
        self.push(&addr.to_ne_bytes())
    }

    /// A struct xdp_desc { addr, len, options = 0 } into the tx ring.
    pub fn push_desc(&mut self, addr: u64, len: u32) -> bool {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_ne_bytes());
        d[8..12].copy_from_slice(&len.to_ne_bytes());
        self.push(&d)
    }

    /// Makes what was pushed visible to the kernel (release: the entries
    /// are written before the index says so).
    pub fn publish(&self) {
        self.producer().store(self.local, Ordering::Release);
    }

    /// Entries pushed and not yet published (our own index: no ordering
    /// needed to read it back).
    pub fn unpublished(&self) -> u32 {
        self.local
            .wrapping_sub(self.producer().load(Ordering::Relaxed))
    }

    /// Entries published and not yet taken by the kernel.
    pub fn outstanding(&mut self) -> u32 {
        self.other = self.consumer().load(Ordering::Acquire);
        self.local.wrapping_sub(self.other)
    }

    // ---- consumer side (rx, completion) ----

    /// Entries the kernel produced and we have not released, up to `max`
    /// (acquire: the entries are read after the index).
    pub fn available(&mut self, max: u32) -> u32 {
        self.other = self.producer().load(Ordering::Acquire);
        self.other.wrapping_sub(self.local).min(max).min(self.size)
    }

    /// The `k`-th available entry's u64 (a completion ring's address).
    pub fn read_addr(&mut self, k: u32) -> Option<u64> {
        let e = self.entry_mut(self.local.wrapping_add(k))?;
        Some(u64::from_ne_bytes(e.get(..8)?.try_into().ok()?))
    }

    /// The `k`-th available struct xdp_desc: (addr, len).
    pub fn read_desc(&mut self, k: u32) -> Option<(u64, u32)> {
        let e = self.entry_mut(self.local.wrapping_add(k))?;
        let addr = u64::from_ne_bytes(e.get(..8)?.try_into().ok()?);
        let len = u32::from_ne_bytes(e.get(8..12)?.try_into().ok()?);
        Some((addr, len))
    }

    /// Gives `n` read entries back to the kernel (release: read before the
    /// kernel may overwrite them).
    pub fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.consumer().store(self.local, Ordering::Release);
    }
}
