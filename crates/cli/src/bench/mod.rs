//! `skiff bench`: every corpus program timed in skiff's JIT, skiff's interpreter and
//! the kernel (BPF_PROG_TEST_RUN with `repeat`), on one core, median of several
//! measurement rounds each (a round measures every engine once, in turn).
//!
//! Both engines keep the context between the `repeat` runs of one test run (the
//! kernel's bpf_test_run never resets it), so a program that changes its packet would
//! leave its main path after the first run. The entries are chosen so that the
//! repeated runs stay on the main path: map contents that translate back and forth
//! (xdp_lb, tc_nat), or, for programs that grow the packet or its headroom, a
//! `batch`: a measurement is `min(repeat / batch, 100)` test runs of `batch` runs each.
//!
//! Every engine is timed in the steady state. A CPU that sat idle (the bench
//! waiting for clang, or in a load that sleeps) runs at about half speed for
//! the next tens of milliseconds here, longer than a measurement, and not
//! every engine's figure loses alike (xdp_empty: skiff's JIT 33 ns, the
//! kernel 37, then 20 and 28). So every object is compiled before the first
//! measurement, the CPU is kept busy a moment before it (`warm_up`), each row
//! starts with a round that is not kept, and the kernel's XDP test runs are
//! kept from sleeping (`hold`).
//!
//! The `corpus` bench target (crates/cli/benches/corpus.rs) runs the same corpus
//! through [`run`] with extra engines ([`Extra`]: rbpf's interpreter and JIT).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use skiff_kernel::{KernelObject, TestRun as KTestRun};
use skiff_object::{Object, ProgType};
use skiff_vm::{Collection, LoadOptions, Program, Vm};

/// The corpus: every program, its packet, map contents and context.
mod corpus;
/// `skiff bench --datapath`: packets per second through a topology.
pub mod datapath;
/// XDP programs kept in the kernel's dispatcher while timed.
mod hold;
/// Tables, summaries and JSON of the corpus bench.
mod report;
/// `skiff bench --datapath --suite`: the datapath against the kernel's.
pub mod suite;

pub use corpus::*;
use report::*;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Program runs per measurement (BPF_PROG_TEST_RUN's repeat).
    #[arg(long, default_value_t = 100_000)]
    pub repeat: u32,
    /// Measurement rounds (each engine once per round, after one round that is
    /// not kept); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Directory of the corpus sources (<stem>.c).
    #[arg(long, default_value = "bpf")]
    pub bpf_dir: PathBuf,
    /// Print the rows as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Print the table and its summary as Markdown (the table of BENCHMARKS.md).
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Only entries whose `object/prog/packet` contains this.
    #[arg(long)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub datapath: datapath::DatapathArgs,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            repeat: 100_000,
            runs: 5,
            bpf_dir: PathBuf::from("bpf"),
            json: false,
            markdown: false,
            filter: None,
            datapath: datapath::DatapathArgs::default(),
        }
    }
}

// ---------------------------------------------------------------------------
// skiff's engines. The bench runs every program in both (the four functions
// below are the only place that knows how to select an engine).

/// One of skiff's two engines.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SkiffEngine {
    Jit,
    Interp,
}

impl SkiffEngine {
    pub fn name(self) -> &'static str {
        match self {
            SkiffEngine::Jit => "skiff-jit",
            SkiffEngine::Interp => "skiff-interp",
        }
    }

    /// Err(reason) when this build of skiff-vm does not have the engine.
    fn supported(self) -> Result<(), String> {
        Ok(())
    }

    fn engine(self) -> skiff_vm::Engine {
        match self {
            SkiffEngine::Jit => skiff_vm::Engine::Jit,
            SkiffEngine::Interp => skiff_vm::Engine::Interp,
        }
    }

    fn load_options(self) -> LoadOptions {
        LoadOptions {
            possible_cpus: skiff_kernel::possible_cpus().unwrap_or(1),
            engine: self.engine(),
            ..skiff_net::load_options()
        }
    }

    fn select(self, vm: &mut Vm) {
        vm.engine = self.engine();
    }
}

/// Compile time and native code size of a program the JIT compiled.
#[derive(Clone, Copy, Debug)]
pub struct CompileStats {
    pub compile_time: Duration,
    pub code_size: usize,
}

fn jit_stats(prog: &Program) -> Option<CompileStats> {
    prog.jit_stats().map(|s| CompileStats {
        compile_time: s.compile_time,
        code_size: s.code_size,
    })
}

// ---------------------------------------------------------------------------
// Measurements.

