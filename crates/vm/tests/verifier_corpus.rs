//! No false refusals: every program the project loads verifies. Objects built from
//! bpf/*.c and crates/cli/tests/bpf/*.c with clang-19 (skipped with a printed
//! reason without it), and the prebuilt examples/**/*.o.

use std::path::{Path, PathBuf};
use std::time::Instant;

use skiff_vm::verifier::{self, KernelVersion, SourceLine, VerifyOptions};
use skiff_vm::{Collection, Engine, LoadOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "c"));
    v.sort();
    v
}

fn objects(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            objects(&p, out);
        } else if p.extension().is_some_and(|e| e == "o") {
            out.push(p);
        }
    }
}

/// skiff's verdict on one program: None when accepted, else (errno, message).
type Verdict = Option<(i32, String)>;

/// Verifies every program of the object at `path`: (object:program, verdict).
fn verify_object(path: &Path, report: &mut Vec<String>) -> Vec<(String, Verdict)> {
    let mut verdicts = Vec::new();
    let bytes = std::fs::read(path).unwrap();
    let obj =
        skiff_object::Object::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let coll = Collection::load(
        &obj,
        &LoadOptions {
            possible_cpus: 1,
            engine: Engine::Interp,
            // the maps are what this test needs; each program is verified below
            verify: false,
            ..skiff_net::load_options()
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let maps: Vec<_> = coll.maps.iter().map(|(_, m)| m.clone()).collect();
    let helpers = skiff_net::helper_table();
    for p in &obj.programs {
        let lines: Vec<SourceLine> = p.lines.iter().map(SourceLine::from).collect();
        let opts = VerifyOptions {
            prog_type: p.prog_type,
            name: &p.name,
            maps: &maps,
            helpers: &helpers,
            privileged: true,
            kernel: KernelVersion::LATEST,
            gpl: true,
            lines: Some(&lines),
        };
        let t = Instant::now();
        let r = verifier::verify(&p.insns, &opts);
        let dt = t.elapsed();
        let name = format!("{}:{}", path.file_name().unwrap().to_string_lossy(), p.name);
        match r {
            Ok(v) => {
                report.push(format!(
                    "{name}: {} insns, {} processed, {:.1} ms ({})",
                    p.insns.len(),
                    v.insns_processed,
                    dt.as_secs_f64() * 1e3,
                    v.log.trim()
                ));
                verdicts.push((name, None));
            }
            Err(e) => {
                report.push(format!(
                    "{name}: refused at insn {}: errno {} {}\n{}",
                    e.insn, e.errno, e.message, e.log
                ));
                verdicts.push((name, Some((e.errno, e.message))));
            }
        }
    }
    verdicts
}

/// The kernel's verdict on each program of the object at `path`, loaded one by
/// one with all the object's maps (tail-call slots left empty).
fn kernel_verdicts(path: &Path) -> Vec<Verdict> {
    let bytes = std::fs::read(path).unwrap();
    let obj = skiff_object::Object::parse(&bytes).unwrap();
    let mut maps = obj.maps.clone();
    for m in &mut maps {
        m.slots.clear();
    }
    obj.programs
        .iter()
        .map(|p| {
            let one = skiff_object::Object {
                license: obj.license.clone(),
                programs: vec![p.clone()],
                maps: maps.clone(),
                skipped: Vec::new(),
            };
            match skiff_kernel::KernelObject::load(&one) {
                Ok(_) => None,
                Err(skiff_kernel::KernelError::ProgLoad { errno, log, .. }) => Some((errno, log)),
                Err(e) => panic!("{}: {}: {e}", path.display(), p.name),
            }
        })
        .collect()
}

/// Whether the kernel's log ends (before its `processed N insns` summary) with
/// skiff's message. The first message line may follow the instruction print on
/// the same line, as the kernel prints it.
fn kernel_log_ends_with(log: &str, message: &str) -> bool {
    let lines: Vec<&str> = log.lines().collect();
    let end = lines
        .iter()
        .rposition(|l| l.starts_with("processed "))
        .unwrap_or(lines.len());
    let body = lines[..end].join("\n");
    body.ends_with(message)
}

/// The kernel refuses for a reason outside the verifier's model: the map was
/// created without BTF (skiff_kernel's loader passes none; libbpf would).
fn not_comparable(log: &str) -> bool {
    log.contains("has to have BTF")
}

/// Programs the project keeps on purpose although the kernel refuses them
/// (crates/cli/tests/bpf/faulty.c: run-time faults for the CLI's tests), with the
/// kernel's message.
const KNOWN_REFUSED: &[(&str, i32, &str)] = &[
    (
        "faulty.o:oob_read",
        13,
        "invalid access to packet, off=100000 size=4, R1(id=0,off=100000,r=0)\nR1 offset is outside of the packet",
    ),
    (
        "faulty.o:spin_forever",
        22,
        "infinite loop detected at insn 4\ncur state: R1=scalar(smin=umin=umin32=1,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff)) R10=fp0 fp-8=mmmm????\nold state: R1=scalar(smin=umin=umin32=1,smax=umax=0xffffffff,var_off=(0x0; 0xffffffff)) R10=fp0 fp-8=mmmm????",
    ),
];

#[test]
fn every_program_of_the_project_verifies() {
    let mut objs = Vec::new();
    objects(&root().join("examples"), &mut objs);
    objs.sort();
    match skiff_kernel::clang::available() {
        Err(r) => eprintln!("skipping bpf/*.c and crates/cli/tests/bpf/*.c: {r}"),
        Ok(_) => {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verifier-corpus");
            for dir in ["bpf", "crates/cli/tests/bpf"] {
                for src in sources(&root().join(dir)) {
                    let o = skiff_kernel::clang::compile(&src, &out)
                        .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
                    objs.push(o);
                }
            }
        }
    }
    assert!(!objs.is_empty(), "no objects found under examples/");
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for o in &objs {
        for (name, v) in verify_object(o, &mut report) {
            let known = KNOWN_REFUSED.iter().find(|k| k.0 == name);
            let want = known.map(|k| (k.1, k.2.to_string()));
            if v != want {
                wrong.push(format!("{name}: skiff {v:?}, expected {want:?}"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        wrong.is_empty(),
        "{}\n\n{}",
        wrong.join("\n"),
        report.join("\n")
    );
}

/// As root: skiff accepts exactly what the running kernel accepts, and refuses
/// with the kernel's errno and message.
#[test]
fn every_program_of_the_project_gets_the_kernels_verdict() {
    if let Err(r) = skiff_kernel::available() {
        eprintln!("skipping the kernel comparison: {r}");
        return;
    }
    let mut objs = Vec::new();
    objects(&root().join("examples"), &mut objs);
    if skiff_kernel::clang::available().is_ok() {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verifier-corpus-k");
        for dir in ["bpf", "crates/cli/tests/bpf"] {
            for src in sources(&root().join(dir)) {
                objs.push(skiff_kernel::clang::compile(&src, &out).unwrap());
            }
        }
    } else {
        eprintln!("clang-19 missing: comparing examples/**/*.o only");
    }
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    let mut agree = 0;
    for o in &objs {
        let skiff = verify_object(o, &mut report);
        let kernel = kernel_verdicts(o);
        for ((name, s), k) in skiff.iter().zip(&kernel) {
            if let Some((_, klog)) = k {
                if not_comparable(klog) {
                    eprintln!("{name}: not compared (the kernel wants map BTF)");
                    continue;
                }
            }
            let same = match (s, k) {
                (None, None) => true,
                (Some((se, sm)), Some((ke, klog))) => se == ke && kernel_log_ends_with(klog, sm),
                _ => false,
            };
            if same {
                agree += 1;
            } else {
                wrong.push(format!("{name}: skiff {s:?}\nkernel {k:?}"));
            }
        }
    }
    eprintln!("{agree} programs: skiff and the kernel agree");
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// Objects outside the repository (e.g. the kernel's verifier selftests built in
/// a scratch directory): `SKIFF_VERIFY_OBJECTS=a.o:b.o`. As root each program's
/// verdict is compared with the kernel's; the counts are printed.
#[test]
fn objects_named_in_the_environment_get_the_kernels_verdict() {
    let Ok(list) = std::env::var("SKIFF_VERIFY_OBJECTS") else {
        eprintln!("skipping: SKIFF_VERIFY_OBJECTS is not set");
        return;
    };
    let kernel = skiff_kernel::available().is_ok();
    let mut report = Vec::new();
    let (mut agree, mut wrong) = (0, Vec::new());
    for path in list.split(':').filter(|p| !p.is_empty()).map(PathBuf::from) {
        let skiff = verify_object(&path, &mut report);
        if !kernel {
            continue;
        }
        for ((name, s), k) in skiff.iter().zip(kernel_verdicts(&path)) {
            let same = match (s, &k) {
                (None, None) => true,
                (Some((se, sm)), Some((ke, klog))) => se == ke && kernel_log_ends_with(klog, sm),
                _ => false,
            };
            if same {
                agree += 1;
            } else {
                wrong.push(format!("{name}: skiff {s:?}\nkernel {k:?}"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    eprintln!("agree: {agree}, differ: {}", wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
