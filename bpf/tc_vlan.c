/* tc_vlan: VLAN tags and room. tc_vlan_push pushes 802.1Q tag 100 with
 * bpf_skb_vlan_push (the skb keeps it as an accelerated tag: the bytes do not
 * change) and records the return, vlan_present and vlan_tci after it; tc_vlan_pop
 * pops it again; tc_adjust_room grows the room after the IP header by 8 bytes
 * (BPF_ADJ_ROOM_NET) and records the return. ARRAY `vlan_rets`: [0] push ret,
 * [1] vlan_present, [2] vlan_tci, [3] pop ret, [4] adjust_room ret, [5] len after,
 * [6] vlan_proto after the push (a __be16, network order as the field holds it).
 * All return TC_ACT_OK. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __s64);
} vlan_rets SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&vlan_rets, &k);

	if (slot)
		*slot = v;
}

SEC("tc")
int tc_vlan_push(struct __sk_buff *skb)
{
	put(0, bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 100));
	put(1, skb->vlan_present);
	put(2, skb->vlan_tci);
	put(6, skb->vlan_proto);
	return TC_ACT_OK;
}

SEC("tc")
int tc_vlan_pop(struct __sk_buff *skb)
{
	bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 100);
	put(3, bpf_skb_vlan_pop(skb));
	put(1, skb->vlan_present);
	return TC_ACT_OK;
}

SEC("tc")
int tc_adjust_room(struct __sk_buff *skb)
{
	put(4, bpf_skb_adjust_room(skb, 8, BPF_ADJ_ROOM_NET, 0));
	put(5, skb->len);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
