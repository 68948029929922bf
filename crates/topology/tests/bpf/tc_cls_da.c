// A cls_bpf direct-action program for tests/tc_cls_kernel.rs: by UDP
// destination port, 5001 goes on to the next filter (TC_ACT_UNSPEC), 5002
// is dropped (TC_ACT_SHOT), anything else stops here (TC_ACT_OK).
#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))

static int dport(struct __sk_buff *skb)
{
	unsigned char *d = (void *)(long)skb->data, *e = (void *)(long)skb->data_end;
	if (d + 14 + 20 + 8 > e || d[12] != 0x08 || d[13] != 0 || d[23] != 17)
		return -1;
	return (d[36] << 8) | d[37];
}

SEC("tc") int cls_da(struct __sk_buff *skb)
{
	int p = dport(skb);
	if (p == 5001)
		return -1;
	if (p == 5002)
		return 2;
	return 0;
}

// Classic mode: 0 is no match, -1 the filter's classid, else a classid.
SEC("classic") int cls_classic(struct __sk_buff *skb)
{
	int p = dport(skb);
	if (p == 5001)
		return 0;
	if (p == 5002)
		return -1;
	return 0x10007;
}

char _license[] SEC("license") = "GPL";
