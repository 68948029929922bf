//! A topology case's netfilter expectations (docs/fixtures.md): rule and
//! policy counters (`[[case.expect.rule]]`, as `iptables -L -v -x` counts
//! them) and conntrack entries (`[case.expect.conntrack]`, as `conntrack -L`
//! prints them); read from the file, observed after the run, compared.

use skiff_net::datapath::{Datapath, NsId};
use skiff_net::netfilter::NfProto;
use toml_edit::Item;

use super::fixture::{int_field, str_field, tables, At};

/// `[[case.expect.rule]]`: one rule's (or a built-in chain's policy's)
/// counters in a namespace's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleExpect {
    pub netns: String,
    pub family: NfProto,
    pub table: String,
    pub chain: String,
    /// From 1, as `iptables -L --line-numbers`; None: the chain's policy.
    pub rule: Option<usize>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

impl RuleExpect {
    fn what(&self) -> String {
        let tool = match self.family {
            NfProto::Ipv6 => "ip6tables",
            _ => "iptables",
        };
        let rule = match self.rule {
            Some(n) => format!("rule {n}"),
            None => "policy".into(),
        };
        format!(
            "{}: {tool} -t {} chain {} {rule}",
            self.netns, self.table, self.chain
        )
    }
}

/// `[case.expect.conntrack]`: per namespace, every entry of its table in
/// `conntrack -L` order, each given by words the entry's line has in that
/// order (so a timeout can be left out).
pub type ConntrackExpect = Vec<(String, Vec<String>)>;

fn u64_field(item: &Item, key: &str, at: &At) -> Result<Option<u64>, String> {
    int_field(item, key, at)?
        .map(|v| u64::try_from(v).map_err(|_| at.sub(key).err("want a count (0 or more)")))
        .transpose()
}

/// Reads `rule` entries.
pub(crate) fn read_rules(e: &Item, at: &At) -> Result<Vec<RuleExpect>, String> {
    let mut out = Vec::new();
    for (j, r) in tables(e.get("rule"), &at.sub("rule"))?.iter().enumerate() {
        let ra = at.sub(&format!("rule[{j}]"));
        let family = match str_field(r, "family", &ra)?.unwrap_or("ipv4") {
            "ipv4" => NfProto::Ipv4,
            "ipv6" => NfProto::Ipv6,
            f => return Err(ra.sub("family").err(format!("{f:?}: want ipv4 or ipv6"))),
        };
        let need = |k: &str| {
            str_field(r, k, &ra)?
                .map(String::from)
                .ok_or_else(|| ra.sub(k).err("missing"))
        };
        let rule = match int_field(r, "rule", &ra)? {
            None => None,
            Some(n) if n >= 1 => Some(n as usize),
            Some(_) => return Err(ra.sub("rule").err("rules count from 1")),
        };
        let x = RuleExpect {
            netns: str_field(r, "netns", &ra)?.unwrap_or("host").to_string(),
            family,
            table: need("table")?,
            chain: need("chain")?,
            rule,
            packets: u64_field(r, "packets", &ra)?,
            bytes: u64_field(r, "bytes", &ra)?,
        };
        if x.packets.is_none() && x.bytes.is_none() {
            return Err(ra.err("want packets and/or bytes"));
        }
        out.push(x);
    }
    Ok(out)
}

