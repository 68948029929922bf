//! AF_PACKET backend: a SOCK_RAW packet socket bound to one interface, a
//! TPACKET_V3 receive ring mapped into skiff (blocks of frames the kernel
//! fills and hands over whole), and batched sends (sendmmsg, qdisc bypassed
//! as a NIC driver's xmit would be). TP_STATUS_CSUMNOTREADY marks frames
//! whose checksum the sender left partial; a VLAN tag the kernel took out of
//! the frame (TP_STATUS_VLAN_VALID) is put back, so programs see the frame as
//! it was on the wire.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::mapping::Mapping;
use super::{
    getsockopt, if_index, io_err, monotonic_ns, setsockopt, socket_error, LiveCounters, LiveDevice,
    LiveError, RxCsum, RxFrame,
};

// include/uapi/linux/if_packet.h
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1 << 0;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;

/// The ring: 64 blocks of 64 KiB. A block goes to skiff when full or after
/// RETIRE_TOV_MS, so small blocks keep latency low under light traffic;
/// 4 MiB holds ~2,000 full-size frames of a burst.
const BLOCK_SIZE: usize = 1 << 16;
const BLOCK_NR: usize = 64;
/// The largest frame the ring keeps whole (tp_frame_size; V3 packs frames by
/// their size, this only bounds tp_snaplen).
const FRAME_SIZE: usize = 1 << 11;
const RETIRE_TOV_MS: u32 = 1;
/// Frames queued before sendmmsg.
const TX_BATCH: usize = 64;
/// The largest frame sent: ETH_FRAME_LEN plus VLAN tags for a 1500 MTU,
/// with room for a jumbo up to 9216 bytes.
const TX_MAX: usize = 9216;

// struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1:
// block_status, num_pkts, offset_to_first_pkt, blk_len, ...
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST: usize = 16;
// struct tpacket3_hdr
const H_NEXT: usize = 0;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
/// TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): where the sockaddr_ll is.
const H_SLL: usize = 48;
/// sockaddr_ll's sll_pkttype.
const SLL_PKTTYPE: usize = 10;

/// The mapped receive ring: BLOCK_NR blocks of BLOCK_SIZE bytes.
struct Ring(Mapping);

impl Ring {
    /// Block `b`'s bytes (b taken modulo BLOCK_NR). The block is read and
    /// written by skiff only while its status says TP_STATUS_USER (the
    /// kernel does not touch it then).
    fn block(&mut self, b: usize) -> &mut [u8] {
        let off = (b % BLOCK_NR) * BLOCK_SIZE;
        // BLOCK_NR blocks were mapped: never empty
        self.0.slice_mut(off as u64, BLOCK_SIZE).unwrap_or_default()
    }

    /// Block `b`'s status word, shared with the kernel (read and written
    /// atomically only).
    fn status(&self, b: usize) -> Option<&AtomicU32> {
        let off = (b % BLOCK_NR) * BLOCK_SIZE + BD_STATUS;
        // SAFETY: `word` checked it in bounds and 4-aligned; it lives as
        // long as the mapping, which &self borrows.
        self.0.word(off as u64).map(|w| unsafe { &*w })
    }
}

/// Where the reader is in the ring: a block handed over by the kernel is
/// read frame by frame, possibly across several `recv` calls.
#[derive(Default)]
struct Cursor {
    block: usize,
    /// Frames of the current block already read, and the next one's offset.
    done: u32,
    next: usize,
}

pub struct AfPacket {
    ifname: String,
    fd: OwnedFd,
    ring: Ring,
    cur: Cursor,
    tx: Vec<Vec<u8>>,
    tx_n: usize,
    cnt: LiveCounters,
}

fn le32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

