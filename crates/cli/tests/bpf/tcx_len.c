/* A tcx program (BPF_TCX_INGRESS, which came in Linux 6.6): `prog verify
 * --kernel 6.1` refuses it, 6.6 takes it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tcx/ingress")
int tcx_len(struct __sk_buff *skb)
{
	return skb->len > 100 ? 2 : 0;
}

char _license[] SEC("license") = "GPL";
