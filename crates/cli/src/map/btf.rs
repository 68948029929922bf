//! Map keys and values formatted from the object's BTF, as bpftool's
//! btf_dumper shows them under `"formatted"`: integers as numbers, structs
//! and unions as objects by member name (bitfields included), arrays as
//! arrays (char arrays as strings), enums by their name.

use std::collections::HashMap;

use serde_json::{json, Value};
use skiff_object::btf::{self, Btf, Detail};

/// Nesting depth bound (a BTF type graph can be cyclic only through
/// pointers, which are printed as numbers; this bounds malformed input).
const MAX_DEPTH: usize = 32;

/// The BTF of an object and each `.maps` map's key and value type ids.
pub struct MapBtf {
    btf: Btf,
    types: HashMap<String, (u32, u32)>,
}

/// The `.BTF` section of an ELF object, if it has one.
fn btf_section(elf: &[u8]) -> Option<Vec<u8>> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).ok()?;
    let sec = file.section_by_name(".BTF")?;
    sec.data().ok().map(<[u8]>::to_vec)
}

impl MapBtf {
    /// Reads the BTF of `elf`; None without one (a legacy-maps object).
    pub fn load(elf: &[u8]) -> Option<MapBtf> {
        let btf = Btf::parse(&btf_section(elf)?).ok()?;
        let mut types = HashMap::new();
        if let Some((_, ds)) = btf.datasec(".maps") {
            if let Detail::Datasec(vars) = &ds.detail {
                for vi in vars {
                    let Some(var) = btf.get(vi.type_id) else {
                        continue;
                    };
                    let name = btf.name(var).to_string();
                    if let Some(kv) = key_value(&btf, var.size_or_type) {
                        types.insert(name, kv);
                    }
                }
            }
        }
        Some(MapBtf { btf, types })
    }

    /// The key and value type ids of map `name`.
    pub fn types(&self, name: &str) -> Option<(u32, u32)> {
        self.types.get(name).copied()
    }

    /// `bytes` as BTF type `id` shows them.
    pub fn format(&self, id: u32, bytes: &[u8]) -> Value {
        self.value(id, bytes, 0)
    }

    fn value(&self, id: u32, b: &[u8], depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        let Ok((id, t)) = self.btf.skip_mods_and_typedefs(id) else {
            return Value::Null;
        };
        match (t.kind, &t.detail) {
            (btf::KIND_INT, _) => int(self.btf.name(t), b),
            (btf::KIND_PTR, _) => uint(b.get(..8).unwrap_or(b)),
            (btf::KIND_ENUM | btf::KIND_ENUM64, Detail::Enum(vals)) => {
                let n = uint(b);
                let found = vals
                    .iter()
                    .find(|(_, v)| Some(*v) == n.as_u64())
                    .and_then(|(off, _)| self.btf.str_at(*off).ok());
                found.map(|s| json!(s)).unwrap_or(n)
            }
            (btf::KIND_ARRAY, Detail::Array { elem, nelems }) => {
                self.array(*elem, *nelems, b, depth)
            }
            (btf::KIND_STRUCT | btf::KIND_UNION, Detail::Members(ms)) => {
                let mut o = serde_json::Map::new();
                for m in ms {
                    let name = self.btf.str_at(m.name_off).unwrap_or("").to_string();
                    o.insert(name, self.member(t.kind_flag, m, b, depth));
                }
                Value::Object(o)
            }
            _ => {
                let _ = id;
                Value::Null
            }
        }
    }

    fn member(&self, kind_flag: bool, m: &btf::Member, b: &[u8], depth: usize) -> Value {
        let (bit_size, bit_off) = match kind_flag {
            true => (m.offset >> 24, m.offset & 0x00ff_ffff),
            false => (0, m.offset),
        };
        if bit_size > 0 || bit_off % 8 != 0 {
            return bitfield(b, bit_off, bit_size.max(1));
        }
        let start = (bit_off / 8) as usize;
        let size = self.btf.resolve_size(m.type_id).unwrap_or(0) as usize;
        match b.get(start..start.saturating_add(size)) {
            Some(s) => self.value(m.type_id, s, depth + 1),
            None => Value::Null,
        }
    }

    fn array(&self, elem: u32, n: u32, b: &[u8], depth: usize) -> Value {
        let size = self.btf.resolve_size(elem).unwrap_or(0) as usize;
        let is_char = self
            .btf
            .skip_mods_and_typedefs(elem)
            .is_ok_and(|(_, t)| t.kind == btf::KIND_INT && self.btf.name(t).contains("char"));
        if is_char && size == 1 {
            let s = b.get(..n as usize).unwrap_or(b);
            let text = s.split(|&c| c == 0).next().unwrap_or(&[]);
            if text.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
                return json!(String::from_utf8_lossy(text));
            }
        }
        if size == 0 {
            return json!([]);
        }
        Value::Array(
            b.chunks(size)
                .take(n as usize)
                .map(|c| self.value(elem, c, depth + 1))
                .collect(),
        )
    }
}

/// The key and value types of a `.maps` definition struct (`__type(key, …)`
/// members are pointers to them).
fn key_value(btf: &Btf, def: u32) -> Option<(u32, u32)> {
    let (_, t) = btf.skip_mods_and_typedefs(def).ok()?;
    let Detail::Members(ms) = &t.detail else {
        return None;
    };
    let pointee = |want: &str| {
        ms.iter()
            .find(|m| btf.str_at(m.name_off).ok() == Some(want))
            .and_then(|m| btf.get(m.type_id))
            .filter(|p| p.kind == btf::KIND_PTR)
            .map(|p| p.size_or_type)
    };
    Some((pointee("key")?, pointee("value")?))
}

/// Little-endian unsigned integer of up to 8 bytes (larger: hex string).
fn uint(b: &[u8]) -> Value {
    if b.len() > 8 {
        return json!(format!(
            "0x{}",
            b.iter()
                .rev()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        ));
    }
    let mut v = [0u8; 8];
    if let Some(d) = v.get_mut(..b.len()) {
        d.copy_from_slice(b);
    }
    json!(u64::from_le_bytes(v))
}

/// An INT by its C name: signed unless "unsigned" or `_Bool`.
fn int(name: &str, b: &[u8]) -> Value {
    if name == "_Bool" {
        return json!(b.iter().any(|&x| x != 0));
    }
    let u = uint(b);
    let signed = !name.contains("unsigned") && b.len() <= 8;
    match (signed, u.as_u64()) {
        (true, Some(v)) => {
            let bits = b.len() * 8;
            let shift = 64 - bits.max(1) as u32;
            json!(((v << shift) as i64) >> shift)
        }
        _ => u,
    }
}

fn bitfield(b: &[u8], bit_off: u32, bits: u32) -> Value {
    let mut v: u64 = 0;
    for i in 0..bits.min(64) {
        let bit = bit_off + i;
        let byte = b.get((bit / 8) as usize).copied().unwrap_or(0);
        if byte >> (bit % 8) & 1 == 1 {
            v |= 1 << i;
        }
    }
    json!(v)
}
