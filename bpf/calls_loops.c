/* calls_loops: bpf-to-bpf calls and bounded loops over the first header bytes.
 * results[0]: static noinline ip_proto() (IP protocol, 0 when not IPv4/IPv6)
 * results[1]: global function sum16() (16-bit word sum of the first 14 bytes, folded)
 * results[2]: a constant-bound `for` loop: XOR of the first 32 bytes (fewer if short)
 * results[3]: bpf_loop(16, ...) callback summing byte[i] * (i + 1) of the first 16
 *             bytes copied to the stack
 * results[4]: number of bytes the `for` loop saw.
 * Returns XDP_DROP when results[0] is 0 (not IP), else XDP_PASS. */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

static __noinline __u32 ip_proto(void *data, void *data_end)
{
	return ip_proto_of(data, data_end);
}

__noinline int sum16(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *w = data;
	__u32 s = 0;

	if (data + 14 > data_end)
		return 0;
	for (int i = 0; i < 7; i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

struct loop_ctx {
	__u8 buf[16];
	__u64 acc;
};

static long weigh(__u64 i, void *arg)
{
	struct loop_ctx *lc = arg;

	if (i >= 16)
		return 1;
	lc->acc += (__u64)lc->buf[i] * (i + 1);
	return 0;
}

static __always_inline void put(__u32 k, __u64 v)
{
	__u64 *slot = bpf_map_lookup_elem(&results, &k);

	if (slot)
		*slot = v;
}

SEC("xdp")
int xdp_calls_loops(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct loop_ctx lc = {};
	__u8 x = 0;
	__u32 n = 0, proto;

	proto = ip_proto(data, data_end);
	put(0, proto);
	put(1, sum16(ctx));

	for (int i = 0; i < 32; i++) {
		__u8 *p = data + i;

		if ((void *)(p + 1) > data_end)
			break;
		x ^= *p;
		n++;
	}
	put(2, x);
	put(4, n);

	if (data + 16 <= data_end)
		__builtin_memcpy(lc.buf, data, 16);
	bpf_loop(16, weigh, &lc, 0);
	put(3, lc.acc);
	return proto ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
