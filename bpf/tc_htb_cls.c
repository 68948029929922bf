/* tc_htb_cls: the classifier of the tc-htb example (examples/tc-htb), attached
 * as `filter add dev eth1 parent 1: bpf da obj cls.o sec tc classid 1:`. Picks
 * the htb class by UDP destination port through skb->tc_classid (cls_bpf ORs
 * the filter's classid major in): 5001 -> 1:10, 5002 -> 1:20; anything else
 * is not classified (TC_ACT_UNSPEC) and goes to htb's default class. */
#include "common.h"

SEC("tc")
int tc_htb_cls(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = (void *)ip + sizeof(*ip);

	if ((void *)(udp + 1) > data_end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	switch (bpf_ntohs(udp->dest)) {
	case 5001:
		skb->tc_classid = 0x10;
		return TC_ACT_OK;
	case 5002:
		skb->tc_classid = 0x20;
		return TC_ACT_OK;
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
