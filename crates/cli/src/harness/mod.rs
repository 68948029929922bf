//! The library API for `cargo test`: load a topology ([`Network`]) or one
//! program of an object ([`Prog`]), set maps, inject frames, and read the
//! verdicts, the frames out, the drops, the maps and the counters. The same
//! pieces run `skiff run` and `skiff test`.
//!
//! ```
//! # fn main() -> Result<(), skiff::Error> {
//! # let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
//! // the bundled XDP firewall: drop a blocked /24
//! let mut fw = skiff::Prog::load(format!("{examples}/xdp_fw/xdp_fw.o"), "xdp_fw")?;
//! fw.map("blocked")?.update(&skiff::bytes(&["u32:24", "ipv4:192.168.1.0"])?, &[1])?;
//! let frame = skiff::frames::Builder::new()
//!     .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
//!     .ipv4("192.168.1.7", "10.0.0.1")
//!     .udp(1234, 53)
//!     .build()?;
//! assert_eq!(fw.run(&frame)?.verdict, "XDP_DROP");
//!
//! // a whole topology: the k8s-node example answers a ping to the node
//! let mut node = skiff::Network::load(format!("{examples}/k8s-node/topology.toml"))?;
//! let ping = skiff::frames::Builder::new()
//!     .eth("02:00:00:00:00:fe", "02:00:00:00:00:01")
//!     .ipv4("192.168.1.1", "192.168.1.10")
//!     .icmp_echo(8, 1, 1)
//!     .build()?;
//! let out = node.send("eth0", &ping)?;
//! assert_eq!(out.verdict("eth0", "xdp"), Some("XDP_PASS"));
//! assert_eq!(out.transmitted.len(), 1); // the echo reply, out of eth0
//! assert_eq!(out.transmitted[0].dev, "host/eth0");
//! # Ok(()) }
//! ```

mod map;
pub mod network;
mod prog;

use std::path::PathBuf;

pub use map::{flat as map_flat, MapRef};
pub use network::{DropSeen, FrameOut, Network, Outcome, Step};
pub use prog::{Prog, ProgOutcome};

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology file could not be read, parsed or built.
    #[error(transparent)]
    Topology(#[from] skiff_topology::TopologyError),
    /// The object could not be read, parsed or loaded.
    #[error("{}: {message}", path.display())]
    Object { path: PathBuf, message: String },
    /// A device, map or program the call names does not exist.
    #[error("no {what} {name:?} (there are: {known})")]
    NotFound {
        what: &'static str,
        name: String,
        known: String,
    },
    /// A map refused an operation, or its key or value had the wrong size.
    #[error("map {map}: {message}")]
    Map { map: String, message: String },
    /// A frame or a value could not be built from its description.
    #[error("{0}")]
    Input(String),
    /// The datapath or the test run refused the frame.
    #[error("{0}")]
    Refused(String),
}

/// The bytes of a key or value from typed pieces, as topology and fixture
/// files write them: `u8:`..`u64:` (host order), `be16:`..`be64:`, `ipv4:`,
/// `ipv6:`, `mac:`, `zero:N`, `hex:` or bare hex.
pub fn bytes(pieces: &[&str]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for p in pieces {
        match skiff_topology::parse_piece(p).map_err(Error::Input)? {
            skiff_topology::Piece::Bytes(b) => out.extend_from_slice(&b),
            _ => {
                return Err(Error::Input(format!(
                    "{p:?}: ifindex: and prog: pieces need a topology (write them in its file)"
                )))
            }
        }
    }
    Ok(out)
}

/// The kernel's name of a program's return value (`XDP_DROP`, `TC_ACT_SHOT`,
/// `TC_ACT_UNSPEC` for -1), or None for a value outside the enum.
pub fn verdict_name(t: skiff_object::ProgType, retval: u32) -> Option<&'static str> {
    use skiff_object::ProgType;
    let n = match t {
        ProgType::Xdp => match retval {
            0 => "XDP_ABORTED",
            1 => "XDP_DROP",
            2 => "XDP_PASS",
            3 => "XDP_TX",
            4 => "XDP_REDIRECT",
            _ => return None,
        },
        ProgType::SchedCls | ProgType::SchedAct => match retval as i32 {
            -1 => "TC_ACT_UNSPEC",
            0 => "TC_ACT_OK",
            1 => "TC_ACT_RECLASSIFY",
            2 => "TC_ACT_SHOT",
            3 => "TC_ACT_PIPE",
            4 => "TC_ACT_STOLEN",
            5 => "TC_ACT_QUEUED",
            6 => "TC_ACT_REPEAT",
            7 => "TC_ACT_REDIRECT",
            8 => "TC_ACT_TRAP",
            _ => return None,
        },
    };
    Some(n)
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}
