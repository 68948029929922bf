//! ELF walk (libbpf.c: bpf_object__elf_collect), program discovery
//! (bpf_object__add_programs), relocation collection (bpf_object__collect_prog_relos)
//! and linking of `.text` subprograms (bpf_object__relocate_calls / reloc_code).

use std::collections::{BTreeMap, HashMap};

use object::elf::{
    FileHeader64, SHF_EXECINSTR, SHT_NOBITS, SHT_PROGBITS, SHT_REL, SHT_RELA, SHT_SYMTAB,
};
use object::read::elf::{FileHeader, Rel, SectionHeader, Sym as _};
use object::LittleEndian as LE;
use skiff_isa::Insn;

use crate::btf::{Btf, LineRecord};
use crate::{maps, LineInfo, ObjectError, ParseOptions, Program};

pub const EM_BPF: u16 = 247;
pub const R_BPF_64_64: u32 = 1;
pub const R_BPF_64_ABS64: u32 = 2;
pub const R_BPF_64_32: u32 = 10;

pub const STT_FUNC: u8 = 2;
pub const STT_SECTION: u8 = 3;

pub use skiff_isa::{
    BPF_PSEUDO_BTF_ID, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_KFUNC_CALL, BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE,
};

const CODE_CALL: u8 = skiff_isa::CALL;
const CODE_LD_IMM64: u8 = skiff_isa::LD_IMM64;

#[derive(Clone, Debug)]
pub struct Sec<'a> {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub size: u64,
    /// Empty for SHT_NOBITS.
    pub data: &'a [u8],
}

#[derive(Clone, Debug)]
pub struct Sym {
    pub name: String,
    pub shndx: usize,
    pub value: u64,
    pub size: u64,
    pub typ: u8,
}

#[derive(Clone, Copy, Debug)]
pub struct RawRel {
    pub offset: u64,
    pub sym: usize,
    pub r_type: u32,
}

/// A function: a program (entry point) or a `.text` subprogram.
#[derive(Clone, Debug)]
pub struct Func {
    pub name: String,
    pub sec: usize,
    /// First instruction, as an index into the section.
    pub start: usize,
    pub len: usize,
}

/// The whole ELF, indexed.
pub struct Elf<'a> {
    pub secs: Vec<Sec<'a>>,
    pub syms: Vec<Sym>,
    /// Relocation sections by target section index.
    pub rels: HashMap<usize, Vec<RawRel>>,
}

impl<'a> Elf<'a> {
    pub fn sec_name(&self, idx: usize) -> &str {
        self.secs.get(idx).map(|s| s.name.as_str()).unwrap_or("?")
    }

    pub fn sym(&self, idx: usize, sec: &str, at: usize) -> Result<&Sym, ObjectError> {
        self.syms.get(idx).ok_or_else(|| ObjectError::Section {
            section: sec.to_string(),
            msg: format!(
                "relocation at byte offset {at:#x}: symbol index {idx} out of range (symbol table has {})",
                self.syms.len()
            ),
        })
    }

    /// Section-symbol relocations are named after their section, as llvm-objdump does.
    pub fn sym_display(&self, s: &Sym) -> String {
        if s.typ == STT_SECTION || s.name.is_empty() {
            self.sec_name(s.shndx).to_string()
        } else {
            s.name.clone()
        }
    }
}

fn elf_err(e: object::read::Error) -> ObjectError {
    ObjectError::Elf(e.to_string())
}

