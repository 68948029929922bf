//! ifindexes against the running kernel: the same veth pairs are created in
//! two real namespaces (`skiff-fs-<pid>-a`, `-b`, removed by a Drop guard also
//! on failure) and in a skiff `Datapath`, and every device must get the same
//! ifindex (net/core/dev.c dev_index_reserve: per namespace, the peer first).
//!
//! Needs root and `ip`; skips with a message otherwise.

use std::collections::BTreeMap;
use std::process::Command;

use skiff_net::datapath::{Datapath, DatapathOptions, DeviceSpec, NsId};

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `ip -n NS -o link`: name -> ifindex ("5: y1@y0: ..." -> ("y1", 5)).
fn kernel_ifindexes(ns: &str) -> BTreeMap<String, u32> {
    let out = ip(&["-n", ns, "-o", "link"]).expect("ip link");
    out.lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let idx = f.next()?.trim().parse().ok()?;
            let name = f.next()?.split('@').next()?.to_string();
            Some((name, idx))
        })
        .collect()
}

fn skiff_ifindexes(dp: &Datapath, ns: NsId) -> BTreeMap<String, u32> {
    dp.devices()
        .into_iter()
        .filter(|(_, n, ..)| *n == ns)
        .map(|(_, _, name, idx, _)| (name, idx))
        .collect()
}

#[test]
fn veth_ifindexes_match_the_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: not root (needs network namespaces)");
        return;
    }
    if ip(&["-V"]).is_err() {
        eprintln!("skipping: `ip` not found");
        return;
    }
    let pid = std::process::id();
    let (a, b) = (format!("skiff-fs-{pid}-a"), format!("skiff-fs-{pid}-b"));
    let _guard = Namespaces(vec![a.clone(), b.clone()]);
    ip(&["netns", "add", &a]).unwrap();
    ip(&["netns", "add", &b]).unwrap();
    // (name, peer, peer in b, fixed ifindex of the first end)
    let pairs: [(&str, &str, bool, Option<u32>); 5] = [
        ("v0", "v1", true, None),
        ("x0", "x1", false, None),
        ("y0", "y1", false, Some(9)),
        ("z0", "z1", true, None),
        ("w0", "w1", false, None),
    ];
    let mut dp = Datapath::new(DatapathOptions::default()).unwrap();
    let sa = dp.add_netns("a").unwrap();
    let sb = dp.add_netns("b").unwrap();
    for (name, peer, in_b, fixed) in pairs {
        let idx = fixed.map(|i| i.to_string());
        let mut args = vec!["-n", &a, "link", "add", name];
        if let Some(i) = &idx {
            args.extend(["index", i.as_str()]);
        }
        args.extend(["type", "veth", "peer", "name", peer]);
        if in_b {
            args.extend(["netns", b.as_str()]);
        }
        ip(&args).unwrap();
        let spec = DeviceSpec {
            ifindex: fixed,
            ..DeviceSpec::veth(name, in_b.then_some(sb), peer)
        };
        dp.add_device(sa, spec).unwrap();
    }
    let (ka, kb) = (kernel_ifindexes(&a), kernel_ifindexes(&b));
    assert_eq!(
        ka.get("x1"),
        Some(&3),
        "the kernel registers a pair's peer first"
    );
    assert_eq!(skiff_ifindexes(&dp, sa), ka);
    assert_eq!(skiff_ifindexes(&dp, sb), kb);
}
