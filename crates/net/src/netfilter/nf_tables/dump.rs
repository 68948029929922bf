//! `nft list ruleset` of a namespace's nf_tables tables (the rules as
//! written, each `counter` with its packets and bytes), and the JSON form.

use std::fmt::Write;

use super::{NfTables, NftChain, NftRule, NftSet, NftTable, RuleText};

/// A rule's text with its counters filled in (`counter packets N bytes M`).
pub fn rule_text(r: &NftRule) -> String {
    let mut counters = r.counters();
    let parts: Vec<String> = r
        .text
        .iter()
        .map(|t| match t {
            RuleText::Text(s) => s.clone(),
            RuleText::Counter => {
                let c = counters.next().unwrap_or_default();
                format!("counter packets {} bytes {}", c.pcnt, c.bcnt)
            }
        })
        .collect();
    parts.join(" ")
}

fn set_text(s: &NftSet, out: &mut String) {
    let kind = if s.data.is_empty() { "set" } else { "map" };
    let _ = writeln!(out, "\t{kind} {} {{", s.name);
    for d in &s.decl {
        let _ = writeln!(out, "\t\t{d}");
    }
    if !s.elems.is_empty() {
        let elems: Vec<&str> = s.elems.iter().map(|e| e.text.as_str()).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
    }
    out.push_str("\t}\n");
}

fn chain_text(c: &NftChain, out: &mut String) {
    let _ = writeln!(out, "\tchain {} {{", c.name);
    if let Some(b) = &c.base {
        let _ = writeln!(
            out,
            "\t\ttype {} hook {} priority {}; policy {};",
            b.ty.name(),
            b.hook.nft_name(),
            b.prio_text,
            b.policy.name().to_ascii_lowercase()
        );
    }
    for r in &c.rules {
        let _ = writeln!(out, "\t\t{}", rule_text(r));
    }
    out.push_str("\t}\n");
}

/// `nft list table FAMILY NAME`.
pub fn list_table(t: &NftTable) -> String {
    let mut out = format!("table {} {} {{\n", t.family.name(), t.name);
    let mut blocks = Vec::new();
    for s in t.sets.iter().filter(|s| !s.anonymous) {
        let mut b = String::new();
        set_text(s, &mut b);
        blocks.push(b);
    }
    for c in &t.chains {
        let mut b = String::new();
        chain_text(c, &mut b);
        blocks.push(b);
    }
    out += &blocks.join("\n");
    out.push_str("}\n");
    out
}

/// `nft list ruleset`: every table.
pub fn list_ruleset(nft: &NfTables) -> String {
    nft.tables.iter().map(list_table).collect()
}

/// The tables as JSON: `[{family, name, chains: [{name, type, hook,
/// priority, policy, rules: [{text, counters: [{packets, bytes}]}]}],
/// sets: [{name, elements}]}]`.
pub fn to_json(nft: &NfTables) -> serde_json::Value {
    let tables: Vec<serde_json::Value> = nft
        .tables
        .iter()
        .map(|t| {
            let chains: Vec<serde_json::Value> = t
                .chains
                .iter()
                .map(|c| {
                    let rules: Vec<serde_json::Value> = c
                        .rules
                        .iter()
                        .map(|r| {
                            let counters: Vec<serde_json::Value> = r
                                .counters()
                                .map(|x| serde_json::json!({"packets": x.pcnt, "bytes": x.bcnt}))
                                .collect();
                            serde_json::json!({"handle": r.handle, "text": rule_text(r), "counters": counters})
                        })
                        .collect();
                    let b = c.base.as_ref();
                    serde_json::json!({
                        "name": c.name,
                        "type": b.map(|b| b.ty.name()),
                        "hook": b.map(|b| b.hook.nft_name()),
                        "priority": b.map(|b| b.priority),
                        "policy": b.map(|b| b.policy.name().to_ascii_lowercase()),
                        "rules": rules,
                    })
                })
                .collect();
            let sets: Vec<serde_json::Value> = t
                .sets
                .iter()
                .filter(|s| !s.anonymous)
                .map(|s| serde_json::json!({"name": s.name, "elements": s.elems.len()}))
                .collect();
            serde_json::json!({"family": t.family.name(), "name": t.name, "chains": chains, "sets": sets})
        })
        .collect();
    serde_json::Value::Array(tables)
}
