//! tc/q_netem.c: netem's options — limit, delay TIME [JITTER [CORR]],
//! distribution NAME (read from tc's lib directory as tc reads it), loss
//! [random] P [CORR], duplicate, corrupt, reorder P [CORR], gap N, rate
//! RATE [OVERHEAD [CELLSIZE [CELLOVERHEAD]]], seed N. Probabilities are
//! scaled to u32 as tc's get_percent does.

use skiff_net::sched::netem::NetemOptions;
use skiff_net::sched::QdiscOptions;

use super::{get_rate, get_time_ns, get_u32, matches, TcError, Words};

/// Where tc looks for distribution tables (TC_LIB_DIR, then the usual).
const TC_LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/tc",
    "/usr/lib/tc",
    "/usr/lib64/tc",
];

/// q_netem.c: get_percent — "10%" or "10" to a fraction of u32::MAX.
pub fn get_percent(s: &str) -> Option<u32> {
    let n = s.strip_suffix('%').unwrap_or(s);
    let v: f64 = n.parse().ok()?;
    if !(0.0..=100.0).contains(&v) {
        return None;
    }
    Some((v / 100.0 * u32::MAX as f64).round_ties_even() as u32)
}

/// The next word when it starts with a digit (NEXT_IS_NUMBER).
fn next_number<'a>(w: &mut Words<'a>) -> Option<&'a str> {
    let n = w.peek()?;
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        w.next()
    } else {
        None
    }
}

/// tc/tc_util.c: get_distribution — the table file's numbers.
fn distribution(name: &str) -> Result<Vec<i16>, String> {
    let dirs: Vec<String> = std::env::var("TC_LIB_DIR")
        .into_iter()
        .chain(TC_LIB_DIRS.iter().map(|s| s.to_string()))
        .collect();
    for d in &dirs {
        let Ok(text) = std::fs::read_to_string(format!("{d}/{name}.dist")) else {
            continue;
        };
        let mut t = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for v in line.split_whitespace() {
                t.push(
                    v.parse::<i16>()
                        .map_err(|_| format!("bad value {v:?} in {d}/{name}.dist"))?,
                );
            }
        }
        return Ok(t);
    }
    Err(format!(
        "No distribution data for {name} (no {name}.dist in {})",
        dirs.join(", ")
    ))
}

pub fn parse(w: &mut Words) -> Result<QdiscOptions, TcError> {
    let mut o = NetemOptions {
        limit: 1000,
        ..Default::default()
    };
    let bad = |w: &Words, k: &str| TcError::at(w.last(), format!("Illegal \"{k}\""));
    let pct = |w: &mut Words, k: &str| -> Result<u32, TcError> {
        let v = w.value(k)?;
        get_percent(v).ok_or_else(|| TcError::at(w.last(), format!("Illegal \"{k}\"")))
    };
    let corr = |w: &mut Words, k: &str| -> Result<u32, TcError> {
        match next_number(w) {
            Some(v) => get_percent(v)
                .ok_or_else(|| TcError::at(w.last(), format!("Illegal \"{k}\" correlation"))),
            None => Ok(0),
        }
    };
    let mut dist_name = None;
    while let Some(a) = w.next() {
        if matches(a, "limit") {
            let v = w.value(a)?;
            o.limit = get_u32(v).ok_or_else(|| bad(w, "limit"))?;
        } else if matches(a, "latency") || matches(a, "delay") {
            let v = w.value(a)?;
            o.latency_ns = get_time_ns(v).ok_or_else(|| bad(w, "latency"))?;
            if let Some(j) = next_number(w) {
                o.jitter_ns = get_time_ns(j).ok_or_else(|| bad(w, "jitter"))?;
                o.delay_corr = corr(w, "latency")?;
            }
        } else if matches(a, "loss") || matches(a, "drop") {
            if w.peek() == Some("random") {
                w.next();
            } else if matches!(w.peek(), Some("state" | "gemodel")) {
                return Err(TcError::at(
                    w.pos,
                    "not supported: netem loss state/gemodel",
                ));
            }
            o.loss = pct(w, "loss")?;
            o.loss_corr = corr(w, "loss")?;
        } else if matches(a, "reorder") {
            o.reorder = pct(w, "reorder")?;
            o.reorder_corr = corr(w, "reorder")?;
        } else if matches(a, "corrupt") {
            o.corrupt = pct(w, "corrupt")?;
            o.corrupt_corr = corr(w, "corrupt")?;
        } else if matches(a, "gap") {
            let v = w.value(a)?;
            o.gap = get_u32(v).ok_or_else(|| bad(w, "gap"))?;
        } else if matches(a, "duplicate") {
            o.duplicate = pct(w, "duplicate")?;
            o.dup_corr = corr(w, "duplicate")?;
        } else if matches(a, "distribution") {
            let v = w.value(a)?;
            let t = distribution(v).map_err(|e| TcError::at(w.last(), e))?;
            dist_name = Some(w.last());
            o.dist = Some((v.to_string(), t));
        } else if a == "rate" {
            let v = w.value(a)?;
            o.rate = get_rate(v).ok_or_else(|| bad(w, "rate"))?;
            let num = |w: &mut Words| next_number(w).and_then(|v| v.parse::<i32>().ok());
            if let Some(x) = num(w) {
                o.packet_overhead = x;
                if let Some(c) = num(w) {
                    o.cell_size = c.max(0) as u32;
                    if let Some(co) = num(w) {
                        o.cell_overhead = co;
                    }
                }
            }
        } else if a == "seed" {
            let v = w.value(a)?;
            o.seed = Some(v.parse().map_err(|_| bad(w, "seed"))?);
        } else if matches(a, "ecn") || matches(a, "slot") {
            return Err(TcError::at(w.last(), format!("not supported: netem {a}")));
        } else {
            return Err(TcError::at(w.last(), format!("What is \"{a}\"?")));
        }
    }
    if let Some(at) = dist_name {
        if o.latency_ns == 0 || o.jitter_ns == 0 {
            return Err(TcError::at(
                at,
                "distribution specified but no latency and jitter values",
            ));
        }
    }
    if o.reorder != 0 {
        if o.latency_ns == 0 {
            return Err(TcError::line(
                "reordering not possible without specifying some delay",
            ));
        }
        if o.gap == 0 {
            o.gap = 1;
        }
    }
    Ok(QdiscOptions::Netem(o))
}
