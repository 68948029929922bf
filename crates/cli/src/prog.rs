//! `skiff prog show | dump | run`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use skiff_object::{Object, ParseOptions, ProgType};
use skiff_vm::{Collection, LoadOptions, Vm};

use crate::maps;
use skiff::control::Request;

#[derive(Subcommand)]
pub enum ProgCmd {
    /// List the programs and maps of an object, or (--run) the programs
    /// attached in a running datapath.
    Show {
        #[arg(required_unless_present = "run")]
        object: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        json: bool,
        /// A running `skiff run --live` (NAME: /run/skiff/NAME.sock, or a path).
        #[arg(long, value_name = "NAME|PATH", conflicts_with = "object")]
        run: Option<String>,
    },
    /// Attach a program of OBJECT to a hook of a running datapath (the run
    /// loads and verifies it; maps pinned by name are shared).
    Attach(AttachArgs),
    /// Detach a program from a hook of a running datapath.
    Detach {
        /// A running `skiff run --live` (NAME or socket path).
        #[arg(long, value_name = "NAME|PATH")]
        run: String,
        /// NETNS/DEV (or DEV in netns host).
        #[arg(long)]
        dev: String,
        /// xdp, tc/ingress, tc/egress, netkit/primary or netkit/peer.
        #[arg(long)]
        hook: String,
        /// The program, when the hook has several.
        #[arg(long)]
        prog: Option<String>,
    },
    /// Disassemble a program, bpftool-style.
    Dump {
        object: PathBuf,
        #[arg(long)]
        prog: Option<String>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run a program once or N times on a packet, as BPF_PROG_TEST_RUN does.
    Run(RunArgs),
    /// Would the kernel load this? Runs the verifier on every program (exit 0:
    /// all accepted, 1: one refused, 2: the object cannot be read).
    Verify {
        object: PathBuf,
        #[arg(long)]
        prog: Option<String>,
        /// The kernel release whose rules apply: 5.15, 6.1, 6.6 or 6.18.
        #[arg(long)]
        kernel: Option<String>,
        #[command(flatten)]
        load: LoadArgs,
        /// One JSON object per program and line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AttachArgs {
    /// A running `skiff run --live` (NAME: /run/skiff/NAME.sock, or a path).
    #[arg(long, value_name = "NAME|PATH")]
    run: String,
    /// The eBPF object (ELF) holding the program.
    object: PathBuf,
    #[arg(long)]
    prog: String,
    /// NETNS/DEV (or DEV in netns host).
    #[arg(long)]
    dev: String,
    /// xdp, tc/ingress, tc/egress (tcx), netkit/primary or netkit/peer.
    #[arg(long)]
    hook: String,
    /// Take the place of the hook's program of the same name (or its only
    /// one), as bpf_link_update: no packet in flight is lost.
    #[arg(long)]
    replace: bool,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Program type for every program, whatever its section (as bpftool's `type`).
    #[arg(long = "type", value_enum)]
    prog_type: Option<TypeArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TypeArg {
    Xdp,
    Tc,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Engine {
    Interp,
    Jit,
}

#[derive(Args)]
pub struct RunArgs {
    object: PathBuf,
    #[arg(long)]
    prog: Option<String>,
    /// The packet, raw bytes starting at the Ethernet header.
    #[arg(long)]
    data_in: PathBuf,
    #[arg(long)]
    data_out: Option<PathBuf>,
    /// struct __sk_buff (TC) or struct xdp_md (XDP) image.
    #[arg(long)]
    ctx_in: Option<PathBuf>,
    #[arg(long)]
    ctx_out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// MAP KEY VALUE: hex bytes in memory order; VALUE may be prog:NAME.
    #[arg(long, num_args = 3, value_names = ["MAP", "KEY", "VALUE"], action = clap::ArgAction::Append)]
    map_update: Vec<String>,
    /// jit: native code compiled at load (the default); interp: the interpreter.
    #[arg(long, value_enum, default_value = "jit")]
    engine: Engine,
    #[command(flatten)]
    load: LoadArgs,
    #[arg(long)]
    json: bool,
    /// Run even a program the verifier refuses, with run-time checks on every
    /// access (the output says so).
    #[arg(long)]
    no_verify: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn parse(object: &Path, load: &LoadArgs) -> Result<Object> {
    let bytes = read(object, "object")?;
    let opts = ParseOptions {
        force_type: load.prog_type.map(|t| match t {
            TypeArg::Xdp => ProgType::Xdp,
            TypeArg::Tc => ProgType::SchedCls,
        }),
    };
    let obj = Object::parse_with(&bytes, &opts)
        .with_context(|| format!("loading {}", object.display()))?;
    for s in &obj.skipped {
        eprintln!("skiff: note: {}: {}", object.display(), s.note());
    }
    Ok(obj)
}

/// The possible CPUs of this machine (per-CPU maps hold one value each, as in the
/// kernel), from /sys/devices/system/cpu/possible.
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .rsplit(['-', ','])
                .next()
                .and_then(|n| n.parse::<usize>().ok())
        })
        .map(|n| n + 1)
        .unwrap_or(1)
}

fn pick_prog<'a>(obj: &'a Object, name: Option<&str>) -> Result<&'a skiff_object::Program> {
    let all = || {
        obj.programs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => obj
            .find_program(n)?
            .ok_or_else(|| anyhow!("no program named {n:?} in the object (programs: {})", all())),
        None => match obj.programs.as_slice() {
            [one] => Ok(one),
            [] => bail!("the object has no programs"),
            _ => bail!(
                "the object has several programs; choose one with --prog ({})",
                all()
            ),
        },
    }
}

pub fn main(cmd: ProgCmd) -> i32 {
    let (json_mode, res) = match cmd {
        ProgCmd::Show {
            run: Some(run),
            json,
            ..
        } => return skiff::control::client::main(&run, &Request::ProgShow { json }, json),
        ProgCmd::Show {
            object, load, json, ..
        } => match object {
            Some(o) => (json, show(&o, &load, json)),
            None => (json, Err(anyhow!("prog show wants an OBJECT or --run"))),
        },
        ProgCmd::Attach(a) => return attach_remote(a),
        ProgCmd::Detach {
            run,
            dev,
            hook,
            prog,
        } => {
            let req = Request::ProgDetach { dev, hook, prog };
            return skiff::control::client::main(&run, &req, false);
        }
        ProgCmd::Dump { object, prog, load } => (false, dump(&object, prog.as_deref(), &load)),
        ProgCmd::Run(args) => (args.json, run(&args)),
        ProgCmd::Verify {
            object,
            prog,
            kernel,
            load,
            json,
        } => {
            let a = crate::verify::VerifyArgs {
                object: &object,
                prog: prog.as_deref(),
                kernel: kernel.as_deref(),
                json,
            };
            return crate::verify::main(&a, parse(&object, &load));
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            if json_mode {
                println!(
                    "{}",
                    json!({"retval": null, "duration_ns": null, "duration": null, "data_out": null, "ctx_out": null, "maps": null, "error": msg})
                );
            } else {
                eprintln!("skiff: {msg}");
            }
            1
        }
    }
}

pub(crate) fn type_name(t: ProgType) -> &'static str {
    match t {
        ProgType::Xdp => "xdp",
        ProgType::SchedCls => "sched_cls",
        ProgType::SchedAct => "sched_act",
    }
}

