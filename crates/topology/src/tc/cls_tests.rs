//! `tc filter` and `tc actions` lines: what they parse to (as iproute2's
//! f_*.c / m_*.c pack them), the errors tc would give, and filters running
//! in a built topology (clsact and a classful qdisc's classification).

use std::path::Path;

use skiff_net::datapath::{DatapathOptions, FilterParent};
use skiff_net::sched::act_api::*;
use skiff_net::sched::act_mirred::MirredAction;
use skiff_net::sched::act_pedit::{PeditCmd, PeditHeader, PeditKey};
use skiff_net::sched::cls_u32::{U32Key, TC_U32_TERMINAL};

use super::action::ActKind;
use super::filter::{FilterLine, KindLine};
use super::u32::get_u32_handle;
use super::*;
use crate::Topology;

fn filter(line: &str) -> FilterLine {
    match parse_line(line) {
        Ok(TcCommand::Filter(f)) => f,
        r => panic!("{line}: {r:?}"),
    }
}

fn err(line: &str) -> (Option<usize>, String) {
    match parse_line(line) {
        Err(e) => (e.word, e.msg),
        Ok(c) => panic!("{line}: accepted as {c:?}"),
    }
}

fn u32_keys(f: &FilterLine) -> Vec<U32Key> {
    match &f.kind {
        Some(KindLine::U32(u)) => u.sel.keys.clone(),
        k => panic!("not u32: {k:?}"),
    }
}

fn key(val: u32, mask: u32, off: i32, offmask: i32) -> U32Key {
    U32Key {
        val,
        mask,
        off,
        offmask,
    }
}

#[test]
fn the_seeds_filter_line() {
    let f = filter(
        "filter add dev eth0 parent ffff: u32 match u32 0 0 action police rate 1mbit burst 100k \
         conform-exceed pipe action mirred egress redirect dev lo",
    );
    assert_eq!(f.parent, Some(FilterParent::Ingress));
    let Some(KindLine::U32(u)) = &f.kind else {
        panic!("{f:?}")
    };
    assert_eq!(u.sel.keys, vec![key(0, 0, 0, 0)]);
    assert_eq!(u.sel.flags, TC_U32_TERMINAL);
    let [p, m] = u.actions.as_slice() else {
        panic!("{:?}", u.actions)
    };
    // 100k = 102400 bytes at 125000 B/s = 819.2 ms = 12800000 ticks of 64 ns.
    match &p.what {
        ActKind::Police(pp) => {
            assert_eq!(
                (pp.rate, pp.burst_ticks, pp.mtu, pp.cell_log),
                (125_000, 12_800_000, 0, 3)
            );
            assert_eq!((p.control, pp.conform), (TC_ACT_PIPE, TC_ACT_OK));
        }
        w => panic!("{w:?}"),
    }
    assert_eq!(
        m.what,
        ActKind::Mirred {
            eaction: MirredAction::EgressRedir,
            dev: "lo".into()
        }
    );
    assert_eq!(m.control, TC_ACT_STOLEN);
}

#[test]
fn u32_match_forms_pack_as_f_u32_does() {
    let f = filter(
        "filter add dev eth0 parent 1: protocol ip prio 3 u32 match ip src 10.0.0.1/24 \
         match ip dport 80 0xffff match ip sport 1000 0xffff match ip protocol 6 0xff \
         match tcp dst 443 0xffff flowid 1:10",
    );
    assert_eq!((f.protocol, f.prio), (0x0800, 3));
    assert_eq!(
        u32_keys(&f),
        vec![
            key(0x0a00_0000, 0xffff_ff00, 12, 0),
            // sport (high half) and dport (low half) merged into the word at 20.
            key(0x03e8_0050, 0xffff_ffff, 20, 0),
            key(0x0006_0000, 0x00ff_0000, 8, 0),
            key(443, 0xffff, 0, -1),
        ]
    );
    assert_eq!(get_u32_handle("800::800"), Some(0x8000_0800));
    assert_eq!(get_u32_handle("1:"), Some(0x0010_0000));
    assert_eq!(get_u32_handle("2:3:"), Some(0x0020_3000));
    assert_eq!(get_u32_handle("1000:"), None);
    let h = filter("filter add dev eth0 parent 1: prio 3 handle 2: u32 divisor 256");
    assert!(matches!(&h.kind, Some(KindLine::U32(u)) if u.divisor == Some(256)));
}

