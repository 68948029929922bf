/* ctx_readonly: writes xdp_md.ingress_ifindex, which XDP programs may only read.
 * errno: EACCES
 * message: invalid bpf_context access off=12 size=4
 */
#include "../common.h"

SEC("xdp")
int ctx_readonly(struct xdp_md *ctx)
{
	ctx->ingress_ifindex = 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
