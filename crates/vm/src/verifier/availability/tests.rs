use super::*;
use skiff_isa::Insn;

use KernelVersion::*;

const ALL: [KernelVersion; 4] = [V5_15, V6_1, V6_6, V6_18];

#[test]
fn enum_maxima_by_release() {
    let helpers: Vec<u32> = ALL.iter().map(|&k| max_helper_id(k)).collect();
    assert_eq!(helpers, [175, 209, 211, 211]);
    let maps: Vec<u32> = ALL.iter().map(|&k| max_map_type(k)).collect();
    assert_eq!(maps, [29, 31, 32, 33]);
    let progs: Vec<u32> = ALL.iter().map(|&k| max_prog_type(k)).collect();
    assert_eq!(progs, [31, 31, 32, 32]);
    let attach: Vec<u32> = ALL.iter().map(|&k| max_attach_type(k)).collect();
    assert_eq!(attach, [41, 43, 48, 57]);
}

#[test]
fn helpers() {
    assert_eq!(check_helper(175, V5_15), Ok(()));
    // bpf_loop (181) came in 5.17.
    let e = check_helper(181, V5_15).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EINVAL, "invalid func unknown#181")
    );
    assert_eq!(check_helper(181, V6_1), Ok(()));
    assert!(check_helper(210, V6_1).is_err());
    assert_eq!(check_helper(211, V6_6), Ok(()));
    // The running 6.18 says exactly this for 212 and beyond.
    assert_eq!(
        check_helper(212, V6_18).unwrap_err().message,
        "invalid func unknown#212"
    );
}

#[test]
fn map_types() {
    let e = check_map_type(30, V5_15).unwrap_err();
    assert_eq!(e.errno, EINVAL);
    assert_eq!(
        e.message,
        "BPF_MAP_CREATE: map type BPF_MAP_TYPE_BLOOM_FILTER (30) is not in Linux 5.15 (it came in 5.16)"
    );
    assert!(check_map_type(33, V6_6).is_err());
    assert_eq!(check_map_type(33, V6_18), Ok(()));
    assert_eq!(check_map_type(27, V5_15), Ok(()));
    assert_eq!(
        check_map_type(34, V6_18).unwrap_err().message,
        "BPF_MAP_CREATE: map type unknown (34) is not in Linux 6.18"
    );
}

#[test]
fn prog_and_attach_types() {
    assert_eq!(check_prog_type(6, Some(37), V5_15), Ok(()));
    assert_eq!(check_prog_type(3, None, V5_15), Ok(()));
    assert_eq!(
        check_prog_type(3, Some(46), V6_1).unwrap_err().message,
        "BPF_LINK_CREATE: attach type BPF_TCX_INGRESS (46) is not in Linux 6.1 (it came in 6.6)"
    );
    assert_eq!(check_prog_type(3, Some(47), V6_6), Ok(()));
    assert_eq!(
        check_prog_type(3, Some(54), V6_6).unwrap_err().message,
        "BPF_LINK_CREATE: attach type BPF_NETKIT_PRIMARY (54) is not in Linux 6.6 (it came in 6.7)"
    );
    assert_eq!(check_prog_type(3, Some(55), V6_18), Ok(()));
    assert_eq!(
        check_prog_type(32, None, V6_1).unwrap_err().message,
        "BPF_PROG_LOAD: program type BPF_PROG_TYPE_NETFILTER (32) is not in Linux 6.1 (it came in 6.4)"
    );
}

/// The codes the running 6.18 kernel does not refuse with `unknown opcode`
/// (each of the 256 loaded as `r0 = 0; <code> 0, 0, 0, 0; exit` in a socket
/// filter). LDX codes of other modes are listed because resolve_pseudo_ldimm64
/// refuses them first, with `BPF_LDX uses reserved fields`.
const KNOWN_ON_6_18: &str = "01 04 05 06 07 09 0c 0f 11 14 15 16 17 18 19 1c 1d 1e 1f 20 21 24 25 \
26 27 28 29 2c 2d 2e 2f 30 31 34 35 36 37 39 3c 3d 3e 3f 40 41 44 45 46 47 48 49 4c 4d 4e 4f 50 51 \
54 55 56 57 59 5c 5d 5e 5f 61 62 63 64 65 66 67 69 6a 6b 6c 6d 6e 6f 71 72 73 74 75 76 77 79 7a 7b \
7c 7d 7e 7f 81 84 85 87 89 91 94 95 97 9c 9f a1 a4 a5 a6 a7 a9 ac ad ae af b1 b4 b5 b6 b7 b9 bc bd \
be bf c1 c3 c4 c5 c6 c7 c9 cb cc cd ce cf d1 d3 d4 d5 d6 d7 d9 db dc dd de e1 e5 e9 f1 f9";

#[test]
fn opcode_table_matches_the_running_kernel() {
    let known: Vec<u8> = KNOWN_ON_6_18
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(known.len(), 152);
    for code in 0..=255u8 {
        let insn = Insn::new(code, 0, 0, 0, 0);
        let got = check_insn(&insn, 1, V6_18).err().map(|e| e.message);
        let unknown = format!("unknown opcode {code:02x}");
        if known.contains(&code) {
            assert_ne!(got.as_deref(), Some(unknown.as_str()), "code {code:02x}");
        } else {
            assert_eq!(got.as_deref(), Some(unknown.as_str()), "code {code:02x}");
        }
        if code & 0x07 == BPF_LDX && !matches!(code & 0xe0, BPF_MEM | BPF_MEMSX) {
            assert_eq!(got.as_deref(), Some("BPF_LDX uses reserved fields"));
        }
    }
}

