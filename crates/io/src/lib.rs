//! skiff-io: packets in and out of skiff. For now capture files: pcap and pcapng
//! read (told apart by their magic number) and written, through the `pcap-file`
//! crate, with errors naming the file and the packet's index and byte offset.
//! Both directions stream: [`Reader`] holds one record at a time, [`Writer`]
//! writes each packet as it comes; [`read`] collects a whole file.
//! Live devices (AF_PACKET, TAP, AF_XDP) are in [`live`]; they are the only code
//! here that needs `unsafe` (system calls), each block with its SAFETY note.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod live;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
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

/// Reads a pcap or pcapng file whole (a [`Reader`] collected).
pub fn read(path: &Path) -> Result<Capture, IoError> {
    collect(Reader::open(path)?)
}

/// Parses capture bytes whole; `path` only names the source in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Capture, IoError> {
    collect(Reader::new(bytes, path)?)
}

fn collect<R: Read>(mut r: Reader<R>) -> Result<Capture, IoError> {
    let mut packets = Vec::new();
    while let Some(p) = r.next_packet()? {
        packets.push(p.to_packet());
    }
    Ok(Capture {
        format: r.format,
        interfaces: r.interfaces,
        packets,
    })
}

/// The largest pcapng block read: libpcap's MAX_BLOCKSIZE_FOR_SNAPLEN
/// (sf-pcapng.c) for a [`SNAPLEN`] snap length: an enhanced packet block's
/// header, the packet and 128 KiB of options.
pub const MAX_BLOCK: u32 = 8 + 20 + SNAPLEN + 131_072 + 4;

/// pcapng's section header block type (the same bytes in either byte order).
const SECTION_HEADER: u32 = 0x0a0d_0d0a;

/// Where the data starts in a pcap record (after its 16-byte header).
const PCAP_DATA_AT: usize = 16;
/// Where the data starts in an enhanced packet block (block type and length,
/// interface, two timestamp words, two lengths).
const EPB_DATA_AT: usize = 28;
/// Where the data starts in a simple packet block (type, length, original length).
const SPB_DATA_AT: usize = 12;

/// One packet of a capture file as a [`Reader`] holds it: the bytes stay in the
/// reader's buffer until its next read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRef<'a> {
    /// As [`Packet::ts_ns`].
    pub ts_ns: u64,
    /// Index into [`Reader::interfaces`] (always 0 for pcap).
    pub interface: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
    pub comment: Option<&'a str>,
    /// Where the packet's record or block starts in the file.
    pub offset: u64,
}

impl PacketRef<'_> {
    /// An owned copy.
    pub fn to_packet(&self) -> Packet {
        Packet {
            ts_ns: self.ts_ns,
            interface: self.interface,
            orig_len: self.orig_len,
            data: self.data.to_vec(),
            comment: self.comment.map(str::to_string),
            offset: self.offset,
        }
    }
}

/// The current packet, its data located in the reader's buffer.
#[derive(Clone, Copy)]
struct Current {
    ts_ns: u64,
    interface: u32,
    orig_len: u32,
    data_at: usize,
    data_len: usize,
    has_comment: bool,
    offset: u64,
}

enum Parser {
    Pcap(PcapParser),
    Pcapng {
        parser: PcapNgParser,
        /// Interfaces of the current section: (index into `interfaces`, unit).
        section: Vec<(u32, TsUnit)>,
    },
}

/// Reads a capture file record by record (pcap) or block by block (pcapng)
/// into one reused buffer, so memory stays constant in the number of packets:
/// a record's data is bounded by the file's snap length or [`SNAPLEN`]
/// (libpcap's MAXIMUM_SNAPLEN), whichever is larger, a block by [`MAX_BLOCK`].
/// pcap-file 2 parses each record; its own readers are not used because each
/// allocates an 8 MB buffer, fails on a record larger than that without saying
/// where, and reports no byte offsets.
pub struct Reader<R> {
    src: R,
    path: PathBuf,
    format: Format,
    interfaces: Vec<Interface>,
    parser: Parser,
    /// The current record or block, whole.
    buf: Vec<u8>,
    /// The current packet's comment, when it has one.
    comment: String,
    cur: Option<Current>,
    /// Where the next record or block starts.
    next_offset: u64,
    /// Packets read so far.
    packets: usize,
}

