//! cls_u32 (net/sched/cls_u32.c): 32-bit key/mask matches at offsets from
//! the network header, hash tables of key nodes, links down into other
//! tables with a hash key, and the `offset`/`eat` forms that move on to the
//! next header (`nexthdr+` keys).

use serde_json::{json, Value};

use super::act_api::TcfExts;
use super::cls_api::{network_offset, Classifier, ClsError, FilterSpec, TcfEnv, TcfResult};
use super::cls_bpf::classid_name;
use crate::buff::SkBuff;

/// include/uapi/linux/pkt_cls.h: struct tc_u32_sel flags.
pub const TC_U32_TERMINAL: u8 = 1;
pub const TC_U32_OFFSET: u8 = 2;
pub const TC_U32_VAROFFSET: u8 = 4;
pub const TC_U32_EAT: u8 = 8;
/// net/sched/cls_u32.c: TC_U32_MAXDEPTH.
const TC_U32_MAXDEPTH: usize = 8;
/// The first root table of a block: 0x80000000 (u32_init).
const ROOT_HTID: u32 = 0x8000_0000;

/// include/uapi/linux/pkt_cls.h: TC_U32_HTID / TC_U32_HASH / TC_U32_NODE / TC_U32_KEY.
pub fn htid_of(h: u32) -> u32 {
    h & 0xfff0_0000
}
pub fn hash_of(h: u32) -> u32 {
    (h >> 12) & 0xff
}
pub fn node_of(h: u32) -> u32 {
    h & 0xfff
}
pub fn key_of(h: u32) -> u32 {
    h & 0xfffff
}

/// struct tc_u32_key: `(word at off + (off2 & offmask)) ^ val) & mask == 0`,
/// val and mask as the big-endian word reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct U32Key {
    pub val: u32,
    pub mask: u32,
    pub off: i32,
    /// -1 (`nexthdr+`): relative to the offset a parent's `offset` found.
    pub offmask: i32,
}

/// struct tc_u32_sel.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct U32Sel {
    pub flags: u8,
    pub offshift: u8,
    /// `offset plus N` / `offset at N mask M shift S` (offmask host order).
    pub off: i16,
    pub offoff: i16,
    pub offmask: u16,
    /// `hashkey mask M at N`.
    pub hoff: i16,
    pub hmask: u32,
    pub keys: Vec<U32Key>,
}

/// `tc filter add ... u32 ...` as f_u32.c sends it.
#[derive(Clone, Default)]
pub struct U32Spec {
    /// TCA_U32_DIVISOR: this command makes a hash table (the handle's htid).
    pub divisor: Option<u32>,
    /// TCA_U32_HASH (`ht H:B:`): the table and bucket the node goes in.
    pub ht: Option<u32>,
    pub sel: U32Sel,
    /// TCA_U32_CLASSID (`classid`/`flowid`).
    pub classid: Option<u32>,
    /// TCA_U32_LINK (`link H:`).
    pub link: Option<u32>,
    /// TCA_U32_MARK (`mark VAL MASK`).
    pub mark: Option<(u32, u32)>,
    pub exts: TcfExts,
}

/// struct tc_u_knode.
struct Knode {
    handle: u32,
    sel: U32Sel,
    fshift: u32,
    classid: u32,
    /// The table linked to (its htid).
    ht_down: Option<u32>,
    mark: Option<(u32, u32)>,
    exts: TcfExts,
}

/// struct tc_u_hnode: a table of `divisor + 1` buckets of key nodes, each
/// bucket ordered by node id.
struct Hnode {
    handle: u32,
    divisor: u32,
    buckets: Vec<Vec<Knode>>,
}

/// struct tc_u_common for one priority: its tables, the root first.
pub struct ClsU32 {
    tables: Vec<Hnode>,
    /// gen_new_htid's cyclic id.
    next_htid: u32,
}

impl ClsU32 {
    pub fn new() -> ClsU32 {
        ClsU32 {
            tables: vec![Hnode {
                handle: ROOT_HTID,
                divisor: 0,
                buckets: vec![Vec::new()],
            }],
            next_htid: 1,
        }
    }

