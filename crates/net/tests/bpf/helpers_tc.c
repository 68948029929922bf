// Kernel oracle for skiff-net TC helpers: each helper's return value (and a few
// skb fields after it) is stored in res[i]. Run with a 50-byte Eth/IPv4/UDP frame.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 96);
	__type(key, __u32);
	__type(value, __u64);
} res SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} perf SEC(".maps");

static __always_inline void put(__u32 i, __u64 v)
{
	bpf_map_update_elem(&res, &i, &v, 0);
}

struct fib {
	__u8 family, l4, pad[6];
	__u32 ifindex;
	__u8 rest[52];
};

SEC("tc")
int helpers_tc(struct __sk_buff *skb)
{
	__u32 a[4] = {0x01020304, 0xa0b0c0d0, 0xffffffff, 0x00000001};
	__u8 b[104];
	__u32 mtu = 0;
	struct fib f = {};
	__u64 v = 0;
	int i;

	for (i = 0; i < 104; i++)
		b[i] = (__u8)(i * 37 + 11);
	put(0, bpf_csum_diff(0, 0, a, 4, 0));
	put(1, bpf_csum_diff(a, 8, a + 2, 8, 0));
	put(2, bpf_csum_diff(a, 4, 0, 0, 0x1234));
	put(3, bpf_csum_diff(0, 0, (void *)b, 6, 0));
	put(4, bpf_csum_diff(0, 0, a, 16, 0xffffffff));
	put(5, bpf_csum_diff(0, 0, (void *)b, 40, 0));
	put(6, bpf_csum_diff(0, 0, (void *)b, 104, 7));
	put(7, bpf_csum_diff((void *)b, 100, a, 12, 0xabcdef01));
	put(8, bpf_csum_diff(0, 0, a + 2, 4, 0));
	put(9, bpf_csum_diff(0, 0, (void *)b, 3, 0));

	put(10, bpf_skb_store_bytes(skb, 0, a, 4, 4));
	put(11, bpf_skb_store_bytes(skb, 0x7fffffff, a, 4, 0));
	put(12, bpf_skb_store_bytes(skb, 48, a, 4, 0));
	put(13, bpf_skb_load_bytes(skb, 48, &v, 4));
	put(14, bpf_skb_load_bytes_relative(skb, 12, &v, 4, BPF_HDR_START_NET));
	put(15, v);
	put(16, bpf_skb_load_bytes_relative(skb, 0, &v, 4, 7));
	put(17, bpf_csum_update(skb, 5));
	put(18, bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY));
	put(19, bpf_csum_level(skb, 9));
	put(20, bpf_skb_pull_data(skb, 0));
	put(21, bpf_skb_pull_data(skb, 1000));

	/* IPv4 header csum at 24, saddr at 26; UDP csum at 40 */
	put(22, bpf_l3_csum_replace(skb, 24, bpf_htonl(0x0a000001), bpf_htonl(0x0a000063), 4));
	put(23, bpf_l4_csum_replace(skb, 40, bpf_htonl(0x0a000001), bpf_htonl(0x0a000063), BPF_F_PSEUDO_HDR | 4));
	put(24, bpf_l3_csum_replace(skb, 25, 0, 0, 4));
	put(25, bpf_l3_csum_replace(skb, 24, 1, 0, 0));
	put(26, bpf_l4_csum_replace(skb, 40, bpf_htons(0x1111), bpf_htons(0x2222), 2));
	put(27, bpf_l4_csum_replace(skb, 40, 0, 0x12345678, BPF_F_PSEUDO_HDR));
	put(28, bpf_l4_csum_replace(skb, 40, 0, 0, 0x40));
	put(29, bpf_l3_csum_replace(skb, 24, bpf_htons(0x4000), bpf_htons(0x0000), 2));
	put(30, bpf_l3_csum_replace(skb, 24, 0, 0xdeadbeef, 0));

	put(31, bpf_redirect(1, 2));
	put(32, bpf_redirect(1, BPF_F_INGRESS));
	put(33, bpf_redirect_peer(1, 1));
	put(34, bpf_redirect_neigh(1, 0, 0, 1));
	put(35, bpf_clone_redirect(skb, 99, 0));
	put(36, bpf_clone_redirect(skb, 1, 2));
	put(37, bpf_clone_redirect(skb, 1, 0));

	put(38, bpf_check_mtu(skb, 0, &mtu, 0, 0));
	put(39, mtu);
	mtu = 0;
	put(40, bpf_check_mtu(skb, 99, &mtu, 0, 0));
	mtu = 65600;
	put(41, bpf_check_mtu(skb, 1, &mtu, 0, 0));
	put(42, mtu);
	mtu = 0;
	put(43, bpf_check_mtu(skb, 0, &mtu, 0, 4));

	f.family = 2; f.ifindex = 1;
	put(44, bpf_fib_lookup(skb, (void *)&f, sizeof(f), 0));
	put(45, bpf_fib_lookup(skb, (void *)&f, 32, 0));
	put(46, bpf_fib_lookup(skb, (void *)&f, sizeof(f), 0x80));
	f.family = 7;
	put(47, bpf_fib_lookup(skb, (void *)&f, sizeof(f), 0));
	f.family = 10; f.ifindex = 99;
	put(48, bpf_fib_lookup(skb, (void *)&f, sizeof(f), 0));
	f.family = 2; f.ifindex = 1;
	put(49, bpf_fib_lookup(skb, (void *)&f, sizeof(f), BPF_FIB_LOOKUP_DIRECT));

	put(50, bpf_perf_event_output(skb, &perf, 0, a, 4));
	put(51, bpf_perf_event_output(skb, &perf, 9, a, 4));
	put(52, bpf_perf_event_output(skb, &perf, BPF_F_CURRENT_CPU | (1000ULL << 32), a, 4));
	put(53, bpf_perf_event_output(skb, &perf, 1ULL << 40, a, 4));

	put(54, bpf_set_hash(skb, 0x1234));
	put(55, skb->hash);
	bpf_set_hash_invalid(skb); put(56, 0);
	put(57, skb->hash);

	put(58, bpf_skb_change_tail(skb, 10, 0));
	put(59, bpf_skb_change_tail(skb, 56, 0));
	put(60, skb->len);
	put(61, bpf_skb_change_tail(skb, 52, 1));
	put(62, bpf_skb_change_head(skb, 4, 0));
	put(63, skb->len);
	put(64, bpf_skb_adjust_room(skb, 0x1000, BPF_ADJ_ROOM_NET, 0));
	put(65, bpf_skb_adjust_room(skb, 8, 5, 0));
	put(66, bpf_skb_adjust_room(skb, -40, BPF_ADJ_ROOM_NET, 0));
	put(67, skb->protocol);
	return TC_ACT_OK;
}

