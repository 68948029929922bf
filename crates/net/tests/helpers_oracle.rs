//! The helper oracle programs (tests/bpf/helpers_*.c) run in skiff must give the
//! values the 6.18 kernel gave for them (recorded with tests/bpf/run_oracle.sh,
//! BPF_PROG_TEST_RUN on lo). Needs clang-19; skips with a message without it.

mod common;

use std::sync::Arc;

use skiff_maps::MapValue;
use skiff_net::test_run::{test_run, TestRun};
use skiff_vm::{Collection, Vm};

const PKT: &str = "02000000000102000000000208004500002400010000401166c60a0000010a000002111122220010a7834142434445464748";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn compile(name: &str) -> Option<Vec<u8>> {
    common::bpf_object(name)
}

/// Run `prog` of `obj` on PKT; returns (retval, data_out, res[] as i64).
fn run(obj: &[u8], prog: &str) -> (u32, Vec<u8>, Vec<i64>) {
    let o = skiff_object::Object::parse(obj).expect("parse");
    let c = Collection::load(&o, &skiff_net::load_options()).expect("load");
    let p: Arc<_> = c.program(prog).expect("prog").clone();
    let mut vm = Vm::new(skiff_net::helper_table());
    let out = test_run(
        &mut vm,
        &p,
        &TestRun {
            data_in: &hex(PKT),
            ctx_in: None,
            repeat: 1,
        },
    )
    .expect("run");
    assert!(out.exception.is_none(), "exception: {:?}", out.exception);
    let res = c.map("res").expect("res map");
    let n = res.attr().max_entries;
    let vals = (0..n)
        .map(|i| match res.sys_lookup(&i.to_le_bytes()) {
            Ok(MapValue::Single(v)) => i64::from_le_bytes(v[..8].try_into().unwrap()),
            other => panic!("res[{i}]: {:?}", other.is_ok()),
        })
        .collect();
    (out.retval, out.data_out, vals)
}

fn check(res: &[i64], expected: &[(usize, i64)]) {
    for &(i, v) in expected {
        assert_eq!(res[i], v, "res[{i}]");
    }
}

#[test]
fn tc_helpers_match_kernel() {
    let Some(obj) = compile("helpers_tc") else {
        return;
    };
    let (ret, out, r) = run(&obj, "helpers_tc");
    assert_eq!(ret, 0);
    check(
        &r,
        &[
            (0, 0x406),
            (1, 0x9a79),
            (2, 0xe2e),
            (3, 0x6f00),
            (4, 0x6588),
            (5, 0xb5d1),
            (6, 0x25a9),
            (7, 0x6dfe),
            (8, 0xffff),
            (9, 0x3060),
            (10, -22),
            (11, -14),
            (12, -14),
            (13, -14),
            (14, 0),
            (15, 0x100000a),
            (16, -14),
            (17, -524),
            (18, -13),
            (19, -22),
            (20, 0),
            (21, -12),
            (22, 0),
            (23, 0),
            (24, -14),
            (25, -22),
            (26, 0),
            (27, 0),
            (28, 0),
            (29, 0),
            (30, 0),
            (31, 2),
            (32, 7),
            (33, 2),
            (34, 2),
            (35, -22),
            (36, -22),
            (37, 0),
            (38, 0),
            (39, 65536),
            (40, -19),
            (41, 1),
            (42, 65536),
            (43, -22),
            (44, 5),
            (45, -22),
            (46, -22),
            (47, -97),
            (48, -19),
            (49, 5),
            (50, -2),
            (51, -7),
            (52, -14),
            (53, -14),
            (54, 0),
            (55, 0x1234),
            (56, 0),
            (57, 0),
            (58, -22),
            (59, 0),
            (60, 56),
            (61, -22),
            (62, 0),
            (63, 60),
            (64, -14),
            (65, -524),
            (66, -524),
            (67, 8),
        ],
    );
    assert_eq!(
        out,
        hex("0000000002000000000102000000000208004500002400010000401108c70a0000010a000002111122220010e9a74142434445464748000000000000")
    );
}

#[test]
fn tc_vlan_and_proto_match_kernel() {
    let Some(obj) = compile("helpers_tc") else {
        return;
    };
    let (_, out, r) = run(&obj, "vlan_tc");
    check(
        &r,
        &[
            (0, 0),
            (1, 1),
            (2, 5),
            (3, 50),
            (4, 0),
            (5, 54),
            (6, 0x81),
            (7, 0x81),
            (8, 0),
            (9, 1),
            (10, 5),
            (11, 50),
            (12, 8),
            (13, 0),
            (14, 70),
            (15, 0xdd86),
            (16, -524),
            (17, -22),
            (18, 1),
            (19, 0),
            (20, 0),
            (21, 70),
        ],
    );
    assert_eq!(
        out,
        hex("020000000001020000000002080000000000000000000000000000000000000000004500002400010000401166c60a0000010a000002111122220010a7834142434445464748")
    );
}

#[test]
fn tc_adjust_room_matches_kernel() {
    let Some(obj) = compile("helpers_tc") else {
        return;
    };
    let (_, _out, r) = run(&obj, "room_tc");
    // 8: a second encap is -EALREADY; 9/10: change_tail on an encapsulated skb is
    // -ENOTSUPP and leaves the length.
    check(
        &r,
        &[
            (0, 0),
            (1, 58),
            (2, 0),
            (3, 54),
            (4, -524),
            (5, -22),
            (6, -22),
            (7, 0),
            (8, -114),
            (9, -524),
            (10, 74),
        ],
    );
}

#[test]
fn xdp_helpers_match_kernel() {
    let Some(obj) = compile("helpers_xdp") else {
        return;
    };
    let (ret, out, r) = run(&obj, "helpers_xdp");
    assert_eq!(ret, 2);
    check(
        &r,
        &[
            (0, 50),
            (1, -22),
            (2, 0),
            (3, 0),
            (4, -22),
            (5, -13),
            (6, 0),
            (7, -22),
            (8, -22),
            (9, 0),
            (10, 32),
            (11, 0),
            (12, 0),
            (13, 40),
            (14, -22),
            (15, -22),
            (16, -22),
            (17, 0),
            (18, 68),
            (19, -14),
            (20, 0),
            (21, 0),
            (22, 0),
            (23, 0),
            (24, 0),
            (25, 4),
            (26, 2),
            (27, 0),
            (28, 4),
            (29, 1),
            (30, 0),
            (31, 65536),
            (32, -22),
            (33, 1),
            (34, -19),
            (35, 1),
            (36, -2),
            (37, -7),
            (38, -14),
            (39, -7),
            (40, 0x1014),
        ],
    );
    assert_eq!(
        out,
        hex("00000000000000000000000000000000000000000000000000000000000000000000000000000000000004030201080706050000000102000000000208004500002400010000401166c60a0000010a000002111122220010a783414243444546474800000000000000000000")
    );
}
