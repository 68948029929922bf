//! `skiff run TOPOLOGY`: builds the topology's datapath, replays pcaps into its
//! devices (deterministic: the virtual clock follows the pcap timestamps), writes
//! what the named devices transmit, and reports per-device, per-hook counters,
//! drops per reason and where, and the packet-conservation totals.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use skiff_io::{Format, Reader, Writer, LINKTYPE_ETHERNET};
use skiff_net::datapath::{CapturePoint, Datapath, DatapathOptions, DevId, Hook, NsId, Tap};
use skiff_topology::Topology;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The topology file (TOML, see docs/topology.md).
    pub topology: PathBuf,
    /// Replay a pcap/pcapng into a device: DEV=FILE, DEV is NAME (namespace
    /// "host") or NETNS/NAME; or FILE.pcapng alone: each packet into the device
    /// its interface description names. Repeatable; packets of all files go in
    /// timestamp order. Files are read as the replay goes (a file whose
    /// timestamps go backwards is read whole and sorted first).
    #[arg(long = "pcap-in", value_name = "DEV=FILE")]
    pub pcap_in: Vec<String>,
    /// Send a pcap/pcapng's frames from a device: DEV=FILE as for --pcap-in,
    /// each frame leaving as that device's namespace stack would send it
    /// (dev_queue_xmit: the device's tc egress, qdisc and xmit). Merged with
    /// the --pcap-in files in timestamp order (ties: --pcap-in first).
    #[arg(long = "send", value_name = "DEV=FILE")]
    pub send: Vec<String>,
    /// Write what a NIC transmits: DEV=FILE (pcapng if FILE ends in .pcapng, with
    /// the device's name; pcap otherwise); on a veth, what tcpdump -Q out on it
    /// sees (its tx tap). Repeatable.
    #[arg(long = "pcap-out", value_name = "DEV=FILE")]
    pub pcap_out: Vec<String>,
    /// Write what the stacks received and the hooks consumed (TC_ACT_STOLEN,
    /// GRO) to FILE.pcapng: one interface per device (NETNS/NAME), each
    /// packet's comment `id=N by=stack|HOOK`. Without it they are counted and freed.
    #[arg(long = "pcap-delivered", value_name = "FILE.pcapng")]
    pub pcap_delivered: Option<PathBuf>,
    /// Print each packet's path, one line per hook.
    #[arg(long)]
    pub trace: bool,
    /// Write the trace as JSON lines (pwru's key names) to FILE.
    #[arg(long = "trace-json", value_name = "FILE")]
    pub trace_json: Option<PathBuf>,
    /// The --trace-json lines: skiff (the keys above, as before) or pwru
    /// (pwru's --output-json schema: skb "0x…", time, tuple as an object).
    #[arg(long = "trace-format", value_enum, default_value = "skiff")]
    pub trace_format: TraceFormat,
    /// With --json: only these maps in "maps" (names as "maps" keys them:
    /// the pin name, or OBJECT/MAP; a bare MAP matches OBJECT/MAP).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub maps: Vec<String>,
    /// Write what enters and leaves a hook to a pcapng: DEV:HOOK=FILE, HOOK one of
    /// xdp, xdp-generic, tc-ingress, tc-egress, netkit, xmit. Each packet's comment
    /// names its id and, on exit, the verdict. HOOK rx or tx: what tcpdump on
    /// the device sees (AF_PACKET taps): rx after XDP and before tc ingress, tx
    /// after tc egress and the qdisc. Repeatable.
    #[arg(long, value_name = "DEV:HOOK=FILE")]
    pub capture: Vec<String>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Workers (CPUs): worker i is CPU i (bpf_get_smp_processor_id, per-CPU map
    /// values) and serves NIC rx queues q % N == i; the maps get N possible CPUs.
    /// The workers run in turn on one thread (deterministic) unless --threads.
    /// At most NR_CPUS (8192).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
    /// Run the --workers on as many OS threads (at most one per CPU of this
    /// machine): same verdicts and counters for traffic whose result does not
    /// depend on ordering; traces and ids interleave as the threads ran.
    #[arg(long)]
    pub threads: bool,
    /// After the run, print every device's qdiscs and classes as `tc -s
    /// qdisc show` and `tc -s class show` print them.
    #[arg(long = "tc-stats")]
    pub tc_stats: bool,
    /// After the run, print each namespace's conntrack table as `ip netns
    /// exec NETNS conntrack -L` prints it (timeouts counted from the last
    /// packet's time).
    #[arg(long)]
    pub conntrack: bool,
    /// After the run, print each namespace's iptables/ip6tables tables as
    /// `iptables -t TABLE -L -v -n -x` prints them (rule and policy counters).
    #[arg(long = "nf-stats")]
    pub nf_stats: bool,
    /// Load even programs the verifier refuses, with run-time checks on every
    /// access (each refused program is named on stderr).
    #[arg(long)]
    pub no_verify: bool,
    /// Write per-source-line hit counts of the programs that ran to FILE as
    /// lcov (docs/coverage.md); programs then run in the interpreter.
    #[arg(long, value_name = "FILE")]
    pub coverage: Option<PathBuf>,
    /// Keep only frames matching a pcap-filter expression (as tcpdump takes
    /// it, e.g. "tcp port 80") in --capture, --pcap-out and the traces
    /// (libpcap compiles it at run time; docs/differences.md).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Forward real traffic: the devices with a `backend` (docs/topology.md)
    /// receive from and transmit to their real interfaces, on the monotonic
    /// clock, until SIGINT/SIGTERM; then the summary as after a replay.
    /// --pcap-in files are injected as they are read.
    #[arg(long)]
    pub live: bool,
    /// With --live: the control socket is RUN_DIR/NAME.sock (RUN_DIR
    /// /run/skiff, or $SKIFF_RUN_DIR; docs/control.md). Default: the
    /// topology file's stem.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// With --live: serve Prometheus metrics on GET http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    Skiff,
    Pwru,
}

