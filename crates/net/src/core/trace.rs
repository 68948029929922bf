//! Trace events (one per hook a packet passes, like pwru but exact) and
//! captures (what enters and leaves a hook, for pcapng per hook).

use serde::Serialize;

use super::counters::Hook;
use super::flow::{five_tuple, FiveTuple};

/// One hook a packet passed. Serialised with pwru's key names where they fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// The packet id (kept through rewrites, redirects and tail calls).
    pub skb: u64,
    pub cpu: u32,
    /// Device name and ifindex.
    pub iface: String,
    pub ifindex: u32,
    pub netns: String,
    /// The hook ("xdp", "tc-ingress", "tc-egress", "netkit", "stack", "xmit", ...).
    pub func: &'static str,
    pub prog: Option<String>,
    pub verdict: String,
    /// Where a redirect sent the packet (device name, map slot, cpu, xsk queue).
    pub target: Option<String>,
    pub len: usize,
    /// skb->protocol / the frame's EtherType, as pwru prints it (0x0800).
    pub proto: u16,
    /// `10.0.0.1:1234->10.0.0.2:80(tcp)`, empty when not IP.
    pub tuple: String,
    pub ts_ns: u64,
    /// The frame's addresses and ports, for `to_pwru_json`'s tuple object.
    #[serde(skip)]
    pub five_tuple: Option<FiveTuple>,
    /// The frame at this hook (what `skiff run --filter` matches against);
    /// empty for events without one (drops, printk lines).
    #[serde(skip)]
    pub frame: Vec<u8>,
}

/// The trace event name of a program's `bpf_trace_printk` output (the
/// kernel's trace event: kernel/trace/bpf_trace.h, TRACE_EVENT(bpf_trace_printk)).
pub const PRINTK: &str = "bpf_trace_printk";

/// A trace_printk buffer as trace_pipe shows it: the event's `%s`, one line
/// (the tracer ends each event with a newline; the program's own trailing
/// newline is not doubled).
pub fn printk_message(buf: &str) -> String {
    buf.strip_suffix('\n').unwrap_or(buf).to_string()
}

impl TraceEvent {
    pub(crate) fn fill_frame(&mut self, frame: &[u8]) {
        self.len = frame.len();
        self.proto = super::flow::ethertype(frame).map(|(p, _)| p).unwrap_or(0);
        self.five_tuple = five_tuple(frame);
        self.tuple = self.five_tuple.map(|t| t.to_pwru()).unwrap_or_default();
        self.frame = frame.to_vec();
    }

    /// One line of text: `#id cpu iface(ifindex) hook prog verdict [-> target] len proto tuple`;
    /// a device outside `host` as `netns/iface`, since ifindexes repeat across namespaces;
    /// a `bpf_trace_printk` line: `#id cpu iface(ifindex) prog: bpf_trace_printk: MESSAGE`,
    /// the message as the kernel's trace_pipe ends its line.
    pub fn to_text(&self) -> String {
        let dev = match self.netns.as_str() {
            "host" => self.iface.clone(),
            ns => format!("{ns}/{}", self.iface),
        };
        if self.func == PRINTK {
            return format!(
                "#{:<6} cpu{} {:>12}({:<3}) {}: {PRINTK}: {}",
                self.skb,
                self.cpu,
                dev,
                self.ifindex,
                self.prog.as_deref().unwrap_or("-"),
                self.verdict
            );
        }
        let mut s = format!(
            "#{:<6} cpu{} {:>12}({:<3}) {:<12} {:<20} {:<18}",
            self.skb,
            self.cpu,
            dev,
            self.ifindex,
            self.func,
            self.prog.as_deref().unwrap_or("-"),
            self.verdict
        );
        if let Some(t) = &self.target {
            s.push_str(&format!(" -> {t}"));
        }
        s.push_str(&format!(" len={} proto={:#06x}", self.len, self.proto));
        if !self.tuple.is_empty() {
            s.push(' ');
            s.push_str(&self.tuple);
        }
        s
    }

