//! Coverage (`--coverage`, lcov), `--filter` (pcap-filter through libpcap and
//! the classic-to-eBPF conversion), bpf_printk lines in `skiff run`'s trace,
//! and tracing sections skipped beside packet programs.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff::filter::cbpf::SockFilter;
use skiff::filter::Filter;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skiff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fid-bpf-{tag}"));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn genhtml() -> Option<PathBuf> {
    let ok = Command::new("genhtml").arg("--version").output().is_ok();
    ok.then(|| PathBuf::from("genhtml"))
}

/// The xdp_fw fixtures' coverage: every line of bpf/xdp_fw.c with line info,
/// with the hits its three cases give (one drop, two passes).
#[test]
fn coverage_of_the_xdp_fw_fixtures() {
    let out = scratch("cov").join("xdp_fw.info");
    let o = out.to_str().expect("utf-8 path");
    let (code, _, err) = skiff(&["test", "examples/xdp_fw/fixtures", "--coverage", o]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).expect("lcov written");
    // SF: the path clang recorded in the bundled object where it exists (the
    // checkout it was built in), else this checkout's bpf/xdp_fw.c.
    let sf = text
        .lines()
        .find_map(|l| l.strip_prefix("SF:"))
        .expect("an SF line");
    assert!(
        sf.ends_with("/bpf/xdp_fw.c") && Path::new(sf).is_file(),
        "{sf}"
    );
    let expected = format!(
        "TN:\nSF:{sf}\nFN:38,xdp_fw\nFNDA:3,xdp_fw\nFNF:1\nFNH:1\n\
         DA:37,3\nDA:38,3\nDA:42,3\nDA:43,3\nDA:46,3\nDA:48,3\nDA:51,2\nDA:52,2\n\
         DA:53,2\nDA:54,2\nDA:57,1\nDA:58,1\nDA:59,1\nDA:61,1\nDA:62,1\nDA:63,1\n\
         DA:64,0\nDA:66,1\nDA:68,3\nLF:19\nLH:18\nend_of_record\n"
    );
    assert_eq!(text, expected);
    assert!(
        err.contains("coverage of 3 program loads, 1 source files written to"),
        "{err}"
    );
    match genhtml() {
        Some(g) => {
            let html = scratch("cov").join("html");
            let st = Command::new(g)
                .args(["-q", "-o"])
                .arg(&html)
                .arg(&out)
                .status()
                .expect("genhtml runs");
            assert!(st.success(), "genhtml refused {}", out.display());
            assert!(html.join("index.html").is_file());
        }
        None => eprintln!("genhtml missing (apt-get install lcov): lcov syntax not cross-checked"),
    }
}

/// Without --coverage nothing is counted: no program gets counters.
#[test]
fn no_counters_without_coverage() {
    let (code, _, err) = skiff(&["test", "examples/xdp_fw/fixtures"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("coverage"), "{err}");
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (no options, checksum left 0: filters do not check it)
/// with `proto` and `l4` after it.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let len = (20 + l4.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    h
}

fn ports(sport: u16, dport: u16, rest: usize) -> Vec<u8> {
    let mut p = sport.to_be_bytes().to_vec();
    p.extend_from_slice(&dport.to_be_bytes());
    p.resize(4 + rest, 0);
    p
}

/// Named frames: TCP to port 80 and 22, UDP from 10.0.0.1 and between two
/// other hosts, an 802.1Q-tagged IPv4 frame, ICMP echo request and reply, ARP.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
    let mut tcp80 = ports(40000, 80, 16);
    tcp80[12] = 0x50;
    let mut tcp22 = ports(40000, 22, 16);
    tcp22[12] = 0x50;
    let udp = ports(5000, 53, 4);
    let mut vlan = vec![0x00, 0x0a, 0x08, 0x00];
    vlan.extend_from_slice(&ipv4(b, c, 17, &udp));
    let echo = [8, 0, 0, 0, 0, 1, 0, 1];
    let reply = [0, 0, 0, 0, 0, 1, 0, 1];
    let arp = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
    ];
    vec![
        ("tcp80", eth(0x0800, &ipv4(b, c, 6, &tcp80))),
        ("tcp22", eth(0x0800, &ipv4(b, c, 6, &tcp22))),
        ("udp_from_a", eth(0x0800, &ipv4(a, b, 17, &udp))),
        ("udp_b_c", eth(0x0800, &ipv4(b, c, 17, &udp))),
        ("vlan", eth(0x8100, &vlan)),
        ("echo", eth(0x0800, &ipv4(b, c, 1, &echo))),
        ("reply", eth(0x0800, &ipv4(c, b, 1, &reply))),
        ("arp", eth(0x0806, &arp)),
    ]
}

fn matching(f: &mut Filter) -> Vec<&'static str> {
    frames()
        .into_iter()
        .filter(|(_, fr)| f.matches(fr))
        .map(|(n, _)| n)
        .collect()
}