pub fn main(a: RunArgs) -> i32 {
    match run(&a) {
        Ok(code) => code,
        // stdout closed early (`skiff run ... | head`): stop quietly
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            0
        }
        Err(e) => {
            eprintln!("skiff run: {e:#}");
            1
        }
    }
}

use skiff::harness::network::{named_maps, split_dev};

/// The device `spec` (NAME in namespace "host", or NETNS/NAME) names, for
/// option `opt`'s error.
pub(crate) fn dev_of(dp: &Datapath, topology: &Path, opt: &str, spec: &str) -> Result<DevId> {
    let (ns, name) = split_dev(spec);
    let n = dp.netns(ns).ok_or_else(|| {
        anyhow!(
            "{opt} {spec}: no network namespace {ns:?} in {}",
            topology.display()
        )
    })?;
    dp.device(n, name)
        .ok_or_else(|| anyhow!("{opt} {spec}: no device {name:?} in netns {ns:?}"))
}

/// `DEV=FILE`.
pub fn parse_dev_file(opt: &str, s: &str) -> Result<(String, PathBuf)> {
    let (d, f) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("{opt} {s:?}: want DEV=FILE"))?;
    if d.is_empty() || f.is_empty() {
        bail!("{opt} {s:?}: want DEV=FILE");
    }
    Ok((d.to_string(), PathBuf::from(f)))
}

/// Where `--capture` records: a hook's entry and exit, or an AF_PACKET tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaptureAt {
    Hook(Hook),
    Tap(Tap),
}

impl CaptureAt {
    /// Where a capture record was taken.
    pub(crate) fn of(point: CapturePoint, hook: Hook) -> CaptureAt {
        match (point, hook) {
            (CapturePoint::Tap, Hook::Rx) => CaptureAt::Tap(Tap::Rx),
            (CapturePoint::Tap, _) => CaptureAt::Tap(Tap::Tx),
            _ => CaptureAt::Hook(hook),
        }
    }
}

/// `DEV:HOOK=FILE`.
pub fn parse_capture(s: &str) -> Result<(String, CaptureAt, PathBuf)> {
    let (dh, f) = parse_dev_file("--capture", s)?;
    let (d, h) = dh
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--capture {s:?}: want DEV:HOOK=FILE"))?;
    let at = match h {
        "rx" => CaptureAt::Tap(Tap::Rx),
        "tx" => CaptureAt::Tap(Tap::Tx),
        _ => Hook::from_name(&h.replace('/', "-"))
            .filter(|h| !matches!(h, Hook::Rx | Hook::Stack))
            .map(CaptureAt::Hook)
            .ok_or_else(|| {
                anyhow!("--capture {s:?}: unknown hook {h:?} (xdp, xdp-generic, xdp-devmap, xdp-cpumap, tc-ingress, tc-egress, netkit, xmit, rx, tx)")
            })?,
    };
    Ok((d.to_string(), at, f))
}

/// One `--pcap-in` file: streamed when its timestamps never go backwards (a
/// first pass checks that, and every record, before anything is injected), else
/// read whole and sorted (stable) as the merge order asks.
pub(crate) struct Input {
    file: PathBuf,
    /// `--send`: the frames are sent by their device, not received.
    send: bool,
    /// The device of each of the file's interfaces.
    devs: Vec<DevId>,
    pub(crate) packets: usize,
    source: Source,
}

enum Source {
    /// The reader holds the next packet (`current`), `dev` its device.
    Stream {
        reader: Box<Reader<BufReader<std::fs::File>>>,
        dev: Option<DevId>,
    },
    /// Timestamp, device and frame, sorted; `next` is the next to inject.
    Sorted {
        packets: Vec<(u64, DevId, Vec<u8>)>,
        next: usize,
    },
}

/// `NETNS/NAME` of a device, as capture records name it.
pub(crate) fn dev_key(dp: &Datapath, dev: DevId, name: &str) -> String {
    let ns = dp
        .dev_netns(dev)
        .and_then(|n| dp.netns_name(n))
        .unwrap_or("host");
    format!("{ns}/{name}")
}

/// A first pass over a capture: its interfaces, packets, and whether the
/// timestamps never go backwards.
fn scan(file: &Path) -> Result<(Vec<skiff_io::Interface>, usize, bool)> {
    let mut r = Reader::open(file)?;
    let (mut last, mut sorted) = (0, true);
    while let Some(p) = r.next_packet()? {
        sorted &= p.ts_ns >= last;
        last = p.ts_ns;
    }
    Ok((r.interfaces().to_vec(), r.packets(), sorted))
}

