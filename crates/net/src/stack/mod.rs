//! The host stack of one network namespace: addresses, routing (FIB with tables
//! and rules), neighbours (ARP/NDP), forwarding and local delivery (ARP and ICMP
//! echo replies, UDP/TCP sinks). `bpf_fib_lookup` answers from it.
