/* tc_ldabs: legacy packet loads (BPF_LD | BPF_ABS / BPF_IND, what clang emits for
 * the llvm.bpf.load.* builtins): EtherType, TTL and the low byte of the IPv4
 * destination through absolute loads, the IPv4 protocol through an indirect load.
 * A load past the end of the packet ends the program with 0, as the kernel's
 * bpf_skb_load_helper does, so short frames return 0. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

SEC("tc")
int tc_ldabs(struct __sk_buff *skb)
{
	__u32 proto = load_half(skb, 12);
	__u32 ttl = load_byte(skb, 22);
	__u32 dst = load_word(skb, 30);
	__u32 l4 = load_byte(skb, 14 + (skb->len & 7));

	return (proto == 0x0800 ? 1 : 0) + (ttl << 8) + ((dst & 0xff) << 16) + (l4 << 24);
}

char _license[] SEC("license") = "GPL";
