//! The rule part of an iptables line: -s/-d/-p/-i/-o/-f with `!`, the
//! matches (-m NAME and their options; -p tcp/udp load their match on its
//! first option, as iptables does) and the target (-j NAME and its options,
//! -g CHAIN). Anything else is "not supported: ...".

use std::net::IpAddr;

use skiff_net::netfilter::conntrack::xt::{
    ConnmarkMode, XT_CONNTRACK_STATE_DNAT, XT_CONNTRACK_STATE_INVALID, XT_CONNTRACK_STATE_SNAT,
    XT_CONNTRACK_STATE_UNTRACKED,
};
use skiff_net::netfilter::ip_tables::*;
use skiff_net::netfilter::ipt_reject::RejectWith;
use skiff_net::netfilter::nat::*;
use skiff_net::netfilter::targets::XtTarget;
use skiff_net::netfilter::xt_addrtype::{XtAddrtype, ADDRTYPE_NAMES};
use skiff_net::netfilter::xt_log::XtLog;
use skiff_net::netfilter::xt_mark::{XtMarkMatch, XtMarkTarget};
use skiff_net::netfilter::xt_match::XtMatch;
use skiff_net::netfilter::xt_multiport::{MultiportFlags, XtMultiport, XT_MULTI_PORTS};
use skiff_net::netfilter::xt_statistic::{probability_from_f64, StatisticMode, XtStatistic};
use skiff_net::netfilter::xt_tcpudp::*;
use skiff_net::netfilter::NfProto;

use super::words::ShellWords;
use super::NfLineError;

/// A rule as parsed: jumps still by chain name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub ip: IptIp,
    pub matches: Vec<XtMatch>,
    pub target: TargetSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    Builtin(XtTarget),
    Jump(String),
    Goto(String),
}

impl TargetSpec {
    pub fn resolve(
        &self,
        mut chain: impl FnMut(&str) -> Result<usize, String>,
    ) -> Result<XtTarget, String> {
        Ok(match self {
            TargetSpec::Builtin(t) => t.clone(),
            TargetSpec::Jump(n) => XtTarget::Jump(chain(n)?),
            TargetSpec::Goto(n) => XtTarget::Goto(chain(n)?),
        })
    }
}

impl RuleSpec {
    /// nf_ct_netns_get: the rule needs conntrack's hooks.
    pub fn needs_conntrack(&self) -> bool {
        self.matches.iter().any(|m| {
            matches!(
                m,
                XtMatch::Conntrack { .. } | XtMatch::State { .. } | XtMatch::Connmark { .. }
            )
        }) || matches!(
            self.target,
            TargetSpec::Builtin(XtTarget::Connmark(_) | XtTarget::Notrack | XtTarget::Nat(_))
        )
    }
}

type R<T> = Result<T, NfLineError>;

/// The value word of option `opt` (at word `i`).
fn value(w: &mut ShellWords, i: usize, opt: &str) -> R<String> {
    match w.next_word() {
        Some((_, v)) => Ok(v.to_string()),
        None => Err(NfLineError::at(
            i,
            format!("option \"{opt}\" requires an argument"),
        )),
    }
}

fn num<T: std::str::FromStr>(s: &str, i: usize, what: &str) -> R<T> {
    let r = if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
            .ok()
            .and_then(|v| v.to_string().parse().ok())
    } else {
        s.parse().ok()
    };
    r.ok_or_else(|| NfLineError::at(i, format!("Bad {what} \"{s}\"")))
}

/// `value[/mask]` with the mask defaulting to all ones.
fn value_mask(s: &str, i: usize) -> R<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Ok((num(v, i, "value")?, num(m, i, "mask")?)),
        None => Ok((num(s, i, "value")?, u32::MAX)),
    }
}

