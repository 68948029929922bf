/* bench_pktloop: a loop over every byte of the packet (up to 1514): a 32-bit FNV-1a
 * hash and the RFC 1071 ones' complement sum of the whole frame, one byte per
 * iteration with a bounds check each (a bounded loop the verifier walks).
 * Returns XDP_PASS or XDP_DROP by one bit of hash ^ sum, so the result depends on
 * every byte. No maps, no helpers: rbpf runs it too. */
#include "common.h"

#define MAX_BYTES 1514

SEC("xdp")
int xdp_pktloop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 h = 2166136261u, sum = 0;
	__u32 i;

#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_BYTES; i++) {
		__u8 *p = data + i;

		if ((void *)(p + 1) > data_end)
			break;
		h = (h ^ *p) * 16777619u;
		sum += (i & 1) ? *p : (__u32)*p << 8;
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ((h ^ sum) & 1) ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
