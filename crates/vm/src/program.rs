//! A program as loaded: validated instructions with every ld_imm64 resolved to the
//! value the kernel would put there (map pointer, map value address, callback).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use skiff_isa::{Insn, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, LD_IMM64};
use skiff_maps::Map;
use skiff_object::ProgType;

use crate::collection::LoadError;
use crate::mem::{ProgTags, Region, RegionKind};
use crate::verifier::{Verified, VerifierError};
use crate::{Engine, JitStats};

/// Callback pointers (ld_imm64 with BPF_PSEUDO_FUNC) are this tag plus the target
/// instruction index: they are only ever handed back to helpers, never dereferenced.
pub const FUNC_TAG: u64 = 0xffff_c0de_0000_0000;

static NEXT_PROG_ID: AtomicU32 = AtomicU32::new(1);

pub struct Program {
    /// Unique per process from 1, like kernel prog ids (PROG_ARRAY values).
    pub id: u32,
    pub name: String,
    pub prog_type: ProgType,
    /// As loaded (map references in fd_array form), for dumping.
    pub insns: Vec<Insn>,
    /// What the engines execute: ld_imm64 slots hold their final 64-bit value (low
    /// half in the first slot's imm, high half in the second's) with src 0.
    pub code: Vec<Insn>,
    /// Maps this program may reference: the object's up to the last one it
    /// references (`used_maps`).
    pub maps: Vec<Arc<Map>>,
    /// Each one's index among the object's maps (`load`'s `maps`).
    pub map_indices: Vec<usize>,
    /// Their storage (the map's address, its region; EMPTY for a map without
    /// one), `maps` order: tag FIRST_MAP + i in every run (computed once here).
    pub map_storage: Vec<(usize, Region)>,
    /// The same as the run's static tags, prepared once here.
    pub(crate) tags: ProgTags,
    /// Native code, when loaded for the JIT.
    jit: Option<crate::jit::Compiled>,
    /// The context layout the native code reaches fields through directly
    /// (the helper table's for the program type, when loaded with one).
    pub(crate) ctx_layout: Option<&'static crate::CtxLayout>,
    /// What the verifier proved; None when the program was not verified.
    verified: Option<Verified>,
    /// Why the verifier refused it, when it was loaded with verification off.
    refusal: Option<VerifierError>,
    /// Per-instruction hit counters, when loaded with coverage on (the
    /// interpreter counts; see `coverage`).
    pub(crate) coverage: Option<Arc<crate::coverage::Counters>>,
}

/// The value a map reference has in a register: the map's address, as the kernel
/// gives `struct bpf_map *`. Helpers turn it back into the map (`RunState::map`).
pub fn map_handle(map: &Arc<Map>) -> u64 {
    Arc::as_ptr(map) as usize as u64
}

impl Program {
    /// `maps` are the object's maps by index (`Object::maps` order). Compiles
    /// with the JIT (the default engine).
    pub fn load(
        name: &str,
        prog_type: ProgType,
        insns: Vec<Insn>,
        maps: &[Arc<Map>],
    ) -> Result<Program, LoadError> {
        Self::load_with(name, prog_type, insns, maps, Engine::Jit)
    }

    /// As `load`, for `engine`: with `Engine::Jit` the program is compiled
    /// here, once; a program the JIT refuses (control flow the kernel's verifier
    /// refuses too) is an error.
    pub fn load_with(
        name: &str,
        prog_type: ProgType,
        insns: Vec<Insn>,
        maps: &[Arc<Map>],
        engine: Engine,
    ) -> Result<Program, LoadError> {
        Self::load_verified(name, prog_type, insns, maps, engine, None)
    }

    /// As `load_with`, with what the verifier proved of `insns` (one
    /// `InsnAux` per instruction slot): the JIT emits no bounds check for a
    /// proven access and charges no budget on a proven-bounded loop.
    pub fn load_verified(
        name: &str,
        prog_type: ProgType,
        insns: Vec<Insn>,
        maps: &[Arc<Map>],
        engine: Engine,
        verified: Option<&crate::verifier::Verified>,
    ) -> Result<Program, LoadError> {
        Self::load_for_context(name, prog_type, insns, maps, engine, verified, None)
    }

