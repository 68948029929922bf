//! Program section names -> program type, following libbpf's section_defs table
//! (tools/lib/bpf/libbpf.c) plus the prefix forms libbpf 0.x and iproute2 accepted.

use crate::{AttachType, ProgType};

/// What a section name says about its programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionKind {
    pub prog_type: ProgType,
    pub expected_attach_type: Option<AttachType>,
    /// `xdp.frags*` (BPF_F_XDP_HAS_FRAGS).
    pub frags: bool,
}

const fn k(prog_type: ProgType, at: Option<AttachType>, frags: bool) -> SectionKind {
    SectionKind {
        prog_type,
        expected_attach_type: at,
        frags,
    }
}

/// Classifies a program section name; `None` when the name says nothing skiff knows.
///
/// Exact libbpf 1.x names first (libbpf.c: section_defs), then legacy prefixes that
/// libbpf 1.x refuses but older loaders (libbpf 0.x prefix matching, iproute2 `tc`)
/// accept: `xdp*` (e.g. `xdp_prog`, `xdp/foo`), `tc_*`, `tc/*`, `classifier*`,
/// `cls_*`, `cls/*`, `action*`, `act_*`, `act/*`.
pub fn classify_section(name: &str) -> Option<SectionKind> {
    use AttachType as A;
    use ProgType as P;
    let exact = match name {
        "xdp.frags/devmap" => Some(k(P::Xdp, Some(A::XdpDevmap), true)),
        "xdp/devmap" => Some(k(P::Xdp, Some(A::XdpDevmap), false)),
        "xdp.frags/cpumap" => Some(k(P::Xdp, Some(A::XdpCpumap), true)),
        "xdp/cpumap" => Some(k(P::Xdp, Some(A::XdpCpumap), false)),
        "xdp.frags" => Some(k(P::Xdp, Some(A::Xdp), true)),
        "xdp" => Some(k(P::Xdp, Some(A::Xdp), false)),
        // libbpf: "tc/ingress" and "tc/egress" are aliases of the tcx ones.
        "tc/ingress" | "tcx/ingress" => Some(k(P::SchedCls, Some(A::TcxIngress), false)),
        "tc/egress" | "tcx/egress" => Some(k(P::SchedCls, Some(A::TcxEgress), false)),
        "tc" | "classifier" => Some(k(P::SchedCls, None, false)),
        "action" => Some(k(P::SchedAct, None, false)),
        "netkit/primary" => Some(k(P::SchedCls, Some(A::NetkitPrimary), false)),
        "netkit/peer" => Some(k(P::SchedCls, Some(A::NetkitPeer), false)),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    if name.starts_with("xdp.frags") {
        return Some(k(P::Xdp, Some(A::Xdp), true));
    }
    if name.starts_with("xdp") {
        return Some(k(P::Xdp, Some(A::Xdp), false));
    }
    const CLS: [&str; 5] = ["tc_", "tc/", "classifier", "cls_", "cls/"];
    if CLS.iter().any(|p| name.starts_with(p)) {
        return Some(k(P::SchedCls, None, false));
    }
    const ACT: [&str; 3] = ["action", "act_", "act/"];
    if ACT.iter().any(|p| name.starts_with(p)) {
        return Some(k(P::SchedAct, None, false));
    }
    None
}

/// Section prefixes of tracing programs (libbpf.c: section_defs) and the
/// kernel's name of their program type (`enum bpf_prog_type`). An object may
/// carry them beside its packet programs; skiff runs no tracing program, so
/// they are skipped with a note instead of refusing the object.
const TRACING: [(&str, &str); 33] = [
    ("kprobe/", "BPF_PROG_TYPE_KPROBE"),
    ("kretprobe/", "BPF_PROG_TYPE_KPROBE"),
    ("uprobe/", "BPF_PROG_TYPE_KPROBE"),
    ("uretprobe/", "BPF_PROG_TYPE_KPROBE"),
    ("uprobe.s/", "BPF_PROG_TYPE_KPROBE"),
    ("uretprobe.s/", "BPF_PROG_TYPE_KPROBE"),
    ("ksyscall/", "BPF_PROG_TYPE_KPROBE"),
    ("kretsyscall/", "BPF_PROG_TYPE_KPROBE"),
    ("usdt/", "BPF_PROG_TYPE_KPROBE"),
    ("kprobe.multi/", "BPF_PROG_TYPE_KPROBE"),
    ("kretprobe.multi/", "BPF_PROG_TYPE_KPROBE"),
    ("kprobe.session/", "BPF_PROG_TYPE_KPROBE"),
    ("uprobe.multi/", "BPF_PROG_TYPE_KPROBE"),
    ("tracepoint/", "BPF_PROG_TYPE_TRACEPOINT"),
    ("tp/", "BPF_PROG_TYPE_TRACEPOINT"),
    ("raw_tracepoint/", "BPF_PROG_TYPE_RAW_TRACEPOINT"),
    ("raw_tp/", "BPF_PROG_TYPE_RAW_TRACEPOINT"),
    ("raw_tracepoint.w/", "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE"),
    ("raw_tp.w/", "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE"),
    ("tp_btf/", "BPF_PROG_TYPE_TRACING"),
    ("fentry/", "BPF_PROG_TYPE_TRACING"),
    ("fexit/", "BPF_PROG_TYPE_TRACING"),
    ("fmod_ret/", "BPF_PROG_TYPE_TRACING"),
    ("fentry.s/", "BPF_PROG_TYPE_TRACING"),
    ("fexit.s/", "BPF_PROG_TYPE_TRACING"),
    ("fmod_ret.s/", "BPF_PROG_TYPE_TRACING"),
    ("iter/", "BPF_PROG_TYPE_TRACING"),
    ("freplace/", "BPF_PROG_TYPE_EXT"),
    ("lsm/", "BPF_PROG_TYPE_LSM"),
    ("lsm.s/", "BPF_PROG_TYPE_LSM"),
    ("lsm_cgroup/", "BPF_PROG_TYPE_LSM"),
    ("iter.s/", "BPF_PROG_TYPE_TRACING"),
    ("perf_event", "BPF_PROG_TYPE_PERF_EVENT"),
];

/// The kernel program type of a tracing section (`kprobe/...`, `fentry/...`,
/// `tracepoint/...`, ...), `None` for any other section.
pub fn tracing_section(name: &str) -> Option<&'static str> {
    if name == "syscall" {
        return Some("BPF_PROG_TYPE_SYSCALL");
    }
    TRACING
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, t)| *t)
}
