//! `[[netns.NAME.device]]`: NICs, veth and netkit pairs.

use skiff_io::live::{Backend, LiveSpec};
use skiff_net::datapath::{DeviceKind, NetkitMode, NetkitPolicy, NetkitScrub};

use super::{choose_or, one_of, DevInfo, Names};
use crate::error::{At, Ctx, SpanOf, TopologyError};
use crate::model::Device;
use crate::parse::{device_mac, valid_dev_name};
use crate::raw::{RawDevice, RawNetns};

/// Every device a namespace declares (peers are claimed in their own namespace).
pub(super) fn devices(
    cx: &Ctx,
    names: &mut Names,
    ns_name: &str,
    ns: &RawNetns,
) -> Result<Vec<Device>, TopologyError> {
    let mut out = Vec::new();
    for (i, d) in ns.device.iter().enumerate() {
        let at = At(format!("netns.{ns_name}.device[{i}]"));
        out.push(device(cx, names, ns_name, &at, d.get_ref())?);
    }
    Ok(out)
}

fn device(
    cx: &Ctx,
    names: &mut Names,
    ns_name: &str,
    at: &At,
    d: &RawDevice,
) -> Result<Device, TopologyError> {
    let dev_name = d.name.get_ref().clone();
    valid_dev_name(&dev_name).map_err(|m| cx.err(&d.name, &at.f("name"), m))?;
    let kind = one_of(
        cx,
        &d.kind,
        &at.f("kind"),
        &["nic", "veth", "netkit", "loopback"],
    )?;
    if kind == "loopback" {
        return Err(cx.err(
            &d.kind,
            &at.f("kind"),
            "every namespace has its loopback `lo` already (ifindex 1); do not declare it",
        ));
    }
    fields_fit(cx, at, d, kind)?;
    let mtu = mtu(cx, at, d)?;
    let mac = mac(cx, at, d, kind)?;
    let info = DevInfo {
        kind,
        primary: kind == "netkit",
        native_xdp: kind != "netkit",
    };
    names.claim(cx, (ns_name, &dev_name), &d.name, &at.f("name"), info)?;
    let ifindex = names.take_ifindex(cx, (ns_name, &dev_name), &d.ifindex, &at.f("ifindex"))?;
    let (kind, peer_ifindex) = match kind {
        "nic" => (nic(cx, at, d)?, None),
        _ => pair(cx, names, ns_name, at, d, kind)?,
    };
    Ok(Device {
        name: dev_name,
        kind,
        mac,
        mtu,
        ifindex,
        peer_ifindex,
        up: d.up.as_ref().map(|u| *u.get_ref()).unwrap_or(true),
        live: live(cx, at, d)?,
        loc: cx.loc(&d.name, &at.f("name")),
    })
}

/// The kind-specific fields a device of another kind may not carry.
fn fields_fit(cx: &Ctx, at: &At, d: &RawDevice, kind: &str) -> Result<(), TopologyError> {
    let allowed: &[&str] = match kind {
        "nic" => &["rx_queues", "backend", "host_ifname", "host_netns"],
        "veth" => &["peer", "peer_netns", "peer_mac", "peer_ifindex"],
        _ => &[
            "peer",
            "peer_netns",
            "peer_ifindex",
            "mode",
            "policy",
            "peer_policy",
            "scrub",
            "peer_scrub",
        ],
    };
    let given: [(&str, Option<&dyn SpanOf>); 13] = [
        ("rx_queues", d.rx_queues.as_ref().map(|v| v as _)),
        ("peer", d.peer.as_ref().map(|v| v as _)),
        ("peer_netns", d.peer_netns.as_ref().map(|v| v as _)),
        ("peer_mac", d.peer_mac.as_ref().map(|v| v as _)),
        ("peer_ifindex", d.peer_ifindex.as_ref().map(|v| v as _)),
        ("mode", d.mode.as_ref().map(|v| v as _)),
        ("policy", d.policy.as_ref().map(|v| v as _)),
        ("peer_policy", d.peer_policy.as_ref().map(|v| v as _)),
        ("scrub", d.scrub.as_ref().map(|v| v as _)),
        ("peer_scrub", d.peer_scrub.as_ref().map(|v| v as _)),
        ("backend", d.backend.as_ref().map(|v| v as _)),
        ("host_ifname", d.host_ifname.as_ref().map(|v| v as _)),
        ("host_netns", d.host_netns.as_ref().map(|v| v as _)),
    ];
    match given
        .iter()
        .find(|(name, v)| v.is_some() && !allowed.contains(name))
    {
        Some((name, Some(v))) => Err(cx.err(
            *v,
            &at.f(name),
            format!("field `{name}` does not apply to a {kind} device"),
        )),
        _ => Ok(()),
    }
}

