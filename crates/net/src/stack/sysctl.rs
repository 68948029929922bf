//! The per-namespace sysctls the host stack implements, named as `sysctl -w`
//! names them (net/ipv4/sysctl_net_ipv4.c, net/ipv4/devinet.c devinet_vars,
//! net/ipv6/addrconf.c, net/ipv6/icmp.c), and the reverse-path filter they
//! switch on (net/ipv4/fib_frontend.c: __fib_validate_source).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::route::{Flow, LOOPBACK_IFINDEX};
use super::{HostStack, RouteKind};
use crate::drop::DropReason;

/// Which devices a `conf.X.` sysctl sets: `all`, `default` (devices created
/// later) or one device (by name in a file, by ifindex in the stack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfDev<D = u32> {
    All,
    Default,
    Dev(D),
}

/// A `net.ipv4.conf.X.KEY` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conf4Key {
    Forwarding,
    RpFilter,
    AcceptRedirects,
    SendRedirects,
}

/// A sysctl skiff implements. `D` names a device: a name as written, or an
/// ifindex once resolved in the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sysctl<D = u32> {
    /// net.ipv4.icmp_echo_ignore_all
    IcmpEchoIgnoreAll,
    /// net.ipv4.icmp_echo_ignore_broadcasts
    IcmpEchoIgnoreBroadcasts,
    /// net.ipv4.icmp_ratelimit (ms)
    IcmpRatelimit,
    /// net.ipv4.icmp_ratemask
    IcmpRatemask,
    /// net.ipv4.icmp_msgs_per_sec
    IcmpMsgsPerSec,
    /// net.ipv4.icmp_msgs_burst
    IcmpMsgsBurst,
    /// net.ipv4.ip_forward (the same as net.ipv4.conf.all.forwarding)
    IpForward,
    /// net.ipv4.conf.X.{forwarding,rp_filter,accept_redirects,send_redirects}
    Conf4(ConfDev<D>, Conf4Key),
    /// net.ipv6.conf.X.forwarding
    Conf6Forwarding(ConfDev<D>),
    /// net.ipv6.icmp.echo_ignore_all
    Icmpv6EchoIgnoreAll,
    /// net.ipv6.icmp.ratelimit (ms)
    Icmpv6Ratelimit,
}