#[test]
fn actions_parse_as_m_files_do() {
    let f = filter(
        "filter add dev eth0 ingress matchall action goto chain 5 action drop \
         action gact pass random determ drop 10 action skbedit priority 1:10 mark 5/0xff \
         action pedit ex munge ip ttl add 1 action csum iph and udp",
    );
    let Some(KindLine::Matchall { actions, .. }) = &f.kind else {
        panic!("{f:?}")
    };
    let c: Vec<i64> = actions.iter().map(|a| a.control).collect();
    assert_eq!(
        c,
        [
            TC_ACT_GOTO_CHAIN | 5,
            TC_ACT_SHOT,
            TC_ACT_OK,
            TC_ACT_PIPE,
            TC_ACT_OK,
            TC_ACT_OK
        ]
    );
    assert_eq!(
        actions[2].what,
        ActKind::Gact(Some((
            skiff_net::sched::act_gact::GactProb::Determ,
            10,
            TC_ACT_SHOT
        )))
    );
    let ActKind::Pedit(p) = &actions[4].what else {
        panic!()
    };
    assert_eq!(
        p.keys,
        vec![PeditKey::from_host(
            1 << 24,
            0x00ff_ffff,
            8,
            PeditHeader::Ip4,
            PeditCmd::Add
        )]
    );
    let a = match parse_line("actions add action mirred egress mirror dev eth1 index 7") {
        Ok(TcCommand::Action(a)) => a,
        r => panic!("{r:?}"),
    };
    assert_eq!((a.actions[0].index, a.actions[0].control), (7, TC_ACT_PIPE));
}

#[test]
fn errors_say_what_tc_says() {
    let e = err("filter add dev eth0 ingress u32 match ip src 10.0.0.300/32 flowid 1:1");
    assert_eq!(e, (Some(6), "Illegal \"match\"".into()));
    let e = err("filter add dev eth0 ingress matchall action police rate 1mbit");
    assert_eq!(e, (None, "'burst' requires 'rate'.".into()));
    let e = err("filter add dev eth0 ingress route to 1");
    assert_eq!(e, (Some(5), "not supported: filter route".into()));
    let e = err("filter add dev eth0 ingress matchall action tunnel_key set id 1");
    assert_eq!(e.1, "not supported: action tunnel_key");
    let e = err("filter add dev eth0 ingress protocol ip flower dst_port 80");
    assert_eq!(
        e,
        (
            Some(8),
            "Illegal \"dst_port\" without a fitting \"ip_proto\"".into()
        )
    );
    let e = err("filter add dev eth0 ingress flower vlan_id 5");
    assert_eq!(
        e.1,
        "Can't set \"vlan_id\" if ethertype isn't 802.1Q or 802.1AD"
    );
    let e = err("filter add dev eth0 ingress matchall action mirred egress dev lo");
    assert_eq!(e.1, "Illegal \"dev\" (redirect or mirror)");
    let e = err("filter add dev eth0 ingress u32 match u32 0 0 bogus");
    assert_eq!(e, (Some(10), "What is \"bogus\"?".into()));
}

const ROUTER: &str = r#"
[netns.host]
forwarding = true
tc = [TC]
[[netns.host.device]]
name = "eth0"
kind = "nic"
mac = "02:00:00:00:00:01"
[[netns.host.device]]
name = "eth1"
kind = "nic"
mac = "02:00:00:00:00:02"
[[netns.host.address]]
dev = "eth0"
cidr = "10.0.0.1/24"
[[netns.host.address]]
dev = "eth1"
cidr = "10.1.0.1/24"
[[netns.host.neighbour]]
dev = "eth1"
ip = "10.1.0.2"
mac = "02:00:00:00:00:20"
"#;

