//! net/sched/sch_ingress.c: the `ingress` and `clsact` qdiscs — no queue,
//! only the attachment points (ffff:fff2 ingress, ffff:fff3 egress) where
//! filters run in sch_handle_ingress / sch_handle_egress (core/tc.rs).
//! One per device, handle ffff:, parent ffff:fff1.

use super::{Dump, QdiscShow, QdiscStats, TC_H_INGRESS};

/// TC_H_MIN_INGRESS / TC_H_MIN_EGRESS: clsact's two attachment points.
pub const TC_H_MIN_INGRESS: u32 = 0xFFF2;
pub const TC_H_MIN_EGRESS: u32 = 0xFFF3;
/// The only handle they take.
pub const INGRESS_HANDLE: u32 = 0xFFFF_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressKind {
    Ingress,
    Clsact,
}

impl IngressKind {
    pub fn name(self) -> &'static str {
        match self {
            IngressKind::Ingress => "ingress",
            IngressKind::Clsact => "clsact",
        }
    }
}

/// A device's ingress or clsact qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngressQdisc {
    pub kind: IngressKind,
}

impl IngressQdisc {
    /// ingress_dump / clsact_dump: no options; the counters stay 0 here
    /// (the kernel counts only where filters update mini-Qdisc stats).
    pub fn show(&self) -> QdiscShow {
        QdiscShow::new(
            self.kind.name(),
            INGRESS_HANDLE,
            TC_H_INGRESS,
            QdiscStats::default(),
            Dump::default(),
        )
    }
}
