//! What `tc qdisc` and `tc class` change (net/sched/sch_api.c:
//! tc_modify_qdisc, tc_get_qdisc's delete, tc_ctl_tclass) and what `tc -s
//! qdisc|class show` reads (tc_dump_qdisc, tc_dump_tclass).

use parking_lot::Mutex;

use super::*;
use crate::sched::ingress::{IngressKind, IngressQdisc, INGRESS_HANDLE};
use crate::sched::{
    self, dump::handle_str, tc_h_maj, ClassOptions, QdiscDev, QdiscOptions, QdiscShow, Sch, TcShow,
    TC_H_INGRESS, TC_H_ROOT,
};

/// `tc qdisc add|replace|change|del` (NLM_F_CREATE / NLM_F_EXCL /
/// NLM_F_REPLACE as tc sets them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QdiscCmd {
    Add,
    Replace,
    Change,
    Delete,
}

/// `tc class add|change|replace|del`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassCmd {
    Add,
    Change,
    Replace,
    Delete,
}

/// Where a qdisc goes: `root`, `ingress`/`clsact` (parent ffff:fff1), or
/// `parent X:Y` (a class's leaf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcParent {
    Root,
    Ingress,
    Class(u32),
}

impl Datapath {
    fn qdisc_dev_of(&self, dev: DevId) -> Result<QdiscDev, DatapathError> {
        let d = self.dev(dev)?;
        Ok(QdiscDev {
            txqueuelen: d.txqueuelen,
            mtu: d.mtu,
            tx_queues: d.ops.features().tx_queues.max(1),
        })
    }

    /// qdisc_alloc_handle: 8001:, 8002:, ... skipping handles in use.
    fn alloc_handle(&mut self, dev: DevId) -> u32 {
        for _ in 0..0x8000 {
            self.autohandle = self.autohandle.wrapping_add(0x1_0000);
            if self.autohandle == TC_H_ROOT & 0xffff_0000 || self.autohandle < 0x8000_0000 {
                self.autohandle = 0x8001_0000;
            }
            if !self.handle_in_use(dev, self.autohandle) {
                return self.autohandle;
            }
        }
        self.autohandle
    }

    fn handle_in_use(&self, dev: DevId, handle: u32) -> bool {
        let Ok(d) = self.dev(dev) else { return false };
        d.qdisc.as_ref().is_some_and(|q| {
            let g = q.lock();
            let mut all = Vec::new();
            g.walk(&mut all);
            all.iter().any(|s| s.handle == handle)
        })
    }

    /// tc_modify_qdisc / tc_get_qdisc(RTM_DELQDISC).
    pub fn tc_qdisc(
        &mut self,
        dev: DevId,
        cmd: QdiscCmd,
        parent: TcParent,
        handle: Option<u32>,
        opts: Option<&QdiscOptions>,
    ) -> Result<(), DatapathError> {
        let r = self.modify_qdisc(dev, cmd, parent, handle, opts);
        self.refresh_root(dev);
        r
    }

    /// The root's cached work-conserving flag after a change below it.
    fn refresh_root(&mut self, dev: DevId) {
        if let Some(q) = self.sh.devices.get(dev.0).and_then(|d| d.qdisc.as_ref()) {
            q.lock().refresh();
        }
    }

    fn modify_qdisc(
        &mut self,
        dev: DevId,
        cmd: QdiscCmd,
        parent: TcParent,
        handle: Option<u32>,
        opts: Option<&QdiscOptions>,
    ) -> Result<(), DatapathError> {
        if let Some(h) = handle {
            if h & 0xffff != 0 {
                return Err(errno(
                    EINVAL,
                    format!("qdisc handle {} has a minor (use MAJ:)", handle_str(h)),
                ));
            }
        }
        let ingress = matches!(
            opts,
            Some(QdiscOptions::Ingress) | Some(QdiscOptions::Clsact)
        );
        match parent {
            TcParent::Ingress => self.tc_ingress_qdisc(dev, cmd, handle, opts),
            _ if ingress => self.tc_ingress_qdisc(dev, cmd, handle, opts),
            TcParent::Root => self.tc_root_qdisc(dev, cmd, handle, opts),
            TcParent::Class(c) => self.tc_leaf_qdisc(dev, cmd, c, handle, opts),
        }
    }

