//! bpf_fib_lookup answered by skiff's HostStack against the real kernel: the same
//! namespace (veths, addresses, routes, neighbours, rules, forwarding) is built
//! with `ip` in a network namespace `skiff-fib-<pid>` and in a HostStack; a TC
//! and an XDP program (tests/bpf/fib_lookup.c) call bpf_fib_lookup with params
//! from the packet under BPF_PROG_TEST_RUN on a thread that entered the
//! namespace, and every lookup's return code and 64-byte struct must match
//! skiff's. Needs root, `ip` and clang-19; skips with a message otherwise.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use skiff_net::helpers::fib::{self, *};
use skiff_net::stack::{HostStack, Route, RouteKind, Rule, StackDevice, RT_TABLE_MAIN};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(ns: &str, args: &str) {
    let mut v = vec!["-n", ns];
    v.extend(args.split_whitespace());
    let st = Command::new("ip").args(&v).output().expect("run ip");
    assert!(
        st.status.success(),
        "ip {}: {}",
        args,
        String::from_utf8_lossy(&st.stderr)
    );
}

fn sysctl(ns: &str, kv: &str) {
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", kv])
        .status()
        .expect("sysctl");
    assert!(st.success(), "sysctl {kv}");
}

fn compile() -> Option<Vec<u8>> {
    common::bpf_object("fib_lookup")
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn mac_s(last: u8) -> String {
    format!("02:00:00:00:00:{last:02x}")
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// (ip route args, skiff route)
fn routes() -> Vec<(&'static str, Route)> {
    let r = |dst: &str, plen, gw: Option<&str>, dev: Option<u32>, metric, kind, table| Route {
        table,
        dst: if dst.contains(':') { v6(dst) } else { v4(dst) },
        prefix_len: plen,
        gateway: gw.map(|g| if g.contains(':') { v6(g) } else { v4(g) }),
        ifindex: dev,
        src: None,
        metric,
        kind,
        mtu: None,
    };
    use RouteKind::*;
    let m = RT_TABLE_MAIN;
    vec![
        (
            "10.9.0.0/16 via 10.1.0.254 dev a0",
            r("10.9.0.0", 16, Some("10.1.0.254"), Some(10), 0, Unicast, m),
        ),
        (
            "10.9.1.0/24 via 10.2.0.254 dev b0",
            r("10.9.1.0", 24, Some("10.2.0.254"), Some(12), 0, Unicast, m),
        ),
        (
            "10.8.0.0/16 dev b0 metric 5",
            r("10.8.0.0", 16, None, Some(12), 5, Unicast, m),
        ),
        (
            "10.8.0.0/16 via 10.1.0.253 dev a0 metric 9",
            r("10.8.0.0", 16, Some("10.1.0.253"), Some(10), 9, Unicast, m),
        ),
        (
            "blackhole 10.66.0.0/16",
            r("10.66.0.0", 16, None, None, 0, Blackhole, m),
        ),
        (
            "unreachable 10.67.0.0/16",
            r("10.67.0.0", 16, None, None, 0, Unreachable, m),
        ),
        (
            "prohibit 10.68.0.0/16",
            r("10.68.0.0", 16, None, None, 0, Prohibit, m),
        ),
        (
            "10.9.0.0/16 via 10.2.0.253 dev b0 table 100",
            r(
                "10.9.0.0",
                16,
                Some("10.2.0.253"),
                Some(12),
                0,
                Unicast,
                100,
            ),
        ),
        (
            "default via 10.1.0.253 dev a0 table 100",
            r("0.0.0.0", 0, Some("10.1.0.253"), Some(10), 0, Unicast, 100),
        ),
        (
            "10.50.0.0/16 via 10.1.0.254 dev a0 mtu 1300",
            Route {
                mtu: Some(1300),
                ..r("10.50.0.0", 16, Some("10.1.0.254"), Some(10), 0, Unicast, m)
            },
        ),
        (
            "10.70.0.0/16 via 10.1.0.254 dev a0 src 10.2.0.1",
            Route {
                src: Some(v4("10.2.0.1")),
                ..r("10.70.0.0", 16, Some("10.1.0.254"), Some(10), 0, Unicast, m)
            },
        ),
        (
            "10.71.0.0/16 dev b0 metric 3",
            r("10.71.0.0", 16, None, Some(12), 3, Unicast, m),
        ),
        (
            "-6 2001:db8:9::/48 via 2001:db8:1::fe dev a0 metric 1024",
            r(
                "2001:db8:9::",
                48,
                Some("2001:db8:1::fe"),
                Some(10),
                1024,
                Unicast,
                m,
            ),
        ),
        (
            "-6 2001:db8:9:1::/64 via 2001:db8:2::fe dev b0 metric 1024",
            r(
                "2001:db8:9:1::",
                64,
                Some("2001:db8:2::fe"),
                Some(12),
                1024,
                Unicast,
                m,
            ),
        ),
        (
            "-6 2001:db8:8::/48 dev b0 metric 5",
            r("2001:db8:8::", 48, None, Some(12), 5, Unicast, m),
        ),
        (
            "-6 2001:db8:8::/48 via 2001:db8:1::fd dev a0 metric 9",
            r(
                "2001:db8:8::",
                48,
                Some("2001:db8:1::fd"),
                Some(10),
                9,
                Unicast,
                m,
            ),
        ),
        (
            "-6 blackhole 2001:db8:66::/48 metric 1024",
            r("2001:db8:66::", 48, None, None, 1024, Blackhole, m),
        ),
        (
            "-6 unreachable 2001:db8:67::/48 metric 1024",
            r("2001:db8:67::", 48, None, None, 1024, Unreachable, m),
        ),
        (
            "-6 prohibit 2001:db8:68::/48 metric 1024",
            r("2001:db8:68::", 48, None, None, 1024, Prohibit, m),
        ),
        (
            "-6 2001:db8:9::/48 via 2001:db8:2::fd dev b0 table 100 metric 1024",
            r(
                "2001:db8:9::",
                48,
                Some("2001:db8:2::fd"),
                Some(12),
                1024,
                Unicast,
                100,
            ),
        ),
        (
            "-6 2001:db8:70::/48 via 2001:db8:1::fe dev a0 src 2001:db8:2::1 metric 1024",
            Route {
                src: Some(v6("2001:db8:2::1")),
                ..r(
                    "2001:db8:70::",
                    48,
                    Some("2001:db8:1::fe"),
                    Some(10),
                    1024,
                    Unicast,
                    m,
                )
            },
        ),
    ]
}

fn neighbours() -> Vec<(u32, &'static str, &'static str, u8)> {
    vec![
        (10, "a0", "10.1.0.254", 0xf1),
        (10, "a0", "10.1.0.253", 0xf2),
        (10, "a0", "10.1.0.5", 0xf3),
        (12, "b0", "10.2.0.253", 0xf4),
        (10, "a0", "2001:db8:1::fe", 0xf5),
        (10, "a0", "2001:db8:1::5", 0xf6),
        (12, "b0", "2001:db8:2::fd", 0xf7),
        (12, "b0", "10.8.0.9", 0xf8),
    ]
}

fn build_kernel(ns: &str) {
    let st = Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .expect("ip netns add");
    assert!(st.success(), "ip netns add {ns}");
    ip(ns, "link set lo up");
    ip(
        ns,
        &format!(
            "link add a0 index 10 address {} type veth peer name a1 index 11 address {}",
            mac_s(0x0a),
            mac_s(0x0b)
        ),
    );
    ip(
        ns,
        &format!(
            "link add b0 index 12 address {} mtu 1400 type veth peer name b1 index 13 address {}",
            mac_s(0x0c),
            mac_s(0x0d)
        ),
    );
    for d in ["a0", "a1", "b0", "b1"] {
        ip(ns, &format!("link set {d} addrgenmode none"));
        ip(ns, &format!("link set {d} up"));
    }
    ip(ns, "addr add 10.1.0.1/24 dev a0");
    ip(ns, "addr add 10.2.0.1/24 dev b0");
    ip(ns, "-6 addr add 2001:db8:1::1/64 dev a0 nodad");
    ip(ns, "-6 addr add 2001:db8:2::1/64 dev b0 nodad");
    for (args, _) in routes() {
        match args.strip_prefix("-6 ") {
            Some(a) => ip(ns, &format!("-6 route add {a}")),
            None => ip(ns, &format!("route add {args}")),
        }
    }
    for (_, dev, a, m) in neighbours() {
        ip(
            ns,
            &format!("neigh add {a} lladdr {} dev {dev} nud permanent", mac_s(m)),
        );
    }
}

fn build_skiff() -> HostStack {
    let mut s = HostStack::new();
    let dev = |i, n: &str, m, mtu, lo| StackDevice {
        ifindex: i,
        name: n.into(),
        mac: if lo { [0; 6] } else { mac(m) },
        mtu,
        up: true,
        arp: !lo,
        loopback: lo,
    };
    s.add_device(dev(1, "lo", 0, 65536, true)).unwrap();
    s.add_device(dev(10, "a0", 0x0a, 1500, false)).unwrap();
    s.add_device(dev(11, "a1", 0x0b, 1500, false)).unwrap();
    s.add_device(dev(12, "b0", 0x0c, 1400, false)).unwrap();
    s.add_device(dev(13, "b1", 0x0d, 1500, false)).unwrap();
    s.add_address(10, v4("10.1.0.1"), 24).unwrap();
    s.add_address(12, v4("10.2.0.1"), 24).unwrap();
    s.add_address(10, v6("2001:db8:1::1"), 64).unwrap();
    s.add_address(12, v6("2001:db8:2::1"), 64).unwrap();
    for (_, r) in routes() {
        s.add_route(r).unwrap();
    }
    for (i, _, a, m) in neighbours() {
        let a = if a.contains(':') { v6(a) } else { v4(a) };
        s.add_neighbour(i, a, mac(m)).unwrap();
    }
    s
}

/// Rules added in the last phase, to both.
fn add_rules(ns: &str, s: &mut HostStack) {
    ip(ns, "rule add fwmark 0x10 table 100 pref 100");
    ip(
        ns,
        "rule add from 10.1.0.0/24 to 10.9.0.0/16 table 100 pref 200",
    );
    ip(ns, "rule add iif b0 table 100 pref 300");
    ip(ns, "-6 rule add fwmark 0x10 table 100 pref 100");
    ip(ns, "-6 rule add from 2001:db8:1::/64 table 100 pref 200");
    ip(ns, "-6 rule add iif b0 table 100 pref 300");
    let mut r = Rule::table(100, 100);
    r.fwmark = Some((0x10, 0xffff_ffff));
    s.add_rule(r).unwrap();
    let mut r = Rule::table(200, 100);
    r.from = Some((v4("10.1.0.0"), 24));
    r.to = Some((v4("10.9.0.0"), 16));
    s.add_rule(r).unwrap();
    let mut r = Rule::table(200, 100);
    r.from = Some((v6("2001:db8:1::"), 64));
    s.add_rule(r).unwrap();
    let mut r = Rule::table(300, 100);
    r.iif = Some(12);
    s.add_rule(r).unwrap();
}

#[derive(Clone)]
struct Case {
    params: [u8; FIB_LOOKUP_SIZE],
    flags: u32,
    xdp: bool,
}

fn cases() -> Vec<Case> {
    let d4 = [
        "10.9.0.7",
        "10.9.1.7",
        "10.8.0.9",
        "10.8.0.10",
        "10.66.1.1",
        "10.67.1.1",
        "10.68.1.1",
        "10.1.0.1",
        "10.1.0.5",
        "10.1.0.77",
        "10.2.0.1",
        "10.2.0.9",
        "10.50.0.1",
        "10.70.0.1",
        "10.71.0.1",
        "192.0.2.1",
        "127.0.0.1",
        "10.1.0.255",
    ];
    let d6 = [
        "2001:db8:9::7",
        "2001:db8:9:1::7",
        "2001:db8:8::9",
        "2001:db8:66::1",
        "2001:db8:67::1",
        "2001:db8:68::1",
        "2001:db8:1::1",
        "2001:db8:1::5",
        "2001:db8:1::77",
        "2001:db8:2::9",
        "2001:db8:1::",
        "2001:db8:70::1",
        "2001:db8:5::1",
        "fe80::1",
        "ff02::1",
        "::1",
    ];
    let flag_sets = [
        0,
        BPF_FIB_LOOKUP_DIRECT,
        BPF_FIB_LOOKUP_OUTPUT,
        BPF_FIB_LOOKUP_SKIP_NEIGH,
        BPF_FIB_LOOKUP_SRC,
        BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_SKIP_NEIGH | BPF_FIB_LOOKUP_OUTPUT,
        BPF_FIB_LOOKUP_MARK,
        BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_TBID,
        BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_TBID | BPF_FIB_LOOKUP_SRC,
    ];
    let mut v = Vec::new();
    for (fam, dsts) in [(AF_INET, &d4[..]), (AF_INET6, &d6[..])] {
        for dst in dsts {
            for ifindex in [10u32, 12, 1, 99] {
                for &flags in &flag_sets {
                    for tot_len in [0u16, 1350, 1450] {
                        for tbid in [100u32, 255, 254] {
                            if flags & BPF_FIB_LOOKUP_TBID == 0 && tbid != 100 {
                                continue;
                            }
                            let mut p = [0u8; FIB_LOOKUP_SIZE];
                            p[0] = fam;
                            p[1] = 17;
                            p[2..4].copy_from_slice(&1234u16.to_be_bytes());
                            p[4..6].copy_from_slice(&53u16.to_be_bytes());
                            p[6..8].copy_from_slice(&tot_len.to_le_bytes());
                            p[8..12].copy_from_slice(&ifindex.to_le_bytes());
                            if fam == AF_INET {
                                p[16..20].copy_from_slice(&[10, 1, 0, 5]);
                                let a: Ipv4Addr = dst.parse().unwrap();
                                p[32..36].copy_from_slice(&a.octets());
                            } else {
                                let s: Ipv6Addr = "2001:db8:1::5".parse().unwrap();
                                p[16..32].copy_from_slice(&s.octets());
                                let a: Ipv6Addr = dst.parse().unwrap();
                                p[32..48].copy_from_slice(&a.octets());
                            }
                            p[48..52].copy_from_slice(&tbid.to_le_bytes());
                            p[52..56].copy_from_slice(&0x10u32.to_le_bytes());
                            v.push(Case {
                                params: p,
                                flags,
                                xdp: tot_len == 1450 && ifindex != 99,
                            });
                        }
                    }
                }
            }
        }
    }
    v
}

fn packet(c: &Case) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12] = 0x08;
    f.extend_from_slice(&c.params);
    f.extend_from_slice(&c.flags.to_le_bytes());
    f
}

