//! The datapath in multi-worker mode (tests/bpf/workers.c): RSS queues and
//! their workers, per-CPU values, threads, CPUMAP, reproducible runs.
//! Needs clang-19; skips with a message without it.

mod common;

use std::sync::OnceLock;

use skiff_maps::MapValue;
use skiff_net::datapath::*;
use skiff_vm::Collection;
use skiff_vm::LoadOptions;

use common::datapath::*;

// ---- multi-worker mode (tests/bpf/workers.c) ----------------------------------

use proptest::prelude::*;
use skiff_maps::Map;
use skiff_net::datapath::nic::rss;

fn workers_object() -> Option<&'static [u8]> {
    static OBJ: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    OBJ.get_or_init(|| common::bpf_object("workers")).as_deref()
}

fn load_obj(obj: Option<&[u8]>, cpus: usize) -> Option<Collection> {
    let Some(obj) = obj else {
        eprintln!("skipping: clang-19 not available or failed for tests/bpf/*.c");
        return None;
    };
    let o = skiff_object::Object::parse(obj).expect("parse");
    let opts = LoadOptions {
        possible_cpus: cpus,
        // as `load`: unverified, like the objects' faulty programs need
        verify: false,
        ..skiff_net::load_options()
    };
    Some(Collection::load(&o, &opts).expect("load"))
}

fn load_w(cpus: usize) -> Option<Collection> {
    load_obj(workers_object(), cpus)
}

fn wset(c: &Collection, map: &str, key: u32, value: &[u8]) {
    c.map(map)
        .unwrap()
        .sys_update(&key.to_le_bytes(), value, 0)
        .expect("map update");
}

/// The per-CPU values of `pcpu[slot]`, through the syscall lookup.
fn percpu(c: &Collection, slot: u32) -> Vec<u64> {
    match c.map("pcpu").unwrap().sys_lookup(&slot.to_le_bytes()) {
        Ok(MapValue::PerCpu(v)) => v
            .iter()
            .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
            .collect(),
        r => panic!("pcpu[{slot}]: {r:?}"),
    }
}

/// The CPU + 1 stage `stage` saw the packet from UDP port `sport` on (0: none).
fn seen(c: &Collection, sport: u16, stage: u32) -> u32 {
    let k = sport as u32 * 4 + stage;
    match c.map("seen").unwrap().sys_lookup(&k.to_le_bytes()) {
        Ok(MapValue::Single(v)) => u32::from_le_bytes(v[..4].try_into().unwrap()),
        _ => 0,
    }
}

fn queue_of(f: &[u8], n: u32) -> u32 {
    rss::queue_for(rss::rss_hash(f).expect("rss hash").0, n)
}

/// A host with eth0 (2 rx queues, 10.0.0.2/24), `workers` workers on `cpus` CPUs.
fn wnet(workers: usize, cpus: usize) -> (Datapath, NsId, DevId) {
    wnet_with(DatapathOptions {
        workers,
        possible_cpus: cpus,
        ..Default::default()
    })
}

/// [`wnet`] with the datapath made with `opts`.
fn wnet_with(opts: DatapathOptions) -> (Datapath, NsId, DevId) {
    let mut dp = Datapath::new(opts).unwrap();
    let host = dp.add_netns("host").unwrap();
    let nic = dp
        .add_device(host, DeviceSpec::nic("eth0", MAC1, 2))
        .unwrap();
    addr(&mut dp, nic);
    (dp, host, nic)
}

const PORTS: std::ops::Range<u16> = 1000..1032;

/// Each flow's frame into `nic`, 1 µs apart, then a poll.
fn inject_all(dp: &mut Datapath, nic: DevId, frames: &[Flow]) {
    for (i, (_, f, _)) in frames.iter().enumerate() {
        dp.inject(nic, f, i as u64 * 1000).unwrap();
    }
    dp.run();
}

/// (UDP source port, frame, rx queue of 2).
type Flow = (u16, Vec<u8>, u32);

/// The frames, their rx queue (of 2) and how many land on each queue.
fn traffic() -> (Vec<Flow>, [u64; 2]) {
    let mut per_q = [0u64; 2];
    let v: Vec<_> = PORTS
        .map(|p| {
            let f = udp(MAC1, MAC3, p);
            let q = queue_of(&f, 2);
            per_q[q as usize] += 1;
            (p, f, q)
        })
        .collect();
    (v, per_q)
}