    /// ingress / clsact: handle ffff: only, one per device.
    fn tc_ingress_qdisc(
        &mut self,
        dev: DevId,
        cmd: QdiscCmd,
        handle: Option<u32>,
        opts: Option<&QdiscOptions>,
    ) -> Result<(), DatapathError> {
        if handle.is_some_and(|h| h != INGRESS_HANDLE) {
            return Err(errno(
                EINVAL,
                "Specified handle is not ffff: (ingress and clsact take only ffff:)",
            ));
        }
        let d = self.dev_mut(dev)?;
        if cmd == QdiscCmd::Delete {
            if d.ingress_qdisc.take().is_none() {
                return Err(errno(
                    ENOENT,
                    "Cannot find specified qdisc on specified device.",
                ));
            }
            return Ok(());
        }
        let kind = match opts {
            Some(QdiscOptions::Clsact) => IngressKind::Clsact,
            Some(QdiscOptions::Ingress) => IngressKind::Ingress,
            Some(o) => {
                return Err(errno(
                    EINVAL,
                    format!(
                        "{} cannot go at parent ffff:fff1 (only ingress or clsact)",
                        o.kind()
                    ),
                ))
            }
            None => return Err(errno(EINVAL, "qdisc kind missing")),
        };
        match (cmd, d.ingress_qdisc) {
            (QdiscCmd::Add, Some(_)) => Err(errno(EEXIST, "Exclusivity flag on, cannot modify.")),
            (_, Some(q)) if q.kind != kind => Err(errno(
                EINVAL,
                "Invalid qdisc name: must match existing qdisc",
            )),
            (QdiscCmd::Change, None) => Err(errno(
                ENOENT,
                "Qdisc not found. To create specify NLM_F_CREATE flag",
            )),
            _ => {
                d.ingress_qdisc = Some(IngressQdisc { kind });
                Ok(())
            }
        }
    }

    /// The root qdisc: add (over the default only), replace, change, del
    /// (back to the device's default).
    fn tc_root_qdisc(
        &mut self,
        dev: DevId,
        cmd: QdiscCmd,
        handle: Option<u32>,
        opts: Option<&QdiscOptions>,
    ) -> Result<(), DatapathError> {
        let qdev = self.qdisc_dev_of(dev)?;
        let cur = self.dev(dev)?.qdisc.as_ref().map(|q| {
            let g = q.lock();
            (g.handle, g.kind())
        });
        let user_root = cur.filter(|(h, _)| *h != 0);
        if cmd == QdiscCmd::Delete {
            if user_root.is_none() {
                return Err(errno(EINVAL, "Cannot delete qdisc with handle of zero."));
            }
            let d = self.dev(dev)?;
            let q = sched::default_qdisc(d.ops.as_ref(), d.txqueuelen, d.mtu)
                .map(|q| Mutex::new(Sch::root(0, q)));
            return self.swap_root(dev, q);
        }
        let opts = opts.ok_or_else(|| errno(EINVAL, "qdisc kind missing"))?;
        if let Some((h, kind)) = user_root {
            let same = handle.is_none_or(|x| x == h);
            match cmd {
                QdiscCmd::Add => return Err(errno(EEXIST, "Exclusivity flag on, cannot modify.")),
                QdiscCmd::Change | QdiscCmd::Replace if same && kind == opts.kind() => {
                    return self.change_qdisc(dev, h, opts, &qdev);
                }
                QdiscCmd::Change => {
                    return Err(errno(
                        EINVAL,
                        "Invalid qdisc name: must match existing qdisc",
                    ))
                }
                _ => {}
            }
        } else if cmd == QdiscCmd::Change {
            return Err(errno(
                ENOENT,
                "Qdisc not found. To create specify NLM_F_CREATE flag",
            ));
        }
        let new = sched::create_with(opts, &qdev)?;
        let handle = match (handle, &new) {
            (_, None) => 0,
            (Some(h), _) => h,
            (None, _) => self.alloc_handle(dev),
        };
        self.swap_root(dev, new.map(|q| Mutex::new(Sch::root(handle, q))))
    }

