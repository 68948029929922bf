//! The real kernel as oracle: the same operation sequences run through bpftool (bpf(2))
//! and through skiff-maps must give the same results (success or the same errno).
//! Needs root, bpftool and bpffs; skips with a printed reason otherwise.

use std::process::Command;

use skiff_maps::errno::*;
use skiff_maps::*;

enum Op {
    Update(u32, Vec<u8>, &'static str),
    Delete(u32),
    Lookup(u32),
    LpmUpdate(u32, [u8; 4], u32, &'static str),
    LpmDelete(u32, [u8; 4]),
    Push(u32, &'static str),
    Pop,
    Peek,
    Freeze,
}

struct Case {
    t: &'static str,
    k: u32,
    v: u32,
    n: u32,
    flags: u32,
    ops: Vec<Op>,
}

fn errno_of(msg: &str) -> Errno {
    let table = [
        ("File exists", EEXIST),
        ("No such file or directory", ENOENT),
        ("Argument list too long", E2BIG),
        ("Invalid argument", EINVAL),
        ("No such device", ENODEV),
        ("Operation not supported", EOPNOTSUPP),
        ("Unknown error 524", ENOTSUPP),
        ("No space left on device", ENOSPC),
        ("Value too large", EOVERFLOW),
        ("Operation not permitted", EPERM),
        ("Device or resource busy", EBUSY),
        ("Not found", ENOENT),
        // bpftool's wording for ENOENT from BPF_MAP_LOOKUP_AND_DELETE_ELEM on queue/stack
        ("empty map", ENOENT),
    ];
    table
        .iter()
        .find(|(s, _)| msg.contains(s))
        .map(|(_, e)| *e)
        .unwrap_or(-1)
}

fn bpftool(args: &[String]) -> Result<(), Errno> {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .map_err(|_| -1)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.contains("Not found") {
        Ok(())
    } else {
        Err(errno_of(&text))
    }
}

fn bytes(b: &[u8]) -> Vec<String> {
    b.iter().map(|x| x.to_string()).collect()
}

fn flag_of(f: &str) -> u64 {
    match f {
        "noexist" => BPF_NOEXIST,
        "exist" => BPF_EXIST,
        _ => BPF_ANY,
    }
}

fn lpm_key(plen: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut k = plen.to_ne_bytes().to_vec();
    k.extend_from_slice(&ip);
    k
}

fn run_kernel(path: &str, op: &Op) -> Result<(), Errno> {
    let s = |x: &str| x.to_string();
    let mut a: Vec<String> = vec![s("map")];
    let flag = match op {
        Op::Update(k, v, f) => {
            a.extend([s("update"), s("pinned"), s(path), s("key")]);
            a.extend(bytes(&k.to_ne_bytes()));
            a.push(s("value"));
            a.extend(bytes(v));
            f
        }
        Op::Push(v, f) => {
            a.extend([s("push"), s("pinned"), s(path), s("value")]);
            a.extend(bytes(&v.to_ne_bytes()));
            f
        }
        _ => return Err(-1),
    };
    if *flag != "any" {
        a.push(s(flag));
    }
    bpftool(&a)
}

fn kernel_op(path: &str, op: &Op) -> Result<(), Errno> {
    let s = |x: &str| x.to_string();
    let base = |verb: &str| vec![s("map"), s(verb), s("pinned"), s(path)];
    match op {
        Op::Update(..) | Op::Push(..) => run_kernel(path, op),
        Op::Delete(k) | Op::Lookup(k) => {
            let mut a = base(if matches!(op, Op::Delete(_)) {
                "delete"
            } else {
                "lookup"
            });
            a.push(s("key"));
            a.extend(bytes(&k.to_ne_bytes()));
            bpftool(&a)
        }
        Op::LpmUpdate(p, ip, v, f) => {
            let mut a = base("update");
            a.push(s("key"));
            a.extend(bytes(&lpm_key(*p, *ip)));
            a.push(s("value"));
            a.extend(bytes(&v.to_ne_bytes()));
            if *f != "any" {
                a.push(s(f));
            }
            bpftool(&a)
        }
        Op::LpmDelete(p, ip) => {
            let mut a = base("delete");
            a.push(s("key"));
            a.extend(bytes(&lpm_key(*p, *ip)));
            bpftool(&a)
        }
        Op::Pop | Op::Peek => bpftool(&base(if matches!(op, Op::Pop) { "pop" } else { "peek" })),
        Op::Freeze => bpftool(&base("freeze")),
    }
}

fn skiff_op(m: &Map, op: &Op) -> Result<(), Errno> {
    match op {
        Op::Update(k, v, f) => m.sys_update(&k.to_ne_bytes(), v, flag_of(f)),
        Op::Delete(k) => m.sys_delete(&k.to_ne_bytes()),
        Op::Lookup(k) => m.sys_lookup(&k.to_ne_bytes()).map(|_| ()),
        Op::LpmUpdate(p, ip, v, f) => m.sys_update(&lpm_key(*p, *ip), &v.to_ne_bytes(), flag_of(f)),
        Op::LpmDelete(p, ip) => m.sys_delete(&lpm_key(*p, *ip)),
        Op::Push(v, f) => m.sys_update(&[], &v.to_ne_bytes(), flag_of(f)),
        Op::Pop => m.pop(&mut vec![0u8; m.attr().value_size as usize]),
        Op::Peek => m.sys_lookup(&[]).map(|_| ()),
        Op::Freeze => m.freeze(),
    }
}

fn v4(x: u32) -> Vec<u8> {
    x.to_ne_bytes().to_vec()
}

fn cases() -> Vec<Case> {
    use Op::*;
    vec![
        Case {
            t: "hash",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![
                Update(1, v4(1), "exist"),
                Update(1, v4(1), "noexist"),
                Update(1, v4(1), "noexist"),
                Update(2, v4(2), "any"),
                Update(3, v4(3), "any"),
                Update(3, v4(3), "exist"),
                Update(2, v4(9), "any"),
                Lookup(2),
                Lookup(3),
                Delete(3),
                Delete(1),
                Update(3, v4(3), "noexist"),
                Freeze,
                Update(3, v4(3), "any"),
                Delete(3),
                Freeze,
            ],
        },
        Case {
            t: "array",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![
                Update(2, v4(1), "any"),
                Update(1, v4(1), "noexist"),
                Update(1, v4(1), "exist"),
                Delete(1),
                Lookup(1),
                Lookup(5),
            ],
        },
        Case {
            t: "lru_hash",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![
                Update(1, v4(1), "any"),
                Update(1, v4(1), "noexist"),
                Update(2, v4(1), "exist"),
                Delete(7),
                Lookup(1),
            ],
        },
        Case {
            t: "lpm_trie",
            k: 8,
            v: 4,
            n: 2,
            flags: 1,
            ops: vec![
                LpmUpdate(8, [10, 0, 0, 0], 1, "any"),
                LpmUpdate(8, [10, 9, 9, 9], 2, "noexist"),
                LpmUpdate(16, [10, 1, 0, 0], 3, "exist"),
                LpmUpdate(33, [10, 1, 0, 0], 3, "any"),
                LpmUpdate(16, [10, 1, 0, 0], 3, "any"),
                LpmUpdate(24, [10, 1, 1, 0], 4, "any"),
                LpmUpdate(24, [10, 1, 1, 0], 4, "exist"),
                LpmUpdate(16, [10, 1, 0, 0], 5, "exist"),
                LpmDelete(24, [10, 1, 1, 0]),
                LpmDelete(33, [10, 1, 1, 0]),
                LpmDelete(16, [10, 1, 7, 7]),
            ],
        },
        Case {
            t: "queue",
            k: 0,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![
                Pop,
                Peek,
                Push(1, "any"),
                Push(2, "any"),
                Push(3, "any"),
                Push(3, "noexist"),
                Push(3, "exist"),
                Peek,
                Pop,
                Pop,
                Pop,
            ],
        },
        Case {
            t: "stack",
            k: 0,
            v: 4,
            n: 1,
            flags: 0,
            ops: vec![Push(1, "any"), Push(2, "any"), Push(2, "exist"), Pop, Pop],
        },
        Case {
            t: "devmap",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![
                Lookup(0),
                Update(0, v4(1), "noexist"),
                Update(2, v4(1), "any"),
                Update(0, v4(1), "any"),
                Lookup(0),
                Update(0, v4(0), "any"),
                Lookup(0),
                Delete(1),
                Delete(2),
            ],
        },
        Case {
            t: "devmap_hash",
            k: 4,
            v: 4,
            n: 1,
            flags: 0,
            ops: vec![
                Update(0, v4(0), "any"),
                Update(5, v4(1), "exist"),
                Update(5, v4(1), "noexist"),
                Update(6, v4(1), "any"),
                Delete(6),
                Delete(5),
            ],
        },
        Case {
            t: "cpumap",
            k: 4,
            v: 4,
            n: 4,
            flags: 0,
            ops: vec![
                Update(1, v4(16385), "any"),
                Update(3, v4(64), "any"),
                Update(4, v4(64), "any"),
                Update(1, v4(64), "noexist"),
                Update(1, v4(64), "any"),
                Lookup(1),
                Update(1, v4(0), "any"),
                Lookup(1),
                Delete(9),
                Delete(0),
            ],
        },
        Case {
            t: "xskmap",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![Lookup(0), Delete(0), Delete(2)],
        },
        Case {
            t: "perf_event_array",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![Lookup(0), Delete(0), Delete(2)],
        },
        Case {
            t: "prog_array",
            k: 4,
            v: 4,
            n: 2,
            flags: 0,
            ops: vec![Delete(0), Delete(2)],
        },
    ]
}

/// The kernel's LRU hash keeps per-CPU free lists, so whether an update evicts
/// depends on the CPU the syscall runs on: run every bpftool (a child inherits
/// the affinity) on CPU 0, as skiff's single-CPU model assumes.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn errno_matches_the_kernel() {
    if Command::new("bpftool").arg("version").output().is_err() {
        eprintln!("skipping: bpftool not installed");
        return;
    }
    pin_to_cpu0();
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    if uid.split_whitespace().nth(1).is_none_or(|u| u != "0") {
        eprintln!("skipping: needs root for bpf(2)");
        return;
    }
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .contains("/sys/fs/bpf bpf");
    if !mounted {
        let _ = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status();
    }
    let dir = format!("/sys/fs/bpf/skiff_maps_oracle_{}", std::process::id());
    if std::fs::create_dir_all(&dir).is_err() {
        eprintln!("skipping: cannot create {dir} (bpffs not mounted?)");
        return;
    }
    let mut mismatches = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let path = format!("{dir}/m{i}");
        let mut args: Vec<String> = [
            "map",
            "create",
            &path,
            "type",
            c.t,
            "key",
            &c.k.to_string(),
            "value",
            &c.v.to_string(),
            "entries",
            &c.n.to_string(),
            "name",
            "oracle",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if c.flags != 0 {
            args.extend(["flags".to_string(), c.flags.to_string()]);
        }
        let kc = bpftool(&args);
        let t = MapType::from_name(c.t).unwrap();
        let attr = MapAttr {
            map_flags: c.flags,
            ..MapAttr::new(t, c.k, c.v, c.n)
        };
        // the kernel's possible CPUs on this machine, for CPUMAP's ENODEV
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| {
                s.trim()
                    .rsplit('-')
                    .next()
                    .and_then(|x| x.parse::<usize>().ok())
            })
            .map_or(1, |n| n + 1);
        let m = Map::create(attr, cpus);
        assert_eq!(kc.is_ok(), m.is_ok(), "create {}: kernel {kc:?}", c.t);
        let Ok(m) = m else { continue };
        for (j, op) in c.ops.iter().enumerate() {
            let k = kernel_op(&path, op);
            let s = skiff_op(&m, op);
            if k != s {
                mismatches.push(format!("{} op {j}: kernel {k:?}, skiff {s:?}", c.t));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
