/* tail_call: a dispatcher. xdp_dispatch parses Ethernet/IPv4 and tail-calls slot
 * `protocol` of PROG_ARRAY `jmp_table`, whose TCP and UDP slots are set in BTF
 * (`.values`); an empty slot (e.g. ICMP until `handle_icmp` is put in slot 1) falls
 * through to the fallback: counted in `hits[0]`, XDP_PASS.
 *  - handle_tcp: counts hits[6], XDP_PASS;
 *  - handle_udp: counts hits[17]; XDP_DROP for the discard port 9, else XDP_PASS;
 *  - handle_icmp: counts hits[1], XDP_TX. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline void hit(__u32 k)
{
	__u64 *c = bpf_map_lookup_elem(&hits, &k);

	if (c)
		__sync_fetch_and_add(c, 1);
}

SEC("xdp")
int handle_tcp(struct xdp_md *ctx)
{
	hit(IPPROTO_TCP);
	return XDP_PASS;
}

SEC("xdp")
int handle_udp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct udphdr *uh = (void *)(iph + 1);

	hit(IPPROTO_UDP);
	if ((void *)(uh + 1) > data_end || iph->ihl != 5)
		return XDP_PASS;
	return uh->dest == bpf_htons(9) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int handle_icmp(struct xdp_md *ctx)
{
	hit(IPPROTO_ICMP);
	return XDP_TX;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} jmp_table SEC(".maps") = {
	.values = {
		[IPPROTO_TCP] = (void *)&handle_tcp,
		[IPPROTO_UDP] = (void *)&handle_udp,
	},
};

SEC("xdp")
int xdp_dispatch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	bpf_tail_call(ctx, &jmp_table, iph->protocol);
	hit(0);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