/// One engine's result for an entry.
#[derive(Default, Clone)]
pub struct Side {
    /// ns per program run of each measurement.
    pub runs: Vec<f64>,
    /// The last run's return value (r0's low 32 bits).
    pub retval: Option<u32>,
    /// Why the engine has no figure ("not available: ...", "not supported: ...",
    /// or an error).
    pub error: Option<String>,
}

impl Side {
    pub fn median(&self) -> Option<f64> {
        if self.error.is_some() {
            return None;
        }
        median(&self.runs)
    }
    pub fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }
    /// The engine did not run the program by design (not an error of the run).
    fn absent(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.starts_with("not available") || e.starts_with("not supported"))
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s.get(n / 2).copied()
    } else {
        Some((s.get(n / 2 - 1)? + s.get(n / 2)?) / 2.0)
    }
}

pub struct Row {
    pub label: String,
    pub packet: &'static str,
    pub batch: u32,
    pub insns: Option<usize>,
    /// BPF instructions a run executes (measured in skiff's interpreter).
    pub executed: Option<u64>,
    pub jit: Side,
    pub interp: Side,
    pub kernel: Side,
    /// The JIT's compile time and code size for the entry program.
    pub compile: Option<CompileStats>,
    /// Engines of an [`Extra`], in its column order.
    pub extra: Vec<(String, Side)>,
}

impl Row {
    /// An engine's median over the kernel's.
    pub fn ratio(&self, s: &Side) -> Option<f64> {
        let (s, k) = (s.median()?, self.kernel.median()?);
        (k > 0.0).then(|| s / k)
    }
    /// Every engine that returned something, with its name.
    fn retvals(&self) -> Vec<(&str, u32)> {
        let mut v: Vec<(&str, u32)> = [
            ("skiff-jit", &self.jit),
            ("skiff-interp", &self.interp),
            ("kernel", &self.kernel),
        ]
        .into_iter()
        .filter_map(|(n, s)| Some((n, s.retval?)))
        .collect();
        v.extend(
            self.extra
                .iter()
                .filter_map(|(n, s)| Some((n.as_str(), s.retval?))),
        );
        v
    }
    /// The engines whose return value differs from the kernel's (or, without
    /// the kernel, from the interpreter's).
    pub fn retval_mismatch(&self) -> Vec<String> {
        let reference = self.kernel.retval.or(self.interp.retval);
        let Some(r) = reference else {
            return Vec::new();
        };
        self.retvals()
            .into_iter()
            .filter(|(_, v)| *v != r)
            .map(|(n, v)| format!("{n} returned {} (reference {})", v as i32, r as i32))
            .collect()
    }
}

/// At most this many test runs per measurement of a batched entry: the kernel's XDP
/// test run with repeat > 1 installs the program in the XDP dispatcher and removes
/// it again (net/bpf/test_run.c: bpf_prog_change_xdp), two synchronize_rcu() of
/// about 10 ms each, outside the timed loop but in the wall time.
const MAX_BATCH_CALLS: u32 = 100;

/// The test runs one measurement makes: `repeat` runs in one, or for a batched
/// entry `min(repeat / batch, MAX_BATCH_CALLS)` test runs of `batch` runs.
pub fn chunks(repeat: u32, batch: u32) -> Vec<u32> {
    let repeat = repeat.max(1);
    if batch == 0 || batch >= repeat {
        return vec![repeat];
    }
    vec![batch; (repeat / batch).min(MAX_BATCH_CALLS) as usize]
}

struct SkiffSide {
    vm: Vm,
    prog: Arc<Program>,
}

fn skiff_load(obj: &Object, en: &Entry, engine: SkiffEngine) -> Result<SkiffSide, String> {
    engine.supported()?;
    let coll = Collection::load(obj, &engine.load_options()).map_err(|e| format!("load: {e}"))?;
    for (map, key, val) in &en.all_updates() {
        let m = coll.map(map).map_err(|e| format!("map {map}: {e}"))?;
        let r = match val {
            Val::Bytes(v) => m.sys_update(key, v, 0),
            Val::Prog(p) => {
                let id = coll.program(p).map_err(|e| format!("{e}"))?.id;
                m.sys_update_prog(key, id, 0)
            }
        };
        r.map_err(|errno| {
            format!(
                "update of map {map}: {} (errno {})",
                std::io::Error::from_raw_os_error(errno.abs()),
                errno.abs()
            )
        })?;
    }
    let prog = coll.program(en.prog).map_err(|e| format!("{e}"))?.clone();
    let mut vm = Vm::new(skiff_net::helper_table());
    vm.env.set_programs(coll.programs.clone());
    engine.select(&mut vm);
    Ok(SkiffSide { vm, prog })
}

