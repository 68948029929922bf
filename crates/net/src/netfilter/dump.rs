//! The tables as `iptables -L -v -n -x` prints them (iptables.c
//! print_header / print_firewall and each extension's print) and as JSON
//! for `skiff run --json`.

use std::fmt::Write;
use std::net::IpAddr;

use super::conntrack::xt as ctxt;
use super::ip_tables::{
    IfMatch, IptIp, IPT_INV_DSTIP, IPT_INV_FRAG, IPT_INV_PROTO, IPT_INV_SRCIP, IPT_INV_VIA_IN,
    IPT_INV_VIA_OUT,
};
use super::nat::{
    NatTarget, NfNatRange2, NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_RANDOM,
    NF_NAT_RANGE_PROTO_RANDOM_FULLY, NF_NAT_RANGE_PROTO_SPECIFIED,
};
use super::targets::XtTarget;
use super::x_tables::{XtChain, XtRule, XtTable};
use super::xt_addrtype::types_to_text;
use super::xt_match::XtMatch;
use super::xt_multiport::MultiportFlags;
use super::xt_statistic::StatisticMode;
use super::xt_tcpudp::ALL_PORTS;
use super::{Netfilter, NfProto};

/// The chains in `iptables -L` order: built-in ones by hook, then user
/// chains by name.
fn chain_order(t: &XtTable) -> Vec<usize> {
    let mut v: Vec<usize> = t
        .hooks()
        .filter_map(|h| t.hook_chain.get(h.index()).copied().flatten())
        .collect();
    let mut user: Vec<usize> = (0..t.chains.len())
        .filter(|i| t.chains.get(*i).is_some_and(|c| c.policy.is_none()))
        .collect();
    user.sort_by(|a, b| t.chains[*a].name.cmp(&t.chains[*b].name));
    v.extend(user);
    v
}

fn references(t: &XtTable, c: usize) -> usize {
    t.chains
        .iter()
        .flat_map(|ch| &ch.rules)
        .filter(|r| r.target.chain() == Some(c))
        .count()
}

/// xtables_ipaddr_to_numeric + xtables_ipmask_to_numeric: `a/len`, no
/// `/32` (`/128`); `0.0.0.0/0` for any.
fn addr_text(a: Option<(IpAddr, u8)>, v6: bool) -> String {
    match a {
        None if v6 => "::/0".into(),
        None => "0.0.0.0/0".into(),
        Some((a, l)) if (a.is_ipv4() && l == 32) || (a.is_ipv6() && l == 128) => a.to_string(),
        Some((a, l)) => format!("{a}/{l}"),
    }
}

fn iface_text(m: &Option<IfMatch>, inv: bool) -> String {
    let n = m
        .as_ref()
        .map(|m| m.to_text())
        .unwrap_or_else(|| "*".into());
    if inv {
        format!("!{n}")
    } else {
        n
    }
}

