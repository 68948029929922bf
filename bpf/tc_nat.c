/* tc_nat: destination NAT for IPv4 TCP and UDP. HASH `nat_rules` maps (daddr, dport,
 * proto) to a new (daddr, dport); a match rewrites the packet with bpf_skb_store_bytes
 * and fixes the IPv4 checksum with bpf_l3_csum_replace and the L4 checksum with
 * bpf_l4_csum_replace (BPF_F_PSEUDO_HDR for the address, BPF_F_MARK_MANGLED_0 for
 * UDP). ARRAY `nat_stats`: [0] translated, [1] not matched, [2] helper errors.
 * Always TC_ACT_OK. Addresses and ports in network order. */
#include "common.h"

struct nat_key {
	__u32 daddr;
	__u16 dport;
	__u8 proto;
	__u8 pad;
};

struct nat_val {
	__u32 daddr;
	__u16 dport;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct nat_key);
	__type(value, struct nat_val);
} nat_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} nat_stats SEC(".maps");

static __always_inline void bump(__u32 k)
{
	__u64 *c = bpf_map_lookup_elem(&nat_stats, &k);

	if (c)
		__sync_fetch_and_add(c, 1);
}

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_DST_OFF (IP_OFF + offsetof(struct iphdr, daddr))

SEC("tc")
int tc_nat(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct nat_key key = {};
	struct nat_val *v;
	__u32 l4_off, csum_off, port_off, old_ip, new_ip;
	__u16 old_port, new_port;
	__u64 csum_flags;

	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (iph->ihl < 5 || (iph->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_OK;
	l4_off = IP_OFF + iph->ihl * 4;
	key.daddr = iph->daddr;
	key.proto = iph->protocol;
	if (iph->protocol == IPPROTO_TCP) {
		csum_off = l4_off + offsetof(struct tcphdr, check);
		port_off = l4_off + offsetof(struct tcphdr, dest);
		csum_flags = 0;
	} else if (iph->protocol == IPPROTO_UDP) {
		csum_off = l4_off + offsetof(struct udphdr, check);
		port_off = l4_off + offsetof(struct udphdr, dest);
		csum_flags = BPF_F_MARK_MANGLED_0;
	} else {
		return TC_ACT_OK;
	}
	old_ip = iph->daddr;
	if (bpf_skb_load_bytes(skb, port_off, &old_port, 2) < 0) {
		bump(1);
		return TC_ACT_OK;
	}
	key.dport = old_port;
	v = bpf_map_lookup_elem(&nat_rules, &key);
	if (!v) {
		bump(1);
		return TC_ACT_OK;
	}
	new_ip = v->daddr;
	new_port = v->dport;

	if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip, csum_flags | BPF_F_PSEUDO_HDR | 4) ||
	    bpf_l4_csum_replace(skb, csum_off, old_port, new_port, csum_flags | 2) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, 4) ||
	    bpf_skb_store_bytes(skb, IP_DST_OFF, &new_ip, 4, 0) ||
	    bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0)) {
		bump(2);
		return TC_ACT_OK;
	}
	bump(0);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