/// Every name `Sysctl::parse` takes, `X` standing for all, default or a device.
pub const SYSCTL_NAMES: &[&str] = &[
    "net.ipv4.icmp_echo_ignore_all",
    "net.ipv4.icmp_echo_ignore_broadcasts",
    "net.ipv4.icmp_ratelimit",
    "net.ipv4.icmp_ratemask",
    "net.ipv4.icmp_msgs_per_sec",
    "net.ipv4.icmp_msgs_burst",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.X.forwarding",
    "net.ipv4.conf.X.rp_filter",
    "net.ipv4.conf.X.accept_redirects",
    "net.ipv4.conf.X.send_redirects",
    "net.ipv6.conf.X.forwarding",
    "net.ipv6.icmp.echo_ignore_all",
    "net.ipv6.icmp.ratelimit",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysctlError {
    #[error("unknown sysctl {0:?} (skiff implements: {names})", names = SYSCTL_NAMES.join(", "))]
    Unknown(String),
    #[error("{name} = {value}: {what}")]
    BadValue {
        name: String,
        value: i64,
        what: &'static str,
    },
    #[error("not supported: {name} = {value} ({why})")]
    NotSupported {
        name: String,
        value: i64,
        why: &'static str,
    },
    #[error("{name}: no device with ifindex {ifindex}")]
    NoDevice { name: String, ifindex: u32 },
}

impl Sysctl<String> {
    /// A name as `sysctl` takes it (dots or slashes): which sysctl, and the
    /// device a `conf.DEV.` name gives.
    pub fn parse(name: &str) -> Result<Sysctl<String>, SysctlError> {
        let n = name.replace('/', ".");
        let fixed = match n.as_str() {
            "net.ipv4.icmp_echo_ignore_all" => Some(Sysctl::IcmpEchoIgnoreAll),
            "net.ipv4.icmp_echo_ignore_broadcasts" => Some(Sysctl::IcmpEchoIgnoreBroadcasts),
            "net.ipv4.icmp_ratelimit" => Some(Sysctl::IcmpRatelimit),
            "net.ipv4.icmp_ratemask" => Some(Sysctl::IcmpRatemask),
            "net.ipv4.icmp_msgs_per_sec" => Some(Sysctl::IcmpMsgsPerSec),
            "net.ipv4.icmp_msgs_burst" => Some(Sysctl::IcmpMsgsBurst),
            "net.ipv4.ip_forward" => Some(Sysctl::IpForward),
            "net.ipv6.icmp.echo_ignore_all" => Some(Sysctl::Icmpv6EchoIgnoreAll),
            "net.ipv6.icmp.ratelimit" => Some(Sysctl::Icmpv6Ratelimit),
            _ => None,
        };
        if let Some(s) = fixed {
            return Ok(s);
        }
        let unknown = || SysctlError::Unknown(name.to_string());
        let (family, rest) = if let Some(r) = n.strip_prefix("net.ipv4.conf.") {
            (4, r)
        } else if let Some(r) = n.strip_prefix("net.ipv6.conf.") {
            (6, r)
        } else {
            return Err(unknown());
        };
        // A device name has no dots or slashes (dev_valid_name), so the key
        // is what follows the last dot.
        let (dev, key) = rest.rsplit_once('.').ok_or_else(unknown)?;
        let dev = match dev {
            "all" => ConfDev::All,
            "default" => ConfDev::Default,
            "" => return Err(unknown()),
            d => ConfDev::Dev(d.to_string()),
        };
        match (family, key) {
            (4, "forwarding") => Ok(Sysctl::Conf4(dev, Conf4Key::Forwarding)),
            (4, "rp_filter") => Ok(Sysctl::Conf4(dev, Conf4Key::RpFilter)),
            (4, "accept_redirects") => Ok(Sysctl::Conf4(dev, Conf4Key::AcceptRedirects)),
            (4, "send_redirects") => Ok(Sysctl::Conf4(dev, Conf4Key::SendRedirects)),
            (6, "forwarding") => Ok(Sysctl::Conf6Forwarding(dev)),
            _ => Err(unknown()),
        }
    }

    /// The device a `conf.DEV.` name gives.
    pub fn device(&self) -> Option<&str> {
        match self {
            Sysctl::Conf4(ConfDev::Dev(d), _) | Sysctl::Conf6Forwarding(ConfDev::Dev(d)) => Some(d),
            _ => None,
        }
    }

    /// The same sysctl with its device resolved by `ifindex`.
    pub fn resolve(&self, ifindex: impl Fn(&str) -> Option<u32>) -> Option<Sysctl<u32>> {
        let dev = |d: &ConfDev<String>| match d {
            ConfDev::All => Some(ConfDev::All),
            ConfDev::Default => Some(ConfDev::Default),
            ConfDev::Dev(n) => ifindex(n).map(ConfDev::Dev),
        };
        Some(match self {
            Sysctl::Conf4(d, k) => Sysctl::Conf4(dev(d)?, *k),
            Sysctl::Conf6Forwarding(d) => Sysctl::Conf6Forwarding(dev(d)?),
            Sysctl::IcmpEchoIgnoreAll => Sysctl::IcmpEchoIgnoreAll,
            Sysctl::IcmpEchoIgnoreBroadcasts => Sysctl::IcmpEchoIgnoreBroadcasts,
            Sysctl::IcmpRatelimit => Sysctl::IcmpRatelimit,
            Sysctl::IcmpRatemask => Sysctl::IcmpRatemask,
            Sysctl::IcmpMsgsPerSec => Sysctl::IcmpMsgsPerSec,
            Sysctl::IcmpMsgsBurst => Sysctl::IcmpMsgsBurst,
            Sysctl::IpForward => Sysctl::IpForward,
            Sysctl::Icmpv6EchoIgnoreAll => Sysctl::Icmpv6EchoIgnoreAll,
            Sysctl::Icmpv6Ratelimit => Sysctl::Icmpv6Ratelimit,
        })
    }
}

/// The sysctl values the stack reads on its paths (defaults: a fresh
/// namespace's, as `ip netns exec X sysctl` shows them on 6.18).
#[derive(Clone, Debug)]
pub(crate) struct Sysctls {
    pub icmp_echo_ignore_all: bool,
    pub icmp_echo_ignore_broadcasts: bool,
    pub icmpv6_echo_ignore_all: bool,
    /// conf.all.rp_filter, conf.default.rp_filter, and each device's.
    pub rp_filter_all: u8,
    pub rp_filter_default: u8,
    pub rp_filter: HashMap<u32, u8>,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            icmp_echo_ignore_all: false,
            icmp_echo_ignore_broadcasts: true,
            icmpv6_echo_ignore_all: false,
            rp_filter_all: 0,
            rp_filter_default: 0,
            rp_filter: HashMap::new(),
        }
    }
}

