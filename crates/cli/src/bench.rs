//! `skiff bench`: every corpus program timed in skiff's interpreter and in the kernel
//! (BPF_PROG_TEST_RUN with `repeat`), on one core, median of several runs each.
//!
//! Both engines keep the context between the `repeat` runs of one test run (the
//! kernel's bpf_test_run never resets it), so a program that changes its packet would
//! leave its main path after the first run. The entries are chosen so that the
//! repeated runs stay on the main path: map contents that translate back and forth
//! (xdp_lb, tc_nat), or, for programs that grow the packet or its headroom, a
//! `batch`: a measurement is `min(repeat / batch, 100)` test runs of `batch` runs each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde_json::{json, Value};
use skiff_kernel::testpkt;
use skiff_kernel::{KernelObject, TestRun as KTestRun};
use skiff_object::Object;
use skiff_vm::{Collection, LoadOptions, Program, Vm};

#[derive(Args)]
pub struct BenchArgs {
    /// Program runs per measurement (BPF_PROG_TEST_RUN's repeat).
    #[arg(long, default_value_t = 100_000)]
    repeat: u32,
    /// Measurements per engine; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Directory of the corpus sources (<stem>.c).
    #[arg(long, default_value = "bpf")]
    bpf_dir: PathBuf,
    /// Print the rows as a JSON array.
    #[arg(long)]
    json: bool,
    /// Only entries whose `object/prog/packet` contains this.
    #[arg(long)]
    filter: Option<String>,
}

