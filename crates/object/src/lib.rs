//! ELF loader for clang-compiled eBPF objects, following libbpf's conventions:
//! programs by section, BTF-defined and legacy maps, global data, subprograms and
//! relocations. Pure data in, pure data out (no I/O beyond the bytes given).
#![forbid(unsafe_code)]

use skiff_isa::Insn;

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
}

impl AttachType {
    pub fn kernel_id(self) -> u32 {
        match self {
            AttachType::Xdp => 37,
            AttachType::TcxIngress => 46,
            AttachType::TcxEgress => 47,
            AttachType::NetkitPrimary => 54,
            AttachType::NetkitPeer => 55,
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
}

#[derive(Clone, Debug)]
pub struct Object {
    pub license: String,
    pub programs: Vec<Program>,
    pub maps: Vec<MapSpec>,
}