    fn table(&self, htid: u32) -> Option<&Hnode> {
        self.tables.iter().find(|t| t.handle == htid)
    }

    /// gen_new_htid: (id | 0x800) << 20, ids from 1.
    fn gen_new_htid(&mut self) -> u32 {
        loop {
            let id = self.next_htid;
            self.next_htid = if id >= 0x7fe { 1 } else { id + 1 };
            let h = (id | 0x800) << 20;
            if self.table(h).is_none() {
                return h;
            }
        }
    }

    /// u32_change with TCA_U32_DIVISOR: a new hash table.
    fn new_table(&mut self, handle: u32, divisor: u32) -> Result<u32, ClsError> {
        if divisor == 0 || divisor > 0x100 {
            return Err(ClsError::Invalid(
                "Exceeded maximum 256 hash buckets".into(),
            ));
        }
        if key_of(handle) != 0 {
            return Err(ClsError::Invalid(
                "Divisor can only be used on a hash table".into(),
            ));
        }
        let h = if handle == 0 {
            self.gen_new_htid()
        } else {
            handle
        };
        if self.table(h).is_some() {
            return Err(ClsError::Exists {
                what: format!("u32 hash table {}", htid_name(h)),
            });
        }
        self.tables.push(Hnode {
            handle: h,
            divisor: divisor - 1,
            buckets: (0..divisor).map(|_| Vec::new()).collect(),
        });
        Ok(h)
    }
}

impl Default for ClsU32 {
    fn default() -> Self {
        ClsU32::new()
    }
}

