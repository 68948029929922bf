//! Minimal reader for the `.BTF` and `.BTF.ext` sections: enough type information to
//! decode BTF-defined map definitions (libbpf's parse_btf_map_def) and to judge CO-RE
//! relocations. Every access is bounds-checked; malformed input is an error.

use crate::ObjectError;

pub const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
pub const KIND_ARRAY: u32 = 3;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_UNION: u32 = 5;
pub const KIND_ENUM: u32 = 6;
pub const KIND_FWD: u32 = 7;
pub const KIND_TYPEDEF: u32 = 8;
pub const KIND_VOLATILE: u32 = 9;
pub const KIND_CONST: u32 = 10;
pub const KIND_RESTRICT: u32 = 11;
pub const KIND_FUNC: u32 = 12;
pub const KIND_FUNC_PROTO: u32 = 13;
pub const KIND_VAR: u32 = 14;
pub const KIND_DATASEC: u32 = 15;
pub const KIND_FLOAT: u32 = 16;
pub const KIND_DECL_TAG: u32 = 17;
pub const KIND_TYPE_TAG: u32 = 18;
pub const KIND_ENUM64: u32 = 19;

/// Resolution depth limit, as libbpf's MAX_RESOLVE_DEPTH.
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug)]
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    /// Bit offset (bitfield size in the top 8 bits when the kind_flag is set).
    pub offset: u32,
}

#[derive(Clone, Debug)]
pub struct VarSecinfo {
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

#[derive(Clone, Debug)]
pub enum Detail {
    None,
    Array {
        elem: u32,
        nelems: u32,
    },
    Members(Vec<Member>),
    /// ENUM / ENUM64 values (name_off, value).
    Enum(Vec<(u32, u64)>),
    Params,
    Var {
        linkage: u32,
    },
    Datasec(Vec<VarSecinfo>),
}

#[derive(Clone, Debug)]
pub struct BtfType {
    pub name_off: u32,
    pub kind: u32,
    pub kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    pub detail: Detail,
}

#[derive(Clone, Debug)]
pub struct Btf {
    /// Index 0 is `void`.
    types: Vec<BtfType>,
    strings: Vec<u8>,
}

fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn err(msg: String) -> ObjectError {
    ObjectError::Btf(msg)
}

pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        KIND_INT => "int",
        KIND_PTR => "ptr",
        KIND_ARRAY => "array",
        KIND_STRUCT => "struct",
        KIND_UNION => "union",
        KIND_ENUM => "enum",
        KIND_FWD => "fwd",
        KIND_TYPEDEF => "typedef",
        KIND_VOLATILE => "volatile",
        KIND_CONST => "const",
        KIND_RESTRICT => "restrict",
        KIND_FUNC => "func",
        KIND_FUNC_PROTO => "func_proto",
        KIND_VAR => "var",
        KIND_DATASEC => "datasec",
        KIND_FLOAT => "float",
        KIND_DECL_TAG => "decl_tag",
        KIND_TYPE_TAG => "type_tag",
        KIND_ENUM64 => "enum64",
        _ => "unknown",
    }
}

