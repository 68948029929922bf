#!/bin/sh
# The live-pair example's namespaces (examples/live-pair/topology.toml):
#   skiff-a: a0 10.9.0.1/24   ==veth==  skiff-xa (in skiff-x, skiff's wire for eth0)
#   skiff-b: b0 10.9.0.2/24   ==veth==  skiff-xb (in skiff-x, skiff's wire for eth1)
# `setup.sh down` removes them. PREFIX=NAME makes NAME-a, NAME-b, NAME-x instead
# (the tests do). Needs root (ip netns).
#
# Checksum offload stays on: skiff finishes partial checksums itself. TSO is
# turned off on a0 and b0 (the stack then segments before the veth, so every
# frame fits the 1500 MTU): skiff does not segment GSO frames (see
# docs/differences.md).
#
# BACKEND=af_xdp (the topology's backend = "af_xdp"): tx checksum offload off
# on a0 and b0 too. skiff's AF_XDP socket receives through an XDP program on
# skiff-xa/skiff-xb, and the kernel's XDP path drops the CHECKSUM_PARTIAL mark
# (veth_xdp_rcv_skb): a frame reaches the socket with its checksum unfinished
# and nothing saying so. The rest native XDP on a veth needs holds for these
# veths as made here (drivers/net/veth.c: veth_xdp_set): the peer attached,
# its MTU (1500) within a page less headroom, one rx queue against the
# peer's one tx queue; the kernel turns the peer's TSO/GSO off itself while
# the program is attached.
set -eu
P=${PREFIX:-skiff}
A=$P-a B=$P-b X=$P-x
if [ "${1:-up}" = down ]; then
	for n in $A $B $X; do ip netns del "$n" 2>/dev/null || true; done
	exit 0
fi
for n in $A $B $X; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n $A link add a0 type veth peer name skiff-xa netns $X
ip -n $B link add b0 type veth peer name skiff-xb netns $X
ip -n $A addr add 10.9.0.1/24 dev a0
ip -n $B addr add 10.9.0.2/24 dev b0
for l in "$A a0" "$B b0" "$X skiff-xa" "$X skiff-xb"; do
	set -- $l
	ip -n "$1" link set "$2" up
done
OFF="tso off"
[ "${BACKEND:-}" = af_xdp ] && OFF="tso off tx off"
if command -v ethtool >/dev/null 2>&1; then
	ip netns exec $A ethtool -K a0 $OFF >/dev/null
	ip netns exec $B ethtool -K b0 $OFF >/dev/null
else
	echo "setup.sh: ethtool not found: $OFF not done, TCP through skiff will stall" >&2
fi
echo "namespaces $A (10.9.0.1) $B (10.9.0.2), skiff's wires $X/skiff-xa $X/skiff-xb"
