/* pkt_unchecked: reads a byte of the Ethernet header without comparing against
 * data_end first (the mistake of xdp-tutorial's packet01 skeleton, written anew).
 * errno: EACCES
 * message: invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)
 */
#include "../common.h"

SEC("xdp")
int pkt_unchecked(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;

	return data[12] == 0x08 ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
