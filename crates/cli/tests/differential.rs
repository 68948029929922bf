//! Differential tests: every corpus case (bpf/*.c × map contents) on every packet
//! of the packet set runs in skiff and through BPF_PROG_TEST_RUN in the kernel;
//! return value (or refusal errno), data_out, ctx_out and every map must be
//! identical. Needs root, the bpf() syscall and clang-19; skips with a printed
//! reason otherwise.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{CaseResult, MapVal};
use skiff_maps::{MapType, MapValue};
use skiff_vm::{Collection, Engine, LoadOptions, Vm};

fn possible_cpus() -> usize {
    skiff_kernel::possible_cpus().unwrap_or(1)
}

/// skiff's result for a case, normalised as `common::kernel_result` normalises
/// the kernel's.
fn skiff_result(engine: Engine, case: &common::Case, pkt: &[u8]) -> Result<CaseResult, String> {
    let path = common::bpf_object(case.object).ok_or("compile failed")?;
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    let obj = skiff_object::Object::parse(&bytes).map_err(|e| e.to_string())?;
    let coll = Collection::load(
        &obj,
        &LoadOptions {
            possible_cpus: possible_cpus(),
            engine,
            ..skiff_net::load_options()
        },
    )
    .map_err(|e| e.to_string())?;
    for (map, key, val) in &case.map_updates {
        let m = coll.map(map).map_err(|e| e.to_string())?;
        let r = match val {
            MapVal::Bytes(v) => m.sys_update(key, v, 0),
            MapVal::Prog(p) => {
                m.sys_update_prog(key, coll.program(p).map_err(|e| e.to_string())?.id, 0)
            }
        };
        r.map_err(|e| format!("{}: update {map}: errno {e}", case.name()))?;
    }
    let prog = coll.program(case.prog).map_err(|e| e.to_string())?.clone();
    let mut vm = Vm::new(skiff_net::helper_table());
    vm.engine = engine;
    vm.env.set_programs(coll.programs.clone());
    let run = skiff_net::test_run::test_run(
        &mut vm,
        &prog,
        &skiff_net::test_run::TestRun {
            data_in: pkt,
            ctx_in: case.ctx_in.as_deref(),
            repeat: case.repeat,
        },
    );
    let (retval, data_out, ctx_out) = match run {
        Ok(o) => {
            if let Some(e) = &o.exception {
                return Err(format!("skiff ended the run: {e}"));
            }
            (Ok(o.retval), o.data_out, o.ctx_out)
        }
        Err(r) => (Err(r.errno), Vec::new(), None),
    };
    let mut maps = BTreeMap::new();
    for (name, m) in &coll.maps {
        let t = m.attr().map_type;
        // The kernel has no syscall lookup for these (see skiff_kernel::map_dump).
        if matches!(
            t,
            MapType::Ringbuf | MapType::Xskmap | MapType::PerfEventArray
        ) {
            continue;
        }
        let vs = m.attr().value_size as usize;
        let mut entries = Vec::new();
        if matches!(t, MapType::Queue | MapType::Stack) {
            let mut out = vec![0u8; vs];
            if m.peek(&mut out).is_ok() {
                entries.push((Vec::new(), out));
            }
        } else {
            for (k, v) in m.dump() {
                let v = match v {
                    MapValue::Single(b) => b,
                    MapValue::PerCpu(vals) => {
                        let stride = vs.div_ceil(8) * 8;
                        let mut all = vec![0u8; stride * vals.len()];
                        for (i, b) in vals.iter().enumerate() {
                            all[i * stride..i * stride + b.len()].copy_from_slice(b);
                        }
                        all
                    }
                    MapValue::Prog(id) => coll
                        .programs
                        .iter()
                        .find(|p| p.id == id)
                        .map(|p| p.name.as_bytes().to_vec())
                        .unwrap_or_default(),
                    MapValue::Map(id) => coll
                        .maps
                        .iter()
                        .find(|(_, m)| m.id() == id)
                        .map(|(n, _)| n.as_bytes().to_vec())
                        .unwrap_or_default(),
                };
                entries.push((k, v));
            }
        }
        entries.sort();
        maps.insert(name.clone(), entries);
    }
    common::mask_time(case.object, &mut maps);
    Ok(CaseResult {
        retval,
        data_out,
        ctx_out,
        maps,
    })
}

