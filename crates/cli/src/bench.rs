//! `skiff bench`: every corpus program timed in skiff's JIT, skiff's interpreter and
//! the kernel (BPF_PROG_TEST_RUN with `repeat`), on one core, median of several
//! measurement rounds each (a round measures every engine once, in turn).
//!
//! Both engines keep the context between the `repeat` runs of one test run (the
//! kernel's bpf_test_run never resets it), so a program that changes its packet would
//! leave its main path after the first run. The entries are chosen so that the
//! repeated runs stay on the main path: map contents that translate back and forth
//! (xdp_lb, tc_nat), or, for programs that grow the packet or its headroom, a
//! `batch`: a measurement is `min(repeat / batch, 100)` test runs of `batch` runs each.
//!
//! The `corpus` bench target (crates/cli/benches/corpus.rs) runs the same corpus
//! through [`run`] with extra engines ([`Extra`]: rbpf's interpreter and JIT).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Map as JsonMap, Value};
use skiff_kernel::testpkt;
use skiff_kernel::{KernelObject, TestRun as KTestRun};
use skiff_object::Object;
use skiff_vm::{Collection, LoadOptions, Program, Vm};

/// `skiff bench --datapath`: packets per second through a topology.
#[path = "bench_datapath.rs"]
pub mod datapath;
/// `skiff bench --datapath --suite`: the datapath against the kernel's.
#[path = "bench_dp_suite.rs"]
pub mod suite;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Program runs per measurement (BPF_PROG_TEST_RUN's repeat).
    #[arg(long, default_value_t = 100_000)]
    pub repeat: u32,
    /// Measurement rounds (each engine once per round); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Directory of the corpus sources (<stem>.c).
    #[arg(long, default_value = "bpf")]
    pub bpf_dir: PathBuf,
    /// Print the rows as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Print the table and its summary as Markdown (the table of BENCHMARKS.md).
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Only entries whose `object/prog/packet` contains this.
    #[arg(long)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub datapath: datapath::DatapathArgs,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            repeat: 100_000,
            runs: 5,
            bpf_dir: PathBuf::from("bpf"),
            json: false,
            markdown: false,
            filter: None,
            datapath: datapath::DatapathArgs::default(),
        }
    }
}

// ---------------------------------------------------------------------------
// skiff's engines. The bench runs every program in both (the four functions
// below are the only place that knows how to select an engine).

/// One of skiff's two engines.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SkiffEngine {
    Jit,
    Interp,
}

impl SkiffEngine {
    pub fn name(self) -> &'static str {
        match self {
            SkiffEngine::Jit => "skiff-jit",
            SkiffEngine::Interp => "skiff-interp",
        }
    }

    /// Err(reason) when this build of skiff-vm does not have the engine.
    fn supported(self) -> Result<(), String> {
        Ok(())
    }

    fn engine(self) -> skiff_vm::Engine {
        match self {
            SkiffEngine::Jit => skiff_vm::Engine::Jit,
            SkiffEngine::Interp => skiff_vm::Engine::Interp,
        }
    }

    fn load_options(self) -> LoadOptions {
        LoadOptions {
            possible_cpus: skiff_kernel::possible_cpus().unwrap_or(1),
            engine: self.engine(),
        }
    }

    fn select(self, vm: &mut Vm) {
        vm.engine = self.engine();
    }
}

/// Compile time and native code size of a program the JIT compiled.
#[derive(Clone, Copy, Debug)]
pub struct CompileStats {
    pub compile_time: Duration,
    pub code_size: usize,
}

fn jit_stats(prog: &Program) -> Option<CompileStats> {
    prog.jit_stats().map(|s| CompileStats {
        compile_time: s.compile_time,
        code_size: s.code_size,
    })
}

// ---------------------------------------------------------------------------
// The corpus.

