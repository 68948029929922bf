/* tc_helpers: the return values of skb helpers, each kept in ARRAY `hret`:
 * [0] bpf_skb_load_bytes(0, 14) , [1] the EtherType it read (host order),
 * [2] bpf_skb_load_bytes past the end (-EFAULT), [3] bpf_skb_pull_data(34),
 * [4] data_end - data after the pull, [5] bpf_skb_change_tail(len + 8),
 * [6] skb->len after, [7] bpf_fib_lookup to 127.0.0.1 (a local route: NOT_FWDED or
 * FWD_DISABLED), [8] bpf_check_mtu(skb, 0, &mtu_len, 0, 0), [9] mtu_len after it,
 * [10] bpf_skb_change_head(14, 0), [11] skb->len after.
 * tc_helpers returns TC_ACT_OK.
 * tc_redirects returns the value of the redirect helper chosen by ARRAY
 * `redir_cfg` ([0] kind: 0 bpf_redirect, 1 bpf_redirect_peer, 2 bpf_redirect_neigh,
 * 3 bpf_clone_redirect (its return is stored in hret[0], program returns
 * TC_ACT_OK), 4 bpf_redirect with an invalid flag; [1] ifindex). */
#include "common.h"

#ifndef AF_INET
#define AF_INET 2
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 12);
	__type(key, __u32);
	__type(value, __s64);
} hret SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} redir_cfg SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&hret, &k);

	if (slot)
		*slot = v;
}

SEC("tc")
int tc_helpers(struct __sk_buff *skb)
{
	struct ethhdr eth = {};
	struct bpf_fib_lookup fib = {};
	__u32 mtu_len = 0;
	__u8 buf[4];

	put(0, bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)));
	put(1, bpf_ntohs(eth.h_proto));
	put(2, bpf_skb_load_bytes(skb, skb->len, buf, sizeof(buf)));
	put(3, bpf_skb_pull_data(skb, 34));
	put(4, skb->data_end - skb->data);
	put(5, bpf_skb_change_tail(skb, skb->len + 8, 0));
	put(6, skb->len);

	fib.family = AF_INET;
	fib.ifindex = skb->ifindex;
	fib.tot_len = 20;
	fib.ipv4_src = bpf_htonl(0x7f000001);
	fib.ipv4_dst = bpf_htonl(0x7f000001);
	put(7, bpf_fib_lookup(skb, &fib, sizeof(fib), 0));
	put(8, bpf_check_mtu(skb, 0, &mtu_len, 0, 0));
	put(9, mtu_len);
	put(10, bpf_skb_change_head(skb, 14, 0));
	put(11, skb->len);
	return TC_ACT_OK;
}

SEC("tc")
int tc_redirects(struct __sk_buff *skb)
{
	__u32 k0 = 0, k1 = 1, *kind = bpf_map_lookup_elem(&redir_cfg, &k0);
	__u32 *ifindex = bpf_map_lookup_elem(&redir_cfg, &k1);

	if (!kind || !ifindex)
		return TC_ACT_SHOT;
	switch (*kind) {
	case 0:
		return bpf_redirect(*ifindex, 0);
	case 1:
		return bpf_redirect_peer(*ifindex, 0);
	case 2:
		return bpf_redirect_neigh(*ifindex, 0, 0, 0);
	case 3:
		put(0, bpf_clone_redirect(skb, *ifindex, 0));
		return TC_ACT_OK;
	default:
		return bpf_redirect(*ifindex, 0x80);
	}
}

char _license[] SEC("license") = "GPL";
