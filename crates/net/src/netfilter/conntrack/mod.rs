//! Connection tracking (net/netfilter/nf_conntrack_core.c): the per-namespace
//! table of connections, each known by its original and reply tuples, with
//! per-protocol state (TCP, UDP, ICMP/ICMPv6, generic), timeouts on the
//! engine's clock, marks, zones, status bits and the `conntrack -S` counters.
//! The hook functions (nf_conntrack_in, nf_conntrack_confirm) are in `core`.

mod core;
pub mod dump;
pub mod proto_icmp;
pub mod proto_tcp;
pub mod proto_udp;
pub mod tuple;
pub mod xt;

use std::collections::{BTreeMap, HashMap, VecDeque};

pub use self::core::{nf_conntrack_confirm, nf_conntrack_in, nf_ct_put};
pub use tuple::NfConntrackTuple;

use super::NfProto;
use crate::sched::netem::RndState;

/// enum ip_conntrack_info: what the packet is to its connection (skb->_nfct's
/// low bits). The discriminants are the kernel's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpConntrackInfo {
    Established = 0,
    Related = 1,
    New = 2,
    EstablishedReply = 3,
    RelatedReply = 4,
    Untracked = 7,
}

impl IpConntrackInfo {
    /// CTINFO2DIR.
    pub fn dir(self) -> Dir {
        if (self as u8) >= 3 && self != IpConntrackInfo::Untracked {
            Dir::Reply
        } else {
            Dir::Original
        }
    }
}

/// What a packet carries (skb->_nfct): the entry's id (0: none, as for
/// Untracked) and the packet's ctinfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfCt {
    pub id: u32,
    pub info: IpConntrackInfo,
}

/// enum ip_conntrack_dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

// enum ip_conntrack_status (include/uapi/linux/netfilter/nf_conntrack_common.h).
pub const IPS_EXPECTED: u32 = 1 << 0;
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;
pub const IPS_NAT_MASK: u32 = IPS_SRC_NAT | IPS_DST_NAT;
pub const IPS_SEQ_ADJUST: u32 = 1 << 6;
pub const IPS_SRC_NAT_DONE: u32 = 1 << 7;
pub const IPS_DST_NAT_DONE: u32 = 1 << 8;
pub const IPS_NAT_DONE_MASK: u32 = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE;
pub const IPS_DYING: u32 = 1 << 9;
pub const IPS_FIXED_TIMEOUT: u32 = 1 << 10;
pub const IPS_TEMPLATE: u32 = 1 << 11;

/// What a hook's per-protocol handler decided (the sign of its return).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketVerdict {
    /// NF_ACCEPT.
    Accept,
    /// -NF_ACCEPT: not part of the connection; the packet goes on without a ct.
    Invalid,
    /// -NF_REPEAT: the entry was killed; look up again.
    Repeat,
}

/// The per-protocol part of an entry (union nf_conntrack_proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    Tcp(proto_tcp::IpCtTcp),
    Udp(proto_udp::NfCtUdp),
    Other,
}

/// struct nf_conn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NfConn {
    /// tuplehash[IP_CT_DIR_ORIGINAL], tuplehash[IP_CT_DIR_REPLY].
    pub tuplehash: [NfConntrackTuple; 2],
    pub status: u32,
    /// ct->mark (CONNMARK, `-m connmark`).
    pub mark: u32,
    pub zone: u16,
    /// ns: absolute (engine clock) once confirmed, relative before, as the
    /// kernel's ct->timeout.
    pub timeout: u64,
    pub proto: ProtoState,
    /// nat->masq_index: the device a MASQUERADE binding used.
    pub masq_index: Option<u32>,
    /// Engine time of the allocation (bounds how long an unconfirmed entry
    /// whose packet never reached the confirm hook can stay).
    pub created_ns: u64,
}

impl NfConn {
    pub fn is_confirmed(&self) -> bool {
        self.status & IPS_CONFIRMED != 0
    }

    pub fn protonum(&self) -> u8 {
        self.tuplehash[0].protonum
    }

