/* k8s_pod: the programs of each pod's netkit pair (examples/k8s-node), attached
 * through the primary in the host namespace.
 * - k8s_to_pod (netkit/primary: runs when the host side transmits toward the pod):
 *   the pod's allow list. An IPv4 packet passes only if (daddr, dport, proto) is in
 *   HASH `pod_allow` (ICMP: port 0); anything else NETKIT_DROP.
 * - k8s_from_pod (netkit/peer: runs when the pod transmits; the peer's default
 *   policy is drop, so only what this program passes leaves the pod): source
 *   address must be the pod's own (its `endpoints` entry names this pair's primary,
 *   which is skb->ifindex here) or NETKIT_DROP; a packet for another pod on this node
 *   is delivered to it directly (TTL, MACs, bpf_redirect to that pod's primary:
 *   NETKIT_REDIRECT), anything else NETKIT_PASS to the host stack.
 * Built with K8S_REV_NAT (bpf/k8s_pod_revnat.c, for examples/k8s-node/live.toml),
 *   k8s_from_pod first does the reverse NAT of a service's reply: a TCP/UDP packet whose source (saddr,
 *   sport, proto) is in HASH `rev_nat` (a backend of a service k8s_xdp DNATs to)
 *   leaves with the service's (VIP, port) as its source, checksums fixed with
 *   bpf_l3_csum_replace / bpf_l4_csum_replace as Cilium's lb4_rev_nat does. Keyed
 *   by the backend alone (no conntrack): every packet from that port toward the
 *   outside is rewritten, so an outside client cannot reach the backend port
 *   directly while the entry exists (docs/differences.md). Pod-to-pod packets are
 *   not rewritten (k8s_xdp only DNATs what comes in on the NIC).
 * `endpoints` is pinned by name and shared with k8s_tc.o. */
#include "common.h"

/* include/uapi/linux/if_link.h: enum netkit_action */
#define NETKIT_NEXT -1
#define NETKIT_PASS 0
#define NETKIT_DROP 2
#define NETKIT_REDIRECT 7

struct endpoint {
	__u32 ifindex;
	__u8 mac[6];
	__u8 node_mac[6];
};

struct allow_key {
	__u32 ip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

#ifdef K8S_REV_NAT
/* rev_nat's value: the service address a backend's replies carry */
struct rev_nat_val {
	__u32 vip;
	__u16 port;
	__u16 pad;
};

/* Offsets for the helpers, IPv4 without options behind Ethernet */
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define L4_OFF (ETH_HLEN + sizeof(struct iphdr))
#define TCP_CSUM_OFF (L4_OFF + offsetof(struct tcphdr, check))
#define UDP_CSUM_OFF (L4_OFF + offsetof(struct udphdr, check))
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct allow_key);
	__type(value, __u32);
} pod_allow SEC(".maps");

#ifdef K8S_REV_NAT
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct allow_key);
	__type(value, struct rev_nat_val);
} rev_nat SEC(".maps");
#endif

static __always_inline int l4_port(struct iphdr *iph, void *data_end, __u16 *port)
{
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(iph + 1);

		if ((void *)(th + 1) > data_end)
			return -1;
		*port = th->dest;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(iph + 1);

		if ((void *)(uh + 1) > data_end)
			return -1;
		*port = uh->dest;
	} else {
		*port = 0;
	}
	return 0;
}

#ifdef K8S_REV_NAT
/* The source port of a TCP/UDP packet without IP options; -1 otherwise. */
static __always_inline int l4_sport(struct iphdr *iph, void *data_end, __u16 *port)
{
	struct udphdr *uh = (void *)(iph + 1); /* source port first in both */

	if (iph->ihl != 5 || (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP))
		return -1;
	if ((void *)(uh + 1) > data_end)
		return -1;
	*port = uh->source;
	return 0;
}

/* A backend's reply leaves as the service's: the source rewritten to rev_nat's
 * (VIP, port). Cilium: bpf/lib/lb.h lb4_rev_nat. The packet pointers are
 * invalid after this (the helpers may move the data). */
static __always_inline int rev_nat_source(struct __sk_buff *skb, struct iphdr *iph,
					  void *data_end)
{
	struct allow_key key = {};
	struct rev_nat_val *nat;
	__u32 old_ip = iph->saddr;
	__u64 flags = 0, csum_off = TCP_CSUM_OFF;
	__u32 new_ip;
	__u16 new_port;

	if (l4_sport(iph, data_end, &key.port))
		return NETKIT_PASS;
	key.ip = old_ip;
	key.proto = iph->protocol;
	nat = bpf_map_lookup_elem(&rev_nat, &key);
	if (!nat)
		return NETKIT_PASS;
	new_ip = nat->vip;
	new_port = nat->port;
	if (key.proto == IPPROTO_UDP) {
		csum_off = UDP_CSUM_OFF;
		flags = BPF_F_MARK_MANGLED_0; /* a UDP checksum 0 means none */
	}
	if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip, flags | BPF_F_PSEUDO_HDR | 4) ||
	    bpf_l4_csum_replace(skb, csum_off, key.port, new_port, flags | 2) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, 4) ||
	    bpf_skb_store_bytes(skb, IP_SRC_OFF, &new_ip, 4, 0) ||
	    bpf_skb_store_bytes(skb, L4_OFF, &new_port, 2, 0))
		return NETKIT_DROP;
	return NETKIT_PASS;
}
#endif

SEC("netkit/primary")
int k8s_to_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct allow_key key = {};

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5)
		return NETKIT_DROP;
	if (l4_port(iph, data_end, &key.port))
		return NETKIT_DROP;
	key.ip = iph->daddr;
	key.proto = iph->protocol;
	return bpf_map_lookup_elem(&pod_allow, &key) ? NETKIT_PASS : NETKIT_DROP;
}

SEC("netkit/peer")
int k8s_from_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct endpoint *src, *dst;
	__u16 old, new;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NETKIT_DROP;
	src = bpf_map_lookup_elem(&endpoints, &iph->saddr);
	if (!src || src->ifindex != skb->ifindex)
		return NETKIT_DROP;
	dst = bpf_map_lookup_elem(&endpoints, &iph->daddr);
#ifdef K8S_REV_NAT
	if (!dst)
		return rev_nat_source(skb, iph, data_end);
#else
	if (!dst)
		return NETKIT_PASS;
#endif
	if (iph->ttl <= 1)
		return NETKIT_PASS;
	old = *(__u16 *)&iph->ttl;
	iph->ttl--;
	new = *(__u16 *)&iph->ttl;
	csum_replace2(&iph->check, old, new);
	__builtin_memcpy(eth->h_dest, dst->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, dst->node_mac, ETH_ALEN);
	return bpf_redirect(dst->ifindex, 0);
}

char _license[] SEC("license") = "GPL";
