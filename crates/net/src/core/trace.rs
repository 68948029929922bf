//! Trace events (one per hook a packet passes, like pwru but exact) and
//! captures (what enters and leaves a hook, for pcapng per hook).

use serde::Serialize;

use super::counters::Hook;
use super::flow::five_tuple;

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
}

impl TraceEvent {
    pub(crate) fn fill_frame(&mut self, frame: &[u8]) {
        self.len = frame.len();
        self.proto = super::flow::ethertype(frame).map(|(p, _)| p).unwrap_or(0);
        self.tuple = five_tuple(frame).map(|t| t.to_pwru()).unwrap_or_default();
    }

    /// One line of text: `#id cpu iface(ifindex) hook prog verdict [-> target] len proto tuple`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "#{:<6} cpu{} {:>12}({:<3}) {:<12} {:<20} {:<18}",
            self.skb,
            self.cpu,
            self.iface,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CapturePoint {
    Entry,
    Exit,
}

/// A packet as it entered or left a hook (exit: after the program ran, with
/// its verdict).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaptureRecord {
    pub ifindex: u32,
    pub iface: String,
    pub hook: Hook,
    pub point: CapturePoint,
    pub id: u64,
    pub verdict: Option<String>,
    pub ts_ns: u64,
    pub bytes: Vec<u8>,
}
