//! ELF loader for clang-compiled eBPF objects, following libbpf's conventions:
//! programs by section, BTF-defined and legacy maps, global data, subprograms and
//! relocations. Pure data in, pure data out (no I/O beyond the bytes given).
#![forbid(unsafe_code)]

use skiff_isa::Insn;

pub mod btf;
mod core;
mod maps;
mod parse;
mod sections;

pub use sections::{classify_section, tracing_section};

/// Kernel program types skiff knows (values of `enum bpf_prog_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgType {
    /// BPF_PROG_TYPE_SCHED_CLS (3): `tc`, `classifier`, `tcx/*`, `netkit/*`.
    SchedCls,
    /// BPF_PROG_TYPE_SCHED_ACT (4): `action`.
    SchedAct,
    /// BPF_PROG_TYPE_XDP (6): `xdp`, `xdp.frags`.
    Xdp,
}

impl ProgType {
    pub fn kernel_id(self) -> u32 {
        match self {
            ProgType::SchedCls => 3,
            ProgType::SchedAct => 4,
            ProgType::Xdp => 6,
        }
    }
}

/// Expected attach type (`enum bpf_attach_type`), where the section implies one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachType {
    /// BPF_XDP (37)
    Xdp,
    /// BPF_TCX_INGRESS (46)
    TcxIngress,
    /// BPF_TCX_EGRESS (47)
    TcxEgress,
    /// BPF_NETKIT_PRIMARY (54)
    NetkitPrimary,
    /// BPF_NETKIT_PEER (55)
    NetkitPeer,
    /// BPF_XDP_DEVMAP (33): `xdp/devmap`, `xdp.frags/devmap`.
    XdpDevmap,
    /// BPF_XDP_CPUMAP (35): `xdp/cpumap`, `xdp.frags/cpumap`.
    XdpCpumap,
}

impl AttachType {
    pub fn kernel_id(self) -> u32 {
        match self {
            AttachType::Xdp => 37,
            AttachType::TcxIngress => 46,
            AttachType::TcxEgress => 47,
            AttachType::NetkitPrimary => 54,
            AttachType::NetkitPeer => 55,
            AttachType::XdpDevmap => 33,
            AttachType::XdpCpumap => 35,
        }
    }
}

/// One program, linked: its own instructions followed by every `.text` subprogram it
/// reaches (bpf-to-bpf call offsets fixed up, as libbpf does).
///
/// Map references are left in the kernel's fd_array form, so the instructions can be
/// loaded by the kernel with `fd_array` and run by skiff without rewriting:
/// `ld_imm64` with src `BPF_PSEUDO_MAP_IDX` (5), imm = index into [`Object::maps`];
/// or src `BPF_PSEUDO_MAP_IDX_VALUE` (6), imm = map index, second slot imm = offset
/// into the value (global data, `.rodata.str1.1` etc.).
#[derive(Clone, Debug)]
pub struct Program {
    /// The function symbol's name.
    pub name: String,
    /// The ELF section it came from.
    pub section: String,
    pub prog_type: ProgType,
    pub expected_attach_type: Option<AttachType>,
    /// `xdp.frags` (BPF_F_XDP_HAS_FRAGS).
    pub frags: bool,
    pub insns: Vec<Insn>,
    /// Source lines from BTF line info (`.BTF.ext`), by instruction of `insns`,
    /// sorted: each covers the instructions up to the next one. The records of an
    /// appended `.text` subprogram move with it, as libbpf relocates them. Empty
    /// when the object has no `.BTF.ext` (built without `-g`).
    pub lines: Vec<LineInfo>,
    /// The functions placed in `insns`: the program's own first, then each
    /// appended `.text` subprogram, by start instruction (what coverage
    /// reports name).
    pub funcs: Vec<FuncStart>,
}

/// A function of a linked program: its symbol name and first instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncStart {
    pub name: String,
    pub insn: usize,
}

/// A program of the object that skiff does not load (a tracing program beside
/// the packet programs): said as a note, refused when asked for by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub section: String,
    /// The kernel's name of its program type (`BPF_PROG_TYPE_KPROBE`).
    pub prog_type: &'static str,
}

impl Skipped {
    /// The note a loader prints: which program, which section, why.
    pub fn note(&self) -> String {
        format!(
            "program {} (section '{}') skipped: {} programs do not run in skiff (no kernel to trace)",
            self.name, self.section, self.prog_type
        )
    }

    /// The refusal when the program is asked for by name.
    pub fn refusal(&self) -> ObjectError {
        ObjectError::NotSupported(format!(
            "program type {} (program {}, section '{}')",
            self.prog_type, self.name, self.section
        ))
    }
}

/// One BTF line-info record (struct bpf_line_info), resolved against the string
/// table: the source line an instruction was compiled from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// First instruction of the program (index into [`Program::insns`]) it covers.
    pub insn: usize,
    /// Source file name, as clang recorded it.
    pub file: String,
    pub line: u32,
    pub col: u32,
    /// The text of the source line (what the verifier log prints after `; `).
    pub text: String,
}

