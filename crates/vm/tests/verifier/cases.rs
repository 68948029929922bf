//! Hand-assembled programs, one per class of refusal the kernel's verifier knows,
//! with the errno and message the kernel (6.18) prints for them.

#![allow(dead_code)]

use std::sync::Arc;

use skiff_maps::{Map, MapType};
use skiff_object::ProgType;

use super::common::map;

pub const EACCES: i32 = 13;
pub const EINVAL: i32 = 22;
pub const E2BIG: i32 = 7;

pub struct Case {
    pub name: &'static str,
    pub prog_type: ProgType,
    /// Map types of the program's maps: (type, key size, value size, entries).
    pub maps: &'static [(MapType, u32, u32, u32)],
    pub asm: &'static str,
    pub errno: i32,
    pub message: &'static str,
}

impl Case {
    pub fn maps(&self) -> Vec<Arc<Map>> {
        self.maps
            .iter()
            .map(|&(t, k, v, n)| map(t, k, v, n))
            .collect()
    }
}

const ARRAY8: &[(MapType, u32, u32, u32)] = &[(MapType::Array, 4, 8, 1)];
const HASH8: &[(MapType, u32, u32, u32)] = &[(MapType::Hash, 4, 8, 16)];
const RINGBUF: &[(MapType, u32, u32, u32)] = &[(MapType::Ringbuf, 0, 0, 4096)];

/// A lookup of key 0 in map 0, result in r0.
macro_rules! lookup {
    () => {
        "stw [%r10-4], 0\n\
         mov %r2, %r10\n\
         add %r2, -4\n\
         ldmap %r1, 0\n\
         call 1\n"
    };
}

