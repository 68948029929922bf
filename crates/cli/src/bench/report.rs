//! The corpus bench's output: the text and markdown tables, the summary
//! lines, the JSON rows.

use serde_json::{json, Map as JsonMap, Value};

use super::*;

pub(super) fn fmt_ns(s: &Side) -> String {
    match (s.median(), &s.error) {
        (Some(v), _) => format!("{v:.1}"),
        (None, Some(_)) if s.absent() => "-".into(),
        (None, _) => "error".into(),
    }
}

pub(super) fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |x| format!("{x:.2}"))
}

pub(super) fn fmt_ret(r: Option<u32>) -> String {
    r.map_or("-".into(), |v| (v as i32).to_string())
}

pub(super) fn packet_label(r: &Row) -> String {
    if r.batch > 0 {
        format!("{} (b{})", r.packet, r.batch)
    } else {
        r.packet.to_string()
    }
}

/// The cells of one row, in [`header`] order.
pub(super) fn cells(r: &Row) -> Vec<String> {
    let mut c = vec![
        r.label.clone(),
        packet_label(r),
        fmt_ns(&r.jit),
        fmt_ns(&r.interp),
        fmt_ns(&r.kernel),
    ];
    for (_, s) in &r.extra {
        c.push(fmt_ns(s));
    }
    c.push(fmt_ratio(r.ratio(&r.jit)));
    c.push(fmt_ratio(r.ratio(&r.interp)));
    for (_, s) in &r.extra {
        c.push(fmt_ratio(r.ratio(s)));
    }
    c.push(r.compile.map_or("-".into(), |s| {
        format!("{:.1}", s.compile_time.as_secs_f64() * 1e6)
    }));
    c.push(r.compile.map_or("-".into(), |s| s.code_size.to_string()));
    c.push(r.insns.map_or("-".into(), |n| n.to_string()));
    c.push(r.executed.map_or("-".into(), |n| n.to_string()));
    let mut rets = vec![
        fmt_ret(r.jit.retval),
        fmt_ret(r.interp.retval),
        fmt_ret(r.kernel.retval),
    ];
    rets.extend(r.extra.iter().map(|(_, s)| fmt_ret(s.retval)));
    c.push(rets.join("/"));
    c
}

