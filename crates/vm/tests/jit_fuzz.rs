//! Differential fuzzing of the JIT against the interpreter: random valid
//! programs (every ALU and jump op in both widths, loads and stores of every size
//! to the stack and to an input buffer — some out of bounds —, atomics, bounded
//! loops, bpf-to-bpf calls, map helpers on a hash and an array map) run in both
//! engines on the same input; r0 (or the exception), the input memory and both
//! maps must be identical. The suite runs a bounded number of cases;
//! `SKIFF_FUZZ_CASES=1000000 cargo test --release -p skiff-vm --test jit_fuzz`
//! runs longer.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use skiff_isa::*;
use skiff_maps::{Map, MapAttr, MapType};
use skiff_vm::{
    Engine, HelperTable, NoContext, ProgType, Program, Region, RegionKind, Vm, VmError,
};

const MEM_LEN: i16 = 64;

/// One piece of a generated program (expanded into one or more instructions).
#[derive(Clone, Debug)]
enum Piece {
    Alu {
        code: u8,
        dst: u8,
        src: u8,
        off: i16,
        imm: i32,
    },
    Load {
        size: u8,
        sx: bool,
        dst: u8,
        on_stack: bool,
        off: i16,
    },
    Store {
        size: u8,
        imm: Option<i32>,
        src: u8,
        on_stack: bool,
        off: i16,
    },
    Atomic {
        dw: bool,
        op: i32,
        src: u8,
        on_stack: bool,
        slot: i16,
    },
    Jump {
        code: u8,
        dst: u8,
        src: u8,
        imm: i32,
        skip: u8,
    },
    Imm64 {
        dst: u8,
        value: u64,
    },
    Loop {
        count: u8,
        body: Vec<Piece>,
    },
    Call,
    MapUpdate {
        array: bool,
        key: u8,
        value_reg: u8,
    },
    MapLookup {
        array: bool,
        key: u8,
        dst: u8,
    },
}

fn reg() -> impl Strategy<Value = u8> {
    // r1 holds the input buffer and r10 the frame (never copied elsewhere, so no
    // address reaches r0, memory or maps: the two engines' runs use different
    // maps); r9 is the loop counter.
    prop::sample::select(vec![0u8, 2, 3, 4, 5, 6, 7, 8])
}

fn alu() -> impl Strategy<Value = Piece> {
    let ops = prop::sample::select(vec![
        BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD,
        BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END,
    ]);
    (
        ops,
        any::<bool>(),
        any::<bool>(),
        reg(),
        reg(),
        any::<i32>(),
        0u8..4,
        0u8..3,
    )
        .prop_map(|(op, wide, x, dst, src, imm, variant, small)| {
            let class = if wide { BPF_ALU64 } else { BPF_ALU };
            let imm = match small {
                0 => imm,
                1 => imm % 70,
                _ => [0, -1, 1, i32::MIN, i32::MAX][(imm as u32 % 5) as usize],
            };
            let (code, off, imm) = match op {
                BPF_END => {
                    let bits = [16, 32, 64][variant as usize % 3];
                    (class | BPF_END | if x { BPF_X } else { 0 }, 0, bits)
                }
                BPF_NEG => (class | BPF_NEG, 0, 0),
                BPF_DIV | BPF_MOD => (
                    class | op | if x { BPF_X } else { 0 },
                    (variant & 1) as i16,
                    imm,
                ),
                BPF_MOV if x => {
                    let off = [0, 8, 16, 32][variant as usize];
                    let off = if !wide && off == 32 { 0 } else { off };
                    (class | BPF_MOV | BPF_X, off, imm)
                }
                _ => (class | op | if x { BPF_X } else { 0 }, 0, imm),
            };
            Piece::Alu {
                code,
                dst,
                src,
                off,
                imm,
            }
        })
}

fn size_bits(size: u8) -> u8 {
    match size {
        1 => BPF_B,
        2 => BPF_H,
        4 => BPF_W,
        _ => BPF_DW,
    }
}

fn mem_off(on_stack: bool, size: u8, raw: i16) -> i16 {
    if on_stack {
        // Inside the frame, occasionally just outside it.
        let o = -(raw.rem_euclid(64) * 8) - 8;
        if raw % 97 == 0 {
            o + 8
        } else {
            o
        }
    } else {
        // Inside the buffer, occasionally past its end.
        let o = raw.rem_euclid(MEM_LEN + 4);
        o.min(MEM_LEN + 3)
            - if o + size as i16 > MEM_LEN + 3 {
                size as i16
            } else {
                0
            }
    }
}

