//! Live devices: real interfaces whose frames enter skiff and to which skiff
//! transmits. One backend per file (AF_PACKET, TAP, AF_XDP), each behind
//! [`LiveDevice`]: a batch received into the backend's own buffers (a ring,
//! reused), a batch sent, a descriptor to poll, counters.
//!
//! Frames a namespace sends over veth or a tap usually carry CHECKSUM_PARTIAL
//! (the L4 checksum field holds only the pseudo-header sum, the device is to
//! finish it): [`csum::complete`] finishes it as `skb_checksum_help` does,
//! before a program reads the frame.

pub mod af_packet;
pub mod af_xdp;
pub mod csum;
mod mapping;
pub mod netns;
pub mod tap;

use std::os::fd::RawFd;

/// Which kind of socket or device carries a live device's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A TAP device (`/dev/net/tun`, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    /// skiff creates with the name `host_ifname`.
    Tap,
    /// An AF_PACKET socket on an existing interface (TPACKET_V3 rx ring,
    /// batched tx).
    AfPacket,
    /// An AF_XDP socket on an existing interface.
    AfXdp,
}

impl Backend {
    /// The topology file's name of the backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tap => "tap",
            Backend::AfPacket => "af_packet",
            Backend::AfXdp => "af_xdp",
        }
    }

    /// The backend a topology file names.
    pub fn from_name(s: &str) -> Option<Backend> {
        match s {
            "tap" => Some(Backend::Tap),
            "af_packet" => Some(Backend::AfPacket),
            "af_xdp" => Some(Backend::AfXdp),
            _ => None,
        }
    }
}

/// Where a live device is: the interface and the network namespace it lives
/// in (`None`: the namespace skiff runs in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSpec {
    pub backend: Backend,
    pub host_ifname: String,
    pub host_netns: Option<String>,
}

/// What a backend says about a received frame's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxCsum {
    /// Nothing to do (CHECKSUM_NONE / UNNECESSARY: the bytes are as sent).
    Complete,
    /// CHECKSUM_PARTIAL at a place the backend does not know
    /// (TP_STATUS_CSUMNOTREADY): found from the headers.
    Partial,
    /// CHECKSUM_PARTIAL with the place given (virtio_net_hdr csum_start,
    /// csum_offset, from the start of the frame).
    PartialAt { start: u16, offset: u16 },
}

/// One received frame, lent by the backend until the callback returns.
pub struct RxFrame<'a> {
    /// The frame (Ethernet header first); writable, so the checksum can be
    /// finished in place.
    pub data: &'a mut [u8],
    /// The frame's length on the wire (longer than `data` when truncated).
    pub wire_len: usize,
    /// CLOCK_MONOTONIC nanoseconds when it was received.
    pub ts_ns: u64,
    pub csum: RxCsum,
}

/// A live device's own counters (the datapath counts what it did with the
/// frames; these count what happened before and after).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames the kernel dropped because the receive ring was full
    /// (PACKET_STATISTICS tp_drops, XDP rx_ring_full / rx_dropped).
    pub rx_ring_full: u64,
    /// Frames given to the datapath whose partial checksum was finished.
    pub rx_csum_completed: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames the send refused or the tx ring had no room for.
    pub tx_dropped: u64,
    /// Times the device was found down or gone, and reopened.
    pub down: u64,
    pub reopened: u64,
}

/// A live device's error: what failed, on which interface.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{iface}: {what}: {source}")]
    Io {
        iface: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{iface}: not supported: {what}")]
    NotSupported { iface: String, what: String },
}

impl LiveError {
    /// True when the interface went down or disappeared (ENETDOWN, ENXIO,
    /// ENODEV): the loop closes the device and retries later.
    pub fn is_gone(&self) -> bool {
        match self {
            LiveError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENETDOWN) | Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::EBADFD)
            ),
            LiveError::NotSupported { .. } => false,
        }
    }
}