/// Reads from `src` until `buf` holds `n` bytes: false when the input ends first.
fn fill<R: Read>(src: &mut R, buf: &mut Vec<u8>, n: usize) -> std::io::Result<bool> {
    let mut at = buf.len();
    if at >= n {
        return Ok(true);
    }
    buf.resize(n, 0);
    while at < n {
        match src.read(&mut buf[at..n]) {
            Ok(0) => break,
            Ok(k) => at += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(at);
                return Err(e);
            }
        }
    }
    buf.truncate(at);
    Ok(at == n)
}

fn u32_at(buf: &[u8], at: usize, big: bool) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    match big {
        true => u32::from_be_bytes(b),
        false => u32::from_le_bytes(b),
    }
}

/// Why reading a record stopped: the input failed, or the record is bad.
enum Fail {
    Io(std::io::Error),
    Bad(String),
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail::Io(e)
    }
}

fn truncated() -> Fail {
    Fail::Bad(pcap_msg(&PcapError::IncompleteBuffer))
}

/// Reads one pcap record (header and data) into `buf`, whose data may hold up
/// to `max` bytes: Ok(false) at a clean end of the input.
fn read_pcap_record<R: Read>(
    src: &mut R,
    buf: &mut Vec<u8>,
    big: bool,
    max: u32,
) -> Result<bool, Fail> {
    if !fill(src, buf, PCAP_DATA_AT)? {
        return if buf.is_empty() {
            Ok(false)
        } else {
            Err(truncated())
        };
    }
    let incl_len = u32_at(buf, 8, big);
    if incl_len > max {
        return Err(Fail::Bad(format!(
            "captured length {incl_len} exceeds the largest record read, {max} bytes"
        )));
    }
    match fill(src, buf, PCAP_DATA_AT + incl_len as usize)? {
        true => Ok(true),
        false => Err(truncated()),
    }
}

/// Reads one pcapng block into `buf` (which may already hold its first
/// bytes), in the byte order of the section (`big`) unless it starts a new
/// one: Ok(false) at a clean end of the input.
fn read_pcapng_block<R: Read>(src: &mut R, buf: &mut Vec<u8>, big: bool) -> Result<bool, Fail> {
    if !fill(src, buf, 8)? {
        return if buf.is_empty() {
            Ok(false)
        } else {
            Err(truncated())
        };
    }
    let mut big = big;
    if u32_at(buf, 0, false) == SECTION_HEADER {
        if !fill(src, buf, 12)? {
            return Err(truncated());
        }
        big = match buf[8..12] {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            [a, b, c, d] => {
                return Err(Fail::Bad(format!(
                    "section header block: byte-order magic {a:02x} {b:02x} {c:02x} {d:02x}"
                )))
            }
            _ => return Err(truncated()),
        };
    }
    let len = u32_at(buf, 4, big);
    if len < 12 || !len.is_multiple_of(4) {
        return Err(Fail::Bad(format!(
            "block length {len} is not a multiple of 4 of at least 12"
        )));
    }
    if len > MAX_BLOCK {
        return Err(Fail::Bad(format!(
            "block length {len} exceeds the largest block read, {MAX_BLOCK} bytes"
        )));
    }
    match fill(src, buf, len as usize)? {
        true => Ok(true),
        false => Err(truncated()),
    }
}

impl Reader<BufReader<File>> {
    /// Opens `path` and reads its file header (pcap) or first section header
    /// block (pcapng).
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let f = File::open(path).map_err(|source| IoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Reader::new(BufReader::new(f), path)
    }
}

