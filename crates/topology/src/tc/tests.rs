//! The tc front end: units and handles as iproute2 reads them, lines
//! parsed into the datapath's options, errors as tc words them, and lines
//! run on a datapath.

use std::path::Path;

use skiff_net::datapath::{DatapathOptions, QdiscCmd, TcParent};
use skiff_net::sched::htb::{HtbClassOptions, HtbOptions};
use skiff_net::sched::tbf::TbfOptions;
use skiff_net::sched::{ClassOptions, QdiscOptions};

use super::*;
use crate::Topology;

#[test]
fn units_as_tc_reads_them() {
    assert_eq!(get_rate("1mbit"), Some(125_000));
    assert_eq!(get_rate("500kbit"), Some(62_500));
    assert_eq!(get_rate("8000"), Some(1000));
    assert_eq!(get_rate("100kbps"), Some(100_000));
    assert_eq!(get_rate("1gibit"), Some(134_217_728));
    assert_eq!(get_rate("1furlong"), None);
    assert_eq!(get_size("32kbit"), Some(4096));
    assert_eq!(get_size("10k"), Some(10_240));
    assert_eq!(get_size("1600"), Some(1600));
    assert_eq!(get_size("1mb"), Some(1 << 20));
    assert_eq!(get_time_us("400ms"), Some(400_000));
    assert_eq!(get_time_us("1.5s"), Some(1_500_000));
    assert_eq!(get_time_us("20us"), Some(20));
    assert_eq!(get_time_ns("5ms"), Some(5_000_000));
    assert_eq!(get_qdisc_handle("1:"), Some(0x1_0000));
    assert_eq!(get_qdisc_handle("ffff:"), Some(0xffff_0000));
    assert_eq!(get_qdisc_handle("1:10"), None);
    assert_eq!(get_tc_classid("1:10"), Some(0x1_0010));
    assert_eq!(get_tc_classid(":a"), Some(0xa));
    assert_eq!(get_tc_classid("root"), Some(0xffff_ffff));
    assert_eq!(get_tc_classid("10"), Some(0x10));
    assert_eq!(get_tc_classid("1:fffff"), None);
}

fn qdisc(line: &str) -> QdiscLine {
    match parse_line(line) {
        Ok(TcCommand::Qdisc(q)) => q,
        r => panic!("{line}: {r:?}"),
    }
}

fn err(line: &str) -> (Option<usize>, String) {
    match parse_line(line) {
        Err(e) => (e.word, e.msg),
        Ok(c) => panic!("{line}: accepted as {c:?}"),
    }
}

#[test]
fn qdisc_lines_parse_to_the_kernels_attributes() {
    let q = qdisc("qdisc add dev eth0 root handle 1: htb default 30");
    assert_eq!(q.cmd, QdiscCmd::Add);
    assert_eq!(
        (q.dev.as_str(), q.parent, q.handle),
        ("eth0", TcParent::Root, Some(0x1_0000))
    );
    let h = HtbOptions {
        r2q: 10,
        defcls: 0x30,
        direct_qlen: None,
    };
    assert_eq!(q.opts, Some(QdiscOptions::Htb(h)));
    // The seed's tbf: limit from latency = 125000 B/s * 0.4 s + 4096.
    let q = qdisc("tc qdisc add dev eth0 root tbf rate 1mbit burst 32kbit latency 400ms");
    let t = TbfOptions {
        rate: 125_000,
        burst: 4096,
        limit: 54_096,
        peakrate: 0,
        mtu: 0,
    };
    assert_eq!(q.opts, Some(QdiscOptions::Tbf(t)));
    let q = qdisc("qdisc add dev eth0 handle ffff: ingress");
    assert_eq!(
        (q.parent, q.handle, q.opts),
        (
            TcParent::Ingress,
            Some(0xffff_0000),
            Some(QdiscOptions::Ingress)
        )
    );
    let q = qdisc("qdisc add dev eth0 parent 1:10 handle 10: pfifo limit 5");
    assert_eq!(
        (q.parent, q.opts),
        (
            TcParent::Class(0x1_0010),
            Some(QdiscOptions::Pfifo { limit: Some(5) })
        )
    );
    let q = qdisc("qdisc add dev eth0 root fq_codel limit 100 target 2ms noecn");
    let Some(QdiscOptions::FqCodel(f)) = q.opts else {
        panic!("not fq_codel")
    };
    assert_eq!(
        (f.limit, f.target_us, f.ecn, f.flows),
        (Some(100), Some(2000), Some(false), None)
    );
    let q = qdisc("qdisc del dev eth0 root");
    assert_eq!((q.cmd, q.opts), (QdiscCmd::Delete, None));
}

