/* tc_perf: bpf_perf_event_output from TC to a PERF_EVENT_ARRAY `events` (4 slots)
 * where no perf event is ever attached; returns in ARRAY `r` (s64):
 *  [0] BPF_F_CURRENT_CPU (-ENOENT: the slot is empty), [1] index 9 (-E2BIG: beyond
 *  max_entries), [2] flag bit 60, outside BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK
 *  (-EINVAL), [3] a ctx length (flags bits
 *  32..51) longer than the packet (-EFAULT), [4] a ctx length of 14 on the empty
 *  current-CPU slot (-ENOENT).
 * Returns TC_ACT_OK. Note: the kernel refuses BPF_MAP_LOOKUP_ELEM on a
 * PERF_EVENT_ARRAY from the syscall (bpf_fd_array_map_lookup_elem: -ENOTSUPP). */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __s64);
} r SEC(".maps");

static __always_inline void put(__u32 k, __s64 v)
{
	__s64 *slot = bpf_map_lookup_elem(&r, &k);

	if (slot)
		*slot = v;
}

SEC("tc")
int tc_perf(struct __sk_buff *skb)
{
	__u64 rec = 0x5eed;

	put(0, bpf_perf_event_output(skb, &events, BPF_F_CURRENT_CPU, &rec, sizeof(rec)));
	put(1, bpf_perf_event_output(skb, &events, 9, &rec, sizeof(rec)));
	put(2, bpf_perf_event_output(skb, &events, 1ULL << 60, &rec, sizeof(rec)));
	put(3, bpf_perf_event_output(skb, &events, BPF_F_CURRENT_CPU | (9999ULL << 32),
				     &rec, sizeof(rec)));
	put(4, bpf_perf_event_output(skb, &events, BPF_F_CURRENT_CPU | (14ULL << 32),
				     &rec, sizeof(rec)));
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
