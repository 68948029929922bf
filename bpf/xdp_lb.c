/* xdp_lb: L4 load balancer. IPv4 TCP/UDP packets whose (daddr, dport, proto) is a
 * service in HASH `services` get the backend of ARRAY `backends` at the service's
 * index: destination IP rewritten (IPv4 and TCP/UDP checksums fixed incrementally,
 * RFC 1624), destination MAC set to the backend's, source MAC to the old destination
 * MAC, and sent back out with XDP_TX; per-backend packet counts in `backend_tx`.
 * Anything else XDP_PASS. All addresses and ports in network byte order. */
#include "common.h"

struct svc_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct backend {
	__u32 ip;
	__u8 mac[6];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct svc_key);
	__type(value, __u32);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} backend_tx SEC(".maps");

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct svc_key key = {};
	__u16 *l4sum;
	__u32 *idx, old;
	struct backend *be;
	__u64 *cnt;

	if ((void *)(iph + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5)
		return XDP_PASS;
	if (iph->frag_off & bpf_htons(0x3fff)) /* fragments carry no (or no first) L4 header */
		return XDP_PASS;

	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(iph + 1);

		if ((void *)(th + 1) > data_end)
			return XDP_PASS;
		key.port = th->dest;
		l4sum = &th->check;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(iph + 1);

		if ((void *)(uh + 1) > data_end)
			return XDP_PASS;
		key.port = uh->dest;
		l4sum = &uh->check;
	} else {
		return XDP_PASS;
	}
	key.vip = iph->daddr;
	key.proto = iph->protocol;

	idx = bpf_map_lookup_elem(&services, &key);
	if (!idx)
		return XDP_PASS;
	be = bpf_map_lookup_elem(&backends, idx);
	if (!be || be->ip == 0)
		return XDP_PASS;

	old = iph->daddr;
	iph->daddr = be->ip;
	csum_replace4(&iph->check, old, be->ip);
	/* The L4 checksum covers the pseudo header's daddr; UDP checksum 0 means none. */
	if (iph->protocol == IPPROTO_TCP || *l4sum != 0) {
		csum_replace4(l4sum, old, be->ip);
		if (iph->protocol == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
	}

	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);

	cnt = bpf_map_lookup_elem(&backend_tx, idx);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
