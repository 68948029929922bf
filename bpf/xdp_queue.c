/* xdp_queue: QUEUE and STACK maps. Each frame pushes its length to QUEUE `q` and
 * STACK `s` (3 entries each, BPF_ANY for the queue so the oldest is overwritten when
 * full, flags 0 for the stack so a full stack gives -E2BIG), then, for frames with an
 * odd length, pops one element from each. ARRAY `last`: [0] queue push ret, [1] stack
 * push ret, [2] queue pop ret, [3] popped queue value, [4] stack pop ret, [5] popped
 * stack value. XDP_PASS. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 3);
	__type(value, __u32);
} q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 3);
	__type(value, __u32);
} s SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __s64);
} last SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&last, &k);

	if (slot)
		*slot = v;
}

SEC("xdp")
int xdp_queue(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data, v = 0;

	put(0, bpf_map_push_elem(&q, &len, BPF_EXIST));
	put(1, bpf_map_push_elem(&s, &len, 0));
	if (len & 1) {
		put(2, bpf_map_pop_elem(&q, &v));
		put(3, v);
		v = 0;
		put(4, bpf_map_pop_elem(&s, &v));
		put(5, v);
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
