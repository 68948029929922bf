//! Topology files (TOML): namespaces, devices, links, addresses, routes and the
//! programs attached to each hook, validated with errors naming line and field,
//! and built into a `skiff_net::datapath::Datapath`.
//!
//! [`Topology::parse`] / [`Topology::load`] give plain validated structs (object
//! files are parsed then, so a missing file, a missing program or a program whose
//! type does not fit its hook is a validation error with the line of the field).
//! [`Topology::load_objects`] loads every object with pinned maps shared across
//! objects as libbpf does with bpffs pins; [`Topology::build`] builds the
//! datapath. The format is documented in `docs/topology.md`.
//!
//! The validated data holds the datapath's own types (`DeviceKind`,
//! `NetkitMode`, `XdpMode`, `TcDirection`, `MprogOrder`, the stack's
//! `RouteKind`...), with namespace and program names where the datapath has
//! ids that exist only once built.
//!
//! The modules: `raw` (the file as serde reads it, with spans), `parse` (value
//! parsers), `validate` (one function per section), `model` (the validated
//! data), `load` (objects and maps), `build` (the datapath), `error`.

mod build;
mod error;
mod load;
mod model;
pub mod netfilter;
pub mod nft;
mod parse;
mod raw;
pub mod tc;
mod validate;

use std::path::Path;

pub use build::Built;
pub use error::{Loc, TopologyError};
pub use load::LoadedObject;
pub use model::*;
pub use parse::{parse_mac, parse_piece, Cidr};
/// The datapath's own types, which the validated topology holds.
pub use skiff_net::datapath::{
    DeviceKind, MprogOrder, NetkitMode, NetkitPolicy, NetkitScrub, NetkitSide, TcDirection, XdpMode,
};
pub use skiff_net::stack::RouteKind;

use error::{field_of, line_col, Ctx};

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let src = std::fs::read_to_string(path).map_err(|e| TopologyError::File {
            file: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Topology::parse(&src, path, dir)
    }

    /// Validates topology text; `file` names it in errors, `dir` is where object
    /// paths are relative to.
    pub fn parse(src: &str, file: &Path, dir: &Path) -> Result<Topology, TopologyError> {
        let cx = Ctx { src, file };
        let raw: raw::RawTopology = toml::from_str(src).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(src, s.start)).unwrap_or((1, 1));
            TopologyError::At {
                file: file.to_path_buf(),
                line,
                col,
                field: field_of(src, e.span()),
                msg: e.message().trim().to_string(),
            }
        })?;
        validate::validate(&cx, raw, dir)
    }
}
