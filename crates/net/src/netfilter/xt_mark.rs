//! net/netfilter/xt_mark.c: `-m mark --mark value[/mask]` and the MARK
//! target (`--set-xmark`, `--set-mark`, `--and-mark`, `--or-mark`, `--xor-mark`).

/// struct xt_mark_mtinfo1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtMarkMatch {
    pub mark: u32,
    pub mask: u32,
    pub invert: bool,
}

impl XtMarkMatch {
    /// mark_mt: (skb->mark & mask) == mark, inverted by `!`.
    pub fn matches(&self, skb_mark: u32) -> bool {
        ((skb_mark & self.mask) == self.mark) ^ self.invert
    }
}

/// struct xt_mark_tginfo2: skb->mark = (skb->mark & ~mask) ^ mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XtMarkTarget {
    pub mark: u32,
    pub mask: u32,
}

impl XtMarkTarget {
    /// mark_tg.
    pub fn apply(&self, skb_mark: &mut u32) {
        *skb_mark = (*skb_mark & !self.mask) ^ self.mark;
    }
}
