/* helper_wrong_type: an XDP program calls bpf_skb_load_bytes, a TC helper.
 * errno: EINVAL
 * message: program of this type cannot use helper bpf_skb_load_bytes#26
 */
#include "../common.h"

SEC("xdp")
int helper_wrong_type(struct xdp_md *ctx)
{
	__u32 buf = 0;

	bpf_skb_load_bytes(ctx, 0, &buf, sizeof(buf));
	return buf ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
