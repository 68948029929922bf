/* bench_lpm_fw: an LPM firewall. LPM_TRIE `rules` (10240 entries; key: prefix length
 * then IPv4 address, network order; value: action 1 = drop, 0 = allow, then a rule
 * id) is looked up with the source address, then with the destination address;
 * the longest prefix's action decides (source first), a hit is counted per rule id
 * in ARRAY `hits`. The benchmark fills `rules` with 10000 prefixes, among them
 * nested ones (/8 .. /32) over the packet's source, so the lookup walks a deep trie. */
#include "common.h"

#define MAX_RULES 10240

struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

struct rule {
	__u32 action;
	__u32 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, struct rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline int verdict(struct rule *r)
{
	__u32 id = r->id;
	__u64 *c = bpf_map_lookup_elem(&hits, &id);

	if (c)
		__sync_fetch_and_add(c, 1);
	return r->action == 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_lpm_fw(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct lpm_key key;
	struct rule *r;

	if ((void *)(iph + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	key.prefixlen = 32;
	key.addr = iph->saddr;
	r = bpf_map_lookup_elem(&rules, &key);
	if (r)
		return verdict(r);
	key.addr = iph->daddr;
	r = bpf_map_lookup_elem(&rules, &key);
	if (r)
		return verdict(r);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
