//! AF_XDP backend: an XDP socket bound to queue 0 of an existing interface,
//! fed by an XDP program skiff attaches there (af_xdp/redirect.rs). Frames
//! live in a UMEM skiff maps: the first half of its frames circulates
//! through the fill and rx rings (the kernel copies a received frame into a
//! fill-ring frame and hands it over on the rx ring; skiff lends it to the
//! datapath and puts it straight back in the fill ring), the second half
//! carries what skiff transmits (copied into a free frame, described on the
//! tx ring, sent by a sendto() kick, back on the completion ring).
//!
//! Copy mode on veth (the driver has no zero-copy); bind asks for neither
//! mode, so the kernel takes zero-copy where the driver has it and falls
//! back to copy (net/xdp/xsk.c: xsk_bind, xp_assign_dev). XDP_USE_NEED_WAKEUP:
//! the kernel says through the rings' flags when it needs a syscall.
//!
//! The rings are skiff's own, on libc: the xsk-rs crate was rejected because
//! it builds libbpf and libxdp from C source for every user of skiff.
//!
//! What the kernel needs (drivers/net/veth.c: veth_xdp_set) for native XDP
//! on a veth: the peer attached, the peer's MTU within a page less XDP
//! headroom (about 3,500 bytes), and no fewer rx queues than the peer has tx
//! queues; the kernel then turns the peer's GSO/TSO off itself. A frame the
//! peer sends with CHECKSUM_PARTIAL keeps its unfinished checksum through
//! XDP and reaches the socket without the mark (no metadata says so): the
//! peer needs tx checksum offload off (examples/live-pair/setup.sh does it
//! for af_xdp). Only queue 0 is bound (see docs/differences.md).

mod redirect;
mod ring;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::mapping::Mapping;
use super::{
    if_index, monotonic_ns, socket_error, LiveCounters, LiveDevice, LiveError, RxCsum, RxFrame,
};
pub use redirect::XdpMode;
use redirect::{Redirect, StepError};
use ring::{Ring, RingOffsets};

// include/uapi/linux/if_xdp.h
const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_PGOFF_RX_RING: u64 = 0;
const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

/// A UMEM frame: a page, so that any frame veth's native XDP lets through
/// (peer MTU up to a page less headroom) fits.
const FRAME_SIZE: usize = 4096;
/// Entries of each ring; as many frames for rx and again for tx.
const RING_SIZE: u32 = 2048;
const FRAMES: usize = 2 * RING_SIZE as usize;
/// Frames queued on the tx ring before a kick.
const TX_BATCH: u32 = 64;
/// The most sendto() kicks of one flush (the kernel sends at most 32 frames
/// per call in copy mode, net/xdp/xsk.c: MAX_PER_SOCKET_BUDGET).
const MAX_KICKS: usize = (RING_SIZE / 32) as usize;
/// The queue bound (its slot in the XSKMAP).
const QUEUE: u32 = 0;

pub struct AfXdp {
    ifname: String,
    /// Dropped first (fields drop in order): the program leaves the
    /// interface before the socket closes.
    redirect: Redirect,
    rings: Rings,
    /// Tx frames (UMEM addresses) not in the tx or completion ring.
    tx_free: Vec<u64>,
    /// Each tx frame's length, by frame number, counted when completed.
    tx_len: Vec<u16>,
    /// Rx frames the fill ring had no room for (put back next time).
    rx_spare: Vec<u64>,
    zerocopy: bool,
    cnt: LiveCounters,
}

/// How this backend's errors name interface `ifname`: "af_xdp IFACE".
fn iface(ifname: &str) -> String {
    format!("af_xdp {ifname}")
}

/// What failed, on which interface, as "af_xdp IFACE: STEP: errno".
fn fail(ifname: &str, what: &'static str) -> LiveError {
    io(ifname, what, std::io::Error::last_os_error())
}

fn io(ifname: &str, what: &'static str, source: std::io::Error) -> LiveError {
    LiveError::Io {
        iface: iface(ifname),
        what,
        source,
    }
}

