use super::*;
use crate::netfilter::{apply, parse_line};
use skiff_net::netfilter::dump::list_all;
use skiff_net::netfilter::Netfilter;

/// `iptables-legacy-save -c` of the kernel after the k8s-node-kube-proxy
/// example's iptables lines ran in a namespace.
const EXAMPLE_SAVE: &str = include_str!("k8s-node-kube-proxy.save");
/// A kube-proxy 1.29 node's `iptables-save` (mangle, filter, nat; hashed
/// chain names; a service without endpoints), accepted by
/// `iptables-legacy-restore`.
const KUBE_PROXY_SAVE: &str = include_str!("kube-proxy-1.29.save");

fn restore(text: &str) -> Result<Netfilter, String> {
    let mut nf = Netfilter::new();
    for l in parse_restore(text, NfProto::Ipv4).map_err(|e| format!("{e:?}"))? {
        apply(&mut nf, &l.cmd).map_err(|e| format!("line {}: {e}", l.line + 1))?;
    }
    Ok(nf)
}

#[test]
fn the_kernels_save_of_the_example_builds_the_same_tables_as_its_lines() {
    let from_save = restore(EXAMPLE_SAVE).unwrap();
    let src = include_str!("../../../../../examples/k8s-node-kube-proxy/topology.toml");
    let topo: toml::Value = toml::from_str(src).unwrap();
    let lines = topo["netns"]["host"]["iptables"].as_array().unwrap();
    let mut from_lines = Netfilter::new();
    for l in lines {
        let c = parse_line(l.as_str().unwrap(), NfProto::Ipv4).unwrap();
        apply(&mut from_lines, &c).unwrap();
    }
    // Same chains, rules and policies; tables listed in the same order.
    let sorted = |nf: &Netfilter| {
        let mut t: Vec<String> = list_all(nf, "host")
            .split("\n# ")
            .map(String::from)
            .collect();
        t.sort();
        t
    };
    assert_eq!(sorted(&from_save), sorted(&from_lines));
    assert_eq!(from_save.tables.len(), 3);
}

#[test]
fn a_kube_proxy_nodes_save_loads() {
    let nf = restore(KUBE_PROXY_SAVE).unwrap();
    let names: Vec<&str> = nf.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["mangle", "filter", "nat"]);
    let nat = nf.find_table(NfProto::Ipv4, "nat").unwrap();
    assert_eq!(nat.chains.len(), 4 + 15);
    let rules: usize = nat.chains.iter().map(|c| c.rules.len()).sum();
    assert_eq!(rules, 31);
    let filter = nf.find_table(NfProto::Ipv4, "filter").unwrap();
    let svc = filter.chain_index("KUBE-SERVICES").unwrap();
    assert_eq!(filter.chains[svc].rules.len(), 1);
    let list = list_all(&nf, "node");
    assert!(list.contains(
        "REJECT     tcp  --  *      *       0.0.0.0/0            10.96.121.7          /* default/no-endpoints:http has no endpoints */ tcp dpt:80 reject-with icmp-port-unreachable"
    ), "{list}");
}

#[test]
fn lines_keep_their_place_and_counters_are_skipped() {
    let l = parse_restore(EXAMPLE_SAVE, NfProto::Ipv4).unwrap();
    // "*nat" is line 2 of the file, ":PREROUTING ACCEPT [0:0]" line 3.
    assert_eq!(
        (l[0].line, l[0].col, l[0].cmd.op.clone()),
        (1, 0, IptOp::Restore)
    );
    assert_eq!(l[0].cmd.table, "nat");
    let first_rule = l
        .iter()
        .find(|l| matches!(l.cmd.op, IptOp::Append { .. }))
        .unwrap();
    assert_eq!(first_rule.line, 15);
    assert_eq!(first_rule.col, 6);
    assert!(first_rule.text.starts_with("-A PREROUTING -m comment"));
}

#[test]
fn a_table_replaces_what_was_there() {
    let text = "*filter\n:FORWARD DROP [0:0]\n:X - [0:0]\n-A FORWARD -j X\nCOMMIT\n\
                *filter\n:FORWARD ACCEPT [0:0]\n:Y - [0:0]\n-A Y -j DROP\nCOMMIT\n";
    let nf = restore(text).unwrap();
    let t = nf.find_table(NfProto::Ipv4, "filter").unwrap();
    let names: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["INPUT", "FORWARD", "OUTPUT", "Y"]);
    assert_eq!(t.chains[1].rules.len(), 0);
    assert_eq!(
        t.chains[1].policy,
        Some(skiff_net::netfilter::x_tables::Policy::Accept)
    );
    assert_eq!(t.chains[3].rules.len(), 1);
}

