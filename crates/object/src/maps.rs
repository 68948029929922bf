//! Map definitions: legacy `maps` (struct bpf_map_def, iproute2 struct bpf_elf_map),
//! BTF-defined `.maps` (libbpf.c: bpf_object__init_user_btf_maps, parse_btf_map_def,
//! bpf_object__collect_map_relos) and global data (bpf_object__init_global_data_maps).

use std::collections::HashMap;

use crate::btf::{self, Btf, Detail};
use crate::parse::{Elf, Sym, R_BPF_64_64, R_BPF_64_ABS64, STT_FUNC, STT_SECTION};
use crate::{MapOrigin, MapSpec, ObjectError, SlotInit};

pub const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
pub const BPF_MAP_TYPE_HASH_OF_MAPS: u32 = 13;
/// Highest `enum bpf_map_type` value in Linux 6.18 (BPF_MAP_TYPE_ARENA).
pub const MAX_MAP_TYPE: u32 = 33;
pub const BPF_F_RDONLY_PROG: u32 = 0x80;
const KMALLOC_MAX_SIZE: u32 = 4 << 20;

pub struct MapsOut {
    pub maps: Vec<MapSpec>,
    pub map_at: HashMap<(usize, u64), usize>,
    pub data_map: HashMap<usize, usize>,
}

fn blank(name: &str, origin: MapOrigin) -> MapSpec {
    MapSpec {
        name: name.to_string(),
        map_type: 0,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
        map_flags: 0,
        pinning: 0,
        inner: None,
        initial_data: None,
        slots: Vec::new(),
        origin,
        map_extra: 0,
        numa_node: 0,
    }
}

fn merr(map: &str, msg: String) -> ObjectError {
    ObjectError::Map {
        map: map.to_string(),
        msg,
    }
}

fn is_map_in_map(t: u32) -> bool {
    t == BPF_MAP_TYPE_ARRAY_OF_MAPS || t == BPF_MAP_TYPE_HASH_OF_MAPS
}

