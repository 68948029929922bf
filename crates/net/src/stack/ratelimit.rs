//! ICMP rate limits on the engine's clock, counted in jiffies as the kernel
//! counts them: the namespace-wide token bucket (net/ipv4/icmp.c:
//! icmp_global_allow, icmp_global_consume) and the per-destination one
//! (net/ipv4/inetpeer.c: inet_peer_xrlim_allow, used by icmpv4_xrlim_allow and
//! net/ipv6/icmp.c: icmpv6_xrlim_allow).

use std::collections::HashMap;
use std::net::IpAddr;

use super::HostStack;

/// CONFIG_HZ of the kernel skiff follows (6.18 as built on the reference machine).
pub(crate) const HZ: u64 = 250;
const NS_PER_JIFFY: u64 = 1_000_000_000 / HZ;
/// include/net/inetpeer.h: XRLIM_BURST_FACTOR.
const XRLIM_BURST_FACTOR: u64 = 6;
/// Peers kept before idle ones are forgotten (an idle peer's bucket is full,
/// so forgetting it changes nothing).
const PEERS_MAX: usize = 4096;

/// The ICMP sysctls of a namespace and the buckets they drive.
#[derive(Clone, Debug)]
pub(crate) struct IcmpLimits {
    /// net.ipv4.icmp_msgs_per_sec (1000) and icmp_msgs_burst (50).
    pub msgs_per_sec: u64,
    pub msgs_burst: i64,
    /// net.ipv4.icmp_ratelimit in ms (1000); 0 turns the per-peer limit off.
    pub ratelimit_ms: u64,
    /// net.ipv4.icmp_ratemask (0x1818: unreachable, source quench, time
    /// exceeded, parameter problem).
    pub ratemask: u32,
    /// net.ipv6.icmp.ratelimit in ms (100 on 6.18).
    pub v6_ratelimit_ms: u64,
    /// net.ipv6.icmp.ratemask as a bitmap of types 0..=255 ("0-1,3-127").
    pub v6_ratemask: [u64; 4],
    credit: i64,
    stamp: Option<u64>,
    /// inet_peer rate state per destination: (rate_last, rate_tokens) in jiffies.
    peers: HashMap<IpAddr, (u64, u64)>,
}

impl Default for IcmpLimits {
    fn default() -> Self {
        IcmpLimits {
            msgs_per_sec: 1000,
            msgs_burst: 50,
            ratelimit_ms: 1000,
            ratemask: 0x1818,
            v6_ratelimit_ms: 100,
            // Types 0, 1 and 3..=127: every error but packet too big.
            v6_ratemask: [!(1u64 << 2), u64::MAX, 0, 0],
            credit: 0,
            stamp: None,
            peers: HashMap::new(),
        }
    }
}

pub(crate) fn jiffies(now_ns: u64) -> u64 {
    now_ns / NS_PER_JIFFY
}

/// msecs_to_jiffies, rounding up as the kernel does.
fn ms_to_jiffies(ms: u64) -> u64 {
    ms.saturating_mul(HZ).div_ceil(1000)
}

impl IcmpLimits {
    /// net/ipv4/icmp.c: icmpv4_mask_allow (true: not rate limited).
    pub fn mask_allow_v4(&self, t: u8, code: u8) -> bool {
        const NR_ICMP_TYPES: u8 = 18;
        const ICMP_DEST_UNREACH: u8 = 3;
        const ICMP_FRAG_NEEDED: u8 = 4;
        t > NR_ICMP_TYPES
            || (t == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED)
            || (1u32 << t) & self.ratemask == 0
    }

    /// net/ipv6/icmp.c: icmpv6_mask_allow.
    pub fn mask_allow_v6(&self, t: u8) -> bool {
        let word = self.v6_ratemask.get(usize::from(t / 64)).copied();
        word.is_none_or(|w| w & (1u64 << (t % 64)) == 0)
    }

    /// icmp_global_allow: the namespace's bucket, refilled icmp_msgs_per_sec
    /// per second (in steps of at least HZ/50) up to icmp_msgs_burst.
    pub fn global_allow(&mut self, now_ns: u64) -> bool {
        if self.credit > 0 {
            return true;
        }
        let now = jiffies(now_ns);
        // A fresh namespace's stamp is long past: the first refill is full.
        let delta = self.stamp.map_or(HZ, |s| now.saturating_sub(s).min(HZ));
        if delta < HZ / 50 {
            return false;
        }
        let incr = self.msgs_per_sec.saturating_mul(delta) / HZ;
        if incr == 0 {
            return false;
        }
        self.stamp = Some(now);
        let incr = i64::try_from(incr).unwrap_or(i64::MAX);
        self.credit = self.credit.saturating_add(incr).min(self.msgs_burst);
        true
    }

    /// icmp_global_consume takes get_random_u32_below(3) credits; skiff takes
    /// their mean, one, so that runs repeat.
    pub fn global_consume(&mut self) {
        self.credit = self.credit.saturating_sub(1);
    }

