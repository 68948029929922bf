//! The run's memory: a small table of regions (ctx, packet, stack, map storage,
//! ringbuf records). Every load and store the program makes is checked against it;
//! nothing outside a region is ever touched.

use crate::VmError;

/// What a region is, which decides how an access to it is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The program context: accesses go through the context's field rewriting
    /// (the kernel's `convert_ctx_access`), never to raw memory.
    Ctx,
    ReadWrite,
    ReadOnly,
}

#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

impl Region {
    pub fn new(start: usize, len: usize, kind: RegionKind) -> Self {
        Region {
            start: start as u64,
            end: start as u64 + len as u64,
            kind,
        }
    }

    #[inline(always)]
    fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.start && addr.wrapping_add(len) <= self.end && addr.wrapping_add(len) >= addr
    }
}

/// Where an access landed.
pub enum Target {
    /// Raw memory at this host address (already bounds-checked).
    Raw(*mut u8),
    /// The context, at this byte offset.
    Ctx(u32),
}

/// Fixed slots first (looked at in this order, hottest first), then the static map
/// regions of the program, then regions added during the run.
#[derive(Default)]
pub struct Regions {
    pub packet: Option<Region>,
    pub stack: Option<Region>,
    pub ctx: Option<Region>,
    pub others: Vec<Region>,
    /// How many of `others` are static (map storage); the rest are per-run.
    pub static_len: usize,
}

impl Regions {
    #[inline(always)]
    pub fn translate(&self, addr: u64, len: u64, write: bool) -> Result<Target, VmError> {
        if let Some(r) = &self.packet {
            if r.contains(addr, len) {
                return Ok(Target::Raw(addr as usize as *mut u8));
            }
        }
        if let Some(r) = &self.stack {
            if r.contains(addr, len) {
                return Ok(Target::Raw(addr as usize as *mut u8));
            }
        }
        if let Some(r) = &self.ctx {
            if r.contains(addr, len) {
                return Ok(Target::Ctx((addr - r.start) as u32));
            }
        }
        for r in &self.others {
            if r.contains(addr, len) {
                if write && r.kind == RegionKind::ReadOnly {
                    return Err(VmError::ReadOnly { addr, len });
                }
                return Ok(Target::Raw(addr as usize as *mut u8));
            }
        }
        Err(VmError::OutOfBounds { addr, len, write })
    }

    /// A raw byte range for a helper argument (ARG_PTR_TO_MEM): must lie in one
    /// non-ctx region.
    pub fn raw(&self, addr: u64, len: u64, write: bool) -> Result<*mut u8, VmError> {
        if len == 0 {
            return Ok(std::ptr::NonNull::<u8>::dangling().as_ptr());
        }
        match self.translate(addr, len, write)? {
            Target::Raw(p) => Ok(p),
            Target::Ctx(_) => Err(VmError::OutOfBounds { addr, len, write }),
        }
    }

    pub fn truncate_dynamic(&mut self) {
        self.others.truncate(self.static_len);
    }
}