/// Reads headers, sections, symbols and relocations without interpreting them.
fn read_elf(data: &[u8]) -> Result<Elf<'_>, ObjectError> {
    let ident = data.get(..16).ok_or_else(|| {
        ObjectError::NotBpfElf(format!(
            "file is {} bytes, shorter than an ELF header",
            data.len()
        ))
    })?;
    if ident[..4] != [0x7f, b'E', b'L', b'F'] {
        return Err(ObjectError::NotBpfElf(
            "no ELF magic at byte offset 0".into(),
        ));
    }
    if ident[4] != 2 {
        return Err(ObjectError::NotBpfElf(format!(
            "ELF class {} at byte offset 4: eBPF objects are ELF64",
            ident[4]
        )));
    }
    match ident[5] {
        1 => {}
        2 => {
            return Err(ObjectError::NotBpfElf(
                "big-endian object (-target bpfeb): skiff runs little-endian eBPF only; build with -target bpf or bpfel".into(),
            ))
        }
        d => return Err(ObjectError::NotBpfElf(format!("unknown ELF data encoding {d} at byte offset 5"))),
    }
    let hdr = FileHeader64::<LE>::parse(data).map_err(elf_err)?;
    let e = LE;
    // libbpf: bpf_object__elf_init accepts e_machine 0 for objects from old toolchains.
    let machine = hdr.e_machine.get(e);
    if machine != EM_BPF && machine != 0 {
        return Err(ObjectError::NotBpfElf(format!(
            "e_machine is {machine}, not EM_BPF (247): not an eBPF object"
        )));
    }
    if hdr.e_type.get(e) != object::elf::ET_REL {
        return Err(ObjectError::NotBpfElf(format!(
            "e_type is {}, not ET_REL (1): expected a relocatable object from clang -c",
            hdr.e_type.get(e)
        )));
    }
    let table = hdr.sections(e, data).map_err(elf_err)?;
    let mut secs = Vec::with_capacity(table.len());
    for (i, s) in table.iter().enumerate() {
        let name = table
            .section_name(e, s)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .map_err(|err| ObjectError::Elf(format!("section #{i}: name: {err}")))?;
        let sh_type = s.sh_type(e);
        let d = if sh_type == SHT_NOBITS || i == 0 {
            &[][..]
        } else {
            s.data(e, data).map_err(|_| {
                ObjectError::Elf(format!(
                    "section '{name}' (#{i}): offset {:#x} size {:#x} runs past the end of the file ({:#x} bytes)",
                    s.sh_offset(e),
                    s.sh_size(e),
                    data.len()
                ))
            })?
        };
        secs.push(Sec {
            name,
            sh_type,
            flags: s.sh_flags(e),
            size: s.sh_size(e),
            data: d,
        });
    }
    if !table.iter().any(|s| s.sh_type(e) == SHT_SYMTAB) {
        return Err(ObjectError::Elf("no symbol table (.symtab)".into()));
    }
    let symtab = table.symbols(e, data, SHT_SYMTAB).map_err(elf_err)?;
    let mut syms = Vec::with_capacity(symtab.len());
    for (i, s) in symtab.iter().enumerate() {
        let name = symtab
            .symbol_name(e, s)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .map_err(|err| ObjectError::Elf(format!("symbol #{i}: name: {err}")))?;
        syms.push(Sym {
            name,
            shndx: usize::from(s.st_shndx(e)),
            value: s.st_value(e),
            size: s.st_size(e),
            typ: s.st_type(),
        });
    }
    let mut rels: HashMap<usize, Vec<RawRel>> = HashMap::new();
    for (i, s) in table.iter().enumerate() {
        let target = s.sh_info(e) as usize;
        let name = secs.get(i).map(|s| s.name.clone()).unwrap_or_default();
        if s.sh_type(e) == SHT_RELA {
            let targ = secs.get(target);
            if targ.is_some_and(|t| t.flags & u64::from(SHF_EXECINSTR) != 0) {
                return Err(ObjectError::Section {
                    section: name,
                    msg: "RELA relocations are not used by eBPF objects (expected SHT_REL)".into(),
                });
            }
            continue;
        }
        if s.sh_type(e) != SHT_REL {
            continue;
        }
        let (entries, _link) = match s.rel(e, data) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => {
                return Err(ObjectError::Section {
                    section: name,
                    msg: format!(
                        "relocation section truncated or misaligned (offset {:#x}, size {:#x})",
                        s.sh_offset(e),
                        s.sh_size(e)
                    ),
                })
            }
        };
        if target == 0 || target >= secs.len() {
            return Err(ObjectError::Section {
                section: name,
                msg: format!("sh_info {target} is not a valid section index"),
            });
        }
        let list = rels.entry(target).or_default();
        for r in entries {
            list.push(RawRel {
                offset: r.r_offset(e),
                sym: r.r_sym(e) as usize,
                r_type: r.r_type(e),
            });
        }
    }
    Ok(Elf { secs, syms, rels })
}

