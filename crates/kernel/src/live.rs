//! What `skiff bench --datapath --suite` needs to run objects in the kernel's
//! real datapath: BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (frames
//! really transmitted, redirected or passed up the ingress device's stack),
//! programs attached to devices through BPF_LINK_CREATE (XDP, tcx), entering a
//! network namespace, and a SIGINT/SIGTERM flag so that a bench can clean up.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use crate::sys::{self, Attr};
use crate::{KernelError, KernelObject};

const BPF_LINK_CREATE: u32 = 28;
const BPF_OBJ_PIN: u32 = 6;
/// `BPF_F_TEST_XDP_LIVE_FRAMES` (include/uapi/linux/bpf.h).
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// `TEST_XDP_MAX_BATCH` (net/bpf/test_run.c): the largest live batch.
pub const TEST_XDP_MAX_BATCH: u32 = 256;

/// `enum bpf_attach_type` values for BPF_LINK_CREATE on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAttach {
    /// BPF_XDP (37): native XDP where the driver has it (veth does).
    Xdp,
    /// BPF_XDP (37) with XDP_FLAGS_SKB_MODE: generic XDP.
    XdpGeneric,
    /// BPF_TCX_INGRESS (46).
    TcxIngress,
    /// BPF_TCX_EGRESS (47).
    TcxEgress,
}

impl LinkAttach {
    fn kernel_id(self) -> u32 {
        match self {
            LinkAttach::Xdp | LinkAttach::XdpGeneric => 37,
            LinkAttach::TcxIngress => 46,
            LinkAttach::TcxEgress => 47,
        }
    }
}

/// One live run's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveRun {
    /// The kernel's `duration`: ns per frame, timed in the kernel around the
    /// batches (bpf_test_timer in bpf_test_run_xdp_live).
    pub duration_ns: u32,
}

impl KernelObject {
    /// BPF_PROG_TEST_RUN of XDP program `prog` in live-frames mode
    /// (`bpf_test_run_xdp_live`): `repeat` frames, each a copy of `frame`, in
    /// batches of `batch_size` (1..=TEST_XDP_MAX_BATCH), received on
    /// `ingress_ifindex` (a device of the calling thread's network namespace;
    /// `xdp_convert_md_to_buff` looks it up there). The ctx is a `struct
    /// xdp_md` with `data_end` = the frame's length, no data_out or ctx_out
    /// (the kernel refuses them in live mode).
    pub fn test_run_xdp_live(
        &self,
        prog: &str,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
        batch_size: u32,
    ) -> Result<LiveRun, KernelError> {
        let fd = self.prog_fd(prog)?;
        let err = |errno| KernelError::TestRun {
            prog: prog.to_string(),
            errno,
        };
        let len = u32::try_from(frame.len()).map_err(|_| err(libc::E2BIG))?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex
        let mut md = [0u8; 24];
        md[4..8].copy_from_slice(&len.to_ne_bytes());
        md[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let mut a = Attr::new();
        a.put_u32(0, fd as u32);
        a.put_u32(8, len);
        a.put_u64(16, sys::ptr(frame.as_ptr()));
        a.put_u32(32, repeat);
        a.put_u32(40, md.len() as u32);
        a.put_u64(48, sys::ptr(md.as_ptr()));
        a.put_u32(64, BPF_F_TEST_XDP_LIVE_FRAMES);
        a.put_u32(72, batch_size);
        sys::bpf(sys::BPF_PROG_TEST_RUN, &mut a).map_err(err)?;
        Ok(LiveRun {
            duration_ns: a.get_u32(36),
        })
    }

    /// BPF_LINK_CREATE: attaches program `prog` to device `ifindex` of the
    /// calling thread's network namespace. The link lives as long as the
    /// returned descriptor (closing it detaches the program).
    pub fn link_create(
        &self,
        prog: &str,
        ifindex: u32,
        attach: LinkAttach,
    ) -> Result<OwnedFd, KernelError> {
        let fd = self.prog_fd(prog)?;
        let mut a = Attr::new();
        a.put_u32(0, fd as u32);
        a.put_u32(4, ifindex);
        a.put_u32(8, attach.kernel_id());
        if attach == LinkAttach::XdpGeneric {
            // link_create.flags: XDP_FLAGS_SKB_MODE (include/uapi/linux/if_link.h)
            a.put_u32(12, 1 << 1);
        }
        sys::bpf_fd(BPF_LINK_CREATE, &mut a).map_err(|errno| KernelError::Attach {
            what: format!("program `{prog}` to ifindex {ifindex} ({attach:?}, BPF_LINK_CREATE)"),
            errno,
        })
    }
}

impl KernelObject {
    /// BPF_OBJ_PIN: pins program `prog` at `path` (a file on a bpffs), so that
    /// `tc filter ... bpf object-pinned PATH` can attach this very program.
    pub fn pin_prog(&self, prog: &str, path: &str) -> Result<(), KernelError> {
        pin_fd(self.prog_fd(prog)?, path)
    }
}

/// BPF_OBJ_PIN of a program, map or link descriptor at `path` (on a bpffs):
/// the object lives on after the descriptor is closed, until the file is
/// removed.
pub fn pin_fd(fd: i32, path: &str) -> Result<(), KernelError> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| KernelError::Io(format!("pin path {path:?} holds a NUL")))?;
    let mut a = Attr::new();
    a.put_u64(0, sys::ptr(c.as_ptr()));
    a.put_u32(8, fd as u32);
    sys::bpf(BPF_OBJ_PIN, &mut a)
        .map(|_| ())
        .map_err(|errno| KernelError::Attach {
            what: format!("fd {fd} pinned at {path} (BPF_OBJ_PIN)"),
            errno,
        })
}

/// Moves the calling thread into network namespace `path` (a file such as
/// `/run/netns/NAME` or `/proc/self/ns/net`).
pub fn enter_netns(path: &str) -> Result<(), KernelError> {
    let f = std::fs::File::open(path).map_err(|e| KernelError::Io(format!("{path}: {e}")))?;
    sys::setns_net(&f).map_err(|errno| {
        KernelError::Io(format!(
            "setns({path}, CLONE_NEWNET): {}",
            std::io::Error::from_raw_os_error(errno)
        ))
    })
}

/// The calling thread's network namespace, to come back to with
/// [`return_to_netns`].
pub fn current_netns() -> Result<OwnedFd, KernelError> {
    let f = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| KernelError::Io(format!("/proc/thread-self/ns/net: {e}")))?;
    Ok(OwnedFd::from(f))
}

/// setns back into a namespace kept with [`current_netns`].
pub fn return_to_netns(fd: &OwnedFd) -> Result<(), KernelError> {
    sys::setns_net(fd).map_err(|errno| {
        KernelError::Io(format!(
            "setns(fd {}, CLONE_NEWNET): {}",
            fd.as_raw_fd(),
            std::io::Error::from_raw_os_error(errno)
        ))
    })
}

/// From now on SIGINT and SIGTERM set a flag ([`interrupted`]) instead of
/// ending the process, so a caller can remove what it created; a bpf() call
/// running then returns EINTR.
pub fn catch_interrupts() -> Result<(), KernelError> {
    sys::catch_interrupts().map_err(|errno| {
        KernelError::Io(format!(
            "sigaction: {}",
            std::io::Error::from_raw_os_error(errno)
        ))
    })
}

/// True once SIGINT or SIGTERM arrived after [`catch_interrupts`].
pub fn interrupted() -> bool {
    sys::INTERRUPTED.load(Ordering::SeqCst)
}