/// An xdp_md ctx_in describes the whole packet as linear data (data_end = its
/// length); a shorter data_end would put the rest in frags, which skiff does not
/// model yet.
fn with_data_end(case: &common::Case, pkt: &[u8]) -> common::Case {
    let mut c = case.clone();
    if let Some(ctx) = &mut c.ctx_in {
        if ctx.len() == 24 {
            ctx[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
        }
    }
    c
}

fn describe(r: &CaseResult) -> String {
    format!("retval {:?}, data_out {} bytes", r.retval, r.data_out.len())
}

/// Runs `case` on every packet in skiff and in the kernel; the differences found.
fn compare(case: &common::Case, packets: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (pname, pkt) in packets {
        let case = &with_data_end(case, pkt);
        let kernel = match common::kernel_result(case, pkt) {
            Ok(k) => k,
            Err(e) => {
                failures.push(format!(
                    "{} on {pname}: kernel side failed: {e}",
                    case.name()
                ));
                continue;
            }
        };
        for engine in [Engine::Jit, Engine::Interp] {
            match skiff_result(engine, case, pkt) {
                Ok(s) if s == kernel => {}
                Ok(s) => {
                    let mut diff = Vec::new();
                    if s.retval != kernel.retval {
                        diff.push(format!(
                            "retval skiff {:?} kernel {:?}",
                            s.retval, kernel.retval
                        ));
                    }
                    if s.data_out != kernel.data_out {
                        diff.push(format!(
                            "data_out skiff {} kernel {}",
                            hex::encode(&s.data_out),
                            hex::encode(&kernel.data_out)
                        ));
                    }
                    if s.ctx_out != kernel.ctx_out {
                        diff.push(format!(
                            "ctx_out skiff {:?} kernel {:?}",
                            s.ctx_out.as_ref().map(hex::encode),
                            kernel.ctx_out.as_ref().map(hex::encode)
                        ));
                    }
                    for (name, kv) in &kernel.maps {
                        let sv = s.maps.get(name);
                        if sv != Some(kv) {
                            let show = |e: &Vec<(Vec<u8>, Vec<u8>)>| {
                                e.iter()
                                    .map(|(k, v)| format!("{}={}", hex::encode(k), hex::encode(v)))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            };
                            diff.push(format!(
                                "map {name}: skiff [{}] kernel [{}]",
                                sv.map(show).unwrap_or_default(),
                                show(kv)
                            ));
                        }
                    }
                    failures.push(format!(
                        "{} on {pname} ({}, {engine:?}): {}",
                        case.name(),
                        describe(&kernel),
                        diff.join("; ")
                    ));
                }
                Err(e) => failures.push(format!(
                    "{} on {pname}: skiff ({engine:?}) failed: {e} (kernel: {})",
                    case.name(),
                    describe(&kernel)
                )),
            }
        }
    }
    failures
}

#[test]
fn corpus_matches_kernel() {
    if let Some(why) = common::skip_reason() {
        eprintln!("SKIPPED differential tests: {why}");
        return;
    }
    let packets = common::packets();
    let cases = common::cases();
    // Each run in both engines.
    let total = cases.len() * packets.len() * 2;
    let failures: Vec<String> = cases.iter().flat_map(|c| compare(c, &packets)).collect();
    println!(
        "differential (JIT and interpreter): {total} runs, {} identical, {} different",
        total - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} runs differ from the kernel:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Legacy BPF_LD_ABS/IND loads in a TC program, including loads past the end.
#[test]
fn legacy_packet_loads_match_kernel() {
    if let Some(why) = common::skip_reason() {
        eprintln!("SKIPPED differential tests: {why}");
        return;
    }
    let case = common::Case {
        object: "tc_ldabs",
        prog: "tc_ldabs",
        map_updates: Vec::new(),
        repeat: 1,
        ctx_in: None,
    };
    let failures = compare(&case, &common::packets());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The helper table is shared by every run: loading it must not depend on state.
#[test]
fn helper_table_is_reusable() {
    let t = skiff_net::helper_table();
    assert!(Arc::strong_count(&t) >= 1);
    assert!(t.get(1).is_some(), "bpf_map_lookup_elem registered");
}
