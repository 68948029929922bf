//! TCP connection tracking (net/netfilter/nf_conntrack_proto_tcp.c): the
//! tcp_conntracks state table, window tracking (tcp_in_window) as far as it
//! decides INVALID or ignored packets, and the per-state timeouts.

use skiff_wire::tcp::{
    TcpPacket, TCPHDR_ACK, TCPHDR_CWR, TCPHDR_ECE, TCPHDR_FIN, TCPHDR_PSH, TCPHDR_RST, TCPHDR_SYN,
    TCPHDR_URG,
};

use super::{Dir, PacketVerdict, IPS_ASSURED, IPS_SEEN_REPLY};

/// enum tcp_conntrack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TcpConntrack {
    #[default]
    None = 0,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    SynSent2,
}

/// tcp_conntrack_names.
pub const TCP_CONNTRACK_NAMES: [&str; 10] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

impl TcpConntrack {
    pub fn name(self) -> &'static str {
        TCP_CONNTRACK_NAMES[self as usize]
    }
}

const SEC: u64 = 1_000_000_000;

/// tcp_timeouts (nf_conntrack_tcp_timeout_*), by state, then RETRANS, UNACK.
const TCP_TIMEOUTS: [u64; 10] = [
    0,
    120 * SEC,
    60 * SEC,
    5 * 24 * 3600 * SEC,
    120 * SEC,
    60 * SEC,
    30 * SEC,
    120 * SEC,
    10 * SEC,
    120 * SEC,
];
const TIMEOUT_RETRANS: u64 = 300 * SEC;
const TIMEOUT_UNACK: u64 = 300 * SEC;
/// nf_conntrack_tcp_max_retrans.
const TCP_MAX_RETRANS: u8 = 3;

/// A cell of the table: a state, sIV (invalid) or sIG (ignore).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    S(TcpConntrack),
    Iv,
    Ig,
}

/// enum tcp_bit_set (get_conntrack_index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TcpBitSet {
    Syn = 0,
    SynAck,
    Fin,
    Ack,
    Rst,
    #[default]
    None,
}

use Next::{Ig as IG, Iv as IV};
use TcpConntrack as T;
const NO: Next = Next::S(T::None);
const SS: Next = Next::S(T::SynSent);
const SR: Next = Next::S(T::SynRecv);
const ES: Next = Next::S(T::Established);
const FW: Next = Next::S(T::FinWait);
const CW: Next = Next::S(T::CloseWait);
const LA: Next = Next::S(T::LastAck);
const TW: Next = Next::S(T::TimeWait);
const CL: Next = Next::S(T::Close);
const S2: Next = Next::S(T::SynSent2);