/// `addr[/len|/mask]` (xtables_ipparse_any; names are not resolved).
fn addr_mask(s: &str, i: usize, family: NfProto) -> R<(IpAddr, u8)> {
    let bad = || NfLineError::at(i, format!("host/network `{s}' not found"));
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let a: IpAddr = a.parse().map_err(|_| bad())?;
    if a.is_ipv4() != (family == NfProto::Ipv4) {
        return Err(bad());
    }
    let max = if a.is_ipv4() { 32 } else { 128 };
    let len = match m {
        None => max,
        Some(m) => match (m.parse::<u8>(), m.parse::<std::net::Ipv4Addr>()) {
            (Ok(l), _) if l <= max => l,
            (_, Ok(mask)) if a.is_ipv4() => {
                let b = u32::from(mask);
                if b.leading_ones() + b.trailing_zeros() != 32 {
                    return Err(NfLineError::at(i, format!("non-contiguous mask `{m}'")));
                }
                b.leading_ones() as u8
            }
            _ => return Err(NfLineError::at(i, format!("invalid mask `{m}' specified"))),
        },
    };
    Ok((a, len))
}

fn proto_num(s: &str, i: usize) -> R<u8> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "all" | "0" => 0,
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "udplite" => 136,
        other => other
            .parse()
            .map_err(|_| NfLineError::at(i, format!("unknown protocol \"{s}\" specified")))?,
    })
}

/// `port` or `min:max` (either side may be empty).
fn port_range(s: &str, i: usize) -> R<(u16, u16)> {
    match s.split_once(':') {
        Some((a, b)) => {
            let a = if a.is_empty() { 0 } else { num(a, i, "port")? };
            let b = if b.is_empty() {
                0xffff
            } else {
                num(b, i, "port")?
            };
            if a > b {
                return Err(NfLineError::at(i, format!("invalid portrange `{s}'")));
            }
            Ok((a, b))
        }
        None => {
            let p = num(s, i, "port")?;
            Ok((p, p))
        }
    }
}

/// A match being parsed (its options come one by one).
struct MatchBuild {
    name: String,
    word: usize,
    m: Option<XtMatch>,
}

const TCP_FLAGS: [(&str, u8); 8] = [
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
    ("ALL", 0x3f),
    ("NONE", 0),
];

fn tcp_flags(s: &str, i: usize) -> R<u8> {
    let mut v = 0;
    for f in s.split(',') {
        let b = TCP_FLAGS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(f))
            .ok_or_else(|| NfLineError::at(i, format!("Unknown TCP flag `{f}'")))?;
        v |= b.1;
    }
    Ok(v)
}

fn ct_states(s: &str, i: usize) -> R<u32> {
    let mut v = 0;
    for st in s.split(',') {
        v |= match st {
            "INVALID" => XT_CONNTRACK_STATE_INVALID,
            "ESTABLISHED" => 1 << 1,
            "RELATED" => 1 << 2,
            "NEW" => 1 << 3,
            "UNTRACKED" => XT_CONNTRACK_STATE_UNTRACKED,
            "SNAT" => XT_CONNTRACK_STATE_SNAT,
            "DNAT" => XT_CONNTRACK_STATE_DNAT,
            _ => return Err(NfLineError::at(i, format!("Bad ctstate \"{st}\""))),
        };
    }
    Ok(v)
}