/// `value` as a 0/1 switch.
fn boolean(name: &str, value: i64) -> Result<bool, SysctlError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(SysctlError::BadValue {
            name: name.into(),
            value,
            what: "takes 0 or 1",
        }),
    }
}

/// `value` within `0..=max`.
fn ranged(name: &str, value: i64, max: i64, what: &'static str) -> Result<u64, SysctlError> {
    if (0..=max).contains(&value) {
        Ok(value.unsigned_abs())
    } else {
        Err(SysctlError::BadValue {
            name: name.into(),
            value,
            what,
        })
    }
}

impl HostStack {
    /// `sysctl -w NAME=VALUE` in this namespace (`name` is used in errors).
    pub fn set_sysctl(&mut self, name: &str, s: &Sysctl, value: i64) -> Result<(), SysctlError> {
        let l = &mut self.icmp_limits;
        match s {
            Sysctl::IcmpEchoIgnoreAll => self.sysctl.icmp_echo_ignore_all = boolean(name, value)?,
            Sysctl::IcmpEchoIgnoreBroadcasts => {
                self.sysctl.icmp_echo_ignore_broadcasts = boolean(name, value)?
            }
            Sysctl::Icmpv6EchoIgnoreAll => {
                self.sysctl.icmpv6_echo_ignore_all = boolean(name, value)?
            }
            Sysctl::IcmpRatelimit => {
                l.ratelimit_ms = ranged(name, value, i64::from(i32::MAX), "takes 0..INT_MAX ms")?
            }
            Sysctl::Icmpv6Ratelimit => {
                l.v6_ratelimit_ms = ranged(name, value, i64::from(i32::MAX), "takes 0..INT_MAX ms")?
            }
            Sysctl::IcmpRatemask => {
                let m = ranged(name, value, i64::from(u32::MAX), "takes a 32-bit mask")?;
                l.ratemask = u32::try_from(m).unwrap_or(u32::MAX);
            }
            Sysctl::IcmpMsgsPerSec => {
                l.msgs_per_sec = ranged(name, value, i64::from(i32::MAX), "takes 0..INT_MAX")?
            }
            Sysctl::IcmpMsgsBurst => {
                let b = ranged(name, value, i64::from(i32::MAX), "takes 0..INT_MAX")?;
                l.msgs_burst = i64::try_from(b).unwrap_or(i64::MAX);
            }
            Sysctl::IpForward => {
                let on = boolean(name, value)?;
                let v6 = self.fwd6;
                self.set_forwarding(on, v6);
            }
            Sysctl::Conf4(dev, key) => self.set_conf4(name, dev, *key, value)?,
            Sysctl::Conf6Forwarding(dev) => {
                let on = boolean(name, value)?;
                self.set_conf_forwarding(name, dev, None, Some(on))?;
            }
        }
        Ok(())
    }

