/* xdp_encap: header room games.
 *  - xdp_ipip_encap: IPv4 frames get an outer IPv4 header (10.99.0.1 -> 10.99.0.2,
 *    protocol 4 IPIP, TTL 64, id 0, DF, checksum computed) pushed with
 *    bpf_xdp_adjust_head(-20), Ethernet header moved in front; XDP_TX.
 *  - xdp_ipip_decap: IPIP frames (outer IHL 5) lose the outer header with
 *    bpf_xdp_adjust_head(+20); XDP_PASS. Others untouched, XDP_PASS.
 *  - xdp_meta: bpf_xdp_adjust_meta(-4) and writes a 4-byte tag (0x5c1ff000 | IP
 *    protocol, host order) in front of the frame; XDP_PASS.
 *  - xdp_trim: bpf_xdp_adjust_tail to cut frames to 60 bytes, or grow shorter ones
 *    by 4 bytes; the helper's return value is kept in `tail_ret`; XDP_PASS. */
#include "common.h"

#define OUTER_SRC 0x0a630001 /* 10.99.0.1 */
#define OUTER_DST 0x0a630002 /* 10.99.0.2 */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __s64);
} tail_ret SEC(".maps");

SEC("xdp")
int xdp_ipip_encap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *inner = (void *)(eth + 1);
	struct ethhdr eth_copy;
	__u16 inner_len;

	if ((void *)(inner + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	inner_len = bpf_ntohs(inner->tot_len);
	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return XDP_ABORTED;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end)
		return XDP_ABORTED;

	__builtin_memcpy(eth, &eth_copy, sizeof(*eth));
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = 0;
	outer->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = bpf_htons(0x4000);
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = bpf_htonl(OUTER_SRC);
	outer->daddr = bpf_htonl(OUTER_DST);
	outer->check = ipv4_csum(outer);
	return XDP_TX;
}

SEC("xdp")
int xdp_ipip_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	struct ethhdr eth_copy;

	if ((void *)(outer + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (outer->protocol != IPPROTO_IPIP || outer->ihl != 5)
		return XDP_PASS;
	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth, &eth_copy, sizeof(*eth));
	return XDP_PASS;
}

SEC("xdp")
int xdp_meta(struct xdp_md *ctx)
{
	void *data, *data_end, *meta;
	__u32 tag = 0x5c1ff000;
	struct iphdr *iph;

	if (bpf_xdp_adjust_meta(ctx, -4))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	meta = (void *)(long)ctx->data_meta;
	if (meta + 4 > data)
		return XDP_ABORTED;
	iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) <= data_end && ((struct ethhdr *)data)->h_proto == bpf_htons(ETH_P_IP))
		tag |= iph->protocol;
	*(__u32 *)meta = tag;
	return XDP_PASS;
}

SEC("xdp")
int xdp_trim(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int len = data_end - data;
	__u32 k = len > 60 ? 0 : 1;
	__s64 ret, *slot;

	ret = bpf_xdp_adjust_tail(ctx, len > 60 ? 60 - len : 4);
	slot = bpf_map_lookup_elem(&tail_ret, &k);
	if (slot)
		*slot = ret;
	if (ret == 0 && k == 1) {
		/* mark the grown bytes */
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		/* len <= 60 here: a bounded offset the verifier can follow */
		__u8 *tail = data + (len & 0x3f);

		if ((void *)(tail + 4) <= data_end)
			*(__u32 *)tail = bpf_htonl(0xdeadbeef);
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
