//! TC: the clsact ingress/egress hooks of a device — a tcx program chain
//! (bpf_mprog ordering) run first, then cls_bpf direct-action filters by
//! priority — and the action codes as sch_handle_ingress/egress read them.

use std::sync::Arc;

use skiff_vm::Program;

pub const TC_ACT_UNSPEC: i64 = -1;
pub const TC_ACT_OK: i64 = 0;
pub const TC_ACT_RECLASSIFY: i64 = 1;
pub const TC_ACT_SHOT: i64 = 2;
pub const TC_ACT_PIPE: i64 = 3;
pub const TC_ACT_STOLEN: i64 = 4;
pub const TC_ACT_QUEUED: i64 = 5;
pub const TC_ACT_REPEAT: i64 = 6;
pub const TC_ACT_REDIRECT: i64 = 7;
pub const TC_ACT_TRAP: i64 = 8;
/// TCX_NEXT / TCX_PASS / TCX_DROP / TCX_REDIRECT (include/uapi/linux/bpf.h).
pub const TCX_NEXT: i64 = -1;
pub const TCX_PASS: i64 = 0;
pub const TCX_DROP: i64 = 2;
pub const TCX_REDIRECT: i64 = 7;
/// net/sched/cls_api.c: max_reclassify_loop.
pub const MAX_RECLASSIFY_LOOP: u32 = 16;
/// include/linux/bpf_mprog.h: BPF_MPROG_MAX.
pub const BPF_MPROG_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcDirection {
    Ingress,
    Egress,
}

/// As `tc filter add dev X ingress|egress` spells it.
impl std::fmt::Display for TcDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcDirection::Ingress => "ingress",
            TcDirection::Egress => "egress",
        })
    }
}

/// Where a program joins a bpf_mprog chain (tcx, netkit): BPF_F_BEFORE /
/// BPF_F_AFTER relative to a program id or to the whole chain, BPF_F_REPLACE.
/// `Id` is the program's id for the datapath, its name in a topology file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MprogOrder<Id = u32> {
    /// BPF_F_AFTER with no relative program: last (the default attach).
    Append,
    /// BPF_F_BEFORE with no relative program: first.
    Prepend,
    Before(Id),
    After(Id),
    /// BPF_F_REPLACE of the program with this id.
    Replace(Id),
}

/// How a TC program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttach {
    /// `tc filter add dev X ingress|egress prio P handle H bpf da obj ...`;
    /// `classid` is the filter's classid option (0 if none).
    ClsBpf {
        prio: u16,
        handle: u32,
        classid: u32,
    },
    /// tcx (BPF_TCX_INGRESS / BPF_TCX_EGRESS) with mprog ordering.
    Tcx(MprogOrder),
}

pub(crate) struct ClsFilter {
    pub prio: u16,
    pub handle: u32,
    pub classid: u32,
    pub prog: Arc<Program>,
}

#[derive(Default)]
pub(crate) struct TcHook {
    pub tcx: Vec<Arc<Program>>,
    pub cls: Vec<ClsFilter>,
}

impl TcHook {
    pub fn is_empty(&self) -> bool {
        self.tcx.is_empty() && self.cls.is_empty()
    }

    /// `tc filter add`: EEXIST for a taken prio/handle, then kept in prio order.
    pub fn add_cls(&mut self, f: ClsFilter) -> Result<(), i32> {
        if self
            .cls
            .iter()
            .any(|c| c.prio == f.prio && c.handle == f.handle)
        {
            return Err(super::EEXIST);
        }
        let pos = self
            .cls
            .iter()
            .position(|c| (c.prio, c.handle) > (f.prio, f.handle))
            .unwrap_or(self.cls.len());
        self.cls.insert(pos, f);
        Ok(())
    }
}

/// kernel/bpf/mprog.c: bpf_mprog_attach (programs, not links): EEXIST if the
/// program is already in the chain, ENOENT for an unknown relative program,
/// ERANGE past BPF_MPROG_MAX.
pub(crate) fn mprog_attach(
    chain: &mut Vec<Arc<Program>>,
    prog: Arc<Program>,
    order: MprogOrder,
) -> Result<(), i32> {
    let find = |chain: &Vec<Arc<Program>>, id: u32| chain.iter().position(|p| p.id == id);
    if let MprogOrder::Replace(id) = order {
        let i = find(chain, id).ok_or(super::ENOENT)?;
        if chain.iter().any(|p| p.id == prog.id) && chain[i].id != prog.id {
            return Err(super::EEXIST);
        }
        chain[i] = prog;
        return Ok(());
    }
    if chain.iter().any(|p| p.id == prog.id) {
        return Err(super::EEXIST);
    }
    if chain.len() >= BPF_MPROG_MAX {
        return Err(super::ERANGE);
    }
    let pos = match order {
        MprogOrder::Append => chain.len(),
        MprogOrder::Prepend => 0,
        MprogOrder::Before(id) => find(chain, id).ok_or(super::ENOENT)?,
        MprogOrder::After(id) => find(chain, id).ok_or(super::ENOENT)? + 1,
        MprogOrder::Replace(_) => chain.len(),
    };
    chain.insert(pos, prog);
    Ok(())
}

/// net/sched/cls_bpf.c: cls_bpf_exec_opcode — in direct-action mode only these
/// codes are actions; anything else (PIPE, QUEUED, out of range) is UNSPEC.
pub fn cls_bpf_exec_opcode(code: i64) -> i64 {
    match code {
        TC_ACT_OK | TC_ACT_SHOT | TC_ACT_STOLEN | TC_ACT_TRAP | TC_ACT_REDIRECT
        | TC_ACT_RECLASSIFY => code,
        _ => TC_ACT_UNSPEC,
    }
}

/// include/net/tcx.h: tcx_action_code.
pub fn tcx_action_code(code: i64) -> i64 {
    match code {
        TCX_PASS | TCX_DROP | TCX_REDIRECT => code,
        _ => TCX_NEXT,
    }
}
