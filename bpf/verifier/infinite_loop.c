/* infinite_loop: a loop that never ends (the same state comes back).
 * errno: EINVAL
 * message: infinite loop detected at insn 1
 */
#include "../common.h"

SEC("xdp")
int infinite_loop(struct xdp_md *ctx)
{
	asm volatile("r0 = 0\n"
		     "1: if r0 == 0 goto 1b");
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
