// bpf_fib_lookup oracle: the packet carries (after a 14-byte Ethernet header)
// a struct bpf_fib_lookup (64 bytes) and the flags (4 bytes); the program calls
// the helper with them and stores the struct after the call and the return
// code in res[0]. Run with BPF_PROG_TEST_RUN inside a network namespace.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct out {
	__u8 params[64];
	__s64 rc;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct out);
} res SEC(".maps");

static __always_inline int run(void *ctx, void *data, void *data_end, int xdp)
{
	struct bpf_fib_lookup p;
	__u32 k = 0, flags;
	struct out *o;

	if (data + 14 + 64 + 4 > data_end)
		return 0;
	__builtin_memcpy(&p, data + 14, 64);
	__builtin_memcpy(&flags, data + 14 + 64, 4);
	o = bpf_map_lookup_elem(&res, &k);
	if (!o)
		return 0;
	o->rc = bpf_fib_lookup(ctx, &p, sizeof(p), flags);
	__builtin_memcpy(o->params, &p, 64);
	return 0;
}

SEC("tc")
int fib_tc(struct __sk_buff *skb)
{
	return run(skb, (void *)(long)skb->data, (void *)(long)skb->data_end, 0);
}

SEC("xdp")
int fib_xdp(struct xdp_md *ctx)
{
	run(ctx, (void *)(long)ctx->data, (void *)(long)ctx->data_end, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