pub(crate) fn io_err(iface: &str, what: &'static str) -> LiveError {
    LiveError::Io {
        iface: iface.to_string(),
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// The index of interface `ifname` (if_nametoindex, in the calling thread's
/// namespace); an error names `iface` (as the backend's errors say it).
pub(crate) fn if_index(ifname: &str, iface: &str) -> Result<u32, LiveError> {
    let cname = std::ffi::CString::new(ifname).map_err(|_| LiveError::NotSupported {
        iface: ifname.to_string(),
        what: "an interface name with a NUL byte".into(),
    })?;
    // SAFETY: a NUL-terminated name that lives for the call.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(io_err(iface, "no such interface (if_nametoindex)"));
    }
    Ok(ifindex)
}

/// setsockopt(level, opt) of `v`, a plain value (an integer, an array of
/// them or a repr(C) struct of them); the syscall's result.
pub(crate) fn setsockopt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: `v` is a plain value that lives for the call; the length is
    // its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

/// getsockopt(level, opt) into `out` (an integer or an array of them);
/// false on error.
pub(crate) fn getsockopt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, out: &mut T) -> bool {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `out` is writable for `len` bytes, `len` is writable; T is an
    // array or integer the kernel fills as bytes.
    let r = unsafe { libc::getsockopt(fd, level, opt, (out as *mut T).cast(), &mut len) };
    r == 0
}

/// The socket's pending error (SO_ERROR; reading clears it), e.g. ENETDOWN
/// once the interface went down or away, as `what` failing on `iface`.
pub(crate) fn socket_error(fd: RawFd, iface: &str, what: &'static str) -> Option<LiveError> {
    let mut e: libc::c_int = 0;
    let ok = getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut e);
    (ok && e != 0).then(|| LiveError::Io {
        iface: iface.to_string(),
        what,
        source: std::io::Error::from_raw_os_error(e),
    })
}

/// A real interface skiff receives from and transmits to.
pub trait LiveDevice: Send {
    /// The interface's name (as the host sees it).
    fn ifname(&self) -> &str;
    /// The descriptor to poll for POLLIN.
    fn fd(&self) -> RawFd;
    /// Hands up to `max` received frames to `f`, each lent until `f`
    /// returns; how many. Never blocks.
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(RxFrame<'_>)) -> Result<usize, LiveError>;
    /// Queues `frame` for sending (copied into the backend's tx buffers); a
    /// full batch is sent at once. False when dropped (no room, too long).
    fn send(&mut self, frame: &[u8]) -> Result<bool, LiveError>;
    /// Sends what [`LiveDevice::send`] queued.
    fn flush(&mut self) -> Result<(), LiveError>;
    /// Whether the device is still there, for a backend whose descriptor
    /// does not poll readable when it went (AF_XDP: xsk_poll reports no
    /// error); called a few times a second.
    fn check(&mut self) -> Result<(), LiveError> {
        Ok(())
    }
    fn counters(&self) -> LiveCounters;
}

/// Opens the backend `spec` names, in its namespace.
pub fn open(spec: &LiveSpec) -> Result<Box<dyn LiveDevice>, LiveError> {
    let ns = spec.host_netns.as_deref();
    let name = spec.host_ifname.as_str();
    match spec.backend {
        Backend::AfPacket => {
            let d = netns::within(ns, name, || af_packet::AfPacket::open(name))??;
            Ok(Box::new(d))
        }
        Backend::Tap => {
            let d = netns::within(ns, name, || tap::Tap::open(name))??;
            Ok(Box::new(d))
        }
        Backend::AfXdp => {
            let d = netns::within(ns, name, || af_xdp::AfXdp::open(name))??;
            Ok(Box::new(d))
        }
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// poll(2) on the live devices' descriptors, with its pollfd array kept
/// between calls (no allocation per wait).
#[derive(Default)]
pub struct Poller {
    fds: Vec<libc::pollfd>,
}

impl Poller {
    /// Waits up to `timeout_ms` (0: just look) until one of `fds` is
    /// readable or in error (a signal ends the wait early: EINTR is no
    /// error); how many are ready.
    pub fn wait(&mut self, fds: &[RawFd], timeout_ms: i32) -> Result<usize, std::io::Error> {
        self.fds.clear();
        self.fds.extend(fds.iter().map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        if self.fds.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(timeout_ms.max(0) as u64));
            return Ok(0);
        }
        // SAFETY: `fds` is a valid array of `len` pollfds for the call.
        let r = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }

    /// Whether descriptor `i` of the last wait is readable or in error.
    pub fn ready(&self, i: usize) -> bool {
        self.fds.get(i).is_some_and(|p| p.revents != 0)
    }
}
