/* tc_tunnel: the tunnel metadata helpers (bpf_skb_{set,get}_tunnel_{key,opt})
 * with good and bad arguments. Each call's return value goes to slot N of the
 * array `tun_res`, the keys read back to `tun_keys`, the options read back to
 * `tun_opts`; the program ends with bpf_redirect to its own device, as a
 * collect_md tunnel program does (TC_ACT_REDIRECT, 7). */
#include "common.h"

#ifndef BPF_F_NO_TUNNEL_KEY
#define BPF_F_NO_TUNNEL_KEY (1ULL << 4)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 20);
	__type(key, __u32);
	__type(value, __s64);
} tun_res SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct bpf_tunnel_key);
} tun_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u8[12]);
} tun_opts SEC(".maps");

static __always_inline void put(__u32 i, long v)
{
	__s64 *p = bpf_map_lookup_elem(&tun_res, &i);

	if (p)
		*p = v;
}

static __always_inline void save_key(__u32 i, struct bpf_tunnel_key *k)
{
	bpf_map_update_elem(&tun_keys, &i, k, BPF_ANY);
}

SEC("tc")
int tunnel_probe(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {}, out = {};
	__u8 opt[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	__u8 optout[12] = {};
	__u32 zero = 0, one = 1;

	/* no metadata yet */
	put(0, bpf_skb_get_tunnel_key(skb, &out, sizeof(out), 0));
	put(1, bpf_skb_get_tunnel_opt(skb, optout, sizeof(optout)));
	put(2, bpf_skb_set_tunnel_opt(skb, opt, 8));

	key.tunnel_id = 0x123456;
	key.remote_ipv4 = 0x0a000001;
	key.local_ipv4 = 0x0a000002;
	key.tunnel_tos = 5;
	key.tunnel_ttl = 64;
	/* bad flags, a size that is no layout, a label without IPv6 */
	put(3, bpf_skb_set_tunnel_key(skb, &key, sizeof(key), 1 << 7));
	put(4, bpf_skb_set_tunnel_key(skb, &key, 12, 0));
	key.tunnel_label = 7;
	put(5, bpf_skb_set_tunnel_key(skb, &key, sizeof(key), 0));
	key.tunnel_label = 0;
	/* the old layout ending at tunnel_label */
	put(6, bpf_skb_set_tunnel_key(skb, &key, 24, BPF_F_DONT_FRAGMENT));
	put(7, bpf_skb_set_tunnel_key(skb, &key, sizeof(key),
				      BPF_F_ZERO_CSUM_TX | BPF_F_SEQ_NUMBER));
	/* read back: wrong family, then with the flags, then an old layout */
	put(8, bpf_skb_get_tunnel_key(skb, &out, sizeof(out), BPF_F_TUNINFO_IPV6));
	put(9, bpf_skb_get_tunnel_key(skb, &out, sizeof(out), BPF_F_TUNINFO_FLAGS));
	save_key(0, &out);
	__builtin_memset(&out, 0, sizeof(out));
	put(10, bpf_skb_get_tunnel_key(skb, &out, 24, 0));
	save_key(1, &out);
	/* options: size not a multiple of 4, then 8 bytes, read into too small
	 * and large enough buffers */
	put(11, bpf_skb_set_tunnel_opt(skb, opt, 6));
	put(12, bpf_skb_set_tunnel_opt(skb, opt, 8));
	put(13, bpf_skb_get_tunnel_opt(skb, optout, 4));
	put(14, bpf_skb_get_tunnel_opt(skb, optout, sizeof(optout)));
	bpf_map_update_elem(&tun_opts, &zero, optout, BPF_ANY);
	put(15, bpf_skb_get_tunnel_key(skb, &out, sizeof(out), BPF_F_TUNINFO_FLAGS));
	save_key(2, &out);
	/* a new key replaces the metadata: the options are gone */
	put(16, bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_NO_TUNNEL_KEY));
	put(17, bpf_skb_get_tunnel_opt(skb, optout, sizeof(optout)));
	bpf_map_update_elem(&tun_opts, &one, optout, BPF_ANY);
	put(18, bpf_skb_get_tunnel_key(skb, &out, sizeof(out), BPF_F_TUNINFO_FLAGS));
	save_key(3, &out);
	return bpf_redirect(skb->ifindex, 0);
}

char _license[] SEC("license") = "GPL";