/// `prog attach --run`: the object's path made absolute for the server.
fn attach_remote(a: AttachArgs) -> i32 {
    let object = match std::path::absolute(&a.object) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {}: {e}", a.object.display());
            return 1;
        }
    };
    let req = Request::ProgAttach {
        object,
        prog: a.prog,
        dev: a.dev,
        hook: a.hook,
        replace: a.replace,
    };
    skiff::control::client::main(&a.run, &req, false)
}

fn show(object: &Path, load: &LoadArgs, as_json: bool) -> Result<i32> {
    let obj = parse(object, load)?;
    // Each program's verdict; a load that fails for a reason not the verifier's
    // (a map type skiff lacks) leaves the verdicts unknown, the listing stands.
    let all = crate::verify::verdicts(&obj, skiff_vm::verifier::KernelVersion::LATEST);
    let verdict = |name: &str| -> Option<crate::verify::Verdict> {
        let (_, v) = all.as_ref().ok()?.iter().find(|(n, _)| n == name)?;
        Some(crate::verify::verdict_of(v))
    };
    if as_json {
        let progs: Vec<Value> = obj
            .programs
            .iter()
            .map(|p| json!({"name": p.name, "section": p.section, "type": type_name(p.prog_type), "insns": p.insns.len(),
                "verifier": verdict(&p.name).as_ref().map(crate::verify::verdict_json)}))
            .collect();
        let maps: Vec<Value> = obj
            .maps
            .iter()
            .map(|m| {
                let t = skiff_maps::MapType::from_kernel(m.map_type).map(|t| t.name()).unwrap_or("unknown");
                json!({"name": m.name, "type": t, "key_size": m.key_size, "value_size": m.value_size, "max_entries": m.max_entries, "flags": m.map_flags})
            })
            .collect();
        println!(
            "{}",
            json!({"license": obj.license, "programs": progs, "maps": maps})
        );
        return Ok(0);
    }
    println!(
        "license: {}",
        if obj.license.is_empty() {
            "(none)"
        } else {
            &obj.license
        }
    );
    println!("programs:");
    for p in &obj.programs {
        let v = verdict(&p.name)
            .as_ref()
            .map(crate::verify::verdict_text)
            .unwrap_or_else(|| "verifier not run".to_string());
        println!(
            "  {:<24} type {:<10} section {:<20} {} insns  {v}",
            p.name,
            type_name(p.prog_type),
            p.section,
            p.insns.len()
        );
    }
    if let Err(e) = &all {
        println!("verifier: not run: {e}");
    }
    println!("maps:");
    for m in &obj.maps {
        let t = skiff_maps::MapType::from_kernel(m.map_type)
            .map(|t| t.name())
            .unwrap_or("unknown");
        println!(
            "  {:<24} {:<16} key {:>3}B  value {:>5}B  max_entries {:<8} flags 0x{:x}",
            m.name, t, m.key_size, m.value_size, m.max_entries, m.map_flags
        );
    }
    Ok(0)
}

