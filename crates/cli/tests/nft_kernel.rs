//! nf_tables against the kernel: the same `nft -f` rule set loaded by the
//! real `nft` in network namespaces laid out as examples/k8s-node-kube-proxy's
//! node (outside veth = eth0, one veth per pod) and by `skiff run` from the
//! topology's `nft = '''...'''`; the same frames in. Compared: the frames
//! each pod and the outside receive (IPv4 id and checksums masked; for
//! masqueraded packets the source port and L4 checksum, which `masquerade
//! fully-random` draws), every `counter` of `nft list ruleset` (by table,
//! chain and rule), and `conntrack -L` (timeouts and masqueraded ports
//! masked).
//!
//! `numgen random` cannot match the kernel's draw, so both sides run the
//! kube-proxy rule set with `numgen inc` (the endpoint choice must then
//! match). The pods drop what they receive (an nft chain at prerouting, after
//! the capture taps it), as in crates/cli/tests/netfilter_kernel.rs.
//!
//! Needs root, `ip`, `nft`, `conntrack`, `ethtool`, python3; skips with a
//! printed reason otherwise. Namespaces are `skiff-n<pid>-*`, removed also
//! on failure; every wait is bounded.

mod common;

use std::path::Path;

use common::node::{
    assert_same_seen, example, firewall_frames, in_ns, kernel_ct, kernel_node, kernel_node_seen,
    kube_proxy_frames, mask_ct, skiff_ct, skiff_node_run, to_node, Nets,
};
use skiff_kernel::testpkt::icmp_echo;

fn skip_reason() -> Option<String> {
    skiff_kernel::netns::missing(
        &["ip", "nft", "conntrack", "ethtool", "python3"],
        "apt-get install nftables conntrack ethtool",
    )
}

/// `nft -f` of `text` in `ns` (through a file in the case's directory).
fn nft_f(n: &Nets, ns: &str, text: &str) {
    let f = n.dir().join(format!("{ns}.nft"));
    std::fs::write(&f, text).expect("write nft file");
    in_ns(ns, &["nft", "-f", &f.to_string_lossy()]);
}

const POD_DROP: &str = "table ip pod {\n\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy drop;\n\t}\n}\n";

/// What a run gives: the IPv4 packets pod1, pod2 and the outside received,
/// the `nft list ruleset` text, the host's `conntrack -L` lines.
#[derive(Debug)]
struct Side {
    seen: Vec<Vec<Vec<u8>>>,
    ruleset: String,
    ct: Vec<String>,
}

/// The kernel's run: the node, `rules` in its host, the frames in.
fn kernel_side(n: &Nets, rules: &str, frames: &[Vec<u8>]) -> Side {
    kernel_node(n, |pod| nft_f(n, pod, POD_DROP));
    let h = n.ns("host");
    nft_f(n, &h, rules);
    let seen = kernel_node_seen(n, frames);
    let ruleset = in_ns(&h, &["nft", "list", "ruleset"]);
    Side {
        seen,
        ruleset,
        ct: kernel_ct(n),
    }
}

/// skiff's run of topology `src` with the frames into eth0.
fn skiff_side(dir: &Path, src: &str, frames: &[Vec<u8>]) -> Side {
    let (so, seen) = skiff_node_run(dir, src, frames);
    let ruleset = so
        .split_once("# ip netns exec host nft list ruleset\n")
        .map_or("", |(_, r)| r)
        .split("\nconntrack -L")
        .next()
        .unwrap_or("")
        .to_string();
    Side {
        seen,
        ruleset,
        ct: skiff_ct(&so),
    }
}

/// Every counter of an `nft list ruleset` text as (table, chain, rule
/// number in the chain, packets, bytes).
fn counters(text: &str) -> Vec<(String, String, usize, u64, u64)> {
    let (mut table, mut chain, mut rule) = (String::new(), String::new(), 0usize);
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if let Some(t) = l.strip_prefix("table ") {
            table = t.trim_end_matches(" {").to_string();
        } else if let Some(c) = l.strip_prefix("chain ") {
            chain = c.trim_end_matches(" {").to_string();
            rule = 0;
        } else if l.is_empty() || l == "}" || l.starts_with("type ") && l.contains(" hook ") {
            continue;
        } else if !chain.is_empty() {
            rule += 1;
            let w: Vec<&str> = l.split_whitespace().collect();
            for i in 0..w.len() {
                if w[i] == "counter" && w.get(i + 1) == Some(&"packets") {
                    let num = |k: usize| w.get(k).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                    out.push((table.clone(), chain.clone(), rule, num(i + 2), num(i + 4)));
                }
            }
        }
    }
    out
}

