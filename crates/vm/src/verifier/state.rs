//! The verifier's abstract state, in the kernel's model (include/linux/bpf_verifier.h):
//! a register (`bpf_reg_state`), a stack slot (`bpf_stack_state`), a call frame
//! (`bpf_func_state`) and a path's whole state (`bpf_verifier_state`).

use super::scalar::Scalar;

/// Number of registers, r0..r10.
pub const MAX_BPF_REG: usize = 11;
/// The frame pointer.
pub const BPF_REG_FP: usize = 10;
/// Bytes per stack slot (`BPF_REG_SIZE`).
pub const BPF_REG_SIZE: usize = 8;
/// `MAX_BPF_STACK`.
pub const MAX_BPF_STACK: i32 = 512;
/// `MAX_CALL_FRAMES`.
pub const MAX_CALL_FRAMES: usize = 8;

/// `enum bpf_reg_type` (base types skiff's program types can produce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegType {
    NotInit,
    Scalar,
    Ctx,
    ConstPtrToMap,
    MapValue,
    MapKey,
    Stack,
    PacketMeta,
    Packet,
    PacketEnd,
    /// PTR_TO_MEM (ringbuf records: `ringbuf` flag; `rdonly`: MEM_RDONLY).
    Mem,
    Func,
    Socket,
    SockCommon,
    TcpSock,
    XdpSock,
    /// PTR_TO_BTF_ID (helpers returning kernel objects).
    BtfId,
}

impl RegType {
    /// `reg_type_str` without flags (kernel/bpf/verifier.c).
    pub fn name(self) -> &'static str {
        match self {
            RegType::NotInit => "?",
            RegType::Scalar => "scalar",
            RegType::Ctx => "ctx",
            RegType::ConstPtrToMap => "map_ptr",
            RegType::MapValue => "map_value",
            RegType::MapKey => "map_key",
            RegType::Stack => "fp",
            RegType::PacketMeta => "pkt_meta",
            RegType::Packet => "pkt",
            RegType::PacketEnd => "pkt_end",
            RegType::Mem => "mem",
            RegType::Func => "func",
            RegType::Socket => "sock",
            RegType::SockCommon => "sock_common",
            RegType::TcpSock => "tcp_sock",
            RegType::XdpSock => "xdp_sock",
            RegType::BtfId => "ptr_",
        }
    }

    /// `type_is_pkt_pointer`.
    pub fn is_pkt_pointer(self) -> bool {
        matches!(self, RegType::Packet | RegType::PacketMeta)
    }

    pub fn is_pointer(self) -> bool {
        !matches!(self, RegType::NotInit | RegType::Scalar)
    }
}

/// A map a register refers to: an index into `VerifyOptions::maps`, or the inner
/// map template of that (map-in-map) map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapRef {
    pub index: u32,
    pub inner: bool,
}

/// `struct bpf_reg_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg {
    pub ty: RegType,
    /// PTR_MAYBE_NULL.
    pub maybe_null: bool,
    /// MEM_RDONLY.
    pub rdonly: bool,
    /// MEM_RINGBUF.
    pub ringbuf: bool,
    /// Fixed offset of a pointer.
    pub off: i32,
    /// The value (scalars) or the variable offset (pointers).
    pub s: Scalar,
    /// Pointers sharing an id were derived from one another (packet) or are one
    /// maybe-null pointer (null checks mark them all).
    pub id: u32,
    /// The acquired reference this pointer belongs to.
    pub ref_obj_id: u32,
    /// Packet: bytes proved readable after `off`. PTR_TO_MEM: its size.
    pub range: i32,
    pub map: Option<MapRef>,
    /// PTR_TO_STACK: the frame it points into.
    pub frameno: u8,
    /// PTR_TO_FUNC: the subprogram's first instruction.
    pub subprog: u32,
}

impl Reg {
    /// `__mark_reg_not_init`.
    pub fn not_init() -> Reg {
        Reg {
            ty: RegType::NotInit,
            maybe_null: false,
            rdonly: false,
            ringbuf: false,
            off: 0,
            s: Scalar::unknown(),
            id: 0,
            ref_obj_id: 0,
            range: 0,
            map: None,
            frameno: 0,
            subprog: 0,
        }
    }

