//! `--filter EXPR`: a pcap-filter(7) expression chooses which frames
//! `skiff run` captures and traces. libpcap compiles it to classic BPF
//! (`libpcap`), the kernel's conversion makes that eBPF (`cbpf`), and skiff's
//! own interpreter runs it on each frame as a socket filter runs: the frame
//! from its Ethernet header, 0 = no match, anything else (the snap length)
//! = match.

pub mod cbpf;
#[allow(unsafe_code)]
pub mod libpcap;

use std::sync::Arc;

use skiff_vm::{Engine, ProgType, Program, Vm};

/// A compiled filter, ready to run on frames.
pub struct Filter {
    expr: String,
    prog: Arc<Program>,
    vm: Vm,
}

impl Filter {
    /// Compiles `expr` with libpcap and converts it.
    pub fn new(expr: &str) -> Result<Filter, String> {
        let classic = libpcap::compile(expr)?;
        Self::from_classic(expr, &classic)
    }

    /// A filter from classic BPF already compiled (`tcpdump -dd` output).
    pub fn from_classic(expr: &str, classic: &[cbpf::SockFilter]) -> Result<Filter, String> {
        let insns = cbpf::convert(classic).map_err(|e| format!("--filter {expr:?}: {e}"))?;
        // The skb context gives the frame from its MAC header and skb->len,
        // which is what classic loads and BPF_LEN read.
        let prog = Program::load_with(
            "pcap_filter",
            ProgType::SchedCls,
            insns,
            &[],
            Engine::Interp,
        )
        .map_err(|e| format!("--filter {expr:?}: {e}"))?;
        Ok(Filter {
            expr: expr.to_string(),
            prog: Arc::new(prog),
            vm: Vm::new(skiff_net::helper_table()),
        })
    }

    /// The expression as given.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Whether `frame` (from its Ethernet header) matches. A frame the skb
    /// test run refuses (under 14 bytes) or that ends the program abnormally
    /// does not match, as a socket filter returning 0.
    pub fn matches(&mut self, frame: &[u8]) -> bool {
        let req = skiff_net::test_run::TestRun {
            data_in: frame,
            ctx_in: None,
            repeat: 1,
        };
        match skiff_net::test_run::test_run(&mut self.vm, &self.prog, &req) {
            Ok(out) => out.exception.is_none() && out.retval != 0,
            Err(_) => false,
        }
    }
}
