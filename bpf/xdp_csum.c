/* xdp_csum: bpf_csum_diff's return values. For IPv4 frames: [0] csum_diff(NULL, 0,
 * ip header, 20, 0) (the raw 32-bit sum of the header), [1] folded into a checksum
 * (0 for a correct header), [2] the diff of replacing daddr with 10.0.0.1 seeded with
 * ~check, [3] csum_diff over 6 bytes (6.18 accepts sizes not a multiple of 4), [4] the check
 * field recomputed from [2]. Results in ARRAY `sums`. XDP_PASS. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __s64);
} sums SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&sums, &k);

	if (slot)
		*slot = v;
}

SEC("xdp")
int xdp_csum(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	__be32 newaddr = bpf_htonl(0x0a000001);
	__be32 oldaddr;
	__s64 full, diff;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	full = bpf_csum_diff(0, 0, (__be32 *)iph, sizeof(*iph), 0);
	put(0, full);
	put(1, csum_fold((__u32)full));
	oldaddr = iph->daddr;
	diff = bpf_csum_diff(&oldaddr, 4, &newaddr, 4, (__u16)~iph->check);
	put(2, diff);
	put(3, bpf_csum_diff(0, 0, (__be32 *)iph, 6, 0));
	put(4, csum_fold((__u32)diff));
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
