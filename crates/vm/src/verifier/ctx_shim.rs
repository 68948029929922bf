//! What the walk asks of the program type beyond ctx field rules (`ctx`): the
//! kernel's `may_access_skb` and `may_access_direct_pkt_data`.

use skiff_object::ProgType;

/// `may_access_direct_pkt_data` for a write (XDP, TC classifiers and actions).
pub fn may_write_packet(prog_type: ProgType) -> bool {
    matches!(
        prog_type,
        ProgType::Xdp | ProgType::SchedCls | ProgType::SchedAct
    )
}

/// `may_access_skb`: LD_ABS/LD_IND (socket filters and TC).
pub fn may_access_skb(prog_type: ProgType) -> bool {
    matches!(prog_type, ProgType::SchedCls | ProgType::SchedAct)
}
