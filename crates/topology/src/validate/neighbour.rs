//! `[[netns.NAME.neighbour]]`: `ip neigh add IP lladdr MAC dev DEV`.

use super::{ip, Names};
use crate::error::{At, Ctx, TopologyError};
use crate::model::Neighbour;
use crate::parse::parse_mac;
use crate::raw::RawNeighbour;

pub(super) fn neighbour(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    at: &At,
    n: &RawNeighbour,
) -> Result<Neighbour, TopologyError> {
    let dev = names.check_dev(cx, ns_name, &n.dev, &at.f("dev"))?;
    let ip = ip(cx, &n.ip, &at.f("ip"))?;
    let mac = parse_mac(n.mac.get_ref()).map_err(|e| cx.err(&n.mac, &at.f("mac"), e))?;
    Ok(Neighbour { dev, ip, mac })
}
