/* live_pair: the live-pair example's forwarding (examples/live-pair). Frames
 * from skiff-a (NIC eth0) go to eth1 by XDP_REDIRECT through DEVMAP tx_port;
 * frames from skiff-b (NIC eth1) pass XDP and go to eth0 by the tc ingress
 * program's bpf_redirect (ifindex in ARRAY tc_port). Both count IPv4 packets
 * per (source, destination) in HASH `flows`. In the kernel's benchmark column
 * the same object runs on the veths themselves. */
#include "../../bpf/common.h"

struct flow_key {
	__u32 saddr;
	__u32 daddr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, __u64);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tc_port SEC(".maps");

static __always_inline void count(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct flow_key k;
	__u64 one = 1, *n;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return;
	k.saddr = ip->saddr;
	k.daddr = ip->daddr;
	n = bpf_map_lookup_elem(&flows, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&flows, &k, &one, BPF_NOEXIST);
}

SEC("xdp")
int live_pair_xdp(struct xdp_md *ctx)
{
	count((void *)(long)ctx->data, (void *)(long)ctx->data_end);
	return bpf_redirect_map(&tx_port, 0, XDP_DROP);
}

SEC("xdp")
int live_pair_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int live_pair_tc(struct __sk_buff *skb)
{
	__u32 zero = 0, *ifindex = bpf_map_lookup_elem(&tc_port, &zero);

	count((void *)(long)skb->data, (void *)(long)skb->data_end);
	if (!ifindex || !*ifindex)
		return TC_ACT_SHOT;
	return bpf_redirect(*ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
