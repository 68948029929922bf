/* xdp_cpumap: bpf_redirect_map to a CPUMAP and to a DEVMAP with broadcast flags; the
 * return of every call goes to ARRAY `rets` (index = step):
 *  - xdp_cpumap: [0] redirect_map(cpu_map, cfg[0], XDP_PASS) (XDP_REDIRECT when the
 *    CPU's slot holds a queue, else XDP_PASS), [1] redirect_map(cpu_map, 100,
 *    XDP_DROP) (out of range: XDP_DROP), [2] redirect_map(cpu_map, 0,
 *    BPF_F_BROADCAST) (a flag CPUMAP does not take: XDP_ABORTED), [3]
 *    redirect_map(cpu_map, 0, 4) (4 is not an action the flags may carry:
 *    XDP_ABORTED). Returns the first call again (the last call decides the target).
 *  - xdp_bcast: [4] redirect_map(tx_devs, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS)
 *    (XDP_REDIRECT even when the map is empty), [5] redirect_map(tx_devs, 5,
 *    BPF_F_EXCLUDE_INGRESS | XDP_TX) (no broadcast: XDP_REDIRECT when slot 5 holds a
 *    device, else XDP_TX), [6] redirect_map(tx_devs, 0, BPF_F_BROADCAST | XDP_PASS),
 *    [7] redirect_map(tx_devs, 0, 1 << 5) (unknown flag: XDP_ABORTED). Returns the
 *    broadcast call again. */
#include "common.h"

#ifndef BPF_F_BROADCAST
#define BPF_F_BROADCAST (1ULL << 3)
#define BPF_F_EXCLUDE_INGRESS (1ULL << 4)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32); /* struct bpf_cpumap_val up to qsize */
} cpu_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} tx_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
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
int xdp_cpumap(struct xdp_md *ctx)
{
	__u32 zero = 0, *cpu = bpf_map_lookup_elem(&cfg, &zero);
	__u32 target = cpu ? *cpu : 0;

	put(1, bpf_redirect_map(&cpu_map, 100, XDP_DROP));
	put(2, bpf_redirect_map(&cpu_map, 0, BPF_F_BROADCAST));
	put(3, bpf_redirect_map(&cpu_map, 0, 4));
	return put(0, bpf_redirect_map(&cpu_map, target, XDP_PASS));
}

SEC("xdp")
int xdp_bcast(struct xdp_md *ctx)
{
	put(5, bpf_redirect_map(&tx_devs, 5, BPF_F_EXCLUDE_INGRESS | XDP_TX));
	put(6, bpf_redirect_map(&tx_devs, 0, BPF_F_BROADCAST | XDP_PASS));
	put(7, bpf_redirect_map(&tx_devs, 0, 1 << 5));
	return put(4, bpf_redirect_map(&tx_devs, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS));
}

char _license[] SEC("license") = "GPL";
