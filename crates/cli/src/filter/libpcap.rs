//! libpcap, loaded at run time (dlopen) so building skiff needs no
//! libpcap-dev: `pcap_compile` on a dead DLT_EN10MB handle turns a
//! pcap-filter(7) expression into classic BPF, as tcpdump -d shows it.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use super::cbpf::SockFilter;

/// The message when no libpcap can be loaded.
pub const MISSING: &str = "not supported: --filter needs libpcap (apt-get install libpcap0.8)";

/// DLT_EN10MB: Ethernet frames.
const DLT_EN10MB: c_int = 1;
/// libpcap's default snap length (MAXIMUM_SNAPLEN): what a match returns.
pub const SNAPLEN: c_int = 262_144;
/// PCAP_NETMASK_UNKNOWN: `ip broadcast` is then refused, as tcpdump on an
/// interface without an address.
const NETMASK_UNKNOWN: c_uint = 0xffff_ffff;

/// struct bpf_program (pcap/bpf.h).
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *const SockFilter,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, c_uint) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);

/// The library names tried, newest soname first.
const NAMES: [&CStr; 3] = [c"libpcap.so.0.8", c"libpcap.so.1", c"libpcap.so"];

/// A symbol of `lib` as a function pointer of type `T`, or the missing-libpcap error.
///
/// # Safety
/// `T` must be the C signature of `name` in libpcap.
unsafe fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, String> {
    // SAFETY: lib is a handle dlopen returned; name is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return Err(format!("{MISSING}: no {name:?} in the loaded libpcap"));
    }
    // SAFETY: p is the address of the function `name`, whose signature T is
    // (caller's contract); function pointers and data pointers have one size here.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Compiles `expr` (optimised, as tcpdump does) to classic BPF for Ethernet
/// frames. Errors: libpcap missing, or libpcap's own message for a bad
/// expression (`syntax error`, `unknown host 'x'`, ...).
pub fn compile(expr: &str) -> Result<Vec<SockFilter>, String> {
    let cexpr =
        CString::new(expr).map_err(|_| format!("--filter {expr:?}: contains a NUL byte"))?;
    // SAFETY: dlopen with a NUL-terminated name; a null result is checked.
    let lib = NAMES
        .iter()
        .map(|n| unsafe { libc::dlopen(n.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) })
        .find(|h| !h.is_null())
        .ok_or_else(|| MISSING.to_string())?;
    // SAFETY: the types are libpcap's prototypes (pcap/pcap.h).
    let (open_dead, compile, geterr, freecode, close) = unsafe {
        (
            sym::<OpenDead>(lib, c"pcap_open_dead")?,
            sym::<Compile>(lib, c"pcap_compile")?,
            sym::<GetErr>(lib, c"pcap_geterr")?,
            sym::<FreeCode>(lib, c"pcap_freecode")?,
            sym::<Close>(lib, c"pcap_close")?,
        )
    };
    // SAFETY: libpcap calls with valid arguments; the handle is closed and the
    // program freed on every path; the library stays loaded (never dlclose'd:
    // libpcap keeps no state the next call would mind).
    unsafe {
        let p = open_dead(DLT_EN10MB, SNAPLEN);
        if p.is_null() {
            return Err("libpcap: pcap_open_dead failed".into());
        }
        let mut prog = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null(),
        };
        if compile(p, &mut prog, cexpr.as_ptr(), 1, NETMASK_UNKNOWN) != 0 {
            let e = geterr(p);
            let msg = if e.is_null() {
                "pcap_compile failed".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            };
            close(p);
            return Err(format!("--filter {expr:?}: {msg}"));
        }
        let insns = if prog.bf_insns.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec()
        };
        freecode(&mut prog);
        close(p);
        Ok(insns)
    }
}
