/* bench_dp_tx: `skiff bench --datapath --suite`, row xdp_tx. Swaps the
 * Ethernet addresses and sends the frame back out of the device it came in on
 * (XDP_TX), as a reflector does. Frames shorter than an Ethernet header are
 * dropped. */
#include "common.h"

SEC("xdp")
int bench_dp_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