impl Input {
    /// `--pcap-in` SPEC: DEV=FILE, or a pcapng alone (each packet to the device
    /// its interface names); `dev_of` finds a device by `NAME` or `NETNS/NAME`.
    pub(crate) fn open(
        opt: &str,
        spec: &str,
        dev_of: impl Fn(&str) -> Result<DevId>,
    ) -> Result<Input> {
        let (d, file) = match spec.contains('=') {
            true => {
                let (d, f) = parse_dev_file(opt, spec)?;
                (Some(d), f)
            }
            false => (None, PathBuf::from(spec)),
        };
        let (interfaces, packets, sorted) = scan(&file)?;
        let mut devs = Vec::with_capacity(interfaces.len());
        for (i, iface) in interfaces.iter().enumerate() {
            let name = match (&d, &iface.name) {
                (Some(d), _) => d.clone(),
                (None, Some(n)) => n.clone(),
                (None, None) => bail!(
                    "{opt} {spec}: interface {i} of {} has no name (a pcap file never has one): give DEV=FILE",
                    file.display()
                ),
            };
            devs.push(dev_of(&name)?);
        }
        if let Some(i) = interfaces.iter().find(|i| i.linktype != LINKTYPE_ETHERNET) {
            bail!(
                "{}: link type {} is not supported (skiff's devices are Ethernet, link type 1)",
                file.display(),
                i.linktype
            );
        }
        let mut input = Input {
            file,
            send: false,
            devs,
            packets,
            source: Source::Sorted {
                packets: Vec::new(),
                next: 0,
            },
        };
        input.source = match sorted {
            true => Source::Stream {
                reader: Box::new(Reader::open(&input.file)?),
                dev: None,
            },
            false => input.read_sorted()?,
        };
        if matches!(input.source, Source::Stream { .. }) {
            // the reader holds the first packet
            input.advance()?;
        }
        Ok(input)
    }

    fn dev_for(&self, interface: u32, offset: u64) -> Result<DevId> {
        self.devs.get(interface as usize).copied().ok_or_else(|| {
            anyhow!(
                "{}: packet at byte {offset}: no interface {interface}",
                self.file.display()
            )
        })
    }

    /// The whole file in timestamp order (stable: packet order among equals).
    fn read_sorted(&self) -> Result<Source> {
        let cap = skiff_io::read(&self.file)?;
        let mut packets = Vec::with_capacity(cap.packets.len());
        for p in cap.packets {
            packets.push((p.ts_ns, self.dev_for(p.interface, p.offset)?, p.data));
        }
        packets.sort_by_key(|(ts, ..)| *ts);
        Ok(Source::Sorted { packets, next: 0 })
    }

    /// The next packet: timestamp, device, frame.
    pub(crate) fn head(&self) -> Option<(u64, DevId, &[u8])> {
        match &self.source {
            Source::Stream { reader, dev } => {
                let p = reader.current()?;
                Some((p.ts_ns, (*dev)?, p.data))
            }
            Source::Sorted { packets, next } => packets
                .get(*next)
                .map(|(ts, dev, f)| (*ts, *dev, f.as_slice())),
        }
    }

    /// Steps past the head.
    pub(crate) fn advance(&mut self) -> Result<()> {
        let found = match &mut self.source {
            Source::Stream { reader, .. } => {
                reader.advance()?;
                reader.current().map(|p| (p.interface, p.offset))
            }
            Source::Sorted { next, .. } => {
                *next += 1;
                None
            }
        };
        if let Some((interface, offset)) = found {
            let d = self.dev_for(interface, offset)?;
            if let Source::Stream { dev, .. } = &mut self.source {
                *dev = Some(d);
            }
        }
        Ok(())
    }
}

/// Injects up to `Datapath::run_batch` frames (NAPI_POLL_WEIGHT without
/// --threads) that share the earliest timestamp, the earliest first across
/// the inputs (ties: the earlier `--pcap-in`): how many. Frames with distinct
/// timestamps go one poll each, as on a wire.
fn inject_chunk(dp: &mut Datapath, inputs: &mut [Input]) -> Result<usize> {
    let mut n = 0;
    let batch = dp.run_batch();
    // the poll's virtual time: the first frame's; a later frame has not
    // arrived yet when the poll runs (napi_poll takes what the ring holds)
    let mut poll_ts = None;
    while n < batch {
        let next = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head().map(|(ts, ..)| (ts, i)))
            .min();
        let Some((ts, i)) = next else { break };
        if *poll_ts.get_or_insert(ts) != ts {
            break;
        }
        if let Some((ts, dev, frame)) = inputs[i].head() {
            match inputs[i].send {
                true => dp.send(dev, frame, ts)?,
                false => dp.inject(dev, frame, ts)?,
            };
        }
        inputs[i].advance()?;
        n += 1;
    }
    Ok(n)
}

/// The `--pcap-delivered` pcapng: one interface per device, named NETNS/NAME
/// (so `--pcap-in FILE.pcapng` sends each packet back to its device); and each
/// device's interface index.
fn delivered_writer(dp: &Datapath, path: &Path) -> Result<(FileWriter, BTreeMap<DevId, u32>)> {
    if Format::for_path(path) != Format::Pcapng {
        bail!(
            "--pcap-delivered {}: not supported: a pcap file holds one device; name it .pcapng",
            path.display()
        );
    }
    let devices = dp.devices();
    let names: Vec<String> = devices
        .iter()
        .map(|(_, ns, name, ..)| format!("{}/{name}", dp.netns_name(*ns).unwrap_or("host")))
        .collect();
    let ifaces: Vec<(&str, u32)> = names
        .iter()
        .map(|n| (n.as_str(), LINKTYPE_ETHERNET))
        .collect();
    let writer = Writer::create(path, Format::Pcapng, &ifaces)?;
    let index = devices
        .iter()
        .zip(0u32..)
        .map(|((dev, ..), i)| (*dev, i))
        .collect();
    Ok((writer, index))
}

