/* tc_classify: a direct-action tc classifier after seed 002's cls_main. Classifies by
 * IP protocol (TCP -> mark 1, UDP -> 2, ICMP/ICMPv6 -> 3, other -> 0), sets skb->mark,
 * skb->priority (= mark) and skb->tc_classid (1:(10+mark)), counts packets and
 * skb->len bytes per mark (ARRAY `mark_stats`) and per (ifindex, protocol) (HASH
 * `if_stats`); always TC_ACT_OK.
 * cls_fields reads the other __sk_buff fields (cb[], queue_mapping, pkt_type,
 * ingress_ifindex, data/data_end, the flow hash from bpf_get_hash_recalc) into ARRAY
 * `fields` and writes cb[0..1]. The flow hash is keyed by a random per-boot secret, so
 * only whether it is non-zero is recorded. */
#include "common.h"

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct if_key {
	__u32 ifindex;
	__u32 protocol; /* skb->protocol, network order as the field holds it */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct counter);
} mark_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct if_key);
	__type(value, struct counter);
} if_stats SEC(".maps");

struct skb_fields {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 cb[5];
	__u32 hash_nonzero;
	__u32 data_len;
	__u32 tc_index;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct skb_fields);
} fields SEC(".maps");

static __always_inline __u32 l4_proto(struct __sk_buff *skb)
{
	return ip_proto_of((void *)(long)skb->data, (void *)(long)skb->data_end);
}

SEC("tc")
int cls_main(struct __sk_buff *skb)
{
	__u32 proto = l4_proto(skb), mark;
	struct if_key ik = { .ifindex = skb->ifindex, .protocol = skb->protocol };
	struct counter *c;

	switch (proto) {
	case IPPROTO_TCP:
		mark = 1;
		break;
	case IPPROTO_UDP:
		mark = 2;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		mark = 3;
		break;
	default:
		mark = 0;
	}
	skb->mark = mark;
	skb->priority = mark;
	skb->tc_classid = TC_H_MAKE(1 << 16, 10 + mark);

	c = bpf_map_lookup_elem(&mark_stats, &mark);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, skb->len);
	}
	c = bpf_map_lookup_elem(&if_stats, &ik);
	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, skb->len);
	} else {
		struct counter init = { 1, skb->len };

		bpf_map_update_elem(&if_stats, &ik, &init, BPF_NOEXIST);
	}
	return TC_ACT_OK;
}

SEC("tc")
int cls_fields(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct skb_fields *f = bpf_map_lookup_elem(&fields, &zero);

	if (!f)
		return TC_ACT_SHOT;
	f->len = skb->len;
	f->pkt_type = skb->pkt_type;
	f->mark = skb->mark;
	f->queue_mapping = skb->queue_mapping;
	f->protocol = skb->protocol;
	f->vlan_present = skb->vlan_present;
	f->priority = skb->priority;
	f->ingress_ifindex = skb->ingress_ifindex;
	f->ifindex = skb->ifindex;
	f->cb[0] = skb->cb[0];
	f->cb[1] = skb->cb[1];
	f->cb[2] = skb->cb[2];
	f->cb[3] = skb->cb[3];
	f->cb[4] = skb->cb[4];
	f->tc_index = skb->tc_index;
	f->data_len = skb->data_end - skb->data;
	f->hash_nonzero = bpf_get_hash_recalc(skb) != 0;
	skb->cb[0] = skb->cb[0] + 1;
	skb->cb[1] = skb->len;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
