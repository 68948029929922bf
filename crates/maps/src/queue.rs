//! QUEUE (FIFO) and STACK (LIFO) maps: values are copied in and out (no pointers are
//! handed to programs), kept in a bounded deque.

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::errno::*;
use crate::{Errno, MapAttr, MapType, MapValue, BPF_EXIST, BPF_NOEXIST};

pub(crate) struct QueueStack {
    stack: bool,
    max: usize,
    value_size: usize,
    items: Mutex<VecDeque<Vec<u8>>>,
}

impl QueueStack {
    /// None when the kernel could not allocate the ring either (skiff's 1 GiB limit).
    pub(crate) fn new(attr: &MapAttr) -> Option<QueueStack> {
        let bytes = (attr.max_entries as usize)
            .checked_add(1)?
            .checked_mul(attr.value_size as usize)?;
        if bytes > crate::storage::MAX_BLOCK_BYTES {
            return None;
        }
        Some(QueueStack {
            stack: attr.map_type == MapType::Stack,
            max: attr.max_entries as usize,
            value_size: attr.value_size as usize,
            items: Mutex::new(VecDeque::new()),
        })
    }

    /// kernel/bpf/queue_stack_maps.c: queue_stack_map_push_elem — BPF_EXIST makes room on
    /// a full map by dropping the oldest element (for a stack too).
    pub(crate) fn push(&self, value: &[u8], flags: u64) -> Result<(), Errno> {
        if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
            return Err(EINVAL);
        }
        if value.len() != self.value_size {
            return Err(EINVAL);
        }
        let mut q = self.items.lock();
        if q.len() >= self.max {
            if flags & BPF_EXIST == 0 {
                return Err(E2BIG);
            }
            q.pop_front();
        }
        q.push_back(value.to_vec());
        Ok(())
    }

    /// kernel/bpf/queue_stack_maps.c: __queue_map_get / __stack_map_get — ENOENT when empty.
    pub(crate) fn take(&self, out: &mut [u8], delete: bool) -> Result<(), Errno> {
        if out.len() != self.value_size {
            return Err(EINVAL);
        }
        let mut q = self.items.lock();
        let v = match (self.stack, delete) {
            (false, false) => q.front().cloned(),
            (false, true) => q.pop_front(),
            (true, false) => q.back().cloned(),
            (true, true) => q.pop_back(),
        };
        let v = v.ok_or(ENOENT)?;
        out.copy_from_slice(&v);
        Ok(())
    }

    /// Elements in pop order, with empty keys.
    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, MapValue)> {
        let q = self.items.lock();
        let items: Vec<Vec<u8>> = if self.stack {
            q.iter().rev().cloned().collect()
        } else {
            q.iter().cloned().collect()
        };
        items
            .into_iter()
            .map(|v| (Vec::new(), MapValue::Single(v)))
            .collect()
    }
}
