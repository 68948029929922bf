//! Context fields the JIT reaches directly (skiff_vm::ctx_layout, the layouts in
//! skiff_net::ctx): every program runs in the interpreter, in the JIT compiled
//! for the context's layout, and in that JIT over a context of another kind
//! (the runtime's path); r0 and the fields the program wrote must agree, and
//! equal the values the kernel's rewrite gives (bpf_convert_ctx_access).

use std::any::Any;
use std::sync::Arc;

use skiff_isa::assemble;
use skiff_net::buff::{SkBuff, XdpBuff};
use skiff_vm::{Context, Engine, ProgType, Program, Vm, VmError};

fn load(text: &str, prog_type: ProgType, engine: Engine) -> Arc<Program> {
    let insns = assemble(text).expect("assembles");
    let layout = skiff_net::helper_table().ctx_layout(prog_type);
    assert!(layout.is_some(), "{prog_type:?} has a layout");
    let p = Program::load_for_context("t", prog_type, insns, &[], engine, None, layout);
    Arc::new(p.expect("loads"))
}

fn vm(engine: Engine) -> Vm {
    let mut vm = Vm::new(skiff_net::helper_table());
    vm.engine = engine;
    vm
}

/// An IPv4/UDP frame (the field values do not depend on it).
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[12] = 0x08;
    f[14] = 0x45;
    f
}

/// The fields a program may write, and the ones it reads back.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    mark: u32,
    priority: u32,
    tc_index: u16,
    queue_mapping: u16,
    tc_classid: u16,
    cb: [u8; 20],
    tstamp: u64,
}

fn written(s: &SkBuff) -> Written {
    Written {
        mark: s.mark,
        priority: s.priority,
        tc_index: s.tc_index,
        queue_mapping: s.queue_mapping,
        tc_classid: s.tc_classid,
        cb: s.cb,
        tstamp: s.tstamp,
    }
}

fn skb(prep: &dyn Fn(&mut SkBuff)) -> SkBuff {
    let mut s = SkBuff::new(&frame(), 64, 3, 1500);
    prep(&mut s);
    s
}

/// r0 and the written fields in one engine over an SkBuff.
fn run_skb(text: &str, engine: Engine, prep: &dyn Fn(&mut SkBuff)) -> (u64, Written) {
    let prog = load(text, ProgType::SchedCls, engine);
    let mut s = skb(prep);
    let r0 = vm(engine).run(&prog, &mut s).expect("runs");
    (r0, written(&s))
}

/// The SkBuff's own rules behind a context that is not its layout's: the JIT
/// goes through the runtime for every field.
struct Opaque(SkBuff);

