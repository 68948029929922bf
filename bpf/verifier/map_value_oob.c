/* map_value_oob: reads past the end of an 8-byte map value.
 * errno: EACCES
 * message: invalid access to map value, value_size=8 off=8 size=8
 */
#include "../common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int map_value_oob(struct xdp_md *ctx)
{
	__u32 key = 0;
	volatile __u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (!v)
		return XDP_PASS;
	return v[1] ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
