//! Counters: per device (`ip -s link` stats), per device and hook (packets and
//! bytes per verdict), drops per reason with where they happened, and the
//! packet-conservation totals.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Datapath, DevId};

/// The hooks a packet passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Hook {
    /// Native (driver) XDP.
    Xdp,
    /// Generic (skb) XDP in __netif_receive_skb_core.
    XdpGeneric,
    /// A DEVMAP entry's program (egress XDP, dev_map_bpf_prog_run).
    XdpDevmap,
    /// A CPUMAP entry's program (cpu_map_bpf_prog_run_xdp).
    XdpCpumap,
    TcIngress,
    TcEgress,
    /// netkit's program chain at xmit (netkit_xmit).
    Netkit,
    /// The host stack (ip_rcv and up).
    Stack,
    /// The device's transmit (ndo_start_xmit / ndo_xdp_xmit).
    Xmit,
    /// Device receive (before any hook): rx queue, backlog.
    Rx,
    /// A netfilter hook (the netdev hooks, and the stack's hooks' drops).
    Netfilter,
}

pub const N_HOOKS: usize = 11;

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::XdpGeneric => "xdp-generic",
            Hook::XdpDevmap => "xdp-devmap",
            Hook::XdpCpumap => "xdp-cpumap",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
            Hook::Netkit => "netkit",
            Hook::Stack => "stack",
            Hook::Xmit => "xmit",
            Hook::Rx => "rx",
            Hook::Netfilter => "netfilter",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn from_name(s: &str) -> Option<Hook> {
        ALL_HOOKS.iter().copied().find(|h| h.name() == s)
    }
}

pub const ALL_HOOKS: [Hook; N_HOOKS] = [
    Hook::Xdp,
    Hook::XdpGeneric,
    Hook::XdpDevmap,
    Hook::XdpCpumap,
    Hook::TcIngress,
    Hook::TcEgress,
    Hook::Netkit,
    Hook::Stack,
    Hook::Xmit,
    Hook::Rx,
    Hook::Netfilter,
];

/// `ip -s link` statistics (struct rtnl_link_stats64, the fields skiff moves).
/// Kept per CPU; aligned so that two CPUs' copies never share a cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[repr(align(64))]
pub struct DevStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