/// A map update made before the runs (flags BPF_ANY).
pub enum Val {
    Bytes(Vec<u8>),
    /// A PROG_ARRAY slot: this program of the same object.
    Prog(&'static str),
}

/// Map updates generated when the entry is loaded (large fills: 64k flows, 10k
/// prefixes), as (map, key, value).
pub type Fill = fn() -> Vec<(&'static str, Vec<u8>, Vec<u8>)>;

pub struct Entry {
    pub object: &'static str,
    pub prog: &'static str,
    /// A name of `testpkt::packets()`, or one built here ([`packet`]).
    pub packet: &'static str,
    pub updates: Vec<(&'static str, Vec<u8>, Val)>,
    pub fill: Option<Fill>,
    pub ctx_in: Option<Vec<u8>>,
    /// 0: one test run of `repeat` runs; else test runs of `batch` runs each.
    pub batch: u32,
}

fn e(object: &'static str, prog: &'static str, packet: &'static str) -> Entry {
    Entry {
        object,
        prog,
        packet,
        updates: Vec::new(),
        fill: None,
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
    fn fill(mut self, f: Fill) -> Self {
        self.fill = Some(f);
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
    pub fn label(&self) -> String {
        format!("{}/{}", self.object, self.prog)
    }
    /// Every update, the generated fill included, in the order they are made.
    fn all_updates(&self) -> Vec<(&'static str, Vec<u8>, Val)> {
        let mut v: Vec<(&'static str, Vec<u8>, Val)> = self
            .fill
            .map(|f| {
                f().into_iter()
                    .map(|(m, k, v)| (m, k, Val::Bytes(v)))
                    .collect()
            })
            .unwrap_or_default();
        for (m, k, val) in &self.updates {
            v.push((
                m,
                k.clone(),
                match val {
                    Val::Bytes(b) => Val::Bytes(b.clone()),
                    Val::Prog(p) => Val::Prog(p),
                },
            ));
        }
        v
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

/// UDP payload of the `ipv4_udp_1500` frame: 14 + 20 + 8 + 1472 = 1514 bytes, a
/// full-MTU Ethernet frame.
const FULL_MTU_PAYLOAD: usize = 1472;

/// The frame called `name`: `ipip_x12` (an IPv4/UDP datagram inside 12 IPIP
/// headers), `ipv4_udp_1500` (a 1514-byte IPv4/UDP frame), else `testpkt::packet`.
pub fn packet(name: &str) -> Option<Vec<u8>> {
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
    if name == "ipv4_udp_1500" {
        let payload: Vec<u8> = (0..FULL_MTU_PAYLOAD)
            .map(|i| (i.wrapping_mul(31).wrapping_add(7) % 251) as u8)
            .collect();
        return Some(testpkt::ipv4_udp(
            testpkt::IP_SRC,
            testpkt::IP_DST,
            5000,
            6000,
            &payload,
        ));
    }
    testpkt::packet(name)
}

/// A small deterministic generator (xorshift64*) for the fills: the same keys every
/// run, on both sides.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// bench_l4lb's `flows` (65536 entries = max_entries): 65535 other TCP flows to the
/// same VIP and the packet's own (ipv4_tcp_syn: 10.0.0.1:40000 -> 10.0.0.2:443) to
/// backend 5; backends 0..64 enabled; the VIP in `vips` with 64 backends.
fn l4lb_fill() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let flow = |saddr: [u8; 4], sport: u16| {
        let mut k = saddr.to_vec();
        k.extend_from_slice(&testpkt::IP_DST);
        k.extend_from_slice(&sport.to_be_bytes());
        k.extend_from_slice(&443u16.to_be_bytes());
        k.extend_from_slice(&[6, 0, 0, 0]);
        k
    };
    let mut v = Vec::with_capacity(65536 + 70);
    for i in 0..65535u32 {
        // 172.16.0.0/12 clients, two flows each: never the packet's 10.0.0.1.
        let client = 0xac10_0000 | (i >> 1);
        let sport = 1024 + (i & 1) as u16;
        v.push(("flows", flow(client.to_be_bytes(), sport), u32k(i % 64)));
    }
    v.push(("flows", flow(testpkt::IP_SRC, 40000), u32k(5)));
    for i in 0..64u32 {
        let mut be = vec![2, 0, 0, 0, 1, i as u8];
        be.extend_from_slice(&1u16.to_ne_bytes()); // flags: enabled
        be.extend_from_slice(&[0; 16]); // packets, bytes
        v.push(("backends", u32k(i), be));
    }
    v.push(("vips", svc_key(testpkt::IP_DST, 443, 6), u32k(64)));
    v
}

/// bench_lpm_fw's `rules`: 10000 prefixes: nested ones over the packet's source
/// (10.0.0.1: /8, /16, /20, /24, /28 allow, /30 drop, rule ids 1..6) and 9994
/// distinct random /16../32 prefixes outside 10.0.0.0/8 (ids from 100).
fn lpm_fill() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let key = |len: u32, addr: u32| {
        let masked = if len == 0 {
            0
        } else {
            addr & (u32::MAX << (32 - len))
        };
        let mut k = len.to_ne_bytes().to_vec();
        k.extend_from_slice(&masked.to_be_bytes());
        k
    };
    let rule = |action: u32, id: u32| {
        let mut r = action.to_ne_bytes().to_vec();
        r.extend_from_slice(&id.to_ne_bytes());
        r
    };
    let src = u32::from_be_bytes(testpkt::IP_SRC);
    let mut v = Vec::with_capacity(10_000);
    let mut seen = std::collections::HashSet::new();
    for (id, (len, action)) in [(8, 0), (16, 0), (20, 0), (24, 0), (28, 0), (30, 1)]
        .into_iter()
        .enumerate()
    {
        let k = key(len, src);
        seen.insert(k.clone());
        v.push(("rules", k, rule(action, id as u32 + 1)));
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut id = 100;
    while v.len() < 10_000 {
        let r = rng.next();
        let addr = (r >> 32) as u32;
        if addr >> 24 == 10 {
            continue;
        }
        let len = 16 + (r % 17) as u32;
        let k = key(len, addr);
        if seen.insert(k.clone()) {
            v.push(("rules", k, rule((r >> 8) as u32 & 1, id)));
            id += 1;
        }
    }
    v
}

/// Every corpus program on a packet and map contents that take its main path.
pub fn entries() -> Vec<Entry> {
    let vip = testpkt::LB_VIP;
    let be_ip = [10, 0, 1, 1];
    let nat_to = [10, 0, 0, 3];
    let mut police = u64v(4_000_000_000); // 4 bytes/ns: the bucket refills faster than runs
    police.extend_from_slice(&u64v(1 << 20));
    let syn_len = packet("ipv4_tcp_syn").map_or(0, |p| p.len());
    let mut chain = e("bench_tailchain", "stage0", "ipv4_tcp_syn");
    for (i, p) in [
        "stage0", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7",
    ]
    .into_iter()
    .enumerate()
    {
        chain = chain.prog_slot("stages", i as u32, p);
    }
    vec![
        // The fixed cost of a run: `return XDP_PASS`.
        e("bench_empty", "xdp_empty", "ipv4_tcp_syn"),
        // Parse and compare, no maps, no helpers.
        e("bench_parse", "xdp_parse", "ipv4_tcp_syn"),
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
        // The heavier programs: a 64k-flow connection table, 10k LPM prefixes, an
        // 8-program tail-call pipeline, a loop over a full-MTU frame.
        e("bench_l4lb", "xdp_l4lb", "ipv4_tcp_syn").fill(l4lb_fill),
        e("bench_lpm_fw", "xdp_lpm_fw", "ipv4_tcp_syn").fill(lpm_fill),
        chain,
        e("bench_pktloop", "xdp_pktloop", "ipv4_udp_1500"),
    ]
}

// ---------------------------------------------------------------------------
// Measurements.

/// One engine's result for an entry.
#[derive(Default, Clone)]
pub struct Side {
    /// ns per program run of each measurement.
    pub runs: Vec<f64>,
    /// The last run's return value (r0's low 32 bits).
    pub retval: Option<u32>,
    /// Why the engine has no figure ("not available: ...", "not supported: ...",
    /// or an error).
    pub error: Option<String>,
}

impl Side {
    pub fn median(&self) -> Option<f64> {
        if self.error.is_some() {
            return None;
        }
        median(&self.runs)
    }
    pub fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }
    /// The engine did not run the program by design (not an error of the run).
    fn absent(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.starts_with("not available") || e.starts_with("not supported"))
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
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

pub struct Row {
    pub label: String,
    pub packet: &'static str,
    pub batch: u32,
    pub insns: Option<usize>,
    /// BPF instructions a run executes (measured in skiff's interpreter).
    pub executed: Option<u64>,
    pub jit: Side,
    pub interp: Side,
    pub kernel: Side,
    /// The JIT's compile time and code size for the entry program.
    pub compile: Option<CompileStats>,
    /// Engines of an [`Extra`], in its column order.
    pub extra: Vec<(String, Side)>,
}

impl Row {
    /// An engine's median over the kernel's.
    pub fn ratio(&self, s: &Side) -> Option<f64> {
        let (s, k) = (s.median()?, self.kernel.median()?);
        (k > 0.0).then(|| s / k)
    }
    /// Every engine that returned something, with its name.
    fn retvals(&self) -> Vec<(&str, u32)> {
        let mut v: Vec<(&str, u32)> = [
            ("skiff-jit", &self.jit),
            ("skiff-interp", &self.interp),
            ("kernel", &self.kernel),
        ]
        .into_iter()
        .filter_map(|(n, s)| Some((n, s.retval?)))
        .collect();
        v.extend(
            self.extra
                .iter()
                .filter_map(|(n, s)| Some((n.as_str(), s.retval?))),
        );
        v
    }
    /// The engines whose return value differs from the kernel's (or, without
    /// the kernel, from the interpreter's).
    pub fn retval_mismatch(&self) -> Vec<String> {
        let reference = self.kernel.retval.or(self.interp.retval);
        let Some(r) = reference else {
            return Vec::new();
        };
        self.retvals()
            .into_iter()
            .filter(|(_, v)| *v != r)
            .map(|(n, v)| format!("{n} returned {} (reference {})", v as i32, r as i32))
            .collect()
    }
}

/// At most this many test runs per measurement of a batched entry: the kernel's XDP
/// test run with repeat > 1 installs the program in the XDP dispatcher and removes
/// it again (net/bpf/test_run.c: bpf_prog_change_xdp), two synchronize_rcu() of
/// about 10 ms each, outside the timed loop but in the wall time.
const MAX_BATCH_CALLS: u32 = 100;

/// The test runs one measurement makes: `repeat` runs in one, or for a batched
/// entry `min(repeat / batch, MAX_BATCH_CALLS)` test runs of `batch` runs.
pub fn chunks(repeat: u32, batch: u32) -> Vec<u32> {
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

fn skiff_load(obj: &Object, en: &Entry, engine: SkiffEngine) -> Result<SkiffSide, String> {
    engine.supported()?;
    let coll = Collection::load(obj, &engine.load_options()).map_err(|e| format!("load: {e}"))?;
    for (map, key, val) in &en.all_updates() {
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
                "update of map {map}: {} (errno {})",
                std::io::Error::from_raw_os_error(errno.abs()),
                errno.abs()
            )
        })?;
    }
    let prog = coll.program(en.prog).map_err(|e| format!("{e}"))?.clone();
    let mut vm = Vm::new(skiff_net::helper_table());
    vm.env.programs = coll.programs.clone();
    engine.select(&mut vm);
    Ok(SkiffSide { vm, prog })
}

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

/// Nanoseconds this thread has waited on a run queue (runnable, another task on
/// its CPU) since it started: the second field of /proc/thread-self/schedstat
/// (kernel/sched/stats.h: sched_info_arrive adds each wait when the thread gets
/// the CPU back, so a reading taken while running is complete). None without
/// CONFIG_SCHED_INFO.
pub fn run_delay_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Wall time minus the time the thread waited for its CPU in between: what the
/// kernel's bpf_test_timer counts (it stops the clock when the test run
/// reschedules), so a busy machine does not inflate userspace engines' figures
/// against the kernel's. Never below 0.
pub fn on_cpu_ns(wall_ns: f64, delay_before: Option<u64>, delay_after: Option<u64>) -> f64 {
    let waited = match (delay_before, delay_after) {
        (Some(b), Some(a)) => a.saturating_sub(b) as f64,
        _ => 0.0,
    };
    (wall_ns - waited).max(0.0)
}

/// One measurement in skiff: ns per run (skiff's own timing of the runs, less the
/// time the thread waited for its CPU), last retval.
fn skiff_measure(
    s: &mut SkiffSide,
    pkt: &[u8],
    ctx: Option<&[u8]>,
    calls: &[u32],
) -> Result<(f64, u32), String> {
    let (mut total, mut runs, mut retval) = (0f64, 0f64, 0);
    let d0 = run_delay_ns();
    for &n in calls {
        let out = test_run(s, pkt, ctx, n).map_err(|e| format!("test run refused: {e}"))?;
        if let Some(ex) = &out.exception {
            return Err(format!("{} of {n} runs aborted: {ex}", out.exceptions));
        }
        total += out.duration_ns as f64 * f64::from(n);
        runs += f64::from(n);
        retval = out.retval;
    }
    let total = on_cpu_ns(total, d0, run_delay_ns());
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
    for (map, key, val) in &en.all_updates() {
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

pub fn compile(dir: &Path, stem: &str) -> Result<Object, String> {
    let out = std::env::temp_dir().join("skiff-bench-bpf");
    let path = skiff_kernel::clang::compile(&dir.join(format!("{stem}.c")), &out)?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Object::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// What an [`Extra`] engine gets for one entry.
pub struct ExtraInput<'a> {
    pub entry: &'a Entry,
    /// The entry program as skiff loaded it (`code`: linked, ld_imm64 resolved).
    pub prog: &'a Program,
    pub packet: &'a [u8],
    /// Runs per measurement.
    pub repeat: u32,
}

/// Further engines a caller times alongside skiff's and the kernel's (the `corpus`
/// bench target: rbpf).
pub trait Extra {
    /// Column names, one per engine.
    fn columns(&self) -> Vec<String>;
    /// Prepares one entry: one state per column, or why that engine cannot run it
    /// ("not supported: ...").
    fn prepare(&mut self, input: &ExtraInput) -> Vec<Result<Box<dyn ExtraRun>, String>>;
}

/// One engine prepared for one entry.
pub trait ExtraRun {
    /// One measurement of `repeat` runs: ns per run (on the CPU: [`on_cpu_ns`])
    /// and the last r0's low 32 bits.
    fn measure(&mut self, repeat: u32) -> Result<(f64, u32), String>;
}

fn bench_entry(
    en: &Entry,
    obj: Result<&Object, &String>,
    a: &BenchArgs,
    kernel_ok: &Result<(), String>,
    extra: &mut Option<&mut dyn Extra>,
) -> Row {
    let extra_cols = extra.as_ref().map(|x| x.columns()).unwrap_or_default();
    let mut row = Row {
        label: en.label(),
        packet: en.packet,
        batch: en.batch,
        insns: None,
        executed: None,
        jit: Side::default(),
        interp: Side::default(),
        kernel: Side::default(),
        compile: None,
        extra: extra_cols
            .into_iter()
            .map(|n| (n, Side::default()))
            .collect(),
    };
    let fail_all = |row: &mut Row, msg: &str| {
        row.jit.fail(msg.to_string());
        row.interp.fail(msg.to_string());
        row.kernel.fail(msg.to_string());
        for (_, s) in &mut row.extra {
            s.fail(msg.to_string());
        }
    };
    let obj = match obj {
        Ok(o) => o,
        Err(msg) => {
            fail_all(&mut row, &format!("compile: {msg}"));
            return row;
        }
    };
    row.insns = obj.program(en.prog).map(|p| p.insns.len());
    let Some(pkt) = packet(en.packet) else {
        fail_all(&mut row, &format!("no packet named {:?}", en.packet));
        return row;
    };
    let calls = chunks(a.repeat, en.batch);
    let ctx = en.ctx_in.as_deref();
    let load = |engine: SkiffEngine, side: &mut Side| match skiff_load(obj, en, engine) {
        Ok(s) => Some(s),
        Err(msg) => {
            side.fail(msg);
            None
        }
    };
    let mut jit = load(SkiffEngine::Jit, &mut row.jit);
    let mut interp = load(SkiffEngine::Interp, &mut row.interp);
    row.compile = jit.as_ref().and_then(|s| jit_stats(&s.prog));
    let ko = match kernel_ok {
        Err(reason) => {
            row.kernel.fail(format!("not available: {reason}"));
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
    let mut extra_runs: Vec<Option<Box<dyn ExtraRun>>> = Vec::new();
    if let (Some(x), Some(s)) = (extra.as_mut(), interp.as_ref()) {
        let input = ExtraInput {
            entry: en,
            prog: &s.prog,
            packet: &pkt,
            repeat: a.repeat,
        };
        for (i, r) in x.prepare(&input).into_iter().enumerate() {
            match r {
                Ok(run) => extra_runs.push(Some(run)),
                Err(msg) => {
                    if let Some((_, side)) = row.extra.get_mut(i) {
                        side.fail(msg);
                    }
                    extra_runs.push(None);
                }
            }
        }
    } else {
        for (_, side) in &mut row.extra {
            side.fail("not supported: skiff could not load the program".into());
        }
    }
    let record = |side: &mut Side, r: Result<(f64, u32), String>| match r {
        Ok((ns, ret)) => {
            side.runs.push(ns);
            side.retval = Some(ret);
        }
        Err(msg) => side.fail(msg),
    };
    for _ in 0..a.runs.max(1) {
        if let Some(s) = jit.as_mut().filter(|_| row.jit.error.is_none()) {
            record(&mut row.jit, skiff_measure(s, &pkt, ctx, &calls));
        }
        if let Some(s) = interp.as_mut().filter(|_| row.interp.error.is_none()) {
            record(&mut row.interp, skiff_measure(s, &pkt, ctx, &calls));
        }
        if let Some(k) = ko.as_ref().filter(|_| row.kernel.error.is_none()) {
            record(
                &mut row.kernel,
                kernel_measure(k, en.prog, &pkt, ctx, &calls),
            );
        }
        for (i, run) in extra_runs.iter_mut().enumerate() {
            if let (Some(run), Some((_, side))) = (run.as_mut(), row.extra.get_mut(i)) {
                if side.error.is_none() {
                    record(side, run.measure(a.repeat));
                }
            }
        }
    }
    if let Some(s) = interp.as_mut().filter(|_| row.interp.error.is_none()) {
        row.executed = executed_insns(s, &pkt, ctx);
    }
    row
}

// ---------------------------------------------------------------------------
// Output.

fn fmt_ns(s: &Side) -> String {
    match (s.median(), &s.error) {
        (Some(v), _) => format!("{v:.1}"),
        (None, Some(_)) if s.absent() => "-".into(),
        (None, _) => "error".into(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |x| format!("{x:.2}"))
}

fn fmt_ret(r: Option<u32>) -> String {
    r.map_or("-".into(), |v| (v as i32).to_string())
}

fn packet_label(r: &Row) -> String {
    if r.batch > 0 {
        format!("{} (b{})", r.packet, r.batch)
    } else {
        r.packet.to_string()
    }
}

/// The cells of one row, in [`header`] order.
fn cells(r: &Row) -> Vec<String> {
    let mut c = vec![
        r.label.clone(),
        packet_label(r),
        fmt_ns(&r.jit),
        fmt_ns(&r.interp),
        fmt_ns(&r.kernel),
    ];
    for (_, s) in &r.extra {
        c.push(fmt_ns(s));
    }
    c.push(fmt_ratio(r.ratio(&r.jit)));
    c.push(fmt_ratio(r.ratio(&r.interp)));
    for (_, s) in &r.extra {
        c.push(fmt_ratio(r.ratio(s)));
    }
    c.push(r.compile.map_or("-".into(), |s| {
        format!("{:.1}", s.compile_time.as_secs_f64() * 1e6)
    }));
    c.push(r.compile.map_or("-".into(), |s| s.code_size.to_string()));
    c.push(r.insns.map_or("-".into(), |n| n.to_string()));
    c.push(r.executed.map_or("-".into(), |n| n.to_string()));
    let mut rets = vec![
        fmt_ret(r.jit.retval),
        fmt_ret(r.interp.retval),
        fmt_ret(r.kernel.retval),
    ];
    rets.extend(r.extra.iter().map(|(_, s)| fmt_ret(s.retval)));
    c.push(rets.join("/"));
    c
}

fn header(extra: &[String]) -> Vec<String> {
    let mut h: Vec<String> = ["program", "packet", "jit ns", "interp ns", "kernel ns"]
        .map(String::from)
        .to_vec();
    h.extend(extra.iter().map(|n| format!("{n} ns")));
    h.push("jit/k".into());
    h.push("interp/k".into());
    h.extend(extra.iter().map(|n| format!("{n}/k")));
    for s in ["compile µs", "code B", "insns", "exec"] {
        h.push(s.into());
    }
    let mut ret = vec!["jit", "interp", "kernel"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    ret.extend(extra.iter().cloned());
    h.push(format!("retval {}", ret.join("/")));
    h
}

/// Column widths: the first two left-aligned, the rest right-aligned.
const WIDTHS: [usize; 2] = [34, 18];

fn text_line(cells: &[String], extra: usize) -> String {
    let mut s = String::new();
    let numeric = 3 + 2 * extra + 2 + 4;
    for (i, c) in cells.iter().enumerate() {
        match WIDTHS.get(i) {
            Some(w) => s.push_str(&format!("{c:<w$} ")),
            None if i < 2 + numeric => s.push_str(&format!("{c:>10} ")),
            None => s.push_str(&format!(" {c}")),
        }
    }
    s.trim_end().to_string()
}

fn md_line(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// An engine's ratio to the kernel in a row.
type RatioOf = Box<dyn Fn(&Row) -> Option<f64>>;

/// Marks a summary line that belongs under the previous one.
const SUB: &str = "\t";

/// The summary lines under the table.
fn summary(rows: &[Row], kernel_ok: &Result<(), String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(reason) = kernel_ok {
        out.push(format!("kernel: not available ({reason})"));
    }
    let mut engines: Vec<(String, RatioOf)> = vec![
        ("skiff-jit".into(), Box::new(|r: &Row| r.ratio(&r.jit))),
        (
            "skiff-interp".into(),
            Box::new(|r: &Row| r.ratio(&r.interp)),
        ),
    ];
    if let Some(first) = rows.first() {
        for (i, (n, _)) in first.extra.iter().enumerate() {
            engines.push((
                n.clone(),
                Box::new(move |r: &Row| r.extra.get(i).and_then(|(_, s)| r.ratio(s))),
            ));
        }
    }
    for (name, f) in &engines {
        let f = f.as_ref();
        let ratios: Vec<f64> = rows.iter().filter_map(f).collect();
        let Some(m) = median(&ratios) else {
            continue;
        };
        let max = rows
            .iter()
            .filter_map(|r| Some((f(r)?, r)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let mut line = format!("median {name}/kernel over {} rows: {m:.2}x", ratios.len());
        if let Some((x, r)) = max {
            line.push_str(&format!("; max {x:.2}x ({} {})", r.label, r.packet));
        }
        out.push(line);
        let steady: Vec<f64> = rows.iter().filter(|r| r.batch == 0).filter_map(f).collect();
        if let Some(m) = median(&steady).filter(|_| steady.len() < ratios.len()) {
            out.push(format!(
                "median {name}/kernel over the {} rows without a batch (b): {m:.2}x",
                steady.len()
            ));
        }
    }
    for r in rows {
        for (name, s) in [
            ("skiff-jit", &r.jit),
            ("skiff-interp", &r.interp),
            ("kernel", &r.kernel),
        ]
        .into_iter()
        .chain(r.extra.iter().map(|(n, s)| (n.as_str(), s)))
        {
            if let Some(e) = &s.error {
                if !s.absent() {
                    out.push(format!("{} {}: {name}: error {e}", r.label, r.packet));
                }
            }
        }
        for m in r.retval_mismatch() {
            out.push(format!("{} {}: RETVAL MISMATCH: {m}", r.label, r.packet));
        }
    }
    // Engines that do not run a row: each reason (its details in parentheses
    // dropped: they are in --json) with the programs it applies to; engines with
    // the same reason for the same programs on one line.
    let mut reasons: Vec<(String, String, Vec<String>, usize)> = Vec::new();
    for r in rows {
        for (name, s) in [("skiff-jit", &r.jit)]
            .into_iter()
            .chain(r.extra.iter().map(|(n, s)| (n.as_str(), s)))
        {
            if let (true, Some(e)) = (s.absent(), &s.error) {
                let why = e.split(" (").next().unwrap_or(e).to_string();
                let prog = r.label.rsplit('/').next().unwrap_or(&r.label).to_string();
                match reasons
                    .iter_mut()
                    .find(|(n, w, _, _)| n == name && *w == why)
                {
                    Some((_, _, progs, count)) => {
                        *count += 1;
                        if !progs.contains(&prog) {
                            progs.push(prog)
                        }
                    }
                    None => reasons.push((name.to_string(), why, vec![prog], 1)),
                }
            }
        }
    }
    let mut merged: Vec<(Vec<String>, String, Vec<String>, usize)> = Vec::new();
    for (name, why, progs, count) in reasons {
        match merged
            .iter_mut()
            .find(|(_, w, p, _)| *w == why && *p == progs)
        {
            Some((names, _, _, _)) => names.push(name),
            None => merged.push((vec![name], why, progs, count)),
        }
    }
    if !merged.is_empty() {
        out.push("\"-\" means:".into());
        for (names, why, progs, count) in merged {
            let which = if count == rows.len() {
                "every row".to_string()
            } else {
                progs.join(", ")
            };
            out.push(format!("{SUB}{}: {why} ({which})", names.join(", ")));
        }
    }
    out
}

fn row_json(r: &Row) -> Value {
    let mut extra = JsonMap::new();
    for (n, s) in &r.extra {
        extra.insert(
            n.clone(),
            json!({
                "ns": s.median(),
                "ratio": r.ratio(s),
                "runs_ns": s.runs,
                "retval": s.retval,
                "error": s.error,
            }),
        );
    }
    json!({
        "program": r.label,
        "packet": r.packet,
        "batch": r.batch,
        "insns": r.insns,
        "executed_insns": r.executed,
        // `skiff_*` and `ratio` are the interpreter's (the keys predate the JIT).
        "skiff_ns": r.interp.median(),
        "kernel_ns": r.kernel.median(),
        "ratio": r.ratio(&r.interp),
        "skiff_runs_ns": r.interp.runs,
        "kernel_runs_ns": r.kernel.runs,
        "skiff_retval": r.interp.retval,
        "kernel_retval": r.kernel.retval,
        "skiff_error": r.interp.error,
        "kernel_error": r.kernel.error,
        "interp_ns": r.interp.median(),
        "interp_ratio": r.ratio(&r.interp),
        "jit_ns": r.jit.median(),
        "jit_ratio": r.ratio(&r.jit),
        "jit_runs_ns": r.jit.runs,
        "jit_retval": r.jit.retval,
        "jit_error": r.jit.error,
        "compile_us": r.compile.map(|s| s.compile_time.as_secs_f64() * 1e6),
        "code_size": r.compile.map(|s| s.code_size),
        "retval_mismatch": r.retval_mismatch(),
        "extra": extra,
    })
}

/// Runs every entry (the filtered ones), printing as it goes in the format `a`
/// asks for, and returns the rows.
pub fn run(a: &BenchArgs, mut extra: Option<&mut dyn Extra>) -> Vec<Row> {
    // Both engines on one core: the kernel's BPF_PROG_TEST_RUN runs on the caller's CPU.
    if let Err(e) = skiff_kernel::pin_current_thread(0) {
        eprintln!("skiff bench: warning: cannot pin to CPU 0: {e}");
    }
    let kernel_ok = skiff_kernel::available();
    let extra_cols = extra.as_ref().map(|x| x.columns()).unwrap_or_default();
    let head = header(&extra_cols);
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
        let row = bench_entry(&en, obj.as_ref(), a, &kernel_ok, &mut extra);
        if a.markdown {
            if rows.is_empty() {
                println!("{}", md_line(&head));
                println!("{}", md_line(&vec!["---".to_string(); head.len()]));
            }
            println!("{}", md_line(&cells(&row)));
        } else if !a.json {
            if rows.is_empty() {
                println!("{}", text_line(&head, extra_cols.len()));
            }
            println!("{}", text_line(&cells(&row), extra_cols.len()));
        }
        rows.push(row);
    }
    if a.json {
        println!(
            "{}",
            Value::Array(rows.iter().map(row_json).collect::<Vec<_>>())
        );
        return rows;
    }
    println!();
    for l in summary(&rows, &kernel_ok) {
        match (a.markdown, l.strip_prefix(SUB)) {
            (true, Some(sub)) => println!("  - {sub}"),
            (true, None) => println!("- {l}"),
            (false, Some(sub)) => println!("  {sub}"),
            (false, None) => println!("{l}"),
        }
    }
    rows
}

pub fn main(a: BenchArgs) -> i32 {
    if a.datapath.datapath {
        return datapath::main(&a);
    }
    let rows = run(&a, None);
    // A return value that differs between engines is a bug: exit 1.
    if rows.iter().any(|r| !r.retval_mismatch().is_empty()) {
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_have_their_sizes_and_the_packets_keys() {
        let f = l4lb_fill();
        let flows: Vec<_> = f.iter().filter(|(m, _, _)| *m == "flows").collect();
        assert_eq!(flows.len(), 65536);
        let keys: std::collections::HashSet<_> = flows.iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys.len(), 65536);
        let own = [10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0x01, 0xbb, 6, 0, 0, 0];
        assert!(flows.iter().any(|(_, k, v)| k[..] == own && *v == u32k(5)));
        assert_eq!(f.iter().filter(|(m, _, _)| *m == "backends").count(), 64);

        let l = lpm_fill();
        assert_eq!(l.len(), 10_000);
        let keys: std::collections::HashSet<_> = l.iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys.len(), 10_000);
        // 10.0.0.1/30 -> drop, rule 6
        let mut k30 = 30u32.to_ne_bytes().to_vec();
        k30.extend_from_slice(&[10, 0, 0, 0]);
        let mut v30 = 1u32.to_ne_bytes().to_vec();
        v30.extend_from_slice(&6u32.to_ne_bytes());
        assert!(l.iter().any(|(_, k, v)| *k == k30 && *v == v30));
    }

    #[test]
    fn on_cpu_time_leaves_out_run_queue_waits() {
        assert_eq!(on_cpu_ns(1000.0, Some(50), Some(350)), 700.0);
        assert_eq!(on_cpu_ns(1000.0, Some(50), Some(5000)), 0.0);
        assert_eq!(on_cpu_ns(1000.0, None, Some(350)), 1000.0);
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            let (a, b) = (run_delay_ns(), run_delay_ns());
            assert!(a.is_some() && b >= a, "{a:?} {b:?}");
        }
    }

    #[test]
    fn full_mtu_packet_and_chunks() {
        assert_eq!(packet("ipv4_udp_1500").map(|p| p.len()), Some(1514));
        assert_eq!(chunks(100_000, 0), vec![100_000]);
        assert_eq!(chunks(100_000, 8), vec![8; 100]);
        assert_eq!(chunks(5, 8), vec![5]);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    /// The heavier corpus programs run in skiff (and in the kernel when there is
    /// one) with the expected return values, the same in every engine.
    #[test]
    fn heavy_corpus_runs_with_expected_return_values() {
        if let Err(why) = skiff_kernel::clang::available() {
            eprintln!("SKIPPED: {why}");
            return;
        }
        let a = BenchArgs {
            repeat: 20,
            runs: 1,
            bpf_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf"),
            filter: Some("bench_".into()),
            json: true,
            ..BenchArgs::default()
        };
        let rows = run(&a, None);
        let got: Vec<(String, Option<u32>)> = rows
            .iter()
            .map(|r| (r.label.clone(), r.interp.retval))
            .collect();
        let want = [
            ("bench_empty/xdp_empty", 2),   // XDP_PASS
            ("bench_parse/xdp_parse", 2),   // XDP_PASS: port 443
            ("bench_l4lb/xdp_l4lb", 3),     // XDP_TX: flow found in the full table
            ("bench_lpm_fw/xdp_lpm_fw", 1), // XDP_DROP: the /30 rule
            ("bench_tailchain/stage0", 3),  // XDP_TX: all 8 stages passed
            ("bench_pktloop/xdp_pktloop", 1),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(l, r)| (l.to_string(), Some(*r)))
                .collect::<Vec<_>>()
        );
        for r in &rows {
            assert_eq!(r.retval_mismatch(), Vec::<String>::new(), "{}", r.label);
            assert_eq!(r.interp.error, None, "{}", r.label);
        }
    }
}

// ---------------------------------------------------------------------------

/// Running corpus programs in engines that have no maps, no kernel helpers and no
/// kernel context (rbpf, for the `corpus` bench target): which programs can run,
/// and the context rewrite the kernel's verifier would do.
pub mod nokernel {
    use skiff_isa::Insn;
    use skiff_object::ProgType;

    // Instruction classes and fields (include/uapi/linux/bpf.h).
    const BPF_LD: u8 = 0x00;
    const BPF_LDX: u8 = 0x01;
    const BPF_ST: u8 = 0x02;
    const BPF_STX: u8 = 0x03;
    const BPF_ALU: u8 = 0x04;
    const BPF_JMP: u8 = 0x05;
    const BPF_JMP32: u8 = 0x06;
    const BPF_ALU64: u8 = 0x07;
    const BPF_MEM: u8 = 0x60;
    const BPF_ATOMIC: u8 = 0xc0;
    const BPF_W: u8 = 0x00;
    const BPF_DW: u8 = 0x18;
    const BPF_CALL: u8 = 0x80;
    const BPF_EXIT: u8 = 0x90;
    const BPF_JA: u8 = 0x00;
    const MOV64_X: u8 = 0xbf;
    const BPF_FUNC_TAIL_CALL: i32 = 12;

    /// `struct xdp_md` offsets of the three pointer fields (u32 in the UAPI, pointers
    /// after the kernel's rewrite).
    const XDP_PTR_FIELDS: [i16; 3] = [0, 4, 8];
    /// `sizeof(struct xdp_md)`.
    const XDP_MD_SIZE: i16 = 24;

    /// Why rbpf cannot run this program, if it cannot.
    pub fn unsupported(prog: &skiff_vm::Program) -> Option<String> {
        if !prog.maps.is_empty() {
            return Some(format!(
                "not supported: rbpf has no maps ({} uses {})",
                prog.name,
                prog.maps.len()
            ));
        }
        if prog.prog_type != ProgType::Xdp {
            return Some("not supported: rbpf knows no __sk_buff (TC) context".into());
        }
        for (i, insn) in prog.code.iter().enumerate() {
            let class = insn.class();
            if insn.code == BPF_JMP | BPF_CALL && insn.src == 0 {
                return Some(if insn.imm == BPF_FUNC_TAIL_CALL {
                    format!("not supported: rbpf has no tail calls (insn {i})")
                } else {
                    format!(
                        "not supported: rbpf has none of the kernel's helpers (helper {} at insn {i})",
                        insn.imm
                    )
                });
            }
            if (class == BPF_STX || class == BPF_ST) && insn.code & 0xe0 == BPF_ATOMIC {
                return Some(format!(
                    "not supported: rbpf has no atomic instructions (insn {i})"
                ));
            }
        }
        None
    }

    /// Which registers hold the context pointer before each instruction (bit r),
    /// by a forward data-flow pass over the program and its subprograms (meet:
    /// intersection). r1 holds it at entry; `mov64 rX, rY` copies it; a call
    /// clobbers r0-r5 and passes r1-r5 to a subprogram.
    fn ctx_regs(code: &[Insn]) -> Vec<Option<u16>> {
        let n = code.len();
        let mut state: Vec<Option<u16>> = vec![None; n];
        let mut work = vec![0usize];
        if let Some(s) = state.get_mut(0) {
            *s = Some(1 << 1);
        }
        let merge = |state: &mut Vec<Option<u16>>, work: &mut Vec<usize>, pc: usize, m: u16| {
            if let Some(slot) = state.get_mut(pc) {
                let new = slot.map_or(m, |old| old & m);
                if *slot != Some(new) {
                    *slot = Some(new);
                    work.push(pc);
                }
            }
        };
        while let Some(pc) = work.pop() {
            let (Some(insn), Some(Some(m))) = (code.get(pc), state.get(pc).copied()) else {
                continue;
            };
            let dst = 1u16 << (insn.dst & 0x0f);
            let src = 1u16 << (insn.src & 0x0f);
            let class = insn.class();
            let next = pc + 1;
            let jump = |off: i64| usize::try_from(pc as i64 + 1 + off).ok();
            match class {
                // ld_imm64 (two slots) sets dst
                BPF_LD if insn.code == 0x18 => merge(&mut state, &mut work, pc + 2, m & !dst),
                // legacy LD_ABS/LD_IND: r0 set, r1-r5 clobbered as by a call
                BPF_LD => merge(&mut state, &mut work, next, m & !0b11_1111),
                BPF_LDX => merge(&mut state, &mut work, next, m & !dst),
                BPF_ST | BPF_STX => merge(&mut state, &mut work, next, m),
                BPF_ALU | BPF_ALU64 => {
                    let out = if insn.code == MOV64_X && m & src != 0 {
                        m | dst
                    } else {
                        m & !dst
                    };
                    merge(&mut state, &mut work, next, out);
                }
                BPF_JMP | BPF_JMP32 => {
                    let op = insn.op();
                    if op == BPF_EXIT {
                        continue;
                    }
                    if op == BPF_CALL {
                        if insn.src == 1 {
                            if let Some(t) = jump(i64::from(insn.imm)) {
                                merge(&mut state, &mut work, t, m & 0b11_1110);
                            }
                        }
                        merge(&mut state, &mut work, next, m & !0b11_1111);
                        continue;
                    }
                    if op == BPF_JA {
                        let off = if class == BPF_JMP32 {
                            i64::from(insn.imm)
                        } else {
                            i64::from(insn.off)
                        };
                        if let Some(t) = jump(off) {
                            merge(&mut state, &mut work, t, m);
                        }
                        continue;
                    }
                    if let Some(t) = jump(i64::from(insn.off)) {
                        merge(&mut state, &mut work, t, m);
                    }
                    merge(&mut state, &mut work, next, m);
                }
                _ => {}
            }
        }
        state
    }

    /// The program with its `struct xdp_md` accesses rewritten for rbpf's metadata
    /// buffer, where field `off` lives at `2 * off` (the pointer fields as 64-bit
    /// values). Err when the program writes the context or reads it in a way the
    /// rewrite does not cover.
    pub fn rewrite_xdp_ctx(code: &[Insn]) -> Result<Vec<Insn>, String> {
        let regs = ctx_regs(code);
        let mut out = code.to_vec();
        for (i, insn) in out.iter_mut().enumerate() {
            let m = regs.get(i).copied().flatten().unwrap_or(0);
            let class = insn.class();
            if class == BPF_LDX && m & (1 << (insn.src & 0x0f)) != 0 {
                if insn.code & 0xe0 != BPF_MEM || insn.off < 0 || insn.off >= XDP_MD_SIZE {
                    return Err(format!(
                        "not supported: context access the rewrite does not cover (insn {i})"
                    ));
                }
                if XDP_PTR_FIELDS.contains(&insn.off) {
                    if insn.size() != BPF_W {
                        return Err(format!(
                            "not supported: narrow load of an xdp_md pointer (insn {i})"
                        ));
                    }
                    insn.code = BPF_LDX | BPF_MEM | BPF_DW;
                }
                insn.off *= 2;
            } else if (class == BPF_ST || class == BPF_STX) && m & (1 << (insn.dst & 0x0f)) != 0 {
                return Err(format!("not supported: writes the context (insn {i})"));
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
            Insn::new(code, dst, src, off, imm)
        }

        #[test]
        fn ctx_loads_follow_copies_and_become_wide() {
            let code = [
                i(MOV64_X, 6, 1, 0, 0), // r6 = r1
                i(0x61, 2, 6, 4, 0),    // r2 = *(u32 *)(r6 + 4): data_end
                i(0x61, 3, 1, 12, 0),   // r3 = ingress_ifindex
                i(0xb7, 1, 0, 0, 0),    // r1 = 0: no longer ctx
                i(0x61, 4, 1, 0, 0),    // not a ctx load
                i(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
            ];
            let out = rewrite_xdp_ctx(&code).unwrap();
            assert_eq!(out[1], i(BPF_LDX | BPF_MEM | BPF_DW, 2, 6, 8, 0));
            assert_eq!(out[2], i(0x61, 3, 1, 24, 0));
            assert_eq!(out[4], code[4]);
        }

        #[test]
        fn ctx_store_is_refused() {
            let code = [i(0x63, 1, 2, 0, 0), i(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)];
            assert_eq!(
                rewrite_xdp_ctx(&code),
                Err("not supported: writes the context (insn 0)".into())
            );
        }
    }
}