fn leaf() -> impl Strategy<Value = Piece> {
    let size = prop::sample::select(vec![1u8, 2, 4, 8]);
    prop_oneof![
        10 => alu(),
        3 => (size.clone(), any::<bool>(), reg(), any::<bool>(), any::<i16>()).prop_map(|(size, sx, dst, on_stack, off)| Piece::Load { size, sx: sx && size != 8, dst, on_stack, off: mem_off(on_stack, size, off) }),
        3 => (size, prop::option::of(any::<i32>()), reg(), any::<bool>(), any::<i16>()).prop_map(|(size, imm, src, on_stack, off)| Piece::Store { size, imm, src, on_stack, off: mem_off(on_stack, size, off) }),
        1 => (any::<bool>(), prop::sample::select(vec![BPF_ADD as i32, BPF_OR as i32, BPF_AND as i32, BPF_XOR as i32, BPF_ADD as i32 | BPF_FETCH, BPF_OR as i32 | BPF_FETCH, BPF_AND as i32 | BPF_FETCH, BPF_XOR as i32 | BPF_FETCH, BPF_XCHG, BPF_CMPXCHG]), reg(), any::<bool>(), 0i16..8).prop_map(|(dw, op, src, on_stack, slot)| Piece::Atomic { dw, op, src, on_stack, slot }),
        3 => (prop::sample::select(vec![BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE]), any::<bool>(), any::<bool>(), reg(), reg(), any::<i32>(), 0u8..6).prop_map(|(op, wide, x, dst, src, imm, skip)| Piece::Jump { code: op | if wide { BPF_JMP } else { BPF_JMP32 } | if x { BPF_X } else { 0 }, dst, src, imm: imm % 300, skip }),
        1 => (reg(), any::<u64>()).prop_map(|(dst, value)| Piece::Imm64 { dst, value }),
        1 => Just(Piece::Call),
        1 => (any::<bool>(), 0u8..6, reg()).prop_map(|(array, key, value_reg)| Piece::MapUpdate { array, key, value_reg }),
        1 => (any::<bool>(), 0u8..6, reg()).prop_map(|(array, key, dst)| Piece::MapLookup { array, key, dst }),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        12 => leaf(),
        1 => (1u8..20, prop::collection::vec(alu(), 1..6)).prop_map(|(count, body)| Piece::Loop { count, body }),
    ]
}

