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
