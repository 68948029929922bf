//! Every registered helper, called from XDP and TC programs with arguments drawn
//! from pointers (ctx, packet, stack, a map) and edge-case integers, never panics
//! and never touches memory outside the run's regions: it returns a value or ends
//! the run with an exception.

use std::sync::Arc;

use proptest::prelude::*;
use skiff_isa::{Insn, BPF_PSEUDO_MAP_IDX, LD_IMM64};
use skiff_maps::{Map, MapAttr, MapType};
use skiff_net::{SkBuff, XdpBuff};
use skiff_vm::{ProgType, Program, Vm};

/// An argument: a base register (r6 ctx, r7 packet data, r8 stack, r9 map) plus an
/// offset, or an immediate.
#[derive(Clone, Debug)]
enum Arg {
    Reg(u8, i32),
    Imm(i64),
}

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        (6u8..10, prop_oneof![Just(0i32), -64i32..64, Just(4096)])
            .prop_map(|(r, o)| Arg::Reg(r, o)),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(14),
            Just(64),
            Just(0xffff),
            Just(u32::MAX as i64),
            Just(-1),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Arg::Imm),
    ]
}

fn ld_imm64(dst: u8, src: u8, v: i64) -> [Insn; 2] {
    [
        Insn::new(LD_IMM64, dst, src, 0, v as i32),
        Insn::new(0, 0, 0, 0, (v >> 32) as i32),
    ]
}

/// r6 = ctx, r7 = packet data, r8 = r10 - 64, r9 = the map; r1..r5 = args; call.
fn program(xdp: bool, helper: u32, args: &[Arg]) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(0xbf, 6, 1, 0, 0),
        Insn::new(0x61, 7, 1, if xdp { 0 } else { 76 }, 0),
        Insn::new(0xbf, 8, 10, 0, 0),
        Insn::new(0x07, 8, 0, 0, -64),
    ];
    p.extend(ld_imm64(9, BPF_PSEUDO_MAP_IDX, 0));
    for (i, a) in args.iter().enumerate() {
        let r = i as u8 + 1;
        match a {
            Arg::Reg(base, off) => {
                p.push(Insn::new(0xbf, r, *base, 0, 0));
                p.push(Insn::new(0x07, r, 0, 0, *off));
            }
            Arg::Imm(v) => p.extend(ld_imm64(r, 0, *v)),
        }
    }
    p.push(Insn::new(0x85, 0, 0, 0, helper as i32));
    p.push(Insn::new(0x95, 0, 0, 0, 0));
    p
}

fn packet() -> Vec<u8> {
    let mut f = vec![0u8; 74];
    f[12] = 0x08; // IPv4
    f[14] = 0x45;
    f[23] = 17;
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn helpers_never_panic(which in 0usize..64, xdp in any::<bool>(), map_kind in 0usize..4, args in proptest::collection::vec(arg(), 5)) {
        let table = skiff_net::helper_table();
        let ids: Vec<u32> = table.iter().map(|d| d.id).collect();
        let id = ids[which % ids.len()];
        let attr = match map_kind {
            0 => MapAttr::new(MapType::Hash, 4, 8, 16),
            1 => MapAttr::new(MapType::Array, 4, 16, 4),
            2 => MapAttr::new(MapType::Devmap, 4, 4, 4),
            _ => MapAttr::new(MapType::Ringbuf, 0, 0, 4096),
        };
        let map: Arc<Map> = Map::create(attr, 2).expect("map");
        let prog_type = if xdp { ProgType::Xdp } else { ProgType::SchedCls };
        let prog = Arc::new(Program::load("fuzz", prog_type, program(xdp, id, &args), &[map]).expect("loads"));
        let mut vm = Vm::new(table.clone());
        vm.env.budget = 1_000_000;
        let pkt = packet();
        // Ok or an exception; a panic fails the test.
        if xdp {
            let mut x = XdpBuff::new(&pkt, 256, 1).expect("frame");
            let _ = vm.run(&prog, &mut x);
        } else {
            let mut s = SkBuff::new(&pkt, 64, 1, 65536);
            s.protocol = 0x0800;
            let _ = vm.run(&prog, &mut s);
        }
    }
}

/// The harness reaches the helpers' bodies: with plain arguments (stack buffer,
/// small sizes, the map) most helpers return instead of ending the run.
#[test]
fn harness_reaches_helper_bodies() {
    let table = skiff_net::helper_table();
    let args = [
        Arg::Reg(9, 0),
        Arg::Reg(8, 0),
        Arg::Imm(4),
        Arg::Imm(0),
        Arg::Imm(0),
    ];
    let mut returned = 0;
    let mut total = 0;
    for def in table.iter() {
        for xdp in [true, false] {
            let prog_type = if xdp {
                ProgType::Xdp
            } else {
                ProgType::SchedCls
            };
            if !def.prog_types.is_empty() && !def.prog_types.contains(&prog_type) {
                continue;
            }
            total += 1;
            let map = Map::create(MapAttr::new(MapType::Hash, 4, 8, 16), 2).expect("map");
            let prog = Arc::new(
                Program::load("h", prog_type, program(xdp, def.id, &args), &[map]).expect("loads"),
            );
            let mut vm = Vm::new(table.clone());
            let pkt = packet();
            let r = if xdp {
                vm.run(&prog, &mut XdpBuff::new(&pkt, 256, 1).expect("frame"))
            } else {
                vm.run(&prog, &mut SkBuff::new(&pkt, 64, 1, 65536))
            };
            if r.is_ok() {
                returned += 1;
            }
        }
    }
    assert!(total > 60, "{total} helper/program-type pairs");
    assert!(
        returned * 2 > total,
        "only {returned} of {total} calls returned"
    );
}
