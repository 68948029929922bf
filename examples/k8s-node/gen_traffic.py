#!/usr/bin/env python3
"""Writes traffic.pcap for the k8s-node example: what arrives on the node's NIC eth0.

Deterministic (fixed timestamps, ids and ports); rerun it after changing the
traffic and commit the result. Checksums are valid everywhere. Packets, in order:

 0  TCP SYN 203.0.113.5:40000 -> 10.96.0.10:80   service VIP: XDP DNAT to backend 1
                                                  (10.0.1.12:8080, pod2), tc -> nk-pod2
 1  TCP SYN 203.0.113.6:40000 -> 10.96.0.10:80   service VIP: backend 0 (10.0.1.11:8080, pod1)
 2  UDP 203.0.113.5:5000 -> 10.96.0.10:53        UDP service: backend 2 (10.0.1.12:5353, pod2)
 3  TCP SYN 198.51.100.7:40002 -> 10.96.0.10:80  blocked prefix 198.51.100.0/24: XDP_DROP
 4  TCP SYN 203.0.113.5:40003 -> 10.0.1.11:22    straight to pod1, port not in its allow
                                                  list: dropped by k8s_to_pod (NETKIT_DROP)
 5  ARP who-has 192.168.1.10 tell 192.168.1.1    the host stack answers
 6  ICMP echo 203.0.113.5 -> 192.168.1.10        the host stack answers (via the gateway)
 7  ICMP echo 203.0.113.5 -> 10.0.1.11           to pod1 (ICMP allowed); pod1's reply leaves
                                                  through k8s_from_pod, the host stack, eth0
 8  ICMP echo 10.0.1.12 -> 10.0.1.11             pod-to-pod reply path: pod1 answers pod2's
                                                  address; k8s_from_pod sends the reply
                                                  straight to nk-pod2 (NETKIT_REDIRECT)

The pods have no sockets (the topology's `listen = []`): 0 and 1 are answered
with a TCP RST, 2 with ICMP port unreachable, out of eth0, as the kernel's pods
answer them (`skiff diff`).
"""
import struct
import sys

GW = bytes.fromhex("0200000000fe")
NODE = bytes.fromhex("020000000001")
BCAST = b"\xff" * 6
T0 = 1_700_000_000


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def ipv4(src, dst, proto, payload, ident, ttl=64):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl, proto, 0, ip4(src), ip4(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def l4(src, dst, proto, seg):
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return csum(pseudo + seg)


def tcp_syn(src, sport, dst, dport, ident, seq=1000):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = l4(src, dst, 6, seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return eth(NODE, GW, 0x0800, ipv4(src, dst, 6, seg, ident))


def udp(src, sport, dst, dport, payload, ident):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = l4(src, dst, 17, seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return eth(NODE, GW, 0x0800, ipv4(src, dst, 17, seg, ident))


def ping(src, dst, ident, ip_id, seq=1):
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + bytes(range(32))
    msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    return eth(NODE, GW, 0x0800, ipv4(src, dst, 1, msg, ip_id))


def arp_request(sha, spa, tpa):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sha, ip4(spa), b"\0" * 6, ip4(tpa))
    return eth(BCAST, sha, 0x0806, body)


def eth(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


FRAMES = [
    tcp_syn("203.0.113.5", 40000, "10.96.0.10", 80, 1),
    tcp_syn("203.0.113.6", 40000, "10.96.0.10", 80, 2),
    udp("203.0.113.5", 5000, "10.96.0.10", 53, b"skiff-query!", 3),
    tcp_syn("198.51.100.7", 40002, "10.96.0.10", 80, 4),
    tcp_syn("203.0.113.5", 40003, "10.0.1.11", 22, 5),
    arp_request(GW, "192.168.1.1", "192.168.1.10"),
    ping("203.0.113.5", "192.168.1.10", 0x1234, 6),
    ping("203.0.113.5", "10.0.1.11", 0x1235, 7),
    ping("10.0.1.12", "10.0.1.11", 0x1236, 8),
]


def write_pcap(path, frames):
    with open(path, "wb") as f:
        # nanosecond pcap, little endian, Ethernet, as skiff writes them
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", T0, i * 1_000_000, len(fr), len(fr)))
            f.write(fr)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "traffic.pcap"
    write_pcap(out, FRAMES)
    print(f"{out}: {len(FRAMES)} packets")