/// A map update made before the runs (flags BPF_ANY).
enum Val {
    Bytes(Vec<u8>),
    /// A PROG_ARRAY slot: this program of the same object.
    Prog(&'static str),
}

struct Entry {
    object: &'static str,
    prog: &'static str,
    /// A name of `testpkt::packets()`, or one built here ([`packet`]).
    packet: &'static str,
    updates: Vec<(&'static str, Vec<u8>, Val)>,
    ctx_in: Option<Vec<u8>>,
    /// 0: one test run of `repeat` runs; else test runs of `batch` runs each.
    batch: u32,
}

fn e(object: &'static str, prog: &'static str, packet: &'static str) -> Entry {
    Entry {
        object,
        prog,
        packet,
        updates: Vec::new(),
        ctx_in: None,
        batch: 0,
    }
}

impl Entry {
    fn set(mut self, map: &'static str, key: Vec<u8>, val: Vec<u8>) -> Self {
        self.updates.push((map, key, Val::Bytes(val)));
        self
    }
    fn prog_slot(mut self, map: &'static str, key: u32, prog: &'static str) -> Self {
        self.updates.push((map, u32k(key), Val::Prog(prog)));
        self
    }
    fn ctx(mut self, c: Vec<u8>) -> Self {
        self.ctx_in = Some(c);
        self
    }
    fn batch(mut self, n: u32) -> Self {
        self.batch = n;
        self
    }
    fn label(&self) -> String {
        format!("{}/{}", self.object, self.prog)
    }
}

fn u32k(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn u64v(v: u64) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// (daddr, port, proto, pad) as xdp_lb's `svc_key` and tc_nat's `nat_key`.
fn svc_key(ip: [u8; 4], port: u16, proto: u8) -> Vec<u8> {
    let mut k = ip.to_vec();
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[proto, 0]);
    k
}

/// (daddr, dport, pad) as tc_nat's `nat_val`.
fn addr_port(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = ip.to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v
}

/// xdp_lb's `struct backend`: ip, mac, pad.
fn backend(ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut v = ip.to_vec();
    v.extend_from_slice(&mac);
    v.extend_from_slice(&[0, 0]);
    v
}

/// `struct __sk_buff` (192 bytes) with mark, priority and cb[0..5].
fn skb_ctx(mark: u32, priority: u32, cb: [u32; 5]) -> Vec<u8> {
    let mut c = vec![0u8; 192];
    c[8..12].copy_from_slice(&mark.to_ne_bytes());
    c[32..36].copy_from_slice(&priority.to_ne_bytes());
    for (i, v) in cb.iter().enumerate() {
        c[48 + 4 * i..52 + 4 * i].copy_from_slice(&v.to_ne_bytes());
    }
    c
}

/// `struct xdp_md` (24 bytes) with data_end (the linear part: the whole frame; a
/// shorter one makes a multi-buffer frame, which skiff refuses) and ingress_ifindex.
fn xdp_ctx(data_end: usize, ingress_ifindex: u32) -> Vec<u8> {
    let mut c = vec![0u8; 24];
    let end = u32::try_from(data_end).unwrap_or(u32::MAX);
    c[4..8].copy_from_slice(&end.to_ne_bytes());
    c[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    c
}

/// Depth of the IPIP nesting of the `ipip_x12` packet: xdp_ipip_decap strips one
/// outer header per run, so a test run of 12 runs decapsulates every time.
const IPIP_DEPTH: usize = 12;

/// The frame called `name`: `ipip_x12` (an IPv4/UDP datagram inside 12 IPIP
/// headers), else `testpkt::packet`.
fn packet(name: &str) -> Option<Vec<u8>> {
    if name == "ipip_x12" {
        let mut ip = testpkt::ipv4(
            testpkt::IP_SRC,
            testpkt::IP_DST,
            17,
            0,
            &[],
            &testpkt::udp(&testpkt::IP_SRC, &testpkt::IP_DST, 1000, 2000, b"inner"),
        );
        for _ in 0..IPIP_DEPTH {
            ip = testpkt::ipv4([10, 99, 0, 1], [10, 99, 0, 2], 4, 0, &[], &ip);
        }
        return Some(testpkt::eth(
            testpkt::MAC_DST,
            testpkt::MAC_SRC,
            testpkt::ETH_P_IP,
            &ip,
        ));
    }
    testpkt::packet(name)
}

/// Every corpus program on a packet and map contents that take its main path.
fn entries() -> Vec<Entry> {
    let vip = testpkt::LB_VIP;
    let be_ip = [10, 0, 1, 1];
    let nat_to = [10, 0, 0, 3];
    let mut police = u64v(4_000_000_000); // 4 bytes/ns: the bucket refills faster than runs
    police.extend_from_slice(&u64v(1 << 20));
    let syn_len = packet("ipv4_tcp_syn").map_or(0, |p| p.len());
    vec![
        e("xdp_count", "xdp_count", "ipv4_tcp_syn"),
        e("xdp_fw", "xdp_fw", "ipv4_blocked_src").set(
            "blocked",
            vec![0x18, 0, 0, 0, 192, 168, 1, 0],
            vec![1],
        ),
        // VIP -> backend 0 (10.0.1.1) and 10.0.1.1 -> backend 1 (the VIP): every run
        // translates the destination, XDP_TX.
        e("xdp_lb", "xdp_lb", "ipv4_lb_vip")
            .set("services", svc_key(vip, testpkt::LB_PORT, 6), u32k(0))
            .set("services", svc_key(be_ip, testpkt::LB_PORT, 6), u32k(1))
            .set("backends", u32k(0), backend(be_ip, [2, 0, 0, 0, 1, 1]))
            .set("backends", u32k(1), backend(vip, [2, 0, 0, 0, 0, 2])),
        e("xdp_redirect", "xdp_redirect_devmap", "ipv4_tcp_syn").set("tx_port", u32k(0), u32k(1)),
        e("xdp_redirect", "xdp_redirect_devhash", "ipv4_tcp_syn")
            .set("tx_hash", u32k(1), u32k(1))
            .ctx(xdp_ctx(syn_len, 1)),
        e("xdp_redirect", "xdp_redirect_ifindex", "ipv4_tcp_syn").set(
            "redirect_cfg",
            u32k(0),
            u32k(1),
        ),
        // 20 bytes per run of the 216 the 256-byte headroom leaves above the
        // xdp_frame (bpf_xdp_adjust_head): 10 runs per test run succeed.
        e("xdp_encap", "xdp_ipip_encap", "ipv4_udp").batch(10),
        e("xdp_encap", "xdp_ipip_decap", "ipip_x12").batch(IPIP_DEPTH as u32),
        // 4 bytes of the 32 allowed metadata per run.
        e("xdp_encap", "xdp_meta", "ipv4_udp").batch(8),
        // cut to 60, then grow by 4 and cut again: alternates, both paths adjust.
        e("xdp_encap", "xdp_trim", "ipv4_tcp_payload"),
        e("tc_classify", "cls_main", "ipv4_tcp_syn"),
        e("tc_classify", "cls_fields", "ipv4_tcp_syn").ctx(skb_ctx(7, 3, [41, 1, 2, 3, 4])),
        e("tc_police", "tc_police", "ipv4_udp").set("police_cfg", u32k(0), police),
        // 10.0.0.2:443 <-> 10.0.0.3:8443: every run rewrites address, port and sums.
        e("tc_nat", "tc_nat", "ipv4_tcp_syn")
            .set(
                "nat_rules",
                svc_key(testpkt::IP_DST, 443, 6),
                addr_port(nat_to, 8443),
            )
            .set(
                "nat_rules",
                svc_key(nat_to, 8443, 6),
                addr_port(testpkt::IP_DST, 443),
            ),
        e("tail_call", "xdp_dispatch", "ipv4_icmp_echo").prog_slot("jmp_table", 1, "handle_icmp"),
        e("tail_call", "xdp_dispatch", "ipv4_udp"),
        e("calls_loops", "xdp_calls_loops", "ipv4_tcp_payload"),
        e("global_data", "xdp_global", "ipv4_udp"),
        e("xdp_csum", "xdp_csum", "ipv4_udp"),
        e("xdp_maps", "xdp_maps", "ipv4_udp"),
        e("xdp_queue", "xdp_queue", "ipv4_udp"),
        e("xdp_ringbuf", "xdp_ringbuf", "ipv4_udp"),
        // push/adjust_room grow the packet each run
        e("tc_vlan", "tc_vlan_push", "ipv4_udp").batch(8),
        e("tc_vlan", "tc_vlan_pop", "ipv4_udp"),
        e("tc_vlan", "tc_adjust_room", "ipv4_udp").batch(8),
        // change_tail(+8) and change_head(+14) each run
        e("tc_helpers", "tc_helpers", "ipv4_tcp_syn").batch(8),
        e("tc_helpers", "tc_redirects", "ipv4_tcp_syn")
            .set("redir_cfg", u32k(0), u32k(0))
            .set("redir_cfg", u32k(1), u32k(1)),
    ]
}

/// One engine's result for an entry.
#[derive(Default)]
struct Side {
    /// ns per program run of each measurement.
    runs: Vec<f64>,
    retval: Option<u32>,
    error: Option<String>,
}

impl Side {
    fn median(&self) -> Option<f64> {
        if self.error.is_some() {
            return None;
        }
        median(&self.runs)
    }
    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s.get(n / 2).copied()
    } else {
        Some((s.get(n / 2 - 1)? + s.get(n / 2)?) / 2.0)
    }
}

struct Row {
    label: String,
    packet: &'static str,
    batch: u32,
    insns: Option<usize>,
    /// BPF instructions a run executes (measured in skiff).
    executed: Option<u64>,
    skiff: Side,
    kernel: Side,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (s, k) = (self.skiff.median()?, self.kernel.median()?);
        (k > 0.0).then(|| s / k)
    }
}

/// At most this many test runs per measurement of a batched entry: the kernel's XDP
/// test run with repeat > 1 installs the program in the XDP dispatcher and removes
/// it again (net/bpf/test_run.c: bpf_prog_change_xdp), two synchronize_rcu() of
/// about 10 ms each, outside the timed loop but in the wall time.
const MAX_BATCH_CALLS: u32 = 100;

/// The test runs one measurement makes: `repeat` runs in one, or for a batched
/// entry `min(repeat / batch, MAX_BATCH_CALLS)` test runs of `batch` runs.
fn chunks(repeat: u32, batch: u32) -> Vec<u32> {
    let repeat = repeat.max(1);
    if batch == 0 || batch >= repeat {
        return vec![repeat];
    }
    vec![batch; (repeat / batch).min(MAX_BATCH_CALLS) as usize]
}

struct SkiffSide {
    vm: Vm,
    prog: Arc<Program>,
}

fn skiff_load(obj: &Object, en: &Entry) -> Result<SkiffSide, String> {
    let coll = Collection::load(
        obj,
        &LoadOptions {
            possible_cpus: skiff_kernel::possible_cpus().unwrap_or(1),
        },
    )
    .map_err(|e| format!("load: {e}"))?;
    for (map, key, val) in &en.updates {
        let m = coll.map(map).map_err(|e| format!("map {map}: {e}"))?;
        let r = match val {
            Val::Bytes(v) => m.sys_update(key, v, 0),
            Val::Prog(p) => {
                let id = coll.program(p).map_err(|e| format!("{e}"))?.id;
                m.sys_update_prog(key, id, 0)
            }
        };
        r.map_err(|errno| {
            format!(
                "update of map {map}: {}",
                crate::maps::errno_name(errno.abs())
            )
        })?;
    }
    let prog = coll.program(en.prog).map_err(|e| format!("{e}"))?.clone();
    let mut vm = Vm::new(skiff_net::helper_table());
    vm.env.programs = coll.programs.clone();
    Ok(SkiffSide { vm, prog })
}

/// One measurement in skiff: ns per run, last retval.
/// One skiff test run of `repeat` runs (trace output is not kept: bench prints none).
fn test_run(
    s: &mut SkiffSide,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    repeat: u32,
) -> Result<skiff_net::test_run::TestRunOutput, skiff_net::test_run::Refused> {
    let out = skiff_net::test_run::test_run(
        &mut s.vm,
        &s.prog,
        &skiff_net::test_run::TestRun {
            data_in: pkt,
            ctx_in: ctx,
            repeat,
        },
    );
    s.vm.env.trace.clear();
    out
}

fn skiff_measure(
    s: &mut SkiffSide,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    calls: &[u32],
) -> Result<(f64, u32), String> {
    let (mut total, mut runs, mut retval) = (0f64, 0f64, 0);
    for &n in calls {
        let out = test_run(s, pkt, ctx, n).map_err(|e| format!("test run refused: {e}"))?;
        if let Some(ex) = &out.exception {
            return Err(format!("{} of {n} runs aborted: {ex}", out.exceptions));
        }
        total += out.duration_ns as f64 * f64::from(n);
        runs += f64::from(n);
        retval = out.retval;
    }
    Ok((total / runs, retval))
}

/// BPF instructions one run executes in skiff (bpf_loop callbacks and tail calls
/// included): the smallest instruction budget the run completes within, by
/// bisection over single runs. None when even a large budget does not suffice or the
/// run fails otherwise.
fn executed_insns(s: &mut SkiffSide, pkt: &[u8], ctx: Option<&[u8]>) -> Option<u64> {
    let saved = s.vm.env.budget;
    let completes = |budget: u64, s: &mut SkiffSide| -> Option<bool> {
        s.vm.env.budget = budget;
        let out = test_run(s, pkt, ctx, 1).ok()?;
        match &out.exception {
            None => Some(true),
            Some(e) if matches!(e.error, skiff_vm::VmError::Budget(_)) => Some(false),
            Some(_) => None,
        }
    };
    let (mut lo, mut hi) = (0u64, 1u64 << 20);
    let found = if completes(hi, s) == Some(true) {
        // invariant: lo does not complete, hi does
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match completes(mid, s) {
                Some(true) => hi = mid,
                Some(false) => lo = mid,
                None => break,
            }
        }
        (hi - lo == 1).then_some(hi)
    } else {
        None
    };
    s.vm.env.budget = saved;
    found
}

