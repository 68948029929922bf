//! Running a bare program the way the bpf_conformance suite does (and the
//! kernel's, uBPF's and rbpf's plugins for its runner): r1 points at the input
//! memory, r2 is its length, helper 5 is the suite's "unwind".

use std::sync::Arc;

use skiff_isa::Insn;

use crate::{
    Engine, HelperDef, HelperTable, NoContext, ProgType, Program, Region, RegionKind, RunState, Vm,
    VmError,
};

/// Helper 5 of the suite: ends the program with r0 = 0 when r1 is 0, else
/// returns r1.
fn unwind(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    if a[0] == 0 {
        st.exit_now = Some(0);
    }
    Ok(a[0])
}

pub fn helpers() -> Arc<HelperTable> {
    let mut t = HelperTable::empty();
    t.register(HelperDef {
        id: 5,
        name: "unwind",
        func: unwind,
        prog_types: &[],
        proto: crate::HelperProto::new(crate::RetType::Integer, &[crate::ArgType::Anything]),
        map_op: None,
    });
    Arc::new(t)
}

/// Load and run `insns` over `mem`; the error says why the program was refused or
/// where its run ended abnormally.
pub fn run(insns: Vec<Insn>, mem: &[u8]) -> Result<u64, String> {
    run_with(Engine::default(), insns, mem)
}

/// As `run`, in `engine`.
pub fn run_with(engine: Engine, insns: Vec<Insn>, mem: &[u8]) -> Result<u64, String> {
    let prog = Arc::new(
        Program::load_with("conformance", ProgType::Xdp, insns, &[], engine)
            .map_err(|e| e.to_string())?,
    );
    let mut vm = Vm::new(helpers());
    vm.engine = engine;
    let mut mem = mem.to_vec();
    let (addr, len) = (mem.as_mut_ptr() as usize, mem.len());
    let regions = if len > 0 {
        vec![Region::new(addr, len, RegionKind::ReadWrite)]
    } else {
        vec![]
    };
    let r1 = if len > 0 { addr as u64 } else { 0 };
    vm.run_with_args(&prog, &mut NoContext, [r1, len as u64, 0, 0, 0], &regions)
        .map_err(|e| e.to_string())
}
