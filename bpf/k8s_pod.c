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
	if (!dst)
		return NETKIT_PASS;
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