/// The big-endian word at `off` from the network header, if it is in the packet.
fn word_at(skb: &SkBuff, off: i64) -> Option<u32> {
    let start = network_offset(skb) as i64 + off;
    let start = usize::try_from(start).ok()?;
    let b = skb.data().get(start..start.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// net/sched/cls_u32.c: u32_hash_fold.
fn u32_hash_fold(key: u32, sel: &U32Sel, fshift: u32) -> u32 {
    (key & sel.hmask).checked_shr(fshift).unwrap_or(0)
}

/// A position in the walk: table, bucket, node index in it.
#[derive(Clone, Copy)]
struct Pos {
    ht: usize,
    bucket: usize,
    node: usize,
}

impl ClsU32 {
    fn knode(&self, p: Pos) -> Option<&Knode> {
        self.tables.get(p.ht)?.buckets.get(p.bucket)?.get(p.node)
    }

    fn table_index(&self, htid: u32) -> Option<usize> {
        self.tables.iter().position(|t| t.handle == htid)
    }

    /// Whether knode `n`'s keys all match at `off`/`off2` (the mark first).
    fn keys_match(n: &Knode, skb: &SkBuff, off: i64, off2: i64) -> Option<bool> {
        if let Some((val, mask)) = n.mark {
            if skb.mark & mask != val {
                return Some(false);
            }
        }
        for k in &n.sel.keys {
            let toff = off + k.off as i64 + (off2 & k.offmask as i64);
            let w = word_at(skb, toff)?;
            if (w ^ k.val) & k.mask != 0 {
                return Some(false);
            }
        }
        Some(true)
    }
}

impl Classifier for ClsU32 {
    fn kind(&self) -> &'static str {
        "u32"
    }

    /// net/sched/cls_u32.c: u32_classify — walk a table's bucket; a node
    /// whose keys match either is terminal (its result and actions) or links
    /// down (push, hash into the next table, maybe move the offset), and when
    /// a lower table finds nothing the walk pops back to the linking node.
    fn classify(&self, skb: &mut SkBuff, res: &mut TcfResult, env: &mut dyn TcfEnv) -> i64 {
        let mut stack: Vec<(Pos, i64)> = Vec::with_capacity(0);
        let mut off: i64 = 0;
        let mut off2: i64 = 0;
        let mut pos = Pos {
            ht: 0,
            bucket: 0,
            node: 0,
        };
        let len = skb.len() as i64 - network_offset(skb) as i64;
        loop {
            let Some(n) = self.knode(pos) else {
                // POP: back to the node that linked here.
                match stack.pop() {
                    Some((p, o)) => {
                        off = o;
                        pos = p;
                        if let Some(r) = self.terminal(pos, skb, res, env) {
                            return r;
                        }
                        pos.node += 1;
                        continue;
                    }
                    None => return -1,
                }
            };
            match Self::keys_match(n, skb, off, off2) {
                None => return -1,
                Some(false) => {
                    pos.node += 1;
                    continue;
                }
                Some(true) => {}
            }
            let Some(down) = n.ht_down.and_then(|h| self.table_index(h)) else {
                if let Some(r) = self.terminal(pos, skb, res, env) {
                    return r;
                }
                pos.node += 1;
                continue;
            };
            // PUSH
            if stack.len() >= TC_U32_MAXDEPTH {
                return -1; // "cls_u32: dead loop"
            }
            stack.push((pos, off));
            let ht = &self.tables[down];
            let mut sel = 0;
            if ht.divisor != 0 {
                let Some(w) = word_at(skb, off + n.sel.hoff as i64) else {
                    return -1;
                };
                sel = (ht.divisor & u32_hash_fold(w, &n.sel, n.fshift)) as usize;
            }
            let next = Pos {
                ht: down,
                bucket: sel,
                node: 0,
            };
            let f = n.sel.flags;
            if f & (TC_U32_VAROFFSET | TC_U32_OFFSET | TC_U32_EAT) == 0 {
                pos = next;
                continue;
            }
            if f & (TC_U32_OFFSET | TC_U32_VAROFFSET) != 0 {
                off2 = n.sel.off as i64 + 3;
                if f & TC_U32_VAROFFSET != 0 {
                    let Some(w) = half_at(skb, off + n.sel.offoff as i64) else {
                        return -1;
                    };
                    off2 += ((n.sel.offmask & w) >> n.sel.offshift) as i64;
                }
                off2 &= !3;
            }
            if f & TC_U32_EAT != 0 {
                off += off2;
                off2 = 0;
            }
            if off < len {
                pos = next;
                continue;
            }
            // Past the packet: as the kernel, pop back.
            match stack.pop() {
                Some((p, o)) => {
                    off = o;
                    pos = p;
                    if let Some(r) = self.terminal(pos, skb, res, env) {
                        return r;
                    }
                    pos.node += 1;
                }
                None => return -1,
            }
        }
    }

    /// net/sched/cls_u32.c: u32_change.
    fn change(&mut self, handle: u32, spec: FilterSpec, replace: bool) -> Result<u32, ClsError> {
        let FilterSpec::U32(spec) = spec else {
            return Err(ClsError::Invalid("not a u32 filter".into()));
        };
        if let Some(d) = spec.divisor {
            return self.new_table(handle, d);
        }
        let htid = match spec.ht {
            Some(h) if htid_of(h) != ROOT_HTID && htid_of(h) != 0 => {
                if self.table(htid_of(h)).is_none() {
                    return Err(ClsError::NotFound {
                        what: "Specified hash table".into(),
                    });
                }
                h & 0xfffff000
            }
            Some(h) => ROOT_HTID | (h & 0x000ff000),
            None => ROOT_HTID,
        };
        let ti = self.table_index(htid_of(htid)).unwrap_or(0);
        let bucket = hash_of(htid);
        if self.tables[ti].divisor < bucket {
            return Err(ClsError::Invalid(
                "Specified hash table bucket exceeds divisor".into(),
            ));
        }
        if let Some(l) = spec.link {
            if key_of(l) != 0 {
                return Err(ClsError::Invalid(
                    "u32 Link handle must be a hash table".into(),
                ));
            }
            if self.table(l).is_none() {
                return Err(ClsError::Invalid("Link hash table not found".into()));
            }
        }
        let handle = self.knode_handle(ti, htid, handle, replace)?;
        let fshift = if spec.sel.hmask != 0 {
            spec.sel.hmask.trailing_zeros()
        } else {
            0
        };
        let k = Knode {
            handle,
            sel: spec.sel,
            fshift,
            classid: spec.classid.unwrap_or(0),
            ht_down: spec.link,
            mark: spec.mark,
            exts: spec.exts,
        };
        let b = &mut self.tables[ti].buckets[bucket as usize];
        b.retain(|n| n.handle != handle);
        let at = b
            .iter()
            .position(|n| node_of(handle) < node_of(n.handle))
            .unwrap_or(b.len());
        b.insert(at, k);
        Ok(handle)
    }

    fn delete(&mut self, handle: u32) -> Result<(), ClsError> {
        if key_of(handle) == 0 {
            // A hash table (not the root, not one linked to).
            let linked = self
                .tables
                .iter()
                .flat_map(|t| t.buckets.iter().flatten())
                .any(|n| n.ht_down == Some(handle));
            if handle == ROOT_HTID || linked {
                return Err(ClsError::Invalid(format!(
                    "hash table {} is in use",
                    htid_name(handle)
                )));
            }
            let n = self.tables.len();
            self.tables.retain(|t| t.handle != handle);
            return if n == self.tables.len() {
                Err(ClsError::NotFound {
                    what: format!("u32 hash table {}", htid_name(handle)),
                })
            } else {
                Ok(())
            };
        }
        for t in &mut self.tables {
            for b in &mut t.buckets {
                if let Some(i) = b.iter().position(|n| n.handle == handle) {
                    b.remove(i);
                    return Ok(());
                }
            }
        }
        Err(ClsError::NotFound {
            what: format!("u32 filter {}", knode_name(handle)),
        })
    }

    fn is_empty(&self) -> bool {
        self.tables.len() == 1 && self.tables[0].buckets.iter().all(|b| b.is_empty())
    }

    fn dump(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for t in &self.tables {
            out.push(json!({"fh": htid_name(t.handle), "ht_divisor": t.divisor + 1}));
            for n in t.buckets.iter().flatten() {
                out.push(dump_knode(n));
            }
        }
        out
    }

    fn dump_text(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            out.push(format!(
                "fh {} ht divisor {} ",
                htid_name(t.handle),
                t.divisor + 1
            ));
            for n in t.buckets.iter().flatten() {
                out.push(text_knode(n));
            }
        }
        out
    }
}

