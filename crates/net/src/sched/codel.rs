//! include/net/codel.h and codel_impl.h: CoDel's control law on one queue
//! (codel_should_drop, codel_dequeue, the Newton step for 1/sqrt(count)),
//! in codel time (ns >> 10, u32, compared with wrap-around), and
//! INET_ECN_set_ce for the marks it makes instead of drops.

use crate::buff::SkBuff;

/// CODEL_SHIFT: codel time is ns >> 10.
pub const CODEL_SHIFT: u32 = 10;
const REC_INV_SQRT_SHIFT: u32 = 16;

pub fn codel_time(ns: u64) -> u32 {
    (ns >> CODEL_SHIFT) as u32
}

fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn after_eq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// struct codel_params.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodelParams {
    pub target: u32,
    pub interval: u32,
    /// CODEL_DISABLED_THRESHOLD (u32::MAX) when off.
    pub ce_threshold: u32,
    pub mtu: u32,
    pub ecn: bool,
}

/// struct codel_vars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodelVars {
    pub count: u32,
    pub lastcount: u32,
    pub dropping: bool,
    pub rec_inv_sqrt: u16,
    pub first_above_time: u32,
    pub drop_next: u32,
    pub ldelay: u32,
}

/// struct codel_stats (drop_count/drop_len: since the caller last looked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodelStats {
    pub maxpacket: u32,
    pub drop_count: u32,
    pub drop_len: u32,
    pub ecn_mark: u32,
    pub ce_mark: u32,
}

/// What codel_dequeue needs of its queue: take the head (dequeue_func, which
/// also keeps the owner's backlog), its backlog, and a way to drop (drop_func).
pub trait CodelQueue<P> {
    fn dequeue(&mut self) -> Option<P>;
    fn backlog(&self) -> u32;
    fn drop(&mut self, p: P);
    fn skb<'a>(&self, p: &'a mut P) -> &'a mut SkBuff;
    /// codel_get_enqueue_time of a packet.
    fn enqueue_time(&self, p: &P) -> u32;
}

/// codel_Newton_step: one Newton iteration of 1/sqrt(count) in Q0.16.
pub fn newton_step(v: &mut CodelVars) {
    let invsqrt = (v.rec_inv_sqrt as u32) << REC_INV_SQRT_SHIFT;
    let invsqrt2 = ((invsqrt as u64 * invsqrt as u64) >> 32) as u32;
    let mut val = (3u64 << 32).wrapping_sub(v.count as u64 * invsqrt2 as u64);
    val >>= 2;
    val = (val.wrapping_mul(invsqrt as u64)) >> (32 - 2 + 1);
    v.rec_inv_sqrt = (val >> REC_INV_SQRT_SHIFT) as u16;
}

/// codel_control_law: t + interval / sqrt(count).
pub fn control_law(t: u32, interval: u32, rec_inv_sqrt: u16) -> u32 {
    let r = (rec_inv_sqrt as u32) << REC_INV_SQRT_SHIFT;
    t.wrapping_add(((interval as u64 * r as u64) >> 32) as u32)
}

fn should_drop<P, Q: CodelQueue<P>>(
    q: &Q,
    p: Option<&mut P>,
    v: &mut CodelVars,
    params: &CodelParams,
    stats: &mut CodelStats,
    now: u32,
) -> bool {
    let Some(p) = p else {
        v.first_above_time = 0;
        return false;
    };
    let enq = q.enqueue_time(p);
    let len = q.skb(p).len() as u32;
    v.ldelay = now.wrapping_sub(enq);
    stats.maxpacket = stats.maxpacket.max(len);
    if before(v.ldelay, params.target) || q.backlog() <= params.mtu {
        // Went below: stay below for at least an interval.
        v.first_above_time = 0;
        return false;
    }
    if v.first_above_time == 0 {
        v.first_above_time = now.wrapping_add(params.interval);
        false
    } else {
        after(now, v.first_above_time)
    }
}

