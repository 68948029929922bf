//! Stack slot liveness: a stored state's stack slot matters for pruning only if
//! some path below it reads the slot before writing it whole. Reads mark the
//! checkpoints above the current path (kernel/bpf/verifier.c: mark_reg_read,
//! REG_LIVE_READ / REG_LIVE_WRITTEN on stack slots, propagate_liveness); a slot
//! no path read is skipped by `stacksafe`. The 6.18 kernel computes the same
//! from a per-instruction analysis (kernel/bpf/liveness.c); marking the paths
//! as they are walked decides the same for each slot a path reads.

use super::env::Env;
use super::state::{BPF_REG_SIZE, MAX_CALL_FRAMES};

/// Stack slots per frame (bit `spi` of frame `fr`).
pub type SlotMasks = [u64; MAX_CALL_FRAMES];

fn bit(spi: usize) -> u64 {
    if spi < 64 {
        1 << spi
    } else {
        0
    }
}

/// The slots bytes `min_off..max_off` (below fp) touch.
fn slots_of(min_off: i64, max_off: i64) -> u64 {
    let mut m = 0;
    let mut o = min_off;
    while o < max_off && o < 0 {
        let spi = ((-o - 1) as usize) / BPF_REG_SIZE;
        m |= bit(spi);
        o += 1;
    }
    m
}

impl<'a> Env<'a> {
    /// Bytes `min_off..max_off` of frame `fr`'s stack are read: the slots were
    /// live in every checkpoint above, up to the one whose segment wrote them.
    pub fn mark_stack_read(&mut self, fr: usize, min_off: i64, max_off: i64) {
        self.mark_slots_read(fr, slots_of(min_off, max_off));
    }

    /// mark_reg_read for the slots in `want` of frame `fr`.
    fn mark_slots_read(&mut self, fr: usize, mut want: u64) {
        want &= !self.cur.stack_written.get(fr).copied().unwrap_or(0);
        let mut parent = self.cur.parent;
        while let (Some(p), true) = (parent, want != 0) {
            let Some(stored) = self.explored.arena.get_mut(p) else {
                return;
            };
            if stored.st.frames.len() <= fr {
                return;
            }
            let Some(read) = stored.read.get_mut(fr) else {
                return;
            };
            // Already marked here: marked above too (or screened).
            want &= !*read;
            *read |= want;
            want &= !stored.st.stack_written.get(fr).copied().unwrap_or(0);
            parent = stored.st.parent;
        }
    }

    /// A whole slot of frame `fr` is written: reads after it do not look above.
    pub fn mark_stack_written(&mut self, fr: usize, off: i64, size: i32) {
        if size as usize != BPF_REG_SIZE || off % BPF_REG_SIZE as i64 != 0 || off >= 0 {
            return;
        }
        let spi = ((-off - 1) as usize) / BPF_REG_SIZE;
        if let Some(w) = self.cur.stack_written.get_mut(fr) {
            *w |= bit(spi);
        }
    }

    /// A frame just called into starts empty: nothing above the call is read
    /// through it.
    pub fn new_frame_written(&mut self, fr: usize) {
        if let Some(w) = self.cur.stack_written.get_mut(fr) {
            *w = u64::MAX;
        }
    }

    /// propagate_liveness: the current path was pruned against `old`, so the
    /// slots read below `old` are read below the current state too.
    pub fn propagate_stack_liveness(&mut self, old: usize) {
        let Some(read) = self.explored.arena.get(old).map(|s| s.read) else {
            return;
        };
        for (fr, m) in read.iter().enumerate() {
            if *m != 0 {
                self.mark_slots_read(fr, *m);
            }
        }
    }
}
