//! XDP programs kept in the kernel's XDP dispatcher while the bench times them.
//!
//! An XDP test run with repeat > 1 installs its program in the dispatcher and
//! removes it afterwards (net/bpf/test_run.c: bpf_prog_change_xdp), and each
//! change of the dispatcher waits out an RCU grace period
//! (kernel/bpf/dispatcher.c: bpf_dispatcher_update). Outside the timed loop,
//! but the CPU sits idle through both: about 15 ms per test run here, against
//! 5 ms of timed runs. Every measurement after one, the kernel's own and
//! skiff's next, then starts on a CPU that was idle, and short ones are timed
//! before it is up to speed again (devhash: kernel 58 ns, skiff 66, against 43
//! and 40 when the measurements are long enough not to notice).
//!
//! A program the dispatcher holds already is only counted once more
//! (bpf_dispatcher_add_prog), which changes nothing and waits for nothing.
//! So while an XDP entry is measured, its program stays attached (generic
//! XDP, through a BPF link) to a veth device in a network namespace of the
//! bench's own, which no packet ever enters: every engine is timed in the
//! steady state.

use std::os::fd::OwnedFd;

use skiff_kernel::live::LinkAttach;
use skiff_kernel::netns::Netns;
use skiff_kernel::KernelObject;

/// The namespace and device the programs are attached to (deleted on drop).
pub struct XdpHold {
    ns: Netns,
    ifindex: u32,
}

impl XdpHold {
    /// A namespace `skiff-bench-PID` with a veth pair.
    pub fn new() -> Result<XdpHold, String> {
        let ns = Netns::add(&format!("skiff-bench-{}", std::process::id()))
            .map_err(|e| e.to_string())?;
        ns.ip(&[
            "link", "add", "hold0", "type", "veth", "peer", "name", "hold1",
        ])
        .map_err(|e| e.to_string())?;
        let ifindex = ns.ifindex("hold0").map_err(|e| e.to_string())?;
        Ok(XdpHold { ns, ifindex })
    }

    /// Program `prog` of `k` in the dispatcher for as long as the returned
    /// link lives.
    pub fn hold(&self, k: &KernelObject, prog: &str) -> Result<OwnedFd, String> {
        self.ns
            .within(|| k.link_create(prog, self.ifindex, LinkAttach::XdpGeneric))
            .map_err(|e| format!("holding {prog} in the XDP dispatcher: {e}"))
    }
}
