/* tc_tailmark: a tail call after a context store. mark_head reads skb->mark
 * (the JIT then serves it from its context shadow), stores mark + 7 and
 * tail-calls slot 0 of PROG_ARRAY `mark_jmp`, mark_leaf, which returns
 * skb->mark + 100: the target must see the store (the kernel runs it on the
 * same skb). An empty slot would return 1. */
#include "common.h"

SEC("tc")
int mark_leaf(struct __sk_buff *skb)
{
	return skb->mark + 100;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} mark_jmp SEC(".maps") = {
	.values = {
		[0] = (void *)&mark_leaf,
	},
};

SEC("tc")
int mark_head(struct __sk_buff *skb)
{
	__u32 before = skb->mark;

	skb->mark = before + 7;
	bpf_tail_call(skb, &mark_jmp, 0);
	return 1;
}

char _license[] SEC("license") = "GPL";