type FileWriter = Writer<BufWriter<std::fs::File>>;

pub(crate) struct Output {
    pub path: PathBuf,
    pub writer: FileWriter,
}

/// Where a capture file's records go: (ifindex, NETNS/NAME, point).
pub(crate) type CaptureKey = (u32, String, CaptureAt);

/// The `--capture DEV:HOOK=FILE` files, created (pcapng, one interface),
/// their points turned on in the datapath.
pub(crate) fn capture_outputs(
    a: &RunArgs,
    dp: &mut Datapath,
) -> Result<BTreeMap<CaptureKey, Output>> {
    let mut caps = BTreeMap::new();
    for spec in &a.capture {
        let (d, at, file) = parse_capture(spec)?;
        let dev = dev_of(dp, &a.topology, "--capture", &d)?;
        match at {
            CaptureAt::Hook(hook) => dp.capture(dev, hook),
            CaptureAt::Tap(tap) => dp.capture_tap(dev, tap),
        }
        let name = dp.dev_name(dev).unwrap_or(&d).to_string();
        let ifindex = dp.ifindex(dev).unwrap_or(0);
        let writer = Writer::create(&file, Format::Pcapng, &[(&name, LINKTYPE_ETHERNET)])?;
        caps.insert(
            (ifindex, dev_key(dp, dev, &name), at),
            Output { path: file, writer },
        );
    }
    Ok(caps)
}

/// A capture record's pcapng comment: its packet id and, on a hook's exit,
/// the verdict.
pub(crate) fn capture_comment(c: &skiff_net::core::trace::CaptureRecord) -> String {
    match (c.point, &c.verdict) {
        (CapturePoint::Exit, Some(v)) => format!("id={} verdict={v}", c.id),
        (CapturePoint::Exit, None) => format!("id={} exit", c.id),
        (CapturePoint::Entry, _) => format!("id={} entry", c.id),
        (CapturePoint::Tap, _) => format!("id={}", c.id),
    }
}

