//! The datapath's view of a namespace's host stack: `crate::stack`.

pub use crate::stack::{
    Fate, HostStack, NeighOutput, Origin, QueuedPacket, RxMeta, StackDevice, StackOutput,
};
