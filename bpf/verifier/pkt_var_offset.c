/* pkt_var_offset: adds an unbounded number (read from the packet) to the packet
 * pointer.
 * errno: EINVAL
 * message: math between pkt pointer and register with unbounded min value is not allowed
 */
#include "../common.h"

SEC("xdp")
int pkt_var_offset(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	__u64 off;
	__u8 *p;

	if (data + 8 > data_end)
		return XDP_DROP;
	off = *(__u64 *)data;
	p = data + off;
	if (p + 1 > data_end)
		return XDP_DROP;
	return *p ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
