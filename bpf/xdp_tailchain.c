/* xdp_tailchain: the kernel's tail-call limit (MAX_TAIL_CALL_CNT = 33) seen from a
 * program that tail-calls itself. PROG_ARRAY `chain` (BTF `.values`: [0] = tail_self,
 * [2] = tail_mixed; slot 1 empty unless a case puts tail_leaf there; 4 slots).
 *  - tail_self: depth[0] += 1 (per-CPU ARRAY), tail-calls slot 0 (itself); when the
 *    call fails (limit reached) res[0] = depth[0], res[3] += 1, XDP_PASS. One run
 *    executes the program 1 + 33 times.
 *  - tail_mixed: depth[1] += 1, then tail-calls slot 1 (empty: the program continues;
 *    an attempt on an empty slot still counts towards the limit), slot 99 (out of
 *    range: continues, does not count), then slot 2 (itself). Each fall-through is
 *    counted: res[1] (slot 1), res[2] (slot 99); at the end res[4] = depth[1],
 *    res[5] += 1, XDP_DROP.
 *  - tail_leaf: res[6] += 1, XDP_TX. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} depth SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} res SEC(".maps");

static __always_inline __u64 bump(void *map, __u32 k)
{
	__u64 *c = bpf_map_lookup_elem(map, &k);

	if (!c)
		return 0;
	*c += 1;
	return *c;
}

static __always_inline void put(__u32 k, __u64 v)
{
	__u64 *slot = bpf_map_lookup_elem(&res, &k);

	if (slot)
		*slot = v;
}

int tail_self(struct xdp_md *ctx);
int tail_mixed(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} chain SEC(".maps") = {
	.values = {
		[0] = (void *)&tail_self,
		[2] = (void *)&tail_mixed,
	},
};

SEC("xdp")
int tail_self(struct xdp_md *ctx)
{
	__u64 d = bump(&depth, 0);

	bpf_tail_call(ctx, &chain, 0);
	put(0, d);
	bump(&res, 3);
	return XDP_PASS;
}

SEC("xdp")
int tail_mixed(struct xdp_md *ctx)
{
	__u64 d = bump(&depth, 1);

	bpf_tail_call(ctx, &chain, 1);
	bump(&res, 1);
	bpf_tail_call(ctx, &chain, 99);
	bump(&res, 2);
	bpf_tail_call(ctx, &chain, 2);
	put(4, d);
	bump(&res, 5);
	return XDP_DROP;
}

SEC("xdp")
int tail_leaf(struct xdp_md *ctx)
{
	bump(&res, 6);
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
