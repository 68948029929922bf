//! The kube-proxy example against the kernel: examples/k8s-node-kube-proxy's
//! `iptables` lines, run with the real `iptables` in a network namespace
//! laid out as the example's node (outside veth = eth0, one veth per pod),
//! and through `skiff run` on the example's topology; the same frames in.
//! Compared: the frames each pod receives (IPv4 checksum masked; for
//! masqueraded packets the source port and L4 checksum, which MASQUERADE
//! --random-fully draws), `iptables -t TABLE -L -v -n -x` of every table,
//! and `conntrack -L` (timeouts and masqueraded ports masked).
//!
//! `--mode random` cannot match the kernel's draw, so both sides run the
//! example with its statistic rule as `--mode nth --every 2 --packet 0`
//! (the backend choice must then match). The pods drop what they receive
//! in their raw table (after the capture taps it): skiff's pod stacks do
//! not answer a SYN to a closed port with a RST nor a datagram with port
//! unreachable, the kernel's do, and those answers would cross the node.
//!
//! Needs root, `ip`, `iptables`, `conntrack`, python3; skips with a printed
//! reason otherwise. Namespaces are `skiff-nf<pid>-*`, removed also on
//! failure; every wait is bounded.

mod common;

use std::path::Path;

use common::node::{
    assert_same_seen, example, firewall_frames, hex, host_and_out, in_ns, in_ns_line, kernel_ct,
    kernel_node, kernel_node_seen, kube_proxy_frames, mask_ct, send_and_capture, skiff_ct,
    skiff_node_run, skiff_run, write_pcap, Nets, GW_MAC, NODE_MAC,
};
use skiff_kernel::testpkt::{eth, ipv6, tcp, udp};
use skiff_topology::netfilter::ShellWords;
use skiff_topology::Topology;

/// The x_tables front end: the nf_tables one (iptables-nft 1.8.9) keeps
/// no policy counters in the base chains and prints protocols as numbers.
const IPTABLES: &str = "iptables-legacy";
const RANDOM: &str = "--mode random --probability 0.50000000000";
const NTH: &str = "--mode nth --every 2 --packet 0";
const EXAMPLE: &str = "topology.toml";

fn skip_reason() -> Option<String> {
    skiff_kernel::netns::missing(
        &["ip", IPTABLES, "conntrack", "ethtool", "python3"],
        "apt-get install iptables conntrack",
    )
}

/// The example's topology for skiff's side, its pods' `listen = []` left
/// out: the kernel's pods here drop what they receive (raw table) instead of
/// answering, so skiff's pods take every port (they answer nothing either).
fn example_src() -> String {
    std::fs::read_to_string(example(EXAMPLE))
        .expect("example")
        .replace("listen = []\n", "")
}

/// The example's iptables lines, the statistic rule made nth.
fn rules(topo: &Topology) -> Vec<String> {
    let host = topo
        .namespaces
        .iter()
        .find(|n| n.name == "host")
        .expect("host netns");
    host.iptables
        .iter()
        .map(|l| l.text.replace(RANDOM, NTH))
        .collect()
}

/// `tool` run in `ns` with each of `lines` (shell words) as its arguments.
fn apply_rules(ns: &str, tool: &str, lines: &[impl AsRef<str>]) {
    for line in lines {
        let line = line.as_ref();
        let w = ShellWords::new(line).unwrap_or_else(|at| panic!("{line}: quote at {at}"));
        let mut args = vec![tool];
        args.extend(w.words.iter().map(|(_, s)| s.as_str()));
        in_ns(ns, &args);
    }
}

/// The kernel run: rules, frames in, then what each pod got, every table's
/// listing and the conntrack table.
fn kernel_side(n: &Nets, lines: &[String], frames: &[Vec<u8>], tables: &[&str]) -> Side {
    kernel_node(n, |pod| {
        in_ns(
            pod,
            &[IPTABLES, "-t", "raw", "-A", "PREROUTING", "-j", "DROP"],
        );
    });
    let h = n.ns("host");
    apply_rules(&h, IPTABLES, lines);
    let seen = kernel_node_seen(n, frames);
    let tables = tables
        .iter()
        .map(|t| in_ns(&h, &[IPTABLES, "-t", t, "-L", "-v", "-n", "-x"]))
        .collect();
    Side {
        seen,
        tables,
        ct: kernel_ct(n),
    }
}

