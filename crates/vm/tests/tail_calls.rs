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
    let mut p = Vec::new();
    if count {
        p.extend([
            Insn::new(LD_IMM64, 7, BPF_PSEUDO_MAP_IDX_VALUE, 0, 1),
            Insn::new(0, 0, 0, 0, 0),
        ]);
        p.extend(assemble("ldxdw %r0, [%r7+0]\nadd %r0, 1\nstxdw [%r7+0], %r0").expect("asm"));
    }
    p.extend([
        Insn::new(LD_IMM64, 2, BPF_PSEUDO_MAP_IDX, 0, 0),
        Insn::new(0, 0, 0, 0, 0),
    ]);
    p.extend(assemble(&format!("mov %r3, 0\ncall 12\nmov %r0, {fall}\nexit")).expect("asm"));
    p
}

fn load(name: &str, insns: Vec<Insn>, maps: &[Arc<Map>], engine: Engine) -> Arc<Program> {
    let p = Program::load_with(name, ProgType::Xdp, insns, maps, engine);
    Arc::new(p.unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn vm(engine: Engine, programs: &[&Arc<Program>]) -> Vm {
    let mut vm = Vm::new(Arc::new(HelperTable::generic()));
    vm.engine = engine;
    vm.env.programs = programs.iter().map(|p| Arc::clone(p)).collect();
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
    let mut p = vec![
        Insn::new(LD_IMM64, 2, BPF_PSEUDO_MAP_IDX, 0, 0),
        Insn::new(0, 0, 0, 0, 0),
    ];
    let body = format!("mov %r3, {index}\ncall 12\nmov %r0, {fall}\nexit");
    p.extend(assemble(&body).expect("asm"));
    p
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