fn decode(sec: &Sec<'_>) -> Result<Vec<Insn>, ObjectError> {
    if !sec.data.len().is_multiple_of(Insn::SIZE) {
        return Err(ObjectError::Section {
            section: sec.name.clone(),
            msg: format!(
                "code section size {} is not a multiple of 8",
                sec.data.len()
            ),
        });
    }
    Ok(sec
        .data
        .chunks_exact(Insn::SIZE)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Insn::from_bytes(b)
        })
        .collect())
}

pub fn is_code(sec: &Sec<'_>) -> bool {
    sec.sh_type == SHT_PROGBITS && sec.flags & u64::from(SHF_EXECINSTR) != 0 && sec.size > 0
}

/// Function symbols of a code section, sorted by offset (libbpf: bpf_object__add_programs).
fn functions(elf: &Elf<'_>, sec_idx: usize, n_insns: usize) -> Result<Vec<Func>, ObjectError> {
    let sec = elf.sec_name(sec_idx).to_string();
    let mut out = Vec::new();
    for s in &elf.syms {
        if s.typ != STT_FUNC || s.shndx != sec_idx {
            continue;
        }
        let bad = |msg: String| ObjectError::Section {
            section: sec.clone(),
            msg: format!("function '{}': {msg}", s.name),
        };
        if s.value % 8 != 0 || s.size % 8 != 0 {
            return Err(bad(format!(
                "offset {:#x} / size {:#x} not a multiple of 8",
                s.value, s.size
            )));
        }
        let start = (s.value / 8) as usize;
        let len = (s.size / 8) as usize;
        if start.checked_add(len).is_none_or(|end| end > n_insns) {
            return Err(bad(format!(
                "[{:#x}, +{:#x}) runs past the end of the section ({:#x} bytes)",
                s.value,
                s.size,
                n_insns * 8
            )));
        }
        if len == 0 {
            return Err(bad("has size 0".into()));
        }
        out.push(Func {
            name: s.name.clone(),
            sec: sec_idx,
            start,
            len,
        });
    }
    out.sort_by_key(|f| f.start);
    if out.is_empty() {
        // Objects without function symbols: the section is one function (iproute2).
        out.push(Func {
            name: sec.clone(),
            sec: sec_idx,
            start: 0,
            len: n_insns,
        });
    }
    Ok(out)
}

/// Where a relocation's symbol points, for code relocations.
pub enum Target {
    Map(usize),
    MapValue(usize),
    None,
}

/// Everything the linker needs, borrowed from the parse.
pub struct Ctx<'e, 'a> {
    pub elf: &'e Elf<'a>,
    pub text_idx: Option<usize>,
    pub code: HashMap<usize, Vec<Insn>>,
    /// Relocations of each code section, by section instruction index.
    pub relos: HashMap<usize, BTreeMap<usize, RawRel>>,
    pub subprogs: Vec<Func>,
    /// (section, byte offset) of a map definition -> map index.
    pub map_at: HashMap<(usize, u64), usize>,
    /// Global data section -> map index.
    pub data_map: HashMap<usize, usize>,
    pub core: crate::core::CoreIndex,
}

