/* stack_oob: writes below the 512-byte stack frame.
 * errno: EACCES
 * message: invalid write to stack R10 off=-520 size=8
 */
#include "../common.h"

SEC("xdp")
int stack_oob(struct xdp_md *ctx)
{
	asm volatile("*(u64 *)(r10 - 520) = 0");
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
