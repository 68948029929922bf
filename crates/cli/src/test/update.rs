//! `skiff test --update`: what a case observed written into its
//! `[case.expect]`, in place: the rest of the file (comments, order, the
//! frames and maps going in) as it was. Expected frames that still match
//! (their `x` masks included) are kept as written.

use toml_edit::{value, Array, DocumentMut, InlineTable, Item, Table, Value};

use super::expect::Observed;
use super::fixture::Case;

fn str_array<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    let mut a = Array::new();
    for s in items {
        a.push(s.as_str());
    }
    Value::Array(a)
}

fn expect_table(doc: &mut DocumentMut, i: usize) -> Result<&mut dyn toml_edit::TableLike, String> {
    let case = doc
        .get_mut("case")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|a| a.get_mut(i))
        .ok_or("--update needs the cases as [[case]] tables")?;
    if !case.contains_key("expect") {
        let mut t = Table::new();
        // right after its case, before the next [[case]]
        t.set_position(case.position());
        case.insert("expect", Item::Table(t));
    }
    case.get_mut("expect")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| "expect: not a table".to_string())
}

/// Writes `o` as case `i`'s expectation.
pub fn write(doc: &mut DocumentMut, i: usize, case: &Case, o: &Observed) -> Result<(), String> {
    let x = expect_table(doc, i)?;
    if let Some(v) = &o.verdict {
        x.insert("verdict", value(v.as_str()));
    }
    if let (Some(r), true) = (o.retval, x.contains_key("retval")) {
        x.insert("retval", value(i64::from(r as i32)));
    }
    if o.verdict.is_none() {
        write_hooks(x, o);
    }
    let frames_still_match = case.expect.frames.as_ref().is_some_and(|w| {
        w.len() == o.frames.len()
            && w.iter().zip(&o.frames).all(|(w, (dev, b))| {
                w.pattern.matches(b)
                    && w.dev
                        .as_deref()
                        .map(|d| d.strip_prefix("host/").unwrap_or(d))
                        == dev.as_deref()
            })
    });
    if !frames_still_match {
        let mut a = Array::new();
        for (dev, bytes) in &o.frames {
            let mut t = InlineTable::new();
            if let Some(d) = dev {
                t.insert("dev", d.as_str().into());
            }
            t.insert("hex", hex::encode(bytes).into());
            a.push(t);
        }
        x.insert("frame", value(a));
    }
    if o.verdict.is_none() {
        let mut a = Array::new();
        for d in &o.drops {
            let mut t = InlineTable::new();
            t.insert("reason", d.reason.as_str().into());
            if let Some(dev) = &d.dev {
                t.insert("dev", dev.as_str().into());
            }
            if let Some(h) = &d.hook {
                t.insert("hook", h.as_str().into());
            }
            a.push(t);
        }
        x.insert("drop", value(a));
    }
    write_maps(x, case, o)
}

/// `hooks`: a `[case.expect.hooks]` table is rewritten in place (its header
/// and comments kept), else an inline table is written.
fn write_hooks(x: &mut dyn toml_edit::TableLike, o: &Observed) {
    if let Some(Item::Table(t)) = x.get_mut("hooks") {
        let stale: Vec<String> = t
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| !o.hooks.iter().any(|(h, _)| h == k))
            .collect();
        for k in stale {
            t.remove(&k);
        }
        for (k, v) in &o.hooks {
            t.insert(k, Item::Value(str_array(v)));
        }
        return;
    }
    let mut hooks = InlineTable::new();
    for (k, v) in &o.hooks {
        hooks.insert(k, str_array(v));
    }
    x.insert("hooks", value(hooks));
}

/// The observed value of each `[[case.expect.map]]` entry that no longer
/// matches, as hex (matching ones keep their typed form).
fn write_maps(x: &mut dyn toml_edit::TableLike, case: &Case, o: &Observed) -> Result<(), String> {
    let Some(item) = x.get_mut("map") else {
        return Ok(());
    };
    let stale: Vec<bool> = case
        .expect
        .maps
        .iter()
        .zip(&o.maps)
        .map(|(m, got)| {
            let mut d = Vec::new();
            super::expect::compare_map(m, got.as_deref(), &mut d);
            !d.is_empty()
        })
        .collect();
    let set = |t: &mut dyn toml_edit::TableLike, got: &Option<Vec<u8>>| match got {
        Some(v) => {
            t.remove("absent");
            t.insert("value", value(hex::encode(v)));
        }
        None => {
            t.remove("value");
            t.insert("absent", value(true));
        }
    };
    match item {
        Item::ArrayOfTables(a) => {
            for ((t, got), _) in a.iter_mut().zip(&o.maps).zip(&stale).filter(|(_, s)| **s) {
                set(t, got);
            }
        }
        Item::Value(Value::Array(a)) => {
            for ((v, got), _) in a.iter_mut().zip(&o.maps).zip(&stale).filter(|(_, s)| **s) {
                if let Value::InlineTable(t) = v {
                    set(t, got);
                }
            }
        }
        _ => return Err("expect.map: want an array of tables".into()),
    }
    Ok(())
}