pub fn parse(data: &[u8], opts: &ParseOptions) -> Result<crate::Object, ObjectError> {
    let elf = read_elf(data)?;

    let license = match elf.secs.iter().find(|s| s.name == "license") {
        Some(s) => {
            let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
            String::from_utf8_lossy(&s.data[..end]).into_owned()
        }
        None => String::new(),
    };

    let btf = match elf.secs.iter().find(|s| s.name == ".BTF") {
        Some(s) => Some(Btf::parse(s.data)?),
        None => None,
    };

    // Code sections.
    let mut code = HashMap::new();
    let mut text_idx = None;
    let mut prog_funcs: Vec<Func> = Vec::new();
    let mut subprogs = Vec::new();
    for (i, s) in elf.secs.iter().enumerate() {
        if !is_code(s) {
            continue;
        }
        let insns = decode(s)?;
        let funcs = functions(&elf, i, insns.len())?;
        if s.name == ".text" {
            text_idx = Some(i);
            subprogs = funcs;
        } else {
            prog_funcs.extend(funcs);
        }
        code.insert(i, insns);
    }

    // Relocations of code sections, indexed by instruction.
    let mut relos: HashMap<usize, BTreeMap<usize, RawRel>> = HashMap::new();
    for (&target, list) in &elf.rels {
        let Some(insns) = code.get(&target) else {
            continue;
        };
        let sec = elf.sec_name(target);
        let m = relos.entry(target).or_default();
        for r in list {
            if r.offset % 8 != 0 || r.offset / 8 >= insns.len() as u64 {
                return Err(ObjectError::Section {
                    section: sec.to_string(),
                    msg: format!(
                        "relocation offset {:#x} is not an instruction of the section ({} instructions)",
                        r.offset,
                        insns.len()
                    ),
                });
            }
            elf.sym(r.sym, sec, r.offset as usize)?;
            m.insert((r.offset / 8) as usize, *r);
        }
    }

    let prog_names: Vec<String> = prog_funcs.iter().map(|f| f.name.clone()).collect();
    let maps_out = maps::collect(&elf, btf.as_ref(), &prog_names)?;

    let btf_ext = elf.secs.iter().find(|s| s.name == ".BTF.ext");
    let core = match (btf_ext, btf.as_ref()) {
        (Some(ext), Some(b)) => {
            crate::core::CoreIndex::new(crate::btf::parse_btf_ext_core(ext.data, b)?, b.clone())
        }
        _ => crate::core::CoreIndex::default(),
    };
    let line_records = match (btf_ext, btf.as_ref()) {
        (Some(ext), Some(b)) => crate::btf::parse_btf_ext_lines(ext.data, b)?,
        _ => Vec::new(),
    };

    let ctx = Ctx {
        elf: &elf,
        text_idx,
        code,
        relos,
        subprogs,
        map_at: maps_out.map_at,
        data_map: maps_out.data_map,
        core,
    };

    let mut programs = Vec::with_capacity(prog_funcs.len());
    let mut skipped = Vec::new();
    for f in &prog_funcs {
        let section = elf.sec_name(f.sec).to_string();
        let kind = crate::sections::classify_section(&section);
        let tracing = crate::sections::tracing_section(&section);
        if let (None, None, Some(prog_type)) = (opts.force_type, kind, tracing) {
            skipped.push(crate::Skipped {
                name: f.name.clone(),
                section,
                prog_type,
            });
            continue;
        }
        let (prog_type, expected_attach_type, frags) = match (opts.force_type, kind) {
            (Some(t), Some(k)) if t == k.prog_type => (t, k.expected_attach_type, k.frags),
            (Some(t), _) => (
                t,
                (t == crate::ProgType::Xdp).then_some(crate::AttachType::Xdp),
                kind.is_some_and(|k| k.frags),
            ),
            (None, Some(k)) => (k.prog_type, k.expected_attach_type, k.frags),
            (None, None) => return Err(ObjectError::UnknownSection { section }),
        };
        let (insns, placed) = link(&ctx, f)?;
        let lines = program_lines(&elf, &line_records, &placed);
        let mut funcs: Vec<crate::FuncStart> = placed
            .iter()
            .map(|(f, base)| crate::FuncStart {
                name: f.name.clone(),
                insn: *base,
            })
            .collect();
        funcs.sort_by_key(|f| f.insn);
        programs.push(Program {
            name: f.name.clone(),
            section,
            prog_type,
            expected_attach_type,
            frags,
            insns,
            lines,
            funcs,
        });
    }
    Ok(crate::Object {
        license,
        programs,
        maps: maps_out.maps,
        skipped,
    })
}

