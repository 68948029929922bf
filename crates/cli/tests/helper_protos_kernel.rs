//! Kernel-only: the helper table's prototypes against the running kernel. For
//! each helper whose arguments can be built from its prototype alone, a program
//! calls it with exactly the arguments the prototype describes; the kernel must
//! accept the call (the prototype's argument types are ones the kernel takes),
//! must refuse it under a non-GPL license exactly when the prototype says
//! `gpl_only`, and must invalidate a checked packet pointer across the call
//! exactly when the prototype says `changes_pkt_data`. Needs root; skips with a
//! printed reason otherwise.

use skiff_isa::Insn;
use skiff_kernel::{KernelError, KernelObject};
use skiff_object::{MapOrigin, MapSpec, Object, ProgType, Program};
use skiff_vm::{ArgType, HelperDef};

const EXIT: u8 = 0x95;
const CALL: u8 = 0x85;
const MOV64_IMM: u8 = 0xb7;
const MOV64_REG: u8 = 0xbf;
const ADD64_IMM: u8 = 0x07;
const LDX_W: u8 = 0x61;
const LDX_B: u8 = 0x71;
const ST_DW: u8 = 0x7a;
const JGT_REG: u8 = 0x2d;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_IDX: u8 = 5;

fn map(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
    MapSpec {
        name: "m".into(),
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: 0,
        pinning: 0,
        inner: None,
        initial_data: None,
        slots: Vec::new(),
        origin: MapOrigin::Btf,
        map_extra: 0,
        numa_node: 0,
    }
}

/// The map a helper's ARG_CONST_MAP_PTR must be (check_map_func_compatibility).
fn map_for(id: u32) -> MapSpec {
    match id {
        12 => map(3, 4, 4, 4),            // tail_call: PROG_ARRAY
        25 => map(4, 4, 4, 2),            // perf_event_output: PERF_EVENT_ARRAY
        51 => map(14, 4, 4, 4),           // redirect_map: DEVMAP
        87..=89 => map(22, 0, 8, 4),      // push/pop/peek: QUEUE
        130 | 134 => map(27, 0, 0, 4096), // ringbuf_output/query: RINGBUF
        195 => map(5, 4, 8, 4),           // lookup_percpu_elem: PERCPU_HASH
        _ => map(1, 4, 8, 4),             // HASH
    }
}

/// Helpers whose arguments need more than the prototype (a callback, a lock in
/// a BTF-described value, a reserved record, a reference to release).
fn buildable(d: &HelperDef) -> bool {
    !d.proto.args.iter().any(|a| {
        matches!(
            a,
            ArgType::PtrToFunc
                | ArgType::PtrToSpinLock
                | ArgType::PtrToAllocMemRelease
                | ArgType::ConstAllocSizeOrZero
        )
    })
}

/// r6 = ctx, r7/r8 = data/data_end, 16 bytes checked, 64 zeroed stack bytes,
/// r1..r5 as the prototype says, the call, then a load through the checked
/// packet pointer (r9).
fn program(t: ProgType, d: &HelperDef) -> Vec<Insn> {
    let (data, data_end) = match t {
        ProgType::Xdp => (0, 4),
        _ => (76, 80),
    };
    let mut p = vec![
        Insn::new(MOV64_REG, 6, 1, 0, 0),
        Insn::new(LDX_W, 7, 6, data, 0),
        Insn::new(LDX_W, 8, 6, data_end, 0),
        Insn::new(MOV64_REG, 9, 7, 0, 0),
        Insn::new(ADD64_IMM, 9, 0, 0, 16),
    ];
    // if r9 > r8 goto exit (patched below)
    let check = p.len();
    p.push(Insn::new(JGT_REG, 9, 8, 0, 0));
    p.push(Insn::new(MOV64_REG, 9, 7, 0, 0));
    for i in 1..=8 {
        p.push(Insn::new(ST_DW, 10, 0, -8 * i, 0));
    }
    for (i, a) in d.proto.args.iter().enumerate() {
        let r = i as u8 + 1;
        match a {
            ArgType::DontCare => break,
            ArgType::PtrToCtx | ArgType::PtrToCtxOrNull => p.push(Insn::new(MOV64_REG, r, 6, 0, 0)),
            ArgType::ConstMapPtr => {
                p.push(Insn::new(LD_IMM64, r, PSEUDO_MAP_IDX, 0, 0));
                p.push(Insn::new(0, 0, 0, 0, 0));
            }
            ArgType::ConstSize | ArgType::ConstSizeOrZero => {
                p.push(Insn::new(MOV64_IMM, r, 0, 0, 8))
            }
            ArgType::Anything => p.push(Insn::new(MOV64_IMM, r, 0, 0, 0)),
            _ => {
                // memory: the zeroed stack buffer
                p.push(Insn::new(MOV64_REG, r, 10, 0, 0));
                p.push(Insn::new(ADD64_IMM, r, 0, 0, -64));
            }
        }
    }
    p.push(Insn::new(CALL, 0, 0, 0, d.id as i32));
    p.push(Insn::new(LDX_B, 0, 9, 0, 0));
    let exit = p.len();
    p.push(Insn::new(MOV64_IMM, 0, 0, 0, 0));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p[check].off = (exit - check - 1) as i16;
    p
}

