//! The program contexts: `struct xdp_md` over an `XdpBuff` and `struct __sk_buff`
//! over an `SkBuff`, with the kernel's access rules (net/core/filter.c:
//! xdp_is_valid_access / xdp_convert_ctx_access, tc_cls_act_is_valid_access /
//! bpf_skb_is_valid_access / bpf_convert_ctx_access).

use std::any::Any;
use std::mem::offset_of;

use skiff_vm::{Context, CtxField, CtxLayout, FieldStore, PacketView, VmError};

use crate::buff::{SkBuff, XdpBuff};

fn bad(what: &str, off: u32, size: u32) -> VmError {
    VmError::Ctx(format!("invalid {what} access at offset {off} size {size}"))
}

/// The JIT's context shadow: `load(4 * i, 4)` for every slot i in `wanted`
/// that loads (by the same function `load` uses, so the values are exact).
fn fast_loads_with(wanted: u64, shadow: &mut [u64; 64], load: impl Fn(u32) -> Option<u64>) -> u64 {
    let mut mask = 0;
    let mut w = wanted;
    while w != 0 {
        let i = w.trailing_zeros();
        w &= w - 1;
        if let Some(v) = load(i * 4) {
            shadow[i as usize] = v;
            mask |= 1 << i;
        }
    }
    mask
}

/// struct xdp_md field offsets.
pub mod xdp_md {
    pub const DATA: u32 = 0;
    pub const DATA_END: u32 = 4;
    pub const DATA_META: u32 = 8;
    pub const INGRESS_IFINDEX: u32 = 12;
    pub const RX_QUEUE_INDEX: u32 = 16;
    pub const EGRESS_IFINDEX: u32 = 20;
    pub const SIZE: usize = 24;
}

/// A UAPI field kept as a `host_len`-byte integer at `host_off` of the host structure.
const fn field(off: u32, len: u32, host_off: usize, host_len: u32, store: FieldStore) -> CtxField {
    CtxField {
        off,
        len,
        host_off: host_off as u32,
        host_len,
        bytes: false,
        store,
        net_order: false,
    }
}

/// A read-only `__be16` field the host keeps in its own byte order.
const fn be16_field(off: u32, host_off: usize) -> CtxField {
    CtxField {
        net_order: true,
        ..field(off, 4, host_off, 2, RO)
    }
}

const RO: FieldStore = FieldStore::Runtime;
const RW: FieldStore = FieldStore::Store;

/// The `xdp_md` fields native code reads in the `XdpBuff` directly
/// (xdp_convert_ctx_access: ingress_ifindex and rx_queue_index are plain loads;
/// the packet pointers are computed from the buffer, served by the shadow).
pub static XDP_MD_LAYOUT: CtxLayout = CtxLayout {
    name: "xdp_md",
    fields: &[
        field(
            xdp_md::INGRESS_IFINDEX,
            4,
            offset_of!(XdpBuff, ingress_ifindex),
            4,
            RO,
        ),
        field(
            xdp_md::RX_QUEUE_INDEX,
            4,
            offset_of!(XdpBuff, rx_queue_index),
            4,
            RO,
        ),
    ],
};

impl XdpBuff {
    // __is_valid_xdp_access: aligned u32 loads only; no writes.
    fn load_field(&self, off: u32, size: u32) -> Result<u64, VmError> {
        if size != 4 {
            return Err(bad("xdp_md", off, size));
        }
        self.load4(off).ok_or_else(|| {
            if off == xdp_md::EGRESS_IFINDEX {
                // Only programs attached to a DEVMAP entry may read egress_ifindex.
                bad("xdp_md egress_ifindex (not a devmap program)", off, size)
            } else {
                bad("xdp_md", off, size)
            }
        })
    }