fn u32_at(d: &[u8], off: usize) -> u32 {
    d.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

pub fn collect(
    elf: &Elf<'_>,
    btf: Option<&Btf>,
    prog_names: &[String],
) -> Result<MapsOut, ObjectError> {
    let mut out = MapsOut {
        maps: Vec::new(),
        map_at: HashMap::new(),
        data_map: HashMap::new(),
    };
    // libbpf order: legacy maps, BTF maps, global data.
    if let Some(idx) = elf.secs.iter().position(|s| s.name == "maps") {
        legacy(elf, idx, &mut out)?;
    }
    if let Some(idx) = elf.secs.iter().position(|s| s.name == ".maps") {
        let btf = btf.ok_or_else(|| ObjectError::Section {
            section: ".maps".into(),
            msg: "BTF-defined maps need a .BTF section (compile with -g)".into(),
        })?;
        btf_maps(elf, btf, idx, prog_names, &mut out)?;
    }
    for (i, s) in elf.secs.iter().enumerate() {
        let n = s.name.as_str();
        let is = |p: &str| n == p || n.strip_prefix(p).is_some_and(|r| r.starts_with('.'));
        let (readonly, bss) = if s.sh_type == object::elf::SHT_PROGBITS
            && s.flags & u64::from(object::elf::SHF_EXECINSTR) == 0
        {
            if is(".rodata") {
                (true, false)
            } else if is(".data") {
                (false, false)
            } else {
                continue;
            }
        } else if s.sh_type == object::elf::SHT_NOBITS && is(".bss") {
            (false, true)
        } else {
            continue;
        };
        // libbpf skips recognised data sections of size 0.
        if s.size == 0 {
            continue;
        }
        let size = u32::try_from(s.size).map_err(|_| ObjectError::Section {
            section: n.to_string(),
            msg: format!("size {:#x} too large for an array map value", s.size),
        })?;
        // kernel/bpf/arraymap.c: array_map_alloc_check refuses value_size >
        // KMALLOC_MAX_SIZE (4 MiB with 4 KiB pages) with E2BIG.
        if size > KMALLOC_MAX_SIZE {
            return Err(ObjectError::Section {
                section: n.to_string(),
                msg: format!("global data of {size} bytes exceeds the kernel's array value limit of {KMALLOC_MAX_SIZE} bytes (E2BIG)"),
            });
        }
        let mut m = blank(
            n,
            MapOrigin::GlobalData {
                section: n.to_string(),
                readonly,
            },
        );
        m.map_type = BPF_MAP_TYPE_ARRAY;
        m.key_size = 4;
        m.value_size = size;
        m.max_entries = 1;
        m.map_flags = if readonly { BPF_F_RDONLY_PROG } else { 0 };
        m.initial_data = Some(if bss {
            vec![0; size as usize]
        } else {
            s.data.to_vec()
        });
        out.data_map.insert(i, out.maps.len());
        out.maps.push(m);
    }
    Ok(out)
}

/// `SEC("maps")`: struct bpf_map_def (5 u32, libbpf 0.x) or iproute2's struct
/// bpf_elf_map (9 u32), told apart by the symbol size.
fn legacy(elf: &Elf<'_>, idx: usize, out: &mut MapsOut) -> Result<(), ObjectError> {
    let sec = &elf.secs[idx];
    let mut syms: Vec<&Sym> = elf
        .syms
        .iter()
        .filter(|s| s.shndx == idx && s.typ != STT_SECTION && !s.name.is_empty() && s.typ != 4)
        .collect();
    syms.sort_by_key(|s| s.value);
    if syms.is_empty() {
        return Ok(());
    }
    let fallback = sec.data.len() as u64 / syms.len() as u64;
    let first = out.maps.len();
    let mut elf_ids: Vec<(u32, u32, u32)> = Vec::new(); // (id, inner_id, inner_idx)
    for s in &syms {
        let size = if s.size == 0 { fallback } else { s.size };
        let start = usize::try_from(s.value).unwrap_or(usize::MAX);
        let end = usize::try_from(size)
            .ok()
            .and_then(|z| start.checked_add(z));
        let d = end
            .and_then(|e| sec.data.get(start..e))
            .ok_or_else(|| ObjectError::Section {
                section: "maps".into(),
                msg: format!(
                    "map '{}' at offset {:#x} size {:#x} runs past the section ({:#x} bytes)",
                    s.name,
                    s.value,
                    size,
                    sec.data.len()
                ),
            })?;
        let (origin, words) = match size {
            36 => (MapOrigin::ElfMap, 9),
            20..=32 => (MapOrigin::Legacy, 5),
            _ => {
                return Err(merr(&s.name, format!(
                    "legacy map definition in section 'maps' at offset {:#x} has size {size}: expected 20 (struct bpf_map_def) or 36 (struct bpf_elf_map)",
                    s.value
                )))
            }
        };
        if origin == MapOrigin::Legacy && d.get(20..).is_some_and(|r| r.iter().any(|&b| b != 0)) {
            return Err(merr(&s.name, format!(
                "not supported: bpf_map_def at offset {:#x} has non-zero fields beyond map_flags (inner_map_idx/numa_node)",
                s.value
            )));
        }
        let w: Vec<u32> = (0..words).map(|i| u32_at(d, i * 4)).collect();
        let mut m = blank(&s.name, origin.clone());
        m.map_type = w[0];
        m.key_size = w[1];
        m.value_size = w[2];
        m.max_entries = w[3];
        m.map_flags = w[4];
        if m.map_type == 0 || m.map_type > MAX_MAP_TYPE {
            return Err(merr(
                &s.name,
                format!(
                    "unknown map type {} in legacy definition (section 'maps', offset {:#x})",
                    m.map_type, s.value
                ),
            ));
        }
        if origin == MapOrigin::ElfMap {
            // include/bpf_elf.h: PIN_NONE 0, PIN_OBJECT_NS 1, PIN_GLOBAL_NS 2.
            m.pinning = w[6];
            elf_ids.push((w[5], w[7], w[8]));
        } else {
            elf_ids.push((0, 0, 0));
        }
        out.map_at.insert((idx, s.value), out.maps.len());
        out.maps.push(m);
    }
    // iproute2 (lib/bpf_legacy.c: bpf_map_attach / bpf_fill_map_in_map): an outer map
    // with inner_id takes the map whose id matches as template, and each map with that
    // id is placed into the outer map at its inner_idx.
    for i in 0..elf_ids.len() {
        let (_, inner_id, _) = elf_ids[i];
        if inner_id == 0 {
            continue;
        }
        let outer_name = out.maps[first + i].name.clone();
        if !is_map_in_map(out.maps[first + i].map_type) {
            return Err(merr(
                &outer_name,
                format!("inner_id {inner_id} set on a map that is not array/hash of maps"),
            ));
        }
        let mut found = false;
        for j in 0..elf_ids.len() {
            let (id, _, inner_idx) = elf_ids[j];
            if j == i || id != inner_id {
                continue;
            }
            let inner = out.maps[first + j].clone();
            let outer = &mut out.maps[first + i];
            if !found {
                outer.inner = Some(Box::new(inner.clone()));
                found = true;
            }
            outer
                .slots
                .push((inner_idx, SlotInit::Map(inner.name.clone())));
        }
        if !found {
            return Err(merr(
                &outer_name,
                format!("inner_id {inner_id} matches no map's id"),
            ));
        }
    }
    Ok(())
}

/// A BTF map's place in `.maps`, kept for `.values` relocations.
struct BtfMapPos {
    index: usize,
    offset: u64,
    size: u64,
    /// Byte offset of the `values` member in the definition struct.
    values_off: Option<u64>,
}

fn btf_maps(
    elf: &Elf<'_>,
    btf: &Btf,
    idx: usize,
    prog_names: &[String],
    out: &mut MapsOut,
) -> Result<(), ObjectError> {
    let sec = &elf.secs[idx];
    let (_, ds) = btf.datasec(".maps").ok_or_else(|| ObjectError::Section {
        section: ".maps".into(),
        msg: "no DATASEC '.maps' in .BTF".into(),
    })?;
    let Detail::Datasec(vars) = &ds.detail else {
        return Ok(());
    };
    let mut pos = Vec::new();
    for (vi_n, vi) in vars.iter().enumerate() {
        let var = btf.type_by_id(vi.type_id)?;
        let name = btf.name(var).to_string();
        if var.kind != btf::KIND_VAR {
            return Err(merr(
                &name,
                format!(
                    ".maps DATASEC entry #{vi_n} is {}, not a VAR",
                    btf::kind_name(var.kind)
                ),
            ));
        }
        if let Detail::Var { linkage: 2 } = var.detail {
            return Err(merr(
                &name,
                "extern map definitions are not supported".into(),
            ));
        }
        let (def_id, def) = btf.skip_mods_and_typedefs(var.size_or_type)?;
        if def.kind != btf::KIND_STRUCT {
            return Err(merr(
                &name,
                format!(
                    "definition is {}, expected a struct",
                    btf::kind_name(def.kind)
                ),
            ));
        }
        // clang leaves DATASEC var offsets 0; libbpf (btf_fixup_datasec) takes them from
        // the ELF symbol of the same name.
        let (voff, vsize) = match elf
            .syms
            .iter()
            .find(|s| s.shndx == idx && s.name == name && s.typ != STT_SECTION)
        {
            Some(s) => (
                s.value,
                if s.size != 0 {
                    s.size
                } else {
                    u64::from(vi.size)
                },
            ),
            None => (u64::from(vi.offset), u64::from(vi.size)),
        };
        if voff.checked_add(vsize).is_none_or(|e| e > sec.size) {
            return Err(merr(
                &name,
                format!(
                    "definition at offset {:#x} size {:#x} exceeds section '.maps' ({:#x} bytes)",
                    voff, vsize, sec.size
                ),
            ));
        }
        let (mut m, values_off) = parse_btf_map_def(btf, &name, def_id, false)?;
        m.origin = MapOrigin::Btf;
        if u64::from(def.size_or_type) > vsize {
            return Err(merr(
                &name,
                format!("invalid definition size {} > {vsize}", def.size_or_type),
            ));
        }
        out.map_at.insert((idx, voff), out.maps.len());
        pos.push(BtfMapPos {
            index: out.maps.len(),
            offset: voff,
            size: vsize,
            values_off,
        });
        out.maps.push(m);
    }
    // `.values = { ... }`: relocations in .rel.maps (libbpf: bpf_object__collect_map_relos).
    let Some(rels) = elf.rels.get(&idx) else {
        return Ok(());
    };
    for r in rels {
        let sym = elf.sym(r.sym, ".maps", r.offset as usize)?;
        let sname = elf.sym_display(sym);
        let ctx = || {
            format!(
                "relocation at '.maps' offset {:#x} against '{sname}'",
                r.offset
            )
        };
        if r.r_type != R_BPF_64_ABS64 && r.r_type != R_BPF_64_64 {
            return Err(ObjectError::Section {
                section: ".maps".into(),
                msg: format!("{}: unsupported relocation type {}", ctx(), r.r_type),
            });
        }
        let p = pos
            .iter()
            .find(|p| {
                p.offset <= r.offset
                    && r.offset.saturating_add(8) <= p.offset.saturating_add(p.size)
            })
            .ok_or_else(|| ObjectError::Section {
                section: ".maps".into(),
                msg: format!("{}: not inside any map definition", ctx()),
            })?;
        let map_name = out.maps[p.index].name.clone();
        let values_off = p.values_off.ok_or_else(|| {
            merr(
                &map_name,
                format!("{}: definition has no 'values' member", ctx()),
            )
        })?;
        let rel_off = r.offset - p.offset;
        if rel_off < values_off || (rel_off - values_off) % 8 != 0 {
            return Err(merr(
                &map_name,
                format!("{}: not at a 'values' slot", ctx()),
            ));
        }
        let slot = u32::try_from((rel_off - values_off) / 8).unwrap_or(u32::MAX);
        let m = &out.maps[p.index];
        let init = if m.map_type == BPF_MAP_TYPE_PROG_ARRAY {
            if sym.typ != STT_FUNC || !prog_names.contains(&sym.name) {
                return Err(merr(
                    &map_name,
                    format!("{}: '{sname}' is not a program of this object", ctx()),
                ));
            }
            SlotInit::Prog(sym.name.clone())
        } else {
            if sym.shndx != idx || !pos.iter().any(|q| out.maps[q.index].name == sym.name) {
                return Err(merr(
                    &map_name,
                    format!("{}: inner map '{sname}' is not a map in .maps", ctx()),
                ));
            }
            SlotInit::Map(sym.name.clone())
        };
        if slot >= m.max_entries {
            return Err(merr(
                &map_name,
                format!("'values' slot {slot} >= max_entries {}", m.max_entries),
            ));
        }
        let m = &mut out.maps[p.index];
        m.slots.retain(|(s, _)| *s != slot);
        m.slots.push((slot, init));
        m.slots.sort_by_key(|(s, _)| *s);
    }
    Ok(())
}

/// `__uint(name, N)`: a pointer to an array of N elements (libbpf: get_map_field_int).
fn field_int(btf: &Btf, map: &str, field: &str, type_id: u32) -> Result<u32, ObjectError> {
    let (_, t) = btf.skip_mods_and_typedefs(type_id)?;
    if t.kind != btf::KIND_PTR {
        return Err(merr(
            map,
            format!(
                "attr '{field}': expected PTR, got {}",
                btf::kind_name(t.kind)
            ),
        ));
    }
    let arr = btf.type_by_id(t.size_or_type)?;
    match arr.detail {
        Detail::Array { nelems, .. } if arr.kind == btf::KIND_ARRAY => Ok(nelems),
        _ => Err(merr(
            map,
            format!(
                "attr '{field}': expected ARRAY, got {}",
                btf::kind_name(arr.kind)
            ),
        )),
    }
}

/// `__ulong(name, N)`: as field_int, or an enum with one enumerator (get_map_field_long).
fn field_long(btf: &Btf, map: &str, field: &str, type_id: u32) -> Result<u64, ObjectError> {
    let (_, t) = btf.skip_mods_and_typedefs(type_id)?;
    if let Detail::Enum(v) = &t.detail {
        return match v.as_slice() {
            [(_, val)] => Ok(*val),
            _ => Err(merr(
                map,
                format!("attr '{field}': enum must have exactly one value"),
            )),
        };
    }
    field_int(btf, map, field, type_id).map(u64::from)
}

/// libbpf.c: parse_btf_map_def. Returns the spec and the byte offset of `values`.
fn parse_btf_map_def(
    btf: &Btf,
    name: &str,
    def_id: u32,
    is_inner: bool,
) -> Result<(MapSpec, Option<u64>), ObjectError> {
    let def = btf.type_by_id(def_id)?;
    let Detail::Members(members) = &def.detail else {
        return Err(merr(name, "definition is not a struct".into()));
    };
    let mut m = blank(name, MapOrigin::Btf);
    let mut values_off = None;
    let n = members.len();
    for (i, mem) in members.iter().enumerate() {
        let fname = btf.str_at(mem.name_off)?;
        if fname.is_empty() {
            return Err(merr(name, format!("invalid field #{i}")));
        }
        match fname {
            "type" => m.map_type = field_int(btf, name, fname, mem.type_id)?,
            "max_entries" => m.max_entries = field_int(btf, name, fname, mem.type_id)?,
            "map_flags" => m.map_flags = field_int(btf, name, fname, mem.type_id)?,
            "numa_node" => m.numa_node = field_int(btf, name, fname, mem.type_id)?,
            "map_extra" => m.map_extra = field_long(btf, name, fname, mem.type_id)?,
            "pinning" => {
                let v = field_int(btf, name, fname, mem.type_id)?;
                if is_inner {
                    return Err(merr(name, "inner map definition can't be pinned".into()));
                }
                // LIBBPF_PIN_NONE 0, LIBBPF_PIN_BY_NAME 1.
                if v > 1 {
                    return Err(merr(name, format!("invalid pinning value {v}")));
                }
                m.pinning = v;
            }
            "key_size" | "value_size" => {
                let sz = field_int(btf, name, fname, mem.type_id)?;
                let cur = if fname == "key_size" {
                    &mut m.key_size
                } else {
                    &mut m.value_size
                };
                if *cur != 0 && *cur != sz {
                    return Err(merr(name, format!("conflicting {fname} {} != {sz}", *cur)));
                }
                *cur = sz;
            }
            "key" | "value" => {
                let (_, t) = btf.skip_mods_and_typedefs(mem.type_id)?;
                if t.kind != btf::KIND_PTR {
                    return Err(merr(
                        name,
                        format!("{fname} spec is not PTR: {}", btf::kind_name(t.kind)),
                    ));
                }
                let sz = btf.resolve_size(t.size_or_type)?;
                let sz = u32::try_from(sz)
                    .map_err(|_| merr(name, format!("{fname} size {sz} too large")))?;
                let cur = if fname == "key" {
                    &mut m.key_size
                } else {
                    &mut m.value_size
                };
                if *cur != 0 && *cur != sz {
                    return Err(merr(
                        name,
                        format!("conflicting {fname} size {} != {sz}", *cur),
                    ));
                }
                *cur = sz;
            }
            "values" => {
                let mim = is_map_in_map(m.map_type);
                let pa = m.map_type == BPF_MAP_TYPE_PROG_ARRAY;
                if is_inner {
                    return Err(merr(
                        name,
                        "multi-level inner maps are not supported".into(),
                    ));
                }
                if i != n - 1 {
                    return Err(merr(name, "'values' member should be last".into()));
                }
                if !mim && !pa {
                    return Err(merr(
                        name,
                        "should be map-in-map or prog-array to have 'values'".into(),
                    ));
                }
                if m.value_size != 0 && m.value_size != 4 {
                    return Err(merr(
                        name,
                        format!("conflicting value size {} != 4", m.value_size),
                    ));
                }
                m.value_size = 4;
                let t = btf.type_by_id(mem.type_id)?;
                let Detail::Array { elem, nelems } = t.detail else {
                    return Err(merr(
                        name,
                        format!("'values' is {}, expected an array", btf::kind_name(t.kind)),
                    ));
                };
                if t.kind != btf::KIND_ARRAY {
                    return Err(merr(name, "'values' is not an array".into()));
                }
                if nelems != 0 {
                    return Err(merr(name, "'values' should be a zero-sized array".into()));
                }
                let (_, p) = btf.skip_mods_and_typedefs(elem)?;
                if p.kind != btf::KIND_PTR {
                    return Err(merr(
                        name,
                        format!(
                            "'values' element is {}, expected a pointer",
                            btf::kind_name(p.kind)
                        ),
                    ));
                }
                let (inner_id, inner) = btf.skip_mods_and_typedefs(p.size_or_type)?;
                if pa {
                    if inner.kind != btf::KIND_FUNC_PROTO {
                        return Err(merr(
                            name,
                            "prog-array 'values' must point to a function prototype".into(),
                        ));
                    }
                } else {
                    if inner.kind != btf::KIND_STRUCT {
                        return Err(merr(
                            name,
                            "map-in-map inner definition is not a struct".into(),
                        ));
                    }
                    let (im, _) = parse_btf_map_def(btf, &format!("{name}.inner"), inner_id, true)?;
                    m.inner = Some(Box::new(im));
                }
                let bits = if def.kind_flag {
                    mem.offset & 0x00ff_ffff
                } else {
                    mem.offset
                };
                values_off = Some(u64::from(bits / 8));
            }
            other => return Err(merr(name, format!("unknown field '{other}'"))),
        }
    }
    if m.map_type == 0 || m.map_type > MAX_MAP_TYPE {
        return Err(merr(
            name,
            format!("unknown or missing map type {}", m.map_type),
        ));
    }
    Ok((m, values_off))
}
