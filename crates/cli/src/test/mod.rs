//! `skiff test FILE|DIR...`: runs fixture files (docs/fixtures.md), prints a
//! line per case and a readable diff per failure, writes JUnit XML, and with
//! `--update` writes what was observed as the new expectation.

pub mod expect;
pub mod fixture;
pub mod frames;
pub mod junit;
pub mod netfilter;
mod update;

use std::path::{Path, PathBuf};
use std::time::Instant;

use fixture::Fixture;
use junit::{CaseEnd, SuiteReport};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Fixture files, or directories searched (recursively) for `.toml` files
    /// with `version` and `[[case]]`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Write JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the observed results into the fixtures as their expectation
    /// (snapshot style; comments and order kept).
    #[arg(long)]
    pub update: bool,
    /// Write per-source-line hit counts of the programs the cases ran to
    /// FILE as lcov (docs/coverage.md); programs then run in the interpreter.
    #[arg(long, value_name = "FILE")]
    pub coverage: Option<PathBuf>,
}

/// Exit codes: 0 every case passed, 1 a case failed, 2 a file could not be
/// read or a case could not run.
pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

/// The fixture files named by `paths`, in order (a directory's sorted).
fn collect(paths: &[PathBuf], errors: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, errors, 0);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Directories nest at most this deep (a link loop ends here).
const MAX_DEPTH: usize = 16;

fn walk(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        errors.push(format!(
            "{}: nested deeper than {MAX_DEPTH} directories",
            dir.display()
        ));
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            errors.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out, errors, depth + 1);
        } else if p.extension().is_some_and(|e| e == "toml") && fixture::is_fixture(&p) {
            out.push(p);
        }
    }
}

pub fn main(a: TestArgs) -> i32 {
    let mut errors = Vec::new();
    let files = collect(&a.paths, &mut errors);
    if a.coverage.is_some() {
        skiff_vm::coverage::enable();
    }
    let mut suites = Vec::new();
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for file in &files {
        let mut fx = match Fixture::load(file) {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        println!("{}", file.display());
        let suite = run_fixture(&mut fx, a.update);
        for (_, end, _) in &suite.cases {
            match end {
                CaseEnd::Pass => passed += 1,
                CaseEnd::Fail(_) => failed += 1,
                CaseEnd::Error(_) => broken += 1,
            }
        }
        if a.update {
            if let Err(e) = std::fs::write(file, fx.doc.to_string()) {
                errors.push(format!("{}: writing the update: {e}", file.display()));
            }
        }
        suites.push(suite);
    }
    for e in &errors {
        eprintln!("skiff test: {e}");
    }
    if let Some(p) = &a.junit {
        if let Err(e) = std::fs::write(p, junit::render(&suites)) {
            eprintln!("skiff test: --junit {}: {e}", p.display());
            return EXIT_ERROR;
        }
    }
    if let Some(p) = &a.coverage {
        let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
        match crate::coverage::write(p, &crate::coverage::bases(&paths)) {
            Ok((progs, srcs)) => eprintln!(
                "skiff test: coverage of {progs} program loads, {srcs} source files written to {}",
                p.display()
            ),
            Err(e) => {
                eprintln!("skiff test: {e}");
                return EXIT_ERROR;
            }
        }
    }
    let total = passed + failed + broken;
    println!(
        "\n{total} case{}: {passed} passed, {failed} failed, {broken} could not run{}",
        if total == 1 { "" } else { "s" },
        if errors.is_empty() {
            String::new()
        } else {
            format!("; {} files could not be read", errors.len())
        }
    );
    if !errors.is_empty() || broken > 0 || files.is_empty() {
        if files.is_empty() && errors.is_empty() {
            eprintln!("skiff test: no fixture files found");
        }
        EXIT_ERROR
    } else if failed > 0 {
        EXIT_FAIL
    } else {
        EXIT_PASS
    }
}

/// Runs every case of `fx` (each on a fresh subject); with `update`, writes
/// what each case observed into `fx.doc`.
fn run_fixture(fx: &mut Fixture, update: bool) -> SuiteReport {
    let mut cases = Vec::new();
    for (i, case) in fx.cases.iter().enumerate() {
        let t0 = Instant::now();
        let end = match expect::run_case(&fx.subject, case) {
            Err(e) => CaseEnd::Error(e.to_string()),
            Ok(obs) if update => match update::write(&mut fx.doc, i, case, &obs) {
                Ok(()) => CaseEnd::Pass,
                Err(e) => CaseEnd::Error(e),
            },
            Ok(obs) => {
                let diff = expect::compare(&case.expect, &obs);
                match diff.is_empty() {
                    true => CaseEnd::Pass,
                    false => CaseEnd::Fail(diff),
                }
            }
        };
        match &end {
            CaseEnd::Pass if update => println!("  updated  {}", case.name),
            CaseEnd::Pass => println!("  ok       {}", case.name),
            CaseEnd::Fail(lines) => {
                println!("  FAIL     {}", case.name);
                for l in lines {
                    println!("           {l}");
                }
            }
            CaseEnd::Error(m) => println!("  ERROR    {}: {m}", case.name),
        }
        cases.push((case.name.clone(), end, t0.elapsed().as_secs_f64()));
    }
    SuiteReport {
        file: fx.path.display().to_string(),
        cases,
    }
}