/// Names ld_imm64 map references by the object's map names.
struct ObjSymbols<'a>(&'a Object);

impl skiff_isa::Symbolizer for ObjSymbols<'_> {
    fn map_name(&self, src: u8, imm: i32, next_imm: i32) -> Option<String> {
        let name = || {
            self.0
                .maps
                .get(imm as usize)
                .map(|m| m.name.clone())
                .unwrap_or_else(|| format!("idx:{imm}"))
        };
        match src {
            skiff_isa::BPF_PSEUDO_MAP_IDX => Some(format!("map[{}]", name())),
            skiff_isa::BPF_PSEUDO_MAP_IDX_VALUE => {
                Some(format!("map[{}]+{}", name(), next_imm as u32))
            }
            _ => skiff_isa::RawSymbolizer.map_name(src, imm, next_imm),
        }
    }
}

fn dump(object: &Path, prog: Option<&str>, load: &LoadArgs) -> Result<i32> {
    let obj = parse(object, load)?;
    let p = pick_prog(&obj, prog)?;
    print!("{}", skiff_isa::disassemble(&p.insns, &ObjSymbols(&obj)));
    Ok(0)
}

fn verdict_name(t: ProgType, r: u32) -> String {
    let n = match t {
        ProgType::Xdp => match r {
            0 => "XDP_ABORTED",
            1 => "XDP_DROP",
            2 => "XDP_PASS",
            3 => "XDP_TX",
            4 => "XDP_REDIRECT",
            _ => "",
        },
        ProgType::SchedCls | ProgType::SchedAct => match r as i32 {
            -1 => "TC_ACT_UNSPEC",
            0 => "TC_ACT_OK",
            1 => "TC_ACT_RECLASSIFY",
            2 => "TC_ACT_SHOT",
            3 => "TC_ACT_PIPE",
            4 => "TC_ACT_STOLEN",
            5 => "TC_ACT_QUEUED",
            6 => "TC_ACT_REPEAT",
            7 => "TC_ACT_REDIRECT",
            8 => "TC_ACT_TRAP",
            _ => "",
        },
    };
    if n.is_empty() {
        format!("{}", r as i32)
    } else {
        format!("{n} ({})", r as i32)
    }
}

fn redirect_json(r: &skiff_net::Redirect) -> Value {
    use skiff_net::Redirect::*;
    match r {
        Ifindex { ifindex, ingress } => {
            json!({"kind": "ifindex", "ifindex": ifindex, "ingress": ingress})
        }
        Map {
            map_id,
            map_type,
            key,
            broadcast,
            exclude_ingress,
        } => json!({
            "kind": "map", "map": skiff_maps::Map::by_id(*map_id).map(|m| m.attr().name.clone()), "map_id": map_id, "map_type": map_type, "key": key,
            "broadcast": broadcast, "exclude_ingress": exclude_ingress
        }),
        Peer { ifindex } => json!({"kind": "peer", "ifindex": ifindex}),
        Neigh { ifindex, nexthop } => {
            json!({"kind": "neigh", "ifindex": ifindex, "nexthop": nexthop.map(|(f, a)| json!({"family": f, "addr": hex::encode(a)}))})
        }
    }
}