    /// A new root; what the old one held is dropped.
    fn swap_root(&mut self, dev: DevId, new: Option<Mutex<Sch>>) -> Result<(), DatapathError> {
        let old = std::mem::replace(&mut self.dev_mut(dev)?.qdisc, new);
        if let Some(q) = old {
            let mut held = Vec::new();
            q.into_inner().reset(&mut |p| held.push(p));
            self.drop_qdisc_held(dev, held);
        }
        Ok(())
    }

    fn change_qdisc(
        &mut self,
        dev: DevId,
        handle: u32,
        opts: &QdiscOptions,
        qdev: &QdiscDev,
    ) -> Result<(), DatapathError> {
        let d = self.dev(dev)?;
        let q = d.qdisc.as_ref().ok_or_else(|| errno(ENOENT, "no qdisc"))?;
        let mut g = q.lock();
        let s = g
            .find_mut(handle)
            .ok_or_else(|| errno(ENOENT, format!("no qdisc {}", handle_str(handle))))?;
        s.change(opts, qdev)
    }

    /// `tc qdisc add|replace|change|del dev X parent MAJ:MIN ...`: the leaf
    /// of a class (qdisc_graft through the parent's class ops).
    fn tc_leaf_qdisc(
        &mut self,
        dev: DevId,
        cmd: QdiscCmd,
        classid: u32,
        handle: Option<u32>,
        opts: Option<&QdiscOptions>,
    ) -> Result<(), DatapathError> {
        let qdev = self.qdisc_dev_of(dev)?;
        let cur = self.with_parent(dev, classid, |p| {
            p.children()
                .into_iter()
                .find(|c| c.parent == classid)
                .map(|c| (c.handle, c.kind()))
        })?;
        let existing = cur.filter(|(h, _)| *h != 0);
        let new = match cmd {
            QdiscCmd::Delete => {
                if existing.is_none() {
                    return Err(errno(
                        ENOENT,
                        "Cannot find specified qdisc on specified device.",
                    ));
                }
                sched::default_leaf(&qdev, 0, classid)
            }
            _ => {
                let opts = opts.ok_or_else(|| errno(EINVAL, "qdisc kind missing"))?;
                if let Some((h, kind)) = existing {
                    let same = handle.is_none_or(|x| x == h);
                    match cmd {
                        QdiscCmd::Add => {
                            return Err(errno(EEXIST, "Exclusivity flag on, cannot modify."))
                        }
                        _ if same && kind == opts.kind() => {
                            return self.change_qdisc(dev, h, opts, &qdev)
                        }
                        QdiscCmd::Change => {
                            return Err(errno(
                                EINVAL,
                                "Invalid qdisc name: must match existing qdisc",
                            ))
                        }
                        _ => {}
                    }
                } else if cmd == QdiscCmd::Change {
                    return Err(errno(
                        ENOENT,
                        "Qdisc not found. To create specify NLM_F_CREATE flag",
                    ));
                }
                let h = match handle {
                    Some(h) if self.handle_in_use(dev, h) => {
                        return Err(errno(EEXIST, format!("handle {} is in use", handle_str(h))))
                    }
                    Some(h) => h,
                    None => self.alloc_handle(dev),
                };
                let q = sched::create_with(opts, &qdev)?
                    .ok_or_else(|| errno(EINVAL, "noqueue cannot be a class's qdisc"))?;
                let mut s = Sch::new(h, classid, q);
                s.q.set_handle(h);
                s
            }
        };
        let old = self.with_parent(dev, classid, |p| {
            let kind = p.kind();
            p.classes()
                .ok_or_else(|| errno(EOPNOTSUPP, format!("qdisc {kind} is classless")))?
                .graft(classid, new)
        })??;
        let mut old = old;
        let mut held = Vec::new();
        old.reset(&mut |p| held.push(p));
        self.drop_qdisc_held(dev, held);
        Ok(())
    }