/// The classic program `tcpdump -dd ip` prints, without libpcap: the
/// conversion and the run alone.
#[test]
fn classic_program_converted_and_run() {
    let ip = [
        SockFilter {
            code: 0x28,
            jt: 0,
            jf: 0,
            k: 12,
        },
        SockFilter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: 0x800,
        },
        SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 262144,
        },
        SockFilter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let mut f = Filter::from_classic("ip", &ip).expect("converts");
    assert_eq!(
        matching(&mut f),
        ["tcp80", "tcp22", "udp_from_a", "udp_b_c", "echo", "reply"]
    );
    // a jump past the end is refused as the kernel's bpf_check_classic does
    let bad = [
        SockFilter {
            code: 0x05,
            jt: 0,
            jf: 0,
            k: 5,
        },
        ip[3],
    ];
    let e = Filter::from_classic("bad", &bad).err().expect("refused");
    assert_eq!(
        e,
        "--filter \"bad\": classic insn 0 (code 0x0005): jump out of the program"
    );
}

/// pcap-filter expressions through libpcap, each against every frame.
#[test]
fn pcap_filter_expressions() {
    let cases: [(&str, &[&str]); 5] = [
        ("tcp port 80", &["tcp80"]),
        ("udp and host 10.0.0.1", &["udp_from_a"]),
        ("vlan", &["vlan"]),
        ("icmp[0] == 8", &["echo"]),
        (
            "not arp",
            &[
                "tcp80",
                "tcp22",
                "udp_from_a",
                "udp_b_c",
                "vlan",
                "echo",
                "reply",
            ],
        ),
    ];
    for (expr, want) in cases {
        let mut f = match Filter::new(expr) {
            Ok(f) => f,
            Err(e) if e == skiff::filter::libpcap::MISSING => {
                eprintln!("SKIPPED pcap-filter expressions: {e}");
                return;
            }
            Err(e) => panic!("{expr}: {e}"),
        };
        assert_eq!(matching(&mut f), want, "{expr}");
    }
    let e = Filter::new("tcp port").err().expect("refused");
    assert_eq!(
        e,
        "--filter \"tcp port\": can't parse filter expression: syntax error"
    );
}

fn trace_mix(dir: &Path) -> Option<PathBuf> {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let src = root().join("crates/cli/tests/bpf/trace_mix.c");
    let obj = skiff_kernel::clang::compile(&src, dir).expect("compiles");
    let topo = dir.join("topology.toml");
    std::fs::write(
        &topo,
        format!(
            "[netns.host]\n\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n\
             mac = \"02:00:00:00:00:02\"\n\n[[object]]\npath = \"{}\"\n\n\
             [[object.attach]]\nprogram = \"xdp_printk\"\ndev = \"eth0\"\nhook = \"xdp\"\n",
            obj.display()
        ),
    )
    .expect("topology written");
    Some(topo)
}

/// Tracing sections beside an XDP program: skipped with a note each; the
/// XDP program's bpf_printk lines are trace events of their packet.
#[test]
fn printk_in_trace_and_tracing_sections_skipped() {
    let dir = scratch("printk");
    let Some(topo) = trace_mix(&dir) else { return };
    let pcap = root().join("examples/xdp_fw/fixtures/blocked.pcap");
    let json = dir.join("trace.json");
    let (code, out, err) = skiff(&[
        "run",
        topo.to_str().expect("utf-8"),
        "--pcap-in",
        &format!("eth0={}", pcap.display()),
        "--trace",
        "--trace-json",
        json.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    for (prog, sec, ty) in [
        (
            "kprobe_rx",
            "kprobe/__netif_receive_skb_core",
            "BPF_PROG_TYPE_KPROBE",
        ),
        (
            "tp_rx",
            "tracepoint/net/netif_receive_skb",
            "BPF_PROG_TYPE_TRACEPOINT",
        ),
        (
            "fentry_redirect",
            "fentry/xdp_do_redirect",
            "BPF_PROG_TYPE_TRACING",
        ),
    ] {
        let note = format!(
            "program {prog} (section '{sec}') skipped: {ty} programs do not run in skiff (no kernel to trace)"
        );
        assert!(err.contains(&note), "{note} not in {err}");
    }
    let line = out
        .lines()
        .find(|l| l.contains("bpf_trace_printk"))
        .expect("a printk line in the trace");
    assert!(
        line.starts_with("#1 ") && line.ends_with("xdp_printk: bpf_trace_printk: frame len 75"),
        "{line}"
    );
    let events = std::fs::read_to_string(&json).expect("trace json");
    let ev: serde_json::Value = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["func"] == "bpf_trace_printk")
        .expect("printk event in --trace-json");
    assert_eq!(ev["skb"], 1);
    assert_eq!(ev["verdict"], "frame len 75");
    assert_eq!(ev["prog"], "xdp_printk");
}

/// A tracing program asked for by name is refused as not supported.
#[test]
fn tracing_program_by_name_refused() {
    let dir = scratch("byname");
    if skiff_kernel::clang::available().is_err() {
        return;
    }
    let src = root().join("crates/cli/tests/bpf/trace_mix.c");
    let obj = skiff_kernel::clang::compile(&src, &dir).expect("compiles");
    let (code, _, err) = skiff(&[
        "prog",
        "run",
        obj.to_str().expect("utf-8"),
        "--prog",
        "kprobe_rx",
        "--data-in",
        "examples/xdp_fw/blocked.bin",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not supported: program type BPF_PROG_TYPE_KPROBE (program kprobe_rx, section 'kprobe/__netif_receive_skb_core')"),
        "{err}"
    );
}
