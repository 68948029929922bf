/* bench_dp_drop: `skiff bench --datapath --suite`, row xdp_drop. Every frame
 * XDP_DROP on the receiving NIC: the cheapest end a frame can have, so the row
 * measures the receive path's own cost (NAPI poll, XDP dispatch, recycling). */
#include "common.h"

SEC("xdp")
int bench_dp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
