/* xdp_ringbuf: packet summaries to a RINGBUF. Frames of IPv4 go out with
 * bpf_ringbuf_reserve + submit, others with bpf_ringbuf_output; ARRAY `rb_stats`
 * keeps [0] records reserved, [1] reserve failures, [2] the last output's return,
 * [3] bpf_ringbuf_query(BPF_RB_AVAIL_DATA) after the write. XDP_PASS.
 * The ring itself is not dumped (records are read through mmap). */
#include "common.h"

struct summary {
	__u32 len;
	__u16 eth_proto;
	__u8 ip_proto;
	__u8 pad;
	__u32 saddr;
	__u32 daddr;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __s64);
} rb_stats SEC(".maps");

static __always_inline void add(__u32 k, __s64 v, int set)
{
	__s64 *slot = bpf_map_lookup_elem(&rb_stats, &k);

	if (slot) {
		if (set)
			*slot = v;
		else
			*slot += v;
	}
}

SEC("xdp")
int xdp_ringbuf(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct summary s = { .len = data_end - data };

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	s.eth_proto = bpf_ntohs(eth->h_proto);
	if ((void *)(iph + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct summary *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

		if (!r) {
			add(1, 1, 0);
			return XDP_PASS;
		}
		r->len = s.len;
		r->eth_proto = s.eth_proto;
		r->ip_proto = iph->protocol;
		r->pad = 0;
		r->saddr = iph->saddr;
		r->daddr = iph->daddr;
		bpf_ringbuf_submit(r, 0);
		add(0, 1, 0);
	} else {
		add(2, bpf_ringbuf_output(&events, &s, sizeof(s), 0), 1);
	}
	add(3, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA), 1);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
