/* xdp_maps: map update flags and their errno. For each frame the program does, on
 * HASH `h`, LRU_HASH `lru` (2 entries) and PERCPU_HASH `pch`, with key = IP protocol:
 * update(BPF_NOEXIST), update(BPF_EXIST) of key+1000 (absent), update(BPF_ANY),
 * delete of key+1000 (absent), and a bad flag (4); the helpers' return values
 * (0 or -errno) go to ARRAY `rets` (index = step, 5 per map). XDP_PASS. */
#include "common.h"

#define DEF_HASH(name, mtype, n)                    \
	struct {                                   \
		__uint(type, mtype);               \
		__uint(max_entries, n);            \
		__type(key, __u32);                \
		__type(value, __u64);              \
	} name SEC(".maps")

DEF_HASH(h, BPF_MAP_TYPE_HASH, 4);
DEF_HASH(lru, BPF_MAP_TYPE_LRU_HASH, 2);
DEF_HASH(pch, BPF_MAP_TYPE_PERCPU_HASH, 4);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 15);
	__type(key, __u32);
	__type(value, __s64);
} rets SEC(".maps");

static __always_inline void ret(__u32 k, long v)
{
	__s64 *slot = bpf_map_lookup_elem(&rets, &k);

	if (slot)
		*slot = v;
}

#define EXERCISE(map, base)                                                  \
	do {                                                                 \
		__u64 val = key * 100;                                       \
		__u32 absent = key + 1000;                                   \
		ret(base + 0, bpf_map_update_elem(&map, &key, &val, BPF_NOEXIST)); \
		ret(base + 1, bpf_map_update_elem(&map, &absent, &val, BPF_EXIST)); \
		val++;                                                       \
		ret(base + 2, bpf_map_update_elem(&map, &key, &val, BPF_ANY)); \
		ret(base + 3, bpf_map_delete_elem(&map, &absent));           \
		ret(base + 4, bpf_map_update_elem(&map, &key, &val, 4));     \
	} while (0)

SEC("xdp")
int xdp_maps(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	__u32 key;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	key = iph->protocol;
	EXERCISE(h, 0);
	EXERCISE(lru, 5);
	EXERCISE(pch, 10);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