    /// A 4-byte load at `off` (`None`: not a readable field).
    fn load4(&self, off: u32) -> Option<u64> {
        Some(match off {
            xdp_md::DATA => self.addr(self.data),
            xdp_md::DATA_END => self.addr(self.data_end),
            xdp_md::DATA_META => self.addr(if self.meta_valid {
                self.data_meta
            } else {
                self.data
            }),
            xdp_md::INGRESS_IFINDEX => self.ingress_ifindex as u64,
            xdp_md::RX_QUEUE_INDEX => self.rx_queue_index as u64,
            xdp_md::EGRESS_IFINDEX => self.egress_ifindex? as u64,
            _ => return None,
        })
    }
}

impl Context for XdpBuff {
    fn ctx_size(&self) -> usize {
        xdp_md::SIZE
    }

    fn load(&mut self, off: u32, size: u32) -> Result<u64, VmError> {
        self.load_field(off, size)
    }

    fn store(&mut self, off: u32, size: u32, _value: u64) -> Result<(), VmError> {
        Err(bad("xdp_md write", off, size))
    }

    fn packet(&self) -> Option<(usize, usize)> {
        self.packet_view().map(|v| (v.start, v.end))
    }

    fn data(&self) -> Option<(usize, usize)> {
        let base = self.buf.as_ptr() as usize;
        Some((base + self.data, base + self.data_end))
    }

