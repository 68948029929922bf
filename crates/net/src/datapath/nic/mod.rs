//! NIC models: receive-side scaling.

pub mod rss;
