//! The only unsafe code of skiff-kernel: the raw bpf(2) syscall and adopting the
//! file descriptors it returns. Attributes are built as plain bytes (`Attr`) at the
//! offsets of `union bpf_attr` (include/uapi/linux/bpf.h), so no struct layout is
//! trusted to the compiler.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

pub const BPF_MAP_CREATE: u32 = 0;
pub const BPF_MAP_LOOKUP_ELEM: u32 = 1;
pub const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub const BPF_MAP_GET_NEXT_KEY: u32 = 4;
pub const BPF_PROG_LOAD: u32 = 5;
pub const BPF_PROG_TEST_RUN: u32 = 10;
pub const BPF_MAP_FREEZE: u32 = 22;
pub const BPF_BTF_LOAD: u32 = 18;
pub const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;

/// `union bpf_attr` as bytes; 8-byte aligned, larger than any command we use.
#[repr(C, align(8))]
pub struct Attr([u8; 160]);

impl Default for Attr {
    fn default() -> Self {
        Self::new()
    }
}

impl Attr {
    pub fn new() -> Self {
        Attr([0; 160])
    }
    pub fn put_u32(&mut self, off: usize, v: u32) {
        if let Some(s) = self.0.get_mut(off..off + 4) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
    }
    pub fn put_u64(&mut self, off: usize, v: u64) {
        if let Some(s) = self.0.get_mut(off..off + 8) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
    }
    pub fn put_bytes(&mut self, off: usize, b: &[u8]) {
        if let Some(s) = self.0.get_mut(off..off + b.len()) {
            s.copy_from_slice(b);
        }
    }
    pub fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        if let Some(s) = self.0.get(off..off + 4) {
            b.copy_from_slice(s);
        }
        u32::from_ne_bytes(b)
    }
}

/// Pointer as the kernel's `__aligned_u64` user pointer.
pub fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// bpf(cmd, attr, size). Returns the non-negative result or the errno.
///
/// The caller must have put in `attr` only pointers to live buffers of the sizes the
/// command's attributes announce; this is what every caller in this crate does by
/// taking the pointers from slices it holds across the call.
pub fn bpf(cmd: u32, attr: &mut Attr) -> Result<i64, i32> {
    // SAFETY: `attr` is a valid, writable 160-byte buffer for the duration of the call;
    // the kernel reads/writes at most `size` bytes of it. Pointers inside it come from
    // slices borrowed by the caller for the duration of this call (see doc comment).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(r as i64)
    }
}

/// bpf() for a command that returns a new file descriptor.
pub fn bpf_fd(cmd: u32, attr: &mut Attr) -> Result<OwnedFd, i32> {
    let r = bpf(cmd, attr)?;
    let fd = i32::try_from(r).map_err(|_| libc::EBADF)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor owned by nobody else;
    // OwnedFd takes sole ownership and closes it on drop.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// sched_setaffinity(0, {cpu}) for the calling thread.
pub fn pin_current_thread(cpu: usize) -> Result<(), i32> {
    set_affinity(std::iter::once(cpu))
}

/// sched_setaffinity(0, cpus) for the calling thread (CPUs past CPU_SETSIZE
/// are left out).
pub fn set_affinity(cpus: impl Iterator<Item = usize>) -> Result<(), i32> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for cpu in cpus.filter(|c| *c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
    }
    Ok(())
}

/// setns(fd, CLONE_NEWNET) for the calling thread.
pub fn setns_net(fd: &impl std::os::fd::AsRawFd) -> Result<(), i32> {
    // SAFETY: setns takes a descriptor the caller keeps open across the call and
    // changes only the calling thread's network namespace.
    let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(())
}

/// The flag SIGINT and SIGTERM set once `catch_interrupts` ran.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_sig: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Installs `on_interrupt` for SIGINT and SIGTERM, without SA_RESTART so that a
/// long bpf(BPF_PROG_TEST_RUN) returns EINTR at once.
pub fn catch_interrupts() -> Result<(), i32> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data (zeroed is a valid empty mask, no flags);
        // the handler only stores to an atomic, which is async-signal-safe.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
    }
    Ok(())
}
