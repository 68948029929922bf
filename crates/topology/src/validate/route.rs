//! `[[netns.NAME.route]]`: `ip route add`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use skiff_net::stack::RouteKind;

use super::{cidr, ip, one_of, Names};
use crate::error::{At, Ctx, TopologyError};
use crate::model::{Address, Route};
use crate::parse::{parse_table, Cidr};
use crate::raw::RawRoute;

/// One route, checked against the addresses and the routes before it.
pub(super) fn route(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    at: &At,
    r: &RawRoute,
    (addresses, earlier): (&[Address], &[Route]),
) -> Result<Route, TopologyError> {
    let dst = dst(cx, at, r)?;
    let kind = kind(cx, at, r)?;
    let dev = names.check_opt_dev(cx, ns_name, &r.dev, &at.f("dev"))?;
    let via = via(cx, at, r, dst)?;
    let onlink = r.onlink.as_ref().is_some_and(|o| *o.get_ref());
    if matches!(kind, RouteKind::Unicast | RouteKind::Local) && dev.is_none() && via.is_none() {
        return Err(cx.err(
            &r.dst,
            &at.f("dev"),
            "a unicast route needs `dev`, `via` or both",
        ));
    }
    if let (Some(g), Some(v), false) = (via, &r.via, onlink) {
        if !gateway_reachable(g, dev.as_deref(), addresses, earlier) {
            let on = dev.as_ref().map(|d| format!(" on {d}")).unwrap_or_default();
            return Err(cx.err(v, &at.f("via"), format!("gateway {g} is not reachable: no address or device route covers it{on} (ENETUNREACH: Nexthop has invalid gateway); add one or set onlink = true")));
        }
    }
    let table = match &r.table {
        Some(t) => parse_table(t.get_ref()).map_err(|m| cx.err(t, &at.f("table"), m))?,
        None => 254,
    };
    let src = r
        .src
        .as_ref()
        .map(|s| ip(cx, s, &at.f("src")))
        .transpose()?;
    let route = Route {
        dst,
        via,
        dev,
        table,
        metric: r.metric.as_ref().map(|m| *m.get_ref()).unwrap_or(0),
        kind,
        src,
        onlink,
    };
    let dup = |x: &&Route| x.dst == route.dst && x.table == route.table && x.metric == route.metric;
    if earlier.iter().any(|x| dup(&x)) {
        return Err(cx.err(
            &r.dst,
            &at.f("dst"),
            format!(
                "duplicate route to {} in table {} metric {} (EEXIST)",
                route.dst, route.table, route.metric
            ),
        ));
    }
    Ok(route)
}

/// `default` (of the gateway's family) or a prefix without host bits.
fn dst(cx: &Ctx, at: &At, r: &RawRoute) -> Result<Cidr, TopologyError> {
    let dst = if r.dst.get_ref() == "default" {
        let v6 = r.via.as_ref().is_some_and(|v| v.get_ref().contains(':'));
        Cidr {
            addr: if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            },
            prefix_len: 0,
        }
    } else {
        cidr(cx, &r.dst, &at.f("dst"))?
    };
    if dst.has_host_bits() {
        // net/ipv4/fib_trie.c: fib_table_insert
        return Err(cx.err(
            &r.dst,
            &at.f("dst"),
            format!(
                "bad CIDR {:?}: invalid prefix for given prefix length (host bits set; EINVAL)",
                r.dst.get_ref()
            ),
        ));
    }
    Ok(dst)
}

fn kind(cx: &Ctx, at: &At, r: &RawRoute) -> Result<RouteKind, TopologyError> {
    let Some(k) = &r.kind else {
        return Ok(RouteKind::Unicast);
    };
    let choices = ["unicast", "blackhole", "unreachable", "prohibit", "local"];
    Ok(match one_of(cx, k, &at.f("type"), &choices)? {
        "unicast" => RouteKind::Unicast,
        "blackhole" => RouteKind::Blackhole,
        "unreachable" => RouteKind::Unreachable,
        "prohibit" => RouteKind::Prohibit,
        _ => RouteKind::Local,
    })
}

/// The gateway, of the destination's family.
fn via(cx: &Ctx, at: &At, r: &RawRoute, dst: Cidr) -> Result<Option<IpAddr>, TopologyError> {
    let Some(v) = &r.via else { return Ok(None) };
    let a = ip(cx, v, &at.f("via"))?;
    if a.is_ipv4() != dst.addr.is_ipv4() {
        return Err(cx.err(
            v,
            &at.f("via"),
            format!("gateway {a} is not of the family of {dst}"),
        ));
    }
    Ok(Some(a))
}

/// net/ipv4/fib_semantics.c: fib_check_nh_v4_gw: the gateway must be reachable
/// on a link-scope route (a connected prefix or a device route without
/// gateway), on `dev` when the route names one.
pub(super) fn gateway_reachable(
    g: IpAddr,
    dev: Option<&str>,
    addresses: &[Address],
    routes: &[Route],
) -> bool {
    let on_dev = |d: &str| dev.is_none_or(|want| want == d);
    addresses
        .iter()
        .any(|a| on_dev(&a.dev) && a.cidr.contains(g))
        || routes
            .iter()
            .any(|x| x.via.is_none() && x.dev.as_deref().is_some_and(on_dev) && x.dst.contains(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(dev: &str, c: &str) -> Address {
        Address {
            dev: dev.into(),
            cidr: Cidr::parse(c).unwrap(),
        }
    }

    fn dev_route(dev: Option<&str>, dst: &str, via: Option<&str>) -> Route {
        Route {
            dst: Cidr::parse(dst).unwrap(),
            via: via.map(|v| v.parse().unwrap()),
            dev: dev.map(String::from),
            table: 254,
            metric: 0,
            kind: RouteKind::Unicast,
            src: None,
            onlink: false,
        }
    }

    #[test]
    fn gateway_reachable_by_address_or_device_route() {
        let g: IpAddr = "10.0.0.1".parse().unwrap();
        let addrs = [addr("eth0", "10.0.0.2/24")];
        assert!(gateway_reachable(g, Some("eth0"), &addrs, &[]));
        assert!(gateway_reachable(g, None, &addrs, &[]));
        // the covering address is on another device
        assert!(!gateway_reachable(g, Some("eth1"), &addrs, &[]));
        // a device route covers it; a route with a gateway does not
        let on_eth1 = [dev_route(Some("eth1"), "10.0.0.0/8", None)];
        assert!(gateway_reachable(g, Some("eth1"), &[], &on_eth1));
        assert!(gateway_reachable(g, None, &[], &on_eth1));
        let via = [dev_route(Some("eth1"), "10.0.0.0/8", Some("10.9.9.9"))];
        assert!(!gateway_reachable(g, Some("eth1"), &[], &via));
        // a route without a device does not make a link-scope route
        let no_dev = [dev_route(None, "10.0.0.0/8", None)];
        assert!(!gateway_reachable(g, None, &[], &no_dev));
    }
}
