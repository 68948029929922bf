//! Kernel-only corpus test: compiles every bpf/*.c, loads it into the kernel and checks
//! that each program does what its header comment says, with exact verdicts, bytes and
//! map contents. Needs root and clang-19; skips with a printed reason otherwise.

use std::path::PathBuf;

use skiff_kernel::testpkt::{self, packet};
use skiff_kernel::{KernelObject, TestRun, TestRunResult};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

fn bpf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf")
}

fn skip() -> bool {
    let reason = skiff_kernel::available()
        .err()
        .or_else(|| skiff_kernel::clang::available().err());
    if let Some(r) = reason {
        eprintln!("skipping kernel corpus test: {r}");
        return true;
    }
    false
}

fn load(stem: &str) -> KernelObject {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bpf");
    let obj = skiff_kernel::clang::compile(&bpf_dir().join(format!("{stem}.c")), &out).unwrap();
    let bytes = std::fs::read(&obj).unwrap();
    let parsed = skiff_object::Object::parse(&bytes).unwrap_or_else(|e| panic!("{stem}: {e}"));
    KernelObject::load(&parsed).unwrap_or_else(|e| panic!("{stem}: {e}"))
}

fn run(k: &KernelObject, prog: &str, pkt: &str) -> TestRunResult {
    let p = packet(pkt).unwrap();
    k.test_run(prog, &TestRun::new(&p))
        .unwrap_or_else(|e| panic!("{prog} on {pkt}: {e}"))
}

fn run_n(k: &KernelObject, prog: &str, pkt: &str, repeat: u32) -> TestRunResult {
    let p = packet(pkt).unwrap();
    let mut o = TestRun::new(&p);
    o.repeat = repeat;
    k.test_run(prog, &o).unwrap()
}

fn u32k(i: u32) -> Vec<u8> {
    i.to_ne_bytes().to_vec()
}

fn value(k: &KernelObject, map: &str, key: &[u8]) -> Option<Vec<u8>> {
    k.map_dump(map)
        .unwrap()
        .into_iter()
        .find(|(kk, _)| kk == key)
        .map(|(_, v)| v)
}

fn u64_at(v: &[u8], i: usize) -> u64 {
    u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap())
}

fn i64_slot(k: &KernelObject, map: &str, i: u32) -> i64 {
    u64_at(&value(k, map, &u32k(i)).unwrap(), 0) as i64
}

/// Sum of the per-CPU copies of a u64 field at `field` of a per-CPU value.
fn percpu_sum(v: &[u8], value_size: usize, field: usize) -> u64 {
    v.chunks(value_size.div_ceil(8) * 8)
        .map(|c| u64_at(c, field))
        .sum()
}

#[test]
fn corpus() {
    if skip() {
        return;
    }
    // every source compiles and loads
    let mut stems: Vec<String> = std::fs::read_dir(bpf_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "c").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    stems.sort();
    assert!(stems.len() >= 17, "{stems:?}");
    for s in &stems {
        if NEEDS_MAP_BTF.contains(&s.as_str()) {
            load_with_bpftool(s);
        } else {
            drop(load(s));
        }
    }
}

/// Programs the verifier accepts only with map BTF (bpf_spin_lock in a value):
/// skiff-kernel creates maps without BTF, so these load through libbpf (bpftool).
const NEEDS_MAP_BTF: &[&str] = &["xdp_spinlock"];

fn load_with_bpftool(stem: &str) {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bpf");
    let obj = skiff_kernel::clang::compile(&bpf_dir().join(format!("{stem}.c")), &out).unwrap();
    let bpffs = std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(2) == Some("bpf")));
    if !bpffs {
        eprintln!("{stem}: not checked: no bpffs mounted (scripts/test.sh mounts it as root)");
        return;
    }
    let pin = format!("/sys/fs/bpf/skiff_corpus_{stem}_{}", std::process::id());
    let status = std::process::Command::new("bpftool")
        .args(["prog", "loadall", obj.to_str().unwrap(), &pin])
        .status();
    let _ = std::fs::remove_dir_all(&pin);
    match status {
        Ok(s) => assert!(s.success(), "{stem}: bpftool prog loadall failed"),
        Err(e) => eprintln!("{stem}: not checked, bpftool not runnable: {e}"),
    }
}

