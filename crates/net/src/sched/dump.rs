//! What `tc -s qdisc|class show` prints, as text and as `tc -s -j` JSON:
//! each qdisc gives its options and xstats through `Dump` (one call per
//! field gives both forms), formatted as iproute2's tc/tc_util.c does
//! (print_rate, sprint_size, print_time).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{QdiscStats, TC_H_INGRESS, TC_H_ROOT};

/// A qdisc's or class's options and extended statistics, as JSON fields
/// and as tc's text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dump {
    pub options: Map<String, Value>,
    pub options_text: Vec<String>,
    pub xstats: Map<String, Value>,
    pub xstats_text: Vec<String>,
}

impl Dump {
    /// An option: JSON `key: json`, text `text` ("rate 1Mbit").
    pub fn opt(&mut self, key: &str, json: impl Into<Value>, text: impl Into<String>) -> &mut Self {
        self.options.insert(key.to_string(), json.into());
        let t = text.into();
        if !t.is_empty() {
            self.options_text.push(t);
        }
        self
    }

    /// An xstat: JSON `key: json`, text `text`.
    pub fn xstat(
        &mut self,
        key: &str,
        json: impl Into<Value>,
        text: impl Into<String>,
    ) -> &mut Self {
        self.xstats.insert(key.to_string(), json.into());
        let t = text.into();
        if !t.is_empty() {
            self.xstats_text.push(t);
        }
        self
    }
}

/// A handle as tc prints it: "1:", "1:10", "ffff:fff1", "0:".
pub fn handle_str(h: u32) -> String {
    let (maj, min) = (h >> 16, h & 0xffff);
    if min == 0 {
        format!("{maj:x}:")
    } else if maj == 0 {
        format!(":{min:x}")
    } else {
        format!("{maj:x}:{min:x}")
    }
}

/// tc_util.c: print_rate (bytes/s in, SI bit units out: "500Kbit").
pub fn rate_str(bytes_ps: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut rate = bytes_ps.saturating_mul(8);
    let mut i = 0;
    while i < UNITS.len() - 1 {
        if rate < 1000 || (!rate.is_multiple_of(1000) && rate < 1000 * 1000) {
            break;
        }
        rate /= 1000;
        i += 1;
    }
    format!("{rate}{}bit", UNITS[i])
}

/// tc_util.c: sprint_size ("1600b", "4Kb", "32Mb").
pub fn size_str(sz: u64) -> String {
    let t = sz as f64;
    let mb = (t / (1024.0 * 1024.0)).round_ties_even();
    let kb = (t / 1024.0).round_ties_even();
    if sz >= 1024 * 1024 && (1024.0 * 1024.0 * mb - t).abs() < 1024.0 {
        format!("{}Mb", g_fmt(mb))
    } else if sz >= 1024 && (1024.0 * kb - t).abs() < 16.0 {
        format!("{}Kb", g_fmt(kb))
    } else {
        format!("{sz}b")
    }
}

/// tc_util.c: print_time64 for ns ("5ms", "100ms", "400us").
pub fn time_ns_str(ns: u64) -> String {
    let t = ns as f64;
    if ns >= 1_000_000_000 {
        format!("{}s", g3(t / 1e9))
    } else if ns >= 1_000_000 {
        format!("{}ms", g3(t / 1e6))
    } else if ns >= 1_000 {
        format!("{}us", g3(t / 1e3))
    } else {
        format!("{ns}ns")
    }
}

/// tc_util.c: print_time for microseconds ("400ms", "5.6ms").
pub fn time_us_str(us: u64) -> String {
    let t = us as f64;
    if us >= 1_000_000 {
        format!("{}s", g3(t / 1e6))
    } else if us >= 1_000 {
        format!("{}ms", g3(t / 1e3))
    } else {
        format!("{us}us")
    }
}

/// printf("%g") for the whole numbers sprint_size prints.
fn g_fmt(v: f64) -> String {
    format!("{v}")
}

/// printf("%.3g") for the values tc's time printers give (no exponent form
/// is reached: values are below 1000 there).
fn g3(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One qdisc as `tc -s -j qdisc show` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QdiscShow {
    pub kind: String,
    pub handle: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub options: Map<String, Value>,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    pub backlog: u64,
    pub qlen: u64,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub xstats: Map<String, Value>,
    #[serde(skip)]
    pub text: Dump,
}

/// One class as `tc -s class show` reports it, in the qdisc JSON's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassShow {
    pub class: String,
    pub handle: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf: Option<String>,
    pub options: Map<String, Value>,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    pub backlog: u64,
    pub qlen: u64,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub xstats: Map<String, Value>,
    #[serde(skip)]
    pub text: Dump,
}

