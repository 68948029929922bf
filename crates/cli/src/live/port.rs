//! One live device of the loop: the NIC it feeds, its backend (open, or
//! closed and waiting to be retried), and what it dropped before the
//! datapath saw it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use skiff_io::live::{csum, LiveCounters, LiveDevice, LiveSpec, RxCsum, RxFrame};
use skiff_net::datapath::{Datapath, DevId};
use skiff_net::drop::DropReason;
use skiff_topology::Topology;

/// Why a frame from the wire never entered the datapath (the kernel's drop
/// reason for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WireDrop(pub &'static str);

/// The reasons, in the order the summary lists them.
/// (SKB_DROP_REASON_SKB_CSUM is not among the datapath's reasons: no frame
/// inside it has a partial checksum.)
const WIRE_DROPS: [&str; 4] = [
    // shorter than an Ethernet header (eth_type_trans would read past it)
    "PKT_TOO_SMALL",
    // longer than the receive ring keeps (tp_snaplen < tp_len)
    "PKT_TOO_BIG",
    // a partial checksum whose place is outside the frame
    "HDR_TRUNC",
    // a partial checksum of a protocol whose checksum place is unknown
    "SKB_CSUM",
];

pub struct Port {
    pub dev: DevId,
    /// NETNS/NAME of the NIC in the topology.
    pub label: String,
    pub spec: LiveSpec,
    handle: Option<Box<dyn LiveDevice>>,
    /// When a closed device is tried again, or an open one checked
    /// (LiveDevice::check).
    retry_at: Instant,
    /// Counters of handles closed before (a reopened device starts at 0).
    closed: LiveCounters,
    down: u64,
    reopened: u64,
    /// Finished checksums (counted here: the backend only lends the frame).
    csum_done: u64,
    dropped: [u64; WIRE_DROPS.len()],
    /// The last open or receive error, printed once per change.
    last_error: Option<String>,
}

/// Every NIC of the topology with a backend, opened (one that cannot be
/// opened yet is retried while running, its error printed).
pub fn open_all(topo: &Topology, dp: &Datapath) -> Result<Vec<Port>> {
    let mut ports = Vec::new();
    for ns in &topo.namespaces {
        for d in &ns.devices {
            let Some(spec) = &d.live else { continue };
            let dev = dp
                .netns(&ns.name)
                .and_then(|n| dp.device(n, &d.name))
                .ok_or_else(|| {
                    anyhow!(
                        "{}:{}:{}: device {}/{} was not built",
                        topo.file.display(),
                        d.loc.line,
                        d.loc.col,
                        ns.name,
                        d.name
                    )
                })?;
            let mut p = Port {
                dev,
                label: format!("{}/{}", ns.name, d.name),
                spec: spec.clone(),
                handle: None,
                retry_at: Instant::now(),
                closed: LiveCounters::default(),
                down: 0,
                reopened: 0,
                csum_done: 0,
                dropped: [0; WIRE_DROPS.len()],
                last_error: None,
            };
            p.try_open();
            ports.push(p);
        }
    }
    Ok(ports)
}

impl Port {
    /// One line for the start: which NIC is which interface.
    pub fn describe(&self) -> String {
        let ns = self
            .spec
            .host_netns
            .as_deref()
            .unwrap_or("skiff's own netns");
        let state = match &self.handle {
            Some(_) => "open".to_string(),
            None => format!(
                "not open yet, retried every 250 ms: {}",
                self.last_error.as_deref().unwrap_or("?")
            ),
        };
        format!(
            "{} <-> {} {} in {ns} ({state})",
            self.label,
            self.spec.backend.name(),
            self.spec.host_ifname
        )
    }

