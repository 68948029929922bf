//! The JIT uses what the verifier proved: an access proven in bounds carries no
//! check, a loop proven bounded no budget charge, a lookup in a constant array
//! map is inlined. Hand-made proofs (`InsnAux`) show each; the results stay the
//! interpreter's.

use std::sync::Arc;

use skiff_isa::*;
use skiff_maps::{Map, MapAttr, MapType};
use skiff_vm::verifier::{HelperSite, InsnAux, MemKind, Verified};
use skiff_vm::{
    ArgType, Engine, HelperDef, HelperFn, HelperProto, HelperTable, NoContext, ProgType, Program,
    Region, RegionKind, RetType, RunState, Vm, VmError,
};

fn array() -> Arc<Map> {
    Map::create(MapAttr::new(MapType::Array, 4, 8, 4), 1).expect("array map")
}

/// r1 = input (16 bytes); sum its 8 bytes into a[0] in a loop, through the
/// stack: loads of the input, the stack and the map value, stores to the
/// stack and the map value, one back-edge (pc 13).
fn program() -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LD_IMM64, 6, BPF_PSEUDO_MAP_IDX_VALUE, 0, 0),
        Insn::new(0, 0, 0, 0, 0),
    ];
    p.extend(
        assemble(
            "mov %r2, %r10\nadd %r2, -8\nstdw [%r2+0], 0\nmov %r3, 0\n\
             loop:\nmov %r4, %r1\nadd %r4, %r3\nldxb %r5, [%r4+0]\nldxdw %r0, [%r2+0]\n\
             add %r0, %r5\nstxdw [%r2+0], %r0\nadd %r3, 1\njlt %r3, 8, loop\n\
             stxdw [%r6+0], %r0\nldxdw %r0, [%r6+0]\nexit",
        )
        .expect("assembles"),
    );
    p
}

/// What a verifier would prove of `program()`.
fn proofs(n: usize) -> Verified {
    let mut aux = vec![InsnAux::default(); n];
    for (pc, kind) in [
        (4, MemKind::Stack),
        (8, MemKind::Mem),
        (9, MemKind::Stack),
        (11, MemKind::Stack),
        (14, MemKind::MapValue { map: 0 }),
        (15, MemKind::MapValue { map: 0 }),
    ] {
        aux[pc].mem = Some(kind);
    }
    aux[13].bounded_loop = true;
    Verified {
        aux,
        ..Verified::default()
    }
}

fn run(prog: &Arc<Program>, engine: Engine) -> u64 {
    let mut vm = Vm::new(Arc::new(HelperTable::generic()));
    vm.engine = engine;
    let mut input: Vec<u8> = (1..=16).collect();
    let region = Region::new(input.as_mut_ptr() as usize, 16, RegionKind::ReadWrite);
    vm.run_with_args(
        prog,
        &mut NoContext,
        [input.as_ptr() as u64, 16, 0, 0, 0],
        &[region],
    )
    .expect("runs")
}

/// r1 = map 0's handle, through a spill to [r10-16] (a register the JIT
/// cannot see through: only the verifier's const_map says which map it is),
/// then `rest`.
fn with_spilled_map_handle(rest: &str) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_IDX, 0, 0),
        Insn::new(0, 0, 0, 0, 0),
    ];
    p.extend(assemble(&format!("stxdw [%r10-16], %r1\n{rest}")).expect("assembles"));
    p
}

/// `p` loaded on a fresh map from `map` three ways: the JIT given the proofs
/// `v`, the JIT without them, the interpreter; each with its map and whether
/// it had the proofs.
fn three_ways(
    p: &[Insn],
    v: &Verified,
    map: fn() -> Arc<Map>,
) -> Vec<(Arc<Program>, Arc<Map>, bool)> {
    [
        (Engine::Jit, Some(v)),
        (Engine::Jit, None),
        (Engine::Interp, None),
    ]
    .into_iter()
    .map(|(engine, verified)| {
        let m = map();
        let maps = std::slice::from_ref(&m);
        let prog = Program::load_verified("p", ProgType::Xdp, p.to_vec(), maps, engine, verified)
            .expect("loads");
        (Arc::new(prog), m, verified.is_some())
    })
    .collect()
}

/// The engine a program was loaded for (the JIT when it was compiled).
fn engine_of(prog: &Program) -> Engine {
    if prog.jit_stats().is_some() {
        Engine::Jit
    } else {
        Engine::Interp
    }
}

