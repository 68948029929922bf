//! The client side of `--run NAME|PATH`: one request, one reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};

use super::{socket_path, Reply, Request, MAX_LINE};

/// How long a reply may take: the server answers between batches, within
/// milliseconds unless a verb has a large map to dump.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `req` to the run `run` names; its output and exit code, or the
/// server's error.
pub fn call(run: &str, req: &Request) -> Result<(String, i32)> {
    let reply = exchange(run, req)?;
    match reply.error {
        Some(e) => Err(anyhow!("{e}")),
        None => Ok((reply.output.unwrap_or_default(), reply.code)),
    }
}

/// The raw exchange: connect, one line out, one line back.
pub fn exchange(run: &str, req: &Request) -> Result<Reply> {
    let path = socket_path(run);
    let stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "no skiff run answers at {} (is `skiff run --live --name {run}` running?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .with_context(|| format!("sending to {}", path.display()))?;
    let mut back = String::new();
    let n = BufReader::new((&stream).take(MAX_LINE))
        .read_line(&mut back)
        .with_context(|| format!("reading the reply from {}", path.display()))?;
    if n == 0 {
        bail!("{} closed the connection without a reply", path.display());
    }
    serde_json::from_str(back.trim_end())
        .with_context(|| format!("a reply from {} that is not the protocol's", path.display()))
}

/// A `--run` verb from the command line: its output printed, its exit code;
/// an error on stderr (with `json`, as `{"error": ...}` on stdout).
pub fn main(run: &str, req: &Request, json: bool) -> i32 {
    match call(run, req) {
        Ok((out, code)) => {
            print!("{out}");
            code
        }
        Err(e) => {
            crate::map::print_error(json, &format!("{e:#}"));
            1
        }
    }
}
