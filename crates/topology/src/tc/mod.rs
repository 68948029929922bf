//! tc command lines as a namespace's `tc = [...]` key gives them, parsed as
//! iproute2's tc parses them (tc/tc.c dispatch, tc_util.c units, handles)
//! and run in order on the datapath as `ip netns exec NAME tc ...` would:
//! `qdisc` and `class` here (qdisc.rs, class.rs: q_*.c option parsers),
//! `filter` and `action` in filter.rs and action.rs.
//!
//! Errors name the word and what tc would have said; the topology names
//! the file, line and the `tc[i]` entry.

mod action;
mod action_kinds;
mod class;
mod filter;
mod flower;
mod netem;
mod qdisc;
mod u32;

use skiff_net::datapath::{Datapath, DevId, NsId};

pub use action::ActionLine;
pub use class::ClassLine;
pub use filter::FilterLine;
pub use qdisc::QdiscLine;

/// One tc line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcCommand {
    Qdisc(QdiscLine),
    Class(ClassLine),
    Filter(FilterLine),
    Action(ActionLine),
}

/// What is wrong with a tc line: the word (its index in the line) and
/// what tc would say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct TcError {
    /// Index of the word in the line (None: the line as a whole).
    pub word: Option<usize>,
    pub msg: String,
}

impl TcError {
    pub fn at(word: usize, msg: impl Into<String>) -> TcError {
        TcError {
            word: Some(word),
            msg: msg.into(),
        }
    }

    pub fn line(msg: impl Into<String>) -> TcError {
        TcError {
            word: None,
            msg: msg.into(),
        }
    }
}

/// A line's words with their byte offsets in it.
#[derive(Clone, Debug)]
pub struct Words<'a> {
    pub words: Vec<(usize, &'a str)>,
    /// The next word to read.
    pub pos: usize,
}

impl<'a> Words<'a> {
    /// The next word, moving on. (Not an Iterator: its `last` would shadow
    /// the index-returning `last` below for `&mut Words`.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos).map(|w| w.1);
        if w.is_some() {
            self.pos += 1;
        }
        w
    }

    /// Whitespace-separated words; a backslash before a line break joins
    /// lines as the shell does.
    pub fn new(line: &'a str) -> Words<'a> {
        let mut words = Vec::new();
        let mut start = None;
        for (i, c) in line.char_indices() {
            let sep = c.is_whitespace() || c == '\\';
            match (sep, start) {
                (true, Some(s)) => {
                    words.push((s, &line[s..i]));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            words.push((s, &line[s..]));
        }
        Words { words, pos: 0 }
    }

    pub fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).map(|w| w.1)
    }

    /// Index of the word last read.
    pub fn last(&self) -> usize {
        self.pos.saturating_sub(1)
    }

    /// The value after a keyword (NEXT_ARG): tc's "Command line is not
    /// complete" when missing.
    pub fn value(&mut self, key: &str) -> Result<&'a str, TcError> {
        self.next().ok_or_else(|| {
            TcError::at(
                self.last(),
                format!(
                    "Command line is not complete. Try option \"help\" (\"{key}\" needs a value)"
                ),
            )
        })
    }

    /// The rest of the words from the current one.
    pub fn rest(&self) -> Vec<&'a str> {
        self.words.iter().skip(self.pos).map(|w| w.1).collect()
    }
}

/// iproute2's matches(): `w` is a prefix of `keyword`.
pub fn matches(w: &str, keyword: &str) -> bool {
    !w.is_empty() && keyword.starts_with(w)
}

/// Parses one tc line (without the leading `tc`, which is allowed).
pub fn parse_line(line: &str) -> Result<TcCommand, TcError> {
    let mut w = Words::new(line);
    if w.peek() == Some("tc") {
        w.next();
    }
    let Some(obj) = w.next() else {
        return Err(TcError::line("empty tc line"));
    };
    // tc/tc.c: do_cmd — qdisc, class, filter, action (and their prefixes).
    if matches(obj, "qdisc") {
        qdisc::parse(&mut w).map(TcCommand::Qdisc)
    } else if matches(obj, "class") {
        class::parse(&mut w).map(TcCommand::Class)
    } else if matches(obj, "filter") || obj == "chain" {
        filter::parse(&mut w).map(TcCommand::Filter)
    } else if matches(obj, "actions") {
        action::parse(&mut w).map(TcCommand::Action)
    } else {
        Err(TcError::at(
            w.last(),
            format!("Object \"{obj}\" is unknown, try \"tc help\"."),
        ))
    }
}

/// Object paths in a line (`bpf obj FILE`) made relative to the topology
/// file's directory, as tc resolves them against its working directory.
pub fn resolve_paths(cmd: &mut TcCommand, base: &std::path::Path) {
    match cmd {
        TcCommand::Filter(f) => filter::resolve_paths(f, base),
        TcCommand::Action(a) => action::resolve_paths(&mut a.actions, base),
        _ => {}
    }
}

/// The device a line names (`dev X`), for validation.
pub fn line_dev(cmd: &TcCommand) -> Option<&str> {
    match cmd {
        TcCommand::Qdisc(q) => Some(&q.dev),
        TcCommand::Class(c) => Some(&c.dev),
        TcCommand::Filter(f) => filter::dev(f),
        TcCommand::Action(_) => None,
    }
}

/// Where a line runs: its namespace and a device lookup in it.
pub struct TcTarget<'a> {
    pub ns: NsId,
    pub dp: &'a mut Datapath,
}

