/* ctx_bad_field: a TC program reads __sk_buff.family (a socket field only sk_skb
 * programs have).
 * errno: EACCES
 * message: invalid bpf_context access off=88 size=4
 */
#include "../common.h"

SEC("tc")
int ctx_bad_field(struct __sk_buff *skb)
{
	return skb->family == 2 ? TC_ACT_OK : TC_ACT_SHOT;
}

char _license[] SEC("license") = "GPL";
