//! `conntrack -L` and `conntrack -S` text for one namespace's table, in the
//! format of conntrack-tools (libnetfilter_conntrack's snprintf_default).

use std::fmt::Write;

use super::tuple::{NfConntrackTuple, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use super::{Conntrack, NfConn, ProtoState, IPS_ASSURED, IPS_SEEN_REPLY};

fn proto_name(p: u8) -> &'static str {
    match p {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        _ => "unknown",
    }
}

/// __snprintf_address and __snprintf_proto for one direction.
fn tuple_text(out: &mut String, t: &NfConntrackTuple) {
    let _ = write!(out, "src={} dst={} ", t.src, t.dst);
    match t.protonum {
        IPPROTO_TCP | IPPROTO_UDP => {
            let _ = write!(out, "sport={} dport={} ", t.src_u, t.dst_u);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let _ = write!(
                out,
                "type={} code={} id={} ",
                t.icmp_type(),
                t.icmp_code(),
                t.src_u
            );
        }
        _ => {}
    }
}

/// One entry as `conntrack -L` prints it (without the newline).
pub fn entry_text(c: &NfConn, now_ns: u64) -> String {
    let mut s = String::new();
    let p = c.protonum();
    let _ = write!(s, "{:<8} {} ", proto_name(p), p);
    let _ = write!(s, "{} ", c.expires(now_ns) / 1_000_000_000);
    if let ProtoState::Tcp(t) = &c.proto {
        let _ = write!(s, "{} ", t.state.name());
    }
    tuple_text(&mut s, &c.tuplehash[0]);
    if c.status & IPS_SEEN_REPLY == 0 {
        s.push_str("[UNREPLIED] ");
    }
    tuple_text(&mut s, &c.tuplehash[1]);
    if c.status & IPS_ASSURED != 0 {
        s.push_str("[ASSURED] ");
    }
    let _ = write!(s, "mark={} ", c.mark);
    if c.zone != 0 {
        let _ = write!(s, "zone={} ", c.zone);
    }
    s.push_str("use=1");
    s
}

impl Conntrack {
    /// `conntrack -L`: one line per live confirmed entry, by id (the
    /// kernel's order is its hash order). Expired entries are collected
    /// first, as the kernel's dump skips them.
    pub fn dump(&mut self, now_ns: u64) -> Vec<String> {
        self.gc(now_ns);
        self.confirmed()
            .map(|(_, c)| entry_text(c, now_ns))
            .collect()
    }

    /// `conntrack -S` for one CPU (skiff's table is one).
    pub fn stats_text(&self) -> String {
        let s = &self.stats;
        format!(
            "cpu=0   \tfound={} invalid={} insert={} insert_failed={} drop={} early_drop={} error={} search_restart={} clash_resolve={} chaintoolong={} ",
            s.found, s.invalid, s.insert, s.insert_failed, s.drop, s.early_drop, s.error,
            s.search_restart, s.clash_resolve, s.chaintoolong
        )
    }

    /// The `conntrack` value of `skiff run --json`: the entries' text, the
    /// count and the counters.
    pub fn to_json(&mut self, now_ns: u64) -> serde_json::Value {
        let entries = self.dump(now_ns);
        serde_json::json!({
            "entries": entries,
            "count": self.count(),
            "max": self.max,
            "stats": self.stats,
        })
    }
}
