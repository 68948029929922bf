//! Direct context fields: where a context's UAPI fields (`struct __sk_buff`,
//! `struct xdp_md`) live in the structure behind it, so that the JIT turns a
//! field access into one load or store there, as the kernel rewrites it
//! (net/core/filter.c: bpf_convert_ctx_access, xdp_convert_ctx_access). The
//! crate that owns the structure describes it (skiff-net, with `offset_of!`)
//! and registers it on the helper table; a context hands out its address for a
//! run only when the layout is its own (`Context::direct_base`).

/// What a store to a direct field does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldStore {
    /// Not direct: a store goes through `Context::store` (which refuses it,
    /// or applies a rule a layout cannot say).
    Runtime,
    /// One store of the field's host width (the value truncated to it).
    Store,
    /// As `Store`, but a value (as 64 bits) at or above the limit leaves the
    /// field unchanged (__sk_buff queue_mapping and NO_QUEUE_MAPPING).
    StoreBelow(u64),
}

/// One UAPI field (or byte array) kept as a plain integer in the host structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxField {
    /// Its offset and size in the UAPI struct.
    pub off: u32,
    pub len: u32,
    /// Its offset and size in the host structure.
    pub host_off: u32,
    pub host_len: u32,
    /// A byte array (`__sk_buff` cb[]): any aligned access inside it maps to
    /// the same bytes; otherwise only a full-size access of the field is direct
    /// (loads zero-extend the host width, stores truncate to it).
    pub bytes: bool,
    pub store: FieldStore,
    /// The host holds a 16-bit value in its own byte order that the field
    /// gives in network byte order (a `__be16`: `__sk_buff` protocol and
    /// vlan_proto, which the kernel keeps as such): a direct load swaps the
    /// bytes on a little-endian host, as `u16::to_be` does.
    pub net_order: bool,
}

/// The direct fields of one context type.
#[derive(Debug)]
pub struct CtxLayout {
    pub name: &'static str,
    pub fields: &'static [CtxField],
}

/// A direct access: `host_len` bytes at `host_off` of the host structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectAccess {
    pub host_off: u32,
    pub host_len: u32,
    pub store: FieldStore,
    /// Loaded as `CtxField::net_order` says.
    pub net_order: bool,
}

impl CtxLayout {
    /// The direct form of a `size`-byte access at UAPI offset `off`, when the
    /// layout has one (a store: only to a writable field).
    pub fn find(&self, off: i64, size: u32, write: bool) -> Option<DirectAccess> {
        let off = u32::try_from(off).ok()?;
        let f = self
            .fields
            .iter()
            .find(|f| off >= f.off && off - f.off < f.len)?;
        // (A network-order field is loaded swapped; no direct store swaps.)
        if write && (f.store == FieldStore::Runtime || f.net_order) {
            return None;
        }
        if f.bytes {
            let inside = off - f.off;
            let fits = matches!(size, 1 | 2 | 4 | 8)
                && off.is_multiple_of(size)
                && inside
                    .checked_add(size)
                    .is_some_and(|end| end <= f.len && end <= f.host_len);
            return fits
                .then(|| f.host_off.checked_add(inside))
                .flatten()
                .map(|host_off| DirectAccess {
                    host_off,
                    host_len: size,
                    store: f.store,
                    net_order: false,
                });
        }
        (off == f.off && size == f.len).then_some(DirectAccess {
            host_off: f.host_off,
            host_len: f.host_len,
            store: f.store,
            net_order: f.net_order,
        })
    }

    /// The 4-byte slots (offset / 4) whose aligned 4-byte loads are direct:
    /// the context shadow need not hold them.
    pub fn load_slots(&self) -> u64 {
        (0..64u32)
            .filter(|&s| self.find(s as i64 * 4, 4, false).is_some())
            .fold(0, |m, s| m | 1 << s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static L: CtxLayout = CtxLayout {
        name: "test",
        fields: &[
            CtxField {
                off: 8,
                len: 4,
                host_off: 100,
                host_len: 2,
                bytes: false,
                store: FieldStore::Store,
                net_order: false,
            },
            CtxField {
                off: 12,
                len: 4,
                host_off: 40,
                host_len: 4,
                bytes: false,
                store: FieldStore::Runtime,
                net_order: false,
            },
            CtxField {
                off: 48,
                len: 20,
                host_off: 200,
                host_len: 20,
                bytes: true,
                store: FieldStore::Store,
                net_order: false,
            },
        ],
    };

    #[test]
    fn find_follows_the_field_rules() {
        let d = |host_off, host_len| {
            Some(DirectAccess {
                host_off,
                host_len,
                store: FieldStore::Store,
                net_order: false,
            })
        };
        assert_eq!(L.find(8, 4, true), d(100, 2));
        assert_eq!(L.find(8, 2, false), None);
        assert_eq!(L.find(10, 2, false), None);
        assert_eq!(L.find(12, 4, true), None);
        assert_eq!(
            L.find(12, 4, false).map(|a| (a.host_off, a.host_len)),
            Some((40, 4))
        );
        assert_eq!(L.find(48, 8, true), d(200, 8));
        assert_eq!(L.find(61, 1, true), d(213, 1));
        assert_eq!(L.find(64, 4, false), d(216, 4));
        assert_eq!(L.find(64, 8, false), None);
        assert_eq!(L.find(50, 4, false), None);
        assert_eq!(L.find(-4, 4, false), None);
        assert_eq!(L.find(0, 4, false), None);
        assert_eq!(L.load_slots(), 1 << 2 | 1 << 3 | 0b11111 << 12);
    }

    /// A `__be16` field loads directly (swapped) and is never stored
    /// directly, whatever its store rule says.
    #[test]
    fn a_network_order_field_is_loaded_only() {
        static B: CtxLayout = CtxLayout {
            name: "be16",
            fields: &[CtxField {
                off: 16,
                len: 4,
                host_off: 8,
                host_len: 2,
                bytes: false,
                store: FieldStore::Store,
                net_order: true,
            }],
        };
        let load = B.find(16, 4, false).expect("direct load");
        assert!(load.net_order && load.host_len == 2);
        assert_eq!(B.find(16, 4, true), None);
    }
}