    pub fn l3num(&self) -> NfProto {
        self.tuplehash[0].pf()
    }

    /// nf_ct_expires in ns (0 once expired).
    pub fn expires(&self, now_ns: u64) -> u64 {
        self.timeout.saturating_sub(now_ns)
    }
}

/// The `conntrack -S` counters (struct ip_conntrack_stat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConntrackStats {
    pub found: u64,
    pub invalid: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub error: u64,
    pub search_restart: u64,
    pub clash_resolve: u64,
    pub chaintoolong: u64,
}

/// The default nf_conntrack_max: the kernel sizes it from memory
/// (nf_conntrack_init_start) and caps it at 262144 on machines with 4 GB or
/// more, which is what this one reports.
pub const NF_CONNTRACK_MAX_DEFAULT: usize = 262_144;

/// An unconfirmed entry whose packet was freed without nf_ct_put is dropped
/// after this long on the engine's clock.
const UNCONFIRMED_GRACE_NS: u64 = 1_000_000_000;

/// One network namespace's conntrack table (nf_conntrack_hash plus the
/// unconfirmed list), bounded by nf_conntrack_max.
#[derive(Debug)]
pub struct Conntrack {
    /// Every entry by id: confirmed, unconfirmed, templates. Ordered, so
    /// dumps and early_drop are deterministic.
    entries: BTreeMap<u32, NfConn>,
    /// (zone, tuple) -> (id, direction) for confirmed entries.
    hash: HashMap<(u16, NfConntrackTuple), (u32, Dir)>,
    /// nf_nat_bysource: (zone, protonum, orig src addr, orig src port) -> ids
    /// of entries with a source binding, newest last.
    pub(crate) bysource: HashMap<(u16, u8, std::net::IpAddr, u16), Vec<u32>>,
    next_id: u32,
    /// Unconfirmed entries in allocation order: those whose packet never
    /// reached the confirm hook nor nf_ct_put are freed after
    /// UNCONFIRMED_GRACE_NS, a few at each allocation.
    unconfirmed: VecDeque<u32>,
    /// Entries counted against `max` (not templates): net->ct.count.
    count: usize,
    /// net.netfilter.nf_conntrack_max (0: unbounded, as the kernel).
    pub max: usize,
    /// net.netfilter.nf_conntrack_checksum.
    pub checksum: bool,
    pub stats: ConntrackStats,
    /// get_random_u16 for NAT port search offsets (seeded: replays repeat).
    pub(crate) rnd: RndState,
    /// The latest engine time a hook brought (what a dump after the run
    /// counts the timeouts from).
    pub now_ns: u64,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new(NF_CONNTRACK_MAX_DEFAULT)
    }
}

impl Conntrack {
    pub fn new(max: usize) -> Conntrack {
        Conntrack {
            entries: BTreeMap::new(),
            hash: HashMap::new(),
            bysource: HashMap::new(),
            next_id: 1,
            unconfirmed: VecDeque::new(),
            count: 0,
            max,
            checksum: true,
            stats: ConntrackStats::default(),
            rnd: RndState::seeded(0),
            now_ns: 0,
        }
    }

    /// Seeds the NAT port search's random offsets.
    pub fn seed(&mut self, seed: u64) {
        self.rnd = RndState::seeded(seed);
    }

    pub fn get(&self, id: u32) -> Option<&NfConn> {
        self.entries.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut NfConn> {
        self.entries.get_mut(&id)
    }

    /// net->ct.count: tracked entries, confirmed or not.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The confirmed entries, by id.
    pub fn confirmed(&self) -> impl Iterator<Item = (u32, &NfConn)> {
        self.entries
            .iter()
            .filter(|(_, c)| c.is_confirmed() && c.status & IPS_DYING == 0)
            .map(|(&id, c)| (id, c))
    }

    fn alloc_id(&mut self) -> u32 {
        // Bounded: at most entries.len() + 1 ids are tried.
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.entries.contains_key(&id) {
                return id;
            }
        }
    }

