// Programs for tests/fidelity_tap.rs: each rewrites one byte of the frame, so
// a tap's capture shows whether it saw the frame before or after the hook.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __always_inline int set_byte(struct __sk_buff *skb, int off, __u8 v)
{
	return bpf_skb_store_bytes(skb, off, &v, 1, 0) ? 2 : 0;
}

// the source MAC's last byte
SEC("tc") int tc_src_ee(struct __sk_buff *skb) { return set_byte(skb, 11, 0xee); }
// the destination MAC's first byte (kept unicast)
SEC("tc") int tc_dst_0a(struct __sk_buff *skb) { return set_byte(skb, 0, 0x0a); }
SEC("xdp") int xdp_drop(struct xdp_md *ctx) { return XDP_DROP; }
SEC("xdp") int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }

char _license[] SEC("license") = "GPL";
