//! Tunnel metadata helpers (net/core/filter.c): bpf_skb_set_tunnel_key,
//! bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_opt, bpf_skb_get_tunnel_opt.
//!
//! The kernel keeps the metadata in a per-CPU `metadata_dst` that
//! bpf_skb_set_tunnel_key attaches to the skb as its dst (`skb_dst_set`); a
//! collect_md tunnel device (ipip, gre, vxlan, geneve in `external` mode)
//! reads it at xmit to build the outer header. skiff carries the same
//! `ip_tunnel_info` on the skb (`SkBuff::tunnel`) through redirects; skiff has
//! no tunnel devices, and every device it has drops the dst as the kernel's
//! do (`skb_scrub_packet` on veth/netkit forwarding, `skb_dst_drop` at a
//! NIC's xmit), so the metadata ends at the device (docs/differences.md).

use skiff_vm::{RunState, VmError};

use super::{neg, skb_ctx, EINVAL, ENOENT, ENOMEM};

/// sizeof(struct bpf_tunnel_key) (include/uapi/linux/bpf.h).
pub const TUNNEL_KEY_SIZE: usize = 44;
// offsetof(struct bpf_tunnel_key, ...): tunnel_id u32 @0, remote_ipv4 /
// remote_ipv6[4] @4, tunnel_tos @20, tunnel_ttl @21, tunnel_ext /
// tunnel_flags @22, tunnel_label @24, local_ipv4 / local_ipv6[4] @28. The
// sizes that end at a field are the older layouts the kernel accepts.
const OFF_REMOTE: usize = 4;
const OFF_REMOTE_IPV6_1: usize = 8;
const OFF_TOS: usize = 20;
const OFF_TTL: usize = 21;
const OFF_TUNNEL_EXT: usize = 22;
const OFF_TUNNEL_LABEL: usize = 24;
const OFF_LOCAL_IPV6_0: usize = 28;
/// EPROTO (include/uapi/asm-generic/errno.h).
const EPROTO: i64 = 71;

// BPF_FUNC_skb_set_tunnel_key / get flags (include/uapi/linux/bpf.h).
pub const BPF_F_TUNINFO_IPV6: u64 = 1 << 0;
pub const BPF_F_ZERO_CSUM_TX: u64 = 1 << 1;
pub const BPF_F_DONT_FRAGMENT: u64 = 1 << 2;
pub const BPF_F_SEQ_NUMBER: u64 = 1 << 3;
pub const BPF_F_NO_TUNNEL_KEY: u64 = 1 << 4;
pub const BPF_F_TUNINFO_FLAGS: u64 = 1 << 4;

// include/net/ip_tunnels.h: IP_TUNNEL_*_BIT as the low 16 bits of tun_flags.
pub const TUNNEL_CSUM: u32 = 1 << 0;
pub const TUNNEL_KEY: u32 = 1 << 2;
pub const TUNNEL_SEQ: u32 = 1 << 3;
pub const TUNNEL_DONT_FRAGMENT: u32 = 1 << 8;
pub const TUNNEL_GENEVE_OPT: u32 = 1 << 11;
pub const TUNNEL_VXLAN_OPT: u32 = 1 << 12;
pub const TUNNEL_NOCACHE: u32 = 1 << 13;
pub const TUNNEL_ERSPAN_OPT: u32 = 1 << 14;
pub const TUNNEL_GTP_OPT: u32 = 1 << 15;
pub const TUNNEL_PFCP_OPT: u32 = 1 << 17;
/// ip_tunnel_set_options_present: every option kind's bit.
pub const TUNNEL_OPTIONS_PRESENT: u32 =
    TUNNEL_GENEVE_OPT | TUNNEL_VXLAN_OPT | TUNNEL_ERSPAN_OPT | TUNNEL_GTP_OPT | TUNNEL_PFCP_OPT;
/// IP_TUNNEL_OPTS_MAX: options_len is a u8.
pub const IP_TUNNEL_OPTS_MAX: u64 = 255;
/// IPV6_FLOWLABEL_MASK in host order.
const IPV6_FLOWLABEL_MASK: u32 = 0x000f_ffff;

/// struct ip_tunnel_info as bpf_skb_set_tunnel_key fills it (mode TX).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelInfo {
    /// IP_TUNNEL_INFO_IPV6.
    pub ipv6: bool,
    /// key.tun_flags (IP_TUNNEL_*_BIT as bits).
    pub flags: u32,
    /// key.tun_id in host order (the kernel stores it big-endian).
    pub id: u64,
    pub tos: u8,
    pub ttl: u8,
    /// IPv6 flow label (host order, masked).
    pub label: u32,
    /// key.u.ipv4/ipv6 dst and src, network order (IPv4 in the first 4 bytes).
    pub dst: [u8; 16],
    pub src: [u8; 16],
    /// Tunnel options (bpf_skb_set_tunnel_opt), at most 255 bytes.
    pub options: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        w.copy_from_slice(s);
    }
    u32::from_ne_bytes(w)
}