    /// A CT target's template (nf_ct_tmpl_alloc): carries a zone to
    /// nf_conntrack_in. Not counted, never hashed or dumped.
    pub fn template_alloc(&mut self, zone: u16, pf: NfProto) -> u32 {
        let id = self.alloc_id();
        let t = NfConntrackTuple {
            src: tuple::unspecified(pf),
            dst: tuple::unspecified(pf),
            protonum: 0,
            src_u: 0,
            dst_u: 0,
        };
        self.entries.insert(
            id,
            NfConn {
                tuplehash: [t, t],
                status: IPS_TEMPLATE | IPS_CONFIRMED,
                mark: 0,
                zone,
                timeout: u64::MAX,
                proto: ProtoState::Other,
                masq_index: None,
                created_ns: 0,
            },
        );
        id
    }

    /// __nf_conntrack_find_get: a confirmed entry by tuple; an expired one
    /// is removed on the way (nf_ct_gc_expired).
    pub fn find(&mut self, zone: u16, t: &NfConntrackTuple, now_ns: u64) -> Option<(u32, Dir)> {
        let (id, dir) = *self.hash.get(&(zone, *t))?;
        let expired = self.entries.get(&id).is_none_or(|c| c.timeout <= now_ns);
        if expired {
            self.delete(id);
            return None;
        }
        Some((id, dir))
    }

