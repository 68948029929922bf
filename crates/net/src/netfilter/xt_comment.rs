//! net/netfilter/xt_comment.c: `-m comment --comment TEXT` always matches;
//! the kernel keeps at most XT_MAX_COMMENT_LEN - 1 bytes.

/// XT_MAX_COMMENT_LEN.
pub const XT_MAX_COMMENT_LEN: usize = 256;

/// Whether `text` fits (iptables refuses longer comments).
pub fn comment_fits(text: &str) -> bool {
    text.len() < XT_MAX_COMMENT_LEN
}
