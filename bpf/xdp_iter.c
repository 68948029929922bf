/* xdp_iter: callbacks and calls; results in ARRAY `res` (index = step):
 *  - HASH `hsh` (key u32, value u64): hsh[IP protocol or 0] += 1 first.
 *  - bpf_for_each_map_elem(&arr, sum_until, ...): sums the ARRAY `arr` values in
 *    index order and stops (callback returns 1) at the first value >= 100:
 *    [0] the helper's return (elements visited), [1] sum, [2] count.
 *  - bpf_for_each_map_elem(&hsh, sum_all, ...): sums every value and adds 1000 to
 *    each (the callback may write the value; no early stop, the hash order is the
 *    kernel's): [3] return, [4] sum, [5] count.
 *  - bpf_loop(100, stop_at, ...) summing i and returning 1 at i == frame length % 50:
 *    [6] return (iterations), [7] sum; [8] bpf_loop with flags 1 (-EINVAL),
 *    [9] bpf_loop with 1 << 24 iterations (-E2BIG).
 *  - [10] a three-level bpf-to-bpf chain level1(len) -> level2 -> level3.
 *  - bpf_for_each_map_elem with flags 1: [11] (-EINVAL).
 * Returns XDP_PASS. */
#include "common.h"

struct bpf_map;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hsh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 12);
	__type(key, __u32);
	__type(value, __s64);
} res SEC(".maps");

struct acc {
	__u64 sum;
	__u64 n;
};

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&res, &k);

	if (slot)
		*slot = v;
}

static long sum_until(struct bpf_map *map, __u32 *key, __u64 *val, struct acc *a)
{
	a->sum += *val;
	a->n += 1;
	return *val >= 100 ? 1 : 0;
}

static long sum_all(struct bpf_map *map, __u32 *key, __u64 *val, struct acc *a)
{
	a->sum += *val;
	a->n += 1;
	*val += 1000;
	return 0;
}

struct loop_arg {
	__u64 stop;
	__u64 sum;
};

static long stop_at(__u64 i, struct loop_arg *la)
{
	if (i == la->stop)
		return 1;
	la->sum += i;
	return 0;
}

static long nop(__u64 i, void *arg)
{
	return 0;
}

static __noinline __u64 level3(__u64 x)
{
	return x * 3 + 1;
}

static __noinline __u64 level2(__u64 x)
{
	return level3(x + 7) ^ 0x55;
}

static __noinline __u64 level1(__u64 x)
{
	return level2(x << 1) + level3(x);
}


SEC("xdp")
int xdp_iter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 proto = ip_proto_of(data, data_end);
	__u64 len = data_end - data, one = 1, *v;
	struct acc a = {}, h = {}, dummy = {};
	struct loop_arg la = { .stop = len % 50 };

	v = bpf_map_lookup_elem(&hsh, &proto);
	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&hsh, &proto, &one, BPF_NOEXIST);

	put(0, bpf_for_each_map_elem(&arr, sum_until, &a, 0));
	put(1, a.sum);
	put(2, a.n);
	put(3, bpf_for_each_map_elem(&hsh, sum_all, &h, 0));
	put(4, h.sum);
	put(5, h.n);
	put(6, bpf_loop(100, stop_at, &la, 0));
	put(7, la.sum);
	put(8, bpf_loop(4, nop, 0, 1));
	put(9, bpf_loop(1 << 24, nop, 0, 0));
	put(10, level1(len));
	put(11, bpf_for_each_map_elem(&arr, sum_until, &dummy, 1));
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