/// struct bpf_tunnel_key in a buffer of TUNNEL_KEY_SIZE bytes (offsets above).
struct Key<'a>(&'a [u8]);

impl Key<'_> {
    fn byte(&self, off: usize) -> u8 {
        self.0.get(off).copied().unwrap_or(0)
    }
    fn ext(&self) -> u16 {
        u16::from_ne_bytes([self.byte(OFF_TUNNEL_EXT), self.byte(OFF_TUNNEL_EXT + 1)])
    }
    fn words(&self, off: usize) -> [u8; 16] {
        let mut a = [0u8; 16];
        if let Some(s) = self.0.get(off..off + 16) {
            a.copy_from_slice(s);
        }
        a
    }
}

/// The sizes bpf_skb_set_tunnel_key accepts besides the full struct
/// (deprecated layouts ending at remote_ipv6[1], tunnel_ext, tunnel_label,
/// local_ipv6[0]).
fn layout_ok(size: usize) -> bool {
    matches!(
        size,
        OFF_REMOTE_IPV6_1 | OFF_TUNNEL_EXT | OFF_TUNNEL_LABEL | OFF_LOCAL_IPV6_0
    )
}

// net/core/filter.c: bpf_skb_set_tunnel_key
pub fn set_tunnel_key(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (size, flags) = (a[2] as u32 as usize, a[3]);
    let allowed = BPF_F_TUNINFO_IPV6
        | BPF_F_ZERO_CSUM_TX
        | BPF_F_DONT_FRAGMENT
        | BPF_F_SEQ_NUMBER
        | BPF_F_NO_TUNNEL_KEY;
    if flags & !allowed != 0 {
        return Ok(neg(EINVAL));
    }
    if size != TUNNEL_KEY_SIZE && !layout_ok(size) {
        return Ok(neg(EINVAL));
    }
    // The older layouts are zero-extended to the full struct.
    let mut buf = [0u8; TUNNEL_KEY_SIZE];
    let from = st.read(a[1], size)?;
    buf[..size].copy_from_slice(&from);
    let key = Key(&buf);
    let v6 = flags & BPF_F_TUNINFO_IPV6 != 0;
    if (!v6 && u32_at(&buf, OFF_TUNNEL_LABEL) != 0) || key.ext() != 0 {
        return Ok(neg(EINVAL));
    }
    let mut flags_out = TUNNEL_KEY | TUNNEL_CSUM | TUNNEL_NOCACHE;
    if flags & BPF_F_DONT_FRAGMENT != 0 {
        flags_out |= TUNNEL_DONT_FRAGMENT;
    }
    if flags & BPF_F_ZERO_CSUM_TX != 0 {
        flags_out &= !TUNNEL_CSUM;
    }
    if flags & BPF_F_SEQ_NUMBER != 0 {
        flags_out |= TUNNEL_SEQ;
    }
    if flags & BPF_F_NO_TUNNEL_KEY != 0 {
        flags_out &= !TUNNEL_KEY;
    }
    let mut info = TunnelInfo {
        ipv6: v6,
        flags: flags_out,
        // key.tun_id = cpu_to_be64(from->tunnel_id): a u32 widened.
        id: u32_at(&buf, 0) as u64,
        tos: key.byte(OFF_TOS),
        ttl: key.byte(OFF_TTL),
        ..Default::default()
    };
    if v6 {
        info.dst = key.words(OFF_REMOTE);
        info.src = key.words(OFF_LOCAL_IPV6_0);
        info.label = u32_at(&buf, OFF_TUNNEL_LABEL) & IPV6_FLOWLABEL_MASK;
    } else {
        // remote_ipv4 / local_ipv4 are host order: cpu_to_be32.
        info.dst[..4].copy_from_slice(&u32_at(&buf, OFF_REMOTE).to_be_bytes());
        info.src[..4].copy_from_slice(&u32_at(&buf, OFF_LOCAL_IPV6_0).to_be_bytes());
    }
    skb_ctx(st)?.tunnel = Some(Box::new(info));
    Ok(0)
}