impl<R: Read> Reader<R> {
    /// As [`Reader::open`], over any reader (give it a buffered one); `path`
    /// only names the source in errors.
    pub fn new(mut src: R, path: &Path) -> Result<Self, IoError> {
        let io_err = |source| IoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let header_err = |msg: String| IoError::Header {
            path: path.to_path_buf(),
            offset: 0,
            msg,
        };
        let mut buf = Vec::new();
        fill(&mut src, &mut buf, 4).map_err(io_err)?;
        let (format, parser, interfaces) = match buf[..] {
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                if !fill(&mut src, &mut buf, 24).map_err(io_err)? {
                    return Err(header_err(pcap_msg(&PcapError::IncompleteBuffer)));
                }
                let (_, p) = PcapParser::new(&buf).map_err(|e| header_err(pcap_msg(&e)))?;
                let linktype = u32::from(p.header().datalink);
                let iface = Interface {
                    name: None,
                    linktype,
                };
                (Format::Pcap, Parser::Pcap(p), vec![iface])
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                read_pcapng_block(&mut src, &mut buf, false).map_err(|f| match f {
                    Fail::Io(e) => io_err(e),
                    Fail::Bad(m) => header_err(m),
                })?;
                let (_, parser) = PcapNgParser::new(&buf).map_err(|e| header_err(pcap_msg(&e)))?;
                let section = Vec::new();
                (
                    Format::Pcapng,
                    Parser::Pcapng { parser, section },
                    Vec::new(),
                )
            }
            _ => {
                return Err(IoError::BadMagic {
                    path: path.to_path_buf(),
                    what: match buf[..] {
                        [a, b, c, d] => format!("magic {a:02x} {b:02x} {c:02x} {d:02x} at byte 0"),
                        _ => format!("{} bytes, too short for a magic number", buf.len()),
                    },
                })
            }
        };
        let next_offset = buf.len() as u64;
        buf.clear();
        Ok(Reader {
            src,
            path: path.to_path_buf(),
            format,
            interfaces,
            parser,
            buf,
            comment: String::new(),
            cur: None,
            next_offset,
            packets: 0,
        })
    }

    /// pcap or pcapng.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The interfaces described so far: pcap's one; pcapng's grow as the
    /// reader passes interface description blocks.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Packets read so far.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Reads the next packet (passing pcapng's other blocks): None at the end.
    pub fn next_packet(&mut self) -> Result<Option<PacketRef<'_>>, IoError> {
        self.advance()?;
        Ok(self.current())
    }

    /// The packet the last [`Reader::advance`] read, while it is held.
    pub fn current(&self) -> Option<PacketRef<'_>> {
        let c = self.cur?;
        Some(PacketRef {
            ts_ns: c.ts_ns,
            interface: c.interface,
            orig_len: c.orig_len,
            data: self.buf.get(c.data_at..c.data_at + c.data_len)?,
            comment: c.has_comment.then_some(self.comment.as_str()),
            offset: c.offset,
        })
    }

    /// Reads the next packet into the buffer (see [`Reader::current`]): false
    /// at the end of the file.
    pub fn advance(&mut self) -> Result<bool, IoError> {
        self.cur = None;
        loop {
            self.buf.clear();
            let offset = self.next_offset;
            let got = match &self.parser {
                Parser::Pcap(p) => {
                    let h = p.header();
                    let big = h.endianness == Endianness::Big;
                    read_pcap_record(&mut self.src, &mut self.buf, big, h.snaplen.max(SNAPLEN))
                }
                Parser::Pcapng { parser, .. } => {
                    let big = parser.section().endianness == Endianness::Big;
                    read_pcapng_block(&mut self.src, &mut self.buf, big)
                }
            };
            let got = got.map_err(|f| match f {
                Fail::Io(source) => IoError::Io {
                    path: self.path.clone(),
                    source,
                },
                Fail::Bad(m) => self.packet_err(offset, self.in_block(m)),
            })?;
            if !got {
                return Ok(false);
            }
            self.next_offset += self.buf.len() as u64;
            if let Some(c) = self.parse_record(offset)? {
                self.cur = Some(c);
                self.packets += 1;
                return Ok(true);
            }
        }
    }

    fn packet_err(&self, offset: u64, msg: String) -> IoError {
        IoError::Packet {
            path: self.path.clone(),
            index: self.packets,
            offset,
            msg,
        }
    }

    /// A pcapng block's error says it may not be a packet's.
    fn in_block(&self, msg: String) -> String {
        match self.format {
            Format::Pcap => msg,
            Format::Pcapng => format!(
                "{msg} (in the block at this offset; packets before it: {})",
                self.packets
            ),
        }
    }

    /// Parses the record or block in the buffer: the packet it holds, if any.
    fn parse_record(&mut self, offset: u64) -> Result<Option<Current>, IoError> {
        let parsed = match &mut self.parser {
            Parser::Pcap(p) => pcap_record(p, &self.buf, offset).map(Some),
            Parser::Pcapng { parser, section } => {
                let mut ng = PcapngState {
                    parser,
                    section,
                    interfaces: &mut self.interfaces,
                    comment: &mut self.comment,
                    packets: self.packets,
                };
                ng.block(&self.buf, offset)
            }
        };
        parsed.map_err(|m| self.packet_err(offset, m))
    }
}

