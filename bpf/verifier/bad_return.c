/* bad_return: a bpf_loop callback returns 2 (callbacks must return 0 or 1).
 * errno: EINVAL
 * message: At callback return the register R0 has smin=2 smax=2 should have been in [0, 1]
 */
#include "../common.h"

static long step(__u64 index, void *ctx)
{
	return 2;
}

SEC("xdp")
int bad_return(struct xdp_md *ctx)
{
	bpf_loop(4, step, 0, 0);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
