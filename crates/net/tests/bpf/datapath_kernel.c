// Programs for the kernel differential test of the datapath
// (tests/datapath_kernel.rs). One program per object: build with
// -DPROG_<NAME> (iproute2 picks the program by section name, so each object
// holds exactly one "xdp" or "tc" section) and -DR1_IFINDEX=<n> (the
// redirect target).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef R1_IFINDEX
#define R1_IFINDEX 4
#endif

/* The rewritten addresses: r1's MAC as source, a host behind b0 that is not
 * b0 (so the namespace behind it drops the frame as PACKET_OTHERHOST). */
static const unsigned char R1_MAC[ETH_ALEN] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x0c};
static const unsigned char NEXT_MAC[ETH_ALEN] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x99};

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* Per UDP destination port (0: not UDP/IPv4): packets and bytes seen. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct counter);
} dpk_ports SEC(".maps");

/* Per verdict (the program's return code): packets and bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct counter);
} dpk_verdicts SEC(".maps");

static __always_inline void count(void *map, __u32 key, __u64 len)
{
	struct counter *c = bpf_map_lookup_elem(map, &key);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, len);
	} else {
		struct counter n = {1, len};
		bpf_map_update_elem(map, &key, &n, BPF_NOEXIST);
	}
}

/* The UDP destination port of an Ethernet/IPv4/UDP frame, 0 otherwise. */
static __always_inline __u32 udp_dport(void *data, void *end, struct iphdr **ipp)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return 0;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return 0;
	*ipp = ip;
	return bpf_ntohs(udp->dest);
}

#ifdef PROG_TC_REWRITE_REDIRECT
/* tc ingress: UDP to 7001 gets new MACs, TTL - 1 (bpf_l3_csum_replace),
 * destination port 7101 (bpf_l4_csum_replace) and leaves through r1
 * (bpf_redirect egress); everything else TC_ACT_OK. */
SEC("tc") int tc_rewrite_redirect(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = 0;
	__u32 port = udp_dport(data, end, &ip);
	count(&dpk_ports, port, skb->len);
	if (port != 7001 || !ip) {
		count(&dpk_verdicts, TC_ACT_OK, skb->len);
		return TC_ACT_OK;
	}
	__u16 old_ttl = bpf_htons((__u16)ip->ttl << 8);
	__u16 new_ttl = bpf_htons((__u16)(ip->ttl - 1) << 8);
	const int ip_off = ETH_HLEN, udp_off = ETH_HLEN + sizeof(struct iphdr);
	bpf_l3_csum_replace(skb, ip_off + offsetof(struct iphdr, check), old_ttl, new_ttl, 2);
	bpf_skb_store_bytes(skb, ip_off + offsetof(struct iphdr, ttl), (char *)&new_ttl, 1, 0);
	__be16 oldp = bpf_htons(7001), newp = bpf_htons(7101);
	bpf_l4_csum_replace(skb, udp_off + offsetof(struct udphdr, check), oldp, newp,
			    BPF_F_MARK_MANGLED_0 | 2);
	bpf_skb_store_bytes(skb, udp_off + offsetof(struct udphdr, dest), &newp, 2, 0);
	bpf_skb_store_bytes(skb, 0, NEXT_MAC, ETH_ALEN, 0);
	bpf_skb_store_bytes(skb, ETH_ALEN, R1_MAC, ETH_ALEN, 0);
	count(&dpk_verdicts, TC_ACT_REDIRECT, skb->len);
	return bpf_redirect(R1_IFINDEX, 0);
}
#endif

#ifdef PROG_XDP_BLOCKLIST
/* XDP: frames from 10.1.0.16/28 are dropped, the rest pass; counted per
 * verdict and per destination port. */
SEC("xdp") int xdp_blocklist(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u64 len = end - data;
	struct iphdr *ip = 0;
	__u32 port = udp_dport(data, end, &ip);
	count(&dpk_ports, port, len);
	if (ip && (bpf_ntohl(ip->saddr) & 0xfffffff0) == 0x0a010010) {
		count(&dpk_verdicts, XDP_DROP, len);
		return XDP_DROP;
	}
	count(&dpk_verdicts, XDP_PASS, len);
	return XDP_PASS;
}
#endif

#ifdef PROG_XDP_REFLECT
/* XDP: UDP to 7003 goes back out (XDP_TX) with MACs swapped and the IPv4
 * addresses swapped (the checksum does not change); UDP to 7004 is
 * redirected to r1 (bpf_redirect) with new MACs; the rest pass. */
SEC("xdp") int xdp_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u64 len = end - data;
	struct iphdr *ip = 0;
	__u32 port = udp_dport(data, end, &ip);
	count(&dpk_ports, port, len);
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	if (port == 7003 && ip) {
		unsigned char tmp[ETH_ALEN];
		__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
		__be32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		count(&dpk_verdicts, XDP_TX, len);
		return XDP_TX;
	}
	if (port == 7004) {
		__builtin_memcpy(eth->h_dest, NEXT_MAC, ETH_ALEN);
		__builtin_memcpy(eth->h_source, R1_MAC, ETH_ALEN);
		count(&dpk_verdicts, XDP_REDIRECT, len);
		return bpf_redirect(R1_IFINDEX, 0);
	}
	count(&dpk_verdicts, XDP_PASS, len);
	return XDP_PASS;
}
#endif

#ifdef PROG_XDP_PASS
/* XDP on the receiving end of an XDP_TX / redirect: counts and passes. */
SEC("xdp") int xdp_count_pass(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = 0;
	count(&dpk_ports, udp_dport(data, end, &ip), end - data);
	count(&dpk_verdicts, XDP_PASS, end - data);
	return XDP_PASS;
}
#endif

#ifdef PROG_TC_REDIRECT_PEER
/* tc ingress on r0: UDP to 7006 gets mark 5 and goes straight into r1's peer
 * b0 (bpf_redirect_peer: b0's ingress in B, no xmit on r1); the rest
 * TC_ACT_OK. */
SEC("tc") int tc_redirect_peer(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = 0;
	__u32 port = udp_dport(data, end, &ip);
	count(&dpk_ports, port, skb->len);
	if (port != 7006) {
		count(&dpk_verdicts, TC_ACT_OK, skb->len);
		return TC_ACT_OK;
	}
	skb->mark = 5;
	count(&dpk_verdicts, TC_ACT_REDIRECT, skb->len);
	return bpf_redirect_peer(R1_IFINDEX, 0);
}
#endif

#ifdef PROG_TC_COUNT
/* tc ingress on b0: counts per destination port, and per (mark & 3) << 2 |
 * pkt_type & 3 (what crossed the namespace boundary), TC_ACT_OK. */
SEC("tc") int tc_count(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = 0;
	count(&dpk_ports, udp_dport(data, end, &ip), skb->len);
	count(&dpk_verdicts, ((skb->mark & 1) << 2) | (skb->pkt_type & 3), skb->len);
	return TC_ACT_OK;
}
#endif

char _license[] SEC("license") = "GPL";
