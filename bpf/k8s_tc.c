/* k8s_tc: the node NIC's tc ingress program (examples/k8s-node, seed 003's
 * "shortcut"). An IPv4 packet for a pod on this node (its destination in HASH
 * `endpoints`) is delivered straight to the pod's device, bypassing the host
 * stack: TTL decremented (IPv4 checksum fixed), MACs rewritten (source the node's,
 * destination the pod's), then bpf_redirect to the egress of the pod's netkit
 * primary, whose own program enforces the pod's allow list. (bpf_redirect_peer
 * would skip that program: Cilium enforces policy before redirect_peer in the
 * host program; here the netkit primary does it.) Everything else TC_ACT_OK on to
 * the host stack (ARP, ping to the node). `endpoints` is pinned by name and shared
 * with k8s_pod.o. */
#include "common.h"

struct endpoint {
	__u32 ifindex;     /* the pod's netkit primary, in the host namespace */
	__u8 mac[6];       /* the pod's MAC (zero for an L3 netkit) */
	__u8 node_mac[6];  /* source MAC for packets delivered to it */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tc_stats SEC(".maps");

SEC("tc")
int k8s_tc_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct endpoint *ep;
	__u32 stat = 0;
	__u16 old, new;
	__u64 *c;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ep = bpf_map_lookup_elem(&endpoints, &iph->daddr);
	if (!ep || iph->ttl <= 1) /* TTL 1: the stack sends time exceeded */
		goto pass;

	old = *(__u16 *)&iph->ttl;
	iph->ttl--;
	new = *(__u16 *)&iph->ttl;
	csum_replace2(&iph->check, old, new);
	__builtin_memcpy(eth->h_dest, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->node_mac, ETH_ALEN);
	stat = 1;
	c = bpf_map_lookup_elem(&tc_stats, &stat);
	if (c)
		__sync_fetch_and_add(c, 1);
	return bpf_redirect(ep->ifindex, 0);
pass:
	c = bpf_map_lookup_elem(&tc_stats, &stat);
	if (c)
		__sync_fetch_and_add(c, 1);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
