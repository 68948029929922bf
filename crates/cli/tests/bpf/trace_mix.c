/* An XDP program that prints each frame's length (bpf_printk) beside tracing
 * programs (kprobe, tracepoint, fentry), as observability objects ship them:
 * skiff loads the XDP program and skips the others with a note. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_printk(struct xdp_md *ctx)
{
	long len = ctx->data_end - ctx->data;

	bpf_printk("frame len %ld", len);
	return XDP_PASS;
}

SEC("kprobe/__netif_receive_skb_core")
int kprobe_rx(void *ctx)
{
	return 0;
}

SEC("tracepoint/net/netif_receive_skb")
int tp_rx(void *ctx)
{
	return 0;
}

SEC("fentry/xdp_do_redirect")
int fentry_redirect(void *ctx)
{
	return 0;
}

char _license[] SEC("license") = "GPL";
