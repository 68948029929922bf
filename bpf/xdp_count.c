/* xdp_count: parse-and-count. Walks Ethernet, up to two 802.1Q/802.1ad VLAN tags,
 * then IPv4 or IPv6, and counts packets and bytes per EtherType (HASH `eth_stats`,
 * keyed by the inner EtherType in host order) and per IP protocol (PERCPU_ARRAY
 * `ip_stats`, indexed by the IPv4 protocol / IPv6 next header). Always XDP_PASS. */
#include "common.h"

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct counter);
} eth_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct counter);
} ip_stats SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	void *cur = eth + 1;
	__u32 proto, ipproto;

	if (cur > data_end)
		return XDP_PASS;
	proto = bpf_ntohs(eth->h_proto);

#pragma unroll
	for (int i = 0; i < 2; i++) {
		struct vlan_hdr *vh = cur;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((void *)(vh + 1) > data_end)
			return XDP_PASS;
		proto = bpf_ntohs(vh->h_vlan_encapsulated_proto);
		cur = vh + 1;
	}

	struct counter *c = bpf_map_lookup_elem(&eth_stats, &proto);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, len);
	} else {
		struct counter init = { .packets = 1, .bytes = len };
		bpf_map_update_elem(&eth_stats, &proto, &init, BPF_NOEXIST);
	}

	if (proto == ETH_P_IP) {
		struct iphdr *iph = cur;

		if ((void *)(iph + 1) > data_end)
			return XDP_PASS;
		ipproto = iph->protocol;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = cur;

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		ipproto = ip6->nexthdr;
	} else {
		return XDP_PASS;
	}

	c = bpf_map_lookup_elem(&ip_stats, &ipproto);
	if (c) {
		/* per-CPU: no atomics needed */
		c->packets++;
		c->bytes += len;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
