/* pkt_end_deref: reads data_end as if it were packet memory (as xdp-tutorial's
 * experiment01 fail2, written anew).
 * errno: EACCES
 * message: R1 invalid mem access 'pkt_end'
 */
#include "../common.h"

SEC("xdp")
int pkt_end_deref(struct xdp_md *ctx)
{
	volatile __u8 *data_end = (void *)(long)ctx->data_end;

	return *data_end ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