fn udp(dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x10, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 86, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 1, 0, 2,
    ]);
    let c = skiff_wire_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 66, 0, 0]);
    f.resize(100, 0);
    f
}

fn skiff_wire_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn router(tc: &[&str]) -> crate::Built {
    let lines: Vec<String> = tc.iter().map(|l| format!("{l:?}")).collect();
    let src = ROUTER.replace("TC", &lines.join(", "));
    let t = Topology::parse(&src, Path::new("t.toml"), Path::new(".")).unwrap();
    t.build(DatapathOptions::default()).unwrap()
}

#[test]
fn htb_classifies_with_u32_and_fw_filters_at_its_handle() {
    let mut b = router(&[
        "qdisc add dev eth1 root handle 1: htb default 30",
        "class add dev eth1 parent 1: classid 1:10 htb rate 100mbit",
        "class add dev eth1 parent 1: classid 1:20 htb rate 100mbit",
        "class add dev eth1 parent 1: classid 1:30 htb rate 100mbit",
        "filter add dev eth1 parent 1: protocol ip prio 1 u32 match ip dport 5001 0xffff flowid 1:10",
        // A mark from skbedit at clsact egress (before the qdisc), fw at htb.
        "qdisc add dev eth1 clsact",
        "filter add dev eth1 egress u32 match ip dport 5002 0xffff action skbedit mark 7",
        "filter add dev eth1 parent 1: protocol ip prio 2 handle 7 fw classid 1:20",
    ]);
    let host = b.dp.netns("host").unwrap();
    let (eth0, eth1) = (
        b.dp.device(host, "eth0").unwrap(),
        b.dp.device(host, "eth1").unwrap(),
    );
    for (i, p) in [5001, 5002, 5001, 5003, 5002, 5001].iter().enumerate() {
        b.dp.inject(eth0, &udp(*p), i as u64 * 1000).unwrap();
        b.dp.run();
    }
    let show = b.dp.tc_show(eth1).unwrap();
    let packets = |h: &str| show.class.iter().find(|c| c.handle == h).map(|c| c.packets);
    assert_eq!(
        (packets("1:10"), packets("1:20"), packets("1:30")),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(b.dp.take_transmitted().len(), 6);
}

#[test]
fn clsact_gact_drop_and_goto_chain_in_a_topology() {
    let mut b = router(&[
        "qdisc add dev eth0 clsact",
        "filter add dev eth0 ingress prio 1 u32 match ip dport 5001 0xffff action goto chain 1",
        "filter add dev eth0 ingress prio 1 chain 1 u32 match u32 0 0 action drop",
    ]);
    let host = b.dp.netns("host").unwrap();
    let eth0 = b.dp.device(host, "eth0").unwrap();
    for p in [5001, 5002] {
        b.dp.inject(eth0, &udp(p), 0).unwrap();
        b.dp.run();
    }
    assert_eq!(b.dp.take_transmitted().len(), 1);
    let f = b.dp.tc_filter_show(eth0).unwrap();
    let drop = f
        .iter()
        .find(|e| e.json["chain"] == 1 && e.json["options"]["actions"][0]["kind"] == "gact")
        .map(|e| e.json["options"]["actions"][0]["stats"]["drops"].clone());
    assert_eq!(drop, Some(serde_json::json!(1)));
    // Without an ingress qdisc: what the kernel says.
    let lines = ["filter add dev eth1 ingress matchall action drop"];
    let src = ROUTER.replace("TC", &format!("{:?}", lines[0]));
    let t = Topology::parse(&src, Path::new("t.toml"), Path::new(".")).unwrap();
    let e = t
        .build(DatapathOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("Parent Qdisc doesn't exists."), "{e}");
}