fn new_match(name: &str, i: usize) -> R<XtMatch> {
    Ok(match name {
        "tcp" => XtMatch::Tcp(XtTcp {
            spts: ALL_PORTS,
            dpts: ALL_PORTS,
            flg_mask: 0,
            flg_cmp: 0,
            invflags: 0,
        }),
        "udp" => XtMatch::Udp(XtUdp {
            spts: ALL_PORTS,
            dpts: ALL_PORTS,
            invflags: 0,
        }),
        "comment" => XtMatch::Comment(String::new()),
        "mark" => XtMatch::Mark(XtMarkMatch {
            mark: 0,
            mask: u32::MAX,
            invert: false,
        }),
        "multiport" => XtMatch::Multiport(XtMultiport {
            flags: MultiportFlags::Either,
            ports: Vec::new(),
            invert: false,
        }),
        "statistic" => XtMatch::Statistic(XtStatistic {
            mode: StatisticMode::Random { probability: 0 },
            invert: false,
        }),
        "addrtype" => XtMatch::Addrtype(XtAddrtype {
            source: 0,
            dest: 0,
            invert_source: false,
            invert_dest: false,
        }),
        "conntrack" => XtMatch::Conntrack {
            statemask: 0,
            invert: false,
        },
        "state" => XtMatch::State {
            statemask: 0,
            invert: false,
        },
        "connmark" => XtMatch::Connmark {
            mark: 0,
            mask: u32::MAX,
            invert: false,
        },
        _ => {
            return Err(NfLineError::at(
                i,
                format!("not supported: the match `{name}' (skiff has tcp, udp, multiport, mark, comment, statistic, addrtype, conntrack, state, connmark)"),
            ))
        }
    })
}