pub const CASES: &[Case] = &[
    Case {
        // xdp-tutorial packet01-parsing's skeleton: reads the EtherType without
        // comparing with data_end.
        name: "packet_no_bounds_check",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r2, [%r1+0]\n\
              ldxw %r3, [%r1+4]\n\
              ldxb %r3, [%r2+12]\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)\nR2 offset is outside of the packet",
    },
    Case {
        // xdp-tutorial experiment01's xdp_prog_fail1/3 shape: one byte before data.
        name: "packet_before_data",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r2, [%r1+0]\n\
              ldxw %r3, [%r1+4]\n\
              mov %r4, %r2\n\
              add %r4, 14\n\
              jgt %r4, %r3, drop\n\
              ldxb %r0, [%r2-1]\n\
              mov %r0, 2\n\
              exit\n\
              drop:\n\
              mov %r0, 1\n\
              exit",
        errno: EACCES,
        message: "invalid access to packet, off=-1 size=1, R2(id=0,off=-1,r=14)\nR2 offset is outside of the packet",
    },
    Case {
        name: "packet_past_range",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r2, [%r1+0]\n\
              ldxw %r3, [%r1+4]\n\
              mov %r4, %r2\n\
              add %r4, 14\n\
              jgt %r4, %r3, drop\n\
              ldxh %r0, [%r2+13]\n\
              mov %r0, 2\n\
              exit\n\
              drop:\n\
              mov %r0, 1\n\
              exit",
        errno: EACCES,
        message: "invalid access to packet, off=13 size=2, R2(id=0,off=13,r=14)\nR2 offset is outside of the packet",
    },
    Case {
        // experiment01 xdp_prog_fail2: dereferences data_end.
        name: "pkt_end_deref",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r1, [%r1+4]\n\
              ldxb %r0, [%r1+0]\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R1 invalid mem access 'pkt_end'",
    },
    Case {
        name: "scalar_deref",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r1, 5\n\
              ldxb %r0, [%r1+0]\n\
              exit",
        errno: EACCES,
        message: "R1 invalid mem access 'scalar'",
    },
    Case {
        name: "map_value_or_null_deref",
        prog_type: ProgType::Xdp,
        maps: HASH8,
        asm: concat!(lookup!(), "ldxw %r0, [%r0+0]\nexit"),
        errno: EACCES,
        message: "R0 invalid mem access 'map_value_or_null'",
    },
    Case {
        name: "map_value_out_of_bounds",
        prog_type: ProgType::Xdp,
        maps: ARRAY8,
        asm: concat!(
            lookup!(),
            "jeq %r0, 0, out\n\
             ldxw %r0, [%r0+8]\n\
             out:\n\
             mov %r0, 2\n\
             exit"
        ),
        errno: EACCES,
        message: "invalid access to map value, value_size=8 off=8 size=4\nR0 min value is outside of the allowed memory range",
    },
    Case {
        name: "map_value_unbounded_index",
        prog_type: ProgType::Xdp,
        maps: ARRAY8,
        asm: concat!(
            lookup!(),
            "jeq %r0, 0, out\n\
             ldxw %r1, [%r0+0]\n\
             add %r0, %r1\n\
             ldxb %r0, [%r0+0]\n\
             out:\n\
             mov %r0, 2\n\
             exit"
        ),
        errno: EACCES,
        message: "R0 unbounded memory access, make sure to bounds check any such access",
    },
    Case {
        name: "uninit_register",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r0, %r2\n\
              exit",
        errno: EACCES,
        message: "R2 !read_ok",
    },
    Case {
        name: "uninit_r0_at_exit",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "exit",
        errno: EACCES,
        message: "R0 !read_ok",
    },
    Case {
        name: "stack_out_of_bounds",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r1, 0\n\
              stxdw [%r10-520], %r1\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "invalid write to stack R10 off=-520 size=8",
    },
    Case {
        name: "stack_misaligned",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r1, 0\n\
              stxdw [%r10-4], %r1\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "misaligned stack access off 0+0+-4 size 8",
    },
    Case {
        name: "frame_pointer_write",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r10, 0\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "frame pointer is read only",
    },
    Case {
        name: "infinite_loop",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r0, 0\n\
              loop:\n\
              add %r0, 0\n\
              ja loop",
        errno: EINVAL,
        message: "infinite loop detected at insn 1\ncur state: R0=0 R1=ctx() R10=fp0\nold state: R0=0 R1=ctx() R10=fp0",
    },
    Case {
        name: "unbounded_loop_too_large",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r0, 0\n\
              loop:\n\
              add %r0, 1\n\
              jne %r0, 0, loop\n\
              exit",
        errno: E2BIG,
        message: "BPF program is too large. Processed 1000001 insn",
    },
    Case {
        name: "unreleased_ringbuf_reference",
        prog_type: ProgType::Xdp,
        maps: RINGBUF,
        asm: "ldmap %r1, 0\n\
              mov %r2, 8\n\
              mov %r3, 0\n\
              call 131\n\
              mov %r0, 2\n\
              exit",
        errno: EINVAL,
        message: "Unreleased reference id=2 alloc_insn=4\nBPF_EXIT instruction in main prog would lead to reference leak",
    },
    Case {
        name: "ringbuf_record_out_of_bounds",
        prog_type: ProgType::Xdp,
        maps: RINGBUF,
        asm: "ldmap %r1, 0\n\
              mov %r2, 8\n\
              mov %r3, 0\n\
              call 131\n\
              jeq %r0, 0, out\n\
              stdw [%r0+4], 1\n\
              mov %r1, %r0\n\
              mov %r2, 0\n\
              call 132\n\
              out:\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "invalid access to memory, mem_size=8 off=4 size=8\nR0 min value is outside of the allowed memory range",
    },
    Case {
        name: "helper_arg_type",
        prog_type: ProgType::Xdp,
        maps: HASH8,
        asm: "ldmap %r1, 0\n\
              mov %r2, 0\n\
              mov %r3, 0\n\
              mov %r4, 0\n\
              call 2\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R2 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_",
    },
    Case {
        name: "helper_map_arg_not_map",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r2, %r10\n\
              add %r2, -8\n\
              stdw [%r10-8], 0\n\
              call 1\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R1 type=ctx expected=map_ptr",
    },
    Case {
        name: "unknown_helper",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "call 999\n\
              mov %r0, 2\n\
              exit",
        errno: EINVAL,
        message: "invalid func unknown#999",
    },
    Case {
        name: "helper_of_other_program_type",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r2, 0\n\
              call 18\n\
              mov %r0, 2\n\
              exit",
        errno: EINVAL,
        message: "program of this type cannot use helper bpf_skb_vlan_push#18",
    },
    Case {
        name: "pkt_end_arithmetic",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r3, [%r1+4]\n\
              add %r3, 1\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R3 pointer arithmetic on pkt_end prohibited",
    },
    Case {
        name: "pointer_bitwise",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r2, [%r1+0]\n\
              and %r2, 255\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R2 bitwise operator &= on pointer prohibited",
    },
    Case {
        name: "pkt_math_unbounded_min",
        prog_type: ProgType::Xdp,
        maps: ARRAY8,
        asm: concat!(
            "mov %r6, %r1\n",
            lookup!(),
            "jeq %r0, 0, out\n\
             ldxdw %r5, [%r0+0]\n\
             ldxw %r2, [%r6+0]\n\
             add %r2, %r5\n\
             out:\n\
             mov %r0, 2\n\
             exit"
        ),
        errno: EINVAL,
        message: "math between pkt pointer and register with unbounded min value is not allowed",
    },
    Case {
        name: "ctx_write_read_only_field",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r2, 0\n\
              stxw [%r1+0], %r2\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "invalid bpf_context access off=0 size=4",
    },
    Case {
        name: "skb_write_read_only_field",
        prog_type: ProgType::SchedCls,
        maps: &[],
        asm: "mov %r2, 0\n\
              stxw [%r1+0], %r2\n\
              mov %r0, 0\n\
              exit",
        errno: EACCES,
        message: "invalid bpf_context access off=0 size=4",
    },
    Case {
        name: "callback_return_value",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r1, 4\n\
              ldfunc %r2, 8\n\
              mov %r3, 0\n\
              mov %r4, 0\n\
              call 181\n\
              mov %r0, 2\n\
              exit\n\
              cb:\n\
              mov %r0, 2\n\
              exit",
        errno: EINVAL,
        message: "At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]",
    },
    Case {
        name: "ringbuf_submit_twice",
        prog_type: ProgType::Xdp,
        maps: RINGBUF,
        asm: "ldmap %r1, 0\n\
              mov %r2, 8\n\
              mov %r3, 0\n\
              call 131\n\
              jeq %r0, 0, out\n\
              mov %r6, %r0\n\
              mov %r1, %r6\n\
              mov %r2, 0\n\
              call 132\n\
              mov %r1, %r6\n\
              mov %r2, 0\n\
              call 132\n\
              out:\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R1 type=scalar expected=ringbuf_mem",
    },
    Case {
        name: "ringbuf_submit_unreferenced",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r1, %r10\n\
              add %r1, -8\n\
              mov %r2, 0\n\
              call 132\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R1 type=fp expected=ringbuf_mem",
    },
    Case {
        name: "modified_ctx_deref",
        prog_type: ProgType::SchedCls,
        maps: &[],
        asm: "add %r1, 4\n\
              ldxw %r0, [%r1+0]\n\
              exit",
        errno: EACCES,
        message: "dereference of modified ctx ptr R1 off=4 disallowed",
    },
    Case {
        name: "return_stack_pointer",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "call local sub\n\
              mov %r0, 2\n\
              exit\n\
              sub:\n\
              mov %r0, %r10\n\
              exit",
        errno: EINVAL,
        message: "cannot return stack pointer to the caller",
    },
    Case {
        name: "pointer_comparison_null_arith",
        prog_type: ProgType::Xdp,
        maps: HASH8,
        asm: concat!(lookup!(), "add %r0, 4\nmov %r0, 2\nexit"),
        errno: EACCES,
        message: "R0 pointer arithmetic on map_value_or_null prohibited, null-check it first",
    },
    Case {
        name: "div_by_zero_imm",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r0, 2\n\
              div %r0, 0\n\
              exit",
        errno: EINVAL,
        message: "div by zero",
    },
    Case {
        name: "helper_size_unbounded",
        prog_type: ProgType::Xdp,
        maps: ARRAY8,
        asm: concat!(
            "mov %r6, %r1\n",
            lookup!(),
            "jeq %r0, 0, out\n\
             ldxw %r4, [%r0+0]\n\
             or %r4, 1\n\
             mov %r1, %r6\n\
             mov %r2, 0\n\
             mov %r3, %r10\n\
             add %r3, -16\n\
             call 189\n\
             out:\n\
             mov %r0, 2\n\
             exit"
        ),
        errno: EACCES,
        message: "R4 unbounded memory access, use 'var &= const' or 'if (var < const)'",
    },
    Case {
        name: "helper_size_zero",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r2, 0\n\
              mov %r3, %r10\n\
              add %r3, -16\n\
              mov %r4, 0\n\
              call 189\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "R4 invalid zero-sized read: u64=[0,0]",
    },
    Case {
        name: "helper_stack_out_of_frame",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r2, 0\n\
              mov %r3, %r10\n\
              add %r3, -8\n\
              mov %r4, 16\n\
              call 189\n\
              mov %r0, 2\n\
              exit",
        errno: EINVAL,
        message: "invalid write to stack R3 off=-8 size=16",
    },
    Case {
        // Past the check the pointer is at or beyond data_end (mark_pkt_end).
        name: "packet_at_end",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "ldxw %r2, [%r1+0]\n\
              ldxw %r3, [%r1+4]\n\
              mov %r4, %r2\n\
              add %r4, 14\n\
              jge %r4, %r3, past\n\
              mov %r0, 2\n\
              exit\n\
              past:\n\
              ldxb %r0, [%r4+0]\n\
              exit",
        errno: EINVAL,
        message: "R4 offset is outside of the packet",
    },
    Case {
        // Precision tracking: r7 is 0 on the path explored first and 1 on the
        // other. The decided `jeq %r7, 0` makes r7 precise in the checkpoint at
        // `join`, so the second path is not pruned there (as it would be with
        // r7 imprecise) and reaches the read below the frame.
        name: "precise_scalar_blocks_pruning",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "call 7\n\
              mov %r6, %r0\n\
              ja a\n\
              a:\n\
              ja b\n\
              b:\n\
              ja c\n\
              c:\n\
              mov %r8, 0\n\
              mov %r8, 0\n\
              mov %r8, 0\n\
              mov %r7, 1\n\
              jgt %r6, 5, join\n\
              mov %r7, 0\n\
              join:\n\
              mov %r0, 0\n\
              jeq %r7, 0, ok\n\
              ldxdw %r0, [%r10-520]\n\
              ok:\n\
              mov %r0, 2\n\
              exit",
        errno: EACCES,
        message: "invalid read from stack R10 off=-520 size=8",
    },
    Case {
        // A recursion bounded at run time: check_max_stack_depth follows every
        // call of the call graph and runs out of frames.
        name: "bounded_recursion",
        prog_type: ProgType::Xdp,
        maps: &[],
        asm: "mov %r1, 0\n\
              call local sub\n\
              exit\n\
              sub:\n\
              add %r1, 1\n\
              mov %r0, %r1\n\
              jlt %r1, 4, again\n\
              exit\n\
              again:\n\
              call local sub\n\
              exit",
        errno: E2BIG,
        message: "the call stack of 8 frames is too deep !",
    },
    Case {
        // A packet pointer found at or beyond data_end, moved back by a
        // constant: no longer known to be there, so the comparison that
        // follows is not decided and the access is checked (the kernel
        // selftest verifier_direct_packet_access/pkt_range_clear_after_sub).
        name: "pkt_end_mark_cleared_by_constant",
        prog_type: ProgType::SchedCls,
        maps: &[],
        asm: "ldxw %r9, [%r1+76]\n\
              ldxw %r8, [%r1+80]\n\
              add %r9, 256\n\
              jge %r9, %r8, l0\n\
              mov %r0, 0\n\
              exit\n\
              l0:\n\
              sub %r9, 256\n\
              jlt %r9, %r8, l1\n\
              mov %r0, 0\n\
              exit\n\
              l1:\n\
              ldxb %r0, [%r9+0]\n\
              mov %r0, 0\n\
              exit",
        errno: EACCES,
        message: "invalid access to packet, off=0 size=1, R9(id=0,off=0,r=0)\nR9 offset is outside of the packet",
    },
    Case {
        // An atomic add at a misaligned map value offset: atomics are checked
        // with strict alignment (check_atomic's strict_alignment_once).
        name: "atomic_misaligned_map_value",
        prog_type: ProgType::Xdp,
        maps: ARRAY8,
        asm: concat!(
            lookup!(),
            "jeq %r0, 0, out\n\
             mov %r1, 1\n\
             lock add32 [%r0+3], %r1\n\
             out:\n\
             mov %r0, 2\n\
             exit"
        ),
        errno: EACCES,
        message: "misaligned value access off 0+0+3 size 4",
    },
];

