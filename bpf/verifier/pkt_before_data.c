/* pkt_before_data: bounds-checks the packet, then reads the byte before its start
 * (as xdp-tutorial's experiment01 fail1/fail3, written anew).
 * errno: EACCES
 * message: invalid access to packet, off=-1 size=1, R1(id=0,off=-1,r=1)
 */
#include "../common.h"

SEC("xdp")
int pkt_before_data(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	volatile __u8 *p = data;

	if (data + 1 > data_end)
		return XDP_DROP;
	return p[-1] ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