fn err(text: &str) -> RestoreError {
    parse_restore(text, NfProto::Ipv4).unwrap_err()
}

#[test]
fn errors_name_the_line_and_the_word() {
    let e = err("*nat\n:KUBE-X - [0:0]\n  -A KUBE-X -p tcp --dport 80 -j DNAT --to-destination 10.0.0.1:99999\nCOMMIT\n");
    assert_eq!((e.line, e.col), (2, 2 + 53));
    assert_eq!(e.word.as_deref(), Some("10.0.0.1:99999"));
    let e = err("*nat\n-t nat -A PREROUTING -j ACCEPT\nCOMMIT\n");
    assert_eq!((e.line, e.col, e.word.as_deref()), (1, 0, Some("-t")));
    assert_eq!(e.msg, "The -t option cannot be used in iptables-restore");
    let e = err("*filter\n:FORWARD REJECT [0:0]\nCOMMIT\n");
    assert_eq!((e.line, e.col, e.word.as_deref()), (1, 9, Some("REJECT")));
    assert_eq!(
        e.msg,
        "Can't set policy `REJECT' on `FORWARD': Bad policy name"
    );
    let e = err("*filter\n:FORWARD ACCEPT [x:0]\nCOMMIT\n");
    assert_eq!((e.line, e.col, e.word.as_deref()), (1, 16, Some("[x:0]")));
    let e = err("*filter\n[1:2 -A INPUT -j DROP\nCOMMIT\n");
    assert_eq!(
        (e.line, e.msg.as_str()),
        (1, "bad counters: no ']' after '['")
    );
    let e = err("-A INPUT -j DROP\n");
    assert_eq!((e.line, e.word.as_deref()), (0, Some("-A")));
    assert_eq!(e.msg, "not inside a table: a *TABLE line must come first");
    let e = err("# a comment\n*filter\n-A INPUT -j DROP\n");
    assert_eq!(e.line, 2);
    assert_eq!(
        e.msg,
        "COMMIT expected at line 4 (table filter opened at line 2)"
    );
    let e = err("*filter\n*nat\nCOMMIT\n");
    assert_eq!(e.line, 1);
    assert_eq!(
        e.msg,
        "COMMIT expected at line 2 (table filter opened at line 1)"
    );
}

#[test]
fn a_missing_table_or_chain_is_an_apply_error() {
    assert_eq!(
        restore("*bogus\nCOMMIT\n").unwrap_err(),
        "line 1: can't initialize iptables table `bogus': Table does not exist"
    );
    assert_eq!(
        restore("*raw\n:INPUT ACCEPT [0:0]\nCOMMIT\n").unwrap_err(),
        "line 2: `INPUT': No chain/target/match by that name"
    );
}

fn topo(save: &str) -> Result<crate::Topology, String> {
    let src = format!(
        "[netns.host]\niptables = [\"-A INPUT -j ACCEPT\"]\niptables_save = '''\n{save}'''\n"
    );
    let t = crate::Topology::parse(
        &src,
        std::path::Path::new("t.toml"),
        std::path::Path::new("."),
    )
    .map_err(|e| e.to_string())?;
    t.build(skiff_net::datapath::DatapathOptions::default())
        .map_err(|e| e.to_string())?;
    Ok(t)
}

#[test]
fn a_topology_reads_the_text_before_its_lines() {
    let t = topo("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n").unwrap();
    let host = &t.namespaces[0];
    let ops: Vec<&IptOp> = host.iptables.iter().map(|l| &l.cmd.op).collect();
    assert_eq!(ops.len(), 4);
    assert_eq!(ops[0], &IptOp::Restore);
    assert_eq!(host.iptables[2].text, "-A INPUT -i lo -j ACCEPT");
    assert_eq!(
        (host.iptables[2].loc.line, host.iptables[2].loc.col),
        (6, 1)
    );
    assert_eq!(host.iptables[3].text, "-A INPUT -j ACCEPT");
}

#[test]
fn topology_errors_point_into_the_text() {
    assert_eq!(
        topo("*filter\n  -A INPUT -p tcp --dport 99999 -j DROP\nCOMMIT\n").unwrap_err(),
        "t.toml:5:27: netns.host.iptables_save: iptables_save line 2: at \"99999\": Bad port \"99999\""
    );
    assert_eq!(
        topo("*filter\n-A NOPE -j DROP\nCOMMIT\n").unwrap_err(),
        "t.toml:5:1: netns.host.iptables_save: iptables \"-A NOPE -j DROP\": `NOPE': No chain/target/match by that name"
    );
}
