//! skiff-io: packets in and out of skiff. For now capture files: pcap and pcapng
//! read (told apart by their magic number) and written, through the `pcap-file`
//! crate, with errors naming the file and the packet's index and byte offset.
//! TAP, AF_XDP and AF_PACKET backends come later.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
use pcap_file::pcapng::{Block, PcapNgParser, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// LINKTYPE_ETHERNET: the only link type skiff's devices speak.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The snap length skiff writes (tcpdump's default, 262144).
pub const SNAPLEN: u32 = 262_144;

/// Which container a capture file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// libpcap's format (micro- or nanosecond timestamps, either byte order).
    Pcap,
    /// pcapng (section header, interface description and packet blocks).
    Pcapng,
}

impl Format {
    /// The format a file name asks for when writing: `.pcapng` is pcapng, anything
    /// else pcap.
    pub fn for_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("pcapng") => Format::Pcapng,
            _ => Format::Pcap,
        }
    }
}

/// An interface of a capture file: pcap has exactly one (no name); pcapng one per
/// interface description block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// `if_name`, when the file gives one.
    pub name: Option<String>,
    pub linktype: u32,
}

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Nanoseconds since the epoch (pcapng `if_tsresol` and pcap's micro/nano magic
    /// applied; `if_tsoffset` added).
    pub ts_ns: u64,
    /// Index into [`Capture::interfaces`] (always 0 for pcap).
    pub interface: u32,
    /// The length on the wire; may exceed `data.len()` for a truncated capture.
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
    /// pcapng `opt_comment` (the first one), when present.
    pub comment: Option<String>,
    /// Where the packet's record or block starts in the file.
    pub offset: u64,
}

/// A whole capture file, read into memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub format: Format,
    pub interfaces: Vec<Interface>,
    pub packets: Vec<Packet>,
}

/// What went wrong, with the file and the place in it.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file ({what})")]
    BadMagic { path: PathBuf, what: String },
    #[error("{path}: file header at byte {offset}: {msg}")]
    Header {
        path: PathBuf,
        offset: u64,
        msg: String,
    },
    #[error("{path}: packet {index} at byte {offset}: {msg}")]
    Packet {
        path: PathBuf,
        /// 0-based index of the packet among the file's packets.
        index: usize,
        offset: u64,
        msg: String,
    },
    #[error("{path}: writing packet {index}: {msg}")]
    Write {
        path: PathBuf,
        index: usize,
        msg: String,
    },
}

fn pcap_msg(e: &PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => "truncated (the file ends inside this record)".to_string(),
        PcapError::InvalidField(m) => m.to_string(),
        PcapError::IoError(e) => e.to_string(),
        PcapError::Utf8Error(e) => format!("invalid UTF-8 in a string option: {e}"),
        PcapError::FromUtf8Error(e) => format!("invalid UTF-8 in a string option: {e}"),
        PcapError::InvalidInterfaceId(id) => format!("no interface description block {id}"),
    }
}

/// Reads a pcap or pcapng file whole.
pub fn read(path: &Path) -> Result<Capture, IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path)
}

/// Parses capture bytes; `path` only names the source in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Capture, IoError> {
    let magic = bytes.get(0..4).unwrap_or(bytes);
    match magic {
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1] => parse_pcap(bytes, path),
        [0x0a, 0x0d, 0x0d, 0x0a] => parse_pcapng(bytes, path),
        _ => Err(IoError::BadMagic {
            path: path.to_path_buf(),
            what: match magic {
                [a, b, c, d] => format!("magic {a:02x} {b:02x} {c:02x} {d:02x} at byte 0"),
                _ => format!("{} bytes, too short for a magic number", bytes.len()),
            },
        }),
    }
}

fn offset_of(all: &[u8], rest: &[u8]) -> u64 {
    (all.len() - rest.len()) as u64
}

fn parse_pcap(bytes: &[u8], path: &Path) -> Result<Capture, IoError> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| IoError::Header {
        path: path.to_path_buf(),
        offset: 0,
        msg: pcap_msg(&e),
    })?;
    let header: PcapHeader = parser.header();
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let offset = offset_of(bytes, rest);
        let index = packets.len();
        let err = |msg: String| IoError::Packet {
            path: path.to_path_buf(),
            index,
            offset,
            msg,
        };
        // The raw record: pcap-file's checked form also refuses orig_len > snaplen,
        // which every capture taken with a short `tcpdump -s` has.
        let (next, raw) = parser
            .next_raw_packet(rest)
            .map_err(|e| err(pcap_msg(&e)))?;
        let frac_ns = match header.ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1000,
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        if frac_ns >= 1_000_000_000 {
            return Err(err(format!(
                "timestamp fraction {} is a second or more",
                raw.ts_frac
            )));
        }
        if raw.incl_len > raw.orig_len {
            return Err(err(format!(
                "captured length {} exceeds the original length {}",
                raw.incl_len, raw.orig_len
            )));
        }
        packets.push(Packet {
            ts_ns: u64::from(raw.ts_sec) * 1_000_000_000 + frac_ns,
            interface: 0,
            orig_len: raw.orig_len,
            data: raw.data.into_owned(),
            comment: None,
            offset,
        });
        rest = next;
    }
    Ok(Capture {
        format: Format::Pcap,
        interfaces: vec![Interface {
            name: None,
            linktype: u32::from(header.datalink),
        }],
        packets,
    })
}