#[test]
fn runt_frames_refused() {
    if skip() {
        return;
    }
    let k = load("xdp_count");
    let e = k
        .test_run("xdp_count", &TestRun::new(&packet("runt").unwrap()))
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc_einval()));
    // SCHED_CLS refuses an IPv4 frame shorter than 14 + 20 (KERNEL-NOTES 3); XDP runs it.
    let t = load("tc_classify");
    let e = t
        .test_run(
            "cls_main",
            &TestRun::new(&packet("ipv4_truncated").unwrap()),
        )
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc_einval()));
    assert_eq!(run(&k, "xdp_count", "ipv4_truncated").retval, XDP_PASS);
}

fn libc_einval() -> i32 {
    22
}

#[test]
fn xdp_count() {
    if skip() {
        return;
    }
    let k = load("xdp_count");
    let names = [
        "ipv4_tcp_syn",
        "ipv4_udp",
        "vlan_ipv4_udp",
        "ipv6_tcp",
        "arp_request",
        "ipv4_tcp_syn",
    ];
    let mut ip_bytes = 0u64;
    for n in names {
        let r = run(&k, "xdp_count", n);
        assert_eq!(r.retval, XDP_PASS, "{n}");
        assert_eq!(r.data_out, packet(n).unwrap(), "{n}");
        if n != "arp_request" && n != "ipv6_tcp" {
            ip_bytes += packet(n).unwrap().len() as u64;
        }
    }
    let v4 = value(&k, "eth_stats", &u32k(0x0800)).unwrap();
    assert_eq!((u64_at(&v4, 0), u64_at(&v4, 1)), (4, ip_bytes));
    let arp = value(&k, "eth_stats", &u32k(0x0806)).unwrap();
    assert_eq!(u64_at(&arp, 0), 1);
    assert_eq!(k.map_dump("eth_stats").unwrap().len(), 3);
    let ncpu = skiff_kernel::possible_cpus().unwrap();
    let tcp = value(&k, "ip_stats", &u32k(6)).unwrap();
    assert_eq!(tcp.len(), ncpu * 16);
    assert_eq!(percpu_sum(&tcp, 16, 0), 3);
    let udp = value(&k, "ip_stats", &u32k(17)).unwrap();
    assert_eq!(percpu_sum(&udp, 16, 0), 2);
}

#[test]
fn xdp_fw() {
    if skip() {
        return;
    }
    let k = load("xdp_fw");
    // README: --map-update blocked 18000000c0a80100 01
    k.map_update("blocked", &[0x18, 0, 0, 0, 192, 168, 1, 0], &[1], 0)
        .unwrap();
    assert_eq!(run(&k, "xdp_fw", "ipv4_blocked_src").retval, XDP_DROP);
    for n in [
        "ipv4_tcp_syn",
        "ipv4_udp",
        "ipv6_tcp",
        "arp_request",
        "ipv4_lb_vip",
    ] {
        assert_eq!(run(&k, "xdp_fw", n).retval, XDP_PASS, "{n}");
    }
    assert_eq!(i64_slot(&k, "drop_count", 0), 1);
    assert_eq!(
        k.map_dump("drops_by_val").unwrap(),
        vec![(vec![1], 1u64.to_ne_bytes().to_vec())]
    );
    assert_eq!(
        k.map_dump("blocked").unwrap(),
        vec![(vec![0x18, 0, 0, 0, 192, 168, 1, 0], vec![1])]
    );
}

pub fn lb_setup(k: &KernelObject) {
    let mut key = testpkt::LB_VIP.to_vec();
    key.extend_from_slice(&testpkt::LB_PORT.to_be_bytes());
    key.extend_from_slice(&[6, 0]);
    k.map_update("services", &key, &u32k(0), 0).unwrap();
    let be = [10, 0, 1, 1, 0x02, 0, 0, 0, 1, 1, 0, 0];
    k.map_update("backends", &u32k(0), &be, 0).unwrap();
}