#[test]
fn rss_queues_have_their_own_worker_and_per_cpu_values() {
    let Some(c) = load_w(2) else { return };
    let (mut dp, _, nic) = wnet(2, 2);
    attach_xdp(&mut dp, nic, &c, "w_xdp_count");
    dp.set_trace(true);
    let (frames, per_q) = traffic();
    assert!(
        per_q[0] > 0 && per_q[1] > 0,
        "RSS spreads the flows: {per_q:?}"
    );
    let mut ids = std::collections::HashMap::new();
    for (i, (p, f, q)) in frames.iter().enumerate() {
        let id = dp.inject(nic, f, i as u64 * 1000).unwrap();
        ids.insert(id, (*p, *q));
    }
    dp.run();
    let len = frames[0].1.len() as u64;
    assert_eq!(percpu(&c, 0), vec![per_q[0], per_q[1]]);
    assert_eq!(percpu(&c, 1), vec![per_q[0] * len, per_q[1] * len]);
    // The same through Map::dump.
    let dump = Map::dump(c.map("pcpu").unwrap());
    let (_, v0) = dump
        .iter()
        .find(|(k, _)| k[..] == 0u32.to_le_bytes())
        .unwrap();
    assert_eq!(
        v0,
        &MapValue::PerCpu(vec![
            per_q[0].to_le_bytes().to_vec(),
            per_q[1].to_le_bytes().to_vec()
        ])
    );
    for (p, _, q) in &frames {
        assert_eq!(seen(&c, *p, 0), q + 1, "port {p}");
    }
    // The trace shows the worker of every hook each packet passed.
    let tr = dp.take_trace();
    let xdp: Vec<_> = tr.iter().filter(|e| e.func == "xdp").collect();
    assert_eq!(xdp.len(), frames.len());
    for e in &tr {
        let (p, q) = ids[&e.skb];
        assert_eq!(e.cpu, q, "port {p}: {}", e.to_text());
    }
    assert_eq!(dp.take_delivered().len(), frames.len());
    // Each worker took its queue's packets.
    assert_eq!(dp.cpu_polled(), &[per_q[0], per_q[1]]);
    assert_eq!(dp.counters().cpu_polled, vec![per_q[0], per_q[1]]);
    assert_balanced(&dp);
}

/// What `two_worker_run` returns: its counters.
type WorkerRun = (Vec<u64>, Vec<u64>, String, Vec<u64>);

/// One run of `rounds` x the 32 flows through eth0 (w_xdp_count, then the
/// stack) with two workers, on OS threads or in turn: its counters.
fn two_worker_run(threads: bool, rounds: u64) -> Option<WorkerRun> {
    let c = load_w(2)?;
    let (mut dp, _, nic) = wnet_with(DatapathOptions {
        workers: 2,
        possible_cpus: 2,
        threads,
        ..Default::default()
    });
    attach_xdp(&mut dp, nic, &c, "w_xdp_count");
    let (frames, _) = traffic();
    let mut ts = 0;
    for _ in 0..rounds {
        for (_, f, _) in &frames {
            ts += 1000;
            dp.inject(nic, f, ts).unwrap();
        }
        dp.run();
    }
    dp.finish();
    assert_balanced(&dp);
    let report = serde_json::to_string(&(dp.counters().devices, dp.counters().drops)).unwrap();
    Some((percpu(&c, 0), percpu(&c, 1), report, dp.cpu_polled()))
}

#[test]
fn threads_give_the_deterministic_run_s_counters() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cpus < 2 {
        eprintln!("skipping: --threads with 2 workers needs 2 CPUs, this machine has {cpus}");
        return;
    }
    let Some(det) = two_worker_run(false, 40) else {
        return;
    };
    let Some(thr) = two_worker_run(true, 40) else {
        return;
    };
    let (_, per_q) = traffic();
    assert_eq!(det.0, vec![per_q[0] * 40, per_q[1] * 40]);
    assert_eq!(thr, det);
}

