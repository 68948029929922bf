//! The verifier refuses what the kernel refuses, with the kernel's errno and
//! message: one hand-assembled program per class of refusal (`verifier/cases.rs`),
//! checked against skiff and, as root, against the running kernel.

#[path = "verifier/cases.rs"]
mod cases;
#[path = "verifier/common.rs"]
mod common;

use cases::CASES;
use common::{asm, verify_with};

#[test]
fn each_class_of_refusal_has_the_kernels_message() {
    let mut failures = Vec::new();
    for c in CASES {
        let insns = asm(c.asm);
        let maps = c.maps();
        match verify_with(&insns, c.prog_type, &maps) {
            Ok(v) => failures.push(format!(
                "{}: accepted ({} insns processed)",
                c.name, v.insns_processed
            )),
            Err(e) if e.errno != c.errno || e.message != c.message => failures.push(format!(
                "{}: got errno {} `{}`, want errno {} `{}`\n{}",
                c.name, e.errno, e.message, c.errno, c.message, e.log
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The message lines of a kernel verifier log: the `n` lines before the
/// `processed N insns` summary.
fn kernel_message(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let end = lines
        .iter()
        .rposition(|l| l.starts_with("processed "))
        .unwrap_or(lines.len());
    lines[end.saturating_sub(n)..end].join("\n")
}

fn kernel_object(c: &cases::Case) -> skiff_object::Object {
    let maps = c
        .maps
        .iter()
        .enumerate()
        .map(|(i, &(t, k, v, n))| skiff_object::MapSpec {
            name: format!("m{i}"),
            map_type: t.kernel_id(),
            key_size: k,
            value_size: v,
            max_entries: n,
            map_flags: 0,
            pinning: 0,
            inner: None,
            initial_data: None,
            slots: Vec::new(),
            origin: skiff_object::MapOrigin::Legacy,
            map_extra: 0,
            numa_node: 0,
        })
        .collect();
    skiff_object::Object {
        license: "GPL".into(),
        programs: vec![skiff_object::Program {
            name: c.name.into(),
            section: "xdp".into(),
            prog_type: c.prog_type,
            expected_attach_type: None,
            frags: false,
            insns: asm(c.asm),
            lines: Vec::new(),
        }],
        maps,
    }
}

/// The running kernel refuses each case with the errno and message skiff gives.
#[test]
fn the_kernel_agrees_on_each_refusal() {
    if let Err(r) = skiff_kernel::available() {
        eprintln!("skipping the kernel comparison: {r}");
        return;
    }
    let mut failures = Vec::new();
    for c in CASES {
        match skiff_kernel::KernelObject::load(&kernel_object(c)) {
            Ok(_) => failures.push(format!("{}: the kernel accepted it", c.name)),
            Err(skiff_kernel::KernelError::ProgLoad { errno, log, .. }) => {
                let n = c.message.lines().count().max(1);
                let msg = kernel_message(&log, n);
                if errno != c.errno || msg != c.message {
                    failures.push(format!(
                        "{}: kernel errno {errno} `{msg}`, case says errno {} `{}`\n{log}",
                        c.name, c.errno, c.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