/// One skiff test run of `repeat` runs (trace output is not kept: bench prints none).
fn test_run(
    s: &mut SkiffSide,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    repeat: u32,
) -> Result<skiff_net::test_run::TestRunOutput, skiff_net::test_run::Refused> {
    let out = skiff_net::test_run::test_run(
        &mut s.vm,
        &s.prog,
        &skiff_net::test_run::TestRun {
            data_in: pkt,
            ctx_in: ctx,
            repeat,
        },
    );
    s.vm.env.trace.clear();
    out
}

/// Nanoseconds this thread has waited on a run queue (runnable, another task on
/// its CPU) since it started: the second field of /proc/thread-self/schedstat
/// (kernel/sched/stats.h: sched_info_arrive adds each wait when the thread gets
/// the CPU back, so a reading taken while running is complete). None without
/// CONFIG_SCHED_INFO.
pub fn run_delay_ns() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    thread_local! {
        // Opened once per thread (the path names the thread that opens it):
        // a reading is one pread, not a path walk, an open and a close right
        // before a timed loop (a batched entry reads it around every test run).
        static SCHEDSTAT: Option<std::fs::File> =
            std::fs::File::open("/proc/thread-self/schedstat").ok();
    }
    SCHEDSTAT.with(|f| {
        let mut buf = [0u8; 128];
        let n = f.as_ref()?.read_at(&mut buf, 0).ok()?;
        let s = std::str::from_utf8(&buf[..n]).ok()?;
        s.split_whitespace().nth(1)?.parse().ok()
    })
}

/// Wall time minus the time the thread waited for its CPU in between: what the
/// kernel's bpf_test_timer counts (it stops the clock when the test run
/// reschedules), so a busy machine does not inflate userspace engines' figures
/// against the kernel's. Never below 0.
pub fn on_cpu_ns(wall_ns: f64, delay_before: Option<u64>, delay_after: Option<u64>) -> f64 {
    let waited = match (delay_before, delay_after) {
        (Some(b), Some(a)) => a.saturating_sub(b) as f64,
        _ => 0.0,
    };
    (wall_ns - waited).max(0.0)
}

/// One measurement in skiff: ns per run (skiff's own timing of the runs, less the
/// time the thread waited for its CPU), last retval.
fn skiff_measure(
    s: &mut SkiffSide,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    calls: &[u32],
) -> Result<(f64, u32), String> {
    let (mut total, mut runs, mut retval) = (0f64, 0f64, 0);
    for &n in calls {
        // The wait for the CPU around this test run only: one around all of
        // a batched entry's would take waits between its timed loops off them.
        let d0 = run_delay_ns();
        let out = test_run(s, pkt, ctx, n).map_err(|e| format!("test run refused: {e}"))?;
        if let Some(ex) = &out.exception {
            return Err(format!("{} of {n} runs aborted: {ex}", out.exceptions));
        }
        total += on_cpu_ns(out.duration_ns as f64 * f64::from(n), d0, run_delay_ns());
        runs += f64::from(n);
        retval = out.retval;
    }
    Ok((total / runs, retval))
}

/// BPF instructions one run executes in skiff (bpf_loop callbacks and tail calls
/// included): the smallest instruction budget the run completes within, by
/// bisection over single runs. None when even a large budget does not suffice or the
/// run fails otherwise.
fn executed_insns(s: &mut SkiffSide, pkt: &[u8], ctx: Option<&[u8]>) -> Option<u64> {
    let saved = s.vm.env.budget;
    let completes = |budget: u64, s: &mut SkiffSide| -> Option<bool> {
        s.vm.env.budget = budget;
        let out = test_run(s, pkt, ctx, 1).ok()?;
        match &out.exception {
            None => Some(true),
            Some(e) if matches!(e.error, skiff_vm::VmError::Budget(_)) => Some(false),
            Some(_) => None,
        }
    };
    let (mut lo, mut hi) = (0u64, 1u64 << 20);
    let found = if completes(hi, s) == Some(true) {
        // invariant: lo does not complete, hi does
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match completes(mid, s) {
                Some(true) => hi = mid,
                Some(false) => lo = mid,
                None => break,
            }
        }
        (hi - lo == 1).then_some(hi)
    } else {
        None
    };
    s.vm.env.budget = saved;
    found
}

