/* k8s_xdp: the node's XDP program on its NIC (examples/k8s-node, seed 003's XDP box).
 * 1. Drops IPv4 packets whose source is in the LPM map `blocked` (early drop).
 * 2. Load-balances services: an IPv4 TCP/UDP packet whose (daddr, dport, proto) is
 *    in HASH `services` is DNATed to one of the service's backends (ARRAY `backends`,
 *    from `first`, `count` of them, picked by the source address and port):
 *    destination address and port rewritten, IPv4 and TCP/UDP checksums fixed
 *    incrementally (RFC 1624), then XDP_PASS on to tc, which delivers to the pod.
 * Everything else XDP_PASS. Counters per outcome in ARRAY `xdp_stats`.
 * Addresses and ports in network byte order. */
#include "common.h"

struct lpm_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct svc_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct svc {
	__u32 first; /* index of the first backend in `backends` */
	__u32 count;
};

struct backend {
	__u32 ip;
	__u16 port;
	__u16 pad;
};

enum { STAT_BLOCKED, STAT_DNAT, STAT_PASS, STAT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
} blocked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct svc_key);
	__type(value, struct svc);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats SEC(".maps");

static __always_inline int count(__u32 what, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&xdp_stats, &what);

	if (c)
		__sync_fetch_and_add(c, 1);
	return verdict;
}

SEC("xdp")
int k8s_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct lpm_v4_key lk;
	struct svc_key key = {};
	struct backend *be;
	struct svc *svc;
	__u16 *l4sum, *dport, sport, old_port;
	__u32 idx, old_ip;

	if ((void *)(iph + 1) > data_end)
		return count(STAT_PASS, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5)
		return count(STAT_PASS, XDP_PASS);

	lk.prefixlen = 32;
	lk.addr = iph->saddr;
	if (bpf_map_lookup_elem(&blocked, &lk))
		return count(STAT_BLOCKED, XDP_DROP);

	if (iph->frag_off & bpf_htons(0x3fff))
		return count(STAT_PASS, XDP_PASS);
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(iph + 1);

		if ((void *)(th + 1) > data_end)
			return count(STAT_PASS, XDP_PASS);
		dport = &th->dest;
		sport = th->source;
		l4sum = &th->check;
	} else if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(iph + 1);

		if ((void *)(uh + 1) > data_end)
			return count(STAT_PASS, XDP_PASS);
		dport = &uh->dest;
		sport = uh->source;
		l4sum = &uh->check;
	} else {
		return count(STAT_PASS, XDP_PASS);
	}
	key.vip = iph->daddr;
	key.port = *dport;
	key.proto = iph->protocol;
	svc = bpf_map_lookup_elem(&services, &key);
	if (!svc || svc->count == 0)
		return count(STAT_PASS, XDP_PASS);
	idx = svc->first + (bpf_ntohl(iph->saddr) + bpf_ntohs(sport)) % svc->count;
	be = bpf_map_lookup_elem(&backends, &idx);
	if (!be || be->ip == 0)
		return count(STAT_PASS, XDP_PASS);

	old_ip = iph->daddr;
	old_port = *dport;
	iph->daddr = be->ip;
	*dport = be->port;
	csum_replace4(&iph->check, old_ip, be->ip);
	/* The L4 checksum covers the pseudo header's daddr and the port; a UDP
	 * checksum of 0 means none was computed and stays 0. */
	if (iph->protocol == IPPROTO_TCP || *l4sum != 0) {
		csum_replace4(l4sum, old_ip, be->ip);
		csum_replace2(l4sum, old_port, be->port);
		if (iph->protocol == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
	}
	return count(STAT_DNAT, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
