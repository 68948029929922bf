#!/usr/bin/env python3
"""Writes traffic.pcap for the tc-u32-police example: what arrives on eth0.

Deterministic: one UDP flow from 10.0.0.2 to 10.1.0.2 (forwarded out of eth1),
1000-byte frames (986 bytes from the IP header, what police counts at ingress),
one every 4 ms (2 Mbit/s, twice the policed rate) for one second: 250 frames.
"""
import struct
import sys

ETH0 = bytes.fromhex("020000000001")
CLIENT = bytes.fromhex("020000000010")
T0 = 1_700_000_000
FRAME = 1000


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(ident: int) -> bytes:
    payload = bytes((ident + i) & 0xFF for i in range(FRAME - 14 - 20 - 8))
    src, dst = bytes([10, 0, 0, 2]), bytes([10, 1, 0, 2])
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, 5001, udp_len, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ETH0 + CLIENT + b"\x08\x00" + ip + udp


def main(path: str) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n in range(250):
            t_us = n * 4000
            fr = udp_frame(n)
            f.write(struct.pack("<IIII", T0 + t_us // 1_000_000, t_us % 1_000_000, len(fr), len(fr)))
            f.write(fr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "traffic.pcap")