/// An interface's timestamp unit in nanoseconds and offset in seconds, from its
/// if_tsresol / if_tsoffset options (pcapng: default 10^-6 s).
#[derive(Clone, Copy)]
struct TsUnit {
    /// Multiply raw units by `mul` and divide by `div` to get nanoseconds.
    mul: u128,
    div: u128,
    offset_s: u64,
}

fn ts_unit(idb: &InterfaceDescriptionBlock) -> Result<TsUnit, String> {
    let mut unit = TsUnit {
        mul: 1000,
        div: 1,
        offset_s: 0,
    };
    for o in &idb.options {
        match o {
            InterfaceDescriptionOption::IfTsResol(r) => {
                let exp = u32::from(r & 0x7f);
                if r & 0x80 == 0 {
                    // 10^-exp seconds
                    if exp > 30 {
                        return Err(format!("if_tsresol 10^-{exp} is not supported"));
                    }
                    if exp <= 9 {
                        unit.mul = 10u128.pow(9 - exp);
                        unit.div = 1;
                    } else {
                        unit.mul = 1;
                        unit.div = 10u128.pow(exp - 9);
                    }
                } else {
                    // 2^-exp seconds
                    if exp > 64 {
                        return Err(format!("if_tsresol 2^-{exp} is not supported"));
                    }
                    unit.mul = 1_000_000_000;
                    unit.div = 1u128 << exp;
                }
            }
            InterfaceDescriptionOption::IfTsOffset(s) => unit.offset_s = *s,
            _ => {}
        }
    }
    Ok(unit)
}

fn parse_pcapng(bytes: &[u8], path: &Path) -> Result<Capture, IoError> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| IoError::Header {
        path: path.to_path_buf(),
        offset: 0,
        msg: pcap_msg(&e),
    })?;
    let mut interfaces = Vec::new();
    // Interfaces of the current section: (index into `interfaces`, unit).
    let mut section: Vec<(u32, TsUnit)> = Vec::new();
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let offset = offset_of(bytes, rest);
        let index = packets.len();
        let err = |msg: String| IoError::Packet {
            path: path.to_path_buf(),
            index,
            offset,
            msg,
        };
        let (next, block) = parser.next_block(rest).map_err(|e| {
            err(format!(
                "{} (in the block at this offset; packets before it: {index})",
                pcap_msg(&e)
            ))
        })?;
        match block {
            Block::SectionHeader(_) => section.clear(),
            Block::InterfaceDescription(idb) => {
                let unit = ts_unit(&idb).map_err(|m| err(format!("interface description: {m}")))?;
                let name = idb.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                });
                let id = u32::try_from(interfaces.len())
                    .map_err(|_| err("too many interfaces".to_string()))?;
                interfaces.push(Interface {
                    name,
                    linktype: u32::from(idb.linktype),
                });
                section.push((id, unit));
            }
            Block::EnhancedPacket(epb) => {
                let (iface, unit) =
                    section
                        .get(epb.interface_id as usize)
                        .copied()
                        .ok_or_else(|| {
                            err(format!(
                                "interface {} has no interface description block in this section",
                                epb.interface_id
                            ))
                        })?;
                // pcap-file hands the raw 64-bit count back as nanoseconds.
                let raw = epb.timestamp.as_nanos();
                let ns = raw
                    .checked_mul(unit.mul)
                    .map(|v| v / unit.div)
                    .and_then(|v| v.checked_add(u128::from(unit.offset_s) * 1_000_000_000))
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| err(format!("timestamp {raw} out of range")))?;
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                packets.push(Packet {
                    ts_ns: ns,
                    interface: iface,
                    orig_len: epb.original_len,
                    data: epb.data.into_owned(),
                    comment,
                    offset,
                });
            }
            Block::SimplePacket(spb) => {
                let (iface, _) = section.first().copied().ok_or_else(|| {
                    err("simple packet block before any interface description".to_string())
                })?;
                packets.push(Packet {
                    ts_ns: 0,
                    interface: iface,
                    orig_len: spb.original_len,
                    data: spb.data.into_owned(),
                    comment: None,
                    offset,
                });
            }
            Block::Packet(_) => {
                return Err(err(
                    "not supported: the obsolete pcapng Packet Block (type 2)".to_string(),
                ))
            }
            // Name resolution, statistics, journal and unknown blocks carry no packet.
            _ => {}
        }
        rest = next;
    }
    Ok(Capture {
        format: Format::Pcapng,
        interfaces,
        packets,
    })
}

/// Writes a capture file packet by packet: pcap (nanosecond timestamps, little
/// endian, one link type) or pcapng (little endian, one interface description
/// block per interface with its name and `if_tsresol` 9, enhanced packet blocks
/// with an optional comment).
pub struct Writer<W: Write> {
    path: PathBuf,
    inner: Inner<W>,
    written: usize,
    interfaces: usize,
}

