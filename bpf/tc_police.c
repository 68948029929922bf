/* tc_police: a token-bucket policer per IPv4 flow (saddr, daddr, sport, dport, proto)
 * in HASH `buckets`, using bpf_ktime_get_ns. ARRAY `police_cfg` holds the rate (bytes
 * per second) and burst (bytes); burst 0 disables policing. The first packet of a flow
 * always passes and starts the bucket at burst - len; later packets earn
 * elapsed * rate / 1e9 tokens (capped at burst) and are TC_ACT_SHOT when they do not fit.
 * The bucket's `last_ns` is the last field so differential tests can mask it: with
 * rate 0 every other field is independent of time. */
#include "common.h"

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct bucket {
	__u64 tokens;
	__u64 passed;
	__u64 dropped;
	__u64 last_ns; /* time dependent: keep last */
};

struct police_cfg {
	__u64 rate;  /* bytes per second */
	__u64 burst; /* bytes */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct police_cfg);
} police_cfg SEC(".maps");

SEC("tc")
int tc_police(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct flow_key key = {};
	struct police_cfg *cfg;
	struct bucket *b;
	__u32 zero = 0;
	__u64 now, len = skb->len;

	cfg = bpf_map_lookup_elem(&police_cfg, &zero);
	if (!cfg || cfg->burst == 0)
		return TC_ACT_OK;
	if ((void *)(iph + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	key.saddr = iph->saddr;
	key.daddr = iph->daddr;
	key.proto = iph->protocol;
	if (iph->ihl == 5 && (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP)) {
		__u16 *ports = (void *)(iph + 1);

		if ((void *)(ports + 2) <= data_end) {
			key.sport = ports[0];
			key.dport = ports[1];
		}
	}

	now = bpf_ktime_get_ns();
	b = bpf_map_lookup_elem(&buckets, &key);
	if (!b) {
		struct bucket nb = {
			.tokens = cfg->burst > len ? cfg->burst - len : 0,
			.passed = 1,
			.last_ns = now,
		};

		bpf_map_update_elem(&buckets, &key, &nb, BPF_ANY);
		return TC_ACT_OK;
	}

	if (now > b->last_ns && cfg->rate) {
		__u64 earned = (now - b->last_ns) * cfg->rate / 1000000000ULL;

		b->tokens += earned;
		if (b->tokens > cfg->burst)
			b->tokens = cfg->burst;
	}
	b->last_ns = now;
	if (b->tokens < len) {
		b->dropped++;
		return TC_ACT_SHOT;
	}
	b->tokens -= len;
	b->passed++;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