fn run(a: &RunArgs) -> Result<i32> {
    let engine = match a.engine {
        Engine::Jit => skiff_vm::Engine::Jit,
        Engine::Interp => skiff_vm::Engine::Interp,
    };
    let obj = parse(&a.object, &a.load)?;
    let spec = pick_prog(&obj, a.prog.as_deref())?;
    let coll = Collection::load(
        &obj,
        &LoadOptions {
            possible_cpus: possible_cpus(),
            engine,
            verify: !a.no_verify,
            ..skiff_net::load_options()
        },
    )?;
    let prog = coll.program(&spec.name)?.clone();
    let note = a
        .no_verify
        .then(|| crate::verify::not_verified_note(&prog.name, prog.refusal()));
    if let (Some(n), false) = (&note, a.json) {
        println!("{n}");
    }
    for u in a.map_update.chunks(3) {
        if let [m, k, v] = u {
            maps::update(&coll, m, k, v)?;
        }
    }
    let data_in = read(&a.data_in, "--data-in")?;
    let ctx_in = match &a.ctx_in {
        Some(p) => Some(read(p, "--ctx-in")?),
        None => None,
    };
    let mut vm = Vm::new(skiff_net::helper_table());
    vm.engine = engine;
    vm.env.set_programs(coll.programs.clone());
    let out = skiff_net::test_run::test_run(
        &mut vm,
        &prog,
        &skiff_net::test_run::TestRun {
            data_in: &data_in,
            ctx_in: ctx_in.as_deref(),
            repeat: a.repeat,
        },
    )
    .map_err(|e| anyhow!("the test run was refused: {e}"))?;
    if let Some(p) = &a.data_out {
        std::fs::write(p, &out.data_out)
            .with_context(|| format!("writing --data-out {}", p.display()))?;
    }
    if let (Some(p), Some(c)) = (&a.ctx_out, &out.ctx_out) {
        std::fs::write(p, c).with_context(|| format!("writing --ctx-out {}", p.display()))?;
    }
    if a.json {
        let exception = out.exception.as_ref().map(|e| json!({"prog": e.prog, "insn": e.pc, "message": e.error.to_string(), "count": out.exceptions}));
        let v = json!({
            "retval": out.retval,
            "duration_ns": out.duration_ns,
            // bpftool prog run -j's name for the same figure (ns per run)
            "duration": out.duration_ns,
            "data_out": hex::encode(&out.data_out),
            "ctx_out": out.ctx_out.as_ref().map(hex::encode),
            "maps": maps::maps_json(&coll),
            "redirect": out.redirect.as_ref().map(redirect_json),
            "exception": exception,
            "trace": vm.env.trace,
            "trace_dropped": vm.env.trace_dropped,
            "engine": if engine == skiff_vm::Engine::Jit { "jit" } else { "interp" },
            "jit": prog.jit_stats().map(|s| json!({"compile_ns": s.compile_time.as_nanos() as u64, "code_size": s.code_size, "functions": s.functions})),
            "not_verified": note,
            "error": null,
        });
        println!("{v}");
    } else {
        if vm.env.trace_dropped > 0 {
            println!("trace: ({} older lines dropped)", vm.env.trace_dropped);
        }
        // as trace_pipe ends the event: `bpf_trace_printk: MESSAGE`, one line
        for line in &vm.env.trace {
            let msg = skiff_net::core::trace::printk_message(line);
            println!("trace: {}: {msg}", skiff_net::core::trace::PRINTK);
        }
        if let Some(e) = &out.exception {
            println!(
                "exception: {e} ({} of {} runs aborted)",
                out.exceptions,
                a.repeat.max(1)
            );
        }
        if let Some(r) = &out.redirect {
            println!("redirect: {}", redirect_json(r));
        }
        if let Some(s) = prog.jit_stats() {
            eprintln!(
                "jit: {} bytes of native code in {} function(s), compiled in {} us",
                s.code_size,
                s.functions,
                s.compile_time.as_micros()
            );
        }
        println!(
            "retval: {}   duration: {} ns/run   data_out: {} bytes",
            verdict_name(prog.prog_type, out.retval),
            out.duration_ns,
            out.data_out.len()
        );
    }
    Ok(0)
}
