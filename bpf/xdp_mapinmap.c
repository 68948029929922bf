/* xdp_mapinmap: map-in-map lookups. The frame's class c is 0 for TCP, 1 for UDP,
 * 2 for anything else (IPv4/IPv6 next header).
 *  - ARRAY_OF_MAPS `outer_arr` (3 slots; BTF `.values`: [0] = inner_a, [1] = inner_b,
 *    slot 2 empty): lookup slot c; when found, inner[0] += 1 and inner[1] = frame
 *    length (bpf_map_update_elem, BPF_ANY), its return in res[1].
 *  - HASH_OF_MAPS `outer_hash` (BTF `.values`: key 0 = inner_h0, key 1 = inner_h1,
 *    key 2 absent): lookup key c; when found, update inner key = frame length with
 *    BPF_NOEXIST (return in res[3]), then key 7 with BPF_EXIST (res[4], -ENOENT
 *    unless present), then lookup key 7 and add 1 when present (res[5] = new value).
 * res[0] / res[2]: 1 when the outer lookup found an inner map, else 0.
 * Returns XDP_PASS, XDP_DROP when neither outer lookup found a map. */
#include "common.h"

struct inner_arr {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner_arr inner_a SEC(".maps"), inner_b SEC(".maps");
struct inner_hash inner_h0 SEC(".maps"), inner_h1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_arr);
} outer_arr SEC(".maps") = {
	.values = { [0] = &inner_a, [1] = &inner_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_hash);
} outer_hash SEC(".maps") = {
	.values = { [0] = &inner_h0, [1] = &inner_h1 },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __s64);
} res SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&res, &k);

	if (slot)
		*slot = v;
}

static __always_inline __u32 l4_class(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	__u8 proto = 0;

	if ((void *)(eth + 1) > data_end)
		return 2;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return 2;
		proto = iph->protocol;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return 2;
		proto = ip6->nexthdr;
	}
	return proto == IPPROTO_TCP ? 0 : proto == IPPROTO_UDP ? 1 : 2;
}

SEC("xdp")
int xdp_mapinmap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 c = l4_class(data, data_end);
	__u32 len = data_end - data, k0 = 0, k1 = 1, k7 = 7;
	__u64 vlen = len, one = 1;
	int found = 0;
	void *inner;

	inner = bpf_map_lookup_elem(&outer_arr, &c);
	put(0, inner != 0);
	if (inner) {
		__u64 *cnt = bpf_map_lookup_elem(inner, &k0);

		found = 1;
		if (cnt)
			*cnt += 1;
		put(1, bpf_map_update_elem(inner, &k1, &vlen, BPF_ANY));
	}

	inner = bpf_map_lookup_elem(&outer_hash, &c);
	put(2, inner != 0);
	if (inner) {
		__u64 *v;

		found = 1;
		put(3, bpf_map_update_elem(inner, &len, &vlen, BPF_NOEXIST));
		put(4, bpf_map_update_elem(inner, &k7, &one, BPF_EXIST));
		v = bpf_map_lookup_elem(inner, &k7);
		if (v) {
			*v += 1;
			put(5, *v);
		}
	}
	return found ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
