/* xdp_fw: LPM firewall. Drops IPv4 packets whose source address falls in a prefix of
 * the LPM_TRIE `blocked` (key: prefix length then address in network order, e.g.
 * `18000000c0a80100` = 192.168.1.0/24) and counts drops (`drop_count`, per prefix
 * length in `drops_by_len`); everything else XDP_PASS. */
#include "common.h"

struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} blocked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drop_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u8);
	__type(value, __u64);
} drops_by_val SEC(".maps");

SEC("xdp")
int xdp_fw(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct lpm_key key;
	__u32 zero = 0;
	__u64 one = 1, *cnt;
	__u8 *val;

	if ((void *)(iph + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	key.prefixlen = 32;
	key.addr = iph->saddr;
	val = bpf_map_lookup_elem(&blocked, &key);
	if (!val)
		return XDP_PASS;

	cnt = bpf_map_lookup_elem(&drop_count, &zero);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	/* the value is a rule tag: count drops per tag */
	__u8 tag = *val;
	cnt = bpf_map_lookup_elem(&drops_by_val, &tag);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else
		bpf_map_update_elem(&drops_by_val, &tag, &one, BPF_ANY);
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
