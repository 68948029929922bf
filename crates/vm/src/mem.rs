//! The run's memory, by provenance: every pointer a program holds carries a tag
//! naming the region it came from (the ctx, the stack, the packet, one map's
//! storage, a ringbuf record), and an access is checked against that region only —
//! never against whichever region the address happens to fall in, so results never
//! depend on heap layout. A scalar (tag 0) is no pointer: an access through it is
//! an exception. Both engines propagate tags by the same rules (`alu_tag`,
//! `load_tag`); helpers say what their return value points to (`RunState::ret_tag`).

use skiff_object::ProgType;

use crate::VmError;

/// Where a register's value came from: an index into `Regions::by_tag`.
pub type Tag = u8;
/// No region: a number (an access through it is an exception).
pub const SCALAR: Tag = 0;
/// The program context (r1 at entry; for a bare run, the input memory r1 points at).
pub const CTX: Tag = 1;
/// r10 and everything derived from it: the stack of every frame.
pub const STACK: Tag = 2;
/// data_meta / data / data_end loaded from the context.
pub const PACKET: Tag = 3;
/// The current program's maps: tag FIRST_MAP + i is `Program::maps[i]`'s storage.
pub const FIRST_MAP: Tag = 4;
/// Size of the tag table: the program's maps, then regions the run adds (inner
/// maps, ringbuf records, callback keys). A region that finds the table full gets
/// no tag (its pointer is a scalar; docs/differences.md).
pub const MAX_TAGS: usize = 128;

/// What a region is, which decides how an access to it is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The program context: accesses go through the context's field rewriting
    /// (the kernel's `convert_ctx_access`), never to raw memory.
    Ctx,
    ReadWrite,
    ReadOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

impl Region {
    /// No bytes: nothing is inside it.
    pub const EMPTY: Region = Region {
        start: u64::MAX,
        end: u64::MAX,
        kind: RegionKind::ReadOnly,
    };

    pub fn new(start: usize, len: usize, kind: RegionKind) -> Self {
        Region {
            start: start as u64,
            end: (start as u64).saturating_add(len as u64),
            kind,
        }
    }

    #[inline(always)]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(e) => addr >= self.start && e <= self.end,
            None => false,
        }
    }

    /// Bounds for native code's `lo <= a && a <= hi - size` test, for reads and
    /// for writes (a read-only or ctx region has none: the runtime decides).
    pub fn native_bounds(&self) -> ([u64; 2], [u64; 2]) {
        let empty = [u64::MAX, u64::MAX];
        match self.kind {
            RegionKind::Ctx => (empty, empty),
            RegionKind::ReadOnly => ([self.start, self.end], empty),
            RegionKind::ReadWrite => ([self.start, self.end], [self.start, self.end]),
        }
    }
}

/// Where an access landed.
pub enum Target {
    /// Raw memory at this host address (already bounds-checked).
    Raw(*mut u8),
    /// The context, at this byte offset.
    Ctx(u32),
}

/// A program's static tags, prepared once when it is loaded: the storage of
/// its maps (tag FIRST_MAP + i), the maps' addresses (to find a map's tag, and
/// its handle), and the bounds native code tests against. A run of another
/// program than the last copies these in; nothing is recomputed per run.
#[derive(Clone, Debug, Default)]
pub struct ProgTags {
    pub(crate) regions: Vec<Region>,
    pub(crate) owners: Vec<usize>,
    /// `Region::native_bounds` of each region: (read, write).
    pub(crate) bounds: Vec<([u64; 2], [u64; 2])>,
}

