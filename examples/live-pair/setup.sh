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
if command -v ethtool >/dev/null 2>&1; then
	ip netns exec $A ethtool -K a0 tso off >/dev/null
	ip netns exec $B ethtool -K b0 tso off >/dev/null
else
	echo "setup.sh: ethtool not found: TSO stays on, TCP through skiff will stall" >&2
fi
echo "namespaces $A (10.9.0.1) $B (10.9.0.2), skiff's wires $X/skiff-xa $X/skiff-xb"