impl Btf {
    /// Parses a `.BTF` section (struct btf_header, then the type and string sections).
    pub fn parse(data: &[u8]) -> Result<Btf, ObjectError> {
        let magic = rd_u16(data, 0).ok_or_else(|| err("header truncated".into()))?;
        if magic != 0xeb9f {
            return Err(err(format!(
                "bad magic {magic:#06x} (big-endian BTF is not supported)"
            )));
        }
        let hdr_len = rd_u32(data, 4).ok_or_else(|| err("header truncated".into()))? as usize;
        let field = |o: usize| rd_u32(data, o).ok_or_else(|| err("header truncated".into()));
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        if hdr_len < 24 {
            return Err(err(format!("header length {hdr_len} < 24")));
        }
        let slice = |off: u32, len: u32, what: &str| -> Result<&[u8], ObjectError> {
            let start = hdr_len
                .checked_add(off as usize)
                .ok_or_else(|| err(format!("{what} offset overflows")))?;
            let end = start
                .checked_add(len as usize)
                .ok_or_else(|| err(format!("{what} length overflows")))?;
            data.get(start..end).ok_or_else(|| {
                err(format!(
                    "{what} section [{start}, {end}) exceeds .BTF size {}",
                    data.len()
                ))
            })
        };
        let tdata = slice(type_off, type_len, "type")?;
        let strings = slice(str_off, str_len, "string")?.to_vec();
        let mut types = vec![BtfType {
            name_off: 0,
            kind: 0,
            kind_flag: false,
            size_or_type: 0,
            detail: Detail::None,
        }];
        let mut p = 0usize;
        while p < tdata.len() {
            let t_err = |p: usize| {
                err(format!(
                    "type #{} truncated at type-section offset {p}",
                    types.len()
                ))
            };
            let name_off = rd_u32(tdata, p).ok_or_else(|| t_err(p))?;
            let info = rd_u32(tdata, p + 4).ok_or_else(|| t_err(p))?;
            let size_or_type = rd_u32(tdata, p + 8).ok_or_else(|| t_err(p))?;
            let id = types.len();
            p += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 != 0;
            let need = |p: usize, n: usize| -> Result<(), ObjectError> {
                let end = n.checked_mul(1).and_then(|n| p.checked_add(n));
                match end {
                    Some(e) if e <= tdata.len() => Ok(()),
                    _ => Err(err(format!("type #{id} ({}) truncated", kind_name(kind)))),
                }
            };
            let detail = match kind {
                KIND_INT => {
                    need(p, 4)?;
                    p += 4;
                    Detail::None
                }
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => Detail::None,
                KIND_ARRAY => {
                    need(p, 12)?;
                    let elem = rd_u32(tdata, p).ok_or_else(|| t_err(p))?;
                    let nelems = rd_u32(tdata, p + 8).ok_or_else(|| t_err(p))?;
                    p += 12;
                    Detail::Array { elem, nelems }
                }
                KIND_STRUCT | KIND_UNION => {
                    need(p, vlen * 12)?;
                    let mut m = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        m.push(Member {
                            name_off: rd_u32(tdata, p).ok_or_else(|| t_err(p))?,
                            type_id: rd_u32(tdata, p + 4).ok_or_else(|| t_err(p))?,
                            offset: rd_u32(tdata, p + 8).ok_or_else(|| t_err(p))?,
                        });
                        p += 12;
                    }
                    Detail::Members(m)
                }
                KIND_ENUM => {
                    need(p, vlen * 8)?;
                    let mut v = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let n = rd_u32(tdata, p).ok_or_else(|| t_err(p))?;
                        let val = rd_u32(tdata, p + 4).ok_or_else(|| t_err(p))?;
                        v.push((n, val as i32 as i64 as u64));
                        p += 8;
                    }
                    Detail::Enum(v)
                }
                KIND_ENUM64 => {
                    need(p, vlen * 12)?;
                    let mut v = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let n = rd_u32(tdata, p).ok_or_else(|| t_err(p))?;
                        let lo = rd_u32(tdata, p + 4).ok_or_else(|| t_err(p))?;
                        let hi = rd_u32(tdata, p + 8).ok_or_else(|| t_err(p))?;
                        v.push((n, (u64::from(hi) << 32) | u64::from(lo)));
                        p += 12;
                    }
                    Detail::Enum(v)
                }
                KIND_FUNC_PROTO => {
                    need(p, vlen * 8)?;
                    p += vlen * 8;
                    Detail::Params
                }
                KIND_VAR => {
                    need(p, 4)?;
                    let linkage = rd_u32(tdata, p).ok_or_else(|| t_err(p))?;
                    p += 4;
                    Detail::Var { linkage }
                }
                KIND_DATASEC => {
                    need(p, vlen * 12)?;
                    let mut v = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        v.push(VarSecinfo {
                            type_id: rd_u32(tdata, p).ok_or_else(|| t_err(p))?,
                            offset: rd_u32(tdata, p + 4).ok_or_else(|| t_err(p))?,
                            size: rd_u32(tdata, p + 8).ok_or_else(|| t_err(p))?,
                        });
                        p += 12;
                    }
                    Detail::Datasec(v)
                }
                KIND_DECL_TAG => {
                    need(p, 4)?;
                    p += 4;
                    Detail::None
                }
                other => {
                    return Err(err(format!("type #{id}: unknown BTF kind {other}")));
                }
            };
            types.push(BtfType {
                name_off,
                kind,
                kind_flag,
                size_or_type,
                detail,
            });
        }
        Ok(Btf { types, strings })
    }

    pub fn get(&self, id: u32) -> Option<&BtfType> {
        self.types.get(id as usize)
    }

    pub fn type_by_id(&self, id: u32) -> Result<&BtfType, ObjectError> {
        self.get(id).ok_or_else(|| {
            err(format!(
                "type id {id} out of range (have {})",
                self.types.len()
            ))
        })
    }

    pub fn str_at(&self, off: u32) -> Result<&str, ObjectError> {
        let tail = self
            .strings
            .get(off as usize..)
            .ok_or_else(|| err(format!("string offset {off} out of range")))?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).map_err(|_| err(format!("string at {off} is not UTF-8")))
    }

    pub fn name(&self, t: &BtfType) -> &str {
        self.str_at(t.name_off).unwrap_or("")
    }

    /// Skips typedefs and cv/type-tag modifiers, as libbpf's skip_mods_and_typedefs.
    pub fn skip_mods_and_typedefs(&self, mut id: u32) -> Result<(u32, &BtfType), ObjectError> {
        for _ in 0..MAX_DEPTH {
            let t = self.type_by_id(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok((id, t)),
            }
        }
        Err(err(format!("type chain from id {id} too deep")))
    }

    /// Byte size of a type, as libbpf's btf__resolve_size.
    pub fn resolve_size(&self, id: u32) -> Result<u64, ObjectError> {
        let mut id = id;
        let mut nelems: u64 = 1;
        for _ in 0..MAX_DEPTH {
            let t = self.type_by_id(id)?;
            match t.kind {
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_DATASEC
                | KIND_FLOAT => {
                    return nelems
                        .checked_mul(u64::from(t.size_or_type))
                        .ok_or_else(|| err(format!("size of type id {id} overflows")));
                }
                KIND_PTR => {
                    return nelems
                        .checked_mul(8)
                        .ok_or_else(|| err(format!("size of type id {id} overflows")))
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_VAR
                | KIND_DECL_TAG | KIND_TYPE_TAG => id = t.size_or_type,
                KIND_ARRAY => {
                    if let Detail::Array { elem, nelems: n } = t.detail {
                        nelems = nelems
                            .checked_mul(u64::from(n))
                            .ok_or_else(|| err(format!("size of type id {id} overflows")))?;
                        id = elem;
                    }
                }
                k => return Err(err(format!("type id {id} ({}) has no size", kind_name(k)))),
            }
        }
        Err(err(format!("type chain from id {id} too deep")))
    }

    /// Finds a DATASEC by name.
    pub fn datasec(&self, name: &str) -> Option<(u32, &BtfType)> {
        self.types
            .iter()
            .enumerate()
            .find(|(_, t)| t.kind == KIND_DATASEC && self.name(t) == name)
            .map(|(i, t)| (i as u32, t))
    }
}

