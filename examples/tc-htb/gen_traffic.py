#!/usr/bin/env python3
"""Writes traffic.pcap for the tc-htb example: what arrives on the router's eth0.

Deterministic: three UDP flows from 10.0.0.2 to 10.1.0.2 (to be forwarded out of
eth1, whose htb tree shapes them), 1000-byte frames, each flow 2 Mbit/s (one frame
every 4 ms, the flows 1 ms apart) for one second:
  dport 5001 -> class 1:10, dport 5002 -> 1:20, anything else (5003) -> the
  default class 1:30 (the classes picked by cls.o with skb->tc_classid).
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


def udp_frame(ident: int, dport: int) -> bytes:
    payload = bytes((ident + i) & 0xFF for i in range(FRAME - 14 - 20 - 8))
    src, dst = bytes([10, 0, 0, 2]), bytes([10, 1, 0, 2])
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, dport, udp_len, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ETH0 + CLIENT + b"\x08\x00" + ip + udp


def main(path: str) -> None:
    recs = []
    for n in range(250):
        for k, dport in enumerate((5001, 5002, 5003)):
            t_us = n * 4000 + k * 1000
            recs.append((t_us, udp_frame(n * 3 + k, dport)))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_us, fr in recs:
            f.write(struct.pack("<IIII", T0 + t_us // 1_000_000, t_us % 1_000_000, len(fr), len(fr)))
            f.write(fr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "traffic.pcap")