impl TcTarget<'_> {
    pub fn dev(&self, name: &str) -> Result<DevId, TcError> {
        self.dp
            .device(self.ns, name)
            .ok_or_else(|| TcError::line(format!("Cannot find device \"{name}\"")))
    }
}

/// Runs a parsed line on the datapath.
pub fn apply(t: &mut TcTarget, cmd: &TcCommand) -> Result<(), TcError> {
    match cmd {
        TcCommand::Qdisc(q) => qdisc::apply(t, q),
        TcCommand::Class(c) => class::apply(t, c),
        TcCommand::Filter(f) => filter::apply(t, f),
        TcCommand::Action(a) => action::apply(t, a),
    }
}

/// A datapath refusal as tc prints the kernel's answer ("Error: ...").
pub(crate) fn kernel_error(e: skiff_net::datapath::DatapathError) -> TcError {
    TcError::line(format!("RTNETLINK answers: {e}"))
}

// ---- units (tc/tc_util.c, lib/utils.c) ---------------------------------------

/// A number with a unit suffix split off ("1.5mbit" -> (1.5, "mbit")).
fn number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(end);
    let v: f64 = n.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v, unit))
}

/// tc_util.c: get_rate64 — a rate in bytes/s ("1mbit", "100kbps",
/// "1gibit", a bare number is bits/s). Percent is not supported here.
pub fn get_rate(s: &str) -> Option<u64> {
    let (v, unit) = number(s)?;
    let unit = unit.to_ascii_lowercase();
    let (scale, bits) = match unit.as_str() {
        "" | "bit" => (1.0, true),
        "kbit" => (1e3, true),
        "mbit" => (1e6, true),
        "gbit" => (1e9, true),
        "tbit" => (1e12, true),
        "kibit" => (1024.0, true),
        "mibit" => (1024.0 * 1024.0, true),
        "gibit" => (1024.0 * 1024.0 * 1024.0, true),
        "tibit" => (1024f64.powi(4), true),
        "bps" => (1.0, false),
        "kbps" => (1e3, false),
        "mbps" => (1e6, false),
        "gbps" => (1e9, false),
        "tbps" => (1e12, false),
        "kibps" => (1024.0, false),
        "mibps" => (1024.0 * 1024.0, false),
        "gibps" => (1024f64.powi(3), false),
        "tibps" => (1024f64.powi(4), false),
        _ => return None,
    };
    let bps = if bits { v * scale / 8.0 } else { v * scale };
    (bps < u64::MAX as f64).then_some(bps as u64)
}

/// tc_util.c: get_size — bytes ("1600", "10k", "10kb", "1m", "32kbit").
pub fn get_size(s: &str) -> Option<u64> {
    let (v, unit) = number(s)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "kbit" => 1024.0 / 8.0,
        "mbit" => 1024.0 * 1024.0 / 8.0,
        "gbit" => 1024.0 * 1024.0 * 1024.0 / 8.0,
        _ => return None,
    };
    let b = v * scale;
    (b <= u32::MAX as f64).then_some(b as u64)
}

/// tc_util.c: get_time — microseconds ("400ms", "5ms", "100us", "1s";
/// a bare number is microseconds).
pub fn get_time_us(s: &str) -> Option<u64> {
    let (v, unit) = number(s)?;
    let scale = match unit {
        "s" | "sec" | "secs" => 1e6,
        "ms" | "msec" | "msecs" => 1e3,
        "" | "us" | "usec" | "usecs" => 1.0,
        _ => return None,
    };
    let t = v * scale;
    (t <= u32::MAX as f64).then_some(t as u64)
}

/// tc_util.c: get_time64 — nanoseconds (also "ns"/"nsec").
pub fn get_time_ns(s: &str) -> Option<u64> {
    let (v, unit) = number(s)?;
    let scale = match unit {
        "s" | "sec" | "secs" => 1e9,
        "ms" | "msec" | "msecs" => 1e6,
        "" | "us" | "usec" | "usecs" => 1e3,
        "ns" | "nsec" | "nsecs" => 1.0,
        _ => return None,
    };
    let t = v * scale;
    (t < u64::MAX as f64).then_some(t as u64)
}

/// lib/utils.c: get_u32 with base 0 (decimal, 0x hex, 0 octal).
pub fn get_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// tc_util.c: get_qdisc_handle — "1:" or "1" (hex major), minor must be
/// absent.
pub fn get_qdisc_handle(s: &str) -> Option<u32> {
    if s == "none" {
        return Some(0);
    }
    let maj = s.strip_suffix(':').unwrap_or(s);
    if maj.is_empty() || maj.contains(':') {
        return None;
    }
    let m = u32::from_str_radix(maj, 16).ok()?;
    (m <= 0xffff).then_some(m << 16)
}

/// tc_util.c: get_tc_classid — "1:10", ":10", "1:", "root", "none" (hex).
pub fn get_tc_classid(s: &str) -> Option<u32> {
    match s {
        "root" => return Some(skiff_net::sched::TC_H_ROOT),
        "none" => return Some(0),
        _ => {}
    }
    let Some((maj, min)) = s.split_once(':') else {
        // No colon: the number as it is (hex), as get_tc_classid reads it.
        return u32::from_str_radix(s, 16).ok();
    };
    let maj = if maj.is_empty() {
        0
    } else {
        u32::from_str_radix(maj, 16).ok()?
    };
    let min = if min.is_empty() {
        0
    } else {
        u32::from_str_radix(min, 16).ok()?
    };
    (maj <= 0xffff && min <= 0xffff).then_some((maj << 16) | min)
}

#[cfg(test)]
mod cls_tests;
#[cfg(test)]
mod tests;