fn run(a: &RunArgs) -> Result<i32> {
    let topo = Topology::load(&a.topology)?;
    if a.coverage.is_some() {
        skiff_vm::coverage::enable();
    }
    let load = skiff_vm::LoadOptions {
        verify: !a.no_verify,
        ..skiff_net::load_options()
    };
    let mut built = topo.build_with(
        DatapathOptions {
            deterministic: !a.live,
            workers: a.workers,
            threads: a.threads,
            possible_cpus: a.workers.max(1),
            // what the stacks take is kept only for --pcap-delivered
            keep_delivered: a.pcap_delivered.is_some(),
            ..Default::default()
        },
        &load,
    )?;
    if a.no_verify {
        for p in built.objects.iter().flat_map(|o| &o.programs) {
            eprintln!(
                "skiff run: {}",
                crate::verify::not_verified_note(&p.name, p.refusal())
            );
        }
    }
    for w in &built.warnings {
        eprintln!("skiff run: warning: {w}");
    }
    if a.live {
        let name = run_name(a)?;
        let pins =
            crate::live::pins::Pins::restore(&topo, &built, &crate::live::pins::dir(&topo, &name))?;
        let mut ctl = control(a, &name, &topo, &built, load)?;
        let code = crate::live::run_live(a, &topo, &mut built, &mut ctl);
        // kept also when the run failed: what it changed is not lost
        let saved = pins.save();
        return code.and_then(|c| saved.map(|_| c));
    }
    if let Some(opt) = [
        ("--name", a.name.is_some()),
        ("--metrics", a.metrics.is_some()),
    ]
    .iter()
    .find_map(|(o, on)| on.then_some(o))
    {
        bail!("{opt} is for a live run: add --live");
    }
    let maps = chosen_maps(named_maps(&topo, &built), &a.maps)?;
    let mut dp = built.dp;
    let dev_of = |dp: &Datapath, opt: &str, spec: &str| dev_of(dp, &a.topology, opt, spec);

    // inputs, merged in timestamp order (stable: file order, then packet order)
    let mut inputs = Vec::with_capacity(a.pcap_in.len());
    let mut total = 0;
    for spec in &a.pcap_in {
        let input = Input::open("--pcap-in", spec, |name| dev_of(&dp, "--pcap-in", name))?;
        total += input.packets;
        inputs.push(input);
    }
    for spec in &a.send {
        let mut input = Input::open("--send", spec, |name| dev_of(&dp, "--send", name))?;
        input.send = true;
        total += input.packets;
        inputs.push(input);
    }

    // outputs
    // one file per path; a pcapng named for several devices gets one interface
    // description block per device
    let mut files: Vec<(PathBuf, Vec<String>)> = Vec::new();
    // device -> (file index, interface index in that file)
    let mut outs: BTreeMap<DevId, (usize, u32)> = BTreeMap::new();
    // a veth's --pcap-out: its tx tap's records, by (ifindex, NETNS/NAME)
    let mut tap_outs: BTreeMap<(u32, String), DevId> = BTreeMap::new();
    for spec in &a.pcap_out {
        let (d, file) = parse_dev_file("--pcap-out", spec)?;
        let dev = dev_of(&dp, "--pcap-out", &d)?;
        let kind = dp
            .devices()
            .into_iter()
            .find(|(id, ..)| *id == dev)
            .map(|(_, _, _, _, k)| k)
            .unwrap_or("?");
        let name = dp.dev_name(dev).unwrap_or(&d).to_string();
        match kind {
            "nic" => {}
            // what tcpdump -Q out on the veth sees: its transmit tap
            "veth" => {
                dp.capture_tap(dev, Tap::Tx);
                tap_outs.insert((dp.ifindex(dev).unwrap_or(0), dev_key(&dp, dev, &name)), dev);
            }
            _ => bail!("--pcap-out {spec}: not supported: {d} is a {kind} device; only NICs transmit out of the datapath, and a veth's file is its tx tap (use --capture {d}:tx=FILE.pcapng for what it sends)"),
        }
        let fi = match files.iter().position(|(p, _)| *p == file) {
            Some(i) => i,
            None => {
                files.push((file.clone(), Vec::new()));
                files.len() - 1
            }
        };
        let names = &mut files[fi].1;
        if Format::for_path(&file) == Format::Pcap && !names.is_empty() {
            bail!("--pcap-out {spec}: a pcap file holds one device ({} already); name it .pcapng for several", names[0]);
        }
        names.push(name);
        if outs.insert(dev, (fi, (names.len() - 1) as u32)).is_some() {
            bail!("--pcap-out {spec}: {d} is named twice");
        }
    }
    let mut writers: Vec<Output> = Vec::with_capacity(files.len());
    for (path, names) in &files {
        let ifaces: Vec<(&str, u32)> = names
            .iter()
            .map(|n| (n.as_str(), LINKTYPE_ETHERNET))
            .collect();
        let writer = Writer::create(path, Format::for_path(path), &ifaces)?;
        writers.push(Output {
            path: path.clone(),
            writer,
        });
    }
    let mut caps = capture_outputs(a, &mut dp)?;
    let mut delivered_out = match &a.pcap_delivered {
        Some(p) => Some(delivered_writer(&dp, p)?),
        None => None,
    };
    let mut filter = match &a.filter {
        Some(e) => Some(skiff::filter::Filter::new(e).map_err(|e| anyhow!(e))?),
        None => None,
    };
    // with --filter: the packets whose frame matched at some hook, so that
    // their frameless events (drops, printk lines) stay in the trace
    let mut matched: std::collections::HashSet<u64> = Default::default();
    let tracing = a.trace || a.trace_json.is_some();
    dp.set_trace(tracing);
    // The summary lists drops by reason and where.
    dp.set_record_drops(true);
    let mut trace_json = match &a.trace_json {
        Some(p) => Some((
            p.clone(),
            BufWriter::new(std::fs::File::create(p).with_context(|| format!("{}", p.display()))?),
        )),
        None => None,
    };

    let bar = (std::io::stderr().is_terminal() && total >= 1000).then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} packets {per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut transmitted_out: BTreeMap<String, u64> = BTreeMap::new();
    let mut fates: BTreeMap<u64, Fate> = BTreeMap::new();
    let stdout = std::io::stdout();
    let mut so = stdout.lock();
    let mut drain =
        |dp: &mut skiff_net::datapath::Datapath, so: &mut std::io::StdoutLock| -> Result<()> {
            // written from the frame's own buffer, which then goes back to the pool
            let mut res = Ok(());
            dp.drain_transmitted(|t| {
                let keep = filter.as_mut().is_none_or(|f| f.matches(t.frame));
                if let Some((o, iface)) = outs
                    .get(&t.dev)
                    .and_then(|(fi, iface)| writers.get_mut(*fi).map(|w| (w, *iface)))
                    .filter(|_| keep)
                {
                    if res.is_ok() {
                        res = o.writer.write(iface, t.ts_ns, t.frame, None);
                    }
                    *transmitted_out
                        .entry(o.path.display().to_string())
                        .or_default() += 1;
                }
            });
            res?;
            for ev in dp.take_trace() {
                if let Some(f) = filter.as_mut() {
                    if !trace_passes(f, &mut matched, &ev) {
                        continue;
                    }
                }
                if a.trace && !a.json {
                    let f = fates.entry(ev.skb).or_insert_with(|| Fate {
                        first: format!("{}/{}", ev.netns, ev.iface),
                        hook: String::new(),
                        end: String::new(),
                    });
                    if ev.func == "kfree_skb" {
                        f.end = format!(
                            "dropped {} at {}/{} {}{}",
                            ev.verdict,
                            ev.netns,
                            ev.iface,
                            f.hook,
                            ev.prog
                                .as_deref()
                                .map(|p| format!(" ({p})"))
                                .unwrap_or_default()
                        );
                    } else {
                        f.hook = ev.func.to_string();
                        f.end = match (ev.func, ev.verdict.as_str()) {
                            ("xmit", "OK") => format!("transmitted by {}/{}", ev.netns, ev.iface),
                            ("stack", "DELIVERED") => {
                                format!("delivered to {}'s stack ({})", ev.netns, ev.iface)
                            }
                            (h, v) => format!("{h} {v} at {}/{}", ev.netns, ev.iface),
                        };
                    }
                }
                // with --json, stdout holds only the summary object
                if a.trace && a.json {
                    eprintln!("{}", ev.to_text());
                } else if a.trace {
                    writeln!(so, "{}", ev.to_text())?;
                }
                if let Some((p, w)) = &mut trace_json {
                    let line = match a.trace_format {
                        TraceFormat::Skiff => ev.to_json(),
                        TraceFormat::Pwru => ev.to_pwru_json(),
                    };
                    writeln!(w, "{line}").with_context(|| format!("{}", p.display()))?;
                }
            }
            // delivered frames go to --pcap-delivered or nowhere, and AF_XDP
            // queues have no reader here: freed as they come, so memory stays
            // constant in the number of packets
            for d in dp.take_delivered() {
                if let Some((w, ifaces)) = &mut delivered_out {
                    let iface = ifaces.get(&d.dev).copied().unwrap_or(0);
                    let comment = format!("id={} by={}", d.id, d.by);
                    w.write(iface, d.ts_ns, &d.frame, Some(&comment))?;
                }
                dp.recycle(d.frame);
            }
            for (dev, q) in dp.xsk_queues() {
                for f in dp.take_xsk(dev, q) {
                    dp.recycle(f.frame);
                }
            }
            for c in dp.take_captures() {
                let dev = (c.ifindex, format!("{}/{}", c.netns, c.iface));
                let at = CaptureAt::of(c.point, c.hook);
                if !filter.as_mut().is_none_or(|f| f.matches(&c.bytes)) {
                    continue;
                }
                if at == CaptureAt::Tap(Tap::Tx) {
                    let out = tap_outs.get(&dev).and_then(|d| outs.get(d));
                    if let Some((o, iface)) =
                        out.and_then(|(fi, iface)| writers.get_mut(*fi).map(|w| (w, *iface)))
                    {
                        o.writer.write(iface, c.ts_ns, &c.bytes, None)?;
                        *transmitted_out
                            .entry(o.path.display().to_string())
                            .or_default() += 1;
                    }
                }
                if let Some(o) = caps.get_mut(&(dev.0, dev.1, at)) {
                    let comment = capture_comment(&c);
                    o.writer.write(0, c.ts_ns, &c.bytes, Some(&comment))?;
                }
            }
            Ok(())
        };
    // a NAPI poll's worth of frames at a time, each chunk's output written
    // before the next is read
    loop {
        let n = inject_chunk(&mut dp, &mut inputs)?;
        if n == 0 {
            break;
        }
        dp.run();
        drain(&mut dp, &mut so)?;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
    }
    dp.finish();
    drain(&mut dp, &mut so)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for o in writers {
        o.writer.finish()?;
    }
    for (_, o) in caps {
        o.writer.finish()?;
    }
    if let Some((w, _)) = delivered_out {
        w.finish()?;
    }
    if let Some((p, mut w)) = trace_json {
        w.flush().with_context(|| format!("{}", p.display()))?;
    }

    let ran = Ran {
        maps: &maps,
        total,
        transmitted_out: &transmitted_out,
        fates: &fates,
    };
    if let Some(p) = &a.coverage {
        let objs: Vec<&Path> = topo.objects.iter().map(|o| o.path.as_path()).collect();
        let mut files = vec![a.topology.as_path()];
        files.extend(objs);
        let (progs, srcs) =
            skiff::coverage::write(p, &skiff::coverage::bases(&files)).map_err(|e| anyhow!(e))?;
        eprintln!(
            "skiff run: coverage of {progs} programs, {srcs} source files written to {}",
            p.display()
        );
    }
    summary(a, &mut dp, ran, &mut so, Extra::default())
}

