//! Helper prototypes: the kernel's `struct bpf_func_proto` (include/linux/bpf.h),
//! what the verifier checks a helper call against. Each row of the helper table
//! carries one, so the verifier, the JIT and `skiff prog verify` read the same facts.

/// `enum bpf_arg_type` (base type plus the flags the kernel ORs in). Variants are
/// named as the kernel names them without the `ARG_` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// ARG_DONTCARE: the argument is not used.
    DontCare,
    /// ARG_CONST_MAP_PTR: a map pointer from ld_imm64.
    ConstMapPtr,
    /// ARG_PTR_TO_MAP_KEY: key_size readable bytes (stack, map value, packet).
    PtrToMapKey,
    /// ARG_PTR_TO_MAP_VALUE: value_size readable bytes.
    PtrToMapValue,
    /// ARG_PTR_TO_MAP_VALUE | MEM_UNINIT: value_size writable bytes (pop/peek).
    PtrToUninitMapValue,
    /// ARG_PTR_TO_MEM (| PTR_MAYBE_NULL when `maybe_null`, | MEM_RDONLY when
    /// `rdonly`): readable memory whose size is the next argument.
    PtrToMem { maybe_null: bool, rdonly: bool },
    /// ARG_PTR_TO_MEM | MEM_UNINIT (ARG_PTR_TO_UNINIT_MEM): memory the helper writes,
    /// sized by the next argument.
    PtrToUninitMem,
    /// ARG_PTR_TO_FIXED_SIZE_MEM: memory of a size fixed in the prototype.
    PtrToFixedSizeMem {
        size: u32,
        rdonly: bool,
        uninit: bool,
    },
    /// ARG_CONST_SIZE: the size of the previous memory argument, > 0.
    ConstSize,
    /// ARG_CONST_SIZE_OR_ZERO.
    ConstSizeOrZero,
    /// ARG_CONST_ALLOC_SIZE_OR_ZERO (ringbuf_reserve's size): a constant.
    ConstAllocSizeOrZero,
    /// ARG_PTR_TO_CTX.
    PtrToCtx,
    /// ARG_PTR_TO_CTX_OR_NULL.
    PtrToCtxOrNull,
    /// ARG_ANYTHING: any initialised value.
    Anything,
    /// ARG_PTR_TO_SPIN_LOCK: a `struct bpf_spin_lock` inside a map value.
    PtrToSpinLock,
    /// ARG_PTR_TO_SOCK_COMMON.
    PtrToSockCommon,
    /// ARG_PTR_TO_SOCKET (| PTR_MAYBE_NULL).
    PtrToSocket { maybe_null: bool },
    /// ARG_PTR_TO_BTF_ID_SOCK_COMMON.
    PtrToBtfIdSockCommon,
    /// ARG_PTR_TO_LONG: 8 writable bytes.
    PtrToLong,
    /// ARG_PTR_TO_INT: 4 writable bytes.
    PtrToInt,
    /// ARG_PTR_TO_CONST_STR: a NUL-terminated string in a read-only map value.
    PtrToConstStr,
    /// ARG_PTR_TO_FUNC: a callback (ld_imm64 BPF_PSEUDO_FUNC).
    PtrToFunc,
    /// ARG_PTR_TO_STACK_OR_NULL: callback context.
    PtrToStackOrNull,
    /// ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE: memory from ringbuf_reserve, released.
    PtrToAllocMemRelease,
    /// ARG_PTR_TO_DYNPTR.
    PtrToDynptr,
    /// ARG_PTR_TO_TIMER.
    PtrToTimer,
    /// ARG_PTR_TO_KPTR.
    PtrToKptr,
}

/// `enum bpf_return_type` (base type plus flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetType {
    /// RET_INTEGER: an unknown scalar.
    Integer,
    /// RET_VOID.
    Void,
    /// RET_PTR_TO_MAP_VALUE_OR_NULL (map_lookup_elem).
    PtrToMapValueOrNull,
    /// RET_PTR_TO_MAP_VALUE (no null check needed).
    PtrToMapValue,
    /// RET_PTR_TO_SOCKET_OR_NULL (acquires a reference).
    PtrToSocketOrNull,
    /// RET_PTR_TO_TCP_SOCK_OR_NULL.
    PtrToTcpSockOrNull,
    /// RET_PTR_TO_SOCK_COMMON_OR_NULL.
    PtrToSockCommonOrNull,
    /// RET_PTR_TO_RINGBUF_MEM_OR_NULL: memory sized by the constant size argument,
    /// a reference the program must release (ringbuf_submit/discard).
    PtrToAllocMemOrNull,
    /// RET_PTR_TO_MEM_OR_BTF_ID (| PTR_MAYBE_NULL).
    PtrToMemOrBtfId { maybe_null: bool },
    /// RET_PTR_TO_BTF_ID_OR_NULL.
    PtrToBtfIdOrNull,
}

/// `struct bpf_func_proto`: what a helper takes and returns, and what calling it
/// does to the verifier's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelperProto {
    pub ret: RetType,
    pub args: [ArgType; 5],
    /// `bpf_helper_changes_pkt_data`: after the call every packet pointer is
    /// invalid (the kernel's clear_all_pkt_pointers), and the engines must reload
    /// the packet bounds.
    pub changes_pkt_data: bool,
    /// `pkt_access`: memory arguments may point into the packet.
    pub pkt_access: bool,
    /// `gpl_only`: callable only from GPL-compatible programs.
    pub gpl_only: bool,
    /// `might_sleep` (sleepable programs only).
    pub might_sleep: bool,
    /// Declared: false for a row whose prototype has not been written down; the
    /// verifier refuses a call to it ("not supported: no prototype for helper").
    pub declared: bool,
}

impl HelperProto {
    /// A row without a prototype yet.
    pub const UNDECLARED: HelperProto = HelperProto {
        ret: RetType::Integer,
        args: [ArgType::DontCare; 5],
        changes_pkt_data: false,
        pkt_access: false,
        gpl_only: false,
        might_sleep: false,
        declared: false,
    };

    /// A declared prototype returning `ret` with `args` (the rest DONTCARE).
    pub const fn new(ret: RetType, args: &[ArgType]) -> HelperProto {
        let mut a = [ArgType::DontCare; 5];
        let mut i = 0;
        while i < args.len() && i < 5 {
            a[i] = args[i];
            i += 1;
        }
        HelperProto {
            ret,
            args: a,
            changes_pkt_data: false,
            pkt_access: false,
            gpl_only: false,
            might_sleep: false,
            declared: true,
        }
    }

    /// What a call may change that an engine caches: (packet bounds, context
    /// fields). The packet when the helper changes packet data (the kernel's
    /// bpf_helper_changes_pkt_data), calls back into the program, or has no
    /// prototype; context fields then too, and when it is given the context
    /// (only then can it change a field).
    pub fn invalidates(&self) -> (bool, bool) {
        let unknown = !self.declared || self.args.contains(&ArgType::PtrToFunc);
        let pkt = unknown || self.changes_pkt_data;
        let ctx = pkt
            || self
                .args
                .iter()
                .any(|a| matches!(a, ArgType::PtrToCtx | ArgType::PtrToCtxOrNull));
        (pkt, ctx)
    }

    pub const fn changes_pkt_data(mut self) -> HelperProto {
        self.changes_pkt_data = true;
        self
    }

    pub const fn pkt_access(mut self) -> HelperProto {
        self.pkt_access = true;
        self
    }

    pub const fn gpl_only(mut self) -> HelperProto {
        self.gpl_only = true;
        self
    }
}