#[test]
fn proven_accesses_carry_no_check_and_proven_loops_no_charge() {
    let maps = [array()];
    let code = program();
    let plain =
        Program::load_with("p", ProgType::Xdp, code.clone(), &maps, Engine::Jit).expect("loads");
    let v = proofs(code.len());
    let proven = Program::load_verified(
        "p",
        ProgType::Xdp,
        code.clone(),
        &maps,
        Engine::Jit,
        Some(&v),
    )
    .expect("loads");
    let (a, b) = (
        plain.jit_stats().expect("jit"),
        proven.jit_stats().expect("jit"),
    );
    // Unproven: the input load, the map value store and load (the stack ones
    // through r2 = r10 - 8 are checked too: r2 is no r10 + constant).
    assert_eq!((a.checks, a.budget_charges), (6, 1));
    // Proven: no check, no charge (the main function has no entry charge).
    assert_eq!((b.checks, b.budget_charges), (0, 0));
    let interp =
        Program::load_with("p", ProgType::Xdp, code, &maps, Engine::Interp).expect("loads");
    let sum: u64 = (1..=8).sum();
    for (p, e) in [
        (plain, Engine::Jit),
        (proven, Engine::Jit),
        (interp, Engine::Interp),
    ] {
        assert_eq!(run(&Arc::new(p), e), sum, "{e:?}");
    }
}

#[test]
fn a_lookup_in_a_constant_array_map_is_inlined() {
    let p = with_spilled_map_handle(
        "stw [%r10-4], 2\nldxdw %r1, [%r10-16]\nmov %r2, %r10\n\
         add %r2, -4\ncall 1\njeq %r0, 0, +2\nstdw [%r0+0], 5\nldxdw %r0, [%r0+0]\nexit",
    );
    let mut v = Verified {
        aux: vec![InsnAux::default(); p.len()],
        ..Verified::default()
    };
    v.aux[7].const_map = Some(0);
    for (prog, _, proven) in three_ways(&p, &v, array) {
        if let Some(s) = prog.jit_stats() {
            assert_eq!(s.inlined_lookups, usize::from(proven));
        }
        let mut vm = Vm::new(Arc::new(HelperTable::generic()));
        vm.engine = engine_of(&prog);
        assert_eq!(vm.run(&prog, &mut NoContext).expect("runs"), 5);
    }
}

fn hash() -> Arc<Map> {
    Map::create(MapAttr::new(MapType::Hash, 4, 8, 4), 1).expect("hash map")
}

#[test]
fn map_calls_on_a_constant_map_go_straight_to_the_map() {
    // update h[2] = 7, look it up, add 1 through the pointer, delete h[3]
    // (absent: -ENOENT), r0 = value + the delete's errno. r1 comes through a
    // spill and fill: only the verifier's const_map says which map it is.
    let p = with_spilled_map_handle(
        "stw [%r10-4], 2\nstdw [%r10-24], 7\n\
         mov %r2, %r10\nadd %r2, -4\nmov %r3, %r10\nadd %r3, -24\nmov %r4, 0\ncall 2\n\
         ldxdw %r1, [%r10-16]\nmov %r2, %r10\nadd %r2, -4\ncall 1\njeq %r0, 0, +8\n\
         mov %r6, 1\nlock add [%r0+0], %r6\nldxdw %r6, [%r0+0]\n\
         ldxdw %r1, [%r10-16]\nstw [%r10-4], 3\nmov %r2, %r10\nadd %r2, -4\ncall 3\n\
         add %r0, %r6\nexit",
    );
    let calls: Vec<usize> = (0..p.len()).filter(|&i| p[i].code == CALL).collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let mut v = Verified {
        aux: vec![InsnAux::default(); p.len()],
        helper_sites: calls
            .iter()
            .map(|&pc| HelperSite {
                pc,
                ..Default::default()
            })
            .collect(),
        ..Verified::default()
    };
    for &pc in &calls {
        v.aux[pc].const_map = Some(0);
    }
    for (pc, insn) in p.iter().enumerate() {
        if insn.code & 7 == BPF_STX && insn.code & 0xe0 == BPF_ATOMIC || insn.code & 7 == BPF_LDX {
            let kind = if insn.src == 10 {
                MemKind::Stack
            } else {
                MemKind::MapValue { map: 0 }
            };
            v.aux[pc].mem = Some(kind);
        }
    }
    let want = 8u64.wrapping_add(-2i64 as u64); // h[2] after the add, -ENOENT
    for (prog, map, proven) in three_ways(&p, &v, hash) {
        let engine = engine_of(&prog);
        if let Some(s) = prog.jit_stats() {
            assert_eq!(s.direct_map_calls, if proven { 3 } else { 0 });
        }
        let mut vm = Vm::new(Arc::new(HelperTable::generic()));
        vm.engine = engine;
        let r0 = vm.run(&prog, &mut NoContext).expect("runs");
        assert_eq!(r0, want, "{engine:?} verified {proven}");
        let value = map.lookup(&2u32.to_le_bytes(), 0).expect("h[2]");
        // SAFETY: a hash value of 8 bytes, alive with the map.
        assert_eq!(unsafe { *(value as *const u64) }, 8);
    }
}

