//! Ethernet II frames (include/uapi/linux/if_ether.h `struct ethhdr`) and
//! 802.1Q / 802.1ad VLAN tags (include/linux/if_vlan.h `struct vlan_hdr`).

use crate::bytes::{mac_at, u16_at};
use crate::{need, Error, ETH_P_8021AD, ETH_P_8021Q};

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// ETH_HLEN: the Ethernet II header length.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view without checks (getters panic on a buffer under 14 bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// A view of a buffer holding at least the 14-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        need("ethernet", buffer.as_ref().len(), HEADER_LEN)?;
        Ok(EthernetFrame { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// h_dest.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::DST)
    }

    /// h_source.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        mac_at(self.buffer.as_ref(), field::SRC)
    }

    /// h_proto: the EtherType (a VLAN TPID when a tag follows).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// The network protocol and the offset of its header, looking through up to
    /// two VLAN tags (802.1Q or 802.1ad), as the kernel's __vlan_get_protocol
    /// does for a tagged frame; `Err` when a tag is cut short.
    #[inline]
    pub fn network_protocol(&self) -> Result<(u16, usize), Error> {
        let b = self.buffer.as_ref();
        let mut proto = self.ethertype();
        let mut off = HEADER_LEN;
        for _ in 0..2 {
            if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
                let tag = VlanTag::new_checked(&b[off.min(b.len())..])?;
                proto = tag.inner_ethertype();
                off += VLAN_HLEN;
            }
        }
        Ok((proto, off))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets h_dest.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST..field::DST + 6].copy_from_slice(&a);
    }

    /// Sets h_source.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC..field::SRC + 6].copy_from_slice(&a);
    }

    /// Sets h_proto.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        crate::bytes::set_u16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }

    /// Everything after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetRepr {
    /// h_source.
    pub src_addr: [u8; 6],
    /// h_dest.
    pub dst_addr: [u8; 6],
    /// h_proto.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// The header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Self {
        EthernetRepr {
            src_addr: f.src_addr(),
            dst_addr: f.dst_addr(),
            ethertype: f.ethertype(),
        }
    }

    /// Writes the header into the first 14 bytes of `f`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, f: &mut EthernetFrame<T>) {
        f.set_dst_addr(self.dst_addr);
        f.set_src_addr(self.src_addr);
        f.set_ethertype(self.ethertype);
    }

    /// A new frame: this header followed by `payload_len` bytes reserved in
    /// capacity (the caller appends the payload).
    pub fn to_frame(&self, payload_len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + payload_len);
        v.resize(HEADER_LEN, 0);
        self.emit(&mut EthernetFrame::new_unchecked(&mut v[..]));
        v
    }
}

mod vlan_field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// VLAN_HLEN: the length of one VLAN tag after the outer EtherType.
pub const VLAN_HLEN: usize = vlan_field::PAYLOAD;

/// A view of a VLAN tag: the 4 bytes after an 802.1Q/802.1ad TPID (the TCI and
/// the encapsulated EtherType), then the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// A view without checks (getters panic on a buffer under 4 bytes).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// A view of a buffer holding at least the 4-byte tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        need("vlan", buffer.as_ref().len(), VLAN_HLEN)?;
        Ok(VlanTag { buffer })
    }

    /// h_vlan_TCI: priority, DEI and VLAN id.
    #[inline]
    pub fn tci(&self) -> u16 {
        u16_at(self.buffer.as_ref(), vlan_field::TCI)
    }

    /// VLAN_VID_MASK bits of the TCI.
    #[inline]
    pub fn vlan_id(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// VLAN_PRIO bits (priority code point).
    #[inline]
    pub fn priority(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// VLAN_CFI_MASK: drop eligible indicator.
    #[inline]
    pub fn drop_eligible(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// h_vlan_encapsulated_proto.
    #[inline]
    pub fn inner_ethertype(&self) -> u16 {
        u16_at(self.buffer.as_ref(), vlan_field::ETHERTYPE)
    }

    /// What follows the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[vlan_field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        crate::bytes::set_u16(self.buffer.as_mut(), vlan_field::TCI, tci);
    }

    /// Sets the encapsulated EtherType.
    #[inline]
    pub fn set_inner_ethertype(&mut self, t: u16) {
        crate::bytes::set_u16(self.buffer.as_mut(), vlan_field::ETHERTYPE, t);
    }

    /// What follows the tag, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[vlan_field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6};

    const FRAME: [u8; 16] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0x00];

    #[test]
    fn parses_fields() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), ETH_P_IP);
        assert_eq!(f.payload(), &[0x45, 0x00]);
        assert_eq!(f.network_protocol(), Ok((ETH_P_IP, 14)));
    }

    #[test]
    fn refuses_short() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]),
            Err(Error::Truncated {
                format: "ethernet",
                have: 13,
                need: 14
            })
        );
    }

    #[test]
    fn round_trip() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        let r = EthernetRepr::parse(&f);
        let mut v = r.to_frame(2);
        v.extend_from_slice(&[0x45, 0x00]);
        assert_eq!(v, FRAME);
    }

    #[test]
    fn vlan_tags() {
        // 802.1ad outer (vid 100), 802.1Q inner (prio 5, DEI, vid 7), then IPv6.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0xb0, 0x07, 0x86, 0xdd]);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.network_protocol(), Ok((ETH_P_IPV6, 22)));
        let inner = VlanTag::new_checked(&f[18..]).unwrap();
        assert_eq!(inner.vlan_id(), 7);
        assert_eq!(inner.priority(), 5);
        assert!(inner.drop_eligible());
        assert_eq!(inner.inner_ethertype(), ETH_P_IPV6);
        // A third tag is not looked through.
        let mut g = vec![0u8; 12];
        g.extend_from_slice(&[0x81, 0, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0x06]);
        let e = EthernetFrame::new_checked(&g[..]).unwrap();
        assert_eq!(e.network_protocol(), Ok((ETH_P_8021Q, 22)));
        // A cut tag is refused.
        let e = EthernetFrame::new_checked(&g[..16]).unwrap();
        assert!(matches!(
            e.network_protocol(),
            Err(Error::Truncated { format: "vlan", .. })
        ));
        let mut t = [0u8; 4];
        let mut v = VlanTag::new_unchecked(&mut t[..]);
        v.set_tci(0x2005);
        v.set_inner_ethertype(ETH_P_ARP);
        assert_eq!(t, [0x20, 0x05, 0x08, 0x06]);
    }
}
