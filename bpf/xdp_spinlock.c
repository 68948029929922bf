/* xdp_spinlock: bpf_spin_lock / bpf_spin_unlock around read-modify-write of map
 * values holding a `struct bpf_spin_lock`: ARRAY `lk_arr` slot 0 and HASH `lk_hash`
 * key = IP protocol (or 0; inserted with BPF_NOEXIST when absent). Under the lock:
 * packets += 1, bytes += frame length, last = frame length. The lock word reads as 0
 * from the syscall. Returns XDP_PASS, XDP_DROP when the array lookup failed.
 * Needs map BTF (the verifier finds the lock's offset in the value's BTF). */
#include "common.h"

struct locked {
	struct bpf_spin_lock lock;
	__u32 last;
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct locked);
} lk_arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct locked);
} lk_hash SEC(".maps");

static __always_inline void bump(struct locked *l, __u32 len)
{
	bpf_spin_lock(&l->lock);
	l->packets += 1;
	l->bytes += len;
	l->last = len;
	bpf_spin_unlock(&l->lock);
}

SEC("xdp")
int xdp_spinlock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data, zero = 0, proto = 0;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct locked *l, fresh = {};

	if ((void *)(iph + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		proto = iph->protocol;
	l = bpf_map_lookup_elem(&lk_hash, &proto);
	if (!l) {
		bpf_map_update_elem(&lk_hash, &proto, &fresh, BPF_NOEXIST);
		l = bpf_map_lookup_elem(&lk_hash, &proto);
	}
	if (l)
		bump(l, len);
	l = bpf_map_lookup_elem(&lk_arr, &zero);
	if (!l)
		return XDP_DROP;
	bump(l, len);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