// net/core/filter.c: bpf_skb_get_tunnel_key
pub fn get_tunnel_key(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (to, size, flags) = (a[1], a[2] as u32 as usize, a[3]);
    let info = skb_ctx(st)?.tunnel.clone();
    let r = encode_key(info.as_deref(), size, flags);
    let (bytes, ret) = match r {
        Ok(b) => (b, 0),
        // err_clear: the buffer is zeroed.
        Err(e) => (vec![0u8; size], neg(e)),
    };
    st.write(to, &bytes)?;
    Ok(ret)
}

/// The bytes bpf_skb_get_tunnel_key writes (`size` of them), or its errno.
fn encode_key(info: Option<&TunnelInfo>, size: usize, flags: u64) -> Result<Vec<u8>, i64> {
    let Some(info) = info else {
        return Err(EINVAL);
    };
    if flags & !(BPF_F_TUNINFO_IPV6 | BPF_F_TUNINFO_FLAGS) != 0 {
        return Err(EINVAL);
    }
    let v6 = flags & BPF_F_TUNINFO_IPV6 != 0;
    if info.ipv6 != v6 {
        return Err(EPROTO);
    }
    if size != TUNNEL_KEY_SIZE {
        match size {
            OFF_LOCAL_IPV6_0 | OFF_TUNNEL_LABEL | OFF_TUNNEL_EXT => {}
            OFF_REMOTE_IPV6_1 if !info.ipv6 => {}
            _ => return Err(EINVAL),
        }
    }
    let mut b = [0u8; TUNNEL_KEY_SIZE];
    // to->tunnel_id = be64_to_cpu(key.tun_id), into a u32.
    b[0..4].copy_from_slice(&(info.id as u32).to_ne_bytes());
    b[OFF_TOS] = info.tos;
    b[OFF_TTL] = info.ttl;
    if flags & BPF_F_TUNINFO_FLAGS != 0 {
        // ip_tunnel_flags_to_be16: the low 16 flag bits, big-endian.
        b[OFF_TUNNEL_EXT..OFF_TUNNEL_LABEL].copy_from_slice(&(info.flags as u16).to_be_bytes());
    }
    // The key is read as receive metadata: remote = key.u.src, local =
    // key.u.dst (so metadata this program set reads back swapped, as in the
    // kernel).
    if v6 {
        b[OFF_REMOTE..OFF_TOS].copy_from_slice(&info.src);
        b[OFF_LOCAL_IPV6_0..].copy_from_slice(&info.dst);
        b[OFF_TUNNEL_LABEL..OFF_LOCAL_IPV6_0].copy_from_slice(&info.label.to_ne_bytes());
    } else {
        let s = u32::from_be_bytes([info.src[0], info.src[1], info.src[2], info.src[3]]);
        let d = u32::from_be_bytes([info.dst[0], info.dst[1], info.dst[2], info.dst[3]]);
        b[OFF_REMOTE..OFF_REMOTE + 4].copy_from_slice(&s.to_ne_bytes());
        b[OFF_LOCAL_IPV6_0..OFF_LOCAL_IPV6_0 + 4].copy_from_slice(&d.to_ne_bytes());
    }
    Ok(b[..size].to_vec())
}

// net/core/filter.c: bpf_skb_set_tunnel_opt
pub fn set_tunnel_opt(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let size = a[2] as u32 as u64;
    // Only on the metadata bpf_skb_set_tunnel_key attached.
    let has_md = skb_ctx(st)?.tunnel.is_some();
    if !has_md || size & 3 != 0 {
        return Ok(neg(EINVAL));
    }
    if size > IP_TUNNEL_OPTS_MAX {
        return Ok(neg(ENOMEM));
    }
    let from = st.read(a[1], size as usize)?;
    if let Some(info) = skb_ctx(st)?.tunnel.as_mut() {
        // ip_tunnel_info_opts_set: the flags only when there are options.
        if !from.is_empty() {
            info.flags |= TUNNEL_OPTIONS_PRESENT;
        }
        info.options = from;
    }
    Ok(0)
}

// net/core/filter.c: bpf_skb_get_tunnel_opt
pub fn get_tunnel_opt(st: &mut RunState, a: &[u64; 5]) -> Result<u64, VmError> {
    let (to, size) = (a[1], a[2] as u32 as usize);
    let info = skb_ctx(st)?.tunnel.clone();
    let (bytes, ret) = match info.as_deref() {
        Some(i) if i.flags & TUNNEL_OPTIONS_PRESENT != 0 => {
            if size < i.options.len() {
                (vec![0u8; size], neg(ENOMEM))
            } else {
                let mut b = i.options.clone();
                b.resize(size, 0);
                (b, i.options.len() as u64)
            }
        }
        _ => (vec![0u8; size], neg(ENOENT)),
    };
    st.write(to, &bytes)?;
    Ok(ret)
}
