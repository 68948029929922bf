/* bench_empty: `return XDP_PASS`, nothing else. Its time per run is the fixed cost
 * of a run outside any program work (context setup, region table, the test-run
 * loop) in each engine. */
#include "common.h"

SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