    /// inet_peer_xrlim_allow for destination `daddr` with `timeout_ms`; a
    /// new peer starts with a full burst (inet_getpeer sets rate_last 60 s back).
    pub fn peer_allow(&mut self, daddr: IpAddr, timeout_ms: u64, now_ns: u64) -> bool {
        let timeout = ms_to_jiffies(timeout_ms);
        let cap = XRLIM_BURST_FACTOR.saturating_mul(timeout);
        let now = jiffies(now_ns);
        if self.peers.len() >= PEERS_MAX && !self.peers.contains_key(&daddr) {
            self.peers
                .retain(|_, (last, _)| now.saturating_sub(*last) < cap);
        }
        let (last, tokens) = self.peers.entry(daddr).or_insert((now, cap));
        let delta = now.saturating_sub(*last);
        if delta > 0 {
            *last = now;
            *tokens = tokens.saturating_add(delta).min(cap);
        }
        if *tokens >= timeout {
            *tokens -= timeout;
            return true;
        }
        false
    }
}

impl HostStack {
    /// The global gate of __icmp_send / icmp6_send: Some(apply_ratelimit), or
    /// None when the namespace's bucket is empty. Errors about packets that
    /// came in on a loopback device, and types outside the ratemask
    /// (`limited` false), are not limited at all.
    pub(super) fn icmp_global_gate(&mut self, in_ifindex: u32, limited: bool) -> Option<bool> {
        let from_lo = self.dev(in_ifindex).is_some_and(|d| d.cfg.loopback);
        if !limited || from_lo {
            return Some(false);
        }
        let now = self.now_ns;
        self.icmp_limits.global_allow(now).then_some(true)
    }

    /// icmpv4_xrlim_allow / icmpv6_xrlim_allow after the route back: no
    /// limit out of a loopback device or with a zero timeout; a message that
    /// passes takes its global credit (icmp_global_consume).
    pub(super) fn icmp_peer_gate(
        &mut self,
        apply: bool,
        out_ifindex: u32,
        daddr: IpAddr,
        timeout_ms: u64,
    ) -> bool {
        if !apply {
            return true;
        }
        let to_lo = self.dev(out_ifindex).is_some_and(|d| d.cfg.loopback);
        let now = self.now_ns;
        let ok = timeout_ms == 0 || to_lo || self.icmp_limits.peer_allow(daddr, timeout_ms, now);
        if ok {
            self.icmp_limits.global_consume();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MS: u64 = 1_000_000;

    #[test]
    fn peer_bucket_bursts_six_then_refills_per_timeout() {
        let mut l = IcmpLimits::default();
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let sent: Vec<bool> = (0..8).map(|_| l.peer_allow(a, 1000, 5_000 * MS)).collect();
        assert_eq!(sent, [true, true, true, true, true, true, false, false]);
        assert!(!l.peer_allow(a, 1000, 5_999 * MS));
        assert!(l.peer_allow(a, 1000, 6_000 * MS));
        assert!(!l.peer_allow(a, 1000, 6_000 * MS));
        // Another destination has its own bucket.
        assert!(l.peer_allow(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 1000, 6_000 * MS));
    }

    #[test]
    fn v6_peer_refills_every_100ms() {
        let mut l = IcmpLimits::default();
        let a: IpAddr = "fd00::1".parse().unwrap();
        let n = (0..7).filter(|_| l.peer_allow(a, 100, 0)).count();
        assert_eq!(n, 6);
        let n = (0..7).filter(|_| l.peer_allow(a, 100, 300 * MS)).count();
        assert_eq!(n, 3);
    }

    #[test]
    fn global_bucket_is_burst_then_rate() {
        let mut l = IcmpLimits::default();
        let mut n = 0;
        for _ in 0..100 {
            if l.global_allow(0) {
                l.global_consume();
                n += 1;
            }
        }
        assert_eq!(n, 50);
        // 20 ms (HZ/50) later: 1000/s * 5 jiffies / 250 = 20 credits.
        let mut m = 0;
        for _ in 0..100 {
            if l.global_allow(20 * MS) {
                l.global_consume();
                m += 1;
            }
        }
        assert_eq!(m, 20);
        assert!(!l.global_allow(30 * MS));
    }

    #[test]
    fn masks_as_the_kernel_defaults() {
        let l = IcmpLimits::default();
        assert!(!l.mask_allow_v4(3, 3));
        assert!(l.mask_allow_v4(3, 4));
        assert!(!l.mask_allow_v4(11, 0));
        assert!(l.mask_allow_v4(0, 0));
        assert!(l.mask_allow_v4(5, 1));
        assert!(!l.mask_allow_v6(1));
        assert!(l.mask_allow_v6(2));
        assert!(!l.mask_allow_v6(4));
        assert!(l.mask_allow_v6(129));
    }
}
