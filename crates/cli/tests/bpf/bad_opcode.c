/* A program both the kernel and skiff refuse before any path is walked: an
 * instruction with an opcode that does not exist (the kernel: "unknown opcode ff",
 * EINVAL). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int bad_opcode(struct xdp_md *ctx)
{
	asm volatile(".8byte 0x00000000000000ff");
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