impl Context for Opaque {
    fn ctx_size(&self) -> usize {
        self.0.ctx_size()
    }
    fn load(&mut self, off: u32, size: u32) -> Result<u64, VmError> {
        self.0.load(off, size)
    }
    fn store(&mut self, off: u32, size: u32, value: u64) -> Result<(), VmError> {
        self.0.store(off, size, value)
    }
    fn packet(&self) -> Option<(usize, usize)> {
        self.0.packet()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Runs `text` in the three ways; all must give `want`.
fn check(text: &str, prep: &dyn Fn(&mut SkBuff), want: (u64, Written)) {
    assert_eq!(run_skb(text, Engine::Interp, prep), want, "interpreter");
    assert_eq!(run_skb(text, Engine::Jit, prep), want, "JIT, direct");
    let prog = load(text, ProgType::SchedCls, Engine::Jit);
    let mut o = Opaque(skb(prep));
    let r0 = vm(Engine::Jit).run(&prog, &mut o).expect("runs");
    assert_eq!((r0, written(&o.0)), want, "JIT, other context");
}

const STORES: &str = "
    mov %r2, 0x11
    stxw [%r1+8], %r2
    stw [%r1+32], 0x22
    mov %r2, 0x10abc
    stxw [%r1+44], %r2
    stxw [%r1+72], %r2
    stw [%r1+12], 7
    lddw %r3, 0x100000003
    stxw [%r1+12], %r3
    mov %r4, 0xfffe
    stxw [%r1+12], %r4
    stb [%r1+49], 0xab
    mov %r4, 0xcdef
    stxh [%r1+54], %r4
    stxdw [%r1+56], %r3
    lddw %r5, 0x1000
    stxdw [%r1+152], %r5
    ldxw %r0, [%r1+8]
    ldxw %r2, [%r1+32]
    lsh %r0, 8
    add %r0, %r2
    ldxw %r2, [%r1+44]
    lsh %r0, 12
    add %r0, %r2
    ldxw %r2, [%r1+12]
    lsh %r0, 16
    add %r0, %r2
    ldxw %r2, [%r1+48]
    xor %r0, %r2
    ldxw %r2, [%r1+60]
    add %r0, %r2
    ldxdw %r2, [%r1+152]
    add %r0, %r2
    exit";

#[test]
fn stores_to_every_writable_field() {
    let want_r0 = ((((0x11u64 << 8) + 0x22) << 12) + 0xabc) << 16;
    let want_r0 = ((want_r0 + 0xfffe) ^ 0xab00) + 1 + 0x1000;
    let mut cb = [0u8; 20];
    cb[1] = 0xab;
    cb[6..8].copy_from_slice(&[0xef, 0xcd]);
    cb[8..16].copy_from_slice(&0x1_0000_0003u64.to_le_bytes());
    let want = Written {
        mark: 0x11,
        priority: 0x22,
        tc_index: 0xabc,
        queue_mapping: 0xfffe,
        tc_classid: 0xabc,
        cb,
        tstamp: 0x1000,
    };
    check(STORES, &|_| {}, (want_r0, want));
}

#[test]
fn queue_mapping_keeps_its_value_at_no_queue_mapping() {
    // A register value of 0xffff or more, as 64 bits, leaves queue_mapping.
    let text = "
        mov %r2, 0xffff
        stxw [%r1+12], %r2
        lddw %r2, 0x100000005
        stxw [%r1+12], %r2
        ldxw %r0, [%r1+12]
        exit";
    let prep = |s: &mut SkBuff| s.queue_mapping = 3;
    let mut want = written(&skb(&prep));
    want.queue_mapping = 3;
    check(text, &prep, (3, want));
}

#[test]
fn loads_of_every_direct_field() {
    // Each field's value times a distinct weight, summed: a field read from
    // the wrong place or at the wrong width changes the sum.
    let fields: [(i16, u64); 13] = [
        (4, 3),
        (8, 0xdead_beef),
        (12, 9),
        (20, 1),
        (24, 0x0123),
        (32, 77),
        (36, 5),
        (40, 3),
        (44, 0x4242),
        (68, 0x1234_5678),
        (72, 0x2a),
        (84, 0x2001),
        (160, 1514),
    ];
    let mut text = String::from("mov %r0, 0\n");
    let mut want = 0u64;
    for (i, &(off, v)) in fields.iter().enumerate() {
        text += &format!("ldxw %r2, [%r1+{off}]\nmul %r2, {}\nadd %r0, %r2\n", i + 1);
        want = want.wrapping_add(v.wrapping_mul(i as u64 + 1));
    }
    text += "ldxdw %r2, [%r1+152]\nadd %r0, %r2\nldxdw %r2, [%r1+184]\nadd %r0, %r2\n";
    text += "ldxw %r2, [%r1+164]\nadd %r0, %r2\nldxw %r2, [%r1+176]\nadd %r0, %r2\nexit";
    want += 0x1_0000_0000 + 0x2_0000_0000 + 4 + 1448;
    let prep = |s: &mut SkBuff| {
        s.pkt_type = 3;
        s.mark = 0xdead_beef;
        s.queue_mapping = 9;
        s.vlan_present = true;
        s.vlan_tci = 0x0123;
        s.priority = 77;
        s.ingress_ifindex = 5;
        s.ifindex = 3;
        s.tc_index = 0x4242;
        s.hash = 0x1234_5678;
        s.tc_classid = 0x2a;
        s.napi_id = 0x2001;
        s.wire_len = 1514;
        s.tstamp = 0x1_0000_0000;
        s.hwtstamp = 0x2_0000_0000;
        s.gso_segs = 4;
        s.gso_size = 1448;
    };
    let w = written(&skb(&prep));
    check(&text, &prep, (want, w));
}

#[test]
fn narrow_loads_and_refused_stores_keep_the_runtime_rules() {
    // A 2-byte load of mark's high half, a 1-byte load of cb[1]'s byte 2 (direct).
    let text = "
        ldxh %r0, [%r1+10]
        ldxb %r2, [%r1+54]
        lsh %r0, 8
        add %r0, %r2
        exit";
    let prep = |s: &mut SkBuff| {
        s.mark = 0xabcd_0000;
        s.cb[6] = 0x5e;
    };
    check(text, &prep, (0xabcd5e, written(&skb(&prep))));
    // A store to a read-only field ends the run in every engine.
    let bad = "mov %r2, 1\nstxw [%r1+4], %r2\nmov %r0, 0\nexit";
    for engine in [Engine::Interp, Engine::Jit] {
        let prog = load(bad, ProgType::SchedCls, engine);
        let e = vm(engine)
            .run(&prog, &mut skb(&|_| {}))
            .expect_err("refused");
        assert_eq!(e.pc, 1, "{engine:?}");
        assert!(matches!(e.error, VmError::Ctx(_)), "{engine:?}: {e}");
    }
}

#[test]
fn xdp_md_plain_fields() {
    let text = "
        ldxw %r0, [%r1+12]
        ldxw %r2, [%r1+16]
        lsh %r0, 16
        add %r0, %r2
        exit";
    for engine in [Engine::Interp, Engine::Jit] {
        let prog = load(text, ProgType::Xdp, engine);
        let mut x = XdpBuff::new(&frame(), 256, 7).expect("fits");
        x.rx_queue_index = 3;
        let r0 = vm(engine).run(&prog, &mut x).expect("runs");
        assert_eq!(r0, 7 << 16 | 3, "{engine:?}");
    }
}
