//! A comparison printed: readable text, or one JSON object whose shape
//! docs/diff.md fixes as a contract.

use serde_json::{json, Value};

use super::compare::{Comparison, DeviceComparison, EntryDiff, FrameDiff, MapComparison};

/// The most differences printed per NIC or map in the text form (the JSON
/// form has them all).
const TEXT_MAX: usize = 20;

pub fn print(c: &Comparison, as_json: bool) {
    if as_json {
        println!("{}", to_json(c));
    } else {
        print!("{}", to_text(c));
    }
}

pub fn print_error(why: &str, as_json: bool) {
    if as_json {
        println!("{}", json!({ "result": "error", "error": why }));
    } else {
        eprintln!("skiff diff: could not run: {why}");
    }
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// A frame for reading: its length and first 64 bytes in hex.
fn show(f: &[u8]) -> String {
    let head = f.get(..64).unwrap_or(f);
    let more = if f.len() > 64 { "..." } else { "" };
    format!("[{} bytes] {}{more}", f.len(), hex(head))
}

pub fn to_text(c: &Comparison) -> String {
    let mut o = String::new();
    if !c.namespaces.is_empty() {
        o += &format!("kernel namespaces: {}\n", c.namespaces.join(", "));
    }
    for n in &c.notes {
        o += &format!("note: {n}\n");
    }
    for d in &c.devices {
        o += &device_text(d);
    }
    for m in &c.maps {
        o += &map_text(m);
    }
    let frames: usize = c.devices.iter().map(|d| d.diffs.len()).sum();
    let entries: usize = c.maps.iter().map(|m| m.diffs.len()).sum();
    o += &match c.identical() {
        true => "result: identical\n".to_string(),
        false => format!(
            "result: different ({frames} frame difference(s), {entries} map entry difference(s))\n"
        ),
    };
    o
}

fn device_text(d: &DeviceComparison) -> String {
    let mut o = format!(
        "frames out of {}: skiff {}, kernel {}, identical {}\n",
        d.dev, d.skiff_frames, d.kernel_frames, d.identical
    );
    for x in d.diffs.iter().take(TEXT_MAX) {
        o += &match x {
            FrameDiff::Different { skiff_index, kernel_index, offset, field, skiff, kernel } => format!(
                "  skiff #{skiff_index} / kernel #{kernel_index} differ{}: {field}\n    skiff:  {}\n    kernel: {}\n",
                offset.map(|o| format!(" at byte {o}")).unwrap_or_default(),
                show(skiff),
                show(kernel)
            ),
            FrameDiff::OnlySkiff { index, frame } => format!("  only skiff #{index}: {}\n", show(frame)),
            FrameDiff::OnlyKernel { index, frame } => format!("  only kernel #{index}: {}\n", show(frame)),
        };
    }
    if d.diffs.len() > TEXT_MAX {
        o += &format!(
            "  ... {} more (--json lists all)\n",
            d.diffs.len() - TEXT_MAX
        );
    }
    o
}

fn map_text(m: &MapComparison) -> String {
    let state = match (m.compared, m.diffs.is_empty()) {
        (false, _) => m.how.clone(),
        (true, true) => format!("identical ({})", m.how),
        (true, false) => format!("{} difference(s) ({})", m.diffs.len(), m.how),
    };
    let mut o = format!(
        "map {}: skiff {} entries, kernel {}: {state}\n",
        m.map, m.skiff_entries, m.kernel_entries
    );
    for x in m.diffs.iter().take(TEXT_MAX) {
        o += &match x {
            EntryDiff::Different { key, skiff, kernel } => format!(
                "  key {}: skiff {}, kernel {}\n",
                hex(key),
                hex(skiff),
                hex(kernel)
            ),
            EntryDiff::OnlySkiff { key, value } => {
                format!("  key {} only in skiff: {}\n", hex(key), hex(value))
            }
            EntryDiff::OnlyKernel { key, value } => {
                format!("  key {} only in the kernel: {}\n", hex(key), hex(value))
            }
        };
    }
    if m.diffs.len() > TEXT_MAX {
        o += &format!(
            "  ... {} more (--json lists all)\n",
            m.diffs.len() - TEXT_MAX
        );
    }
    o
}

pub fn to_json(c: &Comparison) -> Value {
    json!({
        "result": if c.identical() { "identical" } else { "different" },
        "namespaces": c.namespaces,
        "notes": c.notes,
        "devices": c.devices.iter().map(device_json).collect::<Vec<_>>(),
        "maps": c.maps.iter().map(map_json).collect::<Vec<_>>(),
    })
}

fn device_json(d: &DeviceComparison) -> Value {
    let diffs: Vec<Value> = d
        .diffs
        .iter()
        .map(|x| match x {
            FrameDiff::Different {
                skiff_index,
                kernel_index,
                offset,
                field,
                skiff,
                kernel,
            } => json!({
                "kind": "different",
                "skiff_index": skiff_index,
                "kernel_index": kernel_index,
                "offset": offset,
                "field": field,
                "skiff": hex(skiff),
                "kernel": hex(kernel),
            }),
            FrameDiff::OnlySkiff { index, frame } => {
                json!({ "kind": "only_skiff", "skiff_index": index, "skiff": hex(frame) })
            }
            FrameDiff::OnlyKernel { index, frame } => {
                json!({ "kind": "only_kernel", "kernel_index": index, "kernel": hex(frame) })
            }
        })
        .collect();
    json!({
        "dev": d.dev,
        "skiff_frames": d.skiff_frames,
        "kernel_frames": d.kernel_frames,
        "identical": d.identical,
        "differences": diffs,
    })
}

fn map_json(m: &MapComparison) -> Value {
    let diffs: Vec<Value> = m
        .diffs
        .iter()
        .map(|x| match x {
            EntryDiff::Different { key, skiff, kernel } => {
                json!({ "kind": "different", "key": hex(key), "skiff": hex(skiff), "kernel": hex(kernel) })
            }
            EntryDiff::OnlySkiff { key, value } => {
                json!({ "kind": "only_skiff", "key": hex(key), "skiff": hex(value) })
            }
            EntryDiff::OnlyKernel { key, value } => {
                json!({ "kind": "only_kernel", "key": hex(key), "kernel": hex(value) })
            }
        })
        .collect();
    json!({
        "map": m.map,
        "skiff_entries": m.skiff_entries,
        "kernel_entries": m.kernel_entries,
        "compared": m.compared,
        "how": m.how,
        "differences": diffs,
    })
}
