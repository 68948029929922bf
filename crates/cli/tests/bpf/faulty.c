/* Programs the kernel's verifier would refuse, for skiff's run-time checks:
 * an unchecked packet read far past data_end, and a loop that never ends. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int oob_read(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(volatile __u32 *)(data + 100000) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int spin_forever(struct __sk_buff *skb)
{
	volatile __u32 n = skb->len;

	while (n)
		n = n | 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
