//! `cargo bench -p skiff --bench corpus [-- OPTIONS]`: `skiff bench`'s corpus and
//! table (skiff JIT, skiff interpreter, the kernel) with two more engines, rbpf's
//! interpreter and rbpf's x86-64 JIT (`EbpfVmMbuff`: r1 points to a metadata
//! buffer that holds the packet's addresses), for the programs rbpf can run.
//!
//! rbpf has no maps, none of the kernel's helpers, no tail calls and no atomic
//! instructions, and it knows nothing of `struct xdp_md`: a program that uses any
//! of those gets "-" and the reason. For the others the bench does what the
//! kernel's verifier does for the JIT (net/core/filter.c: xdp_convert_ctx_access):
//! it rewrites each `struct xdp_md` field load into a load from the metadata
//! buffer, where `data`, `data_end` and `data_meta` are 64-bit pointers.
//!
//! Options are `skiff bench`'s (`--repeat`, `--runs`, `--filter`, `--markdown`,
//! `--json`, `--bpf-dir`). Exits 1 when an engine's return value differs.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use skiff::bench::nokernel::{rewrite_xdp_ctx, unsupported};
use skiff::bench::{self, BenchArgs, Extra, ExtraInput, ExtraRun};

#[derive(Parser)]
#[command(name = "corpus", about = "skiff bench with rbpf's engines")]
struct Cli {
    #[command(flatten)]
    a: BenchArgs,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// rbpf's engines.
struct Rbpf;

/// One program in one of rbpf's engines, with its packet and metadata buffer.
struct RbpfRun {
    vm: rbpf::EbpfVmMbuff<'static>,
    jit: bool,
    packet: Vec<u8>,
    /// `struct xdp_md` at twice its offsets: data, data_end, data_meta as u64 at
    /// 0, 8, 16; ingress_ifindex, rx_queue_index, egress_ifindex at 24, 32, 40.
    mbuff: Box<[u8; 48]>,
}

impl RbpfRun {
    fn new(bytes: &'static [u8], jit: bool, input: &ExtraInput) -> Result<RbpfRun, String> {
        let mut vm = rbpf::EbpfVmMbuff::new(Some(bytes))
            .map_err(|e| format!("not supported: rbpf's verifier refuses it: {e}"))?;
        if jit {
            vm.jit_compile()
                .map_err(|e| format!("not supported: rbpf's JIT: {e}"))?;
        }
        let mut mbuff = Box::new([0u8; 48]);
        if let Some(ctx) = &input.entry.ctx_in {
            // xdp_md's u32 fields after the pointers: ingress_ifindex etc.
            for (field, at) in [(12usize, 24usize), (16, 32), (20, 40)] {
                if let (Some(src), Some(dst)) =
                    (ctx.get(field..field + 4), mbuff.get_mut(at..at + 4))
                {
                    dst.copy_from_slice(src);
                }
            }
        }
        let mut run = RbpfRun {
            vm,
            jit,
            packet: input.packet.to_vec(),
            mbuff,
        };
        run.set_pointers();
        Ok(run)
    }

    /// data, data_end, data_meta (no metadata: = data) of `packet`.
    fn set_pointers(&mut self) {
        let start = self.packet.as_ptr() as u64;
        let end = start + self.packet.len() as u64;
        self.mbuff[0..8].copy_from_slice(&start.to_ne_bytes());
        self.mbuff[8..16].copy_from_slice(&end.to_ne_bytes());
        self.mbuff[16..24].copy_from_slice(&start.to_ne_bytes());
    }

    fn once(&mut self) -> Result<u64, String> {
        if self.jit {
            let len = self.mbuff.len();
            // SAFETY: the slice covers `self.mbuff` (48 bytes, alive as long as
            // self, not moved: boxed), and nothing else refers to it during the call.
            // rbpf asks for the VM's lifetime ('static, the leaked program) although
            // the JIT code only uses the buffer during the call.
            let mbuff: &'static mut [u8] =
                unsafe { std::slice::from_raw_parts_mut(self.mbuff.as_mut_ptr(), len) };
            // SAFETY: rbpf's JIT code has no memory checks. The program is one the
            // kernel's verifier accepts (the bench loads it there too), and the bench
            // runs it in rbpf's interpreter, which checks every access, before the
            // JIT (the columns are measured in that order, and an error stops the
            // JIT's column).
            unsafe { self.vm.execute_program_jit(&mut self.packet, mbuff) }
                .map_err(|e| e.to_string())
        } else {
            self.vm
                .execute_program(&self.packet, &self.mbuff[..])
                .map_err(|e| e.to_string())
        }
    }
}

impl ExtraRun for RbpfRun {
    fn measure(&mut self, repeat: u32) -> Result<(f64, u32), String> {
        self.set_pointers();
        let repeat = repeat.max(1);
        let d0 = bench::run_delay_ns();
        let t = Instant::now();
        let mut r0 = 0;
        for _ in 0..repeat {
            r0 = std::hint::black_box(self.once()?);
        }
        let wall = t.elapsed().as_nanos() as f64;
        let ns = bench::on_cpu_ns(wall, d0, bench::run_delay_ns()) / f64::from(repeat);
        Ok((ns, r0 as u32))
    }
}

impl Extra for Rbpf {
    fn columns(&self) -> Vec<String> {
        vec!["rbpf-interp".into(), "rbpf-jit".into()]
    }

    fn prepare(&mut self, input: &ExtraInput) -> Vec<Result<Box<dyn ExtraRun>, String>> {
        let code =
            match unsupported(input.prog).map_or_else(|| rewrite_xdp_ctx(&input.prog.code), Err) {
                Ok(c) => c,
                Err(why) => return vec![Err(why.clone()), Err(why)],
            };
        // rbpf borrows the program for the VM's life: one leaked copy per entry
        // (a few hundred bytes, a bench process).
        let bytes: &'static [u8] = Box::leak(skiff_isa::encode(&code).into_boxed_slice());
        let interp = RbpfRun::new(bytes, false, input);
        // The JIT only for a program the checking interpreter runs without error.
        let jit = match &interp {
            Ok(_) => {
                let mut probe = RbpfRun::new(bytes, false, input);
                match probe.as_mut().map(|p| p.once()) {
                    Ok(Ok(_)) => RbpfRun::new(bytes, true, input),
                    Ok(Err(e)) => Err(format!("not run: rbpf's interpreter failed: {e}")),
                    Err(e) => Err(e.clone()),
                }
            }
            Err(e) => Err(e.clone()),
        };
        vec![
            interp.map(|r| Box::new(r) as Box<dyn ExtraRun>),
            jit.map(|r| Box::new(r) as Box<dyn ExtraRun>),
        ]
    }
}

fn main() {
    let mut cli = Cli::parse();
    // `cargo bench` runs in crates/cli: find the corpus from there too.
    if cli.a.bpf_dir.is_relative() && !cli.a.bpf_dir.exists() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        cli.a.bpf_dir = root.join(&cli.a.bpf_dir);
    }
    let mut rbpf = Rbpf;
    let rows = bench::run(&cli.a, Some(&mut rbpf));
    if rows.iter().any(|r| !r.retval_mismatch().is_empty()) {
        std::process::exit(1);
    }
}
