/* helper_bad_arg: asks bpf_xdp_load_bytes for 8 bytes into a 4-byte stack buffer.
 * errno: EINVAL
 * message: invalid write to stack R3 off=-4 size=8
 */
#include "../common.h"

SEC("xdp")
int helper_bad_arg(struct xdp_md *ctx)
{
	__u32 buf = 0;

	asm volatile("r1 = %[ctx]\n"
		     "r2 = 0\n"
		     "r3 = r10\n"
		     "r3 += -4\n"
		     "r4 = 8\n"
		     "call 189"
		     :
		     : [ctx] "r"(ctx)
		     : "r0", "r1", "r2", "r3", "r4", "r5");
	return buf ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