/// A live run's name: `--name`, or the topology file's stem.
fn run_name(a: &RunArgs) -> Result<String> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .topology
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("--name {name:?}: want a plain name (the socket is RUN_DIR/NAME.sock)");
    }
    Ok(name)
}

/// A live run's control socket (and `--metrics`), its path printed.
fn control(
    a: &RunArgs,
    name: &str,
    topo: &Topology,
    built: &skiff_topology::Built,
    load: skiff_vm::LoadOptions,
) -> Result<skiff::control::Control> {
    let path = skiff::control::run_dir().join(format!("{name}.sock"));
    let ctl = skiff::control::Control::start(&path, topo, built, load, a.metrics.as_deref())?;
    eprintln!("skiff run --live: control socket {}", ctl.path().display());
    if let Some(m) = ctl.metrics_addr() {
        eprintln!("skiff run --live: metrics on http://{m}/metrics");
    }
    Ok(ctl)
}

/// The control socket serves between the live loop's batches.
impl crate::live::LiveService for skiff::control::Control {
    fn service(&mut self, built: &mut skiff_topology::Built) {
        skiff::control::Control::service(self, built);
    }

    fn drop_sites(&self) -> skiff::stats::DropSites {
        skiff::control::Control::drop_sites(self).clone()
    }

    fn observe(
        &mut self,
        built: &mut skiff_topology::Built,
        start: std::time::Instant,
        records: std::sync::Arc<skiff::stats::RecordCounters>,
    ) {
        skiff::control::Control::observe(self, built, start, records);
    }
}

/// with --trace: where each packet came in and where it ended
pub(crate) struct Fate {
    first: String,
    hook: String,
    end: String,
}

