/* bench_tailchain: a pipeline of 8 XDP programs through PROG_ARRAY `stages`
 * (slot i holds stage i): each stage checks one thing of the packet (Ethernet
 * type, IP version and length, TTL, protocol, ports, TCP flags, ...) and
 * tail-calls the next slot; stage 7 returns XDP_TX. A failed check returns
 * XDP_DROP; an empty slot (the tail call falls through) XDP_PASS, so a broken
 * chain shows in the return value. One run executes all 8 programs (7 tail
 * calls). */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} stages SEC(".maps");

#define HDRS                                                   \
	void *data = (void *)(long)ctx->data;                  \
	void *data_end = (void *)(long)ctx->data_end;          \
	struct ethhdr *eth = data;                             \
	struct iphdr *iph = (void *)(eth + 1);                 \
	struct tcphdr *th = (void *)(iph + 1);                 \
	if ((void *)(th + 1) > data_end)                       \
		return XDP_DROP;

#define NEXT(i)                                                \
	bpf_tail_call(ctx, &stages, i);                        \
	return XDP_PASS;

SEC("xdp")
int stage0(struct xdp_md *ctx)
{
	HDRS
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_DROP;
	NEXT(1)
}

SEC("xdp")
int stage1(struct xdp_md *ctx)
{
	HDRS
	if (iph->version != 4 || iph->ihl != 5)
		return XDP_DROP;
	NEXT(2)
}

SEC("xdp")
int stage2(struct xdp_md *ctx)
{
	HDRS
	if (bpf_ntohs(iph->tot_len) > data_end - (void *)iph)
		return XDP_DROP;
	NEXT(3)
}

SEC("xdp")
int stage3(struct xdp_md *ctx)
{
	HDRS
	if (iph->ttl <= 1)
		return XDP_DROP;
	NEXT(4)
}

SEC("xdp")
int stage4(struct xdp_md *ctx)
{
	HDRS
	if (iph->frag_off & bpf_htons(0x3fff))
		return XDP_DROP;
	NEXT(5)
}

SEC("xdp")
int stage5(struct xdp_md *ctx)
{
	HDRS
	if (iph->protocol != IPPROTO_TCP)
		return XDP_DROP;
	NEXT(6)
}

SEC("xdp")
int stage6(struct xdp_md *ctx)
{
	HDRS
	if (th->dest == 0 || th->source == 0)
		return XDP_DROP;
	NEXT(7)
}

SEC("xdp")
int stage7(struct xdp_md *ctx)
{
	HDRS
	if (th->rst)
		return XDP_DROP;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
