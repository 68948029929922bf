//! The fixture file (docs/fixtures.md, version 1) read into plain data: the
//! subject, and per case the frames and map entries going in and what is
//! expected. Errors name the file, the case and the field.

use std::path::{Path, PathBuf};

use skiff_topology::Piece;
use toml_edit::{DocumentMut, Item};

use super::frames::{frame_from_item, Pattern};

/// What the cases run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A topology file, built afresh for every case.
    Topology(PathBuf),
    /// One program of an object, test-run as BPF_PROG_TEST_RUN.
    Object { path: PathBuf, program: String },
}

/// A frame going in (`dev` is required with a topology, refused with an object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameIn {
    pub dev: Option<String>,
    pub bytes: Vec<u8>,
}

/// A key or value as written: typed pieces (`u32:1`, `ipv4:…`, hex).
pub type Pieces = Vec<Piece>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapIn {
    pub map: String,
    pub key: Pieces,
    pub value: Pieces,
}

/// An expected entry: `value` None means the key must be absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapExpect {
    pub map: String,
    pub key: Pieces,
    pub value: Option<Pieces>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameExpect {
    /// `NETNS/NAME` or `NAME`; None with an object (the packet after the run).
    pub dev: Option<String>,
    pub pattern: Pattern,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropExpect {
    pub reason: String,
    pub dev: Option<String>,
    pub hook: Option<String>,
}

/// `[case.expect]`: what is not written is not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub verdict: Option<String>,
    pub retval: Option<i64>,
    /// `"DEV:HOOK" = ["VERDICT", …]`: the verdicts at that hook, packet by packet.
    pub hooks: Vec<(String, Vec<String>)>,
    /// Every frame out, in order (None: not checked).
    pub frames: Option<Vec<FrameExpect>>,
    pub maps: Vec<MapExpect>,
    /// Every drop, in order (None: not checked).
    pub drops: Option<Vec<DropExpect>>,
    /// Netfilter rule and policy counters (topology).
    pub rules: Vec<super::netfilter::RuleExpect>,
    /// Conntrack entries per namespace (topology; None: not checked).
    pub conntrack: Option<super::netfilter::ConntrackExpect>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub frames: Vec<FrameIn>,
    pub maps: Vec<MapIn>,
    pub expect: Expect,
}

pub struct Fixture {
    pub path: PathBuf,
    pub doc: DocumentMut,
    pub subject: Subject,
    pub cases: Vec<Case>,
}

/// Where a field is, for errors: `case[2] "name": expect.frame[0].hex`.
pub(crate) struct At<'a> {
    pub case: Option<(usize, &'a str)>,
    pub field: String,
}

impl<'a> At<'a> {
    pub fn err(&self, msg: impl std::fmt::Display) -> String {
        match self.case {
            Some((i, n)) => format!("case[{i}] {n:?}: {}: {msg}", self.field),
            None => format!("{}: {msg}", self.field),
        }
    }
    pub fn sub(&self, f: &str) -> At<'a> {
        At {
            case: self.case,
            field: match self.field.is_empty() {
                true => f.to_string(),
                false => format!("{}.{f}", self.field),
            },
        }
    }
}

pub(crate) fn str_field<'i>(item: &'i Item, key: &str, at: &At) -> Result<Option<&'i str>, String> {
    match item.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| at.sub(key).err("want a string")),
    }
}

pub(crate) fn int_field(item: &Item, key: &str, at: &At) -> Result<Option<i64>, String> {
    match item.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_integer()
            .map(Some)
            .ok_or_else(|| at.sub(key).err("want an integer")),
    }
}

/// A key or value: one piece as a string, or an array of pieces.
fn pieces(item: &Item, at: &At) -> Result<Pieces, String> {
    let one = |s: &str| skiff_topology::parse_piece(s).map_err(|e| at.err(e));
    if let Some(s) = item.as_str() {
        return Ok(vec![one(s)?]);
    }
    let arr = item.as_array().ok_or_else(|| {
        at.err("want a string or an array of strings (\"u32:1\", \"ipv4:10.0.0.1\", hex)")
    })?;
    arr.iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| at.err("want strings in the array"))
                .and_then(one)
        })
        .collect()
}

