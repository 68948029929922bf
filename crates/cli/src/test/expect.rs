//! Running one case on a fresh subject, what it observed, and the comparison
//! with the expectation as readable lines (which hook, which frame and byte
//! and field, which map key).

use skiff_topology::Piece;

use super::fixture::{Case, DropExpect, Expect, MapExpect, Pieces, Subject};
use crate::harness::{network::resolve_dev, Error, Network, Prog};

/// What a case did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// An object's verdict name and return value.
    pub verdict: Option<String>,
    pub retval: Option<u32>,
    /// `DEV:HOOK` -> the verdicts there, packet by packet (program hooks only),
    /// in the order the hooks were first passed.
    pub hooks: Vec<(String, Vec<String>)>,
    /// (device, bytes): what NICs transmitted, or an object's packet after the run.
    pub frames: Vec<(Option<String>, Vec<u8>)>,
    pub drops: Vec<DropExpect>,
    /// Per `expect.map` entry, the value found (None: absent).
    pub maps: Vec<Option<Vec<u8>>>,
    /// Per `expect.rule` entry, its (packets, bytes) or why there is none.
    pub rules: Vec<Result<(u64, u64), String>>,
    /// Per `expect.conntrack` namespace, its `conntrack -L` lines.
    pub conntrack: super::netfilter::ConntrackExpect,
}

/// `host/eth0` as `eth0`; other namespaces stay `NETNS/NAME`.
fn short_dev(d: &str) -> String {
    d.strip_prefix("host/").unwrap_or(d).to_string()
}

/// A case's key or value bytes (ifindexes looked up in the topology).
fn resolve(p: &Pieces, net: Option<&mut Network>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut net = net;
    for piece in p {
        match piece {
            Piece::Bytes(b) => out.extend_from_slice(b),
            Piece::Ifindex { netns, dev } => {
                let n = net
                    .as_deref_mut()
                    .ok_or_else(|| Error::Input(format!("ifindex:{dev}: an object has no devices")))?;
                let dp = n.datapath();
                let d = resolve_dev(dp, &format!("{netns}/{dev}"))?;
                out.extend_from_slice(&dp.ifindex(d).unwrap_or(0).to_ne_bytes());
            }
            Piece::Prog(name) => {
                return Err(Error::Input(format!(
                    "prog:{name}: not supported in fixture maps (set PROG_ARRAY slots in the topology file)"
                )))
            }
        }
    }
    Ok(out)
}

/// Runs `case` on a freshly loaded subject.
pub fn run_case(subject: &Subject, case: &Case) -> Result<Observed, Error> {
    match subject {
        Subject::Object { path, program } => run_object(path, program, case),
        Subject::Topology(path) => run_topology(path, case),
    }
}

fn run_object(path: &std::path::Path, program: &str, case: &Case) -> Result<Observed, Error> {
    let mut p = Prog::load(path, program)?;
    for m in &case.maps {
        p.map(&m.map)?
            .update(&resolve(&m.key, None)?, &resolve(&m.value, None)?)?;
    }
    let frame = case
        .frames
        .first()
        .map(|f| f.bytes.as_slice())
        .unwrap_or(&[]);
    let out = p.run(frame)?;
    let mut maps = Vec::new();
    for m in &case.expect.maps {
        maps.push(p.map(&m.map)?.lookup(&resolve(&m.key, None)?)?);
    }
    Ok(Observed {
        verdict: Some(out.verdict),
        retval: Some(out.retval),
        frames: vec![(None, out.data_out)],
        maps,
        ..Default::default()
    })
}

fn run_topology(path: &std::path::Path, case: &Case) -> Result<Observed, Error> {
    let mut net = Network::load(path)?;
    for m in &case.maps {
        let key = resolve(&m.key, Some(&mut net))?;
        let value = resolve(&m.value, Some(&mut net))?;
        net.map(&m.map)?.update(&key, &value)?;
    }
    let frames: Vec<(&str, &[u8])> = case
        .frames
        .iter()
        .map(|f| (f.dev.as_deref().unwrap_or(""), f.bytes.as_slice()))
        .collect();
    let mut out = net.send_all(&frames)?;
    let end = net.finish();
    out.steps.extend(end.steps);
    out.transmitted.extend(end.transmitted);
    out.drops.extend(end.drops);
    let mut obs = Observed::default();
    // the programs' verdicts and netfilter's (`DEV:nf-HOOK:TABLE`, one
    // list per table or conntrack entry); drops are the `drop` list's
    for s in out
        .steps
        .iter()
        .filter(|s| s.prog.is_some() && s.hook != "kfree_skb")
    {
        let key = match (&s.prog, s.hook.starts_with("nf-")) {
            (Some(table), true) => format!("{}:{}:{table}", short_dev(&s.dev), s.hook),
            _ => format!("{}:{}", short_dev(&s.dev), s.hook),
        };
        match obs.hooks.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(s.verdict.clone()),
            None => obs.hooks.push((key, vec![s.verdict.clone()])),
        }
    }
    obs.frames = out
        .transmitted
        .into_iter()
        .map(|f| (Some(short_dev(&f.dev)), f.bytes))
        .collect();
    obs.drops = out
        .drops
        .into_iter()
        .map(|d| DropExpect {
            reason: d.reason,
            dev: Some(d.dev),
            hook: Some(d.hook),
        })
        .collect();
    for m in &case.expect.maps {
        let key = resolve(&m.key, Some(&mut net))?;
        obs.maps.push(net.map(&m.map)?.lookup(&key)?);
    }
    obs.rules = super::netfilter::observe_rules(net.datapath(), &case.expect.rules);
    if let Some(want) = &case.expect.conntrack {
        obs.conntrack = super::netfilter::observe_conntrack(net.datapath(), want);
    }
    Ok(obs)
}

