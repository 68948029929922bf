//! Acquired references and locks (kernel/bpf/verifier.c: acquire_reference,
//! release_reference, check_reference_leak, check_resource_leak,
//! process_spin_lock): a ringbuf record must be submitted or discarded on every
//! path, a spin lock released before exit, tail call or another lock.

use super::env::{Env, VResult};
use super::state::{RefKind, RefState, Reg};
use super::EINVAL;

impl<'a> Env<'a> {
    /// kernel/bpf/verifier.c: acquire_reference
    pub fn acquire_reference(&mut self, insn_idx: usize) -> u32 {
        let id = self.new_id();
        self.cur.refs.push(RefState {
            kind: RefKind::Ptr,
            id,
            insn_idx,
            lock_map: None,
        });
        id
    }

    /// kernel/bpf/verifier.c: release_reference: the reference goes, and every
    /// register holding it becomes invalid (mark_reg_invalid).
    pub fn release_reference(&mut self, ref_obj_id: u32) {
        self.cur
            .refs
            .retain(|r| !(r.kind == RefKind::Ptr && r.id == ref_obj_id));
        let privileged = self.opts.privileged;
        self.cur.for_each_reg(|r| {
            if r.ref_obj_id == ref_obj_id {
                *r = if privileged {
                    Reg::unknown()
                } else {
                    Reg::not_init()
                };
            }
        });
    }

    /// kernel/bpf/verifier.c: check_reference_leak
    fn check_reference_leak(&mut self) -> VResult<()> {
        if self.cur.curframe() != 0 {
            return Ok(());
        }
        let leaks: Vec<RefState> = self
            .cur
            .refs
            .iter()
            .filter(|r| r.kind == RefKind::Ptr)
            .copied()
            .collect();
        let mut first = None;
        for r in &leaks {
            let line = format!("Unreleased reference id={} alloc_insn={}", r.id, r.insn_idx);
            match first {
                None => first = Some(self.error(EINVAL, line)),
                Some(_) => self.error_more(line),
            }
        }
        match first {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// kernel/bpf/verifier.c: check_resource_leak
    pub fn check_resource_leak(
        &mut self,
        _exception_exit: bool,
        check_lock: bool,
        prefix: &str,
    ) -> VResult<()> {
        if check_lock && self.cur.active_lock().is_some() {
            return self.einval(format!(
                "{prefix} cannot be used inside bpf_spin_lock-ed region"
            ));
        }
        if let Err(e) = self.check_reference_leak() {
            self.error_more(format!("{prefix} would lead to reference leak"));
            return Err(e);
        }
        Ok(())
    }

    /// kernel/bpf/verifier.c: process_spin_lock for bpf_spin_lock / bpf_spin_unlock
    /// (the lock's place in the value is not checked: skiff's maps carry no BTF).
    pub fn process_spin_lock(&mut self, regno: usize, is_lock: bool) -> VResult<()> {
        let reg = self.reg(regno);
        if reg.const_value().is_none() {
            return self.einval(format!(
                "R{regno} doesn't have constant offset. bpf_spin_lock has to be at the constant offset"
            ));
        }
        if is_lock {
            if self.cur.active_lock().is_some() {
                return self.einval("Locking two bpf_spin_locks are not allowed");
            }
            self.cur.refs.push(RefState {
                kind: RefKind::Lock,
                id: reg.id,
                insn_idx: self.insn_idx,
                lock_map: reg.map,
            });
            return Ok(());
        }
        let Some(held) = self.cur.active_lock().copied() else {
            return self.einval("bpf_spin_unlock without taking a lock");
        };
        if held.id != reg.id || held.lock_map != reg.map {
            return self.einval("bpf_spin_unlock of different lock");
        }
        self.cur.refs.retain(|r| r.kind != RefKind::Lock);
        Ok(())
    }
}