    /// As `load_verified`, compiled to reach the fields `layout` describes
    /// directly when the run's context is that layout's (`Context::direct_base`).
    pub fn load_for_context(
        name: &str,
        prog_type: ProgType,
        insns: Vec<Insn>,
        maps: &[Arc<Map>],
        engine: Engine,
        verified: Option<&crate::verifier::Verified>,
        layout: Option<&'static crate::CtxLayout>,
    ) -> Result<Program, LoadError> {
        let mut p = Self::link(name, prog_type, insns, maps)?;
        p.ctx_layout = layout;
        if engine == Engine::Jit {
            let c = crate::jit::compile(&p, verified).map_err(|e| LoadError::Invalid {
                prog: name.to_string(),
                msg: format!("JIT: {e}"),
            })?;
            p.jit = Some(c);
        }
        Ok(p)
    }

    /// Records the verifier's verdict (`Program::load_object`, collection.rs).
    pub(crate) fn set_verdict(
        &mut self,
        verified: Option<Verified>,
        refusal: Option<VerifierError>,
    ) {
        self.verified = verified;
        self.refusal = refusal;
    }

    /// Its coverage counters, when it was loaded with coverage on.
    pub fn coverage(&self) -> Option<&Arc<crate::coverage::Counters>> {
        self.coverage.as_ref()
    }

    /// What the verifier proved, when the program was loaded verified.
    pub fn verified(&self) -> Option<&Verified> {
        self.verified.as_ref()
    }

    /// The verifier's refusal of a program loaded with verification off.
    pub fn refusal(&self) -> Option<&VerifierError> {
        self.refusal.as_ref()
    }

    /// Native code statistics, when the program was compiled.
    pub fn jit_stats(&self) -> Option<JitStats> {
        self.jit.as_ref().map(|c| c.stats)
    }

    pub(crate) fn jit(&self) -> Option<&crate::jit::Compiled> {
        self.jit.as_ref()
    }

    fn link(
        name: &str,
        prog_type: ProgType,
        insns: Vec<Insn>,
        maps: &[Arc<Map>],
    ) -> Result<Program, LoadError> {
        skiff_isa::validate(&insns).map_err(|e| LoadError::Invalid {
            prog: name.to_string(),
            msg: e.to_string(),
        })?;
        let mut code = insns.clone();
        let (used, used_idx) = used_maps(&insns, maps);
        let mut pc = 0;
        while pc < code.len() {
            let insn = code[pc];
            if insn.code == LD_IMM64 {
                let next_imm = code.get(pc + 1).map(|i| i.imm).unwrap_or(0);
                // The value's provenance: a map value's tag, else a scalar.
                let mut tag = 0usize;
                let value = match insn.src {
                    0 => (insn.imm as u32 as u64) | ((next_imm as u32 as u64) << 32),
                    BPF_PSEUDO_MAP_IDX | BPF_PSEUDO_MAP_IDX_VALUE => {
                        let map = usize::try_from(insn.imm)
                            .ok()
                            .and_then(|i| maps.get(i))
                            .ok_or_else(|| LoadError::Invalid {
                                prog: name.to_string(),
                                msg: format!("insn {pc}: map index {} out of range", insn.imm),
                            })?;
                        if insn.src == BPF_PSEUDO_MAP_IDX {
                            map_handle(map)
                        } else {
                            let i = used.iter().position(|m| Arc::ptr_eq(m, map)).unwrap_or(0);
                            tag = crate::mem::FIRST_MAP as usize + i;
                            map_value_addr(map, next_imm as u32).ok_or_else(|| {
                                LoadError::Invalid {
                                    prog: name.to_string(),
                                    msg: format!(
                                        "insn {pc}: offset {} outside the value of map {}",
                                        next_imm as u32,
                                        map.attr().name
                                    ),
                                }
                            })?
                        }
                    }
                    BPF_PSEUDO_FUNC => {
                        let target = pc as i64 + 1 + insn.imm as i64;
                        if target < 0 || target as usize >= code.len() {
                            return Err(LoadError::Invalid {
                                prog: name.to_string(),
                                msg: format!("insn {pc}: callback target {target} out of range"),
                            });
                        }
                        FUNC_TAG | target as u64
                    }
                    other => {
                        return Err(LoadError::NotSupported {
                            prog: name.to_string(),
                            msg: format!("insn {pc}: ld_imm64 pseudo source {other}"),
                        })
                    }
                };
                code[pc] = Insn::new(LD_IMM64, insn.dst, 0, 0, value as u32 as i32);
                if tag >= crate::mem::MAX_TAGS {
                    return Err(LoadError::NotSupported {
                        prog: name.to_string(),
                        msg: format!("insn {pc}: more than {} maps", crate::mem::MAX_TAGS - 4),
                    });
                }
                // The second slot's `off` carries the tag (both engines read it).
                if let Some(n) = code.get_mut(pc + 1) {
                    *n = Insn::new(0, 0, 0, tag as i16, (value >> 32) as u32 as i32);
                }
                pc += 2;
                continue;
            }
            if insn.code == skiff_isa::CALL && insn.src == skiff_isa::BPF_PSEUDO_KFUNC_CALL {
                return Err(LoadError::NotSupported {
                    prog: name.to_string(),
                    msg: format!("insn {pc}: kfunc call (btf id {})", insn.imm),
                });
            }
            pc += 1;
        }
        let map_storage = used
            .iter()
            .map(|m| {
                (
                    Arc::as_ptr(m) as usize,
                    map_storage(m).unwrap_or(Region::EMPTY),
                )
            })
            .collect::<Vec<_>>();
        Ok(Program {
            tags: ProgTags::new(&map_storage),
            map_storage,
            id: NEXT_PROG_ID.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            prog_type,
            insns,
            code,
            maps: used,
            map_indices: used_idx,
            jit: None,
            ctx_layout: None,
            verified: None,
            refusal: None,
            coverage: None,
        })
    }
}

