//! The XDP firewall tested the way an aya user tests a program with
//! `cargo test`: load the object, fill its maps, hand it packets, check the
//! verdicts and the counters — no root, no kernel. (Run here as the `skiff`
//! crate's test `xdp_fw_example`.)

use skiff::frames::Builder;
use skiff::{bytes, Prog};

const OBJECT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/xdp_fw/xdp_fw.o"
);

fn udp_from(src: &str) -> Vec<u8> {
    Builder::new()
        .eth("02:00:00:00:00:01", "02:00:00:00:00:02")
        .ipv4(src, "10.0.0.2")
        .udp(5000, 53)
        .payload(b"query")
        .build()
        .unwrap()
}

fn firewall() -> Prog {
    let fw = Prog::load(OBJECT, "xdp_fw").unwrap();
    // 192.168.1.0/24 and 10.9.0.0/16 blocked, with rule tags 1 and 2
    let blocked = fw.map("blocked").unwrap();
    blocked
        .update(&bytes(&["u32:24", "ipv4:192.168.1.0"]).unwrap(), &[1])
        .unwrap();
    blocked
        .update(&bytes(&["u32:16", "ipv4:10.9.0.0"]).unwrap(), &[2])
        .unwrap();
    fw
}

#[test]
fn blocked_sources_are_dropped_and_counted_by_tag() {
    let mut fw = firewall();
    for src in ["192.168.1.7", "192.168.1.200", "10.9.3.4"] {
        assert_eq!(fw.run(&udp_from(src)).unwrap().verdict, "XDP_DROP", "{src}");
    }
    let total = fw.map("drop_count").unwrap();
    assert_eq!(
        total.lookup(&bytes(&["u32:0"]).unwrap()).unwrap(),
        Some(3u64.to_le_bytes().to_vec())
    );
    let by_tag = fw.map("drops_by_val").unwrap();
    assert_eq!(
        by_tag.lookup(&[1]).unwrap(),
        Some(2u64.to_le_bytes().to_vec())
    );
    assert_eq!(
        by_tag.lookup(&[2]).unwrap(),
        Some(1u64.to_le_bytes().to_vec())
    );
    assert_eq!(by_tag.entries().len(), 2);
}

#[test]
fn other_sources_pass_unchanged() {
    let mut fw = firewall();
    let frame = udp_from("192.168.2.7");
    let out = fw.run(&frame).unwrap();
    assert_eq!((out.retval, out.verdict.as_str()), (2, "XDP_PASS"));
    assert_eq!(out.data_out, frame);
    assert_eq!(
        fw.map("drop_count").unwrap().entries(),
        vec![(vec![0; 4], vec![0; 8])]
    );
}

#[test]
fn a_deleted_rule_no_longer_drops() {
    let mut fw = firewall();
    let key = bytes(&["u32:24", "ipv4:192.168.1.0"]).unwrap();
    fw.map("blocked").unwrap().delete(&key).unwrap();
    assert_eq!(
        fw.run(&udp_from("192.168.1.7")).unwrap().verdict,
        "XDP_PASS"
    );
    let e = fw.map("blocked").unwrap().delete(&key).unwrap_err();
    assert_eq!(e.to_string(), "map blocked: delete refused: ENOENT (2)");
}
