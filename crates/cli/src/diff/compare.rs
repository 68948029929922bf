//! Two sides' results compared: per NIC the frames it transmitted, aligned in
//! order (longest common subsequence of the masked frames, so one frame more
//! or less on a side does not shift every later frame into a difference), and
//! per map its entries by key.

use std::collections::BTreeMap;

use skiff_kernel::mask::normalise;

use super::side::{MapDump, MapKind, SideResult};

/// Above this many frames on a NIC the alignment is by position only (the
/// common-subsequence table grows with the product of both counts).
const ALIGN_MAX: usize = 3000;

/// One difference in a NIC's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameDiff {
    /// Two frames in the same place of the output that differ; `offset` is
    /// the first differing byte after masking (None: the bytes agree and a
    /// checksum is valid on one side only), `field` what is there.
    Different {
        skiff_index: usize,
        kernel_index: usize,
        offset: Option<usize>,
        field: String,
        skiff: Vec<u8>,
        kernel: Vec<u8>,
    },
    OnlySkiff {
        index: usize,
        frame: Vec<u8>,
    },
    OnlyKernel {
        index: usize,
        frame: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceComparison {
    /// `NETNS/NAME` of the NIC.
    pub dev: String,
    pub skiff_frames: usize,
    pub kernel_frames: usize,
    pub identical: usize,
    pub diffs: Vec<FrameDiff>,
}

/// One difference in a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryDiff {
    Different {
        key: Vec<u8>,
        skiff: Vec<u8>,
        kernel: Vec<u8>,
    },
    OnlySkiff {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    OnlyKernel {
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapComparison {
    /// Pin name, else `OBJECT/MAP`.
    pub map: String,
    pub skiff_entries: usize,
    pub kernel_entries: usize,
    /// False when the map is not dumped on one side or its values cannot be
    /// compared; `how` says why.
    pub compared: bool,
    /// How the entries were compared ("bytes", "keys only ...", "sum over
    /// CPUs ..."), or why not.
    pub how: String,
    pub diffs: Vec<EntryDiff>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub devices: Vec<DeviceComparison>,
    pub maps: Vec<MapComparison>,
    /// How the kernel side differs from the topology (netkit, NICs) and what
    /// was left out.
    pub notes: Vec<String>,
    pub namespaces: Vec<String>,
}

impl Comparison {
    pub fn identical(&self) -> bool {
        self.devices.iter().all(|d| d.diffs.is_empty())
            && self.maps.iter().all(|m| m.diffs.is_empty())
    }
}

/// Compares what skiff and the kernel saw; `kinds` says how each map's
/// values compare (maps not listed compare byte for byte).
pub fn compare(
    skiff: &SideResult,
    kernel: &SideResult,
    kinds: &BTreeMap<String, MapKind>,
) -> Comparison {
    let empty = Vec::new();
    let devs: std::collections::BTreeSet<&String> =
        skiff.frames.keys().chain(kernel.frames.keys()).collect();
    let devices = devs
        .into_iter()
        .map(|d| {
            let s = skiff.frames.get(d).unwrap_or(&empty);
            let k = kernel.frames.get(d).unwrap_or(&empty);
            compare_frames(d, s, k)
        })
        .collect();
    let names: std::collections::BTreeSet<&String> =
        skiff.maps.keys().chain(kernel.maps.keys()).collect();
    let maps = names
        .into_iter()
        .map(|n| {
            let kind = kinds.get(n).copied().unwrap_or(MapKind::Plain);
            compare_map(n, skiff.maps.get(n), kernel.maps.get(n), kind)
        })
        .collect();
    Comparison {
        devices,
        maps,
        ..Default::default()
    }
}

/// A frame masked ([`normalise`]) and the problems found on it.
type Masked = (Vec<u8>, Vec<String>);

fn compare_frames(dev: &str, skiff: &[Vec<u8>], kernel: &[Vec<u8>]) -> DeviceComparison {
    let s: Vec<Masked> = skiff.iter().map(|f| normalise(f)).collect();
    let k: Vec<Masked> = kernel.iter().map(|f| normalise(f)).collect();
    let mut out = DeviceComparison {
        dev: dev.to_string(),
        skiff_frames: s.len(),
        kernel_frames: k.len(),
        identical: 0,
        diffs: Vec::new(),
    };
    // runs of unmatched frames between two matches pair up in order
    let (mut only_s, mut only_k) = (Vec::new(), Vec::new());
    for op in align(&s, &k) {
        match op {
            Op::Same => {
                out.identical += 1;
                flush(
                    &mut out.diffs,
                    &mut only_s,
                    &mut only_k,
                    skiff,
                    kernel,
                    &s,
                    &k,
                );
            }
            Op::Skiff(i) => only_s.push(i),
            Op::Kernel(j) => only_k.push(j),
        }
    }
    flush(
        &mut out.diffs,
        &mut only_s,
        &mut only_k,
        skiff,
        kernel,
        &s,
        &k,
    );
    out
}

fn flush(
    diffs: &mut Vec<FrameDiff>,
    only_s: &mut Vec<usize>,
    only_k: &mut Vec<usize>,
    skiff: &[Vec<u8>],
    kernel: &[Vec<u8>],
    s: &[Masked],
    k: &[Masked],
) {
    let frame = |v: &[Vec<u8>], i: usize| v.get(i).cloned().unwrap_or_default();
    let n = only_s.len().max(only_k.len());
    for x in 0..n {
        match (only_s.get(x), only_k.get(x)) {
            (Some(&i), Some(&j)) => {
                let (ms, mk) = (
                    s.get(i).cloned().unwrap_or_default(),
                    k.get(j).cloned().unwrap_or_default(),
                );
                let (offset, field) = first_difference(&ms, &mk);
                diffs.push(FrameDiff::Different {
                    skiff_index: i,
                    kernel_index: j,
                    offset,
                    field,
                    skiff: frame(skiff, i),
                    kernel: frame(kernel, j),
                });
            }
            (Some(&i), None) => diffs.push(FrameDiff::OnlySkiff {
                index: i,
                frame: frame(skiff, i),
            }),
            (None, Some(&j)) => diffs.push(FrameDiff::OnlyKernel {
                index: j,
                frame: frame(kernel, j),
            }),
            (None, None) => {}
        }
    }
    only_s.clear();
    only_k.clear();
}

/// Where two masked frames first differ, and what is there.
fn first_difference(s: &Masked, k: &Masked) -> (Option<usize>, String) {
    let (a, b) = (&s.0, &k.0);
    match a.iter().zip(b.iter()).position(|(x, y)| x != y) {
        Some(off) => (Some(off), field_at(a, off)),
        None if a.len() != b.len() => (
            Some(a.len().min(b.len())),
            format!("length (skiff {} bytes, kernel {})", a.len(), b.len()),
        ),
        None => (
            None,
            format!(
                "checksums: skiff [{}], kernel [{}]",
                s.1.join(", "),
                k.1.join(", ")
            ),
        ),
    }
}

enum Op {
    Same,
    Skiff(usize),
    Kernel(usize),
}

/// The edit script of a longest common subsequence (position by position
/// above ALIGN_MAX frames).
fn align(s: &[Masked], k: &[Masked]) -> Vec<Op> {
    let (n, m) = (s.len(), k.len());
    if n > ALIGN_MAX || m > ALIGN_MAX {
        let mut ops = Vec::with_capacity(n.max(m) * 2);
        for x in 0..n.max(m) {
            match (s.get(x), k.get(x)) {
                (Some(a), Some(b)) if a == b => ops.push(Op::Same),
                (a, b) => {
                    ops.extend(a.map(|_| Op::Skiff(x)));
                    ops.extend(b.map(|_| Op::Kernel(x)));
                }
            }
        }
        return ops;
    }
    // lcs[i][j]: the longest common subsequence of s[i..] and k[j..]
    let w = m + 1;
    let mut lcs = vec![0u16; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if s[i] == k[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
            lcs[i * w + j] = v;
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && s[i] == k[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
            ops.push(Op::Kernel(j));
            j += 1;
        } else {
            ops.push(Op::Skiff(i));
            i += 1;
        }
    }
    ops
}

/// What byte `off` of an Ethernet frame is: header fields of Ethernet,
/// ARP, IPv4 (with TCP, UDP, ICMP) and IPv6 by name, else a payload offset.
pub fn field_at(f: &[u8], off: usize) -> String {
    const ETH: usize = 14;
    let named = |name: &str| name.to_string();
    match off {
        0..=5 => return named("Ethernet destination"),
        6..=11 => return named("Ethernet source"),
        12..=13 => return named("EtherType"),
        _ => {}
    }
    let rel = off - ETH;
    match f.get(12..14) {
        Some([0x08, 0x00]) => ipv4_field(f, rel),
        Some([0x86, 0xdd]) => match rel {
            0..=3 => named("IPv6 version/traffic class/flow label"),
            4..=5 => named("IPv6 payload length"),
            6 => named("IPv6 next header"),
            7 => named("IPv6 hop limit"),
            8..=23 => named("IPv6 source"),
            24..=39 => named("IPv6 destination"),
            r => format!("IPv6 payload byte {}", r - 40),
        },
        Some([0x08, 0x06]) => match rel {
            6..=7 => named("ARP opcode"),
            8..=13 => named("ARP sender MAC"),
            14..=17 => named("ARP sender IP"),
            18..=23 => named("ARP target MAC"),
            24..=27 => named("ARP target IP"),
            r => format!("ARP byte {r}"),
        },
        _ => format!("byte {off}"),
    }
}

fn ipv4_field(f: &[u8], rel: usize) -> String {
    let ihl = f.get(14).map_or(20, |b| usize::from(b & 0x0f) * 4);
    let proto = f.get(23).copied().unwrap_or(0);
    let name = match rel {
        0 => "IPv4 version/IHL",
        1 => "IPv4 TOS",
        2..=3 => "IPv4 total length",
        4..=5 => "IPv4 id",
        6..=7 => "IPv4 flags/fragment offset",
        8 => "IPv4 TTL",
        9 => "IPv4 protocol",
        10..=11 => "IPv4 header checksum",
        12..=15 => "IPv4 source",
        16..=19 => "IPv4 destination",
        r if r < ihl => "IPv4 options",
        _ => "",
    };
    if !name.is_empty() {
        return name.to_string();
    }
    let l4 = rel - ihl;
    let name = match (proto, l4) {
        (6, 0..=1) => "TCP source port",
        (6, 2..=3) => "TCP destination port",
        (6, 4..=7) => "TCP sequence number",
        (6, 8..=11) => "TCP acknowledgment number",
        (6, 12..=13) => "TCP data offset/flags",
        (6, 14..=15) => "TCP window",
        (6, 16..=17) => "TCP checksum",
        (17, 0..=1) => "UDP source port",
        (17, 2..=3) => "UDP destination port",
        (17, 4..=5) => "UDP length",
        (17, 6..=7) => "UDP checksum",
        (1, 0) => "ICMP type",
        (1, 1) => "ICMP code",
        (1, 2..=3) => "ICMP checksum",
        (1, 4..=7) => "ICMP rest of header",
        _ => "",
    };
    match name {
        "" => format!("IPv4 payload byte {l4} (protocol {proto})"),
        n => n.to_string(),
    }
}

fn compare_map(
    name: &str,
    skiff: Option<&MapDump>,
    kernel: Option<&MapDump>,
    kind: MapKind,
) -> MapComparison {
    let mut out = MapComparison {
        map: name.to_string(),
        skiff_entries: skiff.map_or(0, Vec::len),
        kernel_entries: kernel.map_or(0, Vec::len),
        compared: false,
        how: "bytes".into(),
        diffs: Vec::new(),
    };
    let (Some(skiff), Some(kernel)) = (skiff, kernel) else {
        out.how = format!(
            "not compared: not dumped on the {} side (a map the kernel has no lookup for: ringbuf, xskmap, perf event array)",
            if skiff.is_none() { "skiff" } else { "kernel" }
        );
        return out;
    };
    let value_of = |v: &[u8]| -> Option<Vec<u8>> {
        match kind {
            MapKind::Plain => Some(v.to_vec()),
            MapKind::Ids => Some(Vec::new()),
            MapKind::PerCpu { value_size } => percpu_sum(v, value_size),
        }
    };
    match kind {
        MapKind::Ids => out.how = "keys only (the values are program or map ids)".into(),
        MapKind::PerCpu { value_size } if value_size % 8 != 0 || value_size == 0 => {
            out.how = format!(
                "not compared: per-CPU values of {value_size} bytes (summed over CPUs as u64 words only when the size is a multiple of 8)"
            );
            return out;
        }
        MapKind::PerCpu { .. } => out.how = "sum over CPUs of each u64 word (per-CPU)".into(),
        MapKind::Plain => {}
    }
    out.compared = true;
    let s: BTreeMap<&Vec<u8>, &Vec<u8>> = skiff.iter().map(|(k, v)| (k, v)).collect();
    let k: BTreeMap<&Vec<u8>, &Vec<u8>> = kernel.iter().map(|(k, v)| (k, v)).collect();
    for (key, sv) in &s {
        match k.get(key) {
            Some(kv) if value_of(sv) == value_of(kv) => {}
            Some(kv) => out.diffs.push(EntryDiff::Different {
                key: key.to_vec(),
                skiff: sv.to_vec(),
                kernel: kv.to_vec(),
            }),
            None => out.diffs.push(EntryDiff::OnlySkiff {
                key: key.to_vec(),
                value: sv.to_vec(),
            }),
        }
    }
    for (key, kv) in &k {
        if !s.contains_key(key) {
            out.diffs.push(EntryDiff::OnlyKernel {
                key: key.to_vec(),
                value: kv.to_vec(),
            });
        }
    }
    out
}

/// A per-CPU value (one `value_size` slot per CPU, `value_size` a multiple
/// of 8) summed over CPUs word by word (wrapping, as counters do).
fn percpu_sum(v: &[u8], value_size: usize) -> Option<Vec<u8>> {
    let mut sum = vec![0u64; value_size / 8];
    for cpu in v.chunks(value_size) {
        for (acc, w) in sum.iter_mut().zip(cpu.chunks_exact(8)) {
            let word = u64::from_ne_bytes(w.try_into().ok()?);
            *acc = acc.wrapping_add(word);
        }
    }
    Some(sum.iter().flat_map(|w| w.to_ne_bytes()).collect())
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
