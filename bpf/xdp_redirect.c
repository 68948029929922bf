/* xdp_redirect: three ways to redirect a frame.
 *  - xdp_redirect_devmap: DEVMAP `tx_port` indexed by L4 class (TCP 0, UDP 1, other
 *    2), bpf_redirect_map(..., XDP_PASS): XDP_REDIRECT when the slot holds a device,
 *    else the fallback XDP_PASS.
 *  - xdp_redirect_devhash: DEVMAP_HASH `tx_hash` keyed by ingress ifindex, fallback
 *    XDP_DROP.
 *  - xdp_redirect_ifindex: bpf_redirect(ifindex, 0) to the ifindex in ARRAY
 *    `redirect_cfg` (0 = no redirect, XDP_PASS).
 * Every program counts its return values in `verdicts` (index = XDP action). */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} redirect_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline int count(long action)
{
	__u32 k = (__u32)action & 7;
	__u64 *c = bpf_map_lookup_elem(&verdicts, &k);

	if (c)
		__sync_fetch_and_add(c, 1);
	return (int)action;
}

static __always_inline __u32 l4_class(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 2;
	if (iph->protocol == IPPROTO_TCP)
		return 0;
	if (iph->protocol == IPPROTO_UDP)
		return 1;
	return 2;
}

SEC("xdp")
int xdp_redirect_devmap(struct xdp_md *ctx)
{
	return count(bpf_redirect_map(&tx_port, l4_class(ctx), XDP_PASS));
}

SEC("xdp")
int xdp_redirect_devhash(struct xdp_md *ctx)
{
	return count(bpf_redirect_map(&tx_hash, ctx->ingress_ifindex, XDP_DROP));
}

SEC("xdp")
int xdp_redirect_ifindex(struct xdp_md *ctx)
{
	__u32 zero = 0, *ifindex = bpf_map_lookup_elem(&redirect_cfg, &zero);

	if (!ifindex || *ifindex == 0)
		return count(XDP_PASS);
	return count(bpf_redirect(*ifindex, 0));
}

char _license[] SEC("license") = "GPL";