/// Expand pieces into instructions. Forward jumps skip whole pieces, so every
/// target is an instruction boundary.
fn emit(pieces: &[Piece], out: &mut Vec<Insn>, calls: &mut usize) {
    let mut starts = Vec::new();
    let mut fixups = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        starts.push(out.len());
        match p {
            Piece::Alu {
                code,
                dst,
                src,
                off,
                imm,
            } => out.push(alu_insn(*code, *dst, *src, *off, *imm)),
            Piece::Load {
                size,
                sx,
                dst,
                on_stack,
                off,
            } => {
                let mode = if *sx { BPF_MEMSX } else { BPF_MEM };
                out.push(Insn::new(
                    BPF_LDX | mode | size_bits(*size),
                    *dst,
                    if *on_stack { 10 } else { 1 },
                    *off,
                    0,
                ));
            }
            Piece::Store {
                size,
                imm,
                src,
                on_stack,
                off,
            } => {
                let base = if *on_stack { 10 } else { 1 };
                match imm {
                    Some(v) => out.push(Insn::new(
                        BPF_ST | BPF_MEM | size_bits(*size),
                        base,
                        0,
                        *off,
                        *v,
                    )),
                    None => out.push(Insn::new(
                        BPF_STX | BPF_MEM | size_bits(*size),
                        base,
                        *src,
                        *off,
                        0,
                    )),
                }
            }
            Piece::Atomic {
                dw,
                op,
                src,
                on_stack,
                slot,
            } => {
                let size = if *dw { BPF_DW } else { BPF_W };
                let (base, off) = if *on_stack {
                    (10, -8 * (slot + 1))
                } else {
                    (1, 8 * slot)
                };
                out.push(Insn::new(BPF_STX | BPF_ATOMIC | size, base, *src, off, *op));
            }
            Piece::Jump {
                code,
                dst,
                src,
                imm,
                skip,
            } => {
                fixups.push((out.len(), i + 1 + *skip as usize));
                let (src, imm) = if code & BPF_X != 0 {
                    (*src, 0)
                } else {
                    (0, *imm)
                };
                out.push(Insn::new(*code, *dst, src, 0, imm));
            }
            Piece::Imm64 { dst, value } => {
                out.push(Insn::new(LD_IMM64, *dst, 0, 0, *value as u32 as i32));
                out.push(Insn::new(0, 0, 0, 0, (*value >> 32) as u32 as i32));
            }
            Piece::Loop { count, body } => {
                out.push(Insn::new(BPF_ALU64 | BPF_MOV, 9, 0, 0, *count as i32));
                let top = out.len();
                for b in body {
                    if let Piece::Alu {
                        code,
                        dst,
                        src,
                        off,
                        imm,
                    } = b
                    {
                        out.push(alu_insn(*code, *dst, *src, *off, *imm));
                    }
                }
                out.push(Insn::new(BPF_ALU64 | BPF_SUB, 9, 0, 0, 1));
                let here = out.len();
                out.push(Insn::new(
                    BPF_JMP | BPF_JNE,
                    9,
                    0,
                    (top as i64 - here as i64 - 1) as i16,
                    0,
                ));
            }
            Piece::Call => {
                *calls += 1;
                // Patched to the subprogram at the end.
                out.push(Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, -1));
            }
            Piece::MapUpdate {
                array,
                key,
                value_reg,
            } => {
                // key at r10-8, value (a register) at r10-16, then update(map, key, value, BPF_ANY).
                out.push(Insn::new(BPF_ST | BPF_MEM | BPF_W, 10, 0, -8, *key as i32));
                out.push(Insn::new(
                    BPF_STX | BPF_MEM | BPF_DW,
                    10,
                    *value_reg,
                    -16,
                    0,
                ));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0));
                out.push(Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_IDX, 0, *array as i32));
                out.push(Insn::new(0, 0, 0, 0, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_ADD, 2, 0, 0, -8));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_ADD, 3, 0, 0, -16));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV, 4, 0, 0, 0));
                out.push(Insn::new(CALL, 0, 0, 0, 2));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0));
                clear_temporaries(out);
            }
            Piece::MapLookup { array, key, dst } => {
                out.push(Insn::new(BPF_ST | BPF_MEM | BPF_W, 10, 0, -8, *key as i32));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0));
                out.push(Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_IDX, 0, *array as i32));
                out.push(Insn::new(0, 0, 0, 0, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_ADD, 2, 0, 0, -8));
                out.push(Insn::new(CALL, 0, 0, 0, 1));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0));
                // if r0 == 0 skip; else read the value, add one, write it back.
                out.push(Insn::new(BPF_JMP | BPF_JEQ, 0, 0, 3, 0));
                out.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, *dst.max(&2), 0, 0, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_ADD, *dst.max(&2), 0, 0, 1));
                out.push(Insn::new(BPF_STX | BPF_MEM | BPF_DW, 0, *dst.max(&2), 0, 0));
                // r0 = found (not the value's address).
                out.push(Insn::new(BPF_JMP | BPF_JEQ, 0, 0, 1, 0));
                out.push(Insn::new(BPF_ALU64 | BPF_MOV, 0, 0, 0, 1));
                clear_temporaries(out);
            }
        }
    }
    starts.push(out.len());
    for (at, target_piece) in fixups {
        let target = starts[target_piece.min(pieces.len())];
        out[at].off = (target as i64 - at as i64 - 1) as i16;
    }
}

/// An ALU instruction with the fields its form does not use zeroed (the
/// validator insists): K forms have no source register, X forms no immediate,
/// NEG neither, and 64-bit BSWAP exists only as K.
fn alu_insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    let op = code & 0xf0;
    let x = code & BPF_X != 0;
    match op {
        BPF_END if code & 7 == BPF_ALU64 => Insn::new(BPF_ALU64 | BPF_END, dst, 0, 0, imm),
        BPF_END => Insn::new(code, dst, 0, 0, imm),
        BPF_NEG => Insn::new(code, dst, 0, 0, 0),
        _ if x => Insn::new(code, dst, src, off, 0),
        _ => Insn::new(code, dst, 0, off, imm),
    }
}

/// Registers that held addresses in a map snippet (keys on the stack, the map,
/// the saved r1) go back to plain numbers.
fn clear_temporaries(out: &mut Vec<Insn>) {
    for r in [2, 3, 4, 5, 6] {
        out.push(Insn::new(BPF_ALU64 | BPF_MOV, r, 0, 0, r as i32));
    }
}