/// The tables of an array of tables (`[[case.map]]`) or an array of inline tables.
pub(crate) fn tables(item: Option<&Item>, at: &At) -> Result<Vec<Item>, String> {
    match item {
        None => Ok(Vec::new()),
        Some(Item::ArrayOfTables(a)) => Ok(a.iter().map(|t| Item::Table(t.clone())).collect()),
        Some(Item::Value(toml_edit::Value::Array(a))) => a
            .iter()
            .map(|v| match v {
                toml_edit::Value::InlineTable(t) => {
                    Ok(Item::Value(toml_edit::Value::InlineTable(t.clone())))
                }
                _ => Err(at.err("want tables")),
            })
            .collect(),
        Some(_) => Err(at.err("want an array of tables")),
    }
}

impl Fixture {
    /// Reads and checks a fixture file; an error says file, case and field.
    pub fn load(path: &Path) -> Result<Fixture, String> {
        let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: DocumentMut = src
            .parse()
            .map_err(|e| format!("{}: not TOML: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let (subject, cases) =
            read(doc.as_item(), dir).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Fixture {
            path: path.to_path_buf(),
            doc,
            subject,
            cases,
        })
    }
}

/// Whether a TOML file is a fixture (has `[[case]]`), for directory walks.
pub fn is_fixture(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.parse::<DocumentMut>().ok())
        .is_some_and(|d| d.get("case").is_some() && d.get("version").is_some())
}

fn read(root: &Item, dir: &Path) -> Result<(Subject, Vec<Case>), String> {
    let at = At {
        case: None,
        field: String::new(),
    };
    match int_field(root, "version", &at)? {
        Some(1) => {}
        Some(v) => {
            return Err(format!(
                "version {v}: not supported (this skiff reads version 1)"
            ))
        }
        None => return Err("version: missing (write `version = 1` first)".into()),
    }
    let topology = str_field(root, "topology", &at)?;
    let object = str_field(root, "object", &at)?;
    let program = str_field(root, "program", &at)?;
    let subject = match (topology, object, program) {
        (Some(t), None, None) => Subject::Topology(dir.join(t)),
        (None, Some(o), Some(p)) => Subject::Object {
            path: dir.join(o),
            program: p.to_string(),
        },
        (None, Some(_), None) => {
            return Err("program: missing (object = … needs program = \"NAME\")".into())
        }
        _ => {
            return Err(
                "want either topology = \"FILE\" or object = \"FILE\" with program = \"NAME\""
                    .into(),
            )
        }
    };
    let is_topo = matches!(subject, Subject::Topology(_));
    let mut cases = Vec::new();
    for (i, c) in tables(root.get("case"), &at.sub("case"))?
        .iter()
        .enumerate()
    {
        cases.push(read_case(i, c, dir, is_topo)?);
    }
    if cases.is_empty() {
        return Err("no [[case]] tables".into());
    }
    Ok((subject, cases))
}

fn read_case(i: usize, c: &Item, dir: &Path, is_topo: bool) -> Result<Case, String> {
    let at0 = At {
        case: Some((i, "")),
        field: String::new(),
    };
    let name = str_field(c, "name", &at0)?
        .ok_or_else(|| at0.err("name: missing"))?
        .to_string();
    let at = At {
        case: Some((i, &name)),
        field: String::new(),
    };
    let mut frames = Vec::new();
    for (j, f) in tables(c.get("frame"), &at.sub("frame"))?.iter().enumerate() {
        let fa = at.sub(&format!("frame[{j}]"));
        let dev = str_field(f, "dev", &fa)?.map(String::from);
        match (is_topo, &dev) {
            (true, None) => return Err(fa.err("dev: missing (the device that receives the frame)")),
            (false, Some(_)) => {
                return Err(fa.err("dev: an object's program runs on one packet; leave dev out"))
            }
            _ => {}
        }
        for bytes in frame_from_item(f, dir, &fa)? {
            frames.push(FrameIn {
                dev: dev.clone(),
                bytes,
            });
        }
    }
    if !is_topo && frames.len() != 1 {
        return Err(at.err(format!(
            "an object case runs one frame, {} given",
            frames.len()
        )));
    }
    let mut maps = Vec::new();
    for (j, m) in tables(c.get("map"), &at.sub("map"))?.iter().enumerate() {
        let ma = at.sub(&format!("map[{j}]"));
        maps.push(MapIn {
            map: need_str(m, "name", &ma)?,
            key: pieces(need(m, "key", &ma)?, &ma.sub("key"))?,
            value: pieces(need(m, "value", &ma)?, &ma.sub("value"))?,
        });
    }
    let expect = match c.get("expect") {
        Some(e) => read_expect(e, &at.sub("expect"), is_topo)?,
        None => Expect::default(),
    };
    Ok(Case {
        name,
        frames,
        maps,
        expect,
    })
}

