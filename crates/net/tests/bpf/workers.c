// Multi-worker datapath tests (tests/datapath.rs, "workers"): per-CPU counters
// and the CPU (bpf_get_smp_processor_id) each hook saw each packet on.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Slot 0: XDP packets, 1: XDP bytes, 2: TC packets, 3: peer packets.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

// key = UDP source port * 4 + stage (0 XDP, 1 TC ingress, 2 peer TC ingress,
// 3 peer XDP); value = CPU + 1.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} wcpus SEC(".maps");

// 0: CPUMAP key; 1: redirect ifindex.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} wcfg SEC(".maps");

static __always_inline __u32 wcfg_get(__u32 k)
{
	__u32 *v = bpf_map_lookup_elem(&wcfg, &k);
	return v ? *v : 0;
}

static __always_inline void bump(__u32 slot, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(&pcpu, &slot);
	if (v)
		*v += by;
}

static __always_inline void record(void *data, void *end, __u32 stage)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->ihl != 5 || ip->protocol != 17 /* IPPROTO_UDP */)
		return;
	__u32 key = (__u32)bpf_ntohs(udp->source) * 4 + stage;
	__u32 cpu = bpf_get_smp_processor_id() + 1;
	bpf_map_update_elem(&seen, &key, &cpu, BPF_ANY);
}

SEC("xdp") int w_xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	bump(0, 1);
	bump(1, end - data);
	record(data, end, 0);
	return XDP_PASS;
}

SEC("xdp") int w_xdp_cpumap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	bump(0, 1);
	record(data, end, 0);
	return bpf_redirect_map(&wcpus, wcfg_get(0), XDP_DROP);
}

SEC("xdp") int w_xdp_peer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	bump(3, 1);
	record(data, end, 3);
	return XDP_PASS;
}

SEC("tc") int w_tc_count(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	bump(2, 1);
	record(data, end, 1);
	return 0; // TC_ACT_OK
}

SEC("tc") int w_tc_redirect(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	bump(2, 1);
	record(data, end, 1);
	return bpf_redirect(wcfg_get(1), 0);
}

SEC("tc") int w_tc_peer(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	bump(3, 1);
	record(data, end, 2);
	return 2; // TC_ACT_SHOT
}

char _license[] SEC("license") = "GPL";