/// dev_validate_mtu: min 68 (ETH_MIN_MTU) for Ethernet-like devices.
fn mtu(cx: &Ctx, at: &At, d: &RawDevice) -> Result<u32, TopologyError> {
    match &d.mtu {
        Some(m) if *m.get_ref() < 68 || *m.get_ref() > 65535 => Err(cx.err(
            m,
            &at.f("mtu"),
            format!("MTU {} is outside 68..=65535 (EINVAL)", m.get_ref()),
        )),
        Some(m) => Ok(*m.get_ref()),
        None => Ok(1500),
    }
}

fn mac(cx: &Ctx, at: &At, d: &RawDevice, kind: &str) -> Result<Option<[u8; 6]>, TopologyError> {
    let netkit_l3 = kind == "netkit" && d.mode.as_ref().map(|m| m.get_ref().as_str()) != Some("l2");
    match &d.mac {
        Some(m) if netkit_l3 => Err(cx.err(
            m,
            &at.f("mac"),
            "a netkit device in l3 mode has no MAC (the kernel refuses to set one: EOPNOTSUPP); use mode = \"l2\"",
        )),
        Some(m) => device_mac(m.get_ref())
            .map(Some)
            .map_err(|e| cx.err(m, &at.f("mac"), e)),
        None => Ok(None),
    }
}

fn nic(cx: &Ctx, at: &At, d: &RawDevice) -> Result<DeviceKind<String>, TopologyError> {
    let rx_queues = match &d.rx_queues {
        Some(q) if *q.get_ref() == 0 || *q.get_ref() > 256 => {
            return Err(cx.err(
                q,
                &at.f("rx_queues"),
                format!("{} rx queues: want 1..=256", q.get_ref()),
            ))
        }
        Some(q) => *q.get_ref(),
        None => 1,
    };
    Ok(DeviceKind::Nic { rx_queues })
}

/// A NIC's live wire: `backend` with `host_ifname` (the interface, or the
/// tap skiff creates) and optionally `host_netns` (where it lives; default:
/// the namespace skiff runs in). The name is checked as the kernel checks
/// one (dev_valid_name).
fn live(cx: &Ctx, at: &At, d: &RawDevice) -> Result<Option<LiveSpec>, TopologyError> {
    let Some(b) = &d.backend else {
        if let Some(v) = d.host_ifname.as_ref().or(d.host_netns.as_ref()) {
            return Err(cx.err(
                v,
                &at.f("backend"),
                "host_ifname/host_netns need `backend` (tap, af_packet or af_xdp)",
            ));
        }
        return Ok(None);
    };
    let name = one_of(cx, b, &at.f("backend"), &["tap", "af_packet", "af_xdp"])?;
    let backend = Backend::from_name(name)
        .ok_or_else(|| cx.err(b, &at.f("backend"), format!("unknown backend {name:?}")))?;
    let ifname = d.host_ifname.as_ref().ok_or_else(|| {
        cx.err(
            b,
            &at.f("host_ifname"),
            "a device with a backend needs `host_ifname` (the real interface's name)",
        )
    })?;
    valid_dev_name(ifname.get_ref()).map_err(|m| cx.err(ifname, &at.f("host_ifname"), m))?;
    let host_netns = match &d.host_netns {
        Some(n) if n.get_ref().is_empty() => {
            return Err(cx.err(n, &at.f("host_netns"), "an empty namespace name"))
        }
        Some(n) => Some(n.get_ref().clone()),
        None => None,
    };
    Ok(Some(LiveSpec {
        backend,
        host_ifname: ifname.get_ref().clone(),
        host_netns,
    }))
}

