//! The verifier at the command line (docs/verifier.md): `skiff prog verify` exit
//! codes and JSON, `prog show` verdicts, `prog run` refusing what the verifier
//! refuses unless --no-verify; and skiff's verifier against the negative corpus
//! (bpf/verifier/*.c), whose headers the kernel test proves.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use skiff_kernel::refusals::{self, Refusal};
use skiff_vm::{Collection, LoadError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skiff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The bundled example (no clang needed): one XDP program the kernel accepts.
const OBJ: &str = "examples/xdp_fw/xdp_fw.o";

/// `src` compiled with clang-19 into `dir`; None (reason printed) without clang-19.
fn compile(src: &std::path::Path, tag: &str) -> Option<PathBuf> {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("verify-{tag}"));
    Some(skiff_kernel::clang::compile(src, &dir).expect("compile"))
}

const VERIFIED: &str =
    r#"{"verdict":"verified","errno":null,"insn":null,"line":null,"message":null,"log":null}"#;

#[test]
fn verify_accepted_object() {
    let (code, out, err) = skiff(&["prog", "verify", OBJ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "xdp_fw: verified\n", "")
    );

    let (code, out, _) = skiff(&["prog", "verify", OBJ, "--json"]);
    assert_eq!(code, 0);
    let verified: Value = serde_json::from_str(VERIFIED).expect("json");
    assert_eq!(
        json_of(&out),
        json!({"name": "xdp_fw", "type": "xdp", "verifier": verified})
    );
}

