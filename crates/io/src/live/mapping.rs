//! Memory shared with the kernel through mmap(2): the AF_PACKET ring, the
//! AF_XDP UMEM and rings. One owner each, unmapped on drop.

use std::os::fd::RawFd;
use std::sync::atomic::AtomicU32;

/// A shared or anonymous mapping, unmapped on drop.
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping belongs to its owner alone; moving it to another thread
// moves that ownership (what the kernel shares is synchronised by the rings'
// acquire/release indices).
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are what mmap returned; nothing borrows from the
        // mapping past &mut self's lifetime.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl Mapping {
    /// `len` bytes of `fd` at page offset `pgoff` (a ring, populated), or
    /// anonymous memory (`fd` None: the UMEM, populated when XDP_UMEM_REG
    /// pins it); `extra` flags added (MAP_LOCKED).
    pub fn new(
        fd: Option<RawFd>,
        len: usize,
        pgoff: u64,
        extra: libc::c_int,
    ) -> Result<Mapping, std::io::Error> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE | extra, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra, -1),
        };
        let off = libc::off_t::try_from(pgoff)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: a fresh mapping nothing else in the process refers to; the
        // kernel checks `fd`, `len` and `off`.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                off,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if fd < 0 {
            // Huge pages where transparent huge pages are enabled: each
            // received frame is a new page of the UMEM, and a TLB miss per
            // frame showed in the profile. Only advice: refused (THP off),
            // the UMEM works with small pages.
            // SAFETY: the range is the mapping just made.
            let _ = unsafe { libc::madvise(base, len, libc::MADV_HUGEPAGE) };
        }
        Ok(Mapping {
            base: base.cast(),
            len,
        })
    }

    pub fn addr(&self) -> u64 {
        self.base as usize as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes `at..at + len` (None when outside the mapping).
    pub fn slice_mut(&mut self, at: u64, len: usize) -> Option<&mut [u8]> {
        let at = usize::try_from(at).ok()?;
        at.checked_add(len).filter(|end| *end <= self.len)?;
        // SAFETY: at + len <= self.len (checked above); the slice borrows
        // self mutably, so skiff has one view; the kernel writes a frame only
        // while it owns it (in the fill ring), never while skiff holds it.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.add(at), len) })
    }

    /// The 32-bit word at `off`, shared with the kernel (None when outside
    /// the mapping or misaligned); valid as long as the mapping.
    pub fn word(&self, off: u64) -> Option<*const AtomicU32> {
        let off = usize::try_from(off).ok()?;
        if off % 4 != 0 || off.checked_add(4).is_none_or(|end| end > self.len) {
            return None;
        }
        // SAFETY: off + 4 <= len (checked): the result points into the
        // mapping.
        Some(unsafe { self.base.add(off) } as *const AtomicU32)
    }
}