fn proto_name(p: u8) -> String {
    match p {
        0 => "all".into(),
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

fn ports_text(name: &str, (a, b): (u16, u16), inv: bool) -> String {
    if (a, b) == ALL_PORTS && !inv {
        return String::new();
    }
    let i = if inv { "!" } else { "" };
    if a == b {
        format!(" {name}:{i}{a}")
    } else {
        format!(" {name}s:{i}{a}:{b}")
    }
}

fn states_text(bits: u32) -> String {
    let names = [
        (ctxt::XT_CONNTRACK_STATE_INVALID, "INVALID"),
        (1 << 3, "NEW"),
        (1 << 2, "RELATED"),
        (1 << 1, "ESTABLISHED"),
        (ctxt::XT_CONNTRACK_STATE_UNTRACKED, "UNTRACKED"),
        (ctxt::XT_CONNTRACK_STATE_SNAT, "SNAT"),
        (ctxt::XT_CONNTRACK_STATE_DNAT, "DNAT"),
    ];
    names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// Each match's print function (numeric).
fn match_text(m: &XtMatch) -> String {
    let inv = |b: bool| if b { " !" } else { "" };
    match m {
        XtMatch::Tcp(t) => {
            let mut s = " tcp".to_string();
            s += &ports_text("spt", t.spts, t.invflags & 1 != 0);
            s += &ports_text("dpt", t.dpts, t.invflags & 2 != 0);
            if t.flg_mask != 0 || t.invflags & 4 != 0 {
                let _ = write!(
                    s,
                    " flags:{}0x{:02X}/0x{:02X}",
                    if t.invflags & 4 != 0 { "!" } else { "" },
                    t.flg_mask,
                    t.flg_cmp
                );
            }
            s
        }
        XtMatch::Udp(u) => {
            let mut s = " udp".to_string();
            s += &ports_text("spt", u.spts, u.invflags & 1 != 0);
            s += &ports_text("dpt", u.dpts, u.invflags & 2 != 0);
            s
        }
        XtMatch::Multiport(mp) => {
            let dir = match mp.flags {
                MultiportFlags::Source => "sports",
                MultiportFlags::Destination => "dports",
                MultiportFlags::Either => "ports",
            };
            let ports: Vec<String> = mp
                .ports
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}:{b}")
                    }
                })
                .collect();
            format!(" multiport {dir}{} {}", inv(mp.invert), ports.join(","))
        }
        XtMatch::Mark(mk) => {
            if mk.mask == u32::MAX {
                format!(" mark match{} 0x{:x}", inv(mk.invert), mk.mark)
            } else {
                format!(
                    " mark match{} 0x{:x}/0x{:x}",
                    inv(mk.invert),
                    mk.mark,
                    mk.mask
                )
            }
        }
        XtMatch::Comment(c) => format!(" /* {c} */"),
        XtMatch::Statistic(s) => match s.mode {
            StatisticMode::Random { probability } => format!(
                " statistic mode random{} probability {:.11}",
                inv(s.invert),
                f64::from(probability) / 2147483648.0
            ),
            StatisticMode::Nth { every, packet, .. } => format!(
                " statistic mode nth{} every {}{}",
                inv(s.invert),
                u64::from(every) + 1,
                if packet != 0 {
                    format!(" packet {packet}")
                } else {
                    String::new()
                }
            ),
        },
        XtMatch::Addrtype(a) => {
            let mut s = " ADDRTYPE match".to_string();
            if a.source != 0 {
                let _ = write!(
                    s,
                    " src-type{} {}",
                    inv(a.invert_source),
                    types_to_text(a.source)
                );
            }
            if a.dest != 0 {
                let _ = write!(
                    s,
                    " dst-type{} {}",
                    inv(a.invert_dest),
                    types_to_text(a.dest)
                );
            }
            s
        }
        XtMatch::Conntrack { statemask, invert } => {
            format!(" ctstate{} {}", inv(*invert), states_text(*statemask))
        }
        XtMatch::State { statemask, invert } => {
            format!(" state{} {}", inv(*invert), states_text(*statemask))
        }
        XtMatch::Connmark { mark, mask, invert } => {
            format!(" connmark match{} 0x{mark:x}/0x{mask:x}", inv(*invert))
        }
    }
}

fn range_text(r: &NfNatRange2) -> String {
    let mut s = String::new();
    if r.flags & NF_NAT_RANGE_MAP_IPS != 0 {
        s += &if r.min_addr == r.max_addr {
            r.min_addr.to_string()
        } else {
            format!("{}-{}", r.min_addr, r.max_addr)
        };
    }
    if r.flags & NF_NAT_RANGE_PROTO_SPECIFIED != 0 {
        s += &if r.min_proto == r.max_proto {
            format!(":{}", r.min_proto)
        } else {
            format!(":{}-{}", r.min_proto, r.max_proto)
        };
    }
    s
}

fn random_text(r: &NfNatRange2) -> &'static str {
    if r.flags & NF_NAT_RANGE_PROTO_RANDOM_FULLY != 0 {
        " random-fully"
    } else if r.flags & NF_NAT_RANGE_PROTO_RANDOM != 0 {
        " random"
    } else {
        ""
    }
}

