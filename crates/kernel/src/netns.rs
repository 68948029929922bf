//! Real network namespaces for differential runs against the kernel: created
//! with `ip netns add` and deleted when dropped (also when a run fails or is
//! interrupted), `ip`/`tc`/`sysctl` run inside them, and AF_PACKET sockets
//! bound to one of their devices to send frames and read what the device
//! sees. `skiff diff` and the kernel differential tests share this one copy.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::KernelError;

/// `ETH_P_ALL` (include/uapi/linux/if_ether.h): every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `PACKET_OUTGOING` (include/uapi/linux/if_packet.h): a frame the device sent.
pub const PACKET_OUTGOING: u8 = 4;
/// The largest frame a socket read takes (a 64 KiB GSO-less frame).
const FRAME_MAX: usize = 65536;

/// A network namespace made with `ip netns add`; deleted (with its devices and
/// the programs attached to them) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME`. A namespace of that name already there is an error
    /// (it belongs to someone else).
    pub fn add(name: &str) -> Result<Netns, KernelError> {
        if Path::new("/run/netns").join(name).exists() {
            return Err(KernelError::Io(format!(
                "network namespace {name} exists already (left by another run? `ip netns del {name}`)"
            )));
        }
        run("ip", &["netns", "add", name])?;
        Ok(Netns {
            name: name.to_string(),
        })
    }

    /// Leaves the namespace in place (not deleted on drop); its name.
    pub fn keep(self) -> String {
        let kept = std::mem::ManuallyDrop::new(self);
        kept.name.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file (`/run/netns/NAME`), for setns.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<String, KernelError> {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        run("ip", &v)
    }

    /// `tc ARGS...` in this namespace, run in `dir` (where the objects a tc
    /// line names are). Through `nsenter --net`, not `tc -n`: `tc -n` remounts
    /// /sys in a mount namespace of its own, which hides the bpffs at
    /// /sys/fs/bpf that `bpf object-pinned` reads.
    pub fn tc(&self, args: &[&str], dir: &Path) -> Result<String, KernelError> {
        let net = format!("--net={}", self.path());
        let mut v = vec![net.as_str(), "tc"];
        v.extend_from_slice(args);
        run_in("nsenter", &v, Some(dir))
    }

    /// `sysctl -qw KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, kv: &str) -> Result<(), KernelError> {
        run(
            "ip",
            &["netns", "exec", self.name.as_str(), "sysctl", "-qw", kv],
        )
        .map(|_| ())
    }

    /// The ifindex of device `dev` here (`ip -j link show`).
    pub fn ifindex(&self, dev: &str) -> Result<u32, KernelError> {
        let out = self.ip(&["-o", "link", "show", "dev", dev])?;
        // "7: NAME@...: <...>": the index before the first colon
        out.split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                KernelError::Io(format!(
                    "netns {}: no ifindex for {dev} in {out:?}",
                    self.name
                ))
            })
    }

    /// Runs `f` on a thread that entered this namespace (sockets it creates and
    /// links it attaches by ifindex belong here; the caller's thread stays where
    /// it is).
    pub fn within<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, KernelError> + Send,
    ) -> Result<T, KernelError> {
        within_netns(&self.path(), f)
    }
}

/// Runs `f` on a thread that entered network namespace `path` (a file such as
/// `/run/netns/NAME`).
pub fn within_netns<T: Send>(
    path: &str,
    f: impl FnOnce() -> Result<T, KernelError> + Send,
) -> Result<T, KernelError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::live::enter_netns(path)?;
            f()
        })
        .join()
        .map_err(|_| KernelError::Io(format!("thread in netns {path} panicked")))?
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command, its stdout on success, its stderr in the error.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, KernelError> {
    run_in(cmd, args, None)
}