    /// `__mark_reg_unknown`.
    pub fn unknown() -> Reg {
        Reg {
            ty: RegType::Scalar,
            ..Reg::not_init()
        }
    }

    /// `__mark_reg_known`.
    pub fn known(v: u64) -> Reg {
        Reg {
            ty: RegType::Scalar,
            s: Scalar::constant(v),
            ..Reg::not_init()
        }
    }

    pub fn scalar(s: Scalar) -> Reg {
        Reg {
            ty: RegType::Scalar,
            s,
            ..Reg::not_init()
        }
    }

    /// A pointer of type `ty` with no offset.
    pub fn ptr(ty: RegType) -> Reg {
        Reg {
            ty,
            s: Scalar::constant(0),
            ..Reg::not_init()
        }
    }

    pub fn is_scalar(&self) -> bool {
        self.ty == RegType::Scalar
    }

    pub fn is_init(&self) -> bool {
        self.ty != RegType::NotInit
    }

    /// `tnum_is_const(reg->var_off)`.
    pub fn const_value(&self) -> Option<u64> {
        self.s.const_value()
    }

    /// `register_is_null`.
    pub fn is_null(&self) -> bool {
        self.is_scalar() && self.const_value() == Some(0)
    }

    /// `reg_type_str`: prefix flags, base type, `_or_null`.
    pub fn type_str(&self) -> String {
        let mut s = String::new();
        if self.rdonly {
            s.push_str("rdonly_");
        }
        if self.ringbuf {
            s.push_str("ringbuf_");
        }
        s.push_str(self.ty.name());
        if self.maybe_null {
            s.push_str("_or_null");
        }
        s
    }
}

/// `enum bpf_stack_slot_type` (per byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotType {
    Invalid,
    Spill,
    Misc,
    Zero,
}

impl SlotType {
    /// The kernel's slot_type_char, for the state print.
    pub fn ch(self) -> char {
        match self {
            SlotType::Invalid => '?',
            SlotType::Spill => 'r',
            SlotType::Misc => 'm',
            SlotType::Zero => '0',
        }
    }
}

/// `struct bpf_stack_state`: `slot_type[i]` is the byte at `fp - 8*spi - 1 - i`
/// (the kernel's `slot % BPF_REG_SIZE` indexing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSlot {
    pub slot_type: [SlotType; BPF_REG_SIZE],
    pub spilled: Reg,
}

impl StackSlot {
    pub fn invalid() -> StackSlot {
        StackSlot {
            slot_type: [SlotType::Invalid; BPF_REG_SIZE],
            spilled: Reg::not_init(),
        }
    }

    /// `is_spilled_reg`: the last byte written was part of a spill.
    pub fn is_spilled_reg(&self) -> bool {
        self.slot_type[BPF_REG_SIZE - 1] == SlotType::Spill
    }
}

/// `struct bpf_func_state`: one call frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncState {
    pub regs: [Reg; MAX_BPF_REG],
    /// Index `spi` covers `fp - 8*(spi+1) .. fp - 8*spi`.
    pub stack: Vec<StackSlot>,
    /// The call instruction that created this frame (0 for the main frame).
    pub callsite: usize,
    pub frameno: u32,
    /// First instruction of the subprogram.
    pub subprog_start: usize,
    /// A callback of a helper (bpf_loop, for_each_map_elem): its r0 must be in
    /// `callback_ret_range` at exit.
    pub in_callback_fn: bool,
    pub callback_ret_range: (i64, i64),
}

impl FuncState {
    pub fn new(callsite: usize, frameno: u32, subprog_start: usize) -> FuncState {
        let mut regs = [Reg::not_init(); MAX_BPF_REG];
        let mut fp = Reg::ptr(RegType::Stack);
        fp.frameno = frameno as u8;
        regs[BPF_REG_FP] = fp;
        FuncState {
            regs,
            stack: Vec::new(),
            callsite,
            frameno,
            subprog_start,
            in_callback_fn: false,
            callback_ret_range: (0, 0),
        }
    }