impl ProgTags {
    /// The tags of maps whose (address, storage) are `maps`, at most as many
    /// as the tag table holds.
    pub fn new(maps: &[(usize, Region)]) -> ProgTags {
        let maps = &maps[..maps.len().min(MAX_TAGS - FIRST_MAP as usize)];
        ProgTags {
            regions: maps.iter().map(|&(_, r)| r).collect(),
            owners: maps.iter().map(|&(o, _)| o).collect(),
            bounds: maps.iter().map(|(_, r)| r.native_bounds()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

/// The region of each tag. Entries up to `static_len` (the fixed tags and the
/// program's maps) last from run to run; later ones are added during a run.
pub struct Regions {
    pub by_tag: Vec<Region>,
    /// The map each entry from FIRST_MAP on is the storage of (null for other
    /// regions), to find a map's tag.
    owners: Vec<usize>,
    pub static_len: usize,
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            by_tag: vec![Region::EMPTY; FIRST_MAP as usize],
            owners: vec![0; FIRST_MAP as usize],
            static_len: FIRST_MAP as usize,
        }
    }
}

impl Regions {
    /// Check an access through a pointer tagged `tag`.
    #[inline(always)]
    pub fn check(&self, tag: Tag, addr: u64, len: u64, write: bool) -> Result<Target, VmError> {
        let oob = VmError::OutOfBounds { addr, len, write };
        let Some(r) = self.by_tag.get(tag as usize) else {
            return Err(oob);
        };
        if !r.contains(addr, len) {
            return Err(oob);
        }
        match r.kind {
            RegionKind::Ctx => Ok(Target::Ctx((addr - r.start) as u32)),
            RegionKind::ReadOnly if write => Err(VmError::ReadOnly { addr, len }),
            _ => Ok(Target::Raw(addr as usize as *mut u8)),
        }
    }

    /// A raw byte range through a pointer tagged `tag` (a helper's memory
    /// argument): the context is not memory for it.
    #[inline]
    pub fn raw(&self, tag: Tag, addr: u64, len: u64, write: bool) -> Result<*mut u8, VmError> {
        if len == 0 {
            return Ok(std::ptr::NonNull::<u8>::dangling().as_ptr());
        }
        match self.check(tag, addr, len, write)? {
            Target::Raw(p) => Ok(p),
            Target::Ctx(_) => Err(VmError::OutOfBounds { addr, len, write }),
        }
    }

    pub fn set(&mut self, tag: Tag, r: Region) {
        if let Some(e) = self.by_tag.get_mut(tag as usize) {
            *e = r;
        }
    }

    /// The static part: fixed tags (set per run) and a program's map tags.
    pub fn set_program(&mut self, tags: &ProgTags) {
        self.by_tag.truncate(FIRST_MAP as usize);
        self.owners.truncate(FIRST_MAP as usize);
        self.by_tag.extend_from_slice(&tags.regions);
        self.owners.extend_from_slice(&tags.owners);
        self.static_len = self.by_tag.len();
    }

    /// Whether the table serves a program with `tags` as `set_program(tags)`
    /// would: its maps at the same tags (a map's storage never moves) and
    /// nothing the run added. Tags after them may name other maps (a chain
    /// whose last program uses fewer maps): the program's code never makes
    /// pointers with those tags.
    pub fn holds_program(&self, tags: &ProgTags) -> bool {
        self.static_len == self.by_tag.len()
            && self
                .owners
                .get(FIRST_MAP as usize..)
                .is_some_and(|o| o.starts_with(&tags.owners))
    }

    /// Add a region for the rest of the run; its tag, or SCALAR when the table is full.
    pub fn add(&mut self, r: Region, owner: usize) -> Tag {
        if self.by_tag.len() >= MAX_TAGS {
            return SCALAR;
        }
        self.by_tag.push(r);
        self.owners.push(owner);
        (self.by_tag.len() - 1) as Tag
    }

    /// The tag of the storage of the map at `owner` (its address), if it has one.
    pub fn tag_of_owner(&self, owner: usize) -> Option<Tag> {
        (FIRST_MAP as usize..self.owners.len())
            .find(|&i| self.owners[i] == owner)
            .map(|i| i as Tag)
    }

    pub fn owners(&self) -> &[usize] {
        &self.owners
    }

    /// Put back a table `owners` / `by_tag` saved earlier.
    pub fn restore(&mut self, by_tag: Vec<Region>, owners: Vec<usize>, static_len: usize) {
        self.by_tag = by_tag;
        self.owners = owners;
        self.static_len = static_len;
    }

    /// The run added regions past the program's static part.
    pub fn has_dynamic(&self) -> bool {
        self.by_tag.len() > self.static_len
    }

    pub fn truncate_dynamic(&mut self) {
        self.by_tag.truncate(self.static_len);
        self.owners.truncate(self.static_len);
    }

    pub fn len(&self) -> usize {
        self.by_tag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }
}

/// The tag of a value after `alu64 dst op= src` (ADD/SUB keep a pointer's
/// provenance, pointer + scalar either way round; pointer - pointer and every
/// other operation make a scalar), or after `mov`.
#[inline(always)]
pub fn alu_tag(op: u8, dst: Tag, src: Tag) -> Tag {
    match op {
        skiff_isa::BPF_MOV => src,
        skiff_isa::BPF_ADD if src == SCALAR => dst,
        skiff_isa::BPF_ADD if dst == SCALAR => src,
        skiff_isa::BPF_SUB if src == SCALAR => dst,
        _ => SCALAR,
    }
}

/// Context fields that hold packet pointers (the kernel's is_valid_access sets
/// PTR_TO_PACKET / _END / _META for them): xdp_md data, data_end, data_meta
/// (net/core/filter.c: xdp_is_valid_access); __sk_buff data, data_end, data_meta
/// (tc_cls_act_is_valid_access). Only 4-byte loads (the kernel refuses others).
#[inline(always)]
pub fn ctx_field_tag(prog_type: ProgType, off: u64, size: u32) -> Tag {
    if size != 4 {
        return SCALAR;
    }
    if ctx_packet_fields(prog_type).contains(&off) {
        PACKET
    } else {
        SCALAR
    }
}

/// The packet-pointer fields of `prog_type`'s context (for native code).
pub fn ctx_packet_fields(prog_type: ProgType) -> [u64; 3] {
    match prog_type {
        ProgType::Xdp => [0, 4, 8],
        ProgType::SchedCls | ProgType::SchedAct => [76, 80, 140],
    }
}
