//! `skiff run --capture DEV:rx|tx` and `--pcap-out` on a veth: what tcpdump
//! on the device sees (the AF_PACKET taps). An ARP request sent from host's
//! veth0 reaches pod/eth0, whose stack answers; each tap sees its one frame.

use std::path::PathBuf;
use std::process::Command;

fn skiff(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("skiff-tap-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, f: &str) -> String {
        self.0.join(f).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

const TOPO: &str = "[netns.host]\n\
[[netns.host.device]]\nname = \"veth0\"\nkind = \"veth\"\nmac = \"02:00:00:00:00:01\"\n\
peer = \"eth0\"\npeer_netns = \"pod\"\npeer_mac = \"02:00:00:00:00:02\"\n\
[[netns.host.address]]\ndev = \"veth0\"\ncidr = \"10.0.0.1/24\"\n\
[netns.pod]\n\
[[netns.pod.address]]\ndev = \"eth0\"\ncidr = \"10.0.0.2/24\"\n";

/// ARP op (1 request, 2 reply) from `sha`/`spa` to `tha`/`tpa`, Ethernet to `dst`.
fn arp(op: u8, dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

fn frames(path: &str) -> Vec<Vec<u8>> {
    skiff_io::read(std::path::Path::new(path))
        .unwrap()
        .packets
        .into_iter()
        .map(|p| p.data)
        .collect()
}

#[test]
fn taps_and_pcap_out_on_a_veth() {
    let t = TempDir::new("veth");
    let topo = t.path("topo.toml");
    std::fs::write(&topo, TOPO).unwrap();
    let req = arp(1, [0xff; 6], HOST_MAC, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2]);
    let input = t.path("req.pcap");
    let mut w = skiff_io::Writer::create(
        std::path::Path::new(&input),
        skiff_io::Format::Pcap,
        &[("veth0", 1)],
    )
    .unwrap();
    w.write(0, 1_000, &req, None).unwrap();
    w.finish().unwrap();
    let (code, out, err) = skiff(&[
        "run",
        &topo,
        "--send",
        &format!("veth0={input}"),
        "--pcap-out",
        &format!("veth0={}", t.path("out.pcap")),
        "--capture",
        &format!("veth0:rx={}", t.path("veth0-rx.pcapng")),
        "--capture",
        &format!("pod/eth0:rx={}", t.path("eth0-rx.pcapng")),
        "--capture",
        &format!("pod/eth0:tx={}", t.path("eth0-tx.pcapng")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("wrote 1 packets to {}", t.path("out.pcap"))),
        "{out}"
    );
    let mut reply = arp(2, HOST_MAC, POD_MAC, [10, 0, 0, 2], HOST_MAC, [10, 0, 0, 1]);
    reply.resize(reply.len().max(42), 0);
    assert_eq!(frames(&t.path("out.pcap")), vec![req.clone()]);
    assert_eq!(frames(&t.path("eth0-rx.pcapng")), vec![req]);
    assert_eq!(frames(&t.path("eth0-tx.pcapng")), vec![reply.clone()]);
    assert_eq!(frames(&t.path("veth0-rx.pcapng")), vec![reply]);
}

#[test]
fn tap_names_in_errors() {
    let t = TempDir::new("err");
    let topo = t.path("topo.toml");
    std::fs::write(&topo, TOPO).unwrap();
    let cap = format!("veth0:rxx={}", t.path("x.pcapng"));
    let (code, _, err) = skiff(&["run", &topo, "--capture", &cap]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown hook \"rxx\" (xdp, xdp-generic, xdp-devmap, xdp-cpumap, tc-ingress, tc-egress, netkit, xmit, rx, tx)"),
        "{err}"
    );
}
