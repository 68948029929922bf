//! The streaming reader: record by record from any `Read`, one reused buffer,
//! bounded records, and errors naming the file and the byte offset.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use skiff_io::{Format, PacketRef, Reader, Writer, MAX_BLOCK};

fn write_all(format: Format, ifaces: &[(&str, u32)], pkts: &[(u32, u64, &[u8])]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), Path::new("mem.out"), format, ifaces).unwrap();
    for (i, ts, d) in pkts {
        let comment = (*i == 1).then_some("second interface");
        w.write(*i, *ts, d, comment).unwrap();
    }
    w.finish().unwrap()
}

/// A reader that counts the bytes taken from it.
struct Counted<'a> {
    bytes: &'a [u8],
    taken: Rc<Cell<usize>>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.read(buf)?;
        self.taken.set(self.taken.get() + n);
        Ok(n)
    }
}

#[test]
fn pcap_is_read_one_record_at_a_time() {
    let bytes = write_all(
        Format::Pcap,
        &[("eth0", 1)],
        &[(0, 7, &[1, 2, 3]), (0, 9, &[4; 60]), (0, 9, &[5])],
    );
    let taken = Rc::new(Cell::new(0));
    let src = Counted {
        bytes: &bytes,
        taken: taken.clone(),
    };
    let mut r = Reader::new(src, Path::new("x.pcap")).unwrap();
    assert_eq!(taken.get(), 24, "the file header only");
    assert_eq!(r.format(), Format::Pcap);
    assert_eq!(r.current(), None);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(
        p,
        PacketRef {
            ts_ns: 7,
            interface: 0,
            orig_len: 3,
            data: &[1, 2, 3],
            comment: None,
            offset: 24,
        }
    );
    assert_eq!(taken.get(), 24 + 19, "the first record only");
    assert!(r.advance().unwrap());
    assert_eq!(r.current().unwrap().data, &[4; 60]);
    assert_eq!(r.current().unwrap().offset, 43);
    assert_eq!(taken.get(), 43 + 76);
    assert_eq!(r.next_packet().unwrap().unwrap().offset, 119);
    assert_eq!(r.next_packet().unwrap(), None);
    assert_eq!(r.current(), None);
    assert_eq!(r.packets(), 3);
    assert_eq!(taken.get(), bytes.len());
}

#[test]
fn pcapng_interfaces_grow_as_blocks_pass() {
    let bytes = write_all(
        Format::Pcapng,
        &[("eth0", 1), ("lxc1", 1)],
        &[(1, 1_000, &[0xaa; 5]), (0, 2_000, &[0xbb; 4])],
    );
    let mut r = Reader::new(&bytes[..], Path::new("x.pcapng")).unwrap();
    assert_eq!(r.format(), Format::Pcapng);
    assert_eq!(r.interfaces().len(), 0, "only the section header read");
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(
        p,
        PacketRef {
            ts_ns: 1_000,
            interface: 1,
            orig_len: 5,
            data: &[0xaa; 5],
            comment: Some("second interface"),
            offset: 28 + 80,
        }
    );
    let names: Vec<_> = r.interfaces().iter().map(|i| i.name.clone()).collect();
    assert_eq!(names, [Some("eth0".to_string()), Some("lxc1".to_string())]);
    let p = r.next_packet().unwrap().unwrap();
    assert_eq!(
        (p.ts_ns, p.interface, p.data, p.comment),
        (2_000, 0, &[0xbb; 4][..], None)
    );
    assert_eq!(r.next_packet().unwrap(), None);
}

#[test]
fn oversized_records_are_refused_before_they_are_read() {
    let mut pcap = write_all(
        Format::Pcap,
        &[("eth0", 1)],
        &[(0, 1, &[1, 2, 3]), (0, 2, &[4])],
    );
    // the second record claims 300,000 bytes (snap length 262,144)
    pcap[43 + 8..43 + 12].copy_from_slice(&300_000u32.to_le_bytes());
    let mut r = Reader::new(&pcap[..], Path::new("big.pcap")).unwrap();
    assert!(r.advance().unwrap());
    assert_eq!(
        r.advance().unwrap_err().to_string(),
        "big.pcap: packet 1 at byte 43: captured length 300000 exceeds the largest record read, 262144 bytes"
    );

    let mut ng = write_all(Format::Pcapng, &[("eth0", 1)], &[(0, 1, &[1, 2, 3, 4])]);
    let epb = 28 + 40;
    ng[epb + 4..epb + 8].copy_from_slice(&(MAX_BLOCK + 4).to_le_bytes());
    let mut r = Reader::new(&ng[..], Path::new("big.pcapng")).unwrap();
    assert_eq!(
        r.advance().unwrap_err().to_string(),
        "big.pcapng: packet 0 at byte 68: block length 393252 exceeds the largest block read, 393248 bytes (in the block at this offset; packets before it: 0)"
    );
    ng[epb + 4..epb + 8].copy_from_slice(&30u32.to_le_bytes());
    let mut r = Reader::new(&ng[..], Path::new("odd.pcapng")).unwrap();
    assert_eq!(
        r.advance().unwrap_err().to_string(),
        "odd.pcapng: packet 0 at byte 68: block length 30 is not a multiple of 4 of at least 12 (in the block at this offset; packets before it: 0)"
    );
}

#[test]
fn a_file_cut_inside_a_block_names_it() {
    let ng = write_all(
        Format::Pcapng,
        &[("eth0", 1)],
        &[(0, 1, &[1, 2, 3, 4]), (0, 2, &[5; 8])],
    );
    let cut = &ng[..ng.len() - 3];
    let mut r = Reader::new(cut, Path::new("cut.pcapng")).unwrap();
    assert!(r.advance().unwrap());
    assert_eq!(
        r.advance().unwrap_err().to_string(),
        "cut.pcapng: packet 1 at byte 104: truncated (the file ends inside this record) (in the block at this offset; packets before it: 1)"
    );
    let e = Reader::new(&ng[..20], Path::new("head.pcapng"))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "head.pcapng: file header at byte 0: truncated (the file ends inside this record)"
    );
}