impl DevStats {
    pub(crate) fn add(&mut self, o: &DevStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_dropped += o.rx_dropped;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_dropped += o.tx_dropped;
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PktBytes {
    pub packets: u64,
    pub bytes: u64,
}

impl PktBytes {
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// Verdict slots per hook: verdict codes 0..=8 (XDP 0-4, TC/netkit 0-8), plus
/// UNSPEC/NEXT (-1) and "other" (an out-of-range return).
pub const N_VERDICTS: usize = 11;
pub const V_UNSPEC: usize = 9;
pub const V_OTHER: usize = 10;

pub fn verdict_slot(code: i64) -> usize {
    match code {
        0..=8 => code as usize,
        -1 => V_UNSPEC,
        _ => V_OTHER,
    }
}

/// Per device and hook, packets and bytes per verdict slot (per CPU; aligned
/// as `DevStats`).
#[derive(Clone, Debug, Default)]
#[repr(align(64))]
pub struct HookCounters {
    pub slots: [[PktBytes; N_VERDICTS]; N_HOOKS],
}

/// Where a packet ended, for the conservation totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Conservation {
    /// Packets injected from outside.
    #[serde(rename = "in")]
    pub input: u64,
    /// Packets the datapath made: stack replies and errors, ARP solicits,
    /// clones (bpf_clone_redirect, broadcast redirects), GSO segments.
    pub originated: u64,
    /// Out of a NIC, or into an AF_XDP (XSKMAP) queue.
    pub transmitted: u64,
    /// Taken by the host stack (local delivery) or consumed by a hook
    /// (TC_ACT_STOLEN / TRAP; GRO merged segments count here as consumed).
    pub delivered: u64,
    pub dropped: u64,
    /// Not ended yet (waiting in a queue or for neighbour resolution).
    pub in_flight: u64,
}

impl Conservation {
    pub(crate) fn add(&mut self, o: &Conservation) {
        self.input += o.input;
        self.originated += o.originated;
        self.transmitted += o.transmitted;
        self.delivered += o.delivered;
        self.dropped += o.dropped;
        self.in_flight += o.in_flight;
    }

    /// in + originated == transmitted + delivered + dropped + in_flight.
    pub fn balanced(&self) -> bool {
        self.input + self.originated
            == self.transmitted + self.delivered + self.dropped + self.in_flight
    }
}

/// One drop: the reason and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropRecord {
    pub id: u64,
    pub reason: &'static str,
    pub iface: String,
    pub ifindex: u32,
    /// The device's namespace (ifindexes repeat across namespaces).
    pub netns: String,
    pub hook: &'static str,
    /// The program that gave the verdict (after tail calls: the last one run).
    pub prog: Option<String>,
    /// Instruction offset of a program exception.
    pub insn: Option<usize>,
    pub error: Option<String>,
}

/// A serialisable snapshot of every counter.
#[derive(Clone, Debug, Serialize)]
pub struct CountersReport {
    pub conservation: Conservation,
    pub devices: Vec<DeviceReport>,
    pub drops: BTreeMap<String, u64>,
    /// Consumed by a hook (STOLEN/TRAP) or merged by GRO, included in `delivered`.
    pub consumed: u64,
    /// Per CPU (worker i is CPU i): packets it took from a queue (NIC rx ring,
    /// veth ring, CPUMAP queue, backlog); a packet counts once per queue it passes.
    pub cpu_polled: Vec<u64>,
    /// Per CPU: nanoseconds spent in NAPI polls that did work; zeros unless
    /// `Datapath::set_measure_busy(true)`.
    pub cpu_busy_ns: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    pub name: String,
    pub ifindex: u32,
    pub netns: String,
    pub stats: DevStats,
    /// hook name -> verdict name -> packets/bytes.
    pub hooks: BTreeMap<&'static str, BTreeMap<&'static str, PktBytes>>,
}

/// Verdict names per hook (for reports and traces).
pub fn verdict_name(hook: Hook, code: i64) -> &'static str {
    match hook {
        Hook::Xdp | Hook::XdpGeneric | Hook::XdpDevmap | Hook::XdpCpumap => match code {
            0 => "XDP_ABORTED",
            1 => "XDP_DROP",
            2 => "XDP_PASS",
            3 => "XDP_TX",
            4 => "XDP_REDIRECT",
            _ => "XDP_INVALID",
        },
        Hook::TcIngress | Hook::TcEgress => match code {
            -1 => "TC_ACT_UNSPEC",
            0 => "TC_ACT_OK",
            1 => "TC_ACT_RECLASSIFY",
            2 => "TC_ACT_SHOT",
            3 => "TC_ACT_PIPE",
            4 => "TC_ACT_STOLEN",
            5 => "TC_ACT_QUEUED",
            6 => "TC_ACT_REPEAT",
            7 => "TC_ACT_REDIRECT",
            8 => "TC_ACT_TRAP",
            _ => "TC_ACT_INVALID",
        },
        Hook::Netkit => match code {
            -1 => "NETKIT_NEXT",
            0 => "NETKIT_PASS",
            2 => "NETKIT_DROP",
            7 => "NETKIT_REDIRECT",
            _ => "NETKIT_INVALID",
        },
        Hook::Stack => match code {
            0 => "DELIVERED",
            1 => "FORWARDED",
            2 => "QUEUED",
            3 => "DROPPED",
            4 => "STOLEN",
            _ => "INVALID",
        },
        // include/uapi/linux/netfilter.h NF_DROP .. NF_REPEAT.
        Hook::Netfilter => match code {
            0 => "NF_DROP",
            1 => "NF_ACCEPT",
            2 => "NF_STOLEN",
            3 => "NF_QUEUE",
            4 => "NF_REPEAT",
            _ => "NF_INVALID",
        },
        Hook::Xmit | Hook::Rx => match code {
            0 => "OK",
            2 => "DROPPED",
            _ => "INVALID",
        },
    }
}