fn reloc_err(sec: &str, insn: usize, msg: String) -> ObjectError {
    ObjectError::Reloc {
        section: sec.to_string(),
        insn,
        msg,
    }
}

/// The line records of every function placed in a program, moved to where the
/// function landed (libbpf: bpf_program__relocate / adjust_prog_btf_ext_info, which
/// copies a subprogram's line info along with its code), sorted by instruction.
fn program_lines(elf: &Elf<'_>, records: &[LineRecord], placed: &[(Func, usize)]) -> Vec<LineInfo> {
    let mut lines = Vec::new();
    for (f, base) in placed {
        let sec = elf.sec_name(f.sec);
        for r in records
            .iter()
            .filter(|r| r.section == sec && r.insn_off % 8 == 0)
        {
            let si = (r.insn_off / 8) as usize;
            if si < f.start || si >= f.start + f.len {
                continue;
            }
            lines.push(LineInfo {
                insn: base + (si - f.start),
                file: r.file.clone(),
                line: r.line,
                col: r.col,
                text: r.text.clone(),
            });
        }
    }
    lines.sort_by_key(|l| l.insn);
    lines
}

/// Links one program: its code, then every `.text` function it reaches, each once, in
/// the depth-first order libbpf's bpf_object__reloc_code appends them. Also returns
/// each function placed and where it starts in the linked code.
#[allow(clippy::type_complexity)]
fn link(ctx: &Ctx<'_, '_>, prog: &Func) -> Result<(Vec<Insn>, Vec<(Func, usize)>), ObjectError> {
    let mut out: Vec<Insn> = Vec::new();
    // subprogram index -> start in `out`
    let mut placed: HashMap<usize, usize> = HashMap::new();
    append(ctx, &mut out, prog)?;
    // Explicit stack (function, base in out, next instruction), instead of recursion.
    let mut stack: Vec<(Func, usize, usize)> = vec![(prog.clone(), 0, 0)];
    while let Some(top) = stack.last_mut() {
        let (func, base, i) = (top.0.clone(), top.1, top.2);
        if i >= func.len {
            stack.pop();
            continue;
        }
        let step = if out.get(base + i).is_some_and(|x| x.code == CODE_LD_IMM64) {
            2
        } else {
            1
        };
        top.2 = i + step;
        if let Some(new_sub) = reloc_insn(ctx, &mut out, &mut placed, prog, &func, base, i)? {
            stack.push(new_sub);
        }
    }
    let mut funcs = vec![(prog.clone(), 0)];
    funcs.extend(
        placed
            .iter()
            .filter_map(|(&idx, &base)| Some((ctx.subprogs.get(idx)?.clone(), base))),
    );
    Ok((out, funcs))
}

fn append(ctx: &Ctx<'_, '_>, out: &mut Vec<Insn>, f: &Func) -> Result<usize, ObjectError> {
    let base = out.len();
    let code = ctx.code.get(&f.sec).ok_or_else(|| ObjectError::Section {
        section: ctx.elf.sec_name(f.sec).to_string(),
        msg: "not a code section".into(),
    })?;
    let slice = code
        .get(f.start..f.start + f.len)
        .ok_or_else(|| ObjectError::Section {
            section: ctx.elf.sec_name(f.sec).to_string(),
            msg: format!("function '{}' out of range", f.name),
        })?;
    out.extend_from_slice(slice);
    // CO-RE relocations of this function: identity against the local BTF, or refused.
    ctx.core.check(ctx.elf.sec_name(f.sec), f, base)?;
    Ok(base)
}

