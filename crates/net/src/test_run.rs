//! BPF_PROG_TEST_RUN for XDP and TC programs, as net/bpf/test_run.c does it:
//! bpf_prog_test_run_xdp and bpf_prog_test_run_skb. The device of a test run is
//! `lo` (ifindex 1, MTU 65536, address 00:00:00:00:00:00).

use std::sync::Arc;
use std::time::Instant;

use skiff_vm::{Exception, ProgType, Program, Vm};

use crate::buff::{
    xdp_metalen_invalid, Redirect, SkBuff, XdpBuff, ETH_HLEN, NET_SKB_PAD, PAGE_SIZE,
    SKB_SHARED_INFO_SIZE, XDP_FRAME_SIZE, XDP_PACKET_HEADROOM,
};
use crate::ctx::{sk_buff, xdp_md};

pub const LO_IFINDEX: u32 = 1;
pub const LO_MTU: u32 = 65536;

pub const EINVAL: i32 = 22;
pub const E2BIG: i32 = 7;
pub const ENODEV: i32 = 19;
pub const EOPNOTSUPP: i32 = 95;

pub const XDP_ABORTED: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

/// A refused test run: the errno the kernel's BPF_PROG_TEST_RUN returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} (errno {errno})")]
pub struct Refused {
    pub errno: i32,
    pub msg: String,
}

fn refuse(errno: i32, msg: impl Into<String>) -> Refused {
    Refused {
        errno,
        msg: msg.into(),
    }
}

pub struct TestRun<'a> {
    pub data_in: &'a [u8],
    pub ctx_in: Option<&'a [u8]>,
    /// 0 means 1, as in the kernel.
    pub repeat: u32,
}

#[derive(Debug, Clone)]
pub struct TestRunOutput {
    pub retval: u32,
    /// Mean wall time per run.
    pub duration_ns: u64,
    pub data_out: Vec<u8>,
    pub ctx_out: Option<Vec<u8>>,
    /// The target a redirect helper chose in the last run.
    pub redirect: Option<Redirect>,
    /// Runs that ended abnormally (the last one kept) and how many there were:
    /// each counts like trace_xdp_exception and gives XDP_ABORTED / TC_ACT_SHOT.
    pub exception: Option<Exception>,
    pub exceptions: u64,
    /// Packets bpf_clone_redirect sent (ifindex, ingress, frame), last run.
    pub clones: Vec<(u32, bool, Vec<u8>)>,
}

/// bpf_ctx_init: ctx_in beyond the struct must be zero (bpf_check_uarg_tail_zero).
fn ctx_init(ctx_in: Option<&[u8]>, size: usize) -> Result<Option<Vec<u8>>, Refused> {
    let Some(c) = ctx_in else { return Ok(None) };
    if c.len() > size && c[size..].iter().any(|&b| b != 0) {
        return Err(refuse(
            E2BIG,
            format!("ctx_in has non-zero bytes past its {size}-byte struct"),
        ));
    }
    let mut v = vec![0u8; size];
    let n = c.len().min(size);
    v[..n].copy_from_slice(&c[..n]);
    Ok(Some(v))
}

