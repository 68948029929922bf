/* bench_parse: parse-and-compare with no maps and no helpers (rbpf runs it too):
 * Ethernet, IPv4 without options, TCP; drops TCP to port 23 (telnet) and TCP
 * segments with both SYN and FIN set, passes everything else. */
#include "common.h"

SEC("xdp")
int xdp_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct tcphdr *th = (void *)(iph + 1);

	if ((void *)(th + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5 ||
	    iph->protocol != IPPROTO_TCP)
		return XDP_PASS;
	if (th->dest == bpf_htons(23) || (th->syn && th->fin))
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