    fn set_conf4(
        &mut self,
        name: &str,
        dev: &ConfDev,
        key: Conf4Key,
        value: i64,
    ) -> Result<(), SysctlError> {
        match key {
            Conf4Key::Forwarding => {
                let on = boolean(name, value)?;
                self.set_conf_forwarding(name, dev, Some(on), None)
            }
            Conf4Key::RpFilter => {
                let v = ranged(name, value, 2, "takes 0 (off), 1 (strict) or 2 (loose)")?;
                let v = u8::try_from(v).unwrap_or(2);
                match dev {
                    ConfDev::All => self.sysctl.rp_filter_all = v,
                    ConfDev::Default => self.sysctl.rp_filter_default = v,
                    ConfDev::Dev(i) => {
                        self.known_dev(name, *i)?;
                        self.sysctl.rp_filter.insert(*i, v);
                    }
                }
                Ok(())
            }
            Conf4Key::AcceptRedirects => {
                if boolean(name, value)? {
                    return Err(SysctlError::NotSupported {
                        name: name.into(),
                        value,
                        why: "the stack learns no routes from ICMP redirects; 0 is what it does",
                    });
                }
                Ok(())
            }
            Conf4Key::SendRedirects => {
                let on = boolean(name, value)?;
                if *dev != ConfDev::All {
                    return Err(SysctlError::NotSupported {
                        name: name.into(),
                        value,
                        why: "send_redirects is modelled for conf.all only",
                    });
                }
                self.send_redirects = on;
                Ok(())
            }
        }
    }

    /// conf.X.forwarding of either family: `all` propagates to every device
    /// and the default (devinet_sysctl_forward, addrconf_fixup_forwarding).
    fn set_conf_forwarding(
        &mut self,
        name: &str,
        dev: &ConfDev,
        v4: Option<bool>,
        v6: Option<bool>,
    ) -> Result<(), SysctlError> {
        match dev {
            ConfDev::All => {
                let (a, b) = (v4.unwrap_or(self.fwd4), v6.unwrap_or(self.fwd6));
                self.set_forwarding(a, b);
            }
            ConfDev::Default => {
                self.fwd4 = v4.unwrap_or(self.fwd4);
                self.fwd6 = v6.unwrap_or(self.fwd6);
            }
            ConfDev::Dev(i) => {
                self.known_dev(name, *i)?;
                if let Some(d) = self.dev_mut(*i) {
                    d.fwd4 = v4.unwrap_or(d.fwd4);
                    d.fwd6 = v6.unwrap_or(d.fwd6);
                }
            }
        }
        Ok(())
    }

    fn known_dev(&self, name: &str, ifindex: u32) -> Result<(), SysctlError> {
        match self.dev(ifindex) {
            Some(_) => Ok(()),
            None => Err(SysctlError::NoDevice {
                name: name.into(),
                ifindex,
            }),
        }
    }