/// One option of the current match.
fn match_opt(
    m: &mut XtMatch,
    opt: &str,
    i: usize,
    inv: bool,
    w: &mut ShellWords,
    stat_n: &mut Option<(u32, u32)>,
) -> R<()> {
    let unknown = || NfLineError::at(i, format!("not supported: option \"{opt}\" of this match"));
    match m {
        XtMatch::Tcp(t) => match opt {
            "--sport" | "--source-port" => {
                t.spts = port_range(&value(w, i, opt)?, i + 1)?;
                t.invflags |= u8::from(inv) * XT_TCP_INV_SRCPT;
            }
            "--dport" | "--destination-port" => {
                t.dpts = port_range(&value(w, i, opt)?, i + 1)?;
                t.invflags |= u8::from(inv) * XT_TCP_INV_DSTPT;
            }
            "--tcp-flags" => {
                t.flg_mask = tcp_flags(&value(w, i, opt)?, i + 1)?;
                t.flg_cmp = tcp_flags(&value(w, i, opt)?, i + 2)?;
                t.invflags |= u8::from(inv) * XT_TCP_INV_FLAGS;
            }
            "--syn" => {
                t.flg_mask = 0x17;
                t.flg_cmp = 0x02;
                t.invflags |= u8::from(inv) * XT_TCP_INV_FLAGS;
            }
            _ => return Err(unknown()),
        },
        XtMatch::Udp(u) => match opt {
            "--sport" | "--source-port" => {
                u.spts = port_range(&value(w, i, opt)?, i + 1)?;
                u.invflags |= u8::from(inv) * XT_TCP_INV_SRCPT;
            }
            "--dport" | "--destination-port" => {
                u.dpts = port_range(&value(w, i, opt)?, i + 1)?;
                u.invflags |= u8::from(inv) * XT_TCP_INV_DSTPT;
            }
            _ => return Err(unknown()),
        },
        XtMatch::Comment(c) => match opt {
            "--comment" => {
                *c = value(w, i, opt)?;
                if !skiff_net::netfilter::xt_comment::comment_fits(c) {
                    return Err(NfLineError::at(
                        i + 1,
                        "comment too long (255 bytes at most)",
                    ));
                }
            }
            _ => return Err(unknown()),
        },
        XtMatch::Mark(mk) => match opt {
            "--mark" => {
                (mk.mark, mk.mask) = value_mask(&value(w, i, opt)?, i + 1)?;
                mk.invert = inv;
            }
            _ => return Err(unknown()),
        },
        XtMatch::Multiport(mp) => {
            mp.flags = match opt {
                "--sports" | "--source-ports" => MultiportFlags::Source,
                "--dports" | "--destination-ports" => MultiportFlags::Destination,
                "--ports" => MultiportFlags::Either,
                _ => return Err(unknown()),
            };
            mp.invert = inv;
            let v = value(w, i, opt)?;
            for p in v.split(',') {
                mp.ports.push(port_range(p, i + 1)?);
            }
            let slots: usize = mp
                .ports
                .iter()
                .map(|(a, b)| if a == b { 1 } else { 2 })
                .sum();
            if slots > XT_MULTI_PORTS {
                return Err(NfLineError::at(
                    i + 1,
                    "too many ports specified (15 at most)",
                ));
            }
        }
        XtMatch::Statistic(s) => match opt {
            "--mode" => {
                let v = value(w, i, opt)?;
                match v.as_str() {
                    "random" => {}
                    "nth" => *stat_n = Some(stat_n.unwrap_or((1, 0))),
                    _ => return Err(NfLineError::at(i + 1, format!("Bad mode \"{v}\""))),
                }
            }
            "--probability" => {
                let v = value(w, i, opt)?;
                let p: f64 = v
                    .parse()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| {
                        NfLineError::at(i + 1, "--probability must be between 0 and 1")
                    })?;
                s.mode = StatisticMode::Random {
                    probability: probability_from_f64(p),
                };
                s.invert = inv;
            }
            "--every" => {
                let n: u32 = num(&value(w, i, opt)?, i + 1, "--every value")?;
                if n == 0 {
                    return Err(NfLineError::at(i + 1, "--every must be at least 1"));
                }
                *stat_n = Some((n, stat_n.map(|x| x.1).unwrap_or(0)));
                s.invert = inv;
            }
            "--packet" => {
                let p: u32 = num(&value(w, i, opt)?, i + 1, "--packet value")?;
                *stat_n = Some((stat_n.map(|x| x.0).unwrap_or(1), p));
            }
            _ => return Err(unknown()),
        },
        XtMatch::Addrtype(a) => {
            let mut types = 0;
            if matches!(opt, "--src-type" | "--dst-type") {
                let v = value(w, i, opt)?;
                for t in v.split(',') {
                    types |= ADDRTYPE_NAMES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(t))
                        .map(|x| x.1)
                        .ok_or_else(|| {
                            NfLineError::at(i + 1, format!("addrtype: bad type \"{t}\""))
                        })?;
                }
            }
            match opt {
                "--src-type" => (a.source, a.invert_source) = (types, inv),
                "--dst-type" => (a.dest, a.invert_dest) = (types, inv),
                _ => return Err(unknown()),
            }
        }
        XtMatch::Conntrack { statemask, invert } => match opt {
            "--ctstate" => {
                *statemask = ct_states(&value(w, i, opt)?, i + 1)?;
                *invert = inv;
            }
            _ => return Err(unknown()),
        },
        XtMatch::State { statemask, invert } => match opt {
            "--state" => {
                *statemask = ct_states(&value(w, i, opt)?, i + 1)?;
                *invert = inv;
            }
            _ => return Err(unknown()),
        },
        XtMatch::Connmark { mark, mask, invert } => match opt {
            "--mark" => {
                (*mark, *mask) = value_mask(&value(w, i, opt)?, i + 1)?;
                *invert = inv;
            }
            _ => return Err(unknown()),
        },
    }
    Ok(())
}

/// `addr[-addr][:port[-port]]` (IPv6: `[addr]:port`).
fn nat_range(s: &str, i: usize, family: NfProto, flags: u32) -> R<NfNatRange2> {
    let bad = || NfLineError::at(i, format!("Bad IP address \"{s}\""));
    let (addrs, ports) = if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']').ok_or_else(bad)?;
        (a, p.strip_prefix(':'))
    } else if family == NfProto::Ipv4 {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    } else {
        (s, None)
    };
    let mut r = NfNatRange2 {
        flags,
        min_addr: if family == NfProto::Ipv4 {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u8; 16])
        },
        max_addr: if family == NfProto::Ipv4 {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u8; 16])
        },
        min_proto: 0,
        max_proto: 0,
        base_proto: 0,
    };
    if !addrs.is_empty() {
        let (a, b) = addrs.split_once('-').unwrap_or((addrs, addrs));
        r.min_addr = a.parse().map_err(|_| bad())?;
        r.max_addr = b.parse().map_err(|_| bad())?;
        if r.min_addr.is_ipv4() != (family == NfProto::Ipv4)
            || r.max_addr.is_ipv4() != r.min_addr.is_ipv4()
        {
            return Err(bad());
        }
        r.flags |= NF_NAT_RANGE_MAP_IPS;
    }
    if let Some(p) = ports {
        let (a, b) = p.split_once('-').unwrap_or((p, p));
        r.min_proto = num(a, i, "port")?;
        r.max_proto = num(b, i, "port")?;
        r.flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
    }
    Ok(r)
}