#[test]
fn class_lines_fill_tc_htb_opt_as_tc_does() {
    let Ok(TcCommand::Class(c)) =
        parse_line("class add dev eth0 parent 1:1 classid 1:10 htb rate 500kbit ceil 1mbit prio 2")
    else {
        panic!("class line refused");
    };
    assert_eq!((c.parent, c.classid), (Some(0x1_0001), 0x1_0010));
    // burst = rate / HZ (1e9) + mtu 1600: 1600 bytes at 62500 B/s is
    // 25.6 ms = 400000 psched ticks; at the ceil, 200000.
    let o = HtbClassOptions {
        rate: 62_500,
        ceil: 125_000,
        buffer: 400_000,
        cbuffer: 200_000,
        quantum: 0,
        prio: 2,
    };
    assert_eq!(c.opts, Some(ClassOptions::Htb(o)));
}

#[test]
fn errors_name_the_word_and_say_what_tc_says() {
    assert_eq!(
        err("qdisc add dev eth0 root htb r2q x"),
        (Some(7), "Illegal \"r2q\"".into())
    );
    assert_eq!(
        err("qdisc add dev eth0 root htb bogus 1"),
        (Some(6), "What is \"bogus\"?".into())
    );
    assert_eq!(
        err("qdisc add dev eth0 root tbf rate 1mbit"),
        (
            None,
            "tbf: the \"burst\" parameter is mandatory. tbf: either \"limit\" or \"latency\" is required.".into()
        )
    );
    assert_eq!(
        err("qdisc add dev eth0 root sfq"),
        (
            Some(5),
            "not supported: qdisc sfq (see docs/differences.md)".into()
        )
    );
    assert_eq!(
        err("qdisc add dev eth0 root wfq"),
        (Some(5), "Error: Specified qdisc kind is unknown.".into())
    );
    assert_eq!(
        err("class add dev eth0 parent 1: classid 1:10 htb ceil 1mbit"),
        (None, "\"rate\" is required.".into())
    );
    assert_eq!(
        err("qdisc add dev eth0 parent 1:x pfifo"),
        (
            Some(5),
            "Error: argument \"1:x\" is wrong: invalid parent ID".into()
        )
    );
    assert_eq!(
        err("bogus"),
        (
            Some(0),
            "Object \"bogus\" is unknown, try \"tc help\".".into()
        )
    );
    // (was: the placeholder's "not supported: tc filter lines yet")
    assert_eq!(
        err("filter add dev eth0 parent 1: u32 match ip src 10.0.0.300/32"),
        (Some(7), "Illegal \"match\"".into())
    );
}

fn example_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/k8s-node")
}

fn topo(tc: &str) -> Result<Topology, crate::TopologyError> {
    let src = format!(
        "[netns.host]\ntc = [{tc}]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n"
    );
    Topology::parse(&src, Path::new("t.toml"), &example_dir())
}

#[test]
fn topology_errors_point_at_the_word() {
    let e = topo("\"qdisc add dev eth0 root htb r2q x\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:40: netns.host.tc[0]: tc \"qdisc add dev eth0 root htb r2q x\": at \"x\": Illegal \"r2q\""
    );
    let e = topo("\"qdisc add dev eth9 root pfifo\"").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:7: netns.host.tc[0]: tc \"qdisc add dev eth9 root pfifo\": Cannot find device \"eth9\""
    );
}