#[test]
fn xdp_lb() {
    if skip() {
        return;
    }
    let k = load("xdp_lb");
    lb_setup(&k);
    let r = run(&k, "xdp_lb", "ipv4_lb_vip");
    assert_eq!(r.retval, XDP_TX);
    let orig = packet("ipv4_lb_vip").unwrap();
    let d = &r.data_out;
    assert_eq!(d.len(), orig.len());
    assert_eq!(&d[0..6], &[0x02, 0, 0, 0, 1, 1]);
    assert_eq!(&d[6..12], &testpkt::MAC_DST);
    assert_eq!(&d[30..34], &[10, 0, 1, 1]);
    assert!(testpkt::ipv4_checksums_ok(d));
    assert_eq!(&d[34..], {
        let mut expect = testpkt::ipv4_tcp(testpkt::IP_SRC, [10, 0, 1, 1], 40003, 80, 0x02, &[]);
        expect.drain(..34);
        expect
    });
    assert_eq!(i64_slot(&k, "backend_tx", 0), 1);
    for n in ["ipv4_tcp_syn", "ipv4_udp", "ipv6_tcp", "ipv4_frag_second"] {
        let r = run(&k, "xdp_lb", n);
        assert_eq!(
            (r.retval, r.data_out),
            (XDP_PASS, packet(n).unwrap()),
            "{n}"
        );
    }
}

#[test]
fn xdp_redirect() {
    if skip() {
        return;
    }
    let k = load("xdp_redirect");
    assert_eq!(
        run(&k, "xdp_redirect_devmap", "ipv4_tcp_syn").retval,
        XDP_PASS
    );
    k.map_update("tx_port", &u32k(0), &u32k(1), 0).unwrap();
    assert_eq!(
        run(&k, "xdp_redirect_devmap", "ipv4_tcp_syn").retval,
        XDP_REDIRECT
    );
    assert_eq!(run(&k, "xdp_redirect_devmap", "ipv4_udp").retval, XDP_PASS);
    // empty devmap slots are skipped in the dump
    assert_eq!(k.map_dump("tx_port").unwrap(), vec![(u32k(0), u32k(1))]);
    assert_eq!(run(&k, "xdp_redirect_devhash", "ipv4_udp").retval, XDP_DROP);
    k.map_update("tx_hash", &u32k(1), &u32k(1), 0).unwrap();
    assert_eq!(
        run(&k, "xdp_redirect_devhash", "ipv4_udp").retval,
        XDP_REDIRECT
    );
    assert_eq!(run(&k, "xdp_redirect_ifindex", "ipv4_udp").retval, XDP_PASS);
    k.map_update("redirect_cfg", &u32k(0), &u32k(1), 0).unwrap();
    assert_eq!(
        run(&k, "xdp_redirect_ifindex", "ipv4_udp").retval,
        XDP_REDIRECT
    );
    assert_eq!(i64_slot(&k, "verdicts", XDP_PASS), 3);
    assert_eq!(i64_slot(&k, "verdicts", XDP_REDIRECT), 3);
    assert_eq!(i64_slot(&k, "verdicts", XDP_DROP), 1);
}

#[test]
fn xdp_encap() {
    if skip() {
        return;
    }
    let k = load("xdp_encap");
    let orig = packet("ipv4_udp").unwrap();
    let r = run(&k, "xdp_ipip_encap", "ipv4_udp");
    assert_eq!(r.retval, XDP_TX);
    assert_eq!(r.data_out.len(), orig.len() + 20);
    assert_eq!(&r.data_out[..14], &orig[..14]);
    assert_eq!(&r.data_out[34..], &orig[14..]);
    assert_eq!(r.data_out[23], 4);
    assert_eq!(&r.data_out[26..34], &[10, 99, 0, 1, 10, 99, 0, 2]);
    assert_eq!(testpkt::checksum(&r.data_out[14..34]), 0);
    let back = k
        .test_run("xdp_ipip_decap", &TestRun::new(&r.data_out))
        .unwrap();
    assert_eq!((back.retval, back.data_out), (XDP_PASS, orig.clone()));
    let r = run(&k, "xdp_ipip_decap", "ipv4_udp");
    assert_eq!((r.retval, r.data_out), (XDP_PASS, orig.clone()));
    // data_out starts at data_meta (KERNEL-NOTES 1)
    let r = run(&k, "xdp_meta", "ipv4_udp");
    assert_eq!(r.retval, XDP_PASS);
    assert_eq!(r.data_out.len(), orig.len() + 4);
    assert_eq!(&r.data_out[..4], &(0x5c1f_f000u32 | 17).to_ne_bytes());
    assert_eq!(&r.data_out[4..], &orig[..]);
    // adjust_tail: cut to 60, or grow by 4
    let long = packet("ipv4_tcp_payload").unwrap();
    let r = run(&k, "xdp_trim", "ipv4_tcp_payload");
    assert_eq!(r.data_out, long[..60].to_vec());
    let short = packet("ipv4_tcp_syn").unwrap();
    let r = run(&k, "xdp_trim", "ipv4_tcp_syn");
    let mut grown = short.clone();
    grown.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(r.data_out, grown);
    assert_eq!(
        (i64_slot(&k, "tail_ret", 0), i64_slot(&k, "tail_ret", 1)),
        (0, 0)
    );
}