    fn try_open(&mut self) -> bool {
        match skiff_io::live::open(&self.spec) {
            Ok(h) => {
                self.handle = Some(h);
                self.last_error = None;
                true
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    eprintln!("skiff run --live: {}: {msg}", self.label);
                }
                self.last_error = Some(msg);
                false
            }
        }
    }

    /// A closed device is reopened when its retry time has come; an open
    /// one is checked as often (closed when gone).
    pub fn retry_if_due(&mut self, now: Instant, every: Duration) {
        if now < self.retry_at {
            return;
        }
        self.retry_at = now + every;
        if let Some(h) = self.handle.as_mut() {
            if let Err(e) = h.check() {
                self.close(&e);
            }
            return;
        }
        if self.try_open() {
            self.reopened += 1;
            eprintln!(
                "skiff run --live: {}: {} is back",
                self.label, self.spec.host_ifname
            );
        }
    }

    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.handle.as_ref().map(|h| h.fd())
    }

    /// The device went down or away (or failed otherwise): closed, counted,
    /// retried later; the datapath goes on.
    fn close(&mut self, e: &skiff_io::live::LiveError) {
        if let Some(h) = self.handle.take() {
            add(&mut self.closed, h.counters());
        }
        self.down += 1;
        self.retry_at = Instant::now();
        let msg = e.to_string();
        eprintln!("skiff run --live: {}: {msg}; closed, retrying", self.label);
        self.last_error = Some(msg);
    }

    /// Up to `budget` frames from the wire into the NIC's rx queues, at
    /// `now_ns` on the datapath's clock: how many entered.
    pub fn receive(&mut self, dp: &mut Datapath, budget: usize, now_ns: u64) -> usize {
        let Some(h) = self.handle.as_mut() else {
            return 0;
        };
        let (dev, dropped, csum_done) = (self.dev, &mut self.dropped, &mut self.csum_done);
        let mut entered = 0;
        let r = h.recv(budget, &mut |f: RxFrame<'_>| match admit(f, csum_done) {
            Ok(frame) => {
                if dp.inject(dev, frame, now_ns).is_ok() {
                    entered += 1;
                }
            }
            Err(reason) => {
                if let Some(i) = WIRE_DROPS.iter().position(|r| *r == reason) {
                    dropped[i] += 1;
                }
            }
        });
        if let Err(e) = r {
            self.close(&e);
        }
        entered
    }

    /// Queues a frame the NIC transmitted for its wire (dropped, counted by
    /// the backend, when the device is closed or its ring full).
    pub fn send(&mut self, frame: &[u8]) {
        let Some(h) = self.handle.as_mut() else {
            self.closed.tx_dropped += 1;
            return;
        };
        if let Err(e) = h.send(frame) {
            self.close(&e);
        }
    }

    pub fn flush(&mut self) {
        let Some(h) = self.handle.as_mut() else {
            return;
        };
        if let Err(e) = h.flush() {
            self.close(&e);
        }
    }

    pub fn counters(&self) -> LiveCounters {
        let mut c = self.closed;
        if let Some(h) = &self.handle {
            add(&mut c, h.counters());
        }
        c.down = self.down;
        c.reopened = self.reopened;
        c.rx_csum_completed = self.csum_done;
        c
    }

    /// The frames dropped before the datapath, by reason (those that happened).
    pub fn wire_drops(&self) -> impl Iterator<Item = (WireDrop, u64)> + '_ {
        WIRE_DROPS
            .iter()
            .zip(self.dropped)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (WireDrop(r), n))
    }
}

/// A frame from the wire as the datapath may take it: whole, at least an
/// Ethernet header, its partial checksum finished (skb_checksum_help);
/// else the reason it is dropped.
fn admit<'a>(f: RxFrame<'a>, csum_done: &mut u64) -> Result<&'a [u8], &'static str> {
    if f.wire_len > f.data.len() {
        return Err(DropReason::PktTooBig.name());
    }
    if f.data.len() < 14 {
        return Err(DropReason::PktTooSmall.name());
    }
    let at = match f.csum {
        RxCsum::Complete => return Ok(f.data),
        RxCsum::Partial => None,
        RxCsum::PartialAt { start, offset } => Some((usize::from(start), usize::from(offset))),
    };
    match csum::complete(f.data, at) {
        Ok(()) => {
            *csum_done += 1;
            Ok(f.data)
        }
        Err(csum::CsumError::Truncated) => Err(DropReason::HdrTrunc.name()),
        Err(csum::CsumError::UnknownProtocol) => Err("SKB_CSUM"),
    }
}

fn add(into: &mut LiveCounters, c: LiveCounters) {
    into.rx_packets += c.rx_packets;
    into.rx_bytes += c.rx_bytes;
    into.rx_ring_full += c.rx_ring_full;
    into.tx_packets += c.tx_packets;
    into.tx_bytes += c.tx_bytes;
    into.tx_dropped += c.tx_dropped;
}