#[test]
fn lines_run_in_order_on_the_datapath() {
    let t = topo(
        "\"qdisc add dev eth0 root handle 1: htb default 20\",
         \"class add dev eth0 parent 1: classid 1:1 htb rate 1mbit\",
         \"class add dev eth0 parent 1:1 classid 1:10 htb rate 500kbit ceil 1mbit\",
         \"class add dev eth0 parent 1:1 classid 1:20 htb rate 500kbit ceil 1mbit prio 1\",
         \"qdisc add dev eth0 parent 1:10 handle 10: tbf rate 1mbit burst 32kbit latency 400ms\",
         \"qdisc add dev eth0 handle ffff: ingress\"",
    )
    .unwrap();
    let b = t.build(DatapathOptions::default()).unwrap();
    let host = b.dp.netns("host").unwrap();
    let eth0 = b.dp.device(host, "eth0").unwrap();
    let show = b.dp.tc_show(eth0).unwrap();
    let q: Vec<String> = show.qdisc.iter().map(|q| q.to_text("eth0")).collect();
    assert_eq!(
        q.join(""),
        "qdisc htb 1: dev eth0 root r2q 10 default 0x20 direct_packets_stat 0 direct_qlen 1000\n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n\
         qdisc tbf 10: dev eth0 parent 1:10 rate 1Mbit burst 4Kb lat 400ms\n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n\
         qdisc ingress ffff: dev eth0 parent ffff:fff1 ---------------- \n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n"
    );
    let c: Vec<String> = show.class.iter().map(|c| c.to_text()).collect();
    assert_eq!(
        c.join(""),
        "class htb 1:1 root rate 1Mbit ceil 1Mbit burst 1600b cburst 1600b\n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n \
         lended: 0 borrowed: 0 giants: 0\n tokens: 200000 ctokens: 200000\n\n\
         class htb 1:10 parent 1:1 leaf 10: prio 0 rate 500Kbit ceil 1Mbit burst 1600b cburst 1600b\n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n \
         lended: 0 borrowed: 0 giants: 0\n tokens: 400000 ctokens: 200000\n\n\
         class htb 1:20 parent 1:1 prio 1 rate 500Kbit ceil 1Mbit burst 1600b cburst 1600b\n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n \
         lended: 0 borrowed: 0 giants: 0\n tokens: 400000 ctokens: 200000\n\n\
         class tbf 10:1 parent 10: \n \
         Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n\n"
    );
}

/// Seed 002's tc lines, in its order (a del between the adds of one root).
#[test]
fn the_seeds_qdisc_lines_run() {
    let t = topo(
        "\"qdisc add dev eth0 root netem delay 200ms\",
         \"qdisc change dev eth0 root netem delay 100ms 10ms\",
         \"qdisc del dev eth0 root\",
         \"qdisc add dev eth0 root netem loss 10%\",
         \"qdisc del dev eth0 root\",
         \"qdisc add dev eth0 root tbf rate 1mbit burst 32kbit latency 400ms\",
         \"qdisc add dev eth0 handle ffff: ingress\"",
    )
    .unwrap();
    let b = t.build(DatapathOptions::default()).unwrap();
    let host = b.dp.netns("host").unwrap();
    let eth0 = b.dp.device(host, "eth0").unwrap();
    let show = b.dp.tc_show(eth0).unwrap();
    let kinds: Vec<(&str, &str)> = show
        .qdisc
        .iter()
        .map(|q| (q.kind.as_str(), q.handle.as_str()))
        .collect();
    // Autohandles as qdisc_alloc_handle gives them: 8001:, 8002:, 8003:.
    assert_eq!(kinds, vec![("tbf", "8003:"), ("ingress", "ffff:")]);
    let Ok(TcCommand::Qdisc(q)) = parse_line(
        "qdisc change dev eth0 root netem delay 100ms 10ms 25% loss 0.1% duplicate 1% seed 5",
    ) else {
        panic!("netem line refused");
    };
    let Some(QdiscOptions::Netem(n)) = q.opts else {
        panic!("not netem")
    };
    assert_eq!(
        (n.latency_ns, n.jitter_ns, n.delay_corr),
        (100_000_000, 10_000_000, 1_073_741_824)
    );
    assert_eq!(
        (n.loss, n.duplicate, n.seed, n.limit),
        (4_294_967, 42_949_673, Some(5), 1000)
    );
    assert_eq!(
        err("qdisc add dev eth0 root netem reorder 25%"),
        (
            None,
            "reordering not possible without specifying some delay".into()
        )
    );
}
