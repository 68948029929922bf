//! skiff-net: the datapath. For now: packet buffers (`XdpBuff`, `SkBuff`), the
//! program contexts over them (`struct xdp_md`, `struct __sk_buff` with the
//! kernel's ctx rewriting rules), the networking helpers, and `test_run`
//! (BPF_PROG_TEST_RUN semantics for XDP and TC programs).

#![forbid(unsafe_code)]

pub mod buff;
pub mod core;
pub mod ctx;
pub mod drivers;
pub mod drop;
pub mod helpers;
pub mod netfilter;
pub mod sched;
pub mod stack;
pub mod test_run;

/// The datapath's public API in one place (`skiff_net::datapath::*`): the
/// core, the device kinds, the qdiscs' statistics.
pub mod datapath {
    pub use crate::core::*;
    pub use crate::drivers::{
        DeviceKind, DeviceSpec, NetkitMode, NetkitPolicy, NetkitScrub, NetkitSide, NETKIT_DROP,
        NETKIT_NEXT, NETKIT_PASS, NETKIT_REDIRECT,
    };
    pub use crate::sched::QdiscStats;
    pub use crate::stack::HostStack;
    /// The NIC driver's receive-side scaling.
    pub mod nic {
        pub use crate::drivers::rss;
    }
}

pub use buff::{Redirect, SkBuff, XdpBuff};
pub use drop::DropReason;

use std::sync::Arc;

/// The helper table for XDP and TC programs: generic helpers plus networking ones.
pub fn helper_table() -> Arc<skiff_vm::HelperTable> {
    let mut t = skiff_vm::HelperTable::generic();
    helpers::register(&mut t);
    register_ctx_layouts(&mut t);
    Arc::new(t)
}

/// The program contexts' direct fields (ctx.rs): XDP and TC programs loaded
/// with this table reach them without a call.
pub fn register_ctx_layouts(t: &mut skiff_vm::HelperTable) {
    use skiff_vm::ProgType;
    t.set_ctx_layout(ProgType::Xdp, &ctx::XDP_MD_LAYOUT);
    t.set_ctx_layout(ProgType::SchedCls, &ctx::SK_BUFF_LAYOUT);
    t.set_ctx_layout(ProgType::SchedAct, &ctx::SK_BUFF_LAYOUT);
}

/// Load options for XDP and TC programs: the defaults (verified, privileged,
/// the latest kernel), the verifier checking helper calls against this crate's
/// table.
pub fn load_options() -> skiff_vm::LoadOptions {
    skiff_vm::LoadOptions {
        helpers: helper_table(),
        ..Default::default()
    }
}