/// tcp_conntracks[dir][index][state], as 6.18 has it.
#[rustfmt::skip]
const TCP_CONNTRACKS: [[[Next; 10]; 6]; 2] = [
    [
        //        sNO sSS sSR sES sFW sCW sLA sTW sCL sS2
        /*syn*/    [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /*synack*/ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /*fin*/    [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /*ack*/    [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /*rst*/    [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /*none*/   [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    [
        /*syn*/    [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /*synack*/ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /*fin*/    [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /*ack*/    [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /*rst*/    [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /*none*/   [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];
const _: Next = NO;

// struct ip_ct_tcp_state flags (IP_CT_TCP_FLAG_*).
const FLAG_WINDOW_SCALE: u8 = 0x01;
const FLAG_SACK_PERM: u8 = 0x02;
const FLAG_CLOSE_INIT: u8 = 0x04;
const FLAG_BE_LIBERAL: u8 = 0x08;
const FLAG_DATA_UNACKNOWLEDGED: u8 = 0x10;
const FLAG_MAXACK_SET: u8 = 0x20;
const EXP_CHALLENGE_ACK: u8 = 0x40;
const SIMULTANEOUS_OPEN: u8 = 0x80;

/// struct ip_ct_tcp_state: one direction's window data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDirState {
    pub td_end: u32,
    pub td_maxend: u32,
    pub td_maxwin: u32,
    pub td_maxack: u32,
    pub td_scale: u8,
    pub flags: u8,
}

/// struct ip_ct_tcp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpCtTcp {
    pub seen: [TcpDirState; 2],
    pub state: TcpConntrack,
    pub last_dir: u8,
    pub retrans: u8,
    pub last_index: TcpBitSet,
    pub last_seq: u32,
    pub last_ack: u32,
    pub last_end: u32,
    pub last_win: u16,
    pub last_wscale: u8,
    pub last_flags: u8,
}

fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The TCP header fields conntrack reads, parsed once.
#[derive(Clone, Copy, Debug)]
pub struct TcpSeg<'a> {
    flags: u8,
    seq: u32,
    ack_seq: u32,
    window: u16,
    options: &'a [u8],
    /// segment_seq_plus_len: seq + payload length + SYN + FIN.
    end: u32,
}

impl TcpSeg<'_> {
    fn syn(&self) -> bool {
        self.flags & TCPHDR_SYN != 0
    }
    fn ack(&self) -> bool {
        self.flags & TCPHDR_ACK != 0
    }
    fn rst(&self) -> bool {
        self.flags & TCPHDR_RST != 0
    }

    /// get_conntrack_index.
    fn index(&self) -> TcpBitSet {
        if self.rst() {
            TcpBitSet::Rst
        } else if self.syn() {
            if self.ack() {
                TcpBitSet::SynAck
            } else {
                TcpBitSet::Syn
            }
        } else if self.flags & TCPHDR_FIN != 0 {
            TcpBitSet::Fin
        } else if self.ack() {
            TcpBitSet::Ack
        } else {
            TcpBitSet::None
        }
    }
}

/// tcp_valid_flags: the flag combinations (ECE, CWR and PSH masked) a
/// segment may carry.
fn tcp_valid_flags(flags: u8) -> bool {
    const VALID: [u8; 9] = [
        TCPHDR_SYN,
        TCPHDR_SYN | TCPHDR_URG,
        TCPHDR_SYN | TCPHDR_ACK,
        TCPHDR_RST,
        TCPHDR_RST | TCPHDR_ACK,
        TCPHDR_FIN | TCPHDR_ACK,
        TCPHDR_FIN | TCPHDR_ACK | TCPHDR_URG,
        TCPHDR_ACK,
        TCPHDR_ACK | TCPHDR_URG,
    ];
    VALID.contains(&(flags & !(TCPHDR_ECE | TCPHDR_CWR | TCPHDR_PSH)))
}

/// tcp_error: a header that fits, a sane data offset, valid flags. The
/// checksum is verified by the caller (nf_conntrack_checksum at PREROUTING).
pub fn tcp_parse(l4: &[u8]) -> Option<TcpSeg<'_>> {
    let tcp = TcpPacket::new_checked(l4).ok()?;
    let doff = tcp.header_len();
    if doff < 20 || doff > l4.len() {
        return None;
    }
    let flags = tcp.flags();
    if !tcp_valid_flags(flags) {
        return None;
    }
    let seq = tcp.seq_number();
    let payload = (l4.len() - doff) as u32;
    let end = seq
        .wrapping_add(payload)
        .wrapping_add(u32::from(flags & TCPHDR_SYN != 0))
        .wrapping_add(u32::from(flags & TCPHDR_FIN != 0));
    Some(TcpSeg {
        flags,
        seq,
        ack_seq: tcp.ack_number(),
        window: tcp.window_len(),
        options: l4.get(20..doff)?,
        end,
    })
}

/// tcp_options: window scale and SACK-permitted from a SYN's options.
fn tcp_options(options: &[u8], state: &mut TcpDirState) {
    state.td_scale = 0;
    state.flags = 0;
    let mut i = 0usize;
    while let Some(&opcode) = options.get(i) {
        match opcode {
            0 => return,
            1 => i += 1,
            _ => {
                let Some(&opsize) = options.get(i + 1) else {
                    return;
                };
                let opsize = usize::from(opsize);
                if opsize < 2 || opsize > options.len() - i {
                    return;
                }
                if opcode == 4 && opsize == 2 {
                    state.flags |= FLAG_SACK_PERM;
                } else if opcode == 3 && opsize == 3 {
                    state.td_scale = options.get(i + 2).copied().unwrap_or(0).min(14);
                    state.flags |= FLAG_WINDOW_SCALE;
                }
                i += opsize;
            }
        }
    }
}

/// tcp_sack: the highest right edge of the SACK blocks, if above `sack`.
fn tcp_sack(options: &[u8], sack: &mut u32) {
    // The fast path: a timestamp-only option block has no SACK.
    if options.len() == 12 && options[..4] == [1, 1, 8, 10] {
        return;
    }
    let mut i = 0usize;
    while let Some(&opcode) = options.get(i) {
        match opcode {
            0 => return,
            1 => i += 1,
            _ => {
                let Some(&opsize) = options.get(i + 1) else {
                    return;
                };
                let opsize = usize::from(opsize);
                if opsize < 2 || opsize > options.len() - i {
                    return;
                }
                if opcode == 5 && opsize >= 10 && (opsize - 2) % 8 == 0 {
                    let blocks = options.get(i + 2..i + opsize).unwrap_or(&[]);
                    for b in blocks.chunks_exact(8) {
                        let right = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                        if after(right, *sack) {
                            *sack = right;
                        }
                    }
                    return;
                }
                i += opsize;
            }
        }
    }
}

fn maxackwindow(sender: &TcpDirState) -> u32 {
    sender.td_maxwin.max(66000)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WinRes {
    Accept,
    Invalid,
    Ignore,
}

/// nf_tcp_log_invalid: be_liberal (the sender's flag; the sysctl is off)
/// accepts what would be invalid or ignored.
fn log_invalid(sender: &TcpDirState, res: WinRes) -> WinRes {
    if sender.flags & FLAG_BE_LIBERAL != 0 {
        WinRes::Accept
    } else {
        res
    }
}

fn init_sender_from_syn(st: &mut IpCtTcp, d: usize, seg: &TcpSeg) {
    let sender = &mut st.seen[d];
    sender.td_end = seg.end;
    sender.td_maxend = seg.end;
    sender.td_maxwin = u32::from(seg.window).max(1);
    tcp_options(seg.options, sender);
}

/// tcp_in_window's first part: a sender seen for the first time takes its
/// window data from this segment (a SYN, or midstream); a SYN re-sent with a
/// higher sequence while opening re-initialises it. True when the segment
/// is accepted right away (a SYN without ACK: simultaneous open).
fn sender_init(st: &mut IpCtTcp, d: usize, seg: &TcpSeg, sack: u32) -> bool {
    let r = 1 - d;
    if st.seen[d].td_maxwin == 0 {
        if seg.syn() {
            init_sender_from_syn(st, d, seg);
            // RFC 1323: scaling only when both sides offered it.
            if !(st.seen[d].flags & FLAG_WINDOW_SCALE != 0
                && st.seen[r].flags & FLAG_WINDOW_SCALE != 0)
            {
                st.seen[d].td_scale = 0;
                st.seen[r].td_scale = 0;
            }
            if !seg.ack() {
                return true;
            }
        } else {
            let sender = &mut st.seen[d];
            sender.td_end = seg.end;
            let swin = u32::from(seg.window) << sender.td_scale;
            sender.td_maxwin = swin.max(1);
            sender.td_maxend = seg.end.wrapping_add(sender.td_maxwin);
            let receiver = &mut st.seen[r];
            if receiver.td_maxwin == 0 {
                receiver.td_end = sack;
                receiver.td_maxend = sack;
            } else if sack == receiver.td_end.wrapping_add(1) {
                receiver.td_end = receiver.td_end.wrapping_add(1);
            }
        }
    } else if seg.syn()
        && after(seg.end, st.seen[d].td_end)
        && matches!(st.state, T::SynSent | T::SynRecv)
    {
        init_sender_from_syn(st, d, seg);
    }
    false
}

/// tcp_in_window (6.18's shape, no NAT sequence offsets).
fn tcp_in_window(st: &mut IpCtTcp, dir: Dir, index: TcpBitSet, seg: &TcpSeg) -> WinRes {
    let (d, r) = (dir as usize, 1 - dir as usize);
    let (mut seq, mut ack) = (seg.seq, seg.ack_seq);
    let mut sack = ack;
    let mut end = seg.end;
    let mut win = u32::from(seg.window);
    if st.seen[r].flags & FLAG_SACK_PERM != 0 {
        tcp_sack(seg.options, &mut sack);
    }
    if sender_init(st, d, seg, sack) {
        return WinRes::Accept;
    }
    if !seg.ack() || (seg.rst() && ack == 0) {
        ack = st.seen[r].td_end;
        sack = ack;
    }
    if seg.rst() && seq == 0 && st.state == T::SynSent {
        seq = st.seen[d].td_end;
        end = seq;
    }
    let (sender, receiver) = (st.seen[d], st.seen[r]);
    if !before(seq, sender.td_maxend.wrapping_add(1)) {
        let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
        let ack_ok = after(
            sack,
            receiver
                .td_end
                .wrapping_sub(maxackwindow(&sender))
                .wrapping_sub(1),
        );
        let in_recv_win = receiver.td_maxwin != 0
            && after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        if in_recv_win
            && ack_ok
            && overshot <= receiver.td_maxwin
            && before(sack, receiver.td_end.wrapping_add(1))
        {
            return WinRes::Accept;
        }
        return log_invalid(&sender, WinRes::Invalid);
    }
    if !before(sack, receiver.td_end.wrapping_add(1)) {
        return log_invalid(&sender, WinRes::Invalid);
    }
    let in_recv_win = receiver.td_maxwin == 0
        || after(
            end,
            sender
                .td_end
                .wrapping_sub(receiver.td_maxwin)
                .wrapping_sub(1),
        );
    if !in_recv_win {
        return log_invalid(&sender, WinRes::Ignore);
    }
    if !after(
        sack,
        receiver
            .td_end
            .wrapping_sub(maxackwindow(&sender))
            .wrapping_sub(1),
    ) {
        return log_invalid(&sender, WinRes::Ignore);
    }
    if !seg.syn() {
        win = win.checked_shl(u32::from(sender.td_scale)).unwrap_or(0);
    }
    update_window(st, d, r, seg, index, (seq, ack, sack, end, win));
    WinRes::Accept
}

/// tcp_in_window's tail: the sender's and receiver's data after an
/// in-window segment, and the retransmission counter.
fn update_window(
    st: &mut IpCtTcp,
    d: usize,
    r: usize,
    seg: &TcpSeg,
    index: TcpBitSet,
    (seq, ack, sack, end, win): (u32, u32, u32, u32, u32),
) {
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    let sender = &mut st.seen[d];
    if sender.td_maxwin < swin {
        sender.td_maxwin = swin;
    }
    if after(end, sender.td_end) {
        sender.td_end = end;
        sender.flags |= FLAG_DATA_UNACKNOWLEDGED;
    }
    if seg.ack() {
        if sender.flags & FLAG_MAXACK_SET == 0 {
            sender.td_maxack = ack;
            sender.flags |= FLAG_MAXACK_SET;
        } else if after(ack, sender.td_maxack) {
            sender.td_maxack = ack;
        }
    }
    let sender_maxend = sender.td_maxend;
    let receiver = &mut st.seen[r];
    if receiver.td_maxwin != 0 && after(end, sender_maxend) {
        receiver.td_maxwin = receiver
            .td_maxwin
            .wrapping_add(end.wrapping_sub(sender_maxend));
    }
    if after(sack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
        receiver.td_maxend = sack.wrapping_add(win);
        if win == 0 {
            receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
        }
    }
    if ack == receiver.td_end {
        receiver.flags &= !FLAG_DATA_UNACKNOWLEDGED;
    }
    if index == TcpBitSet::Ack {
        let dir = d as u8;
        if st.last_dir == dir
            && st.last_seq == seq
            && st.last_ack == ack
            && st.last_end == end
            && st.last_win == seg.window
        {
            st.retrans = st.retrans.saturating_add(1);
        } else {
            st.last_dir = dir;
            st.last_seq = seq;
            st.last_ack = ack;
            st.last_end = end;
            st.last_win = seg.window;
            st.retrans = 0;
        }
    }
}

/// tcp_new: the state a new connection starts in, or None (invalid new:
/// only a SYN or, picking up a connection midstream (nf_conntrack_tcp_loose
/// = 1), an ACK may create one).
pub fn tcp_new(seg: &TcpSeg) -> Option<IpCtTcp> {
    let next = TCP_CONNTRACKS[0][seg.index() as usize][T::None as usize];
    let mut st = IpCtTcp::default();
    let s0 = &mut st.seen[0];
    s0.td_end = seg.end;
    s0.td_maxwin = u32::from(seg.window).max(1);
    match next {
        Next::S(T::SynSent) => {
            s0.td_maxend = s0.td_end;
            tcp_options(seg.options, s0);
        }
        Next::S(_) => {
            s0.td_maxend = s0.td_end.wrapping_add(s0.td_maxwin);
            st.seen[0].flags = FLAG_SACK_PERM | FLAG_BE_LIBERAL;
            st.seen[1].flags = FLAG_SACK_PERM | FLAG_BE_LIBERAL;
        }
        _ => return None,
    }
    st.last_index = TcpBitSet::None;
    Some(st)
}

/// What nf_conntrack_tcp_packet decided beyond the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOutcome {
    pub verdict: PacketVerdict,
    /// New timeout (ns from now), if the entry is refreshed.
    pub timeout: Option<u64>,
    /// Set IPS_ASSURED.
    pub assure: bool,
    /// Kill the entry (an RST before any reply, or a reopen).
    pub kill: bool,
}

fn accept_only() -> TcpOutcome {
    TcpOutcome {
        verdict: PacketVerdict::Accept,
        timeout: None,
        assure: false,
        kill: false,
    }
}

fn invalid() -> TcpOutcome {
    TcpOutcome {
        verdict: PacketVerdict::Invalid,
        ..accept_only()
    }
}

/// The packet's context for nf_conntrack_tcp_packet.
pub struct TcpCtx {
    pub dir: Dir,
    pub status: u32,
}

/// nf_conntrack_tcp_packet (after tcp_new for unconfirmed entries).
pub fn tcp_packet(st: &mut IpCtTcp, seg: &TcpSeg, cx: &TcpCtx) -> TcpOutcome {
    let old_state = st.state;
    let dir = cx.dir;
    let index = seg.index();
    let mut new_state = TCP_CONNTRACKS[dir as usize][index as usize][old_state as usize];
    let mut skip_window = false;
    match new_state {
        Next::S(T::SynSent) if old_state >= T::TimeWait => {
            // An attempt to reopen a closed/aborted connection: delete this
            // entry and look up again (-NF_REPEAT).
            let flags = st.seen[0].flags | st.seen[1].flags;
            if flags & FLAG_CLOSE_INIT != 0
                || (st.last_dir == dir as u8 && st.last_index == TcpBitSet::Rst)
            {
                return TcpOutcome {
                    verdict: PacketVerdict::Repeat,
                    kill: true,
                    ..accept_only()
                };
            }
            if let Some(o) = tcp_ignore(st, seg, dir, index, old_state, &mut new_state) {
                return o;
            }
        }
        Next::Ig => {
            if let Some(o) = tcp_ignore(st, seg, dir, index, old_state, &mut new_state) {
                return o;
            }
        }
        Next::Iv => return invalid(),
        // An RFC 5961 challenge ACK does not acknowledge the last FIN.
        Next::S(T::TimeWait)
            if old_state == T::LastAck
                && index == TcpBitSet::Ack
                && st.last_dir != dir as u8
                && st.last_index == TcpBitSet::Syn
                && st.last_flags & EXP_CHALLENGE_ACK != 0 =>
        {
            st.last_flags &= !EXP_CHALLENGE_ACK;
            return accept_only();
        }
        Next::S(T::SynSent2) => st.last_flags |= SIMULTANEOUS_OPEN,
        Next::S(T::SynRecv)
            if dir == Dir::Reply
                && index == TcpBitSet::Ack
                && st.last_flags & SIMULTANEOUS_OPEN != 0 =>
        {
            new_state = ES;
        }
        Next::S(T::Close) if index == TcpBitSet::Rst => {
            match tcp_rst_checks(st, seg, dir, old_state, cx.status) {
                RstCheck::Invalid => return invalid(),
                RstCheck::SkipWindow => skip_window = true,
                RstCheck::KeepState => new_state = Next::S(old_state),
                RstCheck::Window => {}
            }
        }
        _ => {}
    }
    if !skip_window {
        match tcp_in_window(st, dir, index, seg) {
            WinRes::Ignore => return accept_only(),
            WinRes::Invalid => return invalid(),
            WinRes::Accept => {}
        }
    }
    let Next::S(new_state) = new_state else {
        return invalid();
    };
    tcp_in_window_done(st, seg, cx, index, old_state, new_state)
}

/// The `in_window:` tail of nf_conntrack_tcp_packet: the new state, the
/// timeout it earns, ASSURED.
fn tcp_in_window_done(
    st: &mut IpCtTcp,
    seg: &TcpSeg,
    cx: &TcpCtx,
    index: TcpBitSet,
    old_state: TcpConntrack,
    new_state: TcpConntrack,
) -> TcpOutcome {
    st.last_index = index;
    st.last_dir = cx.dir as u8;
    st.state = new_state;
    if old_state != new_state && new_state == T::FinWait {
        st.seen[cx.dir as usize].flags |= FLAG_CLOSE_INIT;
    }
    let state_timeout = TCP_TIMEOUTS[new_state as usize];
    let unacked = (st.seen[0].flags | st.seen[1].flags) & FLAG_DATA_UNACKNOWLEDGED != 0;
    let mut timeout = if st.retrans >= TCP_MAX_RETRANS && state_timeout > TIMEOUT_RETRANS {
        TIMEOUT_RETRANS
    } else if index == TcpBitSet::Rst {
        TCP_TIMEOUTS[T::Close as usize]
    } else if unacked && state_timeout > TIMEOUT_UNACK {
        TIMEOUT_UNACK
    } else if st.last_win == 0 && state_timeout > TIMEOUT_RETRANS {
        TIMEOUT_RETRANS
    } else {
        state_timeout
    };
    let mut out = TcpOutcome {
        timeout: Some(timeout),
        ..accept_only()
    };
    if cx.status & IPS_SEEN_REPLY == 0 {
        // An RST as the only reply: no connection worth keeping.
        if seg.rst() {
            return TcpOutcome {
                kill: true,
                ..accept_only()
            };
        }
        // A SYN retransmit does not renew the timeout.
        if index == TcpBitSet::Syn && old_state == T::SynSent {
            return accept_only();
        }
        if new_state == T::Established && timeout > TIMEOUT_UNACK {
            timeout = TIMEOUT_UNACK;
        }
        out.timeout = Some(timeout);
    } else if cx.status & IPS_ASSURED == 0
        && matches!(old_state, T::SynRecv | T::Established)
        && new_state == T::Established
    {
        out.assure = true;
    }
    out
}

/// The ignored-packet case of nf_conntrack_tcp_packet: annotate the segment
/// so a later SYN/ACK or RST can resynchronise. Some(outcome) ends the
/// packet; None continues with the window check (a SYN/ACK answering an
/// ignored SYN).
fn tcp_ignore(
    st: &mut IpCtTcp,
    seg: &TcpSeg,
    dir: Dir,
    index: TcpBitSet,
    old_state: TcpConntrack,
    new_state: &mut Next,
) -> Option<TcpOutcome> {
    if index == TcpBitSet::SynAck
        && st.last_index == TcpBitSet::Syn
        && st.last_dir != dir as u8
        && seg.ack_seq == st.last_end
    {
        // This SYN/ACK acknowledges a SYN we ignored: get in sync.
        *new_state = SR;
        let l = usize::from(st.last_dir).min(1);
        st.seen[l].td_end = st.last_end;
        st.seen[l].td_maxend = st.last_end;
        st.seen[l].td_maxwin = u32::from(st.last_win).max(1);
        st.seen[l].td_scale = st.last_wscale;
        st.last_flags &= !EXP_CHALLENGE_ACK;
        st.seen[l].flags = st.last_flags;
        st.seen[dir as usize] = TcpDirState::default();
        return None;
    }
    st.last_index = index;
    st.last_dir = dir as u8;
    st.last_seq = seg.seq;
    st.last_end = seg.end;
    st.last_win = seg.window;
    if index == TcpBitSet::Syn && dir == Dir::Original {
        let mut seen = TcpDirState::default();
        tcp_options(seg.options, &mut seen);
        st.last_flags = 0;
        st.last_wscale = 0;
        if seen.flags & FLAG_WINDOW_SCALE != 0 {
            st.last_flags |= FLAG_WINDOW_SCALE;
            st.last_wscale = seen.td_scale;
        }
        if seen.flags & FLAG_SACK_PERM != 0 {
            st.last_flags |= FLAG_SACK_PERM;
        }
        if old_state == T::LastAck {
            st.last_flags |= EXP_CHALLENGE_ACK;
        }
    }
    if old_state == T::SynSent && index == TcpBitSet::Ack && dir == Dir::Reply {
        st.last_ack = seg.ack_seq;
    }
    Some(accept_only())
}

enum RstCheck {
    Invalid,
    SkipWindow,
    KeepState,
    Window,
}

/// tcp_can_early_drop: the states an entry may be evicted from first.
pub fn tcp_can_early_drop(st: &IpCtTcp) -> bool {
    matches!(
        st.state,
        T::FinWait | T::LastAck | T::TimeWait | T::Close | T::CloseWait
    )
}

/// The RST case of nf_conntrack_tcp_packet.
fn tcp_rst_checks(
    st: &IpCtTcp,
    seg: &TcpSeg,
    dir: Dir,
    old_state: TcpConntrack,
    status: u32,
) -> RstCheck {
    if tcp_can_early_drop(st) {
        return RstCheck::SkipWindow;
    }
    let r = 1 - dir as usize;
    // nf_conntrack_tcp_established: ESTABLISHED and ASSURED.
    let established = st.state == T::Established && status & IPS_ASSURED != 0;
    if st.seen[r].flags & FLAG_MAXACK_SET != 0 && st.last_index != TcpBitSet::Syn {
        let seq = seg.seq;
        if seq == 0 && !established {
            return RstCheck::Window;
        }
        if before(seq, st.seen[r].td_maxack) {
            return RstCheck::Invalid;
        }
        if !established || seq == st.seen[r].td_maxack {
            return RstCheck::Window;
        }
        if st.last_index == TcpBitSet::Ack && st.last_dir == dir as u8 && seq == st.last_end {
            return RstCheck::Window;
        }
        return RstCheck::KeepState;
    }
    let seen_reply = status & IPS_SEEN_REPLY != 0;
    let assured = status & IPS_ASSURED != 0;
    if ((seen_reply && st.last_index == TcpBitSet::Syn)
        || (!assured && st.last_index == TcpBitSet::Ack))
        && seg.ack_seq == st.last_end
    {
        return RstCheck::SkipWindow;
    }
    if old_state == T::SynSent
        && st.last_index == TcpBitSet::Ack
        && st.last_dir == Dir::Reply as u8
        && seg.seq == st.last_ack
    {
        return RstCheck::SkipWindow;
    }
    RstCheck::Window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: u8, seq: u32, ack: u32, win: u16, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 20 + payload];
        b[4..8].copy_from_slice(&seq.to_be_bytes());
        b[8..12].copy_from_slice(&ack.to_be_bytes());
        b[12] = 5 << 4;
        b[13] = flags;
        b[14..16].copy_from_slice(&win.to_be_bytes());
        b
    }

    fn run(st: &mut IpCtTcp, dir: Dir, status: u32, b: &[u8]) -> TcpOutcome {
        let s = tcp_parse(b).unwrap();
        tcp_packet(st, &s, &TcpCtx { dir, status })
    }

    /// The three-way handshake, data, and an orderly close, state by state
    /// with the timeouts the kernel gives (seconds).
    #[test]
    fn handshake_and_close() {
        let syn = seg(TCPHDR_SYN, 1000, 0, 64240, 0);
        let mut st = tcp_new(&tcp_parse(&syn).unwrap()).unwrap();
        let o = run(&mut st, Dir::Original, 0, &syn);
        assert_eq!((st.state, o.timeout), (T::SynSent, Some(120 * SEC)));
        let synack = seg(TCPHDR_SYN | TCPHDR_ACK, 5000, 1001, 65160, 0);
        let o = run(&mut st, Dir::Reply, 0, &synack);
        assert_eq!((st.state, o.timeout), (T::SynRecv, Some(60 * SEC)));
        let ack = seg(TCPHDR_ACK, 1001, 5001, 502, 0);
        let o = run(&mut st, Dir::Original, IPS_SEEN_REPLY, &ack);
        assert_eq!(st.state, T::Established);
        assert_eq!((o.timeout, o.assure), (Some(432000 * SEC), true));
        let data = seg(TCPHDR_ACK | TCPHDR_PSH, 1001, 5001, 502, 100);
        let o = run(&mut st, Dir::Original, IPS_SEEN_REPLY | IPS_ASSURED, &data);
        // Unacknowledged data: the UNACK timeout (300 s).
        assert_eq!(o.timeout, Some(300 * SEC));
        let fin = seg(TCPHDR_FIN | TCPHDR_ACK, 5001, 1101, 509, 0);
        run(&mut st, Dir::Reply, IPS_SEEN_REPLY | IPS_ASSURED, &fin);
        assert_eq!(st.state, T::FinWait);
        let fin2 = seg(TCPHDR_FIN | TCPHDR_ACK, 1101, 5002, 502, 0);
        run(&mut st, Dir::Original, IPS_SEEN_REPLY | IPS_ASSURED, &fin2);
        assert_eq!(st.state, T::LastAck);
        let last = seg(TCPHDR_ACK, 5002, 1102, 509, 0);
        let o = run(&mut st, Dir::Reply, IPS_SEEN_REPLY | IPS_ASSURED, &last);
        assert_eq!((st.state, o.timeout), (T::TimeWait, Some(120 * SEC)));
    }

    #[test]
    fn invalid_new_and_flags() {
        // A SYN/ACK cannot start a connection; SYN|FIN is never valid.
        let synack = seg(TCPHDR_SYN | TCPHDR_ACK, 1, 1, 100, 0);
        assert!(tcp_new(&tcp_parse(&synack).unwrap()).is_none());
        assert!(tcp_parse(&seg(TCPHDR_SYN | TCPHDR_FIN, 1, 0, 100, 0)).is_none());
        // An ACK picks up a connection midstream, liberal windows.
        let ack = seg(TCPHDR_ACK, 1, 1, 100, 0);
        let st = tcp_new(&tcp_parse(&ack).unwrap()).unwrap();
        assert_eq!(st.seen[0].flags, FLAG_SACK_PERM | FLAG_BE_LIBERAL);
        assert_eq!((st.seen[0].td_end, st.seen[0].td_maxend), (1, 101));
    }

    #[test]
    fn ack_before_synack_is_invalid_and_rst_kills_unreplied() {
        let syn = seg(TCPHDR_SYN, 1000, 0, 64240, 0);
        let mut st = tcp_new(&tcp_parse(&syn).unwrap()).unwrap();
        run(&mut st, Dir::Original, 0, &syn);
        let ack = seg(TCPHDR_ACK, 1001, 1, 502, 0);
        assert_eq!(
            run(&mut st, Dir::Original, 0, &ack).verdict,
            PacketVerdict::Invalid
        );
        let rst = seg(TCPHDR_RST | TCPHDR_ACK, 0, 1001, 0, 0);
        let o = run(&mut st, Dir::Reply, 0, &rst);
        assert_eq!(
            (o.verdict, o.kill, st.state),
            (PacketVerdict::Accept, true, T::Close)
        );
    }

    #[test]
    fn data_beyond_the_window_is_invalid() {
        let syn = seg(TCPHDR_SYN, 1000, 0, 1000, 0);
        let mut st = tcp_new(&tcp_parse(&syn).unwrap()).unwrap();
        run(&mut st, Dir::Original, 0, &syn);
        run(
            &mut st,
            Dir::Reply,
            0,
            &seg(TCPHDR_SYN | TCPHDR_ACK, 5000, 1001, 1000, 0),
        );
        run(
            &mut st,
            Dir::Original,
            IPS_SEEN_REPLY,
            &seg(TCPHDR_ACK, 1001, 5001, 1000, 0),
        );
        // The receiver advertised 1000 bytes: a segment starting 5000 bytes
        // ahead is over the upper bound.
        let far = seg(TCPHDR_ACK, 6001, 5001, 1000, 10);
        assert_eq!(
            run(&mut st, Dir::Original, IPS_SEEN_REPLY, &far).verdict,
            PacketVerdict::Invalid
        );
    }
}