    /// One JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The kernel function pwru would name for this event: `PROG(xdp)` /
    /// `PROG(tc)` for a program (pwru's --filter-trace-xdp/-tc), the drop as
    /// `kfree_skb_reason(SKB_DROP_REASON_…)`, else the hook's function.
    fn pwru_func(&self) -> String {
        match (self.func, &self.prog) {
            ("kfree_skb", _) => format!("kfree_skb_reason(SKB_DROP_REASON_{})", self.verdict),
            ("xdp" | "xdp-generic" | "xdp-devmap" | "xdp-cpumap", Some(p)) => format!("{p}(xdp)"),
            ("tc-ingress" | "tc-egress" | "netkit", Some(p)) => format!("{p}(tc)"),
            ("xmit", _) => "dev_hard_start_xmit".into(),
            ("stack", _) => "__netif_receive_skb_core".into(),
            (f, _) => f.to_string(),
        }
    }

    /// One JSON line in pwru's `--output-json` schema (internal/pwru/output.go
    /// jsonPrinter): `skb` the packet id as a "0x…" string, `time` the
    /// (virtual) timestamp in ns, `tuple` an object; zero fields left out as
    /// Go's `omitempty` leaves them out. skiff has no netns inode: `netns_name`.
    pub fn to_pwru_json(&self) -> String {
        let mut o = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            let empty = v.as_u64() == Some(0) || v.as_str() == Some("") || v.is_null();
            if !empty {
                o.insert(k.to_string(), v);
            }
        };
        put("skb", format!("{:#x}", self.skb).into());
        put("cpu", self.cpu.into());
        put("func", self.pwru_func().into());
        put("time", self.ts_ns.into());
        put("netns_name", self.netns.clone().into());
        put("iface", self.iface.clone().into());
        put("proto", self.proto.into());
        put("len", self.len.into());
        if let Some(t) = &self.five_tuple {
            let mut tu = serde_json::Map::new();
            tu.insert("saddr".into(), t.src.to_string().into());
            tu.insert("daddr".into(), t.dst.to_string().into());
            if t.sport != 0 {
                tu.insert("sport".into(), t.sport.into());
            }
            if t.dport != 0 {
                tu.insert("dport".into(), t.dport.into());
            }
            if t.proto != 0 {
                tu.insert("proto".into(), t.proto.into());
            }
            o.insert("tuple".into(), serde_json::Value::Object(tu));
        }
        serde_json::Value::Object(o).to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CapturePoint {
    Entry,
    Exit,
    /// An AF_PACKET tap (what tcpdump on the device sees): `hook` is
    /// `Hook::Rx` for the receive tap, `Hook::Xmit` for the transmit tap.
    Tap,
}

/// The AF_PACKET tap points of a device (ptype_all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Tap {
    /// net/core/dev.c: __netif_receive_skb_core's ptype_all loop: after
    /// native and generic XDP passed the frame, before tc ingress; again on
    /// a bpf_redirect_peer target (another_round).
    Rx,
    /// net/core/dev.c: dev_queue_xmit_nit from xmit_one: after tc egress and
    /// the qdisc, as the driver gets the skb (not XDP_TX / ndo_xdp_xmit
    /// frames, which never are skbs).
    Tx,
}

impl Tap {
    pub fn name(self) -> &'static str {
        match self {
            Tap::Rx => "rx",
            Tap::Tx => "tx",
        }
    }

    /// The hook a tap's capture records carry.
    pub fn hook(self) -> Hook {
        match self {
            Tap::Rx => Hook::Rx,
            Tap::Tx => Hook::Xmit,
        }
    }
}

/// A packet as it entered or left a hook (exit: after the program ran, with
/// its verdict).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureRecord {
    pub ifindex: u32,
    pub iface: String,
    /// The device's namespace (ifindexes repeat across namespaces).
    pub netns: String,
    pub hook: Hook,
    pub point: CapturePoint,
    pub id: u64,
    pub verdict: Option<String>,
    pub ts_ns: u64,
    pub bytes: Vec<u8>,
}
