//! `skiff diff TOPOLOGY --pcap-in DEV=FILE ...`: the same topology built twice,
//! in skiff and in real network namespaces of this machine's kernel, the same
//! frames injected with the same timing, and where the two differ printed
//! frame by frame (out of each NIC) and map by map. The kernel is the
//! specification; docs/diff.md describes the output (its `--json` shape is a
//! contract).

mod attach;
pub mod compare;
mod inputs;
mod netns;
mod report;
mod side;

use std::path::PathBuf;

use skiff_topology::Topology;

pub use compare::{compare, Comparison};
pub use inputs::{read as read_inputs, Frame};
pub use side::{run_skiff, MapKind, SideResult, SkiffRun};

/// Exit codes: identical, different, could not run.
pub const EXIT_IDENTICAL: i32 = 0;
pub const EXIT_DIFFERENT: i32 = 1;
pub const EXIT_CANNOT_RUN: i32 = 2;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The topology file (docs/topology.md).
    pub topology: PathBuf,
    /// Frames a NIC receives from the wire: DEV=FILE (pcap or pcapng), DEV is
    /// NAME (namespace "host") or NETNS/NAME. Repeatable; frames of all files
    /// are sent in timestamp order with their inter-frame gaps.
    #[arg(long = "pcap-in", value_name = "DEV=FILE", required = true)]
    pub pcap_in: Vec<String>,
    /// One JSON object on stdout (docs/diff.md), nothing else.
    #[arg(long)]
    pub json: bool,
    /// Leave the kernel's namespaces (and pinned programs) in place after the
    /// run, to look at them with `ip`, `tc`, `bpftool`; the command to remove
    /// them is printed.
    #[arg(long)]
    pub keep: bool,
}

/// Why a diff could not run (exit 2).
#[derive(Debug)]
pub struct CannotRun(pub String);

impl<E: std::fmt::Display> From<E> for CannotRun {
    fn from(e: E) -> Self {
        CannotRun(e.to_string())
    }
}

pub fn main(a: DiffArgs) -> i32 {
    match run(&a) {
        Ok(c) => {
            report::print(&c, a.json);
            match c.identical() {
                true => EXIT_IDENTICAL,
                false => EXIT_DIFFERENT,
            }
        }
        Err(CannotRun(why)) => {
            report::print_error(&why, a.json);
            EXIT_CANNOT_RUN
        }
    }
}

/// Both sides run and compared.
fn run(a: &DiffArgs) -> Result<Comparison, CannotRun> {
    preconditions()?;
    let topology = Topology::load(&a.topology)?;
    let frames = inputs::read(&a.pcap_in)?;
    let mut skiff = side::run_skiff(&topology, &frames)?;
    skiff_kernel::live::catch_interrupts()?;
    let mut kernel = netns::KernelTopology::build(&topology, &skiff.devices)?;
    let outcome = kernel.run(&topology, &frames);
    let mut notes = kernel.notes.clone();
    if a.keep {
        notes.push(kernel.keep());
    }
    let (kernel_side, window) = outcome?;
    if skiff_kernel::live::interrupted() {
        return Err(CannotRun("interrupted (SIGINT/SIGTERM)".into()));
    }
    notes.extend(skiff.trim(window));
    let kinds = side::map_kinds(&topology);
    let mut c = compare(&skiff.result, &kernel_side, &kinds);
    c.notes = notes;
    c.namespaces = kernel.namespace_names();
    Ok(c)
}

/// Root, `ip` and `tc`: what building the kernel side needs.
fn preconditions() -> Result<(), CannotRun> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err(CannotRun(
            "not root: building the topology in network namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF)".into(),
        ));
    }
    for tool in ["ip", "tc", "nsenter"] {
        if std::process::Command::new(tool).arg("-V").output().is_err() {
            return Err(CannotRun(format!(
                "no `{tool}` binary (apt-get install iproute2 util-linux)"
            )));
        }
    }
    Ok(())
}