/// One CO-RE relocation record from `.BTF.ext` (struct bpf_core_relo).
#[derive(Clone, Debug)]
pub struct CoreRelo {
    /// Section the instruction is in.
    pub section: String,
    /// Byte offset of the instruction in that section.
    pub insn_off: u32,
    pub type_id: u32,
    pub access: String,
    pub kind: u32,
}

/// One `.BTF.ext` sub-section (func_info, line_info or core_relo): the bytes
/// `hdr_len + off .. + len` named by the header fields at `field` and `field + 4`.
/// None when the header is too short to have it or it is empty.
fn ext_subsection<'a>(
    ext: &'a [u8],
    field: usize,
    what: &str,
) -> Result<Option<&'a [u8]>, ObjectError> {
    let e = |m: String| ObjectError::Btf(format!(".BTF.ext: {m}"));
    let magic = rd_u16(ext, 0).ok_or_else(|| e("header truncated".into()))?;
    if magic != 0xeb9f {
        return Err(e(format!("bad magic {magic:#06x}")));
    }
    let hdr_len = rd_u32(ext, 4).ok_or_else(|| e("header truncated".into()))? as usize;
    if hdr_len < field + 8 {
        return Ok(None);
    }
    let off = rd_u32(ext, field).ok_or_else(|| e("header truncated".into()))? as usize;
    let len = rd_u32(ext, field + 4).ok_or_else(|| e("header truncated".into()))? as usize;
    if len == 0 {
        return Ok(None);
    }
    let start = hdr_len
        .checked_add(off)
        .ok_or_else(|| e(format!("{what} offset overflows")))?;
    let end = start
        .checked_add(len)
        .ok_or_else(|| e(format!("{what} length overflows")))?;
    ext.get(start..end).map(Some).ok_or_else(|| {
        e(format!(
            "{what} [{start}, {end}) exceeds section size {}",
            ext.len()
        ))
    })
}

