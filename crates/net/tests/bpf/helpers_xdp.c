// Kernel oracle for skiff-net XDP helpers: return values into res[i].
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} res SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} dev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} perf SEC(".maps");

static __always_inline void put(__u32 i, __u64 v)
{
	bpf_map_update_elem(&res, &i, &v, 0);
}

SEC("xdp")
int helpers_xdp(struct xdp_md *ctx)
{
	__u32 a[2] = {0x01020304, 0x05060708};
	__u64 v = 0;
	__u32 mtu = 0;

	put(0, bpf_xdp_get_buff_len(ctx));
	put(1, bpf_xdp_adjust_head(ctx, -300));
	put(2, bpf_xdp_adjust_head(ctx, -216));
	put(3, bpf_xdp_adjust_head(ctx, 216));
	put(4, bpf_xdp_adjust_head(ctx, 40));
	put(5, bpf_xdp_adjust_meta(ctx, -6));
	put(6, bpf_xdp_adjust_meta(ctx, -36));
	put(7, bpf_xdp_adjust_meta(ctx, -200));
	put(8, bpf_xdp_adjust_meta(ctx, -256));
	put(9, bpf_xdp_adjust_meta(ctx, 4));
	put(10, ctx->data - ctx->data_meta);
	put(11, bpf_xdp_adjust_meta(ctx, -8));
	put(12, bpf_xdp_adjust_head(ctx, -8));
	put(13, ctx->data - ctx->data_meta);
	put(14, bpf_xdp_adjust_tail(ctx, -100));
	put(15, bpf_xdp_adjust_tail(ctx, -50));
	put(16, bpf_xdp_adjust_tail(ctx, 4000));
	put(17, bpf_xdp_adjust_tail(ctx, 10));
	put(18, bpf_xdp_get_buff_len(ctx));
	put(19, bpf_xdp_load_bytes(ctx, 0x10000, &v, 4));
	put(20, bpf_xdp_load_bytes(ctx, 60, &v, 8));
	put(21, bpf_xdp_load_bytes(ctx, 0, &v, 8));
	put(22, v);
	put(23, bpf_xdp_store_bytes(ctx, 2, a, 8));
	put(24, bpf_redirect(1, 1));
	put(25, bpf_redirect(1, 0));
	put(26, bpf_redirect_map(&dev, 0, 2));
	put(27, bpf_redirect_map(&dev, 0, 0x40));
	put(28, bpf_redirect_map(&dev, 9, 3 | 8));
	put(29, bpf_redirect_map(&dev, 9, 1));
	put(30, bpf_check_mtu(ctx, 0, &mtu, 0, 0));
	put(31, mtu);
	put(32, bpf_check_mtu(ctx, 0, &mtu, 0, 1));
	mtu = 65540;
	put(33, bpf_check_mtu(ctx, 0, &mtu, 0, 0));
	put(34, bpf_check_mtu(ctx, 5, &mtu, 0, 0));
	mtu = 0;
	put(35, bpf_check_mtu(ctx, 0, &mtu, 65600, 0));
	put(36, bpf_perf_event_output(ctx, &perf, 0, a, 4));
	put(37, bpf_perf_event_output(ctx, &perf, 5, a, 4));
	put(38, bpf_perf_event_output(ctx, &perf, 1000ULL << 32, a, 4));
	put(39, bpf_perf_event_output(ctx, &perf, 1ULL << 31, a, 4));
	put(40, bpf_csum_diff(0, 0, a, 8, 0));
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
