/* xdp_lru: LRU_HASH `lru` and LRU_PERCPU_HASH `lrupc` (4 entries each, never filled:
 * eviction order is not compared) and PERCPU_HASH `pch` (4 entries). The key is the
 * frame's class c (IPv4/IPv6 next header, 0 otherwise). For each map, at base
 * b = 0 / 8 / 16 in ARRAY `rets`:
 *  [b+0] update(c, len, BPF_NOEXIST), [b+1] lookup(c) value (-1 when absent),
 *  [b+2] update(c + 100, BPF_EXIST) (-ENOENT), [b+3] delete(50) (0 when a case put
 *  key 50 there, else -ENOENT), [b+4] update(c, len * 2, BPF_ANY) then lookup value,
 *  [b+5] delete(c + 100) (-ENOENT).
 * xdp_percpu_elem: bpf_map_lookup_percpu_elem(key 51) on `lrupc` / `pch`:
 *  [6] / [14] on CPU 1, [7] / [15] on CPU 4096 (no such CPU: NULL); value or -1.
 * Both return XDP_PASS. */
#include "common.h"

#define DEF_HASH(name, mtype)                 \
	struct {                              \
		__uint(type, mtype);          \
		__uint(max_entries, 4);       \
		__type(key, __u32);           \
		__type(value, __u64);         \
	} name SEC(".maps")

DEF_HASH(lru, BPF_MAP_TYPE_LRU_HASH);
DEF_HASH(lrupc, BPF_MAP_TYPE_LRU_PERCPU_HASH);
DEF_HASH(pch, BPF_MAP_TYPE_PERCPU_HASH);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 24);
	__type(key, __u32);
	__type(value, __s64);
} rets SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&rets, &k);

	if (slot)
		*slot = v;
}

static __always_inline __s64 val_or(__u64 *v)
{
	return v ? (__s64)*v : -1;
}

#define EXERCISE(map, b)                                                   \
	do {                                                                       \
		__u64 v = len, v2 = len * 2;                                       \
		__u32 other = c + 100, k50 = 50;                                   \
		put(b + 0, bpf_map_update_elem(&map, &c, &v, BPF_NOEXIST));        \
		put(b + 1, val_or(bpf_map_lookup_elem(&map, &c)));                 \
		put(b + 2, bpf_map_update_elem(&map, &other, &v, BPF_EXIST));      \
		put(b + 3, bpf_map_delete_elem(&map, &k50));                       \
		bpf_map_update_elem(&map, &c, &v2, BPF_ANY);                       \
		put(b + 4, val_or(bpf_map_lookup_elem(&map, &c)));                 \
		put(b + 5, bpf_map_delete_elem(&map, &other));                     \
	} while (0)

SEC("xdp")
int xdp_lru(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 len = data_end - data;
	__u32 c = 0;

	if ((void *)(eth + 1) <= data_end) {
		if (eth->h_proto == bpf_htons(ETH_P_IP)) {
			struct iphdr *iph = (void *)(eth + 1);

			if ((void *)(iph + 1) <= data_end)
				c = iph->protocol;
		} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
			struct ipv6hdr *ip6 = (void *)(eth + 1);

			if ((void *)(ip6 + 1) <= data_end)
				c = ip6->nexthdr;
		}
	}
	EXERCISE(lru, 0);
	EXERCISE(lrupc, 8);
	EXERCISE(pch, 16);
	return XDP_PASS;
}

SEC("xdp")
int xdp_percpu_elem(struct xdp_md *ctx)
{
	__u32 k51 = 51;

	put(6, val_or(bpf_map_lookup_percpu_elem(&lrupc, &k51, 1)));
	put(7, val_or(bpf_map_lookup_percpu_elem(&lrupc, &k51, 4096)));
	put(14, val_or(bpf_map_lookup_percpu_elem(&pch, &k51, 1)));
	put(15, val_or(bpf_map_lookup_percpu_elem(&pch, &k51, 4096)));
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
