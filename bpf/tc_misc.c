/* tc_misc: assorted skb helpers and writable __sk_buff fields; every result goes to
 * ARRAY `r` (s64, index = step):
 *  [0] bpf_skb_load_bytes_relative(0, 4 bytes, BPF_HDR_START_MAC), [1] those bytes
 *  (as a native u32), [2] the same from BPF_HDR_START_NET, [3] its bytes, [4] an
 *  unknown start header (-EINVAL), [5] an offset past the end (-EFAULT),
 *  [6] bpf_check_mtu(skb, 0, &mtu, 70000, 0) (FRAG_NEEDED), [7] mtu after it,
 *  [8] bpf_check_mtu on ifindex 4242 (-ENODEV), [9] BPF_MTU_CHK_SEGS with a
 *  len_diff (-EINVAL),
 *  [10] skb->pkt_type, [11] bpf_skb_change_type(PACKET_OTHERHOST), [12] pkt_type
 *  after, [13] bpf_skb_change_type(7) (-EINVAL), [14] bpf_skb_change_type(
 *  PACKET_HOST), [15] pkt_type after,
 *  [16] bpf_get_smp_processor_id(), [17] !!bpf_jiffies64(), [18]
 *  !!bpf_ktime_get_boot_ns(),
 *  [19] bpf_trace_printk("d=%d u=%u x=%x\n", -5, 4000000000, 0xbeef) (the formatted
 *  length), [20] bpf_trace_printk("s=%s!\n", "skiff"), [21] the same with a NULL
 *  string, [22] an unsupported conversion %n (-EINVAL),
 *  [23] skb->tstamp as it came in, [24] after writing tstamp + 1000,
 *  [25] queue_mapping after writing 5, [26] after then writing cfg[0] (0xffff or
 *  more is ignored), [27] tc_index after writing 0x1234 then cfg[1].
 * Returns TC_ACT_OK. */
#include "common.h"

#ifndef BPF_HDR_START_MAC
#define BPF_HDR_START_MAC 0
#define BPF_HDR_START_NET 1
#endif
#define PACKET_HOST 0
#define PACKET_OTHERHOST 3

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 28);
	__type(key, __u32);
	__type(value, __s64);
} r SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} cfg SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&r, &k);

	if (slot)
		*slot = v;
}

SEC("tc")
int tc_misc(struct __sk_buff *skb)
{
	static const char f1[] = "d=%d u=%u x=%x\n";
	static const char f2[] = "s=%s!\n";
	static const char f3[] = "bad %n\n";
	char name[8] = "skiff";
	__u32 buf = 0, mtu = 0, k0 = 0, k1 = 1, *qm, *ti;

	put(0, bpf_skb_load_bytes_relative(skb, 0, &buf, 4, BPF_HDR_START_MAC));
	put(1, buf);
	buf = 0;
	put(2, bpf_skb_load_bytes_relative(skb, 0, &buf, 4, BPF_HDR_START_NET));
	put(3, buf);
	put(4, bpf_skb_load_bytes_relative(skb, 0, &buf, 4, 2));
	put(5, bpf_skb_load_bytes_relative(skb, 4000, &buf, 4, BPF_HDR_START_MAC));

	put(6, bpf_check_mtu(skb, 0, &mtu, 70000, 0));
	put(7, mtu);
	put(8, bpf_check_mtu(skb, 4242, &mtu, 0, 0));
	put(9, bpf_check_mtu(skb, 0, &mtu, 10, BPF_MTU_CHK_SEGS));

	put(10, skb->pkt_type);
	put(11, bpf_skb_change_type(skb, PACKET_OTHERHOST));
	put(12, skb->pkt_type);
	put(13, bpf_skb_change_type(skb, 7));
	put(14, bpf_skb_change_type(skb, PACKET_HOST));
	put(15, skb->pkt_type);

	put(16, bpf_get_smp_processor_id());
	put(17, !!bpf_jiffies64());
	put(18, !!bpf_ktime_get_boot_ns());

	put(19, bpf_trace_printk(f1, sizeof(f1), -5, 4000000000u, 0xbeef));
	put(20, bpf_trace_printk(f2, sizeof(f2), name));
	put(21, bpf_trace_printk(f2, sizeof(f2), 0));
	put(22, bpf_trace_printk(f3, sizeof(f3), &buf));

	put(23, skb->tstamp);
	skb->tstamp = skb->tstamp + 1000;
	put(24, skb->tstamp);

	skb->queue_mapping = 5;
	qm = bpf_map_lookup_elem(&cfg, &k0);
	put(25, skb->queue_mapping);
	skb->queue_mapping = qm ? *qm : 0xffff;
	put(26, skb->queue_mapping);

	skb->tc_index = 0x1234;
	ti = bpf_map_lookup_elem(&cfg, &k1);
	if (ti)
		skb->tc_index = *ti;
	put(27, skb->tc_index);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
