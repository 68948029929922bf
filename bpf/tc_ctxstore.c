/* tc_ctxstore: a store to every writable __sk_buff field (the kernel rewrites
 * each into one store to the sk_buff; skiff's JIT stores into the SkBuff), each
 * read back into ARRAY `r` (u64, index = step), some after a helper given the
 * context:
 *  [0] mark after storing cfg[0] ^ 0x5a5a, [1] priority after storing mark + 1,
 *  [2] tc_index after storing 0x10abc (16 bits kept), [3] queue_mapping after
 *  storing 7, [4] after then storing cfg[1] (NO_QUEUE_MAPPING 0xffff or more is
 *  ignored), [5] tc_classid after storing 0x2000b (16 bits kept), [6] cb[0]
 *  after a one-byte store at cb byte 1, [7] cb[1] after a two-byte store at cb
 *  byte 6, [8] cb[2] and [9] cb[3] after an eight-byte store at cb[2],
 *  [10] bpf_skb_load_bytes' result (a helper given the context), [11] mark and
 *  [12] cb[4] read after it, [13] mark after storing mark + 0x100.
 * Returns TC_ACT_OK; ctx_out carries mark, priority and cb[]. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 14);
	__type(key, __u32);
	__type(value, __u64);
} r SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} cfg SEC(".maps");

static __always_inline void put(__u32 k, __u64 v)
{
	bpf_map_update_elem(&r, &k, &v, 0);
}

static __always_inline __u32 cfg_at(__u32 k)
{
	__u32 *v = bpf_map_lookup_elem(&cfg, &k);

	return v ? *v : 0;
}

SEC("tc")
int tc_ctxstore(struct __sk_buff *skb)
{
	/* volatile: every read is a load of the context, not the stored value */
	volatile struct __sk_buff *s = skb;
	__u32 c0 = cfg_at(0), c1 = cfg_at(1);
	__u8 buf[4];
	long err;

	s->mark = c0 ^ 0x5a5a;
	put(0, s->mark);
	s->priority = s->mark + 1;
	put(1, s->priority);
	s->tc_index = 0x10abc;
	put(2, s->tc_index);
	s->queue_mapping = 7;
	put(3, s->queue_mapping);
	s->queue_mapping = c1;
	put(4, s->queue_mapping);
	s->tc_classid = 0x2000b;
	put(5, s->tc_classid);
	((volatile __u8 *)s->cb)[1] = 0xab;
	put(6, s->cb[0]);
	((volatile __u16 *)s->cb)[3] = 0xcdef;
	put(7, s->cb[1]);
	*(volatile __u64 *)&s->cb[2] = 0x1122334455667788ULL + c0;
	put(8, s->cb[2]);
	put(9, s->cb[3]);
	s->cb[4] = c0 + 3;
	err = bpf_skb_load_bytes(skb, 0, buf, sizeof(buf));
	put(10, err);
	put(11, s->mark);
	put(12, s->cb[4]);
	s->mark = s->mark + 0x100;
	put(13, s->mark);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