enum Inner<W: Write> {
    Pcap(W),
    Pcapng(PcapNgWriter<W>),
}

impl Writer<BufWriter<File>> {
    /// Creates `path` in `format`, with the given interfaces (names and link types;
    /// pcap takes exactly one, its name is not stored).
    pub fn create(
        path: &Path,
        format: Format,
        interfaces: &[(&str, u32)],
    ) -> Result<Self, IoError> {
        let f = File::create(path).map_err(|source| IoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Writer::new(BufWriter::new(f), path, format, interfaces)
    }
}

impl<W: Write> Writer<W> {
    /// As [`Writer::create`], over any writer; `path` names it in errors.
    pub fn new(
        mut out: W,
        path: &Path,
        format: Format,
        interfaces: &[(&str, u32)],
    ) -> Result<Self, IoError> {
        let header_err = |msg: String| IoError::Header {
            path: path.to_path_buf(),
            offset: 0,
            msg,
        };
        let inner = match format {
            Format::Pcap => {
                let [(_, linktype)] = interfaces else {
                    return Err(header_err(format!(
                        "a pcap file holds exactly one interface, {} given",
                        interfaces.len()
                    )));
                };
                let header = PcapHeader {
                    version_major: 2,
                    version_minor: 4,
                    ts_correction: 0,
                    ts_accuracy: 0,
                    snaplen: SNAPLEN,
                    datalink: DataLink::from(*linktype),
                    ts_resolution: TsResolution::NanoSecond,
                    endianness: Endianness::Little,
                };
                header
                    .write_to(&mut out)
                    .map_err(|e| header_err(pcap_msg(&e)))?;
                Inner::Pcap(out)
            }
            Format::Pcapng => {
                let shb = SectionHeaderBlock {
                    endianness: Endianness::Little,
                    major_version: 1,
                    minor_version: 0,
                    section_length: -1,
                    options: vec![],
                };
                let mut w = PcapNgWriter::with_section_header(out, shb)
                    .map_err(|e| header_err(pcap_msg(&e)))?;
                for (name, linktype) in interfaces {
                    let idb = InterfaceDescriptionBlock {
                        linktype: DataLink::from(*linktype),
                        snaplen: SNAPLEN,
                        options: vec![
                            InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                            InterfaceDescriptionOption::IfTsResol(9),
                        ],
                    };
                    w.write_pcapng_block(idb)
                        .map_err(|e| header_err(format!("interface {name}: {}", pcap_msg(&e))))?;
                }
                Inner::Pcapng(w)
            }
        };
        Ok(Writer {
            path: path.to_path_buf(),
            inner,
            written: 0,
            interfaces: interfaces.len(),
        })
    }

    /// Appends one packet. `interface` indexes the interfaces given at creation;
    /// a comment is stored only in pcapng (pcap has no place for it).
    pub fn write(
        &mut self,
        interface: u32,
        ts_ns: u64,
        data: &[u8],
        comment: Option<&str>,
    ) -> Result<(), IoError> {
        let index = self.written;
        let err = |msg: String| IoError::Write {
            path: self.path.clone(),
            index,
            msg,
        };
        if interface as usize >= self.interfaces {
            return Err(err(format!(
                "interface {interface} does not exist ({} in the file)",
                self.interfaces
            )));
        }
        let len = u32::try_from(data.len())
            .ok()
            .filter(|l| *l <= SNAPLEN)
            .ok_or_else(|| {
                err(format!(
                    "{} bytes exceed the snap length {SNAPLEN}",
                    data.len()
                ))
            })?;
        match &mut self.inner {
            Inner::Pcap(out) => {
                let sec = u32::try_from(ts_ns / 1_000_000_000)
                    .map_err(|_| err(format!("timestamp {ts_ns} ns is past 2106")))?;
                let frac = (ts_ns % 1_000_000_000) as u32;
                let mut rec = [0u8; 16];
                rec[0..4].copy_from_slice(&sec.to_le_bytes());
                rec[4..8].copy_from_slice(&frac.to_le_bytes());
                rec[8..12].copy_from_slice(&len.to_le_bytes());
                rec[12..16].copy_from_slice(&len.to_le_bytes());
                out.write_all(&rec)
                    .and_then(|_| out.write_all(data))
                    .map_err(|e| err(e.to_string()))?;
            }
            Inner::Pcapng(w) => {
                let epb = EnhancedPacketBlock {
                    interface_id: interface,
                    timestamp: Duration::from_nanos(ts_ns),
                    original_len: len,
                    data: Cow::Borrowed(data),
                    options: comment
                        .map(|c| vec![EnhancedPacketOption::Comment(Cow::Borrowed(c))])
                        .unwrap_or_default(),
                };
                w.write_pcapng_block(epb).map_err(|e| err(pcap_msg(&e)))?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Flushes and hands back the underlying writer.
    pub fn finish(self) -> Result<W, IoError> {
        let path = self.path;
        let mut out = match self.inner {
            Inner::Pcap(w) => w,
            Inner::Pcapng(w) => w.into_inner(),
        };
        out.flush().map_err(|source| IoError::Io { path, source })?;
        Ok(out)
    }
}