/// Reads `conntrack = { NETNS = ["ENTRY WORDS", …] }`.
pub(crate) fn read_conntrack(e: &Item, at: &At) -> Result<Option<ConntrackExpect>, String> {
    let Some(c) = e.get("conntrack") else {
        return Ok(None);
    };
    let ca = at.sub("conntrack");
    let t = c
        .as_table_like()
        .ok_or_else(|| ca.err("want a table NETNS = [\"ENTRY\", …]"))?;
    let mut out = Vec::new();
    for (ns, v) in t.iter() {
        let na = ca.sub(ns);
        let list = v
            .as_array()
            .ok_or_else(|| na.err("want an array of entries"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(String::from)
                    .ok_or_else(|| na.err("want strings"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((ns.to_string(), list));
    }
    Ok(Some(out))
}

fn ns_of(dp: &Datapath, name: &str) -> Option<NsId> {
    (0..)
        .map(NsId)
        .map_while(|ns| dp.netns_name(ns).map(|n| (ns, n == name)))
        .find(|(_, same)| *same)
        .map(|(ns, _)| ns)
}

/// The counters each `rule` names (Err: what is missing).
pub fn observe_rules(dp: &mut Datapath, want: &[RuleExpect]) -> Vec<Result<(u64, u64), String>> {
    want.iter()
        .map(|w| {
            let ns = ns_of(dp, &w.netns).ok_or_else(|| format!("no netns {}", w.netns))?;
            let st = dp.stack_mut(ns).map_err(|e| e.to_string())?;
            let t = st
                .netfilter()
                .find_table(w.family, &w.table)
                .ok_or_else(|| "no such table".to_string())?;
            let ch = t
                .chain_index(&w.chain)
                .and_then(|i| t.chains.get(i))
                .ok_or_else(|| "no such chain".to_string())?;
            let c = match w.rule {
                None if ch.policy.is_none() => return Err("a user chain has no policy".into()),
                None => ch.policy_counters,
                Some(n) => {
                    ch.rules
                        .get(n - 1)
                        .ok_or_else(|| format!("the chain has {} rules", ch.rules.len()))?
                        .counters
                }
            };
            Ok((c.pcnt, c.bcnt))
        })
        .collect()
}

/// Each expected namespace's `conntrack -L` lines.
pub fn observe_conntrack(dp: &mut Datapath, want: &ConntrackExpect) -> ConntrackExpect {
    want.iter()
        .map(|(name, _)| {
            let lines = ns_of(dp, name)
                .and_then(|ns| dp.stack_mut(ns).ok())
                .map(|mut st| {
                    let ct = &mut st.netfilter_mut().conntrack;
                    let now = ct.now_ns;
                    ct.dump(now)
                })
                .unwrap_or_default();
            (name.clone(), lines)
        })
        .collect()
}

/// The rule counters' differences.
pub fn compare_rules(want: &[RuleExpect], got: &[Result<(u64, u64), String>], d: &mut Vec<String>) {
    for (w, g) in want.iter().zip(got) {
        match g {
            Err(e) => d.push(format!("{}: {e}", w.what())),
            Ok((p, b)) => {
                if w.packets.is_some_and(|x| x != *p) || w.bytes.is_some_and(|x| x != *b) {
                    let want = |x: Option<u64>| x.map_or("-".into(), |v| v.to_string());
                    d.push(format!(
                        "{}: expected {} packets {} bytes, got {p} packets {b} bytes",
                        w.what(),
                        want(w.packets),
                        want(w.bytes)
                    ));
                }
            }
        }
    }
}

/// Whether the words of `want` appear in `line` in that order.
fn entry_matches(want: &str, line: &str) -> bool {
    let mut words = line.split_whitespace();
    want.split_whitespace().all(|w| words.any(|l| l == w))
}

/// The conntrack tables' differences: the count, then each entry.
pub fn compare_conntrack(want: &ConntrackExpect, got: &ConntrackExpect, d: &mut Vec<String>) {
    for ((ns, w), (_, g)) in want.iter().zip(got) {
        if w.len() != g.len() {
            d.push(format!(
                "conntrack -L ({ns}): expected {} entries, got {}: {g:?}",
                w.len(),
                g.len()
            ));
            continue;
        }
        for (i, (we, ge)) in w.iter().zip(g).enumerate() {
            if !entry_matches(we, ge) {
                d.push(format!(
                    "conntrack -L ({ns}) entry {i}: expected {we:?}, got {ge:?}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::entry_matches;

    #[test]
    fn entry_words_in_order() {
        let line = "udp      17 29 src=203.0.113.5 dst=10.96.0.10 sport=5000 dport=53 [UNREPLIED] src=10.0.1.12 dst=192.168.1.10 sport=5353 dport=5000 mark=0 use=1";
        assert!(entry_matches(
            "udp src=203.0.113.5 dport=53 [UNREPLIED] src=10.0.1.12",
            line
        ));
        assert!(!entry_matches("src=10.0.1.12 src=203.0.113.5", line));
        assert!(!entry_matches("tcp", line));
    }
}