/// Refused by skiff, accepted by the kernel (docs/differences.md): skiff does not
/// unroll callback runs, so what a callback writes through its context is unknown
/// after the call; the kernel runs this 4-iteration bpf_loop callback 4 times.
pub const CALLBACK_COUNTER: Case = Case {
    // The callback may run many times: what it writes through its context
    // is unknown after the call.
    name: "callback_written_counter_as_offset",
    prog_type: ProgType::Xdp,
    maps: ARRAY8,
    asm: "stdw [%r10-8], 0\n\
              mov %r1, 4\n\
              ldfunc %r2, 20\n\
              mov %r3, %r10\n\
              add %r3, -8\n\
              mov %r4, 0\n\
              call 181\n\
              stw [%r10-12], 0\n\
              mov %r2, %r10\n\
              add %r2, -12\n\
              ldmap %r1, 0\n\
              call 1\n\
              jeq %r0, 0, out\n\
              ldxdw %r1, [%r10-8]\n\
              add %r0, %r1\n\
              ldxb %r0, [%r0+0]\n\
              out:\n\
              mov %r0, 2\n\
              exit\n\
              ldxdw %r1, [%r2+0]\n\
              add %r1, 1\n\
              stxdw [%r2+0], %r1\n\
              mov %r0, 0\n\
              exit",
    errno: EINVAL,
    message: "math between map_value pointer and register with unbounded min value is not allowed",
};