/// A veth or netkit pair (and its fixed peer ifindex): the peer is claimed in
/// its namespace.
fn pair(
    cx: &Ctx,
    names: &mut Names,
    ns_name: &str,
    at: &At,
    d: &RawDevice,
    kind: &'static str,
) -> Result<(DeviceKind<String>, Option<u32>), TopologyError> {
    let peer = d.peer.as_ref().ok_or_else(|| {
        cx.err(
            &d.kind,
            &at.f("peer"),
            format!("a {kind} pair needs `peer` (the other end's name)"),
        )
    })?;
    valid_dev_name(peer.get_ref()).map_err(|m| cx.err(peer, &at.f("peer"), m))?;
    let peer_ns = match &d.peer_netns {
        Some(p) if !names.ns.contains(p.get_ref()) => {
            return Err(cx.err(
                p,
                &at.f("peer_netns"),
                format!("unknown netns {:?}", p.get_ref()),
            ))
        }
        Some(p) => p.get_ref().clone(),
        None => ns_name.to_string(),
    };
    let info = DevInfo {
        kind,
        primary: false,
        native_xdp: kind == "veth",
    };
    let peer_name = peer.get_ref().as_str();
    names.claim(cx, (&peer_ns, peer_name), peer, &at.f("peer"), info)?;
    let peer_ifindex = names.take_ifindex(
        cx,
        (&peer_ns, peer_name),
        &d.peer_ifindex,
        &at.f("peer_ifindex"),
    )?;
    if kind == "veth" {
        let peer_mac = match &d.peer_mac {
            Some(m) => Some(device_mac(m.get_ref()).map_err(|e| cx.err(m, &at.f("peer_mac"), e))?),
            None => None,
        };
        let kind = DeviceKind::Veth {
            peer_name: peer_name.to_string(),
            peer_ns: Some(peer_ns),
            peer_mac,
        };
        return Ok((kind, peer_ifindex));
    }
    Ok((netkit(cx, at, d, peer_name, peer_ns)?, peer_ifindex))
}

/// netkit's mode, default policies and scrubbing (iproute2's defaults: l3,
/// pass, default).
fn netkit(
    cx: &Ctx,
    at: &At,
    d: &RawDevice,
    peer: &str,
    peer_ns: String,
) -> Result<DeviceKind<String>, TopologyError> {
    let modes = [NetkitMode::L3, NetkitMode::L2];
    let policies = [NetkitPolicy::Pass, NetkitPolicy::Drop];
    let scrubs = [NetkitScrub::Default, NetkitScrub::None];
    let (pass, scrub_default) = (NetkitPolicy::Pass, NetkitScrub::Default);
    Ok(DeviceKind::Netkit {
        peer_name: peer.to_string(),
        peer_ns: Some(peer_ns),
        mode: choose_or(cx, &d.mode, &at.f("mode"), &modes, NetkitMode::L3)?,
        policy: choose_or(cx, &d.policy, &at.f("policy"), &policies, pass)?,
        peer_policy: choose_or(cx, &d.peer_policy, &at.f("peer_policy"), &policies, pass)?,
        scrub: choose_or(cx, &d.scrub, &at.f("scrub"), &scrubs, scrub_default)?,
        peer_scrub: choose_or(
            cx,
            &d.peer_scrub,
            &at.f("peer_scrub"),
            &scrubs,
            scrub_default,
        )?,
        peer_mac: None,
    })
}