    /// Allocated bytes (the kernel's `allocated_stack`).
    pub fn allocated_stack(&self) -> i32 {
        (self.stack.len() * BPF_REG_SIZE) as i32
    }

    /// `grow_stack_state`: make room down to `fp + off` (off < 0).
    pub fn grow_stack(&mut self, off: i32) {
        let need = (-(off as i64)).max(0) as usize;
        let slots = need.div_ceil(BPF_REG_SIZE);
        if slots > self.stack.len() {
            self.stack.resize(slots, StackSlot::invalid());
        }
    }
}

/// Kinds of acquired references (`enum ref_state_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// A pointer (ringbuf record, socket) that must be released.
    Ptr,
    /// A held bpf_spin_lock.
    Lock,
}

/// `struct bpf_reference_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefState {
    pub kind: RefKind,
    pub id: u32,
    /// The instruction that acquired it (`alloc_insn=`).
    pub insn_idx: usize,
    /// Lock: the map and the map value's id (the kernel's `ptr`).
    pub lock_map: Option<MapRef>,
}

/// `struct bpf_verifier_state`: the state of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierState {
    pub frames: Vec<FuncState>,
    pub refs: Vec<RefState>,
    /// Index in the explored-state arena of the checkpoint this path came from.
    pub parent: Option<usize>,
    /// Instruction this state was taken at (for stored states).
    pub insn_idx: usize,
    /// The instruction this path's segment began at: its parent checkpoint's
    /// `insn_idx` (`first_insn_idx`).
    pub first_insn_idx: usize,
    /// Stored states: the instruction processed just before this checkpoint
    /// (`last_insn_idx`).
    pub last_insn_idx: usize,
    /// Jumps and stack spills/fills since `first_insn_idx` (the kernel's jump
    /// history), for precision backtracking.
    pub jmp_history: Vec<super::precision::HistEntry>,
    /// Per frame: stack slots written whole since `first_insn_idx`
    /// (REG_LIVE_WRITTEN): a read of them does not depend on the checkpoints
    /// above. A frame called into in the segment is all written.
    pub stack_written: [u64; MAX_CALL_FRAMES],
}

impl VerifierState {
    /// A path's first state: the given frames, no references, no history.
    pub fn new(frames: Vec<FuncState>) -> VerifierState {
        VerifierState {
            frames,
            refs: Vec::new(),
            parent: None,
            insn_idx: 0,
            first_insn_idx: 0,
            last_insn_idx: 0,
            jmp_history: Vec::new(),
            stack_written: [0; MAX_CALL_FRAMES],
        }
    }

    pub fn cur(&self) -> &FuncState {
        // A state always has at least its main frame.
        self.frames.last().expect("a verifier state has a frame")
    }

    pub fn cur_mut(&mut self) -> &mut FuncState {
        self.frames
            .last_mut()
            .expect("a verifier state has a frame")
    }

    /// A hash of the current frame's registers: states whose hashes differ cannot
    /// be identical (the cheap test before states_maybe_looping's comparison).
    pub fn regs_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = FxHasher(0);
        self.frames.len().hash(&mut h);
        if let Some(f) = self.frames.last() {
            f.regs.hash(&mut h);
        }
        h.finish()
    }

    pub fn curframe(&self) -> usize {
        self.frames.len().saturating_sub(1)
    }

    /// `active_lock`: whether a bpf_spin_lock is held.
    pub fn active_lock(&self) -> Option<&RefState> {
        self.refs.iter().find(|r| r.kind == RefKind::Lock)
    }

    /// Every register and spilled register of every frame (`bpf_for_each_reg_in_vstate`).
    pub fn for_each_reg(&mut self, mut f: impl FnMut(&mut Reg)) {
        for fr in &mut self.frames {
            for r in fr.regs.iter_mut() {
                f(r);
            }
            for s in fr.stack.iter_mut() {
                if s.is_spilled_reg() {
                    f(&mut s.spilled);
                }
            }
        }
    }
}

/// A fast non-cryptographic hasher (rustc's FxHash) for state fingerprints.
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
