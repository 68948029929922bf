//! The datapath's view of a namespace's host stack. Until `crate::stack`
//! lands, this is a stand-in with the agreed API that delivers every packet
//! (counted as such) and answers bpf_fib_lookup as an empty FIB.

use std::net::IpAddr;

use crate::drop::DropReason;
use crate::helpers::{fib, EmptyFib, Fib, FIB_LOOKUP_SIZE};

#[derive(Clone, Copy, Debug, Default)]
pub struct RxMeta {
    pub mark: u32,
    pub pkt_type: u8,
    pub now_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Delivered(Delivery),
    Forwarded,
    Queued,
    Dropped(DropReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Forwarded,
    Reply,
    Error,
    Solicit,
}

#[derive(Clone, Debug)]
pub struct StackOutput {
    pub ifindex: u32,
    pub frame: Vec<u8>,
    pub origin: Origin,
    pub tag: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct StackDevice {
    pub ifindex: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub arp: bool,
    pub loopback: bool,
}

#[derive(Clone, Debug)]
pub struct QueuedPacket {
    pub ifindex: u32,
    pub frame: Vec<u8>,
    pub origin: Origin,
    pub tag: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighOutput {
    Sent,
    Queued,
}

#[derive(Default)]
pub struct HostStack {
    fib: EmptyFib,
}

impl HostStack {
    pub fn new() -> HostStack {
        HostStack::default()
    }
    pub fn add_device(&mut self, d: StackDevice) -> Result<(), String> {
        self.fib.devices.push(d.ifindex);
        Ok(())
    }
    pub fn set_device_up(&mut self, _ifindex: u32, _up: bool) {}
    pub fn add_address(&mut self, _ifindex: u32, _addr: IpAddr, _plen: u8) -> Result<(), String> {
        Ok(())
    }
    pub fn add_neighbour(
        &mut self,
        _ifindex: u32,
        _ip: IpAddr,
        _mac: [u8; 6],
    ) -> Result<(), String> {
        Ok(())
    }
    pub fn receive(
        &mut self,
        _ifindex: u32,
        _frame: &[u8],
        _meta: RxMeta,
        _tag: u64,
        _out: &mut Vec<StackOutput>,
    ) -> Fate {
        Fate::Delivered(Delivery::Local)
    }
    pub fn neigh_output(
        &mut self,
        _ifindex: u32,
        _frame: &mut Vec<u8>,
        _nexthop: Option<IpAddr>,
        _tag: u64,
        _out: &mut Vec<StackOutput>,
    ) -> Result<NeighOutput, DropReason> {
        Err(DropReason::NeighFailed)
    }
    pub fn neigh_timeout(
        &mut self,
        _now_ns: u64,
        _out: &mut Vec<StackOutput>,
        _dropped: &mut Vec<(QueuedPacket, DropReason)>,
    ) {
    }
    pub fn flush_unresolved(&mut self) -> Vec<QueuedPacket> {
        Vec::new()
    }
}

impl Fib for HostStack {
    fn device_forwarding(&self, ifindex: u32, family: u8) -> Option<bool> {
        self.fib.device_forwarding(ifindex, family)
    }
    fn route(
        &self,
        params: &mut [u8; FIB_LOOKUP_SIZE],
        flags: u32,
        check_mtu: bool,
        skb_len: usize,
    ) -> i64 {
        let _ = fib::BPF_FIB_LKUP_RET_NOT_FWDED;
        self.fib.route(params, flags, check_mtu, skb_len)
    }
}