    /// net/ipv4/fib_frontend.c __fib_validate_source with rp_filter on
    /// (IN_DEV_RPFILTER: the larger of conf.all and the device's): the route
    /// back to `src` must be unicast (else IP_LOCAL_SOURCE, -EINVAL); strict
    /// mode wants it through the device the packet came in on, loose mode any
    /// device, and no route back at all is IP_RPFILTER (-EXDEV). Off, only
    /// the checks ip_rcv already makes apply.
    pub(super) fn rp_filter_check(
        &self,
        ifindex: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(), DropReason> {
        let dev_rpf = self.sysctl.rp_filter.get(&ifindex).copied().unwrap_or(0);
        let rpf = self.sysctl.rp_filter_all.max(dev_rpf);
        if rpf == 0 {
            return Ok(());
        }
        let fl = Flow {
            dst: IpAddr::V4(src),
            src: IpAddr::V4(dst),
            iif: LOOPBACK_IFINDEX,
            oif: 0,
            mark: 0,
            has_saddr: false,
            iface: false,
        };
        let Ok(res) = self.fib_lookup4(&fl) else {
            return Err(DropReason::IpRpfilter);
        };
        if res.kind != RouteKind::Unicast {
            return Err(DropReason::IpLocalSource);
        }
        if res.ifindex == ifindex {
            return Ok(());
        }
        let no_addr = self.dev(ifindex).is_none_or(|d| d.v4.is_empty());
        if no_addr || rpf == 1 {
            return Err(DropReason::IpRpfilter);
        }
        Ok(())
    }

    /// The route input's fib_validate_source: not for a zero source (a
    /// broadcast from an unconfigured host) nor on loopback (whose packets
    /// keep their route).
    pub(super) fn rp_filter_input(
        &self,
        ifindex: u32,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(), DropReason> {
        if src.is_unspecified() || self.dev(ifindex).is_some_and(|d| d.cfg.loopback) {
            return Ok(());
        }
        self.rp_filter_check(ifindex, src, dst)
    }

    /// A device's conf.* start from conf.default (devinet's inetdev_init).
    pub(super) fn sysctl_new_device(&mut self, ifindex: u32) {
        let d = self.sysctl.rp_filter_default;
        self.sysctl.rp_filter.insert(ifindex, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_sysctl_spells_them() {
        assert_eq!(
            Sysctl::parse("net.ipv4.conf.eth0.rp_filter"),
            Ok(Sysctl::Conf4(
                ConfDev::Dev("eth0".into()),
                Conf4Key::RpFilter
            ))
        );
        assert_eq!(
            Sysctl::parse("net/ipv6/conf/all/forwarding"),
            Ok(Sysctl::Conf6Forwarding(ConfDev::All))
        );
        assert_eq!(
            Sysctl::parse("net.ipv4.icmp_echo_ignore_all"),
            Ok(Sysctl::IcmpEchoIgnoreAll)
        );
        let e = Sysctl::parse("net.ipv4.tcp_syncookies").unwrap_err();
        assert!(e.to_string().starts_with(
            "unknown sysctl \"net.ipv4.tcp_syncookies\" (skiff implements: net.ipv4.icmp_echo_ignore_all,"
        ));
        assert_eq!(
            Sysctl::parse("net.ipv4.conf.eth0.arp_ignore"),
            Err(SysctlError::Unknown("net.ipv4.conf.eth0.arp_ignore".into()))
        );
    }

    #[test]
    fn values_are_checked() {
        let mut st = HostStack::new();
        let s = Sysctl::Conf4(ConfDev::All, Conf4Key::RpFilter);
        assert_eq!(
            st.set_sysctl("net.ipv4.conf.all.rp_filter", &s, 3)
                .unwrap_err()
                .to_string(),
            "net.ipv4.conf.all.rp_filter = 3: takes 0 (off), 1 (strict) or 2 (loose)"
        );
        st.set_sysctl("net.ipv4.conf.all.rp_filter", &s, 2).unwrap();
        assert_eq!(st.sysctl.rp_filter_all, 2);
        let s = Sysctl::Conf4(ConfDev::Dev(7), Conf4Key::RpFilter);
        assert_eq!(
            st.set_sysctl("net.ipv4.conf.x.rp_filter", &s, 1),
            Err(SysctlError::NoDevice {
                name: "net.ipv4.conf.x.rp_filter".into(),
                ifindex: 7
            })
        );
        let s = Sysctl::Conf4(ConfDev::All, Conf4Key::AcceptRedirects);
        assert!(st.set_sysctl("a", &s, 0).is_ok());
        assert!(matches!(
            st.set_sysctl("a", &s, 1),
            Err(SysctlError::NotSupported { .. })
        ));
    }
}
