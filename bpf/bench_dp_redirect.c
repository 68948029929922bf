/* bench_dp_redirect: `skiff bench --datapath --suite`, row xdp_redirect. Every
 * frame XDP_REDIRECT through slot 0 of DEVMAP `tx_port` (a veth whose peer runs
 * bench_dp_peer_xdp); an empty slot drops (the flags' low bits: XDP_DROP). */
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tx_port SEC(".maps");

SEC("xdp")
int bench_dp_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&tx_port, 0, XDP_DROP);
}

char LICENSE[] SEC("license") = "GPL";