impl Program {
    /// The source line covering instruction `insn`: the last record at or before
    /// it (the kernel's find_linfo).
    pub fn line_of(&self, insn: usize) -> Option<&LineInfo> {
        let i = self.lines.partition_point(|l| l.insn <= insn);
        self.lines.get(i.checked_sub(1)?)
    }
}

/// Where a map definition came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOrigin {
    /// `SEC(".maps")`, BTF-defined.
    Btf,
    /// `SEC("maps")` with `struct bpf_map_def`.
    Legacy,
    /// `SEC("maps")` with iproute2's `struct bpf_elf_map`.
    ElfMap,
    /// `.rodata*`, `.data*`, `.bss`: a one-element array map holding the section.
    GlobalData { section: String, readonly: bool },
}

/// Initial contents of a PROG_ARRAY / map-in-map slot (BTF `.values = { ... }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotInit {
    /// A program of this object, by function name.
    Prog(String),
    /// A map of this object, by name.
    Map(String),
}

#[derive(Clone, Debug)]
pub struct MapSpec {
    /// Symbol name; for global data the section name (`.rodata`, `.data`, `.bss`, ...).
    pub name: String,
    /// `enum bpf_map_type` value.
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// BTF `pinning` / bpf_elf_map `pinning` (0 none, 1 by name (LIBBPF_PIN_BY_NAME, PIN_GLOBAL_NS)).
    pub pinning: u32,
    /// Template of the inner map for ARRAY_OF_MAPS / HASH_OF_MAPS.
    pub inner: Option<Box<MapSpec>>,
    /// Global data: the section's initial bytes (len == value_size; zero for `.bss`).
    pub initial_data: Option<Vec<u8>>,
    /// Initial slots (index, target), from BTF `.values`.
    pub slots: Vec<(u32, SlotInit)>,
    pub origin: MapOrigin,
    /// BTF `map_extra` (bloom filter hashes, arena address); 0 otherwise.
    pub map_extra: u64,
    /// BTF `numa_node`; 0 otherwise (libbpf passes it only with BPF_F_NUMA_NODE).
    pub numa_node: u32,
}

#[derive(Clone, Debug)]
pub struct Object {
    pub license: String,
    pub programs: Vec<Program>,
    pub maps: Vec<MapSpec>,
    /// Tracing programs left out (`kprobe/`, `tracepoint/`, `fentry/`, ...).
    pub skipped: Vec<Skipped>,
}

/// Options for [`Object::parse_with`].
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// Program type for every program, whatever its section says (the CLI's
    /// `--type xdp|tc`, as bpftool's `prog load ... type`). Also makes sections skiff
    /// does not recognise loadable.
    pub force_type: Option<ProgType>,
}

/// Why an object could not be parsed. Each message names the section, the
/// instruction index or byte offset, and the symbol where there is one.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ObjectError {
    /// Not an ELF file, or an ELF file skiff cannot load (class, byte order, machine).
    #[error("not a loadable eBPF object: {0}")]
    NotBpfElf(String),
    /// Structurally broken ELF (truncated headers/sections, bad indices).
    #[error("malformed ELF: {0}")]
    Elf(String),
    /// Broken `.BTF` / `.BTF.ext`.
    #[error("malformed BTF: {0}")]
    Btf(String),
    /// A program section libbpf's naming does not give a type.
    #[error("section '{section}': unknown program type (section name is not one of xdp, xdp.frags, xdp/..., tc, classifier, action, tc/ingress, tc/egress, tcx/ingress, tcx/egress, netkit/primary, netkit/peer); pass --type xdp|tc to load it anyway")]
    UnknownSection { section: String },
    /// A map definition that cannot be used.
    #[error("map '{map}': {msg}")]
    Map { map: String, msg: String },
    /// A relocation that cannot be applied.
    #[error("section '{section}' insn {insn}: {msg}")]
    Reloc {
        section: String,
        insn: usize,
        msg: String,
    },
    /// Anything else wrong in one section.
    #[error("section '{section}': {msg}")]
    Section { section: String, msg: String },
    /// A feature skiff does not implement (kfuncs, ksyms, CO-RE against kernel types).
    #[error("not supported: {0}")]
    NotSupported(String),
}

impl Object {
    /// Parses a clang-built eBPF ELF object with the section naming libbpf uses.
    pub fn parse(bytes: &[u8]) -> Result<Object, ObjectError> {
        parse::parse(bytes, &ParseOptions::default())
    }

    /// As [`Object::parse`], with options.
    pub fn parse_with(bytes: &[u8], opts: &ParseOptions) -> Result<Object, ObjectError> {
        parse::parse(bytes, opts)
    }

    /// The program whose function symbol is `name`.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The program `name` as a loader asks for it: `Ok(None)` when there is no
    /// such program, the "not supported: program type X" refusal when it is a
    /// skipped tracing program.
    pub fn find_program(&self, name: &str) -> Result<Option<&Program>, ObjectError> {
        if let Some(s) = self.skipped.iter().find(|s| s.name == name) {
            return Err(s.refusal());
        }
        Ok(self.program(name))
    }

    /// Index into [`Object::maps`] of the map called `name` (symbol name, or section
    /// name for global data).
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}