#[test]
fn threads_are_bounded_by_the_machine_s_cpus() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let r = Datapath::new(DatapathOptions {
        workers: cpus + 1,
        possible_cpus: cpus + 1,
        threads: true,
        ..Default::default()
    });
    match r {
        Err(DatapathError::Errno { errno, msg }) => {
            assert_eq!(errno, EINVAL);
            assert!(msg.contains("at most one worker thread per CPU"), "{msg}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("{} workers on {cpus} CPUs accepted", cpus + 1),
    }
    let r = Datapath::new(DatapathOptions {
        workers: 1,
        possible_cpus: NR_CPUS + 1,
        ..Default::default()
    });
    assert!(matches!(r, Err(DatapathError::Errno { errno: EINVAL, .. })));
}

#[test]
fn one_worker_serves_every_queue_on_cpu_0() {
    let Some(c) = load_w(2) else { return };
    let (mut dp, _, nic) = wnet(1, 2);
    attach_xdp(&mut dp, nic, &c, "w_xdp_count");
    let (frames, _) = traffic();
    inject_all(&mut dp, nic, &frames);
    assert_eq!(percpu(&c, 0), vec![frames.len() as u64, 0]);
    for (p, _, _) in &frames {
        assert_eq!(seen(&c, *p, 0), 1);
    }
    assert_balanced(&dp);
}

#[test]
fn a_packet_keeps_its_cpu_through_tc_redirect_and_veth() {
    let Some(c) = load_w(2) else { return };
    let (mut dp, _, nic) = wnet(2, 2);
    let pod = dp.add_netns("pod").unwrap();
    let veth = dp
        .add_device(
            dp.dev_netns(nic).unwrap(),
            DeviceSpec::veth("veth0", Some(pod), "eth0"),
        )
        .unwrap();
    let peer = dp.peer(veth).unwrap();
    wset(&c, "wcfg", 1, &dp.ifindex(veth).unwrap().to_le_bytes());
    attach_xdp(&mut dp, nic, &c, "w_xdp_count");
    attach_cls(&mut dp, nic, TcDirection::Ingress, &c, "w_tc_redirect");
    // The peer runs native XDP: veth_xmit puts the skb in its ring (NAPI).
    attach_xdp(&mut dp, peer, &c, "w_xdp_peer");
    attach_cls(&mut dp, peer, TcDirection::Ingress, &c, "w_tc_peer");
    let (frames, per_q) = traffic();
    inject_all(&mut dp, nic, &frames);
    for (p, _, q) in &frames {
        for stage in 0..4 {
            assert_eq!(seen(&c, *p, stage), q + 1, "port {p} stage {stage}");
        }
    }
    assert_eq!(percpu(&c, 2), vec![per_q[0], per_q[1]]);
    assert_eq!(percpu(&c, 3), vec![2 * per_q[0], 2 * per_q[1]]);
    // NIC queue, then the peer's ring on the same CPU.
    assert_eq!(dp.cpu_polled(), &[2 * per_q[0], 2 * per_q[1]]);
    assert_eq!(
        dp.counters().drops.get("TC_INGRESS"),
        Some(&(frames.len() as u64))
    );
    assert_balanced(&dp);
}

#[test]
fn cpumap_redirect_lands_on_the_target_cpus_worker() {
    let Some(c) = load_w(2) else { return };
    let (mut dp, _, nic) = wnet(2, 2);
    dp.set_trace(true);
    wset(&c, "wcpus", 1, &[64, 0, 0, 0, 0, 0, 0, 0]);
    wset(&c, "wcfg", 0, &1u32.to_le_bytes());
    attach_xdp(&mut dp, nic, &c, "w_xdp_cpumap");
    attach_cls(&mut dp, nic, TcDirection::Ingress, &c, "w_tc_count");
    let (frames, per_q) = traffic();
    inject_all(&mut dp, nic, &frames);
    for (p, _, q) in &frames {
        assert_eq!(
            seen(&c, *p, 0),
            q + 1,
            "port {p}: XDP on its queue's worker"
        );
        assert_eq!(seen(&c, *p, 1), 2, "port {p}: TC on CPU 1 after CPUMAP");
    }
    assert_eq!(percpu(&c, 0), vec![per_q[0], per_q[1]]);
    assert_eq!(percpu(&c, 2), vec![0, frames.len() as u64]);
    let tr = dp.take_trace();
    let stack: Vec<u32> = tr
        .iter()
        .filter(|e| e.func == "stack")
        .map(|e| e.cpu)
        .collect();
    assert_eq!(stack, vec![1; frames.len()]);
    assert_eq!(dp.take_delivered().len(), frames.len());
    // CPU 1 took its NIC queue's packets and every packet from the CPUMAP queue.
    assert_eq!(dp.cpu_polled(), &[per_q[0], per_q[1] + frames.len() as u64]);
    assert_balanced(&dp);
}

#[test]
fn multi_worker_runs_are_reproducible() {
    let run = || {
        let c = load_w(2)?;
        let (mut dp, _, nic) = wnet(2, 2);
        dp.set_trace(true);
        wset(&c, "wcpus", 0, &[64, 0, 0, 0, 0, 0, 0, 0]);
        attach_xdp(&mut dp, nic, &c, "w_xdp_cpumap");
        let (frames, _) = traffic();
        inject_all(&mut dp, nic, &frames);
        Some(
            dp.take_trace()
                .iter()
                .map(|e| e.to_json())
                .collect::<Vec<_>>(),
        )
    };
    let Some(a) = run() else { return };
    let b = run().unwrap();
    assert!(a.len() > PORTS.len(), "{}", a.len());
    assert_eq!(a, b);
}

#[test]
fn workers_must_fit_the_possible_cpus() {
    let w = |workers, possible_cpus| {
        Datapath::new(DatapathOptions {
            workers,
            possible_cpus,
            ..Default::default()
        })
        .err()
    };
    assert!(
        matches!(w(3, 2), Some(DatapathError::NotSupported(m)) if m.contains("3 workers on 2 possible CPUs"))
    );
    assert!(matches!(
        w(0, 2),
        Some(DatapathError::Errno { errno: EINVAL, .. })
    ));
    assert!(w(4, 4).is_none());
}

const XDP_PROGS: &[&str] = &[
    "xdp_pass",
    "xdp_drop",
    "xdp_tx",
    "xdp_redirect_ifindex",
    "xdp_redirect_devmap",
    "xdp_broadcast",
    "xdp_cpumap",
    "xdp_xsk",
];
const TC_PROGS: &[&str] = &[
    "tc_ok",
    "tc_shot",
    "tc_stolen",
    "tc_redirect_egress",
    "tc_redirect_ingress",
    "tc_redirect_peer",
    "tc_redirect_neigh",
    "tc_clone",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    #[test]
    fn conservation_with_1_to_4_workers(
        workers in 1usize..=4,
        xdp in proptest::collection::vec((0usize..4, 0usize..XDP_PROGS.len(), any::<bool>()), 0..4),
        tc in proptest::collection::vec((0usize..4, any::<bool>(), 0usize..TC_PROGS.len()), 0..4),
        target in 0usize..4,
        with_cpumap in any::<bool>(),
        traffic in proptest::collection::vec((0usize..4, 0u16..2000, any::<bool>()), 1..48),
    ) {
        let Some(c) = load_obj(object(), 4) else { return Ok(()) };
        let mut dp = Datapath::new(DatapathOptions { workers, possible_cpus: 4, ..Default::default() }).unwrap();
        let host = dp.add_netns("host").unwrap();
        let pod = dp.add_netns("pod").unwrap();
        let nic1 = dp.add_device(host, DeviceSpec::nic("eth0", MAC1, 4)).unwrap();
        let nic2 = dp.add_device(host, DeviceSpec::nic("eth1", MAC2, 2)).unwrap();
        let veth = dp.add_device(host, DeviceSpec::veth("veth0", Some(pod), "eth0")).unwrap();
        addr(&mut dp, nic1);
        let devs = [nic1, nic2, veth, dp.peer(veth).unwrap()];
        point_redirects(&c, &dp, devs[target], [nic1, nic2, veth]);
        // xdp_cpumap redirects to CPU 1 (key 1), when the entry exists.
        if with_cpumap {
            set(&c, "cpus", 1, &[64, 0, 0, 0, 0, 0, 0, 0]);
        }
        attach_random(&mut dp, &c, &devs, (xdp, XDP_PROGS), (tc, TC_PROGS));
        dp.set_trace(true);
        let mut first_cpu = std::collections::HashMap::new();
        for (i, (d, port, bcast)) in traffic.iter().enumerate() {
            let dst = if *bcast { [0xff; 6] } else { MAC1 };
            let f = udp(dst, MAC3, *port);
            let id = dp.inject(devs[*d], &f, i as u64 * 1000).unwrap();
            // From the wire: the rx queue's worker; injected elsewhere: CPU 0.
            let cpu = match *d {
                0 => queue_of(&f, 4) as usize % workers,
                1 => queue_of(&f, 2) as usize % workers,
                _ => 0,
            };
            first_cpu.insert(id, cpu as u32);
            if i % 5 == 0 {
                dp.run();
            }
        }
        dp.finish();
        prop_conserved(&dp, traffic.len())?;
        // Every hook ran on a CPU that exists; each packet's first hook on
        // the CPU it came in on.
        for e in dp.take_trace() {
            prop_assert!((e.cpu as usize) < 4, "{}", e.to_text());
            if let Some(cpu) = first_cpu.remove(&e.skb) {
                prop_assert_eq!(e.cpu, cpu, "{}", e.to_text());
            }
        }
        prop_assert_eq!(dp.cpu_polled().len(), 4);
        // Only CPUs with a worker poll NIC queues; CPU 1 also runs CPUMAP.
        for cpu in workers.max(2)..4 {
            prop_assert_eq!(dp.cpu_polled()[cpu], 0);
        }
    }
}