impl ClsU32 {
    /// The terminal step of a matching node (check_terminal): its classid,
    /// then its actions; None when the node is not terminal or its actions
    /// say continue.
    fn terminal(
        &self,
        pos: Pos,
        skb: &mut SkBuff,
        res: &mut TcfResult,
        env: &mut dyn TcfEnv,
    ) -> Option<i64> {
        let n = self.knode(pos)?;
        if n.sel.flags & TC_U32_TERMINAL == 0 {
            return None;
        }
        res.classid = n.classid;
        let r = n.exts.exec(skb, res, env);
        (r >= 0).then_some(r)
    }

    /// A new node's handle: the given one in this table (EINVAL for another
    /// table's, EEXIST when taken unless replacing), else gen_new_kid — one
    /// above the bucket's highest node id, from 0x800.
    fn knode_handle(
        &self,
        ti: usize,
        htid: u32,
        handle: u32,
        replace: bool,
    ) -> Result<u32, ClsError> {
        let t = &self.tables[ti];
        let all = || t.buckets.iter().flatten();
        if handle != 0 {
            if htid_of(handle) != 0 && htid_of(handle ^ htid) != 0 {
                return Err(ClsError::Invalid(
                    "Handle specified hash table address mismatch".into(),
                ));
            }
            let h = htid | node_of(handle);
            if !replace && all().any(|n| n.handle == h) {
                return Err(ClsError::Exists {
                    what: format!("u32 {}", knode_name(h)),
                });
            }
            return Ok(h);
        }
        let bucket = hash_of(htid) as usize;
        let max = t
            .buckets
            .get(bucket)
            .into_iter()
            .flatten()
            .map(|n| node_of(n.handle))
            .fold(0x7ff, u32::max);
        if max >= 0xfff {
            return Err(ClsError::Invalid("no free u32 node id".into()));
        }
        Ok(htid | (max + 1))
    }
}

