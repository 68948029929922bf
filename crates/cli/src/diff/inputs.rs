//! The `--pcap-in` files: read whole, merged in timestamp order (stable: file
//! order among equal timestamps), bounded so that the kernel side's real-time
//! replay ends in a known time.

use std::path::Path;

use super::CannotRun;

/// The most frames one diff sends.
pub const MAX_FRAMES: usize = 100_000;
/// The longest replay (first to last timestamp), in ns: the kernel side sends
/// in real time.
pub const MAX_SPAN_NS: u64 = 60_000_000_000;

/// One frame to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub ts_ns: u64,
    /// `NETNS/NAME` of the receiving NIC.
    pub dev: String,
    pub data: Vec<u8>,
}

/// `NAME` (namespace "host") or `NETNS/NAME` as `NETNS/NAME`.
pub fn qualified(dev: &str) -> String {
    match dev.contains('/') {
        true => dev.to_string(),
        false => format!("host/{dev}"),
    }
}

pub fn read(specs: &[String]) -> Result<Vec<Frame>, CannotRun> {
    let mut all = Vec::new();
    for spec in specs {
        let (dev, file) = spec
            .split_once('=')
            .ok_or_else(|| CannotRun(format!("--pcap-in {spec}: expected DEV=FILE")))?;
        let cap = skiff_io::read(Path::new(file))?;
        if let Some(i) = cap.interfaces.iter().find(|i| i.linktype != 1) {
            return Err(CannotRun(format!(
                "{file}: link type {} is not supported (Ethernet, link type 1, only)",
                i.linktype
            )));
        }
        for p in cap.packets {
            if all.len() >= MAX_FRAMES {
                return Err(CannotRun(format!(
                    "more than {MAX_FRAMES} frames in the --pcap-in files: the kernel side replays in real time; cut the capture"
                )));
            }
            all.push(Frame {
                ts_ns: p.ts_ns,
                dev: qualified(dev),
                data: p.data,
            });
        }
    }
    all.sort_by_key(|f| f.ts_ns);
    let span = match (all.first(), all.last()) {
        (Some(a), Some(b)) => b.ts_ns.saturating_sub(a.ts_ns),
        _ => return Err(CannotRun("the --pcap-in files hold no frames".into())),
    };
    if span > MAX_SPAN_NS {
        return Err(CannotRun(format!(
            "the --pcap-in frames span {} s, more than {} s: the kernel side replays in real time; cut the capture",
            span / 1_000_000_000,
            MAX_SPAN_NS / 1_000_000_000
        )));
    }
    Ok(all)
}