    fn packet_view(&self) -> Option<PacketView> {
        let base = self.buf.as_ptr() as usize;
        let data = base + self.data;
        Some(PacketView {
            start: if self.meta_valid {
                base + self.data_meta
            } else {
                data
            },
            data,
            end: base + self.data_end,
            fields: Some([xdp_md::DATA_META, xdp_md::DATA, xdp_md::DATA_END]),
            len_field: None,
        })
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn fast_loads(&self, wanted: u64, shadow: &mut [u64; 64]) -> u64 {
        fast_loads_with(wanted, shadow, |off| self.load4(off))
    }

    fn direct_base(&mut self, layout: &CtxLayout) -> Option<*mut u8> {
        std::ptr::eq(layout, &XDP_MD_LAYOUT).then_some(self as *mut XdpBuff as *mut u8)
    }
}

/// struct __sk_buff field offsets (include/uapi/linux/bpf.h).
pub mod sk_buff {
    pub const LEN: u32 = 0;
    pub const PKT_TYPE: u32 = 4;
    pub const MARK: u32 = 8;
    pub const QUEUE_MAPPING: u32 = 12;
    pub const PROTOCOL: u32 = 16;
    pub const VLAN_PRESENT: u32 = 20;
    pub const VLAN_TCI: u32 = 24;
    pub const VLAN_PROTO: u32 = 28;
    pub const PRIORITY: u32 = 32;
    pub const INGRESS_IFINDEX: u32 = 36;
    pub const IFINDEX: u32 = 40;
    pub const TC_INDEX: u32 = 44;
    pub const CB: u32 = 48;
    pub const CB_END: u32 = 68;
    pub const HASH: u32 = 68;
    pub const TC_CLASSID: u32 = 72;
    pub const DATA: u32 = 76;
    pub const DATA_END: u32 = 80;
    pub const NAPI_ID: u32 = 84;
    pub const FAMILY: u32 = 88;
    pub const LOCAL_PORT_END: u32 = 140;
    pub const DATA_META: u32 = 140;
    pub const FLOW_KEYS: u32 = 144;
    pub const TSTAMP: u32 = 152;
    pub const WIRE_LEN: u32 = 160;
    pub const GSO_SEGS: u32 = 164;
    pub const SK: u32 = 168;
    pub const GSO_SIZE: u32 = 176;
    pub const TSTAMP_TYPE: u32 = 180;
    pub const HWTSTAMP: u32 = 184;
    pub const SIZE: usize = 192;
}

/// The `__sk_buff` fields native code loads and stores in the `SkBuff`
/// directly, each as the kernel rewrites it into one access of the sk_buff
/// (bpf_convert_ctx_access): the writable mark, priority, tc_index, cb[],
/// tc_classid and queue_mapping (tc_cls_act_is_valid_access) and the fields
/// that are plain integers, protocol and vlan_proto among them (kept in host
/// order, swapped on load). len and the packet pointers are computed (the
/// context shadow serves them); tstamp stores keep the runtime's path (the
/// kernel's tstamp_type rule on writes).
pub static SK_BUFF_LAYOUT: CtxLayout = {
    use sk_buff::*;
    CtxLayout {
        name: "__sk_buff",
        fields: &[
            field(PKT_TYPE, 4, offset_of!(SkBuff, pkt_type), 1, RO),
            field(MARK, 4, offset_of!(SkBuff, mark), 4, RW),
            field(
                QUEUE_MAPPING,
                4,
                offset_of!(SkBuff, queue_mapping),
                2,
                FieldStore::StoreBelow(NO_QUEUE_MAPPING),
            ),
            field(VLAN_PRESENT, 4, offset_of!(SkBuff, vlan_present), 1, RO),
            field(VLAN_TCI, 4, offset_of!(SkBuff, vlan_tci), 2, RO),
            be16_field(PROTOCOL, offset_of!(SkBuff, protocol)),
            be16_field(VLAN_PROTO, offset_of!(SkBuff, vlan_proto)),
            field(PRIORITY, 4, offset_of!(SkBuff, priority), 4, RW),
            field(
                INGRESS_IFINDEX,
                4,
                offset_of!(SkBuff, ingress_ifindex),
                4,
                RO,
            ),
            field(IFINDEX, 4, offset_of!(SkBuff, ifindex), 4, RO),
            field(TC_INDEX, 4, offset_of!(SkBuff, tc_index), 2, RW),
            CtxField {
                off: CB,
                len: CB_END - CB,
                host_off: offset_of!(SkBuff, cb) as u32,
                host_len: 20,
                bytes: true,
                store: RW,
                net_order: false,
            },
            field(HASH, 4, offset_of!(SkBuff, hash), 4, RO),
            field(TC_CLASSID, 4, offset_of!(SkBuff, tc_classid), 2, RW),
            field(NAPI_ID, 4, offset_of!(SkBuff, napi_id), 4, RO),
            field(TSTAMP, 8, offset_of!(SkBuff, tstamp), 8, RO),
            field(WIRE_LEN, 4, offset_of!(SkBuff, wire_len), 4, RO),
            field(GSO_SEGS, 4, offset_of!(SkBuff, gso_segs), 4, RO),
            field(GSO_SIZE, 4, offset_of!(SkBuff, gso_size), 4, RO),
            field(HWTSTAMP, 8, offset_of!(SkBuff, hwtstamp), 8, RO),
        ],
    }
};

/// include/linux/skbuff.h: NO_QUEUE_MAPPING. A queue_mapping store of this
/// value or above leaves the field as it was.
const NO_QUEUE_MAPPING: u64 = 0xffff;

impl SkBuff {
    /// `struct __sk_buff` load of `size` bytes at `off` (bpf_convert_ctx_access).
    fn load_field(&self, off: u32, size: u32) -> Result<u64, VmError> {
        use sk_buff::*;
        if !off.is_multiple_of(size) {
            return Err(bad("__sk_buff misaligned", off, size));
        }
        if (CB..CB_END).contains(&off) {
            let o = (off - CB) as usize;
            let bytes = self
                .cb
                .get(o..o + size as usize)
                .ok_or_else(|| bad("__sk_buff cb", off, size))?;
            let mut v = [0u8; 8];
            v[..bytes.len()].copy_from_slice(bytes);
            return Ok(u64::from_le_bytes(v));
        }
        if off == TSTAMP_TYPE {
            return if size == 1 {
                Ok(self.tstamp_type as u64)
            } else {
                Err(bad("__sk_buff tstamp_type", off, size))
            };
        }
        // Pointer-sized and 64-bit fields: full-size loads only.
        match off {
            DATA | DATA_END | DATA_META => {
                return if size == 4 {
                    Ok(self.field(off).unwrap_or(0))
                } else {
                    Err(bad("__sk_buff packet pointer", off, size))
                };
            }
            TSTAMP | HWTSTAMP | SK => {
                return if size == 8 {
                    Ok(self.field(off).unwrap_or(0))
                } else {
                    Err(bad("__sk_buff 64-bit field", off, size))
                };
            }
            _ => {}
        }
        if (FAMILY..LOCAL_PORT_END).contains(&off) || (FLOW_KEYS..TSTAMP).contains(&off) {
            return Err(bad(
                "__sk_buff (field not available to tc programs)",
                off,
                size,
            ));
        }
        // u32 fields: narrow loads read part of the field (bpf_ctx_narrow_access_ok).
        if size > 4 {
            return Err(bad("__sk_buff", off, size));
        }
        let start = off & !3;
        let v = self
            .field(start)
            .ok_or_else(|| bad("__sk_buff", off, size))?;
        let shift = (off - start) * 8;
        let mask = if size == 4 {
            0xffff_ffff
        } else {
            (1u64 << (size * 8)) - 1
        };
        Ok((v >> shift) & mask)
    }

