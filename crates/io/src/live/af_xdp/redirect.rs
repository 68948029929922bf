//! The kernel side of an AF_XDP socket: frames reach the socket only through
//! an XDP program on the interface that redirects them to an XSKMAP holding
//! it. skiff builds that program from raw instructions (no clang at run
//! time), creates the map and loads the program with bpf(2) (skiff_kernel's
//! syscall wrapper), and attaches it with BPF_LINK_CREATE: the program stays
//! only as long as the link's descriptor, so nothing is left on the
//! interface when skiff exits or crashes.
//!
//! The program, as libxdp's default one (xsk_def_prog):
//!   r2 = ctx->rx_queue_index
//!   return bpf_redirect_map(&xsks, r2, XDP_PASS)
//! A frame of a queue with no socket goes up the stack (XDP_PASS).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use skiff_kernel::sys::{self, Attr};

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_LINK_CREATE: u32 = 28;
/// enum bpf_attach_type: BPF_XDP.
const BPF_XDP: u32 = 37;
/// link_create.flags (include/uapi/linux/if_link.h): generic (skb) XDP.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// struct xdp_md's rx_queue_index.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// How the program runs on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (veth: its NAPI poll, veth_xdp_rcv_skb).
    Native,
    /// Generic XDP on the skb (netif_receive_generic_xdp): the driver
    /// refused native mode.
    Generic,
}

/// The XSKMAP, the program and the link; closing them detaches.
pub(super) struct Redirect {
    map: OwnedFd,
    prog: OwnedFd,
    link: Option<OwnedFd>,
    pub mode: XdpMode,
}

/// A step's error: what failed, with errno.
pub(super) struct StepError {
    pub what: String,
    pub errno: i32,
}

fn step(what: &str) -> impl Fn(i32) -> StepError + '_ {
    move |errno| StepError {
        what: what.to_string(),
        errno,
    }
}

/// One struct bpf_insn: code, dst_reg | src_reg << 4, off, imm.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (dst & 0xf) | (src << 4);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The program's instructions, `map_fd` in its ld_imm64.
fn program(map_fd: RawFd) -> Vec<u8> {
    const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    [
        insn(LDX_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_K, 3, 0, 0, XDP_PASS),
        insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
    ]
    .concat()
}

impl Redirect {
    /// The XSKMAP (`queues` slots) and the program, loaded, not attached.
    pub fn load(queues: u32) -> Result<Redirect, StepError> {
        let mut a = Attr::new();
        a.put_u32(0, BPF_MAP_TYPE_XSKMAP);
        a.put_u32(4, 4);
        a.put_u32(8, 4);
        a.put_u32(12, queues);
        a.put_bytes(28, b"skiff_xsks");
        let map =
            sys::bpf_fd(sys::BPF_MAP_CREATE, &mut a).map_err(step("BPF_MAP_CREATE (XSKMAP)"))?;
        let insns = program(map.as_raw_fd());
        let license = c"GPL";
        let mut a = Attr::new();
        a.put_u32(0, BPF_PROG_TYPE_XDP);
        a.put_u32(4, (insns.len() / 8) as u32);
        a.put_u64(8, sys::ptr(insns.as_ptr()));
        a.put_u64(16, sys::ptr(license.as_ptr()));
        a.put_bytes(48, b"skiff_xsk");
        a.put_u32(68, BPF_XDP);
        let prog = sys::bpf_fd(sys::BPF_PROG_LOAD, &mut a)
            .map_err(step("BPF_PROG_LOAD (the XSKMAP redirect)"))?;
        Ok(Redirect {
            map,
            prog,
            link: None,
            mode: XdpMode::Native,
        })
    }

    /// The socket `xsk` receives queue `queue`'s frames.
    pub fn insert(&self, queue: u32, xsk: RawFd) -> Result<(), StepError> {
        let value = xsk as u32;
        let mut a = Attr::new();
        a.put_u32(0, self.map.as_raw_fd() as u32);
        a.put_u64(8, sys::ptr(&queue));
        a.put_u64(16, sys::ptr(&value));
        sys::bpf(sys::BPF_MAP_UPDATE_ELEM, &mut a)
            .map(|_| ())
            .map_err(step("BPF_MAP_UPDATE_ELEM (the socket into the XSKMAP)"))
    }

    /// Attaches the program to `ifindex` (of the calling thread's network
    /// namespace): native XDP, or generic when the driver refuses native
    /// (the native error is the one reported when both fail).
    pub fn attach(&mut self, ifindex: u32) -> Result<(), StepError> {
        let native = self.link_create(ifindex, 0);
        let (link, mode) = match native {
            Ok(l) => (l, XdpMode::Native),
            Err(e) => match self.link_create(ifindex, XDP_FLAGS_SKB_MODE) {
                Ok(l) => (l, XdpMode::Generic),
                Err(_) => return Err(step("BPF_LINK_CREATE (XDP, native then generic)")(e)),
            },
        };
        self.link = Some(link);
        self.mode = mode;
        Ok(())
    }

    fn link_create(&self, ifindex: u32, flags: u32) -> Result<OwnedFd, i32> {
        let mut a = Attr::new();
        a.put_u32(0, self.prog.as_raw_fd() as u32);
        a.put_u32(4, ifindex);
        a.put_u32(8, BPF_XDP);
        a.put_u32(12, flags);
        sys::bpf_fd(BPF_LINK_CREATE, &mut a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_bytes() {
        let p = program(7);
        assert_eq!(p.len(), 6 * 8);
        assert_eq!(&p[..8], &[0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        assert_eq!(&p[8..16], &[0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&p[24..32], &[0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&p[32..40], &[0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(&p[40..48], &[0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}
