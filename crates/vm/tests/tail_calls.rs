//! bpf_tail_call in both engines: the PROG_ARRAY slot is read at each call (an
//! update made between runs is what the next call reaches, a deleted slot
//! falls through), and a chain stops after MAX_TAIL_CALL_CNT (33) tail calls.

use std::sync::Arc;

use skiff_isa::*;
use skiff_maps::{Map, MapAttr, MapType};
use skiff_vm::{Engine, HelperTable, NoContext, ProgType, Program, Vm};

fn prog_array() -> Arc<Map> {
    Map::create(MapAttr::new(MapType::ProgArray, 4, 4, 4), 1).expect("prog array")
}

fn counter() -> Arc<Map> {
    Map::create(MapAttr::new(MapType::Array, 4, 8, 1), 1).expect("array")
}

/// r1 = the context; tail call slot 0 of map 0; on fall-through r0 = `fall`.
/// With `count`, first add 1 to the u64 at map 1's value.
fn caller(fall: i32, count: bool) -> Vec<Insn> {
    let mut p = if count { count_into(1) } else { Vec::new() };
    p.extend(tail_call_to(0, 0, fall));
    p
}

/// Add 1 to the u64 at map `map`'s value (r7 its address, r0 the count).
fn count_into(map: i32) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LD_IMM64, 7, BPF_PSEUDO_MAP_IDX_VALUE, 0, map),
        Insn::new(0, 0, 0, 0, 0),
    ];
    p.extend(assemble("ldxdw %r0, [%r7+0]\nadd %r0, 1\nstxdw [%r7+0], %r0").expect("asm"));
    p
}

/// Tail call slot `index` of map `slots` (r1 the context); on fall-through
/// r0 = `fall`.
fn tail_call_to(slots: i32, index: i32, fall: i32) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LD_IMM64, 2, BPF_PSEUDO_MAP_IDX, 0, slots),
        Insn::new(0, 0, 0, 0, 0),
    ];
    let body = format!("mov %r3, {index}\ncall 12\nmov %r0, {fall}\nexit");
    p.extend(assemble(&body).expect("asm"));
    p
}