fn fail_step(ifname: &str, e: StepError) -> LiveError {
    let errno = std::io::Error::from_raw_os_error(e.errno);
    let source = std::io::Error::new(errno.kind(), format!("{}: {errno}", e.what));
    io(ifname, "bpf", source)
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> libc::c_int {
    super::setsockopt(fd, SOL_XDP, opt, v)
}

fn getsockopt<T>(fd: RawFd, opt: libc::c_int, out: &mut T) -> bool {
    super::getsockopt(fd, SOL_XDP, opt, out)
}

/// XDP_UMEM_REG of `umem` (struct xdp_umem_reg: addr, len, chunk_size,
/// headroom, flags, tx_metadata_len).
fn register_umem(fd: RawFd, umem: &Mapping) -> libc::c_int {
    #[repr(C)]
    struct UmemReg {
        addr: u64,
        len: u64,
        chunk_size: u32,
        headroom: u32,
        flags: u32,
        tx_metadata_len: u32,
    }
    let reg = UmemReg {
        addr: umem.addr(),
        len: umem.len() as u64,
        chunk_size: FRAME_SIZE as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(fd, XDP_UMEM_REG, &reg)
}

/// XDP_MMAP_OFFSETS: rx, tx, fill, completion (struct xdp_mmap_offsets).
fn ring_offsets(fd: RawFd) -> Option<[RingOffsets; 4]> {
    let mut raw = [0u64; 16];
    if !getsockopt(fd, XDP_MMAP_OFFSETS, &mut raw) {
        return None;
    }
    let r = |i: usize| RingOffsets {
        producer: raw[4 * i],
        consumer: raw[4 * i + 1],
        desc: raw[4 * i + 2],
        flags: raw[4 * i + 3],
    };
    Some([r(0), r(1), r(2), r(3)])
}

fn bind(fd: RawFd, ifindex: u32) -> libc::c_int {
    // struct sockaddr_xdp: family, flags, ifindex, queue_id, shared_umem_fd
    #[repr(C)]
    struct SockaddrXdp {
        family: u16,
        flags: u16,
        ifindex: u32,
        queue_id: u32,
        shared_umem_fd: u32,
    }
    let sa = SockaddrXdp {
        family: AF_XDP as u16,
        flags: XDP_USE_NEED_WAKEUP,
        ifindex,
        queue_id: QUEUE,
        shared_umem_fd: 0,
    };
    // SAFETY: `sa` lives for the call; the length is its size.
    unsafe {
        libc::bind(
            fd,
            (&sa as *const SockaddrXdp).cast(),
            std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
        )
    }
}

/// The socket with its UMEM registered and its four rings sized and mapped
/// (dropped in this order, after the redirect program).
struct Rings {
    fd: OwnedFd,
    umem: Mapping,
    fill: Ring,
    comp: Ring,
    rx: Ring,
    tx: Ring,
}

fn make_rings(ifname: &str) -> Result<Rings, LiveError> {
    let err = |what| fail(ifname, what);
    // SAFETY: plain socket(2); the descriptor is owned right after.
    let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(err(
            "socket(AF_XDP) (needs CAP_NET_RAW and CONFIG_XDP_SOCKETS)",
        ));
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let umem = Mapping::new(None, FRAMES * FRAME_SIZE, 0, 0)
        .map_err(|e| io(ifname, "mmap of the UMEM", e))?;
    if register_umem(raw, &umem) < 0 {
        return Err(err("XDP_UMEM_REG"));
    }
    for (opt, what) in [
        (XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
        (XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
        (XDP_RX_RING, "XDP_RX_RING"),
        (XDP_TX_RING, "XDP_TX_RING"),
    ] {
        if setsockopt(raw, opt, &RING_SIZE) < 0 {
            return Err(err(what));
        }
    }
    let [rx, tx, fr, cr] = ring_offsets(raw).ok_or_else(|| err("XDP_MMAP_OFFSETS"))?;
    let map = |pgoff, off, entry, what| {
        Ring::map(raw, pgoff, off, RING_SIZE, entry).map_err(|e| io(ifname, what, e))
    };
    Ok(Rings {
        fill: map(XDP_UMEM_PGOFF_FILL_RING, fr, 8, "mmap of the fill ring")?,
        comp: map(
            XDP_UMEM_PGOFF_COMPLETION_RING,
            cr,
            8,
            "mmap of the completion ring",
        )?,
        rx: map(XDP_PGOFF_RX_RING, rx, 16, "mmap of the rx ring")?,
        tx: map(XDP_PGOFF_TX_RING, tx, 16, "mmap of the tx ring")?,
        fd,
        umem,
    })
}

impl AfXdp {
    /// An AF_XDP socket on queue 0 of `ifname` (in the calling thread's
    /// namespace), the redirect program attached.
    pub fn open(ifname: &str) -> Result<AfXdp, LiveError> {
        let ifindex = if_index(ifname, &iface(ifname))?;
        let r = make_rings(ifname)?;
        let mut redirect = Redirect::load(QUEUE + 1).map_err(|e| fail_step(ifname, e))?;
        if bind(r.fd.as_raw_fd(), ifindex) < 0 {
            return Err(fail(ifname, "bind(AF_XDP) to queue 0"));
        }
        redirect
            .insert(QUEUE, r.fd.as_raw_fd())
            .map_err(|e| fail_step(ifname, e))?;
        redirect.attach(ifindex).map_err(|e| fail_step(ifname, e))?;
        let mut opts = 0u32;
        let zerocopy = getsockopt(r.fd.as_raw_fd(), XDP_OPTIONS, &mut opts)
            && opts & XDP_OPTIONS_ZEROCOPY != 0;
        let mut d = AfXdp {
            ifname: ifname.to_string(),
            redirect,
            rings: r,
            tx_free: (RING_SIZE as usize..FRAMES)
                .rev()
                .map(|i| (i * FRAME_SIZE) as u64)
                .collect(),
            tx_len: vec![0; FRAMES],
            rx_spare: Vec::with_capacity(RING_SIZE as usize),
            zerocopy,
            cnt: LiveCounters::default(),
        };
        for i in 0..RING_SIZE as usize {
            d.rings.fill.push_addr((i * FRAME_SIZE) as u64);
        }
        d.rings.fill.publish();
        Ok(d)
    }

    /// Whether the kernel runs the socket in zero-copy mode.
    pub fn zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Whether the redirect program runs in the driver or on the skb.
    pub fn xdp_mode(&self) -> XdpMode {
        self.redirect.mode
    }

    /// A syscall the kernel waits for (XDP_USE_NEED_WAKEUP): sendto() moves
    /// the tx ring, recvfrom() the fill ring (zero-copy drivers).
    fn wakeup(&self, tx: bool) -> Result<(), std::io::Error> {
        let fd = self.rings.fd.as_raw_fd();
        // SAFETY: no buffer: a zero-length send/receive on our socket.
        let r = unsafe {
            match tx {
                true => libc::sendto(
                    fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                ),
                false => libc::recvfrom(
                    fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                ),
            }
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Completed tx frames back to the free list, counted as sent.
    fn reap(&mut self) {
        let n = self.rings.comp.available(RING_SIZE);
        for k in 0..n {
            let Some(addr) = self.rings.comp.read_addr(k) else {
                continue;
            };
            let frame = (addr as usize) / FRAME_SIZE;
            let len = self.tx_len.get(frame).copied().unwrap_or(0);
            self.cnt.tx_packets += 1;
            self.cnt.tx_bytes += u64::from(len);
            self.tx_free.push(addr - addr % FRAME_SIZE as u64);
        }
        self.rings.comp.release(n);
    }

    /// Publishes the tx ring and kicks the kernel until it took everything
    /// (bounded), or the device is busy (the rest goes next time).
    fn kick(&mut self) -> Result<(), LiveError> {
        self.rings.tx.publish();
        for _ in 0..MAX_KICKS {
            if self.rings.tx.outstanding() == 0 || (self.zerocopy && !self.rings.tx.needs_wakeup())
            {
                break;
            }
            match self.wakeup(true) {
                Ok(()) => {}
                // EAGAIN: a batch went and more is left; go on
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                // the device queue is full: what is left waits on the ring
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOBUFS)) => {
                    break
                }
                Err(e) => return Err(io(&self.ifname, "sendto (tx kick)", e)),
            }
        }
        self.reap();
        Ok(())
    }

    /// XDP_STATISTICS: frames the kernel dropped for want of rx ring room or
    /// of a fill-ring frame (struct xdp_statistics: rx_dropped,
    /// rx_invalid_descs, tx_invalid_descs, rx_ring_full, ...).
    fn ring_drops(&self) -> u64 {
        let mut st = [0u64; 6];
        if !getsockopt(self.rings.fd.as_raw_fd(), XDP_STATISTICS, &mut st) {
            return 0;
        }
        st[0] + st[3]
    }
}

impl LiveDevice for AfXdp {
    fn ifname(&self) -> &str {
        &self.ifname
    }

    fn fd(&self) -> RawFd {
        self.rings.fd.as_raw_fd()
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(RxFrame<'_>)) -> Result<usize, LiveError> {
        let n = self
            .rings
            .rx
            .available(u32::try_from(max).unwrap_or(u32::MAX));
        let ts_ns = monotonic_ns();
        let mut lent = 0;
        for k in 0..n {
            let Some((addr, len)) = self.rings.rx.read_desc(k) else {
                continue;
            };
            if let Some(data) = self.rings.umem.slice_mut(addr, len as usize) {
                f(RxFrame {
                    data,
                    wire_len: len as usize,
                    ts_ns,
                    // the kernel copied the frame as the peer sent it; a
                    // partial checksum is not marked (see the module doc)
                    csum: RxCsum::Complete,
                });
                lent += 1;
                self.cnt.rx_packets += 1;
                self.cnt.rx_bytes += u64::from(len);
            }
            self.rx_spare.push(addr - addr % FRAME_SIZE as u64);
        }
        self.rings.rx.release(n);
        while let Some(a) = self.rx_spare.pop() {
            if !self.rings.fill.push_addr(a) {
                self.rx_spare.push(a);
                break;
            }
        }
        self.rings.fill.publish();
        if self.zerocopy && self.rings.fill.needs_wakeup() {
            let _ = self.wakeup(false);
        }
        Ok(lent)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, LiveError> {
        let len = match u16::try_from(frame.len()) {
            Ok(l) if frame.len() <= FRAME_SIZE => l,
            _ => {
                self.cnt.tx_dropped += 1;
                return Ok(false);
            }
        };
        if self.tx_free.is_empty() {
            self.reap();
        }
        let Some(addr) = self.tx_free.pop() else {
            self.cnt.tx_dropped += 1;
            return Ok(false);
        };
        let copied = self
            .rings
            .umem
            .slice_mut(addr, frame.len())
            .map(|b| b.copy_from_slice(frame));
        if copied.is_none() || !self.rings.tx.push_desc(addr, u32::from(len)) {
            self.tx_free.push(addr);
            self.cnt.tx_dropped += 1;
            return Ok(false);
        }
        if let Some(l) = self.tx_len.get_mut((addr as usize) / FRAME_SIZE) {
            *l = len;
        }
        if self.rings.tx.unpublished() >= TX_BATCH {
            self.kick()?;
        }
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), LiveError> {
        if self.rings.tx.unpublished() > 0 || self.rings.tx.outstanding() > 0 {
            self.kick()?;
        } else {
            self.reap();
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), LiveError> {
        match socket_error(self.rings.fd.as_raw_fd(), &self.ifname, "receive") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn counters(&self) -> LiveCounters {
        let mut c = self.cnt;
        c.rx_ring_full = self.ring_drops();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interface that does not exist: the error names the backend, the
    /// interface and the step (no privilege needed to get this far).
    #[test]
    fn error_names_interface_and_step() {
        let e = AfXdp::open("skiff-nosuch0").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("af_xdp skiff-nosuch0: no such interface (if_nametoindex): No such device (os error 19)")
        );
    }
}
