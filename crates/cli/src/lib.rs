//! The `skiff` command's library: the modules its benches reuse
//! (`benches/corpus.rs` runs [`bench`] with rbpf's engines added), and the API
//! for testing eBPF programs from `cargo test` ([`Network`], [`Prog`]; see
//! [`harness`]), which `skiff test` fixtures run on.
#![forbid(unsafe_code)]

pub mod bench;
pub mod diff;
pub mod frames;
pub mod harness;
pub mod map;
pub mod maps;
pub mod test;

pub use harness::{bytes, Error, MapRef, Network, Outcome, Prog, ProgOutcome};
