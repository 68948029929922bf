/* deep_stack: two bpf-to-bpf calls whose frames together need more than the 512
 * bytes of stack the kernel gives a call chain.
 * errno: EACCES
 * message: combined stack size of 2 calls is 640. Too large
 */
#include "../common.h"

static __attribute__((noinline)) int inner(struct xdp_md *ctx)
{
	volatile __u8 buf[320];

	buf[ctx->ingress_ifindex & 255] = 1;
	return buf[ctx->rx_queue_index & 255];
}

SEC("xdp")
int deep_stack(struct xdp_md *ctx)
{
	volatile __u8 buf[320];

	buf[ctx->ingress_ifindex & 255] = (__u8)inner(ctx);
	return buf[ctx->rx_queue_index & 255] ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