/// Finds the `.text` function holding section instruction `si`; places it if needed.
/// Returns the linked index of `si` and, when newly placed, the frame to process.
#[allow(clippy::type_complexity)]
fn resolve_sub(
    ctx: &Ctx<'_, '_>,
    out: &mut Vec<Insn>,
    placed: &mut HashMap<usize, usize>,
    si: usize,
) -> Option<Result<(usize, Option<(Func, usize, usize)>), ObjectError>> {
    let (idx, f) = ctx
        .subprogs
        .iter()
        .enumerate()
        .find(|(_, f)| si >= f.start && si < f.start + f.len)?;
    let delta = si - f.start;
    if let Some(&b) = placed.get(&idx) {
        return Some(Ok((b + delta, None)));
    }
    let b = match append(ctx, out, f) {
        Ok(b) => b,
        Err(e) => return Some(Err(e)),
    };
    placed.insert(idx, b);
    Some(Ok((b + delta, Some((f.clone(), b, 0)))))
}

fn rel_imm(target: usize, at: usize) -> Option<i32> {
    let t = i64::try_from(target).ok()?;
    let a = i64::try_from(at).ok()?;
    i32::try_from(t - a - 1).ok()
}

/// Link the .text function holding instruction `t` into the program and point
/// the call at `at` to it; `what` names the target for the error.
#[allow(clippy::too_many_arguments)]
fn link_text_call(
    ctx: &Ctx<'_, '_>,
    out: &mut Vec<Insn>,
    placed: &mut HashMap<usize, usize>,
    t: usize,
    at: usize,
    sec: &str,
    si: usize,
    what: &str,
) -> Result<Option<(Func, usize, usize)>, ObjectError> {
    let (linked, frame) = match resolve_sub(ctx, out, placed, t) {
        Some(r) => r?,
        None => {
            return Err(reloc_err(
                sec,
                si,
                format!("{what} is not in any .text function"),
            ))
        }
    };
    set_imm(out, at, linked, sec, si)?;
    Ok(frame)
}