/// (target column, the target's print).
fn target_text(t: &XtTarget, table: &XtTable) -> (String, String) {
    let v6 = table.family == NfProto::Ipv6;
    let chain = |c: usize| {
        table
            .chains
            .get(c)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    };
    match t {
        XtTarget::None => (String::new(), String::new()),
        XtTarget::Accept => ("ACCEPT".into(), String::new()),
        XtTarget::Drop => ("DROP".into(), String::new()),
        XtTarget::Return => ("RETURN".into(), String::new()),
        XtTarget::Queue {
            num: 0,
            bypass: false,
        } => ("NFQUEUE".into(), " NFQUEUE num 0".into()),
        XtTarget::Queue { num, bypass } => (
            "NFQUEUE".into(),
            format!(" NFQUEUE num {num}{}", if *bypass { " bypass" } else { "" }),
        ),
        XtTarget::Jump(c) => (chain(*c), String::new()),
        XtTarget::Goto(c) => (chain(*c), " [goto]".into()),
        XtTarget::Reject(w) => ("REJECT".into(), format!(" reject-with {}", w.name(v6))),
        XtTarget::Mark(m) => (
            "MARK".into(),
            match (m.mark, m.mask) {
                (v, k) if v == k => format!(" MARK or 0x{v:x}"),
                (0, k) => format!(" MARK and 0x{:x}", !k),
                (v, 0) => format!(" MARK xor 0x{v:x}"),
                (v, u32::MAX) => format!(" MARK set 0x{v:x}"),
                (v, k) => format!(" MARK xset 0x{v:x}/0x{k:x}"),
            },
        ),
        XtTarget::Log(l) => (
            "LOG".into(),
            format!(
                " LOG flags 0 level {}{}",
                l.level,
                if l.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" prefix \"{}\"", l.prefix)
                }
            ),
        ),
        XtTarget::Nat(n) => match n {
            NatTarget::Dnat(r) => (
                "DNAT".into(),
                format!(" to:{}{}", range_text(r), random_text(r)),
            ),
            NatTarget::Snat(r) => (
                "SNAT".into(),
                format!(" to:{}{}", range_text(r), random_text(r)),
            ),
            NatTarget::Masquerade(r) => (
                "MASQUERADE".into(),
                format!(
                    "{}{}",
                    if r.flags & NF_NAT_RANGE_PROTO_SPECIFIED != 0 {
                        format!(" masq ports: {}", range_text(r).trim_start_matches(':'))
                    } else {
                        String::new()
                    },
                    random_text(r)
                ),
            ),
            NatTarget::Redirect(r) => (
                "REDIRECT".into(),
                if r.flags & NF_NAT_RANGE_PROTO_SPECIFIED != 0 {
                    format!(" redir ports {}", range_text(r).trim_start_matches(':'))
                } else {
                    String::new()
                },
            ),
        },
        XtTarget::Connmark(_) => ("CONNMARK".into(), " CONNMARK".into()),
        XtTarget::Notrack => ("CT".into(), " NOTRACK".into()),
    }
}