/// The maps a program of an object with `maps` keeps, and their indices
/// there: the object's maps up to the last one `insns` reference (by
/// ld_imm64 index), those between included, so the tag tables of programs
/// from one object agree: one program's maps are a prefix of another's (a
/// dispatcher and the programs it tail-calls share one table, which a tail
/// call then keeps). When that many maps would not fit the tag table, only
/// the maps referenced, in the object's order.
fn used_maps(insns: &[Insn], maps: &[Arc<Map>]) -> (Vec<Arc<Map>>, Vec<usize>) {
    let mut idx: Vec<usize> = insns
        .iter()
        .filter(|i| {
            i.code == LD_IMM64 && matches!(i.src, BPF_PSEUDO_MAP_IDX | BPF_PSEUDO_MAP_IDX_VALUE)
        })
        .filter_map(|i| usize::try_from(i.imm).ok())
        .filter(|&i| i < maps.len())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    if let Some(&last) = idx.last() {
        if last < crate::mem::MAX_TAGS - crate::mem::FIRST_MAP as usize {
            idx = (0..=last).collect();
        }
    }
    let mut used: Vec<Arc<Map>> = Vec::new();
    let mut used_idx = Vec::new();
    for i in idx {
        if !used.iter().any(|m| Arc::ptr_eq(m, &maps[i])) {
            used.push(maps[i].clone());
            used_idx.push(i);
        }
    }
    (used, used_idx)
}

/// A map's storage as a run region (a map has at most one block), if it has one.
pub fn map_storage(m: &Map) -> Option<Region> {
    m.regions().into_iter().next().map(|r| {
        Region::new(
            r.start,
            r.len,
            if r.writable {
                RegionKind::ReadWrite
            } else {
                RegionKind::ReadOnly
            },
        )
    })
}

/// Address of byte `off` of a single-value map (global data): element 0.
fn map_value_addr(map: &Arc<Map>, off: u32) -> Option<u64> {
    if off >= map.attr().value_size {
        return None;
    }
    let key = 0u32.to_le_bytes();
    let p = map.lookup(&key, 0)?;
    Some(p as usize as u64 + off as u64)
}