#[test]
fn verify_with_kernel_release() {
    let (code, out, _) = skiff(&["prog", "verify", OBJ, "--json", "--kernel", "5.15"]);
    assert_eq!(code, 0);
    let v = json_of(&out);
    assert_eq!(v["verifier"]["verdict"], "verified");
    assert_eq!(
        v["availability"],
        json!({"kernel": "5.15", "verdict": "available", "message": null})
    );
    let (code, out, _) = skiff(&["prog", "verify", OBJ, "--kernel", "6.6"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "xdp_fw: verified\n  kernel 6.6: every helper, map type, program type and instruction it uses is there\n"
    );
}

/// A tcx program: BPF_TCX_INGRESS came in 6.6, so 6.1 refuses it.
#[test]
fn verify_refuses_what_a_release_lacks() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/tcx_len.c");
    let Some(obj) = compile(&src, "tcx") else {
        return;
    };
    let obj = obj.to_str().expect("path");
    let (code, out, _) = skiff(&["prog", "verify", obj, "--kernel", "6.6"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = skiff(&["prog", "verify", obj, "--kernel", "6.1", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v = json_of(&out);
    let msg =
        "BPF_LINK_CREATE: attach type BPF_TCX_INGRESS (46) is not in Linux 6.1 (it came in 6.6)";
    assert_eq!(
        v["availability"],
        json!({"kernel": "6.1", "verdict": "refused", "message": msg})
    );
    assert_eq!(v["verifier"]["verdict"], "refused");
    assert_eq!(v["verifier"]["errno"], 22);
    assert_eq!(v["verifier"]["message"], msg);
}

#[test]
fn verify_usage_errors_exit_2() {
    let (code, out, err) = skiff(&["prog", "verify", OBJ, "--kernel", "4.19"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "skiff: --kernel \"4.19\": want one of 5.15, 6.1, 6.6, 6.18\n"
    );
    let (code, _, err) = skiff(&["prog", "verify", "no/such.o"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("skiff: reading object no/such.o: "),
        "{err}"
    );
    let (code, _, err) = skiff(&["prog", "verify", OBJ, "--prog", "nope"]);
    assert_eq!(code, 2);
    assert_eq!(err, format!("skiff: no program named \"nope\" in {OBJ}\n"));
    // Not an object at all.
    let (code, _, err) = skiff(&["prog", "verify", "examples/xdp_fw/allowed.bin"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a loadable eBPF object"), "{err}");
}

#[test]
fn show_marks_each_program() {
    let (code, out, _) = skiff(&["prog", "show", OBJ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("  xdp_fw                   type xdp        section xdp                  56 insns  verified\n"),
        "{out}"
    );
    let (code, out, _) = skiff(&["prog", "show", OBJ, "--json"]);
    assert_eq!(code, 0);
    let verified: Value = serde_json::from_str(VERIFIED).expect("json");
    assert_eq!(json_of(&out)["programs"][0]["verifier"], verified);
}

#[test]
fn run_no_verify_says_so() {
    let args = [
        "prog",
        "run",
        OBJ,
        "--data-in",
        "examples/xdp_fw/allowed.bin",
    ];
    let (code, out, _) = skiff(&[&args[..], &["--no-verify"]].concat());
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "not verified: program xdp_fw: --no-verify, run-time checks on every access\n"
        ),
        "{out}"
    );
    let (code, out, _) = skiff(&[&args[..], &["--no-verify", "--json"]].concat());
    assert_eq!(code, 0);
    assert_eq!(
        json_of(&out)["not_verified"],
        "not verified: program xdp_fw: --no-verify, run-time checks on every access"
    );
    let (code, out, _) = skiff(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0);
    assert_eq!(json_of(&out)["not_verified"], Value::Null);
}

/// A refusal every verifier makes (an opcode that does not exist): verify exits
/// 1 with the kernel's errno, the instruction and its source line; show marks
/// it and exits 0; run exits 1 naming all of it.
#[test]
fn refused_program_at_each_command() {
    let src = root().join("bpf/verifier/bad_opcode.c");
    let Some(obj) = compile(&src, "bad-opcode") else {
        return;
    };
    let obj = obj.to_str().expect("path");
    let (code, out, _) = skiff(&["prog", "verify", obj, "--json"]);
    assert_eq!(code, 1, "{out}");
    let v = &json_of(&out)["verifier"];
    assert_eq!(v["verdict"], "refused");
    assert_eq!(v["errno"], 22);
    assert_eq!(v["insn"], 0);
    assert_eq!(v["line"]["line"], 11);
    assert_eq!(
        v["line"]["text"],
        "asm volatile(\".8byte 0x00000000000000ff\");"
    );
    assert!(v["line"]["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("bpf/verifier/bad_opcode.c")));

    let (code, out, _) = skiff(&["prog", "show", obj]);
    assert_eq!(code, 0);
    assert!(out.contains("insns  refused: "), "{out}");
    assert!(out.contains("(errno 22 EINVAL) at insn 0 ("), "{out}");

    let (code, out, err) = skiff(&[
        "prog",
        "run",
        obj,
        "--data-in",
        "examples/xdp_fw/allowed.bin",
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("skiff: program bad_opcode: refused by the verifier: "),
        "{err}"
    );
    assert!(err.contains("(errno 22 EINVAL)\n  at insn 0 ("), "{err}");
    assert!(
        err.contains("bad_opcode.c:11:2): asm volatile(\".8byte 0x00000000000000ff\");"),
        "{err}"
    );
}

/// Negative-corpus programs skiff's verifier does not yet refuse as the kernel
/// does, each with the reason. The test fails when one of them starts to agree
/// (remove it here), and for every program not listed that disagrees.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        "bad_opcode",
        "skiff says 'unknown opcode 0xff' (skiff_isa::validate's words); the kernel 'unknown opcode ff' (same errno)",
    ),
];

/// skiff's answer for one corpus program: Ok when it refuses with the stated
/// errno and a log holding the stated line, Err saying what it did instead.
fn skiff_agrees(r: &Refusal) -> Result<(), String> {
    let obj = compile(&r.source, "corpus").ok_or("clang-19 missing")?;
    let bytes = std::fs::read(&obj).map_err(|e| e.to_string())?;
    let parsed = skiff_object::Object::parse(&bytes).map_err(|e| e.to_string())?;
    match Collection::load(&parsed, &skiff_net::load_options()) {
        Ok(_) => Err("skiff accepted it".into()),
        Err(LoadError::Refused { error, .. }) => {
            let line = error.message == r.message || refusals::log_has_line(&error.log, &r.message);
            if error.errno == r.errno && line {
                Ok(())
            } else {
                Err(format!(
                    "skiff errno {} message {:?} (stated errno {} line {:?})",
                    error.errno, error.message, r.errno, r.message
                ))
            }
        }
        Err(e) => Err(format!("failed before the verifier: {e}")),
    }
}

#[test]
fn skiff_refuses_the_negative_corpus_as_the_kernel_does() {
    if let Err(why) = skiff_kernel::clang::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let corpus = refusals::load(&root().join("bpf/verifier")).expect("corpus headers");
    assert_eq!(corpus.len(), 19);
    let mut wrong = Vec::new();
    for r in &corpus {
        let listed = EXPECTED_FAILURES.iter().find(|(s, _)| *s == r.stem);
        match (skiff_agrees(r), listed) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => wrong.push(format!(
                "{}: now agrees with the kernel: remove it from EXPECTED_FAILURES",
                r.stem
            )),
            (Err(e), Some((_, why))) => {
                eprintln!("expected failure: {}: {why}: {e}", r.stem);
            }
            (Err(e), None) => wrong.push(format!("{}: {e}", r.stem)),
        }
    }
    assert!(
        EXPECTED_FAILURES
            .iter()
            .all(|(s, _)| corpus.iter().any(|r| r.stem == *s)),
        "EXPECTED_FAILURES names a program the corpus does not have"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `skiff run` refuses a topology whose program the verifier refuses (exit 1,
/// the refusal in the error), and runs it with --no-verify, saying so.
#[test]
fn run_refuses_a_refused_program() {
    let Some(obj) = compile(&root().join("bpf/verifier/pkt_unchecked.c"), "run") else {
        return;
    };
    let dir = obj.parent().expect("dir").to_path_buf();
    let topo = dir.join("topology.toml");
    let text = format!(
        "[netns.host]\n[[netns.host.device]]\nname = \"eth0\"\nkind = \"nic\"\n\n[[object]]\npath = \"{}\"\n\n[[object.attach]]\nprogram = \"pkt_unchecked\"\ndev = \"eth0\"\nhook = \"xdp\"\n",
        obj.display()
    );
    std::fs::write(&topo, text).expect("write topology");
    let topo = topo.to_str().expect("path");
    let (code, out, err) = skiff(&["run", topo]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("program pkt_unchecked: refused by the verifier: invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0); R1 offset is outside of the packet (errno 13 EACCES)\n  at insn 1 ("),
        "{err}"
    );
    let (code, _, err) = skiff(&["run", topo, "--no-verify"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        "skiff run: not verified: program pkt_unchecked: the kernel would refuse it: invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0); R1 offset is outside of the packet (errno 13 EACCES, insn 1); running it anyway with run-time checks on every access\n"
    );
}
