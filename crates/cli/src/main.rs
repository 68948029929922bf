//! The `skiff` command: inspect, disassemble and run eBPF objects.
#![forbid(unsafe_code)]

mod conformance;
use skiff::maps;
mod prog;
mod run;
mod verify;

use clap::{Parser, Subcommand};
use skiff::bench;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "The Linux eBPF packet datapath, in userspace"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, disassemble and test-run programs of an eBPF object.
    #[command(subcommand)]
    Prog(prog::ProgCmd),
    /// Show, dump, look up, update and delete an object's maps, as bpftool does.
    #[command(subcommand)]
    Map(skiff::map::MapCmd),
    /// The bpf_conformance runner's plugin protocol: program bytes as hex on
    /// stdin, input memory as hex in the first argument, r0 in hex on stdout.
    ConformancePlugin {
        /// Input memory, hex bytes (spaces allowed).
        memory: Option<String>,
        /// Accepted for compatibility with the runner; ignored.
        #[arg(long, hide = true)]
        elf: bool,
    },
    /// Time each corpus program in skiff's JIT and interpreter and in the kernel (BPF_PROG_TEST_RUN repeat).
    Bench(bench::BenchArgs),
    /// Run a topology (docs/topology.md): replay pcaps into its devices, write what
    /// they transmit, print counters, drops and the packet-conservation totals.
    Run(run::RunArgs),
    /// Run fixture files (docs/fixtures.md): frames and map entries in, the
    /// expected verdicts, frames out, maps and drops checked. Exit 0 all pass,
    /// 1 a case failed, 2 a file could not be read or a case could not run.
    Test(skiff::test::TestArgs),
    /// Build a topology in real network namespaces too (root), inject the same
    /// frames into both, and print where skiff and the kernel differ
    /// (docs/diff.md). Exit 0 identical, 1 different, 2 could not run.
    Diff(skiff::diff::DiffArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Command::Prog(cmd) => prog::main(cmd),
        Command::Map(cmd) => skiff::map::main(cmd),
        Command::ConformancePlugin { memory, .. } => conformance::main(memory.as_deref()),
        Command::Bench(a) => bench::main(a),
        Command::Run(a) => run::main(a),
        Command::Test(a) => skiff::test::main(a),
        Command::Diff(a) => skiff::diff::main(a),
    };
    std::process::exit(code);
}
