//! The verifier refuses what the kernel refuses, with the kernel's errno and
//! message: one hand-assembled program per class of refusal (`verifier/cases.rs`),
//! checked against skiff and, as root, against the running kernel.

#[path = "verifier/cases.rs"]
mod cases;
#[path = "verifier/common.rs"]
mod common;

use cases::CASES;
use common::{asm, verify_with};

#[test]
fn each_class_of_refusal_has_the_kernels_message() {
    let mut failures = Vec::new();
    for c in CASES {
        let insns = asm(c.asm);
        let maps = c.maps();
        match verify_with(&insns, c.prog_type, &maps) {
            Ok(v) => failures.push(format!(
                "{}: accepted ({} insns processed)",
                c.name, v.insns_processed
            )),
            Err(e) if e.errno != c.errno || e.message != c.message => failures.push(format!(
                "{}: got errno {} `{}`, want errno {} `{}`\n{}",
                c.name, e.errno, e.message, c.errno, c.message, e.log
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The message lines of a kernel verifier log: the `n` lines before the
/// `processed N insns` summary.
fn kernel_message(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let end = lines
        .iter()
        .rposition(|l| l.starts_with("processed "))
        .unwrap_or(lines.len());
    lines[end.saturating_sub(n)..end].join("\n")
}

fn kernel_object(c: &cases::Case) -> skiff_object::Object {
    let maps = c
        .maps
        .iter()
        .enumerate()
        .map(|(i, &(t, k, v, n))| skiff_object::MapSpec {
            name: format!("m{i}"),
            map_type: t.kernel_id(),
            key_size: k,
            value_size: v,
            max_entries: n,
            map_flags: 0,
            pinning: 0,
            inner: None,
            initial_data: None,
            slots: Vec::new(),
            origin: skiff_object::MapOrigin::Legacy,
            map_extra: 0,
            numa_node: 0,
        })
        .collect();
    skiff_object::Object {
        license: "GPL".into(),
        programs: vec![skiff_object::Program {
            name: c.name.into(),
            section: "xdp".into(),
            prog_type: c.prog_type,
            expected_attach_type: None,
            frags: false,
            insns: asm(c.asm),
            lines: Vec::new(),
            funcs: Vec::new(),
        }],
        maps,
        skipped: Vec::new(),
    }
}

/// The running kernel refuses each case with the errno and message skiff gives.
#[test]
fn the_kernel_agrees_on_each_refusal() {
    if let Err(r) = skiff_kernel::available() {
        eprintln!("skipping the kernel comparison: {r}");
        return;
    }
    let mut failures = Vec::new();
    for c in CASES {
        match skiff_kernel::KernelObject::load(&kernel_object(c)) {
            Ok(_) => failures.push(format!("{}: the kernel accepted it", c.name)),
            Err(skiff_kernel::KernelError::ProgLoad { errno, log, .. }) => {
                let n = c.message.lines().count().max(1);
                let msg = kernel_message(&log, n);
                if errno != c.errno || msg != c.message {
                    failures.push(format!(
                        "{}: kernel errno {errno} `{msg}`, case says errno {} `{}`\n{log}",
                        c.name, c.errno, c.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// What the verifier hands the engines: per instruction, reached or not, the
/// pointer kind of each memory access, bounded loops, constant maps.
#[test]
fn insn_aux_records_what_was_proved() {
    use skiff_maps::MapType;
    use skiff_vm::verifier::{InsnAux, MemKind};
    let maps = vec![
        common::map(MapType::Array, 4, 8, 4),
        common::map(MapType::Hash, 4, 8, 4),
    ];
    // 0..1: ctx loads; 2..5: bounds check; 6: packet load; 7..12: array lookup
    // (10..11 the ld_imm64); 13: null check; 14: map value store; 15..18: a
    // bounded loop; 19..20: exit.
    let insns = asm("ldxw %r2, [%r1+0]\n\
                     ldxw %r3, [%r1+4]\n\
                     mov %r4, %r2\n\
                     add %r4, 14\n\
                     jgt %r4, %r3, out\n\
                     ja +0\n\
                     ldxb %r5, [%r2+12]\n\
                     stw [%r10-4], 0\n\
                     mov %r2, %r10\n\
                     add %r2, -4\n\
                     ldmap %r1, 0\n\
                     call 1\n\
                     jeq %r0, 0, out\n\
                     stdw [%r0+0], 1\n\
                     mov %r6, 0\n\
                     loop:\n\
                     add %r6, 1\n\
                     jlt %r6, 4, loop\n\
                     ja out\n\
                     out:\n\
                     mov %r0, 2\n\
                     exit");
    let v = common::verify_xdp(&insns, &maps).unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    let mem = |k| InsnAux {
        seen: true,
        mem: Some(k),
        ..InsnAux::default()
    };
    let seen = InsnAux {
        seen: true,
        ..InsnAux::default()
    };
    let mut want = vec![seen; insns.len()];
    want[0] = mem(MemKind::Ctx);
    want[1] = mem(MemKind::Ctx);
    want[6] = mem(MemKind::Packet);
    want[7] = mem(MemKind::Stack);
    want[12] = InsnAux {
        seen: true,
        const_map: Some(0),
        ..InsnAux::default()
    };
    want[14] = mem(MemKind::MapValue { map: 0 });
    want[17] = InsnAux {
        seen: true,
        bounded_loop: true,
        ..InsnAux::default()
    };
    // The second slot of ld_imm64 is never an instruction of its own.
    want[11] = InsnAux::default();
    assert_eq!(v.aux, want);
}

#[test]
fn unprivileged_loading_is_refused_as_the_kernel_does() {
    let helpers = skiff_net::helper_table();
    let opts = skiff_vm::verifier::VerifyOptions {
        prog_type: skiff_object::ProgType::Xdp,
        name: "t",
        maps: &[],
        helpers: &helpers,
        privileged: false,
        kernel: skiff_vm::verifier::KernelVersion::LATEST,
        gpl: true,
        lines: None,
    };
    let e = skiff_vm::verifier::verify(&asm("mov %r0, 2\nexit"), &opts).unwrap_err();
    assert_eq!(e.errno, 1);
}

/// A callback's writes through its stack context are unknown after the call
/// (skiff verifies one run and covers the others by forgetting the stack; the
/// kernel unrolls the 4 runs and accepts: a documented difference).
#[test]
fn callback_writes_are_unknown_after_the_call() {
    let c = &cases::CALLBACK_COUNTER;
    let e = verify_with(&asm(c.asm), c.prog_type, &c.maps()).unwrap_err();
    assert_eq!((e.errno, e.message.as_str()), (c.errno, c.message));
}

/// Each reached helper call, with what it may change (the prototype's
/// `invalidates`), for the JIT to decide at compile time.
#[test]
fn helper_sites_say_what_each_call_changes() {
    use skiff_vm::verifier::HelperSite;
    // 1: bpf_ktime_get_ns (nothing); 4: bpf_xdp_adjust_head (the packet and
    // the context); 6: bpf_xdp_get_buff_len (given the context only).
    let insns = asm("mov %r6, %r1\n\
                     call 5\n\
                     mov %r1, %r6\n\
                     mov %r2, 0\n\
                     call 44\n\
                     mov %r1, %r6\n\
                     call 188\n\
                     mov %r0, 2\n\
                     exit");
    let v = common::verify_xdp(&insns, &[]).unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    let table = skiff_net::helper_table();
    let facts = |s: &HelperSite| {
        let insn = insns[s.pc];
        // The function the JIT calls is the table's for the call's id.
        let func = table.get(insn.imm as u32).map(|d| d.func as usize);
        assert_eq!(s.func.map(|f| f as usize), func, "insn {}", s.pc);
        assert!(s.map_op.is_none(), "insn {}", s.pc);
        (s.pc, s.changes_pkt, s.changes_ctx, s.ret_scalar)
    };
    assert_eq!(
        v.helper_sites.iter().map(facts).collect::<Vec<_>>(),
        vec![
            (1, false, false, true),
            (4, true, true, true),
            (6, false, true, true)
        ]
    );
}

/// `n` diamonds, each shifting a random bit into r7, then r7 returned: r7 is
/// live to the end but nothing decides on its value.
fn imprecise_diamonds(n: usize) -> String {
    let mut text = String::from("mov %r7, 0\n");
    for k in 0..n {
        text.push_str(&format!(
            "call 7\nlsh %r7, 1\njgt %r0, 5, l{k}\nor %r7, 1\nl{k}:\n"
        ));
    }
    text.push_str("mov %r0, %r7\nexit");
    text
}

/// Precision tracking: an imprecise scalar does not keep states apart, so the
/// 2^22 paths of 22 diamonds collapse at each join (kernel/bpf/verifier.c:
/// regsafe, `!rold->precise`). The running kernel (6.18.44, root, the same
/// instructions from clang's inline asm) processes 196 instructions; without
/// precision tracking skiff ran into the 1M limit.
#[test]
fn imprecise_scalars_do_not_keep_states_apart() {
    const KERNEL_PROCESSED: u64 = 196;
    let insns = asm(&imprecise_diamonds(22));
    let v = common::verify_xdp(&insns, &[]).unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    assert!(
        v.insns_processed <= 2 * KERNEL_PROCESSED,
        "{} processed, the kernel {KERNEL_PROCESSED}",
        v.insns_processed
    );
}

/// `n` diamonds, each spilling a pointer (one way) or a scalar (the other)
/// into a stack slot of its own that nothing reads afterwards.
fn dead_slot_diamonds(n: usize) -> String {
    let mut text = String::new();
    for k in 0..n {
        let off = 8 * (k + 1);
        text.push_str(&format!(
            "call 7\njgt %r0, 5, l{k}\nstxdw [%r10-{off}], %r10\nja m{k}\n\
             l{k}:\nstxdw [%r10-{off}], %r0\nm{k}:\n"
        ));
    }
    text.push_str("mov %r0, 2\nexit");
    text
}

/// Stack liveness: a slot no path below a state reads does not keep states
/// apart, whatever it holds, so 22 slots holding a pointer or a scalar do not
/// make 2^22 states. The running kernel (6.18.44, root, the same instructions)
/// processes 200 instructions.
#[test]
fn stack_slots_nothing_reads_do_not_keep_states_apart() {
    const KERNEL_PROCESSED: u64 = 200;
    let insns = asm(&dead_slot_diamonds(22));
    let v = common::verify_xdp(&insns, &[]).unwrap_or_else(|e| panic!("{e}\n{}", e.log));
    assert!(
        v.insns_processed <= 2 * KERNEL_PROCESSED,
        "{} processed, the kernel {KERNEL_PROCESSED}",
        v.insns_processed
    );
}

/// A program may not read a map created with BPF_F_WRONLY_PROG
/// (kernel/bpf/verifier.c: check_map_access_type).
#[test]
fn write_only_maps_refuse_reads() {
    let mut attr = skiff_maps::MapAttr::new(skiff_maps::MapType::Array, 4, 8, 1);
    attr.map_flags = 1 << 8;
    let m = skiff_maps::Map::create(attr, 1).unwrap();
    let insns = asm("stw [%r10-4], 0\n\
                     mov %r2, %r10\n\
                     add %r2, -4\n\
                     ldmap %r1, 0\n\
                     call 1\n\
                     jeq %r0, 0, out\n\
                     stdw [%r0+0], 1\n\
                     ldxdw %r1, [%r0+0]\n\
                     out:\n\
                     mov %r0, 2\n\
                     exit");
    let e = common::verify_xdp(&insns, &[m]).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str(), e.insn),
        (13, "read from map forbidden, value_size=8 off=0 size=8", 8)
    );
}

/// A 32-bit copy of a value that fits in 32 bits stays linked to it, so a
/// comparison of one bounds the other (the kernel selftest
/// verifier_reg_equal/subreg_equality_1): the path through `sub %r0, %r1`
/// (r1 unset) is never taken.
#[test]
fn a_32_bit_copy_of_a_32_bit_value_is_linked() {
    let insns = asm("call 5\n\
                     stxdw [%r10-8], %r0\n\
                     ldxw %r2, [%r10-8]\n\
                     mov32 %r3, %r2\n\
                     jlt32 %r2, 9, l0\n\
                     exit\n\
                     l0:\n\
                     jlt %r3, 9, l1\n\
                     sub %r0, %r1\n\
                     l1:\n\
                     exit");
    common::verify_xdp(&insns, &[]).unwrap_or_else(|e| panic!("{e}\n{}", e.log));
}

/// A tail call from a subprogram invalidates the packet pointers of every
/// frame; one from the main program does not (the running kernel: the kernel
/// selftest verifier_sock/invalidate_pkt_pointers_by_tail_call is refused with
/// `invalid mem access`, the same program with the tail call in the main
/// program is accepted). The kernel loads the subprogram form only with BTF
/// func info, which these hand-assembled programs do not carry.
#[test]
fn a_tail_call_in_a_subprogram_invalidates_packet_pointers() {
    let check_then = |call: &str, tail: &str| {
        format!(
            "mov %r7, %r1\n\
             ldxw %r6, [%r1+76]\n\
             ldxw %r2, [%r1+80]\n\
             mov %r3, %r6\n\
             add %r3, 4\n\
             jgt %r3, %r2, out\n\
             mov %r1, %r7\n\
             {call}\n\
             stw [%r6+0], 42\n\
             out:\n\
             mov %r0, 0\n\
             exit\n{tail}"
        )
    };
    let maps = [common::map(skiff_maps::MapType::ProgArray, 4, 4, 1)];
    let tail_call = "ldmap %r2, 0\nmov %r3, 0\ncall 12";
    let in_subprog = check_then(
        "call local tc",
        &format!("tc:\n{tail_call}\nmov %r0, 0\nexit"),
    );
    let e = verify_with(&asm(&in_subprog), skiff_object::ProgType::SchedCls, &maps).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str(), e.insn),
        (13, "R6 invalid mem access 'scalar'", 8)
    );
    let in_main = check_then(tail_call, "");
    verify_with(&asm(&in_main), skiff_object::ProgType::SchedCls, &maps)
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log));
}
