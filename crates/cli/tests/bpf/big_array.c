/* A legal 10M-entry array (80 MB of values) with two slots written: `prog run
 * --json` must list it sparse, not dump ten million entries. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 10000000);
	__type(key, __u32);
	__type(value, __u64);
} big SEC(".maps");

SEC("xdp")
int big_array(struct xdp_md *ctx)
{
	__u32 k = 4242;
	__u64 *v = bpf_map_lookup_elem(&big, &k);

	if (v)
		*v += 7;
	k = 9999999;
	v = bpf_map_lookup_elem(&big, &k);
	if (v)
		*v = 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