fn half_at(skb: &SkBuff, off: i64) -> Option<u16> {
    let start = usize::try_from(network_offset(skb) as i64 + off).ok()?;
    let b = skb.data().get(start..start.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// "800:" as f_u32.c prints a table handle.
pub fn htid_name(h: u32) -> String {
    format!("{:x}:", h >> 20)
}

/// "800::800" / "1:2:3" as f_u32.c prints a node handle.
pub fn knode_name(h: u32) -> String {
    let hash = hash_of(h);
    let b = if hash != 0 {
        format!("{hash:x}")
    } else {
        String::new()
    };
    format!("{:x}:{b}:{:x}", h >> 20, node_of(h))
}

fn dump_knode(n: &Knode) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("fh".into(), json!(knode_name(n.handle)));
    o.insert("order".into(), json!(node_of(n.handle)));
    o.insert("key_ht".into(), json!(format!("{:x}", n.handle >> 20)));
    o.insert("bkt".into(), json!(format!("{:x}", hash_of(n.handle))));
    if n.classid != 0 {
        o.insert("flowid".into(), json!(classid_name(n.classid)));
    }
    if let Some(l) = n.ht_down {
        o.insert("link".into(), json!(htid_name(l)));
    }
    o.insert("not_in_hw".into(), json!(true));
    // tc prints one "match" key per key (repeated keys): an array here.
    let keys: Vec<Value> = n
        .sel
        .keys
        .iter()
        .map(|k| {
            json!({"value": format!("{:x}", k.val), "mask": format!("{:x}", k.mask),
                   "offmask": if k.offmask != 0 { "nexthdr+" } else { "" }, "off": k.off})
        })
        .collect();
    o.insert("match".into(), Value::Array(keys));
    if n.sel.hmask != 0 {
        o.insert("hash_mask".into(), json!(format!("{:x}", n.sel.hmask)));
        o.insert("hash_off".into(), json!(n.sel.hoff));
    }
    let f = n.sel.flags;
    if f & (TC_U32_OFFSET | TC_U32_VAROFFSET) != 0 {
        if f & TC_U32_VAROFFSET != 0 {
            o.insert("offset_mask".into(), json!(format!("{:x}", n.sel.offmask)));
            o.insert("offset_shift".into(), json!(n.sel.offshift));
            o.insert("offset_off".into(), json!(n.sel.offoff));
        }
        if f & TC_U32_OFFSET != 0 {
            o.insert("offset_plus".into(), json!(n.sel.off));
        }
    }
    if f & TC_U32_EAT != 0 {
        o.insert("eat".into(), json!(true));
    }
    if !n.exts.is_empty() {
        o.insert("actions".into(), Value::Array(n.exts.dump()));
    }
    Value::Object(o)
}

fn text_knode(n: &Knode) -> String {
    let mut t = format!(
        "fh {} order {} key ht {:x} bkt {:x} ",
        knode_name(n.handle),
        node_of(n.handle),
        n.handle >> 20,
        hash_of(n.handle)
    );
    if n.classid != 0 {
        let star = if n.sel.flags & TC_U32_TERMINAL != 0 {
            "*"
        } else {
            ""
        };
        t.push_str(&format!("{star}flowid {} ", classid_name(n.classid)));
    }
    if let Some(l) = n.ht_down {
        t.push_str(&format!("link {} ", htid_name(l)));
    }
    t.push_str("not_in_hw \n");
    for k in &n.sel.keys {
        let nh = if k.offmask != 0 { "nexthdr+" } else { "" };
        t.push_str(&format!(
            "  match {:08x}/{:08x} at {nh}{}\n",
            k.val, k.mask, k.off
        ));
    }
    t.push_str(&n.exts.dump_text());
    t
}
