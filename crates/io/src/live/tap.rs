//! TAP backend: skiff creates the TAP device `host_ifname` (IFF_TAP |
//! IFF_NO_PI | IFF_VNET_HDR) and is its wire: what the host's stack sends on
//! the tap, skiff reads; what skiff writes, the host receives. With
//! TUN_F_CSUM the host may hand over frames with CHECKSUM_PARTIAL, their
//! virtio_net_hdr saying where the checksum goes (VIRTIO_NET_HDR_F_NEEDS_CSUM,
//! csum_start, csum_offset); no TSO/UFO is offered, so every frame fits the MTU.
//! The device lives as long as skiff holds it open (not persistent), as a
//! VM's tap does.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{io_err, monotonic_ns, LiveCounters, LiveDevice, LiveError, RxCsum, RxFrame};

/// struct virtio_net_hdr (the legacy 10 bytes TUNSETVNETHDRSZ defaults to).
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// Room for a 64 KiB frame (the most a tap read can give).
const RX_BUF: usize = VNET_HDR_LEN + 65_536;

pub struct Tap {
    ifname: String,
    fd: OwnedFd,
    rx: Vec<u8>,
    cnt: LiveCounters,
}

impl Tap {
    /// Creates TAP device `ifname` in the calling thread's namespace.
    pub fn open(ifname: &str) -> Result<Tap, LiveError> {
        let path = c"/dev/net/tun";
        // SAFETY: a constant NUL-terminated path; the descriptor is owned
        // right after.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io_err(ifname, "open /dev/net/tun (needs CAP_NET_ADMIN)"));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = ifname.as_bytes();
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
            return Err(LiveError::NotSupported {
                iface: ifname.to_string(),
                what: format!("an interface name of {} bytes (1..=15, no NUL)", name.len()),
            });
        }
        // struct ifreq: the name, then ifr_flags (a short) in the union
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name);
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: `ifr` is a 40-byte ifreq the ioctl reads and writes.
        if unsafe { libc::ioctl(raw, libc::TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
            return Err(io_err(ifname, "ioctl(TUNSETIFF, IFF_TAP | IFF_VNET_HDR)"));
        }
        // Partial checksums welcome (finished by skiff), no segmentation
        // offloads: every frame read fits the MTU.
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(raw, libc::TUNSETOFFLOAD, libc::TUN_F_CSUM as libc::c_ulong) } < 0 {
            return Err(io_err(ifname, "ioctl(TUNSETOFFLOAD, TUN_F_CSUM)"));
        }
        Ok(Tap {
            ifname: ifname.to_string(),
            fd,
            rx: vec![0; RX_BUF],
            cnt: LiveCounters::default(),
        })
    }
}

/// The checksum state a virtio_net_hdr gives.
fn vnet_csum(h: &[u8]) -> RxCsum {
    let flags = h.first().copied().unwrap_or(0);
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
        return RxCsum::Complete;
    }
    let u16_at = |o: usize| {
        h.get(o..o + 2)
            .map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
    };
    RxCsum::PartialAt {
        start: u16_at(6),
        offset: u16_at(8),
    }
}

impl LiveDevice for Tap {
    fn ifname(&self) -> &str {
        &self.ifname
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv(&mut self, max: usize, f: &mut dyn FnMut(RxFrame<'_>)) -> Result<usize, LiveError> {
        let mut n = 0;
        while n < max {
            // SAFETY: `rx` is writable for its whole length.
            let r = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.rx.as_mut_ptr().cast(),
                    self.rx.len(),
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    break;
                }
                return Err(LiveError::Io {
                    iface: self.ifname.clone(),
                    what: "read from the tap",
                    source: e,
                });
            }
            let len = r as usize;
            if len <= VNET_HDR_LEN {
                continue;
            }
            let (hdr, frame) = self.rx.split_at_mut(VNET_HDR_LEN);
            let Some(data) = frame.get_mut(..len - VNET_HDR_LEN) else {
                continue;
            };
            self.cnt.rx_packets += 1;
            self.cnt.rx_bytes += data.len() as u64;
            let wire_len = data.len();
            f(RxFrame {
                data,
                wire_len,
                ts_ns: monotonic_ns(),
                csum: vnet_csum(hdr),
            });
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool, LiveError> {
        // a zero virtio_net_hdr: a complete frame, no GSO
        let hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at buffers that outlive the call.
        let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            self.cnt.tx_dropped += 1;
            return match e.raw_os_error() {
                // the host's backlog is full, the frame does not fit, or
                // the tap is down (EIO, tun_get_user): dropped, as a NIC
                // without carrier drops
                Some(libc::EAGAIN) | Some(libc::EINVAL) | Some(libc::EMSGSIZE)
                | Some(libc::EIO) => Ok(false),
                _ => Err(LiveError::Io {
                    iface: self.ifname.clone(),
                    what: "write to the tap",
                    source: e,
                }),
            };
        }
        self.cnt.tx_packets += 1;
        self.cnt.tx_bytes += frame.len() as u64;
        Ok(true)
    }

    /// Every write went at once: a tap takes one frame per write.
    fn flush(&mut self) -> Result<(), LiveError> {
        Ok(())
    }

    fn counters(&self) -> LiveCounters {
        self.cnt
    }
}
