//! The datapath: devices (NIC, veth, netkit, loopback) in namespaces, their XDP
//! and TC hooks, redirects, sk_buff building and GRO, and the engine that carries
//! every packet to exactly one end (transmitted, delivered or dropped with a reason).
