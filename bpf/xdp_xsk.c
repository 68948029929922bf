/* xdp_xsk: bpf_redirect_map to an XSKMAP (AF_XDP sockets) keyed by the receive
 * queue. No socket is ever inserted here (that needs an AF_XDP socket), so the slot
 * is empty and the lower bits of the flags are the verdict:
 * rets[0] = redirect_map(xsks, rx_queue_index, XDP_TX) (XDP_TX), rets[1] =
 * redirect_map(xsks, 64, XDP_DROP) (out of range: XDP_DROP), rets[2] =
 * redirect_map(xsks, 0, BPF_F_BROADCAST) (not a flag XSKMAP takes: XDP_ABORTED).
 * Returns the first call again. Note: the kernel refuses BPF_MAP_LOOKUP_ELEM on an
 * XSKMAP from the syscall (xsk_map_lookup_elem_sys_only: -EOPNOTSUPP). */
#include "common.h"

#ifndef BPF_F_BROADCAST
#define BPF_F_BROADCAST (1ULL << 3)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __s64);
} rets SEC(".maps");

static __always_inline long put(__u32 k, long v)
{
	__s64 *slot = bpf_map_lookup_elem(&rets, &k);

	if (slot)
		*slot = v;
	return v;
}

SEC("xdp")
int xdp_xsk(struct xdp_md *ctx)
{
	put(1, bpf_redirect_map(&xsks, 64, XDP_DROP));
	put(2, bpf_redirect_map(&xsks, 0, BPF_F_BROADCAST));
	return put(0, bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_TX));
}

char _license[] SEC("license") = "GPL";