fn load(name: &str, insns: Vec<Insn>, maps: &[Arc<Map>], engine: Engine) -> Arc<Program> {
    let p = Program::load_with(name, ProgType::Xdp, insns, maps, engine);
    Arc::new(p.unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn vm(engine: Engine, programs: &[&Arc<Program>]) -> Vm {
    let mut vm = Vm::new(Arc::new(HelperTable::generic()));
    vm.engine = engine;
    vm.env
        .set_programs(programs.iter().map(|p| Arc::clone(p)).collect());
    vm
}

#[test]
fn slot_updates_are_seen_by_the_next_call_and_an_empty_slot_falls_through() {
    for engine in [Engine::Jit, Engine::Interp] {
        let slots = prog_array();
        let maps = [slots.clone()];
        let a = load("a", caller(99, false), &maps, engine);
        let ret = |v| assemble(&format!("mov %r0, {v}\nexit")).expect("asm");
        let b = load("b", ret(1), &[], engine);
        let c = load("c", ret(2), &[], engine);
        let mut vm = vm(engine, &[&a, &b, &c]);
        let run = |vm: &mut Vm| vm.run(&a, &mut NoContext).expect("runs");
        let key = 0u32.to_ne_bytes();
        assert_eq!(run(&mut vm), 99, "{engine:?}: empty slot");
        slots.sys_update_prog(&key, b.id, 0).expect("update");
        assert_eq!(run(&mut vm), 1, "{engine:?}: slot 0 = b");
        slots.sys_update_prog(&key, c.id, 0).expect("update");
        assert_eq!(run(&mut vm), 2, "{engine:?}: slot 0 = c");
        slots.sys_delete(&key).expect("delete");
        assert_eq!(run(&mut vm), 99, "{engine:?}: slot deleted");
    }
}

#[test]
fn a_chain_stops_after_33_tail_calls() {
    for engine in [Engine::Jit, Engine::Interp] {
        let (slots, n) = (prog_array(), counter());
        let maps = [slots.clone(), n.clone()];
        // d tail-calls itself: run once, then 33 tail calls, then falls through.
        let d = load("d", caller(7, true), &maps, engine);
        slots
            .sys_update_prog(&0u32.to_ne_bytes(), d.id, 0)
            .expect("update");
        let mut vm = vm(engine, &[&d]);
        assert_eq!(vm.run(&d, &mut NoContext).expect("runs"), 7, "{engine:?}");
        let runs = n.sys_lookup_raw(&0u32.to_ne_bytes()).expect("lookup");
        assert_eq!(runs, 34u64.to_ne_bytes().to_vec(), "{engine:?}");
        // The count starts again at each run.
        assert_eq!(vm.run(&d, &mut NoContext).expect("runs"), 7, "{engine:?}");
        let runs = n.sys_lookup_raw(&0u32.to_ne_bytes()).expect("lookup");
        assert_eq!(runs, 68u64.to_ne_bytes().to_vec(), "{engine:?}");
    }
}

/// As `load`, verified first: the JIT emits the tail calls the verifier
/// checked as direct calls through the slot (jit/calls.rs).
fn load_checked(name: &str, insns: Vec<Insn>, maps: &[Arc<Map>], engine: Engine) -> Arc<Program> {
    let helpers = HelperTable::generic();
    let opts = skiff_vm::verifier::VerifyOptions {
        prog_type: ProgType::Xdp,
        name,
        maps,
        helpers: &helpers,
        privileged: true,
        kernel: skiff_vm::verifier::KernelVersion::LATEST,
        gpl: true,
        lines: None,
    };
    let v = skiff_vm::verifier::verify(&insns, &opts).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let p = Program::load_verified(name, ProgType::Xdp, insns, maps, engine, Some(&v));
    Arc::new(p.unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// r1 = the context; tail call slot `index` of map 0; on fall-through r0 = `fall`.
fn caller_at(index: i32, fall: i32) -> Vec<Insn> {
    tail_call_to(0, index, fall)
}

#[test]
fn verified_tail_calls_see_slot_updates_and_fall_through_out_of_range() {
    for engine in [Engine::Jit, Engine::Interp] {
        let slots = prog_array();
        let maps = [slots.clone()];
        let a = load_checked("a", caller_at(0, 99), &maps, engine);
        let far = load_checked("far", caller_at(4, 98), &maps, engine);
        let ret = |v| assemble(&format!("mov %r0, {v}\nexit")).expect("asm");
        let b = load_checked("b", ret(1), &[], engine);
        let c = load_checked("c", ret(2), &[], engine);
        // b is reached through `Env::programs` at another position than c.
        let mut vm = vm(engine, &[&c, &a, &far, &b]);
        let key = 0u32.to_ne_bytes();
        let mut run = |p: &Arc<Program>| vm.run(p, &mut NoContext).expect("runs");
        assert_eq!(run(&a), 99, "{engine:?}: empty slot");
        slots.sys_update_prog(&key, b.id, 0).expect("update");
        assert_eq!(run(&a), 1, "{engine:?}: slot 0 = b");
        assert_eq!(run(&a), 1, "{engine:?}: slot 0 = b, again");
        slots.sys_update_prog(&key, c.id, 0).expect("update");
        assert_eq!(run(&a), 2, "{engine:?}: slot 0 = c");
        // Index 4 of a 4-entry array: past max_entries, falls through.
        assert_eq!(run(&far), 98, "{engine:?}: index out of range");
        slots.sys_delete(&key).expect("delete");
        assert_eq!(run(&a), 99, "{engine:?}: slot deleted");
    }
}

#[test]
fn a_verified_chain_stops_after_33_tail_calls() {
    for engine in [Engine::Jit, Engine::Interp] {
        let (slots, n) = (prog_array(), counter());
        let maps = [slots.clone(), n.clone()];
        let d = load_checked("d", caller(7, true), &maps, engine);
        slots
            .sys_update_prog(&0u32.to_ne_bytes(), d.id, 0)
            .expect("update");
        let mut vm = vm(engine, &[&d]);
        for want in [34u64, 68] {
            assert_eq!(vm.run(&d, &mut NoContext).expect("runs"), 7, "{engine:?}");
            let runs = n.sys_lookup_raw(&0u32.to_ne_bytes()).expect("lookup");
            assert_eq!(runs, want.to_ne_bytes().to_vec(), "{engine:?}");
        }
    }
}

/// A program the slot names but the worker does not hold is not reached (the
/// slot's hint is a position in one worker's programs, checked by id).
#[test]
fn a_slot_program_the_worker_does_not_hold_falls_through() {
    for engine in [Engine::Jit, Engine::Interp] {
        let slots = prog_array();
        let maps = [slots.clone()];
        let a = load_checked("a", caller_at(0, 99), &maps, engine);
        let b = load_checked("b", assemble("mov %r0, 1\nexit").expect("asm"), &[], engine);
        slots
            .sys_update_prog(&0u32.to_ne_bytes(), b.id, 0)
            .expect("update");
        let mut with_b = vm(engine, &[&a, &b]);
        assert_eq!(
            with_b.run(&a, &mut NoContext).expect("runs"),
            1,
            "{engine:?}"
        );
        let mut without_b = vm(engine, &[&a]);
        assert_eq!(
            without_b.run(&a, &mut NoContext).expect("runs"),
            99,
            "{engine:?}"
        );
    }
}

/// The JIT's native tail calls (jit/tail.rs) keep the runtime's answers:
/// a worker whose programs change no longer reaches one it let go; a slot
/// update between runs is seen; the count still stops a chain at 33.
#[test]
fn native_tail_calls_follow_the_workers_programs_and_the_slot() {
    let slots = prog_array();
    let maps = [slots.clone()];
    let a = load_checked("a", caller_at(0, 99), &maps, Engine::Jit);
    let ret = |v| assemble(&format!("mov %r0, {v}\nexit")).expect("asm");
    let b = load_checked("b", ret(1), &[], Engine::Jit);
    let c = load_checked("c", ret(2), &[], Engine::Jit);
    let key = 0u32.to_ne_bytes();
    slots.sys_update_prog(&key, b.id, 0).expect("update");
    let mut vm = vm(Engine::Jit, &[&a, &b, &c]);
    let run = |vm: &mut Vm| vm.run(&a, &mut NoContext).expect("runs");
    assert_eq!(run(&mut vm), 1, "through the runtime");
    assert_eq!(vm.native_tail_calls(), 1, "a -> b recorded");
    assert_eq!(run(&mut vm), 1, "natively");
    slots.sys_update_prog(&key, c.id, 0).expect("update");
    assert_eq!(run(&mut vm), 2, "slot 0 = c");
    assert_eq!(run(&mut vm), 2, "slot 0 = c, natively");
    // The worker lets c go: the slot still names it, but no run reaches it.
    vm.env.set_programs(vec![a.clone(), b.clone()]);
    assert_eq!(run(&mut vm), 99, "c is not the worker's any more");
    assert_eq!(vm.native_tail_calls(), 0);
}

/// A chain of three verified programs of one object (maps: the counter, the
/// PROG_ARRAY) counting into one array: the last one needs no PROG_ARRAY
/// (its maps a prefix of the others': native calls), and a caller with only
/// the PROG_ARRAY calls the first (its maps not a prefix of the target's:
/// the runtime sets the target's up). Both engines, many runs, the same
/// counts.
#[test]
fn chains_of_programs_with_different_maps_count_alike_in_both_engines() {
    let mut counts = Vec::new();
    for engine in [Engine::Jit, Engine::Interp] {
        let (n, slots) = (counter(), prog_array());
        let object = [n.clone(), slots.clone()];
        // s0, s1: count into map 0, tail call slot `next` of map 1.
        let stage = |next: i32| [count_into(0), tail_call_to(1, next, 9)].concat();
        let s0 = load_checked("s0", stage(1), &object, engine);
        let s1 = load_checked("s1", stage(2), &object, engine);
        let last = [count_into(0), assemble("mov %r0, 3\nexit").expect("asm")].concat();
        let s2 = load_checked("s2", last, &object, engine);
        let t = load_checked("t", caller_at(3, 9), std::slice::from_ref(&slots), engine);
        for (i, p) in [(1u32, &s1), (2, &s2), (3, &s0)] {
            slots
                .sys_update_prog(&i.to_ne_bytes(), p.id, 0)
                .expect("update");
        }
        let mut vm = vm(engine, &[&t, &s0, &s1, &s2]);
        for _ in 0..5 {
            assert_eq!(vm.run(&s0, &mut NoContext).expect("runs"), 3, "{engine:?}");
            assert_eq!(vm.run(&t, &mut NoContext).expect("runs"), 3, "{engine:?}");
        }
        let got = n.sys_lookup_raw(&0u32.to_ne_bytes()).expect("lookup");
        assert_eq!(
            got,
            30u64.to_ne_bytes().to_vec(),
            "{engine:?}: 3 stages x 10 runs"
        );
        counts.push(got);
        if engine == Engine::Jit {
            assert_eq!(
                vm.native_tail_calls(),
                2,
                "s0 -> s1 -> s2 natively, t -> s0 not"
            );
        }
    }
    assert_eq!(counts[0], counts[1]);
}