fn load(t: ProgType, d: &HelperDef, license: &str) -> Result<(), (i32, String)> {
    let obj = Object {
        license: license.into(),
        programs: vec![Program {
            name: "proto_probe".into(),
            section: "probe".into(),
            prog_type: t,
            expected_attach_type: None,
            frags: false,
            insns: program(t, d),
            lines: Vec::new(),
            funcs: Vec::new(),
        }],
        maps: vec![map_for(d.id)],
        skipped: Vec::new(),
    };
    match KernelObject::load(&obj) {
        Ok(_) => Ok(()),
        Err(KernelError::ProgLoad { errno, log, .. }) => Err((errno, log)),
        Err(e) => Err((0, e.to_string())),
    }
}

const GPL_MSG: &str = "cannot call GPL-restricted function from non-GPL compatible program";

/// What the kernel's answers say the prototype is, or why they disagree with it.
fn check(t: ProgType, d: &HelperDef) -> Result<(), String> {
    let gpl = load(t, d, "GPL");
    match (&gpl, d.proto.changes_pkt_data) {
        (Ok(()), false) => {}
        (Err((13, log)), true) if log.contains("R9 invalid mem access 'scalar'") => {}
        (Ok(()), true) => return Err("kernel keeps packet pointers across it".into()),
        (Err((e, log)), _) => {
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(format!("kernel refused the call (errno {e}): {tail:?}"));
        }
    }
    let non_gpl = load(t, d, "MIT");
    let refused_gpl = matches!(&non_gpl, Err((22, log)) if log.contains(GPL_MSG));
    if refused_gpl != d.proto.gpl_only {
        return Err(format!(
            "gpl_only {} but the kernel {} it under MIT",
            d.proto.gpl_only,
            if refused_gpl { "refused" } else { "took" }
        ));
    }
    Ok(())
}

#[test]
fn prototypes_match_the_kernel() {
    if let Err(why) = skiff_kernel::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let table = skiff_net::helper_table();
    let mut wrong = Vec::new();
    let mut checked = Vec::new();
    let mut skipped = Vec::new();
    for d in table.iter() {
        if !buildable(d) {
            skipped.push(d.name);
            continue;
        }
        let types: Vec<ProgType> = if d.prog_types.is_empty() {
            vec![ProgType::Xdp, ProgType::SchedCls]
        } else {
            d.prog_types.to_vec()
        };
        for t in types.into_iter().filter(|t| *t != ProgType::SchedAct) {
            match check(t, d) {
                Ok(()) => checked.push(d.name),
                Err(e) => wrong.push(format!("{} ({t:?}): {e}", d.name)),
            }
        }
    }
    eprintln!(
        "not probed (arguments need more than the prototype): {}",
        skipped.join(", ")
    );
    assert_eq!(
        skipped,
        [
            "bpf_spin_lock",
            "bpf_spin_unlock",
            "bpf_ringbuf_reserve",
            "bpf_ringbuf_submit",
            "bpf_ringbuf_discard",
            "bpf_for_each_map_elem",
            "bpf_loop",
        ]
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(checked.len(), 80, "{checked:?}");
}
