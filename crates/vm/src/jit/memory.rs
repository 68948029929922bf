//! Where a program's native code lands. Cranelift's system provider starts
//! each module on a fresh page, so every program's code began at the same
//! offset within its page: programs with alike code (a chain of tail-called
//! stages) then had their branches at equal low address bits, where the
//! CPU's branch predictors index, and evicted each other's entries (an
//! 8-stage chain cost twice as much per stage as a 2-stage one). The kernel
//! starts each image at a random offset within its hole
//! (kernel/bpf/core.c: bpf_jit_binary_pack_alloc); skiff staggers the start
//! by a per-module step instead, so layouts stay the same from run to run.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider, SystemMemoryProvider};
use cranelift_module::ModuleResult;

/// Offsets a module's code may start at: multiples of a cache line below
/// half a page (`STEPS` of them, visited in an order that spreads
/// neighbouring modules apart).
const LINE: usize = 64;
const STEPS: usize = 32;
const STRIDE: usize = 13;

/// The system provider, with the first code allocation moved up by the
/// module's offset.
pub(super) struct Staggered {
    inner: SystemMemoryProvider,
    pad: Option<usize>,
}

impl Staggered {
    pub(super) fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Self::nth(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The provider of the `n`th module.
    fn nth(n: usize) -> Self {
        Staggered {
            inner: SystemMemoryProvider::new(),
            pad: Some((n * STRIDE % STEPS) * LINE),
        }
    }
}

impl JITMemoryProvider for Staggered {
    fn allocate(&mut self, size: usize, align: u64, kind: JITMemoryKind) -> io::Result<*mut u8> {
        let pad = match kind {
            JITMemoryKind::Executable => self.pad.take().unwrap_or(0),
            _ => 0,
        };
        // A multiple of the line keeps the alignment asked for (a function's
        // is at most a line).
        let pad = if align as usize <= LINE { pad } else { 0 };
        let p = self.inner.allocate(size + pad, align, kind)?;
        // SAFETY: the allocation is `size + pad` bytes long.
        #[allow(unsafe_code)]
        Ok(unsafe { p.add(pad) })
    }

    #[allow(unsafe_code)]
    unsafe fn free_memory(&mut self) {
        // SAFETY: the caller's promise (no code of this module runs again).
        unsafe { self.inner.free_memory() }
    }

    fn finalize(&mut self, branch_protection: BranchProtection) -> ModuleResult<()> {
        self.inner.finalize(branch_protection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Consecutive modules' code starts at different offsets within a page,
    /// each aligned as asked; data allocations are not moved.
    #[test]
    fn consecutive_modules_start_at_different_page_offsets() {
        let mut providers: Vec<Staggered> = (0..4).map(Staggered::nth).collect();
        let mut offsets = Vec::new();
        for p in &mut providers {
            let code = p.allocate(100, 16, JITMemoryKind::Executable).unwrap();
            assert_eq!(code as usize % 16, 0);
            offsets.push(code as usize % 4096);
            let more = p.allocate(100, 16, JITMemoryKind::Executable).unwrap();
            assert!(
                more as usize >= code as usize + 100,
                "the second function follows"
            );
            let data = p.allocate(8, 8, JITMemoryKind::Writable).unwrap();
            assert_eq!(data as usize % 4096, 0, "data starts its own page");
        }
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), 4, "{offsets:?}");
        for p in &mut providers {
            p.finalize(BranchProtection::None).unwrap();
            #[allow(unsafe_code)]
            unsafe {
                p.free_memory()
            };
        }
    }
}