/// What the run did that the summary reports besides the datapath's counters.
pub(crate) struct Ran<'a> {
    pub maps: &'a [NamedMap],
    /// Packets read from the inputs.
    pub total: usize,
    /// Frames written per --pcap-out file.
    pub transmitted_out: &'a BTreeMap<String, u64>,
    /// With --trace: where each packet went.
    pub fates: &'a BTreeMap<u64, Fate>,
}

/// What a live run adds to the summary: a JSON member and text lines before
/// the conservation line.
#[derive(Default)]
pub(crate) struct Extra {
    pub json: Option<(&'static str, serde_json::Value)>,
    pub text: String,
    /// Drops counted before the run ended (by the control socket, which
    /// drains the drop log); the log's remaining records are added.
    pub drop_sites: skiff::stats::DropSites,
    /// A live run's worker times and record counters.
    pub live: Option<skiff::stats::LiveStats>,
}

/// The summary after a run: per-device counters, drops by reason and where,
/// what was written, the conservation line (or all of it as one JSON
/// object); exit code 1 when packets are not conserved.
pub(crate) fn summary(
    a: &RunArgs,
    dp: &mut Datapath,
    ran: Ran<'_>,
    so: &mut std::io::StdoutLock,
    extra: Extra,
) -> Result<i32> {
    let Ran {
        maps,
        total,
        transmitted_out,
        fates,
    } = ran;
    let report = dp.counters();
    let cons = report.conservation;
    // a live run's control socket counted the drops it drained so far
    let mut sites = extra.drop_sites;
    sites.add(dp.drops());
    if a.json {
        let mut v = skiff::stats::json_fields(&report, &sites);
        v.insert("topology".into(), a.topology.display().to_string().into());
        v.insert("packets".into(), total.into());
        v.insert("pcap_out".into(), serde_json::json!(transmitted_out));
        v.insert("maps".into(), maps_after(maps));
        v.insert("tc".into(), tc_json(dp));
        v.insert("conntrack".into(), conntrack_json(dp));
        v.insert("netfilter".into(), netfilter_json(dp));
        if let Some((k, x)) = extra.json {
            v.insert(k.to_string(), x);
        }
        if let Some(l) = &extra.live {
            skiff::stats::live_fields(&mut v, &report, l);
        }
        writeln!(so, "{}", serde_json::Value::Object(v))?;
    } else {
        if a.trace {
            writeln!(so, "\nwhere every packet went (first seen -> end):")?;
            for (id, f) in fates {
                writeln!(so, "  #{id:<6} {:<16} -> {}", f.first, f.end)?;
            }
            writeln!(so)?;
        }
        skiff::stats::write_devices(so, &report)?;
        skiff::stats::write_drop_sites(so, &sites)?;
        for (path, n) in transmitted_out {
            writeln!(so, "wrote {n} packets to {path}")?;
        }
        write!(so, "{}", extra.text)?;
        if let Some(l) = &extra.live {
            skiff::stats::write_live(so, &report, l)?;
        }
        skiff::stats::write_conservation(so, &report)?;
    }
    if a.tc_stats {
        write!(so, "{}", tc_text(dp))?;
    }
    if a.nf_stats && !a.json {
        write!(so, "{}", netfilter_text(dp))?;
    }
    if a.conntrack && !a.json {
        write!(so, "{}", conntrack_text(dp))?;
    }
    so.flush()?;
    if !cons.balanced() {
        eprintln!("skiff run: packet conservation violated (a datapath bug): {cons:?}");
        return Ok(1);
    }
    Ok(0)
}

/// With --filter: an event with a frame passes when the frame matches (its
/// packet is then remembered); one without (a drop, a printk line) when its
/// packet matched before.
pub(crate) fn trace_passes(
    f: &mut skiff::filter::Filter,
    matched: &mut std::collections::HashSet<u64>,
    ev: &skiff_net::core::trace::TraceEvent,
) -> bool {
    if ev.frame.is_empty() {
        return matched.contains(&ev.skb);
    }
    let m = f.matches(&ev.frame);
    if m {
        matched.insert(ev.skb);
    }
    m
}

pub(crate) type NamedMap = (String, std::sync::Arc<skiff_maps::Map>);

/// The maps `--maps` names (all when empty): a name as `maps` keys it, or a
/// bare MAP for OBJECT/MAP.
pub(crate) fn chosen_maps(all: Vec<NamedMap>, names: &[String]) -> Result<Vec<NamedMap>> {
    if names.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for n in names {
        let hits: Vec<&NamedMap> = all
            .iter()
            .filter(|(k, _)| k == n || k.rsplit('/').next() == Some(n.as_str()))
            .collect();
        if hits.is_empty() {
            let known: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
            bail!("--maps {n}: no such map (maps: {})", known.join(", "));
        }
        for h in hits {
            if !out.iter().any(|(k, _): &NamedMap| *k == h.0) {
                out.push(h.clone());
            }
        }
    }
    Ok(out)
}

/// `--json`'s "maps": each map's entries after the run, arrays without their
/// all-zero entries.
fn maps_after(maps: &[NamedMap]) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    for (name, m) in maps {
        o.insert(
            name.clone(),
            skiff::maps::map_json_with(m, skiff::maps::Entries::ArraysNonZero),
        );
    }
    serde_json::Value::Object(o)
}