/// Kernel targets skiff does not have (any other name is a user chain).
const UNSUPPORTED_TARGETS: [&str; 27] = [
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNSECMARK",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "NETMAP",
    "NFLOG",
    "NOTRACK",
    "RATEEST",
    "SECMARK",
    "SET",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
    "DNPT",
];

/// The target's options (all the words after -j NAME up to the next rule option).
fn target(name: &str, ni: usize, w: &mut ShellWords, family: NfProto) -> R<TargetSpec> {
    let mut opts: Vec<(usize, String, Option<String>)> = Vec::new();
    while let Some(p) = w.peek() {
        if !p.starts_with("--") {
            break;
        }
        let (i, o) = w
            .next_word()
            .map(|(i, o)| (i, o.to_string()))
            .unwrap_or_default();
        let takes = !matches!(
            o.as_str(),
            "--queue-bypass"
                | "--random"
                | "--random-fully"
                | "--persistent"
                | "--notrack"
                | "--save-mark"
                | "--restore-mark"
        );
        let v = if takes { Some(value(w, i, &o)?) } else { None };
        opts.push((i, o, v));
    }
    let v6 = family == NfProto::Ipv6;
    let unknown = |i: usize, o: &str| {
        NfLineError::at(i, format!("not supported: option \"{o}\" of target {name}"))
    };
    let mut flags = 0;
    let mut range: Option<NfNatRange2> = None;
    let t = match name {
        "ACCEPT" | "DROP" | "RETURN" | "QUEUE" if !opts.is_empty() => {
            return Err(unknown(opts[0].0, &opts[0].1))
        }
        "ACCEPT" => XtTarget::Accept,
        "DROP" => XtTarget::Drop,
        "RETURN" => XtTarget::Return,
        "QUEUE" => XtTarget::Queue {
            num: 0,
            bypass: false,
        },
        "NFQUEUE" => {
            let (mut num_, mut bypass) = (0u16, false);
            for (i, o, v) in &opts {
                match (o.as_str(), v) {
                    ("--queue-num", Some(v)) => num_ = num(v, *i + 1, "queue number")?,
                    ("--queue-bypass", _) => bypass = true,
                    _ => return Err(unknown(*i, o)),
                }
            }
            XtTarget::Queue { num: num_, bypass }
        }
        "REJECT" => {
            let mut with = RejectWith::IcmpUnreach(if v6 { 4 } else { 3 });
            for (i, o, v) in &opts {
                let v = v.as_deref().unwrap_or("");
                if o != "--reject-with" {
                    return Err(unknown(*i, o));
                }
                with = RejectWith::parse(v, v6).ok_or_else(|| {
                    NfLineError::at(*i + 1, format!("not supported: --reject-with {v}"))
                })?;
            }
            XtTarget::Reject(with)
        }
        "MARK" => {
            let mut t = None;
            for (i, o, v) in &opts {
                let (val, mask) = value_mask(v.as_deref().unwrap_or(""), *i + 1)?;
                t = Some(match o.as_str() {
                    "--set-xmark" => XtMarkTarget { mark: val, mask },
                    "--set-mark" => XtMarkTarget {
                        mark: val,
                        mask: mask | val,
                    },
                    "--and-mark" => XtMarkTarget {
                        mark: 0,
                        mask: !val,
                    },
                    "--or-mark" => XtMarkTarget {
                        mark: val,
                        mask: val,
                    },
                    "--xor-mark" => XtMarkTarget { mark: val, mask: 0 },
                    _ => return Err(unknown(*i, o)),
                });
            }
            XtTarget::Mark(t.ok_or_else(|| {
                NfLineError::at(
                    ni,
                    "MARK target: Parameter --set/and/or/xor-mark is required",
                )
            })?)
        }
        "LOG" => {
            let mut l = XtLog {
                prefix: String::new(),
                level: 4,
            };
            for (i, o, v) in &opts {
                let v = v.clone().unwrap_or_default();
                match o.as_str() {
                    "--log-prefix" => l.prefix = v,
                    "--log-level" => l.level = num(&v, *i + 1, "log level")?,
                    _ => return Err(unknown(*i, o)),
                }
            }
            XtTarget::Log(l)
        }
        "DNAT" | "SNAT" | "MASQUERADE" | "REDIRECT" => {
            for (i, o, v) in &opts {
                let v = v.as_deref().unwrap_or("");
                match (name, o.as_str()) {
                    ("DNAT", "--to-destination") | ("SNAT", "--to-source") => {
                        range = Some(nat_range(v, *i + 1, family, 0)?)
                    }
                    ("MASQUERADE" | "REDIRECT", "--to-ports") => {
                        range = Some(
                            nat_range(&format!("[]:{v}"), *i + 1, family, 0)
                                .or_else(|_| nat_range(&format!(":{v}"), *i + 1, family, 0))?,
                        )
                    }
                    (_, "--random") => flags |= NF_NAT_RANGE_PROTO_RANDOM,
                    (_, "--random-fully") => flags |= NF_NAT_RANGE_PROTO_RANDOM_FULLY,
                    (_, "--persistent") => flags |= NF_NAT_RANGE_PERSISTENT,
                    _ => return Err(unknown(*i, o)),
                }
            }
            let mut r = match range {
                Some(r) => r,
                None if matches!(name, "DNAT" | "SNAT") => {
                    return Err(NfLineError::at(
                        ni,
                        format!(
                            "{name}: missing --to-{}",
                            if name == "DNAT" {
                                "destination"
                            } else {
                                "source"
                            }
                        ),
                    ))
                }
                None => nat_range("", ni, family, 0)?,
            };
            r.flags |= flags;
            XtTarget::Nat(match name {
                "DNAT" => NatTarget::Dnat(r),
                "SNAT" => NatTarget::Snat(r),
                "MASQUERADE" => NatTarget::Masquerade(r),
                _ => NatTarget::Redirect(r),
            })
        }
        "CONNMARK" => {
            let (mut nfmask, mut ctmask) = (u32::MAX, u32::MAX);
            let mut mode = None;
            for (i, o, v) in &opts {
                let v = v.as_deref().unwrap_or("");
                match o.as_str() {
                    "--set-xmark" => {
                        let (m, k) = value_mask(v, *i + 1)?;
                        mode = Some(ConnmarkMode::Set {
                            ctmark: m,
                            ctmask: k,
                        });
                    }
                    "--set-mark" => {
                        let (m, k) = value_mask(v, *i + 1)?;
                        mode = Some(ConnmarkMode::Set {
                            ctmark: m,
                            ctmask: k | m,
                        });
                    }
                    "--save-mark" => {
                        mode = Some(ConnmarkMode::Save {
                            ctmask: 0,
                            nfmask: 0,
                        })
                    }
                    "--restore-mark" => {
                        mode = Some(ConnmarkMode::Restore {
                            ctmask: 0,
                            nfmask: 0,
                        })
                    }
                    "--nfmask" => nfmask = num(v, *i + 1, "mask")?,
                    "--ctmask" => ctmask = num(v, *i + 1, "mask")?,
                    "--mask" => {
                        (nfmask, ctmask) = (num(v, *i + 1, "mask")?, num(v, *i + 1, "mask")?)
                    }
                    _ => return Err(unknown(*i, o)),
                }
            }
            let mode = match mode
                .ok_or_else(|| NfLineError::at(ni, "CONNMARK target: a mode is required"))?
            {
                ConnmarkMode::Save { .. } => ConnmarkMode::Save { ctmask, nfmask },
                ConnmarkMode::Restore { .. } => ConnmarkMode::Restore { ctmask, nfmask },
                m => m,
            };
            XtTarget::Connmark(mode)
        }
        "CT" => match opts.as_slice() {
            [(_, o, _)] if o == "--notrack" => XtTarget::Notrack,
            [(i, o, _), ..] => return Err(unknown(*i, o)),
            [] => return Err(NfLineError::at(ni, "not supported: CT without --notrack")),
        },
        n if UNSUPPORTED_TARGETS.contains(&n) => {
            return Err(NfLineError::at(
                ni,
                format!("not supported: the target `{n}'"),
            ))
        }
        n => {
            if let Some((i, o, _)) = opts.first() {
                return Err(NfLineError::at(
                    *i,
                    format!("unknown option \"{o}\" after a jump to chain {n}"),
                ));
            }
            return Ok(TargetSpec::Jump(n.to_string()));
        }
    };
    Ok(TargetSpec::Builtin(t))
}

