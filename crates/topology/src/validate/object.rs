//! `[[object]]`: the object file (parsed now, so that a missing file or
//! program is a validation error), its maps and its attachments.

use std::collections::HashMap;
use std::path::Path;

use skiff_object::{MapSpec, Object};
use toml::Spanned;

use super::attach::{self, Hooks};
use super::{map, Names};
use crate::error::{Ctx, TopologyError};
use crate::model::{MapDecl, ObjectDecl};
use crate::raw::RawObject;

/// Every object, in file order (attachments may refer to earlier ones).
pub(super) fn objects(
    cx: &Ctx,
    names: &Names,
    raw: &[Spanned<RawObject>],
    dir: &Path,
) -> Result<Vec<ObjectDecl>, TopologyError> {
    let mut hooks = Hooks::default();
    // pin name -> (map spec of its first declarer, line)
    let mut pins: HashMap<String, (MapSpec, usize)> = HashMap::new();
    let mut objects = Vec::new();
    for (oi, o) in raw.iter().enumerate() {
        let o = o.get_ref();
        let of = |field: &str| format!("object[{oi}].{field}");
        let path = dir.join(o.path.get_ref());
        let object = read_object(cx, &o.path, &of("path"), &path)?;
        let maps = map::maps(cx, names, oi, o, &path, &object)?;
        check_pins(cx, &mut pins, &maps, &object)?;
        let mut attach = Vec::new();
        for (ai, a) in o.attach.iter().enumerate() {
            let prog = attach::Prog {
                path: &path,
                object: &object,
            };
            attach.push(attach::attach(
                cx,
                names,
                &mut hooks,
                (oi, ai),
                a.get_ref(),
                prog,
            )?);
        }
        objects.push(ObjectDecl {
            path,
            object,
            maps,
            attach,
            loc: cx.loc(&o.path, &of("path")),
        });
    }
    Ok(objects)
}

fn read_object(
    cx: &Ctx,
    at: &Spanned<String>,
    field: &str,
    path: &Path,
) -> Result<Object, TopologyError> {
    let bytes = std::fs::read(path).map_err(|e| {
        cx.err(
            at,
            field,
            format!("missing object file {}: {e}", path.display()),
        )
    })?;
    Object::parse(&bytes).map_err(|e| cx.err(at, field, format!("{}: {e}", path.display())))
}

/// libbpf.c: map_is_reuse_compat: a map pinned under a name already taken
/// must match the first one's parameters.
fn check_pins(
    cx: &Ctx,
    pins: &mut HashMap<String, (MapSpec, usize)>,
    maps: &[MapDecl],
    object: &Object,
) -> Result<(), TopologyError> {
    for d in maps {
        let (Some(pin), Some(spec)) = (&d.pin, object.maps.iter().find(|s| s.name == d.name))
        else {
            continue;
        };
        let Some((first, line)) = pins.get(pin) else {
            pins.insert(pin.clone(), (spec.clone(), d.loc.line));
            continue;
        };
        if !reuse_compat(first, spec) {
            return Err(d.loc.error(cx.file, format!(
                "couldn't reuse pinned map {pin:?}: parameter mismatch with the map pinned at line {line} (type {}/{}, key {}/{}, value {}/{}, max_entries {}/{}, flags {:#x}/{:#x}) (EINVAL, as libbpf)",
                first.map_type, spec.map_type, first.key_size, spec.key_size, first.value_size, spec.value_size, first.max_entries, spec.max_entries, first.map_flags, spec.map_flags
            )));
        }
    }
    Ok(())
}

fn reuse_compat(first: &MapSpec, spec: &MapSpec) -> bool {
    first.map_type == spec.map_type
        && first.key_size == spec.key_size
        && first.value_size == spec.value_size
        && first.max_entries == spec.max_entries
        && first.map_flags == spec.map_flags
        && first.map_extra == spec.map_extra
}
