//! Sets, maps and verdict maps (net/netfilter/nf_tables_api.c sets;
//! nft_set_hash.c for exact keys, nft_set_rbtree.c / nft_set_pipapo.c for
//! intervals and concatenated intervals): keys as register bytes, each
//! field of a concatenation padded to 32 bits, compared with memcmp.

use std::collections::HashMap;

use super::expr::NftVerdict;
use super::NftError;

/// What a map's elements carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElemData {
    None,
    Bytes(Vec<u8>),
    Verdict(NftVerdict),
}

impl ElemData {
    pub fn verdict(&self) -> Option<NftVerdict> {
        match self {
            ElemData::Verdict(v) => Some(*v),
            _ => None,
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            ElemData::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// A set's data type: none (a set), `len` bytes (a map), a verdict (vmap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetData {
    None,
    Bytes(u32),
    Verdict,
}

impl SetData {
    /// The data length (NFT_DATA_VERDICT's is the verdict's, 16).
    pub fn len(self) -> u32 {
        match self {
            SetData::None => 0,
            SetData::Bytes(n) => n,
            SetData::Verdict => 16,
        }
    }

    pub fn is_empty(self) -> bool {
        self == SetData::None
    }
}

/// One element: the key (with its inclusive end for an interval set: the
/// whole key for an exact one), the data, the text nft prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetElem {
    pub key: Vec<u8>,
    pub key_end: Vec<u8>,
    pub data: ElemData,
    pub text: String,
}

/// struct nft_set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftSet {
    pub name: String,
    /// An anonymous set of one rule (`{ 22, 80 }`, `vmap { ... }`).
    pub anonymous: bool,
    /// The key's bytes: the fields' lengths, each a multiple of 4 (NFT_SET_CONCAT).
    pub fields: Vec<u32>,
    pub key_len: u32,
    /// NFT_SET_INTERVAL.
    pub interval: bool,
    pub data: SetData,
    /// The declaration's lines as nft prints them (`type ...`, `flags ...`).
    pub decl: Vec<String>,
    pub elems: Vec<SetElem>,
    exact: HashMap<Vec<u8>, usize>,
}

impl NftSet {
    pub fn new(name: &str, fields: Vec<u32>, interval: bool, data: SetData) -> NftSet {
        let key_len = fields.iter().sum();
        NftSet {
            name: name.to_string(),
            anonymous: false,
            fields,
            key_len,
            interval,
            data,
            decl: Vec::new(),
            elems: Vec::new(),
            exact: HashMap::new(),
        }
    }

    /// nft_add_set_elem: a key of the set's length; an exact key already
    /// there keeps its element (NLM_F_EXCL unset); a map element needs data.
    pub fn insert(&mut self, e: SetElem) -> Result<(), NftError> {
        if e.key.len() != self.key_len as usize || e.key_end.len() != e.key.len() {
            return Err(NftError::Invalid(format!(
                "element key of {} bytes in set `{}' of {}-byte keys",
                e.key.len(),
                self.name,
                self.key_len
            )));
        }
        if (e.data == ElemData::None) != self.data.is_empty() {
            return Err(NftError::Invalid(format!(
                "element data does not fit set `{}'",
                self.name
            )));
        }
        if !self.interval && e.key != e.key_end {
            return Err(NftError::Invalid(format!(
                "set `{}' has no interval flag: a range or prefix needs `flags interval'",
                self.name
            )));
        }
        if !self.interval {
            if self.exact.contains_key(&e.key) {
                return Ok(());
            }
            self.exact.insert(e.key.clone(), self.elems.len());
        }
        self.elems.push(e);
        Ok(())
    }

    /// `flush set`.
    pub fn flush(&mut self) {
        self.elems.clear();
        self.exact.clear();
    }

    /// The set backend's lookup: a hash for exact keys; for intervals each
    /// field of the key between the element's start and end (pipapo's
    /// per-field ranges; one field is the rbtree's interval).
    pub fn lookup(&self, key: &[u8]) -> Option<&SetElem> {
        if !self.interval {
            return self.exact.get(key).and_then(|&i| self.elems.get(i));
        }
        self.elems.iter().find(|e| self.in_interval(e, key))
    }

    fn in_interval(&self, e: &SetElem, key: &[u8]) -> bool {
        let mut at = 0usize;
        for &f in &self.fields {
            let end = at + f as usize;
            let (Some(k), Some(lo), Some(hi)) =
                (key.get(at..end), e.key.get(at..end), e.key_end.get(at..end))
            else {
                return false;
            };
            if k < lo || k > hi {
                return false;
            }
            at = end;
        }
        true
    }
}
