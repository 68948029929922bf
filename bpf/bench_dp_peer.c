/* bench_dp_peer: the far end of `skiff bench --datapath --suite`'s rows: the
 * XDP program of the veth peer that XDP_TX and XDP_REDIRECT frames reach
 * (a veth transmits XDP frames only to a peer running XDP: veth_xdp_xmit), and
 * the tc ingress program of the peer bpf_redirect_peer delivers to. Both count
 * the frame in `seen` (slot 0 XDP, slot 1 tc) and drop it. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&seen, &slot);

	if (n)
		*n += 1;
}

SEC("xdp")
int bench_dp_peer_xdp(struct xdp_md *ctx)
{
	count(0);
	return XDP_DROP;
}

SEC("tc")
int bench_dp_peer_tc(struct __sk_buff *skb)
{
	count(1);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