fn u32_at(b: &[u8], off: u32) -> u32 {
    let o = off as usize;
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], off: u32) -> u64 {
    let o = off as usize;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], off: u32, v: u32) {
    let o = off as usize;
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: u32, v: u64) {
    let o = off as usize;
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn test_run(vm: &mut Vm, prog: &Arc<Program>, req: &TestRun) -> Result<TestRunOutput, Refused> {
    match prog.prog_type {
        ProgType::Xdp => run_xdp(vm, prog, req),
        ProgType::SchedCls | ProgType::SchedAct => run_skb(vm, prog, req),
    }
}

/// Runs `repeat` times on the same context (never reset between runs, as the
/// kernel's bpf_test_run), returning (last retval, mean ns, exceptions, last one).
fn repeat_runs<C: skiff_vm::Context>(
    vm: &mut Vm,
    prog: &Arc<Program>,
    ctx: &mut C,
    repeat: u32,
    abort_verdict: u32,
) -> (u32, u64, u64, Option<Exception>) {
    let repeat = repeat.max(1);
    let mut retval = 0;
    let mut exceptions = 0;
    let mut last = None;
    let start = Instant::now();
    for _ in 0..repeat {
        match vm.run(prog, ctx) {
            Ok(r) => retval = r as u32,
            Err(e) => {
                retval = abort_verdict;
                exceptions += 1;
                last = Some(e);
            }
        }
    }
    let ns = start.elapsed().as_nanos() as u64 / repeat as u64;
    (retval, ns, exceptions, last)
}

/// net/bpf/test_run.c: bpf_prog_test_run_xdp (without frags or live frames).
fn run_xdp(vm: &mut Vm, prog: &Arc<Program>, req: &TestRun) -> Result<TestRunOutput, Refused> {
    let size = req.data_in.len();
    let ctx = ctx_init(req.ctx_in, xdp_md::SIZE)?;
    let mut headroom = XDP_PACKET_HEADROOM;
    let mut metalen = 0usize;
    let mut linear = size;
    if let Some(c) = &ctx {
        let (data, data_end, data_meta) = (
            u32_at(c, xdp_md::DATA) as usize,
            u32_at(c, xdp_md::DATA_END) as usize,
            u32_at(c, xdp_md::DATA_META),
        );
        // There can't be user provided data before the meta data.
        if data_meta != 0 || data_end > size || data > data_end {
            return Err(refuse(
                EINVAL,
                "xdp_md ctx_in: data_meta must be 0 and data <= data_end <= the packet size",
            ));
        }
        if xdp_metalen_invalid(data) || data > headroom - XDP_FRAME_SIZE {
            return Err(refuse(
                EINVAL,
                format!("xdp_md ctx_in: {data} bytes of metadata (must be 4-aligned, at most 252)"),
            ));
        }
        headroom -= data;
        metalen = data;
        linear = data_end;
    }
    if size - metalen < ETH_HLEN {
        return Err(refuse(
            EINVAL,
            format!(
                "packet of {} bytes is shorter than an Ethernet header (14)",
                size - metalen
            ),
        ));
    }
    let max_linear = PAGE_SIZE - headroom - SKB_SHARED_INFO_SIZE;
    if linear.min(max_linear) < size {
        return Err(refuse(
            EOPNOTSUPP,
            format!(
                "not supported: XDP multi-buffer frames ({size} bytes, {} in the linear part)",
                linear.min(max_linear)
            ),
        ));
    }
    let mut xdp = XdpBuff::new(req.data_in, headroom, LO_IFINDEX)
        .ok_or_else(|| refuse(EINVAL, "packet does not fit the frame"))?;
    if let Some(c) = &ctx {
        // xdp_convert_md_to_buff
        if u32_at(c, xdp_md::EGRESS_IFINDEX) != 0 {
            return Err(refuse(EINVAL, "xdp_md ctx_in: egress_ifindex must be 0"));
        }
        let ingress = u32_at(c, xdp_md::INGRESS_IFINDEX);
        let rxq = u32_at(c, xdp_md::RX_QUEUE_INDEX);
        if ingress == 0 && rxq != 0 {
            return Err(refuse(
                EINVAL,
                "xdp_md ctx_in: rx_queue_index without ingress_ifindex",
            ));
        }
        if ingress != 0 {
            if ingress != LO_IFINDEX {
                return Err(refuse(
                    ENODEV,
                    format!("xdp_md ctx_in: no device with ifindex {ingress}"),
                ));
            }
            if rxq >= 1 {
                return Err(refuse(
                    EINVAL,
                    format!("xdp_md ctx_in: rx queue {rxq} does not exist on lo"),
                ));
            }
        }
        xdp.data = xdp.data_meta + metalen;
    }
    let (retval, duration_ns, exceptions, exception) =
        repeat_runs(vm, prog, &mut xdp, req.repeat, XDP_ABORTED);
    let ctx_out = ctx.map(|mut c| {
        // xdp_convert_buff_to_md
        put_u32(&mut c, xdp_md::DATA, (xdp.data - xdp.data_meta) as u32);
        put_u32(
            &mut c,
            xdp_md::DATA_END,
            (xdp.data_end - xdp.data_meta) as u32,
        );
        c
    });
    Ok(TestRunOutput {
        retval,
        duration_ns,
        data_out: xdp.meta_and_data().to_vec(),
        ctx_out,
        redirect: xdp.redirect.clone(),
        exception,
        exceptions,
        clones: Vec::new(),
    })
}

use skiff_wire::{EthernetFrame, ETH_P_IP, ETH_P_IPV6};
const ETH_P_802_3: u16 = 0x0001;
const ETH_P_802_2: u16 = 0x0004;
const GSO_LEGACY_MAX_SIZE: u32 = 65536;
const GSO_MAX_SEGS: u32 = 65535;

/// net/ethernet/eth.c: eth_type_trans on `lo` (address and broadcast all zero).
/// `frame` holds at least the Ethernet header (the caller checked).
fn eth_type_trans(frame: &[u8]) -> (u16, u8) {
    let eth = EthernetFrame::new_unchecked(frame);
    let dst = eth.dst_addr();
    let pkt_type = if dst == [0u8; 6] {
        crate::buff::PACKET_HOST
    } else if dst[0] & 1 != 0 {
        // lo's broadcast address is 00:00:00:00:00:00, so ff:ff:.. is multicast.
        crate::buff::PACKET_MULTICAST
    } else {
        crate::buff::PACKET_OTHERHOST
    };
    let proto = eth.ethertype();
    // Below ETH_P_802_3_MIN the field is a length; raw 802.3 (IPX) frames
    // start with 0xffff.
    let protocol = if proto >= 0x0600 {
        proto
    } else if eth.payload().starts_with(&[0xff, 0xff]) {
        ETH_P_802_3
    } else {
        ETH_P_802_2
    };
    (protocol, pkt_type)
}

/// net/bpf/test_run.c: bpf_prog_test_run_skb for SCHED_CLS / SCHED_ACT.
fn run_skb(vm: &mut Vm, prog: &Arc<Program>, req: &TestRun) -> Result<TestRunOutput, Refused> {
    let size = req.data_in.len();
    let max = PAGE_SIZE - NET_SKB_PAD - SKB_SHARED_INFO_SIZE;
    if size < ETH_HLEN || size > max {
        return Err(refuse(
            EINVAL,
            format!("packet of {size} bytes: a test run takes 14 to {max} bytes"),
        ));
    }
    let ctx = ctx_init(req.ctx_in, sk_buff::SIZE)?;
    let mut skb = SkBuff::new(req.data_in, NET_SKB_PAD, LO_IFINDEX, LO_MTU);
    if let Some(c) = &ctx {
        let ifindex = u32_at(c, sk_buff::IFINDEX);
        if ifindex > 1 {
            return Err(refuse(
                ENODEV,
                format!("__sk_buff ctx_in: no device with ifindex {ifindex}"),
            ));
        }
    }
    let (protocol, pkt_type) = eth_type_trans(req.data_in);
    skb.protocol = protocol;
    skb.pkt_type = pkt_type;
    // The kernel refuses an IPv4/IPv6 frame too short for its network header.
    if protocol == ETH_P_IP && size < ETH_HLEN + 20 {
        return Err(refuse(
            EINVAL,
            format!("IPv4 frame of {size} bytes is shorter than its header (34)"),
        ));
    }
    if protocol == ETH_P_IPV6 && size < ETH_HLEN + 40 {
        return Err(refuse(
            EINVAL,
            format!("IPv6 frame of {size} bytes is shorter than its header (54)"),
        ));
    }
    if let Some(c) = &ctx {
        convert_ctx_to_skb(c, &mut skb)?;
    }
    let (retval, duration_ns, exceptions, exception) =
        repeat_runs(vm, prog, &mut skb, req.repeat, TC_ACT_SHOT);
    let ctx_out = ctx.map(|mut c| {
        // convert_skb_to___skb
        put_u32(&mut c, sk_buff::MARK, skb.mark);
        put_u32(&mut c, sk_buff::PRIORITY, skb.priority);
        put_u32(&mut c, sk_buff::INGRESS_IFINDEX, skb.ingress_ifindex);
        put_u32(&mut c, sk_buff::IFINDEX, skb.ifindex);
        put_u64(&mut c, sk_buff::TSTAMP, skb.tstamp);
        c[sk_buff::CB as usize..sk_buff::CB_END as usize].copy_from_slice(&skb.cb);
        put_u32(&mut c, sk_buff::WIRE_LEN, skb.wire_len);
        put_u32(&mut c, sk_buff::GSO_SEGS, skb.gso_segs);
        put_u64(&mut c, sk_buff::HWTSTAMP, skb.hwtstamp);
        c
    });
    Ok(TestRunOutput {
        retval,
        duration_ns,
        data_out: skb.data().to_vec(),
        ctx_out,
        redirect: skb.redirect.clone(),
        exception,
        exceptions,
        clones: std::mem::take(&mut skb.clones),
    })
}

/// convert___skb_to_skb: only mark, priority, ingress_ifindex, ifindex, cb,
/// tstamp, wire_len, gso_segs, gso_size and hwtstamp may be set.
fn convert_ctx_to_skb(c: &[u8], skb: &mut SkBuff) -> Result<(), Refused> {
    use sk_buff::*;
    let allowed: &[(u32, u32)] = &[
        (MARK, 4),
        (PRIORITY, 4),
        (INGRESS_IFINDEX, 4),
        (IFINDEX, 4),
        (CB, 20),
        (TSTAMP, 8),
        (WIRE_LEN, 4),
        (GSO_SEGS, 4),
        (GSO_SIZE, 4),
        (HWTSTAMP, 8),
    ];
    for (i, &b) in c.iter().enumerate() {
        let i = i as u32;
        if b != 0 && !allowed.iter().any(|&(o, l)| i >= o && i < o + l) {
            return Err(refuse(
                EINVAL,
                format!("__sk_buff ctx_in: byte {i} is in a field a test run may not set"),
            ));
        }
    }
    skb.mark = u32_at(c, MARK);
    skb.priority = u32_at(c, PRIORITY);
    skb.ingress_ifindex = u32_at(c, INGRESS_IFINDEX);
    skb.tstamp = u64_at(c, TSTAMP);
    skb.cb.copy_from_slice(&c[CB as usize..CB_END as usize]);
    let wire_len = u32_at(c, WIRE_LEN);
    if wire_len == 0 {
        skb.wire_len = skb.len() as u32;
    } else {
        if wire_len < skb.len() as u32 || wire_len > GSO_LEGACY_MAX_SIZE {
            return Err(refuse(
                EINVAL,
                format!("__sk_buff ctx_in: wire_len {wire_len} out of range"),
            ));
        }
        skb.wire_len = wire_len;
    }
    let gso_segs = u32_at(c, GSO_SEGS);
    if gso_segs > GSO_MAX_SEGS {
        return Err(refuse(
            EINVAL,
            format!("__sk_buff ctx_in: gso_segs {gso_segs} > {GSO_MAX_SEGS}"),
        ));
    }
    skb.gso_segs = gso_segs;
    skb.gso_size = u32_at(c, GSO_SIZE);
    skb.hwtstamp = u64_at(c, HWTSTAMP);
    Ok(())
}