    /// `load_field(off, 4)` for an aligned offset, without building errors:
    /// `None` where that load fails (the JIT's context shadow; a test checks
    /// the two agree).
    fn load4(&self, off: u32) -> Option<u64> {
        use sk_buff::*;
        if (CB..CB_END).contains(&off) {
            let o = (off - CB) as usize;
            let b = self.cb.get(o..o + 4)?;
            return Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
        }
        match off {
            DATA | DATA_END | DATA_META => self.field(off),
            TSTAMP_TYPE | TSTAMP | HWTSTAMP | SK => None,
            _ if (FAMILY..LOCAL_PORT_END).contains(&off) || (FLOW_KEYS..TSTAMP).contains(&off) => {
                None
            }
            _ if off % 4 != 0 => None,
            _ => self.field(off).map(|v| v & 0xffff_ffff),
        }
    }

    /// The u32 (or u64) field value at a field's start offset.
    fn field(&self, off: u32) -> Option<u64> {
        use sk_buff::*;
        Some(match off {
            LEN => self.len() as u64,
            PKT_TYPE => self.pkt_type as u64,
            MARK => self.mark as u64,
            QUEUE_MAPPING => self.queue_mapping as u64,
            // __be16 fields are handed over as stored: network byte order.
            PROTOCOL => self.protocol.to_be() as u64,
            VLAN_PRESENT => self.vlan_present as u64,
            VLAN_TCI => self.vlan_tci as u64,
            VLAN_PROTO => self.vlan_proto.to_be() as u64,
            PRIORITY => self.priority as u64,
            INGRESS_IFINDEX => self.ingress_ifindex as u64,
            IFINDEX => self.ifindex as u64,
            TC_INDEX => self.tc_index as u64,
            HASH => self.hash as u64,
            TC_CLASSID => self.tc_classid as u64,
            DATA => self.addr(self.data),
            DATA_END => self.addr(self.tail),
            DATA_META => self.addr(self.data - self.meta_len),
            // NAPI ids below MIN_NAPI_ID are not reported.
            NAPI_ID => self.napi_id as u64,
            TSTAMP => self.tstamp,
            WIRE_LEN => self.wire_len as u64,
            GSO_SEGS => self.gso_segs as u64,
            GSO_SIZE => self.gso_size as u64,
            HWTSTAMP => self.hwtstamp,
            // skiff models no sockets: skb->sk reads as NULL.
            SK => 0,
            _ => return None,
        })
    }
}

impl Context for SkBuff {
    fn ctx_size(&self) -> usize {
        sk_buff::SIZE
    }

    fn load(&mut self, off: u32, size: u32) -> Result<u64, VmError> {
        self.load_field(off, size)
    }

    fn fast_loads(&self, wanted: u64, shadow: &mut [u64; 64]) -> u64 {
        fast_loads_with(wanted, shadow, |off| self.load4(off))
    }

    fn direct_base(&mut self, layout: &CtxLayout) -> Option<*mut u8> {
        std::ptr::eq(layout, &SK_BUFF_LAYOUT).then_some(self as *mut SkBuff as *mut u8)
    }

