//! Capture files byte for byte: what skiff writes, what it reads back, and the
//! errors for broken files (file, packet index, byte offset).

use std::path::Path;

use skiff_io::{parse, Capture, Format, Interface, IoError, Packet, Writer, LINKTYPE_ETHERNET};

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn write_all(
    format: Format,
    ifaces: &[(&str, u32)],
    pkts: &[(u32, u64, &[u8], Option<&str>)],
) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), Path::new("mem.out"), format, ifaces).unwrap();
    for (i, ts, d, c) in pkts {
        w.write(*i, *ts, d, *c).unwrap();
    }
    assert_eq!(w.written(), pkts.len());
    w.finish().unwrap()
}

#[test]
fn pcap_exact_bytes_and_round_trip() {
    let bytes = write_all(
        Format::Pcap,
        &[("eth0", LINKTYPE_ETHERNET)],
        &[
            (0, 1_500_000_007, &[0xaa, 0xbb, 0xcc], None),
            (0, 2_000_000_000, &[1, 2], Some("ignored")),
        ],
    );
    let mut want = vec![0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    want.extend_from_slice(&le32(262_144));
    want.extend_from_slice(&le32(1));
    want.extend_from_slice(&le32(1));
    want.extend_from_slice(&le32(500_000_007));
    want.extend_from_slice(&le32(3));
    want.extend_from_slice(&le32(3));
    want.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
    want.extend_from_slice(&le32(2));
    want.extend_from_slice(&le32(0));
    want.extend_from_slice(&le32(2));
    want.extend_from_slice(&le32(2));
    want.extend_from_slice(&[1, 2]);
    assert_eq!(bytes, want);

    let cap = parse(&bytes, Path::new("x.pcap")).unwrap();
    assert_eq!(
        cap,
        Capture {
            format: Format::Pcap,
            interfaces: vec![Interface {
                name: None,
                linktype: 1
            }],
            packets: vec![
                Packet {
                    ts_ns: 1_500_000_007,
                    interface: 0,
                    orig_len: 3,
                    data: vec![0xaa, 0xbb, 0xcc],
                    comment: None,
                    offset: 24
                },
                Packet {
                    ts_ns: 2_000_000_000,
                    interface: 0,
                    orig_len: 2,
                    data: vec![1, 2],
                    comment: None,
                    offset: 24 + 19
                },
            ],
        }
    );
}

#[test]
fn pcap_microsecond_big_endian_and_truncated_capture() {
    // tcpdump -s 4 on a big-endian host: micro resolution, orig_len > snaplen
    let mut b = vec![
        0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1,
    ];
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&999_999u32.to_be_bytes());
    b.extend_from_slice(&4u32.to_be_bytes());
    b.extend_from_slice(&60u32.to_be_bytes());
    b.extend_from_slice(&[9, 8, 7, 6]);
    let cap = parse(&b, Path::new("be.pcap")).unwrap();
    assert_eq!(cap.packets.len(), 1);
    assert_eq!(cap.packets[0].ts_ns, 7_999_999_000);
    assert_eq!(cap.packets[0].orig_len, 60);
    assert_eq!(cap.packets[0].data, vec![9, 8, 7, 6]);
}

#[test]
fn pcapng_exact_bytes_and_round_trip() {
    let comment = "id=17 verdict=TC_ACT_OK";
    let bytes = write_all(
        Format::Pcapng,
        &[("eth0", LINKTYPE_ETHERNET), ("lxc1", LINKTYPE_ETHERNET)],
        &[
            (1, 0x1_0000_0002, &[0xaa, 0xbb, 0xcc], Some(comment)),
            (0, 5, &[1, 2, 3, 4], None),
        ],
    );
    let mut want = Vec::new();
    // section header block
    want.extend_from_slice(&le32(0x0a0d0d0a));
    want.extend_from_slice(&le32(28));
    want.extend_from_slice(&le32(0x1a2b3c4d));
    want.extend_from_slice(&[1, 0, 0, 0]);
    want.extend_from_slice(&[0xff; 8]);
    want.extend_from_slice(&le32(28));
    for name in ["eth0", "lxc1"] {
        want.extend_from_slice(&le32(1));
        want.extend_from_slice(&le32(40));
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&le32(262_144));
        want.extend_from_slice(&[2, 0, 4, 0]);
        want.extend_from_slice(name.as_bytes());
        want.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&le32(40));
    }
    // enhanced packet block with a comment
    want.extend_from_slice(&le32(6));
    want.extend_from_slice(&le32(68));
    want.extend_from_slice(&le32(1));
    want.extend_from_slice(&le32(1));
    want.extend_from_slice(&le32(2));
    want.extend_from_slice(&le32(3));
    want.extend_from_slice(&le32(3));
    want.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0]);
    want.extend_from_slice(&[1, 0, 23, 0]);
    want.extend_from_slice(comment.as_bytes());
    want.push(0);
    want.extend_from_slice(&[0, 0, 0, 0]);
    want.extend_from_slice(&le32(68));
    // and without
    want.extend_from_slice(&le32(6));
    want.extend_from_slice(&le32(36));
    want.extend_from_slice(&le32(0));
    want.extend_from_slice(&le32(0));
    want.extend_from_slice(&le32(5));
    want.extend_from_slice(&le32(4));
    want.extend_from_slice(&le32(4));
    want.extend_from_slice(&[1, 2, 3, 4]);
    want.extend_from_slice(&le32(36));
    assert_eq!(bytes, want);

    let cap = parse(&bytes, Path::new("x.pcapng")).unwrap();
    assert_eq!(cap.format, Format::Pcapng);
    assert_eq!(
        cap.interfaces,
        vec![
            Interface {
                name: Some("eth0".into()),
                linktype: 1
            },
            Interface {
                name: Some("lxc1".into()),
                linktype: 1
            }
        ]
    );
    assert_eq!(
        cap.packets,
        vec![
            Packet {
                ts_ns: 0x1_0000_0002,
                interface: 1,
                orig_len: 3,
                data: vec![0xaa, 0xbb, 0xcc],
                comment: Some(comment.into()),
                offset: 28 + 80,
            },
            Packet {
                ts_ns: 5,
                interface: 0,
                orig_len: 4,
                data: vec![1, 2, 3, 4],
                comment: None,
                offset: 28 + 80 + 68
            },
        ]
    );
}