fn le16(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .map(|s| u16::from_ne_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

fn setsockopt_int(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> libc::c_int {
    setsockopt(fd, libc::SOL_PACKET, opt, &v)
}

impl AfPacket {
    /// A packet socket on `ifname` (in the calling thread's namespace) with
    /// its ring mapped.
    pub fn open(ifname: &str) -> Result<AfPacket, LiveError> {
        let ifindex = if_index(ifname, ifname)?;
        // SAFETY: plain socket(2) call; the descriptor is owned right after.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(io_err(
                ifname,
                "socket(AF_PACKET, SOCK_RAW) (needs CAP_NET_RAW)",
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let err = |what| io_err(ifname, what);
        if setsockopt_int(raw, PACKET_VERSION, TPACKET_V3) < 0 {
            return Err(err("setsockopt(PACKET_VERSION, TPACKET_V3)"));
        }
        // Our own transmissions are not to come back as receptions (4.20+).
        if setsockopt_int(raw, PACKET_IGNORE_OUTGOING, 1) < 0 {
            return Err(err("setsockopt(PACKET_IGNORE_OUTGOING)"));
        }
        // Straight to the driver, as a NIC's xmit: the qdiscs are skiff's.
        if setsockopt_int(raw, PACKET_QDISC_BYPASS, 1) < 0 {
            return Err(err("setsockopt(PACKET_QDISC_BYPASS)"));
        }
        let ring = map_ring(raw, ifname)?;
        bind(raw, ifindex, ifname)?;
        Ok(AfPacket {
            ifname: ifname.to_string(),
            fd,
            ring,
            cur: Cursor::default(),
            tx: (0..TX_BATCH).map(|_| Vec::with_capacity(TX_MAX)).collect(),
            tx_n: 0,
            cnt: LiveCounters::default(),
        })
    }

    /// Gives the current block back to the kernel and moves to the next.
    fn release_block(&mut self) {
        if let Some(st) = self.ring.status(self.cur.block) {
            st.store(TP_STATUS_KERNEL, Ordering::Release);
        }
        self.cur = Cursor {
            block: (self.cur.block + 1) % BLOCK_NR,
            done: 0,
            next: 0,
        };
    }

    /// PACKET_STATISTICS: frames the kernel dropped for want of ring room
    /// since the last call (reading resets them).
    fn ring_drops(&self) -> u64 {
        // struct tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt
        let mut st = [0u32; 3];
        let fd = self.fd.as_raw_fd();
        if !getsockopt(fd, libc::SOL_PACKET, PACKET_STATISTICS, &mut st) {
            return 0;
        }
        u64::from(st[1])
    }
}

/// PACKET_RX_RING with TPACKET_V3 blocks, then mmap.
fn map_ring(fd: RawFd, ifname: &str) -> Result<Ring, LiveError> {
    // struct tpacket_req3
    let req: [u32; 7] = [
        BLOCK_SIZE as u32,
        BLOCK_NR as u32,
        FRAME_SIZE as u32,
        (BLOCK_SIZE / FRAME_SIZE * BLOCK_NR) as u32,
        RETIRE_TOV_MS,
        0,
        0,
    ];
    if setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req) < 0 {
        return Err(io_err(ifname, "setsockopt(PACKET_RX_RING)"));
    }
    let m = Mapping::new(Some(fd), BLOCK_SIZE * BLOCK_NR, 0, libc::MAP_LOCKED).map_err(|e| {
        LiveError::Io {
            iface: ifname.to_string(),
            what: "mmap of the TPACKET_V3 ring",
            source: e,
        }
    })?;
    Ok(Ring(m))
}

fn bind(fd: RawFd, ifindex: u32, ifname: &str) -> Result<(), LiveError> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` lives for the call; the length is its size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io_err(ifname, "bind(AF_PACKET) to the interface"));
    }
    Ok(())
}

/// One frame of a block: puts a VLAN tag the kernel took out back in front
/// of the EtherType (the 12 MAC bytes move 4 back into the gap before the
/// frame), then lends it to `f`. False when the header does not fit the
/// block (the frame is skipped).
fn lend_frame(blk: &mut [u8], at: usize, f: &mut dyn FnMut(RxFrame<'_>)) -> Option<usize> {
    let status = le32(blk, at + H_STATUS);
    let snap = le32(blk, at + H_SNAPLEN) as usize;
    let wire_len = le32(blk, at + H_LEN) as usize;
    let mut mac = at + usize::from(le16(blk, at + H_MAC));
    let mut len = snap;
    if blk.get(at + H_SLL + SLL_PKTTYPE) == Some(&PACKET_OUTGOING) {
        return Some(0);
    }
    mac.checked_add(snap).filter(|e| *e <= blk.len())?;
    if status & TP_STATUS_VLAN_VALID != 0 && snap >= 12 && mac >= at + H_SLL + 20 + 4 {
        let tci = le16(blk, at + H_VLAN_TCI);
        let tpid = match status & TP_STATUS_VLAN_TPID_VALID {
            0 => ETH_P_8021Q,
            _ => le16(blk, at + H_VLAN_TPID),
        };
        blk.copy_within(mac..mac + 12, mac - 4);
        mac -= 4;
        blk.get_mut(mac + 12..mac + 16)?.copy_from_slice(&[
            (tpid >> 8) as u8,
            tpid as u8,
            (tci >> 8) as u8,
            tci as u8,
        ]);
        len += 4;
    }
    let csum = match status & TP_STATUS_CSUMNOTREADY {
        0 => RxCsum::Complete,
        _ => RxCsum::Partial,
    };
    let data = blk.get_mut(mac..mac + len)?;
    f(RxFrame {
        data,
        wire_len: wire_len + (len - snap),
        ts_ns: monotonic_ns(),
        csum,
    });
    Some(len)
}

impl LiveDevice for AfPacket {
    fn ifname(&self) -> &str {
        &self.ifname
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(RxFrame<'_>)) -> Result<usize, LiveError> {
        if let Some(e) = socket_error(self.fd.as_raw_fd(), &self.ifname, "receive") {
            return Err(e);
        }
        let mut n = 0;
        while n < max {
            let b = self.cur.block;
            let status = self.ring.status(b).map_or(0, |s| s.load(Ordering::Acquire));
            if status & TP_STATUS_USER == 0 {
                break;
            }
            let blk = self.ring.block(b);
            let num = le32(blk, BD_NUM_PKTS);
            if self.cur.done == 0 {
                self.cur.next = le32(blk, BD_FIRST) as usize;
            }
            while self.cur.done < num && n < max {
                let at = self.cur.next;
                let next = le32(blk, at + H_NEXT) as usize;
                if let Some(len) = lend_frame(blk, at, f).filter(|l| *l > 0) {
                    n += 1;
                    self.cnt.rx_packets += 1;
                    self.cnt.rx_bytes += len as u64;
                }
                self.cur.done += 1;
                self.cur.next = at.saturating_add(next);
                // a zero next offset ends the block (the last frame)
                if next == 0 {
                    self.cur.done = num;
                }
            }
            if self.cur.done >= num {
                self.release_block();
            }
        }
        if n > 0 || self.cnt.rx_packets == 0 {
            self.cnt.rx_ring_full += self.ring_drops();
        }
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, LiveError> {
        if frame.len() > TX_MAX {
            self.cnt.tx_dropped += 1;
            return Ok(false);
        }
        if self.tx_n == TX_BATCH {
            self.flush()?;
        }
        let Some(buf) = self.tx.get_mut(self.tx_n) else {
            self.cnt.tx_dropped += 1;
            return Ok(false);
        };
        buf.clear();
        buf.extend_from_slice(frame);
        self.tx_n += 1;
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), LiveError> {
        let n = std::mem::take(&mut self.tx_n);
        if n == 0 {
            return Ok(());
        }
        let bufs = self.tx.get(..n).unwrap_or(&[]);
        let (sent, err) = send_batch(self.fd.as_raw_fd(), bufs);
        for b in bufs.get(..sent).unwrap_or(&[]) {
            self.cnt.tx_packets += 1;
            self.cnt.tx_bytes += b.len() as u64;
        }
        self.cnt.tx_dropped += (n - sent) as u64;
        match err {
            Some(e) if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) => {
                Err(LiveError::Io {
                    iface: self.ifname.clone(),
                    what: "sendmmsg",
                    source: e,
                })
            }
            // a full device queue drops the rest, counted (the kernel's
            // dev_queue_xmit would too, with qdisc bypassed)
            _ => Ok(()),
        }
    }

    fn counters(&self) -> LiveCounters {
        self.cnt
    }
}

/// sendmmsg of `bufs` on a bound packet socket: how many went, and the error
/// that stopped the rest.
pub(crate) fn send_batch(fd: RawFd, bufs: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
    let mut sent = 0;
    for chunk in bufs.chunks(TX_BATCH) {
        let (n, err) = send_chunk(fd, chunk);
        sent += n;
        if err.is_some() {
            return (sent, err);
        }
    }
    (sent, None)
}

/// One sendmmsg round of at most TX_BATCH frames, its headers on the stack:
/// a flush allocates nothing.
fn send_chunk(fd: RawFd, bufs: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
    const NO_IOV: libc::iovec = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [NO_IOV; TX_BATCH];
    for (v, b) in iov.iter_mut().zip(bufs) {
        v.iov_base = b.as_ptr() as *mut libc::c_void;
        v.iov_len = b.len();
    }
    // SAFETY: mmsghdr is plain data; all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let msgs = &mut msgs[..bufs.len().min(TX_BATCH)];
    let mut sent = 0;
    while sent < msgs.len() {
        let rest = &mut msgs[sent..];
        // SAFETY: each mmsghdr points at one iovec in `iov`, each at a
        // buffer of `bufs`; all outlive the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            return (sent, Some(std::io::Error::last_os_error()));
        }
        sent += r as usize;
    }
    (sent, None)
}