/// One rule line of `iptables -L -v -n -x`.
fn rule_line(r: &XtRule, table: &XtTable) -> String {
    let ip: &IptIp = &r.ip;
    let v6 = table.family == NfProto::Ipv6;
    let (target, tprint) = target_text(&r.target, table);
    let mut s = format!(
        "{:>8} {:>8} {:<9}  ",
        r.counters.pcnt, r.counters.bcnt, target
    );
    s.pop();
    s.push(if ip.invflags & IPT_INV_PROTO != 0 {
        '!'
    } else {
        ' '
    });
    let _ = write!(s, "{:<5}", proto_name(ip.proto));
    if !v6 {
        let _ = write!(
            s,
            "{}{} ",
            if ip.invflags & IPT_INV_FRAG != 0 {
                '!'
            } else {
                '-'
            },
            if ip.frag { 'f' } else { '-' }
        );
    } else {
        // ip6tables 1.8.9 prints the fragment column as `--` too (IPv6 has
        // no -f flag).
        s.push_str("-- ");
    }
    let _ = write!(
        s,
        " {:<6} ",
        iface_text(&ip.iniface, ip.invflags & IPT_INV_VIA_IN != 0)
    );
    let _ = write!(
        s,
        "{:<6} ",
        iface_text(&ip.outiface, ip.invflags & IPT_INV_VIA_OUT != 0)
    );
    s.push(if ip.invflags & IPT_INV_SRCIP != 0 {
        '!'
    } else {
        ' '
    });
    let _ = write!(s, "{:<19} ", addr_text(ip.src, v6));
    s.push(if ip.invflags & IPT_INV_DSTIP != 0 {
        '!'
    } else {
        ' '
    });
    let _ = write!(s, "{:<19} ", addr_text(ip.dst, v6));
    for m in &r.matches {
        s += &match_text(m);
    }
    s += &tprint;
    s
}

fn chain_header(t: &XtTable, ci: usize, c: &XtChain) -> String {
    match c.policy {
        Some(p) => format!(
            "Chain {} (policy {} {} packets, {} bytes)",
            c.name,
            p.name(),
            c.policy_counters.pcnt,
            c.policy_counters.bcnt
        ),
        None => format!("Chain {} ({} references)", c.name, references(t, ci)),
    }
}

/// `iptables -t TABLE -L -v -n -x` (ip6tables for an IPv6 table).
pub fn list_table(t: &XtTable) -> String {
    let mut out = String::new();
    for (n, ci) in chain_order(t).into_iter().enumerate() {
        let Some(c) = t.chains.get(ci) else { continue };
        if n > 0 {
            out.push('\n');
        }
        out += &chain_header(t, ci, c);
        out.push('\n');
        out += "    pkts      bytes target     prot opt in     out     source               destination         \n";
        for r in &c.rules {
            out += rule_line(r, t).trim_end();
            out.push('\n');
        }
    }
    out
}

/// Every table of the namespace, headed as the command that prints it.
pub fn list_all(nf: &Netfilter, ns: &str) -> String {
    let mut out = String::new();
    for t in &nf.tables {
        let tool = if t.family == NfProto::Ipv6 {
            "ip6tables"
        } else {
            "iptables"
        };
        let _ = writeln!(
            out,
            "\n# ip netns exec {ns} {tool} -t {} -L -v -n -x",
            t.name
        );
        out += &list_table(t);
    }
    out
}

/// The tables as JSON: family -> table -> chain -> {policy, packets,
/// bytes, references, rules: [{packets, bytes, target, text}]}.
pub fn to_json(nf: &Netfilter) -> serde_json::Value {
    let mut fam = serde_json::Map::new();
    for t in &nf.tables {
        let mut chains = serde_json::Map::new();
        for ci in chain_order(t) {
            let Some(c) = t.chains.get(ci) else { continue };
            let rules: Vec<serde_json::Value> = c
                .rules
                .iter()
                .map(|r| {
                    let (target, _) = target_text(&r.target, t);
                    serde_json::json!({
                        "packets": r.counters.pcnt,
                        "bytes": r.counters.bcnt,
                        "target": target,
                        "text": rule_line(r, t).get(18..).unwrap_or("").trim().to_string(),
                    })
                })
                .collect();
            chains.insert(
                c.name.clone(),
                serde_json::json!({
                    "policy": c.policy.map(|p| p.name()),
                    "packets": c.policy_counters.pcnt,
                    "bytes": c.policy_counters.bcnt,
                    "references": if c.policy.is_none() { Some(references(t, ci)) } else { None },
                    "rules": rules,
                }),
            );
        }
        let f = fam
            .entry(t.family.name().to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(o) = f.as_object_mut() {
            o.insert(t.name.clone(), serde_json::Value::Object(chains));
        }
    }
    serde_json::Value::Object(fam)
}