/// Runs every case in the kernel on a thread inside namespace `ns`.
fn kernel_run(ns: &str, obj: &[u8], cases: &[Case]) -> Vec<(i64, [u8; 64])> {
    let ns = ns.to_string();
    let obj = obj.to_vec();
    let cases = cases.to_vec();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd; affects only this thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        let o = skiff_object::Object::parse(&obj).expect("parse");
        let k = skiff_kernel::KernelObject::load(&o).expect("kernel load");
        cases
            .iter()
            .map(|c| {
                let pkt = packet(c);
                let prog = if c.xdp { "fib_xdp" } else { "fib_tc" };
                k.test_run(prog, &skiff_kernel::TestRun::new(&pkt))
                    .expect("test_run");
                let d = k.map_dump("res").expect("dump");
                let v = &d[0].1;
                let mut p = [0u8; 64];
                p.copy_from_slice(&v[..64]);
                (i64::from_le_bytes(v[64..72].try_into().unwrap()), p)
            })
            .collect()
    })
    .join()
    .expect("kernel thread")
}

fn skiff_run(s: &HostStack, c: &Case) -> (i64, [u8; 64]) {
    let mut p = c.params;
    // bpf_skb_fib_lookup: check the MTU only when tot_len is given; XDP always.
    let tot = u16::from_le_bytes([p[6], p[7]]);
    let check = c.xdp || tot != 0;
    let skb_len = if c.xdp { 0 } else { 14 + 64 + 4 };
    let own = 1; // the test run's device: lo
    let rc = fib::lookup(s, &mut p, c.flags, check, own, skb_len);
    (rc, p)
}