#[allow(clippy::too_many_arguments)]
fn reloc_insn(
    ctx: &Ctx<'_, '_>,
    out: &mut Vec<Insn>,
    placed: &mut HashMap<usize, usize>,
    prog: &Func,
    func: &Func,
    base: usize,
    i: usize,
) -> Result<Option<(Func, usize, usize)>, ObjectError> {
    let elf = ctx.elf;
    let sec = elf.sec_name(func.sec).to_string();
    let si = func.start + i;
    let at = base + i;
    let Some(insn) = out.get(at).copied() else {
        return Ok(None);
    };
    let is_call = insn.code == CODE_CALL;
    let is_ld64 = insn.code == CODE_LD_IMM64;
    let where_ = |what: &str| format!("{what} (program '{}', linked insn {at})", prog.name);
    let relo = ctx.relos.get(&func.sec).and_then(|m| m.get(&si)).copied();
    if is_ld64 && i + 1 >= func.len {
        return Err(reloc_err(
            &sec,
            si,
            where_("ld_imm64 is the last instruction of its function"),
        ));
    }

    let Some(r) = relo else {
        // No relocation: only same-section calls and already-final forms remain.
        if is_call && insn.src == BPF_PSEUDO_CALL {
            let t = (si as i64) + i64::from(insn.imm) + 1;
            let inside_self = t >= func.start as i64 && t < (func.start + func.len) as i64;
            if Some(func.sec) == ctx.text_idx {
                let t = usize::try_from(t).map_err(|_| {
                    reloc_err(
                        &sec,
                        si,
                        where_(&format!("call target {t} before the section start")),
                    )
                })?;
                let what = format!("call target insn {t}");
                return link_text_call(ctx, out, placed, t, at, &sec, si, &where_(&what));
            }
            if inside_self {
                return Ok(None);
            }
            return Err(reloc_err(
                &sec,
                si,
                where_(&format!(
                    "bpf-to-bpf call to section insn {t} without a relocation: subprograms must be in .text"
                )),
            ));
        }
        if is_call && insn.src == BPF_PSEUDO_KFUNC_CALL {
            return Err(ObjectError::NotSupported(format!(
                "kfunc call (btf id {}) in section '{sec}' insn {si}, {}",
                insn.imm,
                where_("")
            )));
        }
        if is_ld64 {
            let what = match insn.src {
                BPF_PSEUDO_MAP_FD => Some("ld_imm64 of a map fd"),
                BPF_PSEUDO_MAP_VALUE => Some("ld_imm64 of a map value by fd"),
                BPF_PSEUDO_BTF_ID => Some("ld_imm64 of a kernel BTF id (ksym)"),
                BPF_PSEUDO_FUNC => Some("ld_imm64 of a function address"),
                _ => None,
            };
            if let Some(w) = what {
                return Err(ObjectError::NotSupported(format!(
                    "{w} without a relocation in section '{sec}' insn {si}"
                )));
            }
        }
        return Ok(None);
    };

    let sym = elf.sym(r.sym, &sec, r.offset as usize)?.clone();
    let sname = elf.sym_display(&sym);
    if sym.shndx == 0 {
        let what = if is_call {
            "call to extern function (kfunc)"
        } else {
            "reference to extern symbol (__ksym / __kconfig)"
        };
        return Err(ObjectError::NotSupported(format!(
            "{what} '{sname}' in section '{sec}' insn {si} ({})",
            where_("")
                .trim_start_matches(' ')
                .trim_start_matches('(')
                .trim_end_matches(')')
        )));
    }
    if sym.shndx >= elf.secs.len() && sym.shndx < 0xff00 {
        return Err(reloc_err(
            &sec,
            si,
            where_(&format!(
                "symbol '{sname}' has bad section index {}",
                sym.shndx
            )),
        ));
    }
    if is_call {
        if r.r_type != R_BPF_64_32 {
            return Err(reloc_err(
                &sec,
                si,
                where_(&format!(
                    "call relocation against '{sname}' has type {}, expected R_BPF_64_32 (10)",
                    r.r_type
                )),
            ));
        }
        if insn.src == BPF_PSEUDO_KFUNC_CALL {
            return Err(ObjectError::NotSupported(format!(
                "kfunc call '{sname}' in section '{sec}' insn {si}"
            )));
        }
        if insn.src != BPF_PSEUDO_CALL {
            return Err(reloc_err(
                &sec,
                si,
                where_(&format!(
                    "call with src {} has a relocation against '{sname}'",
                    insn.src
                )),
            ));
        }
        // libbpf: calls must target .text; sub_insn_idx = sym_off / 8 + imm + 1.
        if Some(sym.shndx) != ctx.text_idx {
            return Err(reloc_err(&sec, si, where_(&format!(
                "bad call relocation against '{sname}' in section '{}': subprograms must be in .text",
                elf.sec_name(sym.shndx)
            ))));
        }
        if sym.value % 8 != 0 {
            return Err(reloc_err(
                &sec,
                si,
                where_(&format!(
                    "call target '{sname}' offset {:#x} not a multiple of 8",
                    sym.value
                )),
            ));
        }
        let t = (sym.value / 8) as i64 + i64::from(insn.imm) + 1;
        let t = usize::try_from(t).map_err(|_| {
            reloc_err(
                &sec,
                si,
                where_(&format!("call target {t} before the start of .text")),
            )
        })?;
        let what = format!("call target '{sname}' (.text insn {t})");
        return link_text_call(ctx, out, placed, t, at, &sec, si, &where_(&what));
    }
    if !is_ld64 {
        return Err(reloc_err(&sec, si, where_(&format!(
            "relocation against '{sname}' on instruction code {:#04x}: only ld_imm64 and call take relocations",
            insn.code
        ))));
    }
    if r.r_type != R_BPF_64_64 {
        return Err(reloc_err(
            &sec,
            si,
            where_(&format!(
                "ld_imm64 relocation against '{sname}' has type {}, expected R_BPF_64_64 (1)",
                r.r_type
            )),
        ));
    }
    // Subprogram address (callbacks of bpf_loop, bpf_for_each_map_elem, timers).
    if Some(sym.shndx) == ctx.text_idx && (sym.typ == STT_SECTION || sym.typ == STT_FUNC) {
        if sym.value % 8 != 0 || insn.imm % 8 != 0 {
            return Err(reloc_err(
                &sec,
                si,
                where_(&format!(
                    "function address '{sname}' + {} not a multiple of 8",
                    insn.imm
                )),
            ));
        }
        let off = i64::try_from(sym.value)
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(insn.imm));
        let t = usize::try_from(off / 8)
            .map_err(|_| reloc_err(&sec, si, where_("negative function address")))?;
        let (linked, frame) = match resolve_sub(ctx, out, placed, t) {
            Some(r) => r?,
            None => {
                return Err(reloc_err(
                    &sec,
                    si,
                    where_(&format!(
                        "function address '{sname}' (.text insn {t}) is not in any .text function"
                    )),
                ))
            }
        };
        set_imm(out, at, linked, &sec, si)?;
        if let Some(x) = out.get_mut(at) {
            x.src = BPF_PSEUDO_FUNC;
        }
        return Ok(frame);
    }
    match map_target(ctx, &sym, insn.imm) {
        Target::Map(idx) => {
            let x = out
                .get_mut(at)
                .ok_or_else(|| reloc_err(&sec, si, "out of range".into()))?;
            x.src = BPF_PSEUDO_MAP_IDX;
            x.imm = idx as i32;
        }
        Target::MapValue(idx) => {
            // libbpf RELO_DATA: insn[1].imm = insn[0].imm + sym_off.
            let off = i64::from(insn.imm) + sym.value as i64;
            let off = i32::try_from(off).map_err(|_| {
                reloc_err(
                    &sec,
                    si,
                    where_(&format!("offset {off} into '{sname}' overflows")),
                )
            })?;
            if let Some(x) = out.get_mut(at) {
                x.src = BPF_PSEUDO_MAP_IDX_VALUE;
                x.imm = idx as i32;
            }
            if let Some(x) = out.get_mut(at + 1) {
                x.imm = off;
            }
        }
        Target::None => {
            return Err(reloc_err(&sec, si, where_(&format!(
                "relocation against '{sname}' in section '{}': not a map, global data or .text function",
                elf.sec_name(sym.shndx)
            ))));
        }
    }
    Ok(None)
}

fn map_target(ctx: &Ctx<'_, '_>, sym: &Sym, imm: i32) -> Target {
    if let Some(&m) = ctx.data_map.get(&sym.shndx) {
        return Target::MapValue(m);
    }
    let off = if sym.typ == STT_SECTION {
        sym.value.wrapping_add(imm as i64 as u64)
    } else {
        sym.value
    };
    match ctx.map_at.get(&(sym.shndx, off)) {
        Some(&m) => Target::Map(m),
        None => Target::None,
    }
}

fn set_imm(
    out: &mut [Insn],
    at: usize,
    target: usize,
    sec: &str,
    si: usize,
) -> Result<(), ObjectError> {
    let imm =
        rel_imm(target, at).ok_or_else(|| reloc_err(sec, si, "call offset overflows".into()))?;
    if let Some(x) = out.get_mut(at) {
        x.imm = imm;
    }
    Ok(())
}
