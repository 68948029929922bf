/* bench_l4lb: an L4 load balancer in direct-server-return mode (as Maglev/GLB): a
 * connection table (HASH `flows`, 65536 entries: 5-tuple -> backend index) sends
 * each known flow to its backend by rewriting only the destination MAC (the IP
 * header stays, the backend owns the VIP), XDP_TX; per-backend packet and byte
 * counts. A new flow to a VIP of HASH `vips` (VIP, port, proto -> backend count)
 * picks a backend by a hash of its 5-tuple and is inserted into `flows` (BPF_NOEXIST);
 * anything else XDP_PASS. The benchmark fills `flows` to its 65536 entries, so a
 * lookup searches a full table. The 5-tuple stays the same from run to run: every
 * run of a test run takes the same path. */
#include "common.h"

#define MAX_FLOWS 65536
#define MAX_BACKENDS 256

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct vip_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct backend {
	__u8 mac[6];
	__u16 flags;
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, __u32);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct vip_key);
	__type(value, __u32);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

static const __u8 lb_mac[6] = { 0x02, 0, 0, 0, 0, 0xfe };

static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = 2166136261u;

	h = (h ^ k->saddr) * 16777619u;
	h = (h ^ k->daddr) * 16777619u;
	h = (h ^ ((__u32)k->sport << 16 | k->dport)) * 16777619u;
	h = (h ^ k->proto) * 16777619u;
	return h;
}

SEC("xdp")
int xdp_l4lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct flow_key fk = {};
	struct backend *be;
	__u32 *idx, i;

	if ((void *)(iph + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5)
		return XDP_PASS;
	if (iph->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(iph + 1);

		if ((void *)(th + 1) > data_end)
			return XDP_PASS;
		fk.sport = th->source;
		fk.dport = th->dest;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(iph + 1);

		if ((void *)(uh + 1) > data_end)
			return XDP_PASS;
		fk.sport = uh->source;
		fk.dport = uh->dest;
	} else {
		return XDP_PASS;
	}
	fk.saddr = iph->saddr;
	fk.daddr = iph->daddr;
	fk.proto = iph->protocol;

	idx = bpf_map_lookup_elem(&flows, &fk);
	if (idx) {
		i = *idx;
	} else {
		struct vip_key vk = { .vip = fk.daddr, .port = fk.dport, .proto = fk.proto };
		__u32 *n = bpf_map_lookup_elem(&vips, &vk);

		if (!n || *n == 0)
			return XDP_PASS;
		i = flow_hash(&fk) % *n;
		bpf_map_update_elem(&flows, &fk, &i, BPF_NOEXIST);
	}
	be = bpf_map_lookup_elem(&backends, &i);
	if (!be || !(be->flags & 1))
		return XDP_PASS;
	__builtin_memcpy(eth->h_source, lb_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	__sync_fetch_and_add(&be->packets, 1);
	__sync_fetch_and_add(&be->bytes, (__u64)(data_end - data));
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