/// The rule part of a line; error word indexes are the rule words'.
pub fn parse_rule(w: &mut ShellWords, family: NfProto) -> R<RuleSpec> {
    let mut ip = IptIp::default();
    let mut matches: Vec<MatchBuild> = Vec::new();
    let mut target = None;
    let mut inv = false;
    let mut stat_n: Option<(u32, u32)> = None;
    while let Some((i, word)) = w.next_word() {
        let word = word.to_string();
        if word == "!" {
            inv = true;
            continue;
        }
        let flag = |bit: u8| if inv { bit } else { 0 };
        match word.as_str() {
            "-s" | "--source" | "--src" => {
                ip.src = Some(addr_mask(&value(w, i, &word)?, i + 1, family)?);
                ip.invflags |= flag(IPT_INV_SRCIP);
            }
            "-d" | "--destination" | "--dst" => {
                ip.dst = Some(addr_mask(&value(w, i, &word)?, i + 1, family)?);
                ip.invflags |= flag(IPT_INV_DSTIP);
            }
            "-p" | "--protocol" => {
                ip.proto = proto_num(&value(w, i, &word)?, i + 1)?;
                ip.invflags |= flag(IPT_INV_PROTO);
            }
            "-i" | "--in-interface" => {
                ip.iniface = Some(IfMatch::parse(&value(w, i, &word)?));
                ip.invflags |= flag(IPT_INV_VIA_IN);
            }
            "-o" | "--out-interface" => {
                ip.outiface = Some(IfMatch::parse(&value(w, i, &word)?));
                ip.invflags |= flag(IPT_INV_VIA_OUT);
            }
            "-f" | "--fragment" if family == NfProto::Ipv4 => {
                ip.frag = true;
                ip.invflags |= flag(IPT_INV_FRAG);
            }
            "-m" | "--match" => {
                let name = value(w, i, &word)?;
                let m = new_match(&name, i + 1)?;
                matches.push(MatchBuild {
                    name,
                    word: i + 1,
                    m: Some(m),
                });
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                if target.is_some() {
                    return Err(NfLineError::at(i, "multiple -j flags not allowed"));
                }
                let name = value(w, i, &word)?;
                target = Some((
                    i + 1,
                    if word.starts_with("-g") || word == "--goto" {
                        TargetSpec::Goto(name)
                    } else {
                        target_of(&name, i + 1, w, family)?
                    },
                ));
            }
            o if o.starts_with("--") => {
                // The latest match takes it; -p tcp/udp load theirs implicitly.
                if !option_of_last(&matches, o) {
                    let pname = match ip.proto {
                        6 => "tcp",
                        17 => "udp",
                        _ => {
                            return Err(NfLineError::at(
                                i,
                                format!("not supported: unknown option \"{o}\""),
                            ))
                        }
                    };
                    if !matches.iter().any(|m| m.name == pname) {
                        matches.push(MatchBuild {
                            name: pname.into(),
                            word: i,
                            m: Some(new_match(pname, i)?),
                        });
                    }
                }
                let last = matches.last_mut().and_then(|m| m.m.as_mut());
                let Some(m) = last else {
                    return Err(NfLineError::at(i, format!("unknown option \"{o}\"")));
                };
                match_opt(m, o, i, inv, w, &mut stat_n)?;
            }
            _ => return Err(NfLineError::at(i, format!("Bad argument `{word}'"))),
        }
        inv = false;
    }
    let mut out = Vec::new();
    for mb in matches {
        let Some(mut m) = mb.m else { continue };
        if let (XtMatch::Statistic(s), Some((n, p))) = (&mut m, stat_n) {
            *s = XtStatistic::nth(n, p, s.invert);
        }
        if matches!(m, XtMatch::Tcp(_)) && ip.proto != 6
            || matches!(m, XtMatch::Udp(_)) && ip.proto != 17
        {
            return Err(NfLineError::at(
                mb.word,
                format!("the {} match needs `-p {}'", mb.name, mb.name),
            ));
        }
        out.push(m);
    }
    // ipt_REJECT.c reject_tg_check / ip6t_REJECT.c reject_tg6_check: a TCP
    // reset needs `-p tcp`, not inverted (the kernel's -EINVAL).
    if let Some((ti, TargetSpec::Builtin(XtTarget::Reject(RejectWith::TcpReset)))) = &target {
        if ip.proto != 6 || ip.invflags & IPT_INV_PROTO != 0 {
            return Err(NfLineError::at(
                *ti,
                "REJECT --reject-with tcp-reset needs `-p tcp' (the kernel's reject_tg_check: Invalid argument)",
            ));
        }
    }
    Ok(RuleSpec {
        ip,
        matches: out,
        target: target
            .map(|(_, t)| t)
            .unwrap_or(TargetSpec::Builtin(XtTarget::None)),
    })
}