/// The whole program: the pieces, `exit`, and a small subprogram for calls.
fn program(pieces: &[Piece]) -> Vec<Insn> {
    // The verifier refuses reads of uninitialised stack: start with a zeroed frame.
    let mut out: Vec<Insn> = (1..=64)
        .map(|k| Insn::new(BPF_ST | BPF_MEM | BPF_DW, 10, 0, -8 * k, 0))
        .collect();
    let mut calls = 0;
    emit(pieces, &mut out, &mut calls);
    out.push(Insn::new(EXIT, 0, 0, 0, 0));
    let sub = out.len();
    // f(r1..r5): r0 = r3 * 3 + r2 ^ r5, with a stack round trip (r1 is the
    // buffer: it is not used).
    out.push(Insn::new(BPF_STX | BPF_MEM | BPF_DW, 10, 2, -8, 0));
    out.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 3, 0, 0));
    out.push(Insn::new(BPF_ALU64 | BPF_MUL, 0, 0, 0, 3));
    out.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 6, 10, -8, 0));
    out.push(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 0, 6, 0, 0));
    out.push(Insn::new(BPF_ALU64 | BPF_XOR | BPF_X, 0, 5, 0, 0));
    out.push(Insn::new(EXIT, 0, 0, 0, 0));
    for (pc, insn) in out.iter_mut().enumerate().take(sub) {
        if insn.code == CALL && insn.src == BPF_PSEUDO_CALL {
            insn.imm = (sub as i64 - pc as i64 - 1) as i32;
        }
    }
    out
}

fn maps() -> Vec<Arc<Map>> {
    let attr = |map_type, max_entries| MapAttr {
        map_type,
        key_size: 4,
        value_size: 8,
        max_entries,
        map_flags: 0,
        name: "m".into(),
        inner: None,
    };
    vec![
        Map::create(attr(MapType::Hash, 4), 1).expect("hash map"),
        Map::create(attr(MapType::Array, 4), 1).expect("array map"),
    ]
}

/// (r0 or the error, the buffer after the run, both maps' contents).
type Outcome = (Result<u64, (usize, VmError)>, Vec<u8>, Vec<String>);

/// Both engines run in the same Vm (same stack) over the same buffer, so the
/// addresses in out-of-bounds errors match.
fn run(
    vm: &mut Vm,
    buf: &mut [u8],
    engine: Engine,
    insns: &[Insn],
    input: &[u8],
) -> Option<Outcome> {
    let maps = maps();
    let prog =
        Arc::new(Program::load_with("fuzz", ProgType::Xdp, insns.to_vec(), &maps, engine).ok()?);
    vm.engine = engine;
    vm.env.budget = 20_000;
    buf.copy_from_slice(input);
    let region = Region::new(buf.as_mut_ptr() as usize, buf.len(), RegionKind::ReadWrite);
    let r = vm
        .run_with_args(
            &prog,
            &mut NoContext,
            [buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0],
            &[region],
        )
        .map_err(|e| (e.pc, e.error));
    let dumps = maps.iter().map(|m| format!("{:?}", m.dump())).collect();
    Some((r, buf.to_vec(), dumps))
}

fn same(a: &Outcome, b: &Outcome) -> bool {
    let results = match (&a.0, &b.0) {
        // The JIT charges the budget per loop iteration, not per instruction:
        // both must run out, not necessarily at the same instruction.
        (Err((_, VmError::Budget(x))), Err((_, VmError::Budget(y)))) => x == y,
        (x, y) => x == y,
    };
    // After a budget stop the two engines stopped at different points.
    let stopped_early = matches!(a.0, Err((_, VmError::Budget(_))));
    results && (stopped_early || (a.1 == b.1 && a.2 == b.2))
}

fn cases() -> u32 {
    std::env::var("SKIFF_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn jit_agrees_with_the_interpreter() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(piece(), 1..40),
        prop::collection::vec(any::<u8>(), MEM_LEN as usize),
    );
    let compared = std::cell::Cell::new(0u64);
    let refused = std::cell::Cell::new(0u64);
    let start = std::time::Instant::now();
    let result = runner.run(&strategy, |(pieces, mem)| {
        let insns = program(&pieces);
        let mut vm = Vm::new(Arc::new(HelperTable::generic()));
        let mut buf = vec![0u8; mem.len()];
        let interp = run(&mut vm, &mut buf, Engine::Interp, &insns, &mem);
        let jit = run(&mut vm, &mut buf, Engine::Jit, &insns, &mem);
        match (&interp, &jit) {
            (Some(i), Some(j)) => {
                compared.set(compared.get() + 1);
                prop_assert!(
                    same(i, j),
                    "program:\n{}\ninterp: {:?}\njit:    {:?}",
                    skiff_isa::disassemble(&insns, &skiff_isa::RawSymbolizer),
                    i,
                    j
                );
            }
            (None, None) => refused.set(refused.get() + 1),
            _ => prop_assert!(
                false,
                "one engine refused the program: interp {} jit {}",
                interp.is_some(),
                jit.is_some()
            ),
        }
        Ok(())
    });
    let (compared, refused) = (compared.get(), refused.get());
    println!(
        "jit fuzz: {compared} programs compared, {refused} refused by both, in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    result.unwrap();
    assert!(
        compared > cases() as u64 / 2,
        "most generated programs must load"
    );
}
