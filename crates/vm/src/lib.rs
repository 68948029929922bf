//! skiff-vm: runs linked eBPF programs. It owns the program as loaded (ld_imm64
//! resolved to real addresses), the run's memory regions, the interpreter, the one
//! helper table both engines call, generic helpers (maps, time, tail calls, ringbuf,
//! trace_printk) and the object-level loader (`Collection`). It knows nothing of
//! packets: program contexts (xdp_md, __sk_buff) implement [`Context`] in skiff-net.

// Raw program memory is touched in three places only, each block with a SAFETY line.
#![deny(unsafe_code)]

pub mod collection;
pub mod conformance;
pub mod coverage;
pub mod ctx_layout;
#[allow(unsafe_code)]
pub mod helpers;
#[allow(unsafe_code)]
pub mod interp;
#[allow(unsafe_code)]
pub mod jit;
pub mod mem;
pub mod program;
pub mod proto;
#[allow(unsafe_code)]
pub mod state;
pub mod verifier;

pub use collection::{
    license_is_gpl_compatible, Collection, LoadError, LoadOptions, LOG_TAIL_LINES,
};
pub use ctx_layout::{CtxField, CtxLayout, FieldStore};
pub use helpers::{with_buffer, HelperDef, HelperFn, HelperTable, MapOp, MapOpFn};
pub use jit::{Engine, JitStats};
pub use mem::{Region, RegionKind, Regions};
pub use program::Program;
pub use proto::{ArgType, HelperProto, RetType};
pub use skiff_object::ProgType;
pub use state::{Clock, Env, ProgRef, RunState, Vm};

use std::any::Any;

/// Why a run ended abnormally. The kernel's verifier would have refused such a
/// program; skiff ends the run instead (XDP_ABORTED / TC_ACT_SHOT for the packet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    #[error("out-of-bounds {} of {len} bytes at {addr:#x}", if *write { "write" } else { "read" })]
    OutOfBounds { addr: u64, len: u64, write: bool },
    #[error("write of {len} bytes to read-only memory at {addr:#x}")]
    ReadOnly { addr: u64, len: u64 },
    #[error("misaligned atomic access of {len} bytes at {addr:#x}")]
    Misaligned { addr: u64, len: u64 },
    #[error("invalid context access: {0}")]
    Ctx(String),
    #[error("instruction budget of {0} exhausted (runaway loop?)")]
    Budget(u64),
    #[error("unknown helper #{0}")]
    UnknownHelper(u32),
    #[error("helper {name}#{id} is not available to {prog_type:?} programs")]
    HelperNotAllowed {
        id: u32,
        name: &'static str,
        prog_type: ProgType,
    },
    #[error("call stack too deep (max {0} frames)")]
    CallDepth(usize),
    #[error("invalid map pointer {0:#x} passed to helper")]
    BadMap(u64),
    #[error("invalid callback pointer {0:#x}")]
    BadCallback(u64),
    #[error("invalid instruction {0:#04x}")]
    BadInsn(u8),
    #[error("jump out of the program")]
    BadJump,
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("helper failed: {0}")]
    Helper(String),
}

/// An abnormal end of a run, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{prog} insn {pc}: {error}")]
pub struct Exception {
    pub prog: String,
    pub pc: usize,
    pub error: VmError,
}

/// The packet a context holds (`Context::packet_view`): host addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketView {
    /// data_meta (or data), the first byte the program may access.
    pub start: usize,
    pub data: usize,
    /// data_end.
    pub end: usize,
    /// The UAPI offsets of the context's data_meta, data and data_end fields,
    /// when their aligned 4-byte loads give `start`, `data` and `end` (each
    /// below 256: the shadow's 64 slots).
    pub fields: Option<[u32; 3]>,
    /// The UAPI offset of a field whose aligned 4-byte load gives `end -
    /// data` (`__sk_buff.len`: a linear skb's length), below 256: kept with
    /// the packet fields, current until the packet moves.
    pub len_field: Option<u32>,
}

/// A program context as the program sees it through r1: the kernel rewrites loads
/// and stores of `struct xdp_md` / `struct __sk_buff` fields into accesses of the
/// real kernel structures (`convert_ctx_access`); skiff routes every access that
/// lands in the ctx region here.
pub trait Context: Any {
    /// Size of the UAPI struct (24 for xdp_md, 192 for __sk_buff).
    fn ctx_size(&self) -> usize;
    fn load(&mut self, off: u32, size: u32) -> Result<u64, VmError>;
    fn store(&mut self, off: u32, size: u32, value: u64) -> Result<(), VmError>;
    /// The bytes the program may access directly: `[start, end)` host addresses
    /// (data_meta or data .. data_end). Asked again after every helper call, since
    /// helpers move the packet.
    fn packet(&self) -> Option<(usize, usize)>;
    /// Start of packet data (skb->data), for legacy BPF_LD_ABS/IND.
    fn data(&self) -> Option<(usize, usize)> {
        self.packet()
    }
    /// `packet` and where its data starts, in one call (asked at the start of
    /// every run and after every helper that moves the packet). A context whose
    /// data_meta, data and data_end fields load as exactly those addresses says
    /// where they are (`PacketView::fields`): both engines then serve those
    /// loads from the run's packet bounds, as the kernel's rewrite loads
    /// xdp->data / skb->data, without asking the context.
    fn packet_view(&self) -> Option<PacketView> {
        self.packet().map(|(start, end)| PacketView {
            start,
            data: start,
            end,
            fields: None,
            len_field: None,
        })
    }
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Values the JIT may serve without calling `load`: for each 4-byte slot i
    /// of `wanted` it sets, `shadow[i]` must equal `load(4 * i, 4)` until the
    /// next helper call or context store. Returns the mask of slots set (none
    /// by default).
    fn fast_loads(&self, _wanted: u64, _shadow: &mut [u64; 64]) -> u64 {
        0
    }
    /// The address of the structure behind the context when `layout` is its
    /// own: for this run, native code compiled for `layout` loads and stores
    /// the layout's fields there directly (the kernel's rewritten accesses).
    /// None (the default): every access goes through `load` / `store`.
    fn direct_base(&mut self, _layout: &CtxLayout) -> Option<*mut u8> {
        None
    }
}

/// A context with no fields: r1 points at plain memory (the conformance suite).
pub struct NoContext;

impl Context for NoContext {
    fn ctx_size(&self) -> usize {
        0
    }
    fn load(&mut self, off: u32, _size: u32) -> Result<u64, VmError> {
        Err(VmError::Ctx(format!("no context (offset {off})")))
    }
    fn store(&mut self, off: u32, _size: u32, _value: u64) -> Result<(), VmError> {
        Err(VmError::Ctx(format!("no context (offset {off})")))
    }
    fn packet(&self) -> Option<(usize, usize)> {
        None
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
