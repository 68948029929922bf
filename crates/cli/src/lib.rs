//! The library side of the `skiff` command: the modules its benches reuse
//! (`benches/corpus.rs` runs [`bench`] with rbpf's engines added).
#![forbid(unsafe_code)]

pub mod bench;
