//! `skiff prog verify`, and the verifier's verdict as `prog show`, `prog run` and
//! `run` report it: "would the kernel load this?", in the kernel's words
//! (docs/verifier.md has the JSON contract).

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};
use skiff_object::Object;
use skiff_vm::verifier::{report, KernelVersion, VerifierError};
use skiff_vm::{Collection, LoadError, LoadOptions};

/// What a program's verification came to.
pub enum Verdict<'a> {
    Verified,
    Refused(&'a VerifierError),
}

/// The `"verifier"` object: `{"verdict", "errno", "insn", "line", "message", "log"}`.
pub fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Verified => json!({
            "verdict": "verified", "errno": null, "insn": null, "line": null,
            "message": null, "log": null
        }),
        Verdict::Refused(e) => json!({
            "verdict": "refused",
            "errno": e.errno,
            "insn": e.insn,
            "line": e.line.as_ref().map(|l| json!({
                "file": l.file, "line": l.line, "col": l.col, "text": l.text.trim()
            })),
            "message": e.message,
            "log": e.log,
        }),
    }
}

/// One line for people: `verified` or `refused: MESSAGE (errno N NAME) at insn I`.
pub fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Verified => "verified".to_string(),
        Verdict::Refused(e) => {
            let mut s = format!(
                "refused: {} (errno {} {}) at insn {}",
                e.message,
                e.errno,
                report::errno_name(e.errno),
                e.insn
            );
            if let Some(l) = &e.line {
                s.push_str(&format!(" ({}:{})", l.file, l.line));
            }
            s
        }
    }
}

/// Each program's verdict, by name in object order (nothing is linked or run).
pub fn verdicts(
    obj: &Object,
    kernel: KernelVersion,
) -> Result<Vec<(String, skiff_vm::collection::Verdict)>, LoadError> {
    let opts = LoadOptions {
        kernel,
        ..skiff_net::load_options()
    };
    Collection::verify(obj, &opts)
}

/// A verdict as reported.
pub fn verdict_of(v: &skiff_vm::collection::Verdict) -> Verdict<'_> {
    match v {
        Ok(_) => Verdict::Verified,
        Err(e) => Verdict::Refused(e),
    }
}

/// The note `--no-verify` prints for a program the verifier refused.
pub fn not_verified_note(prog: &str, refusal: Option<&VerifierError>) -> String {
    match refusal {
        Some(e) => format!(
            "not verified: program {prog}: the kernel would refuse it: {} (errno {} {}, insn {}); running it anyway with run-time checks on every access",
            e.message,
            e.errno,
            report::errno_name(e.errno),
            e.insn
        ),
        None => format!(
            "not verified: program {prog}: --no-verify, run-time checks on every access"
        ),
    }
}

/// `--kernel`: the availability of helpers, kfuncs, map and program types,
/// instructions and limits in that release. The per-release tables
/// (verifier/availability.rs) are not in skiff yet: the check says so rather
/// than passing silently.
fn availability(kernel: KernelVersion) -> Value {
    json!({
        "kernel": kernel.as_str(),
        "checked": false,
        "note": "not supported: availability of helpers, kfuncs, map and program types and instructions by kernel release (the verifier's rules are applied; see docs/differences.md)",
    })
}

pub struct VerifyArgs<'a> {
    pub object: &'a Path,
    pub prog: Option<&'a str>,
    pub kernel: Option<&'a str>,
    pub json: bool,
}

/// `skiff prog verify`: 0 when every program is accepted, 1 when one is refused,
/// 2 when the object cannot be read (or loaded for a reason not the verifier's).
pub fn main(a: &VerifyArgs, obj: Result<Object>) -> i32 {
    let kernel = match a.kernel.map(|k| (k, KernelVersion::parse(k))) {
        None => None,
        Some((_, Some(k))) => Some(k),
        Some((k, None)) => {
            eprintln!("skiff: --kernel {k:?}: want one of 5.15, 6.1, 6.6, 6.18");
            return 2;
        }
    };
    let obj = match obj {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skiff: {e:#}");
            return 2;
        }
    };
    if let Some(p) = a.prog {
        if obj.program(p).is_none() {
            eprintln!("skiff: no program named {p:?} in {}", a.object.display());
            return 2;
        }
    }
    let all = match verdicts(&obj, kernel.unwrap_or(KernelVersion::LATEST)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skiff: loading {}: {e}", a.object.display());
            return 2;
        }
    };
    let mut refused = false;
    for (p, (name, v)) in obj.programs.iter().zip(&all) {
        if a.prog.is_some_and(|n| n != name) {
            continue;
        }
        let v = verdict_of(v);
        refused |= matches!(v, Verdict::Refused(_));
        report_one(a, name, p.prog_type, &v, kernel);
    }
    i32::from(refused)
}

fn report_one(
    a: &VerifyArgs,
    name: &str,
    t: skiff_object::ProgType,
    v: &Verdict,
    kernel: Option<KernelVersion>,
) {
    if a.json {
        let mut o =
            json!({"name": name, "type": crate::prog::type_name(t), "verifier": verdict_json(v)});
        if let Some(k) = kernel {
            o["availability"] = availability(k);
        }
        println!("{o}");
        return;
    }
    println!("{name}: {}", verdict_text(v));
    if let Verdict::Refused(e) = v {
        if let Some(l) = &e.line {
            println!("  {}", report::line_text(l));
        }
        for line in e.log_tail(skiff_vm::LOG_TAIL_LINES).lines() {
            println!("  | {line}");
        }
    }
    if let Some(k) = kernel {
        println!(
            "  kernel {}: the verifier's rules applied; availability by release: not supported yet",
            k.as_str()
        );
    }
}