/// The differences between `x` and `o`, one readable line each (empty: pass).
pub fn compare(x: &Expect, o: &Observed) -> Vec<String> {
    let mut d = Vec::new();
    if let (Some(want), Some(got)) = (&x.verdict, &o.verdict) {
        if want != got {
            d.push(format!("verdict: expected {want}, got {got}"));
        }
    }
    if let (Some(want), Some(got)) = (x.retval, o.retval) {
        if want != i64::from(got) && want != i64::from(got as i32) {
            d.push(format!("retval: expected {want}, got {}", got as i32));
        }
    }
    for (key, want) in &x.hooks {
        match o.hooks.iter().find(|(k, _)| k == key) {
            Some((_, got)) if got == want => {}
            Some((_, got)) => d.push(format!("hook {key}: expected {want:?}, got {got:?}")),
            None => d.push(format!(
                "hook {key}: expected {want:?}, no packet passed a program there"
            )),
        }
    }
    if let Some(want) = &x.frames {
        compare_frames(want, &o.frames, &mut d);
    }
    for (m, got) in x.maps.iter().zip(&o.maps) {
        compare_map(m, got.as_deref(), &mut d);
    }
    if let Some(want) = &x.drops {
        compare_drops(want, &o.drops, &mut d);
    }
    super::netfilter::compare_rules(&x.rules, &o.rules, &mut d);
    if let Some(want) = &x.conntrack {
        super::netfilter::compare_conntrack(want, &o.conntrack, &mut d);
    }
    d
}

fn compare_frames(
    want: &[super::fixture::FrameExpect],
    got: &[(Option<String>, Vec<u8>)],
    d: &mut Vec<String>,
) {
    if want.len() != got.len() {
        let devs: Vec<String> = got
            .iter()
            .map(|(dev, b)| {
                format!(
                    "{} ({} bytes)",
                    dev.as_deref().unwrap_or("data_out"),
                    b.len()
                )
            })
            .collect();
        d.push(format!(
            "frames out: expected {}, got {}: {}",
            want.len(),
            got.len(),
            if devs.is_empty() {
                "none".into()
            } else {
                devs.join(", ")
            }
        ));
    }
    for (i, (w, (dev, bytes))) in want.iter().zip(got).enumerate() {
        let what = match dev {
            Some(dv) => format!("frame {i} out of {dv}"),
            None => "data_out".to_string(),
        };
        if let (Some(wd), Some(gd)) = (&w.dev, dev) {
            if short_dev(wd) != *gd {
                d.push(format!("frame {i}: expected out of {wd}, went out of {gd}"));
            }
        }
        for line in w.pattern.diff(bytes, 8) {
            d.push(format!("{what}: {line}"));
        }
    }
}

pub(crate) fn compare_map(m: &MapExpect, got: Option<&[u8]>, d: &mut Vec<String>) {
    let key: Vec<u8> = m
        .key
        .iter()
        .flat_map(|p| match p {
            Piece::Bytes(b) => b.clone(),
            _ => Vec::new(),
        })
        .collect();
    let want: Option<Vec<u8>> = m.value.as_ref().map(|v| {
        v.iter()
            .flat_map(|p| match p {
                Piece::Bytes(b) => b.clone(),
                _ => Vec::new(),
            })
            .collect()
    });
    let at = format!("map {} key {}", m.map, hex::encode(&key));
    match (want, got) {
        (None, None) => {}
        (None, Some(g)) => d.push(format!("{at}: expected absent, got {}", hex::encode(g))),
        (Some(w), None) => d.push(format!(
            "{at}: expected {}, the key is absent",
            hex::encode(w)
        )),
        (Some(w), Some(g)) if w != g => {
            let first = w.iter().zip(g).position(|(a, b)| a != b);
            let note = match first {
                Some(i) => format!(" (first difference at byte {i})"),
                None => format!(" ({} bytes vs {})", w.len(), g.len()),
            };
            d.push(format!(
                "{at}: expected {}, got {}{note}",
                hex::encode(w),
                hex::encode(g)
            ));
        }
        _ => {}
    }
}

fn drop_text(x: &DropExpect) -> String {
    let mut s = x.reason.clone();
    if let Some(dev) = &x.dev {
        s.push_str(&format!(" at {dev}"));
    }
    if let Some(h) = &x.hook {
        s.push_str(&format!(" {h}"));
    }
    s
}

fn compare_drops(want: &[DropExpect], got: &[DropExpect], d: &mut Vec<String>) {
    let same = |w: &DropExpect, g: &DropExpect| {
        w.reason == g.reason
            && w.dev.as_ref().is_none_or(|x| Some(x) == g.dev.as_ref())
            && w.hook.as_ref().is_none_or(|x| Some(x) == g.hook.as_ref())
    };
    let ok = want.len() == got.len() && want.iter().zip(got).all(|(w, g)| same(w, g));
    if !ok {
        let list = |v: &[DropExpect]| match v.is_empty() {
            true => "none".to_string(),
            false => v.iter().map(drop_text).collect::<Vec<_>>().join("; "),
        };
        d.push(format!("drops: expected {}, got {}", list(want), list(got)));
    }
}
