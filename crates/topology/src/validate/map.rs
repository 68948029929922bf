//! `[[object.map]]`: pins and initial entries of an object's maps.

use std::path::Path;

use skiff_object::{MapSpec, Object};

use super::Names;
use crate::error::{At, Ctx, TopologyError};
use crate::model::{MapDecl, MapEntry, Piece};
use crate::parse::parse_bytes;
use crate::raw::{RawEntry, RawMap, RawObject};

/// The maps the file declares for object `oi`, then the maps the object pins
/// by name (LIBBPF_PIN_BY_NAME) itself: those share even when the file does
/// not mention them.
pub(super) fn maps(
    cx: &Ctx,
    names: &Names,
    oi: usize,
    o: &RawObject,
    path: &Path,
    object: &Object,
) -> Result<Vec<MapDecl>, TopologyError> {
    let mut maps: Vec<MapDecl> = Vec::new();
    for (mi, m) in o.map.iter().enumerate() {
        let at = At(format!("object[{oi}].map[{mi}]"));
        let m = m.get_ref();
        let spec = find_spec(cx, &at, m, path, object)?;
        if maps.iter().any(|d| &d.name == m.name.get_ref()) {
            return Err(cx.err(
                &m.name,
                &at.f("name"),
                format!(
                    "map {:?} is declared twice for this object",
                    m.name.get_ref()
                ),
            ));
        }
        let pin = pin_name(cx, &at, m, spec)?;
        let mut entries = Vec::new();
        for (ei, e) in m.entries.iter().enumerate() {
            let at = At(format!("{}.entries[{ei}]", at.0));
            let ctx = EntryCtx { spec, path, object };
            entries.push(entry(cx, names, &at, e.get_ref(), ctx)?);
        }
        maps.push(MapDecl {
            name: m.name.get_ref().clone(),
            pin,
            entries,
            loc: cx.loc(&m.name, &at.f("name")),
        });
    }
    for spec in &object.maps {
        if spec.pinning == 1 && !maps.iter().any(|d| d.name == spec.name) {
            maps.push(MapDecl {
                name: spec.name.clone(),
                pin: Some(spec.name.clone()),
                entries: vec![],
                loc: cx.loc(&o.path, &format!("object[{oi}].path")),
            });
        }
    }
    Ok(maps)
}

/// The map's pin name: `pin`, or its own name when `pinning = "by_name"`
/// or the object asks for LIBBPF_PIN_BY_NAME (`pinning = "none"` overrides
/// the object).
fn pin_name(
    cx: &Ctx,
    at: &At,
    m: &RawMap,
    spec: &MapSpec,
) -> Result<Option<String>, TopologyError> {
    let by_name = match &m.pinning {
        None => spec.pinning == 1,
        Some(p) => match p.get_ref().as_str() {
            "by_name" => true,
            "none" => false,
            other => {
                return Err(cx.err(
                    p,
                    &at.f("pinning"),
                    format!("pinning {other:?}: want \"by_name\" (LIBBPF_PIN_BY_NAME) or \"none\""),
                ))
            }
        },
    };
    match (&m.pin, &m.pinning) {
        (Some(p), _) if p.get_ref().is_empty() || p.get_ref().contains('/') => {
            Err(cx.err(p, &at.f("pin"), "a pin name is non-empty and has no '/'"))
        }
        (Some(_), Some(p)) => Err(cx.err(
            p,
            &at.f("pinning"),
            "give `pin = NAME` or `pinning`, not both",
        )),
        (Some(p), None) => Ok(Some(p.get_ref().clone())),
        (None, _) => Ok(by_name.then(|| spec.name.clone())),
    }
}

fn find_spec<'o>(
    cx: &Ctx,
    at: &At,
    m: &RawMap,
    path: &Path,
    object: &'o Object,
) -> Result<&'o MapSpec, TopologyError> {
    let name = m.name.get_ref();
    object.maps.iter().find(|s| &s.name == name).ok_or_else(|| {
        let has: Vec<&str> = object.maps.iter().map(|s| s.name.as_str()).collect();
        cx.err(
            &m.name,
            &at.f("name"),
            format!(
                "{} has no map {name:?} (it has: {})",
                path.display(),
                has.join(", ")
            ),
        )
    })
}

/// What an entry is checked against: its map and its object.
#[derive(Clone, Copy)]
struct EntryCtx<'a> {
    spec: &'a MapSpec,
    path: &'a Path,
    object: &'a Object,
}

/// One initial entry: sizes as the map's, `ifindex:` and `prog:` pieces naming
/// what exists.
fn entry(
    cx: &Ctx,
    names: &Names,
    at: &At,
    e: &RawEntry,
    ec: EntryCtx,
) -> Result<MapEntry, TopologyError> {
    let name = &ec.spec.name;
    let key = parse_bytes(e.key.get_ref()).map_err(|m| cx.err(&e.key, &at.f("key"), m))?;
    let value = parse_bytes(e.value.get_ref()).map_err(|m| cx.err(&e.value, &at.f("value"), m))?;
    let klen: usize = key.iter().map(Piece::len).sum();
    let vlen: usize = value.iter().map(Piece::len).sum();
    let (key_size, value_size) = (ec.spec.key_size as usize, ec.spec.value_size as usize);
    if klen != key_size && !(key_size == 0 && klen == 0) {
        let msg = format!("{klen} bytes, but map {name:?} has {key_size}-byte keys");
        return Err(cx.err(&e.key, &at.f("key"), msg));
    }
    if vlen != value_size {
        let msg = format!("{vlen} bytes, but map {name:?} has {value_size}-byte values");
        return Err(cx.err(&e.value, &at.f("value"), msg));
    }
    for p in key.iter().chain(&value) {
        let msg = match p {
            Piece::Ifindex { netns, dev } if !names.exists(netns, dev) => {
                format!("ifindex: unknown device {dev:?} in netns {netns:?}")
            }
            Piece::Prog(p) if ec.object.program(p).is_none() => {
                format!("prog: {} has no program {p:?}", ec.path.display())
            }
            _ => continue,
        };
        return Err(cx.err(&e.value, &at.f("value"), msg));
    }
    Ok(MapEntry {
        key,
        value,
        loc: cx.loc(&e.key, &at.f("key")),
    })
}