fn skb_ctx() -> Vec<u8> {
    vec![0u8; 192]
}

fn ctx_u32(ctx: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(ctx[off..off + 4].try_into().unwrap())
}

#[test]
fn tc_classify() {
    if skip() {
        return;
    }
    let k = load("tc_classify");
    let ctx = skb_ctx();
    for (n, mark) in [
        ("ipv4_tcp_syn", 1),
        ("ipv4_udp", 2),
        ("ipv6_icmp6_echo", 3),
        ("arp_request", 0),
    ] {
        let p = packet(n).unwrap();
        let mut o = TestRun::new(&p);
        o.ctx_in = Some(&ctx);
        o.ctx_size_out = 192;
        let r = k.test_run("cls_main", &o).unwrap();
        assert_eq!(r.retval, TC_ACT_OK);
        let c = r.ctx_out.unwrap();
        assert_eq!(c.len(), 192);
        assert_eq!(
            (ctx_u32(&c, 8), ctx_u32(&c, 32)),
            (mark, mark),
            "{n} mark/priority"
        );
        // tc_classid is not copied back (KERNEL-NOTES 4)
        assert_eq!(ctx_u32(&c, 72), 0);
        let st = value(&k, "mark_stats", &u32k(mark)).unwrap();
        assert_eq!((u64_at(&st, 0), u64_at(&st, 1)), (1, p.len() as u64), "{n}");
    }
    // if_stats keyed by (ifindex 1 = lo, protocol in network order)
    let mut key = u32k(1);
    key.extend_from_slice(&u32::from(0x0800u16.swap_bytes()).to_ne_bytes());
    assert_eq!(u64_at(&value(&k, "if_stats", &key).unwrap(), 0), 2);

    let mut ctx = skb_ctx();
    ctx[48..52].copy_from_slice(&41u32.to_ne_bytes()); // cb[0]
    ctx[8..12].copy_from_slice(&7u32.to_ne_bytes()); // mark
    let p = packet("ipv4_tcp_payload").unwrap();
    let mut o = TestRun::new(&p);
    o.ctx_in = Some(&ctx);
    o.ctx_size_out = 192;
    let r = k.test_run("cls_fields", &o).unwrap();
    assert_eq!(r.retval, TC_ACT_OK);
    let c = r.ctx_out.unwrap();
    assert_eq!((ctx_u32(&c, 48), ctx_u32(&c, 52)), (42, p.len() as u32));
    let f = value(&k, "fields", &u32k(0)).unwrap();
    let fu = |i: usize| ctx_u32(&f, i * 4);
    assert_eq!(fu(0), p.len() as u32); // len
    assert_eq!(fu(2), 7); // mark
    assert_eq!(fu(4), u32::from(0x0800u16.swap_bytes())); // protocol
    assert_eq!(fu(8), 1); // ifindex
    assert_eq!(fu(9), 41); // cb[0]
    assert_eq!(fu(14), 1); // hash non-zero
    assert_eq!(fu(15), p.len() as u32); // data_end - data
}

#[test]
fn tc_police() {
    if skip() {
        return;
    }
    let k = load("tc_police");
    // no config: never policed
    assert_eq!(run_n(&k, "tc_police", "ipv4_tcp_syn", 5).retval, TC_ACT_OK);
    assert!(k.map_dump("buckets").unwrap().is_empty());
    // rate 0, burst 100: first 54-byte packet passes (46 tokens left), second is shot
    let mut cfg = 0u64.to_ne_bytes().to_vec();
    cfg.extend_from_slice(&100u64.to_ne_bytes());
    k.map_update("police_cfg", &u32k(0), &cfg, 0).unwrap();
    assert_eq!(run(&k, "tc_police", "ipv4_tcp_syn").retval, TC_ACT_OK);
    assert_eq!(run(&k, "tc_police", "ipv4_tcp_syn").retval, TC_ACT_SHOT);
    let d = k.map_dump("buckets").unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (u64_at(&d[0].1, 0), u64_at(&d[0].1, 1), u64_at(&d[0].1, 2)),
        (46, 1, 1)
    );
}