fn run_in(cmd: &str, args: &[&str], dir: Option<&Path>) -> Result<String, KernelError> {
    let mut c = Command::new(cmd);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c
        .output()
        .map_err(|e| KernelError::Io(format!("{cmd}: {e}")))?;
    if !out.status.success() {
        return Err(KernelError::Io(format!(
            "`{cmd} {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside the named namespace (`ip netns exec NS ...`).
pub fn run_netns(ns: &str, args: &[&str]) -> Result<String, KernelError> {
    let mut v = vec!["netns", "exec", ns];
    v.extend_from_slice(args);
    run("ip", &v)
}

/// Why a test that builds namespaces with `tools` cannot run here: not root,
/// or the first tool not on PATH (with `hint`, what installs it); None: it can.
#[allow(unsafe_code)]
pub fn missing(tools: &[&str], hint: &str) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (needs network namespaces)".into());
    }
    let on_path = |t: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
    };
    tools
        .iter()
        .find(|t| !on_path(t))
        .map(|t| format!("`{t}` not found ({hint})"))
}

/// include/uapi/linux/sockios.h: SIOCGSTAMPNS_OLD, which 64-bit time_t
/// targets use (libc does not export it for them).
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

/// An AF_PACKET socket (SOCK_RAW, ETH_P_ALL) bound to one device: frames
/// written to it leave that device; it reads every frame the device sends or
/// receives, as tcpdump does (after native XDP, before tc ingress).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// A non-blocking socket on device `ifindex` of namespace `ns`.
    pub fn open(ns: &Netns, ifindex: u32) -> Result<PacketSocket, KernelError> {
        ns.within(|| PacketSocket::open_here(ifindex))
    }

    /// A non-blocking socket on device `ifindex` of the namespace at `path`.
    pub fn open_in(path: &str, ifindex: u32) -> Result<PacketSocket, KernelError> {
        within_netns(path, || PacketSocket::open_here(ifindex))
    }

    /// A non-blocking socket on device `ifindex` of the calling thread's namespace.
    #[allow(unsafe_code)]
    pub fn open_here(ifindex: u32) -> Result<PacketSocket, KernelError> {
        let err = |what: &str| {
            KernelError::Io(format!(
                "AF_PACKET {what} (ifindex {ifindex}): {}",
                std::io::Error::last_os_error()
            ))
        };
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(err("socket"));
        }
        // SAFETY: raw is a socket just opened and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = i32::try_from(ifindex).map_err(|_| err("ifindex"))?;
        // SAFETY: sll is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(err("bind"));
        }
        let s = PacketSocket { fd };
        // the first SIOCGSTAMPNS turns receive timestamps on (sock_gettstamp:
        // sock_enable_timestamp); nothing read yet, so it answers ENOENT
        let _ = s.stamp_age();
        Ok(s)
    }

    /// How long ago the kernel received the frame last read (its skb
    /// timestamp, SIOCGSTAMPNS: set by netif_rx when the peer's xmit handed
    /// it over), so that a reader the machine's load delayed still knows
    /// when it came; None before any frame.
    #[allow(unsafe_code)]
    pub fn stamp_age(&self) -> Option<Duration> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec for the ioctl to fill.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                SIOCGSTAMPNS,
                &mut ts as *mut libc::timespec,
            )
        };
        if rc != 0 {
            return None;
        }
        let at = Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            u32::try_from(ts.tv_nsec).ok()?,
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(now.saturating_sub(at))
    }

    /// Sends one frame out of the bound device.
    #[allow(unsafe_code)]
    pub fn send(&self, frame: &[u8]) -> Result<(), KernelError> {
        // SAFETY: frame is a valid buffer of frame.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if usize::try_from(n).ok() != Some(frame.len()) {
            return Err(KernelError::Io(format!(
                "AF_PACKET send of {} bytes: {}",
                frame.len(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// One frame waiting, with its packet type (PACKET_HOST, PACKET_OUTGOING
    /// ...); None when none waits.
    #[allow(unsafe_code)]
    pub fn recv(&self) -> Option<(u8, Vec<u8>)> {
        let mut buf = vec![0u8; FRAME_MAX];
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buf and sll are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        let n = usize::try_from(n).ok()?;
        buf.truncate(n);
        Some((sll.sll_pkttype, buf))
    }

    /// Throws away what waits now (at most `max` frames).
    pub fn drain(&self, max: usize) {
        let mut n = 0;
        while n < max && self.recv().is_some() {
            n += 1;
        }
    }
}

/// Limits of a [`collect`]: it stops when no frame came for `quiet` (once
/// the sender is done), after `max_time` in all, and keeps at most
/// `max_frames` per socket.
#[derive(Clone, Copy, Debug)]
pub struct CollectLimits {
    pub quiet: Duration,
    pub max_time: Duration,
    pub max_frames: usize,
}

/// A frame a [`collect`] kept: when the kernel received it (since the collect
/// began; its read time less [`PacketSocket::stamp_age`]) and its bytes.
pub type Received = (Duration, Vec<u8>);

/// The frames each socket reads until the limits end it; `keep(socket index,
/// packet type, frame)` chooses what counts (and what resets the quiet time).
/// While `sending` is true (another thread still sends) the quiet time does
/// not run.
pub fn collect(
    socks: &[&PacketSocket],
    limits: CollectLimits,
    sending: Option<&AtomicBool>,
    keep: impl Fn(usize, u8, &[u8]) -> bool,
) -> Vec<Vec<Received>> {
    let mut got: Vec<Vec<Received>> = vec![Vec::new(); socks.len()];
    let start = Instant::now();
    let mut last = Instant::now();
    let busy = || sending.is_some_and(|s| s.load(Ordering::SeqCst));
    while start.elapsed() < limits.max_time && (busy() || last.elapsed() < limits.quiet) {
        if crate::live::interrupted() {
            break;
        }
        if busy() {
            last = Instant::now();
        }
        let wait = limits.quiet.saturating_sub(last.elapsed()).as_millis();
        // bounded so that the end of sending is seen soon
        let wait = i32::try_from(wait).unwrap_or(i32::MAX).clamp(1, 20);
        if poll_in(socks, wait) <= 0 {
            continue;
        }
        for (i, s) in socks.iter().enumerate() {
            let mut n = 0;
            while n < limits.max_frames {
                let Some((t, f)) = s.recv() else { break };
                n += 1;
                let Some(v) = got.get_mut(i) else { break };
                if keep(i, t, &f) && v.len() < limits.max_frames {
                    let age = s.stamp_age().unwrap_or_default();
                    v.push((start.elapsed().saturating_sub(age), f));
                    last = Instant::now();
                }
            }
        }
    }
    got
}

/// poll(2) for input on the sockets, `wait_ms` at most: how many have some.
#[allow(unsafe_code)]
fn poll_in(socks: &[&PacketSocket], wait_ms: i32) -> i32 {
    let mut pfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid array of pollfd of the length given.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait_ms) }
}
