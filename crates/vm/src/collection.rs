//! Loading a whole object: create its maps (global data initialised, .rodata
//! frozen), load its programs, fill PROG_ARRAY / map-in-map slots from `.values`,
//! as libbpf's bpf_object__load does.

use std::sync::Arc;

use skiff_maps::{Map, MapAttr, MapType};
use skiff_object::{Object, SlotInit};

use crate::program::Program;
use crate::verifier::{KernelVersion, VerifierError};
use crate::HelperTable;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("program {prog}: invalid: {msg}")]
    Invalid { prog: String, msg: String },
    #[error("program {prog}: not supported: {msg}")]
    NotSupported { prog: String, msg: String },
    #[error("map {map}: {msg}")]
    Map { map: String, msg: String },
    #[error("no program named {0}")]
    NoProgram(String),
    #[error("no map named {0}")]
    NoMap(String),
    /// The verifier refused the program (with `LoadOptions::verify` on), as
    /// BPF_PROG_LOAD fails: errno, message, instruction, source line, log.
    #[error("program {prog}: {}", error.describe(LOG_TAIL_LINES))]
    /// Boxed: a refusal carries the log, and LoadError travels on every path.
    Refused {
        prog: String,
        error: Box<VerifierError>,
    },
}

/// Log lines a refusal's message carries (libbpf prints the whole log; the last
/// lines say why).
pub const LOG_TAIL_LINES: usize = 8;

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Values per per-CPU map element (the kernel's possible CPUs).
    pub possible_cpus: usize,
    /// The engine programs are loaded for (compiled here for the JIT).
    pub engine: crate::Engine,
    /// Run the verifier at load and refuse what it refuses (the default). Off
    /// (`--no-verify`): the program loads anyway, its refusal kept
    /// (`Program::refusal`), and every access is checked at run time.
    pub verify: bool,
    /// Root, as `bpftool prog load` runs (the default); false: unprivileged rules.
    pub privileged: bool,
    /// The kernel whose verifier rules apply.
    pub kernel: KernelVersion,
    /// The helpers the programs will call: the verifier checks calls against
    /// their prototypes. The default has the generic helpers only; XDP and TC
    /// programs want `skiff_net::helper_table()` (`skiff_net::load_options`).
    pub helpers: Arc<HelperTable>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            possible_cpus: 1,
            engine: crate::Engine::default(),
            verify: true,
            privileged: true,
            kernel: KernelVersion::LATEST,
            helpers: Arc::new(HelperTable::generic()),
        }
    }
}

