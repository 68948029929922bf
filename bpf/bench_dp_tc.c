/* bench_dp_tc: `skiff bench --datapath --suite`, row tc_redirect_peer. XDP
 * passes every frame to the stack (bench_dp_pass); tc ingress on the same
 * device sends it with bpf_redirect_peer into the peer of the veth in slot 0
 * of ARRAY `target` (an ifindex), in another namespace, whose tc ingress runs
 * bench_dp_peer_tc. A zero slot (not configured) drops. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

SEC("xdp")
int bench_dp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int bench_dp_redirect_peer(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&target, &key);

	if (!ifindex || !*ifindex)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(*ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
