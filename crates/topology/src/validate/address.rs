//! `[[netns.NAME.address]]`: `ip addr add CIDR dev DEV`.

use super::{cidr, Names};
use crate::error::{At, Ctx, TopologyError};
use crate::model::Address;
use crate::raw::RawAddress;

/// One address; the same address twice on a device is EEXIST.
pub(super) fn address(
    cx: &Ctx,
    names: &Names,
    ns_name: &str,
    at: &At,
    a: &RawAddress,
    earlier: &[Address],
) -> Result<Address, TopologyError> {
    let dev = names.check_dev(cx, ns_name, &a.dev, &at.f("dev"))?;
    let c = cidr(cx, &a.cidr, &at.f("cidr"))?;
    if earlier
        .iter()
        .any(|x| x.dev == dev && x.cidr.addr == c.addr)
    {
        return Err(cx.err(
            &a.cidr,
            &at.f("cidr"),
            format!("address {} is already on {dev} (EEXIST)", c.addr),
        ));
    }
    Ok(Address { dev, cidr: c })
}