fn pcap_record(p: &PcapParser, buf: &[u8], offset: u64) -> Result<Current, String> {
    let header = p.header();
    // The raw record: pcap-file's checked form also refuses orig_len > snaplen,
    // which every capture taken with a short `tcpdump -s` has.
    let (_, raw) = p.next_raw_packet(buf).map_err(|e| pcap_msg(&e))?;
    let frac_ns = match header.ts_resolution {
        TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1000,
        TsResolution::NanoSecond => u64::from(raw.ts_frac),
    };
    if frac_ns >= 1_000_000_000 {
        return Err(format!(
            "timestamp fraction {} is a second or more",
            raw.ts_frac
        ));
    }
    if raw.incl_len > raw.orig_len {
        return Err(format!(
            "captured length {} exceeds the original length {}",
            raw.incl_len, raw.orig_len
        ));
    }
    Ok(Current {
        ts_ns: u64::from(raw.ts_sec) * 1_000_000_000 + frac_ns,
        interface: 0,
        orig_len: raw.orig_len,
        data_at: PCAP_DATA_AT,
        data_len: raw.data.len(),
        has_comment: false,
        offset,
    })
}

/// What a pcapng block changes: the parser's section, the interfaces, the
/// current packet's comment.
struct PcapngState<'r> {
    parser: &'r mut PcapNgParser,
    section: &'r mut Vec<(u32, TsUnit)>,
    interfaces: &'r mut Vec<Interface>,
    comment: &'r mut String,
    /// Packets before this block.
    packets: usize,
}

impl PcapngState<'_> {
    /// Parses one block: the packet it holds, if any.
    fn block(&mut self, buf: &[u8], offset: u64) -> Result<Option<Current>, String> {
        let (_, block) = self.parser.next_block(buf).map_err(|e| {
            format!(
                "{} (in the block at this offset; packets before it: {})",
                pcap_msg(&e),
                self.packets
            )
        })?;
        match block {
            Block::SectionHeader(_) => self.section.clear(),
            Block::InterfaceDescription(idb) => self.interface(&idb)?,
            Block::EnhancedPacket(epb) => return self.enhanced(&epb, offset).map(Some),
            Block::SimplePacket(spb) => {
                let (iface, _) = self.section.first().copied().ok_or_else(|| {
                    "simple packet block before any interface description".to_string()
                })?;
                return Ok(Some(Current {
                    ts_ns: 0,
                    interface: iface,
                    orig_len: spb.original_len,
                    data_at: SPB_DATA_AT,
                    data_len: spb.data.len(),
                    has_comment: false,
                    offset,
                }));
            }
            Block::Packet(_) => {
                return Err("not supported: the obsolete pcapng Packet Block (type 2)".to_string())
            }
            // Name resolution, statistics, journal and unknown blocks carry no packet.
            _ => {}
        }
        Ok(None)
    }

    fn interface(&mut self, idb: &InterfaceDescriptionBlock) -> Result<(), String> {
        let unit = ts_unit(idb).map_err(|m| format!("interface description: {m}"))?;
        let name = idb.options.iter().find_map(|o| match o {
            InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
            _ => None,
        });
        let id =
            u32::try_from(self.interfaces.len()).map_err(|_| "too many interfaces".to_string())?;
        self.interfaces.push(Interface {
            name,
            linktype: u32::from(idb.linktype),
        });
        self.section.push((id, unit));
        Ok(())
    }

    fn enhanced(&mut self, epb: &EnhancedPacketBlock, offset: u64) -> Result<Current, String> {
        let (iface, unit) = self
            .section
            .get(epb.interface_id as usize)
            .copied()
            .ok_or_else(|| {
                format!(
                    "interface {} has no interface description block in this section",
                    epb.interface_id
                )
            })?;
        // pcap-file hands the raw 64-bit count back as nanoseconds.
        let raw = epb.timestamp.as_nanos();
        let ns = raw
            .checked_mul(unit.mul)
            .map(|v| v / unit.div)
            .and_then(|v| v.checked_add(u128::from(unit.offset_s) * 1_000_000_000))
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| format!("timestamp {raw} out of range"))?;
        let comment = epb.options.iter().find_map(|o| match o {
            EnhancedPacketOption::Comment(c) => Some(c),
            _ => None,
        });
        self.comment.clear();
        if let Some(c) = comment {
            self.comment.push_str(c);
        }
        Ok(Current {
            ts_ns: ns,
            interface: iface,
            orig_len: epb.original_len,
            data_at: EPB_DATA_AT,
            data_len: epb.data.len(),
            has_comment: comment.is_some(),
            offset,
        })
    }
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