/// A device's qdiscs and classes (`tc -s qdisc show dev X`, `tc -s class show dev X`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TcShow {
    pub qdisc: Vec<QdiscShow>,
    pub class: Vec<ClassShow>,
}

impl QdiscShow {
    pub(crate) fn new(kind: &str, handle: u32, parent: u32, s: QdiscStats, d: Dump) -> Self {
        QdiscShow {
            kind: kind.to_string(),
            handle: handle_str(handle),
            root: parent == TC_H_ROOT,
            parent: parent_str(parent),
            options: d.options.clone(),
            bytes: s.bytes,
            packets: s.packets,
            drops: s.drops,
            overlimits: s.overlimits,
            requeues: s.requeues,
            backlog: s.backlog,
            qlen: s.qlen,
            xstats: d.xstats.clone(),
            text: d,
        }
    }

    /// `tc -s qdisc show dev DEV` text for this qdisc.
    pub fn to_text(&self, dev: &str) -> String {
        let at = match &self.parent {
            Some(p) => format!("parent {p}"),
            None => "root".to_string(),
        };
        let mut s = format!("qdisc {} {} dev {dev} {at} ", self.kind, self.handle);
        if self.kind == "ingress" || self.kind == "clsact" {
            s.push_str("---------------- ");
        }
        s.push_str(&self.text.options_text.join(" "));
        s.push('\n');
        s.push_str(&stats_text(
            self.bytes,
            self.packets,
            self.drops,
            self.overlimits,
            self.requeues,
            self.backlog,
            self.qlen,
        ));
        for x in &self.text.xstats_text {
            s.push_str(&format!("  {x}\n"));
        }
        s
    }
}

impl ClassShow {
    /// `parent` is tcm_parent: TC_H_ROOT prints "root".
    pub(crate) fn new(kind: &str, classid: u32, parent: u32, s: QdiscStats, d: Dump) -> Self {
        ClassShow {
            class: kind.to_string(),
            handle: handle_str(classid),
            root: parent == TC_H_ROOT,
            parent: (parent != TC_H_ROOT).then(|| handle_str(parent)),
            leaf: None,
            options: d.options.clone(),
            bytes: s.bytes,
            packets: s.packets,
            drops: s.drops,
            overlimits: s.overlimits,
            requeues: s.requeues,
            backlog: s.backlog,
            qlen: s.qlen,
            xstats: d.xstats.clone(),
            text: d,
        }
    }

    /// `tc -s class show dev DEV` text for this class.
    pub fn to_text(&self) -> String {
        let mut s = format!("class {} {} ", self.class, self.handle);
        match &self.parent {
            Some(p) => s.push_str(&format!("parent {p} ")),
            None => s.push_str("root "),
        }
        if let Some(l) = &self.leaf {
            s.push_str(&format!("leaf {l} "));
        }
        s.push_str(&self.text.options_text.join(" "));
        s.push('\n');
        s.push_str(&stats_text(
            self.bytes,
            self.packets,
            self.drops,
            self.overlimits,
            self.requeues,
            self.backlog,
            self.qlen,
        ));
        for x in &self.text.xstats_text {
            s.push_str(&format!(" {x}\n"));
        }
        s.push('\n');
        s
    }
}

fn parent_str(parent: u32) -> Option<String> {
    match parent {
        TC_H_ROOT => None,
        TC_H_INGRESS => Some("ffff:fff1".into()),
        p => Some(handle_str(p)),
    }
}

/// tc_util.c: print_tcstats_attr's two lines.
fn stats_text(bytes: u64, pkts: u64, drops: u64, over: u64, req: u64, bl: u64, ql: u64) -> String {
    format!(
        " Sent {bytes} bytes {pkts} pkt (dropped {drops}, overlimits {over} requeues {req}) \n backlog {}b {ql}p requeues {req}\n",
        bl
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_tc_prints() {
        assert_eq!(rate_str(125_000), "1Mbit");
        assert_eq!(rate_str(62_500), "500Kbit");
        assert_eq!(rate_str(1_250), "10Kbit");
        assert_eq!(rate_str(12), "96bit");
        assert_eq!(size_str(1600), "1600b");
        assert_eq!(size_str(4096), "4Kb");
        assert_eq!(size_str(10240), "10Kb");
        assert_eq!(size_str(1_514_000), "1514000b");
        assert_eq!(size_str(32 << 20), "32Mb");
        assert_eq!(time_us_str(400_000), "400ms");
        assert_eq!(time_us_str(5_600), "5.6ms");
        assert_eq!(time_ns_str(5_000_000), "5ms");
        assert_eq!(time_ns_str(100_000_000), "100ms");
        assert_eq!(handle_str(0x10000), "1:");
        assert_eq!(handle_str(0x10010), "1:10");
        assert_eq!(handle_str(0xffff_fff1), "ffff:fff1");
        assert_eq!(handle_str(0), "0:");
    }
}
