//! Operating a running datapath (`skiff run --live`): the control socket
//! `/run/skiff/NAME.sock` and its protocol (docs/control.md: one JSON object
//! per line each way), the requests it serves between batches (maps, program
//! attach/replace/detach, stats), and the Prometheus endpoint (`--metrics`).

pub mod client;
mod exec;
pub mod metrics;
mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use server::{pinned_maps, Control};

/// The directory of the control sockets; `SKIFF_RUN_DIR` overrides it (tests
/// that run without root, several runs side by side).
pub fn run_dir() -> PathBuf {
    match std::env::var_os("SKIFF_RUN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/run/skiff"),
    }
}

/// `--run NAME|PATH`: a name is `RUN_DIR/NAME.sock`; anything with a `/` or
/// ending in `.sock` is the socket's path as given.
pub fn socket_path(run: &str) -> PathBuf {
    if run.contains('/') || run.ends_with(".sock") {
        PathBuf::from(run)
    } else {
        run_dir().join(format!("{run}.sock"))
    }
}

/// A request: one JSON object on one line (docs/control.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `skiff map VERB --run`: bpftool's keyword arguments as `skiff map` takes them.
    Map {
        verb: String,
        words: Vec<String>,
        #[serde(default)]
        json: bool,
    },
    /// `skiff prog show --run`.
    ProgShow {
        #[serde(default)]
        json: bool,
    },
    /// `skiff prog attach --run`: `object` an absolute path the server reads.
    ProgAttach {
        object: PathBuf,
        prog: String,
        dev: String,
        hook: String,
        #[serde(default)]
        replace: bool,
    },
    /// `skiff prog detach --run`: the hook's program (`prog` names it when
    /// the hook has several).
    ProgDetach {
        dev: String,
        hook: String,
        #[serde(default)]
        prog: Option<String>,
    },
    /// `skiff stats --run`.
    Stats {
        #[serde(default)]
        json: bool,
    },
}

/// The answer: what the verb prints on stdout and its exit code, or an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default)]
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(output: String, code: i32) -> Reply {
        Reply {
            output: Some(output),
            code,
            error: None,
        }
    }

    pub fn error(e: impl std::fmt::Display) -> Reply {
        Reply {
            output: None,
            code: 1,
            error: Some(e.to_string()),
        }
    }
}

/// The longest request or reply line read (a map dump of a large map is the
/// biggest reply).
pub const MAX_LINE: u64 = 64 << 20;

#[cfg(test)]
mod tests;