/// Same packets, counters and conntrack entries (masked) on both sides.
fn assert_same(k: &Side, s: &Side) {
    assert_same_seen(&k.seen, &s.seen);
    assert_eq!(
        counters(&s.ruleset),
        counters(&k.ruleset),
        "counters\nkernel:\n{}\nskiff:\n{}",
        k.ruleset,
        s.ruleset
    );
    assert_eq!(mask_ct(&s.ct), mask_ct(&k.ct));
}

/// The example's nft text, and the example with `text` in its place.
fn nft_text(src: &str) -> (&str, &str, &str) {
    let (head, rest) = src.split_once("nft = '''\n").expect("nft block");
    let (text, tail) = rest.split_once("'''\n").expect("nft block end");
    (head, text, tail)
}

#[test]
fn kube_proxy_nft_frames_counters_and_conntrack_match_the_kernel() {
    let Some(n) = Nets::unless(skip_reason(), "skiff-n", "kp") else {
        return;
    };
    let src = std::fs::read_to_string(example("topology-nft.toml"))
        .expect("example")
        .replace("numgen random", "numgen inc");
    let (_, text, _) = nft_text(&src);
    let frames = kube_proxy_frames();
    let k = kernel_side(&n, text, &frames);
    let s = skiff_side(&n.dir().join("skiff"), &src, &frames);
    assert_same(&k, &s);
    assert_eq!(k.seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2, 1]);
    assert_eq!(k.ct.len(), 4, "{:?}", k.ct);
    let c = counters(&k.ruleset);
    assert_eq!(c.len(), 8, "{c:?}");
    assert!(c.iter().all(|x| x.3 <= 3), "{c:?}");
}

/// A firewall: a named set of blocked sources, ssh rejected with a RST, a
/// port set rejected with icmpx port unreachable, forward policy drop with
/// `ct state` and one allowed service.
const FILTER: &str = "table inet filter {
	set blocked {
		type ipv4_addr
		elements = { 203.0.113.6 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked counter drop
		tcp dport 22 counter reject with tcp reset
		udp dport { 9, 19 } counter reject
		meta l4proto icmp counter accept
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related counter accept
		ip daddr 10.0.1.11 tcp dport 8080 counter accept
		ct state new counter
	}
}
";

/// The firewall frames and, after the blocked source's, a ping from an
/// allowed one (`meta l4proto icmp` accepts it).
fn filter_frames() -> Vec<Vec<u8>> {
    let (c1, node) = ([203, 0, 113, 5], [192, 168, 1, 10]);
    let mut f = firewall_frames();
    f.insert(3, to_node(c1, node, 1, icmp_echo(0x1234, 2, b"ping")));
    f
}

#[test]
fn nft_filter_table_reject_sets_and_policies_match_the_kernel() {
    let Some(n) = Nets::unless(skip_reason(), "skiff-n", "f") else {
        return;
    };
    let src = std::fs::read_to_string(example("topology-nft.toml")).expect("example");
    let (head, _, tail) = nft_text(&src);
    let topo = format!("{head}nft = '''\n{FILTER}'''\n{tail}");
    let frames = filter_frames();
    let k = kernel_side(&n, FILTER, &frames);
    let s = skiff_side(&n.dir().join("skiff"), &topo, &frames);
    assert_same(&k, &s);
    // pod1: the allowed SYN; out: the RST, the port unreachable, the echo reply.
    assert_eq!(k.seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 3]);
    let c = counters(&k.ruleset);
    let hits: Vec<u64> = c.iter().map(|x| x.3).collect();
    assert_eq!(hits, [1, 1, 1, 1, 0, 1, 1], "{c:?}");
}
