//! CO-RE relocations (`.BTF.ext` core_relo records). skiff's program contexts are the
//! UAPI structs, so the local BTF is the target: a relocation against a UAPI or
//! program-defined type resolves to the values clang already compiled in (libbpf's
//! bpf_core_calc_relo gives new_val == orig_val when target == local), and the
//! instruction is left as it is. Kernel-internal types have no layout in skiff: refused.

use std::collections::HashMap;

use crate::btf::{self, Btf, CoreRelo, Detail};
use crate::parse::Func;
use crate::ObjectError;

/// Types whose layout skiff defines exactly as the UAPI headers do.
const UAPI: &[&str] = &[
    "__sk_buff",
    "xdp_md",
    "bpf_sock",
    "bpf_sock_tuple",
    "bpf_fib_lookup",
    "bpf_tunnel_key",
    "bpf_xfrm_state",
    "bpf_flow_keys",
    "bpf_spin_lock",
    "bpf_timer",
    "bpf_dynptr",
    "bpf_list_head",
    "bpf_list_node",
    "bpf_rb_root",
    "bpf_rb_node",
    "bpf_refcount",
    "ethhdr",
    "vlan_hdr",
    "vlan_ethhdr",
    "iphdr",
    "ipv6hdr",
    "in6_addr",
    "tcphdr",
    "udphdr",
    "icmphdr",
    "icmp6hdr",
    "arphdr",
    "ipv6_opt_hdr",
    "frag_hdr",
    "gre_hdr",
    "sctphdr",
];

/// Kernel-internal types: their layout is the running kernel's, which skiff does not have.
const KERNEL: &[&str] = &[
    "sk_buff",
    "sock",
    "sock_common",
    "inet_sock",
    "tcp_sock",
    "udp_sock",
    "unix_sock",
    "request_sock",
    "inet_connection_sock",
    "net_device",
    "netdev_queue",
    "xdp_buff",
    "xdp_frame",
    "xdp_rxq_info",
    "skb_shared_info",
    "task_struct",
    "mm_struct",
    "file",
    "inode",
    "dentry",
    "super_block",
    "cgroup",
    "css_set",
    "pt_regs",
    "bpf_map",
    "bpf_prog",
    "net",
    "nf_conn",
    "nf_conntrack_tuple",
    "socket",
    "sk_buff_head",
    "dst_entry",
    "rtable",
    "fib_result",
    "neighbour",
    "page",
    "folio",
    "bpf_array",
    "bpf_htab",
    "cred",
    "nsproxy",
    "qdisc",
    "Qdisc",
    "tcf_proto",
    "tcf_result",
    "bpf_nf_ctx",
    "nf_hook_state",
];

const KINDS: [&str; 13] = [
    "field_byte_offset",
    "field_byte_size",
    "field_exists",
    "field_signed",
    "field_lshift_u64",
    "field_rshift_u64",
    "type_id_local",
    "type_id_target",
    "type_exists",
    "type_size",
    "enumval_exists",
    "enumval_value",
    "type_matches",
];

#[derive(Default)]
pub struct CoreIndex {
    by_section: HashMap<String, Vec<CoreRelo>>,
    btf: Option<Btf>,
}

/// libbpf: bpf_core_essential_name_len — `foo___flavor` matches `foo`.
fn essential(name: &str) -> &str {
    match name.find("___") {
        Some(i) => &name[..i],
        None => name,
    }
}

impl CoreIndex {
    pub fn new(relos: Vec<CoreRelo>, btf: Btf) -> Self {
        let mut by_section: HashMap<String, Vec<CoreRelo>> = HashMap::new();
        for r in relos {
            by_section.entry(r.section.clone()).or_default().push(r);
        }
        CoreIndex {
            by_section,
            btf: Some(btf),
        }
    }

    /// Checks the CO-RE relocations inside `f` (placed at linked index `base`).
    pub fn check(&self, section: &str, f: &Func, base: usize) -> Result<(), ObjectError> {
        let (Some(list), Some(btf)) = (self.by_section.get(section), self.btf.as_ref()) else {
            return Ok(());
        };
        for r in list {
            let si = (r.insn_off / 8) as usize;
            if r.insn_off % 8 != 0 || si < f.start || si >= f.start + f.len {
                continue;
            }
            let at = base + (si - f.start);
            let kind = KINDS
                .get(r.kind as usize)
                .copied()
                .ok_or_else(|| ObjectError::Section {
                    section: section.to_string(),
                    msg: format!("CO-RE relocation at insn {si}: unknown kind {}", r.kind),
                })?;
            let t = btf.type_by_id(r.type_id)?;
            let root = if btf.name(t).is_empty() {
                btf.skip_mods_and_typedefs(r.type_id)?.1
            } else {
                t
            };
            let name = essential(btf.name(root));
            let refused = if UAPI.contains(&name) {
                false
            } else {
                // A forward declaration is a type the program does not define.
                KERNEL.contains(&name) || root.kind == btf::KIND_FWD
            };
            if refused {
                return Err(ObjectError::NotSupported(format!(
                    "CO-RE relocation of {} at {} insn {at} (section '{section}', {kind}): kernel-internal types have no layout in skiff; only UAPI and program-defined types are resolved",
                    describe(btf, root, &r.access, r.kind),
                    f.name
                )));
            }
        }
        Ok(())
    }
}

/// `struct sk_buff::mark`, `struct iphdr::saddr`, `enum foo::BAR`, `struct task_struct`.
fn describe(btf: &Btf, root: &btf::BtfType, access: &str, kind: u32) -> String {
    let kw = match root.kind {
        btf::KIND_UNION => "union ",
        btf::KIND_ENUM | btf::KIND_ENUM64 => "enum ",
        btf::KIND_TYPEDEF => "typedef ",
        btf::KIND_STRUCT | btf::KIND_FWD => "struct ",
        _ => "",
    };
    let mut s = format!("{kw}{}", btf.name(root));
    let idx: Vec<u32> = access.split(':').filter_map(|x| x.parse().ok()).collect();
    match kind {
        // enumval: access "N" is the enumerator index.
        10 | 11 => {
            if let (Some(&i), Detail::Enum(v)) = (idx.first(), &root.detail) {
                if let Some((n, _)) = v.get(i as usize) {
                    s.push_str("::");
                    s.push_str(btf.str_at(*n).unwrap_or("?"));
                }
            }
        }
        0..=5 => {
            let mut cur = root.clone();
            let mut path = String::new();
            for &i in idx.iter().skip(1) {
                match &cur.detail {
                    Detail::Members(ms) => {
                        let Some(m) = ms.get(i as usize) else { break };
                        let n = btf.str_at(m.name_off).unwrap_or("");
                        if !n.is_empty() {
                            if !path.is_empty() {
                                path.push('.');
                            }
                            path.push_str(n);
                        }
                        match btf.skip_mods_and_typedefs(m.type_id) {
                            Ok((_, t)) => cur = t.clone(),
                            Err(_) => break,
                        }
                    }
                    Detail::Array { elem, .. } => {
                        path.push_str(&format!("[{i}]"));
                        match btf.skip_mods_and_typedefs(*elem) {
                            Ok((_, t)) => cur = t.clone(),
                            Err(_) => break,
                        }
                    }
                    _ => break,
                }
            }
            if !path.is_empty() {
                s.push_str("::");
                s.push_str(&path);
            }
        }
        _ => {}
    }
    s
}