fn compare(phase: &str, s: &HostStack, cases: &[Case], k: &[(i64, [u8; 64])]) -> usize {
    let mut bad = Vec::new();
    for (c, kr) in cases.iter().zip(k) {
        let sr = skiff_run(s, c);
        if sr != *kr {
            bad.push(format!(
                "{phase}: flags {:#x} xdp {} params {:02x?}\n  kernel rc {} {:02x?}\n  skiff  rc {} {:02x?}",
                c.flags, c.xdp, &c.params[..], kr.0, &kr.1[..], sr.0, &sr.1[..]
            ));
        }
    }
    let n = bad.len();
    for b in bad.iter().take(12) {
        eprintln!("{b}");
    }
    if let Ok(path) = std::env::var("SKIFF_FIB_MISMATCHES") {
        let _ = std::fs::write(
            format!("{path}.{}", phase.replace(' ', "_")),
            bad.join("\n"),
        );
    }
    n
}

#[test]
fn fib_lookup_matches_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: not root (needs network namespaces and bpf())");
        return;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipping: `ip` (iproute2) not found");
        return;
    }
    if let Err(e) = skiff_kernel::available() {
        eprintln!("skipping: {e}");
        return;
    }
    let Some(obj) = compile() else {
        eprintln!("skipping: clang-19 not available or failed for fib_lookup.c");
        return;
    };
    let ns = Netns(format!("skiff-fib-{}", std::process::id()));
    build_kernel(&ns.0);
    let mut s = build_skiff();
    let cases = cases();
    let mut total = 0;
    let mut mismatches = 0;
    let mut rcs = std::collections::BTreeMap::new();

    // Phase 1: forwarding off (the kernel default).
    let k = kernel_run(&ns.0, &obj, &cases);
    mismatches += compare("fwd off", &s, &cases, &k);
    total += cases.len();
    for (rc, _) in &k {
        *rcs.entry(*rc).or_insert(0usize) += 1;
    }

    // Phase 2: forwarding on.
    sysctl(&ns.0, "net.ipv4.ip_forward=1");
    sysctl(&ns.0, "net.ipv6.conf.all.forwarding=1");
    s.set_forwarding(true, true);
    let k = kernel_run(&ns.0, &obj, &cases);
    mismatches += compare("fwd on", &s, &cases, &k);
    total += cases.len();
    for (rc, _) in &k {
        *rcs.entry(*rc).or_insert(0usize) += 1;
    }

    // Phase 3: policy rules (local and main unmerged).
    add_rules(&ns.0, &mut s);
    let k = kernel_run(&ns.0, &obj, &cases);
    mismatches += compare("rules", &s, &cases, &k);
    total += cases.len();
    for (rc, _) in &k {
        *rcs.entry(*rc).or_insert(0usize) += 1;
    }

    eprintln!("bpf_fib_lookup: {total} lookups compared with the kernel, {mismatches} differ; return codes seen: {rcs:?}");
    assert_eq!(
        mismatches, 0,
        "{mismatches} of {total} lookups differ from the kernel"
    );
    // Every return code the configuration can provoke was seen.
    for rc in [
        BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LKUP_RET_BLACKHOLE,
        BPF_FIB_LKUP_RET_UNREACHABLE,
        BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_NOT_FWDED,
        BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_FRAG_NEEDED,
        BPF_FIB_LKUP_RET_FWD_DISABLED,
        -19,
    ] {
        assert!(rcs.contains_key(&rc), "return code {rc} never provoked");
    }
}
