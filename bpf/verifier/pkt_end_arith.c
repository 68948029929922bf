/* pkt_end_arith: moves data_end (pointer arithmetic on pkt_end).
 * errno: EACCES
 * message: R1 pointer arithmetic on pkt_end prohibited
 */
#include "../common.h"

SEC("xdp")
int pkt_end_arith(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	asm volatile("%[end] += -14" : [end] "+r"(data_end));
	return data < data_end ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
