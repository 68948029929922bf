/* uninit_reg: reads a register nothing wrote (R2 at entry). Privileged programs
 * may read uninitialised stack slots (the kernel's allow_uninit_stack), never
 * uninitialised registers.
 * errno: EACCES
 * message: R2 !read_ok
 */
#include "../common.h"

SEC("xdp")
int uninit_reg(struct xdp_md *ctx)
{
	__u64 r;

	asm volatile("%[r] = r2" : [r] "=r"(r));
	return r ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
