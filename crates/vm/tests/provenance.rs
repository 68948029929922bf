//! Accesses are checked against the region their pointer came from, never
//! against whichever region the address falls in: a packet pointer walked
//! into the stack, a map value pointer walked into another map's storage, a
//! write below the packet's headroom all raise the same exception in both
//! engines, whatever the heap layout.

use std::any::Any;
use std::sync::Arc;

use skiff_isa::*;
use skiff_maps::{Map, MapAttr, MapType};
use skiff_vm::{Context, Engine, HelperTable, ProgType, Program, Vm, VmError};

/// An xdp_md over a buffer with 8 KiB of headroom: data at 8192, 64 bytes of packet.
struct Xdp {
    buf: Vec<u8>,
}

const HEADROOM: usize = 8192;
const LEN: usize = 64;

impl Xdp {
    fn new() -> Xdp {
        Xdp {
            buf: vec![0xaa; HEADROOM + LEN],
        }
    }
    fn data(&self) -> usize {
        self.buf.as_ptr() as usize + HEADROOM
    }
}

impl Context for Xdp {
    fn ctx_size(&self) -> usize {
        24
    }
    fn load(&mut self, off: u32, size: u32) -> Result<u64, VmError> {
        match (off, size) {
            (0, 4) | (8, 4) => Ok(self.data() as u64),
            (4, 4) => Ok((self.data() + LEN) as u64),
            _ => Err(VmError::Ctx(format!("offset {off} size {size}"))),
        }
    }
    fn store(&mut self, off: u32, _size: u32, _value: u64) -> Result<(), VmError> {
        Err(VmError::Ctx(format!("store at {off}")))
    }
    fn packet(&self) -> Option<(usize, usize)> {
        Some((self.data(), self.data() + LEN))
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn arrays() -> Vec<Arc<Map>> {
    let attr = MapAttr {
        map_type: MapType::Array,
        key_size: 4,
        value_size: 16,
        max_entries: 1,
        map_flags: 0,
        name: "a".into(),
        inner: None,
    };
    vec![
        Map::create(attr.clone(), 1).expect("map a"),
        Map::create(attr, 1).expect("map b"),
    ]
}

/// `ld_imm64 dst, &map[idx].value`
fn map_value(dst: u8, idx: i32) -> [Insn; 2] {
    [
        Insn::new(LD_IMM64, dst, BPF_PSEUDO_MAP_IDX_VALUE, 0, idx),
        Insn::new(0, 0, 0, 0, 0),
    ]
}

/// Run `insns` in both engines, in the same Vm over the same packet (so the
/// addresses in errors match); both results.
fn both(insns: &[Insn]) -> Vec<Result<u64, (usize, VmError)>> {
    let maps = arrays();
    let mut vm = Vm::new(Arc::new(HelperTable::generic()));
    let mut ctx = Xdp::new();
    [Engine::Interp, Engine::Jit]
        .into_iter()
        .map(|engine| {
            let prog = Program::load_with("probe", ProgType::Xdp, insns.to_vec(), &maps, engine)
                .expect("loads");
            vm.engine = engine;
            vm.run(&Arc::new(prog), &mut ctx)
                .map_err(|e| (e.pc, e.error))
        })
        .collect()
}

/// Both engines end at `pc` with an out-of-bounds access of `len` bytes
/// (`write`), at an address that depends on the layout.
fn assert_oob(insns: &[Insn], pc: usize, len: u64, write: bool) {
    let r = both(insns);
    for (engine, res) in ["interp", "jit"].iter().zip(&r) {
        match res {
            Err((
                p,
                VmError::OutOfBounds {
                    len: l, write: w, ..
                },
            )) => {
                assert_eq!((*p, *l, *w), (pc, len, write), "{engine}: {res:?}")
            }
            other => panic!("{engine}: expected an out-of-bounds exception, got {other:?}"),
        }
    }
    assert_eq!(r[0], r[1], "the engines disagree");
}

fn asm(text: &str) -> Vec<Insn> {
    assemble(text).expect("assembles")
}

#[test]
fn pkt_write_headroom() {
    // data - 4096 is inside the buffer the packet lives in (live memory), but
    // not in the packet.
    let p =
        asm("ldxw %r2, [%r1+0]\nmov %r3, %r2\nadd %r3, -4096\nstb [%r3+0], 1\nmov %r0, 2\nexit");
    assert_oob(&p, 3, 1, true);
}

#[test]
fn packet_pointer_walked_into_the_stack() {
    // r2 = data + (r10 - 8 - data): the stack's address, the packet's provenance.
    let p = asm(
        "ldxw %r2, [%r1+0]\nmov %r3, %r10\nadd %r3, -8\nsub %r3, %r2\nadd %r2, %r3\n\
         stxdw [%r2+0], %r3\nmov %r0, 2\nexit",
    );
    assert_oob(&p, 5, 8, true);
}

#[test]
fn map_value_walked_into_another_maps_storage() {
    // r1 = &a[0] + (&b[0] - &a[0]): b's value, a's provenance.
    let mut p = Vec::new();
    p.extend(map_value(1, 0));
    p.extend(map_value(2, 1));
    p.extend(asm(
        "mov %r3, %r2\nsub %r3, %r1\nadd %r1, %r3\nstdw [%r1+0], 7\nmov %r0, 0\nexit",
    ));
    assert_oob(&p, 7, 8, true);
    // Through b's own pointer the same store lands.
    let mut q = Vec::new();
    q.extend(map_value(2, 1));
    q.extend(asm("stdw [%r2+0], 7\nldxdw %r0, [%r2+0]\nexit"));
    assert_eq!(both(&q), vec![Ok(7), Ok(7)]);
}

#[test]
fn lookup_result_walked_into_another_maps_storage() {
    // r0 = bpf_map_lookup_elem(a, &0) + (&b[0] - &a[0]): the helper's return
    // carries a's provenance.
    let mut p = Vec::new();
    p.extend(asm("stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4"));
    p.extend([
        Insn::new(LD_IMM64, 1, BPF_PSEUDO_MAP_IDX, 0, 0),
        Insn::new(0, 0, 0, 0, 0),
    ]);
    p.extend(asm("call 1\njne %r0, 0, +2\nmov %r0, 9\nexit"));
    p.extend(map_value(4, 1));
    p.extend(map_value(5, 0));
    p.extend(asm("sub %r4, %r5\nadd %r0, %r4\nldxdw %r0, [%r0+0]\nexit"));
    assert_oob(&p, 15, 8, false);
}

#[test]
fn a_computed_address_is_no_pointer() {
    // r10 * 1 is the stack's address as a number: no provenance.
    let p = asm("mov %r2, %r10\nmul %r2, 1\nldxdw %r0, [%r2-8]\nexit");
    assert_oob(&p, 2, 8, false);
    // A 32-bit move of a pointer makes a scalar too.
    let q = asm("mov %r2, %r10\nmov32 %r2, %r2\nldxb %r0, [%r2+0]\nexit");
    assert_oob(&q, 2, 1, false);
}

#[test]
fn a_spilled_pointer_keeps_its_provenance() {
    // Spill data to the stack, fill it, read the packet through it.
    let p =
        asm("ldxw %r2, [%r1+0]\nstxdw [%r10-8], %r2\nldxdw %r3, [%r10-8]\nldxb %r0, [%r3+0]\nexit");
    assert_eq!(both(&p), vec![Ok(0xaa), Ok(0xaa)]);
    // A narrow store into the slot leaves a number there.
    let q = asm(
        "ldxw %r2, [%r1+0]\nstxdw [%r10-8], %r2\nstb [%r10-8], 0\nldxdw %r3, [%r10-8]\n\
         ldxb %r0, [%r3+0]\nexit",
    );
    assert_oob(&q, 4, 1, false);
}

#[test]
fn pointers_keep_provenance_across_branches() {
    // The packet pointer reaches its use through a join of two paths (the JIT
    // reads its tag at run time there).
    let p = asm(
        "ldxw %r2, [%r1+0]\nldxw %r3, [%r1+4]\nmov %r4, %r2\nadd %r4, 1\njgt %r4, %r3, +2\n\
         mov %r5, %r2\nja +1\nmov %r5, %r10\nldxb %r0, [%r5+0]\nexit",
    );
    assert_eq!(both(&p), vec![Ok(0xaa), Ok(0xaa)]);
}

#[test]
fn a_callback_gets_its_context_pointer_with_provenance() {
    // bpf_loop(4, cb, r10 - 8, 0); cb(i, ctx) adds i to *(u64 *)ctx.
    let p = asm(
        "stdw [%r10-8], 0\nmov %r1, 4\nlddw %r2, 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 0\n\
         call 181\nldxdw %r0, [%r10-8]\nexit\n\
         ldxdw %r3, [%r2+0]\nadd %r3, %r1\nstxdw [%r2+0], %r3\nmov %r0, 0\nexit",
    );
    let mut p = p;
    // The callback address: ld_imm64 BPF_PSEUDO_FUNC to insn 10.
    p[2] = Insn::new(LD_IMM64, 2, BPF_PSEUDO_FUNC, 0, 10 - 3);
    assert_eq!(both(&p), vec![Ok(6), Ok(6)]);
}