/// What a run gives: the IPv4 packets pod1, pod2 and the outside (the
/// node's eth0 sent) received, the tables' listings, the host's
/// `conntrack -L` lines.
#[derive(Debug)]
struct Side {
    seen: Vec<Vec<Vec<u8>>>,
    tables: Vec<String>,
    ct: Vec<String>,
}

/// skiff's run of topology `src` with the frames into eth0.
fn skiff_side(dir: &Path, src: &str, frames: &[Vec<u8>], tables: &[&str]) -> Side {
    let (so, seen) = skiff_node_run(dir, src, frames);
    Side {
        seen,
        tables: skiff_tables(&so, tables),
        ct: skiff_ct(&so),
    }
}

/// The host's listings of `tables` out of `--nf-stats`.
fn skiff_tables(so: &str, tables: &[&str]) -> Vec<String> {
    tables
        .iter()
        .map(|t| {
            let head = format!("# ip netns exec host iptables -t {t} -L -v -n -x\n");
            let rest = so.split_once(&head).map_or("", |(_, r)| r);
            rest.split("\n# ")
                .next()
                .unwrap_or("")
                .split("\nconntrack -L")
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Lines without trailing blanks, empty lines gone, the `prot` column as
/// iptables 1.8.9's `-n` prints it (a number: 0, 6, 17) where skiff prints
/// the names older iptables print (all, tcp, udp).
fn norm(t: &str) -> Vec<String> {
    t.lines()
        .map(|l| {
            let l = l.trim_end();
            [
                ("  all  ", "  0    "),
                ("  tcp  ", "  6    "),
                ("  udp  ", "  17   "),
            ]
            .iter()
            .fold(l.to_string(), |l, (name, num)| l.replacen(name, num, 1))
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn kube_proxy_example_frames_counters_and_conntrack_match_the_kernel() {
    let Some(n) = Nets::unless(skip_reason(), "skiff-nf", "kp") else {
        return;
    };
    let dir = n.dir();
    let topo = Topology::load(&example(EXAMPLE)).expect("example topology");
    let lines = rules(&topo);
    assert!(
        lines.iter().any(|l| l.contains(NTH)),
        "the example's statistic rule is gone"
    );
    let frames = kube_proxy_frames();
    let tables = ["raw", "filter", "nat"];
    let k = kernel_side(&n, &lines, &frames, &tables);
    let s = skiff_side(&dir, &example_src().replace(RANDOM, NTH), &frames, &tables);
    assert_same(&k, &s, &tables);
    assert_eq!(
        k.seen.iter().take(2).map(Vec::len).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(k.ct.len(), 4, "{:?}", k.ct);
}

/// Same packets into pod1, pod2 and out of eth0 (masked), same listings.
fn assert_same(k: &Side, s: &Side, tables: &[&str]) {
    assert_same_seen(&k.seen, &s.seen);
    for (t, (kt, st)) in tables.iter().zip(k.tables.iter().zip(&s.tables)) {
        assert_eq!(norm(st), norm(kt), "iptables -t {t} -L -v -n -x");
    }
    assert_eq!(mask_ct(&s.ct), mask_ct(&k.ct));
}

/// The filter-table case's rules: INPUT rejects ssh with a RST and port 9
/// with port unreachable, drops a source; FORWARD (policy DROP) lets
/// established flows and pod1's 8080 through.
const FILTER_RULES: [&str; 6] = [
    "-P FORWARD DROP",
    "-A INPUT -s 203.0.113.6/32 -j DROP",
    "-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with tcp-reset",
    "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable",
    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -d 10.0.1.11/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
];

/// The example's topology for skiff's side (`example_src`) with `block` in
/// place of its `iptables = [...]` lines.
fn with_rules(block: &str) -> String {
    let src = example_src();
    let (head, rest) = src.split_once("\niptables = [").expect("iptables block");
    let (_, tail) = rest.split_once("\n]\n").expect("block end");
    format!("{head}\n{block}{tail}")
}

/// The example's node with the filter rules instead of kube-proxy's.
fn filter_topology() -> String {
    let lines: Vec<String> = FILTER_RULES.iter().map(|r| format!("  {r:?},")).collect();
    with_rules(&format!("iptables = [\n{}\n]\n", lines.join("\n")))
}

#[test]
fn filter_table_reject_and_policies_match_the_kernel() {
    let Some(n) = Nets::unless(skip_reason(), "skiff-nf", "f") else {
        return;
    };
    let dir = n.dir();
    let lines: Vec<String> = FILTER_RULES.iter().map(|r| r.to_string()).collect();
    let frames = firewall_frames();
    let tables = ["filter"];
    let k = kernel_side(&n, &lines, &frames, &tables);
    let s = skiff_side(&dir, &filter_topology(), &frames, &tables);
    assert_same(&k, &s, &tables);
    assert_eq!(k.seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 2]);
    let listing = norm(&k.tables[0]);
    for line in [
        "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
        "Chain FORWARD (policy DROP 1 packets, 40 bytes)",
        "Chain OUTPUT (policy ACCEPT 2 packets, 100 bytes)",
    ] {
        assert!(listing.iter().any(|l| l == line), "{line}: {listing:#?}");
    }
}

/// The IPv6 REJECT case's rules (ip6t_REJECT: a RST, port unreachable by
/// name and by default, administratively prohibited).
const REJECT6_RULES: [&str; 4] = [
    "-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with tcp-reset",
    "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp6-port-unreachable",
    "-A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with icmp6-adm-prohibited",
    "-A INPUT -p tcp -m tcp --dport 24 -j REJECT",
];
const NODE6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const GW6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The node with one IPv6 address on its eth0 and the REJECT rules.
fn reject6_topology() -> String {
    let rules: Vec<String> = REJECT6_RULES.iter().map(|r| format!("  {r:?},")).collect();
    format!(
        "[netns.host]\nip6tables = [\n{}\n]\n\n[[netns.host.device]]\nname = \"eth0\"\n\
         kind = \"nic\"\nifindex = 2\nmac = \"02:00:00:00:00:01\"\n\n[[netns.host.address]]\n\
         dev = \"eth0\"\ncidr = \"2001:db8::10/64\"\n\n[[netns.host.neighbour]]\ndev = \"eth0\"\n\
         ip = \"2001:db8::1\"\nmac = \"02:00:00:00:00:fe\"\n",
        rules.join("\n")
    )
}

/// From the gateway to the node: SYN to 22 (RST+ACK), ACK to 22 (RST with
/// the ACK's number), a datagram to 9, SYNs to 23 and 24 (ICMPv6 errors).
fn reject6_frames() -> Vec<Vec<u8>> {
    let ip = |next: u8, l4: Vec<u8>| eth(NODE_MAC, GW_MAC, 0x86dd, &ipv6(GW6, NODE6, next, &l4));
    vec![
        ip(6, tcp(&GW6, &NODE6, 40000, 22, 0x02, &[])),
        ip(6, tcp(&GW6, &NODE6, 40001, 22, 0x10, b"data")),
        ip(17, udp(&GW6, &NODE6, 5000, 9, &[0, 1, 2, 3])),
        ip(6, tcp(&GW6, &NODE6, 40002, 23, 0x02, &[])),
        ip(6, tcp(&GW6, &NODE6, 40003, 24, 0x02, &[])),
    ]
}

/// The IPv6 packets (from the node) a capture holds: TCP, and ICMPv6
/// destination unreachable, with the flow label masked (the kernel's
/// icmp6_send draws an automatic flow label, nf_send_reset6 sets 0).
fn replies6(frames: Vec<Vec<u8>>) -> Vec<String> {
    frames
        .into_iter()
        .filter_map(|f| {
            let mut p = match f.get(12..14) {
                Some([0x86, 0xdd]) => f.get(14..)?.to_vec(),
                _ => f,
            };
            let keep = matches!((p.get(6), p.get(40)), (Some(6), _) | (Some(58), Some(1)));
            if !keep {
                return None;
            }
            if let Some(b) = p.get_mut(1) {
                *b &= 0xf0;
            }
            p.get_mut(2..4)?.copy_from_slice(&[0, 0]);
            Some(hex(&p))
        })
        .collect()
}

/// The kernel's side: out -> host over a veth, ip6tables-legacy's rules,
/// what the node sends back and its INPUT listing.
fn reject6_kernel(n: &Nets, frames: &[Vec<u8>]) -> (Vec<String>, String) {
    let (h, _) = host_and_out(n);
    in_ns_line(&h, "ip -6 addr add 2001:db8::10/64 dev skh-eth nodad");
    in_ns_line(
        &h,
        "ip -6 neigh replace 2001:db8::1 lladdr 02:00:00:00:00:fe dev skh-eth nud permanent",
    );
    apply_rules(&h, "ip6tables-legacy", &REJECT6_RULES);
    let mut seen = send_and_capture(n, &[("out", "sko-eth")], 0x86dd, frames);
    let listing = in_ns(&h, &["ip6tables-legacy", "-L", "INPUT", "-v", "-n", "-x"]);
    (replies6(seen.remove(0)), listing)
}

/// skiff's side: the topology run with the frames into eth0.
fn reject6_skiff(dir: &Path, frames: &[Vec<u8>]) -> (Vec<String>, String) {
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, reject6_topology()).expect("write topology");
    let (pin, pout) = (dir.join("in.pcap"), dir.join("out.pcap"));
    write_pcap(&pin, frames);
    let so = skiff_run(&[
        topo.display().to_string(),
        format!("--pcap-in=eth0={}", pin.display()),
        format!("--pcap-out=eth0={}", pout.display()),
        "--nf-stats".into(),
    ]);
    let c = skiff_io::read(&pout).expect("capture");
    let seen = replies6(c.packets.into_iter().map(|p| p.data).collect());
    let head = "# ip netns exec host ip6tables -t filter -L -v -n -x\n";
    let listing = so.split_once(head).map_or("", |(_, r)| r);
    let input = listing.split("\n\n").next().unwrap_or("").to_string();
    (seen, input)
}

#[test]
fn ip6tables_reject_replies_match_the_kernel() {
    let skip = skiff_kernel::netns::missing(
        &["ip", "ip6tables-legacy", "ethtool", "python3"],
        "apt-get install iptables",
    );
    let Some(n) = Nets::unless(skip, "skiff-nf", "r6") else {
        return;
    };
    let dir = n.dir();
    let frames = reject6_frames();
    let (k, kl) = reject6_kernel(&n, &frames);
    let (s, sl) = reject6_skiff(&dir, &frames);
    assert_eq!(s, k, "the node's replies (IPv6, flow label masked)");
    assert_eq!(k.len(), 5, "{k:#?}");
    assert_eq!(norm(&sl), norm(&kl), "ip6tables -L INPUT -v -n -x");
}

/// The example's topology for skiff's side with its `iptables` lines
/// replaced by `iptables_save` text.
fn save_topology(save: &str) -> String {
    with_rules(&format!("iptables_save = '''\n{save}'''\n"))
}

#[test]
fn kube_proxy_example_loaded_from_the_kernels_iptables_save_matches_the_kernel() {
    let Some(n) = Nets::unless(skip_reason(), "skiff-nf", "ks") else {
        return;
    };
    let dir = n.dir();
    let topo = Topology::load(&example(EXAMPLE)).expect("example topology");
    let lines = rules(&topo);
    let frames = kube_proxy_frames();
    let tables = ["raw", "filter", "nat"];
    let k = kernel_side(&n, &lines, &frames, &tables);
    // What the kernel holds, as iptables-save prints it (with the counters
    // of the run, which a restore without -c does not load).
    let save = in_ns(&n.ns("host"), &["iptables-legacy-save", "-c"]);
    assert!(
        save.contains("*nat\n") && save.contains("--mode nth"),
        "{save}"
    );
    let s = skiff_side(&dir, &save_topology(&save), &frames, &tables);
    assert_same(&k, &s, &tables);
}