/// A pcapng written by another tool: default microsecond resolution (no
/// if_tsresol), no interface name.
#[test]
fn pcapng_default_microsecond_resolution() {
    let mut b = Vec::new();
    b.extend_from_slice(&le32(0x0a0d0d0a));
    b.extend_from_slice(&le32(28));
    b.extend_from_slice(&le32(0x1a2b3c4d));
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&[0xff; 8]);
    b.extend_from_slice(&le32(28));
    b.extend_from_slice(&le32(1));
    b.extend_from_slice(&le32(20));
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&le32(20));
    b.extend_from_slice(&le32(6));
    b.extend_from_slice(&le32(32));
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&le32(1_000_001));
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&le32(0));
    b.extend_from_slice(&le32(32));
    let cap = parse(&b, Path::new("u.pcapng")).unwrap();
    assert_eq!(
        cap.interfaces,
        vec![Interface {
            name: None,
            linktype: 1
        }]
    );
    assert_eq!(cap.packets.len(), 1);
    assert_eq!(cap.packets[0].ts_ns, 1_000_001_000);
    assert_eq!(cap.packets[0].data, Vec::<u8>::new());
}

#[test]
fn errors_name_file_packet_and_offset() {
    let bytes = write_all(
        Format::Pcap,
        &[("eth0", 1)],
        &[(0, 1, &[1, 2, 3], None), (0, 2, &[4, 5, 6], None)],
    );
    // cut inside the second packet's data
    let cut = &bytes[..bytes.len() - 1];
    let e = parse(cut, Path::new("cut.pcap")).unwrap_err();
    assert!(
        matches!(
            e,
            IoError::Packet {
                index: 1,
                offset: 43,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "cut.pcap: packet 1 at byte 43: truncated (the file ends inside this record)"
    );

    let e = parse(b"GIF89a", Path::new("pic.pcap")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pic.pcap: not a pcap or pcapng file (magic 47 49 46 38 at byte 0)"
    );
    let e = parse(b"", Path::new("empty.pcap")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "empty.pcap: not a pcap or pcapng file (0 bytes, too short for a magic number)"
    );

    // pcapng packet on an interface with no description block
    let mut ng = write_all(
        Format::Pcapng,
        &[("eth0", 1)],
        &[(0, 1, &[1, 2, 3, 4], None)],
    );
    let epb = 28 + 40;
    ng[epb + 8..epb + 12].copy_from_slice(&le32(3));
    let e = parse(&ng, Path::new("ng.pcapng")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ng.pcapng: packet 0 at byte 68: interface 3 has no interface description block in this section"
    );

    // a pcap writer takes exactly one interface
    let e = Writer::new(
        Vec::new(),
        Path::new("two.pcap"),
        Format::Pcap,
        &[("a", 1), ("b", 1)],
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "two.pcap: file header at byte 0: a pcap file holds exactly one interface, 2 given"
    );
    let mut w = Writer::new(
        Vec::new(),
        Path::new("w.pcapng"),
        Format::Pcapng,
        &[("a", 1)],
    )
    .unwrap();
    let e = w.write(1, 0, &[0], None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "w.pcapng: writing packet 0: interface 1 does not exist (1 in the file)"
    );
}

#[test]
fn format_from_file_name() {
    assert_eq!(Format::for_path(Path::new("/tmp/a.pcapng")), Format::Pcapng);
    assert_eq!(Format::for_path(Path::new("a.PCAPNG")), Format::Pcapng);
    assert_eq!(Format::for_path(Path::new("a.pcap")), Format::Pcap);
    assert_eq!(Format::for_path(Path::new("a")), Format::Pcap);
}

/// Every truncation and many single-byte corruptions of both formats end in Ok or
/// an error, never a panic.
#[test]
fn broken_files_never_panic() {
    let files = [
        write_all(
            Format::Pcap,
            &[("eth0", 1)],
            &[(0, 1, &[1, 2, 3], None), (0, 2, &[4; 70], None)],
        ),
        write_all(
            Format::Pcapng,
            &[("eth0", 1), ("x", 1)],
            &[(1, 1, &[1, 2, 3], Some("c")), (0, 2, &[4; 70], None)],
        ),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for f in &files {
        for n in 0..=f.len() {
            let _ = parse(&f[..n], Path::new("t"));
        }
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut g = f.clone();
            let at = (seed % g.len() as u64) as usize;
            g[at] = (seed >> 32) as u8;
            let _ = parse(&g, Path::new("t"));
        }
    }
}