// include/linux/license.h: license_is_gpl_compatible
/// Whether gpl_only helpers may be called under `license`.
pub fn license_is_gpl_compatible(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

/// Runs the verifier on an object's program with the options of a load; a
/// refusal without a source line gets the one BTF line info gives its instruction.
// The verifier's interface (verifier::verify) returns VerifierError by value.
#[allow(clippy::result_large_err)]
pub(crate) fn verify_object_program(
    license: &str,
    spec: &skiff_object::Program,
    maps: &[Arc<Map>],
    opts: &LoadOptions,
) -> Result<crate::verifier::Verified, VerifierError> {
    let lines = crate::verifier::source_lines(spec);
    let vopts = crate::verifier::VerifyOptions {
        prog_type: spec.prog_type,
        name: &spec.name,
        maps,
        helpers: &opts.helpers,
        privileged: opts.privileged,
        kernel: opts.kernel,
        gpl: license_is_gpl_compatible(license),
        lines: Some(&lines),
    };
    crate::verifier::verify(&spec.insns, &vopts).map_err(|mut e| {
        if e.line.is_none() {
            e.line = spec.line_of(e.insn).map(crate::verifier::SourceLine::from);
        }
        e
    })
}

impl Program {
    /// Loads program `spec` of an object as `bpf(BPF_PROG_LOAD)` does: the
    /// verifier runs first, on the instructions as the kernel gets them; a
    /// refusal is `LoadError::Refused`, or with `opts.verify` off is kept
    /// (`refusal`) and the program loads unverified. Then as `load_verified`,
    /// with the proofs.
    pub fn load_object(
        license: &str,
        spec: &skiff_object::Program,
        maps: &[Arc<Map>],
        opts: &LoadOptions,
    ) -> Result<Program, LoadError> {
        let verdict = verify_object_program(license, spec, maps, opts);
        let (verified, refusal) = match verdict {
            Ok(v) if opts.verify => (Some(v), None),
            Ok(_) => (None, None),
            Err(error) if opts.verify => {
                return Err(LoadError::Refused {
                    prog: spec.name.clone(),
                    error: Box::new(error),
                })
            }
            Err(error) => (None, Some(error)),
        };
        // With coverage on, the interpreter runs it and counts (coverage.rs).
        let counters = crate::coverage::counters_for(spec, spec.insns.len());
        let engine = match counters {
            Some(_) => crate::Engine::Interp,
            None => opts.engine,
        };
        // The JIT drops the run-time checks the verifier's proofs make
        // redundant (none without a verdict: every access checked).
        let mut p = Program::load_for_context(
            &spec.name,
            spec.prog_type,
            spec.insns.clone(),
            maps,
            engine,
            verified.as_ref(),
            opts.helpers.ctx_layout(spec.prog_type),
        )?;
        p.set_verdict(verified, refusal);
        p.coverage = counters;
        Ok(p)
    }
}

pub struct Collection {
    pub maps: Vec<(String, Arc<Map>)>,
    pub programs: Vec<Arc<Program>>,
}

fn map_attr(spec: &skiff_object::MapSpec) -> Result<MapAttr, LoadError> {
    let map_type = MapType::from_kernel(spec.map_type).ok_or_else(|| LoadError::Map {
        map: spec.name.clone(),
        msg: format!("not supported: map type {}", spec.map_type),
    })?;
    let inner = match &spec.inner {
        Some(i) => Some(Box::new(map_attr(i)?)),
        None => None,
    };
    Ok(MapAttr {
        map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.map_flags,
        name: spec.name.clone(),
        inner,
    })
}

/// Creates an object's maps (global data written, .rodata frozen), by name in
/// object order, as libbpf's bpf_object__create_maps.
fn create_maps(obj: &Object, opts: &LoadOptions) -> Result<Vec<(String, Arc<Map>)>, LoadError> {
    let mut maps = Vec::with_capacity(obj.maps.len());
    for spec in &obj.maps {
        let err = |msg: String| LoadError::Map {
            map: spec.name.clone(),
            msg,
        };
        let map =
            Map::create(map_attr(spec)?, opts.possible_cpus).map_err(|e| err(e.to_string()))?;
        if let Some(data) = &spec.initial_data {
            map.sys_update(&0u32.to_le_bytes(), data, 0)
                .map_err(|e| err(format!("initialising global data: errno {e}")))?;
        }
        if let skiff_object::MapOrigin::GlobalData { readonly: true, .. } = spec.origin {
            map.freeze()
                .map_err(|e| err(format!("freeze: errno {e}")))?;
        }
        maps.push((spec.name.clone(), map));
    }
    Ok(maps)
}

/// The verifier's verdict on one program of an object.
pub type Verdict = Result<crate::verifier::Verified, VerifierError>;

impl Collection {
    /// Verifies every program of `obj` against freshly created maps, as
    /// `load` would, without linking or compiling anything: each program's
    /// verdict by name, in object order. Err only when a map cannot be created.
    pub fn verify(obj: &Object, opts: &LoadOptions) -> Result<Vec<(String, Verdict)>, LoadError> {
        let maps = create_maps(obj, opts)?;
        let map_refs: Vec<Arc<Map>> = maps.iter().map(|(_, m)| m.clone()).collect();
        Ok(obj
            .programs
            .iter()
            .map(|p| {
                let v = verify_object_program(&obj.license, p, &map_refs, opts);
                (p.name.clone(), v)
            })
            .collect())
    }

    pub fn load(obj: &Object, opts: &LoadOptions) -> Result<Collection, LoadError> {
        let maps = create_maps(obj, opts)?;
        let map_refs: Vec<Arc<Map>> = maps.iter().map(|(_, m)| m.clone()).collect();
        let mut programs = Vec::with_capacity(obj.programs.len());
        for p in &obj.programs {
            programs.push(Arc::new(Program::load_object(
                &obj.license,
                p,
                &map_refs,
                opts,
            )?));
        }
        let coll = Collection { maps, programs };
        for spec in &obj.maps {
            for (index, init) in &spec.slots {
                let key = index.to_le_bytes();
                let map = coll.map(&spec.name)?;
                let r = match init {
                    SlotInit::Prog(name) => map.sys_update_prog(&key, coll.program(name)?.id, 0),
                    SlotInit::Map(name) => map.sys_update_map(&key, coll.map(name)?.clone(), 0),
                };
                r.map_err(|e| LoadError::Map {
                    map: spec.name.clone(),
                    msg: format!("initialising slot {index}: errno {e}"),
                })?;
            }
        }
        Ok(coll)
    }

    pub fn map(&self, name: &str) -> Result<&Arc<Map>, LoadError> {
        self.maps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| LoadError::NoMap(name.to_string()))
    }

    pub fn program(&self, name: &str) -> Result<&Arc<Program>, LoadError> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| LoadError::NoProgram(name.to_string()))
    }
}