#[test]
fn tc_nat() {
    if skip() {
        return;
    }
    let k = load("tc_nat");
    let mut key = testpkt::IP_DST.to_vec();
    key.extend_from_slice(&443u16.to_be_bytes());
    key.extend_from_slice(&[6, 0]);
    let mut val = vec![10, 0, 0, 3];
    val.extend_from_slice(&8443u16.to_be_bytes());
    val.extend_from_slice(&[0, 0]);
    k.map_update("nat_rules", &key, &val, 0).unwrap();
    let mut key = testpkt::IP_DST.to_vec();
    key.extend_from_slice(&53u16.to_be_bytes());
    key.extend_from_slice(&[17, 0]);
    let mut val = vec![10, 0, 0, 4];
    val.extend_from_slice(&5353u16.to_be_bytes());
    val.extend_from_slice(&[0, 0]);
    k.map_update("nat_rules", &key, &val, 0).unwrap();

    let r = run(&k, "tc_nat", "ipv4_tcp_syn");
    assert_eq!(r.retval, TC_ACT_OK);
    assert_eq!(
        r.data_out,
        testpkt::ipv4_tcp(testpkt::IP_SRC, [10, 0, 0, 3], 40000, 8443, 0x02, &[])
    );
    let r = run(&k, "tc_nat", "ipv4_udp");
    assert_eq!(
        r.data_out,
        testpkt::ipv4_udp(
            testpkt::IP_SRC,
            [10, 0, 0, 4],
            5353,
            5353,
            b"skiff-udp-payload"
        )
    );
    let r = run(&k, "tc_nat", "ipv4_tcp_payload");
    assert_eq!(r.data_out, packet("ipv4_tcp_payload").unwrap());
    assert_eq!(
        (
            i64_slot(&k, "nat_stats", 0),
            i64_slot(&k, "nat_stats", 1),
            i64_slot(&k, "nat_stats", 2)
        ),
        (2, 1, 0)
    );
}

#[test]
fn tail_call() {
    if skip() {
        return;
    }
    let k = load("tail_call");
    assert_eq!(run(&k, "xdp_dispatch", "ipv4_tcp_syn").retval, XDP_PASS);
    assert_eq!(run(&k, "xdp_dispatch", "ipv4_udp").retval, XDP_PASS);
    let discard = testpkt::ipv4_udp(testpkt::IP_SRC, testpkt::IP_DST, 1, 9, b"x");
    assert_eq!(
        k.test_run("xdp_dispatch", &TestRun::new(&discard))
            .unwrap()
            .retval,
        XDP_DROP
    );
    assert_eq!(run(&k, "xdp_dispatch", "ipv4_icmp_echo").retval, XDP_PASS);
    assert_eq!(
        (
            i64_slot(&k, "hits", 0),
            i64_slot(&k, "hits", 6),
            i64_slot(&k, "hits", 17)
        ),
        (1, 1, 2)
    );
    // prog_array dumps give program ids: two slots set from BTF .values
    let d = k.map_dump("jmp_table").unwrap();
    assert_eq!(
        d.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>(),
        vec![u32k(6), u32k(17)]
    );
    k.map_update_prog("jmp_table", &u32k(1), "handle_icmp")
        .unwrap();
    assert_eq!(run(&k, "xdp_dispatch", "ipv4_icmp_echo").retval, XDP_TX);
    assert_eq!(i64_slot(&k, "hits", 1), 1);
}

