//! net/netfilter/xt_LOG.c with nf_log_syslog.c's packet line: `-j LOG
//! [--log-prefix P] [--log-level L]`. The line goes to the namespace's log
//! (skiff's dmesg), in the kernel's format for the fields skiff has.

use super::ip_tables::XtPkt;
use super::{NfHookState, NfSkb};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XtLog {
    pub prefix: String,
    pub level: u8,
}

impl XtLog {
    /// nf_log_ip_packet / nf_log_ip6_packet: `PREFIXIN=a0 OUT= SRC=.. DST=..
    /// LEN=.. TTL=.. PROTO=UDP SPT=.. DPT=..` (no MAC, IP ID or TCP flag
    /// fields).
    pub fn line(&self, p: &XtPkt, skb: &NfSkb, st: &NfHookState) -> String {
        let name = |n: Option<super::IfName>| n.map(|n| n.as_str().to_string()).unwrap_or_default();
        let mut s = format!(
            "{}IN={} OUT={} SRC={} DST={} LEN={} TTL={}",
            self.prefix,
            name(st.in_name),
            name(st.out_name),
            p.src,
            p.dst,
            skb.pkt.len(),
            p.ttl
        );
        let l4 = p.l4(skb.pkt);
        let port = |i: usize| match (l4.get(i), l4.get(i + 1)) {
            (Some(a), Some(b)) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        };
        let proto = match p.proto {
            6 => "TCP",
            17 => "UDP",
            1 => "ICMP",
            58 => "ICMPv6",
            _ => "",
        };
        if proto.is_empty() {
            s.push_str(&format!(" PROTO={}", p.proto));
        } else {
            s.push_str(&format!(" PROTO={proto}"));
        }
        if matches!(p.proto, 6 | 17) && p.fragoff == 0 {
            if let (Some(sp), Some(dp)) = (port(0), port(2)) {
                s.push_str(&format!(" SPT={sp} DPT={dp}"));
            }
        }
        s
    }
}
