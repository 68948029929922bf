// Programs for the datapath tests (tests/datapath.rs): one verdict each, with
// targets read from `cfg` and observations written to `res`.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} res SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} devmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} devhash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

static __always_inline __u32 cfg_get(__u32 k)
{
	__u32 *v = bpf_map_lookup_elem(&cfg, &k);
	return v ? *v : 0;
}

static __always_inline void res_set(__u32 k, __u64 v)
{
	bpf_map_update_elem(&res, &k, &v, BPF_ANY);
}

SEC("xdp") int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }
SEC("xdp") int xdp_drop(struct xdp_md *ctx) { return XDP_DROP; }
SEC("xdp") int xdp_aborted(struct xdp_md *ctx) { return XDP_ABORTED; }

SEC("xdp") int xdp_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];
	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	return XDP_TX;
}

SEC("xdp") int xdp_redirect_ifindex(struct xdp_md *ctx) { return bpf_redirect(cfg_get(0), 0); }
SEC("xdp") int xdp_redirect_devmap(struct xdp_md *ctx) { return bpf_redirect_map(&devmap, 0, XDP_DROP); }
SEC("xdp") int xdp_broadcast(struct xdp_md *ctx)
{
	return bpf_redirect_map(&devhash, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
}
SEC("xdp") int xdp_cpumap(struct xdp_md *ctx) { return bpf_redirect_map(&cpus, 1, XDP_DROP); }
SEC("xdp") int xdp_xsk(struct xdp_md *ctx) { return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS); }

/* Runs as a DEVMAP entry program: marks the frame and records egress_ifindex. */
SEC("xdp/devmap") int xdp_devmap_prog(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	unsigned char *p = data;
	if ((void *)(p + 60) > end)
		return XDP_DROP;
	p[59] = 0xee;
	res_set(1, ctx->egress_ifindex);
	return XDP_PASS;
}

SEC("xdp") int xdp_meta(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_meta(ctx, -4))
		return XDP_ABORTED;
	void *meta = (void *)(long)ctx->data_meta, *data = (void *)(long)ctx->data;
	__u32 *m = meta;
	if ((void *)(m + 1) > data)
		return XDP_ABORTED;
	*m = 0xdeadbeef;
	return XDP_PASS;
}

/* Reads past data_end without a check: the run ends with an exception. */
SEC("xdp") int xdp_oob(struct xdp_md *ctx)
{
	unsigned char *p = (void *)(long)ctx->data_end;
	return p[100] ? XDP_PASS : XDP_DROP;
}

SEC("tc") int tc_ok(struct __sk_buff *skb) { return 0; }
SEC("tc") int tc_shot(struct __sk_buff *skb) { return 2; }
SEC("tc") int tc_unspec(struct __sk_buff *skb) { skb->mark = 0x77; return -1; }
SEC("tc") int tc_pipe(struct __sk_buff *skb) { return 3; }
SEC("tc") int tc_stolen(struct __sk_buff *skb) { return 4; }
SEC("tc") int tc_redirect_egress(struct __sk_buff *skb) { return bpf_redirect(cfg_get(0), 0); }
SEC("tc") int tc_redirect_ingress(struct __sk_buff *skb) { return bpf_redirect(cfg_get(0), BPF_F_INGRESS); }
SEC("tc") int tc_redirect_peer(struct __sk_buff *skb) { return bpf_redirect_peer(cfg_get(0), 0); }
SEC("tc") int tc_redirect_neigh(struct __sk_buff *skb) { return bpf_redirect_neigh(cfg_get(0), 0, 0, 0); }
SEC("tc") int tc_clone(struct __sk_buff *skb)
{
	res_set(3, bpf_clone_redirect(skb, cfg_get(0), 0));
	return 0;
}
SEC("tc") int tc_read_meta(struct __sk_buff *skb)
{
	void *meta = (void *)(long)skb->data_meta, *data = (void *)(long)skb->data;
	__u32 *m = meta;
	if ((void *)(m + 1) > data)
		res_set(0, 1);
	else
		res_set(0, *m);
	return 0;
}
/* Records what the skb carries: mark, ifindex, pkt_type. */
SEC("tc") int tc_record(struct __sk_buff *skb)
{
	res_set(4, skb->mark);
	res_set(5, skb->ifindex);
	res_set(6, skb->pkt_type);
	return 0;
}

/* bpf_fib_lookup for 10.0.0.1 -> 10.1.0.9 in the packet's namespace: rc, ifindex, dmac[5]. */
SEC("tc") int tc_fib(struct __sk_buff *skb)
{
	struct bpf_fib_lookup p = {};
	p.family = 2; /* AF_INET */
	p.ipv4_src = bpf_htonl(0x0a000001);
	p.ipv4_dst = bpf_htonl(0x0a010009);
	p.ifindex = skb->ifindex;
	long rc = bpf_fib_lookup(skb, &p, sizeof(p), 0);
	res_set(0, rc);
	res_set(1, p.ifindex);
	res_set(2, p.dmac[5]);
	return 0;
}

SEC("tc") int nk_next(struct __sk_buff *skb) { return -1; }
SEC("tc") int nk_pass(struct __sk_buff *skb) { return 0; }
SEC("tc") int nk_drop(struct __sk_buff *skb) { return 2; }
SEC("tc") int nk_redirect(struct __sk_buff *skb) { return bpf_redirect(cfg_get(1), 0); }

char _license[] SEC("license") = "GPL";