fn need<'i>(item: &'i Item, key: &str, at: &At) -> Result<&'i Item, String> {
    item.get(key).ok_or_else(|| at.sub(key).err("missing"))
}

fn need_str(item: &Item, key: &str, at: &At) -> Result<String, String> {
    str_field(item, key, at)?
        .map(String::from)
        .ok_or_else(|| at.sub(key).err("missing"))
}

fn read_expect(e: &Item, at: &At, is_topo: bool) -> Result<Expect, String> {
    let mut x = Expect {
        verdict: str_field(e, "verdict", at)?.map(String::from),
        retval: int_field(e, "retval", at)?,
        ..Default::default()
    };
    if is_topo && (x.verdict.is_some() || x.retval.is_some()) {
        return Err(at.err("verdict/retval are an object's; a topology's verdicts go in [case.expect.hooks] \"DEV:HOOK\" = [\"VERDICT\"]"));
    }
    if let Some(h) = e.get("hooks") {
        let t = h.as_table_like().ok_or_else(|| {
            at.sub("hooks")
                .err("want a table \"DEV:HOOK\" = [\"VERDICT\", …]")
        })?;
        for (k, v) in t.iter() {
            let ha = at.sub("hooks").sub(k);
            let list = match v.as_str() {
                Some(s) => vec![s.to_string()],
                None => v
                    .as_array()
                    .ok_or_else(|| ha.err("want a verdict or an array of verdicts"))?
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(String::from)
                            .ok_or_else(|| ha.err("want strings"))
                    })
                    .collect::<Result<_, _>>()?,
            };
            x.hooks.push((k.to_string(), list));
        }
    }
    if e.get("frame").is_some() {
        let mut fs = Vec::new();
        for (j, f) in tables(e.get("frame"), &at.sub("frame"))?.iter().enumerate() {
            let fa = at.sub(&format!("frame[{j}]"));
            let dev = str_field(f, "dev", &fa)?.map(String::from);
            if is_topo && dev.is_none() {
                return Err(fa.err("dev: missing (the device that transmits it)"));
            }
            fs.push(FrameExpect {
                dev,
                pattern: super::frames::pattern_from_item(f, &fa)?,
            });
        }
        x.frames = Some(fs);
    }
    for (j, m) in tables(e.get("map"), &at.sub("map"))?.iter().enumerate() {
        let ma = at.sub(&format!("map[{j}]"));
        let absent = m.get("absent").and_then(|a| a.as_bool()).unwrap_or(false);
        let value = match (m.get("value"), absent) {
            (Some(v), false) => Some(pieces(v, &ma.sub("value"))?),
            (None, true) => None,
            _ => return Err(ma.err("want value = … or absent = true")),
        };
        x.maps.push(MapExpect {
            map: need_str(m, "name", &ma)?,
            key: pieces(need(m, "key", &ma)?, &ma.sub("key"))?,
            value,
        });
    }
    if e.get("drop").is_some() {
        let mut ds = Vec::new();
        for (j, d) in tables(e.get("drop"), &at.sub("drop"))?.iter().enumerate() {
            let da = at.sub(&format!("drop[{j}]"));
            ds.push(DropExpect {
                reason: need_str(d, "reason", &da)?,
                dev: str_field(d, "dev", &da)?.map(String::from),
                hook: str_field(d, "hook", &da)?.map(String::from),
            });
        }
        x.drops = Some(ds);
    }
    x.rules = super::netfilter::read_rules(e, at)?;
    x.conntrack = super::netfilter::read_conntrack(e, at)?;
    if !is_topo && (!x.rules.is_empty() || x.conntrack.is_some()) {
        return Err(at.err("rule/conntrack need a topology"));
    }
    Ok(x)
}