fn kernel_load(obj: &Object, en: &Entry) -> Result<KernelObject, String> {
    let k = KernelObject::load(obj).map_err(|e| format!("load: {e}"))?;
    for (map, key, val) in &en.all_updates() {
        match val {
            Val::Bytes(v) => k.map_update(map, key, v, 0),
            Val::Prog(p) => k.map_update_prog(map, key, p),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(k)
}

fn kernel_measure(
    k: &KernelObject,
    prog: &str,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    calls: &[u32],
) -> Result<(f64, u32), String> {
    let (mut total, mut runs, mut retval) = (0f64, 0f64, 0);
    // Room for programs that grow the frame (tc_helpers, tc_vlan, xdp_encap).
    let data_size_out = u32::try_from(pkt.len() + 4096).map_err(|e| e.to_string())?;
    let ctx_size_out = 0;
    for &n in calls {
        let r = k
            .test_run(
                prog,
                &KTestRun {
                    data_in: pkt,
                    ctx_in: ctx,
                    repeat: n,
                    data_size_out,
                    ctx_size_out,
                },
            )
            .map_err(|e| e.to_string())?;
        total += f64::from(r.duration_ns) * f64::from(n);
        runs += f64::from(n);
        retval = r.retval;
    }
    Ok((total / runs, retval))
}

pub fn compile(dir: &Path, stem: &str) -> Result<Object, String> {
    let out = std::env::temp_dir().join("skiff-bench-bpf");
    let path = skiff_kernel::clang::compile(&dir.join(format!("{stem}.c")), &out)?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Object::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// What an [`Extra`] engine gets for one entry.
pub struct ExtraInput<'a> {
    pub entry: &'a Entry,
    /// The entry program as skiff loaded it (`code`: linked, ld_imm64 resolved).
    pub prog: &'a Program,
    pub packet: &'a [u8],
    /// Runs per measurement.
    pub repeat: u32,
}

/// Further engines a caller times alongside skiff's and the kernel's (the `corpus`
/// bench target: rbpf).
pub trait Extra {
    /// Column names, one per engine.
    fn columns(&self) -> Vec<String>;
    /// Prepares one entry: one state per column, or why that engine cannot run it
    /// ("not supported: ...").
    fn prepare(&mut self, input: &ExtraInput) -> Vec<Result<Box<dyn ExtraRun>, String>>;
}

/// One engine prepared for one entry.
pub trait ExtraRun {
    /// One measurement of `repeat` runs: ns per run (on the CPU: [`on_cpu_ns`])
    /// and the last r0's low 32 bits.
    fn measure(&mut self, repeat: u32) -> Result<(f64, u32), String>;
}

fn bench_entry(
    en: &Entry,
    obj: Result<&Object, &String>,
    a: &BenchArgs,
    kernel_ok: &Result<(), String>,
    hold: Option<&hold::XdpHold>,
    extra: &mut Option<&mut dyn Extra>,
) -> Row {
    let extra_cols = extra.as_ref().map(|x| x.columns()).unwrap_or_default();
    let mut row = Row {
        label: en.label(),
        packet: en.packet,
        batch: en.batch,
        insns: None,
        executed: None,
        jit: Side::default(),
        interp: Side::default(),
        kernel: Side::default(),
        compile: None,
        extra: extra_cols
            .into_iter()
            .map(|n| (n, Side::default()))
            .collect(),
    };
    let fail_all = |row: &mut Row, msg: &str| {
        row.jit.fail(msg.to_string());
        row.interp.fail(msg.to_string());
        row.kernel.fail(msg.to_string());
        for (_, s) in &mut row.extra {
            s.fail(msg.to_string());
        }
    };
    let obj = match obj {
        Ok(o) => o,
        Err(msg) => {
            fail_all(&mut row, &format!("compile: {msg}"));
            return row;
        }
    };
    row.insns = obj.program(en.prog).map(|p| p.insns.len());
    let Some(pkt) = packet(en.packet) else {
        fail_all(&mut row, &format!("no packet named {:?}", en.packet));
        return row;
    };
    let calls = chunks(a.repeat, en.batch);
    let ctx = en.ctx_in.as_deref();
    let load = |engine: SkiffEngine, side: &mut Side| match skiff_load(obj, en, engine) {
        Ok(s) => Some(s),
        Err(msg) => {
            side.fail(msg);
            None
        }
    };
    let mut jit = load(SkiffEngine::Jit, &mut row.jit);
    let mut interp = load(SkiffEngine::Interp, &mut row.interp);
    row.compile = jit.as_ref().and_then(|s| jit_stats(&s.prog));
    let ko = match kernel_ok {
        Err(reason) => {
            row.kernel.fail(format!("not available: {reason}"));
            None
        }
        Ok(()) => match kernel_load(obj, en) {
            Ok(k) => Some(k),
            Err(msg) => {
                row.kernel.fail(msg);
                None
            }
        },
    };
    // (Dropped with the row: the program leaves the dispatcher.)
    let _held = match (hold, &ko) {
        (Some(h), Some(k)) if obj.program(en.prog).map(|p| p.prog_type) == Some(ProgType::Xdp) => h
            .hold(k, en.prog)
            .map_err(|e| eprintln!("skiff bench: warning: {e}"))
            .ok(),
        _ => None,
    };
    let mut extra_runs: Vec<Option<Box<dyn ExtraRun>>> = Vec::new();
    if let (Some(x), Some(s)) = (extra.as_mut(), interp.as_ref()) {
        let input = ExtraInput {
            entry: en,
            prog: &s.prog,
            packet: &pkt,
            repeat: a.repeat,
        };
        for (i, r) in x.prepare(&input).into_iter().enumerate() {
            match r {
                Ok(run) => extra_runs.push(Some(run)),
                Err(msg) => {
                    if let Some((_, side)) = row.extra.get_mut(i) {
                        side.fail(msg);
                    }
                    extra_runs.push(None);
                }
            }
        }
    } else {
        for (_, side) in &mut row.extra {
            side.fail("not supported: skiff could not load the program".into());
        }
    }
    // Round 0 is not kept: it brings the CPU up to speed (see the module's
    // doc) after the row's loading, which sleeps in places.
    for round in 0..=a.runs.max(1) {
        let record = |side: &mut Side, r: Result<(f64, u32), String>| match r {
            Ok((ns, ret)) => {
                if round > 0 {
                    side.runs.push(ns);
                }
                side.retval = Some(ret);
            }
            Err(msg) => side.fail(msg),
        };
        if let Some(s) = jit.as_mut().filter(|_| row.jit.error.is_none()) {
            record(&mut row.jit, skiff_measure(s, &pkt, ctx, &calls));
        }
        if let Some(s) = interp.as_mut().filter(|_| row.interp.error.is_none()) {
            record(&mut row.interp, skiff_measure(s, &pkt, ctx, &calls));
        }
        if let Some(k) = ko.as_ref().filter(|_| row.kernel.error.is_none()) {
            record(
                &mut row.kernel,
                kernel_measure(k, en.prog, &pkt, ctx, &calls),
            );
        }
        for (i, run) in extra_runs.iter_mut().enumerate() {
            if let (Some(run), Some((_, side))) = (run.as_mut(), row.extra.get_mut(i)) {
                if side.error.is_none() {
                    record(side, run.measure(a.repeat));
                }
            }
        }
    }
    if let Some(s) = interp.as_mut().filter(|_| row.interp.error.is_none()) {
        row.executed = executed_insns(s, &pkt, ctx);
    }
    row
}

/// How long the CPU is kept busy before the first measurement.
const WARM_UP: Duration = Duration::from_millis(300);

/// Keeps the CPU busy for `WARM_UP`, so the first row is timed at the speed
/// the others are (the module's doc).
fn warm_up() {
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed() < WARM_UP {
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    std::hint::black_box(x);
}

/// Runs every entry (the filtered ones), printing as it goes in the format `a`
/// asks for, and returns the rows.
pub fn run(a: &BenchArgs, mut extra: Option<&mut dyn Extra>) -> Vec<Row> {
    // Both engines on one core: the kernel's BPF_PROG_TEST_RUN runs on the caller's CPU.
    if let Err(e) = skiff_kernel::pin_current_thread(0) {
        eprintln!("skiff bench: warning: cannot pin to CPU 0: {e}");
    }
    let kernel_ok = skiff_kernel::available();
    let hold = kernel_ok.as_ref().ok().and_then(|_| {
        hold::XdpHold::new()
            .map_err(|e| eprintln!("skiff bench: warning: XDP programs are not kept in the dispatcher ({e}): each kernel test run waits for two RCU grace periods"))
            .ok()
    });
    let extra_cols = extra.as_ref().map(|x| x.columns()).unwrap_or_default();
    let head = header(&extra_cols);
    let chosen: Vec<Entry> = entries()
        .into_iter()
        .filter(|en| {
            let key = format!("{}/{}", en.label(), en.packet);
            a.filter.as_ref().is_none_or(|f| key.contains(f.as_str()))
        })
        .collect();
    // Every object compiled before any measurement: the CPU waits idle for
    // clang, and a row measured after would start cold.
    let mut objects: HashMap<&'static str, Result<Object, String>> = HashMap::new();
    for en in &chosen {
        objects
            .entry(en.object)
            .or_insert_with(|| compile(&a.bpf_dir, en.object));
    }
    warm_up();
    let mut rows = Vec::new();
    for en in chosen {
        let Some(obj) = objects.get(en.object) else {
            continue;
        };
        let row = bench_entry(&en, obj.as_ref(), a, &kernel_ok, hold.as_ref(), &mut extra);
        if a.markdown {
            if rows.is_empty() {
                println!("{}", md_line(&head));
                println!("{}", md_line(&vec!["---".to_string(); head.len()]));
            }
            println!("{}", md_line(&cells(&row)));
        } else if !a.json {
            if rows.is_empty() {
                println!("{}", text_line(&head, extra_cols.len()));
            }
            println!("{}", text_line(&cells(&row), extra_cols.len()));
        }
        rows.push(row);
    }
    if a.json {
        println!(
            "{}",
            Value::Array(rows.iter().map(row_json).collect::<Vec<_>>())
        );
        return rows;
    }
    println!();
    for l in summary(&rows, &kernel_ok) {
        match (a.markdown, l.strip_prefix(SUB)) {
            (true, Some(sub)) => println!("  - {sub}"),
            (true, None) => println!("- {l}"),
            (false, Some(sub)) => println!("  {sub}"),
            (false, None) => println!("{l}"),
        }
    }
    rows
}

pub fn main(a: BenchArgs) -> i32 {
    if a.datapath.datapath {
        return datapath::main(&a);
    }
    let rows = run(&a, None);
    // A return value that differs between engines is a bug: exit 1.
    if rows.iter().any(|r| !r.retval_mismatch().is_empty()) {
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_have_their_sizes_and_the_packets_keys() {
        let f = l4lb_fill();
        let flows: Vec<_> = f.iter().filter(|(m, _, _)| *m == "flows").collect();
        assert_eq!(flows.len(), 65536);
        let keys: std::collections::HashSet<_> = flows.iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys.len(), 65536);
        let own = [10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0x01, 0xbb, 6, 0, 0, 0];
        assert!(flows.iter().any(|(_, k, v)| k[..] == own && *v == u32k(5)));
        assert_eq!(f.iter().filter(|(m, _, _)| *m == "backends").count(), 64);

        let l = lpm_fill();
        assert_eq!(l.len(), 10_000);
        let keys: std::collections::HashSet<_> = l.iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys.len(), 10_000);
        // 10.0.0.1/30 -> drop, rule 6
        let mut k30 = 30u32.to_ne_bytes().to_vec();
        k30.extend_from_slice(&[10, 0, 0, 0]);
        let mut v30 = 1u32.to_ne_bytes().to_vec();
        v30.extend_from_slice(&6u32.to_ne_bytes());
        assert!(l.iter().any(|(_, k, v)| *k == k30 && *v == v30));
    }

    #[test]
    fn on_cpu_time_leaves_out_run_queue_waits() {
        assert_eq!(on_cpu_ns(1000.0, Some(50), Some(350)), 700.0);
        assert_eq!(on_cpu_ns(1000.0, Some(50), Some(5000)), 0.0);
        assert_eq!(on_cpu_ns(1000.0, None, Some(350)), 1000.0);
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            let (a, b) = (run_delay_ns(), run_delay_ns());
            assert!(a.is_some() && b >= a, "{a:?} {b:?}");
        }
    }

    #[test]
    fn full_mtu_packet_and_chunks() {
        assert_eq!(packet("ipv4_udp_1500").map(|p| p.len()), Some(1514));
        assert_eq!(chunks(100_000, 0), vec![100_000]);
        assert_eq!(chunks(100_000, 8), vec![8; 100]);
        assert_eq!(chunks(5, 8), vec![5]);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    /// The heavier corpus programs run in skiff (and in the kernel when there is
    /// one) with the expected return values, the same in every engine.
    #[test]
    fn heavy_corpus_runs_with_expected_return_values() {
        if let Err(why) = skiff_kernel::clang::available() {
            eprintln!("SKIPPED: {why}");
            return;
        }
        let a = BenchArgs {
            repeat: 20,
            runs: 1,
            bpf_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf"),
            filter: Some("bench_".into()),
            json: true,
            ..BenchArgs::default()
        };
        let rows = run(&a, None);
        let got: Vec<(String, Option<u32>)> = rows
            .iter()
            .map(|r| (r.label.clone(), r.interp.retval))
            .collect();
        let want = [
            ("bench_empty/xdp_empty", 2),   // XDP_PASS
            ("bench_parse/xdp_parse", 2),   // XDP_PASS: port 443
            ("bench_l4lb/xdp_l4lb", 3),     // XDP_TX: flow found in the full table
            ("bench_lpm_fw/xdp_lpm_fw", 1), // XDP_DROP: the /30 rule
            ("bench_tailchain/stage0", 3),  // XDP_TX: all 8 stages passed
            ("bench_pktloop/xdp_pktloop", 1),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(l, r)| (l.to_string(), Some(*r)))
                .collect::<Vec<_>>()
        );
        for r in &rows {
            assert_eq!(r.retval_mismatch(), Vec::<String>::new(), "{}", r.label);
            assert_eq!(r.interp.error, None, "{}", r.label);
        }
    }
}

/// Running corpus programs in engines that have no maps, no kernel helpers and no
/// kernel context (rbpf, for the `corpus` bench target): which programs can run,
/// and the context rewrite the kernel's verifier would do.
pub mod nokernel {
    use skiff_isa::Insn;
    use skiff_object::ProgType;

    // Instruction classes and fields (include/uapi/linux/bpf.h).
    const BPF_LD: u8 = 0x00;
    const BPF_LDX: u8 = 0x01;
    const BPF_ST: u8 = 0x02;
    const BPF_STX: u8 = 0x03;
    const BPF_ALU: u8 = 0x04;
    const BPF_JMP: u8 = 0x05;
    const BPF_JMP32: u8 = 0x06;
    const BPF_ALU64: u8 = 0x07;
    const BPF_MEM: u8 = 0x60;
    const BPF_ATOMIC: u8 = 0xc0;
    const BPF_W: u8 = 0x00;
    const BPF_DW: u8 = 0x18;
    const BPF_CALL: u8 = 0x80;
    const BPF_EXIT: u8 = 0x90;
    const BPF_JA: u8 = 0x00;
    const MOV64_X: u8 = 0xbf;
    const BPF_FUNC_TAIL_CALL: i32 = 12;

    /// `struct xdp_md` offsets of the three pointer fields (u32 in the UAPI, pointers
    /// after the kernel's rewrite).
    const XDP_PTR_FIELDS: [i16; 3] = [0, 4, 8];
    /// `sizeof(struct xdp_md)`.
    const XDP_MD_SIZE: i16 = 24;

    /// Why rbpf cannot run this program, if it cannot.
    pub fn unsupported(prog: &skiff_vm::Program) -> Option<String> {
        if !prog.maps.is_empty() {
            return Some(format!(
                "not supported: rbpf has no maps ({} uses maps)",
                prog.name
            ));
        }
        if prog.prog_type != ProgType::Xdp {
            return Some("not supported: rbpf knows no __sk_buff (TC) context".into());
        }
        for (i, insn) in prog.code.iter().enumerate() {
            let class = insn.class();
            if insn.code == BPF_JMP | BPF_CALL && insn.src == 0 {
                return Some(if insn.imm == BPF_FUNC_TAIL_CALL {
                    format!("not supported: rbpf has no tail calls (insn {i})")
                } else {
                    format!(
                        "not supported: rbpf has none of the kernel's helpers (helper {} at insn {i})",
                        insn.imm
                    )
                });
            }
            if (class == BPF_STX || class == BPF_ST) && insn.code & 0xe0 == BPF_ATOMIC {
                return Some(format!(
                    "not supported: rbpf has no atomic instructions (insn {i})"
                ));
            }
        }
        None
    }

    /// Which registers hold the context pointer before each instruction (bit r),
    /// by a forward data-flow pass over the program and its subprograms (meet:
    /// intersection). r1 holds it at entry; `mov64 rX, rY` copies it; a call
    /// clobbers r0-r5 and passes r1-r5 to a subprogram.
    fn ctx_regs(code: &[Insn]) -> Vec<Option<u16>> {
        let n = code.len();
        let mut state: Vec<Option<u16>> = vec![None; n];
        let mut work = vec![0usize];
        if let Some(s) = state.get_mut(0) {
            *s = Some(1 << 1);
        }
        let merge = |state: &mut Vec<Option<u16>>, work: &mut Vec<usize>, pc: usize, m: u16| {
            if let Some(slot) = state.get_mut(pc) {
                let new = slot.map_or(m, |old| old & m);
                if *slot != Some(new) {
                    *slot = Some(new);
                    work.push(pc);
                }
            }
        };
        while let Some(pc) = work.pop() {
            let (Some(insn), Some(Some(m))) = (code.get(pc), state.get(pc).copied()) else {
                continue;
            };
            let dst = 1u16 << (insn.dst & 0x0f);
            let src = 1u16 << (insn.src & 0x0f);
            let class = insn.class();
            let next = pc + 1;
            let jump = |off: i64| usize::try_from(pc as i64 + 1 + off).ok();
            match class {
                // ld_imm64 (two slots) sets dst
                BPF_LD if insn.code == 0x18 => merge(&mut state, &mut work, pc + 2, m & !dst),
                // legacy LD_ABS/LD_IND: r0 set, r1-r5 clobbered as by a call
                BPF_LD => merge(&mut state, &mut work, next, m & !0b11_1111),
                BPF_LDX => merge(&mut state, &mut work, next, m & !dst),
                BPF_ST | BPF_STX => merge(&mut state, &mut work, next, m),
                BPF_ALU | BPF_ALU64 => {
                    let out = if insn.code == MOV64_X && m & src != 0 {
                        m | dst
                    } else {
                        m & !dst
                    };
                    merge(&mut state, &mut work, next, out);
                }
                BPF_JMP | BPF_JMP32 => {
                    let op = insn.op();
                    if op == BPF_EXIT {
                        continue;
                    }
                    if op == BPF_CALL {
                        if insn.src == 1 {
                            if let Some(t) = jump(i64::from(insn.imm)) {
                                merge(&mut state, &mut work, t, m & 0b11_1110);
                            }
                        }
                        merge(&mut state, &mut work, next, m & !0b11_1111);
                        continue;
                    }
                    if op == BPF_JA {
                        let off = if class == BPF_JMP32 {
                            i64::from(insn.imm)
                        } else {
                            i64::from(insn.off)
                        };
                        if let Some(t) = jump(off) {
                            merge(&mut state, &mut work, t, m);
                        }
                        continue;
                    }
                    if let Some(t) = jump(i64::from(insn.off)) {
                        merge(&mut state, &mut work, t, m);
                    }
                    merge(&mut state, &mut work, next, m);
                }
                _ => {}
            }
        }
        state
    }

    /// The program with its `struct xdp_md` accesses rewritten for rbpf's metadata
    /// buffer, where field `off` lives at `2 * off` (the pointer fields as 64-bit
    /// values). Err when the program writes the context or reads it in a way the
    /// rewrite does not cover.
    pub fn rewrite_xdp_ctx(code: &[Insn]) -> Result<Vec<Insn>, String> {
        let regs = ctx_regs(code);
        let mut out = code.to_vec();
        for (i, insn) in out.iter_mut().enumerate() {
            let m = regs.get(i).copied().flatten().unwrap_or(0);
            let class = insn.class();
            if class == BPF_LDX && m & (1 << (insn.src & 0x0f)) != 0 {
                if insn.code & 0xe0 != BPF_MEM || insn.off < 0 || insn.off >= XDP_MD_SIZE {
                    return Err(format!(
                        "not supported: context access the rewrite does not cover (insn {i})"
                    ));
                }
                if XDP_PTR_FIELDS.contains(&insn.off) {
                    if insn.size() != BPF_W {
                        return Err(format!(
                            "not supported: narrow load of an xdp_md pointer (insn {i})"
                        ));
                    }
                    insn.code = BPF_LDX | BPF_MEM | BPF_DW;
                }
                insn.off *= 2;
            } else if (class == BPF_ST || class == BPF_STX) && m & (1 << (insn.dst & 0x0f)) != 0 {
                return Err(format!("not supported: writes the context (insn {i})"));
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
            Insn::new(code, dst, src, off, imm)
        }

        #[test]
        fn ctx_loads_follow_copies_and_become_wide() {
            let code = [
                i(MOV64_X, 6, 1, 0, 0), // r6 = r1
                i(0x61, 2, 6, 4, 0),    // r2 = *(u32 *)(r6 + 4): data_end
                i(0x61, 3, 1, 12, 0),   // r3 = ingress_ifindex
                i(0xb7, 1, 0, 0, 0),    // r1 = 0: no longer ctx
                i(0x61, 4, 1, 0, 0),    // not a ctx load
                i(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
            ];
            let out = rewrite_xdp_ctx(&code).unwrap();
            assert_eq!(out[1], i(BPF_LDX | BPF_MEM | BPF_DW, 2, 6, 8, 0));
            assert_eq!(out[2], i(0x61, 3, 1, 24, 0));
            assert_eq!(out[4], code[4]);
        }

        #[test]
        fn ctx_store_is_refused() {
            let code = [i(0x63, 1, 2, 0, 0), i(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)];
            assert_eq!(
                rewrite_xdp_ctx(&code),
                Err("not supported: writes the context (insn 0)".into())
            );
        }
    }
}