fn refusal(insn: Insn, kernel: KernelVersion) -> Option<String> {
    check_insn(&insn, 7, kernel).err().map(|e| {
        assert_eq!((e.errno, e.insn), (EINVAL, 7));
        e.message
    })
}

#[test]
fn cpu_v4_before_6_6() {
    let sdiv = Insn::new(BPF_ALU64 | BPF_DIV | BPF_K, 0, 0, 1, 3);
    let movsx = Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 1, 8, 0);
    let movsx32 = Insn::new(BPF_ALU | BPF_MOV | BPF_X, 0, 1, 16, 0);
    let ldsx = Insn::new(BPF_LDX | BPF_MEMSX | BPF_B, 0, 1, 0, 0);
    let bswap = Insn::new(BPF_ALU64 | BPF_END, 0, 0, 0, 16);
    let gotol = Insn::new(JA32, 0, 0, 0, 5);
    for old in [V5_15, V6_1] {
        assert_eq!(
            refusal(sdiv, old).as_deref(),
            Some("BPF_ALU uses reserved fields")
        );
        assert_eq!(
            refusal(movsx, old).as_deref(),
            Some("BPF_MOV uses reserved fields")
        );
        assert_eq!(
            refusal(movsx32, old).as_deref(),
            Some("BPF_MOV uses reserved fields")
        );
        assert_eq!(
            refusal(ldsx, old).as_deref(),
            Some("BPF_LDX uses reserved fields")
        );
        assert_eq!(refusal(bswap, old).as_deref(), Some("unknown opcode d7"));
        assert_eq!(refusal(gotol, old).as_deref(), Some("unknown opcode 06"));
    }
    for new in [V6_6, V6_18] {
        for insn in [sdiv, movsx, movsx32, ldsx, bswap, gotol] {
            assert_eq!(refusal(insn, new), None, "{insn:?} on {new:?}");
        }
    }
    assert_eq!(InsnFeature::of(&sdiv), Some(InsnFeature::SignedDivMod));
    assert_eq!(
        InsnFeature::of(&Insn::new(BPF_ALU64 | BPF_DIV | BPF_K, 0, 0, 0, 3)),
        None
    );
}

#[test]
fn later_encodings() {
    let may_goto = Insn::new(BPF_JMP | BPF_JCOND, 0, 0, 0, 0);
    let cast = Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 1, 1, 1);
    let load_acq = Insn::new(BPF_STX | BPF_ATOMIC | BPF_DW, 0, 1, 0, BPF_LOAD_ACQ);
    let narrow = Insn::new(BPF_STX | BPF_ATOMIC | BPF_B, 0, 1, 0, BPF_LOAD_ACQ);
    assert_eq!(
        refusal(may_goto, V6_6).as_deref(),
        Some("unknown opcode e5")
    );
    assert_eq!(refusal(may_goto, V6_18), None);
    assert_eq!(
        refusal(cast, V6_6).as_deref(),
        Some("BPF_MOV uses reserved fields")
    );
    assert_eq!(refusal(cast, V6_18), None);
    // The running kernel prints the imm of an unknown atomic this way ("123").
    assert_eq!(
        refusal(load_acq, V6_6).as_deref(),
        Some("BPF_ATOMIC uses invalid atomic opcode 100")
    );
    assert_eq!(refusal(load_acq, V6_18), None);
    assert_eq!(refusal(narrow, V6_6).as_deref(), Some("unknown opcode d3"));
    assert_eq!(refusal(narrow, V6_18), None);
    assert_eq!(
        InsnFeature::of(&cast).map(InsnFeature::since),
        Some(Release(6, 9))
    );
    // 5.15's own atomics are fine everywhere.
    let fetch_add = Insn::new(
        BPF_STX | BPF_ATOMIC | BPF_DW,
        10,
        1,
        -8,
        BPF_ADD as i32 | BPF_FETCH,
    );
    assert_eq!(refusal(fetch_add, V5_15), None);
}

#[test]
fn limits_and_size() {
    let root = limits(V6_18, true);
    assert_eq!(
        root,
        Limits {
            max_insns: 1_000_000,
            complexity_limit_insns: 1_000_000,
            max_stack: 512,
            max_subprogs: 256,
            max_call_frames: 8,
            complexity_limit_jmp_seq: 8192,
            complexity_limit_states: 64,
            max_tail_calls: 33,
        }
    );
    assert_eq!(limits(V5_15, false).max_insns, 4096);
    assert_eq!(check_prog_size(4096, V6_1, false), Ok(()));
    let e = check_prog_size(4097, V6_1, false).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            E2BIG,
            "BPF_PROG_LOAD: 4097 instructions (the limit is 4096 unprivileged)"
        )
    );
    assert_eq!(check_prog_size(4097, V6_1, true), Ok(()));
    assert!(check_prog_size(0, V6_18, true).is_err());
}

#[test]
fn verifier_features() {
    assert!(Feature::BoundedLoops.in_kernel(V5_15));
    assert!(Feature::Timer.in_kernel(V5_15));
    assert!(!Feature::Loop.in_kernel(V5_15));
    assert!(Feature::Loop.in_kernel(V6_1));
    assert!(!Feature::CpuV4.in_kernel(V6_1));
    assert!(Feature::CpuV4.in_kernel(V6_6));
    assert!(!Feature::MayGotoAndArena.in_kernel(V6_6));
    assert!(Feature::LoadAcquireStoreRelease.in_kernel(V6_18));
    assert_eq!(Feature::Dynptr.since().to_string(), "5.19");
    assert_eq!(V6_18.release(), Release(6, 18));
}
