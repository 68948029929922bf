//! The datapath: devices (NIC, veth, netkit, loopback) in namespaces, their XDP
//! and TC hooks, redirects, sk_buff building and GRO, and the engine that carries
//! every packet to exactly one end (transmitted, delivered or dropped with a reason).
//!
//! # API (for the CLI and the topology builder)
//!
//! ```text
//! let mut dp = Datapath::new(DatapathOptions { deterministic: true, workers: 1, ..Default::default() })?;
//!     // workers > 1: Err(DatapathError::NotSupported("multi-worker mode"))
//! let host: NsId = dp.add_netns("host")?;          // every namespace gets `lo` (ifindex 1 in it)
//! let pod:  NsId = dp.add_netns("pod1")?;
//! let eth0: DevId = dp.add_device(host, DeviceSpec::nic("eth0", mac, 4 /* rx queues */))?;
//! let nk:   DevId = dp.add_device(host, DeviceSpec::netkit("nk0", pod, "eth0" /* peer name */))?;
//!     // pairs (veth, netkit) return the primary; `dp.peer(nk)` is the other end.
//!     // DeviceSpec fields are public (name, kind, mac, mtu, up, ifindex, txqueuelen);
//!     // DeviceKind::{Nic{rx_queues}, Veth{peer_name, peer_ns, peer_mac},
//!     //              Netkit{peer_name, peer_ns, mode, policy, peer_policy, scrub, peer_scrub}, Loopback}
//! dp.device(ns, "eth0") -> Option<DevId>;  dp.ifindex(dev) -> u32;  dp.dev_by_ifindex(ns, ifindex)
//! dp.set_up(dev, bool);  dp.stack_mut(ns) -> &mut HostStack   // addresses, routes, neighbours
//! dp.register_programs(&collection.programs);        // tail-call and devmap-entry targets (by prog id)
//! dp.attach_xdp(dev, prog, XdpMode::Native | XdpMode::Generic)?;     // one per device and mode
//! dp.attach_tc(dev, TcDirection::Ingress | Egress, TcAttach::ClsBpf { prio, handle }, prog)?;
//! dp.attach_tc(dev, dir, TcAttach::Tcx(MprogOrder::Append | Before(prog_id) | After(prog_id) | ...), prog)?;
//! dp.attach_netkit(primary, NetkitSide::Primary | NetkitSide::Peer, MprogOrder::Append, prog)?;
//!     // through the peer's DevId: Err(DatapathError::Errno{errno: EACCES, ..}) as netkit_dev_fetch
//! let id: PacketId = dp.inject(dev, &frame, ts_ns)?;  // NIC: from the wire (RSS picks the queue)
//! dp.run();                                           // until every queue is empty
//! dp.take_transmitted() -> Vec<Transmitted { dev, ifindex, id, frame, ts_ns }>   // out of NICs
//! dp.take_xsk(dev, queue) -> Vec<XskFrame>;  dp.take_delivered() -> Vec<Delivered>
//! dp.counters() -> &Counters   // serde: per device stats + per hook verdict packets/bytes,
//!                              // drops per reason, conservation {in, originated, transmitted, delivered, dropped}
//! dp.drops() -> &[DropRecord]  // reason + where (device, hook, program, insn offset of an exception)
//! dp.set_trace(true); dp.take_trace() -> Vec<TraceEvent>   // TraceEvent::to_text(), serde (pwru keys)
//! dp.capture(dev, Hook::Xdp | TcIngress | TcEgress | Netkit | Xmit); dp.take_captures() -> Vec<CaptureRecord>
//! ```
//!
//! Single worker, run to completion per NAPI poll (budget 64). In deterministic
//! mode the programs' clock (`bpf_ktime_get_ns`) is the timestamp of the packet
//! being injected or polled.
