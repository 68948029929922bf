/* map_value_null: uses a hash map lookup's result without checking it for NULL.
 * errno: EACCES
 * message: R0 invalid mem access 'map_value_or_null'
 */
#include "../common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int map_value_null(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	*v += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