fn target_of(name: &str, i: usize, w: &mut ShellWords, family: NfProto) -> R<TargetSpec> {
    target(name, i, w, family)
}

/// Whether option `o` belongs to the latest match (else -p's match takes it).
fn option_of_last(matches: &[MatchBuild], o: &str) -> bool {
    let Some(m) = matches.last().and_then(|m| m.m.as_ref()) else {
        return false;
    };
    let opts: &[&str] = match m {
        XtMatch::Tcp(_) => &[
            "--sport",
            "--source-port",
            "--dport",
            "--destination-port",
            "--tcp-flags",
            "--syn",
        ],
        XtMatch::Udp(_) => &["--sport", "--source-port", "--dport", "--destination-port"],
        XtMatch::Comment(_) => &["--comment"],
        XtMatch::Mark(_) | XtMatch::Connmark { .. } => &["--mark"],
        XtMatch::Multiport(_) => &[
            "--sports",
            "--source-ports",
            "--dports",
            "--destination-ports",
            "--ports",
        ],
        XtMatch::Statistic(_) => &["--mode", "--probability", "--every", "--packet"],
        XtMatch::Addrtype(_) => &[
            "--src-type",
            "--dst-type",
            "--limit-iface-in",
            "--limit-iface-out",
        ],
        XtMatch::Conntrack { .. } => &[
            "--ctstate",
            "--ctstatus",
            "--ctorigsrc",
            "--ctorigdst",
            "--ctproto",
        ],
        XtMatch::State { .. } => &["--state"],
    };
    opts.contains(&o)
}
