/* bad_opcode: an instruction whose opcode does not exist (0xff), refused before
 * any path is walked.
 * errno: EINVAL
 * message: unknown opcode ff
 */
#include "../common.h"

SEC("xdp")
int bad_opcode(struct xdp_md *ctx)
{
	asm volatile(".8byte 0x00000000000000ff");
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