/// Every device's qdiscs and classes by "NETNS/DEV", as `tc -s -j qdisc
/// show` / `tc -s class show` give them (`qdisc` and `class` arrays).
fn tc_json(dp: &Datapath) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (id, ns, name, _, _) in dp.devices() {
        let Ok(show) = dp.tc_show(id) else { continue };
        let key = format!("{}/{name}", dp.netns_name(ns).unwrap_or("?"));
        if let Ok(mut v) = serde_json::to_value(&show) {
            tc_json_filters(dp, id, ns, &mut v);
            m.insert(key, v);
        }
    }
    serde_json::Value::Object(m)
}

/// The device's `filter` array (`tc -s -j filter show` entries, each with
/// the `parent` it is attached at) and its namespace's `action` array
/// (`tc -s -j actions show`, one object per kind).
fn tc_json_filters(dp: &Datapath, id: DevId, ns: NsId, v: &mut serde_json::Value) {
    let Some(o) = v.as_object_mut() else { return };
    let filters: Vec<serde_json::Value> = dp
        .tc_filter_show(id)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let mut j = f.json;
            if let Some(e) = j.as_object_mut() {
                e.insert("parent".into(), serde_json::Value::String(f.parent));
            }
            j
        })
        .collect();
    o.insert("filter".into(), serde_json::Value::Array(filters));
    o.insert(
        "action".into(),
        serde_json::Value::Array(dp.tc_actions_show(ns)),
    );
}

/// Each namespace's conntrack table (`conntrack -L` lines, count,
/// `conntrack -S` counters), keyed by namespace name.
fn conntrack_json(dp: &mut Datapath) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for i in 0.. {
        let ns = NsId(i);
        let Some(name) = dp.netns_name(ns).map(String::from) else {
            break;
        };
        if let Ok(mut st) = dp.stack_mut(ns) {
            let ct = &mut st.netfilter_mut().conntrack;
            let now = ct.now_ns;
            m.insert(name, ct.to_json(now));
        }
    }
    serde_json::Value::Object(m)
}

/// Each namespace's netfilter tables (docs/netfilter.md: family -> table ->
/// chain -> policy, counters, rules), keyed by namespace name.
fn netfilter_json(dp: &mut Datapath) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for i in 0.. {
        let ns = NsId(i);
        let Some(name) = dp.netns_name(ns).map(String::from) else {
            break;
        };
        if let Ok(st) = dp.stack_mut(ns) {
            let nf = st.netfilter();
            let mut v = skiff_net::netfilter::dump::to_json(nf);
            // The nf_tables tables beside the x_tables families (docs/netfilter.md).
            if let (Some(o), false) = (v.as_object_mut(), nf.nft.tables.is_empty()) {
                o.insert("nft".into(), nft_dump::to_json(&nf.nft));
            }
            m.insert(name, v);
        }
    }
    serde_json::Value::Object(m)
}

use skiff_net::netfilter::nf_tables::dump as nft_dump;

/// `iptables -t TABLE -L -v -n -x` for every table of every namespace, and
/// `nft list ruleset` where it has nf_tables tables.
fn netfilter_text(dp: &mut Datapath) -> String {
    let mut out = String::new();
    for i in 0.. {
        let ns = NsId(i);
        let Some(name) = dp.netns_name(ns).map(String::from) else {
            break;
        };
        if let Ok(st) = dp.stack_mut(ns) {
            out += &skiff_net::netfilter::dump::list_all(st.netfilter(), &name);
            if !st.netfilter().nft.tables.is_empty() {
                out += &format!("\n# ip netns exec {name} nft list ruleset\n");
                out += &nft_dump::list_ruleset(&st.netfilter().nft);
            }
        }
    }
    out
}

/// `conntrack -L` per namespace, headed as `ip netns exec NETNS conntrack -L`.
fn conntrack_text(dp: &mut Datapath) -> String {
    let mut out = String::new();
    for i in 0.. {
        let ns = NsId(i);
        let Some(name) = dp.netns_name(ns).map(String::from) else {
            break;
        };
        if let Ok(mut st) = dp.stack_mut(ns) {
            let ct = &mut st.netfilter_mut().conntrack;
            let now = ct.now_ns;
            let lines = ct.dump(now);
            // The tool's "N flow entries have been shown." goes to stderr;
            // here it heads the namespace's lines.
            out.push_str(&format!(
                "\nconntrack -L ({name}): {} flow entries\n",
                lines.len()
            ));
            for l in &lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// `tc -s qdisc show` then `tc -s class show`, per namespace as `ip netns
/// exec NETNS tc ...` prints them.
fn tc_text(dp: &Datapath) -> String {
    let mut out = String::new();
    let mut last_ns = None;
    for (id, ns, name, _, _) in dp.devices() {
        let Ok(show) = dp.tc_show(id) else { continue };
        if last_ns != Some(ns) {
            out.push_str(&format!(
                "\n# ip netns exec {} tc -s qdisc show; tc -s class show\n",
                dp.netns_name(ns).unwrap_or("?")
            ));
            last_ns = Some(ns);
        }
        for q in &show.qdisc {
            out.push_str(&q.to_text(&name));
        }
        for c in &show.class {
            out.push_str(&c.to_text());
        }
        if let Ok(f) = dp.tc_filter_text(id) {
            out.push_str(&f.replace("filter parent", &format!("filter dev {name} parent")));
        }
    }
    out
}