fn kernel_load(obj: &Object, en: &Entry) -> Result<KernelObject, String> {
    let k = KernelObject::load(obj).map_err(|e| format!("load: {e}"))?;
    for (map, key, val) in &en.updates {
        match val {
            Val::Bytes(v) => k.map_update(map, key, v, 0),
            Val::Prog(p) => k.map_update_prog(map, key, p),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(k)
}

fn kernel_measure(
    k: &KernelObject,
    prog: &str,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    calls: &[u32],
) -> Result<(f64, u32), String> {
    let (mut total, mut runs, mut retval) = (0f64, 0f64, 0);
    // Room for programs that grow the frame (tc_helpers, tc_vlan, xdp_encap).
    let data_size_out = u32::try_from(pkt.len() + 4096).map_err(|e| e.to_string())?;
    let ctx_size_out = 0;
    for &n in calls {
        let r = k
            .test_run(
                prog,
                &KTestRun {
                    data_in: pkt,
                    ctx_in: ctx,
                    repeat: n,
                    data_size_out,
                    ctx_size_out,
                },
            )
            .map_err(|e| e.to_string())?;
        total += f64::from(r.duration_ns) * f64::from(n);
        runs += f64::from(n);
        retval = r.retval;
    }
    Ok((total / runs, retval))
}

fn compile(dir: &Path, stem: &str) -> Result<Object, String> {
    let out = std::env::temp_dir().join("skiff-bench-bpf");
    let path = skiff_kernel::clang::compile(&dir.join(format!("{stem}.c")), &out)?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Object::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn bench_entry(
    en: &Entry,
    obj: Result<&Object, &String>,
    a: &BenchArgs,
    kernel_ok: &Result<(), String>,
) -> Row {
    let mut row = Row {
        label: en.label(),
        packet: en.packet,
        batch: en.batch,
        insns: None,
        executed: None,
        skiff: Side::default(),
        kernel: Side::default(),
    };
    let obj = match obj {
        Ok(o) => o,
        Err(msg) => {
            row.skiff.fail(format!("compile: {msg}"));
            row.kernel.fail(format!("compile: {msg}"));
            return row;
        }
    };
    row.insns = obj.program(en.prog).map(|p| p.insns.len());
    let Some(pkt) = packet(en.packet) else {
        row.skiff.fail(format!("no packet named {:?}", en.packet));
        row.kernel.fail(format!("no packet named {:?}", en.packet));
        return row;
    };
    let calls = chunks(a.repeat, en.batch);
    let ctx = en.ctx_in.as_deref();
    let mut sk = match skiff_load(obj, en) {
        Ok(s) => Some(s),
        Err(msg) => {
            row.skiff.fail(msg);
            None
        }
    };
    let ko = match kernel_ok {
        Err(reason) => {
            row.kernel.fail(format!("unavailable ({reason})"));
            None
        }
        Ok(()) => match kernel_load(obj, en) {
            Ok(k) => Some(k),
            Err(msg) => {
                row.kernel.fail(msg);
                None
            }
        },
    };
    for _ in 0..a.runs.max(1) {
        if let Some(s) = sk.as_mut().filter(|_| row.skiff.error.is_none()) {
            match skiff_measure(s, &pkt, ctx, &calls) {
                Ok((ns, r)) => {
                    row.skiff.runs.push(ns);
                    row.skiff.retval = Some(r);
                }
                Err(msg) => row.skiff.fail(msg),
            }
        }
        if let Some(k) = ko.as_ref().filter(|_| row.kernel.error.is_none()) {
            match kernel_measure(k, en.prog, &pkt, ctx, &calls) {
                Ok((ns, r)) => {
                    row.kernel.runs.push(ns);
                    row.kernel.retval = Some(r);
                }
                Err(msg) => row.kernel.fail(msg),
            }
        }
    }
    if let Some(s) = sk.as_mut().filter(|_| row.skiff.error.is_none()) {
        row.executed = executed_insns(s, &pkt, ctx);
    }
    row
}

fn fmt_ns(s: &Side) -> String {
    match (s.median(), &s.error) {
        (Some(v), _) => format!("{v:.1}"),
        (None, Some(e)) if e.starts_with("unavailable") => "n/a".into(),
        (None, _) => "error".into(),
    }
}

fn fmt_ret(r: Option<u32>) -> String {
    r.map_or("-".into(), |v| (v as i32).to_string())
}

fn row_json(r: &Row) -> Value {
    json!({
        "program": r.label,
        "packet": r.packet,
        "batch": r.batch,
        "insns": r.insns,
        "executed_insns": r.executed,
        "skiff_ns": r.skiff.median(),
        "kernel_ns": r.kernel.median(),
        "ratio": r.ratio(),
        "skiff_runs_ns": r.skiff.runs,
        "kernel_runs_ns": r.kernel.runs,
        "skiff_retval": r.skiff.retval,
        "kernel_retval": r.kernel.retval,
        "skiff_error": r.skiff.error,
        "kernel_error": r.kernel.error,
    })
}

pub fn main(a: BenchArgs) -> i32 {
    // Both engines on one core: the kernel's BPF_PROG_TEST_RUN runs on the caller's CPU.
    if let Err(e) = skiff_kernel::pin_current_thread(0) {
        eprintln!("skiff bench: warning: cannot pin to CPU 0: {e}");
    }
    let kernel_ok = skiff_kernel::available();
    let mut objects: HashMap<&'static str, Result<Object, String>> = HashMap::new();
    let mut rows = Vec::new();
    for en in entries() {
        let key = format!("{}/{}", en.label(), en.packet);
        if let Some(f) = &a.filter {
            if !key.contains(f.as_str()) {
                continue;
            }
        }
        let obj = objects
            .entry(en.object)
            .or_insert_with(|| compile(&a.bpf_dir, en.object));
        let row = bench_entry(&en, obj.as_ref(), &a, &kernel_ok);
        if !a.json {
            print_row(&row, rows.is_empty());
        }
        rows.push(row);
    }
    if a.json {
        println!(
            "{}",
            Value::Array(rows.iter().map(row_json).collect::<Vec<_>>())
        );
        return 0;
    }
    let ratios: Vec<f64> = rows.iter().filter_map(Row::ratio).collect();
    println!();
    if let Err(reason) = &kernel_ok {
        println!("kernel: unavailable ({reason})");
    }
    match median(&ratios) {
        Some(m) => println!(
            "median ratio skiff/kernel over {} rows: {m:.2}x",
            ratios.len()
        ),
        None if kernel_ok.is_ok() => println!("no row has both measurements"),
        None => {}
    }
    let steady: Vec<f64> = rows
        .iter()
        .filter(|r| r.batch == 0)
        .filter_map(Row::ratio)
        .collect();
    if let Some(m) = median(&steady).filter(|_| steady.len() < ratios.len()) {
        println!(
            "median ratio over the {} rows without a batch (b): {m:.2}x",
            steady.len()
        );
    }
    for r in &rows {
        if let Some(e) = &r.skiff.error {
            println!("{} {}: skiff: error {e}", r.label, r.packet);
        }
        if let Some(e) = &r.kernel.error {
            if kernel_ok.is_ok() {
                println!("{} {}: kernel: error {e}", r.label, r.packet);
            }
        }
    }
    0
}

fn print_row(r: &Row, header: bool) {
    if header {
        println!(
            "{:<34} {:<18} {:>10} {:>10} {:>6} {:>6} {:>5} {:>7} {:>7}",
            "program",
            "packet",
            "skiff ns",
            "kernel ns",
            "ratio",
            "insns",
            "exec",
            "skiff/i",
            "retval"
        );
    }
    let packet = if r.batch > 0 {
        format!("{} (b{})", r.packet, r.batch)
    } else {
        r.packet.to_string()
    };
    let ratio = r.ratio().map_or("-".into(), |x| format!("{x:.1}x"));
    let retval = format!("{}/{}", fmt_ret(r.skiff.retval), fmt_ret(r.kernel.retval));
    let per_insn = match (r.skiff.median(), r.executed) {
        (Some(ns), Some(n)) if n > 0 => format!("{:.2}", ns / n as f64),
        _ => "-".into(),
    };
    println!(
        "{:<34} {:<18} {:>10} {:>10} {:>6} {:>6} {:>5} {:>7} {:>7}",
        r.label,
        packet,
        fmt_ns(&r.skiff),
        fmt_ns(&r.kernel),
        ratio,
        r.insns.map_or("-".into(), |n| n.to_string()),
        r.executed.map_or("-".into(), |n| n.to_string()),
        per_insn,
        retval
    );
}