const PROBE: i32 = 200;
const PLAIN: i32 = 201;

/// A helper whose r1 is a map: `probe_op` once the map is found.
fn probe(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let map = st.map(a[0])?;
    probe_op(st, map, a)
}

fn probe_op(_: &mut RunState, map: &Map, a: &[u64; 5]) -> Result<u64, VmError> {
    Ok(map.attr().max_entries as u64 * 1000 + a[1])
}

fn plain(_: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    Ok(a[0] * 2 + a[1])
}

fn probe_table() -> HelperTable {
    let mut t = HelperTable::generic();
    let proto = HelperProto::new(RetType::Integer, &[ArgType::ConstMapPtr, ArgType::Anything]);
    let def = |id: i32, name, func: HelperFn, map_op| HelperDef {
        id: id as u32,
        name,
        func,
        prog_types: &[],
        proto,
        map_op,
    };
    t.register(def(
        PROBE,
        "probe",
        probe,
        Some(skiff_vm::map_op!(probe_op)),
    ));
    t.register(def(PLAIN, "plain", plain, None));
    t
}

#[test]
fn helper_calls_at_verified_sites_go_straight_to_the_resolved_function() {
    // probe(h, 7) with h the proven constant map (its map op, given h),
    // probe(h, 9) with no proof of which map (the function, which searches
    // the run's maps), plain(5, 3); r0 = the sum: 4007 + 4009 + 13.
    let mut p = Vec::new();
    for (r2, call) in [(7, PROBE), (9, PROBE)] {
        p.push(Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_IDX, 0, 0));
        p.push(Insn::new(0, 0, 0, 0, 0));
        p.extend(assemble(&format!("mov %r2, {r2}\ncall {call}\nadd %r6, %r0")).expect("asm"));
    }
    p.extend(assemble("mov %r1, 5\nmov %r2, 3\ncall 201\nadd %r0, %r6\nexit").expect("asm"));
    let calls: Vec<usize> = (0..p.len()).filter(|&i| p[i].code == CALL).collect();
    let table = probe_table();
    let site = |pc: usize| {
        let def = table.get(p[pc].imm as u32).expect("registered");
        HelperSite {
            pc,
            ret_scalar: true,
            func: Some(def.func),
            map_op: def.map_op,
            ..Default::default()
        }
    };
    let mut v = Verified {
        aux: vec![InsnAux::default(); p.len()],
        helper_sites: calls.iter().map(|&pc| site(pc)).collect(),
        ..Verified::default()
    };
    v.aux[calls[0]].const_map = Some(0);
    let table = Arc::new(table);
    for (prog, _, proven) in three_ways(&p, &v, hash) {
        let engine = engine_of(&prog);
        if let Some(s) = prog.jit_stats() {
            let want = if proven { (3, 1) } else { (0, 0) };
            assert_eq!((s.resolved_helper_calls, s.map_op_calls), want);
        }
        let mut vm = Vm::new(table.clone());
        vm.engine = engine;
        let r0 = vm.run(&prog, &mut NoContext).expect("runs");
        assert_eq!(r0, 4007 + 4009 + 13, "{engine:?} verified {proven}");
    }
}

/// bpf_loop(nr, callback, &acc, 0) from a program the verifier checked: the
/// callback adds i to acc and stops (returns 1) at i == `stop`; r0 = the
/// loop's return + (acc << 32).
fn loop_program(nr: i32, stop: i32) -> Vec<Insn> {
    let mut p = assemble(&format!("stdw [%r10-8], 0\nmov %r1, {nr}")).expect("asm");
    // r2 = the callback: 9 instructions on from the ld_imm64's second slot.
    p.extend([
        Insn::new(LD_IMM64, 2, BPF_PSEUDO_FUNC, 0, 9),
        Insn::new(0, 0, 0, 0, 0),
    ]);
    let main = "mov %r3, %r10\nadd %r3, -8\nmov %r4, 0\ncall 181\n\
                ldxdw %r1, [%r10-8]\nlsh %r1, 32\nadd %r0, %r1\nexit";
    p.extend(assemble(main).expect("asm"));
    let callback = format!(
        "ldxdw %r3, [%r2+0]\nadd %r3, %r1\nstxdw [%r2+0], %r3\n\
         mov %r0, 0\njne %r1, {stop}, +1\nmov %r0, 1\nexit"
    );
    p.extend(assemble(&callback).expect("asm"));
    p
}

