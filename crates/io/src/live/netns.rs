//! Opening a socket or device in another network namespace: the calling
//! thread enters it (setns), opens, and comes back; what was opened stays in
//! the namespace it was opened in (a socket keeps its netns for life).

use std::fs::File;
use std::os::fd::AsRawFd;

use super::LiveError;

/// Runs `f` with the calling thread in network namespace `ns` (a name under
/// /run/netns, as `ip netns` makes, or a path), then returns the thread to
/// the namespace it was in. `None`: `f` runs where the thread is.
pub fn within<T>(ns: Option<&str>, iface: &str, f: impl FnOnce() -> T) -> Result<T, LiveError> {
    let Some(ns) = ns else { return Ok(f()) };
    let path = match ns.contains('/') {
        true => ns.to_string(),
        false => format!("/run/netns/{ns}"),
    };
    let err = |what: &'static str, e: std::io::Error| LiveError::Io {
        iface: iface.to_string(),
        what,
        source: std::io::Error::new(e.kind(), format!("{path}: {e}")),
    };
    let target = File::open(&path).map_err(|e| err("open the network namespace", e))?;
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| err("open /proc/thread-self/ns/net", e))?;
    setns(&target).map_err(|e| err("setns into the network namespace", e))?;
    let out = f();
    // Coming back cannot fail for a namespace we were in; if it did, the
    // thread would open later devices in the wrong place: say so.
    setns(&home).map_err(|e| err("setns back to skiff's network namespace", e))?;
    Ok(out)
}

fn setns(f: &File) -> Result<(), std::io::Error> {
    // SAFETY: setns takes a descriptor we own (open for the call) and a
    // constant flag; it changes only the calling thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
