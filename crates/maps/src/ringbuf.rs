//! RINGBUF: the kernel's record layout (8-byte header `{u32 len; u32 pg_off}`, BUSY bit 31
//! while reserved, DISCARD bit 30, records 8-byte aligned, positions growing without
//! wrapping and masked into the data area).
//!
//! The kernel maps the data pages twice in a row so a record that runs past the end is
//! contiguous; skiff allocates twice the data size instead: a record is written
//! contiguously from its header, and the reader here reads it from the same place.

use parking_lot::Mutex;

use crate::errno::*;
use crate::storage::Block;
use crate::{
    Errno, MapAttr, BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
    BPF_RB_PROD_POS, BPF_RB_RING_SIZE, BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
};

/// kernel/bpf/ringbuf.c: RINGBUF_MAX_RECORD_SZ
const MAX_RECORD: u64 = (u32::MAX / 4) as u64;
const HDR: u64 = BPF_RINGBUF_HDR_SZ as u64;

struct Pos {
    consumer: u64,
    producer: u64,
    pending: u64,
}

pub(crate) struct RingBuf {
    mask: u64,
    block: Block,
    pos: Mutex<Pos>,
}

fn round8(n: u64) -> u64 {
    n.saturating_add(7) & !7
}

/// libbpf ringbuf.c: roundup_len — record length with header, 8-byte aligned.
fn record_len(hdr_len: u32) -> u64 {
    round8(u64::from(hdr_len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) + HDR)
}

impl RingBuf {
    pub(crate) fn new(attr: &MapAttr) -> Option<RingBuf> {
        let size = attr.max_entries as usize;
        Some(RingBuf {
            mask: u64::from(attr.max_entries).checked_sub(1)?,
            block: Block::new(size.checked_mul(2)?)?,
            pos: Mutex::new(Pos {
                consumer: 0,
                producer: 0,
                pending: 0,
            }),
        })
    }

    pub(crate) fn block(&self) -> &Block {
        &self.block
    }

    fn size(&self) -> u64 {
        self.mask + 1
    }

    fn hdr_len(&self, pos: u64) -> u32 {
        self.block
            .load_u32_acquire((pos & self.mask) as usize)
            .unwrap_or(BPF_RINGBUF_BUSY_BIT)
    }

    /// kernel/bpf/ringbuf.c: __bpf_ringbuf_reserve
    pub(crate) fn reserve(&self, size: u64) -> Option<*mut u8> {
        if size > MAX_RECORD {
            return None;
        }
        let len = round8(size + HDR);
        if len > self.size() {
            return None;
        }
        let mut p = self.pos.lock();
        let mut pend = p.pending;
        let prod = p.producer;
        let new_prod = prod + len;
        while pend < prod {
            let l = self.hdr_len(pend);
            if l & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            pend += record_len(l);
        }
        p.pending = pend;
        // at most ring_size - 1 bytes between consumer and producer, and between the
        // oldest uncommitted record and the producer
        if new_prod - p.consumer > self.mask || new_prod - pend > self.mask {
            return None;
        }
        let hdr_off = (prod & self.mask) as usize;
        // the header is written before the producer position moves, as the kernel does
        self.block
            .store_u32_release(hdr_off, size as u32 | BPF_RINGBUF_BUSY_BIT);
        // pg_off: the kernel stores the page offset of the header from the ring buffer
        // struct; skiff stores the page offset inside the data area (only commit reads it).
        self.block
            .write(hdr_off + 4, &((hdr_off >> 12) as u32).to_ne_bytes());
        p.producer = new_prod;
        self.block.ptr(hdr_off + HDR as usize, size as usize)
    }

    /// kernel/bpf/ringbuf.c: bpf_ringbuf_commit (wake-up flags have no effect: the reader
    /// polls).
    pub(crate) fn commit(&self, sample: *mut u8, discard: bool, _flags: u64) -> Result<(), Errno> {
        let off = self.block.offset_of(sample).ok_or(EINVAL)?;
        let hdr = off.checked_sub(HDR as usize).ok_or(EINVAL)?;
        if hdr as u64 > self.mask || !hdr.is_multiple_of(8) {
            return Err(EINVAL);
        }
        let len = self.block.load_u32_acquire(hdr).ok_or(EINVAL)?;
        if len & BPF_RINGBUF_BUSY_BIT == 0 {
            return Err(EINVAL);
        }
        let mut new_len = len ^ BPF_RINGBUF_BUSY_BIT;
        if discard {
            new_len |= BPF_RINGBUF_DISCARD_BIT;
        }
        self.block.store_u32_release(hdr, new_len);
        Ok(())
    }

    /// kernel/bpf/ringbuf.c: bpf_ringbuf_output
    pub(crate) fn output(&self, data: &[u8], flags: u64) -> Result<(), Errno> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(EINVAL);
        }
        let rec = self.reserve(data.len() as u64).ok_or(EAGAIN)?;
        let off = self.block.offset_of(rec).ok_or(EINVAL)?;
        self.block.write(off, data);
        self.commit(rec, false, flags)
    }

    /// kernel/bpf/ringbuf.c: bpf_ringbuf_query
    pub(crate) fn query(&self, flags: u64) -> u64 {
        let p = self.pos.lock();
        match flags {
            BPF_RB_AVAIL_DATA => p.producer - p.consumer,
            BPF_RB_RING_SIZE => self.size(),
            BPF_RB_CONS_POS => p.consumer,
            BPF_RB_PROD_POS => p.producer,
            _ => 0,
        }
    }

    /// libbpf ringbuf.c: ringbuf_process_ring
    pub(crate) fn consume(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = self.pos.lock();
        while p.consumer < p.producer {
            let len = self.hdr_len(p.consumer);
            if len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                let n = (len & !BPF_RINGBUF_DISCARD_BIT) as usize;
                let mut rec = vec![0u8; n];
                let start = (p.consumer & self.mask) as usize + HDR as usize;
                if self.block.read(start, &mut rec) {
                    out.push(rec);
                }
            }
            p.consumer += record_len(len);
        }
        out
    }
}
