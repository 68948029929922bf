/* scalar_deref: dereferences a number (the ingress ifindex) as a pointer.
 * errno: EACCES
 * message: R1 invalid mem access 'scalar'
 */
#include "../common.h"

SEC("xdp")
int scalar_deref(struct xdp_md *ctx)
{
	volatile __u32 *p = (void *)(long)ctx->ingress_ifindex;

	return *p ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
