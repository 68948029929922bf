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
                e.summary(),
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
            e.summary(),
            e.errno,
            report::errno_name(e.errno),
            e.insn
        ),
        None => format!(
            "not verified: program {prog}: --no-verify, run-time checks on every access"
        ),
    }
}

/// `--kernel`: whether release `kernel` has everything program `p` uses, in the
/// order a load meets it: libbpf creates the maps (BPF_MAP_CREATE), then
/// BPF_PROG_LOAD checks the program type and size, then the verifier meets each
/// instruction and helper call (verifier/availability.rs has the tables).
// verifier/availability.rs returns VerifierError by value, as verifier::verify.
#[allow(clippy::result_large_err)]
pub fn availability(
    obj: &Object,
    p: &skiff_object::Program,
    kernel: KernelVersion,
) -> Result<(), VerifierError> {
    use skiff_isa::{BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, CALL, LD_IMM64};
    use skiff_vm::verifier::availability as av;
    let mut maps: Vec<usize> = p
        .insns
        .iter()
        .filter(|i| {
            i.code == LD_IMM64 && matches!(i.src, BPF_PSEUDO_MAP_IDX | BPF_PSEUDO_MAP_IDX_VALUE)
        })
        .filter_map(|i| usize::try_from(i.imm).ok())
        .collect();
    maps.sort_unstable();
    maps.dedup();
    for m in maps.iter().filter_map(|&m| obj.maps.get(m)) {
        av::check_map_type(m.map_type, kernel)?;
    }
    let attach = p.expected_attach_type.map(|a| a.kernel_id());
    av::check_prog_type(p.prog_type.kernel_id(), attach, kernel)?;
    av::check_prog_size(p.insns.len(), kernel, true)?;
    let at = |pc: usize| {
        move |mut e: VerifierError| {
            e.insn = pc;
            e.line = p.line_of(pc).map(skiff_vm::verifier::SourceLine::from);
            e
        }
    };
    let mut pc = 0;
    while let Some(insn) = p.insns.get(pc) {
        av::check_insn(insn, pc, kernel).map_err(at(pc))?;
        if insn.code == CALL && insn.src == 0 {
            av::check_helper(insn.imm as u32, kernel).map_err(at(pc))?;
        }
        pc += if insn.code == LD_IMM64 { 2 } else { 1 };
    }
    Ok(())
}

/// The `"availability"` object of `--kernel`.
fn availability_json(kernel: KernelVersion, a: &Result<(), VerifierError>) -> Value {
    json!({
        "kernel": kernel.as_str(),
        "verdict": if a.is_ok() { "available" } else { "refused" },
        "message": a.as_ref().err().map(|e| e.message.clone()),
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
        // A release that lacks something refuses before the verifier's walk.
        let avail = kernel.map(|k| (k, availability(&obj, p, k)));
        let v = match &avail {
            Some((_, Err(e))) => Verdict::Refused(e),
            _ => verdict_of(v),
        };
        refused |= matches!(v, Verdict::Refused(_));
        report_one(a, name, p.prog_type, &v, avail.as_ref());
    }
    i32::from(refused)
}

fn report_one(
    a: &VerifyArgs,
    name: &str,
    t: skiff_object::ProgType,
    v: &Verdict,
    avail: Option<&(KernelVersion, Result<(), VerifierError>)>,
) {
    if a.json {
        let mut o =
            json!({"name": name, "type": crate::prog::type_name(t), "verifier": verdict_json(v)});
        if let Some((k, r)) = avail {
            o["availability"] = availability_json(*k, r);
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
    if let Some((k, r)) = avail {
        match r {
            Ok(()) => println!(
                "  kernel {}: every helper, map type, program type and instruction it uses is there",
                k.as_str()
            ),
            Err(_) => println!("  kernel {}: refused before the verifier runs", k.as_str()),
        }
    }
}
