//! Program verdicts as the kernel reads them, typed at the hook boundaries:
//! `XdpAction` (enum xdp_action), `TcAction` (TC_ACT_*, after cls_bpf or tcx
//! translated the return value), `NetkitAction` (enum netkit_action). The raw
//! code stays available for counters and traces (`code()`).

/// enum xdp_action; anything else is what bpf_warn_invalid_xdp_action warns
/// about and the driver treats as an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    Invalid(i64),
}

impl XdpAction {
    /// The program's return value (its low 32 bits, as the kernel's u32 act).
    #[inline]
    pub fn from_ret(code: i64) -> XdpAction {
        match code {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            c => XdpAction::Invalid(c),
        }
    }

    #[inline]
    pub fn code(self) -> i64 {
        match self {
            XdpAction::Aborted => 0,
            XdpAction::Drop => 1,
            XdpAction::Pass => 2,
            XdpAction::Tx => 3,
            XdpAction::Redirect => 4,
            XdpAction::Invalid(c) => c,
        }
    }
}

/// TC_ACT_* (include/uapi/linux/pkt_cls.h) as sch_handle_ingress/egress see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAction {
    Unspec,
    Ok,
    Reclassify,
    Shot,
    Pipe,
    Stolen,
    Queued,
    Repeat,
    Redirect,
    Trap,
    Other(i64),
}

impl TcAction {
    #[inline]
    pub fn from_code(code: i64) -> TcAction {
        match code {
            -1 => TcAction::Unspec,
            0 => TcAction::Ok,
            1 => TcAction::Reclassify,
            2 => TcAction::Shot,
            3 => TcAction::Pipe,
            4 => TcAction::Stolen,
            5 => TcAction::Queued,
            6 => TcAction::Repeat,
            7 => TcAction::Redirect,
            8 => TcAction::Trap,
            c => TcAction::Other(c),
        }
    }

    #[inline]
    pub fn code(self) -> i64 {
        match self {
            TcAction::Unspec => -1,
            TcAction::Ok => 0,
            TcAction::Reclassify => 1,
            TcAction::Shot => 2,
            TcAction::Pipe => 3,
            TcAction::Stolen => 4,
            TcAction::Queued => 5,
            TcAction::Repeat => 6,
            TcAction::Redirect => 7,
            TcAction::Trap => 8,
            TcAction::Other(c) => c,
        }
    }
}

/// enum netkit_action: a program's verdict in netkit_run; anything else is a drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetkitAction {
    Next,
    Pass,
    Drop,
    Redirect,
    Other(i64),
}

impl NetkitAction {
    #[inline]
    pub fn from_ret(code: i64) -> NetkitAction {
        match code {
            -1 => NetkitAction::Next,
            0 => NetkitAction::Pass,
            2 => NetkitAction::Drop,
            7 => NetkitAction::Redirect,
            c => NetkitAction::Other(c),
        }
    }

    #[inline]
    pub fn code(self) -> i64 {
        match self {
            NetkitAction::Next => -1,
            NetkitAction::Pass => 0,
            NetkitAction::Drop => 2,
            NetkitAction::Redirect => 7,
            NetkitAction::Other(c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in -3..12 {
            assert_eq!(XdpAction::from_ret(c).code(), c);
            assert_eq!(TcAction::from_code(c).code(), c);
            assert_eq!(NetkitAction::from_ret(c).code(), c);
        }
        assert_eq!(XdpAction::from_ret(5), XdpAction::Invalid(5));
        assert_eq!(TcAction::from_code(7), TcAction::Redirect);
        assert_eq!(NetkitAction::from_ret(1), NetkitAction::Other(1));
    }
}