SEC("tc")
int room_tc(struct __sk_buff *skb)
{
	put(0, bpf_skb_adjust_room(skb, 8, BPF_ADJ_ROOM_NET, 0));
	put(1, skb->len);
	put(2, bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_MAC, 0));
	put(3, skb->len);
	put(4, bpf_skb_adjust_room(skb, -30, BPF_ADJ_ROOM_NET, 0));
	put(5, bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, (1ULL << 7)));
	put(6, bpf_skb_adjust_room(skb, 20, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L3_IPV6));
	put(7, bpf_skb_adjust_room(skb, 20, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4));
	put(8, bpf_skb_adjust_room(skb, 20, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4));
	put(9, bpf_skb_change_tail(skb, 80, 0));
	put(10, skb->len);
	return TC_ACT_OK;
}

SEC("tc")
int vlan_tc(struct __sk_buff *skb)
{
	put(0, bpf_skb_vlan_push(skb, bpf_htons(0x8100), 5));
	put(1, skb->vlan_present);
	put(2, skb->vlan_tci);
	put(3, skb->len);
	put(4, bpf_skb_vlan_push(skb, bpf_htons(0x1234), 7));
	put(5, skb->len);
	put(6, skb->vlan_proto);
	put(7, skb->protocol);
	put(8, bpf_skb_vlan_pop(skb));
	put(9, skb->vlan_present);
	put(10, skb->vlan_tci);
	put(11, skb->len);
	put(12, skb->protocol);
	put(13, bpf_skb_change_proto(skb, bpf_htons(0x86dd), 0));
	put(14, skb->len);
	put(15, skb->protocol);
	put(16, bpf_skb_change_proto(skb, bpf_htons(0x86dd), 0));
	put(17, bpf_skb_change_proto(skb, bpf_htons(0x0800), 1));
	put(18, bpf_get_hash_recalc(skb) != 0);
	put(19, bpf_skb_vlan_pop(skb));
	put(20, skb->vlan_present);
	put(21, skb->len);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