/// codel_dequeue.
pub fn codel_dequeue<P, Q: CodelQueue<P>>(
    q: &mut Q,
    params: &CodelParams,
    v: &mut CodelVars,
    stats: &mut CodelStats,
    now: u32,
) -> Option<P> {
    let Some(mut p) = q.dequeue() else {
        v.dropping = false;
        return None;
    };
    let drop = should_drop(q, Some(&mut p), v, params, stats, now);
    let mut cur = Some(p);
    if v.dropping {
        if !drop {
            v.dropping = false;
        } else if after_eq(now, v.drop_next) {
            while v.dropping && after_eq(now, v.drop_next) {
                v.count = v.count.wrapping_add(1);
                newton_step(v);
                let Some(mut p) = cur.take() else { break };
                if params.ecn && inet_ecn_set_ce(q.skb(&mut p)) {
                    stats.ecn_mark += 1;
                    v.drop_next = control_law(v.drop_next, params.interval, v.rec_inv_sqrt);
                    cur = Some(p);
                    break;
                }
                stats.drop_len += q.skb(&mut p).len() as u32;
                q.drop(p);
                stats.drop_count += 1;
                cur = q.dequeue();
                if !should_drop(q, cur.as_mut(), v, params, stats, now) {
                    v.dropping = false;
                } else {
                    v.drop_next = control_law(v.drop_next, params.interval, v.rec_inv_sqrt);
                }
            }
        }
    } else if drop {
        let marked = match cur.as_mut() {
            Some(p) if params.ecn => inet_ecn_set_ce(q.skb(p)),
            _ => false,
        };
        if marked {
            stats.ecn_mark += 1;
        } else if let Some(mut p) = cur.take() {
            stats.drop_len += q.skb(&mut p).len() as u32;
            q.drop(p);
            stats.drop_count += 1;
            cur = q.dequeue();
            should_drop(q, cur.as_mut(), v, params, stats, now);
        }
        v.dropping = true;
        // Near the last dropping cycle: start from its drop rate.
        let delta = v.count.wrapping_sub(v.lastcount);
        if delta > 1
            && before(
                now.wrapping_sub(v.drop_next),
                16u32.wrapping_mul(params.interval),
            )
        {
            v.count = delta;
            newton_step(v);
        } else {
            v.count = 1;
            v.rec_inv_sqrt = (u32::MAX >> REC_INV_SQRT_SHIFT) as u16;
        }
        v.lastcount = v.count;
        v.drop_next = control_law(now, params.interval, v.rec_inv_sqrt);
    }
    if let Some(p) = cur.as_mut() {
        if after(v.ldelay, params.ce_threshold) && inet_ecn_set_ce(q.skb(p)) {
            stats.ce_mark += 1;
        }
    }
    cur
}

/// include/net/inet_ecn.h: INET_ECN_set_ce — an ECT packet (IPv4 with
/// its checksum fixed incrementally, or IPv6) becomes CE; false if not ECT.
pub fn inet_ecn_set_ce(skb: &mut SkBuff) -> bool {
    let proto = skb.protocol;
    let off = skb.network_header.saturating_sub(skb.data);
    let d = skb.data_mut();
    match proto {
        0x0800 => {
            let Some(h) = d.get_mut(off..off + 20) else {
                return false;
            };
            let tos = h[1];
            // IP_ECN_set_ce: (tos + 1) & 3 is 01 for not-ECT (false), 00
            // for CE (true, unchanged), 10/11 for ECT(1)/ECT(0) (marked).
            let ecn = tos.wrapping_add(1) & 3;
            if ecn & 2 == 0 {
                return ecn == 0;
            }
            let old = u16::from_be_bytes([h[0], tos]);
            h[1] = tos | 3;
            let new = u16::from_be_bytes([h[0], h[1]]);
            // RFC 1624: HC' = ~(~HC + ~m + m').
            let hc = u16::from_be_bytes([h[10], h[11]]);
            let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            let c = !(sum as u16);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            true
        }
        0x86dd => {
            let Some(h) = d.get_mut(off..off + 2) else {
                return false;
            };
            let tc = ((h[0] & 0x0f) << 4) | (h[1] >> 4);
            if tc & 3 == 0 {
                return false;
            }
            h[1] |= 3 << 4;
            true
        }
        _ => false,
    }
}