    /// Runs `f` on the qdisc whose handle is the major of `classid`.
    fn with_parent<R>(
        &mut self,
        dev: DevId,
        classid: u32,
        f: impl FnOnce(&mut Sch) -> R,
    ) -> Result<R, DatapathError> {
        let d = self.dev(dev)?;
        let q = d
            .qdisc
            .as_ref()
            .ok_or_else(|| errno(ENOENT, "Cannot find specified qdisc on specified device."))?;
        let mut g = q.lock();
        let p = g.find_mut(tc_h_maj(classid)).ok_or_else(|| {
            errno(
                ENOENT,
                format!(
                    "no qdisc {} for class {}",
                    handle_str(tc_h_maj(classid)),
                    handle_str(classid)
                ),
            )
        })?;
        Ok(f(p))
    }

    /// tc_ctl_tclass: `tc class add|change|replace|del dev X parent P classid C KIND ...`.
    pub fn tc_class(
        &mut self,
        dev: DevId,
        cmd: ClassCmd,
        parent: Option<u32>,
        classid: u32,
        opts: Option<&ClassOptions>,
    ) -> Result<(), DatapathError> {
        let qdev = self.qdisc_dev_of(dev)?;
        let now = self.now;
        let parent = parent.unwrap_or(TC_H_ROOT);
        if let Some(p) = Some(parent).filter(|p| *p != TC_H_ROOT) {
            if tc_h_maj(p) != tc_h_maj(classid) {
                return Err(errno(
                    EINVAL,
                    format!(
                        "class {} and parent {} are of different qdiscs",
                        handle_str(classid),
                        handle_str(p)
                    ),
                ));
            }
        }
        let held = self.with_parent(dev, classid, |q| {
            let kind = q.kind();
            let ops = q
                .classes()
                .ok_or_else(|| errno(EOPNOTSUPP, format!("qdisc {kind} is classless")))?;
            match cmd {
                ClassCmd::Delete => ops.delete(classid),
                _ => {
                    let o = opts.ok_or_else(|| errno(EINVAL, "class kind missing"))?;
                    ops.change(classid, parent, o, &qdev, now)
                }
            }
        })??;
        self.drop_qdisc_held(dev, held);
        self.refresh_root(dev);
        Ok(())
    }

    /// `tc -s qdisc show dev X` and `tc -s class show dev X`: every qdisc
    /// (the root, the leaves given handles, mq's children, ingress/clsact)
    /// and every class.
    pub fn tc_show(&self, dev: DevId) -> Result<TcShow, DatapathError> {
        let d = self.dev(dev)?;
        let mut show = TcShow::default();
        match &d.qdisc {
            None => show.qdisc.push(QdiscShow::new(
                "noqueue",
                0,
                TC_H_ROOT,
                Default::default(),
                Default::default(),
            )),
            Some(q) => {
                let g = q.lock();
                let mut all = Vec::new();
                g.walk(&mut all);
                for s in all {
                    // Default leaves (handle 0 under a class) are hidden, as
                    // the kernel does not hash them.
                    if s.handle == 0 && tc_h_maj(s.parent) != 0 && s.parent != TC_H_ROOT {
                        continue;
                    }
                    show.qdisc.push(QdiscShow::new(
                        s.kind(),
                        s.handle,
                        s.parent,
                        s.stats(),
                        s.dump(),
                    ));
                    show.class.extend(s.class_dumps());
                }
            }
        }
        if let Some(i) = &d.ingress_qdisc {
            show.qdisc.push(i.show());
        }
        let _ = TC_H_INGRESS;
        Ok(show)
    }
}
