#!/bin/sh
# The namespaces of examples/k8s-node/live.toml; `live-setup.sh down` removes
# them. PREFIX=NAME makes NAME-client, NAME-node, NAME-pod1, NAME-pod2 instead
# of skiff-* (the tests do). Needs root (ip netns), python3, ethtool.
#   skiff-client: c0 192.168.1.100/24, 10.96.0.10 via 192.168.1.10 (skiff's eth0)
#   skiff-node:   skiff-xc, c0's other end: skiff's wire for its eth0
#   skiff-pod1/2: eth0, a persistent TAP skiff attaches to (TUNSETIFF on an
#                 existing tap): 10.0.1.11/32 / 10.0.1.12/32, MAC
#                 02:00:00:00:01:11/12, default route via 169.254.1.1 whose
#                 MAC is skiff's nk-pod1/nk-pod2 (a permanent neighbour: the
#                 pod ARPs for nothing, as behind Cilium's L3 devices), and
#                 `python3 -m http.server 8080` answering "podN".
# TSO is off on the client's c0 (skiff does not segment GSO frames);
# checksum offload stays on: the AF_PACKET backend finishes partial checksums
# before k8s_xdp rewrites them by hand (RFC 1624), and the pods' replies
# (partial from the tap) are rewritten with bpf_l4_csum_replace, which keeps
# a partial checksum partial as the kernel's inet_proto_csum_replace4 does.
set -eu
P=${PREFIX:-skiff}
C=$P-client N=$P-node
if [ "${1:-up}" = down ]; then
	for n in $P-pod1 $P-pod2; do
		[ -f "/run/$n.http.pid" ] && kill "$(cat "/run/$n.http.pid")" 2>/dev/null || true
		rm -f "/run/$n.http.pid"; rm -rf "/run/$n.www"
	done
	for n in $C $N $P-pod1 $P-pod2; do ip netns del "$n" 2>/dev/null || true; done
	exit 0
fi
for n in $C $N $P-pod1 $P-pod2; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n $C link add c0 type veth peer name skiff-xc netns $N
ip -n $C addr add 192.168.1.100/24 dev c0
ip -n $C link set c0 up
ip -n $N link set skiff-xc up
ip -n $C route add 10.96.0.10/32 via 192.168.1.10 dev c0
ip netns exec $C ethtool -K c0 tso off >/dev/null
for i in 1 2; do
	ns=$P-pod$i
	ip -n $ns tuntap add dev eth0 mode tap vnet_hdr
	ip -n $ns link set eth0 address 02:00:00:00:01:1$i up
	ip -n $ns addr add 10.0.1.1$i/32 dev eth0
	ip -n $ns route add 169.254.1.1/32 dev eth0
	ip -n $ns route add default via 169.254.1.1 dev eth0
	ip -n $ns neigh add 169.254.1.1 lladdr 02:00:00:00:01:0$i dev eth0 nud permanent
	mkdir -p "/run/$ns.www"
	echo "pod$i" >"/run/$ns.www/index.html"
	ip netns exec $ns python3 -m http.server 8080 --directory "/run/$ns.www" \
		>/dev/null 2>&1 &
	echo $! >"/run/$ns.http.pid"
done
for i in 1 2; do # each server listening before we return (at most 10 s)
	n=0
	until ip netns exec $P-pod$i ss -Hltn 'sport = :8080' | grep -q LISTEN; do
		n=$((n + 1))
		[ $n -le 100 ] || { echo "live-setup.sh: no server on $P-pod$i:8080 after 10 s" >&2; exit 1; }
		sleep 0.1
	done
done
echo "namespaces $C (192.168.1.100) $P-pod1 (10.0.1.11) $P-pod2 (10.0.1.12), skiff's wire $N/skiff-xc"