/// One line-info record from `.BTF.ext` (struct bpf_line_info), resolved.
#[derive(Clone, Debug)]
pub struct LineRecord {
    /// Section the instruction is in.
    pub section: String,
    /// Byte offset of the instruction in that section.
    pub insn_off: u32,
    pub file: String,
    /// The source line's text, as clang stored it.
    pub text: String,
    pub line: u32,
    pub col: u32,
}

/// Reads the line-info records of a `.BTF.ext` section
/// (struct btf_ext_header: line_info_off/len at bytes 16/20).
pub fn parse_btf_ext_lines(ext: &[u8], btf: &Btf) -> Result<Vec<LineRecord>, ObjectError> {
    let e = |m: String| ObjectError::Btf(format!(".BTF.ext: {m}"));
    let Some(d) = ext_subsection(ext, 16, "line_info")? else {
        return Ok(Vec::new());
    };
    let rec_size = rd_u32(d, 0).ok_or_else(|| e("line_info truncated".into()))? as usize;
    if rec_size < 16 {
        return Err(e(format!("line_info record size {rec_size} < 16")));
    }
    let mut out = Vec::new();
    let mut p = 4usize;
    while p < d.len() {
        let trunc = || e(format!("line_info block truncated at {p}"));
        let sec_off = rd_u32(d, p).ok_or_else(trunc)?;
        let num = rd_u32(d, p + 4).ok_or_else(trunc)? as usize;
        p += 8;
        let section = btf.str_at(sec_off)?.to_string();
        for _ in 0..num {
            let end = p
                .checked_add(rec_size)
                .ok_or_else(|| e("overflow".into()))?;
            let rec = d
                .get(p..end)
                .ok_or_else(|| e(format!("line_info record truncated at {p}")))?;
            let f = |o| rd_u32(rec, o).unwrap_or(0);
            // include/uapi/linux/bpf.h: BPF_LINE_INFO_LINE_NUM / _LINE_COL
            out.push(LineRecord {
                section: section.clone(),
                insn_off: f(0),
                file: btf.str_at(f(4))?.to_string(),
                text: btf.str_at(f(8))?.to_string(),
                line: f(12) >> 10,
                col: f(12) & 0x3ff,
            });
            p = end;
        }
    }
    Ok(out)
}

/// Reads the CO-RE relocation records of a `.BTF.ext` section (func info is not
/// needed by skiff and is skipped).
pub fn parse_btf_ext_core(ext: &[u8], btf: &Btf) -> Result<Vec<CoreRelo>, ObjectError> {
    let e = |m: String| ObjectError::Btf(format!(".BTF.ext: {m}"));
    // struct btf_ext_header: core_relo_off/len exist when hdr_len >= 32.
    let Some(d) = ext_subsection(ext, 24, "core_relo")? else {
        return Ok(Vec::new());
    };
    let rec_size = rd_u32(d, 0).ok_or_else(|| e("core_relo truncated".into()))? as usize;
    if rec_size < 16 {
        return Err(e(format!("core_relo record size {rec_size} < 16")));
    }
    let mut out = Vec::new();
    let mut p = 4usize;
    while p < d.len() {
        let sec_off = rd_u32(d, p).ok_or_else(|| e(format!("core_relo block truncated at {p}")))?;
        let num = rd_u32(d, p + 4).ok_or_else(|| e(format!("core_relo block truncated at {p}")))?
            as usize;
        p += 8;
        let section = btf.str_at(sec_off)?.to_string();
        for _ in 0..num {
            let rec = d
                .get(
                    p..p.checked_add(rec_size)
                        .ok_or_else(|| e("overflow".into()))?,
                )
                .ok_or_else(|| e(format!("core_relo record truncated at {p}")))?;
            let f = |o| rd_u32(rec, o).unwrap_or(0);
            out.push(CoreRelo {
                section: section.clone(),
                insn_off: f(0),
                type_id: f(4),
                access: btf.str_at(f(8))?.to_string(),
                kind: f(12),
            });
            p += rec_size;
        }
    }
    Ok(out)
}