pub(crate) fn slot_code(slot: usize) -> i64 {
    match slot {
        V_UNSPEC => -1,
        V_OTHER => 99,
        s => s as i64,
    }
}

/// Reading the counters: the per-CPU copies summed.
impl Datapath {
    /// The conservation totals; in_flight counts what waits in a queue.
    pub fn conservation(&self) -> Conservation {
        let mut c = Conservation::default();
        let mut n = 0usize;
        for s in &self.cpus {
            c.add(&s.cnt.cons);
            n += s.in_flight();
        }
        n += self.sh.stack_queued.len();
        n += self
            .sh
            .cpu_queues
            .iter()
            .map(|q| q.lock().len())
            .sum::<usize>();
        for d in &self.sh.devices {
            n += d.qdisc.as_ref().map(|q| q.lock().qlen()).unwrap_or(0);
            n += d.ops.rx_pending();
        }
        c.in_flight = n as u64;
        c
    }

    /// Every counter, as a serialisable snapshot (per-CPU counters summed).
    pub fn counters(&self) -> CountersReport {
        let devices = (0..self.sh.devices.len())
            .map(|i| self.device_report(DevId(i)))
            .collect();
        let mut drops = BTreeMap::new();
        for s in &self.cpus {
            for (r, n) in s.cnt.drop_counts() {
                *drops.entry(r.name().to_string()).or_insert(0) += n;
            }
        }
        CountersReport {
            conservation: self.conservation(),
            devices,
            drops,
            consumed: self.cpus.iter().map(|s| s.cnt.consumed).sum(),
            cpu_polled: self.cpus.iter().map(|s| s.cnt.polled).collect(),
            cpu_busy_ns: self.cpus.iter().map(|s| s.cnt.busy_ns).collect(),
        }
    }

    fn device_report(&self, dev: DevId) -> DeviceReport {
        let d = &self.sh.devices[dev.0];
        let mut hooks = BTreeMap::new();
        for h in ALL_HOOKS {
            let mut m = BTreeMap::new();
            for slot in 0..N_VERDICTS {
                let pb = self.hook_slot(dev, h, slot);
                if pb.packets > 0 {
                    m.insert(verdict_name(h, slot_code(slot)), pb);
                }
            }
            if !m.is_empty() {
                hooks.insert(h.name(), m);
            }
        }
        DeviceReport {
            name: d.name.clone(),
            ifindex: d.ifindex,
            netns: self.sh.ns_name(d.ns).to_string(),
            stats: self.stats(dev).unwrap_or_default(),
            hooks,
        }
    }

    fn hook_slot(&self, dev: DevId, hook: Hook, slot: usize) -> PktBytes {
        let mut pb = PktBytes::default();
        for s in &self.cpus {
            if let Some(h) = s.cnt.hooks.get(dev.0) {
                let x = h.slots[hook.index()][slot];
                pb.packets += x.packets;
                pb.bytes += x.bytes;
            }
        }
        pb
    }

    /// Per CPU: packets it took from a queue (see `CountersReport::cpu_polled`).
    pub fn cpu_polled(&self) -> Vec<u64> {
        self.cpus.iter().map(|s| s.cnt.polled).collect()
    }

    /// Device statistics (`ip -s link`), summed over the CPUs (the kernel's
    /// per-CPU dev->lstats / tstats).
    pub fn stats(&self, dev: DevId) -> Option<DevStats> {
        self.sh.devices.get(dev.0)?;
        let mut t = DevStats::default();
        for s in &self.cpus {
            if let Some(x) = s.cnt.dev.get(dev.0) {
                t.add(x);
            }
        }
        Some(t)
    }

    /// Packets and bytes `hook` on `dev` gave verdict `code` (XDP 0-4, TC -1..8, netkit -1/0/2/7).
    pub fn hook_count(&self, dev: DevId, hook: Hook, code: i64) -> PktBytes {
        self.hook_slot(dev, hook, verdict_slot(code))
    }
}
