/* global_data: global variables as libbpf lays them out: `const volatile` config in
 * .rodata (frozen, read-only to the program), an initialised counter in .data, zeroed
 * counters in .bss, and a bpf_printk format string in .rodata.str1.1.
 * Each run: bss_packets++, bss_bytes += len, data_seen += cfg_step; the verdict is
 * XDP_PASS when (data_seen + bss_packets * cfg_mult) is even, else XDP_DROP. */
#include "common.h"

const volatile __u32 cfg_mult = 3;
const volatile __u32 cfg_step = 10;

__u64 data_seen = 100;
__u64 bss_packets;
__u64 bss_bytes;

SEC("xdp")
int xdp_global(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;

	bss_packets++;
	bss_bytes += len;
	data_seen += cfg_step;
	bpf_printk("skiff global_data: len %llu packets %llu", len, bss_packets);
	return ((data_seen + bss_packets * cfg_mult) & 1) ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