    // tc_cls_act_is_valid_access: writable are mark, tc_index, priority, cb[],
    // tc_classid, tstamp, queue_mapping.
    fn store(&mut self, off: u32, size: u32, value: u64) -> Result<(), VmError> {
        use sk_buff::*;
        if !off.is_multiple_of(size) {
            return Err(bad("__sk_buff misaligned write", off, size));
        }
        if (CB..CB_END).contains(&off) {
            let o = (off - CB) as usize;
            let dst = self
                .cb
                .get_mut(o..o + size as usize)
                .ok_or_else(|| bad("__sk_buff cb write", off, size))?;
            dst.copy_from_slice(&value.to_le_bytes()[..size as usize]);
            return Ok(());
        }
        if off == TSTAMP {
            if size != 8 {
                return Err(bad("__sk_buff tstamp write", off, size));
            }
            self.tstamp = value;
            return Ok(());
        }
        if size != 4 {
            return Err(bad("__sk_buff write", off, size));
        }
        let v = value as u32;
        match off {
            MARK => self.mark = v,
            PRIORITY => self.priority = v,
            // Stored in 16 bits (skb->tc_index, qdisc_skb_cb->tc_classid).
            TC_INDEX => self.tc_index = v as u16,
            TC_CLASSID => self.tc_classid = v as u16,
            // bpf_convert_ctx_access: a register value >= NO_QUEUE_MAPPING (a
            // 64-bit compare) is ignored.
            QUEUE_MAPPING => {
                if value < NO_QUEUE_MAPPING {
                    self.queue_mapping = v as u16
                }
            }
            _ => return Err(bad("__sk_buff write (read-only field)", off, size)),
        }
        Ok(())
    }

    fn packet(&self) -> Option<(usize, usize)> {
        self.packet_view().map(|v| (v.start, v.end))
    }

    fn data(&self) -> Option<(usize, usize)> {
        let base = self.buf.as_ptr() as usize;
        Some((base + self.data, base + self.tail))
    }

    fn packet_view(&self) -> Option<PacketView> {
        let base = self.buf.as_ptr() as usize;
        Some(PacketView {
            start: base + self.data - self.meta_len,
            data: base + self.data,
            end: base + self.tail,
            fields: Some([sk_buff::DATA_META, sk_buff::DATA, sk_buff::DATA_END]),
            // skb->len: the SkBuff is linear (`SkBuff::len`).
            len_field: Some(sk_buff::LEN),
        })
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `fast_loads` claims must be exactly what `load(off, 4)` returns,
    /// and it claims every slot that loads.
    fn check(ctx: &mut dyn Context) {
        let mut shadow = [0u64; 64];
        let mask = ctx.fast_loads(u64::MAX, &mut shadow);
        assert_ne!(mask, 0);
        for slot in 0..64 {
            let load = ctx.load(slot * 4, 4);
            if mask & (1 << slot) != 0 {
                let want = load.expect("a fast field loads");
                assert_eq!(shadow[slot as usize], want, "slot {slot}");
            } else {
                assert!(load.is_err(), "slot {slot} loads but is not served fast");
            }
        }
        // The packet view's fields load as the view says.
        let v = ctx.packet_view().expect("a packet");
        let fields = v.fields.expect("packet fields");
        for (off, addr) in fields.into_iter().zip([v.start, v.data, v.end]) {
            assert_eq!(ctx.load(off, 4).expect("loads"), addr as u64, "field {off}");
        }
        if let Some(off) = v.len_field {
            assert_eq!(ctx.load(off, 4).expect("loads"), (v.end - v.data) as u64);
        }
    }

    #[test]
    fn fast_loads_match_load() {
        let pkt: Vec<u8> = (0..100u8).collect();
        let mut x = XdpBuff::new(&pkt, 256, 7).unwrap();
        check(&mut x);
        x.egress_ifindex = Some(9);
        x.data_meta -= 8;
        check(&mut x);
        x.meta_valid = false;
        check(&mut x);
        let mut s = SkBuff::new(&pkt, 64, 3, 1500);
        s.mark = 0xdead_beef;
        s.protocol = 0x86dd;
        s.priority = 7;
        s.pkt_type = 3;
        s.ingress_ifindex = 5;
        s.meta_len = 16;
        check(&mut s);
    }
}
