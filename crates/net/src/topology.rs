//! Topology files (TOML): namespaces, devices, links, addresses, routes and the
//! programs attached to each hook, validated with errors naming line and field,
//! and built into a `datapath::Datapath`.