/// What the verifier proves of `insns` (XDP, privileged, the latest kernel).
fn verify(insns: &[Insn], maps: &[Arc<Map>], helpers: &HelperTable) -> Verified {
    let opts = skiff_vm::verifier::VerifyOptions {
        prog_type: ProgType::Xdp,
        name: "p",
        maps,
        helpers,
        privileged: true,
        kernel: skiff_vm::verifier::KernelVersion::LATEST,
        gpl: true,
        lines: None,
    };
    skiff_vm::verifier::verify(insns, &opts).expect("verifies")
}

#[test]
fn a_bpf_loop_with_flags_0_and_one_callback_is_a_native_loop() {
    let helpers = HelperTable::generic();
    let e2big = (-7i64) as u32 as u64; // inline_bpf_loop's 32-bit -E2BIG
    for (nr, stop, want) in [
        (16, 100, 16 | 120 << 32),
        (16, 3, 4 | 6 << 32),
        (0, 0, 0),
        (8 * 1024 * 1024 + 1, 0, e2big),
    ] {
        let insns = loop_program(nr, stop);
        let v = verify(&insns, &[], &helpers);
        let call = insns.iter().position(|i| i.code == CALL && i.imm == 181);
        assert!(v.aux[call.expect("a call")].loop_callback.is_some());
        for engine in [Engine::Jit, Engine::Interp] {
            let p =
                Program::load_verified("loop", ProgType::Xdp, insns.clone(), &[], engine, Some(&v))
                    .expect("loads");
            if engine == Engine::Jit {
                assert_eq!(p.jit_stats().expect("compiled").inlined_loops, 1);
            }
            let mut vm = Vm::new(Arc::new(HelperTable::generic()));
            vm.engine = engine;
            let got = vm.run(&Arc::new(p), &mut NoContext).expect("runs");
            assert_eq!(got, want, "{engine:?}: nr {nr} stop {stop}");
        }
    }
}

/// A program that keeps the lookup key's address in r2 (`how` "keep"), or
/// spills it to the stack and fills it back ("pointer"), or spills a scalar
/// beside it ("scalar"); it returns the value of hash key 3 (or 99 when
/// missing).
fn lookup_key(how: &str) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_IDX, 0, 0),
        Insn::new(0, 0, 0, 0, 0),
    ];
    let middle = match how {
        "pointer" => "stxdw [%r10-16], %r2\nldxdw %r2, [%r10-16]\n",
        "scalar" => "stdw [%r10-16], 5\nldxdw %r3, [%r10-16]\n",
        _ => "",
    };
    let text = format!(
        "stw [%r10-4], 3\nmov %r2, %r10\nadd %r2, -4\n{middle}call 1\n\
         jeq %r0, 0, +2\nldxdw %r0, [%r0+0]\nexit\nmov %r0, 99\nexit"
    );
    p.extend(assemble(&text).expect("assembles"));
    p
}

#[test]
fn stack_slot_tags_are_kept_only_where_a_pointer_reaches_the_stack() {
    let helpers = HelperTable::generic();
    for (how, scalars_only) in [("keep", true), ("scalar", true), ("pointer", false)] {
        let insns = lookup_key(how);
        let m = hash();
        m.sys_update(&3u32.to_ne_bytes(), &42u64.to_ne_bytes(), 0)
            .expect("update");
        let maps = [m];
        let v = verify(&insns, &maps, &helpers);
        assert_eq!(v.stack_scalars_only, scalars_only, "{how}");
        // The same proofs without the verifier's word on the stack: slot
        // tags kept at every store and read at every fill.
        let kept = Verified {
            stack_scalars_only: false,
            ..v.clone()
        };
        let load = |e, v: &Verified| {
            let p = Program::load_verified("p", ProgType::Xdp, insns.clone(), &maps, e, Some(v));
            Arc::new(p.expect("loads"))
        };
        let (lean, full) = (load(Engine::Jit, &v), load(Engine::Jit, &kept));
        let size = |p: &Program| p.jit_stats().expect("compiled").code_size;
        if scalars_only && how == "scalar" {
            assert!(size(&lean) < size(&full), "{how}: no tag bookkeeping");
        } else if !scalars_only {
            assert_eq!(size(&lean), size(&full), "{how}");
        }
        for (p, e) in [
            (lean, Engine::Jit),
            (full, Engine::Jit),
            (load(Engine::Interp, &v), Engine::Interp),
        ] {
            let mut vm = Vm::new(Arc::new(HelperTable::generic()));
            vm.engine = e;
            assert_eq!(vm.run(&p, &mut NoContext).expect("runs"), 42, "{how} {e:?}");
        }
    }
}