#[test]
fn calls_loops() {
    if skip() {
        return;
    }
    let k = load("calls_loops");
    for n in ["ipv4_tcp_syn", "arp_request", "ipv6_udp", "ipv4_truncated"] {
        let p = packet(n).unwrap();
        let r = run(&k, "xdp_calls_loops", n);
        let proto = match n {
            "ipv4_tcp_syn" => 6,
            "ipv6_udp" => 17,
            _ => 0,
        };
        assert_eq!(
            r.retval,
            if proto == 0 { XDP_DROP } else { XDP_PASS },
            "{n}"
        );
        let mut s: u32 = p[..14]
            .chunks(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .sum();
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        let x = p.iter().take(32).fold(0u8, |a, b| a ^ b);
        let w: u64 = p
            .iter()
            .take(16)
            .enumerate()
            .map(|(i, b)| u64::from(*b) * (i as u64 + 1))
            .sum();
        let got: Vec<i64> = (0..5).map(|i| i64_slot(&k, "results", i)).collect();
        assert_eq!(
            got,
            vec![
                proto,
                i64::from(s),
                i64::from(x),
                w as i64,
                p.len().min(32) as i64
            ],
            "{n}"
        );
    }
}

#[test]
fn global_data() {
    if skip() {
        return;
    }
    let k = load("global_data");
    let mut names = k.map_names();
    names.sort();
    assert!(
        names.iter().any(|n| n == ".bss") && names.iter().any(|n| n == ".data"),
        "{names:?}"
    );
    let len = packet("ipv4_udp").unwrap().len() as u64;
    // run 1: packets 1, seen 110: 113 odd -> DROP; run 2: 2, 120: 126 even -> PASS
    assert_eq!(run(&k, "xdp_global", "ipv4_udp").retval, XDP_DROP);
    assert_eq!(run(&k, "xdp_global", "ipv4_udp").retval, XDP_PASS);
    let bss = value(&k, ".bss", &u32k(0)).unwrap();
    assert_eq!((u64_at(&bss, 0), u64_at(&bss, 1)), (2, 2 * len));
    assert_eq!(u64_at(&value(&k, ".data", &u32k(0)).unwrap(), 0), 120);
    // .rodata is frozen
    let ro = value(&k, ".rodata", &u32k(0)).unwrap();
    assert_eq!(&ro[..8], &[3, 0, 0, 0, 10, 0, 0, 0]);
    let e = k.map_update(".rodata", &u32k(0), &ro, 0).unwrap_err();
    assert_eq!(e.errno(), Some(1)); // EPERM
}

#[test]
fn xdp_maps() {
    if skip() {
        return;
    }
    let k = load("xdp_maps");
    run(&k, "xdp_maps", "ipv4_tcp_syn");
    let first: Vec<i64> = (0..15).map(|i| i64_slot(&k, "rets", i)).collect();
    assert_eq!(first, [0, -2, 0, -2, -22].repeat(3));
    run(&k, "xdp_maps", "ipv4_tcp_syn");
    let second: Vec<i64> = (0..15).map(|i| i64_slot(&k, "rets", i)).collect();
    assert_eq!(second, [-17, -2, 0, -2, -22].repeat(3));
    assert_eq!(
        k.map_dump("h").unwrap(),
        vec![(u32k(6), 601u64.to_ne_bytes().to_vec())]
    );
    let ncpu = skiff_kernel::possible_cpus().unwrap();
    let pc = k.map_dump("pch").unwrap();
    assert_eq!(pc.len(), 1);
    assert_eq!(pc[0].1.len(), 8 * ncpu);
    assert_eq!(percpu_sum(&pc[0].1, 8, 0) % 601, 0);
}

#[test]
fn xdp_queue() {
    if skip() {
        return;
    }
    let k = load("xdp_queue");
    // 54-byte frames (even): pushes only; the 4th overflows
    for _ in 0..3 {
        run(&k, "xdp_queue", "ipv4_tcp_syn");
    }
    assert_eq!((i64_slot(&k, "last", 0), i64_slot(&k, "last", 1)), (0, 0));
    run(&k, "xdp_queue", "ipv4_tcp_syn");
    assert_eq!((i64_slot(&k, "last", 0), i64_slot(&k, "last", 1)), (0, -7));
    assert_eq!(k.map_dump("q").unwrap(), vec![(vec![], u32k(54))]);
    let odd = testpkt::ipv4_udp(testpkt::IP_SRC, testpkt::IP_DST, 1, 2, b"abc"); // 45 bytes
    assert_eq!(odd.len() % 2, 1);
    k.test_run("xdp_queue", &TestRun::new(&odd)).unwrap();
    let got: Vec<i64> = (0..6).map(|i| i64_slot(&k, "last", i)).collect();
    assert_eq!(got, vec![0, -7, 0, 54, 0, 54]);
}

#[test]
fn xdp_csum() {
    if skip() {
        return;
    }
    let k = load("xdp_csum");
    let p = packet("ipv4_tcp_syn").unwrap();
    run(&k, "xdp_csum", "ipv4_tcp_syn");
    assert_eq!(i64_slot(&k, "sums", 1), 0);
    // 6.18 takes sizes that are not a multiple of 4 and returns a 16-bit folded sum
    // of the little-endian words (here 0x0045 + 0x2800 + 0x3412).
    assert_eq!(i64_slot(&k, "sums", 3), 0x5c57);
    let mut h = p[14..34].to_vec();
    h[16..20].copy_from_slice(&[10, 0, 0, 1]);
    h[10] = 0;
    h[11] = 0;
    let c = testpkt::checksum(&h);
    assert_eq!(i64_slot(&k, "sums", 4), i64::from(c.swap_bytes()));
}

#[test]
fn xdp_ringbuf() {
    if skip() {
        return;
    }
    let k = load("xdp_ringbuf");
    run(&k, "xdp_ringbuf", "ipv4_udp");
    assert_eq!(
        (i64_slot(&k, "rb_stats", 0), i64_slot(&k, "rb_stats", 3)),
        (1, 24)
    );
    run(&k, "xdp_ringbuf", "arp_request");
    assert_eq!(
        (i64_slot(&k, "rb_stats", 2), i64_slot(&k, "rb_stats", 3)),
        (0, 48)
    );
    assert!(k
        .map_dump("events")
        .unwrap_err()
        .to_string()
        .contains("not supported"));
}

#[test]
fn tc_vlan_and_helpers() {
    if skip() {
        return;
    }
    let k = load("tc_vlan");
    let r = run(&k, "tc_vlan_push", "ipv4_udp");
    assert_eq!(
        (r.retval, r.data_out.clone()),
        (TC_ACT_OK, packet("ipv4_udp").unwrap())
    );
    assert_eq!(
        (
            i64_slot(&k, "vlan_rets", 0),
            i64_slot(&k, "vlan_rets", 1),
            i64_slot(&k, "vlan_rets", 2)
        ),
        (0, 1, 100)
    );
    // vlan_proto as the __be16 field holds it.
    assert_eq!(i64_slot(&k, "vlan_rets", 6), 0x8100u16.to_be() as i64);
    run(&k, "tc_vlan_pop", "ipv4_udp");
    assert_eq!(
        (i64_slot(&k, "vlan_rets", 3), i64_slot(&k, "vlan_rets", 1)),
        (0, 0)
    );
    let p = packet("ipv4_udp").unwrap();
    let r = run(&k, "tc_adjust_room", "ipv4_udp");
    assert_eq!(r.data_out.len(), p.len() + 8);
    assert_eq!(
        (i64_slot(&k, "vlan_rets", 4), i64_slot(&k, "vlan_rets", 5)),
        (0, p.len() as i64 + 8)
    );

    let h = load("tc_helpers");
    let r = run(&h, "tc_helpers", "ipv4_udp");
    assert_eq!(r.retval, TC_ACT_OK);
    let got: Vec<i64> = (0..12).map(|i| i64_slot(&h, "hret", i)).collect();
    eprintln!(
        "tc_helpers on ipv4_udp: {got:?}, data_out {} bytes",
        r.data_out.len()
    );
    let len = p.len() as i64;
    // load_bytes past the end: -EFAULT; fib lookup of a local address through lo:
    // BPF_FIB_LKUP_RET_FWD_DISABLED (5); check_mtu gives lo's MTU 65536.
    assert_eq!(
        got,
        vec![
            0,
            0x0800,
            -14,
            0,
            len,
            0,
            len + 8,
            5,
            0,
            65536,
            0,
            len + 8 + 14
        ]
    );
    assert_eq!(r.data_out.len() as i64, got[11]);

    for (kind, ifindex, want) in [
        (0u32, 1u32, TC_ACT_REDIRECT),
        (1, 1, TC_ACT_REDIRECT),
        (2, 1, TC_ACT_REDIRECT),
        (4, 1, TC_ACT_SHOT),
    ] {
        h.map_update("redir_cfg", &u32k(0), &u32k(kind), 0).unwrap();
        h.map_update("redir_cfg", &u32k(1), &u32k(ifindex), 0)
            .unwrap();
        assert_eq!(
            run(&h, "tc_redirects", "ipv4_udp").retval,
            want,
            "kind {kind}"
        );
    }
    h.map_update("redir_cfg", &u32k(0), &u32k(3), 0).unwrap();
    h.map_update("redir_cfg", &u32k(1), &u32k(0x7fff), 0)
        .unwrap();
    assert_eq!(run(&h, "tc_redirects", "ipv4_udp").retval, TC_ACT_OK);
    assert_eq!(i64_slot(&h, "hret", 0), -22);
}

#[allow(dead_code)]
const _USED: [u32; 1] = [XDP_ABORTED];