    /// nf_conntrack_tuple_taken: is `t` a tuple of a confirmed entry other
    /// than `ignored`? Counts `found` when it is.
    pub fn tuple_taken(&mut self, zone: u16, t: &NfConntrackTuple, ignored: u32, now: u64) -> bool {
        match self.find(zone, t, now) {
            Some((id, _)) if id != ignored => {
                self.stats.found += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes an entry from the hash and the table (nf_ct_delete + the
    /// last nf_ct_put).
    pub fn delete(&mut self, id: u32) {
        let Some(c) = self.entries.remove(&id) else {
            return;
        };
        if c.status & IPS_TEMPLATE != 0 {
            return;
        }
        self.count = self.count.saturating_sub(1);
        if c.is_confirmed() {
            for t in &c.tuplehash {
                if self.hash.get(&(c.zone, *t)).is_some_and(|&(i, _)| i == id) {
                    self.hash.remove(&(c.zone, *t));
                }
            }
        }
        if c.status & IPS_SRC_NAT_DONE != 0 {
            let o = &c.tuplehash[0];
            let key = (c.zone, o.protonum, o.src, o.src_u);
            if let Some(v) = self.bysource.get_mut(&key) {
                v.retain(|&i| i != id);
                if v.is_empty() {
                    self.bysource.remove(&key);
                }
            }
        }
    }

    /// nf_ct_kill: a confirmed entry leaves the hash now but lives on as
    /// DYING for the packet that holds it; an unconfirmed one is dropped at
    /// its nf_ct_put.
    pub fn kill(&mut self, id: u32) {
        let Some(c) = self.entries.get_mut(&id) else {
            return;
        };
        c.status |= IPS_DYING;
        if c.is_confirmed() {
            let (zone, ts) = (c.zone, c.tuplehash);
            for t in &ts {
                if self.hash.get(&(zone, *t)).is_some_and(|&(i, _)| i == id) {
                    self.hash.remove(&(zone, *t));
                }
            }
        }
    }

    /// gc_worker: removes expired confirmed entries, dying ones, and
    /// unconfirmed ones whose packet is long gone.
    pub fn gc(&mut self, now_ns: u64) {
        let stale: Vec<u32> = self
            .entries
            .iter()
            .filter(|(_, c)| c.status & IPS_TEMPLATE == 0)
            .filter(|(_, c)| {
                if c.is_confirmed() {
                    c.timeout <= now_ns || c.status & IPS_DYING != 0
                } else {
                    now_ns.saturating_sub(c.created_ns) > UNCONFIRMED_GRACE_NS
                }
            })
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            self.delete(id);
        }
    }

    /// early_drop: makes room for one entry by evicting a confirmed entry
    /// that is not ASSURED (or a TCP one that may go early), the oldest
    /// first. The kernel scans the hash buckets near the new tuple's hash,
    /// which depend on a boot-time seed; skiff's choice is the oldest.
    fn early_drop(&mut self) -> bool {
        let victim = self.entries.iter().find_map(|(&id, c)| {
            let droppable = c.status & IPS_ASSURED == 0
                || matches!(c.proto, ProtoState::Tcp(t) if proto_tcp::tcp_can_early_drop(&t));
            (c.is_confirmed() && c.status & (IPS_TEMPLATE | IPS_DYING) == 0 && droppable)
                .then_some(id)
        });
        match victim {
            Some(id) => {
                self.delete(id);
                self.stats.early_drop += 1;
                true
            }
            None => false,
        }
    }

    /// __nf_conntrack_alloc: a new unconfirmed entry, or None when the table
    /// is full and nothing could be evicted ("table full, dropping packet").
    fn alloc(
        &mut self,
        orig: NfConntrackTuple,
        reply: NfConntrackTuple,
        zone: u16,
        now: u64,
    ) -> Option<u32> {
        self.reap_unconfirmed(now);
        if self.max != 0 && self.count >= self.max {
            self.gc(now);
            if self.count >= self.max && !self.early_drop() {
                return None;
            }
        }
        let id = self.alloc_id();
        self.entries.insert(
            id,
            NfConn {
                tuplehash: [orig, reply],
                status: 0,
                mark: 0,
                zone,
                timeout: 0,
                proto: ProtoState::Other,
                masq_index: None,
                created_ns: now,
            },
        );
        self.count += 1;
        self.unconfirmed.push_back(id);
        Some(id)
    }

    /// Frees, from the oldest, unconfirmed entries whose packet is gone
    /// (dropped or stolen without nf_ct_put); stops at the first one that is
    /// still young. Confirmed or freed ids just leave the queue.
    fn reap_unconfirmed(&mut self, now: u64) {
        while let Some(&id) = self.unconfirmed.front() {
            match self.entries.get(&id) {
                Some(c) if !c.is_confirmed() => {
                    if now.saturating_sub(c.created_ns) <= UNCONFIRMED_GRACE_NS {
                        return;
                    }
                    self.delete(id);
                }
                _ => {}
            }
            self.unconfirmed.pop_front();
        }
    }

    /// __nf_conntrack_confirm's insertion: both tuples into the hash, the
    /// timer started. False on a clash (either tuple already there).
    fn insert_confirmed(&mut self, id: u32, now_ns: u64) -> bool {
        let Some(c) = self.entries.get(&id) else {
            return false;
        };
        let (zone, ts) = (c.zone, c.tuplehash);
        if ts.iter().any(|t| self.hash.contains_key(&(zone, *t))) {
            return false;
        }
        self.hash.insert((zone, ts[0]), (id, Dir::Original));
        self.hash.insert((zone, ts[1]), (id, Dir::Reply));
        if let Some(c) = self.entries.get_mut(&id) {
            c.status |= IPS_CONFIRMED;
            c.timeout = c.timeout.saturating_add(now_ns);
        }
        true
    }

    /// nf_conntrack_alter_reply: NAT changed what replies look like.
    pub(crate) fn alter_reply(&mut self, id: u32, reply: NfConntrackTuple) {
        if let Some(c) = self.entries.get_mut(&id) {
            if !c.is_confirmed() {
                c.tuplehash[1] = reply;
            }
        }
    }

    /// nf_ct_refresh_acct: the entry expires `extra` ns from now.
    fn refresh(&mut self, id: u32, extra: u64, now_ns: u64) {
        if let Some(c) = self.entries.get_mut(&id) {
            if c.status & IPS_FIXED_TIMEOUT != 0 {
                return;
            }
            c.timeout = if c.is_confirmed() {
                now_ns.saturating_add(extra)
            } else {
                extra
            };
        }
    }
}