pub(super) fn header(extra: &[String]) -> Vec<String> {
    let mut h: Vec<String> = ["program", "packet", "jit ns", "interp ns", "kernel ns"]
        .map(String::from)
        .to_vec();
    h.extend(extra.iter().map(|n| format!("{n} ns")));
    h.push("jit/k".into());
    h.push("interp/k".into());
    h.extend(extra.iter().map(|n| format!("{n}/k")));
    for s in ["compile µs", "code B", "insns", "exec"] {
        h.push(s.into());
    }
    let mut ret = vec!["jit", "interp", "kernel"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    ret.extend(extra.iter().cloned());
    h.push(format!("retval {}", ret.join("/")));
    h
}

/// Column widths: the first two left-aligned, the rest right-aligned.
pub(super) const WIDTHS: [usize; 2] = [34, 18];

pub(super) fn text_line(cells: &[String], extra: usize) -> String {
    let mut s = String::new();
    let numeric = 3 + 2 * extra + 2 + 4;
    for (i, c) in cells.iter().enumerate() {
        match WIDTHS.get(i) {
            Some(w) => s.push_str(&format!("{c:<w$} ")),
            None if i < 2 + numeric => s.push_str(&format!("{c:>10} ")),
            None => s.push_str(&format!(" {c}")),
        }
    }
    s.trim_end().to_string()
}

pub(super) fn md_line(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// An engine's ratio to the kernel in a row.
type RatioOf = Box<dyn Fn(&Row) -> Option<f64>>;

/// Marks a summary line that belongs under the previous one.
pub(super) const SUB: &str = "\t";

/// The summary lines under the table.
pub(super) fn summary(rows: &[Row], kernel_ok: &Result<(), String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(reason) = kernel_ok {
        out.push(format!("kernel: not available ({reason})"));
    }
    let mut engines: Vec<(String, RatioOf)> = vec![
        ("skiff-jit".into(), Box::new(|r: &Row| r.ratio(&r.jit))),
        (
            "skiff-interp".into(),
            Box::new(|r: &Row| r.ratio(&r.interp)),
        ),
    ];
    if let Some(first) = rows.first() {
        for (i, (n, _)) in first.extra.iter().enumerate() {
            engines.push((
                n.clone(),
                Box::new(move |r: &Row| r.extra.get(i).and_then(|(_, s)| r.ratio(s))),
            ));
        }
    }
    for (name, f) in &engines {
        let f = f.as_ref();
        let ratios: Vec<f64> = rows.iter().filter_map(f).collect();
        let Some(m) = median(&ratios) else {
            continue;
        };
        let max = rows
            .iter()
            .filter_map(|r| Some((f(r)?, r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let mut line = format!("median {name}/kernel over {} rows: {m:.2}x", ratios.len());
        if let Some((x, r)) = max {
            line.push_str(&format!("; max {x:.2}x ({} {})", r.label, r.packet));
        }
        out.push(line);
        let steady: Vec<f64> = rows.iter().filter(|r| r.batch == 0).filter_map(f).collect();
        if let Some(m) = median(&steady).filter(|_| steady.len() < ratios.len()) {
            out.push(format!(
                "median {name}/kernel over the {} rows without a batch (b): {m:.2}x",
                steady.len()
            ));
        }
    }
    for r in rows {
        for (name, s) in [
            ("skiff-jit", &r.jit),
            ("skiff-interp", &r.interp),
            ("kernel", &r.kernel),
        ]
        .into_iter()
        .chain(r.extra.iter().map(|(n, s)| (n.as_str(), s)))
        {
            if let Some(e) = &s.error {
                if !s.absent() {
                    out.push(format!("{} {}: {name}: error {e}", r.label, r.packet));
                }
            }
        }
        for m in r.retval_mismatch() {
            out.push(format!("{} {}: RETVAL MISMATCH: {m}", r.label, r.packet));
        }
    }
    // Engines that do not run a row: each reason (its details in parentheses
    // dropped: they are in --json) with the programs it applies to; engines with
    // the same reason for the same programs on one line.
    let mut reasons: Vec<(String, String, Vec<String>, usize)> = Vec::new();
    for r in rows {
        for (name, s) in [("skiff-jit", &r.jit)]
            .into_iter()
            .chain(r.extra.iter().map(|(n, s)| (n.as_str(), s)))
        {
            if let (true, Some(e)) = (s.absent(), &s.error) {
                let why = e.split(" (").next().unwrap_or(e).to_string();
                let prog = r.label.rsplit('/').next().unwrap_or(&r.label).to_string();
                match reasons
                    .iter_mut()
                    .find(|(n, w, _, _)| n == name && *w == why)
                {
                    Some((_, _, progs, count)) => {
                        *count += 1;
                        if !progs.contains(&prog) {
                            progs.push(prog)
                        }
                    }
                    None => reasons.push((name.to_string(), why, vec![prog], 1)),
                }
            }
        }
    }
    let mut merged: Vec<(Vec<String>, String, Vec<String>, usize)> = Vec::new();
    for (name, why, progs, count) in reasons {
        match merged
            .iter_mut()
            .find(|(_, w, p, _)| *w == why && *p == progs)
        {
            Some((names, _, _, _)) => names.push(name),
            None => merged.push((vec![name], why, progs, count)),
        }
    }
    if !merged.is_empty() {
        out.push("\"-\" means:".into());
        for (names, why, progs, count) in merged {
            let which = if count == rows.len() {
                "every row".to_string()
            } else {
                progs.join(", ")
            };
            out.push(format!("{SUB}{}: {why} ({which})", names.join(", ")));
        }
    }
    out
}

pub(super) fn row_json(r: &Row) -> Value {
    let mut extra = JsonMap::new();
    for (n, s) in &r.extra {
        extra.insert(
            n.clone(),
            json!({
                "ns": s.median(),
                "ratio": r.ratio(s),
                "runs_ns": s.runs,
                "retval": s.retval,
                "error": s.error,
            }),
        );
    }
    json!({
        "program": r.label,
        "packet": r.packet,
        "batch": r.batch,
        "insns": r.insns,
        "executed_insns": r.executed,
        // `skiff_*` and `ratio` are the interpreter's (the keys predate the JIT).
        "skiff_ns": r.interp.median(),
        "kernel_ns": r.kernel.median(),
        "ratio": r.ratio(&r.interp),
        "skiff_runs_ns": r.interp.runs,
        "kernel_runs_ns": r.kernel.runs,
        "skiff_retval": r.interp.retval,
        "kernel_retval": r.kernel.retval,
        "skiff_error": r.interp.error,
        "kernel_error": r.kernel.error,
        "interp_ns": r.interp.median(),
        "interp_ratio": r.ratio(&r.interp),
        "jit_ns": r.jit.median(),
        "jit_ratio": r.ratio(&r.jit),
        "jit_runs_ns": r.jit.runs,
        "jit_retval": r.jit.retval,
        "jit_error": r.jit.error,
        "compile_us": r.compile.map(|s| s.compile_time.as_secs_f64() * 1e6),
        "code_size": r.compile.map(|s| s.code_size),
        "retval_mismatch": r.retval_mismatch(),
        "extra": extra,
    })
}
